"""`email-account-app login`/`logout` and OAuth accounts in pull, send, flush and check, run as a
user runs them, against the test OAuth server, a Dovecot and an SMTP server that take only its
tokens."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import urllib.request

import pytest

from email_account_app.sqlite_store import SQLiteStore

from .factory import make_mail, message_id_of

USER = "alice@example.com"


def flat(text: str) -> str:
	"""Rich's boxes and line wrapping undone: the words, one space apart."""
	return " ".join(text.replace("│", " ").split())


@pytest.fixture
def setup(oauth_dovecot, smtp_oauth, oauth_server, tmp_path):
	"""A config for alice: IMAP on the OAuth Dovecot, SMTP on the OAuth aiosmtpd, custom provider."""
	oauth_dovecot.reset(USER)
	bundle = tmp_path / "cas.pem"
	bundle.write_text(open(oauth_dovecot.ca_file).read() + open(smtp_oauth.ca_file).read())
	data = {
		**oauth_dovecot.account(USER),
		**{k: v for k, v in smtp_oauth.account(USER).items() if k.startswith(("smtp", "use_", "enable"))},
		**oauth_server.account(),
		"ca_file": str(bundle),
		"email_sync_option": "ALL",
	}
	data.pop("password")
	data.pop("no_smtp_authentication", None)
	config = tmp_path / "c.toml"
	config.write_text("[accounts.alice]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in data.items()))
	return Setup(oauth_dovecot, smtp_oauth, oauth_server, tmp_path, config)


class Setup:
	def __init__(self, dovecot, smtp, oauth, tmp_path, config):
		self.dovecot, self.smtp, self.oauth, self.dir, self.config = dovecot, smtp, oauth, tmp_path, config
		self.db = tmp_path / "store.sqlite3"
		self.outputs: list[str] = []

	def argv(self, *args: str, debug: bool = False) -> list[str]:
		return [
			sys.executable,
			"-m",
			"email_account_app.cli",
			"--config",
			str(self.config),
			*(["--debug"] if debug else []),
			*args,
		]

	def run(self, *args: str, db: bool = True, debug: bool = False, input: str | None = None):
		argv = self.argv(*args, *(["--db", str(self.db)] if db else []), debug=debug)
		result = subprocess.run(argv, capture_output=True, text=True, timeout=120, input=input)
		self.outputs += [result.stdout, result.stderr]
		return result

	def assert_no_token_leaked(self) -> None:
		"""No token in any output; in the files only the refresh token kept, in the store file."""
		kept = SQLiteStore(self.db).rows("SELECT refresh_token FROM oauth_tokens")
		kept = {r["refresh_token"] for r in kept}
		tokens = self.oauth.issued_tokens()
		assert tokens
		for text in self.outputs:
			assert "Traceback" not in text
			for token in tokens:
				assert token not in text
		for path in self.dir.rglob("*"):
			if not path.is_file():
				continue
			content = path.read_bytes()
			for token in tokens - (kept if path.name.startswith(self.db.name) else set()):
				assert token.encode() not in content, path.name


def test_login_by_device_flow_then_pull_send_flush_and_check(setup):
	login = setup.run("login", "alice")
	assert login.returncode == 0, login.stderr
	assert f"open {setup.oauth.url}/device and enter the code" in login.stderr
	assert "signed in" in login.stdout
	assert stat.S_IMODE(os.stat(setup.db).st_mode) == 0o600
	assert "refresh_token" not in setup.config.read_text()

	raws = [make_mail() for _ in range(3)]
	for raw in raws:
		setup.dovecot.append(USER, raw)
	pulled = setup.run("pull", "--json", debug=True)
	assert pulled.returncode == 0, pulled.stderr
	assert json.loads(pulled.stdout)["accounts"][0]["stored"] == 3

	sent = setup.run(
		"send",
		"-a",
		"alice",
		"--to",
		"bob@example.com",
		"-s",
		"Hello",
		"--body-file",
		"-",
		input="Hi Bob\n",
		debug=True,
	)
	assert sent.returncode == 0, sent.stdout + sent.stderr
	(delivery,) = setup.smtp.deliveries
	assert delivery.login == USER and delivery.rcpt_tos == ("bob@example.com",)
	flushed = setup.run("flush")
	assert flushed.returncode == 0 and "nothing to send" in flushed.stdout

	check = setup.run("check", "alice")
	assert check.returncode == 0, check.stdout
	assert "access token valid until" in flat(check.stdout) and "works" in check.stdout

	ids = [r["message_id"] for r in SQLiteStore(setup.db).rows("SELECT message_id FROM communications")]
	received = sorted(message_id_of(r) for r in raws)
	assert sorted(i for i in ids if i in received) == received  # (and the one sent)
	setup.assert_no_token_leaked()


@pytest.fixture
def browser_setup(setup):
	setup.config.write_text(
		setup.config.read_text().replace('oauth_flow = "device"', 'oauth_flow = "browser"')
	)
	return setup


def test_login_by_browser_flow(browser_setup):
	"""The test plays the browser: it follows the authorization URL, which redirects to the loopback."""
	setup = browser_setup
	proc = subprocess.Popen(
		setup.argv("login", "alice", "--db", str(setup.db), "--no-browser"),
		stdout=subprocess.PIPE,
		stderr=subprocess.PIPE,
		text=True,
	)
	try:
		url = None
		for line in proc.stderr:
			setup.outputs.append(line)
			if line.startswith("http"):
				url = line.strip()
				break
		assert url and "code_challenge_method=S256" in url
		with urllib.request.urlopen(url, timeout=30) as response:
			assert b"Signed in" in response.read()
		out, err = proc.communicate(timeout=60)
	finally:
		if proc.poll() is None:
			proc.kill()
	setup.outputs += [out, err]
	assert proc.returncode == 0, err
	assert "signed in" in out
	setup.dovecot.append(USER, make_mail())
	pulled = setup.run("pull", "--json")
	assert pulled.returncode == 0 and json.loads(pulled.stdout)["accounts"][0]["stored"] == 1
	setup.assert_no_token_leaked()


def test_sigkill_right_after_a_rotating_refresh_loses_nothing(setup):
	"""The pull is killed while Dovecot checks the first access token of a rotated refresh token
	(the provider has retired the old refresh token by then): the next run still signs in."""
	assert setup.run("login", "alice").returncode == 0
	raws = [make_mail() for _ in range(4)]
	for raw in raws:
		setup.dovecot.append(USER, raw)
	first = SQLiteStore(setup.db).rows("SELECT refresh_token FROM oauth_tokens")[0]["refresh_token"]
	procs: list[subprocess.Popen] = []
	killed = threading.Event()

	def kill(user: str) -> None:
		if procs and not killed.is_set():
			killed.set()
			os.kill(procs[0].pid, signal.SIGKILL)

	setup.oauth.on_introspect = kill
	procs.append(
		subprocess.Popen(
			setup.argv("pull", "--db", str(setup.db)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
		)
	)
	assert procs[0].wait(timeout=60) == -signal.SIGKILL
	setup.oauth.on_introspect = None
	assert first not in setup.oauth.live_refresh_tokens()  # the provider retired it

	pulled = setup.run("pull", "--json")
	assert pulled.returncode == 0, pulled.stderr
	ids = {r["message_id"] for r in SQLiteStore(setup.db).rows("SELECT message_id FROM communications")}
	assert ids == {message_id_of(r) for r in raws}
	setup.assert_no_token_leaked()


def test_a_revoked_grant_says_sign_in_again(setup):
	assert setup.run("login", "alice").returncode == 0
	setup.oauth.revoke_user(USER)
	for args in (
		("pull",),
		("send", "-a", "alice", "--to", "bob@example.com", "-s", "x", "--body-file", "-"),
	):
		result = setup.run(*args, input="x")
		assert result.returncode == 1, result.stdout + result.stderr
		words = flat(result.stdout + result.stderr)
		assert "Sign-in needed" in words and "email-account-app login alice" in words
	check = setup.run("check", "alice")
	assert check.returncode == 1 and "Sign-in needed" in flat(check.stdout)
	assert not setup.smtp.deliveries
	setup.assert_no_token_leaked()


def test_logout_forgets_the_sign_in(setup):
	assert setup.run("login", "alice").returncode == 0
	out = setup.run("logout", "alice")
	assert out.returncode == 0 and "signed out" in out.stdout
	assert SQLiteStore(setup.db).rows("SELECT * FROM oauth_tokens") == []
	again = setup.run("logout", "alice")
	assert again.returncode == 0 and "was not signed in" in again.stdout
	pulled = setup.run("pull", "--json")
	assert pulled.returncode == 1
	assert "has not signed in" in json.loads(pulled.stdout)["accounts"][0]["error"]


def test_declined_sign_in_and_bad_settings_end_with_a_plain_message(setup):
	setup.oauth.deny = True
	declined = setup.run("login", "alice")
	assert declined.returncode == 2 and "declined" in declined.stderr and "Traceback" not in declined.stderr
	text = setup.config.read_text().replace('oauth_provider = "custom"', 'oauth_provider = "yahoo"')
	setup.config.write_text(text)
	bad = setup.run("login", "alice")
	assert bad.returncode == 2 and 'oauth_provider must be "microsoft", "google" or "custom"' in flat(
		bad.stderr
	)
