"""`email-account-app`: the sync engine without Frappe, on a TOML config and SQLite."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .cli_config import Config, ask_passwords, load_config
from .engine.errors import EmailSyncError
from .engine.sync import AccountReport, pull_account
from .sqlite_store import SQLiteStore

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


def _fail(message: str, code: int = 2) -> None:
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
			_fail(str(exc))


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


def _selected(state: CliState, account: tuple[str, ...] | str | None, *, incoming: bool) -> list[str]:
	config = state.config
	if account:
		names = [account] if isinstance(account, str) else list(account)
		for name in names:
			config.account(name)
		return names
	names = [n for n, a in config.accounts.items() if a.enable_incoming or not incoming]
	if not names:
		_fail(f"no account with enable_incoming in {config.path}", 2)
	return names


def _prompt() -> Callable[[str], str] | None:
	if not sys.stdin.isatty():
		return None
	return lambda text: click.prompt(text, hide_input=True, err=True)


# -- pull ------------------------------------------------------------------------------------


@main.command()
@click.option(
	"--account", "-a", multiple=True, help="Account name (repeatable); default: every incoming one."
)
@click.option(
	"--db", "db_path", type=click.Path(dir_okay=False), help="SQLite file (default: from the config)."
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object with the results.")
@click.option("--dry-run", is_flag=True, help="Say what would happen to each new message; write nothing.")
@click.pass_obj
def pull(state: CliState, account: tuple[str, ...], db_path: str | None, as_json: bool, dry_run: bool):
	"""Pull new mail of the accounts into the store."""
	names = _selected(state, account, incoming=True)
	config = state.config
	ask_passwords(config, names, _prompt())
	store = SQLiteStore(db_path or config.db_path, doctypes=config.doctypes)
	site = _site_or_none(config)
	reports: list[AccountReport] = []
	show_progress = not as_json and err.is_terminal
	with Progress(
		TextColumn("{task.description}"),
		BarColumn(),
		MofNCompleteColumn(),
		TimeRemainingColumn(),
		console=err,
		transient=True,
		disable=not show_progress,
	) as progress:
		for name in names:
			task = progress.add_task(name, total=None)

			def on_progress(folder: str, done: int, total: int, task=task, name=name) -> None:
				progress.update(task, description=f"{name} {folder}", completed=done, total=total)

			reports.append(
				pull_account(
					config.accounts[name],
					store,
					dry_run=dry_run,
					keep_messages=as_json or dry_run,
					progress=on_progress,
					site=site,
				)
			)
	if not dry_run and site is not None:
		_queue_unreplied_notices(config, store, site, names)
	if as_json:
		click.echo(
			json.dumps(
				{"accounts": [r.as_dict(messages=True) for r in reports], "dry_run": dry_run},
				ensure_ascii=False,
			)
		)
	else:
		_print_pull(reports, dry_run)
	if any(not r.ok for r in reports):
		sys.exit(1)


def _site_or_none(config: Config):
	"""The [site] settings when any account sends mail of its own (auto-replies, notices) or
	unsubscribe links (whose mailto: requests a pull acts on)."""
	if not any(
		a.enable_auto_reply or a.notify_if_unreplied or a.send_unsubscribe_message
		for a in config.accounts.values()
	):
		return None
	from .cli_send import site_settings

	return site_settings(config)


def _queue_unreplied_notices(config: Config, store: SQLiteStore, site, names: list[str]) -> None:
	"""Queue notices for mail left unreplied; `flush` sends them."""
	from .engine.outbox import default_outgoing
	from .engine.unreplied import notify_unreplied

	for name in names:
		account = config.accounts[name]
		if not account.notify_if_unreplied:
			continue
		sender = account if account.enable_outgoing else default_outgoing(config.accounts.values())
		notify_unreplied(store, account, site, sender=sender)


def _print_pull(reports: list[AccountReport], dry_run: bool) -> None:
	for report in reports:
		if dry_run and report.messages:
			table = Table(title=f"{report.name}: what a pull would do", title_justify="left")
			for column in ("message", "action", "why", "rule", "document"):
				table.add_column(column, overflow="fold")
			for m in report.messages:
				table.add_row(
					m.subject or m.message_id, m.action, m.reason, m.rule or "", str(m.document or "")
				)
			out.print(table)
	table = Table(title="Dry run (nothing written)" if dry_run else "Pull", title_justify="left")
	for column in ("account", "fetched", "stored", "duplicates", "skipped", "failed", "result"):
		table.add_column(column, justify="right" if column not in ("account", "result") else "left")
	for r in reports:
		if r.error:
			result = f"[red]{r.error_title}: {r.error}[/]"
		elif r.failed:
			result = f"[yellow]{r.failed} message(s) failed; kept with their error[/]"
		else:
			result = "[green]ok[/]"
		table.add_row(
			r.name, str(r.fetched), str(r.stored), str(r.duplicates), str(r.skipped), str(r.failed), result
		)
	out.print(table)


# -- check -----------------------------------------------------------------------------------


@main.command()
@click.argument("account", required=False)
@click.pass_obj
def check(state: CliState, account: str | None):
	"""Connect to the account's servers and say whether it works."""
	from .diagnose import check_account

	names = _selected(state, account, incoming=False)
	ask_passwords(state.config, names, _prompt())
	bad = False
	for name in names:
		result = check_account(state.config.accounts[name])
		out.print(result.render())
		bad = bad or not result.ok
	if bad:
		sys.exit(1)


from . import cli_send  # registers `send` and `flush` on main

if __name__ == "__main__":
	main()
