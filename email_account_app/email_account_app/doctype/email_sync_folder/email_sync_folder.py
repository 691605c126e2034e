# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

from frappe.model.document import Document


class EmailSyncFolder(Document):
	# begin: auto-generated types
	# end: auto-generated types

	pass
