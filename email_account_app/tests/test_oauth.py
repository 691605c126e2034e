"""Core's Email Account with auth_method "OAuth", read and sent by the engine with its Connected App's
token: a real Dovecot (oauth2 passdb) and aiosmtpd (XOAUTH2 only) that check every token with the
repository's test OAuth server (tests/oauth_server.py), all started here on loopback.

The Connected App points at the test server (its Token URI and Authorization URI); the Token Cache
of the connected user holds what the server's token endpoint answers at the end of a sign-in, as
core's authorise flow (the Connected App's callback) leaves it.
"""

from __future__ import annotations

import email
import email.policy
import socket
from unittest.mock import patch

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
	repo_test_module,
	start_dovecot,
	start_smtp,
)

USER = "alice@example.com"  # the mailbox, and whom the OAuth server's grants are for
CONNECTED_USER = "oauth-owner@example.com"  # the site's user who authorised the account
ACCOUNT = "Alice OAuth"


def dead_url() -> str:
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		return f"http://127.0.0.1:{s.getsockname()[1]}"


@needs_frappe
class TestOAuthAccount(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		oauth_server = repo_test_module("oauth_server")
		cls.server_module = oauth_server
		cls.oauth = oauth_server.OAuthServer()
		cls.addClassCleanup(cls.oauth.stop)
		cls.dovecot = start_dovecot(oauth_url=cls.oauth.url, mechanisms="plain login xoauth2 oauthbearer")
		cls.addClassCleanup(cls.dovecot.cleanup)
		cls.smtp = start_smtp("xoauth2", oauth_url=cls.oauth.url)
		cls.addClassCleanup(cls.smtp.stop)
		create_test_doctype()
		cls.addClassCleanup(drop_test_doctype)
		no_pulls_queued(cls)
		super().setUpClass()

	def setUp(self):
		frappe.local.outgoing_email_account = {}
		self.started = frappe.utils.now_datetime()
		self.oauth.reset()
		self.smtp.reset()
		self.dovecot.reset(USER)
		self.addCleanup(self.cleanup)
		if not frappe.db.exists("User", CONNECTED_USER):
			frappe.get_doc(
				{"doctype": "User", "email": CONNECTED_USER, "first_name": "Owner", "send_welcome_email": 0}
			).insert(ignore_permissions=True)
		self.app = self.connected_app()

	def cleanup(self):
		purge(ACCOUNT, self.started)
		for app in frappe.get_all("Connected App", filters={"provider_name": "Test OAuth"}, pluck="name"):
			frappe.db.delete("Token Cache", {"connected_app": app})
			frappe.db.delete("OAuth Scope", {"parent": app})
			frappe.db.delete("Connected App", {"name": app})
		frappe.db.delete("Notification Log", {"for_user": CONNECTED_USER})
		frappe.db.delete("Error Log", {"reference_doctype": "Email Account", "reference_name": ACCOUNT})
		frappe.db.delete("User", {"name": CONNECTED_USER})
		frappe.db.commit()

	# -- the site's side -------------------------------------------------------------------------

	def connected_app(self, **values):
		data = {
			"doctype": "Connected App",
			"provider_name": "Test OAuth",
			"client_id": self.server_module.CLIENT_ID,
			"token_uri": f"{self.oauth.url}/token",
			"authorization_uri": f"{self.oauth.url}/authorize",
			"scopes": [{"scope": scope} for scope in self.server_module.SCOPES],
			**values,
		}
		return frappe.get_doc(data).insert(ignore_permissions=True)

	def authorise(self, user: str = CONNECTED_USER):
		"""What core's authorise flow leaves: the Token Cache of the app and user, filled with the
		token endpoint's answer (``update_data``, which commits)."""
		cache = self.app.get_token_cache(user)
		if cache is None:
			cache = frappe.new_doc("Token Cache")
			cache.connected_app = self.app.name
			cache.user = user
		return cache.update_data(self.oauth.sign_in(USER))

	def token_cache(self, user: str = CONNECTED_USER):
		return frappe.get_doc("Connected App", self.app.name).get_token_cache(user)

	def make_oauth_account(self, **overrides):
		data = dovecot_settings(self.dovecot, USER, email_sync_option="ALL", append_to=TEST_DOCTYPE)
		data.pop("password", None)
		smtp = self.smtp.account(USER)
		smtp["smtp_port"] = str(smtp["smtp_port"])
		data.update({k: v for k, v in smtp.items() if k not in ("email_id", "ca_file", "timeout")})
		data.update(
			auth_method="OAuth",
			connected_app=self.app.name,
			connected_user=CONNECTED_USER,
			validate_ssl_certificate=0,  # the SMTP server's STARTTLS certificate is the test's own
			default_outgoing=1,
		)
		data.update(overrides)
		return make_account(ACCOUNT, **data)

	def flush(self):
		flush_queue(self.started)

	def queue_mail(self, subject: str):
		frappe.local.outgoing_email_account = {}
		frappe.sendmail(recipients=["customer@client.test"], subject=subject, message="<p>Hello</p>")
		frappe.local.outgoing_email_account = {}

	def token_requests(self) -> int:
		return self.oauth.requests.count("/token")

	def notifications(self) -> list:
		return frappe.get_all(
			"Notification Log",
			filters={"for_user": CONNECTED_USER, "document_name": ACCOUNT},
			fields=["subject", "email_content", "document_type"],
		)

	def error_logs(self) -> list:
		return frappe.get_all(
			"Error Log",
			filters={"reference_doctype": "Email Account", "reference_name": ACCOUNT},
			fields=["method", "error"],
		)

	def assert_no_token_anywhere(self):
		"""No token the OAuth server issued is in an Error Log, a log of the run, a Communication,
		the account's fields, a Notification Log or an Email Queue entry."""
		tokens = self.oauth.issued_tokens()
		self.assertTrue(tokens)
		texts = []
		for row in frappe.get_all("Error Log", filters={"creation": (">=", self.started)}, fields=["*"]):
			texts.append(frappe.as_json(row))
		for row in frappe.get_all("Communication", filters={"email_account": ACCOUNT}, fields=["*"]):
			texts.append(frappe.as_json(row))
		for row in frappe.get_all("Notification Log", filters={"for_user": CONNECTED_USER}, fields=["*"]):
			texts.append(frappe.as_json(row))
		for row in frappe.get_all("Email Queue", filters={"creation": (">=", self.started)}, fields=["*"]):
			texts.append(frappe.as_json(row))
		texts.append(frappe.as_json(frappe.db.get_value("Email Account", ACCOUNT, "*", as_dict=True)))
		texts.append(self.dovecot.log())
		text = "\n".join(texts)
		for token in tokens:
			self.assertNotIn(token, text)

	# -- reading ---------------------------------------------------------------------------------

	def test_a_pull_signs_in_with_the_token_cache_and_reads_every_message(self):
		from email_account_app.accounts import enabled_account_names

		self.authorise()
		account = self.make_oauth_account()  # saving checks the connection: IMAP and SMTP, by token
		self.assertIn(ACCOUNT, enabled_account_names(incoming=True))
		for n in range(3):
			self.dovecot.append(USER, make_mail(subject=f"OAuth {n}"))
		requests = self.token_requests()
		with patch("frappe.email.doctype.email_account.email_account.EmailAccount.receive") as core_receive:
			report = frappe.get_doc("Email Account", ACCOUNT).receive()
		core_receive.assert_not_called()  # the engine's pull, not core's
		self.assertEqual((report.fetched, report.created, report.error), (3, 3, None))
		self.assertEqual(
			sorted(frappe.get_all("Communication", filters={"email_account": ACCOUNT}, pluck="subject")),
			["OAuth 0", "OAuth 1", "OAuth 2"],
		)
		self.assertEqual(self.token_requests(), requests)  # the Token Cache's token was fresh: no refresh
		account.reload()
		self.assertIsNone(account.last_error)
		self.assertIsNone(account.sign_in_needed_since)

	def test_site_mail_goes_out_through_xoauth2_with_a_copy_in_the_sent_folder(self):
		self.authorise()
		self.make_oauth_account(append_emails_to_sent_folder=1)
		self.queue_mail("Sent with a token")
		self.flush()
		[delivery] = self.smtp.deliveries
		self.assertEqual(delivery.rcpt_tos, ("customer@client.test",))
		message = email.message_from_bytes(delivery.content, policy=email.policy.default)
		self.assertEqual(message["Subject"], "Sent with a token")
		self.assertEqual(self.smtp.handler.mechanisms_used, ["XOAUTH2"])
		queue = frappe.get_last_doc("Email Queue", filters={"creation": (">=", self.started)})
		self.assertEqual((queue.status, queue.email_account), ("Sent", ACCOUNT))
		sent = next(name for name in self.dovecot.folders(USER) if "sent" in name.lower())
		self.assertEqual(len(self.dovecot.messages(USER, sent)), 1)
		self.assert_no_token_anywhere()

	def test_an_expired_token_is_refreshed_and_the_rotated_refresh_token_kept_in_token_cache(self):
		self.authorise()
		self.make_oauth_account()
		first = self.token_cache()
		old_refresh = first.get_password("refresh_token")
		old_access = first.get_password("access_token")
		self.oauth.expire_access_tokens()  # the Token Cache says fresh; the servers disagree
		self.dovecot.append(USER, make_mail(subject="After expiry"))
		with self.assertLogs("email_account_app", level="DEBUG") as logs:
			report = frappe.get_doc("Email Account", ACCOUNT).receive()
		self.assertEqual((report.fetched, report.error), (1, None))
		self.assertIn("refreshed the access token", "\n".join(logs.output))
		for token in self.oauth.issued_tokens():
			self.assertNotIn(token, "\n".join(logs.output))
		cache = self.token_cache()
		new_refresh = cache.get_password("refresh_token")
		self.assertNotEqual(new_refresh, old_refresh)
		self.assertNotEqual(cache.get_password("access_token"), old_access)
		# the new access token was used (Dovecot asked about it): only the kept refresh token works now
		self.assertEqual(self.oauth.live_refresh_tokens(), {new_refresh})
		self.assertEqual(cache.expires_in, int(self.oauth.access_lifetime))
		# and core's own code sees the same fresh token
		self.assertEqual(frappe.get_doc("Email Account", ACCOUNT).get_oauth_token().name, cache.name)
		self.assertEqual(self.error_logs(), [])

	def test_a_token_that_expires_in_the_middle_of_a_pull(self):
		from email_account_app.tasks import pull_account

		self.authorise()
		self.dovecot.create_folder(USER, "Jobs")
		self.make_oauth_account(imap_folder=[{"folder_name": "INBOX"}, {"folder_name": "Jobs"}])
		for n in range(3):
			self.dovecot.append(USER, make_mail(subject=f"Inbox {n}"))
		for n in range(2):
			self.dovecot.append(USER, make_mail(subject=f"Jobs {n}"), folder="Jobs")
		expired = []

		def progress(folder, done, total):
			if done and not expired:
				self.oauth.expire_access_tokens()
				expired.append(folder)

		report = pull_account(ACCOUNT, progress=progress)
		self.assertTrue(expired)
		self.assertEqual((report.fetched, report.stored, report.error), (5, 5, None))
		self.dovecot.append(USER, make_mail(subject="Next pull"))
		again = frappe.get_doc("Email Account", ACCOUNT).receive()  # a new session: a new token
		self.assertEqual((again.fetched, again.stored, again.error), (1, 1, None))
		self.assertEqual(frappe.db.count("Communication", {"email_account": ACCOUNT}), 6)

	# -- a sign-in refused for good --------------------------------------------------------------

	def test_a_revoked_grant_is_told_once_and_stops_pulls_until_authorised_again(self):
		self.authorise()
		self.make_oauth_account()
		self.oauth.revoke_user(USER)
		self.oauth.expire_access_tokens()
		self.dovecot.append(USER, make_mail(subject="Waiting"))

		with self.assertLogs("email_account_app", level="DEBUG") as logs:
			report = frappe.get_doc("Email Account", ACCOUNT).receive()
		self.assertEqual((report.fetched, report.error_title), (0, "Sign-in needed"))
		self.assertIn("invalid_grant", "\n".join(logs.output))
		for token in self.oauth.issued_tokens():
			self.assertNotIn(token, "\n".join(logs.output))
		account = frappe.get_doc("Email Account", ACCOUNT)
		self.assertIn("Authorize API Access", account.last_error)
		self.assertIn("invalid_grant", account.last_error)
		self.assertIsNotNone(account.sign_in_needed_since)
		[notice] = self.notifications()
		self.assertIn("authorise", notice.subject.lower())
		self.assertIn("/app/email-account/", notice.email_content)
		self.assertEqual(len(self.error_logs()), 1)

		# the next runs ask nobody: no token request, no second Error Log or notification
		requests = self.token_requests()
		self.assertIsNone(frappe.get_doc("Email Account", ACCOUNT).receive())
		self.assertIsNone(frappe.get_doc("Email Account", ACCOUNT).receive())
		self.queue_mail("While signed out")
		self.flush()
		self.assertEqual(self.smtp.deliveries, [])
		queue = frappe.get_last_doc("Email Queue", filters={"creation": (">=", self.started)})
		self.assertEqual(queue.status, "Not Sent")  # core's queue tries again later
		self.assertIn("Authorize API Access", queue.error)
		self.assertEqual(self.token_requests(), requests)
		self.assertEqual(len(self.error_logs()), 1)
		self.assertEqual(len(self.notifications()), 1)
		self.assert_no_token_anywhere()

		# the connected user authorises again: the next pull reads, and the form is clear again
		self.authorise()
		report = frappe.get_doc("Email Account", ACCOUNT).receive()
		self.assertEqual((report.fetched, report.error), (1, None))
		account.reload()
		self.assertIsNone(account.sign_in_needed_since)
		self.assertIsNone(account.last_error)
		self.flush()
		self.assertEqual([d.rcpt_tos for d in self.smtp.deliveries], [("customer@client.test",)])

	def test_an_unreachable_token_endpoint_is_tried_again_at_the_next_pull(self):
		self.authorise()
		self.make_oauth_account()
		frappe.db.set_value("Connected App", self.app.name, "token_uri", f"{dead_url()}/token")
		self.oauth.expire_access_tokens()
		self.dovecot.append(USER, make_mail(subject="Later"))
		report = frappe.get_doc("Email Account", ACCOUNT).receive()
		self.assertEqual((report.fetched, report.error_title), (0, "Sign-in service unreachable"))
		account = frappe.get_doc("Email Account", ACCOUNT)
		self.assertIn("did not answer", account.last_error)
		self.assertIsNone(account.sign_in_needed_since)  # not for good
		self.assertEqual(self.notifications(), [])
		frappe.db.set_value("Connected App", self.app.name, "token_uri", f"{self.oauth.url}/token")
		report = frappe.get_doc("Email Account", ACCOUNT).receive()
		self.assertEqual((report.fetched, report.error), (1, None))
		self.assert_no_token_anywhere()

	def test_an_account_not_authorised_yet_is_saved_and_left_alone(self):
		account = self.make_oauth_account()  # no Token Cache: no connection check on save
		self.dovecot.append(USER, make_mail(subject="Not yet"))
		self.assertIsNone(account.receive())
		self.assertEqual(self.token_requests(), 0)
		self.assertEqual((self.notifications(), self.error_logs()), ([], []))
		self.authorise()
		report = frappe.get_doc("Email Account", ACCOUNT).receive()
		self.assertEqual((report.fetched, report.error), (1, None))

	# -- app-only access -------------------------------------------------------------------------

	def test_backend_app_flow_signs_in_with_client_credentials(self):
		module = self.server_module
		self.app = self.connected_app(client_id=module.APP_CLIENT, client_secret=module.APP_SECRET)
		self.oauth.app_user = USER
		self.make_oauth_account(backend_app_flow=1, connected_user=None)
		self.dovecot.append(USER, make_mail(subject="App only"))
		report = frappe.get_doc("Email Account", ACCOUNT).receive()
		self.assertEqual((report.fetched, report.error), (1, None))
		cache = self.token_cache("")  # the app's own Token Cache, as core's get_backend_app_token
		self.assertTrue(cache.get_password("access_token"))
		requests = self.token_requests()
		self.queue_mail("App-only mail")
		self.flush()
		self.assertEqual(len(self.smtp.deliveries), 1)
		self.assertEqual(self.token_requests(), requests)  # the kept token was still fresh
		self.assert_no_token_anywhere()
