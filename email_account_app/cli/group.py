"""The `email-account-app` click group, its shared state and the helpers every command uses.

What the CLI prints is never read as rich markup: a subject, a server's words or an error saying
"the [site] table" show as they are (``Text`` objects, ``escape``). Messages on stderr are one line
each, not wrapped at the console's width: an expected error is ``Error: ...`` and exit 2; a log
record is one line with its exception's title and message; anything unexpected is one line and
exit 1. Only ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
from collections.abc import Callable, Mapping

import click
from rich.console import Console
from rich.text import Text

from ..engine.errors import EmailSyncError
from ..engine.logs import log_thread_failure, log_to_stderr, one_line
from ..engine.secrets import guard_handlers
from ..sqlite_store import DocTypeMapping, SQLiteStore
from .config import Config, load_config

err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console(highlight=False)


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


def say(message: str, style: str = "", *, label: str = "") -> None:
	"""One line on stderr, printed as it is (no markup), never wrapped."""
	line = Text()
	if label:
		line.append(label, style="bold red")
		line.append(" ")
	line.append(one_line(message), style=style)
	err.print(line, soft_wrap=True, crop=False, overflow="ignore")


def fail(message: str, code: int = 2) -> None:
	say(message, label="Error:")
	sys.exit(code)


def open_store(path: str, doctypes: Mapping[str, DocTypeMapping] | None = None) -> SQLiteStore:
	"""The SQLite store at ``path``; a store that cannot be opened is an expected error."""
	try:
		return SQLiteStore(path, doctypes=doctypes)
	except (sqlite3.Error, OSError) as exc:
		fail(f"cannot open the store {path}: {exc} (check [store] path in the config, or --db)")


def setup_logging(debug: bool) -> None:
	"""Log records to stderr, one line each (tracebacks with --debug); so is an exception that
	ends a thread."""
	log_to_stderr(tracebacks=debug, level=logging.DEBUG if debug else logging.WARNING)
	guard_handlers(logging.root.handlers)  # no form of a password in any log line
	threading.excepthook = log_thread_failure


class _Group(click.Group):
	"""Expected errors end with a plain message and exit 2; anything else with one line and exit 1;
	--debug shows the traceback."""

	def invoke(self, ctx: click.Context):
		try:
			return super().invoke(ctx)
		except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
			raise
		except EmailSyncError as exc:
			if ctx.obj is not None and ctx.obj.debug:
				raise
			fail(str(exc))
		except Exception as exc:
			if ctx.obj is not None and ctx.obj.debug:
				raise
			fail(
				f"unexpected error: {type(exc).__name__}: {exc}; run again with --debug for details",
				1,
			)


@click.group(cls=_Group)
@click.option(
	"--config",
	"config_path",
	envvar="EMAIL_ACCOUNT_APP_CONFIG",
	help="TOML file with [accounts.NAME] tables (default: ./email_account_app.toml).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and protocol logs (passwords redacted).")
@click.version_option(package_name="email_account_app")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, debug: bool):
	"""Email accounts that sync mail both ways: pull, check and send without Frappe."""
	ctx.obj = CliState(config_path, debug)
	setup_logging(debug)


def selected_accounts(state: CliState, account: tuple[str, ...] | str | None, *, incoming: bool) -> list[str]:
	config = state.config
	if account:
		names = [account] if isinstance(account, str) else list(account)
		for name in names:
			config.account(name)
		return names
	names = [n for n, a in config.accounts.items() if a.enable_incoming or not incoming]
	if not names:
		fail(f"no account with enable_incoming in {config.path}: set enable_incoming = true in one", 2)
	return names


def password_prompt() -> Callable[[str], str] | None:
	if not sys.stdin.isatty():
		return None
	return lambda text: click.prompt(text, hide_input=True, err=True)
