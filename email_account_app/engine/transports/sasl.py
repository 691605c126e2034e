"""SASL with an OAuth 2.0 bearer token: OAUTHBEARER (RFC 7628) and XOAUTH2, for IMAP, POP3, SMTP.

Which mechanism: OAUTHBEARER when the server offers it, else XOAUTH2. OAUTHBEARER is the IETF
standard (Gmail and Dovecot offer both); Microsoft 365 offers only XOAUTH2. A server that offers
neither gets a clear error before any token is sent.

A refused token is retried once with a new one (``login``): the token source drops the refused
token and gets a fresh one, which covers a token that expired or was revoked early on the
server's side. A second refusal is an ``AuthenticationFailed`` that names what to check.

A failed SASL exchange ends with the server's JSON error as a challenge; the client answers it
with the mechanism's dummy reply (``FAILURE_REPLY``), never by sending the token again. Tokens go
only into the SASL message: never into an error, a log line or the server words we repeat.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .. import secrets
from ..errors import AuthenticationFailed

if TYPE_CHECKING:
	from ..oauth import TokenSource
	from ..settings import AccountSettings

#: in order of preference
MECHANISMS = ("OAUTHBEARER", "XOAUTH2")
#: what a client answers the error challenge of a failed exchange with (RFC 7628 3.2.3: %x01)
FAILURE_REPLY = {"OAUTHBEARER": b"\x01", "XOAUTH2": b""}

OAUTH_LOGIN_HINT = (
	"The sign-in worked, but the mail server refused its token: check that oauth_scopes cover this "
	"protocol (IMAP, POP or SMTP), that login_id (or email_id) is the mailbox's address, and for "
	"Microsoft 365 that IMAP/POP/SMTP AUTH is turned on for the mailbox."
)


class Refused(Exception):
	"""The server refused the token; ``words`` are its words (already free of the token)."""

	def __init__(self, words: str):
		self.words = words
		super().__init__(words)


def choose(offered: Iterable[str]) -> str | None:
	"""The mechanism to use among those the server ``offered`` (names, any case), or None."""
	names = {name.strip().upper() for name in offered}
	return next((m for m in MECHANISMS if m in names), None)


def initial_response(
	mechanism: str, user: str, token: str, host: str | None = None, port: int | None = None
) -> bytes:
	"""The client's first SASL message for ``mechanism`` (not yet base64)."""
	if mechanism == "XOAUTH2":
		return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
	if mechanism == "OAUTHBEARER":
		authzid = user.replace("=", "=3D").replace(",", "=2C")
		parts = [f"n,a={authzid},"]
		if host:
			parts.append(f"host={host}")
		if port:
			parts.append(f"port={port}")
		parts.append(f"auth=Bearer {token}")
		return ("\x01".join(parts) + "\x01\x01").encode()
	raise ValueError(f"not an OAuth mechanism: {mechanism}")


def describe(challenge: bytes) -> str:
	"""The server's JSON error challenge (RFC 7628 3.2.2) in a few words, e.g. "invalid_token"."""
	try:
		data = json.loads(challenge.decode("utf-8", "replace"))
	except ValueError:
		return ""
	if not isinstance(data, dict):
		return ""
	status = str(data.get("status") or "")
	scope = data.get("scope")
	return status + (f" (scope {scope})" if scope and status else "")


class Conversation:
	"""The client side of one exchange, as the callable imaplib and smtplib ask for each reply.

	The first call (the empty challenge) gives the initial response; a later one is the server's
	error challenge: it is kept in ``error`` and answered with the dummy reply."""

	def __init__(
		self, mechanism: str, user: str, token: str, host: str | None = None, port: int | None = None
	):
		self.mechanism = mechanism
		secrets.remember(token, user)  # before it goes out: no form of it in a log or an error
		self._first = initial_response(mechanism, user, token, host, port)
		self._sent = False
		self.error: str | None = None

	def __call__(self, challenge: bytes | None = None) -> bytes:
		if not self._sent:
			self._sent = True
			return self._first
		self.error = describe(challenge or b"") or "refused"
		return FAILURE_REPLY[self.mechanism]

	def refused(self, words: str) -> Refused:
		"""The server's refusal: its ``words`` (free of the token), with its error challenge if any."""
		return Refused(f"{words} ({self.error})" if self.error else words)


def login(
	source,
	attempt: Callable[[str], None],
	*,
	server: str,
	login_name: str,
	mechanism: str,
) -> None:
	"""Log in with a token from ``source``; once more with a fresh token if the server refuses it.

	``attempt(token)`` runs one SASL exchange and raises ``Refused`` when the server says no."""
	token = source.access_token()
	try:
		attempt(token)
		return
	except Refused:
		source.refused(token)
	token = source.access_token()
	try:
		attempt(token)
	except Refused as exc:
		source.refused(token)
		raise AuthenticationFailed(
			f"{server} refused the OAuth sign-in of {login_name!r} ({mechanism}): {exc.words}",
			hint=OAUTH_LOGIN_HINT,
		) from None


def mechanism_for(server: str, offered: Iterable[str]) -> str:
	"""The mechanism to use among those ``server`` offered; an error a person can act on if none."""
	offered = list(offered)
	mechanism = choose(offered)
	if mechanism is None:
		raise no_mechanism(server, offered)
	return mechanism


def no_mechanism(server: str, offered: Iterable[str]) -> AuthenticationFailed:
	shown = " ".join(sorted(offered)) or "none"
	return AuthenticationFailed(
		f"{server} offers no OAuth sign-in (neither OAUTHBEARER nor XOAUTH2; it offers: {shown}).",
		hint="Check the server name and port: OAuth needs the provider's own servers "
		"(e.g. outlook.office365.com, imap.gmail.com), and often TLS first.",
	)


def require_source(account: AccountSettings) -> TokenSource:
	"""The account's token source; an error a person can act on when the shell attached none."""
	if account.token_source is None:
		raise AuthenticationFailed(
			f"{account.name!r} signs in with OAuth, but no token source was given for it.",
			hint="This is a bug in the program that runs the engine; please report it.",
		)
	return account.token_source
