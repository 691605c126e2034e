"""Site mail through the engine: Frappe v15's ``override_email_send`` hook.

Core's Email Queue stays the site's one outbox: ``frappe.sendmail``, notifications, replies
written in a document's timeline, and the engine's own auto-replies and unreplied notices all
queue there, with From and Reply-To as core decides them (its ``always_use_account_email_id_as_
sender``, ``always_use_account_name_as_sender_name``, Reply-To on the incoming account). When the
queue sends, ``EmailQueue.send`` builds each recipient's copy and calls ``send_site_mail(queue,
sender, recipient, message)`` instead of its own SMTP step; it marks the recipient sent when the
call returns and retries the message when it raises.

Here the copy goes out through the engine with the SMTP settings of the Email Account core chose
for the queue (one SMTP session per account for the whole job, closed by ``close_senders``),
carrying what core leaves out: In-Reply-To and References of the thread the document has, and a
List-Unsubscribe header when the message has core's unsubscribe link. The message is recorded in
the ledger so that the answer threads. An OAuth account signs in with its Connected App's token
(connected_app.py); while it is not authorised (again), its mail fails at once with words that say
so (core's queue retries it), and a sign-in the provider refuses for good is recorded once.
Accounts the engine does not serve (Frappe Mail on v16: ``accounts.engine_serves``) are sent
exactly as core sends them.

Core's contract for test runs holds for both: while ``frappe.flags.in_test`` is set, nothing leaves
unless a test sets ``frappe.flags.testing_email`` (core checks the same two flags right around
this hook; other apps' tests rely on it).
"""

from __future__ import annotations

import email.parser
import email.policy

import frappe
from frappe import _

from .accounts import ACCOUNT_DOCTYPE, account_settings, engine_serves
from .connected_app import blocked, sign_in_lost
from .engine.errors import SignInRequired
from .engine.outbox import answering, prepending, site_mail_thread
from .engine.parsing import parse_message_id
from .engine.settings import AccountSettings
from .engine.store import DocRef
from .frappe_store import FrappeStore

_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.default)
CORE_UNSUBSCRIBE = "/api/method/frappe.email.queue.unsubscribe"
UNSUBSCRIBE_PLACEHOLDER = "<!--unsubscribe_url-->"


def send_site_mail(email_queue, sender: str, recipient: str, message: bytes | str) -> None:
	"""``override_email_send``: one recipient's copy of a queued message."""
	raw = message.encode("utf-8") if isinstance(message, str) else message
	doc = email_queue.get_email_account(raise_error=True)
	if core_holds_mail():
		frappe.flags.sent_mail = raw
		return
	if not engine_serves(doc):
		_send_as_core(doc, email_queue, sender, recipient, raw)
		return
	if words := blocked(doc):
		raise SignInRequired(words)
	account = account_settings(doc)
	headers = _HEADERS.parsebytes(raw)
	document = _document_of(email_queue)
	store = FrappeStore(commit=False)
	thread = site_mail_thread(store, account.name, document)
	if thread and not headers.get("In-Reply-To"):
		raw = answering(raw, thread, headers.get("References"))
	unsubscribe = _unsubscribe_url(email_queue, recipient)
	if unsubscribe and not headers.get("List-Unsubscribe"):
		raw = prepending(raw, [("List-Unsubscribe", f"<{unsubscribe}>")])

	try:
		outcome = _sender(account).send(raw, account.email_id, [recipient])
	except SignInRequired as exc:
		sign_in_lost(doc, str(exc))
		raise
	if recipient not in outcome.accepted:
		code, words = outcome.refused.get(recipient, (0, ""))
		frappe.throw(
			_("{0} did not take the message for {1}: {2} {3}").format(
				account.smtp_server, recipient, code, words
			)
		)

	message_id = parse_message_id(headers.get("Message-ID")) or email_queue.message_id
	if message_id:
		store.record_site_mail(
			account.name,
			message_id=message_id,
			subject=str(headers.get("Subject") or ""),
			sender=account.email_id,
			recipients=[r.recipient for r in email_queue.recipients],
			communication=email_queue.get("communication"),
			document=document,
			thread_token=thread.token if thread else None,
		)


def core_holds_mail() -> bool:
	"""Core's rule for test runs: nothing leaves while tests run unless a test asks for it."""
	return bool(frappe.flags.in_test and not frappe.flags.testing_email)


def _document_of(email_queue) -> DocRef | None:
	if email_queue.reference_doctype and email_queue.reference_name:
		return DocRef(email_queue.reference_doctype, email_queue.reference_name)
	return None


def _unsubscribe_url(email_queue, recipient: str) -> str | None:
	"""Core's signed unsubscribe URL for this recipient when the message carries core's
	unsubscribe link (its body has the placeholder core fills), made as core makes it."""
	if not (email_queue.reference_doctype and UNSUBSCRIBE_PLACEHOLDER in (email_queue.message or "")):
		return None
	from frappe.email.queue import get_unsubcribed_url

	return get_unsubcribed_url(
		reference_doctype=email_queue.reference_doctype,
		reference_name=email_queue.reference_name,
		email=recipient,
		unsubscribe_method=email_queue.unsubscribe_method or CORE_UNSUBSCRIBE,
		unsubscribe_params=email_queue.unsubscribe_param,
	)


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


def append_to_sent(account: AccountSettings, raw: bytes) -> None:
	"""A copy of sent mail in the account's Sent folder (found by its special use, else by name,
	else created); a failure is logged against the account, the mail is sent all the same."""
	from .engine.errors import EmailSyncError
	from .engine.transports.imap import ImapMailbox
	from .engine.transports.smtp import append_to_sent as append

	try:
		with ImapMailbox(account) as mailbox:
			append(mailbox, raw, sent_folder_name=account.sent_folder_name)
	except EmailSyncError as exc:
		frappe.log_error(
			title=_("Email Account {0}: sent, but not copied to the Sent folder").format(account.name),
			message=str(exc),
			reference_doctype=ACCOUNT_DOCTYPE,
			reference_name=account.name,
		)


def _send_as_core(doc, email_queue, sender: str, recipient: str, raw: bytes) -> None:
	"""What core's EmailQueue.send does itself when no app overrides the send step (v16: Frappe
	Mail accounts through their client)."""
	if doc.get("service") == "Frappe Mail" and hasattr(doc, "get_frappe_mail_client"):
		doc.get_frappe_mail_client().send_raw(
			sender=sender,
			recipients=recipient,
			message=raw,
			is_newsletter=email_queue.reference_doctype == "Newsletter",
		)
		return
	doc.get_smtp_server().session.sendmail(
		from_addr=sender, to_addrs=recipient, msg=raw.decode("utf-8").encode()
	)
