# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

import frappe
from frappe.model.document import Document


class EmailSyncAutoReply(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		account: DF.Link
		sender: DF.Data | None
		sent_on: DF.Datetime | None
		thread_hash: DF.Data | None
		thread_key: DF.SmallText | None
	# end: auto-generated types

	pass


def on_doctype_update():
	frappe.db.add_unique("Email Sync Auto Reply", ["account", "thread_hash"], "unique_account_thread")
	frappe.db.add_index("Email Sync Auto Reply", ["account", "sender", "sent_on"], "account_sender_sent_on")
