"""The engine's TokenStore port on the CLI's SQLite file: one refresh token per account.

Invariants:
- The file holding a refresh token is readable by its owner only (mode 0600): it is created so,
  and tightened before a token is written into it; SQLite gives its -wal and -shm files the same
  mode.
- ``save_refresh_token`` returns only once the token is committed (synchronous=FULL), so the
  engine may use the access token that came with it; the old token is overwritten in place
  (secure_delete) and the write-ahead log is emptied afterwards, so a rotated-out refresh token
  does not linger in the file.
- Nothing else of OAuth is kept: never an access token, never a client secret.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from datetime import datetime, timezone
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS oauth_tokens (
	account TEXT PRIMARY KEY,
	refresh_token TEXT NOT NULL,
	saved_at TEXT NOT NULL
)
"""


def make_private(path: str | Path) -> None:
	"""Create ``path`` if it is missing, readable and writable by its owner only; tighten it (and
	SQLite's -wal and -shm files) if it exists with looser permissions."""
	path = str(path)
	if path == ":memory:" or path.startswith("file:"):
		return
	fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
	os.close(fd)
	for name in (path, path + "-wal", path + "-shm"):
		try:
			if stat.S_IMODE(os.stat(name).st_mode) & 0o077:
				os.chmod(name, 0o600)
		except FileNotFoundError:
			pass


class SQLiteTokenStore:
	"""Refresh tokens by account name, in the table ``oauth_tokens`` of the store file."""

	def __init__(self, path: str | Path):
		self.path = str(path)
		self._conn: sqlite3.Connection | None = None
		self._lock = threading.RLock()  # one connection, shared by the threads of a run

	@property
	def db(self) -> sqlite3.Connection:
		if self._conn is None:
			make_private(self.path)
			conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
			conn.execute("PRAGMA secure_delete=ON")
			conn.execute("PRAGMA synchronous=FULL")
			conn.execute(SCHEMA)
			self._conn = conn
		return self._conn

	def close(self) -> None:
		if self._conn is not None:
			self._conn.close()
			self._conn = None

	def load_refresh_token(self, account: str) -> str | None:
		with self._lock:
			query = "SELECT refresh_token FROM oauth_tokens WHERE account = ?"
			row = self.db.execute(query, (account,)).fetchone()
		return row[0] if row else None

	def save_refresh_token(self, account: str, refresh_token: str) -> None:
		now = datetime.now(timezone.utc).isoformat()
		with self._lock:
			make_private(self.path)
			self.db.execute(
				"INSERT INTO oauth_tokens (account, refresh_token, saved_at) VALUES (?, ?, ?) "
				"ON CONFLICT (account) DO UPDATE SET refresh_token = excluded.refresh_token, "
				"saved_at = excluded.saved_at",
				(account, refresh_token, now),
			)
			self._checkpoint()

	def forget_refresh_token(self, account: str) -> bool:
		with self._lock:
			gone = self.db.execute("DELETE FROM oauth_tokens WHERE account = ?", (account,)).rowcount > 0
			self._checkpoint()
		return gone

	def _checkpoint(self) -> None:
		"""Empty the write-ahead log (WAL mode only), so no older version of a token stays in it."""
		mode = self.db.execute("PRAGMA journal_mode").fetchone()[0]
		if str(mode).lower() == "wal":
			self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
