"""What the command prints: text as it is (never read as markup), one line per message on stderr
(never wrapped, never a traceback unless --debug), run as a user runs it."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from email_account_app.sqlite_store import SQLiteStore

from .factory import make_mail

ROOT = Path(__file__).resolve().parents[1]
USER = "bob@example.com"


def run_cli(*args, config=None, columns=None, env=None, timeout=120):
	cmd = [sys.executable, "-m", "email_account_app.cli"]
	if config:
		cmd += ["--config", str(config)]
	environment = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
	environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
	if columns:
		environment["COLUMNS"] = str(columns)
	environment.update(env or {})
	return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, env=environment)


def write_config(path, account: dict, *, name="bob", extra: str = ""):
	lines = [f"[accounts.{name}]"]
	lines += [f"{k} = {json.dumps(v)}" for k, v in account.items() if v is not None]
	path.write_text(extra + "\n".join(lines) + "\n")
	return path


@pytest.fixture
def fresh(dovecot):
	dovecot.reset(USER)
	return dovecot


def stderr_lines(result) -> list[str]:
	return [line for line in result.stderr.splitlines() if line.strip()]


# -- no markup ------------------------------------------------------------------------------------


def test_an_error_naming_a_table_keeps_its_brackets(tmp_path):
	"""The engine's "secret_env in the [site] table" reaches the user whole."""
	config = write_config(
		tmp_path / "c.toml",
		{
			"email_id": "support@example.com",
			"enable_outgoing": True,
			"smtp_server": "127.0.0.1",
			"smtp_port": 1,
			"use_tls": False,
			"no_smtp_authentication": True,
			"send_unsubscribe_message": True,
		},
	)
	result = run_cli(
		"send", "-a", "bob", "--to", "a@client.test", "--subject", "x", "--db", str(tmp_path / "d.sqlite3"),
		config=config,
	)  # fmt: skip
	assert result.returncode == 2 and "Traceback" not in result.stderr
	(line,) = stderr_lines(result)
	assert "secret_env in the [site] table" in line


def test_bracketed_words_in_config_errors_are_kept(tmp_path):
	config = write_config(
		tmp_path / "c.toml", {"email_id": "a@example.com", "folders": ["[bold]x[/bold]", "[bold]x[/bold]"]}
	)
	result = run_cli("check", config=config)
	assert result.returncode == 2
	(line,) = stderr_lines(result)
	assert "[accounts.bob]" in line and "'[bold]x[/bold]' is listed twice" in line


def test_subjects_and_folder_names_print_as_they_are(fresh, tmp_path):
	subject = "[urgent] [b]help[/b] with [site] and [red]this[/]"
	fresh.append(USER, make_mail(subject=subject, to=USER))
	fresh.create_folder(USER, "[work]")
	config = write_config(tmp_path / "c.toml", fresh.account(USER, email_sync_option="ALL"))
	dry = run_cli("pull", "--dry-run", "--db", str(tmp_path / "db.sqlite3"), config=config, columns=250)
	assert dry.returncode == 0, dry.stderr
	assert subject in dry.stdout
	check = run_cli("check", config=config, columns=250)
	assert check.returncode == 0, check.stdout + check.stderr
	assert "[work]" in check.stdout


# -- one line, not wrapped ------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [None, 40])
def test_long_errors_stay_on_one_line_when_stderr_is_not_a_terminal(tmp_path, columns):
	long_name = "x" * 120
	config = write_config(
		tmp_path / "c.toml", {"email_id": "a@example.com", "folders": "INBOX"}, name=long_name
	)
	result = run_cli("check", config=config, columns=columns)
	assert result.returncode == 2
	(line,) = stderr_lines(result)
	assert len(line) > 200 and long_name in line and line.endswith("not 'INBOX'")


# -- failures: one line, tracebacks only with --debug ---------------------------------------------


def _refusing_store(path: Path, table: str, when: str, message: str) -> Path:
	"""A store whose ``table`` refuses some inserts (an SQLite trigger): a real failure of the store."""
	SQLiteStore(path).close()
	db = sqlite3.connect(path)
	db.execute(
		f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} WHEN {when} "
		f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
	)
	db.commit()
	db.close()
	return path


def test_a_failed_message_is_one_line_without_debug_and_a_traceback_with_it(fresh, tmp_path):
	fresh.append(USER, make_mail(subject="fine", to=USER))
	fresh.append(USER, make_mail(subject="boom here", to=USER))
	config = write_config(tmp_path / "c.toml", fresh.account(USER, email_sync_option="ALL"))

	db = _refusing_store(
		tmp_path / "db.sqlite3", "communications", "NEW.subject LIKE '%boom%'", "no room here"
	)
	result = run_cli("pull", "--db", str(db), config=config, columns=250)
	assert "Traceback" not in result.stderr
	(line,) = stderr_lines(result)
	assert "failed" in line and "no room here" in line and "IntegrityError" in line
	assert "1 message(s) failed" in result.stdout

	fresh.reset(USER)
	fresh.append(USER, make_mail(subject="boom again", to=USER))
	db = _refusing_store(
		tmp_path / "db2.sqlite3", "communications", "NEW.subject LIKE '%boom%'", "no room here"
	)
	debug = run_cli("--debug", "pull", "--db", str(db), config=config, columns=250)
	assert "Traceback" in debug.stderr and "no room here" in debug.stderr


def test_an_unexpected_error_is_one_line_and_exit_1(fresh, tmp_path):
	fresh.append(USER, make_mail(subject="x", to=USER))
	config = write_config(tmp_path / "c.toml", fresh.account(USER, email_sync_option="ALL"))
	db = _refusing_store(tmp_path / "db.sqlite3", "cursors", "1", "the disk is on fire")
	result = run_cli("pull", "--db", str(db), config=config)
	assert result.returncode == 1 and "Traceback" not in result.stderr
	line = stderr_lines(result)[-1]
	assert line.startswith("Error: unexpected error:") and "the disk is on fire" in line
	assert line.endswith("run again with --debug for details")
	assert all("Traceback" not in x for x in stderr_lines(result))

	db = _refusing_store(tmp_path / "db2.sqlite3", "cursors", "1", "the disk is on fire")
	debug = run_cli("--debug", "pull", "--db", str(db), config=config)
	assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_the_parsing_process_fails_in_one_line():
	"""The child that parses for a long pull: nonsense on its input ends it with one line on
	stderr (the pull then parses by itself); --tracebacks (a pull at DEBUG) shows the traceback."""
	frame = b"not a pickle"
	request = struct.pack("!Q", len(frame)) + frame
	for flags, traceback in (([], False), (["--tracebacks"], True)):
		child = subprocess.run(
			[sys.executable, "-m", "email_account_app.engine.parse_worker", *flags],
			input=request,
			capture_output=True,
			timeout=60,
			env={**os.environ, "PYTHONPATH": str(ROOT)},
		)
		stderr = child.stderr.decode()
		assert child.returncode == 1 and ("Traceback" in stderr) == traceback
		if not traceback:
			(line,) = stderr.strip().splitlines()
			assert "the parsing process stopped" in line and "UnpicklingError" in line
	# a good request is still answered
	good = pickle.dumps((None, None, make_mail(subject="ok")))
	child = subprocess.run(
		[sys.executable, "-m", "email_account_app.engine.parse_worker"],
		input=struct.pack("!Q", len(good)) + good,
		capture_output=True,
		timeout=60,
		env={**os.environ, "PYTHONPATH": str(ROOT)},
	)
	assert child.returncode == 0 and child.stderr == b"" and len(child.stdout) > 8


def test_a_thread_that_fails_logs_one_line():
	"""An exception ending a thread (the parse worker's reader and writer, say) is a log record."""
	script = (
		"import sys, threading\n"
		"from email_account_app.cli.group import setup_logging\n"
		"setup_logging('-t' in sys.argv)\n"
		"t = threading.Thread(target=lambda: 1 / 0, name='reader')\n"
		"t.start(); t.join()\n"
	)
	for flags, traceback in (([], False), (["-t"], True)):
		child = subprocess.run(
			[sys.executable, "-c", script, *flags],
			capture_output=True,
			text=True,
			timeout=60,
			env={**os.environ, "PYTHONPATH": str(ROOT)},
		)
		assert ("Traceback" in child.stderr) == traceback
		if not traceback:
			(line,) = child.stderr.strip().splitlines()
			assert "thread reader stopped: ZeroDivisionError: division by zero" in line
