# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

import frappe
from frappe.model.document import Document


class EmailMessageLog(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		account: DF.Link
		communication: DF.Link | None
		date: DF.Datetime | None
		error: DF.LongText | None
		folder: DF.Data | None
		message_id: DF.SmallText | None
		message_key: DF.Data | None
		participants: DF.SmallText | None
		raw_file: DF.Attach | None
		reason: DF.SmallText | None
		reference_doctype: DF.Link | None
		reference_name: DF.DynamicLink | None
		rule: DF.Data | None
		sender: DF.Data | None
		status: DF.Literal["Received", "Sent", "Skipped", "Failed", "Ignored"]
		subject: DF.SmallText | None
		subject_key: DF.Data | None
		thread_token: DF.Data | None
		uid: DF.Data | None
	# end: auto-generated types

	pass


def on_doctype_update():
	"""What makes a message the account already has recognisable, also under two pulls at once:
	one record per (account, Message-ID) and per (account, folder, UIDVALIDITY, UID)."""
	doctype = "Email Message Log"
	frappe.db.add_unique(doctype, ["account", "message_key"], "unique_account_message")
	frappe.db.add_unique(doctype, ["account", "folder", "uidvalidity", "uid"], "unique_account_location")
	frappe.db.add_index(doctype, ["account", "subject_key", "`date`"], "account_subject_date")
	frappe.db.add_index(doctype, ["account", "thread_token"], "account_thread_token")
	# replies thread onto mail any account sent
	frappe.db.add_index(doctype, ["message_key"], "message_key")
	frappe.db.add_index(doctype, ["thread_token"], "thread_token")
	frappe.db.add_index(doctype, ["reference_doctype", "reference_name"], "reference")
