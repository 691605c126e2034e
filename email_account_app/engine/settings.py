"""Plain settings for an account and a domain.

One mapping in, frozen dataclasses out. The mapping uses core Email Account's field names, so the
same function serves a TOML table (the CLI) and a DocType's ``as_dict()`` (the Frappe layer).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConditionError, ConfigError
from .oauth import KEYS as OAUTH_KEYS
from .oauth import OAuthSettings, oauth_from_mapping, provider_servers
from .presets import preset_for

SYNC_OPTIONS = ("ALL", "UNSEEN")
# a liberal check; the mail server has the last word
EMAIL_RE = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
HOST_RE = re.compile(r"^[A-Za-z0-9_.:\-\[\]]+$")

TRUE_WORDS = {"1", "true", "yes", "on", "y"}
FALSE_WORDS = {"0", "false", "no", "off", "n", ""}


@dataclass(frozen=True)
class FolderSettings:
	"""An IMAP folder to sync, with its own "append to" and import condition."""

	folder_name: str
	append_to: str | None = None
	condition: str | None = None


@dataclass(frozen=True)
class DomainSettings:
	"""Server settings shared by every address at a domain (core's Email Domain)."""

	domain_name: str
	email_server: str | None = None
	use_imap: bool | None = None
	use_ssl: bool | None = None
	use_starttls: bool | None = None
	incoming_port: int | None = None
	validate_ssl_certificate: bool | None = None
	attachment_limit: float | None = None
	smtp_server: str | None = None
	smtp_port: int | None = None
	use_tls: bool | None = None
	use_ssl_for_outgoing: bool | None = None
	append_emails_to_sent_folder: bool | None = None
	sent_folder_name: str | None = None

	def filled(self) -> dict[str, Any]:
		"""The settings this domain fills in: every field it has a value for."""
		return {
			f.name: getattr(self, f.name)
			for f in dataclasses.fields(self)
			if f.name != "domain_name" and getattr(self, f.name) is not None
		}


@dataclass(frozen=True)
class AccountSettings:
	"""One mailbox, incoming and/or outgoing. Field names follow core Email Account."""

	name: str
	email_id: str
	password: str | None = field(default=None, repr=False)
	login_id: str | None = None
	awaiting_password: bool = False
	ascii_encode_password: bool = False
	email_account_name: str | None = None
	domain: str | None = None

	# incoming
	enable_incoming: bool = False
	use_imap: bool = True
	email_server: str | None = None
	incoming_port: int | None = None
	use_ssl: bool = True
	use_starttls: bool = False
	validate_ssl_certificate: bool = True
	ca_file: str | None = None
	folders: tuple[FolderSettings, ...] = ()
	email_sync_option: str = "UNSEEN"
	initial_sync_count: int = 250
	attachment_limit: float = 25.0
	append_to: str | None = None
	condition: str | None = None
	default_incoming: bool = False
	enable_automatic_linking: bool = False
	create_contact: bool = False
	notify_if_unreplied: bool = False
	unreplied_for_mins: int = 30
	send_notification_to: str | None = None
	timeout: float = 30.0
	#: a pull stops after this many seconds (below a worker's job timeout); the next goes on from there
	pull_timeout: float = 2400.0

	# outgoing
	enable_outgoing: bool = False
	smtp_server: str | None = None
	smtp_port: int | None = None
	use_tls: bool = True
	use_ssl_for_outgoing: bool = False
	no_smtp_authentication: bool = False
	default_outgoing: bool = False
	always_use_account_email_id_as_sender: bool = False
	always_use_account_name_as_sender_name: bool = False
	add_signature: bool = False
	signature: str | None = None
	send_unsubscribe_message: bool = False
	track_email_status: bool = False
	enable_auto_reply: bool = False
	auto_reply_message: str | None = None
	append_emails_to_sent_folder: bool = False
	sent_folder_name: str | None = None

	# sign-in: a password, or OAuth 2.0 (core's auth_method "OAuth") with these settings
	oauth: OAuthSettings | None = None
	#: what the transports ask for access tokens (an ``oauth.TokenSource``); the shell that built
	#: these settings attaches it (``dataclasses.replace``), as it fills in the password
	token_source: Any = field(default=None, repr=False, compare=False)

	# -- derived -----------------------------------------------------------------------------

	@property
	def login(self) -> str:
		"""The user name to log in with: the login id when set, else the address."""
		return self.login_id or self.email_id

	@property
	def uses_oauth(self) -> bool:
		return self.oauth is not None

	@property
	def port(self) -> int:
		"""The incoming port, or the protocol's default for the TLS mode."""
		if self.incoming_port:
			return self.incoming_port
		if self.use_imap:
			return 993 if self.use_ssl else 143
		return 995 if self.use_ssl else 110

	@property
	def outgoing_port(self) -> int:
		if self.smtp_port:
			return self.smtp_port
		if self.use_ssl_for_outgoing:
			return 465
		return 587 if self.use_tls else 25

	@property
	def attachment_limit_bytes(self) -> int | None:
		return int(self.attachment_limit * 1024 * 1024) if self.attachment_limit else None

	@property
	def message_size_limit(self) -> int | None:
		"""Messages larger than this are not pulled whole: their headers are kept with a note.

		Base64 grows an attachment by a third; a message may carry several attachments each under
		the limit, so the limit for the whole message is four times the attachment limit.
		"""
		limit = self.attachment_limit_bytes
		return 4 * limit + 1024 * 1024 if limit else None

	@property
	def sync_folders(self) -> tuple[FolderSettings, ...]:
		"""Folders to sync (IMAP); INBOX with the account's own append_to when none are listed."""
		if self.folders and self.use_imap:
			return self.folders
		return (FolderSettings("INBOX", self.append_to, self.condition),)

	@property
	def password_encoding(self) -> str:
		"""How the password's characters become bytes on the wire.

		UTF-8 by default (IMAP AUTHENTICATE PLAIN, SMTP AUTH); with ascii_encode_password the
		password is sent as plain ASCII, for old servers that reject anything else.
		"""
		return "ascii" if self.ascii_encode_password else "utf-8"


# -- building from a mapping ----------------------------------------------------------------

_BOOL_FIELDS = {f.name for f in dataclasses.fields(AccountSettings) if f.type in ("bool", bool)}
_INT_FIELDS = {f.name for f in dataclasses.fields(AccountSettings) if f.type in ("int", int, "int | None")}
_FLOAT_FIELDS = {
	f.name for f in dataclasses.fields(AccountSettings) if f.type in ("float", float, "float | None")
}
_ACCOUNT_FIELDS = {f.name for f in dataclasses.fields(AccountSettings)}
_DOMAIN_FIELDS = {f.name for f in dataclasses.fields(DomainSettings)}
# fields a domain may fill in, with the types they take
_DOMAIN_BOOL = {
	"use_imap",
	"use_ssl",
	"use_starttls",
	"validate_ssl_certificate",
	"use_tls",
	"use_ssl_for_outgoing",
	"append_emails_to_sent_folder",
}
_DOMAIN_INT = {"incoming_port", "smtp_port"}
_DOMAIN_FLOAT = {"attachment_limit"}
# keys a DocType's as_dict() carries that are no settings of ours
_IGNORED_KEYS = {
	"doctype",
	"owner",
	"creation",
	"modified",
	"modified_by",
	"docstatus",
	"idx",
	"parent",
	"parentfield",
	"parenttype",
	"__unsaved",
	"__islocal",
	"imap_folder",
	"service",
	"enabled",
}


def _as_bool(value: Any, name: str, problems: list[str]) -> bool:
	if isinstance(value, bool):
		return value
	if isinstance(value, int | float):
		return bool(value)
	if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
		return value.strip().lower() in TRUE_WORDS
	if value is None:
		return False
	problems.append(f"{name} must be true or false, not {value!r}")
	return False


def _as_number(value: Any, name: str, problems: list[str], kind: type) -> Any:
	if value is None or value == "":
		return None
	if isinstance(value, bool):
		problems.append(f"{name} must be a number, not {value!r}")
		return None
	try:
		number = kind(value)
	except (TypeError, ValueError):
		problems.append(f"{name} must be a number, not {value!r}")
		return None
	if kind is int and isinstance(value, float) and value != int(value):
		problems.append(f"{name} must be a whole number, not {value!r}")
	return number


def _text(value: Any) -> str | None:
	if value is None:
		return None
	value = str(value).strip()
	return value or None


def domain_from_mapping(data: Mapping[str, Any], domain_name: str | None = None) -> DomainSettings:
	"""Build a domain from a TOML table or an Email Sync Domain's fields."""
	problems: list[str] = []
	name = _text(data.get("domain_name")) or _text(domain_name)
	if not name:
		raise ConfigError("a domain needs a domain_name")
	values: dict[str, Any] = {"domain_name": name.lower().lstrip("@")}
	for key, raw in data.items():
		if key not in _DOMAIN_FIELDS or key == "domain_name" or raw is None or raw == "":
			continue
		if key in _DOMAIN_BOOL:
			values[key] = _as_bool(raw, key, problems)
		elif key in _DOMAIN_INT:
			values[key] = _as_number(raw, key, problems, int)
		elif key in _DOMAIN_FLOAT:
			values[key] = _as_number(raw, key, problems, float)
		else:
			values[key] = _text(raw)
	unknown = sorted(set(data) - _DOMAIN_FIELDS - _IGNORED_KEYS - {"name"})
	if unknown:
		problems.append("unknown setting(s): " + ", ".join(unknown))
	if problems:
		raise ConfigError(problems, account=f"domain {name}")
	return DomainSettings(**values)


def _folders(raw: Any, problems: list[str]) -> tuple[FolderSettings, ...]:
	if not raw:
		return ()
	folders = []
	if isinstance(raw, Mapping):  # {"INBOX": {"append_to": "Issue"}, ...}
		raw = [{"folder_name": k, **(v or {})} for k, v in raw.items()]
	for item in raw:
		if isinstance(item, str):
			item = {"folder_name": item}
		if not isinstance(item, Mapping):
			problems.append(f"a folder must be a name or a table, not {item!r}")
			continue
		name = _text(item.get("folder_name"))
		if not name:
			problems.append("every folder needs a folder_name")
			continue
		folders.append(FolderSettings(name, _text(item.get("append_to")), _text(item.get("condition"))))
	names = [f.folder_name for f in folders]
	for dup in sorted({n for n in names if names.count(n) > 1}):
		problems.append(f"folder {dup!r} is listed twice")
	return tuple(folders)


def account_from_mapping(
	data: Mapping[str, Any],
	*,
	name: str | None = None,
	domains: Mapping[str, DomainSettings] | Iterable[DomainSettings] = (),
	use_presets: bool = True,
	validate: bool = True,
) -> AccountSettings:
	"""Build and check an account from core Email Account field names.

	Server settings come from, in order of precedence: the account's own values, a configured
	domain for its address (or the one named in ``domain``), a preset for a well-known provider.
	"""
	problems: list[str] = []
	name = _text(data.get("name")) or _text(name) or _text(data.get("email_account_name"))
	email_id = _text(data.get("email_id"))
	if not name:
		name = email_id or "?"
	if not email_id:
		raise ConfigError("email_id (the account's address) is missing", account=name)

	if not isinstance(domains, Mapping):
		domains = {d.domain_name: d for d in domains}
	domain_part = email_id.rpartition("@")[2].lower()
	domain_name = (_text(data.get("domain")) or "").lower() or domain_part
	fill: dict[str, Any] = {}
	if use_presets:
		fill.update(preset_for(domain_part) or {})
		fill.update(provider_servers(data))
	domain = domains.get(domain_name) or domains.get(domain_part)
	if domain is not None:
		fill.update(domain.filled())

	values: dict[str, Any] = {"name": name, "email_id": email_id}
	for key, value in fill.items():
		values[key] = value
	for key, raw in data.items():
		if key not in _ACCOUNT_FIELDS or key in ("name", "email_id", "folders", "oauth", "token_source"):
			continue
		if raw is None or (raw == "" and key not in _BOOL_FIELDS):
			continue
		if key in _BOOL_FIELDS:
			values[key] = _as_bool(raw, key, problems)
		elif key in _INT_FIELDS:
			number = _as_number(raw, key, problems, int)
			if number is not None:
				values[key] = number
		elif key in _FLOAT_FIELDS:
			number = _as_number(raw, key, problems, float)
			if number is not None:
				values[key] = number
		elif key == "password":
			values[key] = str(raw)
		else:
			values[key] = _text(raw)
	values["folders"] = _folders(data.get("folders") or data.get("imap_folder"), problems)
	values["oauth"] = oauth_from_mapping(data, problems)
	if domain is not None:
		values["domain"] = domain.domain_name

	unknown = sorted(
		set(data)
		- _ACCOUNT_FIELDS
		- _IGNORED_KEYS
		- set(OAUTH_KEYS)
		- {"imap_folder", "oauth", "token_source"}
	)
	if unknown:
		problems.append("unknown setting(s): " + ", ".join(unknown))
	if problems:
		raise ConfigError(problems, account=name)
	account = AccountSettings(**values)
	if validate:
		validate_account(account)
	return account


def validate_account(account: AccountSettings) -> None:
	"""Raise ConfigError listing everything that cannot work, in plain words."""
	p: list[str] = []
	if not EMAIL_RE.match(account.email_id):
		p.append(f"{account.email_id!r} is not an email address")
	if account.login_id is not None and not account.login_id.strip():
		p.append("login_id is empty")
	if account.enable_incoming:
		if not account.email_server:
			p.append("incoming is enabled but email_server is not set (or set a domain for the address)")
		elif not HOST_RE.match(account.email_server):
			p.append(f"email_server {account.email_server!r} is not a host name")
		if account.incoming_port is not None and not 0 < account.incoming_port < 65536:
			p.append(f"incoming_port {account.incoming_port} is out of range (1-65535)")
		if account.use_ssl and account.use_starttls:
			p.append(
				"use_ssl and use_starttls are both set: choose one (SSL for 993/995, STARTTLS for 143/110)"
			)
		if account.email_sync_option not in SYNC_OPTIONS:
			p.append(f"email_sync_option must be ALL or UNSEEN, not {account.email_sync_option!r}")
		if account.initial_sync_count < 0:
			p.append("initial_sync_count cannot be negative")
		if account.attachment_limit < 0:
			p.append("attachment_limit cannot be negative")
		if account.timeout <= 0:
			p.append("timeout must be more than 0 seconds")
		if account.pull_timeout <= 0:
			p.append("pull_timeout must be more than 0 seconds")
		if (
			not account.use_imap
			and account.folders
			and any(f.folder_name.upper() != "INBOX" for f in account.folders)
		):
			p.append("POP3 reads only the inbox: folders need IMAP (set use_imap)")
		if not account.password and not account.awaiting_password and not account.uses_oauth:
			p.append("incoming is enabled but there is no password (or set awaiting_password)")
	if account.ascii_encode_password and account.password and not account.password.isascii():
		p.append("the password has characters that are not ASCII: turn off ascii_encode_password")
	if account.notify_if_unreplied:
		if account.unreplied_for_mins <= 0:
			p.append("unreplied_for_mins must be more than 0")
		if not account.send_notification_to:
			p.append("notify_if_unreplied is on but send_notification_to is empty")
	if account.enable_outgoing:
		if not account.smtp_server:
			p.append("outgoing is enabled but smtp_server is not set (or set a domain for the address)")
		elif not HOST_RE.match(account.smtp_server):
			p.append(f"smtp_server {account.smtp_server!r} is not a host name")
		if account.smtp_port is not None and not 0 < account.smtp_port < 65536:
			p.append(f"smtp_port {account.smtp_port} is out of range (1-65535)")
		if account.use_tls and account.use_ssl_for_outgoing:
			p.append(
				"use_tls (STARTTLS) and use_ssl_for_outgoing are both set: choose one (SSL for 465, STARTTLS for 587)"
			)
		if (
			not account.no_smtp_authentication
			and not account.password
			and not account.awaiting_password
			and not account.uses_oauth
		):
			p.append("outgoing needs a password, or set no_smtp_authentication")
	for where, expression in [("condition", account.condition)] + [
		(f"condition of folder {f.folder_name!r}", f.condition) for f in account.folders
	]:
		if expression:
			try:
				check_condition(expression)
			except ConditionError as exc:
				p.append(f"{where}: {exc}")
	if account.enable_auto_reply and not (account.auto_reply_message or "").strip():
		p.append("enable_auto_reply is on but auto_reply_message is empty")
	if account.append_emails_to_sent_folder and not account.use_imap:
		p.append("append_emails_to_sent_folder needs IMAP")
	if p:
		raise ConfigError(p, account=account.name)


def check_condition(expression: str) -> None:
	from .rules import check_condition as check  # rules needs parsing; keep settings light to import

	check(expression)


def check_defaults(accounts: Iterable[AccountSettings]) -> None:
	"""At most one default incoming and one default outgoing account (per site or config file)."""
	accounts = list(accounts)
	p = []
	for flag, label in (("default_incoming", "default incoming"), ("default_outgoing", "default outgoing")):
		named = [a.name for a in accounts if getattr(a, flag)]
		if len(named) > 1:
			p.append(f"only one account can be the {label}; these are: {', '.join(named)}")
	linking = [a.name for a in accounts if a.enable_automatic_linking]
	if len(linking) > 1:
		p.append(f"only one account can have enable_automatic_linking; these do: {', '.join(linking)}")
	if p:
		raise ConfigError(p)
