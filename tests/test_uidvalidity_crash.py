"""Crashes and UIDVALIDITY changes together: nothing lost, nothing stored twice, and in UNSEEN mode
every stored message (and only a stored one) flagged \\Seen on the server.

A pull killed between its commit and its flag leaves stored mail unseen on the server; the next pull
flags it. When the folder gets a new UIDVALIDITY in between, the next pull recognises that mail by
its Message-ID instead of its UID, and must flag it then: nothing else ever will.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from email_account_app.engine.jobs import pull as pull_account
from email_account_app.engine.settings import account_from_mapping
from email_account_app.sqlite_store import SQLiteStore

from .factory import make_mail, message_id_of
from .test_cli import write_config

USER = "alice@example.com"


@pytest.fixture
def fresh(dovecot):
	dovecot.reset(USER)
	return dovecot


def account(dovecot, **overrides):
	data = dovecot.account(USER, initial_sync_count=0)
	data.update(overrides)
	return account_from_mapping(data, name="alice")


def seen_ids(dovecot) -> tuple[set[str], set[str]]:
	"""(Message-IDs flagged \\Seen, all Message-IDs) in the INBOX."""
	with dovecot.session(USER) as client:
		client.select_folder("INBOX", readonly=True)
		if not client.search(["ALL"]):
			return set(), set()
		data = client.fetch("1:*", ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
	seen, every = set(), set()
	for item in data.values():
		header = next(v for k, v in item.items() if k.startswith(b"BODY[HEADER.FIELDS"))
		mid = message_id_of(header)
		every.add(mid)
		if b"\\Seen" in item[b"FLAGS"]:
			seen.add(mid)
	return seen, every


def stored_ids(store) -> list[str]:
	return [r["message_id"] for r in store.rows("SELECT message_id FROM communications")]


def stored_in(db) -> list[str]:
	store = SQLiteStore(db)
	try:
		return stored_ids(store)
	finally:
		store.close()


def crash_between_commit_and_flag(dovecot, store, acct) -> None:
	"""As if the last pull had died after its commits and before its flags."""
	with dovecot.session(USER) as client:
		client.select_folder("INBOX")
		client.remove_flags(client.search(["ALL"]), ["\\Seen"])
	cursor = store.get_cursor(acct.name, "INBOX")
	store.set_cursor(acct.name, "INBOX", dataclasses.replace(cursor, seen_uid=0))


@pytest.mark.parametrize("change", ["doveadm", "renumber"])
def test_stored_mail_left_unseen_by_a_crash_is_flagged_after_a_uidvalidity_change(fresh, store, change):
	raws = [make_mail() for _ in range(6)]
	fresh.append_many(USER, raws)
	acct = account(fresh, email_sync_option="UNSEEN")
	assert pull_account(acct, store).stored == 6
	crash_between_commit_and_flag(fresh, store, acct)
	getattr(fresh, "change_uidvalidity" if change == "doveadm" else "renumber")(USER, "INBOX")
	later = make_mail(subject="arrived after the change")
	fresh.append(USER, later)

	report = pull_account(acct, store)
	assert (report.fetched, report.stored, report.error) == (1, 1, None)
	assert sorted(stored_ids(store)) == sorted(message_id_of(r) for r in [*raws, later])
	assert all("\\Seen" in flags for flags in fresh.flags(USER).values())


def test_a_duplicate_left_unseen_by_a_crash_is_flagged(fresh, store):
	"""A duplicate commits only the cursor, so the next pull knows it by its Message-ID."""
	raw = make_mail()
	fresh.append_many(USER, [raw, make_mail(), raw])
	acct = account(fresh, email_sync_option="UNSEEN")
	report = pull_account(acct, store)
	assert (report.stored, report.duplicates) == (2, 1)
	crash_between_commit_and_flag(fresh, store, acct)
	assert pull_account(acct, store).fetched == 0
	assert all("\\Seen" in flags for flags in fresh.flags(USER).values())


def test_dry_run_after_a_uidvalidity_change_flags_nothing(fresh, store):
	fresh.append_many(USER, [make_mail() for _ in range(3)])
	acct = account(fresh, email_sync_option="UNSEEN")
	pull_account(acct, store)
	crash_between_commit_and_flag(fresh, store, acct)
	fresh.change_uidvalidity(USER, "INBOX")
	assert pull_account(acct, store, dry_run=True).fetched == 0
	assert not any("\\Seen" in flags for flags in fresh.flags(USER).values())


# -- the crash loop ---------------------------------------------------------------------------

MESSAGES = 300
KILLS = 8


@pytest.mark.parametrize("mode", ["UNSEEN", "ALL"])
def test_kills_at_random_moments_and_uidvalidity_changes_lose_and_duplicate_nothing(fresh, tmp_path, mode):
	"""Kill the pull again and again, giving the folder a new UIDVALIDITY (kept UIDs, or new ones)
	between many of the runs, with new mail arriving now and then. After every kill, only stored
	mail is \\Seen (UNSEEN mode) or none (ALL mode); at the end every message is stored exactly once
	and, in UNSEEN mode, \\Seen."""
	rng = random.Random(f"uidvalidity-crash-{mode}")
	raws = [make_mail(body="x" * rng.randint(100, 8000)) for _ in range(MESSAGES)]
	fresh.append_many(USER, raws)
	config = write_config(tmp_path / "c.toml", fresh, email_sync_option=mode, initial_sync_count=0)
	db = tmp_path / "db.sqlite3"
	cmd = [sys.executable, "-m", "email_account_app.cli", "--config", str(config), "pull", "--db", str(db)]
	env = {**os.environ, "EMAIL_ACCOUNT_APP_PARSE_PROCESS": "0"}
	kills = changes = 0

	def check_flags() -> None:
		seen, _every = seen_ids(fresh)
		stored = set(stored_in(db))
		if mode == "UNSEEN":
			assert seen <= stored, f"{len(seen - stored)} message(s) flagged \\Seen before they were stored"
		else:
			assert not seen, "a pull in ALL mode flagged mail \\Seen"

	def committed() -> int:
		if not db.exists():
			return 0
		try:
			with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
				return conn.execute("SELECT COUNT(*) FROM communications").fetchone()[0]
		except sqlite3.OperationalError:  # not created yet
			return 0

	def run(kill: str | None) -> bool:
		"""Run a pull; True if it completed, False if it was killed first: after a random time
		(``kill="timer"``), or at a random moment after its first commit (``kill="commit"``: what a
		loaded machine would otherwise make rare)."""
		before = committed()
		proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
		try:
			if kill == "timer":
				_out, errors = proc.communicate(timeout=rng.uniform(0.4, 1.5))
			elif kill == "commit":
				deadline = time.monotonic() + 60
				while proc.poll() is None and committed() == before and time.monotonic() < deadline:
					time.sleep(0.02)
				_out, errors = proc.communicate(timeout=rng.uniform(0.0, 0.5))
			else:
				_out, errors = proc.communicate()
		except subprocess.TimeoutExpired:
			proc.send_signal(signal.SIGKILL)
			proc.communicate()
			return False
		assert proc.returncode == 0, errors
		return True

	def arrive(count: int) -> None:
		new = [make_mail() for _ in range(count)]
		fresh.append_many(USER, new)
		raws.extend(new)

	for _attempt in range(60):
		if kills >= KILLS:
			break
		if run(rng.choice(["timer", "commit"])):
			arrive(100)  # finished before the kill: more mail for the next runs to be killed in
		else:
			kills += 1
			if db.exists():
				check_flags()
			if rng.random() < 0.3:
				arrive(rng.randint(1, 5))
		if rng.random() < 0.6:
			getattr(fresh, rng.choice(["change_uidvalidity", "renumber"]))(USER, "INBOX")
			changes += 1
	assert kills >= KILLS and changes >= 1
	assert run(None)
	check_flags()
	# one more change after a complete pull: nothing is fetched twice
	fresh.renumber(USER, "INBOX")
	assert subprocess.run(cmd, capture_output=True, env=env).returncode == 0

	ids = stored_in(db)
	assert len(ids) == len(set(ids)), "a message was stored twice"
	assert set(ids) == {message_id_of(r) for r in raws}, "a message was lost"
	seen, every = seen_ids(fresh)
	assert every == set(ids)
	assert seen == (every if mode == "UNSEEN" else set())
