"""Plain settings for an account and a domain.

One mapping in, frozen dataclasses out. The mapping uses core Email Account's field names, so the
same function serves a TOML table (the CLI) and a DocType's ``as_dict()`` (the Frappe layer).
"""

from __future__ import annotations

import dataclasses
import decimal
import difflib
import ipaddress
import math
import re
import urllib.parse
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
#
# Every value is checked for its type, and numbers for being finite and in range, before a
# dataclass is built: a problem is a sentence naming the key, what it must be and what it was.
# Two modes: the Frappe layer's values (``strict=False``: a Check is 0 or 1, a number may come as
# text, None is an empty field) and a TOML file's (``strict=True``: true/false for a switch, a
# number without quotes, text in quotes). Either way nothing but ConfigError leaves these functions.

_BOOL_FIELDS = {f.name for f in dataclasses.fields(AccountSettings) if f.type in ("bool", bool)}
_ACCOUNT_FIELDS = {f.name for f in dataclasses.fields(AccountSettings)}
_DOMAIN_FIELDS = {f.name for f in dataclasses.fields(DomainSettings)}
_FOLDER_FIELDS = {f.name for f in dataclasses.fields(FolderSettings)}
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
#: numbers: (type, lowest, highest, lowest excluded, what the value must be)
_NUMBERS: dict[str, tuple[type, float, float, bool, str]] = {
	"incoming_port": (int, 1, 65535, False, "a number from 1 to 65535 (a port)"),
	"smtp_port": (int, 1, 65535, False, "a number from 1 to 65535 (a port)"),
	"initial_sync_count": (int, 0, 10_000_000, False, "a number of messages from 0 (every one) to 10000000"),
	"unreplied_for_mins": (int, 0, 525_600, False, "a number of minutes from 1 to 525600 (a year)"),
	"attachment_limit": (float, 0, 10_240, False, "a number of MB from 0 (no limit) to 10240"),
	"timeout": (float, 1, 3600, False, "a number of seconds from 1 to 3600"),
	# 0 is left to validate_account ("must be more than 0 seconds")
	"pull_timeout": (float, 0, 86_400, False, "a number of seconds above 0, at most 86400 (a day)"),
}
_HOST_FIELDS = {"email_server", "smtp_server", "domain", "domain_name"}
#: text that may span lines (tabs and line breaks allowed, other control characters not)
_MULTILINE_FIELDS = {"signature", "auto_reply_message", "condition", "send_notification_to"}
#: text that becomes a message's body, never a header: only NUL is refused
_BODY_FIELDS = {"signature", "auto_reply_message"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_NUL = re.compile(r"\x00")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_ADDRESS_LIST = re.compile(r"[\s,;]+")
MAX_TEXT = 1000  # a single-line value: a name, a host, a path
MAX_NAME = 140  # an account's name (a Frappe document name is at most 140 characters)
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
_MISSING = object()


def _shown(value: Any) -> str:
	"""A value as the message quotes it: repr, shortened."""
	text = repr(value)
	return text if len(text) <= 60 else text[:57] + "..."


def _unknown_keys(
	keys: Iterable[Any], known: Iterable[str], what: str = "setting", where: str = ""
) -> list[str]:
	"""A problem per unknown key, with the nearest known key when one is close."""
	known = sorted(known)
	problems = []
	by_lower = {k.lower(): k for k in known}
	for key in sorted(str(k) for k in keys):
		close = [by_lower[k] for k in difflib.get_close_matches(key.lower(), list(by_lower), n=1)]
		hint = f"did you mean {close[0]!r}?" if close else "remove it or check its spelling"
		problems.append(f"unknown {what} {_shown(key)}{where} ({hint})")
	return problems


def _as_bool(value: Any, name: str, problems: list[str], strict: bool = False) -> bool:
	if isinstance(value, bool):
		return value
	if not strict:
		if value is None:
			return False
		if isinstance(value, int) and value in (0, 1):  # a Check field
			return bool(value)
		if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
			return value.strip().lower() in TRUE_WORDS
	problems.append(f"{name} must be true or false, not {_shown(value)}")
	return False


def _as_number(value: Any, name: str, problems: list[str], strict: bool = False) -> Any:
	"""The number ``value`` holds, checked against its range; None (and a problem) when it cannot be."""
	kind, low, high, above, what = _NUMBERS[name]
	wrong = f"{name} must be {what}, not {_shown(value)}"
	if isinstance(value, bool):
		problems.append(wrong)
		return None
	if isinstance(value, str) and not strict:
		value = value.strip()
		if not value:
			return None
		try:
			value = int(value) if kind is int else float(value)
		except ValueError:
			problems.append(wrong)
			return None
	elif isinstance(value, decimal.Decimal) and not strict:
		value = float(value)
	if not isinstance(value, int | float):
		if strict and isinstance(value, str):
			wrong += " (write the number without quotes)"
		problems.append(wrong)
		return None
	if isinstance(value, float):
		if not math.isfinite(value) or (kind is int and value != int(value)):
			problems.append(wrong)
			return None
		if kind is int and strict:
			problems.append(wrong + " (a whole number, without a decimal point)")
			return None
	if value < 0 <= low:
		problems.append(f"{name} cannot be negative: it must be {what}, not {_shown(value)}")
		return None
	if value < low or value > high or (above and value == low):
		problems.append(f"{name} {_shown(value)} is out of range: it must be {what}")
		return None
	return kind(value)


def _as_text(value: Any, name: str, problems: list[str], strict: bool = False) -> str | None:
	"""Text, stripped; None for an empty value. Control characters are refused (line breaks only
	in the text fields that span lines)."""
	if value is None and not strict:
		return None
	if not isinstance(value, str):
		problems.append(f"{name} must be text (in quotes), not {_shown(value)}")
		return None
	multiline = name in _MULTILINE_FIELDS
	# a form's value may end in a pasted line break (stripped); a file's is refused as it is
	value = value if strict and not multiline else value.strip()
	control = (_NUL if name in _BODY_FIELDS else _CONTROL_IN_TEXT if multiline else _CONTROL).search(value)
	value = value.strip()
	if control:
		problems.append(f"{name} contains the control character {control.group()!r}: remove it")
		return None
	if strict and not value:
		problems.append(f"{name} is empty: give it a value, or leave the key out")
		return None
	if not multiline and len(value) > MAX_TEXT:
		problems.append(f"{name} is longer than {MAX_TEXT} characters")
		return None
	return value or None


def host_problem(host: str, name: str) -> str | None:
	"""Why ``host`` is not a host name or IP address (``name`` is its setting), or None."""
	if host.isascii() and ":" in host:
		try:
			ipaddress.IPv6Address(host)
			return None
		except ValueError:
			return f"{name} {_shown(host)} is not a host name: give only the host (the port has a setting of its own)"
	if not host.isascii():
		return (
			f"{name} {_shown(host)} is not a host name: write an international name in its ASCII (xn--) form"
		)
	labels = host.removesuffix(".").split(".")
	if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
		return f"{name} {_shown(host)} is not a host name (letters, digits, hyphens and dots)"
	return None


def address_problem(address: str, name: str) -> str | None:
	"""Why ``address`` is not an email address (``name`` is its setting), or None."""
	problem = f"{name} {_shown(address)} is not an email address (name@example.com)"
	if len(address) > 254 or _CONTROL.search(address) or not EMAIL_RE.match(address):
		return problem
	domain = address.rpartition("@")[2]
	if any(not label for label in domain.split(".")):
		return problem
	return None


def _checked_text(key: str, raw: Any, problems: list[str], strict: bool) -> Any:
	"""A text field's value, checked for what the field holds (a host, addresses, a password)."""
	if key == "password":
		if raw is None and not strict:
			return None
		if not isinstance(raw, str):
			problems.append("password must be text (in quotes)")
			return None
		if any(ch in raw for ch in "\0\r\n"):  # never quoted: a password stays out of messages
			problems.append("the password contains a NUL or a line break, which no server accepts")
			return None
		return raw
	value = _as_text(raw, key, problems, strict)
	if value is None:
		return None
	if key in _HOST_FIELDS:
		problem = host_problem(value.lstrip("@") if key in ("domain", "domain_name") else value, key)
		if problem:
			problems.append(problem)
			return None
	elif key == "email_sync_option" and value not in SYNC_OPTIONS:
		problems.append(f"email_sync_option must be ALL or UNSEEN, not {_shown(value)}")
		return None
	elif key == "send_notification_to":
		for address in (a for a in _ADDRESS_LIST.split(value) if a):
			problem = address_problem(address, key)
			if problem:
				problems.append(problem)
				return None
	return value


def _value(key: str, raw: Any, problems: list[str], strict: bool) -> Any:
	"""The checked value of one setting; _MISSING when the mapping leaves it unset."""
	if raw is None and not strict:
		return _MISSING
	if key in _BOOL_FIELDS or key in _DOMAIN_BOOL:
		return _as_bool(raw, key, problems, strict)
	if key in _NUMBERS:
		number = _as_number(raw, key, problems, strict)
		return _MISSING if number is None else number
	value = _checked_text(key, raw, problems, strict)
	return _MISSING if value is None else value


def domain_from_mapping(
	data: Mapping[str, Any], domain_name: str | None = None, *, strict: bool = False
) -> DomainSettings:
	"""Build a domain from a TOML table (``strict``) or an Email Domain's fields."""
	problems: list[str] = []
	if not isinstance(data, Mapping):
		raise ConfigError(f"a domain's settings must be a table, not {_shown(data)}")
	name = None
	for candidate, key in ((data.get("domain_name"), "domain_name"), (domain_name, "the domain's name")):
		if candidate is None or candidate == "":
			continue
		name = _as_text(candidate, key, problems, strict=True)
		if name:
			problem = host_problem(name.lstrip("@"), key)
			if problem:
				problems.append(problem)
		break
	if problems:
		raise ConfigError(problems)
	if not name:
		raise ConfigError("a domain needs a domain_name")
	name = name.lower().lstrip("@")
	values: dict[str, Any] = {"domain_name": name}
	for key, raw in data.items():
		if key not in _DOMAIN_FIELDS or key == "domain_name":
			continue
		if raw == "" and not strict:
			continue
		value = _value(key, raw, problems, strict)
		if value is not _MISSING:
			values[key] = value
	ignored = set() if strict else _IGNORED_KEYS | {"name"}
	problems += _unknown_keys(set(data) - _DOMAIN_FIELDS - ignored, _DOMAIN_FIELDS - {"domain_name"})
	if problems:
		raise ConfigError(problems, account=f"domain {name}")
	return DomainSettings(**values)


def _folders(raw: Any, key: str, problems: list[str], strict: bool) -> tuple[FolderSettings, ...]:
	"""The folders of ``folders`` (a list of names or tables, or a table by name) or of
	``imap_folder`` (a Frappe child table, empty when the account lists none)."""
	if raw is None and not strict:
		return ()
	example = f'{key} = ["INBOX", "Jobs"] or {key} = [{{ folder_name = "INBOX", append_to = "Issue" }}]'
	if isinstance(raw, Mapping):  # {"INBOX": {"append_to": "Issue"}, ...}
		items = []
		for name, table in raw.items():
			if table is None and not strict:
				table = {}
			if not isinstance(table, Mapping):
				problems.append(f"folder {_shown(name)} of {key} must be a table, not {_shown(table)}")
				continue
			items.append({**table, "folder_name": name})
		raw = items
	elif isinstance(raw, str) or not isinstance(raw, list | tuple):
		problems.append(f"{key} must be a list of folders, e.g. {example}; not {_shown(raw)}")
		return ()
	if not raw:
		if key == "folders":
			problems.append(f"{key} is empty: list the folders to read (or leave {key} out to read INBOX)")
		return ()
	folders = []
	ignored = set() if strict else _IGNORED_KEYS | {"name"}
	for item in raw:
		if isinstance(item, str):
			item = {"folder_name": item}
		if not isinstance(item, Mapping):
			problems.append(f"a folder in {key} must be a name or a table, not {_shown(item)}")
			continue
		where = f"folder {_shown(item.get('folder_name'))}"
		problems += _unknown_keys(set(item) - _FOLDER_FIELDS - ignored, _FOLDER_FIELDS, "key", f" in {where}")
		found: list[str] = []
		name = _as_text(item.get("folder_name"), "folder_name", found, strict and "folder_name" in item)
		if not name and not found:
			found.append(f"every folder in {key} needs a folder_name")
		elif name and len(name) > MAX_TEXT:
			found.append(f"folder_name is longer than {MAX_TEXT} characters")
		append_to = item.get("append_to")
		append_to = (
			_as_text(append_to, f"append_to of {where}", found, strict) if "append_to" in item else None
		)
		condition = item.get("condition")
		condition = _as_text(condition, "condition", found, strict) if "condition" in item else None
		problems += found
		if not found:
			folders.append(FolderSettings(name, append_to, condition))
	names = ["INBOX" if f.folder_name.upper() == "INBOX" else f.folder_name for f in folders]
	for dup in sorted({n for n in names if names.count(n) > 1}):
		problems.append(f"folder {dup!r} is listed twice in {key}: list each folder once")
	return tuple(folders)


def _oauth(data: Mapping[str, Any], problems: list[str], strict: bool) -> OAuthSettings | None:
	"""The OAuth settings, their values checked first: text without control characters, URLs
	that parse."""
	count = len(problems)
	for key in OAUTH_KEYS:
		raw = data.get(key)
		if (raw is None and not strict) or key not in data:
			continue
		if key == "oauth_scopes":  # its type is oauth_from_mapping's to check; here its characters
			for item in raw if isinstance(raw, list | tuple) else [raw]:
				if isinstance(item, str) and _CONTROL.search(item):
					problems.append("oauth_scopes contain a control character: remove it")
			continue
		if key != "oauth_client_secret":
			text = _as_text(raw, key, problems, strict)
		elif not isinstance(raw, str) or _CONTROL.search(raw):
			problems.append(f"{key} must be text (in quotes) without control characters")
			text = None
		else:
			text = raw
		if text and key.endswith("_url"):
			try:
				urllib.parse.urlsplit(text).hostname  # raises ValueError on a malformed URL
			except ValueError:
				problems.append(f"{key} {_shown(text)} is not a URL")
	if len(problems) > count:
		return None
	return oauth_from_mapping(data, problems)


def account_from_mapping(
	data: Mapping[str, Any],
	*,
	name: str | None = None,
	domains: Mapping[str, DomainSettings] | Iterable[DomainSettings] = (),
	use_presets: bool = True,
	validate: bool = True,
	strict: bool = False,
) -> AccountSettings:
	"""Build and check an account from core Email Account field names.

	Server settings come from, in order of precedence: the account's own values, a configured
	domain for its address (or the one named in ``domain``), a preset for a well-known provider.
	``strict`` takes the values as a TOML file gives them (see above); it also refuses the keys a
	DocType's dict carries beside the settings, and ``name`` (the table's name is the account's).
	"""
	if not isinstance(data, Mapping):
		raise ConfigError(f"an account's settings must be a table, not {_shown(data)}", account=name)
	problems: list[str] = []
	given = data.get("name") if not strict else None
	name = _as_text(given, "name", problems) or _as_text(name, "the account's name", problems)
	if name and len(name) > MAX_NAME:
		problems.append(f"the account's name is longer than {MAX_NAME} characters")
	email_id = _as_text(data.get("email_id"), "email_id", problems, strict=False)
	if not name:
		name = email_id if email_id and not problems else None
	if not email_id and not problems:
		problems.append('email_id (the account\'s address) is missing: set email_id = "name@example.com"')
	elif email_id:
		problem = address_problem(email_id, "email_id")
		if problem:
			problems.append(problem)
	if problems or not email_id:  # a missing email_id is one of the problems
		raise ConfigError(problems, account=name)

	if not isinstance(domains, Mapping):
		domains = {d.domain_name: d for d in domains}
	domain_part = email_id.rpartition("@")[2].lower()
	named = _checked_text("domain", data.get("domain"), problems, strict) if "domain" in data else None
	domain_name = (named or "").lower().lstrip("@") or domain_part
	fill: dict[str, Any] = {}
	if use_presets:
		fill.update(preset_for(domain_part) or {})
		fill.update(provider_servers(data))
	domain = domains.get(domain_name) or domains.get(domain_part)
	if domain is not None:
		fill.update(domain.filled())

	values: dict[str, Any] = {"name": name, "email_id": email_id}
	values.update(fill)
	for key, raw in data.items():
		if key not in _ACCOUNT_FIELDS or key in (
			"name",
			"email_id",
			"folders",
			"domain",
			"oauth",
			"token_source",
		):
			continue
		if raw == "" and key not in _BOOL_FIELDS and not strict:
			continue
		value = _value(key, raw, problems, strict)
		if value is not _MISSING:
			values[key] = value
	if strict:
		values["folders"] = (
			_folders(data["folders"], "folders", problems, strict) if "folders" in data else ()
		)
	elif data.get("folders") is not None:
		values["folders"] = _folders(data.get("folders"), "folders", problems, strict)
	else:
		values["folders"] = _folders(data.get("imap_folder"), "imap_folder", problems, strict)
	values["oauth"] = _oauth(data, problems, strict)
	if domain is not None or named:
		values["domain"] = domain.domain_name if domain is not None else named

	ignored = {"name", "imap_folder"} if strict else _IGNORED_KEYS
	internal = {"oauth", "token_source"}  # built here, or attached by a shell: never in a mapping
	known = (_ACCOUNT_FIELDS - {"name"} - internal if strict else _ACCOUNT_FIELDS) | set(OAUTH_KEYS)
	problems += _unknown_keys(set(data) - known - ignored, known)
	if strict and "name" in data:
		problems.append("name: the table's name is the account's name ([accounts.NAME]): remove the name key")
	if strict and "imap_folder" in data:
		problems.append("imap_folder is the Frappe form's table: write folders = [...] instead")
	if problems:
		raise ConfigError(problems, account=name)
	account = AccountSettings(**values)
	if validate:
		validate_account(account)
	return account


def validate_account(account: AccountSettings) -> None:
	"""Raise ConfigError listing everything that cannot work, in plain words."""
	p: list[str] = []
	problem = address_problem(account.email_id, "email_id")
	if problem:
		p.append(problem)
	if account.login_id is not None and not account.login_id.strip():
		p.append("login_id is empty")
	if account.enable_incoming:
		if not account.email_server:
			p.append("incoming is enabled but email_server is not set (or set a domain for the address)")
		elif problem := host_problem(account.email_server, "email_server"):
			p.append(problem)
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
		elif problem := host_problem(account.smtp_server, "smtp_server"):
			p.append(problem)
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
