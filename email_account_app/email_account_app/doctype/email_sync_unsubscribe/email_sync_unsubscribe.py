# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

import frappe
from frappe.model.document import Document


class EmailSyncUnsubscribe(Document):
	# begin: auto-generated types
	# end: auto-generated types

	def validate(self):
		self.email = (self.email or "").strip().lower()


def on_doctype_update():
	frappe.db.add_index("Email Sync Unsubscribe", ["email"], "email_index")
