"""The engine's ports on a Frappe site.

The same semantics as ``sqlite_store.SQLiteStore`` + ``sqlite_outbox``, on documents:

- a received message is a Communication with core's fields as core's receive sets them
  (communication_medium "Email", sent_or_received, ``email_account``, ``uid`` (the IMAP UID; -1
  for POP3), ``imap_folder``, message_id, in_reply_to, reference_doctype/name, ``_seen`` for the
  users of the account's User Email rows, ``unread_notification_sent`` for the site's own
  notifications and for automatic mail), inserted with Communication's own hooks running (contacts
  per the account's create_contact, timeline links, the document's ``on_communication_update``),
  its attachments private Files attached to it, and, for a new thread of an account that appends
  to a DocType, a new document of that DocType made the way core makes one (the DocType's
  subject_field, sender_field and sender_name_field); once committed, the thread's participants are
  notified as core does (``Communication.send_email(is_inbound_mail_communcation=True)``);
- every message an account handled (received, sent, skipped, failed, or left out as older than the
  initial sync) is an Email Message Log, with unique indexes on (account, Message-ID) and
  (account, folder, UIDVALIDITY, UID): the ledger that recognises a message seen before, also
  under two pulls at once, and threads replies (thread tokens, normalised subjects); a Message-ID
  the account's Communications already hold (core stored it before the app) counts as seen too;
- folder cursors are Email Folder Cursor records; the engine's own mail (auto-replies, notices)
  goes into core's Email Queue, the site's one outbox, which sends it through the app's send step;
  unsubscribes are core's Email Unsubscribe; auto-replies given are Email Sync Auto Reply records.

Core's bookkeeping stays current, both ways: a folder with no cursor yet starts from core's
position (the IMAP Folder row's uidvalidity and the account's highest Communication.uid), and every
cursor saved also writes the IMAP Folder row's uidvalidity/uidnext and Email Account.uidnext, so
that core's own pull, after the app is uninstalled, goes on from where the app stopped.

Transactions: each method that changes state runs in a savepoint and, when the store commits
(the default, for the background jobs), commits at its end: a message, what it created and the
folder cursor are durable together before the engine flags the message \\Seen on the server, and a
failure rolls all of it back. Only the database is rolled back: files written for attachments of a
message that then failed stay on disk (as they do for core's receive).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import frappe
from frappe.utils import cint, escape_html, get_system_timezone

from .engine.compose import format_address, text_to_html
from .engine.outbox import QUEUED, SentRecord
from .engine.parsing import IncomingMessage, normalize_subject
from .engine.store import (
	CommunicationRef,
	Cursor,
	Decision,
	DocRef,
	DocumentState,
	Location,
	OutgoingMail,
	SaveResult,
	WaitingMail,
)

ACCOUNT = "Email Account"
IMAP_FOLDER = "IMAP Folder"
CURSOR = "Email Folder Cursor"
MESSAGE = "Email Message Log"
EMAIL_QUEUE = "Email Queue"
UNSUBSCRIBE = "Email Unsubscribe"
AUTO_REPLY = "Email Sync Auto Reply"
COMMUNICATION = "Communication"
#: core's field on Communication that names the Email Account it came in or went out by
ACCOUNT_FIELD = "email_account"

# Email Message Log statuses
RECEIVED, SENT_STATUS, SKIPPED, FAILED, IGNORED = "Received", "Sent", "Skipped", "Failed", "Ignored"
THREAD_STATUSES = (RECEIVED, SENT_STATUS)

#: the fields of each DocType this module reads or writes (checked against the JSON by the plain
#: test tests/test_doctype_json.py, so a renamed field cannot go unnoticed)
FIELDS_USED = {
	CURSOR: ("account", "folder", "uidvalidity", "last_uid", "seen_uid"),
	#: core's (read from core's JSON by the same test)
	IMAP_FOLDER: ("folder_name", "uidvalidity", "uidnext"),
	ACCOUNT: ("uidnext", "use_imap", "email_sync_option"),
	COMMUNICATION: ("email_account", "uid", "imap_folder", "unread_notification_sent", "message_id"),
	MESSAGE: (
		"account",
		"status",
		"subject",
		"sender",
		"date",
		"communication",
		"reference_doctype",
		"reference_name",
		"rule",
		"reason",
		"message_id",
		"thread_token",
		"participants",
		"folder",
		"uidvalidity",
		"uid",
		"message_key",
		"subject_key",
		"error",
		"raw_file",
	),
	AUTO_REPLY: ("account", "thread_key", "thread_hash", "sender", "sent_on"),
}

#: a Communication's delivery_status takes only core's options: the outbox's words, mapped
DELIVERY_STATUS_OPTIONS = {
	"Queued": "Sending",
	"Sending": "Sending",
	"Sent": "Sent",
	"Partly Sent": "Rejected",  # some recipients refused it; the outbox entry says which
	"Error": "Error",
	"Delayed": "Delayed",
	"Opened": "Opened",
	"Bounced": "Bounced",
}
KEEP_DELIVERY_STATUS = ("Opened", "Bounced")
#: statuses of a document that a customer's reply turns back to "Open" (core itself does "Replied")
NO_SUBJECT = "(no subject)"
CHUNK = 500


# -- helpers -------------------------------------------------------------------------------------


def key(value: str) -> str:
	"""A fixed-length key for a value too long to index (Message-IDs, subjects)."""
	return hashlib.sha1(value.encode("utf-8", "surrogatepass")).hexdigest()


def to_db(value: datetime | None) -> datetime | None:
	"""An aware datetime as the site stores one: naive, in the system time zone."""
	if value is None:
		return None
	if value.tzinfo is None:
		value = value.replace(tzinfo=timezone.utc)
	return value.astimezone(ZoneInfo(get_system_timezone())).replace(tzinfo=None)


def from_db(value: Any) -> datetime | None:
	"""A datetime the site stored (naive, system time zone) as an aware one in UTC."""
	if not value:
		return None
	if isinstance(value, str):
		value = frappe.utils.get_datetime(value)
	return value.replace(tzinfo=ZoneInfo(get_system_timezone())).astimezone(timezone.utc)


def _chunks(items: Sequence[Any], size: int = CHUNK):
	for start in range(0, len(items), size):
		yield items[start : start + size]


def doctype_exists(doctype: str | None) -> bool:
	return bool(doctype) and bool(frappe.db.exists("DocType", doctype))


def appendable_doctypes() -> list[str]:
	"""DocTypes mail may be appended to: "Email Append To" on (in the DocType or by Customize
	Form), as core's Email Account allows, plus those apps name in the ``email_append_to`` hook."""
	names = set(
		frappe.get_all("DocType", filters={"istable": 0, "issingle": 0, "email_append_to": 1}, pluck="name")
	)
	names.update(
		frappe.get_all(
			"Property Setter", filters={"property": "email_append_to", "value": "1"}, pluck="doc_type"
		)
	)
	names.update(frappe.get_hooks("email_append_to") or [])
	return sorted(name for name in names if doctype_exists(name))


def email_fields(doctype: str) -> frappe._dict:
	"""The DocType's subject_field, sender_field and sender_name_field (as core reads them)."""
	meta = frappe.get_meta(doctype)
	return frappe._dict(
		subject_field=meta.get("subject_field"),
		sender_field=meta.get("sender_field"),
		sender_name_field=meta.get("sender_name_field"),
	)


def _participants(*groups: Iterable[str]) -> str:
	seen: dict[str, None] = {}
	for group in groups:
		for address in group:
			if address:
				seen.setdefault(address.strip().lower(), None)
	return ",".join(seen)


# -- the store -----------------------------------------------------------------------------------


class FrappeStore:
	"""The Store and Outbox protocols on this site's documents.

	``commit``: commit at the end of each method that changes state (the background jobs). With
	False the caller owns the transaction (the tests, which roll back).
	"""

	def __init__(self, *, commit: bool = True):
		self.commit = commit
		self._doctypes: list[str] | None = None
		self._doctype_ok: dict[str, bool] = {}
		self._inbox_users: dict[str, list[str]] = {}
		self._accounts: dict[str, Any] = {}

	# -- transactions --------------------------------------------------------------------------

	@contextmanager
	def _transaction(self):
		"""One transaction per call: a savepoint, rolled back on any error; committed at the end
		(a message must be durable before the engine flags it \\Seen on the server)."""
		savepoint = f"email_sync_{frappe.generate_hash(length=8)}"
		frappe.db.savepoint(savepoint)
		try:
			yield
		except BaseException:
			frappe.db.rollback(save_point=savepoint)
			raise
		if self.commit:
			frappe.db.commit()  # nosemgrep: one transaction per message, see the module's docstring
		else:
			frappe.db.release_savepoint(savepoint)

	# -- cursors -------------------------------------------------------------------------------

	def get_cursor(self, account: str, folder: str) -> Cursor | None:
		row = frappe.db.get_value(
			CURSOR,
			{"account": account, "folder": folder},
			["uidvalidity", "last_uid", "seen_uid"],
			as_dict=True,
		)
		if not row:
			return self._core_position(account, folder)
		return Cursor(cint(row.uidvalidity), cint(row.last_uid), cint(row.seen_uid) or None)

	def _core_position(self, account: str, folder: str) -> Cursor | None:
		"""Where core's own pull stands in a folder the app has not read yet: the IMAP Folder row's
		UIDVALIDITY, and the highest UID of the account's received Communications (core keeps one
		number per account, not per folder: mail of another folder with the same UIDVALIDITY and a
		higher UID would hide this folder's; its Message-IDs are recognised anyway). None when core
		has not read the folder (no UIDVALIDITY): the engine's first-sync rule applies."""
		uidvalidity = frappe.db.get_value(
			IMAP_FOLDER, {"parenttype": ACCOUNT, "parent": account, "folder_name": folder}, "uidvalidity"
		)
		if not cint(uidvalidity):
			return None
		last_uid = frappe.db.sql(
			"""SELECT MAX(uid) FROM `tabCommunication` WHERE email_account=%(account)s
			AND sent_or_received='Received' AND communication_medium='Email'
			AND (imap_folder=%(folder)s OR COALESCE(imap_folder, '')='')""",
			{"account": account, "folder": folder},
		)[0][0]
		if not cint(last_uid) or cint(last_uid) < 0:
			return None
		last_uid = cint(last_uid)
		return Cursor(cint(uidvalidity), last_uid, last_uid)

	def set_cursor(self, account: str, folder: str, cursor: Cursor) -> None:
		with self._transaction():
			self._put_cursor(account, folder, cursor)

	def _put_cursor(self, account: str, folder: str, cursor: Cursor | None) -> None:
		"""Plain statements, not documents: this runs once per message, in its transaction."""
		if cursor is None:
			return
		values = (cursor.uidvalidity, cursor.last_uid, cursor.seen_uid or 0)
		rows = frappe.db.sql(
			f"SELECT name, uidvalidity, last_uid, seen_uid FROM `tab{CURSOR}` WHERE account=%s AND folder=%s",
			(account, folder),
		)
		if rows and tuple(cint(v) for v in rows[0][1:]) == values:
			return  # the folder's position (and core's, written with it) is this already
		if rows:
			frappe.db.sql(
				f"UPDATE `tab{CURSOR}` SET uidvalidity=%s, last_uid=%s, seen_uid=%s, modified=%s WHERE name=%s",
				(*values, frappe.utils.now_datetime(), rows[0][0]),
			)
		else:
			frappe.get_doc(
				{
					"doctype": CURSOR,
					"account": account,
					"folder": folder,
					"uidvalidity": values[0],
					"last_uid": values[1],
					"seen_uid": values[2],
				}
			).db_insert()
		self._put_core_position(account, folder, cursor)

	def _put_core_position(self, account: str, folder: str, cursor: Cursor) -> None:
		"""Core's own bookkeeping of an IMAP folder, as core's pull would leave it: the row's
		UIDVALIDITY (a string) and UIDNEXT, and the account's UIDNEXT."""
		if not cursor.uidvalidity:  # POP3: core keeps no position
			return
		uidnext = cursor.last_uid + 1
		frappe.db.sql(
			f"""UPDATE `tab{IMAP_FOLDER}` SET uidvalidity=%s, uidnext=%s
			WHERE parenttype=%s AND parent=%s AND folder_name=%s""",
			(str(cursor.uidvalidity), str(uidnext), ACCOUNT, account, folder),
		)
		frappe.db.sql(f"UPDATE `tab{ACCOUNT}` SET uidnext=%s WHERE name=%s", (uidnext, account))

	# -- identity ------------------------------------------------------------------------------

	def known_message_ids(self, account: str, message_ids: Iterable[str]) -> set[str]:
		ids = list(dict.fromkeys(i for i in message_ids if i))
		known: set[str] = set()
		for part in _chunks(ids):
			keys = {key(i): i for i in part}
			rows = frappe.get_all(
				MESSAGE, filters={"account": account, "message_key": ("in", list(keys))}, pluck="message_key"
			)
			known.update(keys[k] for k in rows)
			# a failed message keeps its Message-ID outside the unique key (it may succeed elsewhere)
			known.update(
				frappe.get_all(
					MESSAGE,
					filters={"account": account, "status": FAILED, "message_id": ("in", part)},
					pluck="message_id",
				)
			)
			known.update(self._communication_ids(account, part))
		return known

	@staticmethod
	def _communication_ids(account: str, message_ids: Sequence[str]) -> set[str]:
		"""Which of these Message-IDs the account's Communications hold (core's receive stored them,
		before the app or beside it)."""
		return set(
			frappe.get_all(
				COMMUNICATION,
				filters={ACCOUNT_FIELD: account, "message_id": ("in", list(message_ids))},
				pluck="message_id",
			)
		)

	def known_uids(
		self, account: str, folder: str, uidvalidity: int, among: Sequence[str] | None = None
	) -> set[str]:
		filters: dict[str, Any] = {"account": account, "folder": folder, "uidvalidity": uidvalidity}
		if among is None:
			return set(frappe.get_all(MESSAGE, filters=filters, pluck="uid"))
		wanted = list(dict.fromkeys(among))
		known: set[str] = set()
		for part in _chunks(wanted):
			known.update(frappe.get_all(MESSAGE, filters={**filters, "uid": ["in", part]}, pluck="uid"))
		return known

	def ignore_uids(
		self, account: str, folder: str, uidvalidity: int, uids: Iterable[str], cursor: Cursor | None
	) -> None:
		"""Older POP3 mail than the initial sync count: remembered (not fetched) in one insert."""
		uids = list(dict.fromkeys(uids))
		with self._transaction():
			self._put_cursor(account, folder, cursor)
			if not uids:
				return
			now = frappe.utils.now_datetime()
			user = frappe.session.user
			fields = ["name", "creation", "modified", "owner", "modified_by", "account", "status"]
			fields += ["folder", "uidvalidity", "uid", "reason"]
			reason = "older than the initial sync count: not imported"
			rows = [
				(
					frappe.generate_hash(),
					now,
					now,
					user,
					user,
					account,
					IGNORED,
					folder,
					uidvalidity,
					uid,
					reason,
				)
				for uid in uids
			]
			frappe.db.bulk_insert(MESSAGE, fields, rows, ignore_duplicates=True)

	def _exists(self, account: str, message_id: str | None, location: Location | None) -> bool:
		"""The ledger's (account, Message-ID) or (account, folder, UIDVALIDITY, UID), or a
		Communication of the account with the Message-ID (core stored it): one round trip."""
		parts: list[str] = []
		values: list[Any] = []
		if message_id:
			parts.append(f"SELECT 1 FROM `tab{MESSAGE}` WHERE account=%s AND message_key=%s")
			values += [account, key(message_id)]
			parts.append(f"SELECT 1 FROM `tab{COMMUNICATION}` WHERE {ACCOUNT_FIELD}=%s AND message_id=%s")
			values += [account, message_id]
		if location is not None:
			parts.append(
				f"SELECT 1 FROM `tab{MESSAGE}` WHERE account=%s AND folder=%s AND uidvalidity=%s AND uid=%s"
			)
			values += [account, location.folder, location.uidvalidity, location.uid]
		if not parts:
			return False
		return bool(frappe.db.sql(" UNION ALL ".join(f"({p} LIMIT 1)" for p in parts) + " LIMIT 1", values))

	# -- threading -----------------------------------------------------------------------------

	_REF_FIELDS = (
		"communication",
		"account",
		"message_id",
		"status",
		"reference_doctype",
		"reference_name",
		"subject",
		"sender",
		"thread_token",
		"message_key",
		"participants",
	)

	def _ledger(
		self,
		where: str,
		values: Mapping[str, Any],
		order_by: str,
		limit: int | None = None,
		extra: Sequence[str] = (),
	) -> list:
		"""Ledger rows with the fields a CommunicationRef needs (and ``extra`` ones), by a plain
		query (routing asks several times per message; ``frappe.get_all``'s filter parsing would
		cost more than the query)."""
		fields = ", ".join(f"`{f}`" for f in (*self._REF_FIELDS, *extra))
		query = f"SELECT {fields} FROM `tab{MESSAGE}` WHERE {where} ORDER BY {order_by}"
		if limit:
			query += f" LIMIT {int(limit)}"
		return frappe.db.sql(query, values, as_dict=True)

	def _ref(self, row) -> CommunicationRef:
		document = DocRef(row.reference_doctype, row.reference_name) if row.reference_name else None
		return CommunicationRef(
			name=row.communication or "",
			account=row.account,
			message_id=row.message_id or "",
			sent_or_received="Sent" if row.status == SENT_STATUS else "Received",
			document=document,
			subject=row.subject or "",
			sender=row.sender or "",
			thread_token=row.thread_token,
		)

	def find_by_message_ids(self, account: str, message_ids: Sequence[str]) -> CommunicationRef | None:
		"""The account's own mail with one of these ids, else what any account of the site sent (a
		reply to mail sent through one account often arrives at another: the default incoming one,
		named in Reply-To); earliest id first."""
		ids = [i for i in dict.fromkeys(message_ids) if i]
		if not ids:
			return None
		keys = {key(i): i for i in ids}
		rows = self._ledger(
			"message_key IN %(keys)s AND status IN %(statuses)s",
			{"keys": tuple(keys), "statuses": THREAD_STATUSES},
			"creation ASC",
		)
		by_id: dict[str, Any] = {}
		for row in sorted(rows, key=lambda r: r.account != account):  # the account's own first
			if row.account == account or row.status == SENT_STATUS:
				by_id.setdefault(keys[row.message_key], row)
		for message_id in ids:
			if message_id in by_id:
				return self._ref(by_id[message_id])
		return None

	def find_by_thread_token(self, account: str, token: str) -> CommunicationRef | None:
		"""The thread's first message in the account, else the first any account sent with it."""
		rows = self._ledger(
			"thread_token=%(token)s AND status IN %(statuses)s",
			{"token": token, "statuses": THREAD_STATUSES},
			"creation ASC",
		)
		rows = [row for row in rows if row.account == account or row.status == SENT_STATUS]
		rows.sort(key=lambda r: r.account != account)
		return self._ref(rows[0]) if rows else None

	def find_by_subject(
		self, account: str, normalized_subject: str, sender: str, since: datetime
	) -> CommunicationRef | None:
		sender = sender.strip().lower()
		rows = self._ledger(
			"account=%(account)s AND subject_key=%(subject)s AND `date`>=%(since)s AND status IN %(statuses)s",
			{
				"account": account,
				"subject": key(normalized_subject),
				"since": to_db(since),
				"statuses": THREAD_STATUSES,
			},
			"`date` DESC",
			limit=50,
		)
		for row in rows:
			if sender in (row.participants or "").split(","):
				return self._ref(row)
		return None

	def document_exists(self, ref: DocRef) -> bool:
		if not self._document_doctype(ref.doctype):
			return False
		return bool(frappe.db.sql(f"SELECT 1 FROM `tab{ref.doctype}` WHERE name=%s LIMIT 1", ref.name))

	def _document_doctype(self, doctype: str | None) -> bool:
		"""Whether ``doctype`` is a DocType whose records may be documents (not a child table);
		asked per message, known for the store's life (one job)."""
		if not doctype:
			return False
		if doctype not in self._doctype_ok:
			self._doctype_ok[doctype] = doctype_exists(doctype) and not frappe.get_meta(doctype).istable
		return self._doctype_ok[doctype]

	def document_state(self, ref: DocRef) -> DocumentState | None:
		if not self.document_exists(ref):
			return None
		field = frappe.get_meta(ref.doctype).get_field("status")
		if field is None:
			return DocumentState(None)
		options = (field.options or "").split("\n") if field.fieldtype == "Select" else []
		status = frappe.db.get_value(ref.doctype, ref.name, "status")
		return DocumentState(status or None, can_open="Open" in options)

	def received_about(self, account: str, document: DocRef, limit: int = 50) -> list[CommunicationRef]:
		rows = self._ledger(
			"account=%(account)s AND status=%(status)s AND reference_doctype=%(doctype)s"
			" AND reference_name=%(name)s",
			{"account": account, "status": RECEIVED, "doctype": document.doctype, "name": document.name},
			"`date` ASC",
			limit=limit,
		)
		return [self._ref(row) for row in rows]

	def document_doctypes(self) -> Iterable[str]:
		if self._doctypes is None:
			names = set(appendable_doctypes())
			names.update(frappe.get_all(ACCOUNT, filters={"append_to": ("is", "set")}, pluck="append_to"))
			names.update(
				frappe.get_all(
					IMAP_FOLDER,
					filters={"parenttype": ACCOUNT, "append_to": ("is", "set")},
					pluck="append_to",
				)
			)
			self._doctypes = sorted(n for n in names if doctype_exists(n))
		return self._doctypes

	# -- unreplied notices ------------------------------------------------------------------------

	def received_without_notice(
		self, account: str, *, received_after: datetime, received_before: datetime
	) -> list[WaitingMail]:
		"""Automatic mail is stored with core's unread_notification_sent already set, so it is never
		among these."""
		rows = self._ledger(
			"account=%(account)s AND status=%(status)s AND `date` BETWEEN %(after)s AND %(before)s"
			" AND COALESCE(communication, '')!=''",
			{
				"account": account,
				"status": RECEIVED,
				"after": to_db(received_after),
				"before": to_db(received_before),
			},
			"`date` ASC",
			extra=("date",),
		)
		if not rows:
			return []
		waiting = set(
			frappe.get_all(
				COMMUNICATION,
				filters={"name": ("in", [r.communication for r in rows]), "unread_notification_sent": 0},
				pluck="name",
			)
		)
		return [
			WaitingMail(self._ref(row), from_db(row.date) or received_before)
			for row in rows
			if row.communication in waiting
		]

	def sent_on_thread_since(self, account: str, ref: CommunicationRef, since: datetime) -> bool:
		"""Mail a person sent on the thread since ``since``: on its document, with its thread token
		(the ledger) or in reply to it. The engine's own auto-replies and notices are Communications
		of type "Automated Message" and answer nothing."""
		since_db = to_db(since)
		answer = (
			f"SELECT 1 FROM `tab{COMMUNICATION}` WHERE sent_or_received='Sent' AND communication_medium='Email'"
			" AND communication_type!='Automated Message' AND communication_date>=%(since)s"
		)
		document = ref.document
		if document is not None and frappe.db.sql(
			f"{answer} AND reference_doctype=%(doctype)s AND reference_name=%(name)s LIMIT 1",
			{"since": since_db, "doctype": document.doctype, "name": document.name},
		):
			return True
		if ref.thread_token and frappe.db.sql(
			f"""SELECT 1 FROM `tab{MESSAGE}` log
			LEFT JOIN `tab{COMMUNICATION}` comm ON comm.name=log.communication
			WHERE log.account=%(account)s AND log.status=%(sent)s AND log.thread_token=%(token)s
			AND log.`date`>=%(since)s AND COALESCE(comm.communication_type, '')!='Automated Message'
			LIMIT 1""",
			{"account": account, "sent": SENT_STATUS, "token": ref.thread_token, "since": since_db},
		):
			return True
		return bool(
			ref.name
			and frappe.db.sql(
				f"{answer} AND in_reply_to=%(name)s LIMIT 1", {"since": since_db, "name": ref.name}
			)
		)

	def claim_unreplied_notice(self, account: str, communication: str) -> bool:
		"""Core's unread_notification_sent on the communication: set once, by one worker (the row
		is locked while it is read and set)."""
		with self._transaction():
			sent = frappe.db.get_value(
				COMMUNICATION,
				{"name": communication, ACCOUNT_FIELD: account},
				"unread_notification_sent",
				for_update=True,
			)
			if sent is None or cint(sent):
				return False
			frappe.db.set_value(
				COMMUNICATION, communication, "unread_notification_sent", 1, update_modified=False
			)
			return True

	# -- saving ---------------------------------------------------------------------------------

	def save_received(
		self,
		account: str,
		location: Location,
		message: IncomingMessage,
		decision: Decision,
		cursor: Cursor | None,
	) -> SaveResult:
		try:
			with self._transaction():
				self._put_cursor(account, location.folder, cursor)
				if self._exists(account, message.message_id, location):
					return SaveResult(None, duplicate=True)
				result, comm = self._save_received(account, location, message, decision)
		except frappe.UniqueValidationError:
			# another pull of the same account stored it first (the unique indexes said so)
			frappe.clear_last_message()
			if cursor is not None:
				self.set_cursor(account, location.folder, cursor)
			return SaveResult(None, duplicate=True)
		self._notify_participants(account, comm)
		return result

	def _notify_participants(self, account: str, comm) -> None:
		"""As core's receive does once a new mail is committed: the document's owner and assignees
		who follow its thread get the mail (Communication.send_email). Queued mail only; a failure
		is logged against the account, the mail stays stored."""
		if comm is None:
			return
		try:
			# core's own memo on the Communication (it would load the account again for each mail)
			comm._outgoing_email_account = self._account(account)
			comm.send_email(is_inbound_mail_communcation=True)
			if self.commit:
				frappe.db.commit()  # nosemgrep: the notice is queued after the mail's own commit
		except Exception:
			if self.commit:
				frappe.db.rollback()
			frappe.log_error(
				title=f"Email Account {account}: thread participants not notified",
				reference_doctype=COMMUNICATION,
				reference_name=comm.name,
			)

	def _save_received(
		self, account: str, location: Location, message: IncomingMessage, decision: Decision
	) -> tuple[SaveResult, Any]:
		"""The message stored; with the Communication document inserted (for its notice)."""
		document, created = decision.document, False
		if document is not None and not self.document_exists(document):
			document = None
		if decision.action == "create" and self._document_doctype(decision.append_to):
			document, created = self._create_document(decision.append_to, message), True
		elif decision.action == "link" and document is not None and decision.set_status:
			frappe.get_doc(document.doctype, document.name).db_set("status", decision.set_status, notify=True)
		comm = self._insert_communication(account, location, message, decision, document)
		communication = comm.name
		token = decision.thread_token or (decision.thread.thread_token if decision.thread else None)
		self._log(
			account,
			RECEIVED,
			message_id=message.message_id,
			location=location,
			subject=message.subject,
			sender=message.sender_email,
			participants=_participants(
				[message.sender_email], [a.email for a in message.to], [a.email for a in message.cc]
			),
			date=message.date,
			communication=communication,
			document=document,
			thread_token=token,
			rule=decision.rule,
			reason=decision.reason,
		)
		if decision.action == "bounce" and decision.bounced is not None and decision.bounced.name:
			self._set_delivery_status(decision.bounced.name, "Bounced", force=True)
		return SaveResult(communication, document=document, created=created), comm

	def _log(
		self,
		account: str,
		status: str,
		*,
		message_id: str | None,
		location: Location | None = None,
		subject: str = "",
		sender: str = "",
		participants: str = "",
		date: datetime | None = None,
		communication: str | None = None,
		document: DocRef | None = None,
		thread_token: str | None = None,
		rule: str | None = None,
		reason: str | None = None,
		error: str | None = None,
	):
		doc = frappe.get_doc(
			{
				"doctype": MESSAGE,
				"account": account,
				"status": status,
				"message_id": message_id,
				# a failed message's id stays outside the unique key: it may yet arrive elsewhere
				"message_key": key(message_id) if message_id and status != FAILED else None,
				"folder": location.folder if location else None,
				"uidvalidity": location.uidvalidity if location else 0,
				"uid": location.uid if location else None,
				"subject": subject or "",
				"subject_key": key(normalize_subject(subject)) if subject else None,
				"sender": (sender or "")[:140],
				"participants": participants,
				"date": to_db(date) if date else frappe.utils.now_datetime(),
				"communication": communication,
				"reference_doctype": document.doctype if document else None,
				"reference_name": document.name if document else None,
				"thread_token": thread_token,
				"rule": rule,
				"reason": reason,
				"error": error,
			}
		)
		# its links are the account, the communication just stored and a document seen to exist
		doc.insert(ignore_permissions=True, ignore_links=True)
		return doc

	def _insert_communication(
		self,
		account: str,
		location: Location,
		message: IncomingMessage,
		decision: Decision,
		document: DocRef | None,
	):
		"""The Communication, inserted with core's hooks; returns the document."""
		sender = message.sender
		use_imap = bool(location.uidvalidity)  # POP3 locations have none
		comm = frappe.get_doc(
			{
				"doctype": COMMUNICATION,
				"communication_type": "Communication",
				"communication_medium": "Email",
				"sent_or_received": "Received",
				"subject": message.subject or NO_SUBJECT,
				"content": message.html_content or text_to_html(message.text_content or ""),
				"text_content": message.text_content,
				"sender": message.sender_email or None,
				"sender_full_name": sender.name if sender and sender.name else None,
				"recipients": ", ".join(format_address(a.email, a.name) for a in message.to) or None,
				"cc": ", ".join(format_address(a.email, a.name) for a in message.cc) or None,
				"message_id": message.message_id,
				"in_reply_to": self._communication_name(decision.thread.name if decision.thread else None),
				"communication_date": to_db(message.date),
				"reference_doctype": document.doctype if document else None,
				"reference_name": document.name if document else None,
				"has_attachment": int(message.has_attachment),
				"email_status": "Open",
				"imap_folder": location.folder if use_imap else None,
				# core's position: the IMAP UID (core's pull after an uninstall goes on from the highest)
				"uid": cint(location.uid) if use_imap else -1,
				# automatic mail (an out-of-office, a bounce) and the site's own notifications (core's
				# "isnotification" header) need no "unreplied" notice
				"unread_notification_sent": int(
					bool(message.auto_submitted or message.bounce or _is_site_notification(message))
				),
				ACCOUNT_FIELD: account,
			}
		)
		comm.flags.in_receive = True
		comm.flags.skip_add_signature = True
		for link in decision.timeline_links:
			if self.document_exists(link):
				comm.add_link(link.doctype, link.name)
		comm.insert(ignore_permissions=True)
		# core marks IMAP mail seen for the users of the account's User Email rows (all of it, \Seen
		# on the server or not: core's behaviour, kept so that their inbox looks as it did)
		if use_imap:
			users = self._users_of(account)
			if users:
				comm.db_set("_seen", frappe.as_json(users, indent=None), update_modified=False)
		notes = self._attach(comm.name, message)
		content = self._inline_images(comm.content or "", notes["inline"])
		if notes["dropped"]:
			content += _dropped_note(notes["dropped"])
		if content != (comm.content or ""):
			comm.db_set("content", content, update_modified=False)
		return comm

	def _account(self, account: str):
		"""The Email Account document, loaded once per job (as core's find would load it)."""
		if account not in self._accounts:
			from frappe.email.doctype.email_account.email_account import EmailAccount

			self._accounts[account] = EmailAccount.find(account)
		return self._accounts[account]

	def _users_of(self, account: str) -> list[str]:
		"""The users with the account in their User Email rows (read once per job)."""
		if account not in self._inbox_users:
			self._inbox_users[account] = sorted(
				set(frappe.get_all("User Email", filters={"email_account": account}, pluck="parent"))
			)
		return self._inbox_users[account]

	@staticmethod
	def _communication_name(name: str | None) -> str | None:
		if not name:
			return None
		found = frappe.db.sql(f"SELECT 1 FROM `tab{COMMUNICATION}` WHERE name=%s LIMIT 1", name)
		return name if found else None

	def _attach(self, communication: str, message: IncomingMessage) -> dict[str, Any]:
		"""Each attachment as a private File of the communication; one that is too large for the
		site (or was dropped by the attachment limit) becomes a note in the content instead."""
		from frappe.core.doctype.file.exceptions import AttachmentLimitReached, MaxFileSizeReachedError

		inline: dict[str, str] = {}
		dropped: list[tuple[str, str]] = []
		for attachment in message.attachments:
			if attachment.content is None:
				dropped.append((attachment.filename, attachment.dropped_reason or "not kept"))
				continue
			file = frappe.get_doc(
				{
					"doctype": "File",
					"file_name": attachment.filename,
					"attached_to_doctype": COMMUNICATION,
					"attached_to_name": communication,
					"is_private": 1,
					"content": attachment.content,
				}
			)
			try:
				file.insert(ignore_permissions=True)
			except (MaxFileSizeReachedError, AttachmentLimitReached) as exc:
				frappe.clear_last_message()
				dropped.append((attachment.filename, str(exc) or type(exc).__name__))
				continue
			if attachment.content_id:
				inline[attachment.content_id] = file.file_url
		return {"inline": inline, "dropped": dropped}

	@staticmethod
	def _inline_images(content: str, inline: Mapping[str, str]) -> str:
		for content_id, url in inline.items():
			content = content.replace(f"cid:{content_id}", url)
		return content

	def _create_document(self, doctype: str, message: IncomingMessage) -> DocRef:
		"""A new document of ``doctype`` for a new thread, as core's receive makes one."""
		fields = email_fields(doctype)
		meta = frappe.get_meta(doctype)
		doc = frappe.new_doc(doctype)
		subject = message.subject or NO_SUBJECT
		if fields.subject_field:
			df = meta.get_field(fields.subject_field)
			limit = (df.length or 140) if df and df.fieldtype == "Data" else None
			doc.set(fields.subject_field, subject[:limit] if limit else subject)
		if fields.sender_field:
			doc.set(fields.sender_field, message.sender_email)
		if fields.sender_name_field:
			doc.set(fields.sender_name_field, message.sender_full_name)
		self._fill_mandatory(doc, meta, message)
		doc.flags.ignore_mandatory = True
		try:
			doc.insert(ignore_permissions=True)
		except frappe.DuplicateEntryError:
			# a DocType named by its subject (or sender) that already has one: join it, as core does
			frappe.clear_last_message()
			name = doc.name if frappe.db.exists(doctype, doc.name) else None
			if name is None and fields.sender_field:
				name = frappe.db.get_value(doctype, {fields.sender_field: message.sender_email})
			if not name:
				raise
			return DocRef(doctype, name)
		return DocRef(doctype, doc.name)

	@staticmethod
	def _fill_mandatory(doc, meta, message: IncomingMessage) -> None:
		"""Mandatory fields the mail can answer: a text field takes the message, an email field
		the sender, a select its first option."""
		for df in meta.fields:
			if not df.reqd or doc.get(df.fieldname) or df.default:
				continue
			if df.fieldtype in ("Text Editor", "Text", "Small Text", "Long Text", "Markdown Editor"):
				doc.set(df.fieldname, message.reply_text or message.text_content or message.subject)
			elif df.fieldtype == "Data" and df.options == "Email":
				doc.set(df.fieldname, message.sender_email)
			elif df.fieldtype == "Select" and df.options:
				options = [o for o in df.options.split("\n") if o]
				if options:
					doc.set(df.fieldname, options[0])

	def record_skip(
		self, account: str, location: Location, message: IncomingMessage, reason: str, cursor: Cursor | None
	) -> SaveResult:
		try:
			with self._transaction():
				self._put_cursor(account, location.folder, cursor)
				if self._exists(account, message.message_id, location):
					return SaveResult(None, duplicate=True)
				doc = self._log(
					account,
					SKIPPED,
					message_id=message.message_id,
					location=location,
					subject=message.subject,
					sender=message.sender_email,
					date=message.date,
					reason=reason,
				)
				return SaveResult(doc.name)
		except frappe.UniqueValidationError:
			frappe.clear_last_message()
			if cursor is not None:
				self.set_cursor(account, location.folder, cursor)
			return SaveResult(None, duplicate=True)

	def record_failure(
		self,
		account: str,
		location: Location,
		raw: bytes,
		error: str,
		cursor: Cursor | None,
		message_id: str | None = None,
	) -> None:
		try:
			with self._transaction():
				self._put_cursor(account, location.folder, cursor)
				if self._exists(account, None, location):
					return
				doc = self._log(account, FAILED, message_id=message_id, location=location, error=error)
				file = frappe.get_doc(
					{
						"doctype": "File",
						"file_name": f"{location.folder}-{location.uidvalidity}-{location.uid}.eml".replace(
							"/", "_"
						),
						"attached_to_doctype": MESSAGE,
						"attached_to_name": doc.name,
						"attached_to_field": "raw_file",
						"is_private": 1,
						"content": raw,
					}
				)
				file.insert(ignore_permissions=True)
				doc.db_set("raw_file", file.file_url, update_modified=False)
		except frappe.UniqueValidationError:
			pass

	# -- outbox: queueing ------------------------------------------------------------------------

	def queue_outgoing(self, mail: OutgoingMail, record: SentRecord) -> OutgoingMail:
		"""The engine's own mail (auto-replies, notices) into core's Email Queue, the site's one
		outbox, with its Sent communication: core's queue sends it through the app's send step
		(events.send_site_mail), with its retries and its list. A message with a copy of its own
		per recipient (a personal link) is one queue entry per recipient."""
		personal: Mapping[str, bytes] = mail.extra.get("personal") or {}
		document = mail.document or record.document
		if document is not None and not self.document_exists(document):
			document = None
		groups = [[rcpt] for rcpt in mail.recipients] if personal else [list(mail.recipients)]
		with self._transaction():
			communication = self._insert_sent_communication(record, document)
			names = []
			for recipients in groups:
				raw = personal.get(recipients[0], mail.raw) if personal else mail.raw
				queue = frappe.get_doc(
					{
						"doctype": EMAIL_QUEUE,
						"sender": format_address(record.sender, record.sender_full_name or None),
						"message": raw.decode("utf-8", "replace"),
						"message_id": mail.message_id,
						"status": "Not Sent",
						"priority": 1,
						"email_account": mail.account,
						"communication": communication,
						"reference_doctype": document.doctype if document else None,
						"reference_name": document.name if document else None,
						"add_unsubscribe_link": 0,
						"recipients": [{"recipient": rcpt, "status": "Not Sent"} for rcpt in recipients],
					}
				)
				queue.insert(ignore_permissions=True)
				names.append(queue.name)
			self._log(
				mail.account,
				SENT_STATUS,
				message_id=record.message_id,
				subject=record.subject,
				sender=record.sender,
				participants=_participants([record.sender], record.to, record.cc, record.bcc),
				date=record.date,
				communication=communication,
				document=document,
				thread_token=record.thread_token,
				reason="queued",
			)
		mail.name = names[0]
		mail.status = QUEUED
		mail.extra = {**mail.extra, "communication": communication, "email_queue": names}
		return mail

	def _insert_sent_communication(self, record: SentRecord, document: DocRef | None) -> str:
		parent = self.find_by_message_ids(record.account, list(reversed(record.in_reply_to)))
		comm = frappe.get_doc(
			{
				"doctype": COMMUNICATION,
				"communication_type": "Automated Message" if record.auto_submitted else "Communication",
				"communication_medium": "Email",
				"sent_or_received": "Sent",
				"subject": record.subject or NO_SUBJECT,
				"content": record.html_content or text_to_html(record.text_content or ""),
				"text_content": record.text_content,
				"sender": record.sender,
				"sender_full_name": record.sender_full_name or None,
				"recipients": ", ".join(record.to) or None,
				"cc": ", ".join(record.cc) or None,
				"bcc": ", ".join(record.bcc) or None,
				"message_id": record.message_id,
				"in_reply_to": self._communication_name(parent.name if parent else None),
				"communication_date": to_db(record.date),
				"reference_doctype": document.doctype if document else None,
				"reference_name": document.name if document else None,
				"delivery_status": DELIVERY_STATUS_OPTIONS.get(record.delivery_status, "Sending"),
				"seen": 1,
				ACCOUNT_FIELD: record.account,
			}
		)
		comm.flags.skip_add_signature = True
		comm.insert(ignore_permissions=True)
		return comm.name

	def _set_delivery_status(self, communication: str, status: str, *, force: bool = False) -> None:
		"""Set a communication's delivery_status (in core's words), keeping Opened and Bounced."""
		value = DELIVERY_STATUS_OPTIONS.get(status, status)
		current = frappe.db.get_value(COMMUNICATION, communication, "delivery_status")
		if current is None and not frappe.db.exists(COMMUNICATION, communication):
			return
		if current in KEEP_DELIVERY_STATUS and not force:
			return
		if current == "Bounced" and value != "Bounced":
			return
		frappe.db.set_value(COMMUNICATION, communication, "delivery_status", value, update_modified=False)

	# -- tracking, unsubscribes, auto-replies ------------------------------------------------------

	def mark_opened(self, account: str, message_id: str, now: datetime) -> bool:
		with self._transaction():
			communication = frappe.db.get_value(
				MESSAGE,
				{"account": account, "message_key": key(message_id), "status": SENT_STATUS},
				"communication",
			)
			if not communication or not frappe.db.exists(COMMUNICATION, communication):
				return False
			current = frappe.db.get_value(COMMUNICATION, communication, "delivery_status")
			values: dict[str, Any] = {"read_by_recipient": 1, "read_by_recipient_on": to_db(now)}
			if current != "Bounced":
				values["delivery_status"] = "Opened"
			frappe.db.set_value(COMMUNICATION, communication, values, update_modified=False)
			return True

	def record_unsubscribe(
		self, email: str, *, account: str | None, document: DocRef | None, now: datetime
	) -> bool:
		"""Core's Email Unsubscribe: for the document the mail was about, else for all mail
		(global_unsubscribe), as core's own unsubscribe link records it."""
		email = email.strip().lower()
		if document is not None and not self.document_exists(document):
			document = None
		filters: dict[str, Any] = {"email": email}
		if document is not None:
			filters.update(reference_doctype=document.doctype, reference_name=document.name)
		else:
			filters["global_unsubscribe"] = 1
		with self._transaction():
			if frappe.db.exists(UNSUBSCRIBE, filters):
				return False
			frappe.get_doc({"doctype": UNSUBSCRIBE, **filters}).insert(ignore_permissions=True)
			return True

	def is_unsubscribed(self, email: str) -> bool:
		"""Whether the address asked core's Email Unsubscribe to stop mail, for any document or
		all of it: the engine's own automatic mail respects either."""
		return bool(frappe.db.exists(UNSUBSCRIBE, {"email": email.strip().lower()}))

	def auto_replies_since(self, account: str, sender: str, since: datetime) -> int:
		"""How many auto-replies the account sent ``sender`` since ``since``."""
		return frappe.db.count(
			AUTO_REPLY,
			{"account": account, "sender": sender.strip().lower(), "sent_on": (">=", to_db(since))},
		)

	def claim_auto_reply(self, account: str, thread_key: str, sender: str, now: datetime) -> bool:
		try:
			with self._transaction():
				if frappe.db.exists(AUTO_REPLY, {"account": account, "thread_hash": key(thread_key)}):
					return False
				frappe.get_doc(
					{
						"doctype": AUTO_REPLY,
						"account": account,
						"thread_key": thread_key,
						"thread_hash": key(thread_key),
						"sender": sender.strip().lower(),
						"sent_on": to_db(now),
					}
				).insert(ignore_permissions=True)
				return True
		except frappe.UniqueValidationError:
			return False

	# -- mail the site sent through Frappe's own queue (override_email_send) ---------------------

	def record_site_mail(
		self,
		account: str,
		*,
		message_id: str,
		subject: str,
		sender: str,
		recipients: Sequence[str],
		communication: str | None,
		document: DocRef | None,
		thread_token: str | None,
	) -> bool:
		"""Remember a message Frappe's Email Queue sent through this account, so that replies to it
		thread; False when it was already recorded (a later recipient of the same message)."""
		if self.known_message_ids(account, [message_id]):
			return False
		try:
			with self._transaction():
				self._log(
					account,
					SENT_STATUS,
					message_id=message_id,
					subject=subject,
					sender=sender,
					participants=_participants([sender], recipients),
					communication=self._communication_name(communication),
					document=document if document and self.document_exists(document) else None,
					thread_token=thread_token,
					reason="sent from the site's email queue",
				)
		except frappe.UniqueValidationError:
			return False
		return True


def _is_site_notification(message: IncomingMessage) -> bool:
	"""Mail the site sent as a notification (core's ``isnotification`` header)."""
	return any(
		name.lower() == "isnotification" and "notification" in (value or "").lower()
		for name, value in message.headers
	)


def _dropped_note(dropped: Sequence[tuple[str, str]]) -> str:
	items = "".join(f"<li>{escape_html(name)}: {escape_html(reason)}</li>" for name, reason in dropped)
	title = escape_html(frappe._("Attachments not kept"))
	return f'<div class="email-sync-dropped"><p><b>{title}</b></p><ul>{items}</ul></div>'
