"""The CLI's configuration: one TOML file.

[store]
path = "mail.sqlite3"                  # optional; --db overrides

[domains."example.com"]                # optional, one table per domain
email_server = "mail.example.com"
smtp_server = "mail.example.com"

[accounts.support]                     # one table per account: Email Account field names
email_id = "support@example.com"
password_env = "SUPPORT_PASSWORD"      # or password = "...", or awaiting_password = true
enable_incoming = true
append_to = "Issue"
folders = [{ folder_name = "INBOX" }, { folder_name = "Jobs", append_to = "Job Applicant" }]

[doctypes.Issue]                       # optional: where a new document's fields go
subject_field = "subject"
sender_field = "raised_by"
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..engine.compose import SiteSettings, site_from_accounts
from ..engine.errors import ConfigError
from ..engine.settings import (
	AccountSettings,
	DomainSettings,
	account_from_mapping,
	check_defaults,
	domain_from_mapping,
)
from ..sqlite_store import DocTypeMapping

if sys.version_info >= (3, 11):
	import tomllib
else:  # Python 3.10
	import tomli as tomllib

DEFAULT_CONFIG = "email_account_app.toml"
DEFAULT_DB = "email_account_app.sqlite3"
_TOP_KEYS = {"store", "site", "domains", "accounts", "doctypes"}
_STORE_KEYS = {"path"}
_MAPPING_KEYS = {
	"subject_field",
	"sender_field",
	"sender_name_field",
	"status_field",
	"naming_prefix",
	"open_status",
}
_MAPPING_OPTIONAL = {"sender_name_field", "status_field", "naming_prefix"}
_SITE_KEYS = {"base_url", "secret", "secret_env", "unsubscribe_path", "tracking_path", "reply_to_subaddress"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass
class Config:
	path: Path
	accounts: dict[str, AccountSettings]
	domains: dict[str, DomainSettings] = field(default_factory=dict)
	doctypes: dict[str, DocTypeMapping] = field(default_factory=dict)
	db_path: str = DEFAULT_DB
	raw: dict[str, Any] = field(default_factory=dict)

	def account(self, name: str) -> AccountSettings:
		try:
			return self.accounts[name]
		except KeyError:
			known = ", ".join(sorted(self.accounts)) or "none"
			raise ConfigError(f"no account named {name!r} in {self.path} (accounts: {known})") from None

	def with_password(self, name: str, password: str) -> AccountSettings:
		account = replace(self.accounts[name], password=password, awaiting_password=False)
		self.accounts[name] = account
		return account


def table_name(*parts: str) -> str:
	"""``[accounts.support]``, quoting a part as TOML does when it is not a bare key."""
	return "[" + ".".join(p if _BARE_KEY.match(p) else json.dumps(p) for p in parts) + "]"


class _Where:
	"""Errors of one config file, each one line: the file, the table, what is wrong."""

	def __init__(self, path: Path):
		self.path = path

	def error(self, problems: list[str] | str, *parts: str) -> ConfigError:
		if isinstance(problems, str):
			problems = [problems]
		where = f"{self.path} {table_name(*parts)}" if parts else str(self.path)
		return ConfigError(f"{where}: " + "; ".join(problems))

	def unknown(self, keys: set[str], known: set[str], *parts: str) -> None:
		"""Refuse keys the table does not know, suggesting the nearest known one."""
		problems = []
		by_lower = {k.lower(): k for k in known}
		for key in sorted(keys - known):
			close = [by_lower[k] for k in difflib.get_close_matches(key.lower(), sorted(by_lower), n=1)]
			hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(known))}"
			problems.append(f"unknown key {key!r} ({hint})")
		if problems:
			raise self.error(problems, *parts)


def _read(path: Path) -> dict[str, Any]:
	try:
		if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO would block for good
			raise ConfigError(f"{path} is not a regular file: pass --config FILE")
		raw = path.read_bytes()
	except FileNotFoundError:
		raise ConfigError(
			f"config file {path} not found: pass --config FILE (see the README for its format)"
		) from None
	except IsADirectoryError:
		raise ConfigError(f"{path} is a directory, not a config file: pass --config FILE") from None
	except PermissionError:
		raise ConfigError(f"cannot read {path}: permission denied (make the file readable)") from None
	except (OSError, ValueError) as exc:
		reason = getattr(exc, "strerror", None) or str(exc)
		raise ConfigError(f"cannot read the config file {str(path)!r}: {reason}") from None
	try:
		text = raw.decode("utf-8-sig")
	except UnicodeDecodeError as exc:
		raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
	try:
		return tomllib.loads(text)
	except tomllib.TOMLDecodeError as exc:
		reason = " ".join(str(exc).split())
		raise ConfigError(f"{path} is not valid TOML: {reason}: fix that line") from None


def load_config(path: str | os.PathLike | None = None, *, env: Mapping[str, str] | None = None) -> Config:
	"""The config file at ``path``; ConfigError (one line: file, table, key, what to do) when any
	of it cannot work."""
	path = Path(path or os.environ.get("EMAIL_ACCOUNT_APP_CONFIG") or DEFAULT_CONFIG)
	env = os.environ if env is None else env
	data = _read(path)
	where = _Where(path)
	where.unknown(set(data), _TOP_KEYS)

	domains = {}
	for name, table in _tables(data, "domains", where).items():
		try:
			domain = domain_from_mapping(table, domain_name=name, strict=True)
		except ConfigError as exc:
			raise where.error(exc.problems, "domains", name) from None
		if domain.domain_name in domains:
			raise where.error(
				f"domain {domain.domain_name} is configured twice: keep one table", "domains", name
			)
		domains[domain.domain_name] = domain

	accounts = {}
	tables = _tables(data, "accounts", where)
	if not tables:
		raise where.error('no accounts: add an [accounts.NAME] table with email_id = "..." (see the README)')
	for name, table in tables.items():
		accounts[name] = _account(name, table, domains, env, where)
	addresses: dict[str, str] = {}
	for name, settings in accounts.items():
		other = addresses.setdefault(settings.email_id.lower(), name)
		if other != name:
			raise where.error(
				f"{settings.email_id} is the email_id of {table_name('accounts', other)} too: "
				"an address has one account",
				"accounts",
				name,
			)
	try:
		check_defaults(accounts.values())
	except ConfigError as exc:
		raise where.error(exc.problems, "accounts") from None

	doctypes = {}
	for name, table in _tables(data, "doctypes", where).items():
		doctypes[name] = _doctype_mapping(name, table, where)

	db_path = _store_path(data, path, where)
	_site_values(data.get("site"), where, env)
	return Config(path, accounts, domains, doctypes, db_path, data)


def _tables(data: dict[str, Any], key: str, where: _Where) -> dict[str, dict[str, Any]]:
	tables = data.get(key, {})
	if not isinstance(tables, dict):
		raise where.error(f"{key} must be tables, one per name: [{key}.NAME], not {tables!r}"[:300])
	for name, table in tables.items():
		if not isinstance(table, dict):
			raise where.error(
				f"must be a table of settings, not {table!r} (write the settings under this header)"[:300],
				key,
				name,
			)
		if not name.strip() or _CONTROL.search(name):
			raise where.error("the table's name is empty or has a control character: rename it", key, name)
	return tables


def _account(
	name: str,
	table: dict[str, Any],
	domains: dict[str, DomainSettings],
	env: Mapping[str, str],
	where: _Where,
) -> AccountSettings:
	table = dict(table)
	if "password_env" in table:
		variable = table.pop("password_env")
		if not isinstance(variable, str) or not _ENV_NAME.match(variable):
			raise where.error(
				f"password_env must name an environment variable (letters, digits, _), not {variable!r}"[
					:300
				],
				"accounts",
				name,
			)
		if "password" in table:
			raise where.error("password and password_env are both set: keep one", "accounts", name)
		if variable not in env:
			raise where.error(
				f"environment variable {variable} (password_env) is not set: export it, or set password",
				"accounts",
				name,
			)
		if not env[variable]:
			raise where.error(f"environment variable {variable} (password_env) is empty", "accounts", name)
		table["password"] = env[variable]
	if "oauth_client_secret_env" in table:
		variable = table.pop("oauth_client_secret_env")
		if not isinstance(variable, str) or not _ENV_NAME.match(variable):
			raise where.error(
				"oauth_client_secret_env must name an environment variable (letters, digits, _), "
				f"not {variable!r}"[:300],
				"accounts",
				name,
			)
		if "oauth_client_secret" in table:
			raise where.error(
				"oauth_client_secret and oauth_client_secret_env are both set: keep one", "accounts", name
			)
		if not env.get(variable):
			raise where.error(
				f"environment variable {variable} (oauth_client_secret_env) is not set: export it",
				"accounts",
				name,
			)
		table["oauth_client_secret"] = env[variable]
	try:
		account = account_from_mapping(table, name=name, domains=domains, strict=True)
	except ConfigError as exc:
		raise where.error(exc.problems, "accounts", name) from None
	if account.ca_file and not os.path.isfile(account.ca_file):
		raise where.error(
			f"ca_file {account.ca_file!r} is not a file: give the path of the CA certificate (PEM)",
			"accounts",
			name,
		)
	return account


def _doctype_mapping(name: str, table: dict[str, Any], where: _Where) -> DocTypeMapping:
	where.unknown(set(table), _MAPPING_KEYS, "doctypes", name)
	values = {}
	for key, value in table.items():
		if not isinstance(value, str):
			raise where.error(f"{key} must be text (in quotes), not {value!r}"[:300], "doctypes", name)
		value = value.strip()
		if _CONTROL.search(value) or len(value) > 140:
			raise where.error(f"{key} is not a field name: {value[:60]!r}", "doctypes", name)
		if not value and key not in _MAPPING_OPTIONAL:
			raise where.error(f"{key} is empty: name a field of {name}", "doctypes", name)
		values[key] = value or None
	return DocTypeMapping(**values)


def _store_path(data: dict[str, Any], config_path: Path, where: _Where) -> str:
	store = data.get("store", {})
	if not isinstance(store, dict):
		raise where.error(f'store must be a table: [store] with path = "mail.sqlite3", not {store!r}'[:300])
	where.unknown(set(store), _STORE_KEYS, "store")
	db_path = store.get("path", DEFAULT_DB)
	if not isinstance(db_path, str) or not db_path.strip() or _CONTROL.search(db_path):
		raise where.error(
			f'path must be the SQLite file\'s name in quotes, e.g. path = "mail.sqlite3", not {db_path!r}'[
				:300
			],
			"store",
		)
	if not os.path.isabs(db_path):
		db_path = str(config_path.parent / db_path)
	if os.path.isdir(db_path):
		raise where.error(f"path {db_path!r} is a directory: name a file in it", "store")
	if not os.path.isdir(os.path.dirname(db_path) or "."):
		raise where.error(
			f"the folder of path {db_path!r} does not exist: create it, or change path", "store"
		)
	return db_path


def _site_values(table: Any, where: _Where, env: Mapping[str, str]) -> dict[str, Any]:
	"""The [site] table checked, as SiteSettings' keyword arguments (the secret read from the
	environment when secret_env names it)."""
	if table is None:
		return {}
	if not isinstance(table, dict):
		raise where.error(f"site must be a table: [site] with base_url = ..., not {table!r}"[:300])
	where.unknown(set(table), _SITE_KEYS, "site")
	problems = []
	for key, value in table.items():
		if key == "reply_to_subaddress":
			if not isinstance(value, bool):
				problems.append(f"reply_to_subaddress must be true or false, not {value!r}"[:200])
		elif not isinstance(value, str):
			shown = "" if key == "secret" else f", not {value!r}"[:100]
			problems.append(f"{key} must be text (in quotes){shown}")
		elif _CONTROL.search(value) or (key != "secret" and not value.strip()):
			problems.append(f"{key} is empty or has a control character")
		elif key == "base_url":
			url = urlsplit(value)
			if url.scheme not in ("http", "https") or not url.netloc or " " in value:
				problems.append(
					f"base_url must be the site's address, e.g. https://erp.example.com, not {value!r}"
				)
		elif key in ("unsubscribe_path", "tracking_path") and (not value.startswith("/") or " " in value):
			problems.append(f"{key} must be a path starting with /, not {value!r}")
		elif key == "secret_env" and not _ENV_NAME.match(value):
			problems.append(
				f"secret_env must name an environment variable (letters, digits, _), not {value!r}"
			)
		elif key == "secret" and not value:
			problems.append("secret is empty: set a long random text, or use secret_env")
	if "secret" in table and "secret_env" in table:
		problems.append("secret and secret_env are both set: keep one")
	if problems:
		raise where.error(problems, "site")
	values = {k: v for k, v in table.items() if k not in ("secret", "secret_env")}
	if "secret_env" in table:
		variable = table["secret_env"]
		if not env.get(variable):
			raise where.error(
				f"environment variable {variable} (secret_env) is not set: export it, or remove secret_env",
				"site",
			)
		values["secret"] = env[variable]
	elif "secret" in table:
		values["secret"] = table["secret"]
	return values


def ask_passwords(config: Config, names: list[str], prompt: Callable[[str], str] | None) -> None:
	"""Accounts awaiting their password get it from ``prompt`` (the CLI asks at the terminal)."""
	for name in names:
		account = config.accounts[name]
		if account.awaiting_password and not account.password:
			if prompt is None:
				raise ConfigError(
					"this account is awaiting its password: run the command in a terminal to type it, "
					"or set password_env",
					account=name,
				)
			config.with_password(name, prompt(f"Password for {account.email_id}"))


def site_settings(config: Config, env: Mapping[str, str] | None = None) -> SiteSettings:
	"""SiteSettings from the optional [site] table and the accounts of ``config``."""
	env = os.environ if env is None else env
	values = _site_values(config.raw.get("site"), _Where(config.path), env)
	return site_from_accounts(config.accounts.values(), **values)
