"""A pull: new mail from one account's mailbox into the Store, exactly once.

Per folder: read the cursor (uidvalidity, last uid), ask the server only for newer UIDs (or the
unseen ones, or the initial sync count on a first run), fetch them in batches with BODY.PEEK so
nothing is marked read by fetching, parse, route, and hand each message to the Store, which
commits the message, what it creates and the cursor together. Only then, in UNSEEN mode, is the
message flagged \\Seen on the server. A message that fails is recorded with its raw bytes and the
error, and the pull goes on.

A crash between a commit and its flag leaves stored mail unseen: the next pull flags what lies
between the cursor's ``seen_uid`` and ``last_uid`` and the store knows (by UID, or by Message-ID for
a duplicate, which commits only the cursor). After a UIDVALIDITY change every UID is new: the pull
recognises the mail it holds by Message-ID, fetches only the rest, and in UNSEEN mode flags the
held mail \\Seen before it writes a cursor of the new UIDVALIDITY, since nothing would flag it later.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

from .compose import SiteSettings
from .errors import EmailSyncError, TimeLimitReached, TransportError
from .parse_worker import ParseWorker
from .parsing import IncomingMessage, parse_message
from .routing import Router
from .secrets import scrub
from .settings import AccountSettings, FolderSettings
from .store import Cursor, Decision, DocRef, Location, PullStore, SendStore
from .transports import uid_batches

log = logging.getLogger(__name__)

BATCH_SIZE = 100
BATCH_BYTES = 8 * 1024 * 1024  # a batch's messages, at most (but one message of any size)
PARSE_PROCESS_MIN = 200  # messages to fetch from which a second process parses (it takes ~0.2 s to start)

ProgressCallback = Callable[[str, int, int], None]  # (folder, done, total)


@dataclass
class MessageReport:
	"""What happened to one message (kept for --json and --dry-run)."""

	message_id: str
	action: str  # created, linked, stored, bounced, skipped, duplicate, failed
	reason: str = ""
	rule: str | None = None
	document: DocRef | None = None
	folder: str = ""
	uid: str = ""
	subject: str = ""
	sender: str = ""

	def as_dict(self) -> dict[str, Any]:
		data = dataclasses.asdict(self)
		data["document"] = (
			{"doctype": self.document.doctype, "name": self.document.name} if self.document else None
		)
		return data


@dataclass
class AccountReport:
	"""The outcome of pulling one account."""

	name: str
	fetched: int = 0
	stored: int = 0
	duplicates: int = 0
	skipped: int = 0
	failed: int = 0
	created: int = 0
	linked: int = 0
	error: str | None = None
	error_title: str | None = None
	messages: list[MessageReport] = field(default_factory=list)
	keep_messages: bool = False

	@property
	def ok(self) -> bool:
		return self.error is None and self.failed == 0

	def add(self, item: MessageReport) -> None:
		if item.action in ("created", "linked", "stored", "bounced"):
			self.stored += 1
			self.created += item.action == "created"
			self.linked += item.action == "linked"
		elif item.action == "duplicate":
			self.duplicates += 1
		elif item.action == "skipped":
			self.skipped += 1
		elif item.action == "failed":
			self.failed += 1
		if self.keep_messages:
			self.messages.append(item)

	def as_dict(self, *, messages: bool = False) -> dict[str, Any]:
		data: dict[str, Any] = {
			"name": self.name,
			"fetched": self.fetched,
			"stored": self.stored,
			"duplicates": self.duplicates,
			"skipped": self.skipped,
			"failed": self.failed,
			"created": self.created,
			"linked": self.linked,
			"error": self.error,
		}
		if messages:
			data["messages"] = [m.as_dict() for m in self.messages]
		return data


_ACTION_OF_DECISION = {"create": "created", "link": "linked", "store": "stored", "bounce": "bounced"}


class Puller:
	"""Pulls one account into a store. ``mailbox_factory(account)`` opens the incoming mailbox
	(a seam for tests); by default IMAP or POP3 per the account. With ``site``, the store must also
	hold an outbox (``SendStore``): the pull queues auto-replies and records unsubscribes."""

	def __init__(
		self,
		account: AccountSettings,
		store: PullStore,
		*,
		mailbox_factory: Callable[[AccountSettings], Any] | None = None,
		router: Router | None = None,
		dry_run: bool = False,
		keep_messages: bool = False,
		progress: ProgressCallback | None = None,
		batch_size: int = BATCH_SIZE,
		site: SiteSettings | None = None,
		parse_process: bool | None = None,
		now: datetime | None = None,
	):
		self.account = account
		self.store = store
		self.mailbox_factory = mailbox_factory or self._open_incoming
		self.router = router or Router(account, store, site=site, now=now)
		self.dry_run = dry_run
		self.progress = progress
		self.batch_size = batch_size
		self.batch_bytes = BATCH_BYTES
		#: SiteSettings for the mail a pull sends (auto-replies); None sends nothing
		self.site = site
		#: parse in a second process: None decides per folder (a long pull on a machine with 2+ cores);
		#: the shells pass what their environment says (EMAIL_ACCOUNT_APP_PARSE_PROCESS)
		self.parse_process = parse_process
		self._worker: ParseWorker | None = None
		self.report = AccountReport(account.name, keep_messages=keep_messages or dry_run)
		#: when the pull stops (time.monotonic()), whatever is left: account.pull_timeout from the start
		self.stop_at: float | None = None

	# -- entry ---------------------------------------------------------------------------------

	def run(self) -> AccountReport:
		self.stop_at = time.monotonic() + self.account.pull_timeout
		try:
			with self.mailbox_factory(self.account) as mailbox:
				if self.account.use_imap:
					for folder in self.account.sync_folders:
						self._check_time()
						self._pull_imap_folder(mailbox, folder)
				else:
					self._pull_pop3(mailbox)
		except TimeLimitReached:
			exc = self._time_limit()
			self.report.error = str(exc)
			self.report.error_title = exc.title
			log.warning("pull of %s stopped: %s", self.account.name, exc)
		except EmailSyncError as exc:
			self.report.error = str(exc)
			self.report.error_title = exc.title
			log.warning("pull of %s stopped: %s", self.account.name, exc)
		finally:
			if self._worker is not None:
				self._worker.close()
				self._worker = None
		return self.report

	def _open_incoming(self, account: AccountSettings):
		from .transports import open_incoming

		return open_incoming(account, stop_at=self.stop_at)

	def _check_time(self) -> None:
		if self.stop_at is not None and time.monotonic() >= self.stop_at:
			raise self._time_limit()

	def _time_limit(self) -> TimeLimitReached:
		return TimeLimitReached(
			f"The pull of {self.account.name} stopped after {self.account.pull_timeout:g} seconds, its time "
			"limit (pull_timeout), with mail still to read.",
			hint="Nothing is lost: the next pull goes on where this one stopped.",
		)

	def _use_parse_process(self, count: int) -> bool:
		if self.parse_process is not None:
			return self.parse_process
		cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
		return count >= PARSE_PROCESS_MIN and (cores or 1) >= 2

	# -- IMAP ----------------------------------------------------------------------------------

	def _pull_imap_folder(self, mailbox, folder: FolderSettings) -> None:
		unseen = self.account.email_sync_option == "UNSEEN"
		name = folder.folder_name
		status = mailbox.select(name, readonly=self.dry_run or not unseen)
		cursor = self.store.get_cursor(self.account.name, name)
		# the cursor kept for this UIDVALIDITY of the folder, if any
		kept = cursor if cursor is not None and cursor.uidvalidity == status.uidvalidity else None
		same = kept is not None
		last_uid = kept.last_uid if kept is not None else 0
		seen_uid = kept.seen_uid if kept is not None and unseen else None
		if unseen and same and not self.dry_run and (seen_uid or 0) < last_uid:
			seen_uid = self._flag_committed(mailbox, name, status.uidvalidity, seen_uid or 0, last_uid)
		uids = self._uids_to_fetch(mailbox, status.uidvalidity, cursor, unseen)
		# Every UID below UIDNEXT (as of the SELECT) that needed reading is in ``uids``: once they are
		# handled, the cursor may move up to UIDNEXT - 1.
		high = max(last_uid, (status.uidnext or 1) - 1)
		if not uids:
			if not self.dry_run and (not same or high > last_uid):
				self.store.set_cursor(
					self.account.name, name, Cursor(status.uidvalidity, high, high if unseen else None)
				)
			return

		sizes = mailbox.fetch_sizes(uids)
		if self._worker is None and self._use_parse_process(len(uids)):
			try:
				self._worker = ParseWorker()
			except OSError as exc:  # no interpreter to start (an embedded Python): parse here
				log.warning("%s: could not start a parsing process (%s)", self.account.name, exc)
		total, done = len(uids), 0
		for chunk, items in self._read_ahead(mailbox, uids, sizes):
			for uid, raw, oversized in items:
				last_uid = max(last_uid, uid)
				location = Location(name, status.uidvalidity, str(uid))
				self._handle(
					location,
					raw,
					folder,
					Cursor(status.uidvalidity, last_uid, seen_uid),
					oversized=oversized,
					size=sizes.get(uid),
					parsed=self._worker.result() if self._worker is not None else None,
				)
			done += len(chunk)
			if not self.dry_run:
				# UIDs the server no longer had (expunged while we read) move the cursor on too
				last_uid = max(last_uid, chunk[-1])
				if unseen:
					self._pending_seen.extend(chunk)
					seen_uid = self._flagged_through or seen_uid
				self.store.set_cursor(self.account.name, name, Cursor(status.uidvalidity, last_uid, seen_uid))
			if self.progress:
				self.progress(name, done, total)
			self._check_time()
		if not self.dry_run:
			# everything read is now flagged (UNSEEN mode), and the cursor may move up to UIDNEXT - 1
			seen_uid = max(high, last_uid) if unseen else None
			self.store.set_cursor(
				self.account.name, name, Cursor(status.uidvalidity, max(high, last_uid), seen_uid)
			)

	def _flag_committed(self, mailbox, folder: str, uidvalidity: int, seen_uid: int, last_uid: int) -> int:
		"""Flag \\Seen what an interrupted pull committed but did not get to flag."""
		found = mailbox.search(["UNSEEN", "UID", f"{seen_uid + 1}:{last_uid}"])
		pending = [uid for uid in found if seen_uid < uid <= last_uid]
		known = self.store.known_uids(self.account.name, folder, uidvalidity, among=[str(u) for u in pending])
		committed = [uid for uid in pending if str(uid) in known]
		others = [uid for uid in pending if str(uid) not in known]
		if others:  # a duplicate commits only the cursor, not its UID: recognise it by its Message-ID
			ids = mailbox.fetch_message_ids(others)
			held = self.store.known_message_ids(self.account.name, [i for i in ids.values() if i])
			committed = sorted([*committed, *(uid for uid in others if ids.get(uid) in held)])
		if committed:
			mailbox.mark_seen(committed)
		self.store.set_cursor(self.account.name, folder, Cursor(uidvalidity, last_uid, last_uid))
		return last_uid

	def _uids_to_fetch(self, mailbox, uidvalidity: int, cursor: Cursor | None, unseen: bool) -> list[int]:
		if cursor is not None and cursor.uidvalidity == uidvalidity:
			return mailbox.uids_above(cursor.last_uid, unseen_only=unseen)
		uids = mailbox.search(["UNSEEN"] if unseen else ["ALL"])
		if cursor is None:
			count = self.account.initial_sync_count
			return uids[-count:] if count else uids
		# UIDVALIDITY changed: every UID is new to us. Fetch only the Message-IDs and skip the
		# messages we already hold, so nothing is stored twice and nothing is missed.
		log.info(
			"%s: UIDVALIDITY changed (%s -> %s): resyncing",
			self.account.name,
			cursor.uidvalidity,
			uidvalidity,
		)
		ids = mailbox.fetch_message_ids(uids)
		known = self.store.known_message_ids(self.account.name, [i for i in ids.values() if i])
		held = {uid for uid in uids if ids.get(uid) in known}
		if unseen and held and not self.dry_run:
			# Stored before the change, and still unseen: a crash came between its commit and its
			# flag. Flag it now, before any cursor of the new UIDVALIDITY is written: nothing would
			# flag it later (the new cursor starts past it, and the store knows it by its old UID).
			mailbox.mark_seen(sorted(held))
		return [uid for uid in uids if uid not in held]

	def _read_ahead(
		self, mailbox, uids: Sequence[int], sizes: dict[int, int]
	) -> Iterator[tuple[Sequence[int], list[tuple[int, bytes, bool]]]]:
		"""(chunk, its messages), fetching the next chunk while the caller works on this one.

		One fetch at a time is in flight on the connection; between two fetches (the connection
		idle) the UIDs committed so far are flagged \\Seen. Memory holds at most two chunks.
		"""
		self._pending_seen: list[int] = []
		self._flagged_through: int | None = None
		chunks = list(uid_batches(uids, self.batch_size, sizes, self.batch_bytes))

		def fetch(chunk: Sequence[int]) -> list[tuple[int, bytes, bool]]:
			items = list(self._fetch_chunk(mailbox, chunk, sizes))
			if self._worker is not None:  # parsed in the worker while this thread fetches the next
				received_at = datetime.now(timezone.utc)
				for _uid, raw, _oversized in items:
					self._worker.submit(
						raw, attachment_limit=self.account.attachment_limit_bytes, received_at=received_at
					)
			return items

		with ThreadPoolExecutor(1, thread_name_prefix="email-sync-fetch") as reader:
			ahead = reader.submit(fetch, chunks[0])
			for index, chunk in enumerate(chunks):
				items = ahead.result()
				self._flag_pending(mailbox)
				if index + 1 < len(chunks):
					ahead = reader.submit(fetch, chunks[index + 1])
				yield chunk, items
				del items
			self._flag_pending(mailbox)

	def _flag_pending(self, mailbox) -> None:
		if self._pending_seen:
			mailbox.mark_seen(self._pending_seen)
			self._flagged_through = max(self._pending_seen)
			self._pending_seen = []

	def _fetch_chunk(
		self, mailbox, chunk: Sequence[int], sizes: dict[int, int]
	) -> Iterator[tuple[int, bytes, bool]]:
		"""(uid, raw, oversized) in uid order; an oversized message yields only its headers."""
		limit = self.account.message_size_limit
		big = {uid for uid in chunk if limit and sizes.get(uid, 0) > limit}
		small = [uid for uid in chunk if uid not in big]
		fetched = mailbox.iter_raw(small, sizes=sizes, batch_size=self.batch_size) if small else iter(())
		pending = next(fetched, None)
		for uid in chunk:
			if uid in big:
				yield uid, mailbox.fetch_headers(uid), True
				continue
			while pending is not None and pending[0] < uid:
				pending = next(fetched, None)
			if pending is not None and pending[0] == uid:
				yield uid, pending[1], False
				pending = next(fetched, None)

	# -- POP3 ----------------------------------------------------------------------------------

	def _pull_pop3(self, mailbox) -> None:
		folder = self.account.sync_folders[0]
		cursor = self.store.get_cursor(self.account.name, folder.folder_name)
		known = self.store.known_uids(self.account.name, folder.folder_name, 0)
		new = [(number, uidl) for number, uidl in mailbox.list_uidls() if uidl not in known]
		marker = Cursor(0, 0)
		count = self.account.initial_sync_count
		if cursor is None and count and len(new) > count:
			older, new = new[:-count], new[-count:]
			if not self.dry_run:
				self.store.ignore_uids(
					self.account.name, folder.folder_name, 0, [u for _, u in older], marker
				)
		if not new:
			if cursor is None and not self.dry_run:
				self.store.set_cursor(self.account.name, folder.folder_name, marker)
			return
		sizes = mailbox.sizes()
		limit = self.account.message_size_limit
		for done, (number, uidl) in enumerate(new, 1):
			oversized = bool(limit and sizes.get(number, 0) > limit)
			raw = mailbox.top(number, 0) if oversized else mailbox.retrieve(number)
			location = Location(folder.folder_name, 0, uidl)
			self._handle(location, raw, folder, marker, oversized=oversized, size=sizes.get(number))
			if self.progress:
				self.progress(folder.folder_name, done, len(new))
			self._check_time()

	# -- one message ---------------------------------------------------------------------------

	def _handle(
		self,
		location: Location,
		raw: bytes,
		folder: FolderSettings,
		cursor: Cursor,
		*,
		oversized: bool = False,
		size: int | None = None,
		parsed: IncomingMessage | None = None,
	) -> None:
		"""Parse (unless ``parsed`` already), route and store one message; one that fails is
		recorded with its error."""
		self.report.fetched += 1
		message_id = None
		try:
			message = self._parse(raw, oversized=oversized, size=size, parsed=parsed)
			message_id = message.message_id
			decision = self.router.decide(message, folder)
			item = self._store(location, message, decision, cursor)
		except TransportError:
			raise
		except Exception as exc:
			log.exception("%s: message %s failed", self.account.name, location)
			# what a store can write whatever the message held (an error may quote its text),
			# with no secret in it
			error = scrub(
				f"{type(exc).__name__}: {exc}"[:2000].encode("utf-8", "replace").decode().replace("\x00", "")
			)
			if not self.dry_run:
				self.store.record_failure(
					self.account.name, location, raw, error, cursor, message_id=message_id
				)
			item = MessageReport(
				message_id or "", "failed", reason=error, folder=location.folder, uid=location.uid
			)
		self.report.add(item)

	def _parse(
		self, raw: bytes, *, oversized: bool, size: int | None, parsed: IncomingMessage | None = None
	) -> IncomingMessage:
		message = (
			parsed
			if parsed is not None
			else parse_message(
				raw,
				attachment_limit=self.account.attachment_limit_bytes,
				received_at=datetime.now(timezone.utc),
			)
		)
		if not oversized:
			return message
		limit_mb = (self.account.message_size_limit or 0) / 1024 / 1024
		note = (
			f"This message is {(size or 0) / 1024 / 1024:.1f} MB, over this account's limit of "
			f"{limit_mb:.0f} MB, so only its headers were downloaded. Open it in a mail client to read it."
		)
		return dataclasses.replace(
			message,
			text_content=note,
			reply_text=note,
			html_content="",
			warnings=(*message.warnings, note),
		)

	def _store(
		self, location: Location, message: IncomingMessage, decision: Decision, cursor: Cursor
	) -> MessageReport:
		item = MessageReport(
			message.message_id,
			_ACTION_OF_DECISION.get(decision.action, "skipped"),
			reason=decision.reason,
			rule=decision.rule,
			document=decision.document,
			folder=location.folder,
			uid=location.uid,
			subject=message.subject,
			sender=message.sender.email if message.sender else "",
		)
		if self.dry_run:
			if self.store.known_message_ids(self.account.name, [message.message_id]):
				item.action, item.reason = "duplicate", "already imported"
			return item
		if decision.action == "skip":
			if decision.unsubscribe is not None:
				self._unsubscribe(decision.unsubscribe)
			result = self.store.record_skip(self.account.name, location, message, decision.reason, cursor)
		else:
			result = self.store.save_received(self.account.name, location, message, decision, cursor)
		if result.duplicate:
			item.action, item.reason = "duplicate", "already imported"
			return item
		if result.document is not None:
			item.document = result.document
		if self.account.enable_auto_reply and self.site is not None and decision.action != "skip":
			self._auto_reply(message, result, decision)
		return item

	def _unsubscribe(self, request: dict) -> None:
		"""Record what a List-Unsubscribe mail asks, before the mail itself is recorded as skipped:
		recording twice (after a crash between the two) changes nothing."""
		from .outbox import unsubscribe

		assert self.site is not None  # the router recognises such mail only with the site's secret
		unsubscribe(self._sending_store(), self.site, request["token"])

	def _auto_reply(self, message: IncomingMessage, result, decision: Decision) -> None:
		"""Queue the auto-reply; the message is already stored, so a failure here is only logged."""
		from .autoreply import maybe_auto_reply

		assert self.site is not None  # _store() asks only with a site
		try:
			maybe_auto_reply(self._sending_store(), self.account, self.site, message, result, decision)
		except EmailSyncError as exc:
			log.warning("%s: no auto-reply to %s: %s", self.account.name, message.message_id, exc)

	def _sending_store(self) -> SendStore:
		"""The store as the one that sends: with ``site``, a shell hands a store that holds an
		outbox too (``jobs.pull``; both stores implement every port)."""
		return cast("SendStore", self.store)
