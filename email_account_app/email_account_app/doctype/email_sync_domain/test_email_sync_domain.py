# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

from email_account_app.tests.utils import FrappeTestCase, frappe, needs_frappe


@needs_frappe
class TestEmailSyncDomain(FrappeTestCase):
	def setUp(self):
		self.addCleanup(frappe.db.rollback)

	def test_presets_for_the_well_known_providers_are_installed(self):
		gmail = frappe.get_doc("Email Sync Domain", "gmail.com")
		self.assertEqual((gmail.email_server, gmail.smtp_server), ("imap.gmail.com", "smtp.gmail.com"))
		self.assertTrue(frappe.db.exists("Email Sync Domain", "outlook.com"))

	def test_settings_that_cannot_work_are_refused(self):
		with self.assertRaises(frappe.ValidationError) as caught:
			frappe.get_doc(
				{"doctype": "Email Sync Domain", "domain_name": "bad.example", "incoming_port": "imap"}
			).insert()
		self.assertIn("incoming_port must be a number", str(caught.exception))
