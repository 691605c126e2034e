"""Log records as one line each, for people reading a terminal.

An exception attached to a record (``log.exception``) becomes its title and message on the same
line; its traceback is left out. Whoever wants tracebacks (``--debug``) uses a plain formatter.
``log_thread_failure`` logs an exception that ends a thread the same way; a shell that owns its
process makes it ``threading.excepthook`` (the engine sets no library global).
"""

from __future__ import annotations

import logging
import sys
import threading


def one_line(text: object) -> str:
	"""``text`` with line breaks and other runs of whitespace as single spaces."""
	return " ".join(str(text).split())


class OneLineFormatter(logging.Formatter):
	"""``LEVEL logger: message: Title: error`` on one line, never a traceback."""

	def format(self, record: logging.LogRecord) -> str:
		message = one_line(record.getMessage())
		if record.exc_info and record.exc_info[1] is not None:
			exc = record.exc_info[1]
			title = getattr(exc, "title", None) or type(exc).__name__
			message += f": {title}: {one_line(exc)}" if str(exc) else f": {title}"
		return f"{record.levelname} {record.name}: {message}"


def log_to_stderr(*, tracebacks: bool, level: int = logging.WARNING) -> None:
	"""Route every log record to stderr: one line each, or with tracebacks."""
	handler = logging.StreamHandler(sys.stderr)
	if tracebacks:
		handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
	else:
		handler.setFormatter(OneLineFormatter())
	root = logging.getLogger()
	for old in list(root.handlers):
		root.removeHandler(old)
	root.addHandler(handler)
	root.setLevel(level)


def log_thread_failure(args: threading.ExceptHookArgs) -> None:
	"""A ``threading.excepthook``: the exception that ended a thread as a log record."""
	if args.exc_type is SystemExit:
		return
	name = args.thread.name if args.thread is not None else "?"
	error = args.exc_value  # None only for an exception raised without a value: no traceback to give
	logging.getLogger(__name__).error(
		"thread %s stopped",
		name,
		exc_info=(args.exc_type, error, args.exc_traceback) if error is not None else None,
	)
