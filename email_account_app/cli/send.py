"""`email-account-app send` and `email-account-app flush`: outgoing mail from the command line.

`send` queues one message in the SQLite outbox and sends what is due for that account at once;
`flush` sends what is due (for a cron job, or after a temporary failure). Both print what
happened to each message and exit non-zero when a message was not sent to every recipient.

Config keys for sending (the TOML file):

    [accounts.support]
    enable_outgoing = true
    smtp_server = "smtp.example.com"    # smtp_port, use_tls (STARTTLS, 587) or use_ssl_for_outgoing (465)
    default_outgoing = true             # the account `send` uses without --account (one at most)
    add_signature = true                # with signature = "..." (text or html)
    send_unsubscribe_message = true     # needs [site] secret
    track_email_status = true           # needs [site] secret
    append_emails_to_sent_folder = true # a copy in the IMAP Sent folder (sent_folder_name if not marked)

    [site]                              # optional; needed for unsubscribe links and tracking
    base_url = "https://erp.example.com"  # where those links point
    secret_env = "EMAIL_ACCOUNT_APP_SECRET"  # or secret = "..."; signs the links
    unsubscribe_path = "/api/method/email_account_app.api.unsubscribe"  # default
    tracking_path = "/api/method/email_account_app.api.track"           # default
    reply_to_subaddress = true          # Reply-To: support+TOKEN@...; false if the server cannot

Reply-To goes to the default incoming account, or to the account appending to the document's
DocType (from the [accounts.*] tables).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from ..engine import jobs
from ..engine.compose import OutgoingAttachment, OutgoingRequest
from ..engine.errors import ConfigError
from ..engine.outbox import QUEUED, SENT, FlushReport, default_outgoing, queue_mail
from .config import ask_passwords, site_settings
from .group import CliState, one_line, open_store, out, password_prompt, say
from .oauth import attach_token_sources


def _read_body(body_file: str | None, html_file: str | None) -> tuple[str | None, str | None]:
	text = html = None
	if body_file == "-" or (body_file is None and html_file is None):
		if body_file is None and sys.stdin.isatty():
			raise click.UsageError("give the message's text with --body-file FILE, or pipe it in")
		text = sys.stdin.read()
	elif body_file:
		text = _read(body_file)
	if html_file:
		html = _read(html_file)
	return text, html


def _read(path: str) -> str:
	try:
		return Path(path).read_text("utf-8")
	except OSError as exc:
		raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from None
	except UnicodeDecodeError:
		raise click.BadParameter(f"{path} is not UTF-8 text") from None


def _attachment(path: str) -> OutgoingAttachment:
	try:
		return OutgoingAttachment.from_path(path)
	except OSError as exc:
		raise click.BadParameter(f"cannot read the attachment {path}: {exc.strerror}") from None


@click.command()
@click.option("--account", "-a", help="Account to send from (default: the default_outgoing one).")
@click.option("--to", "to", multiple=True, required=True, help="Recipient (repeatable).")
@click.option("--cc", multiple=True, help="Cc recipient (repeatable).")
@click.option("--bcc", multiple=True, help="Bcc recipient (repeatable).")
@click.option("--subject", "-s", required=True)
@click.option(
	"--body-file", type=click.Path(dir_okay=False, allow_dash=True), help="Text of the message ('-': stdin)."
)
@click.option("--html-file", type=click.Path(dir_okay=False), help="HTML of the message.")
@click.option("--in-reply-to", help="Message-ID this message answers (threads it onto its document).")
@click.option(
	"--attach",
	multiple=True,
	type=click.Path(dir_okay=False, exists=True),
	help="File to attach (repeatable).",
)
@click.option(
	"--db", "db_path", type=click.Path(dir_okay=False), help="SQLite file (default: from the config)."
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object with the result.")
@click.pass_obj
def send(
	state: CliState,
	account: str | None,
	to: tuple[str, ...],
	cc: tuple[str, ...],
	bcc: tuple[str, ...],
	subject: str,
	body_file: str | None,
	html_file: str | None,
	in_reply_to: str | None,
	attach: tuple[str, ...],
	db_path: str | None,
	as_json: bool,
):
	"""Queue a message and send it now."""
	config = state.config
	settings = config.account(account) if account else default_outgoing(config.accounts.values())
	text, html = _read_body(body_file, html_file)
	request = OutgoingRequest(
		to=to,
		cc=cc,
		bcc=bcc,
		subject=subject,
		text=text,
		html=html,
		in_reply_to=(in_reply_to,) if in_reply_to else (),
		attachments=tuple(_attachment(p) for p in attach),
	)
	ask_passwords(config, [settings.name], password_prompt())
	attach_token_sources(config, [settings.name], db_path)
	settings = config.accounts[settings.name]
	site = site_settings(config)
	store = open_store(db_path or config.db_path, config.doctypes)
	try:
		mail = queue_mail(store, settings, site, request)
		if mail is None:
			message = "nothing sent: every recipient has unsubscribed"
			if as_json:
				click.echo(json.dumps({"queued": None, "ok": False, "error": message}))
			else:
				say(message, "yellow")
			sys.exit(1)
		report = jobs.send_due(store, [settings])
	finally:
		store.close()
	mine = next((m for m in report.mails if m.name == mail.name), None)
	if as_json:
		click.echo(json.dumps({"queued": mail.name, "message_id": mail.message_id, **report.as_dict()}))
	else:
		_print_report(report)
		if mine is None:
			say(f"queued as {mail.name}, not sent yet: run `email-account-app flush`", "yellow")
	if mine is None or mine.status != SENT or report.errors:
		sys.exit(1)


@click.command(name="flush")
@click.option(
	"--account", "-a", multiple=True, help="Account name (repeatable); default: every outgoing one."
)
@click.option(
	"--db", "db_path", type=click.Path(dir_okay=False), help="SQLite file (default: from the config)."
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object with the results.")
@click.pass_obj
def flush_command(state: CliState, account: tuple[str, ...], db_path: str | None, as_json: bool):
	"""Send the queued messages that are due."""
	config = state.config
	if account:
		accounts = [config.account(name) for name in account]
	else:
		accounts = [a for a in config.accounts.values() if a.enable_outgoing]
		if not accounts:
			raise ConfigError(f"no account with enable_outgoing in {config.path}")
	names = [a.name for a in accounts]
	ask_passwords(config, names, password_prompt())
	attach_token_sources(config, names, db_path)
	store = open_store(db_path or config.db_path, config.doctypes)
	try:
		report = jobs.send_due(store, [config.accounts[n] for n in names])
	finally:
		store.close()
	if as_json:
		click.echo(json.dumps(report.as_dict()))
	else:
		_print_report(report)
	if not report.ok:
		sys.exit(1)


def _print_report(report: FlushReport) -> None:
	for account, error in report.errors.items():
		say(str(error), label=f"{account}:")
	for warning in report.warnings:
		say(str(warning), "yellow")
	if not report.mails:
		out.print("nothing to send")
		return
	table = Table(title="Sent" if report.ok else "Sending", title_justify="left")
	for column in ("message", "account", "status", "accepted", "detail"):
		table.add_column(column, overflow="fold")
	for m in report.mails:
		color = {SENT: "green", QUEUED: "yellow"}.get(m.status, "red")
		detail = m.error or ""
		if m.status == QUEUED and m.next_try:
			detail = f"will try again at {m.next_try:%Y-%m-%d %H:%M} UTC: {detail}"
		table.add_row(
			Text(m.message_id),
			Text(m.account),
			Text(m.status, style=color),
			Text(", ".join(m.accepted)),
			Text(one_line(detail)),
		)
	out.print(table)
