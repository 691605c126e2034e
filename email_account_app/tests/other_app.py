"""A second app's override of Email Account, as frappe/helpdesk has one (``CustomEmailAccount``):
registered in the tests with ``patch_hooks`` to check that the app composes with it."""

from frappe.email.doctype.email_account.email_account import EmailAccount


class OtherEmailAccount(EmailAccount):
	def other_app_marker(self) -> str:
		return "the other app's code still runs"
