# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

import frappe
from frappe import _
from frappe.model.document import Document

from email_account_app.accounts import ACCOUNT_DOCTYPE, domain_settings, throw_config_error
from email_account_app.engine.errors import ConfigError


class EmailSyncDomain(Document):
	# begin: auto-generated types
	# end: auto-generated types

	def validate(self):
		self.domain_name = (self.domain_name or "").strip().lower().lstrip("@")
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
					_("Email Sync Account {0} cannot take these settings: {1}").format(frappe.bold(name), exc),
					title=_("Email Sync Domain"),
				)
