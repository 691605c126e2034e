# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

import frappe
from frappe import _
from frappe.model.document import Document

from email_account_app.accounts import (
	ACCOUNT_DOCTYPE,
	account_settings,
	all_domains,
	filled_in_fields,
	throw_config_error,
)
from email_account_app.engine.errors import ConfigError

#: at most one account of the site may have each of these (core Email Account's rule)
ONE_PER_SITE = ("default_incoming", "default_outgoing", "enable_automatic_linking")


class EmailSyncAccount(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		from email_account_app.email_account_app.doctype.email_sync_folder.email_sync_folder import (
			EmailSyncFolder,
		)

		add_signature: DF.Check
		always_use_account_email_id_as_sender: DF.Check
		always_use_account_name_as_sender_name: DF.Check
		append_emails_to_sent_folder: DF.Check
		append_to: DF.Link | None
		ascii_encode_password: DF.Check
		attachment_limit: DF.Float
		auto_reply_message: DF.TextEditor | None
		awaiting_password: DF.Check
		ca_file: DF.Data | None
		condition: DF.Code | None
		create_contact: DF.Check
		default_incoming: DF.Check
		default_outgoing: DF.Check
		domain: DF.Link | None
		email_account_name: DF.Data | None
		email_id: DF.Data
		email_server: DF.Data | None
		email_sync_option: DF.Literal["UNSEEN", "ALL"]
		enable_auto_reply: DF.Check
		enable_automatic_linking: DF.Check
		enable_incoming: DF.Check
		enable_outgoing: DF.Check
		failed_count: DF.Int
		imap_folder: DF.Table[EmailSyncFolder]
		incoming_port: DF.Data | None
		initial_sync_count: DF.Int
		last_error: DF.SmallText | None
		last_pull: DF.Datetime | None
		last_pull_summary: DF.SmallText | None
		login_id: DF.Data | None
		login_id_is_different: DF.Check
		no_smtp_authentication: DF.Check
		notify_if_unreplied: DF.Check
		password: DF.Password | None
		pull_timeout: DF.Float
		received_count: DF.Int
		send_notification_to: DF.SmallText | None
		send_unsubscribe_message: DF.Check
		sent_count: DF.Int
		sent_folder_name: DF.Data | None
		signature: DF.TextEditor | None
		skipped_count: DF.Int
		smtp_port: DF.Data | None
		smtp_server: DF.Data | None
		timeout: DF.Float
		track_email_status: DF.Check
		unreplied_for_mins: DF.Int
		use_imap: DF.Check
		use_ssl: DF.Check
		use_ssl_for_outgoing: DF.Check
		use_starttls: DF.Check
		use_tls: DF.Check
		validate_ssl_certificate: DF.Check
	# end: auto-generated types

	def autoname(self):
		self.email_id = (self.email_id or "").strip()
		self.email_account_name = (self.email_account_name or "").strip() or self.email_id
		self.name = self.email_account_name

	def validate(self):
		self.email_id = (self.email_id or "").strip()
		if not self.email_account_name:
			self.email_account_name = self.name
		if not self.login_id_is_different:
			self.login_id = None
		if self.awaiting_password and self.is_password_given():
			self.awaiting_password = 0
		domains = all_domains()
		try:
			settings = account_settings(self, domains=domains)
		except ConfigError as exc:
			throw_config_error(exc)
		self.fill_in_servers(settings, domains)
		self.check_append_to()

	def on_update(self):
		self.unset_others()
		if self.is_ready_to_pull() and self.started_to_pull():
			from email_account_app.tasks import queue_pull

			queue_pull(self.name, after_commit=True)

	# -- helpers -----------------------------------------------------------------------------

	def is_password_given(self) -> bool:
		value = self.get("password")
		return bool(value) and not self.is_dummy_password(value)

	def fill_in_servers(self, settings, domains) -> None:
		"""Show on the form the servers the domain (or a well-known provider) gave the account."""
		for fieldname in filled_in_fields(self, domains):
			value = getattr(settings, fieldname)
			if isinstance(value, bool):
				value = int(value)
			elif fieldname in ("incoming_port", "smtp_port") and value is not None:
				value = str(value)
			self.set(fieldname, value)

	def check_append_to(self) -> None:
		from email_account_app.frappe_store import appendable_doctypes

		allowed = set(appendable_doctypes())
		wanted = [self.append_to] + [row.append_to for row in self.imap_folder]
		for doctype in filter(None, wanted):
			if doctype not in allowed:
				frappe.throw(
					_(
						"Mail cannot be appended to {0}: turn on Email Append To in its settings (Customize Form), with its Subject Field and Sender Field."
					).format(frappe.bold(doctype)),
					title=_("Append To"),
				)

	def unset_others(self) -> None:
		"""One default incoming, one default outgoing and one automatic-linking account per site:
		this one takes the flag from any other."""
		for fieldname in ONE_PER_SITE:
			if self.get(fieldname):
				for other in frappe.get_all(
					ACCOUNT_DOCTYPE, filters={fieldname: 1, "name": ("!=", self.name)}, pluck="name"
				):
					frappe.db.set_value(ACCOUNT_DOCTYPE, other, fieldname, 0)

	def is_ready_to_pull(self) -> bool:
		return bool(self.enable_incoming and not self.awaiting_password)

	def started_to_pull(self) -> bool:
		"""Incoming was just enabled, or its password just given: the first pull is due."""
		return self.has_value_changed("enable_incoming") or self.has_value_changed("awaiting_password")
