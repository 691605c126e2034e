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

from .accounts import ACCOUNT_DOCTYPE, outgoing_accounts
from .engine.outbox import answering, sending_account, site_mail_thread
from .engine.parsing import parse_message_id
from .engine.settings import AccountSettings
from .engine.store import DocRef
from .frappe_store import ACCOUNT_FIELD, COMMUNICATION, FrappeStore

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
	store = FrappeStore(commit=False)
	thread = site_mail_thread(store, account.name, document)
	if thread and not headers.get("In-Reply-To"):
		raw = answering(raw, thread, headers.get("References"))

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
	first = message_id and store.record_site_mail(
		account.name,
		message_id=message_id,
		subject=str(headers.get("Subject") or ""),
		sender=account.email_id,
		recipients=[r.recipient for r in email_queue.recipients],
		communication=communication,
		document=document,
		thread_token=thread.token if thread else None,
	)
	if first and account.append_emails_to_sent_folder:
		_append_to_sent(account, raw)


# -- which account -------------------------------------------------------------------------------


def account_for(email_queue, sender: str | None) -> AccountSettings | None:
	"""The Email Sync Account to send ``email_queue`` through: the engine's ``sending_account``
	among the accounts that send (the sender's, the one appending to the document's DocType, the
	default outgoing one)."""
	return sending_account(
		outgoing_accounts(), sender=sender or email_queue.sender, doctype=email_queue.reference_doctype
	)


def _document_of(email_queue) -> DocRef | None:
	if email_queue.reference_doctype and email_queue.reference_name:
		return DocRef(email_queue.reference_doctype, email_queue.reference_name)
	return None


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
