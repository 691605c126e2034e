# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

import frappe
from frappe import _
from frappe.model.document import Document


class EmailSyncOutbox(Document):
	# begin: auto-generated types
	# end: auto-generated types

	@frappe.whitelist()
	def retry(self):
		"""Send a Failed or Partly Sent message again, to the recipients it did not reach."""
		frappe.has_permission(self.doctype, "write", doc=self, throw=True)
		if self.status not in ("Failed", "Partly Sent"):
			frappe.throw(_("Only a Failed or Partly Sent message can be sent again."))
		for row in self.recipients:
			if row.status == "Failed":
				row.db_set({"status": "Pending", "code": None, "server_text": None})
		self.db_set({"status": "Queued", "retries": 0, "next_try": None, "error": None})
		from email_account_app.tasks import queue_flush

		queue_flush(self.account, after_commit=True)


def on_doctype_update():
	frappe.db.add_index("Email Sync Outbox", ["status", "account", "next_try"], "status_account_next_try")
