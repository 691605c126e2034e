"""A small OAuth 2.0 authorization server on loopback for the tests (stdlib http.server in a thread).

It speaks enough of the real protocols for the engine and the CLI to sign in against it, and for
Dovecot's oauth2 passdb and the test SMTP server to check the tokens it issues:
- device authorization grant (RFC 8628): approved on the ``approve_after``-th poll, for the user
  ``approve_as``; with ``slow_down_once`` the first poll answers slow_down; ``deny`` answers
  access_denied;
- authorization code with PKCE (RFC 7636, S256 only): GET /authorize approves at once (as a
  person who is already signed in would) and redirects to the client's loopback redirect URI;
- refresh with rotation: each refresh gives a new refresh token; the old one keeps working
  until an access token of its successor is first presented (introspected), then it is retired,
  as providers with a reuse grace period do;
- client credentials (app-only) for ``app_client`` with ``app_secret``, for the user ``app_user``;
- access tokens that live ``access_lifetime`` seconds (``expire_access_tokens()`` ends them all
  at once), revocation (RFC 7009 /revoke, or ``revoke_user``);
- token introspection (RFC 7662, POST /introspect) and a tokeninfo endpoint (GET
  /tokeninfo?access_token=), which is what Dovecot and the SMTP server ask.
``on_introspect`` (a callable taking the user name) runs before an introspection is answered.
It never logs a request: the tests check that no token leaks, and its own log must not be one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HOST = "127.0.0.1"
CLIENT_ID = "test-client"
APP_CLIENT = "test-app"
APP_SECRET = "app-secret-value-5d1f"
SCOPES = ("mail", "offline_access")


@dataclass
class Grant:
	user: str
	client_id: str
	scope: str
	revoked: bool = False
	#: refresh token -> whether it still works
	refresh_tokens: dict[str, bool] = field(default_factory=dict)


@dataclass
class AccessToken:
	grant: Grant
	expires_at: float
	#: the refresh token this one was issued by (retired when this one is first used)
	retires: str | None = None


class OAuthServer:
	"""The running server; the attributes below are the knobs a test turns."""

	def __init__(self):
		self.lock = threading.RLock()
		self.reset()
		self.httpd = ThreadingHTTPServer((HOST, 0), _Handler)
		self.httpd.daemon_threads = True
		self.httpd.oauth = self
		self.port = self.httpd.server_address[1]
		self.url = f"http://{HOST}:{self.port}"
		self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
		self.thread.start()

	def reset(self) -> None:
		with self.lock:
			self.approve_as = "alice@example.com"
			self.app_user = "alice@example.com"
			self.approve_after = 2
			self.slow_down_once = False
			self.deny = False
			self.interval = 0
			self.access_lifetime = 60.0
			self.rotate = True
			#: the app client authenticates with HTTP Basic only (RFC 6749 2.3.1), not in the form
			self.basic_only = False
			self.on_introspect: Callable[[str], None] | None = None
			self.grants: list[Grant] = []
			self.access_tokens: dict[str, AccessToken] = {}
			self.devices: dict[str, dict] = {}
			self.codes: dict[str, dict] = {}
			self.requests: list[str] = []
			self.polls: list[float] = []

	def stop(self) -> None:
		self.httpd.shutdown()
		self.httpd.server_close()

	# -- for the tests ---------------------------------------------------------------------------

	@property
	def endpoints(self) -> dict[str, str]:
		"""The account keys of a custom provider that is this server."""
		return {
			"oauth_token_url": f"{self.url}/token",
			"oauth_device_authorization_url": f"{self.url}/devicecode",
			"oauth_authorization_url": f"{self.url}/authorize",
		}

	def account(self, flow: str = "device", **overrides) -> dict:
		data = {
			"auth_method": "OAuth",
			"oauth_provider": "custom",
			"oauth_client_id": CLIENT_ID,
			"oauth_scopes": list(SCOPES),
			"oauth_flow": flow,
			**self.endpoints,
		}
		if flow == "client_credentials":
			data.update(oauth_client_id=APP_CLIENT, oauth_client_secret=APP_SECRET)
		data.update(overrides)
		return data

	def expire_access_tokens(self) -> None:
		with self.lock:
			for token in self.access_tokens.values():
				token.expires_at = 0

	def revoke_user(self, user: str) -> None:
		with self.lock:
			for grant in self.grants:
				if grant.user == user:
					grant.revoked = True

	def issued_tokens(self) -> set[str]:
		"""Every access and refresh token this server ever issued."""
		with self.lock:
			tokens = set(self.access_tokens)
			for grant in self.grants:
				tokens |= set(grant.refresh_tokens)
			return tokens

	def live_refresh_tokens(self) -> set[str]:
		with self.lock:
			return {t for g in self.grants if not g.revoked for t, ok in g.refresh_tokens.items() if ok}

	def sign_in(self, user: str | None = None, scope: str = " ".join(SCOPES)) -> dict:
		"""What the token endpoint answers at the end of a person's sign-in (as ``user``, by default
		``approve_as``): an access token and a refresh token, for a program that runs the
		authorization itself (a Frappe site's Connected App)."""
		with self.lock:
			grant = Grant(user or self.approve_as, CLIENT_ID, scope)
			self.grants.append(grant)
			return self.issue(grant, refresh=True)

	def grant_for_app(self) -> Grant:
		grant = Grant(self.app_user, APP_CLIENT, "mail")
		self.grants.append(grant)
		return grant

	# -- issuing ---------------------------------------------------------------------------------

	def issue(self, grant: Grant, *, refresh: bool, retires: str | None = None) -> dict:
		access = secrets.token_urlsafe(32)
		self.access_tokens[access] = AccessToken(grant, time.time() + self.access_lifetime, retires)
		answer = {
			"access_token": access,
			"token_type": "Bearer",
			"expires_in": self.access_lifetime,
			"scope": grant.scope,
		}
		if refresh:
			token = secrets.token_urlsafe(32)
			grant.refresh_tokens[token] = True
			answer["refresh_token"] = token
		return answer

	def introspect(self, token: str) -> dict:
		with self.lock:
			found = self.access_tokens.get(token)
			if found is None or found.grant.revoked or found.expires_at <= time.time():
				return {"active": False}
			if found.retires:
				found.grant.refresh_tokens[found.retires] = False
				found.retires = None
			answer = {
				"active": True,
				"username": found.grant.user,
				"scope": found.grant.scope,
				"client_id": found.grant.client_id,
				"exp": int(found.expires_at),
				"token_type": "Bearer",
			}
			hook = self.on_introspect
		if hook is not None:
			hook(found.grant.user)
		return answer


def _error(code: str, description: str = "", status: int = 400) -> tuple[int, dict]:
	return status, {"error": code, **({"error_description": description} if description else {})}


class _Handler(BaseHTTPRequestHandler):
	server: ThreadingHTTPServer

	@property
	def oauth(self) -> OAuthServer:
		return self.server.oauth

	def log_message(self, format, *args) -> None:
		pass

	def _form(self) -> dict[str, str]:
		length = int(self.headers.get("Content-Length") or 0)
		body = self.rfile.read(length).decode("utf-8")
		return {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}

	def _json(self, status: int, payload: dict) -> None:
		body = json.dumps(payload).encode()
		self.send_response(status)
		self.send_header("Content-Type", "application/json")
		self.send_header("Content-Length", str(len(body)))
		self.send_header("Cache-Control", "no-store")
		self.end_headers()
		self.wfile.write(body)

	def do_POST(self) -> None:
		path = urllib.parse.urlsplit(self.path).path
		form = self._form()
		self.oauth.requests.append(path)
		routes = {
			"/token": self._token,
			"/devicecode": self._devicecode,
			"/introspect": lambda f: (200, self.oauth.introspect(f.get("token", ""))),
			"/revoke": self._revoke,
		}
		if path not in routes:
			self._json(404, {"error": "not_found"})
			return
		self._json(*routes[path](form))

	def do_GET(self) -> None:
		parts = urllib.parse.urlsplit(self.path)
		query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query).items()}
		self.oauth.requests.append(parts.path)
		if parts.path == "/tokeninfo":
			self._json(200, self.oauth.introspect(query.get("access_token", "")))
		elif parts.path == "/authorize":
			self._authorize(query)
		else:
			self._json(404, {"error": "not_found"})

	# -- endpoints -------------------------------------------------------------------------------

	def _devicecode(self, form: dict[str, str]) -> tuple[int, dict]:
		oauth = self.oauth
		if form.get("client_id") != CLIENT_ID:
			return _error("invalid_client", "unknown client")
		device_code, user_code = secrets.token_urlsafe(24), secrets.token_hex(4).upper()
		with oauth.lock:
			oauth.devices[device_code] = {"polls": 0, "scope": form.get("scope", ""), "slowed": False}
		return 200, {
			"device_code": device_code,
			"user_code": user_code,
			"verification_uri": f"{oauth.url}/device",
			"expires_in": 600,
			"interval": oauth.interval,
		}

	def _authorize(self, query: dict[str, str]) -> None:
		oauth = self.oauth
		redirect = query.get("redirect_uri", "")
		host = urllib.parse.urlsplit(redirect).hostname
		if query.get("client_id") != CLIENT_ID or host not in ("127.0.0.1", "localhost"):
			self._json(400, {"error": "invalid_request", "error_description": "bad client or redirect"})
			return
		if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
			params = {"error": "invalid_request", "state": query.get("state", "")}
		elif oauth.deny:
			params = {"error": "access_denied", "state": query.get("state", "")}
		else:
			code = secrets.token_urlsafe(24)
			with oauth.lock:
				oauth.codes[code] = {
					"challenge": query["code_challenge"],
					"redirect_uri": redirect,
					"scope": query.get("scope", ""),
				}
			params = {"code": code, "state": query.get("state", "")}
		self.send_response(302)
		self.send_header("Location", redirect + "/?" + urllib.parse.urlencode(params))
		self.send_header("Content-Length", "0")
		self.end_headers()

	def _revoke(self, form: dict[str, str]) -> tuple[int, dict]:
		token = form.get("token", "")
		with self.oauth.lock:
			for grant in self.oauth.grants:
				if token in grant.refresh_tokens:
					grant.revoked = True
			found = self.oauth.access_tokens.get(token)
			if found:
				found.expires_at = 0
		return 200, {}

	def _token(self, form: dict[str, str]) -> tuple[int, dict]:
		oauth = self.oauth
		grant_type = form.get("grant_type")
		with oauth.lock:
			if grant_type == "client_credentials":
				client_id, secret = self._basic_credentials() or (
					form.get("client_id"),
					form.get("client_secret"),
				)
				if oauth.basic_only and "client_secret" in form:
					return _error("invalid_client", "use HTTP Basic", 401)
				if client_id != APP_CLIENT or secret != APP_SECRET:
					return _error("invalid_client", "client authentication failed", 401)
				return 200, oauth.issue(oauth.grant_for_app(), refresh=False)
			if form.get("client_id") != CLIENT_ID:
				return _error("invalid_client", "unknown client", 401)
			if grant_type == "refresh_token":
				return self._refresh(form.get("refresh_token", ""))
			if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
				return self._device_poll(form.get("device_code", ""))
			if grant_type == "authorization_code":
				return self._code(form)
		return _error("unsupported_grant_type")

	def _basic_credentials(self) -> tuple[str, str] | None:
		header = self.headers.get("Authorization") or ""
		if not header.startswith("Basic "):
			return None
		client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
		return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)

	def _refresh(self, token: str) -> tuple[int, dict]:
		oauth = self.oauth
		grant = next((g for g in oauth.grants if token in g.refresh_tokens), None)
		if grant is None or grant.revoked or not grant.refresh_tokens[token]:
			return _error("invalid_grant", "the refresh token is revoked, expired or unknown")
		if not oauth.rotate:
			return 200, {**oauth.issue(grant, refresh=False)}
		answer = oauth.issue(grant, refresh=True)
		oauth.access_tokens[answer["access_token"]].retires = token
		return 200, answer

	def _device_poll(self, device_code: str) -> tuple[int, dict]:
		oauth = self.oauth
		device = oauth.devices.get(device_code)
		if device is None:
			return _error("expired_token")
		oauth.polls.append(time.monotonic())
		device["polls"] += 1
		if oauth.deny:
			return _error("access_denied")
		if oauth.slow_down_once and not device["slowed"]:
			device["slowed"] = True
			return _error("slow_down")
		if device["polls"] < oauth.approve_after:
			return _error("authorization_pending")
		del oauth.devices[device_code]
		grant = Grant(oauth.approve_as, CLIENT_ID, device["scope"])
		oauth.grants.append(grant)
		return 200, oauth.issue(grant, refresh=True)

	def _code(self, form: dict[str, str]) -> tuple[int, dict]:
		oauth = self.oauth
		found = oauth.codes.pop(form.get("code", ""), None)
		if found is None:
			return _error("invalid_grant", "unknown or used code")
		if form.get("redirect_uri") != found["redirect_uri"]:
			return _error("invalid_grant", "redirect_uri differs")
		verifier = form.get("code_verifier", "")
		challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
		if challenge != found["challenge"]:
			return _error("invalid_grant", "PKCE verification failed")
		grant = Grant(oauth.approve_as, CLIENT_ID, found["scope"])
		oauth.grants.append(grant)
		return 200, oauth.issue(grant, refresh=True)


def introspect(url: str, token: str, timeout: float = 10) -> str | None:
	"""The user a token belongs to, asked of the introspection endpoint at ``url``; None if inactive."""
	import urllib.request

	data = urllib.parse.urlencode({"token": token}).encode()
	with urllib.request.urlopen(f"{url}/introspect", data=data, timeout=timeout) as response:
		answer = json.loads(response.read())
	return answer.get("username") if answer.get("active") else None


@pytest.fixture(scope="session")
def oauth_session_server() -> Iterator[OAuthServer]:
	server = OAuthServer()
	try:
		yield server
	finally:
		server.stop()


@pytest.fixture
def oauth_server(oauth_session_server: OAuthServer) -> OAuthServer:
	"""The session's OAuth server with its knobs and grants reset."""
	oauth_session_server.reset()
	return oauth_session_server
