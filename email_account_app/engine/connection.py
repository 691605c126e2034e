"""Test a connection: log in to an account's servers, list its folders, give a plain verdict.

Nothing is read or changed in the mailbox. Every failure is an ``EmailSyncError`` turned into the
part's message (its title and words), never an exception out of ``check_account``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import EmailSyncError, FolderMissing
from .settings import AccountSettings


@dataclass
class Part:
	"""The result of checking incoming or outgoing."""

	label: str
	ok: bool = True
	server: str = ""
	message: str = ""
	capabilities: tuple[str, ...] = ()
	folders: list[tuple[str, Any, Any]] = field(default_factory=list)  # name, messages, unseen


@dataclass
class CheckResult:
	account: AccountSettings
	parts: list[Part] = field(default_factory=list)

	@property
	def ok(self) -> bool:
		return all(p.ok for p in self.parts)


def _guarded(part: Part, work: Callable[[Part], None]) -> Part:
	try:
		work(part)
	except EmailSyncError as exc:
		part.ok = False
		part.message = f"{exc.title}: {exc}"
	return part


def _check_imap(account: AccountSettings, part: Part) -> None:
	from .transports.imap import ImapMailbox

	with ImapMailbox(account) as mailbox:
		part.capabilities = tuple(mailbox.capabilities())
		wanted = {f.folder_name for f in account.sync_folders}
		for info in mailbox.list_folders():
			if "\\Noselect" in info.flags or "\\NonExistent" in info.flags:
				continue
			status = mailbox.folder_status(info.name)
			name = info.name + (" (synced)" if info.name in wanted else "")
			part.folders.append((name, status.messages, status.unseen))
		missing = wanted - {f.name for f in mailbox.list_folders()}
		if missing:
			raise FolderMissing(
				f"folder(s) to sync not on the server: {', '.join(sorted(missing))}",
				hint="Fix the folder names in the account's settings.",
			)
		part.message = f"logged in as {account.login}"


def _check_pop3(account: AccountSettings, part: Part) -> None:
	from .transports.pop3 import Pop3Mailbox

	with Pop3Mailbox(account) as mailbox:
		part.capabilities = tuple(mailbox.capabilities())
		count, size = mailbox.stat()
		part.folders.append(("INBOX", count, "-"))
		part.message = f"logged in as {account.login}; {count} message(s), {size / 1024 / 1024:.1f} MB"


def _check_smtp(account: AccountSettings, part: Part) -> None:
	from .transports.smtp import SmtpSender

	with SmtpSender(account) as sender:
		part.capabilities = tuple(sender.capabilities())
		part.message = (
			"connected (no authentication)"
			if account.no_smtp_authentication
			else f"logged in as {account.login}"
		)


def _check_sign_in(account: AccountSettings, part: Part) -> None:
	from .transports.sasl import require_source

	source = require_source(account)
	source.access_token()
	expires_at = source.expires_at
	assert expires_at is not None, "access_token() holds a token"
	assert account.oauth is not None, "only for an account that uses OAuth"
	kind = "app-only token" if account.oauth.flow == "client_credentials" else "access token"
	expires = datetime.fromtimestamp(expires_at, timezone.utc)
	minutes = max(0, round((expires_at - time.time()) / 60))
	part.message = f"signed in; {kind} valid until {expires:%Y-%m-%d %H:%M:%S} UTC (in {minutes} min)"


def check_account(account: AccountSettings) -> CheckResult:
	result = CheckResult(account)
	if account.oauth is not None:  # uses_oauth
		oauth = account.oauth
		part = Part(f"Sign-in (OAuth, {oauth.provider}, {oauth.flow} flow)")
		part.server = oauth.token_url.split("/")[2] if "//" in oauth.token_url else ""
		result.parts.append(_guarded(part, lambda p: _check_sign_in(account, p)))
		if not part.ok:
			return result
	if account.enable_incoming:
		protocol = "IMAP" if account.use_imap else "POP3"
		part = Part(f"Incoming ({protocol})", server=f"{account.email_server}:{account.port}")
		result.parts.append(
			_guarded(part, lambda p: (_check_imap if account.use_imap else _check_pop3)(account, p))
		)
	if account.enable_outgoing:
		part = Part("Outgoing (SMTP)", server=f"{account.smtp_server}:{account.outgoing_port}")
		result.parts.append(_guarded(part, lambda p: _check_smtp(account, p)))
	return result
