"""The outbox: outgoing mail queued in the store, sent when due, never lost and never sent twice.

``queue_mail`` composes a message and stores it, with the Sent communication that threads replies
to it, in one transaction. ``flush`` sends what is due: it claims messages (Queued -> Sending)
atomically, sends each account's batch over one SMTP session, records every recipient the server
accepted right after the server said so, and finishes each message as Sent, Partly Sent, Failed,
or Queued again for a retry with exponential backoff (temporary errors, up to MAX_RETRIES).

Crash safety: a message left in Sending by a process that died is queued again once its claim is
older than SENDING_LEASE, and is then sent only to the recipients not yet recorded as accepted. The
one window left is between the server's "250 OK" and the commit that records it (milliseconds): a
crash exactly there sends that one message again, which is the right way round (never lost).

The store implements the ``Outbox`` port (store.py; SQLite: ``email_account_app.sqlite_outbox``;
Frappe: the Frappe layer). ``sending_account`` is the one rule for which account sends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .compose import (
	ComposedMail,
	OutgoingRequest,
	SiteSettings,
	cap_references,
	check_header_value,
	compose,
	parse_address,
	usable_message_ids,
	verify_tracking,
)
from .compose import verify_unsubscribe as _verify_unsubscribe
from .errors import (
	ConfigError,
	EmailSyncError,
	HeaderInjection,
	PermanentSendError,
	TemporarySendError,
	TransportError,
)
from .parsing import parse_message_ids
from .secrets import scrub
from .settings import AccountSettings, check_defaults
from .store import DocRef, OpenTracking, Outbox, OutgoingMail, QueueStore, Suppressions, ThreadIndex

log = logging.getLogger(__name__)

MAX_RETRIES = 6  # temporary failures before a message is given up: 2, 4, 8, 16, 32, 64 minutes
RETRY_BASE = timedelta(minutes=2)
RETRY_CAP = timedelta(hours=4)
SENDING_LEASE = timedelta(minutes=15)  # a claim older than this belongs to a process that died
CLAIM_BATCH = 50

# Outbox statuses
QUEUED, SENDING, SENT, PARTLY_SENT, FAILED = "Queued", "Sending", "Sent", "Partly Sent", "Failed"
FINAL = (SENT, PARTLY_SENT, FAILED)
# the communication's delivery_status for each outcome
DELIVERY_STATUS = {
	QUEUED: "Queued",
	SENDING: "Sending",
	SENT: "Sent",
	PARTLY_SENT: "Partly Sent",
	FAILED: "Error",
}
RETRY_DELIVERY_STATUS = "Delayed"


def retry_delay(retries: int) -> timedelta:
	"""How long to wait before try number ``retries + 1``: doubling from RETRY_BASE, capped."""
	return min(RETRY_BASE * 2 ** max(retries - 1, 0), RETRY_CAP)


def _utcnow() -> datetime:
	return datetime.now(timezone.utc)


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentRecord:
	"""The Sent communication of a queued message (what the store keeps, and replies thread onto)."""

	account: str
	message_id: str
	thread_token: str
	subject: str
	sender: str
	sender_full_name: str
	to: tuple[str, ...]
	cc: tuple[str, ...]
	bcc: tuple[str, ...]
	date: datetime
	text_content: str
	html_content: str
	in_reply_to: tuple[str, ...] = ()
	references: tuple[str, ...] = ()
	document: DocRef | None = None
	auto_submitted: str | None = None
	delivery_status: str = "Queued"

	@classmethod
	def of(cls, account: AccountSettings, mail: ComposedMail) -> SentRecord:
		return cls(
			account=account.name,
			message_id=mail.message_id,
			thread_token=mail.thread_token,
			subject=mail.subject,
			sender=mail.sender,
			sender_full_name=mail.sender_name,
			to=mail.to,
			cc=mail.cc,
			bcc=mail.bcc,
			date=mail.date or _utcnow(),
			text_content=mail.text,
			html_content=mail.html,
			in_reply_to=mail.in_reply_to,
			references=mail.references,
			document=mail.document,
			auto_submitted=mail.automatic,
		)


# -- choosing the account ----------------------------------------------------------------------


def sending_account(
	accounts: Iterable[AccountSettings], *, sender: str | None = None, doctype: str | None = None
) -> AccountSettings | None:
	"""The account a message goes out through, as core picks among its own: the account whose
	address is the sender's, else the incoming account appending to the message's DocType (its own
	append_to or a folder's), else the default outgoing one; None when no account sends mail."""
	senders = [a for a in accounts if a.enable_outgoing and not a.awaiting_password]
	address = (sender or "").strip().lower()
	if address:
		if "<" in address:
			address = address.rpartition("<")[2].rstrip(">").strip()
		for account in senders:
			if account.email_id.lower() == address:
				return account
	if doctype:
		for account in senders:
			if account.enable_incoming and doctype in (
				account.append_to,
				*(f.append_to for f in account.sync_folders),
			):
				return account
	return next((a for a in senders if a.default_outgoing), None)


@dataclass(frozen=True)
class SiteMailThread:
	"""The thread a site's own message about a document answers (``site_mail_thread``)."""

	message_ids: tuple[str, ...]  # the mail received about the document, oldest first
	token: str | None

	@property
	def parent(self) -> str:
		return self.message_ids[-1]


def site_mail_thread(store: ThreadIndex, account: str, document: DocRef | None) -> SiteMailThread | None:
	"""What a message the site sends about ``document`` (a reply written in its timeline, a
	notification) answers: the newest mail the account received about it, in the thread of all of
	them, with the thread's newest token; None when the account received nothing about it."""
	if document is None:
		return None
	received = [c for c in store.received_about(account, document) if c.message_id]
	if not received:
		return None
	token = next((c.thread_token for c in reversed(received) if c.thread_token), None)
	return SiteMailThread(tuple(c.message_id for c in received), token)


def answering(raw: bytes, thread: SiteMailThread, references: str | None) -> bytes:
	"""``raw`` (a message composed elsewhere, without In-Reply-To) answering ``thread``: In-Reply-To
	and, unless it has them, References put before its headers; the rest stays byte for byte."""
	# ids from incoming mail that cannot go into a header (controls, spaces, no @) are left out
	answered = usable_message_ids(thread.message_ids)
	if not answered:
		return raw
	chain = cap_references(usable_message_ids([*parse_message_ids(references), *answered]))
	for value in (answered[-1], *chain):
		check_header_value(value, "Message-ID")
	headers = [("In-Reply-To", f"<{answered[-1]}>")]
	if not references:
		headers.append(("References", "\r\n ".join(f"<{i}>" for i in chain)))
	return prepending(raw, headers)


def prepending(raw: bytes, headers: Sequence[tuple[str, str]]) -> bytes:
	"""``raw`` with these headers put before its own; the rest stays byte for byte. A value must
	be ASCII with no line break but a folding one (HeaderInjection otherwise)."""
	lines = []
	for name, value in headers:
		check_header_value(value.replace("\r\n ", " "), name)
		if not value.isascii():
			raise HeaderInjection(f"the {name} header must be plain ASCII")
		lines.append(f"{name}: {value}")
	return ("\r\n".join(lines) + "\r\n").encode("ascii") + raw


def default_outgoing(accounts: Iterable[AccountSettings]) -> AccountSettings:
	"""The account that sends when none is named: the one marked default_outgoing."""
	accounts = list(accounts)
	check_defaults(accounts)
	for account in accounts:
		if account.default_outgoing:
			if not account.enable_outgoing:
				raise ConfigError(
					"the default outgoing account has enable_outgoing off: turn it on", account=account.name
				)
			return account
	raise ConfigError(
		"no account is the default outgoing one: name the account to send from, "
		"or set default_outgoing on one account"
	)


# -- queueing ----------------------------------------------------------------------------------


def queue_mail(
	store: QueueStore,
	account: AccountSettings,
	site: SiteSettings,
	request: OutgoingRequest,
	*,
	now: datetime | None = None,
) -> OutgoingMail | None:
	"""Compose ``request`` and put it in the outbox with its Sent communication.

	A reply (``in_reply_to``) to a message the account knows joins that message's thread and
	document. Bulk and automatic mail is not sent to unsubscribed addresses; when that leaves no
	recipient, nothing is queued and None is returned.
	"""
	if not account.enable_outgoing:
		raise ConfigError("this account does not send mail: turn on enable_outgoing", account=account.name)
	now = now or _utcnow()
	request = _in_thread(store, account, request)
	skipped: list[str] = []
	if request.bulk or request.automatic:
		request, skipped = _without_unsubscribed(store, request)
		if not request.recipients:
			log.info(
				"%s: every recipient of %r has unsubscribed; nothing queued", account.name, request.subject
			)
			return None
	composed = compose(request, account, site, now=now)
	mail = OutgoingMail(
		name="",
		account=account.name,
		raw=composed.raw,
		message_id=composed.message_id,
		sender=composed.envelope_from,
		recipients=composed.recipients,
		next_try=None,
		document=composed.document,
		thread_token=composed.thread_token,
		extra={"personal": dict(composed.personal), "skipped": tuple(skipped)},
	)
	return store.queue_outgoing(mail, SentRecord.of(account, composed))


def _in_thread(store: ThreadIndex, account: AccountSettings, request: OutgoingRequest) -> OutgoingRequest:
	"""A reply takes the thread token and document of the message it answers, when known."""
	if not request.in_reply_to or (request.thread_token and request.document):
		return request
	ids = [i.strip().strip("<>") for i in request.in_reply_to]
	parent = store.find_by_message_ids(account.name, [i for i in ids if i])
	if parent is None:
		return request
	return dataclasses.replace(
		request,
		thread_token=request.thread_token or parent.thread_token,
		document=request.document or parent.document,
	)


def _without_unsubscribed(store: Suppressions, request: OutgoingRequest) -> tuple[OutgoingRequest, list[str]]:
	skipped: list[str] = []

	def keep(addresses: tuple[str, ...]) -> tuple[str, ...]:
		kept = []
		for value in addresses:
			address = parse_address(value, "recipient").addr_spec
			if store.is_unsubscribed(address):
				skipped.append(address)
			else:
				kept.append(value)
		return tuple(kept)

	request = dataclasses.replace(request, to=keep(request.to), cc=keep(request.cc), bcc=keep(request.bcc))
	return request, skipped


# -- links -----------------------------------------------------------------------------------


def track_open(store: OpenTracking, site: SiteSettings, token: str, *, now: datetime | None = None) -> bool:
	"""The tracking pixel was loaded: mark its message Opened. BadToken when forged or altered."""
	payload = verify_tracking(site, token)
	return store.mark_opened(payload["account"], payload["message_id"], now or _utcnow())


def unsubscribe(store: Suppressions, site: SiteSettings, token: str, *, now: datetime | None = None) -> dict:
	"""Record the unsubscribe a link asks for (once). Returns its payload with ``new``: whether it
	was recorded now. BadToken when the link is forged or altered."""
	payload = _verify_unsubscribe(site, token)
	document = None
	if payload.get("doctype") and payload.get("name"):
		document = DocRef(payload["doctype"], payload["name"])
	new = store.record_unsubscribe(
		payload["email"], account=payload.get("account"), document=document, now=now or _utcnow()
	)
	return {**payload, "new": new}


# -- flushing ----------------------------------------------------------------------------------


@dataclass
class MailReport:
	"""What one attempt did with one message."""

	name: str
	account: str
	message_id: str
	status: str
	accepted: tuple[str, ...] = ()
	refused: dict[str, tuple[int, str]] = field(default_factory=dict)
	error: str | None = None
	retries: int = 0
	next_try: datetime | None = None

	def as_dict(self) -> dict[str, Any]:
		data = dataclasses.asdict(self)
		data["refused"] = {k: list(v) for k, v in self.refused.items()}
		data["next_try"] = self.next_try.isoformat() if self.next_try else None
		return data


@dataclass
class FlushReport:
	mails: list[MailReport] = field(default_factory=list)
	errors: dict[str, str] = field(default_factory=dict)  # account -> why its session failed
	warnings: list[str] = field(default_factory=list)
	sessions: int = 0  # SMTP connections opened

	def count(self, status: str) -> int:
		return sum(1 for m in self.mails if m.status == status)

	@property
	def ok(self) -> bool:
		return not self.errors and all(m.status == SENT for m in self.mails)

	def as_dict(self) -> dict[str, Any]:
		return {
			"ok": self.ok,
			"sent": self.count(SENT),
			"partly_sent": self.count(PARTLY_SENT),
			"failed": self.count(FAILED),
			"queued_again": self.count(QUEUED),
			"errors": dict(self.errors),
			"warnings": list(self.warnings),
			"mails": [m.as_dict() for m in self.mails],
		}


SenderFactory = Callable[[AccountSettings], Any]
MailboxFactory = Callable[[AccountSettings], Any]


def flush(
	store: Outbox,
	accounts: Iterable[AccountSettings],
	*,
	sender_factory: SenderFactory | None = None,
	imap_factory: MailboxFactory | None = None,
	now: datetime | None = None,
	limit: int | None = None,
) -> FlushReport:
	"""Send what is due in the outbox for ``accounts`` (those with enable_outgoing).

	One SMTP session per account, one IMAP session per account for the Sent-folder copies. A
	session that cannot be opened leaves that account's mail queued for a retry and the other
	accounts go on. ``limit`` caps how many messages this call sends.
	"""
	now = now or _utcnow()
	report = FlushReport()
	outgoing = [a for a in accounts if a.enable_outgoing]
	released = store.release_stale(now - SENDING_LEASE, now)
	if released:
		report.warnings.append(
			f"{released} message(s) left in Sending by an interrupted run were queued again"
		)
	budget = limit
	for account in outgoing:
		if budget is not None and budget <= 0:
			break
		sent = _flush_account(store, account, report, sender_factory, imap_factory, now, budget)
		if budget is not None:
			budget -= sent
	return report


def _flush_account(
	store: Outbox,
	account: AccountSettings,
	report: FlushReport,
	sender_factory: SenderFactory | None,
	imap_factory: MailboxFactory | None,
	now: datetime,
	budget: int | None,
) -> int:
	from .transports.smtp import SmtpSender

	make_sender = sender_factory or SmtpSender
	handled = 0
	sender = None
	with contextlib.ExitStack() as stack:
		sent_copies = _SentCopies(account, imap_factory, stack, report)
		try:
			while budget is None or handled < budget:
				size = CLAIM_BATCH if budget is None else min(CLAIM_BATCH, budget - handled)
				batch = store.claim_due(now, accounts=[account.name], limit=size)
				if not batch:
					break
				for index, mail in enumerate(batch):
					handled += 1
					try:
						if sender is None and mail.recipients:
							sender = stack.enter_context(make_sender(account))
							report.sessions += 1
						_send_one(store, sender, mail, sent_copies, now, report)
					except TransportError as exc:  # no session, or it could not be opened again
						report.errors[account.name] = scrub(f"{exc.title}: {exc}")
						for rest in batch[index:]:
							_defer(store, rest, str(exc), now, report)
						return handled
		finally:
			# reconnections after the server dropped the session
			report.sessions += max(getattr(sender, "sessions", 1) - 1, 0) if sender is not None else 0
	return handled


class _SentCopies:
	"""The Sent-folder copies of one account's batch, over one IMAP session opened when needed."""

	def __init__(self, account: AccountSettings, factory: MailboxFactory | None, stack, report: FlushReport):
		self.account = account
		self.factory = factory
		self.stack = stack
		self.report = report
		self.mailbox = None
		self.folder: str | None = None
		self.broken = False

	def append(self, raw: bytes) -> bool:
		if not self.account.append_emails_to_sent_folder or self.broken:
			return False
		from .transports.smtp import append_to_sent

		try:
			if self.mailbox is None:
				factory = self.factory or _open_imap
				self.mailbox = self.stack.enter_context(factory(self.account))
			self.folder = append_to_sent(
				self.mailbox, raw, sent_folder_name=self.account.sent_folder_name, folder=self.folder
			)
			return True
		except EmailSyncError as exc:
			self.broken = True
			self.report.warnings.append(
				f"{self.account.name}: sent, but the copy in the Sent folder was not made: {exc}"
			)
			return False


def _open_imap(account: AccountSettings):
	from .transports.imap import ImapMailbox

	return ImapMailbox(account)


def _send_one(
	store: Outbox, sender, mail: OutgoingMail, copies: _SentCopies, now: datetime, report: FlushReport
) -> None:
	personal: Mapping[str, bytes] = mail.extra.get("personal") or {}
	failed: dict[str, tuple[int, str]] = dict(mail.extra.get("failed") or {})
	groups: dict[bytes, list[str]] = {}
	for rcpt in mail.recipients:
		groups.setdefault(personal.get(rcpt, mail.raw), []).append(rcpt)

	accepted: list[str] = []
	refused: dict[str, tuple[int, str]] = {}
	errors: list[str] = []
	for raw, rcpts in groups.items():
		got, said, error = _attempt(sender, raw, mail.sender, rcpts)
		store.record_delivery(mail.name, got, said, now)
		accepted += got
		refused.update(said)
		if error:
			errors.append(error)

	sent_to = (*mail.sent_to, *accepted)
	failed.update({r: v for r, v in refused.items() if v[0] >= 500})
	pending = [r for r in mail.recipients if r not in accepted and r not in failed]
	sent_copy = bool(mail.extra.get("sent_copy"))
	if sent_to and not sent_copy:
		sent_copy = copies.append(mail.raw)

	error = "; ".join(dict.fromkeys(errors)) or None
	if not error and refused:
		error = "; ".join(f"{r}: {code} {text}" for r, (code, text) in refused.items())
	retries = mail.retries
	if pending and retries + 1 <= MAX_RETRIES:
		retries += 1
		next_try = now + retry_delay(retries)
		store.finish(
			mail.name,
			status=QUEUED,
			now=now,
			error=error,
			retries=retries,
			next_try=next_try,
			delivery_status=RETRY_DELIVERY_STATUS,
			sent_copy=sent_copy,
		)
		report.mails.append(
			MailReport(
				mail.name,
				mail.account,
				mail.message_id,
				QUEUED,
				tuple(accepted),
				refused,
				error,
				retries,
				next_try,
			)
		)
		return
	if pending:
		error = f"given up after {retries + 1} tries: {error or 'no reason given'}"
		failed.update({r: (0, error) for r in pending})
	status = SENT if not failed else (PARTLY_SENT if sent_to else FAILED)
	store.finish(
		mail.name,
		status=status,
		now=now,
		error=error if status != SENT else None,
		retries=retries,
		delivery_status=DELIVERY_STATUS[status],
		sent_copy=sent_copy,
	)
	report.mails.append(
		MailReport(
			mail.name,
			mail.account,
			mail.message_id,
			status,
			tuple(accepted),
			refused,
			error if status != SENT else None,
			retries,
		)
	)


def _attempt(
	sender, raw: bytes, from_addr: str, rcpts: list[str]
) -> tuple[list[str], dict[str, tuple[int, str]], str | None]:
	"""(accepted, refused with the server's words, error) of sending ``raw`` to ``rcpts`` once; the
	words and the error are scrubbed of secrets, as they go to the store."""
	from .transports.smtp import RecipientsDeferred, RecipientsRefused

	try:
		outcome = sender.send(raw, from_addr, rcpts)
	except (RecipientsRefused, RecipientsDeferred) as exc:
		return [], _scrubbed(exc.refused), scrub(str(exc))
	except TemporarySendError as exc:
		return [], {}, scrub(str(exc))
	except PermanentSendError as exc:
		code = getattr(exc, "smtp_code", None) or 554
		return [], {r: (code, exc.message) for r in rcpts}, scrub(str(exc))
	return list(outcome.accepted), _scrubbed(outcome.refused), None


def _scrubbed(refused: Mapping[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
	return {rcpt: (code, scrub(str(words))) for rcpt, (code, words) in refused.items()}


def _defer(store: Outbox, mail: OutgoingMail, error: str, now: datetime, report: FlushReport) -> None:
	"""The account's session failed before this mail was tried: queue it again (or give up)."""
	error = scrub(error)
	retries = mail.retries + 1
	if retries > MAX_RETRIES:
		sent_to = bool(mail.sent_to)
		status = PARTLY_SENT if sent_to else FAILED
		error = f"given up after {retries} tries: {error}"
		store.finish(
			mail.name,
			status=status,
			now=now,
			error=error,
			retries=mail.retries,
			delivery_status=DELIVERY_STATUS[status],
		)
		report.mails.append(
			MailReport(mail.name, mail.account, mail.message_id, status, error=error, retries=mail.retries)
		)
		return
	next_try = now + retry_delay(retries)
	store.finish(
		mail.name,
		status=QUEUED,
		now=now,
		error=error,
		retries=retries,
		next_try=next_try,
		delivery_status=RETRY_DELIVERY_STATUS,
	)
	report.mails.append(
		MailReport(
			mail.name, mail.account, mail.message_id, QUEUED, error=error, retries=retries, next_try=next_try
		)
	)
