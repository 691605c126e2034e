"""Core's Email Account, read and checked by the engine.

``EmailAccountEngine`` is the app's behaviour as a mixin on top of the class the site would use
without the app (core's ``EmailAccount``, or another app's override such as Helpdesk's
``CustomEmailAccount``): hooks.py names ``EmailAccount`` (v15, ``override_doctype_class``; composed
per site by compose.py) or the mixin itself (v16, ``extend_doctype_class``).

What it replaces, and what it leaves to the class below it:
- ``receive()`` (what core's scheduler calls): the engine's pull through the Frappe store (every
  IMAP Folder row with its own append_to and import condition, or POP3), one pull per account at a
  time (tasks.pull_account holds a lock). Accounts the engine does not serve
  (``accounts.engine_serves``: v16 Frappe Mail) get the class below's ``receive()``.
- ``get_oauth_token()`` (core's code asks it for the Token Cache with a fresh access token): the
  engine's token source refreshes it (connected_app.py), so core's Connected App never refreshes
  behind the engine's back nor logs an error per failed refresh.
- validation: the class below's own checks run (core's required fields, IMAP folder, append_to,
  unreplied), its blocking network check does not; then the engine's checks (fields named by their
  labels), the domain or provider filling empty servers, and a connection check with a timeout
  that runs whenever the servers or credentials changed (also under tests, unlike core's); not for
  an OAuth account that is not authorised (again) yet, which its user authorises after saving. An
  account whose corrected settings connect gets a pull queued once saved.
- everything else (finding accounts, defaults, User Email inboxes, sending through core when the
  engine does not send, renaming) is the class below's.
"""

from __future__ import annotations

import frappe
from frappe import _
from frappe.model.document import Document
from frappe.utils import escape_html

from .compose import Composer, app_controls

CORE_PATH = "frappe.email.doctype.email_account.email_account.EmailAccount"

#: a change to any of these is a change of servers or credentials: the connection is checked again
CONNECTION_FIELDS = (
	"email_id",
	"login_id",
	"login_id_is_different",
	"awaiting_password",
	"enable_incoming",
	"enable_outgoing",
	"use_imap",
	"email_server",
	"incoming_port",
	"use_ssl",
	"use_starttls",
	"validate_ssl_certificate",
	"smtp_server",
	"smtp_port",
	"use_tls",
	"use_ssl_for_outgoing",
	"no_smtp_authentication",
	"domain",
	"service",
	"auth_method",
	"connected_app",
	"connected_user",
	"backend_app_flow",
)


class ConnectionCheckFailed(frappe.ValidationError):
	"""The account's server refused or did not answer when the account was saved."""


class EmailAccountEngine(Document):
	"""The app's behaviour for Email Account; every method ends in the class below's where that
	one should still run."""

	# -- receiving -------------------------------------------------------------------------------

	def receive(self):
		"""Core's scheduler (``pull_from_email_account``) and anything else that pulls come here."""
		from email_account_app.accounts import engine_serves

		if not engine_serves(self):
			return super().receive()
		from email_account_app.tasks import pull_account

		return pull_account(self.name, doc=self)

	# -- validation ------------------------------------------------------------------------------

	def validate(self):
		self.flags.email_account_app_in_core_validate = True
		try:
			super().validate()
		finally:
			self.flags.email_account_app_in_core_validate = False
		from email_account_app.accounts import engine_serves

		if engine_serves(self):
			self._validate_with_engine()

	def get_incoming_server(self, *args, **kwargs):
		if self.flags.email_account_app_in_core_validate:
			return None  # the engine checks the connection, with a timeout (validate)
		return super().get_incoming_server(*args, **kwargs)

	def validate_smtp_conn(self):
		if self.flags.email_account_app_in_core_validate:
			return None
		return super().validate_smtp_conn()

	def _validate_with_engine(self) -> None:
		from email_account_app.accounts import (
			account_settings,
			all_domains,
			throw_config_error,
		)
		from email_account_app.engine.errors import ConfigError

		domains = all_domains()
		try:
			settings = account_settings(self, domains=domains)
		except ConfigError as exc:
			throw_config_error(exc)
		self._fill_in_servers(settings, domains)
		if self._connection_check_due():
			self._check_connection(settings)

	def _fill_in_servers(self, settings, domains) -> None:
		"""Show on the form the servers the domain (or a well-known provider) gave the account."""
		from email_account_app.accounts import filled_in_fields

		for fieldname in filled_in_fields(self, domains):
			if not self.meta.has_field(fieldname):
				continue
			value = getattr(settings, fieldname)
			if isinstance(value, bool):
				value = int(value)
			elif fieldname in ("incoming_port", "smtp_port") and value is not None:
				value = str(value)
			self.set(fieldname, value)

	def _password_given(self) -> bool:
		value = self.get("password")
		return bool(value) and not self.is_dummy_password(value)

	def _connection_check_due(self) -> bool:
		if self.flags.ignore_connection_check or frappe.flags.in_install or frappe.flags.in_patch:
			return False
		if frappe.flags.in_migrate or self.awaiting_password:
			return False
		if frappe.flags.in_test and not self.flags.check_connection:
			# other apps' tests (and core's test records) save accounts with made-up servers; the
			# app's own tests ask for the check (tests/utils.make_account)
			return False
		if not (self.enable_incoming or self.enable_outgoing):
			return False
		from email_account_app.connected_app import blocked

		if blocked(self):
			return False  # authorised after saving (core's Authorize API Access), or again
		if self.is_new() or self._password_given():
			return True
		return any(self.has_value_changed(field) for field in CONNECTION_FIELDS if self.meta.has_field(field))

	def _check_connection(self, settings) -> None:
		"""Log in to the servers (timeout: the account's, at most the test's); a refusal is the
		form's error in the engine's words. Settings that connect reset core's failed-attempts count
		and, with incoming on, have a pull queued once saved."""
		from email_account_app.accounts import labelled
		from email_account_app.api import check

		result = check(settings)
		failed = [part for part in result["parts"] if not part["ok"]]
		if failed:
			lines = [
				f"{escape_html(_(part['label']))} ({escape_html(part['server'])}): {labelled(part['message'])}"
				for part in failed
			]
			frappe.throw(
				"<br>".join(lines),
				exc=ConnectionCheckFailed,
				title=_("Cannot connect"),
			)
		self.no_failed = 0
		if hasattr(self, "set_failed_attempts_count") and not self.is_new():
			self.set_failed_attempts_count(0)
		if self.enable_incoming:
			self.flags.email_account_app_pull_due = True

	def get_oauth_token(self):
		"""The Token Cache with a fresh access token, or None: through the engine's token source
		for the accounts the engine serves (core's own code asks this: its SMTP and IMAP set-up)."""
		from email_account_app.accounts import engine_serves
		from email_account_app.connected_app import fresh_token_cache, uses_oauth

		if not (uses_oauth(self) and engine_serves(self)):
			return super().get_oauth_token()
		return fresh_token_cache(self)

	def on_update(self):
		super().on_update()
		if self.flags.email_account_app_pull_due:
			from email_account_app.tasks import queue_pull

			queue_pull(self.name, after_commit=True)

	# -- sending ---------------------------------------------------------------------------------

	def append_email_to_sent_folder(self, message):
		"""Core's queue calls this once a message went out (append_emails_to_sent_folder): the
		engine's copy finds the Sent folder by its special use, or creates it."""
		from email_account_app.accounts import account_settings, engine_serves

		if not engine_serves(self):
			return super().append_email_to_sent_folder(message)
		from email_account_app.events import append_to_sent

		raw = message.encode("utf-8") if isinstance(message, str) else message
		append_to_sent(account_settings(self), raw)
		return None


def form_status(name: str | None = None) -> dict:
	"""What the form shows: whether the app's code runs for Email Account on this site (and which
	class runs instead), and the last pull."""
	controls, winner = app_controls("Email Account", EmailAccountEngine)
	return {"controls": controls, "controller": winner}


_composer = Composer(__name__, "EmailAccount", "Email Account", CORE_PATH, EmailAccountEngine)


def __getattr__(name: str):
	return _composer.resolve(name)


def composer() -> Composer:
	return _composer
