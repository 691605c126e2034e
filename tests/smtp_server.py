"""Real SMTP servers on loopback for the tests: aiosmtpd in threads, as its own tests run it.

Three servers for the test session, each with a handler that records every message it accepts:
- ``smtp_starttls``: port-587 style, STARTTLS required, AUTH required (over TLS only);
- ``smtp_ssl``: port-465 style, TLS from the first byte (SMTPS), AUTH required;
- ``smtp_plain``: port-25 style, no TLS, no AUTH.
And two that take only the test OAuth server's tokens (checked with its introspection endpoint),
STARTTLS required: ``smtp_oauth`` (XOAUTH2 and OAUTHBEARER), ``smtp_oauthbearer`` (OAUTHBEARER only)
and ``smtp_xoauth2`` (XOAUTH2 only, as Microsoft 365).
Their certificate comes from a trustme CA (``server.ca_file``). Per test, a server can refuse
chosen recipients (4xx or 5xx), answer DATA with a code, drop the connection at DATA, or
announce a small SIZE; ``server.connections`` counts the TCP connections it took.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import ssl
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

from .oauth_server import introspect

HOST = "127.0.0.1"
#: login -> password the servers with AUTH accept (the Dovecot users' too, for the round trip)
SMTP_USERS = {
	"support@example.com": "smtp-secret",
	"alice@example.com": "alice-pass",
	"bob@example.com": "bob-pass",
	"zoe@example.com": "pässwörd",
}


@dataclass(frozen=True)
class Delivery:
	"""One message the server accepted."""

	mail_from: str
	rcpt_tos: tuple[str, ...]
	content: bytes
	connection: int
	secure: bool
	login: str | None


class Recorder:
	"""The aiosmtpd handler: records deliveries and misbehaves on request."""

	def __init__(self):
		self.lock = threading.Lock()
		self.reset()

	def reset(self) -> None:
		with self.lock:
			self.deliveries: list[Delivery] = []
			self.rcpt_replies: dict[str, str] = {}
			self.data_reply: str | None = None
			self.drop_at_data = False
			self.size_limit: int | None = 33554432
			self.connections = 0
			self.failed_logins: list[str] = []

	# -- controls ---------------------------------------------------------------------------

	def refuse(self, address: str, reply: str) -> None:
		"""Answer RCPT TO:<address> with ``reply`` (e.g. "550 5.1.1 No such user")."""
		with self.lock:
			self.rcpt_replies[address.lower()] = reply

	# -- hooks ------------------------------------------------------------------------------

	async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
		reply = self.rcpt_replies.get(address.lower())
		if reply:
			return reply
		envelope.rcpt_tos.append(address)
		envelope.rcpt_options.extend(rcpt_options)
		return "250 OK"

	async def handle_DATA(self, server, session, envelope):
		if self.drop_at_data:
			server.transport.close()
			return "421 4.3.0 going away"
		if self.data_reply:
			return self.data_reply
		login = session.auth_data if session.authenticated else None
		with self.lock:
			self.deliveries.append(
				Delivery(
					envelope.mail_from,
					tuple(envelope.rcpt_tos),
					envelope.original_content,
					getattr(server, "connection_number", 0),
					session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
					login if isinstance(login, str) else None,
				)
			)
		return "250 2.0.0 Message accepted for delivery"

	def authenticate(self, server, session, envelope, mechanism, auth_data):
		if isinstance(auth_data, LoginPassword):
			login, password = auth_data.login.decode("utf-8"), auth_data.password.decode("utf-8")
			if SMTP_USERS.get(login) == password:
				return AuthResult(success=True, auth_data=login)
			with self.lock:
				self.failed_logins.append(login)
		return AuthResult(success=False, handled=False)


class OAuthRecorder(Recorder):
	"""A Recorder whose AUTH takes bearer tokens (XOAUTH2, OAUTHBEARER) the OAuth server vouches for."""

	def __init__(self, oauth_url: str):
		self.oauth_url = oauth_url
		super().__init__()

	def reset(self) -> None:
		super().reset()
		self.mechanisms_used: list[str] = []

	async def auth_XOAUTH2(self, server, args):
		return await self._bearer(server, args, "XOAUTH2")

	async def auth_OAUTHBEARER(self, server, args):
		return await self._bearer(server, args, "OAUTHBEARER")

	async def _bearer(self, server, args, mechanism: str):
		if len(args) > 1:
			try:
				blob = base64.b64decode(args[1], validate=True)
			except ValueError:
				return AuthResult(success=False, handled=False, message="501 5.5.2 Can't decode base64")
		else:
			blob = await server.challenge_auth("")
			if blob is MISSING:
				return AuthResult(success=False, handled=True)
		user, token = _bearer_parts(blob.decode("utf-8", "replace"), mechanism)
		owner = introspect(self.oauth_url, token) if token else None
		if owner is not None and owner == user:
			with self.lock:
				self.mechanisms_used.append(mechanism)
			return AuthResult(success=True, auth_data=user)
		with self.lock:
			self.failed_logins.append(user or "?")
		# the error challenge (RFC 7628 3.2.2); the client answers it with a dummy reply
		error = {"status": "invalid_token" if mechanism == "OAUTHBEARER" else "401", "schemes": "bearer"}
		if await server.challenge_auth(json.dumps(error)) is MISSING:
			return AuthResult(success=False, handled=True)
		return AuthResult(success=False, handled=False)


def _bearer_parts(text: str, mechanism: str) -> tuple[str | None, str | None]:
	fields = text.split("\x01")
	user = token = None
	if mechanism == "OAUTHBEARER":
		header = fields[0].split(",")
		user = next(
			(p[2:].replace("=2C", ",").replace("=3D", "=") for p in header if p.startswith("a=")), None
		)
	for item in fields:
		if item.startswith("user="):
			user = item[5:]
		elif item.lower().startswith("auth=bearer "):
			token = item[12:]
	return user, token


class _Controller(Controller):
	"""A Controller that counts connections and takes the handler's SIZE limit per connection."""

	def factory(self):
		handler: Recorder = self.handler
		with handler.lock:
			handler.connections += 1
			number = handler.connections
		with warnings.catch_warnings():  # "AUTH without requiring TLS": the SMTPS server is TLS throughout
			warnings.simplefilter("ignore", UserWarning)
			smtp = SMTP(handler, **{**self.SMTP_kwargs, "data_size_limit": handler.size_limit})
		smtp.connection_number = number
		return smtp


def _free_port() -> int:
	with socket.socket() as s:
		s.bind((HOST, 0))
		return s.getsockname()[1]


class SmtpServer:
	"""One running aiosmtpd and what a test needs of it."""

	def __init__(
		self, mode: str, ca: trustme.CA, ca_file: str, owns: Path | None = None, oauth_url: str | None = None
	):
		self.mode = mode  # starttls | ssl | plain | oauth | oauthbearer | xoauth2
		self.owns = owns  # a folder (the CA file's) removed on stop
		self.host = HOST
		self.ca_file = ca_file
		self.handler = OAuthRecorder(oauth_url) if oauth_url else Recorder()
		cert = ca.issue_cert("localhost", HOST)
		context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
		cert.configure_cert(context)
		kwargs: dict = {}
		if mode in ("oauth", "oauthbearer", "xoauth2"):
			others = {"oauthbearer": ["XOAUTH2"], "xoauth2": ["OAUTHBEARER"]}.get(mode, [])
			excluded = ["LOGIN", "PLAIN", *others]
			kwargs.update(
				tls_context=context,
				require_starttls=True,
				auth_required=True,
				auth_exclude_mechanism=excluded,
			)
		elif mode == "starttls":
			kwargs.update(
				tls_context=context,
				require_starttls=True,
				authenticator=self.handler.authenticate,
				auth_required=True,
			)
		elif mode == "ssl":
			# TLS from the first byte: aiosmtpd sees no STARTTLS, so it must be told AUTH is fine
			kwargs.update(authenticator=self.handler.authenticate, auth_required=True, auth_require_tls=False)
		for _attempt in range(3):
			self.port = _free_port()
			self.controller = _Controller(
				self.handler,
				hostname=HOST,
				port=self.port,
				server_hostname="mx.test",
				ssl_context=context if mode == "ssl" else None,
				**kwargs,
			)
			try:
				self.controller.start()
				break
			except OSError:
				continue
		self.handler.reset()

	def stop(self) -> None:
		self.controller.stop()
		if self.owns is not None:
			shutil.rmtree(self.owns, ignore_errors=True)

	# -- for the tests ------------------------------------------------------------------------

	@property
	def deliveries(self) -> list[Delivery]:
		with self.handler.lock:
			return list(self.handler.deliveries)

	@property
	def connections(self) -> int:
		return self.handler.connections

	def reset(self) -> None:
		self.handler.reset()

	def refuse(self, address: str, reply: str) -> None:
		self.handler.refuse(address, reply)

	def answer_data(self, reply: str | None) -> None:
		self.handler.data_reply = reply

	def drop_at_data(self, drop: bool = True) -> None:
		self.handler.drop_at_data = drop

	def limit_size(self, size: int | None) -> None:
		self.handler.size_limit = size

	def received_by(self, address: str) -> list[Delivery]:
		return [d for d in self.deliveries if address.lower() in (r.lower() for r in d.rcpt_tos)]

	def account(self, address: str = "support@example.com", **overrides) -> dict:
		"""A mapping for ``account_from_mapping`` that sends through this server."""
		data = {
			"email_id": address,
			"enable_outgoing": True,
			"smtp_server": HOST,
			"smtp_port": self.port,
			"use_tls": self.mode in ("starttls", "oauth", "oauthbearer", "xoauth2"),
			"use_ssl_for_outgoing": self.mode == "ssl",
			"no_smtp_authentication": self.mode == "plain",
			"ca_file": self.ca_file,
			"timeout": 10,
		}
		if self.mode in ("starttls", "ssl"):
			data["password"] = SMTP_USERS.get(address, "smtp-secret")
		data.update(overrides)
		return data


@contextlib.contextmanager
def _servers(prefix: str, modes: tuple[str, ...], **options) -> Iterator[dict[str, SmtpServer]]:
	"""One SMTP server per mode, sharing a certificate authority in a folder of their own; all
	stopped and the folder removed at the end."""
	directory = Path(tempfile.mkdtemp(prefix=prefix))
	ca = trustme.CA()
	ca_file = str(directory / "ca.pem")
	ca.cert_pem.write_to_path(ca_file)
	servers = {mode: SmtpServer(mode, ca, ca_file, **options) for mode in modes}
	try:
		yield servers
	finally:
		for server in servers.values():
			server.stop()
		shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def smtp_servers() -> Iterator[dict[str, SmtpServer]]:
	with _servers("email-sync-smtp-", ("starttls", "ssl", "plain")) as servers:
		yield servers


@pytest.fixture
def smtp_starttls(smtp_servers) -> SmtpServer:
	smtp_servers["starttls"].reset()
	return smtp_servers["starttls"]


@pytest.fixture
def smtp_ssl(smtp_servers) -> SmtpServer:
	smtp_servers["ssl"].reset()
	return smtp_servers["ssl"]


@pytest.fixture
def smtp_plain(smtp_servers) -> SmtpServer:
	smtp_servers["plain"].reset()
	return smtp_servers["plain"]


@pytest.fixture(scope="session")
def oauth_smtp_servers(oauth_session_server) -> Iterator[dict[str, SmtpServer]]:
	modes = ("oauth", "oauthbearer", "xoauth2")
	with _servers("email-sync-smtp-oauth-", modes, oauth_url=oauth_session_server.url) as servers:
		yield servers


@pytest.fixture
def smtp_oauth(oauth_smtp_servers) -> SmtpServer:
	oauth_smtp_servers["oauth"].reset()
	return oauth_smtp_servers["oauth"]


@pytest.fixture
def smtp_oauthbearer(oauth_smtp_servers) -> SmtpServer:
	oauth_smtp_servers["oauthbearer"].reset()
	return oauth_smtp_servers["oauthbearer"]


@pytest.fixture
def smtp_xoauth2(oauth_smtp_servers) -> SmtpServer:
	oauth_smtp_servers["xoauth2"].reset()
	return oauth_smtp_servers["xoauth2"]
