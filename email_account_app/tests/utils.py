"""Shared by the app's FrappeTestCase tests (run by ``bench run-tests --app email_account_app``).

Without Frappe (plain pytest, plain CI) importing this works and ``frappe`` is None: the test
modules skip themselves. The real mail servers come from the repository's own test helpers
(tests/dovecot.py: Dovecot; tests/smtp_server.py: aiosmtpd), loaded from the checkout the app was
installed from; where they (or Dovecot, pytest, trustme, aiosmtpd) are missing, the tests that need
them fail (``MissingTestDependency``, in their class's setUpClass, so the run names them and
exits non-zero): a bench run never passes by skipping what it was meant to test.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import unittest
from pathlib import Path

try:
	import frappe
	from frappe.tests.utils import FrappeTestCase
except ImportError:  # plain CI: no Frappe
	frappe = None
	FrappeTestCase = unittest.TestCase

needs_frappe = unittest.skipIf(frappe is None, "needs Frappe: run with bench run-tests")


class MissingTestDependency(RuntimeError):
	"""A test's dependency is missing: the test fails, with what to install (it never skips)."""


REPO_TESTS = Path(__file__).resolve().parents[2] / "tests"
_PACKAGE = "email_account_app_repo_tests"
TEST_DOCTYPE = "Email Sync Test Ticket"


def repo_test_module(name: str):
	"""A module of the repository's tests/ (dovecot, smtp_server, factory); MissingTestDependency
	when it (or what it imports) is missing."""
	if not (REPO_TESTS / f"{name}.py").exists():
		raise MissingTestDependency(
			f"the repository's tests/{name}.py is not next to the app ({REPO_TESTS}): install the app "
			"from a full checkout"
		)
	if _PACKAGE not in sys.modules:
		package = types.ModuleType(_PACKAGE)
		package.__path__ = [str(REPO_TESTS)]
		sys.modules[_PACKAGE] = package
	try:
		return importlib.import_module(f"{_PACKAGE}.{name}")
	except ImportError as exc:
		raise MissingTestDependency(
			f"tests/{name}.py needs {exc.name}: pip install -e 'apps/email_account_app[test]' in the bench's env"
		) from exc


def start_dovecot(**options):
	"""A running Dovecot on loopback (the repository's fixture class; ``options`` as it takes them:
	``oauth_url``, ``mechanisms``); MissingTestDependency when Dovecot is not installed."""
	dovecot = repo_test_module("dovecot")
	binary = dovecot._find_dovecot()
	if binary is None:
		raise MissingTestDependency("dovecot is not installed: apt-get install dovecot-imapd dovecot-pop3d")
	server = dovecot.Dovecot(binary, **options)
	server.start()
	return server


def start_smtp(mode: str = "plain", **options):
	"""An aiosmtpd server on loopback (the repository's helper): plain, starttls or ssl; or one that
	takes only the tokens of the OAuth server at ``oauth_url`` (xoauth2, oauthbearer, oauth)."""
	smtp = repo_test_module("smtp_server")
	try:
		trustme = importlib.import_module("trustme")
	except ImportError as exc:
		raise MissingTestDependency(
			"the SMTP tests need trustme: pip install -e 'apps/email_account_app[test]' in the bench's env"
		) from exc
	import tempfile

	directory = Path(tempfile.mkdtemp(prefix="email-sync-smtp-"))
	ca = trustme.CA()
	ca_file = str(directory / "ca.pem")
	ca.cert_pem.write_to_path(ca_file)
	return smtp.SmtpServer(mode, ca, ca_file, owns=directory, **options)


def make_mail(**kwargs) -> bytes:
	return repo_test_module("factory").make_mail(**kwargs)


def create_test_doctype() -> str:
	"""A small custom DocType that mail is appended to (what Issue is on an ERPNext site).

	Creating a table commits (DDL): call it from setUpClass, and drop_test_doctype at the end."""
	if frappe.db.exists("DocType", TEST_DOCTYPE):
		return TEST_DOCTYPE
	frappe.get_doc(
		{
			"doctype": "DocType",
			"name": TEST_DOCTYPE,
			"module": "Email Account App",
			"custom": 1,
			"autoname": "TT-.#####",
			"email_append_to": 1,
			"subject_field": "subject",
			"sender_field": "raised_by",
			"sender_name_field": "raised_by_name",
			"fields": [
				{"fieldname": "subject", "fieldtype": "Data", "label": "Subject", "reqd": 1},
				{"fieldname": "raised_by", "fieldtype": "Data", "label": "Raised By", "options": "Email"},
				{"fieldname": "raised_by_name", "fieldtype": "Data", "label": "Raised By Name"},
				{
					"fieldname": "status",
					"fieldtype": "Select",
					"label": "Status",
					"options": "Open\nReplied\nClosed",
					"default": "Open",
				},
				{"fieldname": "description", "fieldtype": "Text Editor", "label": "Description", "reqd": 1},
			],
			"permissions": [{"role": "System Manager", "read": 1, "write": 1, "create": 1, "delete": 1}],
		}
	).insert(ignore_permissions=True)
	frappe.db.commit()
	return TEST_DOCTYPE


def drop_test_doctype() -> None:
	if frappe.db.exists("DocType", TEST_DOCTYPE):
		frappe.delete_doc("DocType", TEST_DOCTYPE, ignore_permissions=True, force=True)
	frappe.db.sql_ddl(f"DROP TABLE IF EXISTS `tab{TEST_DOCTYPE}`")  # delete_doc leaves the table
	frappe.db.commit()


def no_pulls_queued(cls) -> None:
	"""For a test class whose tests commit (Token Cache's update_data does, and v15's email queue
	as it sends): saving an account queues no background pull, which would run for an account that
	is gone when the test ends."""
	from unittest.mock import patch

	patcher = patch("email_account_app.tasks.queue_pull")
	patcher.start()
	cls.addClassCleanup(patcher.stop)


def make_account(name: str, *, check_connection: bool = True, **values):
	"""Core's Email Account (inserted, so its connection is checked; the test's transaction rolls it
	back). An IMAP account gets an INBOX row in IMAP Folder (core requires one) that takes
	``append_to`` (core's IMAP accounts append per folder)."""
	values = {key: value for key, value in values.items() if key != "ca_file"}
	if values.get("enable_incoming") and values.get("use_imap", 1) and not values.get("imap_folder"):
		values["imap_folder"] = [{"folder_name": "INBOX", "append_to": values.pop("append_to", None)}]
	doc = frappe.get_doc({"doctype": "Email Account", "email_account_name": name, **values})
	doc.flags.check_connection = check_connection
	doc.insert(ignore_permissions=True)
	return doc


def dovecot_settings(dovecot, user: str, **overrides) -> dict:
	"""An Email Account's values for a user of the test Dovecot: plain IMAP on loopback (core's own
	receive cannot be told to trust the test's certificate authority), and the app's timeout."""
	data = dovecot.account(user, security="plain", **overrides)
	data.pop("ca_file", None)
	if data.get("login_id"):
		data["login_id_is_different"] = 1
	data["incoming_port"] = str(data["incoming_port"])
	data["timeout"] = int(data.get("timeout") or 10)
	return data


def purge(account: str, since=None) -> None:
	"""Delete what a test made for ``account`` and committed (v15's email queue commits as it
	sends, so a test that sends site mail cannot rely on the rollback alone)."""
	frappe.db.rollback()
	comms = frappe.get_all("Communication", filters={"email_account": account}, pluck="name")
	documents = {
		(row.reference_doctype, row.reference_name)
		for row in frappe.get_all(
			"Email Message Log",
			filters={"account": account, "reference_name": ("is", "set")},
			fields=["reference_doctype", "reference_name"],
		)
	}
	for doctype, name in documents:
		if frappe.db.table_exists(doctype):
			frappe.db.delete(doctype, {"name": name})
	if comms:
		frappe.db.delete("Communication Link", {"parent": ("in", comms)})
		frappe.db.delete("File", {"attached_to_doctype": "Communication", "attached_to_name": ("in", comms)})
		frappe.db.delete("Communication", {"name": ("in", comms)})
	for doctype in (
		"Email Message Log",
		"Email Folder Cursor",
		"Email Sync Auto Reply",
	):
		frappe.db.delete(doctype, {"account": account})
	for name in frappe.get_all("Email Queue", filters={"email_account": account}, pluck="name"):
		frappe.db.delete("Email Queue Recipient", {"parent": name})
		frappe.db.delete("Email Queue", {"name": name})
	frappe.db.delete("IMAP Folder", {"parent": account, "parenttype": "Email Account"})
	frappe.db.delete("Email Account", {"name": account})
	if since is not None:
		for name in frappe.get_all("Email Queue", filters={"creation": (">=", since)}, pluck="name"):
			frappe.db.delete("Email Queue Recipient", {"parent": name})
			frappe.db.delete("Email Queue", {"name": name})
	frappe.db.commit()


def flush_queue(since) -> None:
	"""Core's queue sends what a test queued since ``since``, entry by entry as core's flush does
	(a failed entry is recorded on it and retried later; the site's queue may hold other tests'
	mail), with sending on for the test."""
	frappe.flags.testing_email = True
	try:
		for name in frappe.get_all(
			"Email Queue",
			filters={"creation": (">=", since), "status": ("in", ("Not Sent", "Partially Sent"))},
			pluck="name",
			order_by="creation asc",
		):
			try:
				frappe.get_doc("Email Queue", name).send()
			except Exception:
				pass  # as core's flush: the entry holds the error and its retry count
	finally:
		frappe.flags.testing_email = False
