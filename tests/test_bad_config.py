"""Bad configuration: every mistake ends with exit 2 and one line saying what and where, never a
traceback, never accepted.

The table runs each bad config file through the command as a user runs it (a subprocess); the
hypothesis tests throw random values at every key, for the engine (``account_from_mapping``,
``domain_from_mapping``: nothing but ConfigError) and for the TOML loader (``load_config``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_account_app.cli.config import load_config
from email_account_app.engine.errors import ConfigError
from email_account_app.engine.oauth import KEYS as OAUTH_KEYS
from email_account_app.engine.settings import (
	AccountSettings,
	DomainSettings,
	account_from_mapping,
	domain_from_mapping,
)

ROOT = Path(__file__).resolve().parents[1]
DROP = object()
BASE = {
	"email_id": "support@example.com",
	"password": "s3cret-pw",
	"enable_incoming": True,
	"email_server": "127.0.0.1",
	"incoming_port": 1,  # nothing listens: a config accepted by mistake fails fast, with exit 1
	"use_ssl": False,
	"timeout": 5,
}


def toml(value) -> str:
	"""``value`` as a TOML value (inline tables and arrays; inf and nan as TOML writes them)."""
	if isinstance(value, bool):
		return "true" if value else "false"
	if isinstance(value, int):
		return str(value)
	if isinstance(value, float):
		if math.isnan(value):
			return "nan"
		if math.isinf(value):
			return "inf" if value > 0 else "-inf"
		return repr(value)
	if isinstance(value, str):  # a basic string: quotes, backslashes and control characters escaped
		escaped = "".join(
			f"\\u{ord(ch):04x}" if ch < " " or ch == "\x7f" or ch in '"\\' else ch for ch in value
		)
		return f'"{escaped}"'
	if isinstance(value, list | tuple):
		return "[" + ", ".join(toml(v) for v in value) + "]"
	if isinstance(value, dict):
		return "{ " + ", ".join(f"{toml(k)} = {toml(v)}" for k, v in value.items()) + " }"
	raise TypeError(value)


def account(table="support", **overrides) -> str:
	"""A config file of one account: the base settings with ``overrides`` (DROP removes a key)."""
	data = {**BASE, **overrides}
	lines = [f"[accounts.{toml(table)}]"]
	lines += [f"{toml(k)} = {toml(v)}" for k, v in data.items() if v is not DROP]
	return "\n".join(lines) + "\n"


GOOD = account()

# id -> (config text, or a callable of tmp_path giving the --config path; words the line must have)
CASES = {
	# the issue's own examples
	"folders int": (account(folders=5), ["[accounts.support]", "folders"]),
	"folders str": (account(folders="INBOX"), ["folders", "list"]),
	"folders empty": (account(folders=[]), ["folders", "empty"]),
	"store int": ("store = 5\n" + GOOD, ["store", "table"]),
	"store path int": ("[store]\npath = 5\n" + GOOD, ["[store]", "path"]),
	"timeout inf": (account(timeout=math.inf), ["timeout", "inf"]),
	"condition list": (account(condition=[1]), ["condition", "text"]),
	"attachment_limit nan": (account(attachment_limit=math.nan), ["attachment_limit", "nan"]),
	"folder unknown key": (
		account(folders=[{"folder_name": "INBOX", "apend_to": "Issue"}]),
		["apend_to", "append_to"],
	),
	"store unknown key": ('[store]\npth = "x.sqlite3"\n' + GOOD, ["[store]", "pth", "'path'"]),
	"site unknown key": (
		'[site]\nsecret_env_name = "X"\n' + GOOD,
		["[site]", "secret_env_name", "secret_env"],
	),
	"top-level unknown key": ('sotre = { path = "x" }\n' + GOOD, ["sotre", "'store'"]),
	"account unknown key": (account(pasword="x"), ["pasword", "'password'"]),
	"account unknown key folder": (account(folder=["INBOX"]), ["'folder'", "'folders'"]),
	# folders
	"folder not a name": (account(folders=[5]), ["folder", "5"]),
	"folder without name": (account(folders=[{"append_to": "Issue"}]), ["folder_name"]),
	"folder empty name": (account(folders=[""]), ["folder_name"]),
	"folder name control": (account(folders=["IN\x00BOX"]), ["folder_name", "control"]),
	"folder listed twice": (account(folders=["INBOX", "Jobs", "inbox"]), ["INBOX", "twice"]),
	"folder condition int": (account(folders=[{"folder_name": "INBOX", "condition": 5}]), ["condition"]),
	"folder condition syntax": (
		account(folders=[{"folder_name": "INBOX", "condition": "doc.subject =="}]),
		["condition", "INBOX"],
	),
	"folder append_to list": (account(folders=[{"folder_name": "INBOX", "append_to": ["x"]}]), ["append_to"]),
	"folder table not a table": (account(folders={"INBOX": 5}), ["INBOX", "table"]),
	# numbers: type, finite, range
	"timeout nan": (account(timeout=math.nan), ["timeout"]),
	"timeout zero": (account(timeout=0), ["timeout", "out of range"]),
	"timeout tiny": (account(timeout=1e-300), ["timeout", "out of range"]),
	"timeout negative": (account(timeout=-5), ["timeout", "negative"]),
	"timeout huge": (account(timeout=1e12), ["timeout", "out of range"]),
	"timeout text": (account(timeout="30"), ["timeout", "without quotes"]),
	"timeout bool": (account(timeout=True), ["timeout", "True"]),
	"pull_timeout zero": (account(pull_timeout=0), ["pull_timeout"]),
	"pull_timeout inf": (account(pull_timeout=math.inf), ["pull_timeout"]),
	"pull_timeout text": (account(pull_timeout="1h"), ["pull_timeout"]),
	"attachment_limit negative": (account(attachment_limit=-1), ["attachment_limit", "negative"]),
	"attachment_limit huge": (account(attachment_limit=1e300), ["attachment_limit", "out of range"]),
	"attachment_limit -inf": (account(attachment_limit=-math.inf), ["attachment_limit"]),
	"port zero": (account(incoming_port=0), ["incoming_port", "out of range"]),
	"port too high": (account(incoming_port=70000), ["incoming_port", "out of range"]),
	"port negative": (account(incoming_port=-993), ["incoming_port", "negative"]),
	"port float": (account(incoming_port=993.5), ["incoming_port"]),
	"port whole float": (account(incoming_port=993.0), ["incoming_port", "whole number"]),
	"port text": (account(incoming_port="993"), ["incoming_port", "without quotes"]),
	"port bool": (account(incoming_port=True), ["incoming_port"]),
	"port 64-bit": (account(incoming_port=2**63 - 1), ["incoming_port", "out of range"]),
	"smtp port out of range": (
		account(enable_outgoing=True, smtp_server="127.0.0.1", smtp_port=65536),
		["smtp_port"],
	),
	"initial_sync_count negative": (account(initial_sync_count=-5), ["initial_sync_count", "negative"]),
	"initial_sync_count float": (account(initial_sync_count=1.5), ["initial_sync_count"]),
	"initial_sync_count huge": (account(initial_sync_count=10**15), ["initial_sync_count", "out of range"]),
	"unreplied_for_mins negative": (account(unreplied_for_mins=-1), ["unreplied_for_mins"]),
	# switches
	"bool as int": (account(enable_incoming=1), ["enable_incoming", "true or false"]),
	"bool as text": (account(use_ssl="yes"), ["use_ssl", "true or false"]),
	"bool as zero": (account(validate_ssl_certificate=0), ["validate_ssl_certificate"]),
	"bool as list": (account(use_imap=[True]), ["use_imap"]),
	"ssl and starttls": (account(use_ssl=True, use_starttls=True), ["use_ssl", "use_starttls"]),
	# text
	"condition int": (account(condition=5), ["condition"]),
	"condition syntax": (account(condition="doc.subject =="), ["condition"]),
	"condition unknown name": (account(condition="__import__('os')"), ["condition"]),
	"email_sync_option unknown": (account(email_sync_option="SOMETIMES"), ["email_sync_option", "ALL"]),
	"email_sync_option int": (account(email_sync_option=1), ["email_sync_option"]),
	"login_id list": (account(login_id=["x"]), ["login_id", "text"]),
	"append_to table": (account(append_to={"a": 1}), ["append_to"]),
	"account name control": (
		account(email_account_name="Support\x0bTeam"),
		["email_account_name", "control"],
	),
	"sent folder separator": (account(sent_folder_name="Sent\u2028"), ["sent_folder_name", "control"]),
	"name key": (account(name="other"), ["name"]),
	"imap_folder key": (account(imap_folder=["INBOX"]), ["imap_folder", "folders"]),
	"ca_file missing": (account(ca_file="/nonexistent/ca.pem", use_ssl=True), ["ca_file", "not a file"]),
	# empty text
	"login_id empty": (account(login_id=""), ["login_id", "empty"]),
	"ca_file empty": (account(ca_file=" "), ["ca_file", "empty"]),
	"append_to empty": (account(append_to=""), ["append_to", "empty"]),
	"folder append_to empty": (account(folders=[{"folder_name": "INBOX", "append_to": ""}]), ["append_to"]),
	"password empty": (account(password=""), ["password"]),
	"key in other case": (account(Email_Server="x.example.com"), ["Email_Server", "'email_server'"]),
	# addresses
	"email_id not an address": (account(email_id="not an address"), ["email_id", "not an email address"]),
	"email_id no dot": (account(email_id="a@b"), ["email_id"]),
	"email_id two ats": (account(email_id="a@@example.com"), ["email_id"]),
	"email_id empty label": (account(email_id="a@example..com"), ["email_id"]),
	"email_id empty": (account(email_id=""), ["email_id", "missing"]),
	"email_id int": (account(email_id=5), ["email_id", "text"]),
	"email_id missing": (account(email_id=DROP), ["email_id", "missing"]),
	"email_id NUL": (account(email_id="a\x00b@example.com"), ["email_id"]),
	"email_id two addresses": (account(email_id="a@example.com, b@example.com"), ["email_id"]),
	"notification address": (
		account(notify_if_unreplied=True, send_notification_to="lead at example.com"),
		["send_notification_to"],
	),
	# hosts
	"host not ascii": (account(email_server="mail.bücher.de"), ["email_server", "xn--"]),
	"host NUL": (account(email_server="mail\x00.example.com"), ["email_server", "control"]),
	"host space": (account(email_server="mail example.com"), ["email_server", "host name"]),
	"host with port": (account(email_server="mail.example.com:993"), ["email_server", "port"]),
	"host empty": (account(email_server=""), ["email_server"]),
	"host int": (account(email_server=5), ["email_server", "text"]),
	"host leading hyphen": (account(email_server="-bad.example.com"), ["email_server"]),
	"host empty label": (
		account(enable_outgoing=True, smtp_server="smtp..example.com"),
		["smtp_server", "host name"],
	),
	"domain key not a domain": (account(domain="bad domain"), ["domain"]),
	# passwords (never echoed)
	"password int": (account(password=5), ["password", "text"]),
	"password line break": (account(password="pw\nEVIL"), ["password", "line break"]),
	"password_env unset": (
		account(password=DROP, password_env="EMAIL_ACCOUNT_APP_TEST_UNSET"),
		["EMAIL_ACCOUNT_APP_TEST_UNSET", "not set"],
	),
	"password_env int": (account(password=DROP, password_env=5), ["password_env"]),
	"password_env empty": (account(password=DROP, password_env=""), ["password_env"]),
	"password_env and password": (account(password_env="HOME"), ["password", "password_env"]),
	"no password": (account(password=DROP), ["password"]),
	# OAuth
	"auth_method int": (account(auth_method=5), ["auth_method"]),
	"auth_method unknown": (account(auth_method="Kerberos"), ["auth_method"]),
	"oauth without provider": (account(password=DROP, auth_method="OAuth"), ["oauth_provider"]),
	"oauth_scopes int": (
		account(
			password=DROP, auth_method="OAuth", oauth_provider="google", oauth_client_id="x", oauth_scopes=5
		),
		["oauth_scopes"],
	),
	"oauth url malformed": (
		account(
			password=DROP,
			auth_method="OAuth",
			oauth_provider="custom",
			oauth_client_id="x",
			oauth_token_url="https://[::1",
		),
		["oauth_token_url"],
	),
	"oauth secret env unset": (
		account(oauth_client_secret_env="EMAIL_ACCOUNT_APP_TEST_UNSET"),
		["EMAIL_ACCOUNT_APP_TEST_UNSET", "not set"],
	),
	"oauth key without oauth": (account(oauth_client_id="x"), ["oauth_client_id", "OAuth"]),
	# the file
	"missing file": (lambda tmp: tmp / "nope.toml", ["nope.toml", "not found"]),
	"directory": (lambda tmp: tmp, ["directory"]),
	"fifo": (lambda tmp: _fifo(tmp / "fifo.toml"), ["fifo.toml", "regular file"]),
	"parent is a file": (lambda tmp: _write(tmp / "f.toml", GOOD) / "x.toml", ["f.toml"]),
	"utf-16": (lambda tmp: _write(tmp / "u16.toml", GOOD.encode("utf-16")), ["UTF-8"]),
	"not utf-8": (lambda tmp: _write(tmp / "l1.toml", GOOD.encode() + b"# caf\xe9\n"), ["UTF-8"]),
	"syntax error": ("[accounts.support\nemail_id = 1\n", ["not valid TOML", "line"]),
	"duplicate key": (GOOD + 'email_id = "b@example.com"\n', ["not valid TOML"]),
	"empty file": ("", ["no accounts"]),
	"accounts not a table": ("accounts = 5\n", ["accounts", "tables"]),
	"accounts text": ('accounts = "support"\n', ["accounts"]),
	"account not a table": ("[accounts]\nsupport = 5\n", ["[accounts.support]", "table"]),
	"zero accounts": ("[accounts]\n", ["no accounts"]),
	"account table name empty": (account(table=""), ["empty"]),
	"account table name control": (account(table="sup\x01port"), ["control"]),
	"accounts array of tables": ('[[accounts]]\nemail_id = "a@example.com"\n', ["accounts"]),
	"one address two accounts": (
		account(table="a") + account(table="b", email_id="Support@example.com"),
		["[accounts.b]", "[accounts.a]", "email_id"],
	),
	"two default incoming": (
		account(table="a", default_incoming=True)
		+ account(table="b", default_incoming=True, email_id="b@example.com"),
		["default incoming"],
	),
	# [store]
	"store path empty": ('[store]\npath = ""\n' + GOOD, ["[store]", "path"]),
	"store path directory": (
		lambda tmp: _write(tmp / "c.toml", f"[store]\npath = {json.dumps(str(tmp))}\n" + GOOD),
		["directory"],
	),
	"store folder missing": (
		'[store]\npath = "no/such/folder/x.sqlite3"\n' + GOOD,
		["[store]", "does not exist"],
	),
	"store not a database": (
		lambda tmp: _write(tmp / "c.toml", '[store]\npath = "c.toml"\n' + GOOD),
		["c.toml", "store"],
	),
	# [site]
	"site not a table": ("site = 5\n" + GOOD, ["site", "table"]),
	"site base_url": ('[site]\nbase_url = "erp.example.com"\n' + GOOD, ["[site]", "base_url"]),
	"site reply_to_subaddress": ('[site]\nreply_to_subaddress = "yes"\n' + GOOD, ["reply_to_subaddress"]),
	"site secret int": ("[site]\nsecret = 5\n" + GOOD, ["[site]", "secret"]),
	"site secret_env unset": (
		'[site]\nsecret_env = "EMAIL_ACCOUNT_APP_TEST_UNSET"\n' + GOOD,
		["[site]", "EMAIL_ACCOUNT_APP_TEST_UNSET", "not set"],
	),
	"site path": ('[site]\nunsubscribe_path = "unsubscribe"\n' + GOOD, ["unsubscribe_path", "/"]),
	# [domains.*]
	"domain port text": (
		'[domains."example.com"]\nsmtp_port = "x"\n' + GOOD,
		['[domains."example.com"]', "smtp_port"],
	),
	"domain unknown key": (
		'[domains."example.com"]\nemail_sever = "x.example.com"\n' + GOOD,
		["email_sever", "email_server"],
	),
	"domain name not a host": (
		'[domains."bad domain"]\nemail_server = "x.example.com"\n' + GOOD,
		["bad domain"],
	),
	"domain host not ascii": (
		'[domains."example.com"]\nemail_server = "mäil.example.com"\n' + GOOD,
		["email_server"],
	),
	"domains not tables": ("domains = 5\n" + GOOD, ["domains"]),
	"domain twice": (
		'[domains."example.com"]\nsmtp_port = 25\n[domains."EXAMPLE.com"]\nsmtp_port = 26\n' + GOOD,
		["example.com", "twice"],
	),
	# [doctypes.*]
	"doctype unknown key": (
		'[doctypes.Issue]\nsubject = "title"\n' + GOOD,
		["[doctypes.Issue]", "subject_field"],
	),
	"doctype value int": (
		"[doctypes.Issue]\nsubject_field = 5\n" + GOOD,
		["[doctypes.Issue]", "subject_field"],
	),
	"doctype not a table": ("doctypes = { Issue = 5 }\n" + GOOD, ["[doctypes.Issue]"]),
}


def _fifo(path: Path) -> Path:
	os.mkfifo(path)
	return path


def _write(path: Path, content: str | bytes) -> Path:
	if isinstance(content, bytes):
		path.write_bytes(content)
	else:
		path.write_text(content, "utf-8")
	return path


def _run(args: list[str]) -> subprocess.CompletedProcess:
	env = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_ACCOUNT_APP")}
	env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
	return subprocess.run(
		[sys.executable, "-m", "email_account_app.cli", *args],
		capture_output=True,
		text=True,
		timeout=60,
		env=env,
	)


@pytest.fixture(scope="module")
def results(request, tmp_path_factory):
	"""Every selected case run once, two at a time: id -> (config path, completed process)."""
	selected = {
		item.callspec.params["case"]
		for item in request.session.items
		if getattr(item, "originalname", "") == "test_bad_config_is_one_plain_line_and_exit_2"
	}
	jobs = {}
	for number, (case, (config, _words)) in enumerate(CASES.items()):
		if case not in selected:
			continue
		tmp = tmp_path_factory.mktemp(f"case{number}")
		path = config(tmp) if callable(config) else _write(tmp / "c.toml", config)
		# half pull (into the test's folder, or the store the case names), half check
		if "store" in case:
			args = ["pull"]
		elif number % 2:
			args = ["check"]
		else:
			args = ["pull", "--db", str(tmp / "db.sqlite3")]
		jobs[case] = (path, ["--config", str(path), *args])
	with ThreadPoolExecutor(max_workers=2) as pool:
		done = {case: pool.submit(_run, args) for case, (_path, args) in jobs.items()}
		return {case: (jobs[case][0], future.result()) for case, future in done.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_is_one_plain_line_and_exit_2(results, case):
	path, result = results[case]
	words = CASES[case][1]
	assert "Traceback" not in result.stderr, result.stderr
	assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
	lines = result.stderr.strip().splitlines()
	assert len(lines) == 1, result.stderr
	(line,) = lines
	assert line.startswith("Error: ") and result.stdout == ""
	where = path.name if path.exists() and path.is_file() else str(path.name)
	assert where in line, line
	for word in words:
		assert word in line, (word, line)
	assert "s3cret-pw" not in line and "EVIL" not in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_config(tmp_path):
	path = _write(tmp_path / "c.toml", GOOD)
	path.chmod(0)
	result = _run(["--config", str(path), "pull"])
	assert result.returncode == 2 and "Traceback" not in result.stderr
	assert result.stderr.strip().count("\n") == 0 and "permission denied" in result.stderr


def test_messages_are_not_wrapped_or_cut(tmp_path):
	"""A long message stays on one line, whole, when stderr is a pipe (as in a log file)."""
	long_name = "a" * 120
	config = _write(tmp_path / "c.toml", account(table=long_name, folders="INBOX"))
	result = _run(["--config", str(config), "check"])
	assert result.returncode == 2
	(line,) = result.stderr.strip().splitlines()
	assert long_name in line and line.endswith("not 'INBOX'")


def test_the_good_config_loads(tmp_path):
	"""The base of every case is itself fine: each case fails for its own mistake."""
	config = load_config(_write(tmp_path / "c.toml", GOOD), env={})
	assert config.accounts["support"].timeout == 5
	assert config.accounts["support"].sync_folders[0].folder_name == "INBOX"


# -- random values for every key ----------------------------------------------------------------

_scalars = (
	st.none()
	| st.booleans()
	| st.integers(min_value=-(2**70), max_value=2**70)
	| st.sampled_from([0, 1, -1, 65535, 65536, 2**63])
	| st.floats(allow_nan=True, allow_infinity=True)
	| st.text(max_size=30)
	| st.sampled_from(
		["", " ", "INBOX", "a@example.com", "mail.example.com", "1", "true", "nan", "inf", "-1e400"]
	)
	| st.text(alphabet=st.characters(max_codepoint=0x2030), max_size=10)
)
_values = st.recursive(
	_scalars,
	lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
	max_leaves=6,
)
_folder_tables = st.lists(
	st.fixed_dictionaries(
		{"folder_name": _values}, optional={"append_to": _values, "condition": _values, "extra": _values}
	)
	| _values,
	max_size=3,
)
_ACCOUNT_KEYS = [
	*sorted(f.name for f in dataclasses.fields(AccountSettings)),
	*OAUTH_KEYS,
	"oauth_client_secret_env",
	"imap_folder",
	"password_env",
	"nme",
]
_DOMAIN_KEYS = [*sorted(f.name for f in dataclasses.fields(DomainSettings)), "nme"]


def _mapping(keys):
	return st.dictionaries(st.sampled_from(keys), _values, max_size=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
	extra=_mapping(_ACCOUNT_KEYS),
	folders=_folder_tables | _values,
	strict=st.booleans(),
	name=st.none() | st.text(max_size=20),
)
def test_account_from_mapping_raises_only_config_errors(extra, folders, strict, name):
	data = {**BASE, **extra, "folders": folders}
	try:
		account = account_from_mapping(data, name=name, strict=strict)
	except ConfigError as exc:
		assert str(exc) and "\n" not in str(exc)
		return
	assert all(math.isfinite(v) for v in (account.timeout, account.attachment_limit))
	assert 0 < account.timeout <= 3600 and account.port < 65536


@settings(max_examples=300, deadline=None)
@given(data=_mapping(_DOMAIN_KEYS), name=_values, strict=st.booleans())
def test_domain_from_mapping_raises_only_config_errors(data, name, strict):
	try:
		domain_from_mapping(data, domain_name=name, strict=strict)
	except ConfigError as exc:
		assert str(exc) and "\n" not in str(exc)


_toml_scalars = (
	st.booleans()
	| st.integers(min_value=-(2**63), max_value=2**63 - 1)
	| st.floats(allow_nan=True, allow_infinity=True)
	| st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20)
)
_toml_values = st.recursive(
	_toml_scalars,
	lambda inner: (
		st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=10), inner, max_size=3)
	),
	max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
	key=st.sampled_from([*_ACCOUNT_KEYS, "folders"]),
	value=_toml_values,
	table=st.sampled_from(
		["accounts.support", "store", "site", 'domains."example.com"', "doctypes.Issue", ""]
	),
	site_key=st.sampled_from(
		["path", "base_url", "secret", "secret_env", "reply_to_subaddress", "subject_field", "x"]
	),
)
def test_load_config_raises_only_config_errors(tmp_path, key, value, table, site_key):
	"""Any value under any key of any table: the file loads or says why in one line."""
	if table == "accounts.support":
		text = account(**{key: value})
	elif table:
		text = f"[{table}]\n{toml(site_key)} = {toml(value)}\n" + GOOD
	else:
		text = f"{toml(key)} = {toml(value)}\n" + GOOD
	path = _write(tmp_path / "random.toml", text)
	try:
		load_config(path, env={"HOME": "/"})
	except ConfigError as exc:
		assert "\n" not in str(exc) and str(path) in str(exc)
