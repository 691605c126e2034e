"""Fixtures shared by the tests. The real-Dovecot ones live in dovecot.py."""

from __future__ import annotations

import pytest

from email_account_app.engine import secrets
from email_account_app.sqlite_store import SQLiteStore

from .dovecot import dovecot, flaky_proxy, mailbox, oauth_dovecot, oauthbearer_dovecot, xoauth2_dovecot
from .oauth_server import oauth_server, oauth_session_server
from .smtp_server import (
	oauth_smtp_servers,
	smtp_oauth,
	smtp_oauthbearer,
	smtp_plain,
	smtp_servers,
	smtp_ssl,
	smtp_starttls,
	smtp_xoauth2,
)

__all__ = [
	"dovecot",
	"flaky_proxy",
	"mailbox",
	"oauth_dovecot",
	"oauth_server",
	"oauth_session_server",
	"oauth_smtp_servers",
	"oauthbearer_dovecot",
	"smtp_oauth",
	"smtp_oauthbearer",
	"smtp_plain",
	"smtp_servers",
	"smtp_ssl",
	"smtp_starttls",
	"smtp_xoauth2",
	"xoauth2_dovecot",
]


@pytest.fixture
def store(tmp_path):
	"""An SQLite store in the test's own folder."""
	s = SQLiteStore(tmp_path / "mail.sqlite3")
	yield s
	s.close()


@pytest.fixture(autouse=True)
def forget_secrets():
	"""Each test starts with a process that knows no secret: one a test used (a password "nope")
	would otherwise be blotted out of another test's error messages."""
	secrets.forget_all()
	yield
	secrets.forget_all()
