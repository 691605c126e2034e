# Copyright (c) 2026, email_account_app developers
# License: MIT. See license.txt

import frappe
from frappe import _
from frappe.model.document import Document


class EmailSyncOutbox(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		from email_account_app.email_account_app.doctype.email_sync_outbox_recipient.email_sync_outbox_recipient import (
			EmailSyncOutboxRecipient,
		)

		account: DF.Link
		claimed_at: DF.Datetime | None
		communication: DF.Link | None
		envelope_from: DF.Data | None
		error: DF.LongText | None
		message_id: DF.SmallText | None
		next_try: DF.Datetime | None
		raw: DF.LongText | None
		recipients: DF.Table[EmailSyncOutboxRecipient]
		reference_doctype: DF.Link | None
		reference_name: DF.DynamicLink | None
		retries: DF.Int
		sent_copy: DF.Check
		skipped: DF.SmallText | None
		status: DF.Literal["Queued", "Sending", "Sent", "Partly Sent", "Failed"]
		subject: DF.SmallText | None
		thread_token: DF.Data | None
	# end: auto-generated types

	@frappe.whitelist()
	def retry(self):
		"""Send a Failed or Partly Sent message again, to the recipients it did not reach."""
		frappe.has_permission(self.doctype, "write", doc=self, throw=True)
		if self.status not in ("Failed", "Partly Sent"):
			frappe.throw(_("Only a Failed or Partly Sent message can be sent again."))
		for row in self.recipients:
			if row.status == "Failed":
				row.db_set({"status": "Pending", "code": 0, "server_text": None})
		self.db_set({"status": "Queued", "retries": 0, "next_try": None, "error": None})
		from email_account_app.tasks import queue_flush

		queue_flush(self.account, after_commit=True)


def on_doctype_update():
	frappe.db.add_index("Email Sync Outbox", ["status", "account", "next_try"], "status_account_next_try")
