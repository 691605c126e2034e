"""Messages written the way real clients write them, for the tests and the benchmarks."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

_counter = itertools.count(1)
BASE_DATE = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


def make_mail(
	*,
	subject: str | None = None,
	sender: str = "Customer One <customer@client.test>",
	to: str = "support@example.com",
	body: str | None = None,
	html: str | None = None,
	message_id: str | None = None,
	in_reply_to: str | None = None,
	references: str | None = None,
	attachments: list[tuple[str, bytes, str]] = (),
	headers: dict[str, str] | None = None,
	date: datetime | None = None,
	cc: str | None = None,
) -> bytes:
	n = next(_counter)
	msg = EmailMessage()
	msg["From"] = sender
	msg["To"] = to
	if cc:
		msg["Cc"] = cc
	msg["Subject"] = subject if subject is not None else f"Question number {n}"
	msg["Date"] = format_datetime(date or BASE_DATE + timedelta(minutes=n))
	msg["Message-ID"] = message_id or make_msgid(f"m{n}", domain="client.test")
	if in_reply_to:
		msg["In-Reply-To"] = in_reply_to
	if references:
		msg["References"] = references
	for key, value in (headers or {}).items():
		msg[key] = value
	msg.set_content(body if body is not None else f"Hello,\n\nthis is message {n}.\n\nRegards,\nCustomer\n")
	if html:
		msg.add_alternative(html, subtype="html")
	for filename, content, ctype in attachments:
		maintype, subtype = ctype.split("/", 1)
		msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
	return bytes(msg)


def message_id_of(raw: bytes) -> str:
	from email import message_from_bytes, policy

	return str(message_from_bytes(raw, policy=policy.default)["Message-ID"]).strip().strip("<>")
