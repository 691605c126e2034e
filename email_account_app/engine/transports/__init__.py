"""Mail transports: IMAP and POP3 mailboxes, and what they share.

What is shared is how a failed socket, TLS handshake or login becomes one of the engine's errors,
with a message that says what to do. Each transport maps its own protocol's errors and hands the
socket-level ones to ``network_error``.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator, Mapping, Sequence

from .. import secrets
from ..errors import (
	AuthenticationFailed,
	ConfigError,
	ConnectionLost,
	ConnectionRefused,
	ConnectionTimeout,
	HostNotFound,
	ServerRefused,
	TLSFailed,
	TransportError,
)
from ..settings import AccountSettings

#: response codes (IMAP RFC 5530, POP3 RFC 3206) that mean "not now", not "wrong password"
SERVER_TROUBLE_CODES = ("[UNAVAILABLE]", "[SYS/TEMP]", "[SYS/PERM]", "[IN-USE]", "[LOGIN-DELAY]")

APP_PASSWORD_HINT = (
	"Check the login id and password; for Gmail/Outlook use an app password "
	"(the normal password is refused there when 2-step verification is on)."
)
TLS_CHOICE_HINT = (
	"Check the port and the SSL/STARTTLS choice: SSL goes with port 993 (IMAP) or 995 (POP3), "
	"STARTTLS or plain with 143 (IMAP) or 110 (POP3)."
)


def open_incoming(account: AccountSettings, **kw):
	"""The incoming mailbox of ``account``, IMAP or POP3 per ``use_imap``; use it as a context manager."""
	if account.use_imap:
		from .imap import ImapMailbox

		return ImapMailbox(account, **kw)
	from .pop3 import Pop3Mailbox

	return Pop3Mailbox(account, **kw)


def incoming_host(account: AccountSettings) -> str:
	"""The incoming server's name (the settings check refuses an account without one; a host of
	None would reach the local machine)."""
	if not account.email_server:
		raise ConfigError("email_server is not set", account=account.name)
	return account.email_server


def uid_batches(
	uids: Sequence[int], count: int, sizes: Mapping[int, int] | None = None, max_bytes: int | None = None
) -> Iterator[list[int]]:
	"""``uids`` in runs of at most ``count`` and, with ``sizes``, of at most about ``max_bytes`` (a
	message bigger than that goes alone): what one command asks for, or a pull holds in memory at
	once, does not grow with the mailbox or with a run of big messages."""
	batch: list[int] = []
	total = 0
	for uid in uids:
		weight = (sizes or {}).get(uid, 0)
		if batch and (len(batch) >= count or (max_bytes and total + weight > max_bytes)):
			yield batch
			batch, total = [], 0
		batch.append(uid)
		total += weight
	if batch:
		yield batch


def tls_context(ca_file: str | None, validate: bool) -> ssl.SSLContext:
	"""A client context that trusts the system CAs, or ``ca_file``; no verification if not ``validate``."""
	context = ssl.create_default_context(cafile=ca_file)
	if not validate:
		context.check_hostname = False
		context.verify_mode = ssl.CERT_NONE
	return context


def security_of(account: AccountSettings) -> tuple[str, ssl.SSLContext | None]:
	"""How the incoming connection is protected ("SSL", "STARTTLS" or "plain text"), and its TLS context."""
	if not (account.use_ssl or account.use_starttls):
		return "plain text", None
	context = tls_context(account.ca_file, account.validate_ssl_certificate)
	return ("SSL" if account.use_ssl else "STARTTLS"), context


def require_encodable_password(account: AccountSettings) -> None:
	"""Refuse, before sending anything, a login that cannot go as ASCII when it has to."""
	if account.password_encoding == "ascii" and not (account.login + (account.password or "")).isascii():
		raise AuthenticationFailed(
			"The login id or password has characters that are not ASCII, and ascii_encode_password is on.",
			hint="Turn off ascii_encode_password: the password then goes as UTF-8.",
		)


def scrub(text: str, secret: AccountSettings | str | None) -> str:
	"""``text`` without any form of the account's password, or of ``secret`` (an OAuth token), nor of
	any other secret the process knows (see ``secrets``): for server words that end up in a
	message, a log or the store."""
	if isinstance(secret, AccountSettings):
		return secrets.scrub(text, secret.password, login=secret.login)
	return secrets.scrub(text, secret)


def scrubbed(exc: BaseException) -> BaseException:
	"""``exc`` with its words scrubbed in place: it is chained to the engine's error, so a traceback
	(--debug) shows it."""
	secrets.scrub_exception(exc)
	return exc


def remember_password(account: AccountSettings) -> None:
	"""Before a password goes to a server: from now on no form of it leaves the engine."""
	secrets.remember(account.password, account.login)


def network_error(
	exc: OSError,
	host: str,
	port: int,
	timeout: float,
	*,
	connecting: bool,
	server_field: str = "email_server",
) -> TransportError:
	"""The engine's error for a socket-level failure talking to ``host:port``; ``server_field`` is the
	setting that names that server (the incoming one, or ``smtp_server``)."""
	server = f"{host}:{port}"
	if isinstance(exc, ssl.SSLCertVerificationError):
		return TLSFailed(
			f"The certificate of {server} is not trusted ({exc.verify_message}).",
			hint="If the server uses a private CA, set ca_file to that CA's certificate; turn off "
			"validate_ssl_certificate only if you trust this server and the network to it.",
		)
	if isinstance(exc, ssl.SSLError) and connecting:
		return TLSFailed(
			f"The secure connection to {server} failed ({exc.reason or exc}).", hint=TLS_CHOICE_HINT
		)
	if isinstance(exc, socket.gaierror):
		return HostNotFound(
			f"The server name {host!r} was not found ({exc.strerror}).",
			hint=f"Check {server_field} for typos, and that this machine can resolve names (DNS).",
		)
	if isinstance(exc, ConnectionRefusedError):
		return ConnectionRefused(
			f"{server} refused the connection.",
			hint="Check the server name and port, and that the mail server is running there.",
		)
	if isinstance(exc, TimeoutError):
		return ConnectionTimeout(
			f"{server} did not answer within {timeout:g} seconds.",
			hint=(TLS_CHOICE_HINT + " A firewall may also be dropping the connection.")
			if connecting
			else "The server stopped answering; the next pull starts again where this one stopped.",
		)
	return connection_lost(server, str(exc) or type(exc).__name__, connecting=connecting)


def connection_lost(server: str, detail: str, *, connecting: bool) -> ConnectionLost:
	"""The connection closed under us: while connecting, or in the middle of a session."""
	if connecting:
		return ConnectionLost(
			f"{server} closed the connection while connecting ({detail}).", hint=TLS_CHOICE_HINT
		)
	return ConnectionLost(
		f"The connection to {server} was lost ({detail}).",
		hint="Nothing is lost: the next pull starts again where this one stopped.",
	)


def login_failed(server: str, login: str, server_text: str) -> TransportError:
	"""A refused login: wrong credentials, or a server that cannot take logins right now."""
	if any(code in server_text.upper() for code in SERVER_TROUBLE_CODES):
		return ServerRefused(
			f"{server} cannot log {login!r} in right now: {server_text}",
			server_text=server_text,
			hint="This is on the server's side; try again later.",
		)
	return AuthenticationFailed(
		f"{server} refused the login of {login!r}: {server_text}", hint=APP_PASSWORD_HINT
	)


def server_refused(server: str, action: str, server_text: str) -> ServerRefused:
	return ServerRefused(
		f"{server} refused to {action}: {server_text}",
		server_text=server_text,
		hint="The server's words above say why.",
	)
