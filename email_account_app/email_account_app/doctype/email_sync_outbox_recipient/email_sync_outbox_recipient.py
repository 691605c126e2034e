# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

from frappe.model.document import Document


class EmailSyncOutboxRecipient(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		code: DF.Int
		email: DF.Data
		parent: DF.Data
		parentfield: DF.Data
		parenttype: DF.Data
		raw: DF.LongText | None
		server_text: DF.SmallText | None
		status: DF.Literal["Pending", "Sent", "Failed"]
	# end: auto-generated types

	pass
