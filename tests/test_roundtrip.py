"""One round trip end to end: we send (aiosmtpd), the customer answers (into Dovecot), the pull threads
the answer onto the document our message was about."""

from __future__ import annotations

import email
import email.policy
from urllib.parse import parse_qs

import pytest

from email_account_app.engine import tokens
from email_account_app.engine.compose import OutgoingRequest, site_from_accounts
from email_account_app.engine.jobs import pull as pull_account
from email_account_app.engine.outbox import flush, queue_mail
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.store import DocRef
from email_account_app.sqlite_store import SQLiteStore

from .clients import gmail_reply, outlook_reply
from .factory import make_mail, message_id_of

USER = "alice@example.com"
CUSTOMER = "Customer One <customer@client.test>"


@pytest.fixture
def support(dovecot, smtp_plain):
	"""alice@example.com: incoming from Dovecot (appending to Issue), outgoing through aiosmtpd."""
	dovecot.reset(USER)
	data = {
		**smtp_plain.account(USER),
		**dovecot.account(USER),
		"email_sync_option": "ALL",
		"append_to": "Issue",
	}
	return account_from_mapping(data, name="support")


def site_for(account):
	return site_from_accounts([account], base_url="https://erp.example.com", secret="site-secret")


def delivered(smtp, message_id):
	for delivery in smtp.deliveries:
		msg = email.message_from_bytes(delivery.content, policy=email.policy.default)
		if str(msg["Message-ID"]).strip("<>") == message_id:
			return msg
	raise AssertionError(f"{message_id} was not delivered")


def communication(store, message_id):
	(row,) = store.rows("SELECT * FROM communications WHERE message_id=?", message_id)
	return row


def test_customer_writes_we_answer_they_answer_back(dovecot, smtp_plain, store, support):
	# 1. the customer writes in: a new Issue
	first = make_mail(subject="Printer on fire", sender=CUSTOMER, to=USER)
	dovecot.append(USER, first)
	report = pull_account(support, store)
	assert (report.created, report.error) == (1, None)
	issue = DocRef("Issue", communication(store, message_id_of(first))["reference_name"])

	# 2. we answer from the desk; it goes out over SMTP
	site = site_for(support)
	ours = queue_mail(
		store,
		support,
		site,
		OutgoingRequest(
			to=(CUSTOMER,),
			subject="Re: Printer on fire",
			text="Have you tried turning it off and on?",
			in_reply_to=(message_id_of(first),),
			sender="agent@example.com",
			sender_name="Agent Smith",
		),
	)
	assert ours.document == issue
	assert flush(store, [support]).ok
	sent = delivered(smtp_plain, ours.message_id)
	assert sent["Reply-To"].addresses[0].addr_spec == f"alice+{ours.thread_token}@example.com"
	assert sent["In-Reply-To"] == f"<{message_id_of(first)}>"

	# 3. the customer answers from Gmail; the pull threads it onto the same Issue
	reply, reply_id = gmail_reply(
		ours.message_id, "Printer on fire", sender=CUSTOMER, to=str(sent["Reply-To"])
	)
	dovecot.append(USER, reply)
	report = pull_account(support, store)
	assert (report.linked, report.created, report.error) == (1, 0, None), report
	row = communication(store, reply_id)
	assert (row["reference_doctype"], row["reference_name"]) == (issue.doctype, issue.name)
	assert row["rule"] == "in-reply-to"
	assert store.count("documents") == 1


def test_we_write_first_and_the_reply_without_headers_finds_the_thread_by_its_token(
	dovecot, smtp_plain, store, support
):
	# an outgoing message that starts a thread (no document yet)
	site = site_for(support)
	ours = queue_mail(
		store, support, site, OutgoingRequest(to=(CUSTOMER,), subject="Your quote", text="Here it is.")
	)
	assert flush(store, [support]).ok
	sent = delivered(smtp_plain, ours.message_id)
	reply_to = str(sent["Reply-To"])
	assert tokens.token_from_address(reply_to) == ours.thread_token

	# Outlook, set to drop In-Reply-To and References, answers to the Reply-To address
	reply, reply_id = outlook_reply(
		ours.message_id, "Your quote", sender=CUSTOMER, to=reply_to, headers=False
	)
	dovecot.append(USER, reply)
	report = pull_account(support, store)
	assert report.error is None and report.linked == 1, report
	row = communication(store, reply_id)
	assert row["rule"] == "thread-token"
	assert row["thread_token"] == ours.thread_token


def test_our_copy_in_the_sent_folder_is_not_imported_as_mail(dovecot, smtp_plain, store, support):
	account = account_from_mapping(
		{
			**smtp_plain.account(USER),
			**dovecot.account(USER),
			"email_sync_option": "ALL",
			"append_emails_to_sent_folder": True,
			"folders": [{"folder_name": "INBOX", "append_to": "Issue"}, {"folder_name": "Sent"}],
		},
		name="support",
	)
	site = site_for(account)
	ours = queue_mail(store, account, site, OutgoingRequest(to=(CUSTOMER,), subject="Hello", text="Hi"))
	report = flush(store, [account])
	assert report.ok and not report.warnings
	assert len(dovecot.messages(USER, "Sent")) == 1
	pulled = pull_account(account, store)
	assert pulled.error is None and pulled.stored == 0 and pulled.skipped == 1
	assert store.count("communications") == 1
	assert communication(store, ours.message_id)["sent_or_received"] == "Sent"


def test_unsubscribing_by_mail_unsubscribes_and_creates_nothing(dovecot, smtp_plain, store, tmp_path):
	"""A mail client that unsubscribes through List-Unsubscribe's mailto: sends a mail to the account
	with the subject the header gives (the recipient's signed token in it)."""
	dovecot.reset(USER)
	account = account_from_mapping(
		{
			**smtp_plain.account(USER),
			**dovecot.account(USER),
			"email_sync_option": "ALL",
			"append_to": "Issue",
			"send_unsubscribe_message": True,
		},
		name="support",
	)
	site = site_for(account)
	queue_mail(store, account, site, OutgoingRequest(to=(CUSTOMER,), subject="Our news", text="News"))
	assert flush(store, [account]).ok
	sent = email.message_from_bytes(smtp_plain.deliveries[0].content, policy=email.policy.default)
	mailto = next(part.strip(" <>") for part in str(sent["List-Unsubscribe"]).split(",") if "mailto:" in part)
	address, _, query = mailto.removeprefix("mailto:").partition("?")
	subject = parse_qs(query)["subject"][0]
	assert address == USER and subject.startswith("unsubscribe ")

	dovecot.append(USER, make_mail(sender=CUSTOMER, to=USER, subject=subject, body=""))
	dovecot.append(USER, make_mail(sender=CUSTOMER, to=USER, subject="unsubscribe me.please", body="?"))
	report = pull_account(account, store, site=site, keep_messages=True)
	assert report.error is None and report.skipped == 1 and report.stored == 1
	unsubscribed, ordinary = report.messages
	assert (unsubscribed.action, unsubscribed.rule) == ("skipped", "unsubscribe")
	assert "customer@client.test asked to unsubscribe" in unsubscribed.reason
	assert store.is_unsubscribed("customer@client.test")
	# a subject that only looks like one, without our token, is an ordinary mail
	assert (ordinary.action, ordinary.document.doctype) == ("created", "Issue")
	assert store.count("documents") == 1
	# and without the site's secret nothing can be told apart: the request is ordinary mail too
	assert pull_account(account, SQLiteStore(tmp_path / "other.sqlite3")).created == 2
