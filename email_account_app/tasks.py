"""Background work: pulls, the outbox, unreplied notices.

The scheduler (hooks.py) calls the ``*_all`` functions; each fans out one job per account, so
accounts run in parallel on as many workers as the site has, and a job already queued or running
for an account is not queued again (``job_id`` + ``deduplicate``). One account failing is logged
against it and stops nothing else.

Pulls: core's scheduler (``pull`` every 10 minutes -> ``pull_from_email_account`` -> the Email
Account's ``receive()``) and the app's (every minute) both end in ``pull_account``, which holds a
lock per account (Redis, expiring, renewed as the pull goes) for the whole pull: whichever starts a
pull of an account first runs it, another returns at once. The app's job carries core's
``job_name``, so core's scheduler does not queue its own while ours waits or runs. A pull stops
on its own after ``PULL_BUDGET`` seconds (inside the short queue's time limit) and the next goes on
from its cursors: a long first sync runs across jobs.

OAuth accounts (connected_app.py): one not authorised yet, or whose sign-in the provider refused
for good and that is not authorised again since, is not pulled (nothing asks the provider); the
pull that meets such a refusal records it once (``connected_app.sign_in_lost``). A token endpoint
that does not answer is an error like a mail server's: the next pull tries again.
"""

from __future__ import annotations

import dataclasses
import os

import frappe
from frappe import _
from frappe.utils import now_datetime

from .accounts import (
	ACCOUNT_DOCTYPE,
	account_settings,
	enabled_account_names,
	engine_serves,
	site_accounts,
	site_settings,
	site_words,
)
from .connected_app import blocked, sign_in_lost
from .engine import jobs
from .engine.errors import ConfigError, SignInRequired, TimeLimitReached
from .engine.secrets import scrub
from .engine.sync import AccountReport
from .frappe_store import FrappeStore

#: core's job name for a pull (``email_account.pull`` skips an account that has a job of this name)
PULL_JOB = "pull_from_email_account|{}"
PULL_QUEUE = "short"
PULL_TIMEOUT = 300  # the short queue's; a pull stops by itself before (PULL_BUDGET)
PULL_BUDGET = 240  # seconds a pull reads before it stops between batches (the next goes on)
LOCK_TIMEOUT = 120  # the lock expires this long after its last renewal (a worker that died)


# -- pulls ---------------------------------------------------------------------------------------


def pull_all() -> None:
	"""Scheduler: one pull job per account with incoming enabled (and its password given), when the
	app's code is what reads Email Account on this site (another app's override may win: then that
	app's receive() runs from core's scheduler, and the engine does not read behind its back)."""
	from .overrides.compose import app_controls
	from .overrides.email_account import EmailAccountEngine

	if not app_controls(ACCOUNT_DOCTYPE, EmailAccountEngine)[0]:
		return
	for name in enabled_account_names(incoming=True):
		queue_pull(name)


def queue_pull(name: str, *, after_commit: bool = False) -> None:
	"""One pull job for the account, unless one is queued or running (ours, by job_id; core's sees
	ours by job_name)."""
	job = PULL_JOB.format(name)
	frappe.enqueue(
		"email_account_app.tasks.pull_account",
		queue=PULL_QUEUE,
		timeout=PULL_TIMEOUT,
		job_id=job,
		job_name=job,
		deduplicate=True,
		enqueue_after_commit=after_commit,
		account=name,
	)


class PullLock:
	"""One pull per account at a time, across processes and machines: a Redis lock named for the
	site and the account, taken without waiting, held across the pull's many commits, renewed as
	the pull goes (``renew``) and expiring ``LOCK_TIMEOUT`` after the last renewal if the worker
	dies."""

	def __init__(self, account: str):
		self.key = frappe.cache.make_key(f"email_account_app:pull:{account}")
		self.lock = frappe.cache.lock(self.key, timeout=LOCK_TIMEOUT, blocking=False)
		self.held = False

	def acquire(self) -> bool:
		self.held = bool(self.lock.acquire(blocking=False))
		return self.held

	def renew(self) -> None:
		if self.held:
			self.lock.reacquire()

	def release(self) -> None:
		if self.held:
			self.held = False
			try:
				self.lock.release()
			except Exception:  # expired meanwhile (a pull longer than LOCK_TIMEOUT between renewals)
				pass

	def __enter__(self) -> bool:
		return self.acquire()

	def __exit__(self, *exc) -> None:
		self.release()


def pull_account(
	account: str, *, store: FrappeStore | None = None, doc=None, **engine_options
) -> AccountReport | None:
	"""Pull one account (a background job, or the Email Account's ``receive()``). Returns None at
	once when a pull of the account is already running. The store commits each message (with its
	cursor) on its own, so a pull cut short keeps everything before the cut and the next one goes
	on from there. Auto-replies the pull queues wait in core's Email Queue, which sends them.
	"""
	engine_options.pop("job_name", None)  # a Frappe that passes enqueue's job_name on to the job
	lock = PullLock(account)
	with lock as locked:
		if not locked:
			return None  # a pull of this account is running (core's scheduler or ours): it reads the mail
		return _pull_account(account, store=store, doc=doc, lock=lock, **engine_options)


def _pull_account(account: str, *, store, doc, lock: PullLock, **engine_options) -> AccountReport | None:
	started = now_datetime()
	if doc is None:
		if not frappe.db.exists(ACCOUNT_DOCTYPE, account):
			return None  # deleted since the job was queued
		doc = frappe.get_doc(ACCOUNT_DOCTYPE, account)
	if not engine_serves(doc):
		return None  # core's own receive() reads it (v16: Frappe Mail)
	if doc.enable_incoming and blocked(doc):
		return None  # not authorised (again) yet: the form and the connected user have been told
	try:
		settings = account_settings(doc)
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
	# the pull stops by itself inside the short queue's time limit; the next job goes on from there
	settings = dataclasses.replace(settings, pull_timeout=min(settings.pull_timeout, PULL_BUDGET))
	progress = engine_options.pop("progress", None)

	def renew(folder: str, done: int, total: int) -> None:
		lock.renew()
		if progress is not None:
			progress(folder, done, total)

	try:
		report = jobs.pull(settings, store, progress=renew, **engine_options)
	except Exception as exc:
		if store.commit:
			frappe.db.rollback()
		_finish_pull(account, started, error=f"{type(exc).__name__}: {exc}", log=True, traceback=True)
		return None
	lost = settings.uses_oauth and report.error_title == SignInRequired.title
	if lost:
		sign_in_lost(doc, report.error or "")  # its own Error Log, once
	_count_failed_attempts(doc, report)
	# a pull that used up its time is no failure: the next one goes on (its summary says so)
	_finish_pull(
		account,
		started,
		report=report,
		log=bool(report.error) and report.error_title != TimeLimitReached.title and not lost,
	)
	if store.commit:
		frappe.db.commit()
	return report


#: the engine's error titles that mean the account cannot log in or reach its server (core counts
#: these and disables incoming after a few in a row)
CONNECT_ERRORS = {
	"Login failed",
	"Secure connection failed",
	"Server not found",
	"Connection refused",
	"Server did not answer",
}


def _count_failed_attempts(doc, report: AccountReport) -> None:
	"""Core's failed-attempts counter: a pull that could not log in or connect counts one (core's
	``handle_incoming_connect_error``, which disables incoming after several and tells the System
	Managers); one that could resets it."""
	if report.error and report.error_title in CONNECT_ERRORS:
		if hasattr(doc, "handle_incoming_connect_error"):
			doc.handle_incoming_connect_error(description=f"{report.error_title}: {report.error}")
	elif not report.error and hasattr(doc, "set_failed_attempts_count") and doc.get_failed_attempts_count():
		doc.set_failed_attempts_count(0)


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
	if error is None and report is not None and report.error_title != TimeLimitReached.title:
		error = report.error  # a pull that used up its time is no error: the summary says more is coming
	error = site_words(scrub(error or "")) or None
	meta = frappe.get_meta(ACCOUNT_DOCTYPE)
	previous = (
		frappe.db.get_value(ACCOUNT_DOCTYPE, account, "last_error") if meta.has_field("last_error") else None
	)
	values = {"last_pull": started, "last_error": error or None}
	if report is not None:
		values["last_pull_summary"] = summary(report)
	values = {key: value for key, value in values.items() if meta.has_field(key)}
	if values and frappe.db.exists(ACCOUNT_DOCTYPE, account):
		frappe.db.set_value(ACCOUNT_DOCTYPE, account, values, update_modified=False)
	if log and error and error != previous:
		frappe.log_error(
			title=_("Email Account {0}: pull failed").format(account),
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
	if report.error_title == TimeLimitReached.title:
		text += " " + _("More to read: the next pull goes on where this one stopped.")
	elif report.error:
		text += " " + _("Stopped early: {0}").format(report.error)
	return text


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
			title=_("Email Account {0}: unreplied notice failed").format(name),
			message=error,
			reference_doctype=ACCOUNT_DOCTYPE,
			reference_name=name,
		)
	frappe.db.commit()


def parse_process_from_env() -> bool | None:
	"""EMAIL_ACCOUNT_APP_PARSE_PROCESS in the worker's environment: 1 parses every pull in a second
	process, 0 none; unset, the engine decides by the pull's size and the machine's cores."""
	value = os.environ.get("EMAIL_ACCOUNT_APP_PARSE_PROCESS", "").strip()
	return {"0": False, "1": True}.get(value)


__all__ = [
	"notify_unreplied",
	"pull_account",
	"pull_all",
	"queue_pull",
]
