"""A pull through a real Dovecot into the site: Communications, Files, new documents, threads, and
core's own fields and effects of a received mail."""

from __future__ import annotations

from unittest.mock import patch

from email_account_app.tests.utils import (
	TEST_DOCTYPE,
	FrappeTestCase,
	create_test_doctype,
	dovecot_settings,
	drop_test_doctype,
	frappe,
	make_account,
	make_mail,
	needs_frappe,
	start_dovecot,
)

USER = "alice@example.com"


def server_uidvalidity(dovecot, user: str, folder: str = "INBOX") -> int:
	with dovecot.session(user) as client:
		return int(client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])


def set_password(account: str, password: str) -> None:
	"""Store another password without saving the account (a save checks the connection)."""
	from frappe.utils.password import set_encrypted_password

	set_encrypted_password("Email Account", account, password, "password")


def forget_errors(account: str) -> None:
	"""Error Logs outlive a rollback: undo the test's work first, then remove them."""
	frappe.db.rollback()
	frappe.db.delete("Error Log", {"reference_doctype": "Email Account", "reference_name": account})
	frappe.db.commit()


@needs_frappe
class TestPull(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		cls.dovecot = start_dovecot()
		cls.addClassCleanup(cls.dovecot.cleanup)
		create_test_doctype()
		cls.addClassCleanup(drop_test_doctype)
		super().setUpClass()

	def setUp(self):
		self.addCleanup(frappe.db.rollback)
		self.dovecot.reset(USER)
		self.account = make_account("Alice Support", **self.settings())

	def settings(self, user=USER, **overrides):
		data = dovecot_settings(self.dovecot, user, email_sync_option="ALL", append_to=TEST_DOCTYPE)
		data.update(overrides)
		return data

	def pull(self, name=None, **kwargs):
		from email_account_app.frappe_store import FrappeStore
		from email_account_app.tasks import pull_account

		return pull_account(name or self.account.name, store=FrappeStore(commit=False), **kwargs)

	def test_new_mail_creates_documents_with_the_doctype_settings(self):
		raw = make_mail(
			subject="Printer on fire",
			sender="Customer One <customer@client.test>",
			body="It is on fire.\n",
			attachments=[("photo.png", b"\x89PNG fake image", "image/png")],
		)
		self.dovecot.append(USER, raw)
		report = self.pull()
		self.assertEqual((report.fetched, report.created, report.failed), (1, 1, 0), report.as_dict())

		comm = frappe.get_last_doc("Communication", filters={"email_account": self.account.name})
		self.assertEqual(comm.sent_or_received, "Received")
		self.assertEqual(comm.communication_medium, "Email")
		self.assertEqual(comm.sender, "customer@client.test")
		self.assertEqual(comm.reference_doctype, TEST_DOCTYPE)
		ticket = frappe.get_doc(TEST_DOCTYPE, comm.reference_name)
		self.assertEqual(ticket.subject, "Printer on fire")
		self.assertEqual(ticket.raised_by, "customer@client.test")
		self.assertEqual(ticket.raised_by_name, "Customer One")
		self.assertTrue(ticket.name.startswith("TT-"))
		self.assertIn("on fire", ticket.description)

		files = frappe.get_all(
			"File",
			filters={"attached_to_doctype": "Communication", "attached_to_name": comm.name},
			fields=["file_name", "is_private"],
		)
		self.assertEqual([(f.file_name, f.is_private) for f in files], [("photo.png", 1)])

		account = frappe.get_doc("Email Account", self.account.name)
		self.assertTrue(account.last_pull)
		self.assertFalse(account.last_error)
		self.assertIn("1 created", account.last_pull_summary)

	def test_core_fields_of_a_received_mail_are_kept_current(self):
		"""uid, imap_folder and email_account on the Communication; IMAP Folder uidvalidity/uidnext
		and Email Account.uidnext: what core's own pull reads to go on from."""
		first = self.dovecot.append(USER, make_mail(subject="One"))
		second = self.dovecot.append(USER, make_mail(subject="Two"))
		self.pull()
		rows = frappe.get_all(
			"Communication",
			filters={"email_account": self.account.name},
			fields=["subject", "uid", "imap_folder", "sent_or_received", "communication_medium"],
			order_by="uid asc",
		)
		self.assertEqual(
			[(r.subject, r.uid, r.imap_folder, r.sent_or_received, r.communication_medium) for r in rows],
			[("One", first, "INBOX", "Received", "Email"), ("Two", second, "INBOX", "Received", "Email")],
		)
		folder = frappe.get_all(
			"IMAP Folder", filters={"parent": self.account.name}, fields=["uidvalidity", "uidnext"]
		)[0]
		self.assertEqual(folder.uidvalidity, str(server_uidvalidity(self.dovecot, USER)))
		self.assertEqual(folder.uidnext, str(second + 1))
		self.assertEqual(frappe.db.get_value("Email Account", self.account.name, "uidnext"), second + 1)

	def test_seen_for_linked_users_and_no_unreplied_notice_for_site_notifications(self):
		user = frappe.get_doc(
			{"doctype": "User", "email": "agent@example.com", "first_name": "Agent", "send_welcome_email": 0}
		).insert(ignore_permissions=True)
		user.append("user_emails", {"email_account": self.account.name})
		user.save(ignore_permissions=True)
		self.dovecot.append(
			USER, make_mail(subject="Notice", headers={"isnotification": "<!--notification message-->"})
		)
		self.pull()
		comm = frappe.get_last_doc("Communication", filters={"email_account": self.account.name})
		self.assertIn(user.name, frappe.parse_json(comm._seen))
		self.assertEqual(comm.unread_notification_sent, 1)

	def test_the_documents_owner_is_notified_of_a_reply_as_core_does(self):
		owner = frappe.get_doc(
			{"doctype": "User", "email": "owner@example.com", "first_name": "Owner", "send_welcome_email": 0}
		).insert(ignore_permissions=True)
		# the notice goes out through the site's default outgoing account (queued, not sent here)
		make_account(
			"Site Mail",
			email_id="site-mail@example.com",
			enable_outgoing=1,
			default_outgoing=1,
			smtp_server="127.0.0.1",
			no_smtp_authentication=1,
			check_connection=False,
		)
		self.dovecot.append(USER, make_mail(subject="Broken", message_id="<broken@client.test>"))
		self.pull()
		first = frappe.get_last_doc("Communication", filters={"email_account": self.account.name})
		frappe.db.set_value(TEST_DOCTYPE, first.reference_name, "owner", owner.name)
		self.dovecot.append(
			USER,
			make_mail(
				subject="Re: Broken", message_id="<still@client.test>", in_reply_to="<broken@client.test>"
			),
		)
		self.pull()
		reply = frappe.get_doc("Communication", {"message_id": "still@client.test"})
		queued = frappe.get_all("Email Queue", filters={"communication": reply.name}, pluck="name")
		self.assertEqual(len(queued), 1)
		recipients = frappe.get_all("Email Queue Recipient", filters={"parent": queued[0]}, pluck="recipient")
		self.assertIn("owner@example.com", recipients)

	def test_the_mail_date_is_stored_in_the_site_time_zone(self):
		"""The site's time zone (Asia/Kolkata on the test bench) and the machine's may differ: the
		stored date is the mail's instant in the site's zone either way."""
		from datetime import datetime, timezone
		from zoneinfo import ZoneInfo

		from frappe.utils import get_system_timezone

		self.dovecot.append(
			USER, make_mail(subject="When", date=datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc))
		)
		self.pull()
		comm = frappe.get_last_doc("Communication", filters={"email_account": self.account.name})
		expected = (
			datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
			.astimezone(ZoneInfo(get_system_timezone()))
			.replace(tzinfo=None)
		)
		self.assertEqual(frappe.utils.get_datetime(comm.communication_date), expected)

	def test_a_reply_joins_the_thread_and_reopens_the_document(self):
		first = make_mail(subject="Invoice missing", message_id="<first@client.test>")
		self.dovecot.append(USER, first)
		self.pull()
		comm = frappe.get_last_doc("Communication", filters={"email_account": self.account.name})
		frappe.db.set_value(TEST_DOCTYPE, comm.reference_name, "status", "Closed")

		reply = make_mail(
			subject="Re: Invoice missing",
			message_id="<second@client.test>",
			in_reply_to="<first@client.test>",
			references="<first@client.test>",
		)
		self.dovecot.append(USER, reply)
		report = self.pull()
		self.assertEqual((report.fetched, report.linked, report.created), (1, 1, 0), report.as_dict())
		second = frappe.get_doc("Communication", {"message_id": "second@client.test"})
		self.assertEqual(
			(second.reference_doctype, second.reference_name), (TEST_DOCTYPE, comm.reference_name)
		)
		self.assertEqual(second.in_reply_to, comm.name)
		self.assertEqual(frappe.db.get_value(TEST_DOCTYPE, comm.reference_name, "status"), "Open")
		self.assertEqual(frappe.db.count(TEST_DOCTYPE, {"subject": "Invoice missing"}), 1)

	def test_nothing_is_stored_twice(self):
		self.dovecot.append(USER, make_mail(subject="Once", message_id="<once@client.test>"))
		self.pull()
		# read the folder again: the app's cursor and core's position both forgotten
		frappe.db.delete("Email Folder Cursor", {"account": self.account.name})
		frappe.db.set_value("IMAP Folder", {"parent": self.account.name}, "uidvalidity", None)
		report = self.pull()
		self.assertEqual(report.duplicates, 1, report.as_dict())
		self.assertEqual(frappe.db.count("Communication", {"message_id": "once@client.test"}), 1)

	def test_unseen_mode_flags_only_what_was_stored(self):
		self.account.email_sync_option = "UNSEEN"
		self.account.save()
		uid = self.dovecot.append(USER, make_mail(subject="Flag me"))
		self.pull()
		self.assertIn("\\Seen", self.dovecot.flags(USER)[uid])

	def test_a_message_that_fails_is_kept_with_its_raw_bytes(self):
		from email_account_app.engine.routing import Router

		self.dovecot.append(USER, make_mail(subject="Boom", message_id="<boom@client.test>"))
		with patch.object(Router, "decide", side_effect=RuntimeError("routing broke")):
			report = self.pull()
		self.assertEqual(report.failed, 1)
		failure = frappe.get_last_doc("Email Message Log", filters={"account": self.account.name})
		self.assertEqual(failure.status, "Failed")
		self.assertIn("routing broke", failure.error)
		self.assertTrue(failure.raw_file.startswith("/private/files/"))
		raw = frappe.get_doc("File", {"file_url": failure.raw_file}).get_content()
		raw = raw.encode() if isinstance(raw, str) else raw
		self.assertIn(b"boom@client.test", raw)
		self.assertEqual(frappe.db.count("Communication", {"message_id": "boom@client.test"}), 0)

	def test_a_failing_account_is_logged_and_the_others_go_on(self):
		broken = make_account("Broken Bob", **self.settings("bob@example.com"))
		set_password(broken.name, "wrong")
		# an Error Log outlives a rollback (core keeps errors whatever the transaction does)
		self.addCleanup(forget_errors, broken.name)
		self.dovecot.append(USER, make_mail(subject="Still arrives"))
		errors_before = frappe.db.count("Error Log", {"reference_name": broken.name})
		self.assertIsNotNone(self.pull(broken.name))
		report = self.pull()
		self.assertEqual(report.fetched, 1, report.as_dict())
		broken.reload()
		self.assertIn("refused the login", broken.last_error)
		self.assertEqual(frappe.db.count("Error Log", {"reference_name": broken.name}), errors_before + 1)
		self.assertEqual(frappe.db.count("Communication", {"subject": "Still arrives"}), 1)
		# core's failed-attempts counter (which disables a broken account after a few) counts it
		self.assertEqual(broken.get_failed_attempts_count(), 1)
		self.addCleanup(broken.set_failed_attempts_count, 0)

	def test_pull_all_fans_out_one_deduplicated_job_per_account(self):
		from email_account_app.tasks import pull_all

		with patch("frappe.enqueue") as enqueue:
			pull_all()
		calls = {c.kwargs["account"]: c.kwargs for c in enqueue.call_args_list}
		self.assertIn(self.account.name, calls)
		job = calls[self.account.name]
		self.assertEqual(job["queue"], "short")
		# core's job name: core's scheduler sees ours and does not queue its own meanwhile
		self.assertEqual(job["job_id"], f"pull_from_email_account|{self.account.name}")
		self.assertEqual(job["job_name"], job["job_id"])
		self.assertTrue(job["deduplicate"])

	def test_test_connection_gives_the_engines_verdict(self):
		from email_account_app.api import test_connection

		result = test_connection(self.account.name)
		self.assertTrue(result["ok"], result)
		[incoming] = result["parts"]
		self.assertIn("logged in as alice@example.com", incoming["message"])
		self.assertIn("INBOX (synced)", [f["name"] for f in incoming["folders"]])

		set_password(self.account.name, "wrong")
		result = test_connection(self.account.name)
		self.assertFalse(result["ok"])
		self.assertIn("refused the login", result["parts"][0]["message"])

	def test_the_form_gets_the_engines_words_with_fields_named_by_their_labels(self):
		from email_account_app.api import account_status, test_connection

		# a server name that is not found: the engine's words name the field to check
		frappe.db.set_value("Email Account", self.account.name, "email_server", "no-such-host.invalid")
		[incoming] = test_connection(self.account.name)["parts"]
		self.assertIn("Check email_server for typos", incoming["message"])
		self.assertIn('Check "Incoming Server" for typos', incoming["message_html"])
		self.addCleanup(forget_errors, self.account.name)
		self.pull()
		self.addCleanup(self.account.set_failed_attempts_count, 0)
		status = account_status(self.account.name)
		self.assertIn("Check email_server for typos", status["last_error"])
		self.assertIn('Check "Incoming Server" for typos', status["last_error_html"])
		self.assertNotIn("email_server", status["last_error_html"])
