"""The storage ports' contract (email_account_app/tests/store_contract.py) on the SQLite store.

The same tests run on the Frappe store under ``bench run-tests``
(email_account_app/tests/test_store_contract.py); the outbox's (OutboxContract) only here: on a site,
core's Email Queue is the outbox.
"""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

from email_account_app.engine.store import DocRef, Location
from email_account_app.sqlite_store import SQLiteStore
from email_account_app.tests.store_contract import OutboxContract, StoreContract

from .documents import get_document, set_document_status


class TestSQLiteStoreContract(StoreContract, OutboxContract, unittest.TestCase):
	DOCTYPE = "Issue"

	def make_store(self) -> SQLiteStore:
		directory = tempfile.TemporaryDirectory(prefix="store-contract-")
		self.addCleanup(directory.cleanup)
		store = SQLiteStore(Path(directory.name) / "mail.sqlite3")
		self.addCleanup(store.close)
		return store

	def set_document_status(self, ref: DocRef, status: str) -> None:
		set_document_status(self.store, ref, status)

	def document_status(self, ref: DocRef) -> str | None:
		document = get_document(self.store, ref)
		self.assertIsNotNone(document, f"no {ref}")
		self.assertEqual(document["fields"]["status"], document["status"])
		return document["status"]

	def failure_raw(self, account: str, location: Location) -> bytes | None:
		rows = self.store.rows(
			"SELECT raw FROM failures WHERE account=? AND folder=? AND uidvalidity=? AND uid=?",
			account,
			location.folder,
			location.uidvalidity,
			location.uid,
		)
		return bytes(rows[0]["raw"]) if rows else None
