"""Hostile mail content and hostile import conditions: every message is kept, with the reason when
it was over its budget, no message stalls a pull, and the mail after it arrives.

The hostile messages are tests/hostile_mail.py's catalogue (each class of attack once) and
structure-aware random MIME trees. Time bounds here are hang guards, not measurements: the figures
are benchmarks/hostile.py's.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_account_app.engine import parsing
from email_account_app.engine.jobs import pull as pull_account
from email_account_app.engine.parsing import IncomingMessage, parse_message
from email_account_app.engine.settings import account_from_mapping
from email_account_app.sqlite_store import SQLiteStore

from .factory import make_mail, message_id_of
from .hostile_mail import HOSTILE, mime_trees

USER = "alice@example.com"
HANG_GUARD = 30  # seconds for one message: far above its budget, far below "never finishes"
# the classes whose structure is over the budget: read for their headers only
HEADERS_ONLY = {
	"many-headers",
	"deep-multipart",
	"deep-rfc822",
	"many-parts",
	"many-attachments",
	"dashes-in-text",
	"delivery-status-blocks",
}
# the classes whose body is cut, the whole body attached
CUT = {
	"huge-text": "message.txt",
	"huge-text-in-multipart": "message.txt",
	"no-newlines": "message.txt",
	"binary-garbage": "message.txt",
	"one-line-html": "message.html",
	"nested-divs": "message.html",
}


def hostile_id(raw: bytes) -> str:
	return re.search(rb"Message-ID: <([^>]+)>", raw).group(1).decode()


def account(dovecot, **overrides):
	data = dovecot.account(USER, **overrides)
	data.setdefault("email_sync_option", "ALL")
	data.setdefault("initial_sync_count", 0)
	return account_from_mapping(data, name="alice")


def all_text(message: IncomingMessage) -> list[str]:
	"""Every text of a record, as a store writes them."""
	texts = [
		message.subject,
		message.message_id,
		message.text_content,
		message.html_content,
		message.reply_text,
		message.auto_submitted or "",
		*message.in_reply_to,
		*message.references,
		*message.delivered_to,
		*message.warnings,
	]
	for address in (message.sender, *message.reply_to, *message.to, *message.cc):
		if address is not None:
			texts += [address.email, address.name]
	for attachment in message.attachments:
		texts += [attachment.filename, attachment.content_type, attachment.content_id or ""]
	for name, value in message.headers:
		texts += [name, value]
	return texts


def assert_within_bounds(message: IncomingMessage, raw: bytes) -> None:
	assert message.raw == raw and message.size == len(raw)
	assert not any(w.startswith("could not parse") for w in message.warnings), message.warnings
	for text in all_text(message):
		text.encode("utf-8")  # no lone surrogates: a store can write it
		assert "\x00" not in text
	for address in (message.sender, *message.to, *message.cc, *message.reply_to):
		if address is not None:
			assert not parsing._CONTROLS.search(address.name + address.email)
	assert not parsing._CONTROLS.search(message.subject)
	assert len(message.text_content) <= parsing.TEXT_LIMIT
	assert len(message.html_content) <= 2 * parsing.HTML_LIMIT
	assert len(message.reply_text) <= parsing.REPLY_SCAN_LIMIT
	assert len(message.headers) <= parsing.MAX_HEADERS
	assert all(len(value) <= parsing.HEADER_VALUE_LIMIT for _, value in message.headers)


# -- parsing: each class of attack ------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue() -> dict[str, bytes]:
	return {name: build() for name, build in HOSTILE.items()}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_each_hostile_message_is_read_within_its_budget(catalogue, name):
	raw = catalogue[name]
	started = time.monotonic()
	message = parse_message(raw, attachment_limit=25 * 1024 * 1024)
	assert time.monotonic() - started < HANG_GUARD
	assert_within_bounds(message, raw)
	assert message.message_id == f"hostile-{name}@example.com"
	if name in HEADERS_ONLY:
		assert message.text_content.startswith("This message is too complex to read here")
		(original,) = message.attachments
		assert (original.filename, original.content_type, original.content) == (
			"message.eml",
			"message/rfc822",
			raw,
		)
	if name in CUT:
		kept = next(a for a in message.attachments if a.filename == CUT[name])
		assert kept.content is not None and len(kept.content) > parsing.TEXT_LIMIT // 2
		assert any(f"attached ({CUT[name]})" in w for w in message.warnings)


def test_a_long_content_type_keeps_its_boundary_and_charset():
	junk = "; ".join(f"p{i}=v{i}" for i in range(4000))
	raw = (
		f'From: a@example.com\r\nContent-Type: multipart/mixed; {junk}; boundary="xyz"\r\n\r\n'
		"--xyz\r\nContent-Type: text/plain; charset=latin-1\r\n\r\ncaf\xe9\r\n--xyz\r\n"
		'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="a.pdf"\r\n\r\n%PDF\r\n'
		"--xyz--\r\n"
	).encode("latin-1")
	message = parse_message(raw)
	assert message.text_content.strip() == "café"
	assert [a.filename for a in message.attachments] == ["a.pdf"]


def test_rfc2231_sections_are_read_up_to_a_bound():
	sections = "filename*0*=utf-8''%C3%A9; " + "; ".join(f"filename*{i}*=%C3%A9" for i in range(1, 5000))
	raw = (
		'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
		f"Content-Type: application/pdf\r\nContent-Disposition: attachment; {sections}\r\n\r\n%PDF\r\n--b--\r\n"
	).encode()
	(attachment,) = parse_message(raw).attachments
	assert attachment.filename == "é" * parsing.MAX_KEPT_PARAMETERS


def test_many_parts_with_distinct_long_content_types_stay_within_the_allowance():
	parts = "".join(
		f"--b\r\nContent-Type: text/plain; charset=utf-8; x{i}={'y' * 2000}\r\n\r\npart {i}\r\n"
		for i in range(300)
	)
	raw = (
		f'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n{parts}--b--\r\n'.encode()
	)
	started = time.monotonic()
	message = parse_message(raw)
	assert time.monotonic() - started < HANG_GUARD
	assert message.text_content.strip() == "part 0"
	assert len(message.attachments) == 299  # every part still found: its type and boundary are kept


def test_broken_encoded_words_are_repaired_as_the_subject_is():
	message = parse_message(HOSTILE["broken-encoded-words"]())
	assert_within_bounds(message, message.raw)
	assert message.sender.email == "broken@example.com"
	assert [a.email for a in message.to] == ["to@example.com", "u7@example.com"]
	assert message.cc[0].email == "cc@example.com"
	assert message.attachments[0].filename.endswith(".pdf")


def test_nul_and_control_characters_leave_names_ids_and_subjects():
	raw = (
		b"From: N\x00a\x01me\x85 <a\x00b@example.com>\r\nSubject: one\x0btwo\x1cthree\x00\r\n"
		b"Message-ID: <id\x01x@example.com>\r\nIn-Reply-To: <p\x00q@example.com>\r\n\r\nbody\r\n"
	)
	message = parse_message(raw)
	assert_within_bounds(message, raw)
	assert message.subject == "one two three"
	assert message.sender.email == "ab@example.com"
	assert message.message_id == "idx@example.com"


def test_deep_html_is_kept_as_text():
	html = "<div>" * 5000 + "deep words" + "</div>" * 5000
	message = parse_message(make_mail(html=html, body=""))
	assert message.html_content == ""
	assert "deep words" in message.text_content
	assert any("nests 5,000 elements deep" in w for w in message.warnings)


def test_html_that_only_looks_deep_is_kept_as_html():
	html = "<p>paragraph " * 3000 + "<br>" * 3000 + "<table>" + "<tr><td>cell" * 3000 + "</table>"
	message = parse_message(make_mail(html=html, body=""))
	assert "<p>paragraph" in message.html_content
	assert not any("deep" in w for w in message.warnings)


# -- parsing: random MIME trees ---------------------------------------------------------------


@settings(
	max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(mime_trees())
def test_random_mime_trees_are_read_within_bounds(raw):
	assert_within_bounds(parse_message(raw, attachment_limit=1000), raw)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
	st.lists(st.sampled_from(sorted(HOSTILE)), min_size=1, max_size=3),
	st.floats(min_value=0.001, max_value=0.05),
	st.randoms(use_true_random=False),
)
def test_hostile_messages_nested_and_cut_are_read_within_bounds(names, scale, rng):
	"""Hostile messages attached inside one another, some cut short at a random byte."""
	raw = HOSTILE[names[0]](scale)
	for name in names[1:]:  # each attached to a message that holds the one before
		raw = (
			b'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="outer"\r\n\r\n'
			b"--outer\r\nContent-Type: message/rfc822\r\n\r\n"
			+ raw
			+ b"\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\n"
			+ HOSTILE[name](scale)
			+ b"\r\n--outer--\r\n"
		)
	if rng.random() < 0.5:
		raw = raw[: rng.randrange(len(raw) + 1)]
	started = time.monotonic()
	message = parse_message(raw)
	assert time.monotonic() - started < HANG_GUARD
	assert_within_bounds(message, raw)


# -- pulls through a real Dovecot -------------------------------------------------------------


@pytest.mark.parametrize("parse_process", [False, True], ids=["in-process", "parse-process"])
def test_a_pull_keeps_every_hostile_message_and_goes_on(dovecot, tmp_path, catalogue, parse_process):
	dovecot.reset(USER)
	dovecot.append_many(USER, catalogue.values())
	after = make_mail(subject="after the hostile ones")
	dovecot.append(USER, after)
	served = {hostile_id(raw): raw for raw in dovecot.messages(USER).values() if b"hostile-" in raw}
	store = SQLiteStore(tmp_path / "mail.sqlite3")
	started = time.monotonic()
	report = pull_account(account(dovecot), store, parse_process=parse_process)
	assert time.monotonic() - started < HANG_GUARD * len(catalogue)
	assert report.error is None and report.failed == 0, report.as_dict()
	assert report.fetched == report.stored == len(catalogue) + 1
	assert store.rows("SELECT 1 FROM communications WHERE message_id=?", message_id_of(after))
	for name in catalogue:
		message_id = f"hostile-{name}@example.com"
		(row,) = store.rows(
			"SELECT id, text_content, warnings, sender_full_name FROM communications WHERE message_id=?",
			message_id,
		)
		if name in HEADERS_ONLY:
			assert row["text_content"].startswith("This message is too complex to read here")
			assert "too complex" in row["warnings"]
			(kept,) = store.rows(
				"SELECT content FROM attachments WHERE communication=? AND filename='message.eml'", row["id"]
			)
			assert kept["content"] == served[message_id]
		if name in CUT:
			assert store.rows(
				"SELECT 1 FROM attachments WHERE communication=? AND filename=? AND content IS NOT NULL",
				row["id"],
				CUT[name],
			)
	assert pull_account(account(dovecot), store).fetched == 0
	store.close()


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(mime_trees(), min_size=5, max_size=15))
def test_a_pull_of_random_mime_trees_keeps_every_one(dovecot, tmp_path_factory, raws):
	dovecot.reset(USER)
	dovecot.append_many(USER, raws)
	dovecot.append(USER, make_mail(subject="after"))
	store = SQLiteStore(tmp_path_factory.mktemp("fuzz") / "mail.sqlite3")
	report = pull_account(account(dovecot), store)
	assert report.error is None and report.failed == 0, report.as_dict()
	assert report.fetched == len(raws) + 1
	# identical bytes without a Message-ID are one message (its id is derived from them): a duplicate
	assert report.stored + report.duplicates + report.skipped == len(raws) + 1
	assert store.count("communications") + store.count("skipped") <= len(set(raws)) + 1
	store.close()


# -- hostile import conditions ----------------------------------------------------------------


@pytest.mark.parametrize(
	"condition",
	[
		"4000000**4000000 > 0",
		'"%02000000000d" % 1 != ""',
		'f"{1:>2000000000}" != ""',
		"len(doc.text_content * 100000000) > 0",
		"doc.date > '2020'",
	],
)
def test_a_condition_that_cannot_be_evaluated_keeps_each_message_as_failed(dovecot, store, condition):
	dovecot.reset(USER)
	raws = [make_mail(subject=f"bomb {n}") for n in range(3)]
	dovecot.append_many(USER, raws)
	started = time.monotonic()
	report = pull_account(account(dovecot, condition=condition), store, keep_messages=True)
	assert time.monotonic() - started < HANG_GUARD
	assert report.error is None and report.fetched == report.failed == 3
	assert all("import condition" in m.reason for m in report.messages)
	kept = [row["raw"] for row in store.rows("SELECT raw FROM failures ORDER BY CAST(uid AS INTEGER)")]
	assert [r.replace(b"\r\n", b"\n") for r in kept] == [r.replace(b"\r\n", b"\n") for r in raws]
	assert store.count("skipped") == store.count("communications") == 0
	assert pull_account(account(dovecot, condition=condition), store).fetched == 0
