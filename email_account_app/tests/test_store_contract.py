"""The storage ports' contract (store_contract.py) on the Frappe store, on this site's documents.

The same tests run on the SQLite store in plain CI (tests/test_store_contract.py). The store does
not commit here (``commit=False``): each test's work is rolled back.
"""

from __future__ import annotations

from email_account_app.tests.store_contract import StoreContract
from email_account_app.tests.utils import (
	TEST_DOCTYPE,
	FrappeTestCase,
	create_test_doctype,
	drop_test_doctype,
	frappe,
	make_account,
	needs_frappe,
)

test_ignore = ["Communication", "DocType", "User"]


@needs_frappe
class TestFrappeStoreContract(StoreContract, FrappeTestCase):
	DOCTYPE = TEST_DOCTYPE

	@classmethod
	def setUpClass(cls):
		create_test_doctype()
		cls.addClassCleanup(drop_test_doctype)
		super().setUpClass()

	def setUp(self):
		self.addCleanup(frappe.db.rollback)
		super().setUp()

	def make_store(self):
		from email_account_app.frappe_store import FrappeStore

		return FrappeStore(commit=False)

	def create_account(self, name: str, email: str) -> None:
		self.assertEqual(make_account(name, email_id=email).name, name)

	def set_document_status(self, ref, status: str) -> None:
		frappe.db.set_value(ref.doctype, ref.name, "status", status)

	def document_status(self, ref) -> str | None:
		return frappe.db.get_value(ref.doctype, ref.name, "status")

	def failure_raw(self, account: str, location) -> bytes | None:
		from email_account_app.frappe_store import MESSAGE

		url = frappe.db.get_value(
			MESSAGE,
			{
				"account": account,
				"status": "Failed",
				"folder": location.folder,
				"uidvalidity": location.uidvalidity,
				"uid": location.uid,
			},
			"raw_file",
		)
		if not url:
			return None
		path = frappe.get_doc("File", {"file_url": url}).get_full_path()
		with open(path, "rb") as f:
			return f.read()
