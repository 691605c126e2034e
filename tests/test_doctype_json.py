"""The Frappe app's DocType JSON, checked without Frappe (plain CI has none).

What a bench would refuse or break on: JSON that does not parse, a field type Frappe v15 does not
know, a fieldname twice, a Link to a DocType that neither the app nor core has, a depends_on that
names no field, and a field the Frappe layer reads that the JSON lacks (a rename that the code did
not follow). Also: every engine setting has a field of the same name on the DocType it comes from.
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
CORE_DOCTYPES = {"DocType", "Communication", "User", "File", "Contact"}
#: engine settings a document holds differently from a field of the same name
NOT_FIELDS = {
	"name": "the document's name",
	"folders": "the imap_folder table",
	# OAuth comes from core Email Account's auth_method and Connected App (not yet wired here)
	"oauth": "auth_method and the oauth_* settings",
	"token_source": "what the shell attaches to sign in with OAuth",
}
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
	return {f["fieldname"] for f in BY_NAME[doctype]["fields"]}


def test_there_are_doctypes():
	assert {"Email Sync Account", "Email Sync Domain", "Email Sync Folder"} <= set(BY_NAME)


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
		"Email Sync Account"
	)
	assert not missing


def test_every_domain_setting_is_a_field_of_the_same_name():
	assert {f.name for f in dataclasses.fields(DomainSettings)} <= fieldnames("Email Sync Domain")


def test_every_folder_setting_is_a_field_of_the_same_name():
	assert {f.name for f in dataclasses.fields(FolderSettings)} <= fieldnames("Email Sync Folder")
	assert BY_NAME["Email Sync Folder"]["istable"] == 1
	account = {f["fieldname"]: f for f in BY_NAME["Email Sync Account"]["fields"]}
	assert account["imap_folder"]["options"] == "Email Sync Folder"
	assert account["password"]["fieldtype"] == "Password"


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
		assert doctype in BY_NAME, doctype
		missing = set(fields) - fieldnames(doctype)
		assert not missing, (doctype, missing)


def test_fields_the_settings_bridge_reads_exist():
	path = APP / "accounts.py"
	for name, doctype in (
		("INCOMING_SERVER_FIELDS", "Email Sync Account"),
		("OUTGOING_SERVER_FIELDS", "Email Sync Account"),
		("FOLDER_FIELDS", "Email Sync Folder"),
	):
		missing = set(_constant(path, name)) - fieldnames(doctype)
		assert not missing, (name, missing)
	assert set(_constant(APP / "install.py", "PRESET_FIELDS")) <= fieldnames("Email Sync Domain")


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
	"Outbox",
	"Suppressions",
	"OpenTracking",
	"AutoReplyLog",
)


def test_the_ports_are_narrow():
	for port in PORTS:
		methods = _methods(APP / "engine" / "store.py", port)
		assert 1 <= len(methods) <= 6, f"{port} has {len(methods)} methods"


def test_both_stores_implement_every_port(tmp_path):
	from email_account_app.engine import store as ports
	from email_account_app.sqlite_store import SQLiteStore

	sqlite = SQLiteStore(tmp_path / "s.sqlite3")
	frappe_methods = _methods(APP / "frappe_store.py", "FrappeStore")
	for port in PORTS:
		assert isinstance(sqlite, getattr(ports, port)), f"SQLiteStore lacks part of {port}"
		missing = _methods(APP / "engine" / "store.py", port) - frappe_methods
		assert not missing, f"FrappeStore lacks {sorted(missing)} of {port}"
