"""OAuth 2.0 sign-in: settings and provider presets, the token endpoint, and the token source the
mail transports ask for access tokens. The flows a person signs in with once are in oauth_login.py.

Invariants:
- A refresh token the provider rotates is saved through the ``TokenStore`` port before the access
  token that came with it is handed to anyone: a crash in between leaves the new refresh token
  saved, never only the old one (which a rotating provider may retire once the new one is used).
- No token (access or refresh), client secret, authorization code or PKCE verifier ever appears in
  an error message, a log line or a ``repr``: dataclasses hide them, the provider's words are
  scrubbed of them, and nothing here logs a request or a response body.
- The token source refreshes ahead of expiry (a tenth of the token's lifetime, at most a minute)
  and once more after a mail server refused a token (``refused``): a token revoked or expired
  early on the server's side costs one refresh, not a failed pull. A store that keeps the access
  token too (``SharedTokenStore``: a Frappe site's Token Cache, which core's own code reads as
  well) has its kept token used while it is fresh by the same rule, never one a server refused,
  and gets each new token (with a rotated refresh token) before it is handed out.
- HTTP goes through the standard library (urllib) with a timeout, over https, or plain http only
  to a loopback address (a provider running on this machine, as in the tests).
- Errors say what a person can do: sign in again (``SignInRequired``), fix the app's settings
  (``OAuthSettingsRefused``), or nothing, as the next run tries again (``TokenServiceUnreachable``).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import secrets
from .errors import (
	AuthorizationDenied,
	OAuthSettingsRefused,
	SignInError,
	SignInRequired,
	TokenServiceUnreachable,
)

log = logging.getLogger(__name__)

PROVIDERS = ("microsoft", "google", "custom")
FLOWS = ("device", "browser", "client_credentials")

MICROSOFT_LOGIN = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/{endpoint}"
MICROSOFT_SCOPES = (
	"https://outlook.office.com/IMAP.AccessAsUser.All",
	"https://outlook.office.com/POP.AccessAsUser.All",
	"https://outlook.office.com/SMTP.Send",
	"offline_access",
)
MICROSOFT_APP_SCOPES = ("https://outlook.office365.com/.default",)
GOOGLE_SCOPES = ("https://mail.google.com/",)
#: tenants that are no single directory: fine for a person signing in, not for app-only access
MICROSOFT_MULTI_TENANTS = ("organizations", "common", "consumers")

#: what a provider preset fills in: endpoints, scopes, the default flow, and the mail servers
PRESETS: dict[str, dict[str, Any]] = {
	"microsoft": {
		"tenant": "organizations",
		"flow": "device",
		"scopes": MICROSOFT_SCOPES,
		# Entra matches a redirect URI registered as http://localhost on any port
		"redirect_host": "localhost",
		"servers": {
			"email_server": "outlook.office365.com",
			"incoming_port": 993,
			"use_imap": True,
			"use_ssl": True,
			"use_starttls": False,
			"smtp_server": "smtp.office365.com",
			"smtp_port": 587,
			"use_tls": True,
			"use_ssl_for_outgoing": False,
		},
	},
	"google": {
		"token_url": "https://oauth2.googleapis.com/token",
		"device_authorization_url": "https://oauth2.googleapis.com/device/code",
		"authorization_url": "https://accounts.google.com/o/oauth2/v2/auth",
		# Google's device flow does not grant the mail scope: Gmail needs the browser flow
		"flow": "browser",
		"scopes": GOOGLE_SCOPES,
		"redirect_host": "127.0.0.1",
		# without these Google gives a refresh token only on the first consent
		"authorization_params": {"access_type": "offline", "prompt": "consent"},
		"servers": {
			"email_server": "imap.gmail.com",
			"incoming_port": 993,
			"use_imap": True,
			"use_ssl": True,
			"use_starttls": False,
			"smtp_server": "smtp.gmail.com",
			"smtp_port": 587,
			"use_tls": True,
			"use_ssl_for_outgoing": False,
		},
	},
	"custom": {"redirect_host": "127.0.0.1"},
}

#: the mapping keys (TOML, a DocType's fields) this module reads
KEYS = (
	"auth_method",
	"oauth_provider",
	"oauth_client_id",
	"oauth_client_secret",
	"oauth_tenant",
	"oauth_scopes",
	"oauth_flow",
	"oauth_token_url",
	"oauth_device_authorization_url",
	"oauth_authorization_url",
)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_LIFETIME = 3600  # seconds, when the provider does not say (expires_in)
MAX_MARGIN = 60.0  # refresh at most this long before expiry
HTTP_TIMEOUT = 30.0
MAX_BODY = 1024 * 1024


# -- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OAuthSettings:
	"""How an account signs in with OAuth 2.0: the provider's endpoints, the app and the scopes."""

	provider: str
	client_id: str
	flow: str
	scopes: tuple[str, ...]
	token_url: str
	device_authorization_url: str | None = None
	authorization_url: str | None = None
	tenant: str | None = None
	client_secret: str | None = field(default=None, repr=False)
	redirect_host: str = "127.0.0.1"
	authorization_params: tuple[tuple[str, str], ...] = ()

	@property
	def scope(self) -> str:
		return " ".join(self.scopes)


def is_oauth(data: Mapping[str, Any]) -> bool:
	return str(data.get("auth_method") or "").strip().lower() == "oauth"


def provider_servers(data: Mapping[str, Any]) -> dict[str, Any]:
	"""The mail servers a provider preset fills in for an OAuth account (none for ``custom``)."""
	if not is_oauth(data):
		return {}
	provider = str(data.get("oauth_provider") or "").strip().lower()
	return dict(PRESETS.get(provider, {}).get("servers", {}))


def oauth_from_mapping(data: Mapping[str, Any], problems: list[str]) -> OAuthSettings | None:
	"""The OAuth settings of an account mapping (core Email Account's ``auth_method`` and our
	``oauth_*`` keys); each thing that cannot work goes into ``problems`` in plain words."""
	given = [k for k in KEYS if k != "auth_method" and data.get(k) not in (None, "", [], ())]
	method = str(data.get("auth_method") or "Basic").strip()
	if method.lower() not in ("basic", "oauth"):
		problems.append(f'auth_method must be "Basic" (a password) or "OAuth", not {method!r}')
		return None
	if method.lower() != "oauth":
		if given:
			problems.append(f'{", ".join(given)} need auth_method = "OAuth"')
		return None

	provider = _text(data.get("oauth_provider"))
	if not provider:
		problems.append('auth_method "OAuth" needs oauth_provider: "microsoft", "google" or "custom"')
		return None
	provider = provider.lower()
	if provider not in PROVIDERS:
		problems.append(f'oauth_provider must be "microsoft", "google" or "custom", not {provider!r}')
		return None
	preset = PRESETS[provider]
	count = len(problems)

	client_id = _text(data.get("oauth_client_id"))
	if not client_id:
		problems.append("oauth_client_id is missing (the application or client id of the app you registered)")
	flow = (_text(data.get("oauth_flow")) or "").lower() or _default_flow(provider, data)
	if flow not in FLOWS:
		problems.append(f'oauth_flow must be "device", "browser" or "client_credentials", not {flow!r}')
	secret = data.get("oauth_client_secret") or None
	tenant = _text(data.get("oauth_tenant"))
	if tenant and provider != "microsoft":
		problems.append("oauth_tenant is for oauth_provider microsoft only")
	scopes = _scopes(data.get("oauth_scopes"), problems)

	urls = {
		"token_url": _text(data.get("oauth_token_url")),
		"device_authorization_url": _text(data.get("oauth_device_authorization_url")),
		"authorization_url": _text(data.get("oauth_authorization_url")),
	}
	if provider == "microsoft":
		tenant = tenant or preset["tenant"]
		for key, endpoint in (
			("token_url", "token"),
			("device_authorization_url", "devicecode"),
			("authorization_url", "authorize"),
		):
			urls[key] = urls[key] or MICROSOFT_LOGIN.format(
				tenant=urllib.parse.quote(tenant, safe=""), endpoint=endpoint
			)
		if scopes is None:
			scopes = MICROSOFT_APP_SCOPES if flow == "client_credentials" else MICROSOFT_SCOPES
		if flow == "client_credentials" and tenant.lower() in MICROSOFT_MULTI_TENANTS:
			problems.append(
				"app-only access (oauth_flow client_credentials) needs oauth_tenant set to your tenant "
				f"(its id or a domain of it such as contoso.onmicrosoft.com), not {tenant!r}"
			)
		if flow in ("device", "browser") and "offline_access" not in scopes:
			problems.append("oauth_scopes lack offline_access: without it Microsoft gives no refresh token")
	elif provider == "google":
		for key in urls:
			urls[key] = urls[key] or preset[key]
		scopes = GOOGLE_SCOPES if scopes is None else scopes
		if flow == "device" and "https://mail.google.com/" in scopes:
			problems.append(
				"Google's device flow does not grant the mail scope (https://mail.google.com/): set "
				'oauth_flow = "browser" and use a client of type "Desktop app"'
			)
		if flow == "client_credentials":
			problems.append(
				"Google has no client-credentials grant for mail (it uses service accounts): choose "
				'oauth_flow = "browser"'
			)
	else:
		scopes = () if scopes is None else scopes
		if not urls["token_url"]:
			problems.append("oauth_provider custom needs oauth_token_url")
		if flow == "device" and not urls["device_authorization_url"]:
			problems.append("oauth_flow device needs oauth_device_authorization_url")
		if flow == "browser" and not urls["authorization_url"]:
			problems.append("oauth_flow browser needs oauth_authorization_url")
	if flow == "client_credentials" and not secret:
		problems.append("app-only access (oauth_flow client_credentials) needs a client secret")
	for key, url in urls.items():
		if url and not _acceptable_url(url):
			problems.append(
				f"oauth_{key} {url!r} must be an https:// URL (plain http only to this machine: 127.0.0.1)"
			)
	if len(problems) > count:
		return None
	return OAuthSettings(
		provider=provider,
		client_id=client_id or "",
		flow=flow,
		scopes=tuple(scopes),
		token_url=urls["token_url"] or "",
		device_authorization_url=urls["device_authorization_url"],
		authorization_url=urls["authorization_url"],
		tenant=tenant,
		client_secret=str(secret) if secret else None,
		redirect_host=preset["redirect_host"],
		authorization_params=tuple(preset.get("authorization_params", {}).items()),
	)


def _default_flow(provider: str, data: Mapping[str, Any]) -> str:
	if provider == "custom":
		if data.get("oauth_device_authorization_url"):
			return "device"
		return "browser" if data.get("oauth_authorization_url") else "device"
	return PRESETS[provider]["flow"]


def _scopes(raw: Any, problems: list[str]) -> tuple[str, ...] | None:
	if raw is None or raw == "":
		return None
	if isinstance(raw, str):
		raw = raw.split()
	if not isinstance(raw, list | tuple) or not all(isinstance(s, str) and s.strip() for s in raw):
		problems.append(f"oauth_scopes must be a list of strings, not {raw!r}")
		return None
	return tuple(s.strip() for s in raw)


def _text(value: Any) -> str | None:
	value = str(value).strip() if value is not None else ""
	return value or None


def _acceptable_url(url: str) -> bool:
	parts = urllib.parse.urlsplit(url)
	if parts.scheme == "https" and parts.hostname:
		return True
	return parts.scheme == "http" and _is_loopback(parts.hostname or "")


def _is_loopback(host: str) -> bool:
	if host == "localhost":
		return True
	try:
		return ipaddress.ip_address(host).is_loopback
	except ValueError:
		return False


# -- the token endpoint ----------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
	"""What a token endpoint answered: an access token, when it expires, perhaps a refresh token."""

	access_token: str = field(repr=False)
	expires_at: float
	lifetime: float
	refresh_token: str | None = field(default=None, repr=False)
	scope: str | None = None


class TokenStore(Protocol):
	"""Where an account's refresh token is kept between runs (the CLI: its SQLite file)."""

	def load_refresh_token(self, account: str) -> str | None: ...

	def save_refresh_token(self, account: str, refresh_token: str) -> None:
		"""Keep ``refresh_token`` durably before returning (it replaces the one kept before)."""

	def forget_refresh_token(self, account: str) -> bool:
		"""Forget it; whether there was one."""


class SharedTokenStore(TokenStore, Protocol):
	"""A store that keeps the access token as well, where other programs (or other runs) use the
	same sign-in: a Frappe site's Token Cache, which core's own mail code reads too."""

	def load_access_token(self, account: str) -> Token | None:
		"""The access token kept for ``account`` and when it expires, if one is kept."""

	def save_token(self, account: str, token: Token) -> None:
		"""Keep ``token``'s access token and, when it carries one, its refresh token (replacing the
		one kept before), durably and in one step, before returning."""


class OAuthClient:
	"""Talks to one provider's endpoints for one app (client id)."""

	def __init__(
		self,
		settings: OAuthSettings,
		*,
		account: str = "",
		sign_in_hint: str | None = None,
		ca_file: str | None = None,
		timeout: float = HTTP_TIMEOUT,
		clock: Callable[[], float] = time.time,
	):
		self.settings = settings
		self.account = account
		self.sign_in_hint = sign_in_hint or "Sign in again."
		self.timeout = timeout
		self.clock = clock
		self._context = ssl.create_default_context(cafile=ca_file)
		self._secrets: set[str] = {settings.client_secret} if settings.client_secret else set()
		self._basic = False  # client authentication in HTTP Basic rather than the form

	# -- grants ------------------------------------------------------------------------------

	def refresh(self, refresh_token: str) -> Token:
		self._secrets.add(refresh_token)
		form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
		return self._token_request(form, during="refresh")

	def client_credentials(self) -> Token:
		return self._token_request({"grant_type": "client_credentials"}, during="client_credentials")

	def exchange_code(self, code: str, redirect_uri: str, verifier: str) -> Token:
		self._secrets.update((code, verifier))
		form = {
			"grant_type": "authorization_code",
			"code": code,
			"redirect_uri": redirect_uri,
			"code_verifier": verifier,
		}
		return self._token_request(form, during="code")

	def start_device_authorization(self) -> dict[str, Any]:
		"""RFC 8628 3.1-3.2: the device code, the user code and where to enter it."""
		url = self.settings.device_authorization_url
		if not url:
			raise OAuthSettingsRefused(
				f"{self.settings.provider} has no device authorization endpoint configured.",
				hint="Set oauth_device_authorization_url, or choose oauth_flow browser.",
			)
		status, payload = self._post(url, self._client_form({"scope": self.settings.scope}))
		if status != 200 or not payload.get("device_code") or not payload.get("user_code"):
			raise self._error(status, payload, during="device")
		self._secrets.add(str(payload["device_code"]))
		return payload

	def poll_device(self, device_code: str) -> tuple[str | None, Token | None]:
		"""One poll of the token endpoint: (error code, None) while waiting, (None, token) when done."""
		status, payload = self._post(
			self.settings.token_url,
			self._client_form({"grant_type": DEVICE_GRANT, "device_code": device_code}),
		)
		error = payload.get("error")
		if status == 200 and payload.get("access_token"):
			return None, self._token(payload)
		if error in ("authorization_pending", "slow_down"):
			return error, None
		raise self._error(status, payload, during="device")

	# -- plumbing ----------------------------------------------------------------------------

	def _client_form(self, form: dict[str, str]) -> dict[str, str]:
		form = {**form, "client_id": self.settings.client_id}
		if self.settings.client_secret:
			form["client_secret"] = self.settings.client_secret
		return form

	def _token_request(self, form: dict[str, str], *, during: str) -> Token:
		form = self._client_form(form)
		if self.settings.scopes and during != "code":
			form["scope"] = self.settings.scope
		status, payload = self._post(self.settings.token_url, form)
		if status == 200 and payload.get("access_token"):
			return self._token(payload)
		raise self._error(status, payload, during=during)

	def _token(self, payload: Mapping[str, Any]) -> Token:
		access = str(payload["access_token"])
		refresh = payload.get("refresh_token")
		self._secrets.add(access)
		if refresh:
			self._secrets.add(str(refresh))
		try:
			lifetime = float(payload.get("expires_in") or DEFAULT_LIFETIME)
		except (TypeError, ValueError):
			lifetime = DEFAULT_LIFETIME
		return Token(
			access, self.clock() + lifetime, lifetime, str(refresh) if refresh else None, payload.get("scope")
		)

	def _post(self, url: str, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
		"""POST ``form`` with the client's credentials: the secret in the form (as Microsoft and
		Google take it), or, when the server refuses that as invalid_client, in HTTP Basic
		authentication (RFC 6749 2.3.1), which every server must take; that choice is kept."""
		secret = self.settings.client_secret
		if secret and not self._basic:
			status, payload = self._send(url, form)
			if status not in (400, 401) or payload.get("error") != "invalid_client":
				return status, payload
			self._basic = True
		if secret:
			form = {k: v for k, v in form.items() if k != "client_secret"}
			pair = f"{_form_quote(self.settings.client_id)}:{_form_quote(secret)}"
			return self._send(
				url, form, {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
			)
		return self._send(url, form)

	def _send(
		self, url: str, form: Mapping[str, str], headers: Mapping[str, str] | None = None
	) -> tuple[int, dict[str, Any]]:
		"""POST ``form``; (HTTP status, JSON object). Unreachable or not JSON: TokenServiceUnreachable."""
		host = urllib.parse.urlsplit(url).netloc
		request = urllib.request.Request(
			url,
			data=urllib.parse.urlencode(form).encode("ascii"),
			headers={
				"Accept": "application/json",
				"Content-Type": "application/x-www-form-urlencoded",
				**(headers or {}),
			},
		)
		context = self._context if url.startswith("https:") else None
		try:
			with urllib.request.urlopen(request, timeout=self.timeout, context=context) as response:
				status, body = response.status, response.read(MAX_BODY)
		except urllib.error.HTTPError as exc:
			status, body = exc.code, exc.read(MAX_BODY)
		except (urllib.error.URLError, OSError, ValueError) as exc:
			reason = getattr(exc, "reason", None) or exc
			raise TokenServiceUnreachable(
				f"The sign-in service {host} did not answer ({self._scrub(str(reason))}).",
				hint="Nothing is lost: the next run tries again. Check this machine's network if it lasts.",
			) from None
		try:
			payload = json.loads(body.decode("utf-8", "replace")) if body else {}
		except ValueError:
			payload = None
		if not isinstance(payload, dict):
			raise TokenServiceUnreachable(
				f"The sign-in service {host} answered HTTP {status} with something that is not JSON.",
				hint="Nothing is lost: the next run tries again. If it lasts, check the endpoint URLs.",
			)
		return status, payload

	def _scrub(self, text: str) -> str:
		"""``text`` without any form of the client secret or a token (see ``secrets``)."""
		return secrets.scrub(text, *self._secrets)

	def _error(self, status: int, payload: Mapping[str, Any], *, during: str) -> SignInError | Exception:
		"""The engine's error for a refusal of the token (or device) endpoint, in words to act on."""
		code = str(payload.get("error") or f"HTTP {status}")
		description = " ".join(self._scrub(str(payload.get("error_description") or "")).split())[:400]
		words = f"{code}: {description}" if description else code
		who = f"{self.account!r}" if self.account else "the account"
		if status >= 500 or status == 429 or code in ("temporarily_unavailable", "server_error"):
			return TokenServiceUnreachable(
				f"The sign-in service is unavailable for now ({words}).",
				hint="Nothing is lost: the next run tries again.",
			)
		if code == "invalid_grant" and during == "refresh":
			return SignInRequired(
				f"The provider no longer accepts the sign-in of {who} ({words}): consent was revoked, "
				"the password changed, or the sign-in expired.",
				hint=self.sign_in_hint,
			)
		if code == "invalid_grant":
			return AuthorizationDenied(
				f"The provider refused the sign-in ({words}).",
				hint="Sign in again; do it within a few minutes.",
			)
		if code == "access_denied":
			return AuthorizationDenied(
				f"The sign-in was declined at the provider ({words}).",
				hint="Sign in again and accept; if an admin must consent first, ask them to.",
			)
		if code == "expired_token":
			return AuthorizationDenied(
				"The sign-in code expired before it was entered.", hint="Run the sign-in again."
			)
		if "AADSTS90002" in description or "AADSTS90023" in description or "AADSTS900023" in description:
			return OAuthSettingsRefused(
				f"Microsoft does not know the tenant {self.settings.tenant!r} ({words}).",
				hint="Set oauth_tenant to your tenant id or one of its domains (or organizations).",
			)
		if "AADSTS700016" in description:
			return OAuthSettingsRefused(
				f"The app {self.settings.client_id!r} is not registered in tenant {self.settings.tenant!r} ({words}).",
				hint="Check oauth_client_id and oauth_tenant (the app's Directory (tenant) ID in Entra).",
			)
		if code == "invalid_scope":
			return OAuthSettingsRefused(
				f"The provider refused the scopes {self.settings.scope!r} ({words}).",
				hint="Check oauth_scopes and that the app has those API permissions (and admin consent).",
			)
		if code in ("invalid_client", "unauthorized_client"):
			return OAuthSettingsRefused(
				f"The provider refused the app {self.settings.client_id!r} ({words}).",
				hint="Check oauth_client_id and the client secret; for the device flow the app must allow "
				"public client flows; for app-only access it needs application permissions with admin consent.",
			)
		return SignInError(f"The provider refused the sign-in ({words}).", hint="Check the OAuth settings.")


# -- the token source ------------------------------------------------------------------------


class TokenSource:
	"""Access tokens for one account, for the mail transports; thread-safe.

	``access_token()`` hands out a cached token while it has some life left (a tenth of its
	lifetime, at most a minute); else the one a ``SharedTokenStore`` keeps, by the same rule; else
	it gets a new one: from the stored refresh token, or with the client-credentials grant for
	app-only access. A rotated refresh token (with a shared store: every new token) is saved before
	the new access token is returned. ``refused(token)`` drops a token a server refused, so the next
	``access_token()`` gets a fresh one (a shared store's kept token included).
	"""

	def __init__(
		self,
		account: str,
		settings: OAuthSettings,
		store: TokenStore | None,
		*,
		sign_in_hint: str | None = None,
		ca_file: str | None = None,
		timeout: float = HTTP_TIMEOUT,
		clock: Callable[[], float] = time.time,
	):
		if store is None and settings.flow != "client_credentials":
			raise ValueError("a token store is needed to keep the refresh token")
		self.account = account
		self.settings = settings
		self.store = store
		self.sign_in_hint = sign_in_hint or "Sign in again."
		self.clock = clock
		self.client = OAuthClient(
			settings,
			account=account,
			sign_in_hint=self.sign_in_hint,
			ca_file=ca_file,
			timeout=timeout,
			clock=clock,
		)
		self._token: Token | None = None
		self._refused: set[str] = set()
		self._lock = threading.Lock()
		self.refreshes = 0

	def __repr__(self) -> str:
		return f"TokenSource({self.account!r}, {self.settings.provider}, {self.settings.flow})"

	def access_token(self) -> str:
		with self._lock:
			token = self._token
			if token is None or not self._fresh(token):
				token = self._token = self._kept() or self._fetch()
			return token.access_token

	def refused(self, access_token: str) -> None:
		"""A mail server refused ``access_token``: the next ``access_token()`` gets a new one."""
		with self._lock:
			if len(self._refused) >= 100:
				self._refused.clear()
			self._refused.add(access_token)
			if self._token is not None and self._token.access_token == access_token:
				self._token = None

	def _fresh(self, token: Token) -> bool:
		"""Whether ``token`` has life left: more than a tenth of its lifetime, at most a minute."""
		return self.clock() < token.expires_at - min(MAX_MARGIN, token.lifetime / 10)

	def _kept(self) -> Token | None:
		"""The access token a shared store keeps, while it is fresh and no server refused it."""
		load = getattr(self.store, "load_access_token", None)
		token = load(self.account) if load is not None else None
		if token is None or token.access_token in self._refused or not self._fresh(token):
			return None
		secrets.remember(token.access_token)
		return token

	@property
	def expires_at(self) -> float | None:
		"""When the access token handed out last expires (epoch seconds), if there is one."""
		token = self._token
		return token.expires_at if token else None

	def _fetch(self) -> Token:
		self.refreshes += 1
		save = getattr(self.store, "save_token", None)
		if self.settings.flow == "client_credentials":
			token = self.client.client_credentials()
			secrets.remember(token.access_token)
			if save is not None:
				save(self.account, token)
			log.debug("%s: got an app-only access token (for %.0f s)", self.account, token.lifetime)
			return token
		store = self.store
		assert store is not None  # __init__ refuses a flow with refresh tokens and no store
		refresh_token = store.load_refresh_token(self.account)
		if not refresh_token:
			raise SignInRequired(
				f"{self.account!r} has not signed in (no refresh token kept).", hint=self.sign_in_hint
			)
		secrets.remember(refresh_token)
		token = self.client.refresh(refresh_token)
		secrets.remember(token.access_token)
		secrets.remember(token.refresh_token)
		# saved before the access token leaves this method: see the module's invariants
		if save is not None:
			save(self.account, token)
		elif token.refresh_token and token.refresh_token != refresh_token:
			store.save_refresh_token(self.account, token.refresh_token)
			log.debug("%s: the provider rotated the refresh token; the new one is saved", self.account)
		log.debug("%s: refreshed the access token (for %.0f s)", self.account, token.lifetime)
		return token


def _form_quote(value: str) -> str:
	return urllib.parse.quote_plus(value, safe="")
