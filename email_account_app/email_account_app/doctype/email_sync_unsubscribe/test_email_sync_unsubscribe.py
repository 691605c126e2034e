# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

from datetime import datetime, timezone

from email_account_app.tests.utils import FrappeTestCase, frappe, make_account, needs_frappe


@needs_frappe
class TestEmailSyncUnsubscribe(FrappeTestCase):
	"""The link itself: email_account_app/tests/test_send.py."""

	def setUp(self):
		from email_account_app.frappe_store import FrappeStore

		self.addCleanup(frappe.db.rollback)
		make_account("Letters", email_id="letters@example.org")
		self.store = FrappeStore(commit=False)

	def test_recorded_once_whatever_the_case(self):
		now = datetime.now(timezone.utc)
		reader = f"reader-{frappe.generate_hash(length=8)}@client.test"  # none the site has already
		self.assertTrue(
			self.store.record_unsubscribe(reader.upper(), account="Letters", document=None, now=now)
		)
		self.assertFalse(self.store.record_unsubscribe(reader, account=None, document=None, now=now))
		self.assertTrue(self.store.is_unsubscribed(reader.title()))
		self.assertFalse(self.store.is_unsubscribed("other@client.test"))
		self.assertEqual(
			frappe.db.get_value("Email Sync Unsubscribe", {"email": reader}, "account"),
			"Letters",
		)
