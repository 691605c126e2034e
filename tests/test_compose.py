"""Composing outgoing mail: every rule of the account and the site, read back as a client would."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_account_app.engine import tokens
from email_account_app.engine.compose import (
	REFERENCES_LIMIT,
	InvalidAddress,
	OutgoingAttachment,
	OutgoingRequest,
	SiteSettings,
	compose,
	site_from_accounts,
	unsubscribe_request,
	verify_tracking,
	verify_unsubscribe,
)
from email_account_app.engine.errors import ConfigError, HeaderInjection
from email_account_app.engine.parsing import parse_message
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.store import DocRef

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
SITE = SiteSettings(
	base_url="https://erp.example.com",
	secret="site-secret",
	default_incoming="help@example.com",
	incoming_by_doctype={"Issue": "issues@example.com"},
)


def account(**overrides):
	data = {
		"email_id": "support@example.com",
		"password": "x",
		"enable_outgoing": True,
		"smtp_server": "smtp.example.com",
	}
	data.update(overrides)
	return account_from_mapping(data, name=data.pop("name", "support"), use_presets=False)


def request(**overrides):
	values = {
		"to": ("Customer One <customer@client.test>",),
		"subject": "Your order",
		"text": "Hello,\nit shipped.",
	}
	values.update(overrides)
	return OutgoingRequest(**values)


def parsed(raw: bytes):
	return email.message_from_bytes(raw, policy=email.policy.default)


def html_of(raw: bytes) -> str:
	body = parsed(raw).get_body(("html",))
	return body.get_content().replace("\r\n", "\n") if body is not None else ""


def text_of(raw: bytes) -> str:
	return parsed(raw).get_body(("plain",)).get_content().replace("\r\n", "\n")


# -- From ------------------------------------------------------------------------------------


def test_from_is_the_users_address_and_name():
	mail = compose(request(sender="jane@example.com", sender_name="Jane Doe"), account(), SITE, now=NOW)
	assert str(mail.message["From"]) == "Jane Doe <jane@example.com>"
	assert mail.envelope_from == "support@example.com"  # bounces come back to the account


def test_from_is_the_account_address_when_always_used_keeping_the_users_name():
	acct = account(always_use_account_email_id_as_sender=True)
	mail = compose(request(sender="jane@example.com", sender_name="Jane Doe"), acct, SITE, now=NOW)
	assert str(mail.message["From"]) == "Jane Doe <support@example.com>"


def test_from_takes_the_account_name_when_asked():
	acct = account(always_use_account_email_id_as_sender=True, always_use_account_name_as_sender_name=True)
	mail = compose(request(sender="jane@example.com", sender_name="Jane Doe"), acct, SITE, now=NOW)
	assert str(mail.message["From"]) == "support <support@example.com>"
	named = account(email_account_name="ACME Support", always_use_account_name_as_sender_name=True)
	assert (
		str(compose(request(), named, SITE, now=NOW).message["From"]) == "ACME Support <support@example.com>"
	)


def test_from_without_a_user_is_the_account():
	mail = compose(request(), account(), SITE, now=NOW)
	assert mail.message["From"].addresses[0].addr_spec == "support@example.com"


# -- Reply-To ----------------------------------------------------------------------------------


def test_reply_to_is_the_account_appending_to_the_documents_doctype_with_the_token():
	mail = compose(request(document=DocRef("Issue", "ISS-00001")), account(), SITE, now=NOW)
	reply_to = mail.message["Reply-To"].addresses[0].addr_spec
	assert reply_to == f"issues+{mail.thread_token}@example.com"
	assert tokens.token_from_address(reply_to) == mail.thread_token


def test_reply_to_is_the_default_incoming_account_otherwise():
	for document in (None, DocRef("Lead", "CRM-LEAD-1")):
		mail = compose(request(document=document), account(), SITE, now=NOW)
		assert mail.message["Reply-To"].addresses[0].addr_spec == f"help+{mail.thread_token}@example.com"


def test_reply_to_falls_back_to_the_account_itself_when_it_receives():
	site = SiteSettings(secret="s")
	assert compose(request(), account(), site, now=NOW).message["Reply-To"] is None
	receiving = account(enable_incoming=True, email_server="imap.example.com")
	mail = compose(request(), receiving, site, now=NOW)
	assert mail.message["Reply-To"].addresses[0].addr_spec == f"support+{mail.thread_token}@example.com"


def test_reply_to_without_subaddress_when_turned_off():
	site = SiteSettings(default_incoming="help@example.com", reply_to_subaddress=False)
	assert str(compose(request(), account(), site, now=NOW).message["Reply-To"]) == "help@example.com"


def test_site_from_accounts_maps_doctypes_and_the_default_incoming():
	accounts = [
		account(name="support", enable_incoming=True, email_server="imap.x", default_incoming=True),
		account(
			name="jobs",
			email_id="jobs@example.com",
			enable_incoming=True,
			email_server="imap.x",
			append_to="Job Applicant",
			folders=[
				{"folder_name": "INBOX", "append_to": "Job Applicant"},
				{"folder_name": "Leads", "append_to": "Lead"},
			],
		),
		account(name="out", email_id="out@example.com"),  # not incoming: never a Reply-To
	]
	site = site_from_accounts(accounts, secret="s")
	assert site.default_incoming == "support@example.com"
	assert dict(site.incoming_by_doctype) == {"Job Applicant": "jobs@example.com", "Lead": "jobs@example.com"}


# -- identity and threading ------------------------------------------------------------------


def test_message_id_carries_the_thread_token():
	mail = compose(request(), account(), SITE, now=NOW)
	assert str(mail.message["Message-ID"]) == f"<{mail.message_id}>"
	assert mail.message_id.endswith("@example.com")
	assert tokens.token_from_message_id(mail.message_id) == mail.thread_token
	token = tokens.new_thread_token()
	again = compose(request(thread_token=token), account(), SITE, now=NOW)
	assert again.thread_token == token and tokens.token_from_message_id(again.message_id) == token
	assert again.message_id != compose(request(thread_token=token), account(), SITE, now=NOW).message_id


def test_reply_carries_in_reply_to_and_references():
	mail = compose(
		request(in_reply_to=("<parent@client.test>",), references=("<root@client.test>", "mid@client.test")),
		account(),
		SITE,
		now=NOW,
	)
	assert str(mail.message["In-Reply-To"]) == "<parent@client.test>"
	assert str(mail.message["References"]) == "<root@client.test> <mid@client.test> <parent@client.test>"
	message = parse_message(mail.raw)
	assert message.in_reply_to == ("parent@client.test",)
	assert message.references == ("root@client.test", "mid@client.test", "parent@client.test")


def test_references_are_capped_keeping_the_root_and_the_newest():
	refs = tuple(f"r{i}@client.test" for i in range(40))
	mail = compose(request(in_reply_to=("parent@client.test",), references=refs), account(), SITE, now=NOW)
	ids = parse_message(mail.raw).references
	assert len(ids) == REFERENCES_LIMIT
	assert ids[0] == "r0@client.test" and ids[-1] == "parent@client.test" and ids[-2] == "r39@client.test"


def test_long_ids_are_folded_whole_never_encoded():
	long_id = "DB9PR07MB" + "X" * 90 + "@DB9PR07MB7180.eurprd07.prod.outlook.com"
	mail = compose(request(in_reply_to=(long_id,), references=(long_id,)), account(), SITE, now=NOW)
	assert b"=?" not in mail.raw.split(b"\r\n\r\n")[0]
	assert parse_message(mail.raw).in_reply_to == (long_id,)


def test_date_header():
	mail = compose(request(), account(), SITE, now=NOW)
	assert mail.message["Date"].datetime == NOW


def test_no_auto_submitted_on_mail_a_person_sends():
	mail = compose(request(), account(), SITE, now=NOW)
	assert mail.message["Auto-Submitted"] is None


@pytest.mark.parametrize("kind", ["auto-replied", "auto-generated"])
def test_auto_submitted_on_automatic_mail(kind):
	mail = compose(request(automatic=kind), account(), SITE, now=NOW)
	assert str(mail.message["Auto-Submitted"]) == kind
	assert parse_message(mail.raw).auto_submitted == kind


def test_unknown_automatic_kind_is_a_programming_error():
	with pytest.raises(ValueError):
		compose(request(automatic="yes"), account(), SITE, now=NOW)


# -- recipients --------------------------------------------------------------------------------


def test_bcc_is_an_envelope_recipient_but_no_header():
	mail = compose(
		request(cc=("cc@client.test",), bcc=("Hidden <hidden@client.test>",)), account(), SITE, now=NOW
	)
	assert mail.recipients == ("customer@client.test", "cc@client.test", "hidden@client.test")
	assert mail.message["Bcc"] is None and b"hidden@client.test" not in mail.raw


def test_repeated_recipients_are_sent_once():
	mail = compose(
		request(to=("a@client.test", "A@Client.test"), cc=("a@client.test",)), account(), SITE, now=NOW
	)
	assert mail.recipients == ("a@client.test",)


@pytest.mark.parametrize("bad", ["not an address", "a@b", "a@@b.test", "a@b.test, c@d.test", ""])
def test_what_is_not_one_address_is_refused(bad):
	with pytest.raises(InvalidAddress):
		compose(request(to=(bad,)), account(), SITE, now=NOW)


def test_no_recipient_is_refused():
	with pytest.raises(InvalidAddress, match="no recipient"):
		compose(request(to=()), account(), SITE, now=NOW)


# -- header injection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
	"overrides",
	[
		{"subject": "Hello\r\nBcc: victim@evil.test"},
		{"subject": "Hello\nX-Spam: yes"},
		{"subject": "Hello\rthere"},
		{"sender_name": "Jane\r\nBcc: victim@evil.test"},
		{"sender": "jane@example.com\r\nBcc: victim@evil.test"},
		{"to": ("customer@client.test\r\nBcc: victim@evil.test",)},
		{"to": ("Customer\n <customer@client.test>",)},
		{"cc": ("cc@client.test\nX: y",)},
		{"bcc": ("b@client.test\r\n",)},
		{"in_reply_to": ("<a@b.test>\r\nBcc: victim@evil.test",)},
		{"references": ("<a@b.test>\nX: y",)},
		{"attachments": (OutgoingAttachment("a.txt\r\nX: y", b"x"),)},
	],
)
def test_line_breaks_in_header_values_are_refused(overrides):
	with pytest.raises(HeaderInjection, match="line break"):
		compose(request(**overrides), account(), SITE, now=NOW)


def test_a_line_break_in_the_account_name_is_refused_too():
	acct = account(always_use_account_name_as_sender_name=True)
	acct = type(acct)(**{**acct.__dict__, "email_account_name": "Support\r\nBcc: x@evil.test"})
	with pytest.raises(HeaderInjection):
		compose(request(), acct, SITE, now=NOW)


# -- bodies, signature, attachments --------------------------------------------------------------


def test_plain_text_stays_plain_when_nothing_needs_html():
	mail = compose(request(), account(), SITE, now=NOW)
	assert mail.message.get_content_type() == "text/plain"
	assert text_of(mail.raw) == "Hello,\nit shipped.\n"


def test_html_only_gets_a_text_part():
	mail = compose(request(text=None, html="<p>Hello <b>you</b></p><p>Bye</p>"), account(), SITE, now=NOW)
	assert "Hello you" in text_of(mail.raw) and "Bye" in text_of(mail.raw)
	assert "<b>you</b>" in html_of(mail.raw)


def test_html_signature_in_both_parts():
	acct = account(add_signature=True, signature="<p>Best regards,<br><b>ACME Support</b></p>")
	mail = compose(request(), acct, SITE, now=NOW)
	assert "-- \nBest regards,\nACME Support" in text_of(mail.raw)
	assert '<div class="signature"><p>Best regards,<br><b>ACME Support</b></p></div>' in html_of(mail.raw)
	assert "Hello,<br>\nit shipped." in html_of(mail.raw)


def test_text_signature_is_escaped_into_html():
	acct = account(add_signature=True, signature="Jane <jane@example.com>\nACME & Co")
	mail = compose(request(html="<p>Hi</p>"), acct, SITE, now=NOW)
	assert "Jane <jane@example.com>\nACME & Co" in text_of(mail.raw)
	assert "Jane &lt;jane@example.com&gt;<br>\nACME &amp; Co" in html_of(mail.raw)


def test_no_signature_unless_add_signature():
	mail = compose(request(), account(signature="Jane"), SITE, now=NOW)
	assert "Jane" not in text_of(mail.raw)


def test_html_made_from_text_is_escaped():
	acct = account(track_email_status=True)
	mail = compose(request(text='<script>alert("x")</script> & more'), acct, SITE, now=NOW)
	html = html_of(mail.raw)
	assert "<script>" not in html
	assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in html


def test_attachments_round_trip():
	files = (
		OutgoingAttachment("report.pdf", b"%PDF-1.4 binary\x00\xff"),
		OutgoingAttachment("notes.txt", "ünïcode\n".encode()),
		OutgoingAttachment("Grüße.bin", b"\x01\x02", content_type="application/x-thing"),
	)
	message = parse_message(compose(request(attachments=files), account(), SITE, now=NOW).raw)
	got = {a.filename: (a.content_type, a.content) for a in message.attachments}
	assert got == {
		"report.pdf": ("application/pdf", b"%PDF-1.4 binary\x00\xff"),
		"notes.txt": ("text/plain", "ünïcode\n".encode()),
		"Grüße.bin": ("application/x-thing", b"\x01\x02"),
	}


# -- unsubscribe -----------------------------------------------------------------------------------


def _unsubscribe_urls(raw: bytes) -> list[str]:
	header = str(parsed(raw)["List-Unsubscribe"])
	return re.findall(r"<([^>]+)>", header)


def test_unsubscribe_link_per_recipient_with_one_click_headers():
	acct = account(send_unsubscribe_message=True)
	mail = compose(request(cc=("cc@client.test",), bcc=("hidden@client.test",)), acct, SITE, now=NOW)
	assert set(mail.personal) == {"customer@client.test", "cc@client.test", "hidden@client.test"}
	for address, raw in mail.personal.items():
		https, mailto = _unsubscribe_urls(raw)
		assert https.startswith("https://erp.example.com/api/method/email_account_app.api.unsubscribe?token=")
		assert str(parsed(raw)["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
		token = parse_qs(urlparse(https).query)["token"][0]
		# the mailto: alternative carries the same token, so the mail it makes can be acted on
		assert mailto == f"mailto:support@example.com?subject=unsubscribe%20{token}"
		assert unsubscribe_request(SITE, f"Unsubscribe {token}")["email"] == address
		assert unsubscribe_request(SITE, f"Re: unsubscribe {token}") is None
		assert unsubscribe_request(SITE, "unsubscribe " + token[:-2]) is None
		assert unsubscribe_request(None, f"unsubscribe {token}") is None
		payload = verify_unsubscribe(SITE, token)
		assert payload["email"] == address and payload["account"] == "support"
		assert https in text_of(raw) and https.replace("&", "&amp;") in html_of(raw)
		assert parsed(raw)["Message-ID"] == mail.message["Message-ID"]
	# the copy kept for the record carries nobody's link
	assert mail.message["List-Unsubscribe"] is None and "unsubscribe" not in html_of(mail.raw).lower()
	# and the thread token stays the thread's, whatever the per-recipient links are signed with
	assert tokens.token_from_message_id(mail.message_id) == mail.thread_token
	assert len(mail.thread_token) == tokens.TOKEN_LENGTH


def test_unsubscribe_link_names_the_document():
	acct = account(send_unsubscribe_message=True)
	mail = compose(request(document=DocRef("Issue", "ISS-00007")), acct, SITE, now=NOW)
	token = parse_qs(urlparse(_unsubscribe_urls(mail.personal["customer@client.test"])[0]).query)["token"][0]
	assert verify_unsubscribe(SITE, token) == {
		"email": "customer@client.test",
		"account": "support",
		"doctype": "Issue",
		"name": "ISS-00007",
	}


def test_forged_or_altered_unsubscribe_tokens_are_refused():
	good = tokens.sign({"email": "a@client.test", "account": "support"}, "site-secret", purpose="unsubscribe")
	assert verify_unsubscribe(SITE, good)["email"] == "a@client.test"
	body, mac = good.split(".")
	other = tokens.sign(
		{"email": "b@client.test", "account": "support"}, "site-secret", purpose="unsubscribe"
	)
	forged = [
		tokens.sign({"email": "a@client.test", "account": "support"}, "other-secret", purpose="unsubscribe"),
		other.split(".")[0] + "." + mac,  # someone else's address under this signature
		body + "." + mac[:-2] + ("AA" if not mac.endswith("AA") else "BB"),
		body[:-1] + "." + mac,
		tokens.sign({"email": "a@client.test", "account": "support"}, "site-secret", purpose="track"),
		"",
		"garbage",
	]
	for token in forged:
		with pytest.raises(tokens.BadToken):
			verify_unsubscribe(SITE, token)


def test_no_unsubscribe_when_the_request_says_so():
	acct = account(send_unsubscribe_message=True)
	assert compose(request(unsubscribe=False), acct, SITE, now=NOW).personal == {}


def test_links_need_the_site_secret():
	for flag in ("send_unsubscribe_message", "track_email_status"):
		with pytest.raises(ConfigError, match="secret"):
			compose(request(), account(**{flag: True}), SiteSettings(), now=NOW)


# -- tracking ------------------------------------------------------------------------------------


def test_tracking_pixel_is_signed_and_names_the_message():
	mail = compose(request(), account(track_email_status=True), SITE, now=NOW)
	assert mail.message.get_content_type() == "multipart/alternative"
	src = re.search(r'<img src="([^"]+)" alt="" width="1" height="1"', html_of(mail.raw)).group(1)
	url = urlparse(src.replace("&amp;", "&"))
	assert (
		f"{url.scheme}://{url.netloc}{url.path}"
		== "https://erp.example.com/api/method/email_account_app.api.track"
	)
	payload = verify_tracking(SITE, parse_qs(url.query)["token"][0])
	assert payload == {"account": "support", "message_id": mail.message_id}
	with pytest.raises(tokens.BadToken):
		verify_tracking(SiteSettings(secret="another"), parse_qs(url.query)["token"][0])


def test_tracking_pixel_goes_inside_the_body():
	html = "<html><body><p>Hi</p></body></html>"
	mail = compose(request(text=None, html=html), account(track_email_status=True), SITE, now=NOW)
	got = html_of(mail.raw)
	assert got.index("<img") < got.index("</body>")


def test_no_pixel_without_track_email_status():
	assert "<img" not in html_of(compose(request(html="<p>x</p>"), account(), SITE, now=NOW).raw)


# -- properties ----------------------------------------------------------------------------------

_header_text = st.text(
	st.characters(
		blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
	),
	max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(subject=_header_text, name=_header_text)
def test_any_subject_and_name_without_line_breaks_round_trip(subject, name):
	mail = compose(
		request(subject=subject, sender="jane@example.com", sender_name=name), account(), SITE, now=NOW
	)
	message = parse_message(mail.raw)
	assert message.subject == " ".join(subject.split()) or message.subject == subject
	assert message.sender.email == "jane@example.com"
	# RFC 2047 readers drop the space between two encoded words; the stdlib's reader keeps it
	assert "".join(message.sender.name.split()) == "".join(name.split())


@settings(max_examples=100, deadline=None)
@given(
	text=st.text(
		st.characters(
			blacklist_categories=("Cs",), blacklist_characters="\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
		),
		max_size=2000,
	)
)
def test_any_text_body_round_trips(text):
	mail = compose(request(text=text), account(), SITE, now=NOW)
	assert text_of(mail.raw).rstrip("\n") == text.rstrip("\n")


@settings(max_examples=100, deadline=None)
@given(value=_header_text, at=st.integers(0, 200), brk=st.sampled_from(["\r", "\n", "\r\n"]))
def test_any_line_break_anywhere_in_the_subject_is_refused(value, at, brk):
	subject = value[:at] + brk + value[at:]
	with pytest.raises(HeaderInjection):
		compose(request(subject=subject), account(), SITE, now=NOW)
