"""Secrets echoed by a server: no form of a password in errors, tracebacks, logs, output or the store.

The servers here (tests/echo_servers.py) refuse every login and echo the credentials back in every
form they came in: IMAP-quoted, decoded, SASL base64 (whole, split over reply lines). The passwords
carry quotes, backslashes, non-ASCII letters and spaces, so each form differs from the others.
``leaks`` looks for the forms on its own (it does not ask the scrubber), and also decodes every
run of base64 it finds (joined across line breaks, at every alignment).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import traceback
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_account_app.engine import secrets
from email_account_app.engine.compose import OutgoingRequest, SiteSettings
from email_account_app.engine.errors import AuthenticationFailed, EmailSyncError
from email_account_app.engine.outbox import flush, queue_mail
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.transports.imap import ImapMailbox
from email_account_app.engine.transports.pop3 import Pop3Mailbox
from email_account_app.engine.transports.smtp import SmtpSender
from email_account_app.sqlite_store import SQLiteStore

from .echo_servers import HOST, echo_server

LOGIN = "support@example.com"
PASSWORDS = [
	'pa"ss\\word',  # IMAP quoting escapes both
	'it\'s "quoted" \\ and \\\\ twice',
	"pässwörd mit Leerzeichen",  # non-ASCII: IMAP AUTHENTICATE PLAIN, SMTP AUTH PLAIN in UTF-8
	"sp ace+%2F/=&?#;",
	"\\\"\\'",
]


# -- an independent look for the forms of a password ---------------------------------------------

_RUN = re.compile(r"[A-Za-z0-9+/_-]{4,}={0,2}")
_BREAKS = re.compile(r"\r\n|\n|\r|\\r\\n|\\n|\\r")


def _forms(password: str, login: str = LOGIN) -> set[str]:
	utf8 = password.encode()
	quoted = password.replace("\\", "\\\\").replace('"', '\\"')
	found = {
		password,
		quoted,
		repr(password)[1:-1],
		repr(utf8)[2:-1],
		repr(quoted)[1:-1],
		repr(quoted.encode())[2:-1],
		json.dumps(password)[1:-1],
		json.dumps(password, ensure_ascii=False)[1:-1],
		json.dumps(quoted)[1:-1],
		json.dumps(repr(utf8)[2:-1])[1:-1],
		quote(password, safe=""),
		quote_plus(password),
		utf8.decode("latin-1"),
	}
	for data in (utf8, b"\0" + login.encode() + b"\0" + utf8):
		encoded = base64.b64encode(data).decode()
		found |= {encoded, encoded.rstrip("=")}
	return found


def leaks(text: str, password: str, login: str = LOGIN) -> list[str]:
	"""The forms of ``password`` in ``text``: literal ones, and base64 runs that decode to it."""
	text = text.replace(secrets.MASK, "\0")
	found = [form for form in _forms(password, login) if form in text]
	needle = password.encode()
	joined = _BREAKS.sub("", text)
	for run in _RUN.findall(joined):
		data = run.rstrip("=").replace("-", "+").replace("_", "/")
		for offset in range(4):
			chunk = data[offset:]
			chunk = chunk[: len(chunk) - 1] if len(chunk) % 4 == 1 else chunk
			try:
				if needle in base64.b64decode(chunk + "=" * (-len(chunk) % 4)):
					found.append(f"base64 {run}")
			except (binascii.Error, ValueError):
				pass
	return found


def incoming(server, password: str, *, imap: bool):
	return account_from_mapping(
		{
			"email_id": LOGIN,
			"password": password,
			"enable_incoming": True,
			"use_imap": imap,
			"email_server": HOST,
			"incoming_port": server.port,
			"use_ssl": False,
			"timeout": 10,
		},
		name="support",
		use_presets=False,
	)


def outgoing(server, password: str, **extra):
	return account_from_mapping(
		{
			"email_id": LOGIN,
			"password": password,
			"enable_outgoing": True,
			"smtp_server": HOST,
			"smtp_port": server.port,
			"use_tls": False,
			"timeout": 10,
			**extra,
		},
		name="support",
		use_presets=False,
	)


def everything_said(error: BaseException, caplog) -> str:
	return "\n".join(
		[
			str(error),
			"".join(traceback.format_exception(error)),
			caplog.text,
			*(record.getMessage() for record in caplog.records),
		]
	)


# -- the scrubber, over every form ---------------------------------------------------------------


def test_leaks_sees_what_a_server_echoes_unscrubbed():
	"""The check itself: each echoed form is found when nothing scrubs it."""
	password = PASSWORDS[0]
	sasl = base64.b64encode(b"\0" + LOGIN.encode() + b"\0" + password.encode()).decode()
	for text in (
		f'NO LOGIN "{LOGIN}" "pa\\"ss\\\\word"',
		repr(password.encode()),
		f"535-5.7.8 {sasl[:9]}\r\n{sasl[9:]}",
		f"{sasl[:13]}\\r\\n{sasl[13:]}",
		quote(password),
	):
		assert leaks(text, password), text


_FORMS = {
	"literal": lambda p: p,
	"imap quoted": lambda p: p.replace("\\", "\\\\").replace('"', '\\"'),
	"repr of bytes": lambda p: repr(p.encode()),
	"repr of quoted bytes": lambda p: repr(p.replace("\\", "\\\\").replace('"', '\\"').encode()),
	"json": json.dumps,
	"url": lambda p: quote(p, safe=""),
	"url plus": quote_plus,
	"base64": lambda p: base64.b64encode(p.encode()).decode(),
	"base64 urlsafe unpadded": lambda p: base64.urlsafe_b64encode(p.encode()).decode().rstrip("="),
	"auth plain": lambda p: base64.b64encode(b"\0" + LOGIN.encode() + b"\0" + p.encode()).decode(),
	"auth plain with authzid": lambda p: base64.b64encode(
		LOGIN.encode() + b"\0" + LOGIN.encode() + b"\0" + p.encode()
	).decode(),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
	password=st.text(st.characters(blacklist_categories=("Cs",)), min_size=3, max_size=30),
	form=st.sampled_from(sorted(_FORMS)),
	split=st.integers(min_value=0, max_value=200),
	breaker=st.sampled_from(["", "\r\n", "\n", "\\r\\n", "\r\n "]),
	before=st.text(max_size=20),
	after=st.text(max_size=20),
)
def test_scrub_blots_out_every_form(password, form, split, breaker, before, after):
	secrets.forget_all()
	secrets.remember(password, LOGIN)
	shown = _FORMS[form](password)
	if form.startswith(("base64", "auth")) and breaker:
		split %= len(shown)
		shown = shown[:split] + breaker + shown[split:]  # base64 split over lines
	text = f"{before} {shown} {after}"
	assert not leaks(secrets.scrub(text), password), text


def test_scrub_leaves_other_words_alone():
	secrets.remember("hunter2-x", LOGIN)
	text = "imap.example.com:993 refused the login of 'support@example.com': [AUTHENTICATIONFAILED] no"
	assert secrets.scrub(text) == text


def test_an_engine_error_never_carries_a_remembered_secret():
	secrets.remember('s3"cr\\et', LOGIN)
	error = AuthenticationFailed('refused "s3\\"cr\\\\et"', hint="czNcImNyXGV0 was sent")
	assert not leaks(str(error), 's3"cr\\et')
	assert "********" in error.message


# -- servers that echo the credentials -------------------------------------------------------------


@pytest.mark.parametrize("password", PASSWORDS)
def test_imap_echo_reaches_no_error_traceback_or_protocol_log(password, caplog):
	caplog.set_level(logging.DEBUG)
	with echo_server("imap") as server:
		with pytest.raises(AuthenticationFailed) as info:
			ImapMailbox(incoming(server, password, imap=True)).open()
	assert server.logins and leaks(repr(server.logins), password)  # the server got it, and echoed it
	assert "imapclient.imaplib" in {r.name for r in caplog.records}  # the protocol log was on
	assert not leaks(everything_said(info.value, caplog), password)


@pytest.mark.parametrize("password", PASSWORDS)
def test_pop3_echo_reaches_no_error_traceback_or_log(password, caplog):
	caplog.set_level(logging.DEBUG)
	with echo_server("pop3") as server:
		with pytest.raises(AuthenticationFailed) as info:
			Pop3Mailbox(incoming(server, password, imap=False)).open()
	assert server.logins and leaks(repr(server.logins), password)
	assert not leaks(everything_said(info.value, caplog), password)


@pytest.mark.parametrize("password", PASSWORDS)
def test_smtp_echo_of_auth_plain_and_login_reaches_no_error_or_protocol_log(password, caplog):
	caplog.set_level(logging.DEBUG)
	with echo_server("smtp") as server:
		with pytest.raises(AuthenticationFailed) as info:
			SmtpSender(outgoing(server, password)).connect()
	assert server.logins and leaks(repr(server.logins), password)
	protocol = [r.getMessage() for r in caplog.records if r.name.endswith("smtp.protocol")]
	assert any("AUTH" in line for line in protocol)  # smtplib's trace was logged, AUTH lines too
	assert not leaks(everything_said(info.value, caplog), password)


class _FixedToken:
	"""A token source that always gives the same access token (the server refuses it anyway)."""

	def __init__(self, token: str):
		self.token = token
		self.refusals = 0

	def access_token(self) -> str:
		return self.token

	def refused(self, token: str) -> None:
		self.refusals += 1


def test_smtp_echo_of_an_oauth_token_reaches_no_error_or_protocol_log(caplog):
	caplog.set_level(logging.DEBUG)
	token = "ya29.a0Af-Token_with.dots-and_underscores0123456789"
	with echo_server("smtp") as server:
		account = outgoing(
			server,
			"",
			auth_method="OAuth",
			oauth_provider="custom",
			oauth_client_id="client",
			oauth_token_url="https://login.example.com/token",
			oauth_authorization_url="https://login.example.com/authorize",
			oauth_device_authorization_url="https://login.example.com/device",
		)
		source = _FixedToken(token)
		account = dataclasses.replace(account, token_source=source)
		with pytest.raises(AuthenticationFailed) as info:
			SmtpSender(account).connect()
	assert server.logins and source.refusals == 2 and leaks(repr(server.logins), token)
	assert not leaks(everything_said(info.value, caplog), token)


def _store_text(path) -> str:
	"""Every value of every column of every table of the SQLite file, as text."""
	out = []
	with sqlite3.connect(path) as db:
		tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
		for table in tables:
			for row in db.execute(f'SELECT * FROM "{table}"'):
				for value in row:
					out.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
	return "\n".join(out)


@pytest.mark.parametrize("password", PASSWORDS[:3])
def test_a_refused_send_stores_and_reports_no_form_of_the_password(password, tmp_path, caplog):
	caplog.set_level(logging.DEBUG)
	path = tmp_path / "mail.sqlite3"
	store = SQLiteStore(path)
	try:
		with echo_server("smtp") as server:
			account = outgoing(server, password)
			mail = queue_mail(
				store, account, SiteSettings(), OutgoingRequest(to=("customer@client.test",), subject="Hi")
			)
			report = flush(store, [account])
		assert report.errors and not report.ok
		stored = store.get_outgoing(mail.name)
	finally:
		store.close()
	said = json.dumps(report.as_dict()) + repr(stored) + caplog.text
	assert not leaks(said, password)
	assert "refused the login" in _store_text(path)  # the error is stored, in plain words
	assert not leaks(_store_text(path), password)


# -- the command, with --debug -------------------------------------------------------------------


def _run(*args, config, env, stdin=""):
	cmd = [sys.executable, "-m", "email_account_app.cli", "--config", str(config), *args]
	return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, input=stdin)


@pytest.mark.parametrize("password", [PASSWORDS[1], PASSWORDS[2]])
def test_the_cli_with_debug_prints_and_stores_no_form_of_the_password(password, tmp_path):
	db = tmp_path / "mail.sqlite3"
	with echo_server("imap") as imap, echo_server("pop3") as pop3, echo_server("smtp") as smtp:
		config = tmp_path / "c.toml"
		common = 'password_env = "ECHO_PASSWORD"\ntimeout = 10\n'  # one account per address
		config.write_text(
			f'[store]\npath = "{db.name}"\n'
			f'[accounts.imap]\nemail_id = "imap@example.com"\n{common}enable_incoming = true\n'
			f'email_server = "{HOST}"\nincoming_port = {imap.port}\nuse_ssl = false\n'
			f'[accounts.pop]\nemail_id = "pop@example.com"\n{common}enable_incoming = true\n'
			f'use_imap = false\nemail_server = "{HOST}"\nincoming_port = {pop3.port}\nuse_ssl = false\n'
			f'[accounts.out]\nemail_id = "out@example.com"\n{common}enable_outgoing = true\n'
			f'default_outgoing = true\nsmtp_server = "{HOST}"\nsmtp_port = {smtp.port}\nuse_tls = false\n'
		)
		env = {**os.environ, "ECHO_PASSWORD": password}
		runs = [
			_run("--debug", "pull", config=config, env=env),
			_run("--debug", "pull", "--json", config=config, env=env),
			_run("--debug", "check", "imap", config=config, env=env),
			_run("--debug", "send", "--to", "a@client.test", "-s", "Hi", config=config, env=env, stdin="x"),
			_run("--debug", "send", "--json", "--to", "a@client.test", "-s", "Hi", config=config, env=env),
		]
		assert imap.logins and pop3.logins and smtp.logins
	for result in runs:
		assert result.returncode == 1, result.stderr[-2000:]
		assert "DEBUG" in result.stderr  # the protocol logs were on
		assert not leaks(result.stdout + result.stderr, password), (result.args, result.stderr[-3000:])
	assert "refused the login" in _store_text(db)
	assert not leaks(_store_text(db), password)


def test_every_engine_error_class_scrubs():
	secrets.remember("top-secret-pw", LOGIN)
	for cls in EmailSyncError.__subclasses__():
		try:
			error = cls("said top-secret-pw")
		except TypeError:
			continue
		assert "top-secret-pw" not in str(error)
