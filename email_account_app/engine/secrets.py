"""Secrets kept out of everything that leaves the engine: errors, logs, what is stored.

A password reaches text in more forms than its own: a server that echoes a refused login repeats
it IMAP-quoted (``\\"`` and ``\\\\``), imaplib hands its words on as the repr of bytes (``\\xc3\\xa4``,
doubled backslashes), JSON escapes it again, a URL percent-encodes it, and SASL carries it in
base64 (AUTH PLAIN ``\\0login\\0password``, AUTH LOGIN the login and the password apart), maybe split
over lines. ``forms`` knows the literal ones (up to three layers of quoting and escaping, in every
order); ``scrub`` blots those out and also every run of base64 (joined across line breaks, real or
escaped, at each of the four alignments, standard or URL-safe alphabet, padded or not) whose
decoded bytes hold the password. Cost: a secret's forms are looked for only in a text that holds
its longest run of ASCII letters and digits (which no quoting or escaping changes), and base64 runs
too short to hold a secret are not decoded; with 100 secrets a kilobyte of log costs ~2 ms.

Invariants:
- A transport ``remember``s the password (with its login), and SASL an OAuth token, before it is
  sent to a server, so from then on the secret is known to ``scrub`` in this process (the last
  MAX_SECRETS used).
- Every ``EmailSyncError`` scrubs its message and hint when made (errors.py), so no engine error
  carries a remembered secret; the transports also scrub the library exceptions they chain
  (``scrub_exception``), so a traceback under --debug carries none either.
- ``ScrubFilter`` rewrites a log record's message (and its traceback text) before any handler
  sees it. ``remember`` puts it on every logger of the engine and of imapclient/imaplib (whose
  protocol log shows what the server said); a shell puts it on its own handlers as well.
- What the engine hands a store as an error or a server's words went through ``scrub`` (the
  outbox's error column and recipients' words, the failure records of a pull).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

MASK = "********"
#: the smallest secret (in bytes) looked for inside decoded base64: shorter ones would match noise
MIN_BASE64_SCAN = 3
#: how many secrets a process keeps knowing: the ones used last (a worker refreshes an OAuth access
#: token every hour or so; a password is used, and so remembered again, at every login)
MAX_SECRETS = 500
#: loggers that get the filter: the engine's own and the IMAP protocol log
GUARDED_PREFIXES = ("email_account_app", "imapclient")

_lock = threading.Lock()
_known: dict[str, set[str]] = {}  # secret -> logins it was used with
_secrets: dict[str, _Secret] = {}
_needles: tuple[bytes, ...] = ()
_needle_pattern: re.Pattern[bytes] | None = None
_shortest = 0
_B64_CHAR = r"[A-Za-z0-9+/_-]"
# base64 runs, joined across line breaks (real ones, or escaped in a repr: \r\n, \n)
_B64_RUN = re.compile(rf"{_B64_CHAR}+=*(?:(?:\r\n|\n|\r|\\r\\n|\\n|\\r)[ \t]*{_B64_CHAR}+=*)*")
_B64_NOISE = re.compile(r"\\r|\\n|[\s=]")


# -- the forms of a secret ---------------------------------------------------------------------


def _py_escape(value: str | bytes, quotes: str) -> str:
	"""``value`` escaped as Python's repr escapes it, with ``quotes`` escaped too (repr picks its
	quote per string, so the escaping of a secret depends on the text around it)."""
	out = []
	items = value if isinstance(value, str) else [chr(b) for b in value]
	for ch in items:
		if ch == "\\":
			out.append("\\\\")
		elif ch in quotes:
			out.append("\\" + ch)
		elif ch in "\t\n\r":
			out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r"}[ch])
		elif isinstance(value, bytes) and not 0x20 <= ord(ch) < 0x7F:
			out.append(f"\\x{ord(ch):02x}")
		elif isinstance(value, str) and not ch.isprintable():
			out.append(repr(ch)[1:-1])
		else:
			out.append(ch)
	return "".join(out)


def _utf8(text: str) -> bytes:
	return text.encode("utf-8", "surrogatepass")


_QUOTE_SETS = ("", "'", '"', "'\"")
_LAYERS: tuple[Callable[[str], str], ...] = (
	lambda s: s,
	lambda s: s.replace("\\", "\\\\").replace('"', '\\"'),  # IMAP quoted string
	lambda s: json.dumps(s)[1:-1],
	lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
	*(lambda s, q=q: _py_escape(s, q) for q in _QUOTE_SETS),  # repr of str
	*(lambda s, q=q: _py_escape(_utf8(s), q) for q in _QUOTE_SETS),  # repr of its UTF-8 bytes
	lambda s: quote(s, safe=""),
	lambda s: quote(s),
	lambda s: quote_plus(s),
	lambda s: _utf8(s).decode("latin-1"),  # UTF-8 read as Latin-1
	lambda s: _utf8(s).decode("ascii", "replace"),
	lambda s: _utf8(s).decode("ascii", "ignore"),  # imapclient's protocol log decodes so
	lambda s: s.encode("ascii", "replace").decode("ascii"),
)


def _base64_forms(data: bytes) -> set[str]:
	standard = base64.b64encode(data).decode("ascii")
	urlsafe = base64.urlsafe_b64encode(data).decode("ascii")
	return {standard, standard.rstrip("="), urlsafe, urlsafe.rstrip("=")}


def forms(secret: str, logins: Iterable[str] = ()) -> set[str]:
	"""Every literal form of ``secret`` text may show: as is, quoted and escaped (up to three layers,
	in any order), percent-encoded, mis-decoded, and the base64 of the SASL strings that carry it."""
	if not secret:
		return set()
	found = {secret}
	for _ in range(3):
		found |= {layer(form) for form in found for layer in _LAYERS}
	encodings = [_utf8(secret)]
	try:
		encodings.append(secret.encode("latin-1"))
	except UnicodeEncodeError:
		pass
	for data in encodings:
		found |= _base64_forms(data)
		for login in logins:
			user = login.encode("utf-8", "replace")
			found |= _base64_forms(b"\0" + user + b"\0" + data)  # AUTH PLAIN
			found |= _base64_forms(user + b"\0" + user + b"\0" + data)  # with the authorization id
	return {form for form in found if form}


# -- what this process knows ---------------------------------------------------------------------


class _Secret:
	"""One remembered secret: the expression of its literal forms, and a cheap test for whether a
	text may hold one of them at all (``anchor``: its longest run of ASCII letters and digits,
	which no quoting, escaping, percent-encoding or mis-decoding changes)."""

	def __init__(self, secret: str, logins: Iterable[str]):
		found = forms(secret, logins)
		self.literal = re.compile("|".join(re.escape(f) for f in sorted(found, key=len, reverse=True)))
		runs = re.findall(r"[A-Za-z0-9]+", secret)
		longest = max(runs, key=len, default="")
		# base64 forms hold no anchor: they are found by the literal expression only when the text
		# has the anchor, else by the scan of base64 runs (which needs MIN_BASE64_SCAN bytes)
		self.anchor = longest if len(longest) >= 3 and len(_utf8(secret)) >= MIN_BASE64_SCAN else None
		self.needles = {_utf8(secret)}
		try:
			self.needles.add(secret.encode("latin-1"))
		except UnicodeEncodeError:
			pass
		if len(_utf8(secret)) < MIN_BASE64_SCAN:
			self.needles = set()

	def scrub(self, text: str) -> str:
		if self.anchor is not None and self.anchor not in text:
			return text
		return self.literal.sub(MASK, text)


def remember(secret: str | None, login: str | None = None) -> None:
	"""Know ``secret`` (and the ``login`` it goes with, for the SASL forms) from now on: ``scrub``
	blots it out of any text, and the engine's and imapclient's loggers get the filter."""
	if not secret:
		return
	with _lock:
		logins = _known.get(secret)
		if logins is not None and (not login or login in logins):
			_known[secret] = _known.pop(secret)  # the newest again
			return
		logins = _known.pop(secret, set())
		if login:
			logins.add(login)
		_known[secret] = logins
		_secrets[secret] = _Secret(secret, logins)
		while len(_known) > MAX_SECRETS:  # the oldest (an access token long expired) goes
			oldest = next(iter(_known))
			del _known[oldest], _secrets[oldest]
		_set_needles({n for known in _secrets.values() for n in known.needles})
	guard_loggers()


def _set_needles(needles: set[bytes]) -> None:
	"""The secrets' bytes looked for in decoded base64: one expression, and the shortest length."""
	global _needles, _needle_pattern, _shortest
	_needles = tuple(sorted(needles, key=len, reverse=True))
	_needle_pattern = re.compile(b"|".join(re.escape(n) for n in _needles)) if _needles else None
	_shortest = min((len(n) for n in _needles), default=0)


def forget_all() -> None:
	"""Forget every remembered secret (for tests)."""
	with _lock:
		_known.clear()
		_secrets.clear()
		_set_needles(set())


def scrub(text: str, *secrets: str | None, login: str | None = None) -> str:
	"""``text`` without any form of a remembered secret, nor of ``secrets`` (remembered here too)."""
	for secret in secrets:
		if secret:
			remember(secret, login)
	if not text or not _secrets:
		return text
	for known in list(_secrets.values()):
		text = known.scrub(text)
	if _needles:
		text = _B64_RUN.sub(_scrub_base64_run, text)
	return text


def _scrub_base64_run(match: re.Match[str]) -> str:
	run = match.group()
	data = _B64_NOISE.sub("", run).replace("-", "+").replace("_", "/")
	if len(data) * 3 // 4 < _shortest:  # too short to hold any secret
		return run
	for offset in range(4):
		chunk = data[offset:]
		chunk = chunk[:-1] if len(chunk) % 4 == 1 else chunk
		try:
			decoded = binascii.a2b_base64(chunk + "=" * (-len(chunk) % 4))
		except (binascii.Error, ValueError):
			continue
		if _needle_pattern is not None and _needle_pattern.search(decoded):
			return MASK
	return run


def scrub_bytes(data: bytes) -> bytes:
	text = data.decode("utf-8", "surrogateescape")
	cleaned = scrub(text)
	return data if cleaned == text else cleaned.encode("utf-8", "surrogateescape")


def scrub_exception(exc: BaseException | None) -> None:
	"""Scrub, in place, the words of ``exc`` and of the exceptions it chains (args, and smtplib's
	``smtp_error``): a traceback of it then shows no secret."""
	seen = set()
	while exc is not None and id(exc) not in seen:
		seen.add(id(exc))
		exc.args = tuple(_scrub_value(a) for a in exc.args)
		if hasattr(exc, "smtp_error"):
			exc.smtp_error = _scrub_value(exc.smtp_error)
		exc = exc.__cause__ or exc.__context__


def _scrub_value(value):
	if isinstance(value, str):
		return scrub(value)
	if isinstance(value, bytes):
		return scrub_bytes(value)
	if isinstance(value, list | tuple):
		return type(value)(_scrub_value(v) for v in value)
	if isinstance(value, dict):
		return {k: _scrub_value(v) for k, v in value.items()}
	return value


# -- logs ----------------------------------------------------------------------------------------


class ScrubFilter(logging.Filter):
	"""Rewrites a record's message and traceback text without the remembered secrets."""

	def filter(self, record: logging.LogRecord) -> bool:
		if not _secrets:
			return True
		try:
			message = record.getMessage()
		except Exception:  # a broken format: keep the record as it is, scrubbed piecewise
			message = f"{record.msg} {record.args}"
		record.msg, record.args = scrub(message), ()
		if record.exc_info and not record.exc_text:
			record.exc_text = logging.Formatter().formatException(record.exc_info)
		if record.exc_text:
			record.exc_text = scrub(record.exc_text)
		if record.stack_info:
			record.stack_info = scrub(record.stack_info)
		return True


FILTER = ScrubFilter()


def guard_loggers() -> None:
	"""Put the filter on every logger of the engine and of imapclient that exists now."""
	names = [n for n in list(logging.root.manager.loggerDict) if n.startswith(GUARDED_PREFIXES)]
	for name in (*names, "imapclient.imaplib", "imapclient.imapclient"):
		logger = logging.getLogger(name)
		if FILTER not in logger.filters:
			logger.addFilter(FILTER)


def guard_handlers(handlers: Iterable[logging.Handler]) -> None:
	"""Put the filter on a shell's log handlers: whatever logger a record comes from."""
	for handler in handlers:
		if FILTER not in handler.filters:
			handler.addFilter(FILTER)
