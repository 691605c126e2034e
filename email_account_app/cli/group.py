"""The `email-account-app` click group, its shared state and the helpers every command uses."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import click
from rich.console import Console

from ..engine.errors import EmailSyncError
from ..engine.secrets import guard_handlers
from .config import Config, load_config

err = Console(stderr=True)
out = Console()


class CliState:
	def __init__(self, config_path: str | None, debug: bool):
		self.config_path = config_path
		self.debug = debug
		self._config: Config | None = None

	@property
	def config(self) -> Config:
		if self._config is None:
			self._config = load_config(self.config_path)
		return self._config


def fail(message: str, code: int = 2) -> None:
	err.print(f"[bold red]Error:[/] {message}", highlight=False)
	sys.exit(code)


class _Group(click.Group):
	"""Expected errors end with a plain message and a non-zero exit; --debug shows the traceback."""

	def invoke(self, ctx: click.Context):
		try:
			return super().invoke(ctx)
		except EmailSyncError as exc:
			if ctx.obj is not None and ctx.obj.debug:
				raise
			fail(str(exc))


@click.group(cls=_Group)
@click.option(
	"--config",
	"config_path",
	type=click.Path(dir_okay=False),
	envvar="EMAIL_ACCOUNT_APP_CONFIG",
	help="TOML file with [accounts.NAME] tables (default: ./email_account_app.toml).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and protocol logs (passwords redacted).")
@click.version_option(package_name="email_account_app")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, debug: bool):
	"""Email accounts that sync mail both ways: pull, check and send without Frappe."""
	ctx.obj = CliState(config_path, debug)
	logging.basicConfig(
		level=logging.DEBUG if debug else logging.WARNING,
		format="%(levelname)s %(name)s: %(message)s",
		stream=sys.stderr,
	)
	guard_handlers(logging.root.handlers)  # no form of a password in any log line


def selected_accounts(state: CliState, account: tuple[str, ...] | str | None, *, incoming: bool) -> list[str]:
	config = state.config
	if account:
		names = [account] if isinstance(account, str) else list(account)
		for name in names:
			config.account(name)
		return names
	names = [n for n, a in config.accounts.items() if a.enable_incoming or not incoming]
	if not names:
		fail(f"no account with enable_incoming in {config.path}", 2)
	return names


def password_prompt() -> Callable[[str], str] | None:
	if not sys.stdin.isatty():
		return None
	return lambda text: click.prompt(text, hide_input=True, err=True)
