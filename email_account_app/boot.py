"""boot_session: what the desk needs to know at login."""

from __future__ import annotations

import frappe


def boot_session(bootinfo) -> None:
	"""The user's Email Sync Accounts awaiting a password (public/js asks for it after login)."""
	if frappe.session.user == "Guest":
		return
	from .api import awaiting_accounts

	bootinfo.email_sync_awaiting_password = [
		{"name": row.name, "email_id": row.email_id} for row in awaiting_accounts(frappe.session.user)
	]
