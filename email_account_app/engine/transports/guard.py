"""Bounds on what a mail server can make us do: how long one command may take, and how much we read.

Every byte from and to the server goes through a ``Guard``:

- Each read from the socket waits at most the account's ``timeout``: a server silent that long
  has stopped answering (the socket's own timeout, as before).
- One command (from what we send to the end of the server's reply) may take at most
  ``COMMAND_TIMEOUTS`` times ``timeout``, plus one second for every ``MIN_RATE`` bytes it moved:
  a big message on a slow line gets the time it needs, and a server that trickles a byte every few
  seconds cannot keep a pull alive for ever. The remaining time is what each socket read may wait,
  so the bound holds however the bytes come.
- ``stop_at`` (a ``time.monotonic()`` value) ends every command of the session at one moment: a
  pull's time limit.
- A line, a literal (IMAP's ``{size}``), the reply to one command, and the number of responses to
  one command are bounded (``Limits``): a server that announces a 100 TB message or sends lines
  without end gets an error, not our memory.

Past a bound the guard raises ``ServerTooSlow``, ``TimeLimitReached`` or ``ServerMisbehaved`` and
marks itself ``broken``: the session is in the middle of a reply and cannot go on, so it is shut
down without a goodbye. Nothing here knows a protocol: the IMAP, POP3 and SMTP clients (subclasses
of imaplib's, poplib's and smtplib's) call ``begin`` when they send a command, send through
``sendall``, and read through a ``reader`` (a buffered reader whose every read from the socket
waits only as long as the command has left) with ``readline`` and ``read``.
"""

from __future__ import annotations

import io
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ServerMisbehaved, ServerTooSlow, TimeLimitReached

if TYPE_CHECKING:
	from _typeshed import ReadableBuffer

#: one command may take this many read timeouts, plus the time its bytes need at MIN_RATE
COMMAND_TIMEOUTS = 4
MIN_RATE = 8 * 1024  # bytes per second
#: what one socket read or write moves at most (each waits at most the time left)
CHUNK = 64 * 1024
MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
	"""The most a server may send: per line, per literal, per reply to one command (bytes), and
	responses (IMAP untagged responses, SMTP reply lines) per command."""

	line: int = MB
	literal: int = 1024 * MB
	response: int = 1024 * MB + 64 * MB
	responses: int = 100_000

	@classmethod
	def for_messages(
		cls, largest: int | None, *, line: int = MB, responses: int = 100_000, overhead: int = 64 * MB
	) -> Limits:
		"""Limits for a mailbox whose largest message to download is ``largest`` bytes (None: 1 GB):
		a reply may carry that message and ``overhead`` bytes more."""
		literal = largest if largest else 1024 * MB
		return cls(line=line, literal=literal, response=literal + overhead, responses=responses)


def size_text(n: int) -> str:
	for unit, size in (("TB", 1024**4), ("GB", 1024**3), ("MB", MB), ("KB", 1024)):
		if n >= size:
			return f"{n / size:.1f} {unit}"
	return f"{n} bytes"


class Guard:
	"""The bounds of one connection to ``server`` (see the module's docstring)."""

	def __init__(
		self, server: str, timeout: float, limits: Limits | None = None, stop_at: float | None = None
	):
		self.server = server
		self.timeout = timeout
		self.limits = limits or Limits()
		self.stop_at = stop_at
		self.broken = False
		self.begin()

	# -- commands --------------------------------------------------------------------------------

	def begin(self) -> None:
		"""A new command starts: its clock, its byte and response counts."""
		self._started = time.monotonic()
		self._moved = 0
		self._received = 0
		self._responses = 0

	def count_response(self) -> None:
		self._responses += 1
		if self._responses > self.limits.responses:
			raise self._misbehaved(f"sent more than {self.limits.responses:,} responses to one command")

	# -- reading and writing ---------------------------------------------------------------------

	def reader(self, sock: socket.socket) -> GuardedReader:
		"""A buffered reader on ``sock`` whose every read from the socket is bounded by this guard."""
		return GuardedReader(_GuardedSocketIO(sock, self), CHUNK)

	def readline(self, file: GuardedReader, limit: int | None = None) -> bytes:
		"""One line (with its line end; shorter at the end of the stream). A line of ``limit``
		bytes or more (default: longer than ``Limits.line``) is an error."""
		limit = min(limit, self.limits.line + 1) if limit else self.limits.line + 1
		line = file.readline(limit)
		if len(line) >= limit and not line.endswith(b"\n"):
			raise self._misbehaved(f"sent a line longer than {size_text(limit - 1)}")
		return line

	def read(self, file: GuardedReader, size: int) -> bytes:
		"""``size`` bytes (fewer at the end of the stream): an IMAP literal."""
		if size > self.limits.literal:
			raise self._misbehaved(
				f"announced {size_text(size)} of data ({size:,} bytes), more than the "
				f"{size_text(self.limits.literal)} this account takes",
				hint="This is a fault of the server (or of something between it and here): tell its "
				"administrator. If the mail really is that big, raise attachment_limit.",
			)
		self._check_response(size)
		return file.read(size)

	def sendall(self, sock: socket.socket, data: ReadableBuffer) -> None:
		view = memoryview(data)
		for start in range(0, len(view), CHUNK):
			part = view[start : start + CHUNK]
			self._io(sock, sock.sendall, part)
			self._moved += len(part)

	# -- plumbing --------------------------------------------------------------------------------

	def _io(self, sock: socket.socket, call, arg):
		"""``call(arg)``, one socket read or write that may wait only as long as the command has left."""
		now = time.monotonic()
		left = self._deadline() - now
		if left <= 0:
			raise self._expired(now)
		wait = min(self.timeout, left)
		sock.settimeout(wait)
		try:
			return call(arg)
		except TimeoutError:
			if wait < self.timeout:  # the command's time ran out, not the server's silence
				raise self._expired(time.monotonic()) from None
			raise

	def _deadline(self) -> float:
		deadline = self._started + COMMAND_TIMEOUTS * self.timeout + self._moved / MIN_RATE
		return min(deadline, self.stop_at) if self.stop_at is not None else deadline

	def _took(self, n: int) -> None:
		self._moved += n
		self._received += n
		if self._received > self.limits.response:
			raise self._misbehaved(
				f"sent more than {size_text(self.limits.response)} in reply to one command"
			)

	def _check_response(self, coming: int) -> None:
		"""Refuse a literal that would take the reply past its bound (the bytes are not read yet)."""
		if self._received + coming > self.limits.response:
			raise self._misbehaved(
				f"sent more than {size_text(self.limits.response)} in reply to one command"
			)

	def _expired(self, now: float) -> Exception:
		self.broken = True
		if self.stop_at is not None and now >= self.stop_at:
			return TimeLimitReached(f"The time allowed for this session with {self.server} ran out.")
		return ServerTooSlow(
			f"{self.server} was too slow: one answer took over {now - self._started:.0f} seconds "
			f"for {size_text(self._moved)}.",
			hint="Nothing is lost: the next pull starts again where this one stopped. If this keeps "
			"happening, the server or the network to it is overloaded.",
		)

	def _misbehaved(self, what: str, *, hint: str | None = None) -> ServerMisbehaved:
		self.broken = True
		return ServerMisbehaved(
			f"{self.server} {what}; nothing more was read from it.",
			hint=hint
			or "This is a fault of the server (or of something between it and here): tell its administrator.",
		)


class GuardedReader(io.BufferedReader):
	"""What a protocol client reads the server from (its ``file``), through a Guard."""


class _GuardedSocketIO(io.RawIOBase):
	"""The socket's bytes, each read from it bounded and counted by ``guard``. Closing it leaves the
	socket to its owner (the protocol client closes it)."""

	def __init__(self, sock: socket.socket, guard: Guard):
		self._sock = sock
		self._guard = guard

	def readable(self) -> bool:
		return True

	def readinto(self, buffer) -> int:
		n = self._guard._io(self._sock, self._sock.recv_into, buffer)
		self._guard._took(n)
		return n

	def fileno(self) -> int:
		return self._sock.fileno()
