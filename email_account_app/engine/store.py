"""The Store protocol: everything the engine asks of storage, and the records it passes.

Two implementations: ``email_account_app.sqlite_store.SQLiteStore`` (the CLI, tests, benchmarks)
and ``email_account_app.frappe_store.FrappeStore`` (a Frappe site). Nothing in the engine knows
which one it has.

Guarantees a Store gives:
- ``save_received``, ``record_skip`` and ``record_failure`` each commit the message, what it
  created or linked, and the folder cursor in ONE transaction, so a crash leaves either all of it
  or none of it.
- An account never holds two messages with the same Message-ID, nor two with the same location
  (folder, uidvalidity, uid): saving such a message again returns ``duplicate=True`` and changes
  nothing but the cursor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
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
class Store(Protocol):
	# -- cursors -------------------------------------------------------------------------------
	def get_cursor(self, account: str, folder: str) -> Cursor | None: ...

	def set_cursor(self, account: str, folder: str, cursor: Cursor) -> None: ...

	# -- identity ------------------------------------------------------------------------------
	def known_message_ids(self, account: str, message_ids: Iterable[str]) -> set[str]:
		"""Which of these Message-IDs the account already holds (received, sent, skipped or failed)."""
		...

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

	# -- threading -----------------------------------------------------------------------------
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

	def document_exists(self, ref: DocRef) -> bool: ...

	def document_doctypes(self) -> Iterable[str]:
		"""DocTypes whose names may appear in a subject ([#ISS-0001]) or a sub-address."""
		...

	# -- unreplied notices ------------------------------------------------------------------------
	def unreplied(
		self, account: str, *, received_before: datetime, received_after: datetime
	) -> list[CommunicationRef]:
		"""Received, not automatic mail in this window with no notice yet, no mail sent on its thread
		(same document, or same thread token) since, and its document, if any, still open."""
		...

	def claim_unreplied_notice(self, account: str, communication: str) -> bool:
		"""Mark the notice as given; False when it already was (so it is given once)."""
		...

	# -- saving ---------------------------------------------------------------------------------
	def save_received(
		self,
		account: str,
		location: Location,
		message: IncomingMessage,
		decision: Decision,
		cursor: Cursor | None,
	) -> SaveResult: ...

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
