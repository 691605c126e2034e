# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

from email_account_app.tests.utils import FrappeTestCase, frappe, make_account, needs_frappe

test_ignore = ["DocType"]


@needs_frappe
class TestEmailSyncFolder(FrappeTestCase):
	def setUp(self):
		self.addCleanup(frappe.db.rollback)

	def test_folders_become_the_engines_folders(self):
		from email_account_app.accounts import load_account

		make_account(
			"Folders",
			email_id="folders@example.org",
			imap_folder=[
				{"folder_name": "INBOX"},
				{"folder_name": "Support", "condition": "'help' in doc.subject"},
			],
		)
		settings = load_account("Folders")
		self.assertEqual([f.folder_name for f in settings.sync_folders], ["INBOX", "Support"])
		self.assertEqual(settings.folders[1].condition, "'help' in doc.subject")

	def test_a_folder_listed_twice_is_refused(self):
		with self.assertRaises(frappe.ValidationError) as caught:
			make_account(
				"Twice",
				email_id="twice@example.org",
				imap_folder=[{"folder_name": "INBOX"}, {"folder_name": "INBOX"}],
			)
		self.assertIn("listed twice", str(caught.exception))
