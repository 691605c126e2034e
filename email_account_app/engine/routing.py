"""Where an incoming message goes: the thread it joins, the document it creates, or why it is skipped.

Order of the checks, each recorded as the decision's ``rule``:
1. our own message (its Message-ID is one we sent): skipped; the mail a client sends through the
   List-Unsubscribe mailto: of our mail (its subject carries the signed token): skipped, and the
   address unsubscribed;
2. a delivery report (bounce): recorded against the outgoing message it reports on;
3. the import condition of the folder or account: skipped with the reason when it does not hold;
   a condition that cannot be evaluated on the message (a type error, past its bounds) raises
   ConditionError, so the pull keeps the message as failed, raw bytes and reason, not skipped;
4. the thread, matched by
   a. In-Reply-To, then every id in References, against the account's received and sent mail,
   b. a thread token in those ids or in a recipient's sub-address (replies+TOKEN@),
   c. a document name in the subject ([#ISS-00001] or #ISS-00001),
   d. the normalised subject (Re:/Fwd:/AW:/SV:... stripped) and the same sender within 60 days;
5. a new thread: a new document of the folder's or account's append_to DocType, unless the message
   is automatic (an out-of-office, a mailer-daemon notice) and so must not start anything.
With enable_automatic_linking, recipients written ``address+DocType=name@`` or
``address+DocType+name@`` also link the message to that document's timeline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

from . import tokens
from .compose import SiteSettings, unsubscribe_request
from .errors import ConditionError
from .parsing import IncomingMessage, normalize_subject
from .rules import evaluate_condition
from .settings import AccountSettings, FolderSettings
from .store import CommunicationRef, Decision, DocRef, DocumentState, ThreadIndex

SUBJECT_MATCH_DAYS = 60
# [#ISS-00001], [ISS-00001], #ISS-00001 -- a name with at least one letter and ending in digits
_NAME_IN_SUBJECT = re.compile(r"\[#?([A-Za-z][\w.\-]*?-\d+)\]|(?<![\w#])#([A-Za-z][\w.\-]*?-\d+)\b")
# automatic mail that must never start a thread by itself
_NEVER_STARTS = ("auto-replied", "x-autoreply", "x-autorespond", "mailer-daemon")


class Router:
	"""Decides, for one account, what each incoming message becomes. Reads the thread index, never
	writes.
	``site`` (its secret) tells our unsubscribe tokens from others; without it there are none."""

	def __init__(
		self,
		account: AccountSettings,
		store: ThreadIndex,
		*,
		now: datetime | None = None,
		site: SiteSettings | None = None,
	):
		self.account = account
		self.store = store
		self.now = now or datetime.now(timezone.utc)
		self.site = site

	def decide(self, message: IncomingMessage, folder: FolderSettings) -> Decision:
		own = self.store.find_by_message_ids(self.account.name, [message.message_id])
		if own is not None and own.sent_or_received == "Sent" and own.account == self.account.name:
			return Decision("skip", reason="sent by this account", rule="own-message")
		request = unsubscribe_request(self.site, message.subject)
		if request is not None:
			return Decision(
				"skip",
				reason=f"{request['email']} asked to unsubscribe (List-Unsubscribe by mail)",
				rule="unsubscribe",
				unsubscribe=request,
			)
		if message.bounce is not None:
			return self._bounce(message)
		skip = self._condition(message, folder)
		if skip is not None:
			return skip
		links = self._automatic_links(message)
		match = self._thread(message, folder)
		if match is not None:
			thread, document, rule, reason = match
			state = self.store.document_state(document) if document is not None else None
			return Decision(
				"link",
				reason=reason,
				rule=rule,
				thread=thread,
				document=document,
				timeline_links=links,
				thread_token=thread.thread_token if thread else None,
				set_status=None if message.auto_submitted else reopened_status(state),
			)
		return self._new_thread(message, folder, links)

	# -- steps ---------------------------------------------------------------------------------

	def _bounce(self, message: IncomingMessage) -> Decision:
		report = message.bounce
		assert report is not None  # decide() asks only for a bounce
		ids = [report.original_message_id] if report.original_message_id else []
		original = self.store.find_by_message_ids(self.account.name, ids) if ids else None
		if original is None:
			original = self._by_token(tokens.tokens_in(ids))
		recipients = ", ".join(report.recipients) or "unknown recipient"
		reason = f"delivery to {recipients} failed: {report.diagnostic or report.status or 'no reason given'}"
		if original is None:
			return Decision("store", reason=f"{reason} (for a message not sent from here)", rule="bounce")
		return Decision(
			"bounce",
			reason=reason,
			rule="bounce",
			thread=original,
			document=original.document,
			bounced=original if original.sent_or_received == "Sent" else None,
		)

	def _condition(self, message: IncomingMessage, folder: FolderSettings) -> Decision | None:
		expression = folder.condition or self.account.condition
		if not expression:
			return None
		try:
			if evaluate_condition(expression, message, folder.folder_name):
				return None
			return Decision(
				"skip", reason=f"the import condition does not hold: {expression}", rule="condition"
			)
		except ConditionError as exc:  # not the message's fault: keep it (as failed), do not skip it
			raise ConditionError(f"import condition {expression!r}: {exc.message}", hint=exc.hint) from None

	def _thread(
		self, message: IncomingMessage, folder: FolderSettings
	) -> tuple[CommunicationRef | None, DocRef | None, str, str] | None:
		account = self.account.name
		in_reply_to = [i for i in reversed(message.in_reply_to) if i != message.message_id]
		references = [i for i in reversed(message.references) if i != message.message_id]
		for rule, ids in (("in-reply-to", in_reply_to), ("references", references)):
			found = self.store.find_by_message_ids(account, ids) if ids else None
			if found is not None:
				return found, found.document, rule, f"reply to {found.message_id}"

		addresses = [*(a.email for a in (*message.to, *message.cc)), *message.delivered_to]
		found = self._by_token(tokens.tokens_in([*in_reply_to, *references], addresses))
		if found is not None:
			return found, found.document, "thread-token", "thread token of a message we sent"

		document = self._document_in_subject(message.subject, folder)
		if document is not None:
			return None, document, "subject-document", f"{document} named in the subject"

		subject = normalize_subject(message.subject)
		if subject and message.sender is not None:
			since = self.now - timedelta(days=SUBJECT_MATCH_DAYS)
			found = self.store.find_by_subject(account, subject, message.sender.email, since)
			if found is not None:
				return found, found.document, "subject-sender", "same subject and sender within 60 days"
		return None

	def _by_token(self, found_tokens: Iterable[str]) -> CommunicationRef | None:
		for token in found_tokens:
			found = self.store.find_by_thread_token(self.account.name, token)
			if found is not None:
				return found
		return None

	def _document_in_subject(self, subject: str, folder: FolderSettings) -> DocRef | None:
		names = [a or b for a, b in _NAME_IN_SUBJECT.findall(subject or "")]
		if not names:
			return None
		preferred = [d for d in (folder.append_to, self.account.append_to) if d]
		doctypes = list(dict.fromkeys([*preferred, *self.store.document_doctypes()]))
		for name in names:
			for doctype in doctypes:
				ref = DocRef(doctype, name)
				if self.store.document_state(ref) is not None:
					return ref
		return None

	def _automatic_links(self, message: IncomingMessage) -> tuple[DocRef, ...]:
		if not self.account.enable_automatic_linking:
			return ()
		links = []
		for address in (*(a.email for a in (*message.to, *message.cc)), *message.delivered_to):
			ref = document_from_address(address)
			if ref is not None and self.store.document_state(ref) is not None:
				links.append(ref)
		return tuple(dict.fromkeys(links))

	def _new_thread(
		self, message: IncomingMessage, folder: FolderSettings, links: tuple[DocRef, ...]
	) -> Decision:
		automatic = message.auto_submitted or ""
		if automatic.startswith(_NEVER_STARTS):
			return Decision(
				"store",
				reason=f"automatic message ({automatic}) that answers no thread of ours: kept, no document created",
				rule="automatic",
				timeline_links=links,
			)
		append_to = folder.append_to or self.account.append_to
		token = tokens.new_thread_token()
		if append_to:
			return Decision(
				"create",
				reason=f"new thread: a new {append_to}",
				append_to=append_to,
				timeline_links=links,
				thread_token=token,
			)
		return Decision("store", reason="new thread", timeline_links=links, thread_token=token)


#: statuses a reply takes a document out of: it waited on the customer, or it was finished
REOPEN_FROM = ("Replied", "Resolved", "Closed")
OPEN = "Open"


def reopened_status(state: DocumentState | None) -> str | None:
	"""The status a received reply sets on the document it threads onto, or None to leave it.

	The one reopening rule, for every store: a document that is Replied, Resolved or Closed goes
	back to Open when its DocType has an Open status (Issue, HD Ticket, Opportunity, Lead, Job
	Applicant...); any other status (Open, On Hold, Converted, Lost, Rejected...) stays as it is.
	Automatic mail (an out-of-office reply) reopens nothing: the router does not ask.
	"""
	if state is None or not state.can_open or state.status not in REOPEN_FROM:
		return None
	return OPEN


def document_from_address(address: str) -> DocRef | None:
	"""``admin+DocType+name@x`` or ``admin+DocType=name@x`` (URL-quoted) -> the document, as in core."""
	local = (address or "").split("@", 1)[0]
	parts = local.split("+")
	if len(parts) == 3:
		doctype, name = parts[1], parts[2]
	elif len(parts) == 2 and "=" in parts[1]:
		doctype, name = parts[1].split("=", 1)
	else:
		return None
	doctype, name = unquote(doctype).strip(), unquote(name).strip()
	if not doctype or not name:
		return None
	return DocRef(doctype, name)
