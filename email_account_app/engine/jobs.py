"""The engine's jobs: one entry point per job, called alike by the CLI and the Frappe app.

Each takes plain settings, the store's ports and a clock, does the whole job and returns a report;
a shell only builds the settings and the store, calls the job, and reports what came of it.

- ``pull``: new mail of one account into the store (engine/sync.py), exactly once;
- ``send_due``: what is due in the outbox for some accounts (engine/outbox.py);
- ``send_unreplied_notices``: a notice for mail left unanswered (engine/unreplied.py);
- ``test_connection``: log in to an account's servers and give a verdict (engine/connection.py).
``needs_site`` says when a job needs the site's settings (the secret links are signed with, where
they point): without them a pull sends no auto-reply and recognises no unsubscribe by mail.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .compose import SiteSettings
from .connection import CheckResult, check_account
from .errors import ConfigError
from .outbox import FlushReport, flush, sending_account
from .settings import AccountSettings
from .store import MailStore, Outbox, PullStore
from .sync import AccountReport, Puller
from .unreplied import UnrepliedStore, notify_unreplied

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
	return datetime.now(timezone.utc)


def needs_site(accounts: Iterable[AccountSettings]) -> bool:
	"""Whether jobs of these accounts need the site's settings: an account that sends auto-replies
	or unreplied notices, or unsubscribe links (whose mailto: requests a pull recognises)."""
	return any(a.enable_auto_reply or a.notify_if_unreplied or a.send_unsubscribe_message for a in accounts)


def pull(
	account: AccountSettings,
	store: PullStore | MailStore,
	*,
	site: SiteSettings | None = None,
	clock: Clock = utcnow,
	**options: Any,
) -> AccountReport:
	"""Pull one account; never raises for a mail-server problem (it is in the report's ``error``).
	With ``site``, the pull also queues the auto-replies its rules allow (the store must then hold
	an outbox too). ``options`` go to ``Puller`` (parse_process, dry_run, progress...)."""
	return Puller(account, store, site=site, now=clock(), **options).run()


def send_due(
	store: Outbox, accounts: Iterable[AccountSettings], *, clock: Clock = utcnow, **options: Any
) -> FlushReport:
	"""Send what is due in the outbox of ``accounts``: one SMTP session per account."""
	return flush(store, accounts, now=clock(), **options)


@dataclass
class NoticeReport:
	"""What ``send_unreplied_notices`` did: per account, the notices queued and the sender that
	sends them (to flush), or the error that stopped that account."""

	queued: dict[str, int] = field(default_factory=dict)
	senders: set[str] = field(default_factory=set)
	errors: dict[str, str] = field(default_factory=dict)


def send_unreplied_notices(
	store: UnrepliedStore,
	accounts: Iterable[AccountSettings],
	site: SiteSettings,
	*,
	clock: Clock = utcnow,
	only: Iterable[str] | None = None,
) -> NoticeReport:
	"""Queue a notice for each message left unreplied too long, for every account (of ``only``)
	with notify_if_unreplied; each goes out through the account itself when it sends mail, else
	through the one ``sending_account`` picks. One account's problem stops no other."""
	accounts = list(accounts)
	wanted = set(only) if only is not None else None
	report = NoticeReport()
	now = clock()
	for account in accounts:
		if not (account.enable_incoming and account.notify_if_unreplied):
			continue
		if wanted is not None and account.name not in wanted:
			continue
		sender = sending_account(accounts, sender=account.email_id)
		if sender is None:
			report.errors[account.name] = str(
				ConfigError(
					"notify_if_unreplied is on, but neither this account nor a default outgoing one "
					"sends mail",
					account=account.name,
				)
			)
			continue
		queued = notify_unreplied(store, account, site, sender=sender, now=now)
		report.queued[account.name] = len(queued)
		if queued:
			report.senders.add(sender.name)
	return report


#: a connection test waits at most this long for a server, whatever the account's timeout
TEST_TIMEOUT = 20


def test_connection(account: AccountSettings, *, timeout: float = TEST_TIMEOUT) -> CheckResult:
	"""Log in to the account's servers (incoming, outgoing), list its folders, give a verdict;
	never raises for a server's problem. Waits ``timeout`` seconds at most per server."""
	account = dataclasses.replace(account, timeout=min(account.timeout or timeout, timeout))
	return check_account(account)


test_connection.__test__ = False  # type: ignore[attr-defined]  # a job, not a pytest test
