"""Background work: pulls, the outbox, unreplied notices.

The scheduler (hooks.py) calls the ``*_all`` functions; each fans out one job per account, so
accounts run in parallel on as many workers as the site has, and a job already queued or running
for an account is not queued again (``job_id`` + ``deduplicate``). One account failing is logged
against it and stops nothing else.
"""

from __future__ import annotations

import os

import frappe
from frappe import _
from frappe.utils import cint, now_datetime

from .accounts import (
	ACCOUNT_DOCTYPE,
	enabled_account_names,
	load_account,
	site_accounts,
	site_settings,
)
from .engine import jobs
from .engine.errors import ConfigError
from .engine.secrets import scrub
from .engine.sync import AccountReport
from .frappe_store import MESSAGE, OUTBOX, FrappeStore

PULL_JOB = "email_sync_pull::{}"
FLUSH_JOB = "email_sync_flush::{}"
PULL_TIMEOUT = 45 * 60  # a first pull of a big mailbox; a later one starts where this one stopped
FLUSH_TIMEOUT = 20 * 60


# -- pulls ---------------------------------------------------------------------------------------


def pull_all() -> None:
	"""Scheduler: one pull job per account with incoming enabled (and its password given)."""
	for name in enabled_account_names(incoming=True):
		queue_pull(name)


def queue_pull(name: str, *, after_commit: bool = False) -> None:
	frappe.enqueue(
		"email_account_app.tasks.pull_account",
		queue="long",
		timeout=PULL_TIMEOUT,
		job_id=PULL_JOB.format(name),
		deduplicate=True,
		enqueue_after_commit=after_commit,
		account=name,
	)


def pull_account(account: str, *, store: FrappeStore | None = None, **engine_options) -> AccountReport | None:
	"""Pull one account (a background job). The store commits each message (with its cursor) on
	its own, so a pull cut short keeps everything before the cut and the next one goes on from there.
	Auto-replies the pull queues are sent by a flush job queued right after.
	"""
	started = now_datetime()
	if not frappe.db.exists(ACCOUNT_DOCTYPE, account):
		return None  # deleted since the job was queued
	try:
		settings = load_account(account)
	except ConfigError as exc:
		_finish_pull(account, started, error=str(exc), log=True)
		return None
	if not settings.enable_incoming or settings.awaiting_password:
		return None
	store = store or FrappeStore()
	if jobs.needs_site([settings]):
		# auto-replies to send, or unsubscribe requests (List-Unsubscribe mailto:) to recognise
		engine_options.setdefault("site", site_settings())
	engine_options.setdefault("parse_process", parse_process_from_env())
	try:
		report = jobs.pull(settings, store, **engine_options)
	except Exception as exc:
		if store.commit:
			frappe.db.rollback()
		_finish_pull(account, started, error=f"{type(exc).__name__}: {exc}", log=True, traceback=True)
		return None
	_finish_pull(account, started, report=report, log=bool(report.error))
	if frappe.db.exists(OUTBOX, {"account": account, "status": "Queued"}):
		queue_flush(account, after_commit=True)
	if store.commit:
		frappe.db.commit()
	return report


def _finish_pull(
	account: str,
	started,
	*,
	report: AccountReport | None = None,
	error: str | None = None,
	log: bool = False,
	traceback: bool = False,
) -> None:
	"""The account's status fields: when it last pulled, what came of it, the error in plain words.
	An error is logged (Error Log, against the account) when it is new, not on every pull."""
	error = scrub(error or (report.error if report else None) or "") or None
	previous = frappe.db.get_value(ACCOUNT_DOCTYPE, account, "last_error")
	values = {"last_pull": started, "last_error": error or None}
	if report is not None:
		values["last_pull_summary"] = summary(report)
	values.update(counts(account))
	if frappe.db.exists(ACCOUNT_DOCTYPE, account):
		frappe.db.set_value(ACCOUNT_DOCTYPE, account, values, update_modified=False)
	if log and error and error != previous:
		frappe.log_error(
			title=_("Email Sync Account {0}: pull failed").format(account),
			message=_traceback() if traceback else error,
			reference_doctype=ACCOUNT_DOCTYPE,
			reference_name=account,
		)


def _traceback() -> str:
	"""The traceback being handled, for the Error Log, without any form of a password in it."""
	return scrub(frappe.get_traceback())


def summary(report: AccountReport) -> str:
	"""What a pull did, in a line."""
	if not report.fetched and not report.error:
		return _("No new mail.")
	text = _(
		"{0} new: {1} created, {2} linked, {3} stored, {4} skipped, {5} already there, {6} failed."
	).format(
		report.fetched,
		report.created,
		report.linked,
		report.stored - report.created - report.linked,
		report.skipped,
		report.duplicates,
		report.failed,
	)
	if report.error:
		text += " " + _("Stopped early: {0}").format(report.error)
	return text


def counts(account: str) -> dict[str, int]:
	rows = frappe.get_all(
		MESSAGE, filters={"account": account}, fields=["status", "count(name) as count"], group_by="status"
	)
	by_status = {row.status: cint(row.count) for row in rows}
	sent = frappe.db.count(OUTBOX, {"account": account, "status": ("in", ("Sent", "Partly Sent"))})
	return {
		"received_count": by_status.get("Received", 0),
		"skipped_count": by_status.get("Skipped", 0),
		"failed_count": by_status.get("Failed", 0),
		"sent_count": sent,
	}


# -- the outbox ----------------------------------------------------------------------------------


def flush_all() -> None:
	"""Scheduler: one flush job per account that has mail in its outbox (Queued, or left in
	Sending by a worker that died: the flush queues that again once its claim is stale)."""
	accounts = frappe.get_all(
		OUTBOX,
		filters={"status": ("in", ("Queued", "Sending"))},
		pluck="account",
		distinct=True,
	)
	for name in accounts:
		queue_flush(name)


def queue_flush(name: str, *, after_commit: bool = False) -> None:
	frappe.enqueue(
		"email_account_app.tasks.flush_account",
		queue="short",
		timeout=FLUSH_TIMEOUT,
		job_id=FLUSH_JOB.format(name),
		deduplicate=True,
		enqueue_after_commit=after_commit,
		account=name,
	)


def flush_account(account: str, *, store: FrappeStore | None = None, **engine_options):
	"""Send what is due in one account's outbox (a background job)."""
	store = store or FrappeStore()
	if not frappe.db.exists(ACCOUNT_DOCTYPE, account):
		return None  # deleted since the job was queued
	try:
		settings = load_account(account)
	except ConfigError as exc:
		frappe.log_error(
			title=_("Email Sync Account {0}: cannot send").format(account),
			message=str(exc),
			reference_doctype=ACCOUNT_DOCTYPE,
			reference_name=account,
		)
		return None
	try:
		report = jobs.send_due(store, [settings], **engine_options)
	except Exception:
		if store.commit:
			frappe.db.rollback()
		frappe.log_error(
			title=_("Email Sync Account {0}: sending failed").format(account),
			message=_traceback(),
			reference_doctype=ACCOUNT_DOCTYPE,
			reference_name=account,
		)
		return None
	for name, error in report.errors.items():
		frappe.log_error(
			title=_("Email Sync Account {0}: sending failed").format(name),
			message=error,
			reference_doctype=ACCOUNT_DOCTYPE,
			reference_name=name,
		)
	frappe.db.set_value(ACCOUNT_DOCTYPE, account, counts(account), update_modified=False)
	if store.commit:
		frappe.db.commit()
	return report


# -- unreplied notices ---------------------------------------------------------------------------


def notify_unreplied() -> None:
	"""Scheduler: the engine's ``send_unreplied_notices`` over the site's accounts; a notice goes
	out through the account itself when it sends mail, else through the default outgoing one."""
	if not frappe.db.exists(ACCOUNT_DOCTYPE, {"enable_incoming": 1, "notify_if_unreplied": 1}):
		return
	try:
		report = jobs.send_unreplied_notices(FrappeStore(), site_accounts(), site_settings())
		frappe.db.commit()
	except Exception:
		frappe.db.rollback()
		frappe.log_error(title=_("Email Sync: unreplied notices failed"), message=_traceback())
		return
	for name, error in report.errors.items():
		frappe.log_error(
			title=_("Email Sync Account {0}: unreplied notice failed").format(name),
			message=error,
			reference_doctype=ACCOUNT_DOCTYPE,
			reference_name=name,
		)
	for name in report.senders:
		queue_flush(name, after_commit=True)
	frappe.db.commit()


def parse_process_from_env() -> bool | None:
	"""EMAIL_ACCOUNT_APP_PARSE_PROCESS in the worker's environment: 1 parses every pull in a second
	process, 0 none; unset, the engine decides by the pull's size and the machine's cores."""
	value = os.environ.get("EMAIL_ACCOUNT_APP_PARSE_PROCESS", "").strip()
	return {"0": False, "1": True}.get(value)


__all__ = [
	"flush_account",
	"flush_all",
	"notify_unreplied",
	"pull_account",
	"pull_all",
	"queue_flush",
	"queue_pull",
]
