"""Notify if unreplied: a notice when received mail waits too long for an answer.

``unreplied_mail`` is the one rule for what counts as unreplied: received mail of the account
that is older than ``unreplied_for_mins`` (and younger than LOOK_BACK more), not automatic
(out-of-office, bulk, lists, mailer-daemon, noreply), with no notice yet, no mail a person sent
on its thread since it came (its document, its thread token, or in reply to it; the engine's own
auto-replies and notices answer nothing), and its document, if it has one, still there and open
(no status, or Open). ``notify_unreplied`` gives one notice per such
message to ``send_notification_to``, through the account (or the default outgoing one); the
message is claimed in the store before the notice is queued, so it raises at most one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Protocol

from .compose import OutgoingRequest, SiteSettings, header_text
from .outbox import queue_mail
from .routing import OPEN
from .settings import AccountSettings
from .store import OutgoingMail, QueueStore, ReplyWatch, ThreadIndex, WaitingMail

log = logging.getLogger(__name__)

#: mail older than this when the feature is turned on raises no notice
LOOK_BACK = timedelta(days=7)


class WatchStore(ReplyWatch, ThreadIndex, Protocol):
	"""What the unreplied rule reads: the watch on received mail and the documents' states."""


class UnrepliedStore(WatchStore, QueueStore, Protocol):
	"""What notices need: the rule's reads, and the outbox."""


def notification_addresses(value: str | None) -> tuple[str, ...]:
	return tuple(a for a in re.split(r"[\s,;]+", value or "") if a)


def unreplied_mail(store: WatchStore, account: AccountSettings, now: datetime) -> Iterator[WaitingMail]:
	"""The account's received mail that counts as unreplied at ``now`` (see the module's rule)."""
	waited = timedelta(minutes=account.unreplied_for_mins)
	before = now - waited
	for mail in store.received_without_notice(
		account.name, received_after=before - LOOK_BACK, received_before=before
	):
		if mail.automatic:
			continue
		document = mail.ref.document
		if document is not None:
			state = store.document_state(document)
			if state is None or (state.status or OPEN) != OPEN:
				continue
		if store.sent_on_thread_since(account.name, mail.ref, mail.received_at):
			continue
		yield mail


def notify_unreplied(
	store: UnrepliedStore,
	account: AccountSettings,
	site: SiteSettings,
	*,
	sender: AccountSettings | None = None,
	now: datetime | None = None,
) -> list[OutgoingMail]:
	"""Queue one notice per received message left unreplied too long; returns what was queued."""
	if not account.notify_if_unreplied:
		return []
	recipients = notification_addresses(account.send_notification_to)
	sender = sender or account
	now = now or datetime.now(timezone.utc)
	queued = []
	for waiting in list(unreplied_mail(store, account, now)):
		comm = waiting.ref
		if not store.claim_unreplied_notice(account.name, comm.name):
			continue  # another worker took it
		about = f" ({comm.document})" if comm.document else ""
		request = OutgoingRequest(
			to=recipients,
			subject=f"Unreplied for {account.unreplied_for_mins} minutes: {header_text(comm.subject) or '(no subject)'}",
			text=(
				f"The email from {comm.sender} to {account.email_id}{about} has had no reply for "
				f"{account.unreplied_for_mins} minutes.\n\nSubject: {comm.subject}\n"
			),
			document=comm.document,
			automatic="auto-generated",
			unsubscribe=False,
		)
		mail = queue_mail(store, sender, site, request, now=now)
		if mail is not None:
			queued.append(mail)
	if queued:
		log.info("%s: %d unreplied notice(s) queued", account.name, len(queued))
	return queued
