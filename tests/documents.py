"""Reading and changing the SQLite store's documents directly, as a person working on them would:
the engine never does either (a store only keeps what the engine decided)."""

from __future__ import annotations

import json
from typing import Any

from email_account_app.engine.store import DocRef
from email_account_app.sqlite_store import SQLiteStore


def get_document(store: SQLiteStore, ref: DocRef) -> dict[str, Any] | None:
	row = store.db.execute(
		"SELECT * FROM documents WHERE doctype=? AND name=?", (ref.doctype, ref.name)
	).fetchone()
	if row is None:
		return None
	data = dict(row)
	data["fields"] = json.loads(data["fields"])
	return data


def set_document_status(store: SQLiteStore, ref: DocRef, status: str) -> None:
	"""What an agent closing or answering a document does."""
	with store._tx() as db:
		store._put_status(db, ref, status)
