"""Fixtures shared by the tests. The real-Dovecot ones live in dovecot.py."""

from __future__ import annotations

from .dovecot import dovecot, flaky_proxy, mailbox
from .smtp_server import smtp_plain, smtp_servers, smtp_ssl, smtp_starttls

__all__ = ["dovecot", "flaky_proxy", "mailbox"]
