"""Signing in with OAuth 2.0: the device authorization grant (RFC 8628) and the authorization
code grant with PKCE and a loopback redirect (RFC 8252), run once by a person (the CLI's `login`);
the refresh token they give is kept through the ``TokenStore`` port, for ``oauth.TokenSource``.

Invariants:
- The device flow polls no faster than the server asks, five seconds slower after each slow_down,
  and stops at access_denied, expired_token or the code's lifetime.
- The loopback redirect listens on 127.0.0.1 only, at a port the system picks, for one sign-in;
  a request without our ``state`` is turned away and the wait goes on; nothing it receives is
  logged (the query carries the authorization code).
- No code, verifier or token appears in a message: the errors come from ``OAuthClient``.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import AuthorizationDenied, OAuthSettingsRefused
from .oauth import HTTP_TIMEOUT, OAuthClient, OAuthSettings, Token, TokenStore

BROWSER_TIMEOUT = 300.0  # seconds a person has to finish the browser sign-in


@dataclass(frozen=True)
class DevicePrompt:
	"""What to show a person for the device flow: where to go and which code to enter."""

	verification_uri: str
	user_code: str
	verification_uri_complete: str | None
	expires_in: float


def device_flow(
	client: OAuthClient,
	show: Callable[[DevicePrompt], None],
	*,
	sleep: Callable[[float], None] = time.sleep,
	clock: Callable[[], float] = time.monotonic,
) -> Token:
	"""RFC 8628: get a device code, ``show`` the person where to enter the user code, poll the
	token endpoint at the interval the server asks (five seconds more after each slow_down) until
	they approve, decline (access_denied) or the code expires (expired_token)."""
	answer = client.start_device_authorization()
	interval = _number(answer.get("interval"), 5.0)
	expires_in = _number(answer.get("expires_in"), 900.0)
	show(
		DevicePrompt(
			verification_uri=str(answer.get("verification_uri") or answer.get("verification_url") or ""),
			user_code=str(answer["user_code"]),
			verification_uri_complete=answer.get("verification_uri_complete"),
			expires_in=expires_in,
		)
	)
	deadline = clock() + expires_in
	while True:
		sleep(interval)
		if clock() > deadline:
			raise AuthorizationDenied(
				"The sign-in code expired before it was entered.", hint="Run the sign-in again."
			)
		waiting, token = client.poll_device(str(answer["device_code"]))
		if token is not None:
			return token
		if waiting == "slow_down":
			interval += 5.0


def _number(value: Any, default: float) -> float:
	try:
		number = float(value)
	except (TypeError, ValueError):
		return default
	return number if number >= 0 else default


def pkce_pair() -> tuple[str, str]:
	"""(code verifier, S256 code challenge), RFC 7636."""
	verifier = secrets.token_urlsafe(64)
	digest = hashlib.sha256(verifier.encode("ascii")).digest()
	return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class _Redirect(http.server.BaseHTTPRequestHandler):
	"""The loopback redirect: takes the one request that carries our state, ignores the rest."""

	server: _RedirectServer

	def do_GET(self) -> None:
		query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
		values = {k: v[0] for k, v in query.items() if v}
		if values.get("state") != self.server.state or not ("code" in values or "error" in values):
			self._answer(400, "This is not the sign-in this program is waiting for.")
			return
		self.server.result = values
		if "code" in values:
			self._answer(200, "Signed in. You can close this tab and go back to the terminal.")
		else:
			self._answer(200, "The sign-in was not completed. You can close this tab.")

	def _answer(self, status: int, text: str) -> None:
		body = f"<!doctype html><title>email-account-app</title><p>{text}</p>".encode()
		self.send_response(status)
		self.send_header("Content-Type", "text/html; charset=utf-8")
		self.send_header("Content-Length", str(len(body)))
		self.end_headers()
		self.wfile.write(body)

	def log_message(self, format: str, *args: Any) -> None:  # the query carries the code: no logging
		pass


class _RedirectServer(http.server.HTTPServer):
	state: str
	result: dict[str, str] | None = None


def browser_flow(
	client: OAuthClient,
	open_url: Callable[[str], None],
	*,
	timeout: float = BROWSER_TIMEOUT,
	clock: Callable[[], float] = time.monotonic,
) -> Token:
	"""Authorization code with PKCE (S256) and a loopback redirect (RFC 8252): listen on
	127.0.0.1 at a port the system picks, ``open_url`` the authorization URL, take the redirect
	that carries our ``state`` (any other request is turned away), exchange the code."""
	settings = client.settings
	if not settings.authorization_url:
		raise OAuthSettingsRefused(
			f"{settings.provider} has no authorization endpoint configured.",
			hint="Set oauth_authorization_url, or choose oauth_flow device.",
		)
	verifier, challenge = pkce_pair()
	server = _RedirectServer(("127.0.0.1", 0), _Redirect)
	server.state = secrets.token_urlsafe(24)
	server.timeout = 0.5
	try:
		redirect_uri = f"http://{settings.redirect_host}:{server.server_address[1]}"
		params = {
			"response_type": "code",
			"client_id": settings.client_id,
			"redirect_uri": redirect_uri,
			"scope": settings.scope,
			"state": server.state,
			"code_challenge": challenge,
			"code_challenge_method": "S256",
			**dict(settings.authorization_params),
		}
		separator = "&" if "?" in settings.authorization_url else "?"
		open_url(settings.authorization_url + separator + urllib.parse.urlencode(params))
		deadline = clock() + timeout
		while server.result is None:
			if clock() > deadline:
				raise AuthorizationDenied(
					f"No sign-in came back within {timeout:.0f} seconds.",
					hint="Run the sign-in again and finish it in the browser.",
				)
			server.handle_request()
		result = server.result
	finally:
		server.server_close()
	if "error" in result:
		words = result["error"] + (
			f": {result['error_description']}" if result.get("error_description") else ""
		)
		raise AuthorizationDenied(
			f"The sign-in was not completed at the provider ({words}).",
			hint="Sign in again and accept; if an admin must consent first, ask them to.",
		)
	return client.exchange_code(result["code"], redirect_uri, verifier)


def sign_in(
	account: str,
	settings: OAuthSettings,
	store: TokenStore | None,
	*,
	show_device_prompt: Callable[[DevicePrompt], None],
	open_url: Callable[[str], None],
	ca_file: str | None = None,
	sleep: Callable[[float], None] = time.sleep,
	timeout: float = HTTP_TIMEOUT,
) -> Token:
	"""Run the account's flow and keep its refresh token; the token it got (to say until when).

	Client credentials need no sign-in: the grant is tried once, so the settings are checked."""
	client = OAuthClient(settings, account=account, ca_file=ca_file, timeout=timeout)
	if settings.flow == "client_credentials":
		return client.client_credentials()
	if settings.flow == "device":
		token = device_flow(client, show_device_prompt, sleep=sleep)
	else:
		token = browser_flow(client, open_url)
	if not token.refresh_token:
		raise OAuthSettingsRefused(
			"The provider signed in but gave no refresh token, so the sign-in would last only an hour.",
			hint="Add offline_access to oauth_scopes (Microsoft), or check the app's settings.",
		)
	if store is not None:
		store.save_refresh_token(account, token.refresh_token)
	return token
