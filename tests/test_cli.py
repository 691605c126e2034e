"""The `email-account-app` command, run as a user runs it."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from email_account_app.sqlite_store import SQLiteStore

from .factory import make_mail, message_id_of

USER = "alice@example.com"


def write_config(path, dovecot, user=USER, **extra):
	data = dovecot.account(user)
	data.update(extra)
	lines = ["[accounts.alice]"]
	for key, value in data.items():
		if value is None:
			continue
		lines.append(f"{key} = {json.dumps(value)}")
	path.write_text("\n".join(lines) + "\n")
	return path


def run_cli(*args, config=None, timeout=120):
	cmd = [sys.executable, "-m", "email_account_app.cli"]
	if config:
		cmd += ["--config", str(config)]
	return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def fresh(dovecot):
	dovecot.reset(USER)
	return dovecot


def test_pull_json_prints_exactly_one_object(fresh, tmp_path):
	for _ in range(3):
		fresh.append(USER, make_mail())
	config = write_config(tmp_path / "c.toml", fresh, email_sync_option="ALL")
	result = run_cli("pull", "--json", "--db", str(tmp_path / "db.sqlite3"), config=config)
	assert result.returncode == 0, result.stderr
	data = json.loads(result.stdout)
	(acct,) = data["accounts"]
	assert {k: acct[k] for k in ("name", "fetched", "stored", "duplicates", "skipped", "failed")} == {
		"name": "alice",
		"fetched": 3,
		"stored": 3,
		"duplicates": 0,
		"skipped": 0,
		"failed": 0,
	}
	assert len(acct["messages"]) == 3 and acct["messages"][0]["action"] == "stored"


def test_pull_prints_a_summary(fresh, tmp_path):
	fresh.append(USER, make_mail())
	config = write_config(tmp_path / "c.toml", fresh, email_sync_option="ALL")
	result = run_cli("pull", "--db", str(tmp_path / "db.sqlite3"), config=config)
	assert result.returncode == 0, result.stderr
	assert "alice" in result.stdout and "ok" in result.stdout


def test_wrong_password_exits_non_zero_without_a_traceback(fresh, tmp_path):
	config = write_config(tmp_path / "c.toml", fresh, password="wrong-wrong")
	result = run_cli("pull", "--json", "--db", str(tmp_path / "db.sqlite3"), config=config)
	assert result.returncode == 1
	assert json.loads(result.stdout)["accounts"][0]["error"]
	assert "Traceback" not in result.stderr and "wrong-wrong" not in result.stdout + result.stderr


def test_config_errors_are_plain(tmp_path):
	bad = tmp_path / "bad.toml"
	bad.write_text(
		'[accounts.x]\nemail_id = "x@example.com"\nenable_incoming = true\nincoming_port = 99999\n'
	)
	result = run_cli("pull", config=bad)
	assert result.returncode == 2
	assert "out of range" in result.stderr and "Traceback" not in result.stderr
	missing = run_cli("pull", config=tmp_path / "nope.toml")
	assert missing.returncode == 2 and "not found" in missing.stderr


def test_check_lists_folders_and_gives_a_verdict(fresh, tmp_path):
	fresh.append(USER, make_mail())
	config = write_config(tmp_path / "c.toml", fresh)
	result = run_cli("check", "alice", config=config)
	assert result.returncode == 0, result.stdout + result.stderr
	assert "INBOX" in result.stdout and "works" in result.stdout
	bad = write_config(tmp_path / "b.toml", fresh, password="nope")
	failed = run_cli("check", config=bad)
	assert failed.returncode == 1
	assert "Login failed" in failed.stdout


def test_awaiting_password_without_a_terminal_says_what_to_do(fresh, tmp_path):
	config = write_config(tmp_path / "c.toml", fresh, password=None, awaiting_password=True)
	result = run_cli("pull", config=config)
	assert result.returncode == 2 and "awaiting its password" in result.stderr


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(fresh, tmp_path):
	"""Kill the pull again and again; when it finally completes, every message is there once."""
	rng = random.Random(20261123)
	raws = [
		make_mail(attachments=[("a.bin", os.urandom(rng.randint(0, 40_000)), "application/octet-stream")])
		for _ in range(600)
	]
	for raw in raws:
		fresh.append(USER, raw)
	config = write_config(
		tmp_path / "c.toml", fresh, email_sync_option="UNSEEN", append_to="Issue", initial_sync_count=1000
	)
	db = tmp_path / "db.sqlite3"
	cmd = [sys.executable, "-m", "email_account_app.cli", "--config", str(config), "pull", "--db", str(db)]

	def committed() -> int:
		try:
			with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
				return conn.execute("SELECT COUNT(*) FROM communications").fetchone()[0]
		except sqlite3.OperationalError:  # no file or no table yet
			return 0

	kills = 0
	for _attempt in range(200):
		before = committed()
		proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
		if kills >= 3 and rng.random() < 0.3:
			assert proc.wait(timeout=300) == 0
			break
		# a random moment after this run's first commit: neither before it has done anything on
		# a loaded machine nor after it has finished on a quiet one
		deadline = time.monotonic() + 60
		while proc.poll() is None and committed() == before and time.monotonic() < deadline:
			time.sleep(0.01)
		try:
			proc.wait(timeout=rng.uniform(0.0, 0.4))
		except subprocess.TimeoutExpired:
			proc.send_signal(signal.SIGKILL)
			proc.wait()
			kills += 1
			continue
		assert proc.returncode == 0
		break
	else:
		pytest.fail("the pull never completed")
	assert kills >= 3, "the pull finished before it could be killed: make the mailbox bigger"
	store = SQLiteStore(db)
	ids = [r["message_id"] for r in store.rows("SELECT message_id FROM communications")]
	assert len(ids) == len(set(ids)) == 600
	assert set(ids) == {message_id_of(r) for r in raws}
	assert store.count("documents") == 600
	assert all("\\Seen" in f for f in fresh.flags(USER, "INBOX").values())


def test_dry_run_says_what_would_happen_and_writes_nothing(fresh, tmp_path):
	first = make_mail(subject="Printer broken")
	fresh.append(USER, first)
	config = write_config(tmp_path / "c.toml", fresh, email_sync_option="ALL", append_to="Issue")
	db = tmp_path / "db.sqlite3"
	assert run_cli("pull", "--db", str(db), config=config).returncode == 0
	from .clients import gmail_reply

	reply, _ = gmail_reply(message_id_of(first), "Printer broken")
	fresh.append(USER, reply)
	fresh.append(USER, make_mail(subject="Another question"))
	result = run_cli("pull", "--dry-run", "--json", "--db", str(db), config=config)
	assert result.returncode == 0, result.stderr
	data = json.loads(result.stdout)
	assert data["dry_run"] is True
	by_subject = {m["subject"]: m for m in data["accounts"][0]["messages"]}
	assert by_subject["Re: Printer broken"]["action"] == "linked"
	assert by_subject["Re: Printer broken"]["rule"] == "in-reply-to"
	assert by_subject["Re: Printer broken"]["document"] == {"doctype": "Issue", "name": "ISS-00001"}
	assert by_subject["Another question"]["action"] == "created"
	table = run_cli("pull", "--dry-run", "--db", str(db), config=config)
	assert "in-reply-to" in table.stdout and "Dry run" in table.stdout
	assert SQLiteStore(db).count("communications") == 1
