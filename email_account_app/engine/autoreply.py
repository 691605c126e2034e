"""Auto-reply: the account's auto_reply_message to whoever starts a new thread.

Sent only when enable_auto_reply is on; never to automatic mail (Auto-Submitted, bulk, list,
noreply, mailer-daemon: ``IncomingMessage.auto_submitted``), never to the account's own address,
at most once per thread, and at most AUTO_REPLY_LIMIT times per sender per AUTO_REPLY_WINDOW, so
two auto-responders cannot start a loop. The reply carries ``Auto-Submitted: auto-replied``
(RFC 3834) and answers the message (In-Reply-To, References).

The sync calls ``maybe_auto_reply`` after it stored a message.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from .compose import (
	OutgoingRequest,
	SiteSettings,
	format_address,
	header_text,
	looks_like_html,
	usable_message_ids,
)
from .outbox import queue_mail
from .parsing import IncomingMessage
from .settings import AccountSettings
from .store import AutoReplyLog, Decision, DocRef, OutgoingMail, QueueStore, SaveResult, SendStore

log = logging.getLogger(__name__)

AUTO_REPLY_WINDOW = timedelta(hours=1)
AUTO_REPLY_LIMIT = 1  # auto-replies per sender per window
# local parts that never get an answer, whatever the headers say
_NEVER_ANSWER = (
	"mailer-daemon",
	"postmaster",
	"noreply",
	"no-reply",
	"no_reply",
	"donotreply",
	"do-not-reply",
)
_REPLY_PREFIX = ("re:", "aw:", "sv:", "antw:")


def should_auto_reply(
	account: AccountSettings, message: IncomingMessage, store: AutoReplyLog, now: datetime | None = None
) -> tuple[bool, str]:
	"""Whether ``message`` gets an auto-reply from ``account``, and why (not)."""
	now = now or datetime.now(timezone.utc)
	if not account.enable_auto_reply:
		return False, "auto-reply is off"
	if not account.enable_outgoing:
		return False, "the account does not send mail (enable_outgoing is off)"
	if not (account.auto_reply_message or "").strip():
		return False, "there is no auto_reply_message"
	sender = message.sender_email.strip().lower()
	if not sender or "@" not in sender:
		return False, "the message has no sender address"
	if message.auto_submitted:
		return False, f"automatic message ({message.auto_submitted})"
	if message.bounce is not None:
		return False, "a delivery report"
	local = sender.rpartition("@")[0]
	if local.split("+", 1)[0] in _NEVER_ANSWER:
		return False, f"{sender} does not take replies"
	own = account.email_id.lower()
	own_local, _, own_domain = own.rpartition("@")
	sender_local, _, sender_domain = sender.rpartition("@")
	if sender == own or (sender_domain == own_domain and sender_local.split("+", 1)[0] == own_local):
		return False, "sent from this account's own address"
	recent = store.auto_replies_since(account.name, sender, now - AUTO_REPLY_WINDOW)
	if recent >= AUTO_REPLY_LIMIT:
		return False, f"{sender} already had an auto-reply within {_span(AUTO_REPLY_WINDOW)}"
	return True, "new thread"


def queue_auto_reply(
	store: QueueStore,
	account: AccountSettings,
	site: SiteSettings,
	message: IncomingMessage,
	*,
	document: DocRef | None = None,
	thread_token: str | None = None,
	now: datetime | None = None,
) -> OutgoingMail | None:
	"""Queue the auto-reply to ``message`` (no checks: see ``should_auto_reply``)."""
	body = account.auto_reply_message or ""
	# what comes from the incoming mail is cleaned for a header (line breaks, controls), not refused
	subject = header_text(message.subject)
	if not subject.lower().startswith(_REPLY_PREFIX):
		subject = f"Re: {subject}" if subject else "Re: your message"
	to = format_address(message.sender_email, header_text(message.sender.name) if message.sender else None)
	request = OutgoingRequest(
		to=(to,),
		subject=subject,
		text=None if looks_like_html(body) else body,
		html=body if looks_like_html(body) else None,
		in_reply_to=usable_message_ids([message.message_id]),
		references=usable_message_ids(message.references),
		document=document,
		thread_token=thread_token,
		automatic="auto-replied",
		unsubscribe=False,
	)
	return queue_mail(store, account, site, request, now=now)


def maybe_auto_reply(
	store: SendStore,
	account: AccountSettings,
	site: SiteSettings,
	message: IncomingMessage,
	save_result: SaveResult,
	decision: Decision,
	now: datetime | None = None,
) -> OutgoingMail | None:
	"""After the sync stored ``message``: queue an auto-reply when it started a new thread and the
	rules allow one. Returns the queued mail, or None (the reason is logged)."""
	now = now or datetime.now(timezone.utc)
	if save_result.duplicate or save_result.communication is None:
		return None
	if decision.action not in ("create", "store") or decision.thread is not None:
		return None
	ok, reason = should_auto_reply(account, message, store, now)
	if not ok:
		log.info("%s: no auto-reply to %s: %s", account.name, message.message_id, reason)
		return None
	document = save_result.document or decision.document
	thread_key = (
		f"{document.doctype}/{document.name}"
		if document
		else (decision.thread_token and f"token/{decision.thread_token}") or f"message/{message.message_id}"
	)
	if not store.claim_auto_reply(account.name, thread_key, message.sender_email, now):
		log.info("%s: no auto-reply to %s: its thread already had one", account.name, message.message_id)
		return None
	return queue_auto_reply(
		store, account, site, message, document=document, thread_token=decision.thread_token, now=now
	)


def _span(delta: timedelta) -> str:
	minutes = int(delta.total_seconds() // 60)
	return f"{minutes // 60} hour(s)" if minutes % 60 == 0 else f"{minutes} minute(s)"
