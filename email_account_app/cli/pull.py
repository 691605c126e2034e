"""`email-account-app pull`: new mail of the incoming accounts into the SQLite store."""

from __future__ import annotations

import json
import os
import sys

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ..engine import jobs
from ..engine.sync import AccountReport
from .config import ask_passwords, site_settings
from .group import CliState, err, one_line, open_store, out, password_prompt, say, selected_accounts
from .oauth import attach_token_sources


@click.command()
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
	names = selected_accounts(state, account, incoming=True)
	config = state.config
	ask_passwords(config, names, password_prompt())
	attach_token_sources(config, names, db_path)
	store = open_store(db_path or config.db_path, config.doctypes)
	site = site_settings(config) if jobs.needs_site(config.accounts.values()) else None
	parse_process = parse_process_from_env()
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
			task = progress.add_task(escape(name), total=None)

			def on_progress(folder: str, done: int, total: int, task=task, name=name) -> None:
				progress.update(task, description=escape(f"{name} {folder}"), completed=done, total=total)

			reports.append(
				jobs.pull(
					config.accounts[name],
					store,
					site=site,
					dry_run=dry_run,
					keep_messages=as_json or dry_run,
					progress=on_progress,
					parse_process=parse_process,
				)
			)
	if not dry_run and site is not None:
		# notices for mail left unreplied are queued now; `flush` sends them
		notices = jobs.send_unreplied_notices(store, config.accounts.values(), site, only=names)
		for name, error in notices.errors.items():
			say(f"{name}: {error}", "yellow")
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


def parse_process_from_env() -> bool | None:
	"""EMAIL_ACCOUNT_APP_PARSE_PROCESS: 1 parses every pull in a second process, 0 none; unset, the
	engine decides by the pull's size and the machine's cores."""
	value = os.environ.get("EMAIL_ACCOUNT_APP_PARSE_PROCESS", "").strip()
	return {"0": False, "1": True}.get(value)


def _print_pull(reports: list[AccountReport], dry_run: bool) -> None:
	"""The results as tables; every value from a message, a server or the config is plain text."""
	for report in reports:
		if dry_run and report.messages:
			table = Table(title=Text(f"{report.name}: what a pull would do"), title_justify="left")
			for column in ("message", "action", "why", "rule", "document"):
				table.add_column(column, overflow="fold")
			for m in report.messages:
				table.add_row(
					*(
						Text(one_line(value))
						for value in (
							m.subject or m.message_id,
							m.action,
							m.reason,
							m.rule or "",
							str(m.document or ""),
						)
					)
				)
			out.print(table)
	table = Table(title="Dry run (nothing written)" if dry_run else "Pull", title_justify="left")
	for column in ("account", "fetched", "stored", "duplicates", "skipped", "failed", "result"):
		table.add_column(column, justify="right" if column not in ("account", "result") else "left")
	for r in reports:
		if r.error:
			result = Text(one_line(f"{r.error_title}: {r.error}"), style="red")
		elif r.failed:
			result = Text(f"{r.failed} message(s) failed; kept with their error", style="yellow")
		else:
			result = Text("ok", style="green")
		table.add_row(
			Text(r.name),
			str(r.fetched),
			str(r.stored),
			str(r.duplicates),
			str(r.skipped),
			str(r.failed),
			result,
		)
	out.print(table)
