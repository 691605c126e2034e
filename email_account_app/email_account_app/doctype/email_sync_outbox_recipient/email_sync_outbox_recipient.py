# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

from frappe.model.document import Document


class EmailSyncOutboxRecipient(Document):
	# begin: auto-generated types
	# end: auto-generated types

	pass
