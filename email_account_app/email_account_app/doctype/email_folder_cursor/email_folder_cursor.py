# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

import frappe
from frappe.model.document import Document


class EmailFolderCursor(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		account: DF.Link
		folder: DF.Data
	# end: auto-generated types

	pass


def on_doctype_update():
	frappe.db.add_unique("Email Folder Cursor", ["account", "folder"], "unique_account_folder")
