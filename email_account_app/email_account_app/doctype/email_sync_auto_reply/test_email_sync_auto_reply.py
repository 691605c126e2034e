# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

from datetime import datetime, timedelta, timezone

from email_account_app.tests.utils import FrappeTestCase, frappe, make_account, needs_frappe


@needs_frappe
class TestEmailSyncAutoReply(FrappeTestCase):
	def setUp(self):
		from email_account_app.frappe_store import FrappeStore

		self.addCleanup(frappe.db.rollback)
		make_account("Auto", email_id="auto@example.org")
		self.store = FrappeStore(commit=False)

	def test_one_per_thread_and_counted_per_sender(self):
		now = datetime.now(timezone.utc)
		thread = "message/" + "x" * 300 + "@client.test"  # longer than an index takes
		self.assertTrue(self.store.claim_auto_reply("Auto", thread, "Ann@client.test", now))
		self.assertFalse(self.store.claim_auto_reply("Auto", thread, "ann@client.test", now))
		self.assertTrue(self.store.claim_auto_reply("Auto", "Issue/ISS-1", "ann@client.test", now))
		hour_ago = now - timedelta(hours=1)
		self.assertEqual(self.store.auto_replies_since("Auto", "ANN@client.test", hour_ago), 2)
		self.assertEqual(self.store.auto_replies_since("Auto", "bob@client.test", hour_ago), 0)
