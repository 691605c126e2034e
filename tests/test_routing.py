"""Routing incoming mail: append to, conditions, threading, automatic linking, loops and bounces.

Every message goes through the real Dovecot and a real pull; replies are written as real clients
write them (tests/clients.py).
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from email_account_app.engine.jobs import pull as pull_account
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.store import DocRef
from email_account_app.engine.tokens import make_message_id, new_thread_token, subaddress
from email_account_app.sqlite_store import SQLiteStore

from .clients import apple_reply, gmail_reply, outlook_reply, thunderbird_reply
from .documents import get_document, set_document_status
from .factory import make_mail, message_id_of

USER = "alice@example.com"
BOB = "bob@example.com"


@pytest.fixture
def box(dovecot):
	dovecot.reset(USER)
	dovecot.reset(BOB)
	return dovecot


def support(dovecot, user=USER, **overrides):
	data = dovecot.account(user)
	data.update({"email_sync_option": "ALL", "append_to": "Issue"})
	data.update(overrides)
	return account_from_mapping(data, name=overrides.get("email_account_name") or user.split("@")[0])


def pull(box, store, raw=None, acct=None, user=USER):
	if raw is not None:
		box.append(user, raw)
	report = pull_account(acct or support(box, user), store, keep_messages=True)
	assert report.error is None, report.error
	return report


def only(report):
	assert len(report.messages) == 1, report.messages
	return report.messages[0]


def add_sent(store, account, *, subject, to, document=None, token=None, message_id=None):
	"""A message we sent, as the outbox records it."""
	token = token or new_thread_token()
	message_id = message_id or make_message_id(token, "example.com")
	store.db.execute(
		"INSERT INTO communications (account, sent_or_received, message_id, subject, normalized_subject, "
		"sender, recipients, date, reference_doctype, reference_name, thread_token, delivery_status, created) "
		"VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
		(
			account,
			"Sent",
			message_id,
			subject,
			subject.lower(),
			"alice@example.com",
			to,
			datetime.now(timezone.utc).isoformat(),
			document.doctype if document else None,
			document.name if document else None,
			token,
			"Sent",
			datetime.now(timezone.utc).isoformat(),
		),
	)
	return message_id, token


@pytest.fixture
def issue(box, store):
	"""A customer's first mail, which created ISS-00001."""
	raw = make_mail(subject="My printer is broken", sender="Customer One <customer@client.test>")
	m = only(pull(box, store, raw))
	assert (m.action, m.document) == ("created", DocRef("Issue", "ISS-00001"))
	return message_id_of(raw)


# -- append to -------------------------------------------------------------------------------


def test_new_thread_creates_a_document_with_subject_and_sender(box, store, issue):
	doc = get_document(store, DocRef("Issue", "ISS-00001"))
	assert doc["fields"] == {
		"subject": "My printer is broken",
		"raised_by": "customer@client.test",
		"status": "Open",
	}


def test_doctype_mapping_from_config(box, tmp_path):
	from email_account_app.sqlite_store import DocTypeMapping

	store = SQLiteStore(
		tmp_path / "m.sqlite3", doctypes={"Ticket": DocTypeMapping("title", "email", "who", None, "T-")}
	)
	m = only(
		pull(box, store, make_mail(subject="Hi", sender="Ann <ann@x.test>"), support(box, append_to="Ticket"))
	)
	assert m.document == DocRef("Ticket", "T-00001")
	assert get_document(store, m.document)["fields"] == {"title": "Hi", "email": "ann@x.test", "who": "Ann"}


def test_reply_reopens_the_document(box, store, issue):
	set_document_status(store, DocRef("Issue", "ISS-00001"), "Replied")
	raw, _ = gmail_reply(issue, "My printer is broken")
	m = only(pull(box, store, raw))
	assert (m.action, m.rule, m.document) == ("linked", "in-reply-to", DocRef("Issue", "ISS-00001"))
	assert get_document(store, DocRef("Issue", "ISS-00001"))["status"] == "Open"


# -- threading rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("client", [gmail_reply, outlook_reply, apple_reply, thunderbird_reply])
def test_replies_from_every_client_thread_by_in_reply_to(box, store, issue, client):
	raw, _ = client(issue, "My printer is broken")
	m = only(pull(box, store, raw))
	assert (m.action, m.rule, m.document) == ("linked", "in-reply-to", DocRef("Issue", "ISS-00001"))
	assert store.count("documents") == 1


def test_references_without_in_reply_to(box, store, issue):
	raw, _ = gmail_reply(issue, "My printer is broken", in_reply_to=False)
	m = only(pull(box, store, raw))
	assert (m.action, m.rule) == ("linked", "references")


def test_reply_to_our_sent_message(box, store, issue):
	sent_id, _ = add_sent(
		store,
		"alice",
		subject="Re: My printer is broken",
		to="customer@client.test",
		document=DocRef("Issue", "ISS-00001"),
	)
	raw, _ = outlook_reply(sent_id, "My printer is broken", sender="customer@client.test")
	m = only(pull(box, store, raw))
	assert (m.rule, m.document) == ("in-reply-to", DocRef("Issue", "ISS-00001"))


def test_subject_changed_mid_thread(box, store, issue):
	raw, _ = gmail_reply(issue, "My printer is broken")
	raw = raw.replace(b"Subject: Re: My printer is broken", b"Subject: Also the scanner now")
	m = only(pull(box, store, raw))
	assert (m.rule, m.document) == ("in-reply-to", DocRef("Issue", "ISS-00001"))


def test_a_cc_d_third_party_replies(box, store, issue):
	raw, _ = apple_reply(issue, "My printer is broken", sender="Colleague <colleague@client.test>")
	m = only(pull(box, store, raw))
	assert (m.rule, m.document) == ("in-reply-to", DocRef("Issue", "ISS-00001"))


def test_reply_through_a_distribution_list(box, store, issue):
	raw, _ = thunderbird_reply(issue, "My printer is broken", sender="Team List <team@lists.client.test>")
	raw = raw.replace(
		b"User-Agent:", b"List-Id: Team <team.lists.client.test>\r\nPrecedence: list\r\nUser-Agent:", 1
	)
	m = only(pull(box, store, raw))
	assert (m.rule, m.document) == ("in-reply-to", DocRef("Issue", "ISS-00001"))


def test_reply_to_a_forwarded_message(box, store, issue):
	forward_id = "fwd-123@client.test"  # the customer forwarded our thread; we never saw the forward
	raw, _ = gmail_reply(
		forward_id,
		"Fwd: My printer is broken",
		sender="Boss <boss@client.test>",
		references=[issue, forward_id],
	)
	m = only(pull(box, store, raw))
	assert (m.rule, m.document) == ("references", DocRef("Issue", "ISS-00001"))


def test_thread_token_in_a_sub_address(box, store, issue):
	_, token = add_sent(
		store,
		"alice",
		subject="Your printer",
		to="customer@client.test",
		document=DocRef("Issue", "ISS-00001"),
	)
	raw = make_mail(subject="something else entirely", to=subaddress("alice@example.com", token))
	m = only(pull(box, store, raw))
	assert (m.rule, m.document) == ("thread-token", DocRef("Issue", "ISS-00001"))


def test_thread_token_in_a_message_id_we_no_longer_hold(box, store, issue):
	_, token = add_sent(
		store,
		"alice",
		subject="Your printer",
		to="customer@client.test",
		document=DocRef("Issue", "ISS-00001"),
	)
	unknown_id = make_message_id(token, "example.com")  # another message of the thread
	raw, _ = gmail_reply(unknown_id, "Your printer", sender="customer@client.test")
	m = only(pull(box, store, raw))
	assert (m.rule, m.document) == ("thread-token", DocRef("Issue", "ISS-00001"))


@pytest.mark.parametrize("subject", ["[#ISS-00001] new details", "Update on #ISS-00001", "Re: [ISS-00001]"])
def test_document_name_in_the_subject(box, store, issue, subject):
	m = only(pull(box, store, make_mail(subject=subject, sender="someone@else.test")))
	assert (m.action, m.rule, m.document) == ("linked", "subject-document", DocRef("Issue", "ISS-00001"))


def test_subject_and_sender_without_headers(box, store, issue):
	raw, _ = outlook_reply(
		issue, "My printer is broken", sender="customer@client.test", prefix="AW", headers=False
	)
	m = only(pull(box, store, raw))
	assert (m.rule, m.document) == ("subject-sender", DocRef("Issue", "ISS-00001"))


def test_same_subject_from_another_sender_is_a_new_thread(box, store, issue):
	m = only(pull(box, store, make_mail(subject="RE: My printer is broken", sender="stranger@else.test")))
	assert (m.action, m.document) == ("created", DocRef("Issue", "ISS-00002"))


def test_subject_with_regex_characters_is_matched_literally(box, store):
	first = make_mail(subject="Price (50%) [urgent] .* ?", sender="c@client.test")
	only(pull(box, store, first))
	m = only(pull(box, store, make_mail(subject="Re: Price (50%) [urgent] .* ?", sender="c@client.test")))
	assert m.rule == "subject-sender"
	m = only(pull(box, store, make_mail(subject="Re: Price (50%) [urgent] xx ?", sender="c@client.test")))
	assert m.action == "created"


def test_same_mail_to_two_accounts_threads_in_each(box, store):
	raw = make_mail(subject="Order 7", to="alice@example.com, bob@example.com")
	for user in (USER, BOB):
		box.append(user, raw)
	a, b = support(box, USER), support(box, BOB, append_to="Lead")
	ma = only(pull(box, store, acct=a))
	mb = only(pull(box, store, acct=b, user=BOB))
	reply, _ = gmail_reply(message_id_of(raw), "Order 7", to="alice@example.com, bob@example.com")
	box.append(BOB, reply)
	ra = only(pull(box, store, reply, acct=a))
	rb = only(pull(box, store, acct=b, user=BOB))
	assert ra.document == ma.document and ra.document.doctype == "Issue"
	assert rb.document == mb.document and rb.document.doctype == "Lead"
	assert store.count("communications") == 4


# -- import conditions ----------------------------------------------------------------------------


def test_condition_skips_with_the_reason_and_imports_what_holds(box, store):
	acct = support(box, condition='"invoice" in doc.subject.lower()')
	box.append(USER, make_mail(subject="Invoice 12"))
	box.append(USER, make_mail(subject="Lunch?"))
	report = pull(box, store, acct=acct)
	actions = {m.subject: (m.action, m.rule) for m in report.messages}
	assert actions == {"Invoice 12": ("created", None), "Lunch?": ("skipped", "condition")}
	assert "does not hold" in report.messages[1].reason
	assert store.count("skipped") == 1 and report.skipped == 1
	assert pull(box, store, acct=acct).fetched == 0  # recorded, not fetched again


def test_per_folder_condition(box, store):
	box.create_folder(USER, "Jobs")
	acct = support(
		box,
		folders=[
			{
				"folder_name": "Jobs",
				"append_to": "Job Applicant",
				"condition": 'doc.subject.startswith("Application")',
			}
		],
	)
	box.append(USER, make_mail(subject="Application: Ann"), folder="Jobs")
	box.append(USER, make_mail(subject="Spam"), folder="Jobs")
	report = pull(box, store, acct=acct)
	assert sorted((m.subject, m.action) for m in report.messages) == [
		("Application: Ann", "created"),
		("Spam", "skipped"),
	]


def test_condition_error_at_pull_time_keeps_the_message_as_failed(box, store):
	acct = support(box, condition='doc.date > "2020"')
	raw = make_mail()
	m = only(pull(box, store, raw, acct))
	assert m.action == "failed" and "import condition" in m.reason and "TypeError" in m.reason
	assert store.rows("SELECT raw FROM failures")[0][0].replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
	assert store.count("skipped") == 0


# -- automatic linking ------------------------------------------------------------------------


@pytest.mark.parametrize(
	"address", ["alice+Issue=ISS-00001@example.com", "alice+Issue+ISS-00001@example.com"]
)
def test_automatic_linking(box, store, issue, address):
	acct = support(box, enable_automatic_linking=True, append_to=None)
	m = only(pull(box, store, make_mail(subject="About that", to=address, sender="x@y.test"), acct))
	links = store.rows("SELECT link_doctype, link_name FROM timeline_links")
	assert [tuple(r) for r in links] == [("Issue", "ISS-00001")]
	assert m.action == "stored"


def test_automatic_linking_off_links_nothing(box, store, issue):
	pull(box, store, make_mail(to="alice+Issue=ISS-00001@example.com"), support(box, append_to=None))
	assert store.count("timeline_links") == 0


# -- loops and bounces ------------------------------------------------------------------------


def test_out_of_office_reply_to_our_message_is_linked_not_a_new_document(box, store, issue):
	sent_id, _ = add_sent(
		store,
		"alice",
		subject="Re: My printer is broken",
		to="customer@client.test",
		document=DocRef("Issue", "ISS-00001"),
	)
	ooo = make_mail(
		subject="Automatic reply: Re: My printer is broken",
		in_reply_to=f"<{sent_id}>",
		headers={"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"},
	)
	m = only(pull(box, store, ooo))
	assert (m.action, m.document) == ("linked", DocRef("Issue", "ISS-00001"))


def test_out_of_office_without_a_thread_creates_nothing(box, store):
	ooo = make_mail(subject="Out of office", headers={"Auto-Submitted": "auto-replied"})
	m = only(pull(box, store, ooo))
	assert m.action == "stored" and m.rule == "automatic"
	assert store.count("documents") == 0


def test_bounce_marks_our_message_bounced(box, store, issue):
	sent_id, _ = add_sent(
		store, "alice", subject="Your invoice", to="gone@client.test", document=DocRef("Issue", "ISS-00001")
	)
	m = only(pull(box, store, dsn(sent_id, "gone@client.test")))
	assert (m.action, m.rule) == ("bounced", "bounce")
	assert "gone@client.test" in m.reason and "5.1.1" in m.reason
	assert (
		store.rows("SELECT delivery_status FROM communications WHERE message_id=?", sent_id)[0][0]
		== "Bounced"
	)
	assert store.count("documents") == 1


def test_own_message_is_not_imported_again(box, store):
	sent_id, _ = add_sent(store, "alice", subject="Hello", to="customer@client.test")
	m = only(
		pull(box, store, make_mail(subject="Hello", sender="alice@example.com", message_id=f"<{sent_id}>"))
	)
	assert (m.action, m.rule) == ("skipped", "own-message")


def dsn(original_id, recipient):
	"""A delivery status notification as Postfix writes it."""
	return f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.com>
To: alice@example.com
Subject: Undelivered Mail Returned to Sender
Date: Mon, 2 Nov 2026 10:00:00 +0000
Message-ID: <dsn-{original_id}>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B0UND"

--B0UND
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.com.
I'm sorry to have to inform you that your message could not be delivered.

--B0UND
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown

--B0UND
Content-Type: text/rfc822-headers

From: alice@example.com
To: {recipient}
Subject: Your invoice
Message-ID: <{original_id}>

--B0UND--
""".replace("\n", "\r\n").encode()


def test_reply_to_mail_another_account_sent_threads_in_the_receiving_account(box, store, issue):
	"""Notifications@ sends, Reply-To brings the answer to the default incoming account."""
	sent_id, _ = add_sent(
		store,
		"notifications",
		subject="Your order shipped",
		to="customer@client.test",
		document=DocRef("Issue", "ISS-00001"),
	)
	raw, _ = gmail_reply(sent_id, "Your order shipped", sender="customer@client.test")
	m = only(pull(box, store, raw))
	assert (m.action, m.rule, m.document) == ("linked", "in-reply-to", DocRef("Issue", "ISS-00001"))


def test_mail_one_account_sent_to_another_is_imported_there(box, store):
	sent_id, _ = add_sent(store, "notifications", subject="Internal note", to="alice@example.com")
	m = only(
		pull(
			box,
			store,
			make_mail(subject="Internal note", sender="notifications@example.com", message_id=f"<{sent_id}>"),
		)
	)
	assert m.action == "created"
