"""Notify if unreplied: one notice per message left without an answer, never for automatic mail."""

from __future__ import annotations

import email
from datetime import datetime, timedelta, timezone

import pytest

from email_account_app.engine.compose import OutgoingRequest, SiteSettings
from email_account_app.engine.jobs import pull as pull_account
from email_account_app.engine.outbox import queue_mail
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.store import DocRef
from email_account_app.engine.unreplied import notify_unreplied

from .documents import set_document_status
from .factory import make_mail, message_id_of

USER = "alice@example.com"


def later() -> datetime:
	"""Past the 30 minutes the account waits for a reply."""
	return datetime.now(timezone.utc) + timedelta(minutes=31)


@pytest.fixture
def acct(dovecot):
	dovecot.reset(USER)
	data = dovecot.account(USER)
	data.update(
		email_sync_option="ALL",
		append_to="Issue",
		notify_if_unreplied=True,
		unreplied_for_mins=30,
		send_notification_to="lead@example.com, boss@example.com",
		enable_outgoing=True,
		smtp_server="127.0.0.1",
		smtp_port=2525,
		use_tls=False,
		no_smtp_authentication=True,
	)
	return account_from_mapping(data, name="support")


SITE = SiteSettings(base_url="https://erp.example.com", secret="s3cret")


def notices(store):
	return [email.message_from_bytes(r["raw"]) for r in store.rows("SELECT raw FROM outbox")]


def test_one_notice_after_the_wait_and_never_twice(dovecot, store, acct):
	dovecot.append(USER, make_mail(subject="Where is my order?", date=datetime.now(timezone.utc)))
	pull_account(acct, store)
	assert notify_unreplied(store, acct, SITE, now=datetime.now(timezone.utc)) == []  # not yet
	queued = notify_unreplied(store, acct, SITE, now=later())
	assert len(queued) == 1
	(notice,) = notices(store)
	assert "Where is my order?" in notice["Subject"]
	assert notice["To"] == "lead@example.com, boss@example.com"
	assert notice["Auto-Submitted"] == "auto-generated"
	assert notify_unreplied(store, acct, SITE, now=later() + timedelta(hours=1)) == []


def test_no_notice_when_a_reply_was_sent(dovecot, store, acct):
	raw = make_mail(subject="Question", date=datetime.now(timezone.utc))
	dovecot.append(USER, raw)
	pull_account(acct, store)
	queue_mail(
		store,
		acct,
		SITE,
		OutgoingRequest(
			to=("customer@client.test",),
			subject="Re: Question",
			text="Answer",
			in_reply_to=(message_id_of(raw),),
		),
	)
	assert notify_unreplied(store, acct, SITE, now=later()) == []


def test_no_notice_for_automatic_mail_or_closed_documents(dovecot, store, acct):
	dovecot.append(
		USER, make_mail(subject="News", headers={"Precedence": "bulk"}, date=datetime.now(timezone.utc))
	)
	dovecot.append(USER, make_mail(subject="Closed one", date=datetime.now(timezone.utc)))
	report = pull_account(acct, store, keep_messages=True)
	closed = next(m.document for m in report.messages if m.subject == "Closed one")
	set_document_status(store, closed, "Closed")
	assert notify_unreplied(store, acct, SITE, now=later()) == []


def test_off_by_default(dovecot, store, acct):
	import dataclasses

	dovecot.append(USER, make_mail(date=datetime.now(timezone.utc)))
	pull_account(acct, store)
	assert (
		notify_unreplied(store, dataclasses.replace(acct, notify_if_unreplied=False), SITE, now=later()) == []
	)
	assert isinstance(DocRef, type)


def test_an_auto_reply_is_no_answer(dovecot, store, acct):
	"""With auto-reply on too, the customer gets the auto-reply at once and the lead still gets
	the notice: the engine's own automatic mail on the thread answers nothing."""
	import dataclasses

	acct = dataclasses.replace(acct, enable_auto_reply=True, auto_reply_message="We got your message.")
	dovecot.append(USER, make_mail(subject="Still broken", date=datetime.now(timezone.utc)))
	pull_account(acct, store, site=SITE)
	(auto_reply,) = notices(store)
	assert auto_reply["Auto-Submitted"] == "auto-replied"
	queued = notify_unreplied(store, acct, SITE, now=later())
	assert len(queued) == 1
	assert "Still broken" in notices(store)[-1]["Subject"]
