"""The Frappe app's DocType JSON, checked without Frappe (plain CI has none).

What a bench would refuse or break on: JSON that does not parse, a field type Frappe v15 does not
know, a fieldname twice, a Link to a DocType that neither the app nor core has, a depends_on that
names no field, and a field the Frappe layer reads that the JSON lacks (a rename that the code did
not follow). Also: every engine setting has a field of the same name on the DocType it comes from
(core's Email Account, Email Domain and IMAP Folder of Frappe v15, or a Custom Field of install.py),
and hooks.py names the override classes the way Frappe resolves them.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest

from email_account_app.engine.settings import AccountSettings, DomainSettings, FolderSettings

APP = Path(__file__).resolve().parents[1] / "email_account_app"
DOCTYPES = APP / "email_account_app" / "doctype"
MODULE = "Email Account App"

#: Frappe v15's field types (frappe/core/doctype/docfield/docfield.json)
FIELDTYPES = {
	"Autocomplete", "Attach", "Attach Image", "Barcode", "Button", "Check", "Code", "Color",
	"Column Break", "Currency", "Data", "Date", "Datetime", "Duration", "Dynamic Link", "Float",
	"Fold", "Geolocation", "Heading", "HTML", "HTML Editor", "Icon", "Image", "Int", "JSON", "Link",
	"Long Int", "Long Text", "Markdown Editor", "Password", "Percent", "Phone", "Read Only", "Rating",
	"Section Break", "Select", "Signature", "Small Text", "Tab Break", "Table", "Table MultiSelect",
	"Text", "Text Editor", "Time",
}  # fmt: skip
NO_VALUE = {"Section Break", "Column Break", "Tab Break", "HTML", "Button", "Image", "Fold", "Heading"}
#: core DocTypes the app links to (they exist on every Frappe v15 site)
CORE_DOCTYPES = {"DocType", "Communication", "User", "File", "Contact", "Email Account", "Email Domain"}
#: engine settings a document holds differently from a field of the same name, or not at all
NOT_FIELDS = {
	"name": "the document's name",
	"folders": "the imap_folder table",
	"ca_file": "the CLI's setting only",
	"oauth": "auth_method and the oauth_* settings",
	"token_source": "what the shell attaches to sign in with OAuth",
	"pull_timeout": "set by the job, inside its queue's time limit",
}

#: the data fields of core's DocTypes the app reads or writes, as in Frappe v15's JSON
#: (frappe/email/doctype/*/*.json, frappe/core/doctype/communication/communication.json)
CORE_FIELDS = {
	"Email Account": {
		"add_signature", "always_use_account_email_id_as_sender", "always_use_account_name_as_sender_name",
		"append_emails_to_sent_folder", "append_to", "ascii_encode_password", "attachment_limit",
		"auth_method", "auto_reply_message", "awaiting_password", "backend_app_flow", "brand_logo",
		"connected_app", "connected_user", "create_contact", "default_incoming", "default_outgoing",
		"domain", "email_account_name", "email_id", "email_server", "email_sync_option",
		"enable_auto_reply", "enable_automatic_linking", "enable_incoming", "enable_outgoing", "footer",
		"imap_folder", "incoming_port", "initial_sync_count", "login_id", "login_id_is_different",
		"no_failed", "no_smtp_authentication", "notify_if_unreplied", "password",
		"send_notification_to", "send_unsubscribe_message", "sent_folder_name", "service", "signature",
		"smtp_port", "smtp_server", "track_email_status", "uidnext", "uidvalidity",
		"unreplied_for_mins", "use_imap", "use_ssl", "use_ssl_for_outgoing", "use_starttls", "use_tls",
	},
	"Email Domain": {
		"append_emails_to_sent_folder", "attachment_limit", "domain_name", "email_server",
		"incoming_port", "sent_folder_name", "smtp_port", "smtp_server", "use_imap", "use_ssl",
		"use_ssl_for_outgoing", "use_starttls", "use_tls",
	},
	"IMAP Folder": {"append_to", "folder_name", "uidnext", "uidvalidity"},
	"Communication": {"email_account", "imap_folder", "message_id", "uid", "unread_notification_sent"},
}  # fmt: skip
#: what a Frappe Document has besides its fields (read by controllers as self.x)
DOCUMENT_ATTRIBUTES = {
	"name", "doctype", "flags", "meta", "docstatus", "owner", "creation", "modified", "idx",
	"parent", "parenttype", "parentfield",
}  # fmt: skip


def _load() -> dict[str, dict]:
	docs = {}
	for path in sorted(DOCTYPES.glob("*/*.json")):
		if path.stem != path.parent.name:
			continue
		docs[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
	return docs


DOCS = _load()
BY_NAME = {doc["name"]: doc for doc in DOCS.values()}


def fieldnames(doctype: str) -> set[str]:
	"""The fields of one of the app's DocTypes, or of a core DocType with the app's Custom Fields."""
	if doctype in CORE_FIELDS:
		return CORE_FIELDS[doctype] | {f["fieldname"] for f in custom_fields().get(doctype, [])}
	return {f["fieldname"] for f in BY_NAME[doctype]["fields"]}


def custom_fields() -> dict[str, list[dict]]:
	return _constant(APP / "install.py", "CUSTOM_FIELDS")


def test_there_are_doctypes():
	"""The app's own DocTypes are its bookkeeping; accounts and domains are core's."""
	assert {"Email Folder Cursor", "Email Message Log"} <= set(BY_NAME)
	assert not {"Email Sync Account", "Email Sync Domain", "Email Sync Folder"} & set(BY_NAME)


@pytest.mark.parametrize("folder", sorted(DOCS))
def test_doctype_is_well_formed(folder):
	doc = DOCS[folder]
	assert doc["doctype"] == "DocType"
	assert doc["module"] == MODULE
	assert doc["name"].lower().replace(" ", "_") == folder
	names = [f["fieldname"] for f in doc["fields"]]
	assert len(names) == len(set(names)), "a fieldname is used twice"
	assert doc["field_order"] == names
	for field in doc["fields"]:
		assert re.fullmatch(r"[a-z][a-z0-9_]*", field["fieldname"]), field["fieldname"]
		assert field["fieldtype"] in FIELDTYPES, field
		if field["fieldtype"] in ("Link", "Table", "Table MultiSelect"):
			assert field["options"] in BY_NAME or field["options"] in CORE_DOCTYPES, field
		if field["fieldtype"] in ("Table", "Table MultiSelect"):
			assert BY_NAME[field["options"]].get("istable") == 1, field
		if field["fieldtype"] == "Dynamic Link":
			assert field["options"] in names, field
		if field["fieldtype"] == "Select" and "default" in field:
			assert field["default"] in field["options"].split("\n"), field
	if not doc.get("istable"):
		roles = {p["role"] for p in doc["permissions"]}
		assert "System Manager" in roles
	for key in ("title_field", "search_fields", "subject_field", "sender_field"):
		for name in filter(None, (doc.get(key) or "").split(",")):
			assert name.strip() in names, (key, name)
	autoname = doc.get("autoname") or ""
	if autoname.startswith("field:"):
		assert autoname[len("field:") :] in names


_EVAL_TOKEN = re.compile(
	r"\s+|doc\.[a-z_][a-z0-9_]*|&&|\|\||===|!==|==|!=|[!()]|\"[^\"]*\"|'[^']*'|\d+|true|false|null"
)


def check_expression(expression: str, names: set[str]) -> None:
	"""A depends_on: a fieldname, or "eval:" and a JavaScript expression over doc.FIELD."""
	expression = expression.strip()
	if not expression.startswith("eval:"):
		assert expression in names, f"{expression!r} is no field"
		return
	code = expression[len("eval:") :]
	position, depth = 0, 0
	while position < len(code):
		match = _EVAL_TOKEN.match(code, position)
		assert match, f"cannot read {code[position:]!r} in {expression!r}"
		token = match.group()
		if token.startswith("doc."):
			assert token[4:] in names | {"__islocal", "__unsaved"}, f"{token} is no field ({expression!r})"
		depth += token.count("(") - token.count(")") if token in "()" else 0
		assert depth >= 0, expression
		position = match.end()
	assert depth == 0, expression


@pytest.mark.parametrize("folder", sorted(DOCS))
def test_depends_on_names_fields(folder):
	names = fieldnames(DOCS[folder]["name"])
	for field in DOCS[folder]["fields"]:
		for key in ("depends_on", "mandatory_depends_on", "read_only_depends_on", "collapsible_depends_on"):
			if field.get(key):
				check_expression(field[key], names)


def test_expression_checker_refuses_unknown_fields():
	with pytest.raises(AssertionError):
		check_expression("eval:doc.enable_incoming && doc.nope", {"enable_incoming"})
	with pytest.raises(AssertionError):
		check_expression("eval:doc.a && (doc.b", {"a", "b"})
	check_expression('eval:doc.a && !doc.b || doc.c === "ALL"', {"a", "b", "c"})


# -- the engine's settings and the DocTypes -------------------------------------------------------


def test_every_account_setting_is_a_field_of_the_same_name():
	missing = {f.name for f in dataclasses.fields(AccountSettings) if f.name not in NOT_FIELDS} - fieldnames(
		"Email Account"
	)
	assert not missing


def test_every_domain_setting_is_a_field_of_the_same_name():
	assert {f.name for f in dataclasses.fields(DomainSettings)} <= fieldnames("Email Domain")


def test_every_folder_setting_is_a_field_of_the_same_name():
	assert {f.name for f in dataclasses.fields(FolderSettings)} <= fieldnames("IMAP Folder")


def test_custom_fields_are_well_formed():
	for doctype, items in custom_fields().items():
		assert doctype in CORE_FIELDS, doctype
		names = [item["fieldname"] for item in items]
		assert len(names) == len(set(names)), doctype
		for item in items:
			assert item["fieldtype"] in FIELDTYPES, item
			assert item["fieldname"] not in CORE_FIELDS[doctype], f"core's {doctype} has {item['fieldname']}"
			anchors = CORE_FIELDS[doctype] | set(names) | {"brand_logo", "use_starttls"}
			assert item["insert_after"] in anchors, item
			for key in ("depends_on",):
				if item.get(key):
					check_expression(item[key], fieldnames(doctype))
	# whole numbers are Int (a Float shows as "25,000" under some number formats)
	assert {i["fieldname"]: i["fieldtype"] for i in custom_fields()["Email Account"]}["timeout"] == "Int"


def test_hooks_name_the_override_classes():
	"""v15: override_doctype_class names a module attribute the module's __getattr__ composes;
	v16: extend_doctype_class names the mixins. The modules and the mixins exist."""
	source = (APP / "hooks.py").read_text(encoding="utf-8")
	for doctype, module, public, mixin in (
		("Email Account", "email_account", "EmailAccount", "EmailAccountEngine"),
		("Email Domain", "email_domain", "EmailDomain", "EmailDomainEngine"),
	):
		assert f'"{doctype}": "email_account_app.overrides.{module}.{public}"' in source
		assert f'"{doctype}": ["email_account_app.overrides.{module}.{mixin}"]' in source
		tree = ast.parse((APP / "overrides" / f"{module}.py").read_text(encoding="utf-8"))
		names = {n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)}
		assert {mixin, "__getattr__"} <= names, module
		assert public not in names, f"{public} is composed per site, not defined"


@pytest.mark.parametrize(
	"module, doctype", [("email_account", "Email Account"), ("email_domain", "Email Domain")]
)
def test_fields_the_overrides_read_exist(module, doctype):
	tree = ast.parse((APP / "overrides" / f"{module}.py").read_text(encoding="utf-8"))
	cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Engine"))
	own = {n.name for n in ast.walk(cls) if isinstance(n, ast.FunctionDef)}
	read = {
		node.attr
		for node in ast.walk(cls)
		if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
	}
	core_methods = {"handle_incoming_connect_error", "set_failed_attempts_count", "get_failed_attempts_count"}
	unknown = read - fieldnames(doctype) - own - DOCUMENT_ATTRIBUTES - core_methods
	unknown -= {
		name for name in unknown if name.startswith(("get", "set", "is_", "has_", "db_", "reload", "save"))
	}
	assert not unknown, f"{module}.py reads self.{sorted(unknown)}, which are no fields"


# -- what the code reads --------------------------------------------------------------------------


def _constant(path: Path, name: str):
	"""A module-level constant of a file, read without importing it (it imports frappe)."""
	tree = ast.parse(path.read_text(encoding="utf-8"))
	strings = {
		node.targets[0].id: node.value.value
		for node in tree.body
		if isinstance(node, ast.Assign)
		and isinstance(node.targets[0], ast.Name)
		and isinstance(node.value, ast.Constant)
	}
	for node in tree.body:
		if isinstance(node, ast.Assign | ast.AnnAssign):
			target = node.targets[0] if isinstance(node, ast.Assign) else node.target
			if isinstance(target, ast.Name) and target.id == name:
				value = node.value
				if isinstance(value, ast.Dict):  # keys may be the module's string constants
					keys = [
						strings[k.id] if isinstance(k, ast.Name) else ast.literal_eval(k) for k in value.keys
					]
					return dict(zip(keys, (ast.literal_eval(v) for v in value.values), strict=True))
				return ast.literal_eval(value)
	raise AssertionError(f"{name} not found in {path}")


def test_fields_the_store_reads_exist():
	used = _constant(APP / "frappe_store.py", "FIELDS_USED")
	assert used, "frappe_store.FIELDS_USED is empty"
	for doctype, fields in used.items():
		assert doctype in BY_NAME or doctype in CORE_FIELDS, doctype
		missing = set(fields) - fieldnames(doctype)
		assert not missing, (doctype, missing)


def test_fields_the_settings_bridge_reads_exist():
	path = APP / "accounts.py"
	for name, doctype in (
		("INCOMING_SERVER_FIELDS", "Email Account"),
		("OUTGOING_SERVER_FIELDS", "Email Account"),
		("FOLDER_FIELDS", "IMAP Folder"),
	):
		missing = set(_constant(path, name)) - fieldnames(doctype)
		assert not missing, (name, missing)
	assert set(_constant(APP / "overrides" / "email_domain.py", "PRESET_FIELDS")) <= fieldnames(
		"Email Domain"
	)


@pytest.mark.parametrize("folder", sorted(DOCS))
def test_fields_the_controller_reads_exist(folder):
	doc = DOCS[folder]
	path = DOCTYPES / folder / f"{folder}.py"
	source = path.read_text(encoding="utf-8")
	assert "# begin: auto-generated types" in source and "# end: auto-generated types" in source
	tree = ast.parse(source)
	classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
	class_name = doc["name"].replace(" ", "")
	assert class_name in [c.name for c in classes], f"class {class_name} missing in {path.name}"
	cls = next(c for c in classes if c.name == class_name)
	own = {n.name for n in ast.walk(cls) if isinstance(n, ast.FunctionDef)}
	read = {
		node.attr
		for node in ast.walk(cls)
		if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
	}
	unknown = read - fieldnames(doc["name"]) - own - DOCUMENT_ATTRIBUTES
	unknown -= {
		name for name in unknown if name.startswith(("get", "set", "is_", "has_", "db_", "reload", "save"))
	}
	assert not unknown, f"{path.name} reads self.{sorted(unknown)}, which are no fields"


def _methods(path: Path, class_name: str) -> set[str]:
	tree = ast.parse(path.read_text(encoding="utf-8"))
	cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
	return {n.name for n in cls.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}


PORTS = (
	"FolderCursors",
	"MessageLedger",
	"ThreadIndex",
	"ReplyWatch",
	"OutgoingQueue",
	"Outbox",
	"Suppressions",
	"OpenTracking",
	"AutoReplyLog",
)


def test_the_ports_are_narrow():
	for port in PORTS:
		methods = _methods(APP / "engine" / "store.py", port)
		assert 1 <= len(methods) <= 6, f"{port} has {len(methods)} methods"


def test_both_stores_implement_their_ports(tmp_path):
	from email_account_app.engine import store as ports
	from email_account_app.sqlite_store import SQLiteStore

	sqlite = SQLiteStore(tmp_path / "s.sqlite3")
	frappe_methods = _methods(APP / "frappe_store.py", "FrappeStore")
	for port in PORTS:
		assert isinstance(sqlite, getattr(ports, port)), f"SQLiteStore lacks part of {port}"
		if port == "Outbox":
			continue  # on a site, core's Email Queue is the outbox (the Frappe store queues into it)
		missing = _methods(APP / "engine" / "store.py", port) - frappe_methods
		assert not missing, f"FrappeStore lacks {sorted(missing)} of {port}"
