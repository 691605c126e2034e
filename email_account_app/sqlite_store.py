"""The Store on SQLite: the embedded default for the CLI, the tests and the benchmarks.

One file, WAL mode; each message is one transaction. The schema is in SCHEMA below and in the
README.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .engine.parsing import IncomingMessage, normalize_subject
from .engine.store import (
	CommunicationRef,
	Cursor,
	Decision,
	DocRef,
	DocumentState,
	Location,
	SaveResult,
	WaitingMail,
)
from .sqlite_outbox import OUTBOX_SCHEMA, SQLiteOutboxMixin
from .sqlite_tokens import make_private

SCHEMA = (
	"""
CREATE TABLE IF NOT EXISTS cursors (
	account TEXT NOT NULL,
	folder TEXT NOT NULL,
	uidvalidity INTEGER NOT NULL,
	last_uid INTEGER NOT NULL,
	seen_uid INTEGER,
	modified TEXT NOT NULL,
	PRIMARY KEY (account, folder)
);
CREATE TABLE IF NOT EXISTS communications (
	id INTEGER PRIMARY KEY,
	account TEXT NOT NULL,
	sent_or_received TEXT NOT NULL,          -- Received | Sent
	message_id TEXT NOT NULL,
	in_reply_to TEXT,
	"references" TEXT,
	subject TEXT NOT NULL DEFAULT '',
	normalized_subject TEXT NOT NULL DEFAULT '',
	sender TEXT NOT NULL DEFAULT '',
	sender_full_name TEXT NOT NULL DEFAULT '',
	recipients TEXT NOT NULL DEFAULT '',     -- comma separated, lower case
	cc TEXT NOT NULL DEFAULT '',
	date TEXT NOT NULL,                      -- ISO 8601, UTC
	text_content TEXT NOT NULL DEFAULT '',
	html_content TEXT NOT NULL DEFAULT '',
	reply_text TEXT NOT NULL DEFAULT '',
	folder TEXT,
	uidvalidity INTEGER,
	uid TEXT,
	reference_doctype TEXT,
	reference_name TEXT,
	thread_token TEXT,
	rule TEXT,                               -- which threading rule matched
	delivery_status TEXT,                    -- Sent: Sent | Opened | Bounced
	auto_submitted TEXT,
	bounce TEXT,                             -- JSON of the delivery report, for bounces received
	warnings TEXT,
	unreplied_notified INTEGER NOT NULL DEFAULT 0,
	created TEXT NOT NULL,
	UNIQUE (account, message_id),
	UNIQUE (account, folder, uidvalidity, uid)
);
CREATE INDEX IF NOT EXISTS communications_token ON communications (thread_token);
CREATE INDEX IF NOT EXISTS communications_message_id ON communications (message_id);
CREATE INDEX IF NOT EXISTS communications_subject ON communications (account, normalized_subject, date);
CREATE INDEX IF NOT EXISTS communications_document ON communications (reference_doctype, reference_name);
CREATE TABLE IF NOT EXISTS attachments (
	id INTEGER PRIMARY KEY,
	communication INTEGER NOT NULL REFERENCES communications (id),
	filename TEXT NOT NULL,
	content_type TEXT NOT NULL,
	size INTEGER NOT NULL,
	content BLOB,                            -- NULL when dropped
	content_id TEXT,
	inline INTEGER NOT NULL DEFAULT 0,
	dropped_reason TEXT
);
CREATE INDEX IF NOT EXISTS attachments_communication ON attachments (communication);
CREATE TABLE IF NOT EXISTS timeline_links (
	communication INTEGER NOT NULL REFERENCES communications (id),
	link_doctype TEXT NOT NULL,
	link_name TEXT NOT NULL,
	UNIQUE (communication, link_doctype, link_name)
);
CREATE TABLE IF NOT EXISTS skipped (
	id INTEGER PRIMARY KEY,
	account TEXT NOT NULL,
	message_id TEXT NOT NULL,
	folder TEXT, uidvalidity INTEGER, uid TEXT,
	subject TEXT NOT NULL DEFAULT '',
	sender TEXT NOT NULL DEFAULT '',
	reason TEXT NOT NULL,
	created TEXT NOT NULL,
	UNIQUE (account, message_id),
	UNIQUE (account, folder, uidvalidity, uid)
);
CREATE TABLE IF NOT EXISTS ignored_uids (       -- older than the initial sync count (POP3)
	account TEXT NOT NULL,
	folder TEXT NOT NULL,
	uidvalidity INTEGER NOT NULL,
	uid TEXT NOT NULL,
	PRIMARY KEY (account, folder, uidvalidity, uid)
);
CREATE TABLE IF NOT EXISTS failures (
	id INTEGER PRIMARY KEY,
	account TEXT NOT NULL,
	message_id TEXT,
	folder TEXT, uidvalidity INTEGER, uid TEXT,
	raw BLOB NOT NULL,
	error TEXT NOT NULL,
	created TEXT NOT NULL,
	UNIQUE (account, folder, uidvalidity, uid)
);
CREATE TABLE IF NOT EXISTS documents (
	id INTEGER PRIMARY KEY,
	doctype TEXT NOT NULL,
	name TEXT NOT NULL,
	subject TEXT NOT NULL DEFAULT '',
	sender TEXT NOT NULL DEFAULT '',
	sender_name TEXT NOT NULL DEFAULT '',
	status TEXT,
	fields TEXT NOT NULL DEFAULT '{}',       -- JSON: the DocType's own field names
	created TEXT NOT NULL,
	modified TEXT NOT NULL,
	UNIQUE (doctype, name)
);
"""
	+ OUTBOX_SCHEMA
)


@dataclass(frozen=True)
class DocTypeMapping:
	"""Which fields of a DocType take a new message's subject and sender (the CLI's [doctypes.X])."""

	subject_field: str = "subject"
	sender_field: str = "raised_by"
	sender_name_field: str | None = None
	status_field: str | None = "status"
	naming_prefix: str | None = None
	open_status: str = "Open"

	def prefix(self, doctype: str) -> str:
		return (
			self.naming_prefix or ("".join(ch for ch in doctype.upper() if ch.isalpha())[:3] or "DOC") + "-"
		)


#: Sensible mappings for the DocTypes mail is usually appended to.
KNOWN_DOCTYPES = {
	"Issue": DocTypeMapping("subject", "raised_by", None, "status", "ISS-"),
	"Job Applicant": DocTypeMapping("job_title", "email_id", "applicant_name", "status", "HR-APP-"),
	"Lead": DocTypeMapping("title", "email_id", "lead_name", "status", "CRM-LEAD-"),
	"Opportunity": DocTypeMapping("title", "contact_email", "customer_name", "status", "CRM-OPP-"),
	"HD Ticket": DocTypeMapping("subject", "raised_by", None, "status", "HD-"),
}


def _now() -> str:
	return datetime.now(timezone.utc).isoformat()


def _iso(value: datetime) -> str:
	return value.astimezone(timezone.utc).isoformat()


class SQLiteStore(SQLiteOutboxMixin):
	"""The Store protocol on one SQLite file."""

	def __init__(self, path: str | Path, *, doctypes: Mapping[str, DocTypeMapping] | None = None):
		self.path = str(path)
		self.doctypes = {**KNOWN_DOCTYPES, **(doctypes or {})}
		self._local = threading.local()
		make_private(self.path)  # mail, and OAuth sign-ins (sqlite_tokens): for its owner only
		self.db.executescript(SCHEMA)

	# -- connection ----------------------------------------------------------------------------

	@property
	def db(self) -> sqlite3.Connection:
		conn = getattr(self._local, "conn", None)
		if conn is None:
			conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
			conn.row_factory = sqlite3.Row
			conn.execute("PRAGMA journal_mode=WAL")
			conn.execute("PRAGMA synchronous=NORMAL")  # durable across a crash of the process
			conn.execute("PRAGMA foreign_keys=ON")
			conn.execute("PRAGMA wal_autocheckpoint=8192")  # 32 MB: fewer checkpoints (each one syncs)
			self._local.conn = conn
		return conn

	@contextmanager
	def _tx(self):
		db = self.db
		db.execute("BEGIN IMMEDIATE")
		try:
			yield db
		except BaseException:
			db.execute("ROLLBACK")
			raise
		else:
			db.execute("COMMIT")

	def close(self) -> None:
		conn = getattr(self._local, "conn", None)
		if conn is not None:
			conn.close()
			self._local.conn = None

	# -- cursors -------------------------------------------------------------------------------

	def get_cursor(self, account: str, folder: str) -> Cursor | None:
		row = self.db.execute(
			"SELECT uidvalidity, last_uid, seen_uid FROM cursors WHERE account=? AND folder=?",
			(account, folder),
		).fetchone()
		return Cursor(row[0], row[1], row[2]) if row else None

	def set_cursor(self, account: str, folder: str, cursor: Cursor) -> None:
		with self._tx() as db:
			self._put_cursor(db, account, folder, cursor)

	def _put_cursor(self, db, account: str, folder: str, cursor: Cursor | None) -> None:
		if cursor is None:
			return
		db.execute(
			"INSERT INTO cursors (account, folder, uidvalidity, last_uid, seen_uid, modified) VALUES (?,?,?,?,?,?) "
			"ON CONFLICT (account, folder) DO UPDATE SET uidvalidity=excluded.uidvalidity, "
			"last_uid=excluded.last_uid, seen_uid=excluded.seen_uid, modified=excluded.modified",
			(account, folder, cursor.uidvalidity, cursor.last_uid, cursor.seen_uid, _now()),
		)

	# -- identity ------------------------------------------------------------------------------

	def known_message_ids(self, account: str, message_ids: Iterable[str]) -> set[str]:
		ids = list(dict.fromkeys(message_ids))
		known: set[str] = set()
		for start in range(0, len(ids), 500):
			part = ids[start : start + 500]
			marks = ",".join("?" * len(part))
			for table in ("communications", "skipped", "failures"):
				rows = self.db.execute(
					f"SELECT message_id FROM {table} WHERE account=? AND message_id IN ({marks})",
					(account, *part),
				)
				known.update(row[0] for row in rows)
		return known

	def known_uids(
		self, account: str, folder: str, uidvalidity: int, among: Sequence[str] | None = None
	) -> set[str]:
		known: set[str] = set()
		wanted = list(dict.fromkeys(among)) if among is not None else None
		parts = [wanted[i : i + 500] for i in range(0, len(wanted), 500)] if wanted is not None else [None]
		for part in parts:
			where = f" AND uid IN ({','.join('?' * len(part))})" if part is not None else ""
			for table in ("communications", "skipped", "failures", "ignored_uids"):
				rows = self.db.execute(
					f"SELECT uid FROM {table} WHERE account=? AND folder=? AND uidvalidity=?{where}",
					(account, folder, uidvalidity, *(part or ())),
				)
				known.update(row[0] for row in rows)
		return known

	def _exists(
		self,
		db,
		account: str,
		message_id: str | None,
		location: Location | None,
		tables: tuple[str, ...] = ("communications", "skipped"),
	) -> bool:
		"""Whether the account holds this Message-ID (in ``tables``) or this location (anywhere):
		one query, each part on a unique index."""
		parts, params = [], []
		if message_id:
			for table in tables:
				parts.append(f"SELECT 1 FROM {table} WHERE account=? AND message_id=?")
				params += [account, message_id]
		if location is not None:
			for table in ("communications", "skipped", "failures"):
				parts.append(
					f"SELECT 1 FROM {table} WHERE account=? AND folder=? AND uidvalidity=? AND uid=?"
				)
				params += [account, location.folder, location.uidvalidity, location.uid]
		if not parts:
			return False
		return db.execute(" UNION ALL ".join(parts) + " LIMIT 1", params).fetchone() is not None

	def ignore_uids(
		self, account: str, folder: str, uidvalidity: int, uids: Iterable[str], cursor: Cursor | None
	) -> None:
		with self._tx() as db:
			self._put_cursor(db, account, folder, cursor)
			db.executemany(
				"INSERT OR IGNORE INTO ignored_uids VALUES (?,?,?,?)",
				[(account, folder, uidvalidity, uid) for uid in uids],
			)

	# -- threading -----------------------------------------------------------------------------

	# what a CommunicationRef needs (and find_by_subject's participants): never the bodies
	_REF_COLUMNS = (
		"id, account, message_id, sent_or_received, reference_doctype, reference_name, subject, sender, "
		"thread_token, recipients, cc"
	)

	def _ref(self, row) -> CommunicationRef:
		document = DocRef(row["reference_doctype"], row["reference_name"]) if row["reference_name"] else None
		return CommunicationRef(
			name=str(row["id"]),
			account=row["account"],
			message_id=row["message_id"],
			sent_or_received=row["sent_or_received"],
			document=document,
			subject=row["subject"],
			sender=row["sender"],
			thread_token=row["thread_token"],
		)

	def find_by_message_ids(self, account: str, message_ids: Sequence[str]) -> CommunicationRef | None:
		ids = [i for i in dict.fromkeys(message_ids) if i]
		if not ids:
			return None
		marks = ",".join("?" * len(ids))
		# the account's own mail, and what any account of the site sent: a reply to mail sent through
		# one account often arrives at another (the default incoming one, named in Reply-To)
		rows = self.db.execute(
			f"SELECT {self._REF_COLUMNS} FROM communications WHERE message_id IN ({marks}) "
			"AND (account=? OR sent_or_received='Sent') ORDER BY account=? DESC",
			(*ids, account, account),
		).fetchall()
		by_id: dict[str, sqlite3.Row] = {}
		for row in rows:  # the account's own first
			by_id.setdefault(row["message_id"], row)
		for message_id in ids:
			if message_id in by_id:
				return self._ref(by_id[message_id])
		return None

	def find_by_thread_token(self, account: str, token: str) -> CommunicationRef | None:
		row = self.db.execute(
			f"SELECT {self._REF_COLUMNS} FROM communications WHERE thread_token=? "
			"AND (account=? OR sent_or_received='Sent') "
			"ORDER BY account=? DESC, id LIMIT 1",
			(token, account, account),
		).fetchone()
		return self._ref(row) if row else None

	def find_by_subject(
		self, account: str, normalized_subject: str, sender: str, since: datetime
	) -> CommunicationRef | None:
		sender = sender.lower()
		rows = self.db.execute(
			f"SELECT {self._REF_COLUMNS} FROM communications WHERE account=? AND normalized_subject=? AND date>=? "
			"ORDER BY date DESC LIMIT 50",
			(account, normalized_subject, _iso(since)),
		)
		for row in rows:
			participants = {row["sender"].lower(), *row["recipients"].split(","), *row["cc"].split(",")}
			if sender in participants:
				return self._ref(row)
		return None

	def document_state(self, ref: DocRef) -> DocumentState | None:
		row = self.db.execute(
			"SELECT status FROM documents WHERE doctype=? AND name=?", (ref.doctype, ref.name)
		).fetchone()
		if row is None:
			return None
		mapping = self.mapping(ref.doctype)
		return DocumentState(row["status"], can_open=bool(mapping.status_field))

	def received_about(self, account: str, document: DocRef, limit: int = 50) -> list[CommunicationRef]:
		rows = self.db.execute(
			f"SELECT {self._REF_COLUMNS} FROM communications WHERE account=? AND sent_or_received='Received' "
			"AND reference_doctype=? AND reference_name=? ORDER BY date, id LIMIT ?",
			(account, document.doctype, document.name, limit),
		)
		return [self._ref(row) for row in rows]

	def document_doctypes(self) -> Iterable[str]:
		rows = self.db.execute("SELECT DISTINCT doctype FROM documents")
		return sorted({*self.doctypes, *(row[0] for row in rows)})

	# -- unreplied notices ------------------------------------------------------------------------

	def received_without_notice(
		self, account: str, *, received_after: datetime, received_before: datetime
	) -> list[WaitingMail]:
		rows = self.db.execute(
			f"""SELECT {self._REF_COLUMNS}, date, auto_submitted FROM communications
			WHERE account = ? AND sent_or_received = 'Received' AND unreplied_notified = 0
			AND date <= ? AND date > ? ORDER BY date""",
			(account, _iso(received_before), _iso(received_after)),
		)
		return [
			WaitingMail(
				self._ref(row), datetime.fromisoformat(row["date"]), automatic=bool(row["auto_submitted"])
			)
			for row in rows
		]

	def sent_on_thread_since(self, account: str, ref: CommunicationRef, since: datetime) -> bool:
		document = ref.document
		row = self.db.execute(
			"""SELECT 1 FROM communications WHERE account = ? AND sent_or_received = 'Sent'
			AND date >= ? AND IFNULL(auto_submitted, 'no') IN ('', 'no') AND (
				(? IS NOT NULL AND reference_doctype = ? AND reference_name = ?)
				OR (? IS NOT NULL AND thread_token = ?)
				OR instr(' ' || in_reply_to || ' ', ' ' || ? || ' ') > 0)
			LIMIT 1""",
			(
				account,
				_iso(since),
				document and document.name,
				document and document.doctype,
				document and document.name,
				ref.thread_token,
				ref.thread_token,
				ref.message_id,
			),
		).fetchone()
		return row is not None

	def claim_unreplied_notice(self, account: str, communication: str) -> bool:
		with self._tx() as db:
			cur = db.execute(
				"UPDATE communications SET unreplied_notified = 1 WHERE id = ? AND account = ? "
				"AND unreplied_notified = 0",
				(int(communication), account),
			)
			return cur.rowcount == 1

	# -- saving ---------------------------------------------------------------------------------

	def save_received(
		self,
		account: str,
		location: Location,
		message: IncomingMessage,
		decision: Decision,
		cursor: Cursor | None,
	) -> SaveResult:
		with self._tx() as db:
			self._put_cursor(db, account, location.folder, cursor)
			if self._exists(db, account, message.message_id, location):
				return SaveResult(None, duplicate=True)
			document, created = decision.document, False
			if decision.action == "create" and decision.append_to:
				document, created = self._create_document(db, decision.append_to, message), True
			elif decision.action == "link" and document is not None and decision.set_status:
				self._put_status(db, document, decision.set_status)
			communication = self._insert_communication(db, account, location, message, decision, document)
			for link in decision.timeline_links:
				db.execute(
					"INSERT OR IGNORE INTO timeline_links VALUES (?,?,?)",
					(communication, link.doctype, link.name),
				)
			if decision.action == "bounce" and decision.bounced is not None:
				db.execute(
					"UPDATE communications SET delivery_status='Bounced' WHERE id=?",
					(int(decision.bounced.name),),
				)
			return SaveResult(str(communication), document=document, created=created)

	def _insert_communication(self, db, account, location, message, decision, document) -> int:
		bounce = None
		if message.bounce is not None:
			bounce = json.dumps(
				{
					"original_message_id": message.bounce.original_message_id,
					"recipients": list(message.bounce.recipients),
					"status": message.bounce.status,
					"diagnostic": message.bounce.diagnostic,
				}
			)
		cur = db.execute(
			'INSERT INTO communications (account, sent_or_received, message_id, in_reply_to, "references", '
			"subject, normalized_subject, sender, sender_full_name, recipients, cc, date, text_content, "
			"html_content, reply_text, folder, uidvalidity, uid, reference_doctype, reference_name, "
			"thread_token, rule, auto_submitted, bounce, warnings, created) "
			"VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
			(
				account,
				"Received",
				message.message_id,
				" ".join(message.in_reply_to),
				" ".join(message.references),
				message.subject,
				normalize_subject(message.subject),
				message.sender.email if message.sender else "",
				message.sender.name if message.sender else "",
				",".join(a.email.lower() for a in message.to),
				",".join(a.email.lower() for a in message.cc),
				_iso(message.date),
				message.text_content,
				message.html_content,
				message.reply_text,
				location.folder,
				location.uidvalidity,
				location.uid,
				document.doctype if document else None,
				document.name if document else None,
				decision.thread_token or (decision.thread.thread_token if decision.thread else None),
				decision.rule,
				message.auto_submitted,
				bounce,
				"\n".join(message.warnings) or None,
				_now(),
			),
		)
		communication = cur.lastrowid
		db.executemany(
			"INSERT INTO attachments (communication, filename, content_type, size, content, content_id, "
			"inline, dropped_reason) VALUES (?,?,?,?,?,?,?,?)",
			[
				(
					communication,
					a.filename,
					a.content_type,
					a.size,
					a.content,
					a.content_id,
					int(a.inline),
					a.dropped_reason,
				)
				for a in message.attachments
			],
		)
		return communication

	def mapping(self, doctype: str) -> DocTypeMapping:
		return self.doctypes.get(doctype) or DocTypeMapping()

	def _create_document(self, db, doctype: str, message: IncomingMessage) -> DocRef:
		mapping = self.mapping(doctype)
		prefix = mapping.prefix(doctype)
		row = db.execute("SELECT COUNT(*) FROM documents WHERE doctype=?", (doctype,)).fetchone()
		name = f"{prefix}{row[0] + 1:05d}"
		sender = message.sender.email if message.sender else ""
		sender_name = message.sender.name if message.sender else ""
		fields = {mapping.subject_field: message.subject or "(no subject)", mapping.sender_field: sender}
		if mapping.sender_name_field:
			fields[mapping.sender_name_field] = sender_name
		status = mapping.open_status if mapping.status_field else None
		if status:
			fields[mapping.status_field] = status
		now = _now()
		db.execute(
			"INSERT INTO documents (doctype, name, subject, sender, sender_name, status, fields, created, modified) "
			"VALUES (?,?,?,?,?,?,?,?,?)",
			(doctype, name, message.subject, sender, sender_name, status, json.dumps(fields), now, now),
		)
		return DocRef(doctype, name)

	def _put_status(self, db, ref: DocRef, status: str) -> None:
		"""The document's status, in its column and in its DocType's status field."""
		row = db.execute(
			"SELECT fields FROM documents WHERE doctype=? AND name=?", (ref.doctype, ref.name)
		).fetchone()
		fields = json.loads(row["fields"]) if row else {}
		field = self.mapping(ref.doctype).status_field
		if field:
			fields[field] = status
		db.execute(
			"UPDATE documents SET status=?, fields=?, modified=? WHERE doctype=? AND name=?",
			(status, json.dumps(fields), _now(), ref.doctype, ref.name),
		)

	def record_skip(
		self, account: str, location: Location, message: IncomingMessage, reason: str, cursor: Cursor | None
	) -> SaveResult:
		with self._tx() as db:
			self._put_cursor(db, account, location.folder, cursor)
			# our own sent message is in communications: it is still recorded here, as skipped
			if self._exists(db, account, message.message_id, location, tables=("skipped",)):
				return SaveResult(None, duplicate=True)
			cur = db.execute(
				"INSERT INTO skipped (account, message_id, folder, uidvalidity, uid, subject, sender, reason, "
				"created) VALUES (?,?,?,?,?,?,?,?,?)",
				(
					account,
					message.message_id,
					location.folder,
					location.uidvalidity,
					location.uid,
					message.subject,
					message.sender.email if message.sender else "",
					reason,
					_now(),
				),
			)
			return SaveResult(str(cur.lastrowid))

	def record_failure(
		self,
		account: str,
		location: Location,
		raw: bytes,
		error: str,
		cursor: Cursor | None,
		message_id: str | None = None,
	) -> None:
		with self._tx() as db:
			self._put_cursor(db, account, location.folder, cursor)
			db.execute(
				"INSERT OR IGNORE INTO failures (account, message_id, folder, uidvalidity, uid, raw, error, created) "
				"VALUES (?,?,?,?,?,?,?,?)",
				(
					account,
					message_id,
					location.folder,
					location.uidvalidity,
					location.uid,
					raw,
					error,
					_now(),
				),
			)

	# -- inspection: a test seam (read-only queries for the tests and benchmarks) ---------------

	def count(self, table: str, **where: Any) -> int:
		clause = " AND ".join(f"{k}=?" for k in where) or "1"
		return self.db.execute(
			f"SELECT COUNT(*) FROM {table} WHERE {clause}", tuple(where.values())
		).fetchone()[0]

	def rows(self, sql: str, *params: Any) -> list[sqlite3.Row]:
		return self.db.execute(sql, params).fetchall()
