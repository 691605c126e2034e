"""The parsing layer: real-looking messages in tests/mails/, every field of the record, and bytes that
try hard to break it."""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
import re
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_account_app.engine import parsing
from email_account_app.engine.parsing import (
	Address,
	BounceReport,
	IncomingMessage,
	extract_reply,
	normalize_subject,
	parse_message,
	parse_message_id,
	parse_message_ids,
	safe_filename,
	sanitize_html,
)
from tests.factory import make_mail

MAILS = Path(__file__).parent / "mails"
RECEIVED = datetime(2024, 3, 20, 12, 0, tzinfo=timezone.utc)
DERIVED_ID = re.compile(r"^[0-9a-f]{32}@email-account-app\.invalid$")
MB = 1024 * 1024


def load(name: str, **options) -> IncomingMessage:
	return parse_message((MAILS / name).read_bytes(), received_at=RECEIVED, **options)


def mail(*headers: str, body: str = "Hello\n", **options) -> IncomingMessage:
	"""A message from header lines and a body, parsed."""
	raw = ("\n".join(headers) + "\n\n" + body).encode("utf-8")
	return parse_message(raw, received_at=RECEIVED, **options)


def fell_back(message: IncomingMessage) -> bool:
	return any(w.startswith("could not parse") for w in message.warnings)


def assert_all_text_is_utf8(message: IncomingMessage) -> None:
	"""Every string in the record can go into a database (no lone surrogates)."""
	texts = [message.subject, message.text_content, message.html_content, message.reply_text]
	texts += [message.message_id, *message.in_reply_to, *message.references, *message.warnings]
	texts += [a.email + a.name for a in (*message.to, *message.cc, *message.reply_to)]
	texts += [n + v for n, v in message.headers] + [a.filename for a in message.attachments]
	for text in texts:
		text.encode("utf-8")
		assert "\x00" not in text


# -- every sample ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in MAILS.glob("*.eml")))
def test_every_sample_gives_a_full_record(name):
	raw = (MAILS / name).read_bytes()
	message = parse_message(raw, received_at=RECEIVED)
	assert isinstance(message, IncomingMessage)
	assert not fell_back(message)
	assert message.raw == raw and message.size == len(raw)
	assert message.headers and message.subject
	assert message.text_content.strip() and message.reply_text.strip()
	assert "\r" not in message.text_content
	assert message.date.tzinfo is not None
	assert_all_text_is_utf8(message)
	assert parse_message(raw, received_at=RECEIVED) == message  # deterministic


# -- Gmail -----------------------------------------------------------------------------------


def test_gmail_reply():
	m = load("gmail_reply.eml")
	assert m.message_id == "CAKx9+Ab_RmQ2vZ3Lk8Y7pW=fXyz@mail.gmail.com"
	assert not m.message_id_derived
	assert m.in_reply_to == ("issue-ab12cd.1709500000@example.com",)
	assert m.references == ("CAF=ab12cd34ef56@mail.example.com", "issue-ab12cd.1709500000@example.com")
	assert m.subject == "Re: [Ticket #1042] Printer on floor 3 doesn\u2019t work"
	assert m.sender == Address("Juergen.Mueller@gmail.com", "Jürgen Müller")
	assert (m.sender_email, m.sender_full_name) == ("Juergen.Mueller@gmail.com", "Jürgen Müller")
	assert m.reply_to == ()
	assert m.to == (Address("support@example.com", "Example Support"),)
	assert m.cc == (Address("jane.doe@example.com", "Doe, Jane"), Address("bob@example.org"))
	assert m.recipients == m.to + m.cc
	assert m.delivered_to == ("support+issue-ab12cd@example.com", "support@example.com")
	assert m.date == datetime(2024, 3, 4, 10, 20, tzinfo=timezone.utc)
	assert m.date_from_header
	assert m.text_content.startswith("Hi,\n\nI restarted it")
	assert "> could you please switch the printer off" in m.text_content
	assert m.reply_text == (
		"Hi,\n\nI restarted it as you suggested and now it prints again. Thanks a lot!\n\nJürgen"
	)
	assert "<blockquote>" in m.html_content and "Jürgen" in m.html_content
	assert "style=" not in m.html_content and "class=" not in m.html_content
	assert 'href="mailto:support@example.com" rel="noopener noreferrer"' in m.html_content
	assert m.attachments == () and not m.has_attachment
	assert m.auto_submitted is None and m.bounce is None
	assert m.warnings == ()


def test_headers_are_all_kept_decoded_in_order():
	m = load("gmail_reply.eml")
	names = [name for name, _ in m.headers]
	assert names[:3] == ["Delivered-To", "Received", "X-Original-To"]
	assert len(names) == 15
	assert m.header("subject") == "Re: [Ticket #1042] Printer on floor 3 doesn\u2019t work"
	assert m.header("FROM") == "Jürgen Müller <Juergen.Mueller@Gmail.COM>"
	assert m.header("dkim-signature").startswith("v=1; a=rsa-sha256;")
	assert "\n" not in m.header("DKIM-Signature")
	assert m.header("X-Not-There") is None


# -- Outlook ---------------------------------------------------------------------------------


def test_outlook_reply():
	m = load("outlook_reply.eml")
	assert b"\r\n" in m.raw
	assert m.message_id == "AM0PR02MB55553C1D2E3F4A5B6C7D8E9FA0B1C2D3@AM0PR02MB5555.eurprd02.prod.outlook.com"
	assert m.in_reply_to == m.references == ("inv-0042.1709560000@example.com",)
	assert m.subject == "RE: Invoice INV-2024-0042"
	assert m.sender == Address("anna.schmidt@contoso.com", "Schmidt, Anna")
	assert m.header("thread-index") == "AdpuzGm6hJ5p0xM3TkS2l9Cr3aKNVQAAbN7A"
	assert m.header("X-MS-Has-Attach") == ""
	assert "paid yesterday \u2013 please check again" in m.text_content  # windows-1252 en dash
	assert "\r" not in m.text_content
	assert "-----Original Message-----" in m.text_content
	assert m.reply_text == (
		"Hello,\n\nthe invoice was paid yesterday \u2013 please check again.\n\n"
		"Kind regards\nAnna Schmidt\nAccounts Payable \u2013 Contoso GmbH"
	)
	assert "MsoNormal" not in m.html_content and "<style" not in m.html_content
	assert "<o:p>" not in m.html_content and "<b>From:</b>" in m.html_content
	assert m.date == datetime(2024, 3, 5, 8, 31, 43, tzinfo=timezone.utc)
	assert m.warnings == ()


# -- Apple Mail: an inline image in multipart/related ---------------------------------------


def test_apple_mail_inline_image():
	m = load("apple_mail_inline.eml")
	assert m.message_id == "5D2C1B0A-9E8F-4A7B-B6C5-D4E3F2A1B0C9@icloud.com"
	assert m.date == datetime(2024, 3, 6, 0, 12, 5, tzinfo=timezone.utc)
	(image,) = m.attachments
	assert image.filename == "screenshot.png"
	assert image.content_type == "image/png"
	assert image.content.startswith(b"\x89PNG\r\n\x1a\n") and image.size == len(image.content) == 69
	assert image.content_id == "B8E3F0A2-1C4D-4E5F-9A6B-7C8D9E0F1A2B@home"
	assert image.inline and image.dropped_reason is None
	assert not m.has_attachment  # an image in the body is no attachment to the reader
	assert 'src="cid:B8E3F0A2-1C4D-4E5F-9A6B-7C8D9E0F1A2B@home"' in m.html_content
	assert m.reply_text == "Here is the screenshot you asked for:\n\n[image: screenshot.png]\n\nMika"


def test_content_id_not_used_in_the_html_is_a_plain_attachment():
	msg = EmailMessage()
	msg["Subject"] = "cid"
	msg.set_content("text")
	msg.add_alternative("<p>no image here</p>", subtype="html")
	msg.add_attachment(b"GIF89a", maintype="image", subtype="gif", cid="<unused@x>")
	(image,) = parse_message(msg.as_bytes()).attachments
	assert image.content_id == "unused@x" and not image.inline
	assert image.filename == "image.gif"


# -- Thunderbird: format=flowed --------------------------------------------------------------


def test_thunderbird_flowed_reply():
	m = load("thunderbird_flowed.eml")
	assert m.references == (
		"rn-24.1709800000@example.com",
		"a1b2c3@example.net",
		"rn-24.1709810000@example.com",
	)
	assert m.subject == "Re: Re: Release notes for 2.4"
	assert normalize_subject(m.subject) == "release notes for 2.4"
	assert m.text_content.startswith(
		"Thanks, the new export works fine here. One small thing: the date column in the CSV "
		"still uses the old format, could you switch it to ISO 8601 as well?\n\nLars\n"
	)
	assert (
		"> Hello Lars, the release notes for 2.4 are attached; the export now handles large files.\n"
		">> Previous message" in m.text_content.replace("> \n", "")
	)
	assert m.text_content.endswith("-- \nLars Nilsson · Example Net AB\n")
	assert m.reply_text == (
		"Thanks, the new export works fine here. One small thing: the date column in the CSV "
		"still uses the old format, could you switch it to ISO 8601 as well?\n\nLars"
	)
	assert m.html_content == ""


def test_flowed_with_delsp_joins_without_the_space():
	m = mail(
		"Subject: delsp",
		"Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes",
		body="Donau\nDampfschiff \nfahrt\n",
	)
	assert m.text_content == "Donau\nDampfschifffahrt\n"


# -- HTML-only newsletter --------------------------------------------------------------------


def test_newsletter_html_only():
	m = load("newsletter_html.eml")
	assert m.subject == "Spring sale \U0001f338 \u2013 up to 50% off"
	assert m.auto_submitted == "list"
	html = m.html_content
	for unsafe in ("<script", "track(", "onload", "onclick", "javascript:", "<iframe", "style=", "<title"):
		assert unsafe not in html
	assert "data:text/html" not in html
	assert '<img src="data:image/png;base64,iVBORw0KGgo=" alt="logo">' in html
	assert '<table width="600" cellpadding="0">' in html
	assert '<a href="https://shop.example/sale" rel="noopener noreferrer">Shop now</a>' in html
	text = m.text_content
	assert text.startswith("# Spring sale \u2013 up to 50% off")
	assert "**half price**" in text and "[Shop now](https://shop.example/sale)" in text
	assert "track(" not in text and "font-family" not in text and "Spring sale newsletter" not in text
	assert "pixel.gif" not in text  # images ignored
	assert m.reply_text == text.strip()


@pytest.mark.parametrize(
	"dirty, clean",
	[
		("<p onclick='x()'>hi</p>", "<p>hi</p>"),
		("<script>alert(1)</script>ok", "ok"),
		("<style>p{color:red}</style>ok", "ok"),
		('<a href="javascript:alert(1)">x</a>', '<a rel="noopener noreferrer">x</a>'),
		(
			'<a href="https://a.example/">x</a>',
			'<a href="https://a.example/" rel="noopener noreferrer">x</a>',
		),
		('<img src="cid:logo@x" onerror="x()">', '<img src="cid:logo@x">'),
		('<img src="data:image/gif;base64,R0lG">', '<img src="data:image/gif;base64,R0lG">'),
		('<img src="data:text/html;base64,PHNjcmlwdD4=">', "<img>"),
		('<p style="position:fixed">x</p>', "<p>x</p>"),
		(
			"<table><tr><td colspan=2>x</td></tr></table>",
			'<table><tbody><tr><td colspan="2">x</td></tr></tbody></table>',
		),
		("<form action='/x'><input name=a></form>", ""),
	],
)
def test_sanitize_html(dirty, clean):
	assert sanitize_html(dirty) == clean


def test_empty_text_part_falls_back_to_the_html():
	msg = EmailMessage()
	msg.set_content("\n")
	msg.add_alternative("<p>Only <b>here</b></p>", subtype="html")
	assert parse_message(msg.as_bytes()).text_content == "Only **here**"


# -- machine-made mail -----------------------------------------------------------------------


def test_out_of_office():
	m = load("out_of_office.eml")
	assert m.auto_submitted == "auto-replied"
	assert m.in_reply_to == ("order-5531.1709891000@example.com",)
	assert m.text_content.startswith("I am out of the office until 18 March 2024")


@pytest.mark.parametrize(
	"header, expected",
	[
		("Auto-Submitted: auto-generated", "auto-generated"),
		("Auto-Submitted: Auto-Replied; owner-email=x@y", "auto-replied"),
		("Auto-Submitted: no", None),
		("Precedence: bulk", "precedence: bulk"),
		("Precedence: JUNK", "precedence: junk"),
		("Precedence: list", "precedence: list"),
		("Precedence: first-class", None),
		("X-Autoreply: yes", "x-autoreply"),
		("X-Autorespond: Out of office", "x-autorespond"),
		("List-Id: Team <team.lists.example.com>", "list"),
		("List-Unsubscribe: <mailto:leave@lists.example.com>", "list"),
		("From: MAILER-DAEMON@mx.example.com", "mailer-daemon"),
		("From: Postmaster <postmaster@example.com>", "mailer-daemon"),
		("From: Shop <no-reply@shop.example>", "noreply"),
		("From: noreply@shop.example", "noreply"),
		("From: do-not-reply@shop.example", "noreply"),
		("From: DoNotReply@shop.example", "noreply"),
		("From: reply@shop.example", None),
		("X-Mailer: Outlook", None),
	],
)
def test_auto_submitted(header, expected):
	assert mail(header, "Subject: x").auto_submitted == expected


# -- bounces ---------------------------------------------------------------------------------


def test_dsn_bounce():
	m = load("bounce_dsn.eml")
	assert m.sender == Address("MAILER-DAEMON@mail.example.com", "")
	assert m.auto_submitted == "auto-replied"
	assert m.bounce == BounceReport(
		original_message_id="ticket-1043.1709892002@example.com",
		recipients=("nobody@customer.example",),
		status="5.1.1",
		diagnostic=(
			"550 5.1.1 <nobody@customer.example>: Recipient address rejected: "
			"User unknown in virtual mailbox table"
		),
		action="failed",
	)
	assert m.text_content.startswith("This is the mail system at host mail.example.com.")
	report, original = m.attachments
	assert (report.filename, report.content_type) == ("attachment.txt", "message/delivery-status")
	assert b"Final-Recipient: rfc822; nobody@customer.example" in report.content
	assert (original.filename, original.content_type) == ("attachment.eml", "message/rfc822")
	returned = email.message_from_bytes(original.content, policy=email.policy.default)
	assert returned["Message-ID"] == "<ticket-1043.1709892002@example.com>"


def test_dsn_with_headers_only_and_a_delay():
	raw = b"""From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
Subject: Delivery Status Notification (Delay)
Content-Type: multipart/report; report-type="delivery-status"; boundary="r"

--r
Content-Type: text/plain

Delivery to the following recipient has been delayed: late@slow.example

--r
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com

Original-Recipient: rfc822;Late@Slow.example
Action: delayed
Status: 4.4.1 (temporary failure)

--r
Content-Type: text/rfc822-headers

Message-ID: <waiting-1@example.com>
Subject: Hello

--r--
"""
	bounce = parse_message(raw).bounce
	assert bounce == BounceReport("waiting-1@example.com", ("Late@Slow.example",), "4.4.1", None, "delayed")


def test_multipart_report_that_is_no_delivery_status_is_no_bounce():
	m = mail(
		"Subject: Read: hello",
		'Content-Type: multipart/report; report-type=disposition-notification; boundary="b"',
		body="--b\nContent-Type: text/plain\n\nRead.\n--b--\n",
	)
	assert m.bounce is None and m.text_content == "Read."


# -- charsets and 8-bit bytes ----------------------------------------------------------------


def test_latin1_8bit_subject_header():
	m = load("latin1_subject.eml")
	assert m.subject == "Problème de facturation - référence 2024/117"
	assert m.header("Subject") == m.subject
	assert m.sender == Address("francois@exemple.fr", "François Bérard")
	assert m.text_content == (
		"Bonjour,\n\nla facture n°117 est erronée. Pouvez-vous vérifier ?\n\nCordialement,\nFrançois\n"
	)
	assert m.warnings == ("the Subject header has 8-bit bytes that are not UTF-8; read as Latin-1",)


def test_raw_utf8_header_needs_no_warning():
	m = parse_message("Subject: Grüße\nFrom: Jörg <jörg@example.com>\n\nx".encode())
	assert m.subject == "Grüße"
	assert m.sender == Address("jörg@example.com", "Jörg")
	assert m.warnings == ()


def test_unknown_charset_sample():
	m = load("unknown_charset.eml")
	assert m.text_content == "Grüße aus Köln \u2013 привет!\n"
	assert m.warnings == (
		"the text/plain part declares the charset 'x-unknown', which is unknown or wrong; read as UTF-8",
	)


@pytest.mark.parametrize(
	"charset, body, text, warned",
	[
		("utf8", "Grüße".encode(), "Grüße", False),
		("cp-850", "Grüße".encode("cp850"), "Grüße", False),
		("unknown-8bit", "Grüße".encode("latin-1"), "Grüße", True),
		("x-unknown", "Grüße".encode("latin-1"), "Grüße", True),
		("us-ascii", "Grüße".encode(), "Grüße", True),
		("utf-8", b"Gr\xfc\xdfe", "Gr\ufffd\ufffde", True),
		("base64", b"plain", "plain", True),  # a codec, but not for text
		("utf-7", b"a+2AA-b", "a?b", False),  # a lone surrogate could not be stored
	],
)
def test_body_charsets(charset, body, text, warned):
	raw = b"Subject: c\nContent-Type: text/plain; charset=" + charset.encode() + b"\n\n" + body
	m = parse_message(raw)
	assert m.text_content == text
	assert bool(m.warnings) is warned
	assert_all_text_is_utf8(m)


def test_encoded_word_in_an_unknown_charset():
	m = parse_message(b"Subject: =?x-unknown?q?Gr=FC=DFe?= und =?utf-8?b?R3LDvMOfZQ==?=\n\nx")
	assert m.subject == "Gr\ufffd\ufffde und Grüße"  # the policy replaces what it cannot decode


def test_newlines_and_nuls_in_text():
	m = parse_message(b"Subject: n\r\n\r\none\r\ntwo\rthree\x00\nfour")
	assert m.text_content == "one\ntwo\nthree\nfour"


# -- addresses -------------------------------------------------------------------------------


def test_addresses_decoded_and_normalized():
	m = mail(
		"From: =?iso-8859-1?q?Ren=E9_Fran=E7ois?= <Rene@EXAMPLE.FR>",
		"Reply-To: =?utf-8?b?5bGx55Sw?= <yamada@example.jp>, other@example.jp",
		"To: user@Bücher.Example, user@XN--BCHER-KVA.example",
		"Cc: valid@example.com, not-an-address, Jane <jane@example.com>",
	)
	assert m.sender == Address("Rene@example.fr", "René François")
	assert m.reply_to == (Address("yamada@example.jp", "山田"), Address("other@example.jp"))
	assert m.to == (Address("user@bücher.example"), Address("user@xn--bcher-kva.example"))
	assert m.cc == (Address("valid@example.com"), Address("jane@example.com", "Jane"))
	assert m.warnings == ("skipped an invalid address in Cc: 'not-an-address'",)


@pytest.mark.parametrize("value", ['"', "a,.,?=[,:;.]", ".<a:=?utf-8?q?", "<@>"])
def test_address_headers_that_break_the_parser(value):
	m = mail(f"To: {value}", "Cc: ok@example.com")
	assert not fell_back(m)
	assert m.cc == (Address("ok@example.com"),)


def test_empty_group_is_no_address():
	m = mail("To: undisclosed-recipients:;")
	assert m.to == () and m.warnings == ()


def test_delivered_to_headers():
	m = mail(
		"Delivered-To: Support+Token1@Example.com",
		"X-Original-To: support+token2@example.com",
		"Envelope-To: a@example.com, support+token1@example.com",
	)
	assert m.delivered_to == (
		"Support+Token1@example.com",
		"support+token2@example.com",
		"a@example.com",
		"support+token1@example.com",
	)


# -- dates -----------------------------------------------------------------------------------


def test_date_with_unknown_zone_is_utc():
	m = mail("Date: Mon, 4 Mar 2024 10:00:00 -0000")
	assert m.date == datetime(2024, 3, 4, 10, 0, tzinfo=timezone.utc) and m.date_from_header


@pytest.mark.parametrize(
	"value", ["yesterday", "Mon, 99 Foo 2024 99:99:99 +0000", "Mon, 4 Mar 99999 10:00 +0000"]
)
def test_unparseable_date_is_the_time_received(value):
	m = mail(f"Date: {value}")
	assert m.date == RECEIVED and not m.date_from_header
	assert m.warnings and "is not a date" in m.warnings[0]


def test_future_date_is_the_time_received():
	soon = mail("Date: Wed, 20 Mar 2024 23:00:00 +0000")
	assert soon.date_from_header and soon.date == datetime(2024, 3, 20, 23, tzinfo=timezone.utc)
	far = mail("Date: Fri, 20 Mar 2054 10:00:00 +0000")
	assert far.date == RECEIVED and not far.date_from_header
	assert "in the future" in far.warnings[0]


def test_missing_date_without_received_at_is_now():
	before = datetime.now(timezone.utc)
	m = parse_message(b"Subject: no date\n\nx")
	assert before <= m.date <= datetime.now(timezone.utc) and not m.date_from_header


def test_naive_received_at_is_utc():
	m = parse_message(b"Subject: x\n\nx", received_at=datetime(2024, 1, 1, 8, 0))
	assert m.date == datetime(2024, 1, 1, 8, 0, tzinfo=timezone.utc)


# -- missing headers, broken structure -------------------------------------------------------


def test_message_without_message_id_date_or_from():
	raw = (MAILS / "no_headers.eml").read_bytes()
	m = load("no_headers.eml")
	assert DERIVED_ID.match(m.message_id) and m.message_id_derived
	assert parse_message(raw).message_id == m.message_id
	assert parse_message(raw + b"\n").message_id != m.message_id
	assert m.sender is None and m.sender_email == "" and m.sender_full_name == ""
	assert m.date == RECEIVED and not m.date_from_header
	assert m.to == (Address("support@example.com"),)
	assert m.text_content == "Some script sent this without From, Date or Message-ID.\n"


def test_broken_boundary_keeps_the_body_text():
	m = load("broken_boundary.eml")
	assert "Nightly report: 17 jobs ran, 0 failed." in m.text_content
	assert m.attachments == ()
	assert m.warnings == ("the MIME boundary was not found; the body was read as one text",)


def test_related_without_boundary_inside_a_multipart():
	m = mail(
		"Subject: broken related",
		'Content-Type: multipart/alternative; boundary="a"',
		body="--a\nContent-Type: multipart/related\n\n<p>hello</p>\n--a\nContent-Type: text/html\n\n<b>hi</b>\n--a--\n",
	)
	assert not fell_back(m)
	assert m.html_content == "<b>hi</b>"


def test_content_type_that_breaks_the_stdlib_parser():
	m = mail("Subject: x", "Content-Type: tex;ut*", body="body")
	assert not fell_back(m)
	assert (m.subject, m.text_content) == ("x", "body")


def test_zero_bytes():
	m = parse_message(b"", received_at=RECEIVED)
	assert m.raw == b"" and m.size == 0
	assert DERIVED_ID.match(m.message_id) and m.date == RECEIVED
	assert (m.subject, m.text_content, m.html_content, m.attachments, m.headers) == ("", "", "", (), ())
	assert m.warnings == ("the message is empty",)


def test_huge_header_is_capped():
	m = mail("Subject: " + "word " * 30_000, "To: " + ", ".join(f"u{i}@example.com" for i in range(8000)))
	assert len(m.header("Subject")) == parsing.HEADER_VALUE_LIMIT
	assert all(len(value) <= parsing.HEADER_VALUE_LIMIT for _, value in m.headers)
	assert parsing.ADDRESS_PARSE_LIMIT // 20 < len(m.to) < 8000
	assert any("the To header is" in w for w in m.warnings)


def test_deep_nesting_does_not_raise():
	depth = 3000
	head = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(depth))
	m = parse_message(("Subject: deep\n" + head + "\nbottom\n").encode())
	assert m.raw.startswith(b"Subject: deep")


def test_unexpected_error_gives_the_worst_case_record(monkeypatch):
	def boom(*args):
		raise RuntimeError("boom")

	monkeypatch.setattr(parsing, "_read_headers", boom)
	raw = (MAILS / "gmail_reply.eml").read_bytes()
	m = parse_message(raw, received_at=RECEIVED)
	assert m.warnings == ("could not parse: RuntimeError: boom",)
	assert m.raw == raw and m.size == len(raw)
	assert DERIVED_ID.match(m.message_id) and m.message_id_derived
	assert m.date == RECEIVED and m.subject == "" and m.attachments == ()


def test_record_can_be_replaced():
	m = load("out_of_office.eml")
	assert dataclasses.replace(m, text_content="note").text_content == "note"
	assert "raw" not in repr(m)


# -- attachments -----------------------------------------------------------------------------


def test_attachment_file_names():
	m = load("attachment_names.eml")
	assert [(a.filename, a.content_type, a.size) for a in m.attachments] == [
		("passwd", "text/plain", 32),
		("Übersicht März.pdf", "application/pdf", 77),
		("Übersicht März.pdf", "application/octet-stream", 9),
		("attachment.bin", "application/octet-stream", 8),
	]
	assert m.attachments[0].content == b"root:x:0:0:root:/root:/bin/bash\n"
	assert m.attachments[1].content.startswith(b"%PDF-1.4")
	assert m.attachments[3].content == bytes(range(8))
	assert m.has_attachment and not any(a.inline for a in m.attachments)
	assert m.text_content == "Three files attached.\n"


def test_raw_8bit_file_name():
	raw = (
		b"Subject: f\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nx\n"
		b'--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="r\xe9sum\xe9.pdf"\n\n'
		b"%PDF\n--b--\n"
	)
	(attachment,) = parse_message(raw).attachments
	assert attachment.filename == "résumé.pdf"


@pytest.mark.parametrize(
	"name, content_type, safe",
	[
		("../../etc/passwd", "text/plain", "passwd"),
		("C:\\Users\\me\\evil.exe", "application/octet-stream", "evil.exe"),
		(".htaccess", "text/plain", "htaccess"),
		("..", "text/plain", "attachment.txt"),
		("  report.pdf  ", "application/pdf", "report.pdf"),
		("a\x00b\x1f\x7f.txt", "text/plain", "ab.txt"),
		("invoice\u202egpj.exe", "application/octet-stream", "invoicegpj.exe"),
		("dir/", "image/png", "dir"),
		("/", "image/png", "image.png"),
		("", "image/jpeg", "image.jpg"),
		(None, "application/pdf", "attachment.pdf"),
		("   ", "message/rfc822", "attachment.eml"),
		("", "application/x-made-up", "attachment.bin"),
	],
)
def test_safe_filename(name, content_type, safe):
	assert safe_filename(name, content_type) == safe


def test_long_file_names_keep_their_extension():
	assert safe_filename("a" * 300 + ".pdf") == "a" * 251 + ".pdf"
	name = safe_filename("é" * 200 + ".docx")
	assert name.endswith(".docx") and len(name.encode()) <= 255
	assert len(safe_filename("x" * 300).encode()) == 255


@given(st.one_of(st.none(), st.text()))
def test_safe_filename_always_safe(name):
	safe = safe_filename(name)
	assert safe and len(safe.encode("utf-8")) <= 255
	assert "/" not in safe and "\\" not in safe and not safe.startswith(".")
	assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in safe)


def test_forwarded_message_is_one_attachment():
	m = load("forward_as_attachment.eml")
	(forwarded,) = m.attachments
	assert (forwarded.filename, forwarded.content_type) == ("Customer complaint.eml", "message/rfc822")
	inner = parse_message(forwarded.content)
	assert inner.message_id == "complaint-1@customer.example"
	assert inner.text_content == "My order never arrived.\n"
	assert [a.filename for a in inner.attachments] == ["photo.jpg"]


def big_mail(size: int) -> tuple[bytes, bytes]:
	data = (bytes(range(256)) * (size // 256 + 1))[:size]
	msg = EmailMessage()
	msg["Subject"] = "big"
	msg["Message-ID"] = "<big@example.com>"
	msg.set_content("See the archive.")
	msg.add_attachment(data, maintype="application", subtype="zip", filename="archive.zip")
	msg.add_attachment(b"small", maintype="text", subtype="plain", filename="note.txt")
	return msg.as_bytes(), data


def test_attachment_over_the_limit_is_dropped_without_decoding(monkeypatch):
	raw, data = big_mail(int(1.5 * MB))
	decoded = []
	part_bytes = parsing._part_bytes
	monkeypatch.setattr(
		parsing, "_part_bytes", lambda part: decoded.append(part.get_filename()) or part_bytes(part)
	)
	m = parse_message(raw, attachment_limit=MB)
	archive, note = m.attachments
	assert archive.filename == "archive.zip" and archive.size == len(data)
	assert archive.content is None
	assert archive.dropped_reason == "over the attachment limit of 1 MB (1.5 MB)"
	assert decoded == ["note.txt"]
	assert note.content == b"small" and note.dropped_reason is None
	assert m.text_content == "See the archive.\n"  # the body is not changed
	assert m.warnings == (
		"attachment 'archive.zip' was not kept: over the attachment limit of 1 MB (1.5 MB)",
	)


def test_attachment_under_the_limit_or_without_limit_is_kept():
	raw, data = big_mail(int(1.5 * MB))
	for limit in (None, 2 * MB):
		archive, _ = parse_message(raw, attachment_limit=limit).attachments
		assert archive.content == data and archive.size == len(data) and archive.dropped_reason is None


def test_quoted_printable_attachment_over_the_limit():
	msg = EmailMessage()
	msg.set_content("body")
	msg.add_attachment("é" * 3000, subtype="plain", cte="quoted-printable", filename="long.txt")
	(attachment,) = parse_message(msg.as_bytes(), attachment_limit=1024).attachments
	assert attachment.content is None and attachment.size == 6001
	assert attachment.dropped_reason == "over the attachment limit of 1 KB (5.9 KB)"


@given(st.binary(max_size=2000), st.integers(min_value=4, max_value=100))
def test_base64_size_is_known_without_decoding(data, line_length):
	encoded = base64.b64encode(data).decode()
	lines = "\r\n".join(encoded[i : i + line_length] for i in range(0, len(encoded), line_length))
	part = email.message_from_bytes(
		b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
		+ lines.encode()
		+ b"\n",
		policy=email.policy.default,
	)
	assert parsing._decoded_size(part, -1) == len(data)
	# an upper bound from the length alone says a part is under a limit without counting
	assert parsing._decoded_size(part, len(lines)) is None


# -- threading helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
	"value, expected",
	[
		("<a@b>", "a@b"),
		("  <a@b>  ", "a@b"),
		("a@b", "a@b"),
		("<a@b> (added by the list)", "a@b"),
		("<a@b><c@d>", "a@b"),
		("<x y@b>", "xy@b"),
		("<>", None),
		("", None),
		(None, None),
		("two words", None),
		("bare-id-without-at", "bare-id-without-at"),
	],
)
def test_parse_message_id(value, expected):
	assert parse_message_id(value) == expected


@pytest.mark.parametrize(
	"value, expected",
	[
		("<a@b> <c@d>", ("a@b", "c@d")),
		("<a@b>,<c@d>\r\n <e@f>", ("a@b", "c@d", "e@f")),
		("<a@b> <a@b>", ("a@b",)),
		('Your message of "Mon, 4 Mar 2024" <a@b>', ("a@b",)),
		("a@b c@d", ("a@b", "c@d")),
		("Your message of Mon, 4 Mar 2024", ()),
		("", ()),
		(None, ()),
	],
)
def test_parse_message_ids(value, expected):
	assert parse_message_ids(value) == expected


def test_in_reply_to_with_several_ids_and_junk():
	m = mail('In-Reply-To: <one@x> (John\'s message of "Mon") <two@x>', "References: junk")
	assert m.in_reply_to == ("one@x", "two@x")
	assert m.references == ()


@pytest.mark.parametrize(
	"subject, normalized",
	[
		("Re: Hello", "hello"),
		("RE: Re: FWD: Hello", "hello"),
		("Fw: FW: Hello", "hello"),
		("Re[2]: Hello", "hello"),
		("Re (3): Hello", "hello"),
		("AW: WG: Hallo Welt", "hallo welt"),
		("SV: VS: Hei", "hei"),
		("Antw: Rif: R: TR: Réf: Facture", "facture"),
		("RE : Bonjour", "bonjour"),
		("回复：你好", "你好"),
		("转发: 你好", "你好"),
		("答复: 你好", "你好"),
		("  Re:   Hello \t  World  ", "hello world"),
		("[team] Re: Hello", "[team] re: hello"),
		("Rebate: 10% off", "rebate: 10% off"),
		("Reply needed", "reply needed"),
		("STRASSE", "strasse"),
		("Straße", "strasse"),
		("", ""),
		(None, ""),
	],
)
def test_normalize_subject(subject, normalized):
	assert normalize_subject(subject) == normalized


# -- reply text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
	"text, reply",
	[
		("Thanks!\n\nOn Mon, Mar 4, 2024 at 10:15 AM Jane <jane@x.com> wrote:\n> hi\n", "Thanks!"),
		("Thanks!\n\nOn Mon, Mar 4, 2024 at 10:15 AM Jane Doe <\njane@x.com> wrote:\n\n> hi\n", "Thanks!"),
		("Thanks!\n\nOn 3/4/24 10:15, Jane Doe wrote:\n> hi\n", "Thanks!"),
		("Thanks!\n\n> On 4 Mar 2024, at 10:15, Jane <jane@x.com> wrote:\n> \n> hi\n", "Thanks!"),
		("Fine.\n\n-----Original Message-----\nFrom: Jane\nSent: Monday\n\nhi\n", "Fine."),
		("Gut.\n\n-----Ursprüngliche Nachricht-----\nVon: Jane\nGesendet: Montag\n", "Gut."),
		("Fine.\n\n________________________________\nFrom: Jane <jane@x.com>\nSent: Monday\n", "Fine."),
		("Fine.\n\n**From:** Jane <jane@x.com>\n**Sent:** Monday, March 4\n**To:** Us\n", "Fine."),
		("No quote here.\nSecond line.\n", "No quote here.\nSecond line."),
		("Text\n\n-- \nJane Doe\nSales\n", "Text"),
		("On Mon, Jane wrote:\n> only a quote\n", "On Mon, Jane wrote:\n> only a quote"),
		("", ""),
	],
)
def test_extract_reply(text, reply):
	assert extract_reply(text) == reply


def test_extract_reply_on_long_text_with_many_ons():
	"""email-reply-parser's own multi-line header search took minutes on this."""
	text = "\n".join("On the way Online, Once more On it" for _ in range(5000))
	reply = extract_reply(text)
	assert text.startswith(reply) and len(reply) > parsing.REPLY_SCAN_LIMIT - 100


# -- never raises ----------------------------------------------------------------------------

HEADER_NAMES = [
	"From",
	"To",
	"Cc",
	"Reply-To",
	"Subject",
	"Date",
	"Message-ID",
	"In-Reply-To",
	"References",
	"Content-Type",
	"Content-Transfer-Encoding",
	"Content-Disposition",
	"Auto-Submitted",
	"Delivered-To",
	"X-Any",
]
header_values = st.one_of(
	st.text(max_size=80),
	st.sampled_from(
		[
			"multipart/mixed; boundary=b",
			"multipart/alternative; boundary=b",
			"multipart/related; boundary=b",
			"multipart/report; report-type=delivery-status; boundary=b",
			"message/rfc822",
			"text/html; charset=x-unknown",
			"text/plain; charset=utf-7",
			"text/plain; format=flowed; delsp=yes",
			"base64",
			"quoted-printable",
			"attachment; filename*=utf-8''%C3%A9%2F..",
			"=?utf-8?b?w6k=?= <a@b>",
			'"',
		]
	),
)
bodies = st.lists(
	st.one_of(
		st.text(max_size=60),
		st.sampled_from(["--b", "--b--", "", "Content-Type: text/html", "=C3=A9", "<p>"]),
	),
	max_size=12,
).map("\n".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(raw):
	m = parse_message(raw)
	assert isinstance(m, IncomingMessage) and m.raw == raw and m.size == len(raw)
	assert_all_text_is_utf8(m)
	if m.message_id_derived:
		assert DERIVED_ID.match(m.message_id)
		assert parse_message(raw).message_id == m.message_id


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=10), bodies)
def test_built_messages_never_raise(headers, body):
	lines = [f"{name}: {value}" for name, value in headers]
	raw = ("\n".join(lines) + "\n\n" + body).encode("utf-8", "surrogatepass")
	m = parse_message(raw, attachment_limit=100)
	assert not fell_back(m), m.warnings
	assert m.raw == raw and m.size == len(raw)
	assert_all_text_is_utf8(m)
	assert parse_message(raw, attachment_limit=100).message_id == m.message_id
	assert all(a.content is None or len(a.content) <= 100 for a in m.attachments)


# -- long base64 bodies set aside while the feed parser runs ----------------------------------


def _tree(msg: email.message.Message) -> list:
	"""What the feed parser made of a message: each part's headers, payload and defects."""
	return [
		(
			list(part.raw_items()),
			part._payload if isinstance(part._payload, str) else len(part._payload),
			[type(d).__name__ for d in part.defects],
			part.preamble,
			part.epilogue,
		)
		for part in msg.walk()
	]


def assert_parsed_as_stdlib(raw: bytes) -> None:
	fast, unread = parsing._message_from_bytes(raw)
	assert unread is None
	plain = email.message_from_bytes(raw, policy=parsing._POLICY)
	assert _tree(fast) == _tree(plain)


def _base64_lines(data: bytes, eol: str = "\r\n", width: int = 76) -> str:
	encoded = base64.b64encode(data).decode()
	return eol.join(encoded[i : i + width] for i in range(0, len(encoded), width))


@pytest.mark.parametrize("eol", ["\r\n", "\n"])
def test_long_base64_bodies_are_set_aside_and_put_back(eol):
	data = bytes(range(256)) * 200
	raw = make_mail(body="see attached", attachments=[("a.bin", data, "application/octet-stream")])
	raw = raw.replace(b"\r\n", b"\n").replace(b"\n", eol.encode())
	collapsed, runs = parsing._collapse_bodies(raw)
	assert len(runs) == 1 and len(collapsed) < 2000
	assert_parsed_as_stdlib(raw)
	message = parse_message(raw)
	assert message.attachments[0].content == data
	assert message.text_content.strip() == "see attached"


def test_every_sample_mail_parses_as_the_stdlib_does():
	for path in sorted(MAILS.glob("*.eml")):
		assert_parsed_as_stdlib(path.read_bytes())


def test_a_forged_placeholder_turns_the_set_aside_off():
	raw = make_mail(
		body=parsing._PLACEHOLDER_PREFIX + "00N0",
		attachments=[("a.bin", b"x" * 10_000, "application/octet-stream")],
	)
	assert parsing._collapse_bodies(raw) == (raw, {})
	assert parse_message(raw).attachments[0].content == b"x" * 10_000


def test_a_base64_encoded_attached_message_is_read_as_the_stdlib_reads_it():
	inner = make_mail(subject="inner", body="x" * 5000).replace(b"\r\n", b"\n")
	raw = (
		b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nhello\n'
		b"--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
		+ _base64_lines(inner, "\n").encode()
		+ b"\n--b--\n"
	)
	assert_parsed_as_stdlib(raw)


# hostile MIME: parts with and without base64 headers, bodies mixing base64 runs with the lines that
# mean something to the parser, and closers that are, almost are, or are not boundaries
_HEADERS = st.lists(
	st.sampled_from(
		[
			"Content-Transfer-Encoding: base64\n",
			"content-transfer-encoding:BASE64 \r\n",
			"Content-Type: multipart/mixed; boundary=c\n",
			"Content-Type: message/rfc822\n",
			"Content-Type: text/plain\n",
			"Subject: x\n",
			" folded\n",
		]
	),
	max_size=4,
)
_BODY_LINES = st.sampled_from(
	["--c\n", "-- \n", "\n", "\r", "\r\n", "Subject: x\n", "plain words\n", "QUJD\n", "====\n", "a-b\n"]
)
_BASE64_RUN = st.builds(
	lambda n, eol: _base64_lines(b"\x00\xff" * n, eol) + eol,
	st.one_of(st.integers(min_value=0, max_value=40), st.integers(min_value=800, max_value=2000)),
	st.sampled_from(["\n", "\r\n", "\r"]),
)
_TEXT_RUN = st.builds(
	lambda words, n, eol: eol.join([words] * n) + eol,
	st.sampled_from(["plain words", "caf\u00e9 =C3=A9", "<p>html</p>", "- a -", "x" * 70]),
	st.one_of(st.integers(min_value=0, max_value=5), st.integers(min_value=100, max_value=300)),
	st.sampled_from(["\n", "\r\n", "\r"]),
)
_PART = st.builds(
	lambda cte, headers, separator, body, closer: "".join(headers) + cte + separator + "".join(body) + closer,
	st.sampled_from(
		[
			"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n",
			"content-transfer-encoding:\tBase64 \r\nCONTENT-TYPE: image/png; name=a\r\n",
			"Content-Transfer-Encoding: base64\n",
			"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n",
			"Content-Type: text/html\r\n",
			"Content-Type: message/delivery-status\n",
			"",
		]
	),
	_HEADERS,
	st.sampled_from(["\n", "\r\n", ""]),
	st.lists(st.one_of(_BASE64_RUN, _TEXT_RUN, _BODY_LINES), max_size=4),
	st.sampled_from(["--b\n", "--b--\n", "--c\n", "--c--\n", "\r--b\n", "", "--bx\n"]),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_PART, max_size=5))
def test_set_aside_never_changes_what_the_parser_reads(parts):
	raw = ('Content-Type: multipart/mixed; boundary="b"\n\npreamble\n--b\n' + "".join(parts)).encode()
	with mock.patch.object(parsing, "BASE64_RUN_MIN", 4):  # set aside short runs too: more cases
		assert_parsed_as_stdlib(raw)
	assert_parsed_as_stdlib(raw)
