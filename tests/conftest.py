"""Fixtures shared by the tests. The real-Dovecot ones live in dovecot.py."""

from __future__ import annotations

import pytest

from email_account_app.sqlite_store import SQLiteStore

from .dovecot import dovecot, flaky_proxy, mailbox
from .smtp_server import smtp_plain, smtp_servers, smtp_ssl, smtp_starttls

__all__ = ["dovecot", "flaky_proxy", "mailbox", "smtp_plain", "smtp_servers", "smtp_ssl", "smtp_starttls"]


@pytest.fixture
def store(tmp_path):
	"""An SQLite store in the test's own folder."""
	s = SQLiteStore(tmp_path / "mail.sqlite3")
	yield s
	s.close()
