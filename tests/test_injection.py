"""Header injection: no control character or line separator in any value becomes a header of its own.

Every field the engine puts in a header (subject, each kind of address and its name, the sender's
name from the request and from the account, attachment file names, In-Reply-To and References,
the site's link in List-Unsubscribe), with every C0 and C1 control and the Unicode line separators,
is either refused (one line, no traceback) or sent; what the SMTP server (aiosmtpd) receives is
parsed, re-serialised by the standard library as a mail client would, and parsed again: exactly the
headers intended, each once, and the envelope only the intended recipients. Mail the engine writes
by itself (auto-replies, unreplied notices) cleans values from incoming mail instead of refusing.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_account_app.engine.autoreply import queue_auto_reply
from email_account_app.engine.compose import OutgoingAttachment, OutgoingRequest, SiteSettings, compose
from email_account_app.engine.errors import EmailSyncError, HeaderInjection
from email_account_app.engine.jobs import pull
from email_account_app.engine.outbox import SiteMailThread, answering, flush
from email_account_app.engine.parsing import parse_message
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.transports.smtp import SmtpSender
from email_account_app.engine.unreplied import notify_unreplied

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
SECRET = "injection-test-secret"
CONTROLS = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))] + ["\u2028", "\u2029"]
PAYLOADS = ["Bcc: victim@evil.test", "X-Injected: yes", "\r\nX-Injected: yes", " ", ""]
#: every header the engine may write at the top of a message, lower case
INTENDED = {
	"from",
	"to",
	"cc",
	"reply-to",
	"subject",
	"date",
	"message-id",
	"in-reply-to",
	"references",
	"auto-submitted",
	"x-auto-response-suppress",
	"list-unsubscribe",
	"list-unsubscribe-post",
	"mime-version",
	"content-type",
	"content-transfer-encoding",
}
PART_HEADERS = {"content-type", "content-transfer-encoding", "content-disposition", "mime-version"}


def sender_account(server, **overrides):
	data = server.account("support@example.com", **overrides)
	return account_from_mapping(data, name=data.pop("name", "support"), use_presets=False)


def request_with(field: str, value: str) -> tuple[OutgoingRequest, dict, dict]:
	"""A request with ``value`` in ``field``, the account and site overrides it needs."""
	base = {"to": ("customer@client.test",), "subject": "Hello", "text": "Hi there."}
	account, site = {}, {}
	if field == "subject":
		base["subject"] = value
	elif field == "to name":
		base["to"] = (f'"Jo {value}" <customer@client.test>',)
	elif field == "to name unquoted":
		base["to"] = (f"Jo {value} <customer@client.test>",)
	elif field == "to address":
		base["to"] = (f"cust{value}omer@client.test",)
	elif field == "cc name":
		base["cc"] = (f'"Cc {value}" <cc@client.test>',)
	elif field == "bcc":
		base["bcc"] = (f"b{value}@client.test",)
	elif field == "sender name":
		base["sender_name"] = f"Jane {value}"
	elif field == "sender":
		base["sender"] = f"Jane {value} <jane@example.com>"
	elif field == "account name":
		account = {"always_use_account_name_as_sender_name": True, "email_account_name": f"Support {value}"}
	elif field == "file name":
		base["attachments"] = (OutgoingAttachment(f"report {value}.txt", b"data"),)
	elif field == "in reply to":
		base["in_reply_to"] = (f"<a{value}@client.test>",)
	elif field == "references":
		base["references"] = (f"<root@client.test> <b{value}@client.test>",)
	elif field == "site link":
		account = {"send_unsubscribe_message": True}
		site = {"base_url": f"https://erp.example.com/{value}", "secret": SECRET}
	else:  # pragma: no cover
		raise AssertionError(field)
	return OutgoingRequest(**base), account, site


FIELDS = [
	"subject",
	"to name",
	"to name unquoted",
	"to address",
	"cc name",
	"bcc",
	"sender name",
	"sender",
	"account name",
	"file name",
	"in reply to",
	"references",
	"site link",
]


def check_delivery(content: bytes, rcpt_tos, intended_rcpts) -> None:
	"""What the server received has exactly the intended headers, also once the standard library
	has parsed and written it again; the envelope has exactly the intended recipients."""
	assert {r.lower() for r in rcpt_tos} == {r.lower() for r in intended_rcpts}
	head = content.split(b"\r\n\r\n", 1)[0]
	assert not any((b < 0x20 and b not in (0x09, 0x0D, 0x0A)) or b == 0x7F for b in head), head
	for policy in (email.policy.default, email.policy.compat32, email.policy.SMTP):
		parsed = email.message_from_bytes(content, policy=policy)
		names = [n.lower() for n in parsed.keys()]
		assert set(names) <= INTENDED and len(names) == len(set(names)), names
		assert "bcc" not in names and "x-injected" not in names
		for part in parsed.walk():
			part_names = [n.lower() for n in part.keys()]
			assert part is parsed or set(part_names) <= PART_HEADERS, part_names
		again = email.message_from_bytes(parsed.as_bytes(policy=email.policy.SMTP), policy=policy)
		assert [n.lower() for n in again.keys()] == names
		for part in again.walk():
			assert "x-injected" not in {n.lower() for n in part.keys()}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), char=st.sampled_from(CONTROLS), payload=st.sampled_from(PAYLOADS))
def test_every_field_with_every_control_is_refused_or_sent_without_extra_headers(
	smtp_plain, field, char, payload
):
	smtp_plain.reset()
	value = f"{char}{payload}"
	request, account_overrides, site_overrides = request_with(field, value)
	site = SiteSettings(**site_overrides)
	try:
		# settings refuse what they can (a name with a control), compose the rest
		account = sender_account(smtp_plain, **account_overrides)
		mail = compose(request, account, site, now=NOW)
	except EmailSyncError as exc:  # refused (a TAB alone may be refused too, as no address)
		assert "\n" not in str(exc) and "\r" not in str(exc)  # one line
		return
	used = value.strip() if field == "account name" else value  # settings strip their values
	assert all(c == "\t" or c not in CONTROLS for c in used), f"{field}: {value!r} was not refused"
	with SmtpSender(account) as sender:
		for rcpt in mail.recipients:
			sender.send(mail.personal.get(rcpt, mail.raw), mail.envelope_from, [rcpt])
	deliveries = smtp_plain.deliveries
	assert deliveries
	for delivery in deliveries:
		assert delivery.rcpt_tos[0] in mail.recipients
		check_delivery(delivery.content, delivery.rcpt_tos, delivery.rcpt_tos)
	assert {d.rcpt_tos[0].lower() for d in deliveries} == {r.lower() for r in mail.recipients}


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x00"])
def test_the_reported_attacks_are_refused_by_name(char):
	account = account_from_mapping(
		{"email_id": "support@example.com", "enable_outgoing": True, "smtp_server": "localhost"},
		name="support",
		validate=False,
	)
	with pytest.raises(HeaderInjection, match="recipient"):
		compose(
			OutgoingRequest(to=(f'"Jo{char}Bcc: victim@evil.test" <customer@client.test>',)),
			account,
			SiteSettings(),
		)
	with pytest.raises(HeaderInjection, match="subject"):
		compose(
			OutgoingRequest(to=("customer@client.test",), subject=f"Hi{char}there"), account, SiteSettings()
		)
	with pytest.raises(HeaderInjection, match="file name"):
		compose(
			OutgoingRequest(
				to=("customer@client.test",), attachments=(OutgoingAttachment(f"a{char}b.txt", b"x"),)
			),
			account,
			SiteSettings(),
		)


# -- mail the engine writes by itself: cleaned, never refused --------------------------------------


def _word(text: str) -> str:
	return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\x1e", "\x85", "\u2028", "\x00", "\x01", "\x9b"])
def test_an_auto_reply_to_hostile_mail_cleans_what_it_takes_from_it(smtp_plain, store, char):
	raw = (
		f"From: {_word(f'Mallory{char}Bcc: victim@evil.test')} <mallory@client.test>\r\n"
		"To: support@example.com\r\n"
		f"Subject: {_word(f'Help{char}X-Injected: yes')}\r\n"
		f"Message-ID: <m1{char}x@client.test>\r\n"
		"References: <root@client.test> <bad\x01id@client.test>\r\n"
		"Date: Mon, 02 Mar 2026 08:00:00 +0000\r\n"
		"\r\nHello\r\n"
	).encode()
	message = parse_message(raw)
	account = sender_account(smtp_plain, enable_auto_reply=True, auto_reply_message="We got it.")
	queued = queue_auto_reply(store, account, SiteSettings(), message, now=NOW)
	assert queued is not None
	report = flush(store, [account], now=NOW + timedelta(seconds=1))
	assert report.ok, report.as_dict()
	(delivery,) = smtp_plain.deliveries
	check_delivery(delivery.content, delivery.rcpt_tos, ["mallory@client.test"])
	sent = email.message_from_bytes(delivery.content, policy=email.policy.default)
	assert sent["Subject"].startswith("Re: Help") and "X-Injected: yes" in sent["Subject"]


def test_an_unreplied_notice_about_hostile_mail_cleans_its_subject(dovecot, store):
	user = "alice@example.com"
	dovecot.reset(user)
	data = dovecot.account(user)
	data.update(
		email_sync_option="ALL",
		append_to="Issue",
		notify_if_unreplied=True,
		unreplied_for_mins=30,
		send_notification_to="lead@example.com",
		enable_outgoing=True,
		smtp_server="127.0.0.1",
		smtp_port=2525,
		use_tls=False,
		no_smtp_authentication=True,
	)
	account = account_from_mapping(data, name="support")
	subject = _word("Order\x0bBcc: victim@evil.test\u2028X-Injected: yes\x01")
	raw = (
		f"From: c@client.test\r\nTo: {user}\r\nSubject: {subject}\r\nMessage-ID: <u1@client.test>\r\n"
		f"Date: {format_datetime(datetime.now(timezone.utc))}\r\n\r\nHi\r\n"
	).encode()
	dovecot.append(user, raw)
	pull(account, store)
	later = datetime.now(timezone.utc) + timedelta(minutes=31)
	(notice,) = notify_unreplied(store, account, SiteSettings(), now=later)
	check_delivery(notice.raw, ["lead@example.com"], ["lead@example.com"])


def test_site_mail_answering_leaves_out_ids_that_cannot_be_headers():
	thread = SiteMailThread(
		(
			"first@client.test",
			"bad\x0bBcc: victim@evil.test",
			"x\x01y@client.test",
			"last@client.test",
			"z\u2028@c",
		),
		None,
	)
	raw = b"From: support@example.com\r\nTo: c@client.test\r\nSubject: Hi\r\n\r\nBody\r\n"
	message = email.message_from_bytes(answering(raw, thread, None), policy=email.policy.default)
	assert message["In-Reply-To"] == "<last@client.test>"
	assert message["References"].split() == ["<first@client.test>", "<last@client.test>"]
	assert [k.lower() for k in message.keys()] == ["in-reply-to", "references", "from", "to", "subject"]
	nothing = SiteMailThread(("a\x00b@client.test",), None)
	assert answering(raw, nothing, None) == raw


# -- the command ---------------------------------------------------------------------------------


def _run(config, *args):
	cmd = [sys.executable, "-m", "email_account_app.cli", "--config", str(config), *args]
	return subprocess.run(cmd, capture_output=True, text=True, timeout=120, input="Hello")


def _config(path, server, **extra):
	data = server.account("support@example.com", default_outgoing=True, **extra)
	lines = ["[accounts.support]"] + [f"{k} = {json.dumps(v)}" for k, v in data.items() if v is not None]
	path.write_text("\n".join(lines) + "\n")
	return path


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x00", "\x85", "\u2028", "\u2029"])
def test_the_cli_refuses_in_one_line_and_sends_nothing(smtp_plain, tmp_path, char):
	config = _config(tmp_path / "c.toml", smtp_plain)
	named = _config(
		tmp_path / "named.toml",
		smtp_plain,
		email_account_name=f"Support{char}Bcc: victim@evil.test",
		always_use_account_name_as_sender_name=True,
	)
	attachment = tmp_path / f"report{char}X-Injected: yes.txt"
	if char != "\x00":
		attachment.write_text("data")
	db = str(tmp_path / "db.sqlite3")
	runs = [_run(named, "send", "--db", db, "--to", "a@client.test", "-s", "Hi")]
	if char != "\x00":  # a command line cannot carry a NUL; the config file can (as \u0000)
		runs += [
			_run(
				config, "send", "--db", db, "--to", f'"Jo{char}Bcc: v@evil.test" <a@client.test>', "-s", "Hi"
			),
			_run(config, "send", "--db", db, "--to", "a@client.test", "-s", f"Hi{char}X-Injected: yes"),
			_run(
				config, "send", "--db", db, "--to", "a@client.test", "-s", "Hi", "--attach", str(attachment)
			),
		]
	for result in runs:
		assert result.returncode == 2, (result.args, result.stdout, result.stderr)
		assert "Traceback" not in result.stderr and not result.stdout
		said = " ".join(result.stderr.split())
		# refused where first seen: by the settings (a name in the file) or the composer
		assert said.startswith("Error: ") and "contains" in said, said
		assert "control character" in said or "U+" in said, said
		assert len(result.stderr.strip().splitlines()) == 1, result.stderr
	assert not smtp_plain.deliveries
