# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

from datetime import datetime, timedelta, timezone

from email_account_app.tests.utils import FrappeTestCase, frappe, make_account, needs_frappe

test_ignore = ["Communication", "DocType", "User"]


@needs_frappe
class TestEmailSyncOutbox(FrappeTestCase):
	"""The Outbox protocol on the site (sending itself: email_account_app/tests/test_send.py)."""

	def setUp(self):
		from email_account_app.frappe_store import FrappeStore

		self.addCleanup(frappe.db.rollback)
		make_account(
			"Outbox",
			email_id="outbox@example.org",
			enable_outgoing=1,
			smtp_server="127.0.0.1",
			no_smtp_authentication=1,
			use_tls=0,
			check_connection=False,  # nothing listens: these tests only queue and claim
		)
		self.store = FrappeStore(commit=False)
		self.now = datetime.now(timezone.utc)

	def queue(self, *to):
		from email_account_app.accounts import load_account, site_settings
		from email_account_app.engine.compose import OutgoingRequest
		from email_account_app.engine.outbox import queue_mail

		request = OutgoingRequest(to=to, subject="Hi", text="Hello")
		return queue_mail(self.store, load_account("Outbox"), site_settings(), request, now=self.now)

	def test_claim_deliver_finish(self):
		mail = self.queue("a@client.test", "b@client.test")
		claimed = self.store.claim_due(self.now, accounts=["Outbox"])
		self.assertEqual([m.name for m in claimed], [mail.name])
		self.assertEqual(self.store.claim_due(self.now, accounts=["Outbox"]), [])  # taken once
		self.store.record_delivery(
			mail.name, ["a@client.test"], {"b@client.test": (450, "try later")}, self.now
		)
		later = self.now + timedelta(minutes=2)
		self.store.finish(
			mail.name, status="Queued", now=self.now, retries=1, next_try=later, delivery_status="Delayed"
		)
		again = self.store.get_outgoing(mail.name)
		self.assertEqual((again.status, again.sent_to, again.retries), ("Queued", ("a@client.test",), 1))
		self.assertEqual(self.store.claim_due(self.now, accounts=["Outbox"]), [])  # not due yet
		[retry] = self.store.claim_due(later, accounts=["Outbox"])
		self.assertEqual(retry.recipients, ("b@client.test",))  # only who did not get it
		self.store.record_delivery(mail.name, [], {"b@client.test": (550, "no such user")}, later)
		self.store.finish(
			mail.name, status="Partly Sent", now=later, error="b refused", delivery_status="Partly Sent"
		)
		doc = frappe.get_doc("Email Sync Outbox", mail.name)
		self.assertEqual(
			{r.email: r.status for r in doc.recipients}, {"a@client.test": "Sent", "b@client.test": "Failed"}
		)
		self.assertEqual(
			frappe.db.get_value("Communication", doc.communication, "delivery_status"), "Rejected"
		)

	def test_a_stale_claim_is_queued_again(self):
		mail = self.queue("a@client.test")
		self.store.claim_due(self.now, accounts=["Outbox"])
		self.assertEqual(self.store.release_stale(self.now - timedelta(minutes=1), self.now), 0)
		self.assertEqual(self.store.release_stale(self.now + timedelta(minutes=1), self.now), 1)
		doc = frappe.get_doc("Email Sync Outbox", mail.name)
		self.assertEqual((doc.status, doc.retries), ("Queued", 1))
		self.assertIn("interrupted", doc.error)

	def test_send_again_after_a_failure(self):
		mail = self.queue("a@client.test")
		self.store.claim_due(self.now, accounts=["Outbox"])
		self.store.record_delivery(mail.name, [], {"a@client.test": (550, "no")}, self.now)
		self.store.finish(mail.name, status="Failed", now=self.now, error="no", delivery_status="Error")
		doc = frappe.get_doc("Email Sync Outbox", mail.name)
		doc.retry()
		doc.reload()
		self.assertEqual((doc.status, doc.retries, doc.recipients[0].status), ("Queued", 0, "Pending"))
