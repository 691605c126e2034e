"""Hostile input and hostile servers never lose or duplicate mail, and never stop a pull."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_account_app.engine.jobs import pull as pull_account
from email_account_app.engine.settings import account_from_mapping
from email_account_app.sqlite_store import SQLiteStore

from .factory import make_mail, message_id_of

USER = "alice@example.com"
MAILS = Path(__file__).parent / "mails"


def account(dovecot, **overrides):
	data = dovecot.account(USER, **overrides)
	data.setdefault("email_sync_option", "ALL")
	data.setdefault("initial_sync_count", 0)
	return account_from_mapping(data, name="alice")


BROKEN = [
	# broken boundary
	b'From: a@x.test\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary="nope"\r\n\r\n--other\r\n'
	b"Content-Type: text/plain\r\n\r\nbody\r\n--other--\r\n",
	# no headers at all
	b"just some text without any header\r\n",
	# 8-bit raw headers, latin-1 and utf-8
	"From: Jörg Müller <jm@x.test>\r\nSubject: Grüße aus Köln\r\n\r\nHallo\r\n".encode("latin-1"),
	"From: Zoë <z@x.test>\r\nSubject: 日本語の件名\r\n\r\nこんにちは\r\n".encode(),
	# unknown charset
	b'From: a@x.test\r\nSubject: =?x-unknown?q?=E9t=E9?=\r\nContent-Type: text/plain; charset="x-unknown"\r\n\r\n\xe9t\xe9\r\n',
	# a huge header
	b"From: a@x.test\r\nSubject: huge\r\nX-Huge: " + b"a" * 300_000 + b"\r\n\r\nbody\r\n",
	# a References header with thousands of ids
	b"From: a@x.test\r\nSubject: refs\r\nReferences: "
	+ b" ".join(b"<%d@x.test>" % i for i in range(5000))
	+ b"\r\n\r\nbody\r\n",
	# malformed addresses and a date from nowhere
	b'From: <<<@@@>>>, "unterminated\r\nTo: ,,,;;;\r\nDate: the day after tomorrow\r\nSubject: addr\r\n\r\nx\r\n',
	# html with scripts only
	b"From: a@x.test\r\nSubject: html\r\nContent-Type: text/html\r\n\r\n<script>alert(1)</script><img src=x onerror=alert(2)>\r\n",
]


def test_broken_messages_are_stored_with_warnings_and_the_pull_goes_on(dovecot, store):
	dovecot.reset(USER)
	for raw in BROKEN:
		dovecot.append(USER, raw)
	for path in sorted(MAILS.glob("*.eml")):
		dovecot.append(USER, path.read_bytes())
	good = make_mail(subject="a good one after the bad ones")
	dovecot.append(USER, good)
	total = len(BROKEN) + len(list(MAILS.glob("*.eml"))) + 1
	report = pull_account(account(dovecot), store)
	assert report.error is None
	assert report.fetched == total
	assert report.stored + report.duplicates + report.skipped + report.failed == total
	assert report.failed == 0
	html = store.rows("SELECT html_content FROM communications WHERE subject='html'")[0][0]
	assert "<script" not in html and "onerror" not in html
	assert store.rows("SELECT 1 FROM communications WHERE message_id=?", message_id_of(good))
	assert pull_account(account(dovecot), store).fetched == 0


header_text = st.text(
	st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=80
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
	subject=header_text,
	sender=header_text,
	body=st.text(max_size=500),
	charset=st.sampled_from(["utf-8", "latin-1", "x-unknown", "utf8", "gb2312", ""]),
)
def test_generated_messages_never_stop_a_pull(dovecot, tmp_path_factory, subject, sender, body, charset):
	dovecot.reset(USER)
	raw = (
		f"From: {sender}\r\nSubject: {subject}\r\n"
		f"Content-Type: text/plain; charset={charset}\r\n\r\n{body}\r\n".encode("utf-8", "surrogatepass")
	)
	dovecot.append(USER, raw)
	dovecot.append(USER, make_mail(subject="after"))
	store = SQLiteStore(tmp_path_factory.mktemp("h") / "m.sqlite3")
	report = pull_account(account(dovecot), store)
	assert report.error is None
	assert report.fetched == 2 and report.failed == 0
	assert store.count("communications") + store.count("skipped") == 2


def test_server_drops_the_connection_mid_fetch_then_the_next_pull_completes(dovecot, store, flaky_proxy):
	dovecot.reset(USER)
	raws = [make_mail(attachments=[("a.bin", bytes(20_000), "application/octet-stream")]) for _ in range(30)]
	dovecot.append_many(USER, raws)
	acct = account(dovecot, security="plain", incoming_port=flaky_proxy.port, timeout=5)
	flaky_proxy.drop_after(300_000)
	first = pull_account(acct, store, batch_size=10)
	assert first.error_title == "Connection lost"
	assert 0 < first.stored < 30
	flaky_proxy.heal()
	second = pull_account(acct, store, batch_size=10)
	assert second.error is None
	ids = [r[0] for r in store.rows("SELECT message_id FROM communications")]
	assert len(ids) == len(set(ids)) == 30


def test_server_that_hangs_times_out_with_a_clear_error(dovecot, store, flaky_proxy):
	dovecot.reset(USER)
	dovecot.append(USER, make_mail())
	acct = account(dovecot, security="plain", incoming_port=flaky_proxy.port, timeout=2)
	flaky_proxy.stall()
	report = pull_account(acct, store)
	assert report.error_title in ("Server did not answer", "Connection lost")
	assert "2" in report.error or "answer" in report.error
	flaky_proxy.heal()
	assert pull_account(acct, store).stored == 1
