"""Parsing in a second process: the same records as parsing in the pull, nothing lost when the child
fails, and no child left behind when the pull dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from email_account_app.engine.jobs import pull as pull_account
from email_account_app.engine.parse_worker import ParseWorker
from email_account_app.engine.parsing import parse_message
from email_account_app.sqlite_store import SQLiteStore

from .factory import make_mail
from .test_hostile import BROKEN, account

USER = "alice@example.com"
MAILS = Path(__file__).parent / "mails"
RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
WORKER_MODULE = "email_account_app.engine.parse_worker"


def corpus() -> list[bytes]:
	return [
		*(path.read_bytes() for path in sorted(MAILS.glob("*.eml"))),
		*BROKEN,
		b"",
		make_mail(subject="plain"),
		make_mail(html="<p>hi</p><script>x()</script>", body="hi"),
		make_mail(attachments=[("big.bin", os.urandom(300_000), "application/octet-stream")]),
	]


def test_the_worker_gives_the_records_parsing_in_process_gives():
	raws = corpus()
	with ParseWorker() as worker:
		for raw in raws:
			worker.submit(raw, attachment_limit=100_000, received_at=RECEIVED)
		results = [worker.result() for _ in raws]
	assert results == [parse_message(r, attachment_limit=100_000, received_at=RECEIVED) for r in raws]


def test_when_the_worker_dies_the_rest_is_parsed_in_process():
	raws = corpus() * 3
	worker = ParseWorker()
	for raw in raws:
		worker.submit(raw, attachment_limit=None, received_at=RECEIVED)
	first = [worker.result() for _ in range(5)]
	worker._process.kill()
	rest = [worker.result() for _ in raws[5:]]
	worker.close()
	assert first + rest == [parse_message(r, received_at=RECEIVED) for r in raws]


def test_closing_with_messages_left_stops_the_child_at_once():
	worker = ParseWorker()
	big = make_mail(attachments=[("a.bin", os.urandom(2_000_000), "application/octet-stream")])
	for _ in range(100):
		worker.submit(big, attachment_limit=None, received_at=RECEIVED)
	start = time.monotonic()
	worker.close()
	assert worker._process.returncode is not None
	assert time.monotonic() - start < 5


def test_a_pull_with_a_parse_process_stores_what_a_pull_without_stores(dovecot, tmp_path):
	dovecot.reset(USER)
	for raw in corpus():
		if raw:
			dovecot.append(USER, raw)
	rows = {}
	for parse_process in (True, False):
		store = SQLiteStore(tmp_path / f"{parse_process}.sqlite3")
		report = pull_account(account(dovecot), store, parse_process=parse_process)
		assert report.error is None and report.failed == 0
		rows[parse_process] = [
			tuple(r)
			for r in store.rows(
				"SELECT message_id, subject, sender, recipients, text_content, html_content, reply_text, "
				"warnings, uid FROM communications ORDER BY uid"
			)
		] + [tuple(r) for r in store.rows("SELECT filename, size, content FROM attachments ORDER BY id")]
		store.close()
	assert rows[True] == rows[False]
	assert len(rows[True]) > len(corpus())


def _workers() -> set[int]:
	"""The pids of parse worker processes on this machine."""
	found = set()
	for pid in os.listdir("/proc"):
		try:
			with open(f"/proc/{pid}/cmdline", "rb") as f:
				if WORKER_MODULE.encode() in f.read():
					found.add(int(pid))
		except (OSError, ValueError):
			continue
	return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_a_killed_pull_leaves_no_parse_process_behind(dovecot, tmp_path):
	from .test_cli import write_config

	dovecot.reset(USER)
	dovecot.append_many(USER, (make_mail(body="x " * 2000) for _ in range(400)))
	config = write_config(tmp_path / "c.toml", dovecot, email_sync_option="ALL", initial_sync_count=0)
	before = _workers()
	proc = subprocess.Popen(
		[
			sys.executable,
			"-m",
			"email_account_app.cli",
			"--config",
			str(config),
			"pull",
			"--db",
			str(tmp_path / "db"),
		],
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
		env={**os.environ, "EMAIL_ACCOUNT_APP_PARSE_PROCESS": "1"},
	)
	deadline = time.monotonic() + 30
	while not (_workers() - before) and proc.poll() is None and time.monotonic() < deadline:
		time.sleep(0.01)
	children = _workers() - before
	proc.send_signal(signal.SIGKILL)
	proc.wait()
	assert children, "the pull never started a parse process"
	deadline = time.monotonic() + 10
	while children & _workers() and time.monotonic() < deadline:
		time.sleep(0.05)
	assert not children & _workers(), "the parse process outlived the pull"
