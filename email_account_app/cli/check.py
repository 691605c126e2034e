"""`email-account-app check`: connect to an account's servers and give a verdict."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ..engine.connection import CheckResult
from ..engine.jobs import test_connection
from .config import ask_passwords
from .group import CliState, out, password_prompt, selected_accounts
from .oauth import attach_token_sources


@click.command()
@click.argument("account", required=False)
@click.option(
	"--db",
	"db_path",
	type=click.Path(dir_okay=False),
	help="SQLite file with the OAuth sign-ins (default: from the config).",
)
@click.pass_obj
def check(state: CliState, account: str | None, db_path: str | None):
	"""Connect to the account's servers and say whether it works (and until when an OAuth sign-in holds)."""
	names = selected_accounts(state, account, incoming=False)
	ask_passwords(state.config, names, password_prompt())
	attach_token_sources(state.config, names, db_path)
	bad = False
	for name in names:
		result = test_connection(state.config.accounts[name])
		out.print(render(result))
		bad = bad or not result.ok
	if bad:
		sys.exit(1)


def render(result: CheckResult) -> Panel:
	"""The verdict as a panel; text from servers and settings is printed as it is (no markup)."""
	items: list[Any] = []
	for part in result.parts:
		mark = "[green]OK[/]" if part.ok else "[red]FAILED[/]"
		items.append(f"[bold]{escape(part.label)}[/] {escape(part.server)}: {mark} {escape(part.message)}")
		if part.capabilities:
			items.append(escape("  capabilities: " + " ".join(part.capabilities)))
		if part.folders:
			table = Table(show_edge=False, pad_edge=False)
			table.add_column("folder")
			table.add_column("messages", justify="right")
			table.add_column("unseen", justify="right")
			for name, messages, unseen in part.folders:
				table.add_row(escape(name), str(messages), str(unseen))
			items.append(table)
	if not result.parts:
		items.append("neither incoming nor outgoing is enabled: nothing to check")
	verdict = "[green]works[/]" if result.ok else "[red]needs attention[/]"
	account = result.account
	return Panel(Group(*items), title=f"{escape(account.name)} <{escape(account.email_id)}>: {verdict}")
