# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

from unittest.mock import patch

from email_account_app.tests.utils import FrappeTestCase, frappe, make_account, needs_frappe

test_ignore = ["Communication", "DocType", "User"]


@needs_frappe
class TestEmailSyncAccount(FrappeTestCase):
	def setUp(self):
		self.addCleanup(frappe.db.rollback)

	def test_named_after_its_name_or_its_address(self):
		self.assertEqual(make_account("Sales Desk", email_id="sales.desk@example.org").name, "Sales Desk")
		doc = frappe.get_doc({"doctype": "Email Sync Account", "email_id": "plain@example.org"}).insert()
		self.assertEqual((doc.name, doc.email_account_name), ("plain@example.org", "plain@example.org"))

	def test_the_engine_refuses_settings_that_cannot_work_in_its_words(self):
		from email_account_app.accounts import InvalidEmailSyncSettings

		with self.assertRaises(InvalidEmailSyncSettings) as caught:
			make_account(
				"Broken", email_id="broken@example.org", enable_incoming=1, use_ssl=1, use_starttls=1
			)
		message = str(caught.exception)
		self.assertIn("email_server is not set", message)
		self.assertIn("no password", message)
		self.assertIn("use_ssl and use_starttls are both set", message)

	def test_a_known_provider_fills_in_the_servers(self):
		doc = make_account(
			"Gmail", email_id="someone@gmail.com", enable_incoming=1, enable_outgoing=1, password="x"
		)
		self.assertEqual((doc.email_server, doc.smtp_server), ("imap.gmail.com", "smtp.gmail.com"))
		self.assertEqual((doc.incoming_port, doc.smtp_port, doc.use_ssl, doc.use_tls), ("993", "587", 1, 1))

	def test_a_domain_fills_in_the_servers_and_keeps_them_up_to_date(self):
		domain = frappe.get_doc(
			{
				"doctype": "Email Sync Domain",
				"domain_name": "Corp.Example",
				"email_server": "imap.corp.example",
			}
		).insert()
		self.assertEqual(domain.name, "corp.example")
		doc = make_account(
			"Corp", email_id="desk@corp.example", domain="corp.example", enable_incoming=1, password="x"
		)
		self.assertEqual((doc.email_server, doc.use_imap, doc.use_ssl), ("imap.corp.example", 1, 1))
		domain.email_server = "mail.corp.example"
		domain.use_ssl = 0
		domain.use_starttls = 1
		domain.save()
		doc.reload()
		self.assertEqual((doc.email_server, doc.use_ssl, doc.use_starttls), ("mail.corp.example", 0, 1))

	def test_one_default_incoming_and_outgoing_per_site(self):
		first = make_account("First", email_id="first@example.org", default_incoming=1, default_outgoing=1)
		make_account("Second", email_id="second@example.org", default_outgoing=1)
		first.reload()
		self.assertEqual((first.default_incoming, first.default_outgoing), (1, 0))
		self.assertEqual(frappe.db.count("Email Sync Account", {"default_outgoing": 1}), 1)

	def test_login_id_only_when_it_is_different(self):
		doc = make_account("Login", email_id="login@example.org", login_id="someone-else")
		self.assertIsNone(doc.login_id)
		doc.login_id_is_different = 1
		doc.login_id = "someone-else"
		doc.save()
		self.assertEqual(doc.login_id, "someone-else")

	def test_awaiting_password_needs_none_and_giving_one_starts_the_pull(self):
		with patch("email_account_app.tasks.queue_pull") as queue_pull:
			doc = make_account(
				"Waiting",
				email_id="waiting@example.org",
				enable_incoming=1,
				email_server="imap.example.org",
				awaiting_password=1,
			)
			queue_pull.assert_not_called()
			doc.password = "secret"
			doc.save()
		self.assertEqual(doc.awaiting_password, 0)
		self.assertEqual(doc.get_password("password"), "secret")
		queue_pull.assert_called_once_with("Waiting", after_commit=True)

	def test_append_to_must_take_mail(self):
		with self.assertRaises(frappe.ValidationError):
			make_account("Notes", email_id="notes@example.org", append_to="Note")

	def test_an_import_condition_that_does_not_parse_is_refused(self):
		with self.assertRaises(frappe.ValidationError) as caught:
			make_account(
				"Cond",
				email_id="cond@example.org",
				imap_folder=[{"folder_name": "INBOX", "condition": "subject ==="}],
			)
		self.assertIn("condition of folder", str(caught.exception))
		self.assertIn("not a valid expression", str(caught.exception))

	def test_test_connection_checks_permission_and_says_what_is_wrong(self):
		from email_account_app.api import test_connection

		make_account("Nothing", email_id="nothing@example.org")
		result = test_connection("Nothing")
		self.assertFalse(result["ok"])
		self.assertIn("nothing to test", result["problems"][0])
		frappe.set_user("Guest")
		self.addCleanup(frappe.set_user, "Administrator")
		with self.assertRaises(frappe.PermissionError):
			test_connection("Nothing")
