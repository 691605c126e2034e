"""Hostile and failing servers: each ends in one clear error within a bounded time, and the next
pull through a healthy connection gets everything exactly once.

The servers are real (Dovecot, aiosmtpd); a proxy on loopback (hostile_proxy.py) makes them
trickle, stall, drop, lie about literal sizes, flood and send garbage.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from email_account_app.engine.errors import ConfigError, ServerMisbehaved, ServerTooSlow
from email_account_app.engine.jobs import pull as pull_account
from email_account_app.engine.outbox import flush, queue_mail
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.transports.smtp import SmtpSender

from .factory import make_mail, message_id_of
from .hostile_proxy import HostileProxy
from .test_cli import write_config
from .test_outbox import SITE, T0, hello, sender_account

USER = "alice@example.com"
MESSAGES = 12
#: how long any misbehaving server may keep a pull or a send (a hang guard, not a timing)
BOUND = 20


@pytest.fixture
def imap_proxy(dovecot):
	proxy = HostileProxy(dovecot.imap_port)
	yield proxy
	proxy.close()


@pytest.fixture
def pop3_proxy(dovecot):
	proxy = HostileProxy(dovecot.pop3_port)
	yield proxy
	proxy.close()


@pytest.fixture
def smtp_proxy(smtp_plain):
	smtp_plain.reset()
	proxy = HostileProxy(smtp_plain.port)
	yield proxy
	proxy.close()


@pytest.fixture
def mail(dovecot):
	dovecot.reset(USER)
	raws = [make_mail(body="line of text\n" * 300) for _ in range(MESSAGES)]
	dovecot.append_many(USER, raws)
	return {message_id_of(r) for r in raws}


def account(dovecot, port, *, protocol="imap", **overrides):
	data = dovecot.account(USER, protocol=protocol, security="plain", incoming_port=port)
	data.update({"email_sync_option": "UNSEEN", "initial_sync_count": 0, "timeout": 1, **overrides})
	return account_from_mapping(data, name="alice")


def stored(store) -> list[str]:
	return [r["message_id"] for r in store.rows("SELECT message_id FROM communications")]


def timed_pull(acct, store, **kwargs):
	started = time.monotonic()
	report = pull_account(acct, store, **kwargs)
	assert time.monotonic() - started < BOUND, "the misbehaving server kept the pull too long"
	return report


def then_a_healthy_pull_gets_everything_once(proxy, acct, store, ids, dovecot):
	proxy.heal()
	report = pull_account(acct, store)
	assert report.error is None, report.error
	got = stored(store)
	assert len(got) == len(set(got)) and set(got) == ids
	assert all("\\Seen" in flags for flags in dovecot.flags(USER).values())


# -- IMAP -------------------------------------------------------------------------------------

FETCH = b"BODY.PEEK[]"

IMAP_CASES = {
	# one byte every 0.2 s: each read gets its byte, only the command's bound ends it
	"trickle": ({"action": "trickle", "trigger": FETCH, "after": 3000}, ServerTooSlow.title),
	"trickle from the greeting": ({"action": "trickle", "delay": 0.3}, ServerTooSlow.title),
	"stall mid-response": ({"action": "stall", "trigger": FETCH, "after": 5000}, "Server did not answer"),
	"drop mid-FETCH": ({"action": "drop", "trigger": FETCH, "after": 5000}, "Connection lost"),
	"a 100 TB literal": (
		{"action": "literal", "trigger": FETCH, "size": 100_000_000_000_000},
		ServerMisbehaved.title,
	),
	"a literal shorter than the message": ({"action": "literal", "trigger": FETCH, "size": 10}, None),
	"a literal longer than the message": ({"action": "literal", "trigger": FETCH, "size": 9000}, None),
	"garbage": ({"action": "garbage", "trigger": FETCH, "data": b"\x00\xff\xfe garbage\r\n" * 3}, None),
	"a line without end": (
		{"action": "flood", "trigger": FETCH, "data": b"x" * 4096},
		ServerMisbehaved.title,
	),
	"untagged responses without end": (
		{"action": "flood", "trigger": FETCH, "data": b"* 1 RECENT\r\n"},
		ServerMisbehaved.title,
	),
}


@pytest.mark.parametrize("case", IMAP_CASES)
def test_imap_server_misbehaving_mid_pull(dovecot, store, imap_proxy, mail, case):
	plan, title = IMAP_CASES[case]
	acct = account(dovecot, imap_proxy.port)
	imap_proxy.misbehave(**plan)
	report = timed_pull(acct, store)
	assert report.error, "the pull did not notice"
	if title:
		assert report.error_title == title, report.error
	assert f"127.0.0.1:{imap_proxy.port}" in report.error
	# nothing half-stored, nothing flagged that is not stored
	assert len(stored(store)) == len(set(stored(store)))
	then_a_healthy_pull_gets_everything_once(imap_proxy, acct, store, mail, dovecot)


@pytest.mark.parametrize(
	"plan",
	[
		{"action": "trickle", "trigger": FETCH, "after": 30_000},
		{"action": "literal", "trigger": FETCH, "after": 30_000, "size": 100_000_000_000_000},
		{"action": "garbage", "trigger": FETCH, "after": 30_000, "data": b"garbage\r\n"},
	],
	ids=["trickle", "literal", "garbage"],
)
def test_what_a_pull_committed_before_the_server_turned_hostile_stays(dovecot, store, imap_proxy, mail, plan):
	"""Batches of 4 (about 17 KB): the first ones are stored, then the server misbehaves."""
	acct = account(dovecot, imap_proxy.port)
	imap_proxy.misbehave(**plan)
	report = timed_pull(acct, store, batch_size=4)
	assert report.error and 0 < report.stored < MESSAGES
	assert len(stored(store)) == report.stored
	then_a_healthy_pull_gets_everything_once(imap_proxy, acct, store, mail, dovecot)


def test_the_100_tb_literal_says_what_to_do(dovecot, store, imap_proxy, mail):
	imap_proxy.misbehave("literal", trigger=FETCH, size=100_000_000_000_000)
	report = timed_pull(account(dovecot, imap_proxy.port), store)
	assert "100,000,000,000,000 bytes" in report.error and "attachment_limit" in report.error


def test_a_pull_stops_at_its_time_limit_and_the_next_goes_on(dovecot, store, imap_proxy, mail):
	"""The command's own bound (4 x 5 s) is far; the pull's (2 s) ends it."""
	acct = account(dovecot, imap_proxy.port, timeout=5, pull_timeout=2)
	imap_proxy.misbehave("trickle", trigger=FETCH, after=3000, delay=0.1)
	report = timed_pull(acct, store)
	assert report.error_title == "Time limit reached"
	assert "pull_timeout" in report.error and "next pull" in report.error
	then_a_healthy_pull_gets_everything_once(
		imap_proxy, account(dovecot, imap_proxy.port), store, mail, dovecot
	)


def test_the_cli_prints_one_line_and_no_traceback(dovecot, imap_proxy, mail, tmp_path):
	config = write_config(
		tmp_path / "c.toml",
		dovecot,
		use_ssl=False,
		incoming_port=imap_proxy.port,
		email_sync_option="UNSEEN",
		initial_sync_count=0,
		timeout=1,
	)
	db = tmp_path / "db.sqlite3"
	cmd = [sys.executable, "-m", "email_account_app.cli", "--config", str(config), "pull", "--db", str(db)]
	for plan in (
		{"action": "literal", "trigger": FETCH, "size": 100_000_000_000_000},
		{"action": "trickle", "trigger": FETCH, "after": 3000},
		{"action": "flood", "trigger": FETCH, "data": b"* 1 RECENT\r\n"},
	):
		imap_proxy.misbehave(**plan)
		result = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60)
		assert result.returncode == 1
		assert "Traceback" not in result.stdout + result.stderr
		(acct,) = json.loads(result.stdout)["accounts"]
		assert acct["error"] and f"127.0.0.1:{imap_proxy.port}" in acct["error"]
	imap_proxy.heal()
	result = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60)
	assert result.returncode == 0, result.stderr
	from email_account_app.sqlite_store import SQLiteStore

	got = stored(SQLiteStore(db))
	assert len(got) == len(set(got)) and set(got) == mail


# -- POP3 -------------------------------------------------------------------------------------

POP3_CASES = {
	"trickle": ({"action": "trickle", "trigger": b"RETR", "after": 2000}, ServerTooSlow.title),
	"stall mid-response": ({"action": "stall", "trigger": b"RETR", "after": 2000}, "Server did not answer"),
	"drop mid-RETR": ({"action": "drop", "trigger": b"RETR", "after": 2000}, "Connection lost"),
	"a line without end": (
		{"action": "flood", "trigger": b"RETR", "data": b"y" * 4096},
		ServerMisbehaved.title,
	),
	"garbage": (
		{"action": "garbage", "trigger": b"RETR", "data": b"!! not pop3\r\n"},
		ServerMisbehaved.title,
	),
	"a message without end": (
		{"action": "flood", "trigger": b"RETR", "after": 2000, "data": b"more of the message\r\n"},
		ServerMisbehaved.title,
	),
}


@pytest.mark.parametrize("case", POP3_CASES)
def test_pop3_server_misbehaving_mid_pull(dovecot, store, pop3_proxy, mail, case):
	plan, title = POP3_CASES[case]
	# a 1 MB attachment limit: a message may be 5 MB, so "a message without end" ends soon
	acct = account(dovecot, pop3_proxy.port, protocol="pop3", attachment_limit=1)
	pop3_proxy.misbehave(**plan)
	report = timed_pull(acct, store)
	assert report.error_title == title, report.error
	assert f"127.0.0.1:{pop3_proxy.port}" in report.error
	pop3_proxy.heal()
	assert pull_account(acct, store).error is None
	got = stored(store)
	assert len(got) == len(set(got)) and set(got) == mail


def test_pop3_takes_lines_longer_than_poplib_does(dovecot, store):
	"""Real mail has lines far over poplib's 2 KB; the bound is ours, not a patched poplib."""
	import poplib

	dovecot.reset(USER)
	raw = make_mail(html="<p>" + "word " * 20_000 + "</p>")
	dovecot.append(USER, raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
	acct = account_from_mapping(dovecot.account(USER, protocol="pop3"), name="p")
	assert pull_account(acct, store).stored == 1
	assert poplib._MAXLINE == 2048


# -- SMTP -------------------------------------------------------------------------------------

SMTP_CASES = {
	# a reply of "250 ..." one byte every 0.8 s: each read gets its byte within the 1 s timeout
	"trickle": ({"action": "trickle", "trigger": b"MAIL FROM", "delay": 0.8}, ServerTooSlow),
	"trickle from the greeting": ({"action": "trickle", "delay": 0.3}, ServerTooSlow),
	"a reply without end": ({"action": "flood", "trigger": b"EHLO", "data": b"250-x\r\n"}, ServerMisbehaved),
	"a line without end": ({"action": "flood", "trigger": b"EHLO", "data": b"z" * 4096}, ServerMisbehaved),
}


@pytest.mark.parametrize("case", SMTP_CASES)
def test_smtp_server_misbehaving(smtp_plain, smtp_proxy, case):
	plan, error = SMTP_CASES[case]
	acct = sender_account(smtp_plain, smtp_port=smtp_proxy.port, timeout=1)
	smtp_proxy.misbehave(**plan)
	started = time.monotonic()
	with pytest.raises(error) as caught:
		with SmtpSender(acct) as sender:
			sender.send(make_mail(), "support@example.com", ["customer@client.test"])
	assert time.monotonic() - started < BOUND
	assert f"127.0.0.1:{smtp_proxy.port}" in str(caught.value)
	assert smtp_plain.deliveries == []


def test_outbox_flush_through_a_trickling_server_then_a_healthy_one_sends_each_mail_once(
	store, smtp_plain, smtp_proxy
):
	acct = sender_account(smtp_plain, smtp_port=smtp_proxy.port, timeout=1)
	mails = [queue_mail(store, acct, SITE, hello(subject=f"n{n}"), now=T0) for n in range(3)]
	smtp_proxy.misbehave("trickle", trigger=b"MAIL FROM", delay=0.8)
	started = time.monotonic()
	report = flush(store, [acct], now=T0)
	assert time.monotonic() - started < BOUND
	assert smtp_plain.deliveries == []
	assert not report.ok
	smtp_proxy.heal()
	flush(store, [acct], now=T0 + timedelta(hours=2))
	assert sorted(d.rcpt_tos for d in smtp_plain.deliveries) == [("customer@client.test",)] * 3
	assert {store.get_outgoing(m.name).status for m in mails} == {"Sent"}


# -- the setting ------------------------------------------------------------------------------


def test_pull_timeout_has_a_default_and_must_be_positive(dovecot):
	assert account(dovecot, 1).pull_timeout == 2400
	with pytest.raises(ConfigError, match="pull_timeout must be more than 0 seconds"):
		account(dovecot, 1, pull_timeout=0)
