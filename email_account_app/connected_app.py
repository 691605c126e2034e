"""Core's Connected App and Token Cache as the engine's OAuth sign-in, for Email Accounts with
auth_method "OAuth".

Core keeps an account's sign-in in a Connected App (the provider's Token URI, client id and
secret, scopes) and a Token Cache per user (``{app}-{user}``: the access token, how long it lives,
the refresh token), which the Connected App's authorise flow fills (the Email Account form's
"Authorize API Access" button, as the account's Connected User). ``backend_app_flow`` accounts use
the app's own Token Cache (no user) and the client-credentials grant, as core's
``get_backend_app_token`` does. Here the Connected App becomes the engine's ``OAuthSettings`` and
the Token Cache its ``SharedTokenStore``; the engine's ``TokenSource`` decides when to refresh
and what a refusal means (``SignInRequired``: only a person can fix it; ``TokenServiceUnreachable``:
the next pull tries again).

Invariants:
- Tokens are kept only in the Token Cache (Password fields, encrypted), written through its own
  ``update_data``, which commits: a rotated refresh token is durable before its access token is
  used, and core's own code reads the same tokens.
- A sign-in refused for good is recorded once (``sign_in_lost``): the account's Last Error, its
  "Sign-in Needed Since", one Error Log, one Notification Log for the Connected User. From then
  until that user authorises again (the Token Cache saved with new tokens after that moment, its
  authorise state cleared), nothing asks the provider for the account (``blocked``): pulls stop,
  sends fail at once with the same words.
- No token is written anywhere else: what is recorded are the engine's words, which never hold
  one, scrubbed again of every secret the process knows.
"""

from __future__ import annotations

import time
from typing import Any

import frappe
from frappe import _
from frappe.utils import cint, get_datetime, get_url_to_form, now_datetime

from .engine.errors import ConfigError, EmailSyncError, SignInRequired
from .engine.oauth import OAuthSettings, Token, TokenSource
from .engine.secrets import scrub

ACCOUNT_DOCTYPE = "Email Account"
APP_DOCTYPE = "Connected App"
CACHE_DOCTYPE = "Token Cache"
#: the Custom Field (install.py) that says since when the account's sign-in is refused for good
NEEDED_FIELD = "sign_in_needed_since"


def uses_oauth(doc: Any) -> bool:
	return doc.get("auth_method") == "OAuth"


def _user(doc: Any) -> str:
	"""Whose Token Cache: the Connected User's, or the app's own ("") for backend_app_flow."""
	return "" if cint(doc.get("backend_app_flow")) else (doc.get("connected_user") or "")


def sign_in_hint(doc: Any) -> str:
	user = doc.get("connected_user")
	if user:
		return _(
			'Sign in again: {0} opens the Email Account {1} and presses "Authorize API Access"; '
			"pulls start again after that."
		).format(user, doc.get("name"))
	return _('Sign in again: open the Email Account {0} and press "Authorize API Access".').format(
		doc.get("name")
	)


# -- settings ------------------------------------------------------------------------------------


def oauth_mapping(doc: Any) -> dict[str, Any]:
	"""The engine's OAuth keys of an Email Account, from its Connected App (ConfigError, in words
	about the Connected App's fields, when it cannot work)."""
	name = doc.get("connected_app")
	backend = bool(cint(doc.get("backend_app_flow")))
	if not name:
		raise ConfigError(
			"auth_method OAuth needs connected_app (the provider's app)", account=doc.get("name")
		)
	if not frappe.db.exists(APP_DOCTYPE, name):
		raise ConfigError(f"connected_app {name!r} does not exist", account=doc.get("name"))
	app = frappe.get_doc(APP_DOCTYPE, name)
	secret = app.get_password("client_secret", raise_exception=False) or None
	problems = []
	if not app.client_id:
		problems.append(f"the Connected App {name!r} has no Client Id")
	if not app.token_uri:
		problems.append(
			f"the Connected App {name!r} has no Token URI: fill it in, or press Get OpenID Configuration on it"
		)
	if backend and not secret:
		problems.append(
			f"backend_app_flow (app-only access) needs the Client Secret of the Connected App {name!r}"
		)
	if not backend and not doc.get("connected_user"):
		problems.append(
			"auth_method OAuth needs connected_user (who authorises the account), or backend_app_flow"
		)
	if not backend and not app.authorization_uri:
		problems.append(f"the Connected App {name!r} has no Authorization URI (where a user authorises it)")
	if problems:
		raise ConfigError(problems, account=doc.get("name"))
	return {
		"auth_method": "OAuth",
		"oauth_provider": "custom",
		"oauth_client_id": app.client_id,
		"oauth_client_secret": secret,
		"oauth_scopes": [row.scope for row in app.scopes if row.scope] or None,
		"oauth_flow": "client_credentials" if backend else "browser",
		"oauth_token_url": app.token_uri,
		"oauth_authorization_url": app.authorization_uri or None,
	}


def token_source(doc: Any, oauth: OAuthSettings, *, timeout: float) -> TokenSource:
	"""The engine's token source for the account, on its Connected App's Token Cache."""
	return TokenSource(
		doc.get("name"),
		oauth,
		TokenCacheStore(doc.get("connected_app"), _user(doc)),
		sign_in_hint=sign_in_hint(doc),
		timeout=timeout,
	)


class TokenCacheStore:
	"""The engine's ``SharedTokenStore`` on core's Token Cache of one Connected App and user ("":
	the app's own, for backend_app_flow), found as core finds it (``get_token_cache``)."""

	def __init__(self, connected_app: str, user: str):
		self.connected_app = connected_app
		self.user = user

	def cache(self):
		"""The Token Cache, or None (not authorised yet)."""
		return frappe.get_doc(APP_DOCTYPE, self.connected_app).get_token_cache(self.user)

	def load_refresh_token(self, account: str) -> str | None:
		cache = self.cache()
		return (cache.get_password("refresh_token", raise_exception=False) or None) if cache else None

	def save_refresh_token(self, account: str, refresh_token: str) -> None:
		cache = self.cache()
		if cache is None:
			raise SignInRequired(f"{account!r} has not been authorised (no Token Cache).")
		cache.refresh_token = refresh_token
		cache.save(ignore_permissions=True)
		frappe.db.commit()  # durable before the access token that came with it is used (as update_data)

	def forget_refresh_token(self, account: str) -> bool:
		cache = self.cache()
		if cache is None or not cache.get_password("refresh_token", raise_exception=False):
			return False
		cache.refresh_token = None
		cache.save(ignore_permissions=True)
		return True

	def load_access_token(self, account: str) -> Token | None:
		cache = self.cache()
		access = cache.get_password("access_token", raise_exception=False) if cache else None
		if not access:
			return None
		lifetime = max(cint(cache.expires_in), 1)
		return Token(access, time.time() + cache.get_expires_in(), lifetime)

	def save_token(self, account: str, token: Token) -> None:
		"""Through the Token Cache's own ``update_data`` (which saves and commits), as core's
		refresh and authorise flow do."""
		cache = self.cache()
		if cache is None:
			cache = frappe.new_doc(CACHE_DOCTYPE)
			cache.connected_app = self.connected_app
			if self.user:
				cache.user = self.user
		data: dict[str, Any] = {
			"token_type": "Bearer",
			"access_token": token.access_token,
			"expires_in": round(token.lifetime),
		}
		if token.refresh_token:
			data["refresh_token"] = token.refresh_token
		if token.scope:
			data["scope"] = token.scope
		cache.update_data(data)


# -- a sign-in refused for good ------------------------------------------------------------------


def authorised(doc: Any) -> bool:
	"""Whether the account has been authorised at all (core's ``has_token``); app-only access
	needs no person."""
	if cint(doc.get("backend_app_flow")):
		return True
	if not (doc.get("connected_app") and doc.get("connected_user")):
		return False
	if not frappe.db.exists(APP_DOCTYPE, doc.get("connected_app")):
		return False
	from frappe.integrations.doctype.connected_app.connected_app import has_token

	return bool(has_token(doc.get("connected_app"), doc.get("connected_user")))


def blocked(doc: Any) -> str | None:
	"""Why nothing may ask the provider for this OAuth account now, in plain words; None when it
	may (and for an account that signs in with a password). Not authorised yet, or its sign-in
	refused for good and not authorised again since. Once it is authorised again, its "Sign-in
	Needed Since" is cleared here."""
	if not uses_oauth(doc):
		return None
	if not authorised(doc):
		return _("Email Account {0} signs in with OAuth but has not been authorised yet. {1}").format(
			doc.get("name"), sign_in_hint(doc)
		)
	if cint(doc.get("backend_app_flow")) or not frappe.get_meta(ACCOUNT_DOCTYPE).has_field(NEEDED_FIELD):
		return None
	row = frappe.db.get_value(ACCOUNT_DOCTYPE, doc.get("name"), [NEEDED_FIELD, "last_error"]) or (None, None)
	since, last_error = row
	if not since:
		return None
	cache = frappe.db.get_value(
		CACHE_DOCTYPE,
		{"connected_app": doc.get("connected_app"), "user": doc.get("connected_user")},
		["modified", "state"],
		as_dict=True,
	)
	if cache and not cache.state and get_datetime(cache.modified) > get_datetime(since):
		frappe.db.set_value(ACCOUNT_DOCTYPE, doc.get("name"), NEEDED_FIELD, None, update_modified=False)
		doc.set(NEEDED_FIELD, None)
		return None
	return last_error or _("The sign-in of Email Account {0} is needed. {1}").format(
		doc.get("name"), sign_in_hint(doc)
	)


def sign_in_lost(doc: Any, words: str) -> None:
	"""Record, once, that the provider refused the account's sign-in for good: the form's Last
	Error and Sign-in Needed Since, one Error Log, one Notification Log for the Connected User."""
	name = doc.get("name")
	meta = frappe.get_meta(ACCOUNT_DOCTYPE)
	if not meta.has_field(NEEDED_FIELD) or frappe.db.get_value(ACCOUNT_DOCTYPE, name, NEEDED_FIELD):
		return
	from .accounts import site_words

	words = site_words(scrub(words))
	values = {NEEDED_FIELD: now_datetime()}
	if meta.has_field("last_error"):
		values["last_error"] = words
	frappe.db.set_value(ACCOUNT_DOCTYPE, name, values, update_modified=False)
	doc.update(values)
	frappe.log_error(
		title=_("Email Account {0}: sign-in needed").format(name),
		message=words,
		reference_doctype=ACCOUNT_DOCTYPE,
		reference_name=name,
	)
	user = doc.get("connected_user")
	if user and frappe.db.exists("User", user):
		link = get_url_to_form(ACCOUNT_DOCTYPE, name)
		frappe.get_doc(
			{
				"doctype": "Notification Log",
				"for_user": user,
				"type": "Alert",
				"document_type": ACCOUNT_DOCTYPE,
				"document_name": name,
				"subject": _("Email Account {0} needs you to authorise it again").format(name),
				"email_content": _(
					'{0}<br><a href="{1}">Open Email Account {2}</a> and press "Authorize API Access".'
				).format(frappe.utils.escape_html(words), link, frappe.utils.escape_html(name)),
			}
		).insert(ignore_permissions=True)


def fresh_token_cache(doc: Any):
	"""Core's ``get_oauth_token`` for an account the engine serves: the Token Cache with an access
	token the engine's rules call fresh (refreshed if need be), or None when there is none to have
	(a sign-in refused for good is recorded, ``sign_in_lost``)."""
	from .accounts import account_settings

	if blocked(doc):
		return None
	try:
		settings = account_settings(doc, validate=False)
		settings.token_source.access_token()
	except SignInRequired as exc:
		sign_in_lost(doc, str(exc))
		return None
	except (ConfigError, EmailSyncError):
		return None
	return settings.token_source.store.cache()
