# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

from email_account_app.tests.utils import FrappeTestCase, frappe, make_account, needs_frappe


@needs_frappe
class TestEmailFolderCursor(FrappeTestCase):
	def setUp(self):
		self.addCleanup(frappe.db.rollback)
		make_account("Cursors", email_id="cursors@example.org")

	def test_a_cursor_round_trips_and_is_one_per_folder(self):
		from email_account_app.engine.store import Cursor
		from email_account_app.frappe_store import FrappeStore

		store = FrappeStore(commit=False)
		self.assertIsNone(store.get_cursor("Cursors", "INBOX"))
		store.set_cursor("Cursors", "INBOX", Cursor(4294967295, 12))  # UIDVALIDITY takes 32 bits
		store.set_cursor("Cursors", "INBOX", Cursor(4294967295, 15, 15))
		self.assertEqual(store.get_cursor("Cursors", "INBOX"), Cursor(4294967295, 15, 15))
		self.assertEqual(frappe.db.count("Email Folder Cursor", {"account": "Cursors"}), 1)
		with self.assertRaises(frappe.UniqueValidationError):
			frappe.get_doc(
				{"doctype": "Email Folder Cursor", "account": "Cursors", "folder": "INBOX", "uidvalidity": 1}
			).insert()
