"""Core's Email Account and Email Domain documents as the engine's settings.

The engine's settings use core Email Account's field names (the few core lacks, such as the import
condition and the timeout, are Custom Fields of the same name, install.py), so a document becomes an
``AccountSettings`` through ``engine.settings.account_from_mapping`` like a TOML table does. What
is particular to documents lives here: only the engine's fields are passed on (a document carries
core's bookkeeping too), the password comes from the encrypted store, empty numbers mean "not set",
and the servers of a domain (or a well-known provider, or core's ``service``) fill in an account
whose servers are empty. An account with auth_method "OAuth" signs in with its Connected App and
its Token Cache (connected_app.py), attached as the settings' token source. Accounts the engine
cannot serve (``engine_serves``: on v16 the "Frappe Mail" service) are left to core's own code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import frappe
from frappe import _
from frappe.utils import cint, escape_html, get_url
from frappe.utils.password import get_encryption_key

from .engine.compose import SiteSettings, site_from_accounts
from .engine.errors import ConfigError
from .engine.presets import preset_for, presets
from .engine.settings import (
	AccountSettings,
	DomainSettings,
	account_from_mapping,
	domain_from_mapping,
)

ACCOUNT_DOCTYPE = "Email Account"
DOMAIN_DOCTYPE = "Email Domain"
FOLDER_DOCTYPE = "IMAP Folder"

#: every engine setting of an account; each is a field of Email Account of the same name (core's
#: or a Custom Field, install.py), except these, which the document holds differently or not at all
NOT_FIELDS = {
	"name": "the document's name",
	"folders": "the imap_folder table",
	"ca_file": "a file on the server: the CLI's setting only",
	# OAuth comes from core Email Account's auth_method and Connected App (connected_app.py)
	"oauth": "auth_method and the oauth_* settings",
	"token_source": "what the shell attaches to sign in with OAuth",
	"pull_timeout": "set by the job: inside its queue's time limit (tasks.PULL_BUDGET)",
}
ACCOUNT_FIELDS = tuple(f.name for f in dataclasses.fields(AccountSettings) if f.name not in NOT_FIELDS)
DOMAIN_FIELDS = tuple(f.name for f in dataclasses.fields(DomainSettings))
#: the settings that are Check fields of the documents (yes/no)
ACCOUNT_CHECKS = {f.name for f in dataclasses.fields(AccountSettings) if f.type in ("bool", bool)}
DOMAIN_CHECKS = {f.name for f in dataclasses.fields(DomainSettings) if f.type in ("bool | None",)}
FOLDER_FIELDS = ("folder_name", "append_to", "condition")

#: numbers where 0 (what an empty Int/Float/Data field gives) means "not set": the default applies
UNSET_WHEN_ZERO = {"incoming_port", "smtp_port", "timeout", "attachment_limit", "initial_sync_count"}
DOMAIN_UNSET_WHEN_ZERO = {"incoming_port", "smtp_port", "attachment_limit"}

#: the settings a domain or preset may fill in, by the server field that, when empty, lets them
INCOMING_SERVER_FIELDS = (
	"use_imap",
	"use_ssl",
	"use_starttls",
	"incoming_port",
	"validate_ssl_certificate",
	"attachment_limit",
)
OUTGOING_SERVER_FIELDS = (
	"smtp_port",
	"use_tls",
	"use_ssl_for_outgoing",
	"append_emails_to_sent_folder",
	"sent_folder_name",
)

#: what a thread token and a signed link are signed with: derived from the site's encryption key
#: (or ``email_sync_secret`` in site_config.json), never the key itself
SECRET_LABEL = b"email_account_app signed links v1"


#: core's ``service`` (the form's provider choice) -> the engine's preset of that provider
SERVICE_PRESETS = {
	"GMail": "gmail",
	"Outlook.com": "outlook",
	"Yahoo Mail": "yahoo",
	"Yandex.Mail": "yandex",
}
#: the service v16 sends and receives through its own API: core's code serves it
FRAPPE_MAIL = "Frappe Mail"


class InvalidEmailSyncSettings(frappe.ValidationError):
	"""Settings of an Email Account or Email Domain that cannot work."""


def engine_serves(doc: Mapping[str, Any]) -> bool:
	"""Whether the engine reads and sends this account's mail: every account that signs in with a
	password or with OAuth (its Connected App), not v16's Frappe Mail service (an HTTP API, no
	IMAP/SMTP), which core's own code serves."""
	return doc.get("service") != FRAPPE_MAIL


#: the engine's OAuth keys (the CLI's words) as a site's admin finds them: on the Connected App
ON_THE_CONNECTED_APP = {
	"oauth_client_id": 'the Connected App\'s "Client Id"',
	"oauth_client_secret": 'the Connected App\'s "Client Secret"',
	"oauth_scopes": 'the Connected App\'s "Scopes"',
	"oauth_token_url": 'the Connected App\'s "Token URI"',
	"oauth_authorization_url": 'the Connected App\'s "Authorization URI"',
	"oauth_tenant": "the tenant in the Connected App's URIs",
}


def site_words(text: str) -> str:
	"""The engine's plain words with its OAuth keys named as the site's forms name them."""
	return re.sub(
		r"\boauth_[a-z_]+\b", lambda m: ON_THE_CONNECTED_APP.get(m.group(0), m.group(0)), text or ""
	)


#: field types that hold no value: their labels are headings, never what a message names
LAYOUT_FIELDTYPES = {"Section Break", "Column Break", "Tab Break", "HTML", "Button", "Heading"}


def labelled(text: str, doctype: str = ACCOUNT_DOCTYPE) -> str:
	"""The engine's words, as HTML, with each field name they mention replaced by the form's label
	in quotes ("email_server" -> "Incoming Server"); a label two fields share (core's two "Port"s
	and two "Use SSL"s) says which section it is in."""
	meta = frappe.get_meta(doctype)
	parts = re.split(r"\b([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b", site_words(text))
	out = []
	for index, part in enumerate(parts):
		df = meta.get_field(part) if index % 2 else None
		if df is not None and df.label:
			out.append(field_label(meta, df))
		else:
			out.append(escape_html(part))
	return "".join(out)


def field_label(meta, df) -> str:
	"""A field's label in quotes, as HTML, with its section's label when another field has the same
	label (``"Port" in "Incoming (POP/IMAP) Settings"``)."""
	label = f'"{escape_html(_(df.label))}"'
	twins = [
		f
		for f in meta.fields
		if f.label == df.label and f.fieldname != df.fieldname and f.fieldtype not in LAYOUT_FIELDTYPES
	]
	section = _section_label(meta, df.fieldname) if twins else None
	return f'{label} in "{escape_html(_(section))}"' if section else label


def _section_label(meta, fieldname: str) -> str | None:
	"""The label of the section (or tab) the field is in, as the form lays it out."""
	section = None
	for f in meta.fields:
		if f.fieldtype in ("Section Break", "Tab Break"):
			section = f.label
		elif f.fieldname == fieldname:
			return section
	return None


def throw_config_error(exc: ConfigError, doctype: str = ACCOUNT_DOCTYPE) -> None:
	"""The engine's list of problems, in its plain words (fields named by their labels), as the
	form's error."""
	items = "".join(f"<li>{labelled(problem, doctype)}</li>" for problem in exc.problems)
	frappe.throw(
		_("These settings cannot work: {0}").format(f"<ul>{items}</ul>"),
		exc=InvalidEmailSyncSettings,
		title=_("Invalid settings"),
	)


def _is_unset(value: Any) -> bool:
	return value is None or value == "" or (not isinstance(value, bool) and value == 0)


# -- domains -------------------------------------------------------------------------------------


def domain_settings(doc: Mapping[str, Any]) -> DomainSettings:
	"""An Email Domain (a document or its dict) as the engine's DomainSettings."""
	data = {
		key: _as_stored(key, doc.get(key), DOMAIN_CHECKS)
		for key in DOMAIN_FIELDS
		if not (key in DOMAIN_UNSET_WHEN_ZERO and _is_unset(doc.get(key)))
	}
	return domain_from_mapping(data)


def _as_stored(key: str, value: Any, checks: set[str]) -> Any:
	"""A Check field's value as Frappe stores it (0 or 1, whatever was put in the document)."""
	return cint(value) if key in checks and value is not None else value


def all_domains() -> dict[str, DomainSettings]:
	"""Every Email Domain, by domain name (a handful of records: read them all)."""
	meta = frappe.get_meta(DOMAIN_DOCTYPE)
	rows = frappe.get_all(DOMAIN_DOCTYPE, fields=[f for f in DOMAIN_FIELDS if meta.has_field(f)])
	domains = {}
	for row in rows:
		settings = domain_settings(row)
		domains[settings.domain_name] = settings
	return domains


def _provider(doc: Mapping[str, Any], domains: Mapping[str, DomainSettings]) -> dict[str, Any]:
	"""What the account's domain (or a preset for its address) fills in."""
	address_domain = (doc.get("email_id") or "").rpartition("@")[2].lower()
	named = (doc.get("domain") or "").lower()
	domain = domains.get(named) or domains.get(address_domain)
	if domain is not None:
		return domain.filled()
	return preset_for(address_domain) or service_preset(doc.get("service")) or {}


def service_preset(service: str | None) -> dict[str, Any] | None:
	"""The servers of the provider core's ``service`` names (GMail...), when the engine knows it."""
	provider = SERVICE_PRESETS.get(service or "")
	if provider is None:
		return None
	preset = presets().get(provider) or {}
	return {k: v for k, v in preset.items() if k != "domains"} or None


def filled_in_fields(doc: Mapping[str, Any], domains: Mapping[str, DomainSettings]) -> set[str]:
	"""The fields the domain (or preset) sets on this account: all it provides when the account
	names a domain; else, per direction, those it provides when the account's server is empty."""
	provided = _provider(doc, domains)
	if not provided:
		return set()
	keys: set[str] = set()
	for server, group in (
		("email_server", INCOMING_SERVER_FIELDS),
		("smtp_server", OUTGOING_SERVER_FIELDS),
	):
		if doc.get("domain") or not doc.get(server):
			keys |= {server, *group} & provided.keys()
	return keys


# -- accounts ------------------------------------------------------------------------------------


def account_mapping(
	doc: Mapping[str, Any],
	*,
	password: str | None = None,
	leave_out: Iterable[str] = (),
	fill: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
	"""The engine's mapping of an Email Account (a document or its dict): only the engine's
	fields, the folders, and the password (which a document never holds in clear). Servers the
	domain or a provider fills in (``leave_out``) are given as the provider says."""
	leave_out = set(leave_out)
	data: dict[str, Any] = {"name": doc.get("name")}
	for key in ACCOUNT_FIELDS:
		if key in leave_out or key == "password":
			continue
		value = _as_stored(key, doc.get(key), ACCOUNT_CHECKS)
		if key in UNSET_WHEN_ZERO and _is_unset(value):
			continue
		data[key] = value
	if not doc.get("login_id_is_different"):
		data.pop("login_id", None)
	data["password"] = password or None
	if data.get("enable_auto_reply") and not (data.get("auto_reply_message") or "").strip():
		data["auto_reply_message"] = default_auto_reply()
	for key in leave_out:
		if fill and key in fill:
			data[key] = fill[key]
	# core keeps the IMAP Folder rows of an account switched to POP3 (hidden): they do not apply
	rows = (doc.get("imap_folder") or []) if doc.get("use_imap") else []
	data["imap_folder"] = [{key: _row_get(row, key) for key in FOLDER_FIELDS} for row in rows]
	if rows:
		data.pop("append_to", None)  # core's IMAP accounts append per folder (the field is hidden)
	return data


def default_auto_reply() -> str:
	"""What core sends when an account's Auto Reply Message is empty (its auto_reply.html, without
	the reference line)."""
	return (
		f"<h3>{_('Thank you for your email')}</h3>"
		f"<p>{_('Your query has been received. We will reply back shortly. If you have any additional information, please reply to this mail.')}</p>"
		f'<p style="font-size: 80%; color: #888">{_("This is an automatically generated reply")}</p>'
	)


def _row_get(row: Any, key: str) -> Any:
	return row.get(key) if hasattr(row, "get") else getattr(row, key, None)


def account_settings(
	doc: Any,
	*,
	password: str | None = None,
	domains: Mapping[str, DomainSettings] | None = None,
	validate: bool = True,
) -> AccountSettings:
	"""An Email Account document as the engine's AccountSettings (ConfigError when it cannot
	work). ``password`` defaults to the stored one; an OAuth account gets its Connected App's
	settings and a token source on its Token Cache."""
	from .connected_app import oauth_mapping, token_source, uses_oauth

	oauth = uses_oauth(doc)
	if password is None and not oauth and callable(getattr(doc, "get_password", None)):
		password = doc.get_password("password", raise_exception=False)
	domains = all_domains() if domains is None else domains
	leave_out = filled_in_fields(doc, domains)
	data = account_mapping(doc, password=password, leave_out=leave_out, fill=_provider(doc, domains))
	if oauth:
		data.update(oauth_mapping(doc))
		data["password"] = None
	settings = account_from_mapping(data, name=doc.get("name"), domains=domains, validate=validate)
	if settings.uses_oauth:
		source = token_source(doc, settings.oauth, timeout=settings.timeout)
		settings = dataclasses.replace(settings, token_source=source)
	return settings


def load_account(name: str, *, validate: bool = True) -> AccountSettings:
	"""The settings of a saved account, with its password."""
	doc = frappe.get_doc(ACCOUNT_DOCTYPE, name)
	return account_settings(doc, validate=validate)


def enabled_account_names(*, incoming: bool = False, outgoing: bool = False) -> list[str]:
	"""The accounts the engine serves (``engine_serves``) with incoming (or outgoing) enabled and
	their password given (or signing in with OAuth), oldest first."""
	filters: dict[str, Any] = {"awaiting_password": 0}
	if incoming:
		filters["enable_incoming"] = 1
	if outgoing:
		filters["enable_outgoing"] = 1
	fields = ["name", "auth_method"] + (
		["service"] if frappe.get_meta(ACCOUNT_DOCTYPE).has_field("service") else []
	)
	rows = frappe.get_all(ACCOUNT_DOCTYPE, filters=filters, fields=fields, order_by="creation asc")
	return [row.name for row in rows if engine_serves(row)]


def outgoing_accounts() -> list[AccountSettings]:
	"""Every account that sends mail and has what it needs; one that cannot is logged and left out."""
	return _loaded(enabled_account_names(outgoing=True))


def site_accounts() -> list[AccountSettings]:
	"""Every account with incoming or outgoing enabled that has what it needs (as above)."""
	return _loaded(
		dict.fromkeys([*enabled_account_names(incoming=True), *enabled_account_names(outgoing=True)])
	)


def _loaded(names: Iterable[str]) -> list[AccountSettings]:
	accounts = []
	domains = all_domains()
	for name in names:
		try:
			accounts.append(account_settings(frappe.get_doc(ACCOUNT_DOCTYPE, name), domains=domains))
		except Exception:
			frappe.log_error(
				title=f"Email Account {name}: settings the engine cannot use",
				reference_doctype=ACCOUNT_DOCTYPE,
				reference_name=name,
			)
	return accounts


# -- the site ------------------------------------------------------------------------------------


def site_secret() -> str:
	"""The key signed links (unsubscribe, tracking pixel) are made with, for this site."""
	configured = frappe.conf.get("email_sync_secret")
	if configured:
		return str(configured)
	key = get_encryption_key().encode()
	return hashlib.sha256(SECRET_LABEL + b"\0" + key).hexdigest()


def site_settings() -> SiteSettings:
	"""What composing needs of the site: its URL, the signing secret and the Reply-To addresses
	(the default incoming account, and per DocType the account that appends to it)."""
	rows = frappe.get_all(
		ACCOUNT_DOCTYPE,
		filters={"enable_incoming": 1},
		fields=["name", "email_id", "default_incoming", "append_to", "use_imap"],
		order_by="creation asc",
	)
	folders = frappe.get_all(
		FOLDER_DOCTYPE,
		filters={"parenttype": ACCOUNT_DOCTYPE, "append_to": ("is", "set")},
		fields=["parent", "folder_name", "append_to"],
		order_by="idx asc",
	)
	accounts = []
	for row in rows:
		own = [f for f in folders if f.parent == row.name]
		accounts.append(
			AccountSettings(
				name=row.name,
				email_id=row.email_id,
				enable_incoming=True,
				default_incoming=bool(row.default_incoming),
				append_to=row.append_to,
				use_imap=bool(row.use_imap),
				folders=tuple(_folder(f) for f in own),
			)
		)
	return site_from_accounts(
		accounts,
		base_url=get_url(),
		secret=site_secret(),
		reply_to_subaddress=not frappe.conf.get("email_sync_no_subaddress"),
	)


def _folder(row):
	from .engine.settings import FolderSettings

	return FolderSettings(row.folder_name, row.append_to)
