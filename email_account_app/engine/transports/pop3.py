"""A POP3 mailbox on poplib: connect, log in, list by UIDL, retrieve. It never deletes anything.

Every failure comes out as one of the engine's errors (see ``_errors``), with a message that says
what to do and never the password. Everything the server sends is read through a ``Guard``
(guard.py): a command has a time bound besides the read timeout, a line may be ``MAX_LINE`` bytes
long (poplib's own bound, 2 KB, is too short for real mail, and is left as it is), and a reply may
not be larger than the largest message the account downloads.
"""

from __future__ import annotations

import base64
import logging
import poplib
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..errors import EmailSyncError, ServerMisbehaved, TLSFailed
from ..settings import AccountSettings
from . import (
	connection_lost,
	incoming_host,
	login_failed,
	network_error,
	remember_password,
	require_encodable_password,
	sasl,
	scrub,
	scrubbed,
	security_of,
	server_refused,
)
from .guard import MB, Guard, GuardedReader, Limits

log = logging.getLogger(__name__)

#: (host, port, ssl, ssl_context, timeout) -> a connected, not yet logged-in POP3 client
ClientFactory = Callable[[str, int, bool, "ssl.SSLContext | None", float], poplib.POP3]

#: the longest line a server may send (real mail, HTML above all, has lines far over poplib's 2 KB)
MAX_LINE = MB
#: lines in one reply: a message of base64 (76 characters a line) up to ~150 MB; each line is an
#: object of its own in poplib's list, so their number bounds memory as much as their bytes do
MAX_LINES = 2_000_000
CR, LF, CRLF = b"\r", b"\n", b"\r\n"

if TYPE_CHECKING:
	_POP3Base = poplib.POP3
else:
	_POP3Base = object


class _CommandWire(Protocol):
	"""poplib's own command methods (private, so not in its type stubs): what AUTH is spoken with."""

	def _putcmd(self, line: str) -> None: ...

	def _getresp(self) -> bytes: ...


class _Guarded(_POP3Base):
	"""poplib's reading and writing, through a Guard; a command begins with the line we send."""

	def __init__(self, *args: Any, guard: Guard, **kwargs: Any):
		self.guard = guard
		super().__init__(*args, **kwargs)

	def _putline(self, line: bytes) -> None:
		self.guard.begin()
		self.guard.sendall(self.sock, line + CRLF)

	def _getline(self) -> tuple[bytes, int]:
		if not isinstance(self.file, GuardedReader):  # a new connection, or a new one after STLS
			self.file = self.guard.reader(self.sock)
		line = self.guard.readline(self.file)
		self.guard.count_response()
		if not line:
			raise poplib.error_proto("-ERR EOF")
		octets = len(line)
		# as poplib: a line ends in LF, CRLF, or starts with CR and ends in LF
		if line[-2:] == CRLF:
			return line[:-2], octets
		if line[:1] == CR:
			return line[1:-1], octets
		return line[:-1], octets


class GuardedPOP3(_Guarded, poplib.POP3):
	pass


class GuardedPOP3_SSL(_Guarded, poplib.POP3_SSL):
	pass


class Pop3Mailbox:
	"""One logged-in POP3 session; use it as a context manager."""

	def __init__(
		self,
		account: AccountSettings,
		*,
		client_factory: ClientFactory | None = None,
		stop_at: float | None = None,
	):
		"""``stop_at``: a ``time.monotonic()`` moment at which every command ends (a pull's time limit)."""
		self.account = account
		self.server = f"{account.email_server}:{account.port}"
		self._factory = client_factory or self._guarded_client
		self._client: poplib.POP3 | None = None
		self._logged_in = False
		self._guard = Guard(
			self.server,
			account.timeout,
			Limits.for_messages(
				account.message_size_limit, line=MAX_LINE, responses=MAX_LINES, overhead=16 * MB
			),
			stop_at=stop_at,
		)

	def _guarded_client(
		self, host: str, port: int, use_ssl: bool, context: ssl.SSLContext | None, timeout: float
	) -> poplib.POP3:
		if use_ssl:
			return GuardedPOP3_SSL(host, port, timeout=timeout, context=context, guard=self._guard)
		return GuardedPOP3(host, port, timeout=timeout, guard=self._guard)

	@property
	def client(self) -> poplib.POP3:
		"""The poplib client of the open session."""
		if self._client is None:
			raise RuntimeError(f"The POP3 session with {self.server} is not open: call open() first.")
		return self._client

	# -- session -------------------------------------------------------------------------------

	def __enter__(self) -> Pop3Mailbox:
		self.open()
		return self

	def __exit__(self, *exc_info: object) -> None:
		self.close()

	def open(self) -> None:
		"""Connect (SSL, STARTTLS or plain text) and log in with USER/PASS."""
		try:
			with self._errors("connect"):
				self._connect()
			with self._errors("log in", login=True):
				self._login()
		except BaseException:
			self.close()
			raise

	def close(self) -> None:
		"""QUIT (which deletes nothing, as nothing was marked); quiet on a dead connection."""
		client, self._client, self._logged_in = self._client, None, False
		if client is None:
			return
		try:
			if self._guard.broken:  # in the middle of a reply: no QUIT, it would read that reply
				raise ConnectionAbortedError("the session was broken off")
			client.quit()
		except Exception as exc:
			log.debug("QUIT on %s failed (%s); closing the connection", self.server, exc)
			try:
				client.close()
			except Exception:
				pass

	def _connect(self) -> None:
		acct = self.account
		mode, context = security_of(acct)
		log.debug("connecting to %s (%s)", self.server, mode)
		self._client = client = self._factory(
			incoming_host(acct), acct.port, acct.use_ssl, context, acct.timeout
		)
		if acct.use_starttls:
			if "STLS" not in self.capabilities():
				raise TLSFailed(
					f"{self.server} does not offer STARTTLS (STLS).",
					hint="Use SSL (port 995), or turn off use_starttls to send everything in plain text.",
				)
			client.stls(context)

	def _login(self) -> None:
		if self.account.uses_oauth:
			self._oauth_login()
			return
		require_encodable_password(self.account)
		remember_password(self.account)
		self.client.user(self.account.login)
		self.client.pass_(self.account.password or "")
		self._logged_in = True
		log.debug("logged in to %s as %s", self.server, self.account.login)

	def _oauth_login(self) -> None:
		"""AUTH OAUTHBEARER or XOAUTH2 (RFC 5034), whichever the server offers (see ``sasl``).

		The response goes on a line of its own after the server's "+" (a token is longer than the
		255 octets a command line with an initial response may have)."""
		acct = self.account
		source = sasl.require_source(acct)
		offered = next((c.split()[1:] for c in self.capabilities() if c.upper().startswith("SASL")), [])
		mechanism = sasl.mechanism_for(self.server, offered)
		# poplib's AUTH is only for SASL mechanisms it knows: this one is spoken with its own methods
		client = cast(_CommandWire, self.client)

		def attempt(token: str) -> None:
			conversation = sasl.Conversation(mechanism, acct.login, token, acct.email_server, acct.port)
			try:
				client._putcmd(f"AUTH {mechanism}")
				client._getresp()  # "+ ": go on
				client._putcmd(_b64(conversation()))
				answer = client._getresp()
				if not answer.startswith(b"+OK"):  # "+ <error challenge>"
					conversation(base64.b64decode(answer[1:].strip() or b"", validate=False))
					client._putcmd(_b64(sasl.FAILURE_REPLY[mechanism]))
					answer = client._getresp()  # -ERR, raised as error_proto
					raise sasl.Refused(conversation.error or "refused")
			except poplib.error_proto as exc:
				detail = exc.args[0] if exc.args else b""
				if not isinstance(detail, bytes):
					raise
				words = scrub(detail.decode("utf-8", "replace").strip(), token)
				raise conversation.refused(words) from None

		sasl.login(source, attempt, server=self.server, login_name=acct.login, mechanism=mechanism)
		self._logged_in = True
		log.debug("signed in to %s as %s with %s", self.server, acct.login, mechanism)

	@contextmanager
	def _errors(self, action: str, *, login: bool = False) -> Iterator[None]:
		"""Turn what poplib, ssl and socket raise into the engine's errors."""
		acct = self.account
		try:
			yield
		except EmailSyncError:
			raise
		except poplib.error_proto as exc:
			detail = exc.args[0] if exc.args else ""
			if not isinstance(detail, bytes):  # poplib's own words: EOF, line too long
				self._guard.broken = True
				error = connection_lost(self.server, str(detail), connecting=not self._logged_in)
				raise error from scrubbed(exc)
			if not detail.startswith(b"-"):  # neither +OK nor -ERR: not POP3
				self._guard.broken = True
				shown = detail[:200].decode("utf-8", "replace")
				raise ServerMisbehaved(
					f"{self.server} sent a reply that is not POP3 ({shown!r}).",
					hint="This is a fault of the server (or of something between it and here): tell its "
					"administrator. Nothing is lost: the next pull starts again where this one stopped.",
				) from scrubbed(exc)
			words = scrub(detail.decode("utf-8", "replace").strip(), acct)
			if login:
				raise login_failed(self.server, acct.login, words) from scrubbed(exc)
			raise server_refused(self.server, action, words) from scrubbed(exc)
		except OSError as exc:
			self._guard.broken = True
			connecting = not self._logged_in
			raise network_error(
				exc, acct.email_server or "", acct.port, acct.timeout, connecting=connecting
			) from scrubbed(exc)

	# -- mailbox -------------------------------------------------------------------------------

	def capabilities(self) -> tuple[str, ...]:
		"""CAPA, as "NAME arg ..." strings; () from a server without CAPA."""
		with self._errors("list its capabilities"):
			try:
				caps = self.client.capa()
			except poplib.error_proto:  # poplib turns every CAPA failure into "not supported"
				return ()
		return tuple(" ".join([name, *args]) for name, args in caps.items())

	def stat(self) -> tuple[int, int]:
		"""(number of messages, total size in bytes)."""
		with self._errors("count the messages"):
			return self.client.stat()

	def list_uidls(self) -> list[tuple[int, str]]:
		"""(message number, UIDL) of every message, in server order."""
		with self._errors("list message UIDLs"):
			_resp, lines, _octets = self.client.uidl()
		return [(int(number), uidl.decode("utf-8", "replace")) for number, uidl in _pairs(lines)]

	def sizes(self) -> dict[int, int]:
		"""Message number -> size in bytes (LIST)."""
		with self._errors("list message sizes"):
			_resp, lines, _octets = self.client.list()
		return {int(number): int(size) for number, size in _pairs(lines)}

	def retrieve(self, number: int) -> bytes:
		"""The whole message (RETR), lines ending in CRLF, byte-stuffing undone."""
		with self._errors(f"give message {number}"):
			_resp, lines, _octets = self.client.retr(number)
		return _joined(lines)

	def top(self, number: int, lines: int = 0) -> bytes:
		"""The headers and the first ``lines`` lines of the body (TOP)."""
		with self._errors(f"give the top of message {number}"):
			_resp, got, _octets = self.client.top(number, lines)
		return _joined(got)


def _pairs(lines: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
	for line in lines:
		first, _, rest = line.strip().partition(b" ")
		yield first, rest.strip()


def _b64(data: bytes) -> str:
	return base64.b64encode(data).decode("ascii")


def _joined(lines: list[bytes]) -> bytes:
	return b"".join(line + b"\r\n" for line in lines)
