# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

from datetime import datetime, timedelta, timezone

from email_account_app.tests.utils import FrappeTestCase, frappe, make_account, make_mail, needs_frappe

test_ignore = ["Communication", "DocType", "User"]


@needs_frappe
class TestEmailMessageLog(FrappeTestCase):
	"""The ledger: what makes the Store recognise a message, and thread a reply."""

	def setUp(self):
		from email_account_app.frappe_store import FrappeStore

		self.addCleanup(frappe.db.rollback)
		make_account("Ledger", email_id="ledger@example.org")
		self.store = FrappeStore(commit=False)

	def parse(self, **kwargs):
		from email_account_app.engine.parsing import parse_message

		return parse_message(make_mail(**kwargs))

	def test_stored_once_by_message_id_and_by_location(self):
		from email_account_app.engine.store import Decision, Location

		message = self.parse(subject="Hello", message_id="<hello@client.test>")
		first = self.store.save_received(
			"Ledger", Location("INBOX", 7, "1"), message, Decision("store"), None
		)
		self.assertFalse(first.duplicate)
		again = self.store.save_received(
			"Ledger", Location("INBOX", 7, "2"), message, Decision("store"), None
		)
		self.assertTrue(again.duplicate)
		other = self.parse(subject="Other", message_id="<other@client.test>")
		same_place = self.store.save_received(
			"Ledger", Location("INBOX", 7, "1"), other, Decision("store"), None
		)
		self.assertTrue(same_place.duplicate)
		self.assertEqual(self.store.known_uids("Ledger", "INBOX", 7), {"1"})
		self.assertEqual(
			self.store.known_message_ids("Ledger", ["hello@client.test", "other@client.test"]),
			{"hello@client.test"},
		)
		self.assertEqual(frappe.db.count("Communication", {"message_id": "hello@client.test"}), 1)

	def test_the_database_refuses_a_second_copy_too(self):
		frappe.get_doc(
			{
				"doctype": "Email Message Log",
				"account": "Ledger",
				"status": "Skipped",
				"message_key": "k" * 40,
			}
		).insert()
		with self.assertRaises(frappe.UniqueValidationError):
			frappe.get_doc(
				{
					"doctype": "Email Message Log",
					"account": "Ledger",
					"status": "Skipped",
					"message_key": "k" * 40,
				}
			).insert()

	def test_skips_failures_and_ignored_uids_are_remembered(self):
		from email_account_app.engine.store import Cursor, Location

		skipped = self.parse(subject="Spam", message_id="<spam@client.test>")
		self.store.record_skip("Ledger", Location("INBOX", 7, "3"), skipped, "condition", Cursor(7, 3))
		self.store.record_failure(
			"Ledger", Location("INBOX", 7, "4"), b"raw bytes", "boom", Cursor(7, 4), "bad@x"
		)
		self.store.ignore_uids("Ledger", "INBOX", 0, ["u1", "u2"], Cursor(0, 0))
		self.assertEqual(self.store.known_uids("Ledger", "INBOX", 7), {"3", "4"})
		self.assertEqual(self.store.known_uids("Ledger", "INBOX", 0), {"u1", "u2"})
		self.assertEqual(self.store.known_uids("Ledger", "INBOX", 7, among=["4", "5"]), {"4"})
		self.assertEqual(
			self.store.known_message_ids("Ledger", ["spam@client.test", "bad@x"]),
			{"spam@client.test", "bad@x"},
		)
		self.assertEqual(self.store.get_cursor("Ledger", "INBOX"), Cursor(0, 0))

	def test_threads_by_message_id_token_and_subject(self):
		from email_account_app.engine.parsing import normalize_subject
		from email_account_app.engine.store import Decision, Location

		message = self.parse(
			subject="Order 42", message_id="<o42@client.test>", sender="Ann <ann@client.test>"
		)
		self.store.save_received(
			"Ledger",
			Location("INBOX", 7, "9"),
			message,
			Decision("store", thread_token="abcdefghijklmnop"),
			None,
		)
		by_id = self.store.find_by_message_ids("Ledger", ["nope@x", "o42@client.test"])
		self.assertEqual((by_id.message_id, by_id.sent_or_received), ("o42@client.test", "Received"))
		self.assertEqual(self.store.find_by_thread_token("Ledger", "abcdefghijklmnop").name, by_id.name)
		since = datetime.now(timezone.utc) - timedelta(days=365 * 30)
		found = self.store.find_by_subject(
			"Ledger", normalize_subject("Re: Order 42"), "ANN@client.test", since
		)
		self.assertEqual(found.name, by_id.name)
		self.assertIsNone(self.store.find_by_subject("Ledger", "order 42", "bob@client.test", since))

	def test_replies_thread_onto_mail_any_account_sent(self):
		make_account("Other", email_id="other@example.org")
		self.store.record_site_mail(
			"Other",
			message_id="sent-by-other@example.org",
			subject="Hello",
			sender="other@example.org",
			recipients=["ann@client.test"],
			communication=None,
			document=None,
			thread_token="qrstuvwxyzabcdef",
		)
		found = self.store.find_by_message_ids("Ledger", ["sent-by-other@example.org"])
		self.assertEqual((found.account, found.sent_or_received), ("Other", "Sent"))
		self.assertEqual(self.store.find_by_thread_token("Ledger", "qrstuvwxyzabcdef").account, "Other")
		self.assertEqual(self.store.known_message_ids("Ledger", ["sent-by-other@example.org"]), set())
