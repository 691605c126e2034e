# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

import frappe
from frappe import _
from frappe.model.document import Document

from email_account_app.accounts import ACCOUNT_DOCTYPE, domain_settings, throw_config_error
from email_account_app.engine.errors import ConfigError


class EmailSyncDomain(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		append_emails_to_sent_folder: DF.Check
		attachment_limit: DF.Float
		domain_name: DF.Data
		email_server: DF.Data | None
		incoming_port: DF.Data | None
		sent_folder_name: DF.Data | None
		smtp_port: DF.Data | None
		smtp_server: DF.Data | None
		use_imap: DF.Check
		use_ssl: DF.Check
		use_ssl_for_outgoing: DF.Check
		use_starttls: DF.Check
		use_tls: DF.Check
		validate_ssl_certificate: DF.Check
	# end: auto-generated types

	def autoname(self):
		self.domain_name = _clean(self.domain_name)
		self.name = self.domain_name

	def validate(self):
		self.domain_name = _clean(self.domain_name)
		try:
			domain_settings(self)
		except ConfigError as exc:
			throw_config_error(exc)

	def on_update(self):
		"""The accounts that name this domain take its servers (as core's Email Domain does)."""
		for name in frappe.get_all(ACCOUNT_DOCTYPE, filters={"domain": self.name}, pluck="name"):
			account = frappe.get_doc(ACCOUNT_DOCTYPE, name)
			try:
				account.save()
			except frappe.ValidationError as exc:
				frappe.throw(
					_("Email Sync Account {0} cannot take these settings: {1}").format(
						frappe.bold(name), exc
					),
					title=_("Email Sync Domain"),
				)


def _clean(domain_name: str | None) -> str:
	return (domain_name or "").strip().lower().lstrip("@")
