"""The engine's errors.

Every error carries a message meant for a person: what went wrong and what to do about it.
Nothing here ever carries a password or a token: an error scrubs its message and hint of every
secret the process knows (``secrets.scrub``) when it is made. Callers show ``str(error)``; a
traceback is for ``--debug`` only.
"""

from __future__ import annotations

from .secrets import scrub


class EmailSyncError(Exception):
	"""Base of every error the engine raises on purpose."""

	#: a short title for a dialog or a log entry
	title = "Email sync error"

	def __init__(self, message: str, *, hint: str | None = None):
		message = scrub(message)
		hint = scrub(hint) if hint else hint
		self.message = message
		self.hint = hint
		super().__init__(message if not hint else f"{message} {hint}")


class ConfigError(EmailSyncError):
	"""Settings that cannot work; ``problems`` lists each one in plain words."""

	title = "Invalid settings"

	def __init__(self, problems: list[str] | str, *, account: str | None = None):
		if isinstance(problems, str):
			problems = [problems]
		self.problems = list(problems)
		self.account = account
		prefix = f"Account {account!r}: " if account else ""
		super().__init__(prefix + "; ".join(self.problems))


class ConditionError(EmailSyncError):
	"""An import condition that does not parse or cannot be evaluated."""

	title = "Invalid condition"


# -- transports ------------------------------------------------------------------------------


class TransportError(EmailSyncError):
	"""Talking to a mail server failed."""

	title = "Mail server error"


class AuthenticationFailed(TransportError):
	title = "Login failed"


class TLSFailed(TransportError):
	"""The TLS handshake failed, or the server's certificate is not trusted."""

	title = "Secure connection failed"


class HostNotFound(TransportError):
	title = "Server not found"


class ConnectionRefused(TransportError):
	title = "Connection refused"


class ConnectionTimeout(TransportError):
	title = "Server did not answer"


class ConnectionLost(TransportError):
	title = "Connection lost"


class ServerTooSlow(ConnectionTimeout):
	"""The server kept answering, but one command took longer than its bound (a trickle)."""

	title = "Server too slow"


class ServerMisbehaved(TransportError):
	"""The server sent what no honest server sends: a literal, line or reply beyond every bound,
	or something that is not the protocol."""

	title = "Server misbehaved"


class TimeLimitReached(TransportError):
	"""A pull ran out of its time (``pull_timeout``); the next one goes on where it stopped."""

	title = "Time limit reached"


class FolderMissing(TransportError):
	title = "Folder not found"


class ServerRefused(TransportError):
	"""The server answered NO or BAD (or -ERR); ``server_text`` holds its words."""

	title = "Server refused"

	def __init__(self, message: str, *, server_text: str = "", hint: str | None = None):
		self.server_text = scrub(server_text)
		super().__init__(message, hint=hint)


# -- OAuth 2.0 sign-in ------------------------------------------------------------------------


class SignInError(AuthenticationFailed):
	"""Getting an OAuth 2.0 access token failed, or a mail server refused the one it got."""

	title = "Sign-in failed"


class SignInRequired(SignInError):
	"""There is no sign-in to use: never signed in, signed out, or the grant was revoked or expired.

	Only a person can fix it (sign in again); trying again later does not help."""

	title = "Sign-in needed"


class OAuthSettingsRefused(SignInError):
	"""The provider refused the app's settings: client id or secret, tenant, scopes, redirect URI."""

	title = "OAuth settings refused"


class AuthorizationDenied(SignInError):
	"""The person (or an admin policy) said no at the provider, or took too long to say yes."""

	title = "Sign-in not authorised"


class TokenServiceUnreachable(TransportError):
	"""The provider's token endpoint did not answer (or answered 5xx): worth trying again later."""

	title = "Sign-in service unreachable"


# -- sending ---------------------------------------------------------------------------------


class SendError(EmailSyncError):
	title = "Sending failed"


class TemporarySendError(SendError):
	"""Worth trying again later (4xx, connection lost, timeout)."""


class PermanentSendError(SendError):
	"""Will not work by trying again (5xx, every recipient refused, message too large)."""


class HeaderInjection(EmailSyncError):
	"""A CR or LF in a value that becomes a header."""

	title = "Invalid header value"
