"""The outbox end to end: queue, flush over real SMTP servers, retries, crashes, links, auto-replies, CLI."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from email_account_app.engine import tokens
from email_account_app.engine.autoreply import (
	AUTO_REPLY_WINDOW,
	maybe_auto_reply,
	queue_auto_reply,
	should_auto_reply,
)
from email_account_app.engine.compose import OutgoingRequest, SiteSettings
from email_account_app.engine.errors import ConfigError
from email_account_app.engine.outbox import (
	MAX_RETRIES,
	SENDING_LEASE,
	default_outgoing,
	flush,
	queue_mail,
	retry_delay,
	track_open,
	unsubscribe,
)
from email_account_app.engine.parsing import parse_message
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.store import Decision, DocRef, Location, SaveResult
from email_account_app.sqlite_store import SQLiteStore

from .factory import make_mail

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
SITE = SiteSettings(base_url="https://erp.example.com", secret="site-secret")
ROOT = Path(__file__).resolve().parent.parent


def sender_account(server, address="support@example.com", **overrides):
	data = server.account(address, **overrides)
	return account_from_mapping(data, name=data.pop("name", "support"), use_presets=False)


def hello(**overrides):
	values = {"to": ("Customer One <customer@client.test>",), "subject": "Hello", "text": "Hi there."}
	values.update(overrides)
	return OutgoingRequest(**values)


def sent_row(store, message_id):
	(row,) = store.rows("SELECT * FROM communications WHERE message_id=?", message_id)
	return row


def recipients(store, name):
	return store.get_outgoing(name).extra["recipients"]


def delivered_ids(server) -> Counter:
	return Counter(
		(str(email.message_from_bytes(d.content, policy=email.policy.default)["Message-ID"]).strip("<>"), r)
		for d in server.deliveries
		for r in d.rcpt_tos
	)


def received(store, raw, *, action="create", append_to="Issue", account="support", uid="1"):
	"""Store ``raw`` as mail the account received, starting a new thread."""
	message = parse_message(raw)
	token = tokens.new_thread_token()
	decision = Decision(action, append_to=append_to if action == "create" else None, thread_token=token)
	result = store.save_received(account, Location("INBOX", 1, uid), message, decision, None)
	return message, decision, result


# -- queue and flush ---------------------------------------------------------------------------


def test_queue_records_a_sent_communication_and_flush_sends_it(store, smtp_plain):
	acct = sender_account(smtp_plain)
	mail = queue_mail(store, acct, SITE, hello(document=DocRef("Issue", "ISS-00001")), now=T0)
	row = sent_row(store, mail.message_id)
	assert (row["sent_or_received"], row["delivery_status"], row["account"]) == ("Sent", "Queued", "support")
	assert (row["reference_doctype"], row["reference_name"]) == ("Issue", "ISS-00001")
	assert row["thread_token"] == mail.thread_token == tokens.token_from_message_id(mail.message_id)
	assert row["recipients"] == "customer@client.test" and row["subject"] == "Hello"
	assert store.get_outgoing(mail.name).status == "Queued"
	assert smtp_plain.deliveries == []

	report = flush(store, [acct], now=T0)
	assert report.ok and report.count("Sent") == 1 and report.sessions == 1
	assert delivered_ids(smtp_plain) == Counter({(mail.message_id, "customer@client.test"): 1})
	assert sent_row(store, mail.message_id)["delivery_status"] == "Sent"
	assert store.get_outgoing(mail.name).status == "Sent"
	assert recipients(store, mail.name) == {"customer@client.test": ("Sent", 250, None)}
	# nothing is sent twice
	assert flush(store, [acct], now=T0 + timedelta(hours=1)).mails == []
	assert len(smtp_plain.deliveries) == 1


def test_a_reply_joins_the_thread_and_document_of_the_message_it_answers(store, smtp_plain):
	acct = sender_account(smtp_plain)
	message, decision, result = received(store, make_mail(subject="Printer broken"))
	assert result.document == DocRef("Issue", "ISS-00001")
	mail = queue_mail(
		store, acct, SITE, hello(subject="Re: Printer broken", in_reply_to=(message.message_id,)), now=T0
	)
	assert mail.thread_token == decision.thread_token
	assert mail.document == DocRef("Issue", "ISS-00001")
	row = sent_row(store, mail.message_id)
	assert (row["reference_name"], row["in_reply_to"]) == ("ISS-00001", message.message_id)
	flush(store, [acct], now=T0)
	sent = parse_message(smtp_plain.deliveries[0].content)
	assert sent.in_reply_to == (message.message_id,) and sent.references == (message.message_id,)


def test_one_smtp_session_per_account_batch(store, smtp_starttls, smtp_plain):
	one = sender_account(smtp_starttls)
	two = sender_account(smtp_plain, "other@example.com", name="other")
	for n in range(60):  # more than one claim batch
		queue_mail(store, one, SITE, hello(subject=f"n{n}"), now=T0)
	for n in range(5):
		queue_mail(store, two, SITE, hello(subject=f"m{n}"), now=T0)
	report = flush(store, [one, two], now=T0)
	assert report.ok and report.count("Sent") == 65
	assert report.sessions == 2
	assert smtp_starttls.connections == 1 and len(smtp_starttls.deliveries) == 60
	assert smtp_plain.connections == 1 and len(smtp_plain.deliveries) == 5


def test_flush_limit(store, smtp_plain):
	acct = sender_account(smtp_plain)
	for n in range(5):
		queue_mail(store, acct, SITE, hello(subject=f"n{n}"), now=T0)
	assert len(flush(store, [acct], now=T0, limit=2).mails) == 2
	assert len(flush(store, [acct], now=T0).mails) == 3


def test_default_outgoing(smtp_plain):
	a = sender_account(smtp_plain, name="a")
	b = sender_account(smtp_plain, "b@example.com", name="b", default_outgoing=True)
	assert default_outgoing([a, b]) is b
	with pytest.raises(ConfigError, match="no account is the default outgoing"):
		default_outgoing([a])
	c = sender_account(smtp_plain, "c@example.com", name="c", default_outgoing=True)
	with pytest.raises(ConfigError, match="only one account can be the default outgoing"):
		default_outgoing([a, b, c])


def test_an_account_that_does_not_send_is_refused(store, smtp_plain):
	with pytest.raises(ConfigError, match="enable_outgoing"):
		queue_mail(store, sender_account(smtp_plain, enable_outgoing=False), SITE, hello())


# -- failures and retries ------------------------------------------------------------------------


def test_4xx_is_retried_later_with_backoff_and_accepted_recipients_are_not_sent_again(store, smtp_plain):
	acct = sender_account(smtp_plain)
	smtp_plain.refuse("busy@client.test", "450 4.2.1 mailbox busy")
	mail = queue_mail(store, acct, SITE, hello(to=("ok@client.test", "busy@client.test")), now=T0)

	report = flush(store, [acct], now=T0)
	(result,) = report.mails
	assert (result.status, result.retries, result.next_try) == ("Queued", 1, T0 + retry_delay(1))
	assert result.accepted == ("ok@client.test",) and result.refused == {
		"busy@client.test": (450, "4.2.1 mailbox busy")
	}
	assert recipients(store, mail.name) == {
		"ok@client.test": ("Sent", 250, None),
		"busy@client.test": ("Pending", 450, "4.2.1 mailbox busy"),
	}
	assert sent_row(store, mail.message_id)["delivery_status"] == "Delayed"
	assert not report.ok

	# not due yet
	assert flush(store, [acct], now=T0 + timedelta(minutes=1)).mails == []
	smtp_plain.reset()
	report = flush(store, [acct], now=T0 + retry_delay(1))
	assert [m.status for m in report.mails] == ["Sent"]
	assert delivered_ids(smtp_plain) == Counter({(mail.message_id, "busy@client.test"): 1})
	assert store.get_outgoing(mail.name).status == "Sent"
	assert sent_row(store, mail.message_id)["delivery_status"] == "Sent"


def test_backoff_doubles_and_gives_up_after_max_retries(store, smtp_plain):
	acct = sender_account(smtp_plain)
	smtp_plain.answer_data("451 4.3.0 try again later")
	mail = queue_mail(store, acct, SITE, hello(), now=T0)
	now, delays = T0, []
	for _ in range(MAX_RETRIES):
		(result,) = flush(store, [acct], now=now).mails
		assert result.status == "Queued" and "451 4.3.0 try again later" in result.error
		delays.append(result.next_try - now)
		now = result.next_try
	assert delays == [timedelta(minutes=m) for m in (2, 4, 8, 16, 32, 64)]
	(result,) = flush(store, [acct], now=now).mails
	assert result.status == "Failed" and result.error.startswith(f"given up after {MAX_RETRIES + 1} tries")
	assert store.get_outgoing(mail.name).status == "Failed"
	assert recipients(store, mail.name)["customer@client.test"][0] == "Failed"
	assert sent_row(store, mail.message_id)["delivery_status"] == "Error"
	assert flush(store, [acct], now=now + timedelta(days=1)).mails == []


def test_5xx_per_recipient_is_recorded_with_the_servers_words(store, smtp_plain):
	acct = sender_account(smtp_plain)
	smtp_plain.refuse("gone@client.test", "550 5.1.1 <gone@client.test>: Recipient address rejected")
	mail = queue_mail(store, acct, SITE, hello(to=("ok@client.test",), cc=("gone@client.test",)), now=T0)
	(result,) = flush(store, [acct], now=T0).mails
	assert result.status == "Partly Sent"
	assert "Recipient address rejected" in result.error
	assert recipients(store, mail.name) == {
		"ok@client.test": ("Sent", 250, None),
		"gone@client.test": ("Failed", 550, "5.1.1 <gone@client.test>: Recipient address rejected"),
	}
	assert sent_row(store, mail.message_id)["delivery_status"] == "Partly Sent"
	# final: not tried again
	assert flush(store, [acct], now=T0 + timedelta(days=1)).mails == []


def test_every_recipient_refused_for_good_fails(store, smtp_plain):
	acct = sender_account(smtp_plain)
	smtp_plain.refuse("gone@client.test", "550 5.1.1 no such user")
	mail = queue_mail(store, acct, SITE, hello(to=("gone@client.test",)), now=T0)
	(result,) = flush(store, [acct], now=T0).mails
	assert result.status == "Failed" and "no such user" in result.error
	assert store.get_outgoing(mail.name).error == result.error


def test_too_large_for_the_server_fails_without_sending(store, smtp_plain):
	acct = sender_account(smtp_plain)
	smtp_plain.limit_size(3000)
	mail = queue_mail(store, acct, SITE, hello(text="x" * 5000), now=T0)
	(result,) = flush(store, [acct], now=T0).mails
	assert result.status == "Failed" and "more than the" in result.error
	assert recipients(store, mail.name)["customer@client.test"][:2] == ("Failed", 552)
	assert smtp_plain.deliveries == []


def test_a_dropped_connection_is_retried(store, smtp_starttls):
	acct = sender_account(smtp_starttls)
	first = queue_mail(store, acct, SITE, hello(subject="one"), now=T0)
	smtp_starttls.drop_at_data()
	(result,) = flush(store, [acct], now=T0).mails
	assert result.status == "Queued" and result.retries == 1
	smtp_starttls.drop_at_data(False)
	second = queue_mail(store, acct, SITE, hello(subject="two"), now=T0)
	report = flush(store, [acct], now=T0 + timedelta(hours=1))
	assert [m.status for m in report.mails] == ["Sent", "Sent"]
	assert set(delivered_ids(smtp_starttls)) == {
		(first.message_id, "customer@client.test"),
		(second.message_id, "customer@client.test"),
	}


def test_a_session_that_cannot_open_leaves_the_mail_queued_and_other_accounts_go_on(
	store, smtp_starttls, smtp_plain
):
	bad = sender_account(smtp_starttls, password="wrong")
	good = sender_account(smtp_plain, "other@example.com", name="other")
	stuck = queue_mail(store, bad, SITE, hello(), now=T0)
	fine = queue_mail(store, good, SITE, hello(), now=T0)
	report = flush(store, [bad, good], now=T0)
	assert "Login failed" in report.errors["support"] and "other" not in report.errors
	assert store.get_outgoing(stuck.name).status == "Queued" and store.get_outgoing(stuck.name).retries == 1
	assert "refused the login" in store.get_outgoing(stuck.name).error
	assert store.get_outgoing(fine.name).status == "Sent"
	assert "wrong" not in json.dumps(report.as_dict())


# -- crash safety ----------------------------------------------------------------------------------


class Crash(BaseException):
	"""Stands for the process dying: nothing catches it."""


def test_crash_after_the_server_accepted_never_sends_again_nor_loses_mail(store, smtp_plain, monkeypatch):
	acct = sender_account(smtp_plain)
	mails = [
		queue_mail(store, acct, SITE, hello(subject=f"n{n}", to=("a@client.test", "b@client.test")), now=T0)
		for n in range(3)
	]
	real_finish = store.finish

	def crash_on_first_finish(*args, **kwargs):
		raise Crash

	monkeypatch.setattr(store, "finish", crash_on_first_finish)
	with pytest.raises(Crash):
		flush(store, [acct], now=T0)
	monkeypatch.setattr(store, "finish", real_finish)
	# the first was accepted and recorded; the others were claimed but not sent
	assert [store.get_outgoing(m.name).status for m in mails] == ["Sending"] * 3
	assert set(recipients(store, mails[0].name).values()) == {("Sent", 250, None)}
	assert len(smtp_plain.deliveries) == 1

	# a flush soon after leaves them to the process that might still be sending them
	assert flush(store, [acct], now=T0 + timedelta(minutes=1)).mails == []
	report = flush(store, [acct], now=T0 + SENDING_LEASE + timedelta(seconds=1))
	assert [m.status for m in report.mails] == ["Sent"] * 3
	assert report.warnings and "interrupted" in report.warnings[0]
	counts = delivered_ids(smtp_plain)
	assert counts == Counter(
		{(m.message_id, r): 1 for m in mails for r in ("a@client.test", "b@client.test")}
	)
	assert all(sent_row(store, m.message_id)["delivery_status"] == "Sent" for m in mails)


CRASH_SCRIPT = """
import json, os, signal, sys
from email_account_app.engine.outbox import flush
from email_account_app.engine.settings import account_from_mapping
from email_account_app.sqlite_store import SQLiteStore

store = SQLiteStore(sys.argv[1])
account = account_from_mapping(json.loads(sys.argv[2]), name="support", use_presets=False)
record = store.record_delivery

def record_then_die(*args, **kwargs):
	record(*args, **kwargs)
	os.kill(os.getpid(), signal.SIGKILL)

store.record_delivery = record_then_die
flush(store, [account])
"""


def test_sigkill_mid_batch_then_flush_again(tmp_path, smtp_plain):
	db = tmp_path / "mail.sqlite3"
	store = SQLiteStore(db)
	mapping = smtp_plain.account()
	acct = account_from_mapping(dict(mapping), name="support", use_presets=False)
	mails = [queue_mail(store, acct, SITE, hello(subject=f"n{n}")) for n in range(4)]
	result = subprocess.run(
		[sys.executable, "-c", CRASH_SCRIPT, str(db), json.dumps(mapping)],
		cwd=ROOT,
		capture_output=True,
		text=True,
		timeout=60,
	)
	assert result.returncode == -signal.SIGKILL, result.stderr
	assert len(smtp_plain.deliveries) == 1
	assert store.count("outbox", status="Sending") == 4

	later = datetime.now(timezone.utc) + SENDING_LEASE + timedelta(minutes=1)
	report = flush(store, [acct], now=later)
	assert sorted(m.status for m in report.mails) == ["Sent"] * 4
	assert delivered_ids(smtp_plain) == Counter({(m.message_id, "customer@client.test"): 1 for m in mails})
	store.close()


# -- personal links, tracking, unsubscribe ---------------------------------------------------------


def _link(raw: bytes, pattern: str) -> str:
	text = raw.decode("ascii", "replace")
	msg = email.message_from_bytes(raw, policy=email.policy.default)
	html = msg.get_body(("html",)).get_content()
	match = re.search(pattern, html) or re.search(pattern, text)
	return parse_qs(urlparse(match.group(1).replace("&amp;", "&")).query)["token"][0]


def test_each_recipient_gets_their_own_unsubscribe_link_in_one_session(store, smtp_plain):
	acct = sender_account(smtp_plain, send_unsubscribe_message=True)
	mail = queue_mail(
		store, acct, SITE, hello(to=("a@client.test", "b@client.test"), bcc=("c@client.test",)), now=T0
	)
	report = flush(store, [acct], now=T0)
	assert report.ok and smtp_plain.connections == 1
	by_rcpt = {d.rcpt_tos: d.content for d in smtp_plain.deliveries}
	assert set(by_rcpt) == {("a@client.test",), ("b@client.test",), ("c@client.test",)}
	for (rcpt,), raw in by_rcpt.items():
		token = _link(raw, r'href="([^"]+unsubscribe[^"]+)"')
		assert unsubscribe(store, SITE, token)["email"] == rcpt
		assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
	assert store.get_outgoing(mail.name).status == "Sent"


def test_unsubscribe_is_recorded_once_and_later_bulk_mail_skips_the_address(store, smtp_plain):
	acct = sender_account(smtp_plain, send_unsubscribe_message=True)
	queue_mail(store, acct, SITE, hello(to=("leaver@client.test",)), now=T0)
	flush(store, [acct], now=T0)
	token = _link(smtp_plain.deliveries[0].content, r'href="([^"]+unsubscribe[^"]+)"')
	first = unsubscribe(store, SITE, token, now=T0)
	assert first["new"] is True and first["email"] == "leaver@client.test"
	assert unsubscribe(store, SITE, token, now=T0)["new"] is False
	assert store.count("unsubscribes") == 1 and store.is_unsubscribed("Leaver@Client.test")

	body, mac = token.split(".")
	with pytest.raises(tokens.BadToken):
		unsubscribe(
			store,
			SITE,
			tokens.sign(
				{"email": "victim@client.test", "account": "support"}, "guess", purpose="unsubscribe"
			),
		)
	with pytest.raises(tokens.BadToken):
		unsubscribe(store, SITE, body + "x." + mac)
	assert store.count("unsubscribes") == 1

	bulk = queue_mail(
		store, acct, SITE, hello(to=("leaver@client.test", "stayer@client.test"), bulk=True), now=T0
	)
	assert bulk.recipients == ("stayer@client.test",) and bulk.extra["skipped"] == ("leaver@client.test",)
	assert queue_mail(store, acct, SITE, hello(to=("leaver@client.test",), bulk=True), now=T0) is None
	auto = queue_mail(
		store, acct, SITE, hello(to=("leaver@client.test",), automatic="auto-generated"), now=T0
	)
	assert auto is None
	# a person writing to them still can
	assert queue_mail(store, acct, SITE, hello(to=("leaver@client.test",)), now=T0).recipients == (
		"leaver@client.test",
	)


def test_tracking_pixel_marks_the_message_opened(store, smtp_plain):
	acct = sender_account(smtp_plain, track_email_status=True)
	mail = queue_mail(store, acct, SITE, hello(to=("a@client.test", "b@client.test")), now=T0)
	flush(store, [acct], now=T0)
	token = _link(smtp_plain.deliveries[0].content, r'<img src="([^"]+)"')
	assert sent_row(store, mail.message_id)["delivery_status"] == "Sent"
	assert track_open(store, SITE, token, now=T0) is True
	assert sent_row(store, mail.message_id)["delivery_status"] == "Opened"
	assert track_open(store, SITE, token, now=T0) is True  # opened again: still Opened
	with pytest.raises(tokens.BadToken):
		track_open(store, SiteSettings(secret="other"), token)
	forged = tokens.sign({"account": "support", "message_id": "x@y.z"}, "guess", purpose="track")
	with pytest.raises(tokens.BadToken):
		track_open(store, SITE, forged)


def test_opened_is_not_overwritten_by_a_later_retry(store, smtp_plain):
	acct = sender_account(smtp_plain, track_email_status=True)
	smtp_plain.refuse("busy@client.test", "451 4.7.1 greylisted")
	mail = queue_mail(store, acct, SITE, hello(to=("a@client.test", "busy@client.test")), now=T0)
	flush(store, [acct], now=T0)
	track_open(store, SITE, _link(smtp_plain.deliveries[0].content, r'<img src="([^"]+)"'))
	smtp_plain.reset()
	flush(store, [acct], now=T0 + timedelta(hours=1))
	assert store.get_outgoing(mail.name).status == "Sent"
	assert sent_row(store, mail.message_id)["delivery_status"] == "Opened"


# -- the Sent folder -------------------------------------------------------------------------------


def test_sent_mail_is_appended_to_the_sent_folder_once(store, smtp_plain, dovecot):
	user = "alice@example.com"
	dovecot.reset(user)
	# one account, incoming on Dovecot and outgoing on aiosmtpd (plain: Dovecot's CA is the ca_file)
	data = {**smtp_plain.account(user), **dovecot.account(user), "append_emails_to_sent_folder": True}
	acct = account_from_mapping(data, name="alice")
	smtp_plain.refuse("busy@client.test", "450 4.2.1 busy")
	first = queue_mail(store, acct, SITE, hello(to=("a@client.test", "busy@client.test")), now=T0)
	second = queue_mail(store, acct, SITE, hello(subject="two"), now=T0)
	report = flush(store, [acct], now=T0)
	assert not report.warnings, report.warnings
	smtp_plain.reset()
	flush(store, [acct], now=T0 + timedelta(hours=1))
	assert store.get_outgoing(first.name).status == "Sent"
	copies = dovecot.messages(user, "Sent")
	ids = sorted(
		str(email.message_from_bytes(r, policy=email.policy.default)["Message-ID"]).strip("<>")
		for r in copies.values()
	)
	assert ids == sorted([first.message_id, second.message_id])
	assert all("\\Seen" in f for f in dovecot.flags(user, "Sent").values())


# -- auto-reply ------------------------------------------------------------------------------------


def auto_account(server, **overrides):
	return sender_account(
		server, enable_auto_reply=True, auto_reply_message="Thanks, we got your message.", **overrides
	)


def test_auto_reply_to_a_new_thread(store, smtp_plain):
	acct = auto_account(smtp_plain)
	message, decision, result = received(
		store, make_mail(subject="Help please", sender="Pat <pat@client.test>")
	)
	mail = maybe_auto_reply(store, acct, SITE, message, result, decision, T0)
	assert mail is not None and mail.recipients == ("pat@client.test",)
	assert mail.document == DocRef("Issue", "ISS-00001") and mail.thread_token == decision.thread_token
	flush(store, [acct], now=T0)
	sent = email.message_from_bytes(smtp_plain.deliveries[0].content, policy=email.policy.default)
	assert sent["Auto-Submitted"] == "auto-replied"
	assert sent["In-Reply-To"] == f"<{message.message_id}>"
	assert sent["Subject"] == "Re: Help please" and str(sent["To"]) == "Pat <pat@client.test>"
	assert "Thanks, we got your message." in sent.get_body(("plain",)).get_content()
	assert sent["List-Unsubscribe"] is None


def test_auto_reply_at_most_once_per_thread(store, smtp_plain):
	acct = auto_account(smtp_plain)
	message, decision, result = received(store, make_mail(sender="pat@client.test"))
	assert maybe_auto_reply(store, acct, SITE, message, result, decision, T0) is not None
	# the same thread again (a second message created nothing new, e.g. a retry of the hook)
	later = T0 + AUTO_REPLY_WINDOW * 3
	assert maybe_auto_reply(store, acct, SITE, message, result, decision, later) is None
	# a reply in the thread is a link, never a new thread
	reply, _, reply_result = received(store, make_mail(sender="pat@client.test"), action="store", uid="2")
	link = Decision("link", thread=None, document=result.document)
	assert maybe_auto_reply(store, acct, SITE, reply, reply_result, link, later) is None
	assert store.count("outbox") == 1


def test_auto_reply_is_rate_limited_per_sender(store, smtp_plain):
	acct = auto_account(smtp_plain)

	def auto(sender, uid, now):
		message, decision, result = received(store, make_mail(sender=sender), uid=uid)
		return maybe_auto_reply(store, acct, SITE, message, result, decision, now), message

	assert auto("pat@client.test", "1", T0)[0] is not None
	mail, message = auto("pat@client.test", "2", T0 + timedelta(minutes=30))
	assert mail is None
	ok, reason = should_auto_reply(acct, message, store, T0 + timedelta(minutes=30))
	assert not ok and "already had an auto-reply" in reason
	assert auto("pat@client.test", "3", T0 + AUTO_REPLY_WINDOW + timedelta(minutes=1))[0] is not None
	assert auto("sam@client.test", "4", T0 + timedelta(minutes=31))[0] is not None


@pytest.mark.parametrize(
	("sender", "headers", "why"),
	[
		("pat@client.test", {"Auto-Submitted": "auto-replied"}, "automatic"),
		("pat@client.test", {"Auto-Submitted": "auto-generated"}, "automatic"),
		("pat@client.test", {"Precedence": "bulk"}, "automatic"),
		("pat@client.test", {"List-Id": "<news.client.test>"}, "automatic"),
		("pat@client.test", {"X-Autoreply": "yes"}, "automatic"),
		("noreply@client.test", {}, "automatic"),
		("no-reply@client.test", {}, "automatic"),
		("MAILER-DAEMON@client.test", {}, "automatic"),
		("support@example.com", {}, "own address"),
		("support+abc@example.com", {}, "own address"),
	],
)
def test_never_auto_reply_to_automatic_mail_or_ourselves(store, smtp_plain, sender, headers, why):
	acct = auto_account(smtp_plain)
	message, decision, result = received(store, make_mail(sender=sender, headers=headers))
	ok, reason = should_auto_reply(acct, message, store, T0)
	assert not ok and why in reason
	assert maybe_auto_reply(store, acct, SITE, message, result, decision, T0) is None
	assert store.count("outbox") == 0


def test_no_auto_reply_when_off_or_on_duplicates(store, smtp_plain):
	message, decision, _ = received(store, make_mail())
	assert should_auto_reply(sender_account(smtp_plain), message, store, T0) == (False, "auto-reply is off")
	acct = auto_account(smtp_plain)
	duplicate = SaveResult(None, duplicate=True)
	assert maybe_auto_reply(store, acct, SITE, message, duplicate, decision, T0) is None


def test_queue_auto_reply_keeps_the_senders_quoted_name(store, smtp_plain):
	acct = auto_account(smtp_plain)
	message = parse_message(make_mail(sender='"Doe, Jane" <jane@client.test>', subject="RE: earlier"))
	mail = queue_auto_reply(store, acct, SITE, message, now=T0)
	sent = email.message_from_bytes(mail.raw, policy=email.policy.default)
	assert sent["To"].addresses[0].display_name == "Doe, Jane" and sent["Subject"] == "RE: earlier"


# -- the CLI ---------------------------------------------------------------------------------------


def write_config(path, account: dict, *, site: dict | None = None, name="support"):
	lines = [f"[accounts.{name}]"]
	lines += [f"{k} = {json.dumps(v)}" for k, v in account.items() if v is not None]
	if site:
		lines.append("[site]")
		lines += [f"{k} = {json.dumps(v)}" for k, v in site.items()]
	path.write_text("\n".join(lines) + "\n")
	return path


def run_cli(*args, config, stdin=None, env=None):
	return subprocess.run(
		[sys.executable, "-m", "email_account_app.cli", "--config", str(config), *args],
		capture_output=True,
		text=True,
		input=stdin,
		timeout=60,
		cwd=ROOT,
		env={**os.environ, "COLUMNS": "250", **(env or {})},
	)


def test_cli_send_and_flush(tmp_path, smtp_plain):
	config = write_config(
		tmp_path / "c.toml",
		{**smtp_plain.account(), "default_outgoing": True, "track_email_status": True},
		site={"base_url": "https://erp.example.com", "secret_env": "TEST_SITE_SECRET"},
	)
	db = str(tmp_path / "db.sqlite3")
	body = tmp_path / "body.txt"
	body.write_text("Hello from the command line.\n")
	attachment = tmp_path / "report.csv"
	attachment.write_text("a,b\n1,2\n")
	env = {"TEST_SITE_SECRET": "cli-secret"}
	result = run_cli(
		"send", "--to", "customer@client.test", "--cc", "boss@client.test", "--subject", "From the CLI",
		"--body-file", str(body), "--attach", str(attachment), "--db", db, config=config, env=env,
	)  # fmt: skip
	assert result.returncode == 0, result.stdout + result.stderr
	assert "Sent" in result.stdout
	(delivery,) = smtp_plain.deliveries
	assert delivery.rcpt_tos == ("customer@client.test", "boss@client.test")
	message = parse_message(delivery.content)
	assert message.subject == "From the CLI" and "Hello from the command line." in message.text_content
	assert [a.filename for a in message.attachments] == ["report.csv"]
	assert "cli-secret" not in result.stdout + result.stderr
	token = _link(delivery.content, r'<img src="([^"]+)"')
	store = SQLiteStore(db)
	assert track_open(store, SiteSettings(secret="cli-secret"), token) is True
	store.close()

	# the body from stdin, as JSON
	result = run_cli(
		"send",
		"--to",
		"x@client.test",
		"--subject",
		"piped",
		"--db",
		db,
		"--json",
		config=config,
		stdin="piped body\n",
		env=env,
	)
	assert result.returncode == 0, result.stderr
	data = json.loads(result.stdout)
	assert data["ok"] is True and data["sent"] == 1 and data["mails"][0]["accepted"] == ["x@client.test"]

	result = run_cli("flush", "--db", db, config=config, env=env)
	assert result.returncode == 0 and "nothing to send" in result.stdout


def test_cli_reports_failures_without_a_traceback(tmp_path, smtp_plain):
	config = write_config(tmp_path / "c.toml", smtp_plain.account())
	db = str(tmp_path / "db.sqlite3")
	smtp_plain.refuse("gone@client.test", "550 5.1.1 no such user here")
	result = run_cli(
		"send",
		"-a",
		"support",
		"--to",
		"gone@client.test",
		"--subject",
		"x",
		"--db",
		db,
		config=config,
		stdin="x",
	)
	assert result.returncode == 1
	assert "Failed" in result.stdout and "no such user here" in result.stdout
	assert "Traceback" not in result.stderr

	result = run_cli(
		"send",
		"-a",
		"support",
		"--to",
		"not an address",
		"--subject",
		"x",
		"--db",
		db,
		config=config,
		stdin="x",
	)
	assert (
		result.returncode == 2
		and "is not an email address" in result.stderr
		and "Traceback" not in result.stderr
	)

	result = run_cli("send", "--to", "a@client.test", "--subject", "x", "--db", db, config=config, stdin="x")
	assert result.returncode == 2 and "default outgoing" in result.stderr

	smtp_plain.refuse("later@client.test", "451 4.7.1 greylisted")
	result = run_cli(
		"send",
		"-a",
		"support",
		"--to",
		"later@client.test",
		"--subject",
		"x",
		"--db",
		db,
		config=config,
		stdin="x",
	)
	assert result.returncode == 1 and "will try again" in result.stdout
	smtp_plain.reset()
	# not due yet: nothing sent, still queued
	result = run_cli("flush", "--db", db, config=config)
	assert result.returncode == 0 and smtp_plain.deliveries == []


def test_cli_needs_the_secret_for_links(tmp_path, smtp_plain):
	config = write_config(tmp_path / "c.toml", {**smtp_plain.account(), "send_unsubscribe_message": True})
	result = run_cli(
		"send",
		"-a",
		"support",
		"--to",
		"a@client.test",
		"--subject",
		"x",
		"--db",
		str(tmp_path / "d"),
		config=config,
		stdin="x",
	)
	assert result.returncode == 2 and "secret" in result.stderr and "Traceback" not in result.stderr
