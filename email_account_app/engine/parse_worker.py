"""Parsing in a second process, beside the fetching and storing of a pull.

A pull is bound by one interpreter's lock: fetching, parsing and storing take turns on one core.
The parse is the largest share, so a long pull hands the raw messages to a child process (this
module run as a script) and reads the parsed records back, in the order they were sent, while it
fetches and stores the others.

The child reads framed requests on stdin and answers on stdout. It needs no other care: when the
pull ends, or dies in any way (SIGKILL included), its end of the pipe closes, the child reads
end-of-file and exits. Should the child fail, the pull parses what is left itself: nothing is lost.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
from datetime import datetime
from typing import IO

from .logs import log_to_stderr
from .parsing import IncomingMessage, parse_message

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!Q")
_STOP = object()


class ParseWorker:
	"""A child process that parses messages in the order they are submitted.

	``submit`` never blocks (a thread writes to the child, another reads its answers, so the child
	never waits on a full pipe), so the fetching thread can hand over a batch and go on; ``result``
	returns the next message's record, waiting for the child, or parsing in this process once the
	child has failed.
	"""

	def __init__(self) -> None:
		self._pending: collections.deque[tuple[bytes, int | None, datetime | None]] = collections.deque()
		self._outgoing: queue.SimpleQueue = queue.SimpleQueue()
		self._answers: queue.SimpleQueue = queue.SimpleQueue()
		self._broken = False
		self._process = subprocess.Popen(
			[sys.executable, "-m", __name__, *(["--tracebacks"] if log.isEnabledFor(logging.DEBUG) else [])],
			stdin=subprocess.PIPE,
			stdout=subprocess.PIPE,
			env={**os.environ, "PYTHONPATH": _import_path()},
		)
		# both are pipes (PIPE above), never None
		assert self._process.stdin is not None and self._process.stdout is not None
		self._stdin: IO[bytes] = self._process.stdin
		self._stdout: IO[bytes] = self._process.stdout
		self._writer = threading.Thread(target=self._write, name="email-sync-parse-writer", daemon=True)
		self._reader = threading.Thread(target=self._read, name="email-sync-parse-reader", daemon=True)
		self._writer.start()
		self._reader.start()

	def submit(self, raw: bytes, *, attachment_limit: int | None, received_at: datetime | None) -> None:
		"""Hand a message to the child; never blocks."""
		self._pending.append((raw, attachment_limit, received_at))
		if not self._broken:  # once it failed, result() parses here: nothing more to send
			self._outgoing.put((attachment_limit, received_at, raw))

	def result(self) -> IncomingMessage:
		"""The record of the oldest message submitted and not yet taken."""
		raw, attachment_limit, received_at = self._pending.popleft()
		if not self._broken:
			try:
				answer = self._answers.get()
				if isinstance(answer, BaseException):
					raise answer
				return dataclasses.replace(pickle.loads(answer), raw=raw)
			except Exception as exc:  # the child died or answered nonsense: parse here from now on
				log.warning("the parsing process failed (%s); the pull parses by itself", exc)
				self._broken = True
				self._process.kill()
		return parse_message(raw, attachment_limit=attachment_limit, received_at=received_at)

	def close(self) -> None:
		"""Stop the child: at once when submitted messages were left untaken (the pull stopped)."""
		self._outgoing.put(_STOP)
		if self._pending:
			self._process.kill()
		self._writer.join(timeout=5)
		try:
			self._stdin.close()
		except OSError:  # unwritten bytes and a dead child
			pass
		try:
			self._process.wait(timeout=5)
		except subprocess.TimeoutExpired:
			self._process.kill()
			self._process.wait()
		self._reader.join(timeout=5)
		self._stdout.close()

	def __enter__(self) -> ParseWorker:
		return self

	def __exit__(self, *exc) -> None:
		self.close()

	def _write(self) -> None:
		stdin = self._stdin
		while (request := self._outgoing.get()) is not _STOP:
			try:
				_write_frame(stdin, pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
			except (OSError, ValueError):  # the child is gone: result() notices and parses here
				return

	def _read(self) -> None:
		"""Drain the child's answers as they come, so it never waits on a full pipe."""
		stdout = self._stdout
		while True:
			try:
				self._answers.put(_read_frame(stdout))
			except (OSError, ValueError, EOFError) as exc:  # the child is gone
				self._answers.put(exc if isinstance(exc, EOFError) else EOFError(str(exc)))
				return


def _import_path() -> str:
	"""This package's folder first on the child's path, so it imports the same code."""
	package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
	return os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)


def _write_frame(stream: IO[bytes], data: bytes) -> None:
	stream.write(_LENGTH.pack(len(data)))
	stream.write(data)
	stream.flush()


def _read_frame(stream: IO[bytes]) -> bytes:
	header = stream.read(_LENGTH.size)
	if len(header) < _LENGTH.size:
		raise EOFError("the parsing process closed its output")
	(length,) = _LENGTH.unpack(header)
	data = stream.read(length)
	if len(data) < length:
		raise EOFError("the parsing process stopped in the middle of an answer")
	return data


def main() -> None:
	"""The child: parse each request from stdin, answer on stdout; exit at end-of-file. Its log
	records go to stderr one line each (with tracebacks when the pull logs at DEBUG); should it
	fail, it says so in one line and exits, and the pull parses by itself."""
	signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the pull decides
	log_to_stderr(tracebacks="--tracebacks" in sys.argv)
	try:
		_serve()
	except Exception:
		log.exception("the parsing process stopped")
		sys.exit(1)


def _serve() -> None:
	requests, answers = sys.stdin.buffer, sys.stdout.buffer
	while True:
		try:
			attachment_limit, received_at, raw = pickle.loads(_read_frame(requests))
		except EOFError:
			return
		message = parse_message(raw, attachment_limit=attachment_limit, received_at=received_at)
		try:
			_write_frame(answers, pickle.dumps(dataclasses.replace(message, raw=b""), protocol=5))
		except (BrokenPipeError, ValueError):
			return


if __name__ == "__main__":
	main()
