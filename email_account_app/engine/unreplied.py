"""Notify if unreplied: a notice when received mail waits too long for an answer.

After ``unreplied_for_mins`` with no mail sent on the thread, and its document (if any) still open,
one notice goes to ``send_notification_to`` through the account (or the default outgoing one).
Automatic mail (out-of-office, bulk, lists, mailer-daemon, noreply) never raises a notice, and a
message raises at most one: it is claimed in the store before the notice is queued.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone

from .compose import OutgoingRequest, SiteSettings
from .outbox import SendStore, queue_mail
from .settings import AccountSettings
from .store import OutgoingMail

log = logging.getLogger(__name__)

#: mail older than this when the feature is turned on raises no notice
LOOK_BACK = timedelta(days=7)


def notification_addresses(value: str | None) -> tuple[str, ...]:
	return tuple(a for a in re.split(r"[\s,;]+", value or "") if a)


def notify_unreplied(
	store: SendStore,
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
	waited = timedelta(minutes=account.unreplied_for_mins)
	queued = []
	for comm in store.unreplied(
		account.name, received_before=now - waited, received_after=now - waited - LOOK_BACK
	):
		if not store.claim_unreplied_notice(account.name, comm.name):
			continue  # another worker took it
		about = f" ({comm.document})" if comm.document else ""
		request = OutgoingRequest(
			to=recipients,
			subject=f"Unreplied for {account.unreplied_for_mins} minutes: {comm.subject or '(no subject)'}",
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
