# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

import frappe
from frappe.model.document import Document


class EmailSyncUnsubscribe(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		account: DF.Link | None
		email: DF.Data
		reference_doctype: DF.Link | None
		reference_name: DF.DynamicLink | None
	# end: auto-generated types

	def validate(self):
		self.email = (self.email or "").strip().lower()


def on_doctype_update():
	frappe.db.add_index("Email Sync Unsubscribe", ["email"], "email_index")
