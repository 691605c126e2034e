"""Replies written the way real mail clients write them: headers, quoting and all."""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from email.utils import format_datetime

from .factory import BASE_DATE


def _base(subject, sender, to, message_id, in_reply_to=None, references=None, cc=None, extra=None):
	msg = EmailMessage()
	msg["From"] = sender
	msg["To"] = to
	if cc:
		msg["Cc"] = cc
	msg["Subject"] = subject
	msg["Date"] = format_datetime(BASE_DATE)
	msg["Message-ID"] = f"<{message_id}>"
	if in_reply_to:
		msg["In-Reply-To"] = f"<{in_reply_to}>"
	if references:
		msg["References"] = " ".join(f"<{r}>" for r in references)
	for key, value in (extra or {}).items():
		msg[key] = value
	return msg


def gmail_reply(
	parent_id,
	subject,
	*,
	sender="Customer One <customer@client.test>",
	to="support@example.com",
	references=None,
	body="Thanks, that fixed it.",
	cc=None,
	in_reply_to=True,
):
	mid = f"CAF{uuid.uuid4().hex[:24]}+Ab=x@mail.gmail.com"
	msg = _base(
		f"Re: {subject}", sender, to, mid, parent_id if in_reply_to else None, references or [parent_id], cc
	)
	quoted = f"{body}\n\nOn Mon, 2 Nov 2026 at 10:00, Support <{to}> wrote:\n> Have you tried turning it off and on?\n"
	msg.set_content(quoted)
	msg.add_alternative(
		f'<div dir="ltr">{body}</div><br><div class="gmail_quote"><div class="gmail_attr">On Mon, 2 Nov 2026 '
		f'at 10:00, Support wrote:<br></div><blockquote class="gmail_quote">Have you tried turning it off and on?'
		"</blockquote></div>",
		subtype="html",
	)
	return bytes(msg), mid


def outlook_reply(
	parent_id,
	subject,
	*,
	sender="Kunde <kunde@firma.test>",
	to="support@example.com",
	references=None,
	prefix="RE",
	body="Danke, es funktioniert.",
	in_reply_to=True,
	headers=True,
):
	mid = f"DB9PR07MB{uuid.uuid4().hex[:10].upper()}@DB9PR07MB7180.eurprd07.prod.outlook.com"
	extra = {
		"Thread-Topic": subject,
		"Thread-Index": "AQHZ3x1mXk2nQ1y3TUqP0vQ7aX8b1w==",
		"X-MS-Has-Attach": "",
		"X-MS-TNEF-Correlator": "",
	}
	msg = _base(
		f"{prefix}: {subject}",
		sender,
		to,
		mid,
		parent_id if (headers and in_reply_to) else None,
		(references or [parent_id]) if headers else None,
		extra=extra,
	)
	msg.set_content(
		f"{body}\n\n-----Original Message-----\nFrom: Support <{to}>\nSent: Monday, November 2, 2026 10:00 AM\n"
		f"To: {sender}\nSubject: {subject}\n\nHave you tried turning it off and on?\n"
	)
	return bytes(msg), mid


def apple_reply(
	parent_id, subject, *, sender="Pat <pat@mac.test>", to="support@example.com", body="Works now!"
):
	mid = f"{str(uuid.uuid4()).upper()}@mac.test"
	msg = _base(
		f"Re: {subject}",
		sender,
		to,
		mid,
		parent_id,
		[parent_id],
		extra={"X-Mailer": "Apple Mail (2.3774.200.91.1.1)", "Mime-Version": "1.0 (Mac OS X Mail 16.0)"},
	)
	msg.set_content(f"{body}\n\n> On 2 Nov 2026, at 10:00, Support <{to}> wrote:\n> \n> Try again.\n")
	return bytes(msg), mid


def thunderbird_reply(
	parent_id,
	subject,
	*,
	sender="Tom <tom@bird.test>",
	to="support@example.com",
	references=None,
	body="Here is more detail.",
):
	mid = f"{uuid.uuid4()}@bird.test"
	msg = _base(
		f"Re: {subject}",
		sender,
		to,
		mid,
		parent_id,
		references or [parent_id],
		extra={"User-Agent": "Mozilla Thunderbird", "Content-Language": "en-US"},
	)
	msg.set_content(f"{body}\n\nOn 02/11/2026 10:00, Support wrote:\n> Which model is it?\n")
	msg.replace_header("Content-Type", "text/plain; charset=UTF-8; format=flowed")
	return bytes(msg), mid
