"""Core's Email Account and Email Domain with the app's behaviour, on a real Dovecot: receive()
from core's scheduler path, the checks on save, accounts the engine leaves to core, one pull per
account at a time, another app's override, and continuity with core's own pull both ways."""

from __future__ import annotations

import pickle
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
	purge,
	start_dovecot,
)

USER = "alice@example.com"
CORE = "frappe.email.doctype.email_account.email_account.EmailAccount"
OURS = "email_account_app.overrides.email_account.EmailAccount"
OTHER = "email_account_app.tests.other_app.OtherEmailAccount"


def core_class():
	from frappe.email.doctype.email_account.email_account import EmailAccount

	return EmailAccount


def forget_controller():
	"""Frappe caches the controller class per site and process: resolve it again."""
	frappe.controllers.get(frappe.local.site, {}).pop("Email Account", None)


def overrides(*paths):
	"""The hook as a site with these apps (in this install order) has it."""
	from frappe.tests.utils import patch_hooks

	hooks = dict(frappe.get_hooks("override_doctype_class", {}) or {})
	hooks["Email Account"] = list(paths)
	return patch_hooks({"override_doctype_class": hooks})


@needs_frappe
class TestEmailAccount(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		cls.dovecot = start_dovecot()
		cls.addClassCleanup(cls.dovecot.cleanup)
		create_test_doctype()
		cls.addClassCleanup(drop_test_doctype)
		super().setUpClass()

	def setUp(self):
		self.addCleanup(frappe.db.rollback)
		# a pull commits each message; here the test's transaction keeps it all, and rolls it back
		commit = patch.object(frappe.db, "commit")
		commit.start()
		self.addCleanup(commit.stop)
		self.dovecot.reset(USER)

	def settings(self, user=USER, **overrides):
		data = dovecot_settings(self.dovecot, user, email_sync_option="ALL", append_to=TEST_DOCTYPE)
		data.update(overrides)
		return data

	# -- the class -------------------------------------------------------------------------------

	def test_the_site_uses_cores_email_account_with_the_apps_behaviour(self):
		from email_account_app.overrides.email_account import EmailAccountEngine
		from email_account_app.overrides.email_domain import EmailDomainEngine

		account = make_account("Alice", **self.settings())
		self.assertIsInstance(account, EmailAccountEngine)
		self.assertIsInstance(account, core_class())
		self.assertIsInstance(frappe.new_doc("Email Domain"), EmailDomainEngine)
		# documents are pickled (document cache, enqueued methods): the composed class loads back
		again = pickle.loads(pickle.dumps(account))
		self.assertIs(type(again), type(account))

	def test_custom_fields_are_there_and_whole_numbers_are_int(self):
		meta = frappe.get_meta("Email Account")
		for fieldname in ("condition", "validate_ssl_certificate", "timeout", "last_pull", "last_error"):
			self.assertTrue(meta.has_field(fieldname), fieldname)
		self.assertEqual(meta.get_field("timeout").fieldtype, "Int")
		self.assertEqual(meta.get_field("attachment_limit").fieldtype, "Int")
		self.assertTrue(frappe.get_meta("IMAP Folder").has_field("condition"))
		self.assertFalse(frappe.get_meta("Communication").has_field("email_sync_account"))

	# -- receive ---------------------------------------------------------------------------------

	def test_cores_scheduler_path_runs_the_engines_pull(self):
		from frappe.email.doctype.email_account.email_account import pull_from_email_account

		account = make_account("Alice", **self.settings())
		self.dovecot.append(USER, make_mail(subject="Via core's job", message_id="<core-job@client.test>"))
		pull_from_email_account(account.name)
		log = frappe.get_all(
			"Email Message Log",
			filters={"account": account.name, "message_id": "core-job@client.test"},
			fields=["status", "communication"],
		)
		self.assertEqual([row.status for row in log], ["Received"])
		self.assertTrue(frappe.db.exists("Email Folder Cursor", {"account": account.name, "folder": "INBOX"}))

	def test_every_imap_folder_row_with_its_own_append_to_and_condition(self):
		self.dovecot.create_folder(USER, "Jobs")
		account = make_account(
			"Alice",
			**self.settings(
				imap_folder=[
					{"folder_name": "INBOX", "append_to": TEST_DOCTYPE},
					{"folder_name": "Jobs", "condition": '"cv" in doc.subject.lower()'},
				]
			),
		)
		self.dovecot.append(USER, make_mail(subject="Inbox mail"))
		self.dovecot.append(USER, make_mail(subject="My CV"), folder="Jobs")
		self.dovecot.append(USER, make_mail(subject="Not for jobs"), folder="Jobs")
		report = account.receive()
		self.assertEqual((report.fetched, report.stored, report.skipped), (3, 2, 1), report.as_dict())
		rows = frappe.get_all(
			"Communication",
			filters={"email_account": account.name},
			fields=["subject", "imap_folder", "reference_doctype"],
		)
		by_subject = {row.subject: row for row in rows}
		self.assertEqual(by_subject["Inbox mail"].reference_doctype, TEST_DOCTYPE)
		self.assertEqual(
			(by_subject["My CV"].imap_folder, by_subject["My CV"].reference_doctype), ("Jobs", None)
		)
		self.assertNotIn("Not for jobs", by_subject)

	def test_a_pop3_account_is_read_and_its_mail_stays_on_the_server(self):
		settings = dovecot_settings(self.dovecot, USER, protocol="pop3", append_to=TEST_DOCTYPE)
		account = make_account("Alice POP", **settings)
		self.dovecot.append(USER, make_mail(subject="By POP3"))
		report = account.receive()
		self.assertEqual((report.fetched, report.created), (1, 1), report.as_dict())
		comm = frappe.get_last_doc("Communication", filters={"email_account": account.name})
		self.assertEqual((comm.subject, comm.uid, comm.imap_folder), ("By POP3", -1, None))
		self.assertEqual(comm.reference_doctype, TEST_DOCTYPE)  # POP3: the account's own Append To
		self.assertEqual(len(self.dovecot.flags(USER)), 1)  # not deleted (core deletes what it reads)
		self.assertEqual(account.receive().fetched, 0)

	def test_the_user_with_the_accounts_address_gets_its_inbox(self):
		"""Core's User Email rows (the composer's From, the user's inbox) come with the account."""
		user = frappe.get_doc(
			{"doctype": "User", "email": USER, "first_name": "Alice", "send_welcome_email": 0}
		).insert(ignore_permissions=True)
		account = make_account("Alice", **self.settings())
		user.reload()
		self.assertEqual([row.email_account for row in user.user_emails], [account.name])

	# -- validation ------------------------------------------------------------------------------

	def test_settings_that_cannot_work_are_refused_naming_fields_by_their_labels(self):
		from email_account_app.accounts import InvalidEmailSyncSettings

		with self.assertRaises(InvalidEmailSyncSettings) as caught:
			make_account("Alice", **self.settings(use_ssl=1, use_starttls=1))
		message = str(caught.exception)
		# two fields are labelled "Use SSL" (and two "Port"): the message says which one
		self.assertIn('"Use SSL" in "Incoming (POP/IMAP) Settings"', message)
		self.assertNotIn("use_ssl", message)
		self.assertNotIn("Outgoing", message)
		# an address at a domain with no Email Domain and no preset: no server to fill in
		with self.assertRaises(InvalidEmailSyncSettings) as caught:
			make_account("Alice", **self.settings(email_id="alice@nowhere.test", email_server=None))
		self.assertIn('"Incoming Server"', str(caught.exception))
		self.assertNotIn("email_server", str(caught.exception))
		with self.assertRaises(InvalidEmailSyncSettings) as caught:
			make_account("Alice", **self.settings(incoming_port="abc"))
		self.assertIn('"Port" in "Incoming (POP/IMAP) Settings"', str(caught.exception))
		self.assertNotIn("Outgoing", str(caught.exception))

	def test_the_engines_oauth_keys_are_named_as_the_connected_app_names_them(self):
		from email_account_app.accounts import labelled, site_words

		words = "Check oauth_client_id and the client secret; oauth_token_url must be https."
		for text in (site_words(words), labelled(words)):
			self.assertNotIn("oauth_", text)
		self.assertIn('the Connected App\'s "Client Id"', site_words(words))
		self.assertIn("Token URI", labelled(words))
		self.assertEqual(site_words("no key here"), "no key here")

	def test_the_connection_is_checked_on_save_with_the_engines_plain_message(self):
		from email_account_app.overrides.email_account import ConnectionCheckFailed

		with self.assertRaises(ConnectionCheckFailed) as caught:
			make_account("Alice", **self.settings(password="wrong"))
		self.assertIn("refused the login", str(caught.exception))
		self.assertNotIn("Traceback", str(caught.exception))
		self.assertIsNone(frappe.db.exists("Email Account", "Alice"))

		closed = self.dovecot.port_for("imap", "plain") + 1000  # nothing listens there
		with self.assertRaises(ConnectionCheckFailed) as caught:
			make_account("Alice", **self.settings(incoming_port=str(closed)))
		self.assertIn(str(closed), str(caught.exception))

	def test_corrected_credentials_queue_a_pull(self):
		account = make_account("Alice", **self.settings(), check_connection=False)
		with patch("email_account_app.tasks.queue_pull") as queue_pull:
			account.reload()
			account.flags.check_connection = True
			account.footer = "Sent by the support team"
			account.save()  # nothing about the servers changed: no check, no pull
			queue_pull.assert_not_called()
			account.password = self.settings()["password"]
			account.save()
		queue_pull.assert_called_once_with(account.name, after_commit=True)

	def test_a_domain_or_provider_fills_empty_servers(self):
		from email_account_app.accounts import account_settings

		domain = frappe.get_doc({"doctype": "Email Domain", "domain_name": "gmail.com"})
		domain.insert(ignore_permissions=True)
		self.assertEqual((domain.email_server, domain.smtp_server), ("imap.gmail.com", "smtp.gmail.com"))

		doc = frappe.get_doc(
			{
				"doctype": "Email Account",
				"email_account_name": "Company Gmail",
				"email_id": "support@company.test",
				"service": "GMail",
				"enable_outgoing": 1,
				"password": "x",
			}
		)
		self.assertEqual(account_settings(doc).smtp_server, "smtp.gmail.com")

	def test_a_domain_whose_servers_cannot_be_reached_is_told_in_plain_words(self):
		from email_account_app.overrides.email_account import ConnectionCheckFailed

		closed = self.dovecot.port_for("imap", "plain") + 1000  # nothing listens there
		domain = frappe.get_doc(
			{
				"doctype": "Email Domain",
				"domain_name": "unreachable.test",
				"email_server": "no-such-host.invalid",
				"use_imap": 1,
				"smtp_server": "127.0.0.1",
				"smtp_port": str(closed),
			}
		)
		# core checks the connections on save outside tests only: its two checks, called as it does
		with self.assertRaises(ConnectionCheckFailed) as caught:
			domain.validate_incoming_server_conn()
		message = str(caught.exception)
		self.assertIn("Incoming (IMAP) (no-such-host.invalid:143): Server not found", message)
		self.assertIn('Check "Incoming Server" for typos', message)
		self.assertNotIn("Errno", message)
		with self.assertRaises(ConnectionCheckFailed) as caught:
			domain.validate_outgoing_server_conn()
		message = str(caught.exception)
		self.assertIn(f"Outgoing (SMTP) (127.0.0.1:{closed}): Connection refused", message)
		self.assertNotIn("Errno", message)

	# -- one pull per account at a time ----------------------------------------------------------

	def test_one_pull_per_account_at_a_time_whichever_scheduler_starts_it(self):
		from frappe.email.doctype.email_account.email_account import pull_from_email_account

		from email_account_app.tasks import pull_account

		account = make_account("Alice", **self.settings())
		for n in range(3):
			self.dovecot.append(USER, make_mail(subject=f"Concurrent {n}"))
		during = []

		def second_pull(folder, done, total):
			# while this pull runs (its lock held), core's job and the app's job both start one
			during.append(pull_from_email_account(account.name))
			during.append(pull_account(account.name))

		report = pull_account(account.name, progress=second_pull, batch_size=1)
		self.assertEqual(report.stored, 3, report.as_dict())
		self.assertEqual(during, [None] * 6)  # each returned at once, reading nothing
		self.assertEqual(frappe.db.count("Communication", {"email_account": account.name}), 3)
		# the lock is released: the next pull runs
		self.dovecot.append(USER, make_mail(subject="After"))
		self.assertEqual(pull_account(account.name).stored, 1)

	def test_the_apps_pull_job_is_queued_once_and_cores_scheduler_sees_it(self):
		from frappe.utils.background_jobs import get_job, get_jobs

		from email_account_app.tasks import PULL_JOB, queue_pull

		job_id = PULL_JOB.format("Queued Alice")
		self.addCleanup(lambda: (job := get_job(job_id)) and job.delete())
		# a queue no worker listens to, so that the job stays queued whatever workers the bench runs
		# (Frappe knows its queues from the config's workers, remembered: forgotten before and after)
		from frappe.utils import background_jobs

		forget = getattr(background_jobs.get_queues_timeout, "cache_clear", lambda: None)
		self.addCleanup(forget)
		queue = "email_account_app_test"
		workers = {**(frappe.local.conf.get("workers") or {}), queue: {}}
		with (
			patch.dict(frappe.local.conf, {"workers": workers}),
			patch("email_account_app.tasks.PULL_QUEUE", queue),
		):
			forget()
			queue_pull("Queued Alice")
			queue_pull("Queued Alice")  # still queued: not queued again
			self.assertEqual(get_job(job_id).get_status(), "queued")
			# core's pull() skips an account whose job name is among the queued and running jobs
			names = get_jobs(site=frappe.local.site, key="job_name")[frappe.local.site]
			self.assertEqual(names.count(job_id), 1)

	# -- another app that overrides Email Account --------------------------------------------------

	def test_the_app_composes_with_another_apps_override_installed_before_it(self):
		from frappe.model.base_document import get_controller

		from email_account_app.overrides.email_account import EmailAccountEngine
		from email_account_app.tests.other_app import OtherEmailAccount

		self.addCleanup(forget_controller)
		forget_controller()
		with overrides(OTHER, OURS):
			cls = get_controller("Email Account")
			self.assertTrue(issubclass(cls, EmailAccountEngine))
			self.assertTrue(issubclass(cls, OtherEmailAccount))
			account = make_account("Alice", **self.settings())
			self.assertEqual(account.other_app_marker(), "the other app's code still runs")
			self.dovecot.append(USER, make_mail(subject="Composed"))
			self.assertEqual(account.receive().stored, 1)
			self.assertIs(type(pickle.loads(pickle.dumps(account))), cls)

	def test_when_another_apps_override_wins_the_form_says_so_and_the_app_does_not_pull(self):
		from frappe.model.base_document import get_controller

		from email_account_app.api import account_status
		from email_account_app.tasks import pull_all

		self.addCleanup(forget_controller)
		account = make_account("Alice", **self.settings())
		forget_controller()
		with overrides(OURS, OTHER):
			self.assertEqual(get_controller("Email Account").__name__, "OtherEmailAccount")
			status = account_status(account.name)
			self.assertFalse(status["controls"])
			self.assertIn(OTHER, status["message"])
			self.assertIn("Update Hooks Resolution Order", status["message"])
			with patch("email_account_app.tasks.queue_pull") as queue_pull:
				pull_all()
			queue_pull.assert_not_called()


@needs_frappe
class TestInstall(FrappeTestCase):
	"""Custom Fields on install, migrate and uninstall (DDL: these tests commit)."""

	def test_custom_fields_go_with_the_app_and_come_back_on_migrate(self):
		"""Uninstall removes the app's Custom Fields and their columns (core's fields stay); install
		and migrate create them again, and drop the field of earlier versions on Communication."""
		from email_account_app import install

		self.addCleanup(install.after_migrate)
		install.remove_custom_fields()  # DDL: commits
		for doctype, fieldname in (("Email Account", "timeout"), ("IMAP Folder", "condition")):
			self.assertFalse(frappe.db.exists("Custom Field", {"dt": doctype, "fieldname": fieldname}))
			self.assertFalse(frappe.db.has_column(doctype, fieldname))
		self.assertTrue(frappe.db.has_column("Email Account", "uidnext"))
		install.after_migrate()
		self.assertEqual(frappe.get_meta("Email Account").get_field("timeout").fieldtype, "Int")
		self.assertTrue(frappe.db.has_column("IMAP Folder", "condition"))

	def test_core_unreplied_notices_stop_while_installed_and_start_again_after(self):
		"""Core's notify_unreplied and the app's would both notify about the same mail."""
		from email_account_app import install

		job = {"method": install.CORE_JOBS[0]}
		self.addCleanup(install.stop_core_jobs, True)
		install.stop_core_jobs(False)  # as uninstall leaves it
		self.assertEqual(frappe.db.get_value("Scheduled Job Type", job, "stopped"), 0)
		install.after_migrate()
		self.assertEqual(frappe.db.get_value("Scheduled Job Type", job, "stopped"), 1)


@needs_frappe
class TestContinuity(FrappeTestCase):
	"""Core reads 30 mails, the app (installed) 20 more, core (after an uninstall) 10 more: 60
	distinct Communications, none twice, none missing. Core's receive commits as it goes, so this
	test cleans up what it made."""

	@classmethod
	def setUpClass(cls):
		cls.dovecot = start_dovecot()
		cls.addClassCleanup(cls.dovecot.cleanup)
		super().setUpClass()

	def setUp(self):
		self.dovecot.reset("carol@example.com")
		self.addCleanup(purge, "Carol")
		self.addCleanup(frappe.db.delete, "Unhandled Email", {"email_account": "Carol"})

	def append(self, start, count):
		raws = [
			make_mail(subject=f"Mail {n}", message_id=f"<continuity-{n}@client.test>")
			for n in range(start, start + count)
		]
		self.dovecot.append_many("carol@example.com", raws)

	def received(self):
		return frappe.get_all(
			"Communication",
			filters={"email_account": "Carol", "sent_or_received": "Received"},
			pluck="message_id",
		)

	def test_core_then_the_app_then_core_again(self):
		data = dovecot_settings(self.dovecot, "carol@example.com", email_sync_option="ALL")
		# no connection check, so no pull queued on save: a worker of the bench would read beside the test
		account = make_account("Carol", check_connection=False, **data)
		frappe.db.commit()

		self.append(1, 30)
		core_class().receive(account)  # core's own pull: the class below ours
		self.assertEqual(len(self.received()), 30)

		self.append(31, 20)  # the app is installed: its receive() reads
		account = frappe.get_doc("Email Account", "Carol")
		report = account.receive()
		self.assertEqual((report.fetched, report.stored, report.duplicates), (20, 20, 0), report.as_dict())
		self.assertEqual(len(self.received()), 50)

		self.append(51, 10)  # uninstalled: core's pull goes on from where the app stopped
		account = frappe.get_doc("Email Account", "Carol")
		core_class().receive(account)
		ids = self.received()
		self.assertEqual(len(ids), 60)
		self.assertEqual(sorted(ids), sorted(f"continuity-{n}@client.test" for n in range(1, 61)))
