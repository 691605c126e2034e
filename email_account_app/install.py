"""Install and uninstall: what core's Email Account, IMAP Folder and Email Domain lack, as Custom
Fields, and leaving the site as core alone would have it.

Invariants:
- Each Custom Field has the engine's setting's name (``condition``, ``timeout``,
  ``validate_ssl_certificate``), so ``accounts.account_settings`` reads it like a core field. A field
  that core itself has on this Frappe version (v16 has ``validate_ssl_certificate``) is not added,
  and ours is removed on migrate once core's exists (no duplicate fieldname after an upgrade).
- Whole numbers are Int (a Float shows as "25,000" under some number formats).
- Uninstalling removes the Custom Fields and their columns, and nothing of core's: Communications
  (with core's uid / imap_folder kept current, so core's pull goes on without duplicates or gaps),
  IMAP Folder positions and the accounts themselves stay.
"""

from __future__ import annotations

import frappe
from frappe.custom.doctype.custom_field.custom_field import create_custom_fields

MODULE = "Email Account App"
APP = "email_account_app"

#: (a literal: the plain test tests/test_doctype_json.py reads it without Frappe)
CUSTOM_FIELDS = {
	"Email Account": [
		{
			"fieldname": "condition",
			"label": "Import Condition",
			"fieldtype": "Code",
			"options": "Python",
			"insert_after": "imap_folder",
			"depends_on": "enable_incoming",
			"description": "Import only mail for which this Python expression is true, e.g. "
			'"invoice" in doc.subject.lower() (doc: subject, sender, to, cc, text). Empty: import '
			"all. Each IMAP folder may have its own.",
		},
		{
			"fieldname": "validate_ssl_certificate",
			"label": "Validate SSL Certificate",
			"fieldtype": "Check",
			"default": "1",
			"insert_after": "use_starttls",
			"depends_on": "eval:doc.use_ssl || doc.use_starttls || doc.use_tls || doc.use_ssl_for_outgoing",
			"description": "Turn off only for a server with a self-signed certificate you trust.",
		},
		{
			"fieldname": "timeout",
			"label": "Timeout (seconds)",
			"fieldtype": "Int",
			"default": "30",
			"non_negative": 1,
			"insert_after": "attachment_limit",
			"description": "How long to wait for the mail server before giving up.",
		},
		{
			"fieldname": "email_account_app_section",
			"label": "Last Pull",
			"fieldtype": "Section Break",
			"insert_after": "brand_logo",
			"collapsible": 1,
			"depends_on": "last_pull",
		},
		{
			"fieldname": "last_pull",
			"label": "Last Pull",
			"fieldtype": "Datetime",
			"read_only": 1,
			"no_copy": 1,
			"insert_after": "email_account_app_section",
		},
		{
			"fieldname": "last_pull_summary",
			"label": "Last Pull Result",
			"fieldtype": "Small Text",
			"read_only": 1,
			"no_copy": 1,
			"insert_after": "last_pull",
		},
		{
			"fieldname": "last_error",
			"label": "Last Error",
			"fieldtype": "Small Text",
			"read_only": 1,
			"no_copy": 1,
			"insert_after": "last_pull_summary",
		},
		{
			"fieldname": "sign_in_needed_since",
			"label": "Sign-in Needed Since",
			"fieldtype": "Datetime",
			"read_only": 1,
			"no_copy": 1,
			"insert_after": "last_error",
			"depends_on": "sign_in_needed_since",
			"description": "The provider refused this OAuth account's sign-in for good: nothing is pulled "
			'until the Connected User authorises it again ("Authorize API Access").',
		},
	],
	"IMAP Folder": [
		{
			"fieldname": "condition",
			"label": "Import Condition",
			"fieldtype": "Code",
			"options": "Python",
			"insert_after": "append_to",
			"in_list_view": 1,
			"description": "Import only mail of this folder for which this Python expression is true; "
			"empty: the account's condition.",
		},
	],
	"Email Domain": [
		{
			"fieldname": "validate_ssl_certificate",
			"label": "Validate SSL Certificate",
			"fieldtype": "Check",
			"default": "1",
			"insert_after": "use_starttls",
		},
	],
}

#: custom fields of earlier versions of the app, removed on migrate
OLD_FIELDS = {"Communication": ("email_sync_account",)}


def _standard_fields(doctype: str) -> set[str]:
	"""The DocType's own fields (not Custom Fields)."""
	return set(frappe.get_all("DocField", filters={"parent": doctype}, pluck="fieldname"))


def custom_fields() -> dict[str, list[dict]]:
	"""CUSTOM_FIELDS without those the DocType already has on this Frappe version."""
	fields = {}
	for doctype, items in CUSTOM_FIELDS.items():
		standard = _standard_fields(doctype)
		fields[doctype] = [{**item, "module": MODULE} for item in items if item["fieldname"] not in standard]
	return fields


#: core's scheduled jobs the app's own replace: two would notify twice about the same mail
CORE_JOBS = ("frappe.email.doctype.email_account.email_account.notify_unreplied",)


def after_install() -> None:
	sync_custom_fields()
	stop_core_jobs(True)


def after_migrate() -> None:
	sync_custom_fields()
	stop_core_jobs(True)


def stop_core_jobs(stop: bool) -> None:
	"""Stop (or start again, on uninstall) core's jobs the app's replace: its unreplied notices
	(``tasks.notify_unreplied`` gives them, once, in the site's time zone)."""
	for method in CORE_JOBS:
		for name in frappe.get_all("Scheduled Job Type", filters={"method": method}, pluck="name"):
			frappe.db.set_value("Scheduled Job Type", name, "stopped", int(stop), update_modified=False)


def sync_custom_fields() -> None:
	for doctype, items in CUSTOM_FIELDS.items():
		standard = _standard_fields(doctype)
		for item in items:
			if item["fieldname"] in standard:  # core has it now (v16): ours goes, core's column stays
				_remove_custom_field(doctype, item["fieldname"], drop_column=False)
	for doctype, names in OLD_FIELDS.items():
		for fieldname in names:
			_remove_custom_field(doctype, fieldname)
	create_custom_fields(custom_fields(), ignore_validate=True)
	frappe.clear_cache(doctype="Email Account")


def _remove_custom_field(doctype: str, fieldname: str, *, drop_column: bool = True) -> None:
	for name in frappe.get_all("Custom Field", filters={"dt": doctype, "fieldname": fieldname}, pluck="name"):
		frappe.delete_doc("Custom Field", name, ignore_permissions=True, force=True)
	if not drop_column or fieldname in _standard_fields(doctype):
		return
	if frappe.db.has_column(doctype, fieldname):
		table = f"tab{doctype}"
		for index in frappe.db.sql(
			f"SHOW INDEX FROM `{table}` WHERE Column_name=%s", fieldname, as_dict=True
		):
			frappe.db.sql_ddl(f"ALTER TABLE `{table}` DROP INDEX `{index.Key_name}`")
		frappe.db.sql_ddl(f"ALTER TABLE `{table}` DROP COLUMN `{fieldname}`")
	frappe.cache.hdel("table_columns", f"tab{doctype}")  # Frappe's cache of a table's columns
	frappe.clear_cache(doctype=doctype)


def before_uninstall() -> None:
	"""Leave the site as core alone would have it: the Custom Fields and their columns go, the files
	kept for failed messages, the scheduled jobs. Communications, accounts and IMAP Folder positions
	stay (core's pull goes on from them)."""
	remove_custom_fields()
	our_doctypes = frappe.get_all("DocType", filters={"module": MODULE}, pluck="name")
	for name in frappe.get_all("File", filters={"attached_to_doctype": ("in", our_doctypes)}, pluck="name"):
		frappe.delete_doc("File", name, ignore_permissions=True, force=True)
	for name in frappe.get_all("Scheduled Job Type", filters={"method": ("like", f"{APP}.%")}, pluck="name"):
		frappe.delete_doc("Scheduled Job Type", name, ignore_permissions=True, force=True)
	stop_core_jobs(False)
	frappe.clear_cache()


def remove_custom_fields() -> None:
	"""The app's Custom Fields and their columns (never a field core itself has)."""
	for doctype, items in CUSTOM_FIELDS.items():
		for item in items:
			if frappe.db.exists(
				"Custom Field", {"dt": doctype, "fieldname": item["fieldname"], "module": MODULE}
			):
				_remove_custom_field(doctype, item["fieldname"])
	for doctype, names in OLD_FIELDS.items():
		for fieldname in names:
			_remove_custom_field(doctype, fieldname)
