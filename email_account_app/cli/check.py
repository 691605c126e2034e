"""`email-account-app check`: connect to an account's servers and give a verdict."""

from __future__ import annotations

import sys

import click

from .config import ask_passwords
from .group import CliState, out, password_prompt, selected_accounts


@click.command()
@click.argument("account", required=False)
@click.pass_obj
def check(state: CliState, account: str | None):
	"""Connect to the account's servers and say whether it works."""
	from ..diagnose import check_account

	names = selected_accounts(state, account, incoming=False)
	ask_passwords(state.config, names, password_prompt())
	bad = False
	for name in names:
		result = check_account(state.config.accounts[name])
		out.print(result.render())
		bad = bad or not result.ok
	if bad:
		sys.exit(1)
