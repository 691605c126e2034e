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

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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
_MAPPING_KEYS = {
	"subject_field",
	"sender_field",
	"sender_name_field",
	"status_field",
	"naming_prefix",
	"open_status",
}


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


def load_config(path: str | os.PathLike | None = None, *, env: dict[str, str] | None = None) -> Config:
	path = Path(path or os.environ.get("EMAIL_ACCOUNT_APP_CONFIG") or DEFAULT_CONFIG)
	env = os.environ if env is None else env
	try:
		data = tomllib.loads(path.read_text("utf-8"))
	except FileNotFoundError:
		raise ConfigError(f"config file {path} not found: pass --config FILE (see the README for its format)")
	except tomllib.TOMLDecodeError as exc:
		raise ConfigError(f"{path} is not valid TOML: {exc}")
	except UnicodeDecodeError:
		raise ConfigError(f"{path} is not UTF-8 text")

	domains = {}
	for name, table in _tables(data, "domains", path).items():
		domain = domain_from_mapping(table, domain_name=name)
		domains[domain.domain_name] = domain

	accounts = {}
	for name, table in _tables(data, "accounts", path).items():
		table = dict(table)
		variable = table.pop("password_env", None)
		if variable:
			if variable not in env:
				raise ConfigError(f"environment variable {variable} (password_env) is not set", account=name)
			table["password"] = env[variable]
		variable = table.pop("oauth_client_secret_env", None)
		if variable:
			if variable not in env:
				raise ConfigError(
					f"environment variable {variable} (oauth_client_secret_env) is not set", account=name
				)
			table["oauth_client_secret"] = env[variable]
		accounts[name] = account_from_mapping(table, name=name, domains=domains)
	check_defaults(accounts.values())

	doctypes = {}
	for name, table in _tables(data, "doctypes", path).items():
		unknown = set(table) - _MAPPING_KEYS
		if unknown:
			raise ConfigError(f"[doctypes.{name}]: unknown key(s): {', '.join(sorted(unknown))}")
		doctypes[name] = DocTypeMapping(**table)

	store = data.get("store") or {}
	db_path = store.get("path") or DEFAULT_DB
	if not os.path.isabs(db_path):
		db_path = str(path.parent / db_path)
	return Config(path, accounts, domains, doctypes, db_path, data)


def _tables(data: dict[str, Any], key: str, path: Path) -> dict[str, dict[str, Any]]:
	tables = data.get(key) or {}
	if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
		raise ConfigError(f"{path}: [{key}.NAME] must be tables")
	return tables


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


_SITE_KEYS = {"base_url", "secret", "secret_env", "unsubscribe_path", "tracking_path", "reply_to_subaddress"}


def site_settings(config: Config, env: dict[str, str] | None = None) -> SiteSettings:
	"""SiteSettings from the optional [site] table and the accounts of ``config``."""
	env = os.environ if env is None else env
	table = config.raw.get("site") or {}
	if not isinstance(table, dict):
		raise ConfigError(f"{config.path}: [site] must be a table")
	unknown = set(table) - _SITE_KEYS
	if unknown:
		raise ConfigError(f"[site]: unknown key(s): {', '.join(sorted(unknown))}")
	values = {k: v for k, v in table.items() if k not in ("secret", "secret_env")}
	secret = table.get("secret")
	variable = table.get("secret_env")
	if variable:
		if variable not in env:
			raise ConfigError(f"environment variable {variable} ([site] secret_env) is not set")
		secret = env[variable]
	if secret is not None:
		values["secret"] = str(secret)
	if "reply_to_subaddress" in values and not isinstance(values["reply_to_subaddress"], bool):
		raise ConfigError("[site] reply_to_subaddress must be true or false")
	return site_from_accounts(config.accounts.values(), **values)
