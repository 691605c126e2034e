"""Install and uninstall: the custom field on Communication, the provider presets, the templates."""

from __future__ import annotations

import frappe
from frappe.custom.doctype.custom_field.custom_field import create_custom_fields

from .engine.presets import presets

MODULE = "Email Account App"
APP = "email_account_app"

CUSTOM_FIELDS = {
	"Communication": [
		{
			"fieldname": "email_sync_account",
			"label": "Email Sync Account",
			"fieldtype": "Link",
			"options": "Email Sync Account",
			"insert_after": "email_account",
			"read_only": 1,
			"search_index": 1,
			"module": MODULE,
		}
	]
}

#: the fields of a provider preset that are Email Sync Domain fields
PRESET_FIELDS = (
	"email_server",
	"use_imap",
	"use_ssl",
	"use_starttls",
	"incoming_port",
	"smtp_server",
	"smtp_port",
	"use_tls",
	"use_ssl_for_outgoing",
	"sent_folder_name",
)

#: accounts ready to fill in, disabled until someone does (core's and ERPNext's usual ones); one
#: that appends to a DocType is made only when the site has that DocType (ERPNext, HRMS)
ACCOUNT_TEMPLATES = (
	{"email_account_name": "Notifications", "email_id": "notifications@example.com", "default_outgoing": 1},
	{"email_account_name": "Replies", "email_id": "replies@example.com", "default_incoming": 1},
	{"email_account_name": "Support", "email_id": "support@example.com", "append_to": "Issue"},
	{"email_account_name": "Jobs", "email_id": "jobs@example.com", "append_to": "Job Applicant"},
	{"email_account_name": "Sales", "email_id": "sales@example.com", "append_to": "Opportunity"},
)


def after_install() -> None:
	create_custom_fields(CUSTOM_FIELDS, ignore_validate=True)
	create_domain_presets()
	create_account_templates()


def after_migrate() -> None:
	create_custom_fields(CUSTOM_FIELDS, ignore_validate=True)


def after_app_install(app_name: str) -> None:
	"""ERPNext or HRMS installed after this app: the templates for their DocTypes."""
	if app_name != APP:
		create_account_templates()


def domain_preset_records() -> list[dict]:
	"""An Email Sync Domain record for every domain of every well-known provider (from the
	engine's data/domain_presets.toml, the one list the CLI uses too)."""
	records = []
	for preset in presets().values():
		values = {key: preset[key] for key in PRESET_FIELDS if key in preset}
		for key in ("incoming_port", "smtp_port"):
			if key in values:
				values[key] = str(values[key])
		for field, value in list(values.items()):
			if isinstance(value, bool):
				values[field] = int(value)
		for domain in preset["domains"]:
			records.append({"doctype": "Email Sync Domain", "domain_name": domain.lower(), **values})
	return records


def create_domain_presets() -> None:
	"""The provider presets as Email Sync Domain records, where the site has none of that name
	(an admin's own settings for a domain are never overwritten)."""
	for record in domain_preset_records():
		if not frappe.db.exists("Email Sync Domain", record["domain_name"]):
			frappe.get_doc(record).insert(ignore_permissions=True)


def create_account_templates() -> None:
	from .frappe_store import appendable_doctypes

	appendable = set(appendable_doctypes())
	for template in ACCOUNT_TEMPLATES:
		if frappe.db.exists("Email Sync Account", template["email_account_name"]):
			continue
		if frappe.db.exists("Email Sync Account", {"email_id": template["email_id"]}):
			continue
		append_to = template.get("append_to")
		if append_to and append_to not in appendable:
			continue
		doc = frappe.get_doc({"doctype": "Email Sync Account", **template})
		doc.enable_incoming = 0
		doc.enable_outgoing = 0
		doc.insert(ignore_permissions=True)


def before_uninstall() -> None:
	"""Leave the site as it was: the custom field and its column, the files kept for failed
	messages, the scheduled jobs. Communications stay (they are the site's mail)."""
	for name in frappe.get_all(
		"Custom Field", filters={"dt": "Communication", "fieldname": "email_sync_account"}, pluck="name"
	):
		frappe.delete_doc("Custom Field", name, ignore_permissions=True, force=True)
	if frappe.db.has_column("Communication", "email_sync_account"):
		for index in frappe.db.sql(
			"SHOW INDEX FROM `tabCommunication` WHERE Column_name='email_sync_account'", as_dict=True
		):
			frappe.db.sql_ddl(f"ALTER TABLE `tabCommunication` DROP INDEX `{index.Key_name}`")
		frappe.db.sql_ddl("ALTER TABLE `tabCommunication` DROP COLUMN `email_sync_account`")
	frappe.clear_cache(doctype="Communication")
	our_doctypes = frappe.get_all("DocType", filters={"module": MODULE}, pluck="name")
	for name in frappe.get_all("File", filters={"attached_to_doctype": ("in", our_doctypes)}, pluck="name"):
		frappe.delete_doc("File", name, ignore_permissions=True, force=True)
	for name in frappe.get_all("Scheduled Job Type", filters={"method": ("like", f"{APP}.%")}, pluck="name"):
		frappe.delete_doc("Scheduled Job Type", name, ignore_permissions=True, force=True)
