"""The storage ports: what the engine asks of storage, each port named for what it holds, and the
records they pass.

Ports (each a small Protocol; a store implements all of them):
- ``FolderCursors``: how far each folder has been read (cursors, handled and ignored uids);
- ``MessageLedger``: what each message became (received, skipped with its reason, failed with its
  raw bytes), and which Message-IDs an account already holds;
- ``ThreadIndex``: stored mail and documents as threading sees them;
- ``ReplyWatch``: received mail waiting for an answer, and the notices given for it;
- ``OutgoingQueue``: where the engine's own mail waits to go out; ``Outbox``: the CLI's outbox,
  from queued to sent;
- ``Suppressions``: addresses that unsubscribed; ``OpenTracking``: mail that was opened;
- ``AutoReplyLog``: auto-replies given, per thread and per sender.
Stores only query and persist: every rule (reopening, unreplied, which account sends, whether an
auto-reply goes out) is an engine function. Two stores implement the ports:
``email_account_app.sqlite_store.SQLiteStore`` (the CLI, tests, benchmarks) and
``email_account_app.frappe_store.FrappeStore`` (a Frappe site).

Guarantees a store gives:
- ``save_received``, ``record_skip`` and ``record_failure`` each commit the message, what it
  created or linked, and the folder cursor in ONE transaction, so a crash leaves either all of it
  or none of it.
- An account never holds two messages with the same Message-ID, nor two with the same location
  (folder, uidvalidity, uid): saving such a message again returns ``duplicate=True`` and changes
  nothing but the cursor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
	from .outbox import SentRecord
	from .parsing import IncomingMessage


@dataclass(frozen=True)
class Cursor:
	"""How far a folder has been read: its UIDVALIDITY and the highest UID handled.

	``seen_uid`` (UNSEEN mode) is the highest UID flagged \\Seen on the server after its commit;
	when a crash falls between the two, the next pull flags what was committed and not yet flagged.
	"""

	uidvalidity: int
	last_uid: int
	seen_uid: int | None = None


@dataclass(frozen=True)
class Location:
	"""Where a message was found. For POP3, folder is "INBOX", uidvalidity 0 and uid the UIDL."""

	folder: str
	uidvalidity: int
	uid: str


@dataclass(frozen=True)
class DocRef:
	doctype: str
	name: str

	def __str__(self) -> str:
		return f"{self.doctype} {self.name}"


@dataclass(frozen=True)
class CommunicationRef:
	"""A stored communication, as threading needs to know it."""

	name: str
	account: str
	message_id: str
	sent_or_received: str  # "Sent" or "Received"
	document: DocRef | None = None
	subject: str = ""
	sender: str = ""
	thread_token: str | None = None


@dataclass(frozen=True)
class Decision:
	"""What to do with one incoming message; the router decides, the Store carries it out.

	action:
	- "create": a new thread; create a document of ``append_to`` (when set) from the message.
	- "link": join an existing thread: ``thread`` (and its document, reopened when it has a status).
	- "store": keep the communication with no document (no append_to, no thread).
	- "bounce": a delivery report on ``bounced`` (an outgoing message of ours): mark it.
	- "skip": do not import (``reason`` says why); recorded, never dropped silently. With
	  ``unsubscribe``, the mail asks (through our List-Unsubscribe mailto:) to unsubscribe.
	"""

	action: str
	reason: str = ""
	#: the status to set on the linked document (a reply reopening it; ``threads.reopened_status``)
	set_status: str | None = None
	rule: str | None = None
	append_to: str | None = None
	thread: CommunicationRef | None = None
	document: DocRef | None = None
	timeline_links: tuple[DocRef, ...] = ()
	bounced: CommunicationRef | None = None
	thread_token: str | None = None
	#: a skipped List-Unsubscribe mail: the payload (email, account, doctype, name, token) to record
	unsubscribe: dict | None = None


@dataclass(frozen=True)
class DocumentState:
	"""A stored document as the rules see it: its status (None when its DocType has none) and
	whether its DocType offers an "Open" status to go back to."""

	status: str | None
	can_open: bool = False


@dataclass(frozen=True)
class WaitingMail:
	"""Received mail with no unreplied notice yet (``ReplyWatch``)."""

	ref: CommunicationRef
	received_at: datetime
	automatic: bool = False


@dataclass(frozen=True)
class SaveResult:
	communication: str | None
	document: DocRef | None = None
	created: bool = False
	duplicate: bool = False


@dataclass
class OutgoingMail:
	"""A queued outgoing message (the outbox)."""

	name: str
	account: str
	raw: bytes
	message_id: str
	sender: str
	recipients: tuple[str, ...]
	status: str = "Queued"  # Queued, Sending, Sent, Partly Sent, Failed, Bounced
	retries: int = 0
	next_try: datetime | None = None
	error: str | None = None
	sent_to: tuple[str, ...] = ()
	document: DocRef | None = None
	thread_token: str | None = None
	extra: dict = field(default_factory=dict)


@runtime_checkable
class FolderCursors(Protocol):
	"""How far each folder has been read."""

	def get_cursor(self, account: str, folder: str) -> Cursor | None: ...

	def set_cursor(self, account: str, folder: str, cursor: Cursor) -> None: ...

	def known_uids(
		self, account: str, folder: str, uidvalidity: int, among: Sequence[str] | None = None
	) -> set[str]:
		"""Every uid already handled at this folder and uidvalidity (POP3: every UIDL); with
		``among``, only those of these uids (a query that does not grow with the folder)."""
		...

	def ignore_uids(
		self, account: str, folder: str, uidvalidity: int, uids: Iterable[str], cursor: Cursor | None
	) -> None:
		"""Remember uids not to fetch (POP3 mail older than the initial sync count), with the cursor."""
		...


@runtime_checkable
class MessageLedger(Protocol):
	"""What each message became. Each method commits the message, what it created or linked, and
	the folder cursor in one transaction."""

	def known_message_ids(self, account: str, message_ids: Iterable[str]) -> set[str]:
		"""Which of these Message-IDs the account already holds (received, sent, skipped or failed)."""
		...

	def save_received(
		self,
		account: str,
		location: Location,
		message: IncomingMessage,
		decision: Decision,
		cursor: Cursor | None,
	) -> SaveResult:
		"""Store the message as ``decision`` says (a new document, a link, ``set_status`` on the
		linked document), with the cursor."""
		...

	def record_skip(
		self, account: str, location: Location, message: IncomingMessage, reason: str, cursor: Cursor | None
	) -> SaveResult: ...

	def record_failure(
		self,
		account: str,
		location: Location,
		raw: bytes,
		error: str,
		cursor: Cursor | None,
		message_id: str | None = None,
	) -> None: ...


@runtime_checkable
class ThreadIndex(Protocol):
	"""Stored mail and documents, as threading looks them up."""

	def find_by_message_ids(self, account: str, message_ids: Sequence[str]) -> CommunicationRef | None:
		"""The communication with one of these ids, trying them in the order given: the account's own
		(received or sent) first, else mail any account of the site sent (a reply to mail sent through
		one account often comes back to another, the default incoming one named in Reply-To)."""
		...

	def find_by_thread_token(self, account: str, token: str) -> CommunicationRef | None:
		"""The first communication of the thread with this token: the account's own, else one sent by
		any account of the site."""
		...

	def find_by_subject(
		self, account: str, normalized_subject: str, sender: str, since: datetime
	) -> CommunicationRef | None:
		"""The newest communication since ``since`` with this normalised subject and this sender
		among its participants."""
		...

	def document_state(self, ref: DocRef) -> DocumentState | None:
		"""The document's status, or None when there is no such document."""
		...

	def received_about(self, account: str, document: DocRef, limit: int = 50) -> list[CommunicationRef]:
		"""The mail the account received about ``document``, oldest first, ``limit`` at most."""
		...

	def document_doctypes(self) -> Iterable[str]:
		"""DocTypes whose names may appear in a subject ([#ISS-0001]) or a sub-address."""
		...


@runtime_checkable
class ReplyWatch(Protocol):
	"""Received mail waiting for an answer (``unreplied.unreplied_mail`` decides which waits)."""

	def received_without_notice(
		self, account: str, *, received_after: datetime, received_before: datetime
	) -> list[WaitingMail]:
		"""The account's received mail in this window with no unreplied notice yet, oldest first."""
		...

	def sent_on_thread_since(self, account: str, ref: CommunicationRef, since: datetime) -> bool:
		"""Whether mail was sent since ``since`` on the thread of ``ref``: on its document, with its
		thread token, or in reply to it."""
		...

	def claim_unreplied_notice(self, account: str, communication: str) -> bool:
		"""Mark the notice as given; False when it already was (so it is given once)."""
		...


@runtime_checkable
class OutgoingQueue(Protocol):
	"""Where the engine's own mail (auto-replies, notices) waits to go out: the SQLite outbox, or
	on a site core's Email Queue, which sends it through the app's send step."""

	def queue_outgoing(self, mail: OutgoingMail, record: SentRecord) -> OutgoingMail:
		"""Store ``mail`` to be sent (each recipient pending) and its Sent communication, together.
		Returns the mail with its ``name`` and ``extra["communication"]`` filled in."""
		...


@runtime_checkable
class Outbox(OutgoingQueue, Protocol):
	"""The engine's own outbox (the CLI's store): outgoing mail from queued to sent, claimed and
	finished by ``flush``. Every method that changes state does it in one transaction.

	An ``OutgoingMail`` given out by ``claim_due`` carries in ``recipients`` only the recipients
	still pending, in ``sent_to`` those already accepted, and in ``extra``: "communication" (the
	Sent communication's name), "personal" (recipient -> their own copy of the raw message, when
	the message carries a per-recipient link), "failed" (recipient -> (code, server's words)) and
	"sent_copy" (whether the copy in the Sent folder was made).
	"""

	def claim_due(self, now: datetime, *, accounts: Sequence[str], limit: int = 50) -> list[OutgoingMail]:
		"""Atomically move up to ``limit`` Queued mails of these accounts whose next_try is due
		(or unset) to Sending, oldest first, and return them."""
		...

	def release_stale(self, claimed_before: datetime, now: datetime) -> int:
		"""Queue again the mails left in Sending with a claim older than ``claimed_before`` (their
		process died), counting the interrupted attempt as a try. Returns how many."""
		...

	def record_delivery(
		self, name: str, accepted: Iterable[str], refused: Mapping[str, tuple[int, str]], now: datetime
	) -> None:
		"""Right after the server answered: ``accepted`` recipients become Sent; ``refused`` ones
		keep the server's code and words, and become Failed when the code is 5xx (4xx: still pending)."""
		...

	def finish(
		self,
		name: str,
		*,
		status: str,
		now: datetime,
		error: str | None = None,
		retries: int | None = None,
		next_try: datetime | None = None,
		delivery_status: str | None = None,
		sent_copy: bool | None = None,
	) -> None:
		"""End an attempt: ``status`` Queued (a retry at ``next_try``) or a final one (Sent, Partly
		Sent, Failed: every recipient still pending becomes Failed with ``error``). Sets the
		communication's delivery_status unless it is already Opened or Bounced."""
		...

	def get_outgoing(self, name: str) -> OutgoingMail | None:
		"""One outbox entry as it stands (``recipients``: all of them; ``extra["recipients"]``:
		recipient -> (status, code, server's words))."""
		...


@runtime_checkable
class Suppressions(Protocol):
	"""Addresses that want no more bulk or automatic mail."""

	def record_unsubscribe(
		self, email: str, *, account: str | None, document: DocRef | None, now: datetime
	) -> bool:
		"""Remember that ``email`` unsubscribed; False if it already had."""
		...

	def is_unsubscribed(self, email: str) -> bool: ...


@runtime_checkable
class OpenTracking(Protocol):
	def mark_opened(self, account: str, message_id: str, now: datetime) -> bool:
		"""The tracking pixel was loaded: the Sent communication becomes Opened (True if it exists)."""
		...


@runtime_checkable
class AutoReplyLog(Protocol):
	def auto_replies_since(self, account: str, sender: str, since: datetime) -> int:
		"""How many auto-replies ``account`` sent to ``sender`` since ``since``."""
		...

	def claim_auto_reply(self, account: str, thread_key: str, sender: str, now: datetime) -> bool:
		"""Record an auto-reply for this thread; False (and nothing recorded) if it already had one."""
		...


# -- what a use case needs: the ports it uses, together -------------------------------------------


class QueueStore(ThreadIndex, Suppressions, OutgoingQueue, Protocol):
	"""What queueing a message needs: its thread, the suppression list, the queue."""


class SendStore(QueueStore, AutoReplyLog, Protocol):
	"""What sending mail of the engine's own needs (auto-replies, notices)."""


class PullStore(FolderCursors, MessageLedger, ThreadIndex, Protocol):
	"""What a pull needs to read a mailbox and store what it finds."""


class MailStore(PullStore, SendStore, ReplyWatch, OpenTracking, Protocol):
	"""Every port a site's store holds: what a shell hands the engine's jobs. The CLI's store is
	also the ``Outbox`` that ``send_due`` flushes (on a site, core's Email Queue is)."""
