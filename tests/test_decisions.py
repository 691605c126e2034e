"""The engine's decisions that both stores rely on: which account sends, whether a reply reopens a
document, what a site's own mail about a document answers."""

from __future__ import annotations

import email
import email.policy

import pytest

from email_account_app.engine.jobs import needs_site
from email_account_app.engine.outbox import SiteMailThread, answering, sending_account, site_mail_thread
from email_account_app.engine.routing import reopened_status
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.store import CommunicationRef, DocRef, DocumentState


def account(name: str, **values):
	base = {
		"email_id": f"{name}@example.com",
		"password": "pw",
		"email_server": "imap.example.com",
		"smtp_server": "smtp.example.com",
		"enable_incoming": False,
		"enable_outgoing": True,
	}
	return account_from_mapping({**base, **values}, name=name, use_presets=False)


NOTIFY = account("notify", default_outgoing=True)
SUPPORT = account("support", enable_incoming=True, append_to="Issue")
JOBS = account("jobs", enable_incoming=True, folders=[{"folder_name": "INBOX", "append_to": "Job Applicant"}])
READ_ONLY = account("readonly", enable_incoming=True, enable_outgoing=False, append_to="Lead")
ALL = [NOTIFY, SUPPORT, JOBS, READ_ONLY]


@pytest.mark.parametrize(
	("sender", "doctype", "expected"),
	[
		("support@example.com", None, "support"),  # the sender's own account
		("Support Team <SUPPORT@example.com>", "Job Applicant", "support"),  # the sender first
		("agent@example.com", "Issue", "support"),  # the account appending to the DocType
		("agent@example.com", "Job Applicant", "jobs"),  # ... or one of its folders
		("agent@example.com", "Lead", "notify"),  # an account that does not send: the default
		(None, None, "notify"),
		("", "ToDo", "notify"),
	],
)
def test_the_sending_account(sender, doctype, expected):
	assert sending_account(ALL, sender=sender, doctype=doctype).name == expected


def test_no_sending_account_without_one_that_sends():
	assert sending_account([READ_ONLY], sender="readonly@example.com") is None
	awaiting = account("late", default_outgoing=True, awaiting_password=True, password=None)
	assert sending_account([awaiting]) is None


@pytest.mark.parametrize(
	("state", "expected"),
	[
		(DocumentState("Replied", can_open=True), "Open"),
		(DocumentState("Resolved", can_open=True), "Open"),
		(DocumentState("Closed", can_open=True), "Open"),
		(DocumentState("Open", can_open=True), None),
		(DocumentState("On Hold", can_open=True), None),
		(DocumentState("Converted", can_open=True), None),
		(DocumentState("Rejected", can_open=True), None),
		(DocumentState("Closed", can_open=False), None),  # no Open status to go back to
		(DocumentState(None), None),
		(None, None),  # no such document
	],
)
def test_the_reopening_rule(state, expected):
	assert reopened_status(state) == expected


class _Index:
	"""A thread index holding what one account received about one document."""

	def __init__(self, refs):
		self.refs = refs

	def received_about(self, account, document, limit=50):
		return [r for r in self.refs if r.account == account and r.document == document][:limit]


def _ref(n: int, token: str | None = None) -> CommunicationRef:
	return CommunicationRef(
		str(n), "support", f"m{n}@client.test", "Received", DocRef("Issue", "ISS-1"), thread_token=token
	)


def test_site_mail_answers_the_newest_mail_about_its_document():
	index = _Index([_ref(1, "tok1"), _ref(2), _ref(3)])
	thread = site_mail_thread(index, "support", DocRef("Issue", "ISS-1"))
	assert thread == SiteMailThread(("m1@client.test", "m2@client.test", "m3@client.test"), "tok1")
	assert thread.parent == "m3@client.test"
	assert site_mail_thread(index, "support", DocRef("Issue", "ISS-2")) is None
	assert site_mail_thread(index, "other", DocRef("Issue", "ISS-1")) is None
	assert site_mail_thread(index, "support", None) is None


def test_answering_puts_thread_headers_before_the_message():
	raw = b"From: a@example.com\r\nTo: b@client.test\r\nSubject: Re: help\r\n\r\nbody\r\n"
	thread = SiteMailThread(("m1@client.test", "m2@client.test"), None)
	message = email.message_from_bytes(answering(raw, thread, None), policy=email.policy.default)
	assert message["In-Reply-To"] == "<m2@client.test>"
	assert message["References"].split() == ["<m1@client.test>", "<m2@client.test>"]
	assert message.get_content().strip() == "body"
	kept = answering(raw, thread, "<m0@client.test>")
	assert b"References" not in kept.split(b"\r\n\r\n")[0].split(b"From:")[0]


def test_a_site_is_needed_for_links_auto_replies_and_notices():
	assert not needs_site([NOTIFY, SUPPORT])
	assert needs_site([account("x", enable_auto_reply=True, auto_reply_message="hi")])
	assert needs_site([account("x", send_unsubscribe_message=True)])
	assert needs_site([account("x", notify_if_unreplied=True, send_notification_to="lead@example.com")])
