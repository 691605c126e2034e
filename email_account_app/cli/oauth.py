"""`email-account-app login` and `logout`: OAuth 2.0 sign-in for accounts with auth_method "OAuth".

The refresh token is kept in the store file (``[store] path`` or ``--db``; mode 0600), never in
the TOML file; ``pull``, ``send``, ``flush`` and ``check`` sign in with it through
``attach_token_sources``. No token is ever printed: `login` shows only the verification URL and
user code (device flow) or the authorization URL (browser flow), and when the sign-in expires.

Config keys (the TOML file):

    [accounts.support]
    email_id = "support@contoso.com"
    auth_method = "OAuth"
    oauth_provider = "microsoft"          # microsoft | google | custom
    oauth_client_id = "00000000-0000-0000-0000-000000000000"
    oauth_tenant = "contoso.onmicrosoft.com"  # Microsoft; default "organizations"
    oauth_flow = "device"                 # device | browser | client_credentials (default per provider)
    oauth_client_secret_env = "SUPPORT_OAUTH_SECRET"  # only where the app has a secret
    oauth_scopes = ["..."]                # default per provider
    # custom: oauth_token_url, oauth_device_authorization_url, oauth_authorization_url
"""

from __future__ import annotations

import dataclasses
import webbrowser
from datetime import datetime, timezone

import click

from ..engine.errors import ConfigError
from ..engine.oauth import TokenSource
from ..engine.oauth_login import DevicePrompt, sign_in
from ..sqlite_tokens import SQLiteTokenStore
from .config import Config
from .group import CliState


def sign_in_hint(name: str) -> str:
	return f"Sign in again: `email-account-app login {name}`."


def attach_token_sources(config: Config, names: list[str], db_path: str | None) -> None:
	"""Give each OAuth account among ``names`` a token source on the store file's refresh token."""
	store = None
	for name in names:
		account = config.accounts[name]
		if not account.uses_oauth or account.token_source is not None:
			continue
		store = store or SQLiteTokenStore(db_path or config.db_path)
		source = TokenSource(
			name,
			account.oauth,
			store,
			sign_in_hint=sign_in_hint(name),
			ca_file=account.ca_file,
			timeout=account.timeout,
		)
		config.accounts[name] = dataclasses.replace(account, token_source=source)


def _until(epoch: float) -> str:
	when = datetime.fromtimestamp(epoch, timezone.utc)
	minutes = max(0, round((epoch - datetime.now(timezone.utc).timestamp()) / 60))
	return f"{when:%Y-%m-%d %H:%M:%S} UTC (in {minutes} min)"


def _oauth_account(config: Config, name: str):
	account = config.account(name)
	if not account.uses_oauth:
		raise ConfigError(f'{name!r} signs in with a password: set auth_method = "OAuth" to use login')
	return account


@click.command()
@click.argument("name")
@click.option(
	"--db", "db_path", type=click.Path(dir_okay=False), help="SQLite file (default: from the config)."
)
@click.option("--no-browser", is_flag=True, help="Browser flow: print the URL, do not open a browser.")
@click.pass_obj
def login(state: CliState, name: str, db_path: str | None, no_browser: bool):
	"""Sign an OAuth account in and keep its refresh token in the store file."""
	config = state.config
	account = _oauth_account(config, name)
	settings = account.oauth
	store = SQLiteTokenStore(db_path or config.db_path)

	def show_device_prompt(prompt: DevicePrompt) -> None:
		click.echo(
			f"To sign {account.email_id} in, open {prompt.verification_uri} and enter the code "
			f"{prompt.user_code} (within {prompt.expires_in / 60:.0f} minutes).",
			err=True,
		)
		click.echo("Waiting for the sign-in...", err=True)

	def open_url(url: str) -> None:
		click.echo(f"To sign {account.email_id} in, open this address in a browser:\n{url}", err=True)
		if not no_browser:
			try:
				webbrowser.open(url)
			except Exception:
				pass
		click.echo("Waiting for the sign-in...", err=True)

	try:
		token = sign_in(
			name,
			settings,
			store,
			show_device_prompt=show_device_prompt,
			open_url=open_url,
			ca_file=account.ca_file,
			timeout=account.timeout,
		)
	finally:
		store.close()
	if settings.flow == "client_credentials":
		click.echo(
			f"{name}: app-only access works (a token valid until {_until(token.expires_at)}); "
			"it needs no sign-in to keep: each run gets its own token."
		)
		return
	click.echo(
		f"{name}: signed in; the sign-in is kept in {db_path or config.db_path} "
		f"(access token valid until {_until(token.expires_at)}; it is renewed as needed)."
	)


@click.command()
@click.argument("name")
@click.option(
	"--db", "db_path", type=click.Path(dir_okay=False), help="SQLite file (default: from the config)."
)
@click.pass_obj
def logout(state: CliState, name: str, db_path: str | None):
	"""Forget the sign-in (refresh token) kept for an OAuth account."""
	config = state.config
	_oauth_account(config, name)
	store = SQLiteTokenStore(db_path or config.db_path)
	try:
		gone = store.forget_refresh_token(name)
	finally:
		store.close()
	if gone:
		click.echo(
			f"{name}: signed out; the kept sign-in is deleted. `email-account-app login {name}` signs in again."
		)
	else:
		click.echo(f"{name}: was not signed in.")
