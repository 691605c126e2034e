"""Sending over SMTP, and the copy in the Sent folder.

``SmtpSender`` is one SMTP session (smtplib) as a context manager: SSL (port 465), STARTTLS (587)
or plain (25), with a login unless ``no_smtp_authentication``. One session sends a whole batch;
after the server drops it, the next ``send`` opens a new one. Every failure becomes one of the
engine's errors: ``TemporarySendError`` (4xx, connection lost: try again later) or
``PermanentSendError`` (5xx, too large, every recipient refused) for a message, a
``TransportError`` for the session itself (it could not be opened, or the server was too slow or
sent what no SMTP server sends: the rest of the batch waits for the next flush). With the
``...smtp.protocol`` logger at DEBUG (the CLI's --debug), smtplib's protocol trace goes there as log
records, scrubbed of every form of the password (the AUTH lines carry it in base64) and each cut
to PROTOCOL_LOG_CHARS; it never goes to stderr.
Everything the server sends is read through a ``Guard`` (guard.py): each command has a time bound
besides the read timeout, and a reply has at most ``MAX_REPLY_LINES`` lines of at most smtplib's
8 KB.
"""

from __future__ import annotations

import base64
import functools
import logging
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .. import secrets
from ..errors import (
	AuthenticationFailed,
	ConnectionLost,
	FolderMissing,
	PermanentSendError,
	SendError,
	ServerRefused,
	TemporarySendError,
	TLSFailed,
	TransportError,
)
from ..settings import AccountSettings
from . import (
	APP_PASSWORD_HINT,
	TLS_CHOICE_HINT,
	network_error,
	remember_password,
	require_encodable_password,
	sasl,
	scrub,
	tls_context,
)
from .guard import Guard, Limits

if TYPE_CHECKING:
	from _typeshed import ReadableBuffer

	_SMTPBase = smtplib.SMTP
else:
	_SMTPBase = object

log = logging.getLogger(__name__)
protocol_log = logging.getLogger(__name__ + ".protocol")
PROTOCOL_LOG_CHARS = 2000  # a message's DATA would otherwise go to the log whole

SMTP_TLS_HINT = (
	"Check the port and the SSL/STARTTLS choice: use_ssl_for_outgoing goes with port 465, "
	"use_tls (STARTTLS) with 587, neither with 25."
)
RETRY_HINT = "The message stays in the outbox and is tried again later."

SmtpFactory = Callable[[AccountSettings, "ssl.SSLContext | None"], smtplib.SMTP]

#: smtplib's longest reply line (8 KB)
_MAXLINE: int = smtplib._MAXLINE  # type: ignore[attr-defined]  # private, so not in smtplib's stubs
#: lines in one reply (an EHLO reply has a dozen); the line length stays smtplib's (8 KB)
MAX_REPLY_LINES = 1000
REPLY_LIMITS = Limits(
	line=_MAXLINE,
	literal=0,
	response=MAX_REPLY_LINES * (_MAXLINE + 2),
	responses=MAX_REPLY_LINES,
)


@dataclass(frozen=True)
class SendOutcome:
	"""Which recipients the server accepted the message for, and the words of its refusals."""

	accepted: tuple[str, ...]
	refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)


class RecipientsRefused(PermanentSendError):
	"""The server refused every recipient, each for good (5xx)."""

	def __init__(self, message: str, refused: Mapping[str, tuple[int, str]], *, hint: str | None = None):
		self.refused = dict(refused)
		super().__init__(message, hint=hint)


class RecipientsDeferred(TemporarySendError):
	"""The server refused every recipient, some only for now (4xx)."""

	def __init__(self, message: str, refused: Mapping[str, tuple[int, str]], *, hint: str | None = None):
		self.refused = dict(refused)
		super().__init__(message, hint=hint)


@functools.cache
def _local_hostname() -> str:
	"""The name we greet with (EHLO), looked up once: smtplib would ask DNS on every connection."""
	return socket.getfqdn() or "localhost"


class _GuardedFile:
	"""What smtplib reads replies from: lines through the Guard, each one counted."""

	def __init__(self, sock: socket.socket, guard: Guard):
		self._file, self._guard = guard.reader(sock), guard

	def readline(self, limit: int = -1) -> bytes:
		line = self._guard.readline(self._file, limit if limit > 0 else None)
		self._guard.count_response()
		return line

	def close(self) -> None:
		self._file.close()


class _Guarded(_SMTPBase):
	"""smtplib's reading and writing, through a Guard; a command begins with what we send."""

	def __init__(self, *args: Any, guard: Guard, **kwargs: Any):
		self.guard = guard
		super().__init__(*args, **kwargs)

	def send(self, s: ReadableBuffer | str) -> None:
		if not self.sock:
			raise smtplib.SMTPServerDisconnected("please run connect() first")
		if isinstance(s, str):
			s = s.encode(self.command_encoding)
		self.guard.begin()
		try:
			self.guard.sendall(self.sock, s)
		except OSError:
			self.close()
			raise smtplib.SMTPServerDisconnected("Server not connected")

	def getreply(self) -> tuple[int, bytes]:
		if self.sock is not None and not isinstance(self.file, _GuardedFile):  # new, or after STARTTLS
			self.file = _GuardedFile(self.sock, self.guard)
		return super().getreply()


class _ProtocolLog(_SMTPBase):
	"""smtplib's debug trace as DEBUG records of ``protocol_log`` (scrubbed, cut), never on stderr."""

	def __init__(self, *args: Any, **kwargs: Any):
		self.debuglevel = 1 if protocol_log.isEnabledFor(logging.DEBUG) else 0
		super().__init__(*args, **kwargs)

	def send(self, s: ReadableBuffer | str) -> None:
		if self.debuglevel > 0:  # smtplib's own send, which says so, is replaced by the Guard's
			self._print_debug("send:", repr(s))
		super().send(s)

	def _print_debug(self, *args: object) -> None:
		text = secrets.scrub(" ".join(str(a) for a in args))
		cut = len(text) - PROTOCOL_LOG_CHARS
		protocol_log.debug("%s", text[:PROTOCOL_LOG_CHARS] + (f"... ({cut} more)" if cut > 0 else ""))


class GuardedSMTP(_ProtocolLog, _Guarded, smtplib.SMTP):
	pass


class GuardedSMTP_SSL(_ProtocolLog, _Guarded, smtplib.SMTP_SSL):
	pass


def connect_smtp(account: AccountSettings, context: ssl.SSLContext | None) -> smtplib.SMTP:
	"""A connected smtplib session (TLS already up for SSL; STARTTLS is done by SmtpSender)."""
	host, port, timeout = account.smtp_server, account.outgoing_port, account.timeout
	guard = Guard(f"{host}:{port}", timeout, REPLY_LIMITS)
	if account.use_ssl_for_outgoing:
		return GuardedSMTP_SSL(
			host, port, local_hostname=_local_hostname(), timeout=timeout, context=context, guard=guard
		)
	return GuardedSMTP(host, port, local_hostname=_local_hostname(), timeout=timeout, guard=guard)


def _text(value: bytes | str) -> str:
	"""A server's words as text, without any secret the process knows (a refusal may echo one)."""
	return secrets.scrub(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))


def _words(code: int, message: bytes | str) -> str:
	return f"{code} {' '.join(_text(message).split())}"


class SmtpSender:
	"""One SMTP session for ``account``, reused for every message of a batch."""

	def __init__(self, account: AccountSettings, *, smtp_factory: SmtpFactory | None = None):
		self.account = account
		self.smtp_factory = smtp_factory or connect_smtp
		self.server = f"{account.smtp_server}:{account.outgoing_port}"
		self.sessions = 0  # how many connections this sender opened
		self._smtp: smtplib.SMTP | None = None

	# -- session ---------------------------------------------------------------------------------

	def __enter__(self) -> SmtpSender:
		self.connect()
		return self

	def __exit__(self, *exc) -> None:
		self.close()

	@property
	def client(self) -> smtplib.SMTP:
		"""The smtplib session that is open."""
		if self._smtp is None:
			raise RuntimeError(f"The SMTP session with {self.server} is not open: call connect() first.")
		return self._smtp

	@property
	def connected(self) -> bool:
		return self._smtp is not None and self._smtp.sock is not None

	def connect(self) -> None:
		account = self.account
		secure = account.use_ssl_for_outgoing or account.use_tls
		context = tls_context(account.ca_file, account.validate_ssl_certificate) if secure else None
		smtp = None
		try:
			smtp = self.smtp_factory(account, context)
			smtp.ehlo_or_helo_if_needed()
			if account.use_tls and not account.use_ssl_for_outgoing:
				if not smtp.has_extn("starttls"):
					raise TLSFailed(
						f"{self.server} does not offer STARTTLS.",
						hint="Turn on use_ssl_for_outgoing (port 465) if the server speaks SSL, or turn off "
						"use_tls only if this is a trusted network.",
					)
				smtp.starttls(context=context)
				smtp.ehlo()
			if not account.no_smtp_authentication:
				self._login(smtp)
		except TransportError:
			_abort(smtp)
			raise
		except smtplib.SMTPAuthenticationError as exc:
			_abort(smtp)
			raise AuthenticationFailed(
				f"{self.server} refused the login of {account.login!r}: "
				f"{scrub(_words(exc.smtp_code, exc.smtp_error), account)}",
				hint=APP_PASSWORD_HINT,
			) from None
		except smtplib.SMTPServerDisconnected as exc:
			_abort(smtp)
			raise ConnectionLost(
				f"{self.server} closed the connection while connecting ({exc or 'no reason given'}).",
				hint=SMTP_TLS_HINT,
			) from None
		except smtplib.SMTPResponseException as exc:
			_abort(smtp)
			words = scrub(_words(exc.smtp_code, exc.smtp_error), account)
			raise ServerRefused(
				f"{self.server} refused the session: {words}",
				server_text=words,
				hint="The server's words say why; a 4xx code means: try again later.",
			) from None
		except smtplib.SMTPException as exc:
			_abort(smtp)
			raise TransportError(f"{self.server}: {exc}", hint=SMTP_TLS_HINT) from None
		except OSError as exc:
			_abort(smtp)
			error = network_error(
				exc,
				account.smtp_server or "",
				account.outgoing_port,
				account.timeout,
				connecting=True,
				server_field="smtp_server",
			)
			if error.hint == TLS_CHOICE_HINT or (error.hint and TLS_CHOICE_HINT in error.hint):
				error = type(error)(error.message, hint=SMTP_TLS_HINT)
			raise error from None
		self._smtp = smtp
		self.sessions += 1
		log.debug("%s: connected; extensions: %s", self.server, " ".join(self.capabilities()))

	def _login(self, smtp: smtplib.SMTP) -> None:
		account = self.account
		if not smtp.has_extn("auth"):
			raise AuthenticationFailed(
				f"{self.server} does not offer a login (no AUTH).",
				hint="Turn on no_smtp_authentication if this server takes mail without a login; many "
				"servers offer a login only over TLS (use_tls or use_ssl_for_outgoing).",
			)
		if account.uses_oauth:
			self._oauth_login(smtp)
			return
		require_encodable_password(account)
		remember_password(account)
		password = account.password or ""
		if password.isascii() and account.login.isascii():
			smtp.login(account.login, password)
		else:
			self._login_utf8(smtp, account.login, password, account.password_encoding)
		log.debug("%s: logged in as %s", self.server, account.login)

	def _oauth_login(self, smtp: smtplib.SMTP) -> None:
		"""AUTH OAUTHBEARER or XOAUTH2 (with an initial response), whichever the server offers."""
		account = self.account
		source = sasl.require_source(account)
		offered = smtp.esmtp_features.get("auth", "").split()
		mechanism = sasl.mechanism_for(self.server, offered)

		def attempt(token: str) -> None:
			conversation = sasl.Conversation(
				mechanism, account.login, token, account.smtp_server, account.outgoing_port
			)
			code, response = smtp.docmd("AUTH", f"{mechanism} {_b64(conversation())}")
			if code == 334:  # the error challenge of a failed exchange
				conversation(base64.b64decode(response or b"", validate=False))
				code, response = smtp.docmd(_b64(sasl.FAILURE_REPLY[mechanism]))
			if code == 235:
				return
			words = scrub(_words(code, response), token)
			if 400 <= code < 500 and code != 454:
				raise ServerRefused(
					f"{self.server} cannot sign {account.login!r} in right now: {words}",
					server_text=words,
					hint="This is on the server's side; try again later.",
				)
			raise conversation.refused(words)

		sasl.login(source, attempt, server=self.server, login_name=account.login, mechanism=mechanism)
		log.debug("%s: signed in as %s with %s", self.server, account.login, mechanism)

	def _login_utf8(self, smtp: smtplib.SMTP, login: str, password: str, encoding: str) -> None:
		"""AUTH PLAIN (or LOGIN) with UTF-8 bytes: smtplib encodes credentials as ASCII only."""
		mechanisms = smtp.esmtp_features.get("auth", "").upper().split()
		user, secret = login.encode(encoding), password.encode(encoding)
		if "PLAIN" in mechanisms:
			code, response = smtp.docmd("AUTH", "PLAIN " + _b64(b"\0" + user + b"\0" + secret))
		elif "LOGIN" in mechanisms:
			code, response = smtp.docmd("AUTH", "LOGIN " + _b64(user))
			if code == 334:
				code, response = smtp.docmd(_b64(secret))
		else:
			raise AuthenticationFailed(
				f"{self.server} offers no login that takes a password with non-ASCII characters "
				f"(it offers: {' '.join(mechanisms) or 'none'}).",
				hint="Use a password of ASCII characters only.",
			)
		if code not in (235, 503):
			raise smtplib.SMTPAuthenticationError(code, response)

	def capabilities(self) -> list[str]:
		"""The server's ESMTP extensions, as it announced them (e.g. "SIZE 35882577")."""
		if self._smtp is None:
			return []
		return [
			f"{name.upper()} {' '.join(value.split())}".strip()
			for name, value in self._smtp.esmtp_features.items()
		]

	@property
	def max_size(self) -> int | None:
		"""The largest message the server takes (its SIZE extension), or None when it sets none."""
		if self._smtp is None:
			return None
		value = self._smtp.esmtp_features.get("size", "").strip()
		return int(value) if value.isdigit() and int(value) > 0 else None

	def close(self) -> None:
		smtp, self._smtp = self._smtp, None
		if smtp is None:
			return
		if _broken(smtp):  # in the middle of a reply: no QUIT, it would read that reply
			smtp.close()
			return
		try:
			smtp.quit()
		except (smtplib.SMTPException, OSError, TransportError):
			smtp.close()

	# -- sending ---------------------------------------------------------------------------------

	def send(self, raw: bytes, from_addr: str, recipients: Iterable[str]) -> SendOutcome:
		"""Send ``raw`` to ``recipients``: who accepted it and who refused (with the server's words).

		Raises TemporarySendError or PermanentSendError when nobody got it.
		"""
		recipients = list(dict.fromkeys(recipients))
		if not recipients:
			return SendOutcome(())
		if not self.connected:
			self.close()
			self.connect()
		smtp = self.client
		limit = self.max_size
		if limit and len(raw) > limit:
			error = PermanentSendError(
				f"The message is {_size(len(raw))}, more than the {_size(limit)} {self.server} takes.",
				hint="Send smaller attachments, or links to them.",
			)
			raise _with_code(error, 552)  # what the server would answer (RFC 1870)
		options = []
		if not all(a.isascii() for a in (from_addr, *recipients)):
			if not smtp.has_extn("smtputf8"):
				raise PermanentSendError(
					f"{self.server} cannot take addresses with non-ASCII characters (no SMTPUTF8).",
					hint="Write the address in ASCII, if its owner has one.",
				)
			options.append("SMTPUTF8")
		try:
			refusals = smtp.sendmail(from_addr, recipients, raw, mail_options=options)
		except smtplib.SMTPRecipientsRefused as exc:
			self._forget_if_closed()
			refused = {rcpt: (code, _text(text)) for rcpt, (code, text) in exc.recipients.items()}
			words = "; ".join(f"{rcpt}: {_words(code, text)}" for rcpt, (code, text) in refused.items())
			if all(code >= 500 for code, _ in refused.values()):
				raise RecipientsRefused(f"{self.server} refused every recipient: {words}", refused) from None
			raise RecipientsDeferred(
				f"{self.server} did not take the message for now: {words}", refused, hint=RETRY_HINT
			) from None
		except smtplib.SMTPServerDisconnected as exc:
			self._forget()
			raise TemporarySendError(
				f"{self.server} closed the connection while sending ({exc or 'no reason given'}).",
				hint=RETRY_HINT,
			) from None
		except smtplib.SMTPSenderRefused as exc:
			self._forget_if_closed()
			raise _by_code(
				exc.smtp_code, f"{self.server} refused the sender {from_addr}", exc.smtp_error
			) from None
		except smtplib.SMTPResponseException as exc:  # SMTPDataError and the like
			self._forget_if_closed()
			raise _by_code(exc.smtp_code, f"{self.server} refused the message", exc.smtp_error) from None
		except smtplib.SMTPException as exc:
			self._forget()
			raise TemporarySendError(f"{self.server}: {exc}", hint=RETRY_HINT) from None
		except TransportError:  # too slow, or a reply beyond every bound: the session is over
			self._forget()
			raise
		except OSError as exc:
			self._forget()
			lost = network_error(
				exc,
				self.account.smtp_server or "",
				self.account.outgoing_port,
				self.account.timeout,
				connecting=False,
				server_field="smtp_server",
			)
			raise TemporarySendError(lost.message, hint=RETRY_HINT) from None
		refused = {rcpt: (code, _text(text)) for rcpt, (code, text) in refusals.items()}
		return SendOutcome(tuple(r for r in recipients if r not in refused), refused)

	def _forget(self) -> None:
		smtp, self._smtp = self._smtp, None
		_abort(smtp)

	def _forget_if_closed(self) -> None:
		if self._smtp is not None and self._smtp.sock is None:
			self._smtp = None


def _broken(smtp: smtplib.SMTP) -> bool:
	guard = getattr(smtp, "guard", None)
	return bool(guard is not None and guard.broken)


def _abort(smtp: smtplib.SMTP | None) -> None:
	if smtp is not None:
		try:
			smtp.close()
		except OSError:
			pass


def _b64(data: bytes) -> str:
	return base64.b64encode(data).decode("ascii")


def _size(n: int) -> str:
	return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


def _by_code(code: int, what: str, text: bytes | str) -> TemporarySendError | PermanentSendError:
	words = _words(code, text)
	error: TemporarySendError | PermanentSendError
	if 400 <= code < 500:
		error = TemporarySendError(f"{what} for now: {words}", hint=RETRY_HINT)
	else:
		error = PermanentSendError(f"{what}: {words}", hint="The server's words say why.")
	return _with_code(error, code)


_SendErrorT = TypeVar("_SendErrorT", bound=SendError)


def _with_code(error: _SendErrorT, code: int) -> _SendErrorT:
	"""``error`` with the SMTP reply code it stands for, as ``smtp_code`` (the outbox records it).
	The errors' classes do not declare the attribute, so it is set by name."""
	setattr(error, "smtp_code", code)  # noqa: B010
	return error


# -- the Sent folder -------------------------------------------------------------------------


def append_to_sent(
	mailbox, raw: bytes, *, sent_folder_name: str | None = None, folder: str | None = None
) -> str:
	"""Put ``raw`` into the Sent folder with \\Seen over an open ``ImapMailbox``; returns the folder.

	The folder is the one marked \\Sent (SPECIAL-USE), else ``sent_folder_name``, else one of the
	usual names; a mailbox that has none gets one, as mail clients do (``create_sent_folder``:
	``sent_folder_name`` or "Sent", marked \\Sent where the server can). Pass ``folder`` (what an
	earlier call returned) to skip looking it up again within a batch.
	"""
	folder = folder or mailbox.find_sent_folder(sent_folder_name)
	if not folder:
		try:
			folder = mailbox.create_sent_folder(sent_folder_name)
		except ServerRefused as exc:
			raise FolderMissing(
				"The mailbox has no Sent folder (none is marked \\Sent"
				+ (f" and there is no folder {sent_folder_name!r}" if sent_folder_name else "")
				+ f"), and creating one failed: {exc.server_text or exc.message}",
				hint="Set sent_folder_name to the folder sent mail goes to, or turn off "
				"append_emails_to_sent_folder.",
			) from None
	mailbox.append(folder, raw, flags=("\\Seen",))
	return folder
