# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

import frappe
from frappe.model.document import Document


class EmailSyncMessage(Document):
	# begin: auto-generated types
	# end: auto-generated types

	pass


def on_doctype_update():
	"""What makes a message the account already has recognisable, also under two pulls at once:
	one record per (account, Message-ID) and per (account, folder, UIDVALIDITY, UID)."""
	doctype = "Email Sync Message"
	frappe.db.add_unique(doctype, ["account", "message_key"], "unique_account_message")
	frappe.db.add_unique(
		doctype, ["account", "folder", "uidvalidity", "uid"], "unique_account_location"
	)
	frappe.db.add_index(doctype, ["account", "subject_key", "`date`"], "account_subject_date")
	frappe.db.add_index(doctype, ["account", "thread_token"], "account_thread_token")
	frappe.db.add_index(doctype, ["reference_doctype", "reference_name"], "reference")
