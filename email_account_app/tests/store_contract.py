"""The storage ports' contract: one set of tests, run on every store.

``StoreContract`` holds the tests; a subclass that is also a ``unittest.TestCase`` runs them on one
store: ``tests/test_store_contract.py`` on SQLiteStore (plain CI), and
``email_account_app/tests/test_store_contract.py`` on FrappeStore (``bench run-tests``). Whatever
holds here holds on both stores, so the engine may rely on it.

Invariants of the tests themselves:
- every datetime handed to a store is aware and in UTC (the store converts it to what it keeps:
  the Frappe store to the site's time zone), and what a store hands back compares equal to it;
- each test makes its own accounts (``new_account``), Message-IDs and addresses, unique to it, so
  tests never see each other's data, on a site that keeps data of earlier runs too;
- the module imports nothing of Frappe, of SQLite or of the repository's tests/: the bench loads it
  from the installed app.

What a subclass gives (hooks): ``make_store()``; ``DOCTYPE``, a DocType mail is appended to, with
a status that has Open, Replied and Closed; ``create_account(name, email)`` (a record the store
needs before it keeps the account's mail, or nothing); ``set_document_status(ref, status)`` (what
an agent closing or answering a document does); ``document_status(ref)``;
``failure_raw(account, location)`` (the raw bytes kept for a failed message).
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime

from ..engine.outbox import PARTLY_SENT, QUEUED, SENDING, SENT, SentRecord
from ..engine.parsing import IncomingMessage, normalize_subject, parse_message
from ..engine.routing import OPEN, Router, reopened_status
from ..engine.settings import AccountSettings, FolderSettings, account_from_mapping
from ..engine.store import (
	CommunicationRef,
	Cursor,
	Decision,
	DocRef,
	DocumentState,
	Location,
	OutgoingMail,
	SaveResult,
)
from ..engine.unreplied import unreplied_mail

_serial = itertools.count(1)
CUSTOMER = "customer@client.test"


def unique(prefix: str = "m") -> str:
	return f"{prefix}{next(_serial)}-{uuid.uuid4().hex[:10]}"


def incoming(
	*,
	date: datetime,
	subject: str | None = None,
	sender: str = f"Customer One <{CUSTOMER}>",
	to: str = "support@example.org",
	cc: str | None = None,
	message_id: str | None = None,
	in_reply_to: str | None = None,
	headers: dict[str, str] | None = None,
) -> IncomingMessage:
	"""A received message, parsed by the engine (``date``: aware, in the past)."""
	msg = EmailMessage()
	msg["From"] = sender
	msg["To"] = to
	if cc:
		msg["Cc"] = cc
	msg["Subject"] = subject if subject is not None else f"Question {unique('q')}"
	msg["Date"] = format_datetime(date)
	msg["Message-ID"] = f"<{message_id or unique()}@client.test>"
	if in_reply_to:
		msg["In-Reply-To"] = f"<{in_reply_to}>"
		msg["References"] = f"<{in_reply_to}>"
	for name, value in (headers or {}).items():
		msg[name] = value
	msg.set_content("Hello,\n\nwhere is my order?\n")
	return parse_message(bytes(msg), received_at=date)


class StoreContract:
	"""The ports' tests; mixed into a ``unittest.TestCase`` that provides the hooks."""

	DOCTYPE: str = "Issue"

	# -- hooks ---------------------------------------------------------------------------------

	def make_store(self):
		raise NotImplementedError

	def create_account(self, name: str, email: str) -> None:
		"""Whatever the store needs to exist before it keeps an account's mail."""

	def set_document_status(self, ref: DocRef, status: str) -> None:
		raise NotImplementedError

	def document_status(self, ref: DocRef) -> str | None:
		raise NotImplementedError

	def failure_raw(self, account: str, location: Location) -> bytes | None:
		raise NotImplementedError

	# -- set-up and helpers ----------------------------------------------------------------------

	def setUp(self):
		super().setUp()
		self.now = datetime.now(timezone.utc).replace(microsecond=0)
		self.store = self.make_store()
		self.account = self.new_account()

	def new_account(self) -> str:
		name = f"Contract {unique('a')}"
		self.create_account(name, self.email_of(name))
		return name

	@staticmethod
	def email_of(account: str) -> str:
		return account.lower().replace(" ", "-") + "@example.org"

	def ago(self, **delta) -> datetime:
		return self.now - timedelta(**delta)

	def settings(self, account: str, **values) -> AccountSettings:
		data = {"email_id": self.email_of(account), "enable_incoming": 0, "append_to": self.DOCTYPE}
		data.update(values)
		return account_from_mapping(data, name=account)

	def receive(
		self,
		account: str | None = None,
		*,
		decision: Decision | None = None,
		location: Location | None = None,
		cursor: Cursor | None = None,
		**mail,
	) -> tuple[IncomingMessage, SaveResult]:
		"""A received message saved as ``decision`` says (default: kept with no document)."""
		mail.setdefault("date", self.ago(hours=2))
		message = incoming(**mail)
		location = location or Location("INBOX", 7, unique("u"))
		result = self.store.save_received(
			account or self.account, location, message, decision or Decision("store"), cursor
		)
		self.assertFalse(result.duplicate)
		return message, result

	def receive_new_document(self, account: str | None = None, **mail) -> tuple[IncomingMessage, DocRef]:
		message, result = self.receive(
			account, decision=Decision("create", append_to=self.DOCTYPE, rule="new"), **mail
		)
		self.assertTrue(result.created)
		self.assertIsNotNone(result.document)
		return message, result.document

	def ref(self, account: str, message: IncomingMessage) -> CommunicationRef:
		found = self.store.find_by_message_ids(account, [message.message_id])
		self.assertIsNotNone(found, f"{message.message_id} is not in the thread index")
		return found

	def queue(
		self,
		account: str | None = None,
		*,
		to: tuple[str, ...] = (CUSTOMER,),
		date: datetime | None = None,
		document: DocRef | None = None,
		thread_token: str = "",
		in_reply_to: tuple[str, ...] = (),
		message_id: str | None = None,
		next_try: datetime | None = None,
		automatic: str | None = None,
	) -> OutgoingMail:
		"""A message queued in the outbox with its Sent communication, as ``queue_mail`` does
		(``automatic``: its Auto-Submitted value, for the engine's auto-replies and notices)."""
		account = account or self.account
		message_id = message_id or f"{unique('out')}@example.org"
		record = SentRecord(
			account=account,
			message_id=message_id,
			thread_token=thread_token,
			subject="Re: your question",
			sender=self.email_of(account),
			sender_full_name="Support",
			to=to,
			cc=(),
			bcc=(),
			date=date or self.now,
			text_content="The answer.",
			html_content="",
			in_reply_to=in_reply_to,
			references=in_reply_to,
			document=document,
			auto_submitted=automatic,
		)
		mail = OutgoingMail(
			name="",
			account=account,
			raw=b"Subject: Re: your question\r\n\r\nThe answer.\r\n",
			message_id=message_id,
			sender=self.email_of(account),
			recipients=to,
			document=document,
			thread_token=thread_token or None,
			next_try=next_try,
		)
		queued = self.store.queue_outgoing(mail, record)
		self.assertTrue(queued.name)
		self.assertTrue(queued.extra.get("communication"))
		return queued

	def statuses(self, name: str) -> tuple[str, dict[str, str]]:
		mail = self.store.get_outgoing(name)
		return mail.status, {rcpt: row[0] for rcpt, row in mail.extra["recipients"].items()}

	# -- the message ledger and the cursors ------------------------------------------------------

	def test_a_received_message_is_saved_with_its_cursor(self):
		location = Location("INBOX", 7, "11")
		message, result = self.receive(location=location, cursor=Cursor(7, 11))
		self.assertTrue(result.communication)
		self.assertEqual(self.store.get_cursor(self.account, "INBOX"), Cursor(7, 11))
		self.assertEqual(
			self.store.known_message_ids(self.account, [message.message_id]), {message.message_id}
		)
		self.assertEqual(self.store.known_uids(self.account, "INBOX", 7), {"11"})

	def test_the_same_message_again_is_a_duplicate_and_moves_only_the_cursor(self):
		message, _ = self.receive(location=Location("INBOX", 7, "1"), cursor=Cursor(7, 1))
		again = self.store.save_received(
			self.account, Location("INBOX", 7, "2"), message, Decision("store"), Cursor(7, 2)
		)
		self.assertEqual((again.duplicate, again.communication), (True, None))
		self.assertEqual(self.store.get_cursor(self.account, "INBOX"), Cursor(7, 2))
		self.assertEqual(self.store.known_uids(self.account, "INBOX", 7), {"1"})

	def test_another_message_at_a_known_location_is_a_duplicate(self):
		self.receive(location=Location("INBOX", 7, "1"))
		other = incoming(date=self.ago(hours=1))
		again = self.store.save_received(
			self.account, Location("INBOX", 7, "1"), other, Decision("store"), Cursor(7, 3)
		)
		self.assertTrue(again.duplicate)
		self.assertEqual(self.store.known_message_ids(self.account, [other.message_id]), set())
		self.assertEqual(self.store.get_cursor(self.account, "INBOX"), Cursor(7, 3))

	def test_the_same_message_id_in_another_account_is_no_duplicate(self):
		message, _ = self.receive(location=Location("INBOX", 7, "1"))
		other = self.new_account()
		result = self.store.save_received(other, Location("INBOX", 7, "1"), message, Decision("store"), None)
		self.assertFalse(result.duplicate)

	def test_cursors_are_per_account_and_folder(self):
		self.assertIsNone(self.store.get_cursor(self.account, "INBOX"))
		self.store.set_cursor(self.account, "INBOX", Cursor(7, 10))
		self.store.set_cursor(self.account, "Archive", Cursor(9, 3, seen_uid=2))
		self.store.set_cursor(self.account, "INBOX", Cursor(8, 12, seen_uid=12))
		self.assertEqual(self.store.get_cursor(self.account, "INBOX"), Cursor(8, 12, seen_uid=12))
		self.assertEqual(self.store.get_cursor(self.account, "Archive"), Cursor(9, 3, seen_uid=2))
		self.assertIsNone(self.store.get_cursor(self.new_account(), "INBOX"))

	def test_known_uids_by_folder_and_uidvalidity_and_among(self):
		for uid in ("1", "2", "3"):
			self.receive(location=Location("INBOX", 7, uid))
		self.receive(location=Location("INBOX", 8, "4"))
		self.receive(location=Location("Archive", 7, "5"))
		self.assertEqual(self.store.known_uids(self.account, "INBOX", 7), {"1", "2", "3"})
		self.assertEqual(self.store.known_uids(self.account, "INBOX", 7, among=["2", "3", "9"]), {"2", "3"})
		self.assertEqual(self.store.known_uids(self.account, "INBOX", 7, among=[]), set())
		self.assertEqual(self.store.known_uids(self.account, "INBOX", 8), {"4"})
		self.assertEqual(self.store.known_uids(self.new_account(), "INBOX", 7), set())

	def test_ignored_uids_are_known_and_set_the_cursor(self):
		self.store.ignore_uids(self.account, "INBOX", 0, ["u1", "u2", "u1"], Cursor(0, 0))
		self.store.ignore_uids(self.account, "INBOX", 0, ["u2"], None)  # again: nothing new
		self.assertEqual(self.store.known_uids(self.account, "INBOX", 0), {"u1", "u2"})
		self.assertEqual(self.store.known_uids(self.account, "INBOX", 0, among=["u2", "u3"]), {"u2"})
		self.assertEqual(self.store.get_cursor(self.account, "INBOX"), Cursor(0, 0))

	def test_a_skipped_message_is_known_and_not_kept_twice(self):
		message = incoming(date=self.ago(hours=1))
		location = Location("INBOX", 7, "5")
		skipped = self.store.record_skip(self.account, location, message, "import condition", Cursor(7, 5))
		self.assertFalse(skipped.duplicate)
		self.assertEqual(self.store.get_cursor(self.account, "INBOX"), Cursor(7, 5))
		self.assertEqual(
			self.store.known_message_ids(self.account, [message.message_id]), {message.message_id}
		)
		self.assertEqual(self.store.known_uids(self.account, "INBOX", 7), {"5"})
		again = self.store.record_skip(
			self.account, Location("INBOX", 7, "6"), message, "again", Cursor(7, 6)
		)
		self.assertTrue(again.duplicate)
		self.assertEqual(self.store.get_cursor(self.account, "INBOX"), Cursor(7, 6))
		saved = self.store.save_received(self.account, location, message, Decision("store"), None)
		self.assertTrue(saved.duplicate)
		self.assertIsNone(self.store.find_by_message_ids(self.account, [message.message_id]))

	def test_a_failure_keeps_the_raw_bytes_and_its_location(self):
		location = Location("INBOX", 7, "8")
		raw = b"Message-ID: <broken@client.test>\r\n\r\n\xff\xfe not mail at all\r\n"
		self.store.record_failure(self.account, location, raw, "parse error: boom", Cursor(7, 8), "broken@x")
		self.assertEqual(self.failure_raw(self.account, location), raw)
		self.assertEqual(self.store.get_cursor(self.account, "INBOX"), Cursor(7, 8))
		self.assertEqual(self.store.known_uids(self.account, "INBOX", 7), {"8"})
		self.assertEqual(self.store.known_message_ids(self.account, ["broken@x"]), {"broken@x"})
		# the same location again (the next pull fetches it again): kept once, the cursor moves
		self.store.record_failure(self.account, location, b"other", "again", Cursor(7, 9), "broken@x")
		self.assertEqual(self.failure_raw(self.account, location), raw)
		self.assertEqual(self.store.get_cursor(self.account, "INBOX"), Cursor(7, 9))
		message = incoming(date=self.ago(hours=1))
		self.assertTrue(
			self.store.save_received(self.account, location, message, Decision("store"), None).duplicate
		)

	# -- the thread index -------------------------------------------------------------------------

	def test_find_by_message_ids_the_accounts_own_first_then_what_any_account_sent(self):
		message, _ = self.receive()
		other, third = self.new_account(), self.new_account()
		self.queue(other, message_id=message.message_id)  # the same id, sent by another account
		own = self.store.find_by_message_ids(self.account, [message.message_id])
		self.assertEqual((own.account, own.sent_or_received), (self.account, "Received"))
		sent = self.store.find_by_message_ids(third, [message.message_id])
		self.assertEqual((sent.account, sent.sent_or_received), (other, "Sent"))
		# received mail of another account is not found
		only_received, _ = self.receive()
		self.assertIsNone(self.store.find_by_message_ids(third, [only_received.message_id]))
		self.assertIsNone(self.store.find_by_message_ids(self.account, []))

	def test_find_by_message_ids_tries_the_ids_in_the_order_given(self):
		first, _ = self.receive()
		second, _ = self.receive()
		found = self.store.find_by_message_ids(
			self.account, ["unknown@x", second.message_id, first.message_id]
		)
		self.assertEqual(found.message_id, second.message_id)
		self.assertEqual(found.subject, second.subject)
		self.assertEqual(found.sender, CUSTOMER)

	def test_find_by_thread_token(self):
		token = unique("t")
		message, result = self.receive(decision=Decision("store", thread_token=token), date=self.ago(hours=3))
		self.receive(decision=Decision("store", thread_token=token), date=self.ago(hours=1))
		found = self.store.find_by_thread_token(self.account, token)
		self.assertEqual((found.message_id, found.thread_token), (message.message_id, token))
		self.assertEqual(found.name, result.communication)
		self.assertIsNone(self.store.find_by_thread_token(self.account, unique("t")))
		# another account finds the token only in what was sent
		other = self.new_account()
		self.assertIsNone(self.store.find_by_thread_token(other, token))
		sent_token = unique("t")
		sent = self.queue(thread_token=sent_token)
		found = self.store.find_by_thread_token(other, sent_token)
		self.assertEqual((found.message_id, found.sent_or_received), (sent.message_id, "Sent"))

	def test_find_by_subject_within_since_and_by_participant(self):
		subject = f"Printer broken {unique('s')}"
		message, _ = self.receive(subject=subject, cc="colleague@client.test", date=self.ago(hours=3))
		key = normalize_subject(f"Re: {subject}")
		found = self.store.find_by_subject(self.account, key, "Customer@Client.test", self.ago(hours=4))
		self.assertEqual(found.message_id, message.message_id)
		self.assertEqual(
			self.store.find_by_subject(
				self.account, key, "colleague@client.test", self.ago(hours=4)
			).message_id,
			message.message_id,
		)
		# a window that starts after the message (hours, not days: a time zone slip shows)
		self.assertIsNone(self.store.find_by_subject(self.account, key, CUSTOMER, self.ago(hours=2)))
		self.assertIsNone(
			self.store.find_by_subject(self.account, key, "stranger@else.test", self.ago(hours=4))
		)
		self.assertIsNone(self.store.find_by_subject(self.new_account(), key, CUSTOMER, self.ago(hours=4)))

	def test_find_by_subject_gives_the_newest(self):
		subject = f"Order {unique('s')}"
		self.receive(subject=subject, date=self.ago(hours=5))
		newer, _ = self.receive(subject=f"Re: {subject}", date=self.ago(hours=1))
		found = self.store.find_by_subject(
			self.account, normalize_subject(subject), CUSTOMER, self.ago(days=1)
		)
		self.assertEqual(found.message_id, newer.message_id)

	def test_document_state(self):
		_, document = self.receive_new_document()
		self.assertEqual(self.store.document_state(document), DocumentState(OPEN, can_open=True))
		self.set_document_status(document, "Closed")
		self.assertEqual(self.store.document_state(document), DocumentState("Closed", can_open=True))
		self.assertIsNone(self.store.document_state(DocRef(self.DOCTYPE, "no-such-document")))

	def test_a_new_thread_creates_a_document_and_links_its_message(self):
		message, document = self.receive_new_document(subject="Printer on fire")
		self.assertEqual(self.document_status(document), OPEN)
		ref = self.ref(self.account, message)
		self.assertEqual(ref.document, document)

	def test_received_about_a_document_oldest_first(self):
		first, document = self.receive_new_document(date=self.ago(hours=5))
		link = Decision("link", document=document, rule="in-reply-to")
		second, _ = self.receive(decision=link, date=self.ago(hours=2))
		self.receive(self.new_account(), decision=link, date=self.ago(hours=1))  # another account's
		self.queue(document=document)  # sent, not received
		about = self.store.received_about(self.account, document)
		self.assertEqual([c.message_id for c in about], [first.message_id, second.message_id])
		self.assertEqual({c.document for c in about}, {document})
		self.assertEqual(len(self.store.received_about(self.account, document, limit=1)), 1)
		self.assertEqual(
			self.store.received_about(self.account, DocRef(self.DOCTYPE, "no-such-document")), []
		)

	# -- reopening ----------------------------------------------------------------------------------

	def test_a_link_sets_the_status_it_is_given(self):
		_, document = self.receive_new_document()
		self.set_document_status(document, "Closed")
		set_status = reopened_status(self.store.document_state(document))
		self.assertEqual(set_status, OPEN)
		self.receive(decision=Decision("link", document=document, set_status=set_status, rule="in-reply-to"))
		self.assertEqual(self.document_status(document), OPEN)

	def test_a_link_without_a_status_leaves_the_document_as_it_is(self):
		_, document = self.receive_new_document()
		self.set_document_status(document, "Closed")
		self.receive(decision=Decision("link", document=document, rule="in-reply-to"))
		self.assertEqual(self.document_status(document), "Closed")

	def test_a_reply_to_a_replied_document_reopens_it_through_the_router(self):
		first, document = self.receive_new_document()
		self.set_document_status(document, "Replied")
		reply = incoming(date=self.ago(hours=1), subject="Re: it", in_reply_to=first.message_id)
		router = Router(self.settings(self.account), self.store, now=self.now)
		decision = router.decide(reply, FolderSettings("INBOX"))
		self.assertEqual((decision.action, decision.document, decision.set_status), ("link", document, OPEN))
		result = self.store.save_received(self.account, Location("INBOX", 7, "99"), reply, decision, None)
		self.assertEqual(result.document, document)
		self.assertEqual(self.document_status(document), OPEN)
		self.assertEqual(self.ref(self.account, reply).document, document)

	# -- unreplied ----------------------------------------------------------------------------------

	def test_received_without_notice_in_the_window_oldest_first(self):
		older, _ = self.receive(date=self.ago(hours=3))
		newer, _ = self.receive(date=self.ago(hours=2))
		self.receive(date=self.ago(minutes=30))  # too young
		self.receive(date=self.ago(days=3))  # too old
		self.receive(self.new_account(), date=self.ago(hours=2))  # another account's
		waiting = self.store.received_without_notice(
			self.account, received_after=self.ago(days=1), received_before=self.ago(hours=1)
		)
		self.assertEqual([w.ref.message_id for w in waiting], [older.message_id, newer.message_id])
		self.assertEqual([w.received_at for w in waiting], [older.date, newer.date])
		self.assertEqual(older.date, self.ago(hours=3))
		self.assertFalse(any(w.automatic for w in waiting))

	def test_automatic_mail_never_waits_for_an_answer(self):
		self.receive(date=self.ago(hours=2), headers={"Auto-Submitted": "auto-replied"})
		waiting = self.store.received_without_notice(
			self.account, received_after=self.ago(days=1), received_before=self.ago(hours=1)
		)
		self.assertEqual([w for w in waiting if not w.automatic], [])

	def test_an_unreplied_notice_is_claimed_once(self):
		message, result = self.receive(date=self.ago(hours=2))
		self.assertTrue(self.store.claim_unreplied_notice(self.account, result.communication))
		self.assertFalse(self.store.claim_unreplied_notice(self.account, result.communication))
		self.assertFalse(self.store.claim_unreplied_notice(self.new_account(), result.communication))
		waiting = self.store.received_without_notice(
			self.account, received_after=self.ago(days=1), received_before=self.now
		)
		self.assertNotIn(message.message_id, [w.ref.message_id for w in waiting])

	def test_sent_on_thread_since_by_document(self):
		message, document = self.receive_new_document(date=self.ago(hours=2))
		ref = self.ref(self.account, message)
		self.assertFalse(self.store.sent_on_thread_since(self.account, ref, message.date))
		self.queue(document=document, date=self.ago(hours=3))  # before the mail came
		self.assertFalse(self.store.sent_on_thread_since(self.account, ref, message.date))
		self.queue(document=document, date=self.ago(hours=1))
		self.assertTrue(self.store.sent_on_thread_since(self.account, ref, message.date))

	def test_sent_on_thread_since_by_thread_token(self):
		token = unique("t")
		message, _ = self.receive(decision=Decision("store", thread_token=token), date=self.ago(hours=2))
		ref = self.ref(self.account, message)
		self.queue(thread_token=unique("t"), date=self.ago(hours=1))  # another thread
		self.assertFalse(self.store.sent_on_thread_since(self.account, ref, message.date))
		self.queue(thread_token=token, date=self.ago(hours=1))
		self.assertTrue(self.store.sent_on_thread_since(self.account, ref, message.date))

	def test_sent_on_thread_since_in_reply_to_it(self):
		message, _ = self.receive(date=self.ago(hours=2))
		ref = self.ref(self.account, message)
		self.queue(in_reply_to=(f"{unique()}@client.test",), date=self.ago(hours=1))  # to another
		self.assertFalse(self.store.sent_on_thread_since(self.account, ref, message.date))
		self.queue(in_reply_to=(message.message_id,), date=self.ago(hours=1))
		self.assertTrue(self.store.sent_on_thread_since(self.account, ref, message.date))

	def test_automatic_mail_sent_on_the_thread_is_no_answer(self):
		"""An auto-reply or a notice the engine sent is not a person's answer: the mail still waits."""
		token = unique("t")
		decision = Decision("create", append_to=self.DOCTYPE, rule="new", thread_token=token)
		message, result = self.receive(decision=decision, date=self.ago(hours=2))
		document = result.document
		ref = self.ref(self.account, message)
		self.assertEqual((ref.document, ref.thread_token), (document, token))
		for automatic in ("auto-replied", "auto-generated"):
			self.queue(
				document=document,
				thread_token=token,
				in_reply_to=(message.message_id,),
				date=self.ago(hours=1),
				automatic=automatic,
			)
		self.assertFalse(self.store.sent_on_thread_since(self.account, ref, message.date))
		self.queue(document=document, date=self.ago(minutes=30))
		self.assertTrue(self.store.sent_on_thread_since(self.account, ref, message.date))

	def test_the_unreplied_rule_on_top_of_the_store(self):
		account = self.settings(
			self.account,
			notify_if_unreplied=1,
			unreplied_for_mins=30,
			send_notification_to="lead@example.org",
		)
		waiting, _ = self.receive(date=self.ago(hours=2))
		answered, _ = self.receive(date=self.ago(hours=2))
		self.queue(in_reply_to=(answered.message_id,), date=self.ago(hours=1))
		_, closed = self.receive_new_document(date=self.ago(hours=2))
		self.set_document_status(closed, "Closed")
		self.receive(date=self.ago(hours=2), headers={"Auto-Submitted": "auto-replied"})
		self.receive(date=self.ago(minutes=10))  # not waited long enough
		found = list(unreplied_mail(self.store, account, self.now))
		self.assertEqual([w.ref.message_id for w in found], [waiting.message_id])
		self.assertTrue(self.store.claim_unreplied_notice(self.account, found[0].ref.name))
		self.assertEqual(list(unreplied_mail(self.store, account, self.now)), [])

	def test_sent_mail_is_in_the_thread_index_and_can_be_opened(self):
		mail = self.queue()
		found = self.store.find_by_message_ids(self.account, [mail.message_id])
		self.assertEqual((found.sent_or_received, found.name), ("Sent", mail.extra["communication"]))
		self.assertTrue(self.store.mark_opened(self.account, mail.message_id, self.now))
		self.assertFalse(self.store.mark_opened(self.account, f"{unique()}@example.org", self.now))

	# -- suppressions and the auto-reply log ---------------------------------------------------------

	def test_an_unsubscribe_is_recorded_once_whatever_the_case(self):
		address = f"{unique('reader')}@client.test"
		self.assertFalse(self.store.is_unsubscribed(address))
		self.assertTrue(
			self.store.record_unsubscribe(address.upper(), account=self.account, document=None, now=self.now)
		)
		self.assertFalse(self.store.record_unsubscribe(address, account=None, document=None, now=self.now))
		self.assertTrue(self.store.is_unsubscribed(f" {address.title()} "))

	def test_one_auto_reply_per_thread_counted_per_sender(self):
		sender = f"{unique('sender')}@client.test"
		thread = unique("thread")
		self.assertTrue(self.store.claim_auto_reply(self.account, thread, sender.upper(), self.ago(hours=3)))
		self.assertFalse(self.store.claim_auto_reply(self.account, thread, sender, self.now))
		self.assertTrue(
			self.store.claim_auto_reply(self.account, unique("thread"), sender, self.ago(hours=1))
		)
		self.assertEqual(self.store.auto_replies_since(self.account, sender, self.ago(hours=4)), 2)
		# hours, not days: a time zone slip shows
		self.assertEqual(self.store.auto_replies_since(self.account, sender, self.ago(hours=2)), 1)
		self.assertEqual(self.store.auto_replies_since(self.new_account(), sender, self.ago(hours=4)), 0)
		self.assertTrue(self.store.claim_auto_reply(self.new_account(), thread, sender, self.now))


class OutboxContract:
	"""The engine's own outbox (``Outbox``), which only the CLI's store holds: on a site, core's Email
	Queue is the outbox. Mixed in beside ``StoreContract``."""

	def test_queued_mail_is_claimed_once_and_sent(self):
		mail = self.queue(to=(CUSTOMER, "other@client.test"))
		self.assertEqual(
			self.statuses(mail.name), (QUEUED, {CUSTOMER: "Pending", "other@client.test": "Pending"})
		)
		self.assertEqual(self.store.claim_due(self.now, accounts=[self.new_account()]), [])
		[claimed] = self.store.claim_due(self.now, accounts=[self.account])
		self.assertEqual((claimed.name, claimed.status), (mail.name, SENDING))
		self.assertEqual(claimed.recipients, (CUSTOMER, "other@client.test"))
		self.assertEqual(claimed.raw, mail.raw)
		self.assertEqual(claimed.extra["communication"], mail.extra["communication"])
		self.assertEqual(self.store.claim_due(self.now, accounts=[self.account]), [])
		self.store.record_delivery(mail.name, [CUSTOMER, "other@client.test"], {}, self.now)
		self.store.finish(mail.name, status=SENT, now=self.now, delivery_status=SENT, sent_copy=True)
		self.assertEqual(self.statuses(mail.name), (SENT, {CUSTOMER: "Sent", "other@client.test": "Sent"}))
		self.assertTrue(self.store.get_outgoing(mail.name).extra["sent_copy"])
		self.assertEqual(self.store.claim_due(self.now, accounts=[self.account]), [])

	def test_a_refused_recipient_makes_it_partly_sent(self):
		mail = self.queue(to=(CUSTOMER, "nobody@client.test"))
		self.store.claim_due(self.now, accounts=[self.account])
		self.store.record_delivery(
			mail.name, [CUSTOMER], {"nobody@client.test": (550, "no such user")}, self.now
		)
		self.store.finish(mail.name, status=PARTLY_SENT, now=self.now, error="refused")
		status, rows = self.statuses(mail.name)
		self.assertEqual((status, rows), (PARTLY_SENT, {CUSTOMER: "Sent", "nobody@client.test": "Failed"}))
		outgoing = self.store.get_outgoing(mail.name)
		self.assertEqual(outgoing.extra["recipients"]["nobody@client.test"], ("Failed", 550, "no such user"))
		self.assertEqual(outgoing.sent_to, (CUSTOMER,))

	def test_a_retry_is_due_at_its_next_try_with_the_pending_recipients_only(self):
		mail = self.queue(to=(CUSTOMER, "later@client.test"))
		self.store.claim_due(self.now, accounts=[self.account])
		self.store.record_delivery(mail.name, [CUSTOMER], {"later@client.test": (451, "try later")}, self.now)
		next_try = self.now + timedelta(minutes=2)
		self.store.finish(
			mail.name, status=QUEUED, now=self.now, error="try later", retries=1, next_try=next_try
		)
		outgoing = self.store.get_outgoing(mail.name)
		self.assertEqual((outgoing.status, outgoing.retries, outgoing.next_try), (QUEUED, 1, next_try))
		self.assertEqual(self.store.claim_due(self.now + timedelta(minutes=1), accounts=[self.account]), [])
		[claimed] = self.store.claim_due(self.now + timedelta(minutes=3), accounts=[self.account])
		self.assertEqual((claimed.recipients, claimed.sent_to), (("later@client.test",), (CUSTOMER,)))
		self.assertEqual(claimed.extra["failed"], {})

	def test_mail_queued_for_later_is_not_due_before(self):
		mail = self.queue(next_try=self.now + timedelta(hours=1))
		self.assertEqual(self.store.claim_due(self.now, accounts=[self.account]), [])
		[claimed] = self.store.claim_due(self.now + timedelta(hours=2), accounts=[self.account])
		self.assertEqual(claimed.name, mail.name)

	def test_claims_go_oldest_first_up_to_the_limit(self):
		first, second = self.queue(), self.queue()
		[claimed] = self.store.claim_due(self.now, accounts=[self.account], limit=1)
		self.assertEqual(claimed.name, first.name)
		[claimed] = self.store.claim_due(self.now, accounts=[self.account], limit=1)
		self.assertEqual(claimed.name, second.name)

	def test_a_stale_claim_is_released_as_a_try(self):
		mail = self.queue()
		self.store.claim_due(self.now, accounts=[self.account])
		self.assertEqual(self.store.release_stale(self.ago(minutes=1), self.now), 0)
		self.assertEqual(self.store.get_outgoing(mail.name).status, SENDING)
		later = self.now + timedelta(minutes=20)
		self.assertGreaterEqual(self.store.release_stale(self.now + timedelta(minutes=5), later), 1)
		outgoing = self.store.get_outgoing(mail.name)
		self.assertEqual((outgoing.status, outgoing.retries), (QUEUED, 1))
		self.assertIn("interrupted", outgoing.error)
		[claimed] = self.store.claim_due(later, accounts=[self.account])
		self.assertEqual(claimed.name, mail.name)

	def test_a_final_status_fails_the_recipients_still_pending(self):
		mail = self.queue(to=(CUSTOMER,))
		self.store.claim_due(self.now, accounts=[self.account])
		self.store.finish(mail.name, status="Failed", now=self.now, error="gave up")
		outgoing = self.store.get_outgoing(mail.name)
		self.assertEqual(outgoing.status, "Failed")
		self.assertEqual(outgoing.extra["recipients"][CUSTOMER][0], "Failed")
