"""Sending through a real SMTP server (aiosmtpd): core's Email Queue is the outbox, the engine the
send step (override_email_send); threads, the composer's reply, unsubscribes, the guest links."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta, timezone
from unittest.mock import patch

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from email_account_app.tests.utils import (
	TEST_DOCTYPE,
	FrappeTestCase,
	create_test_doctype,
	dovecot_settings,
	drop_test_doctype,
	flush_queue,
	frappe,
	make_account,
	make_mail,
	needs_frappe,
	no_pulls_queued,
	purge,
	start_dovecot,
	start_smtp,
)

USER = "alice@example.com"


def request(method: str) -> Request:
	return Request(
		EnvironBuilder(method=method, path="/api/method/email_account_app.api.unsubscribe").get_environ()
	)


def parse(raw: bytes):
	return email.message_from_bytes(raw, policy=email.policy.default)


@needs_frappe
class TestSend(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		cls.smtp = start_smtp("plain")
		cls.addClassCleanup(cls.smtp.stop)
		cls.dovecot = start_dovecot()
		cls.addClassCleanup(cls.dovecot.cleanup)
		create_test_doctype()
		cls.addClassCleanup(drop_test_doctype)
		no_pulls_queued(cls)
		super().setUpClass()

	def setUp(self):
		# core remembers the outgoing account per request (EmailAccount.find_outgoing): not another test's
		frappe.local.outgoing_email_account = {}
		self.started = frappe.utils.now_datetime()
		self.addCleanup(purge, "Alice", self.started)
		self.smtp.reset()
		self.dovecot.reset(USER)
		data = dovecot_settings(self.dovecot, USER, email_sync_option="ALL", append_to=TEST_DOCTYPE)
		smtp = self.smtp.account(USER)
		smtp["smtp_port"] = str(smtp["smtp_port"])
		data.update({k: v for k, v in smtp.items() if k not in ("email_id", "ca_file", "timeout")})
		self.account = make_account(
			"Alice", **data, default_outgoing=1, default_incoming=1, track_email_status=1
		)

	def store(self):
		from email_account_app.frappe_store import FrappeStore

		return FrappeStore(commit=False)

	def settings(self):
		from email_account_app.accounts import load_account

		return load_account(self.account.name)

	def queue(self, **request):
		from email_account_app.accounts import site_settings
		from email_account_app.engine.compose import OutgoingRequest
		from email_account_app.engine.outbox import queue_mail

		return queue_mail(self.store(), self.settings(), site_settings(), OutgoingRequest(**request))

	def flush(self):
		flush_queue(self.started)

	def queued(self, mail):
		return [frappe.get_doc("Email Queue", name) for name in mail.extra["email_queue"]]

	# -- the engine's own mail goes through core's queue ---------------------------------------------

	def test_queued_mail_waits_in_core_queue_and_goes_out_through_the_engine(self):
		mail = self.queue(to=("customer@client.test",), subject="Your order", text="It shipped.")
		[queue] = self.queued(mail)
		self.assertEqual((queue.status, queue.email_account), ("Not Sent", self.account.name))
		self.assertEqual([r.recipient for r in queue.recipients], ["customer@client.test"])
		comm = frappe.get_doc("Communication", mail.extra["communication"])
		self.assertEqual((comm.sent_or_received, comm.delivery_status), ("Sent", "Sending"))

		self.flush()
		[delivery] = self.smtp.deliveries
		self.assertEqual(delivery.rcpt_tos, ("customer@client.test",))
		self.assertEqual(delivery.mail_from, USER)
		message = parse(delivery.content)
		self.assertEqual(message["Subject"], "Your order")
		self.assertEqual(message["Message-ID"].strip("<>"), mail.message_id)
		queue.reload()
		self.assertEqual(queue.status, "Sent")

	def test_a_refused_recipient_is_retried_by_core_and_the_others_get_it(self):
		self.smtp.refuse("nobody@client.test", "550 5.1.1 No such user")
		mail = self.queue(to=("customer@client.test", "nobody@client.test"), subject="Two", text="x")
		self.flush()
		self.assertEqual([d.rcpt_tos for d in self.smtp.deliveries], [("customer@client.test",)])
		# each recipient's own copy (its own unsubscribe link) is an entry of core's queue
		queues = {q.recipients[0].recipient: q for q in self.queued(mail)}
		self.assertEqual(queues["customer@client.test"].status, "Sent")
		refused = queues["nobody@client.test"]
		self.assertEqual((refused.status, refused.retry), ("Not Sent", 1))  # core tries again later
		self.assertIn("No such user", refused.error)

	def test_a_reply_to_sent_mail_threads_onto_its_document(self):
		self.dovecot.append(USER, make_mail(subject="Need help", message_id="<ask@client.test>"))
		self.pull()
		ticket = frappe.db.get_value("Communication", {"message_id": "ask@client.test"}, "reference_name")
		mail = self.queue(
			to=("customer@client.test",),
			subject="Re: Need help",
			text="Try this.",
			in_reply_to=("ask@client.test",),
		)
		self.assertEqual(
			frappe.db.get_value("Communication", mail.extra["communication"], "reference_name"), ticket
		)
		self.flush()
		[delivery] = self.smtp.deliveries
		self.assertEqual(parse(delivery.content)["In-Reply-To"], "<ask@client.test>")

		# the customer answers our message, dropping the subject's words: the Message-ID threads it
		answer = make_mail(
			subject="thanks", in_reply_to=f"<{mail.message_id}>", message_id="<thx@client.test>"
		)
		self.dovecot.append(USER, answer)
		report = self.pull()
		self.assertEqual(report.linked, 1, report.as_dict())
		self.assertEqual(
			frappe.db.get_value("Communication", {"message_id": "thx@client.test"}, "reference_name"), ticket
		)

	def pull(self):
		from email_account_app.tasks import pull_account

		return pull_account(self.account.name, store=self.store())

	# -- site mail (override_email_send) ---------------------------------------------------------

	def sendmail(self, **kwargs):
		"""frappe.sendmail sent at once through the site's own Email Account (no mail_server)."""
		frappe.flags.testing_email = True
		try:
			frappe.local.outgoing_email_account = {}
			frappe.sendmail(now=True, **kwargs)
		finally:
			frappe.flags.testing_email = False
			frappe.local.outgoing_email_account = {}

	def test_site_mail_goes_out_through_the_default_outgoing_account(self):
		self.sendmail(recipients=["someone@client.test"], subject="Site notice", message="<p>Hello</p>")
		[delivery] = self.smtp.deliveries
		self.assertEqual(delivery.rcpt_tos, ("someone@client.test",))
		self.assertEqual(delivery.mail_from, USER)
		self.assertEqual(parse(delivery.content)["Subject"], "Site notice")
		queue = frappe.get_last_doc("Email Queue")
		self.assertEqual((queue.status, queue.email_account), ("Sent", self.account.name))

	def test_tests_send_nothing_unless_they_ask_as_core_says(self):
		frappe.local.outgoing_email_account = {}
		frappe.sendmail(now=True, recipients=["someone@client.test"], subject="Quiet", message="x")
		self.assertEqual(self.smtp.deliveries, [])
		self.assertIn(b"Quiet", frappe.flags.sent_mail)

	def test_mail_about_a_document_answers_its_thread(self):
		self.dovecot.append(USER, make_mail(subject="Broken", message_id="<broken@client.test>"))
		self.pull()
		ticket = frappe.db.get_value("Communication", {"message_id": "broken@client.test"}, "reference_name")
		self.sendmail(
			recipients=["customer@client.test"],
			subject="Re: Broken",
			message="We are on it.",
			reference_doctype=TEST_DOCTYPE,
			reference_name=ticket,
			unsubscribe_message="Leave this conversation",
		)
		[delivery] = self.smtp.deliveries
		message = parse(delivery.content)
		self.assertEqual(message["In-Reply-To"], "<broken@client.test>")
		self.assertIn("<broken@client.test>", message["References"])
		# core's unsubscribe link, also as a List-Unsubscribe header for the mail client
		self.assertIn("frappe.email.queue.unsubscribe", message["List-Unsubscribe"])
		self.assertIn("customer%40client.test", message["List-Unsubscribe"])
		# and the customer's answer to it comes back onto the document
		sent_id = message["Message-ID"].strip("<>")
		self.dovecot.append(
			USER, make_mail(subject="ok", in_reply_to=f"<{sent_id}>", message_id="<ok@client.test>")
		)
		self.pull()
		self.assertEqual(
			frappe.db.get_value("Communication", {"message_id": "ok@client.test"}, "reference_name"), ticket
		)

	def test_a_reply_from_the_composer_keeps_core_from_and_reply_to_and_threads(self):
		from frappe.core.doctype.communication.email import make

		self.dovecot.append(USER, make_mail(subject="Printer", message_id="<printer@client.test>"))
		self.pull()
		ticket = frappe.db.get_value("Communication", {"message_id": "printer@client.test"}, "reference_name")
		frappe.set_user("Administrator")
		result = make(
			doctype=TEST_DOCTYPE,
			name=ticket,
			content="Turn it off and on again.",
			subject="Re: Printer",
			recipients="customer@client.test",
			sender="Agent Smith <agent@example.com>",
			send_email=True,
		)
		self.flush()
		queued = frappe.get_all(
			"Email Queue",
			filters={"communication": result["name"]},
			fields=["name", "status", "error", "email_account", "send_after", "creation"],
		)
		self.assertEqual(len(self.smtp.deliveries), 1, (queued, self.started))
		[delivery] = self.smtp.deliveries
		message = parse(delivery.content)
		# core's From (the agent) and Reply-To (the default incoming account), sent by our SMTP
		self.assertIn("agent@example.com", message["From"])
		self.assertIn(USER, message["Reply-To"])
		self.assertEqual(delivery.mail_from, USER)
		self.assertEqual(message["In-Reply-To"], "<printer@client.test>")
		comm = frappe.get_doc("Communication", result["name"])
		self.assertEqual(comm.email_account, self.account.name)

		# the customer answers the reply: it threads onto the document
		sent_id = message["Message-ID"].strip("<>")
		self.dovecot.append(
			USER, make_mail(subject="Re: Printer", in_reply_to=f"<{sent_id}>", message_id="<on@client.test>")
		)
		self.pull()
		self.assertEqual(
			frappe.db.get_value("Communication", {"message_id": "on@client.test"}, "reference_name"), ticket
		)

	def test_always_use_the_account_address_as_sender(self):
		frappe.db.set_value("Email Account", self.account.name, "always_use_account_email_id_as_sender", 1)
		frappe.clear_document_cache("Email Account", self.account.name)
		self.sendmail(
			recipients=["someone@client.test"],
			sender="Agent Smith <agent@example.com>",
			subject="From us",
			message="x",
		)
		[delivery] = self.smtp.deliveries
		self.assertIn(USER, parse(delivery.content)["From"])

	def test_accounts_the_engine_does_not_serve_are_sent_by_core(self):
		with (
			patch("email_account_app.events.engine_serves", return_value=False),
			patch("email_account_app.events._send_as_core") as core,
		):
			self.sendmail(recipients=["someone@client.test"], subject="Core", message="x")
		self.assertEqual(self.smtp.deliveries, [])
		self.assertEqual(core.call_count, 1)

	def test_the_sent_folder_gets_a_copy_through_the_engine(self):
		frappe.db.set_value("Email Account", self.account.name, "append_emails_to_sent_folder", 1)
		frappe.clear_document_cache("Email Account", self.account.name)
		self.sendmail(recipients=["someone@client.test"], subject="Keep a copy", message="x")
		sent = next(name for name in self.dovecot.folders(USER) if "sent" in name.lower())
		self.assertEqual(len(self.dovecot.messages(USER, sent)), 1)

	# -- the guest links -------------------------------------------------------------------------

	def test_tracking_pixel_marks_opened_and_always_answers_a_gif(self):
		from email_account_app import api
		from email_account_app.accounts import site_settings
		from email_account_app.engine.compose import tracking_token

		mail = self.queue(to=("customer@client.test",), subject="Tracked", text="x")
		self.flush()
		token = tracking_token(site_settings(), self.account.name, mail.message_id)
		for given in ("forged.token", token):
			frappe.local.response = frappe._dict()
			api.track(given)
			self.assertEqual(frappe.local.response["content_type"], "image/gif")
			self.assertTrue(frappe.local.response["filecontent"].startswith(b"GIF89a"))
		comm = frappe.get_doc("Communication", mail.extra["communication"])
		self.assertEqual(comm.read_by_recipient, 1)

	def test_unsubscribe_link_records_once_in_core_email_unsubscribe(self):
		from email_account_app import api
		from email_account_app.accounts import site_settings
		from email_account_app.engine.compose import unsubscribe_token

		reader = f"reader-{frappe.generate_hash(length=8)}@client.test"  # none the site has already
		token = unsubscribe_token(site_settings(), reader.title(), self.account.name)
		self.addCleanup(setattr, frappe.local, "request", getattr(frappe.local, "request", None))
		frappe.local.request = request("GET")
		api.unsubscribe(token)
		self.assertIn(f"Stop sending emails to {reader}", frappe.local.message)
		self.assertFalse(frappe.db.exists("Email Unsubscribe", {"email": reader}))

		frappe.local.request = request("POST")
		api.unsubscribe(token)
		self.assertIn("will not get these emails", frappe.local.message)
		api.unsubscribe(token)
		self.assertIn("already unsubscribed", frappe.local.message)
		self.assertEqual(frappe.db.count("Email Unsubscribe", {"email": reader}), 1)
		self.assertEqual(frappe.db.get_value("Email Unsubscribe", {"email": reader}, "global_unsubscribe"), 1)

		api.unsubscribe(token[:-3] + "abc")
		self.assertEqual(frappe.local.message_title, "Invalid link")

		# bulk mail leaves the address out from now on
		mail = self.queue(to=(reader, "other@client.test"), subject="News", text="x", bulk=True)
		self.assertEqual(mail.extra["skipped"], (reader,))
		recipients = [r.recipient for q in self.queued(mail) for r in q.recipients]
		self.assertEqual(recipients, ["other@client.test"])

	def test_unsubscribing_by_mail_records_it_and_creates_no_document(self):
		from email_account_app.accounts import site_settings
		from email_account_app.engine.compose import unsubscribe_token

		frappe.db.set_value("Email Account", self.account.name, "send_unsubscribe_message", 1)
		reader = f"reader-{frappe.generate_hash(length=8)}@client.test"
		token = unsubscribe_token(site_settings(), reader, self.account.name)
		self.dovecot.append(USER, make_mail(sender=reader, to=USER, subject=f"unsubscribe {token}", body=""))
		report = self.pull()
		self.assertEqual((report.skipped, report.created), (1, 0), report.as_dict())
		self.assertEqual(frappe.db.count("Email Unsubscribe", {"email": reader}), 1)
		skipped = frappe.db.get_value(
			"Email Message Log", {"sender": reader}, ["status", "reason"], as_dict=True
		)
		self.assertEqual(skipped.status, "Skipped")
		self.assertIn(f"{reader} asked to unsubscribe", skipped.reason)

	# -- unreplied notices -----------------------------------------------------------------------

	def test_unreplied_mail_raises_one_notice(self):
		from email_account_app.tasks import notify_unreplied

		self.account.reload()
		self.account.notify_if_unreplied = 1
		self.account.unreplied_for_mins = 30
		self.account.send_notification_to = "lead@example.com"
		self.account.save()
		# an aware time: a Date header means the same instant whatever the site's or machine's zone
		waited = datetime.now(timezone.utc) - timedelta(minutes=45)
		self.dovecot.append(
			USER, make_mail(subject="Anyone there?", date=waited, message_id="<wait@client.test>")
		)
		self.dovecot.append(
			USER, make_mail(subject="Out of office", date=waited, headers={"Auto-Submitted": "auto-replied"})
		)
		self.pull()
		notify_unreplied()
		notify_unreplied()  # once only
		self.flush()
		[notice] = [d for d in self.smtp.deliveries if "lead@example.com" in d.rcpt_tos]
		message = parse(notice.content)
		self.assertIn("Anyone there?", message["Subject"])
		self.assertEqual(message["Auto-Submitted"], "auto-generated")
		self.assertEqual(len(self.smtp.deliveries), 1)
