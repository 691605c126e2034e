"""The Outbox protocol on SQLite: a mixin for SQLiteStore (its ``db`` and ``_tx()``).

Tables (in SQLiteStore's SCHEMA): ``outbox`` (one row per message: the raw bytes, status, retries,
next try), ``outbox_recipients`` (one row per recipient: Pending, Sent or Failed, with the server's
code and words, and the recipient's own copy when it carries a personal link), ``unsubscribes``
and ``auto_replies``. A queued message's Sent communication goes into ``communications``. Every
state change is one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone

from .engine.outbox import FINAL, QUEUED, SENDING, SentRecord
from .engine.parsing import normalize_subject
from .engine.store import DocRef, OutgoingMail

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
	id INTEGER PRIMARY KEY,
	account TEXT NOT NULL,
	message_id TEXT NOT NULL,
	communication INTEGER REFERENCES communications (id),
	envelope_from TEXT NOT NULL,
	raw BLOB NOT NULL,                       -- as kept for the record and the Sent folder
	status TEXT NOT NULL,                    -- Queued | Sending | Sent | Partly Sent | Failed
	retries INTEGER NOT NULL DEFAULT 0,
	next_try TEXT,                           -- ISO 8601, UTC; NULL: as soon as possible
	claimed_at TEXT,                         -- when a flush took it (status Sending)
	error TEXT,
	sent_copy INTEGER NOT NULL DEFAULT 0,    -- the copy in the Sent folder was made
	reference_doctype TEXT,
	reference_name TEXT,
	thread_token TEXT,
	skipped TEXT,                            -- unsubscribed addresses left out, comma separated
	created TEXT NOT NULL,
	modified TEXT NOT NULL,
	UNIQUE (account, message_id)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, account, next_try);
CREATE TABLE IF NOT EXISTS outbox_recipients (
	outbox INTEGER NOT NULL REFERENCES outbox (id),
	email TEXT NOT NULL,
	status TEXT NOT NULL DEFAULT 'Pending',  -- Pending | Sent | Failed
	code INTEGER,                            -- the server's last answer for this recipient
	server_text TEXT,
	raw BLOB,                                -- this recipient's own copy, else the outbox's raw
	modified TEXT NOT NULL,
	PRIMARY KEY (outbox, email)
);
CREATE TABLE IF NOT EXISTS unsubscribes (
	email TEXT PRIMARY KEY,                  -- lower case
	account TEXT,
	reference_doctype TEXT,
	reference_name TEXT,
	created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS auto_replies (
	id INTEGER PRIMARY KEY,
	account TEXT NOT NULL,
	thread_key TEXT NOT NULL,
	sender TEXT NOT NULL,                    -- lower case
	created TEXT NOT NULL,
	UNIQUE (account, thread_key)
);
CREATE INDEX IF NOT EXISTS auto_replies_sender ON auto_replies (account, sender, created);
"""

_KEEP_DELIVERY_STATUS = ("Opened", "Bounced")


def _iso(value: datetime) -> str:
	if value.tzinfo is None:
		value = value.replace(tzinfo=timezone.utc)
	return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _time(value: str | None) -> datetime | None:
	return datetime.fromisoformat(value) if value else None


class SQLiteOutboxMixin:
	"""The Outbox protocol; mixed into SQLiteStore, which gives ``db`` and ``_tx()``."""

	# -- queueing ----------------------------------------------------------------------------

	def queue_outgoing(self, mail: OutgoingMail, record: SentRecord) -> OutgoingMail:
		now = _iso(record.date)
		personal: Mapping[str, bytes] = mail.extra.get("personal") or {}
		document = mail.document or record.document
		with self._tx() as db:
			communication = db.execute(
				'INSERT INTO communications (account, sent_or_received, message_id, in_reply_to, "references", '
				"subject, normalized_subject, sender, sender_full_name, recipients, cc, date, text_content, "
				"html_content, reference_doctype, reference_name, thread_token, delivery_status, "
				"auto_submitted, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
				(
					record.account,
					"Sent",
					record.message_id,
					" ".join(record.in_reply_to),
					" ".join(record.references),
					record.subject,
					normalize_subject(record.subject),
					record.sender,
					record.sender_full_name,
					",".join(a.lower() for a in record.to),
					",".join(a.lower() for a in record.cc),  # Bcc stays in outbox_recipients only
					now,
					record.text_content,
					record.html_content,
					document.doctype if document else None,
					document.name if document else None,
					record.thread_token,
					record.delivery_status,
					record.auto_submitted,
					now,
				),
			).lastrowid
			name = db.execute(
				"INSERT INTO outbox (account, message_id, communication, envelope_from, raw, status, retries, "
				"next_try, reference_doctype, reference_name, thread_token, skipped, created, modified) "
				"VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
				(
					mail.account,
					mail.message_id,
					communication,
					mail.sender,
					mail.raw,
					QUEUED,
					0,
					_iso(mail.next_try) if mail.next_try else None,
					document.doctype if document else None,
					document.name if document else None,
					mail.thread_token,
					",".join(mail.extra.get("skipped") or ()) or None,
					now,
					now,
				),
			).lastrowid
			db.executemany(
				"INSERT INTO outbox_recipients (outbox, email, status, raw, modified) VALUES (?,?,?,?,?)",
				[(name, rcpt, "Pending", personal.get(rcpt), now) for rcpt in mail.recipients],
			)
		mail.name = str(name)
		mail.status = QUEUED
		mail.extra = {**mail.extra, "communication": str(communication)}
		return mail

	# -- sending -----------------------------------------------------------------------------

	def claim_due(self, now: datetime, *, accounts: Sequence[str], limit: int = 50) -> list[OutgoingMail]:
		if not accounts:
			return []
		marks = ",".join("?" * len(accounts))
		with self._tx() as db:
			rows = db.execute(
				f"SELECT * FROM outbox WHERE status=? AND account IN ({marks}) "
				"AND (next_try IS NULL OR next_try <= ?) ORDER BY id LIMIT ?",
				(QUEUED, *accounts, _iso(now), limit),
			).fetchall()
			if not rows:
				return []
			ids = [row["id"] for row in rows]
			id_marks = ",".join("?" * len(ids))
			db.execute(
				f"UPDATE outbox SET status=?, claimed_at=?, modified=? WHERE id IN ({id_marks})",
				(SENDING, _iso(now), _iso(now), *ids),
			)
			db.execute(
				f"UPDATE communications SET delivery_status='Sending' WHERE id IN "
				f"(SELECT communication FROM outbox WHERE id IN ({id_marks})) "
				"AND COALESCE(delivery_status, '') NOT IN ('Opened', 'Bounced')",
				ids,
			)
			recipients = db.execute(
				f"SELECT * FROM outbox_recipients WHERE outbox IN ({id_marks}) ORDER BY rowid", ids
			).fetchall()
		by_mail: dict[int, list] = {}
		for rcpt in recipients:
			by_mail.setdefault(rcpt["outbox"], []).append(rcpt)
		mails = []
		for row in rows:
			mail = self._outgoing(row, by_mail.get(row["id"], []), pending_only=True)
			mail.status = SENDING
			mails.append(mail)
		return mails

	def _outgoing(self, row, recipients: list, *, pending_only: bool) -> OutgoingMail:
		pending = tuple(r["email"] for r in recipients if r["status"] == "Pending")
		document = DocRef(row["reference_doctype"], row["reference_name"]) if row["reference_name"] else None
		return OutgoingMail(
			name=str(row["id"]),
			account=row["account"],
			raw=bytes(row["raw"]),
			message_id=row["message_id"],
			sender=row["envelope_from"],
			recipients=pending if pending_only else tuple(r["email"] for r in recipients),
			status=row["status"],
			retries=row["retries"],
			next_try=_time(row["next_try"]),
			error=row["error"],
			sent_to=tuple(r["email"] for r in recipients if r["status"] == "Sent"),
			document=document,
			thread_token=row["thread_token"],
			extra={
				"communication": str(row["communication"]) if row["communication"] else None,
				"personal": {r["email"]: bytes(r["raw"]) for r in recipients if r["raw"] is not None},
				"failed": {
					r["email"]: (r["code"] or 0, r["server_text"] or "")
					for r in recipients
					if r["status"] == "Failed"
				},
				"sent_copy": bool(row["sent_copy"]),
				"skipped": tuple(filter(None, (row["skipped"] or "").split(","))),
				"recipients": {r["email"]: (r["status"], r["code"], r["server_text"]) for r in recipients},
			},
		)

	def release_stale(self, claimed_before: datetime, now: datetime) -> int:
		with self._tx() as db:
			cur = db.execute(
				"UPDATE outbox SET status=?, claimed_at=NULL, retries=retries + 1, modified=?, "
				"error=COALESCE(error || '; ', '') || 'the sending was interrupted (the process stopped)' "
				"WHERE status=? AND claimed_at < ?",
				(QUEUED, _iso(now), SENDING, _iso(claimed_before)),
			)
			return cur.rowcount

	def record_delivery(
		self, name: str, accepted: Iterable[str], refused: Mapping[str, tuple[int, str]], now: datetime
	) -> None:
		accepted = list(accepted)
		if not accepted and not refused:
			return
		stamp = _iso(now)
		with self._tx() as db:
			db.executemany(
				"UPDATE outbox_recipients SET status='Sent', code=250, server_text=NULL, modified=? "
				"WHERE outbox=? AND email=?",
				[(stamp, int(name), rcpt) for rcpt in accepted],
			)
			db.executemany(
				"UPDATE outbox_recipients SET status=?, code=?, server_text=?, modified=? "
				"WHERE outbox=? AND email=? AND status='Pending'",
				[
					("Failed" if code >= 500 else "Pending", code, text, stamp, int(name), rcpt)
					for rcpt, (code, text) in refused.items()
				],
			)

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
		stamp = _iso(now)
		with self._tx() as db:
			row = db.execute(
				"SELECT retries, sent_copy, communication FROM outbox WHERE id=?", (int(name),)
			).fetchone()
			if row is None:
				raise KeyError(f"no outbox entry {name}")
			db.execute(
				"UPDATE outbox SET status=?, error=?, retries=?, next_try=?, claimed_at=NULL, sent_copy=?, "
				"modified=? WHERE id=?",
				(
					status,
					error,
					row["retries"] if retries is None else retries,
					_iso(next_try) if next_try else None,
					int(row["sent_copy"] if sent_copy is None else sent_copy),
					stamp,
					int(name),
				),
			)
			if status in FINAL:
				db.execute(
					"UPDATE outbox_recipients SET status='Failed', server_text=COALESCE(?, server_text), "
					"modified=? WHERE outbox=? AND status='Pending'",
					(error, stamp, int(name)),
				)
			if delivery_status and row["communication"]:
				db.execute(
					"UPDATE communications SET delivery_status=? WHERE id=? "
					"AND COALESCE(delivery_status, '') NOT IN ('Opened', 'Bounced')",
					(delivery_status, row["communication"]),
				)

	def get_outgoing(self, name: str) -> OutgoingMail | None:
		row = self.db.execute("SELECT * FROM outbox WHERE id=?", (int(name),)).fetchone()
		if row is None:
			return None
		recipients = self.db.execute(
			"SELECT * FROM outbox_recipients WHERE outbox=? ORDER BY rowid", (int(name),)
		).fetchall()
		return self._outgoing(row, recipients, pending_only=False)

	# -- tracking, unsubscribes, auto-replies ------------------------------------------------------

	def mark_opened(self, account: str, message_id: str, now: datetime) -> bool:
		with self._tx() as db:
			cur = db.execute(
				"UPDATE communications SET delivery_status='Opened' WHERE account=? AND message_id=? "
				"AND sent_or_received='Sent' AND COALESCE(delivery_status, '') != 'Bounced'",
				(account, message_id),
			)
			if cur.rowcount:
				return True
			return (
				db.execute(
					"SELECT 1 FROM communications WHERE account=? AND message_id=? AND sent_or_received='Sent'",
					(account, message_id),
				).fetchone()
				is not None
			)

	def record_unsubscribe(
		self, email: str, *, account: str | None, document: DocRef | None, now: datetime
	) -> bool:
		with self._tx() as db:
			cur = db.execute(
				"INSERT OR IGNORE INTO unsubscribes (email, account, reference_doctype, reference_name, created) "
				"VALUES (?,?,?,?,?)",
				(
					email.strip().lower(),
					account,
					document.doctype if document else None,
					document.name if document else None,
					_iso(now),
				),
			)
			return cur.rowcount == 1

	def is_unsubscribed(self, email: str) -> bool:
		return (
			self.db.execute("SELECT 1 FROM unsubscribes WHERE email=?", (email.strip().lower(),)).fetchone()
			is not None
		)

	def auto_replies_since(self, account: str, sender: str, since: datetime) -> int:
		return self.db.execute(
			"SELECT COUNT(*) FROM auto_replies WHERE account=? AND sender=? AND created>=?",
			(account, sender.strip().lower(), _iso(since)),
		).fetchone()[0]

	def claim_auto_reply(self, account: str, thread_key: str, sender: str, now: datetime) -> bool:
		with self._tx() as db:
			cur = db.execute(
				"INSERT OR IGNORE INTO auto_replies (account, thread_key, sender, created) VALUES (?,?,?,?)",
				(account, thread_key, sender.strip().lower(), _iso(now)),
			)
			return cur.rowcount == 1

	# -- reading, for the CLI and the tests --------------------------------------------------------

	def outbox_summary(self) -> dict[str, int]:
		rows = self.db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
		return {row[0]: row[1] for row in rows}
