"""Site mail through Email Sync Accounts: Frappe v15's ``override_email_send`` hook.

In v15, ``EmailQueue.send`` builds each recipient's copy of a queued message (notifications,
``frappe.sendmail``, and replies sent from a document's timeline, which core queues the same way)
and, when an app names ``override_email_send``, calls ``method(email_queue, sender, recipient,
message)`` instead of its own SMTP ``sendmail``; the queue marks the recipient sent when the call
returns and retries the message when it raises. Here the call goes out through the Email Sync
Account that core would pick among ours (the sender's address, then the account appending to the
document's DocType, then the default outgoing one); a reply about a document gets the thread's
In-Reply-To and References, and the message is recorded so that replies to it thread. When no
Email Sync Account applies, it goes out exactly as core would have sent it.

Note: v15's queue still needs an outgoing account it knows (a core Email Account with outgoing
enabled, or ``mail_server`` in site_config.json) to accept mail at all; see the README.
"""

from __future__ import annotations

import email.parser
import email.policy

import frappe
from frappe import _

from .accounts import ACCOUNT_DOCTYPE, account_settings, all_domains
from .engine.compose import cap_references, check_header_value
from .engine.parsing import parse_message_id, parse_message_ids
from .engine.settings import AccountSettings
from .engine.store import DocRef
from .frappe_store import ACCOUNT_FIELD, COMMUNICATION, MESSAGE, RECEIVED, FrappeStore

_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.default)


def send_site_mail(email_queue, sender: str, recipient: str, message: bytes | str) -> None:
	"""``override_email_send``: one recipient's copy of a queued message."""
	raw = message.encode("utf-8") if isinstance(message, str) else message
	account = account_for(email_queue, sender)
	if account is None:
		_send_as_core(email_queue, sender, recipient, raw)
		return
	if frappe.flags.in_test and not frappe.flags.testing_email:
		# the same rule as core's own send step: tests send nothing unless they ask to
		frappe.flags.sent_mail = raw
		return

	headers = _HEADERS.parsebytes(raw)
	document = _document_of(email_queue)
	thread = _thread_of(account.name, document)
	if thread and not headers.get("In-Reply-To"):
		raw = _with_thread_headers(raw, thread["ids"], headers.get("References"))

	outcome = _sender(account).send(raw, account.email_id, [recipient])
	if recipient not in outcome.accepted:
		code, words = outcome.refused.get(recipient, (0, ""))
		frappe.throw(
			_("{0} did not take the message for {1}: {2} {3}").format(
				account.smtp_server, recipient, code, words
			)
		)

	message_id = parse_message_id(headers.get("Message-ID")) or email_queue.message_id
	communication = email_queue.get("communication")
	if communication and frappe.db.exists(COMMUNICATION, communication):
		frappe.db.set_value(COMMUNICATION, communication, ACCOUNT_FIELD, account.name, update_modified=False)
	first = message_id and FrappeStore(commit=False).record_site_mail(
		account.name,
		message_id=message_id,
		subject=str(headers.get("Subject") or ""),
		sender=account.email_id,
		recipients=[r.recipient for r in email_queue.recipients],
		communication=communication,
		document=document,
		thread_token=thread["token"] if thread else None,
	)
	if first and account.append_emails_to_sent_folder:
		_append_to_sent(account, raw)


# -- which account -------------------------------------------------------------------------------


def account_for(email_queue, sender: str | None) -> AccountSettings | None:
	"""The Email Sync Account to send ``email_queue`` through, as core picks among its own: the
	sender's address, then the account appending to the document's DocType, then the default."""
	from frappe.utils import parse_addr

	address = (parse_addr(sender or email_queue.sender or "")[1] or "").lower()
	candidates = frappe.get_all(
		ACCOUNT_DOCTYPE,
		filters={"enable_outgoing": 1, "awaiting_password": 0},
		fields=["name", "email_id", "default_outgoing", "enable_incoming", "append_to"],
		order_by="creation asc",
	)
	if not candidates:
		return None
	name = next((c.name for c in candidates if (c.email_id or "").lower() == address), None)
	doctype = email_queue.reference_doctype
	if name is None and doctype:
		folders = set(
			frappe.get_all(
				"Email Sync Folder",
				filters={"append_to": doctype, "parenttype": ACCOUNT_DOCTYPE},
				pluck="parent",
			)
		)
		name = next(
			(
				c.name
				for c in candidates
				if c.enable_incoming and (c.append_to == doctype or c.name in folders)
			),
			None,
		)
	if name is None:
		name = next((c.name for c in candidates if c.default_outgoing), None)
	if name is None:
		return None
	return account_settings(frappe.get_doc(ACCOUNT_DOCTYPE, name), domains=all_domains())


def _document_of(email_queue) -> DocRef | None:
	if email_queue.reference_doctype and email_queue.reference_name:
		return DocRef(email_queue.reference_doctype, email_queue.reference_name)
	return None


def _thread_of(account: str, document: DocRef | None) -> dict | None:
	"""The Message-IDs of the mail this account received about ``document``, oldest first, and
	the thread's token: a reply from the document's timeline answers the newest of them."""
	if document is None:
		return None
	rows = frappe.get_all(
		MESSAGE,
		filters={
			"account": account,
			"status": RECEIVED,
			"reference_doctype": document.doctype,
			"reference_name": document.name,
		},
		fields=["message_id", "thread_token"],
		order_by="date asc",
		limit=50,
	)
	ids = [row.message_id for row in rows if row.message_id]
	if not ids:
		return None
	token = next((row.thread_token for row in reversed(rows) if row.thread_token), None)
	return {"ids": ids, "token": token}


def _with_thread_headers(raw: bytes, ids: list[str], references: str | None) -> bytes:
	"""``raw`` answering the newest of ``ids``: In-Reply-To and References put before its headers
	(the rest of the message stays byte for byte as the queue built it)."""
	chain = cap_references([*parse_message_ids(references), *ids])
	parent = ids[-1]
	for value in (parent, *chain):
		check_header_value(value, "Message-ID")
	lines = [f"In-Reply-To: <{parent}>"]
	if not references:
		lines.append("References: " + "\r\n ".join(f"<{i}>" for i in chain))
	return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace") + raw


# -- sending -------------------------------------------------------------------------------------


def _sender(account: AccountSettings):
	"""One SMTP session per account for the whole job or request (closed by ``close_senders``)."""
	from .engine.transports.smtp import SmtpSender

	senders = getattr(frappe.local, "email_sync_senders", None)
	if senders is None:
		senders = frappe.local.email_sync_senders = {}
	sender = senders.get(account.name)
	if sender is None:
		sender = senders[account.name] = SmtpSender(account)
	return sender


def close_senders(*args, **kwargs) -> None:
	"""after_request / after_job: close the SMTP sessions this request or job opened."""
	senders = getattr(frappe.local, "email_sync_senders", None) or {}
	frappe.local.email_sync_senders = {}
	for sender in senders.values():
		sender.close()


def _append_to_sent(account: AccountSettings, raw: bytes) -> None:
	from .engine.errors import EmailSyncError
	from .engine.transports.imap import ImapMailbox
	from .engine.transports.smtp import append_to_sent

	try:
		with ImapMailbox(account) as mailbox:
			append_to_sent(mailbox, raw, sent_folder_name=account.sent_folder_name)
	except EmailSyncError as exc:
		frappe.log_error(
			title=_("Email Sync Account {0}: sent, but not copied to the Sent folder").format(account.name),
			message=str(exc),
			reference_doctype=ACCOUNT_DOCTYPE,
			reference_name=account.name,
		)


def _send_as_core(email_queue, sender: str, recipient: str, raw: bytes) -> None:
	"""What v15's EmailQueue.send does itself when no app overrides the send step."""
	if frappe.flags.in_test and not frappe.flags.testing_email:
		return
	core_account = email_queue.get_email_account(raise_error=True)
	core_account.get_smtp_server().session.sendmail(from_addr=sender, to_addrs=recipient, msg=raw)
