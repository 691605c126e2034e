# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

from email_account_app.tests.utils import FrappeTestCase, frappe, needs_frappe


@needs_frappe
class TestEmailSyncOutboxRecipient(FrappeTestCase):
	def test_a_child_of_the_outbox(self):
		meta = frappe.get_meta("Email Sync Outbox Recipient")
		self.assertTrue(meta.istable)
		self.assertEqual(frappe.get_meta("Email Sync Outbox").get_field("recipients").options, meta.name)
