"""OAuth 2.0 sign-in in the engine, against a real authorization server, Dovecot and aiosmtpd.

The OAuth server (tests/oauth_server.py) issues the tokens; Dovecot's oauth2 passdb and the SMTP
server check each one with its introspection endpoint, so a login works only with a token the
server vouches for at that moment.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import threading
import time
import urllib.error
import urllib.request

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_account_app.engine import jobs
from email_account_app.engine.compose import OutgoingRequest, site_from_accounts
from email_account_app.engine.errors import (
	AuthenticationFailed,
	AuthorizationDenied,
	ConfigError,
	OAuthSettingsRefused,
	SignInRequired,
	TokenServiceUnreachable,
)
from email_account_app.engine.oauth import OAuthClient, Token, TokenSource
from email_account_app.engine.oauth_login import browser_flow, device_flow, pkce_pair, sign_in
from email_account_app.engine.outbox import queue_mail
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.transports import sasl
from email_account_app.engine.transports.imap import ImapMailbox
from email_account_app.engine.transports.pop3 import Pop3Mailbox
from email_account_app.engine.transports.smtp import SmtpSender
from email_account_app.sqlite_tokens import SQLiteTokenStore

from .factory import make_mail, message_id_of
from .smtp_server import _bearer_parts

USER = "alice@example.com"


# -- settings --------------------------------------------------------------------------------


def oauth_account(**keys):
	return account_from_mapping(
		{"email_id": "support@contoso.com", "enable_incoming": True, "enable_outgoing": True, **keys},
		name="support",
	)


def test_microsoft_preset_fills_servers_endpoints_and_scopes():
	account = oauth_account(auth_method="OAuth", oauth_provider="microsoft", oauth_client_id="app-id")
	assert (account.email_server, account.port, account.use_ssl) == ("outlook.office365.com", 993, True)
	assert (account.smtp_server, account.outgoing_port, account.use_tls) == ("smtp.office365.com", 587, True)
	oauth = account.oauth
	assert oauth.flow == "device" and oauth.tenant == "organizations"
	assert oauth.token_url == "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
	assert oauth.device_authorization_url.endswith("/organizations/oauth2/v2.0/devicecode")
	assert oauth.authorization_url.endswith("/organizations/oauth2/v2.0/authorize")
	assert "https://outlook.office.com/IMAP.AccessAsUser.All" in oauth.scopes
	assert "offline_access" in oauth.scopes
	app = oauth_account(
		auth_method="OAuth",
		oauth_provider="microsoft",
		oauth_client_id="app-id",
		oauth_tenant="contoso.onmicrosoft.com",
		oauth_flow="client_credentials",
		oauth_client_secret="s3cret",
	)
	assert app.oauth.scopes == ("https://outlook.office365.com/.default",)
	assert "/contoso.onmicrosoft.com/" in app.oauth.token_url
	assert "s3cret" not in repr(app)


def test_google_preset_and_the_account_own_servers_win():
	account = oauth_account(
		auth_method="OAuth", oauth_provider="google", oauth_client_id="id", email_server="imap.example.net"
	)
	assert account.email_server == "imap.example.net" and account.smtp_server == "smtp.gmail.com"
	assert account.oauth.flow == "browser" and account.oauth.scopes == ("https://mail.google.com/",)
	assert account.oauth.token_url == "https://oauth2.googleapis.com/token"


@pytest.mark.parametrize(
	"keys, words",
	[
		({"oauth_provider": "yahoo", "oauth_client_id": "x"}, "oauth_provider must be"),
		({"oauth_client_id": "x"}, "needs oauth_provider"),
		({"oauth_provider": "microsoft"}, "oauth_client_id is missing"),
		({"oauth_provider": "custom", "oauth_client_id": "x"}, "custom needs oauth_token_url"),
		(
			{
				"oauth_provider": "custom",
				"oauth_client_id": "x",
				"oauth_token_url": "http://idp.example.com/t",
			},
			"must be an https:// URL",
		),
		(
			{"oauth_provider": "google", "oauth_client_id": "x", "oauth_flow": "device"},
			"does not grant the mail",
		),
		(
			{"oauth_provider": "microsoft", "oauth_client_id": "x", "oauth_flow": "client_credentials"},
			"needs oauth_tenant set to your tenant",
		),
		(
			{"oauth_provider": "microsoft", "oauth_client_id": "x", "oauth_scopes": ["a"]},
			"lack offline_access",
		),
		(
			{"oauth_provider": "microsoft", "oauth_client_id": "x", "oauth_scopes": "a b"},
			"lack offline_access",
		),
		({"oauth_provider": "microsoft", "oauth_client_id": "x", "oauth_scopes": [1]}, "list of strings"),
		(
			{"oauth_provider": "microsoft", "oauth_client_id": "x", "oauth_flow": "magic"},
			"oauth_flow must be",
		),
	],
)
def test_settings_that_cannot_work_say_why(keys, words):
	with pytest.raises(ConfigError) as caught:
		oauth_account(auth_method="OAuth", **keys)
	assert words in str(caught.value)


def test_oauth_keys_without_auth_method_oauth_are_refused():
	with pytest.raises(ConfigError, match='need auth_method = "OAuth"'):
		oauth_account(password="x", oauth_provider="google")
	with pytest.raises(ConfigError, match="auth_method must be"):
		oauth_account(password="x", auth_method="Kerberos")


# -- SASL ------------------------------------------------------------------------------------


def test_mechanism_choice_prefers_oauthbearer():
	assert sasl.choose(["PLAIN", "XOAUTH2", "OAUTHBEARER"]) == "OAUTHBEARER"
	assert sasl.choose(["plain", "xoauth2"]) == "XOAUTH2"
	assert sasl.choose(["PLAIN", "LOGIN"]) is None


def test_sasl_messages():
	assert sasl.initial_response("XOAUTH2", "a@b.c", "TOK") == b"user=a@b.c\x01auth=Bearer TOK\x01\x01"
	assert (
		sasl.initial_response("OAUTHBEARER", "a,b=@c", "TOK", "imap.c", 993)
		== b"n,a=a=2Cb=3D@c,\x01host=imap.c\x01port=993\x01auth=Bearer TOK\x01\x01"
	)


@settings(max_examples=200, deadline=None)
@given(
	user=st.text(st.characters(blacklist_characters="\x00\x01", blacklist_categories=("Cs",)), min_size=1),
	token=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=", min_size=1),
	mechanism=st.sampled_from(sasl.MECHANISMS),
)
def test_sasl_messages_carry_any_user_name_and_token(user, token, mechanism):
	"""What a server reads back (as the test SMTP server parses it) is the user and token sent."""
	message = sasl.initial_response(mechanism, user, token, "imap.example.com", 993).decode()
	assert _bearer_parts(message, mechanism) == (user, token)


# -- the flows -------------------------------------------------------------------------------


@pytest.fixture
def tokens(tmp_path):
	store = SQLiteTokenStore(tmp_path / "store.sqlite3")
	yield store
	store.close()


def settings_for(oauth_server, flow="device", **overrides):
	data = {"email_id": USER, **oauth_server.account(flow), **overrides}
	return account_from_mapping(data, name="alice").oauth


def test_device_flow_polls_at_the_interval_and_slows_down_when_asked(oauth_server, tokens):
	oauth_server.slow_down_once = True
	oauth_server.approve_after = 3
	oauth_server.interval = 2
	waits, prompts = [], []
	client = OAuthClient(settings_for(oauth_server), account="alice")
	token = device_flow(client, prompts.append, sleep=waits.append)
	assert prompts[0].user_code and prompts[0].verification_uri.startswith(oauth_server.url)
	# slow_down on the first poll: every later poll waits 5 seconds more (RFC 8628 3.5)
	assert waits == [2, 7, 7]
	assert token.refresh_token and token.access_token


def test_device_flow_declined_or_expired(oauth_server):
	oauth_server.deny = True
	client = OAuthClient(settings_for(oauth_server), account="alice")
	with pytest.raises(AuthorizationDenied, match="declined"):
		device_flow(client, lambda prompt: None, sleep=lambda s: None)
	oauth_server.deny = False
	oauth_server.approve_after = 1000
	clock = iter(range(0, 100_000, 60))
	with pytest.raises(AuthorizationDenied, match="expired"):
		device_flow(client, lambda prompt: None, sleep=lambda s: None, clock=lambda: next(clock))


def play_browser(url: str, *, forge_first: bool = False) -> threading.Thread:
	"""Follow the authorization URL as a browser would: the provider redirects to the loopback."""

	def run():
		if forge_first:  # another page hitting the loopback with a made-up state is turned away
			port = url.split("redirect_uri=http%3A%2F%2F127.0.0.1%3A")[1].split("&")[0]
			try:
				urllib.request.urlopen(f"http://127.0.0.1:{port}/?code=forged&state=wrong", timeout=10)
			except urllib.error.HTTPError as exc:
				assert exc.code == 400
		with urllib.request.urlopen(url, timeout=10) as response:
			assert b"Signed in" in response.read()

	thread = threading.Thread(target=run, daemon=True)
	thread.start()
	return thread


def test_browser_flow_with_pkce_and_a_loopback_redirect(oauth_server, tokens):
	threads = []
	settings = settings_for(oauth_server, "browser")
	token = sign_in(
		"alice",
		settings,
		tokens,
		show_device_prompt=lambda prompt: None,
		open_url=lambda url: threads.append(play_browser(url, forge_first=True)),
	)
	threads[0].join(10)
	assert tokens.load_refresh_token("alice") == token.refresh_token
	assert oauth_server.introspect(token.access_token)["username"] == USER


def test_browser_flow_declined(oauth_server):
	oauth_server.deny = True
	client = OAuthClient(settings_for(oauth_server, "browser"), account="alice")

	def open_url(url):
		def run():
			try:
				urllib.request.urlopen(url, timeout=10)
			except urllib.error.HTTPError:
				pass

		threading.Thread(target=run, daemon=True).start()

	with pytest.raises(AuthorizationDenied, match="access_denied"):
		browser_flow(client, open_url)


def test_pkce_pair_is_s256():
	import base64
	import hashlib

	verifier, challenge = pkce_pair()
	assert 43 <= len(verifier) <= 128
	assert (
		challenge
		== base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
	)


def signed_in(oauth_server, tokens, flow="device", **overrides) -> TokenSource:
	settings = settings_for(oauth_server, flow, **overrides)
	sign_in("alice", settings, tokens, show_device_prompt=lambda p: None, open_url=None, sleep=lambda s: None)
	return TokenSource(
		"alice", settings, tokens, sign_in_hint="Sign in again: `email-account-app login alice`."
	)


# -- the token source ------------------------------------------------------------------------


def test_a_rotated_refresh_token_is_saved_before_its_access_token_is_used(oauth_server, tokens):
	source = signed_in(oauth_server, tokens)
	first = tokens.load_refresh_token("alice")
	access = source.access_token()
	second = tokens.load_refresh_token("alice")
	assert second != first and second in oauth_server.live_refresh_tokens()
	# using the new access token retires the old refresh token: only the saved one works now
	assert oauth_server.introspect(access)["active"]
	assert oauth_server.live_refresh_tokens() == {second}
	assert source.access_token() == access  # still fresh: no refresh


def test_refresh_ahead_of_expiry(oauth_server, tokens):
	now = [1_000_000.0]
	oauth_server.access_lifetime = 100
	settings = settings_for(oauth_server)
	sign_in("alice", settings, tokens, show_device_prompt=lambda p: None, open_url=None, sleep=lambda s: None)
	source = TokenSource("alice", settings, tokens, clock=lambda: now[0])
	first = source.access_token()
	now[0] += 85
	assert source.access_token() == first
	now[0] += 6  # within a tenth of the lifetime of the end
	assert source.access_token() != first
	assert source.refreshes == 2


def test_revoked_grant_asks_to_sign_in_again(oauth_server, tokens):
	source = signed_in(oauth_server, tokens)
	oauth_server.revoke_user(USER)
	with pytest.raises(SignInRequired) as caught:
		source.access_token()
	assert "email-account-app login alice" in str(caught.value)
	assert caught.value.title == "Sign-in needed"


def test_never_signed_in(oauth_server, tokens):
	source = TokenSource("alice", settings_for(oauth_server), tokens, sign_in_hint="Run login.")
	with pytest.raises(SignInRequired, match="has not signed in"):
		source.access_token()


def test_token_endpoint_unreachable_is_temporary(oauth_server, tokens):
	import socket

	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		dead = f"http://127.0.0.1:{s.getsockname()[1]}"
	settings = settings_for(oauth_server, oauth_token_url=f"{dead}/token")
	tokens.save_refresh_token("alice", "whatever")
	source = TokenSource("alice", settings, tokens, timeout=5)
	with pytest.raises(TokenServiceUnreachable) as caught:
		source.access_token()
	assert "next run tries again" in str(caught.value)


def test_wrong_client_says_which_settings_to_check(oauth_server, tokens):
	settings = settings_for(oauth_server, oauth_client_id="someone-else")
	client = OAuthClient(settings, account="alice")
	with pytest.raises(OAuthSettingsRefused, match="oauth_client_id"):
		client.start_device_authorization()


class SharedStore:
	"""A SharedTokenStore in memory (what a Frappe site's Token Cache is to the token source):
	the refresh token and the access token, and the order things were saved in."""

	def __init__(self, answer: dict | None = None, *, now: float | None = None):
		self.refresh: str | None = None
		self.kept: Token | None = None
		self.saved: list[Token] = []
		if answer:
			self.refresh = answer.get("refresh_token")
			lifetime = float(answer["expires_in"])
			self.kept = Token(answer["access_token"], (now or time.time()) + lifetime, lifetime)

	def load_refresh_token(self, account):
		return self.refresh

	def save_refresh_token(self, account, refresh_token):
		raise AssertionError("a shared store is given the whole token (save_token)")

	def forget_refresh_token(self, account):
		gone, self.refresh = self.refresh is not None, None
		return gone

	def load_access_token(self, account):
		return self.kept

	def save_token(self, account, token):
		self.saved.append(token)
		self.kept = token
		if token.refresh_token:
			self.refresh = token.refresh_token


def test_a_shared_stores_kept_token_is_used_while_fresh_then_replaced_and_saved(oauth_server):
	now = [time.time()]
	store = SharedStore(oauth_server.sign_in(), now=now[0])
	first_refresh, kept = store.refresh, store.kept.access_token
	source = TokenSource("alice", settings_for(oauth_server), store, clock=lambda: now[0])
	assert source.access_token() == kept and source.refreshes == 0  # another run's token: no refresh
	now[0] += 55  # within the last tenth of its 60 s
	fresh = source.access_token()
	assert fresh != kept and source.refreshes == 1
	# saved (access token and the rotated refresh token) before it was handed out
	[saved] = store.saved
	assert saved.access_token == fresh and store.refresh == saved.refresh_token != first_refresh
	assert store.refresh in oauth_server.live_refresh_tokens()
	# a second source (the next run) takes the kept token
	assert (
		TokenSource("alice", settings_for(oauth_server), store, clock=lambda: now[0]).access_token() == fresh
	)


def test_a_kept_token_a_server_refused_is_not_used_again(oauth_server):
	store = SharedStore(oauth_server.sign_in())
	source = TokenSource("alice", settings_for(oauth_server), store)
	kept = source.access_token()
	source.refused(kept)
	assert source.access_token() not in (kept, None) and source.refreshes == 1
	assert store.kept.access_token != kept


def test_a_revoked_grant_with_a_shared_store_saves_nothing(oauth_server):
	store = SharedStore(oauth_server.sign_in())
	store.kept = None
	oauth_server.revoke_user(USER)
	source = TokenSource("alice", settings_for(oauth_server), store, sign_in_hint="Authorise again.")
	with pytest.raises(SignInRequired, match="Authorise again"):
		source.access_token()
	assert store.saved == []


def test_client_credentials_with_a_shared_store(oauth_server):
	store = SharedStore()
	source = TokenSource("alice", settings_for(oauth_server, "client_credentials"), store)
	token = source.access_token()
	assert [t.access_token for t in store.saved] == [token]
	assert (
		TokenSource("alice", settings_for(oauth_server, "client_credentials"), store).access_token() == token
	)


def test_client_credentials(oauth_server, xoauth2_dovecot):
	xoauth2_dovecot.reset(USER)
	xoauth2_dovecot.append(USER, make_mail())
	data = {**xoauth2_dovecot.account(USER), **oauth_server.account("client_credentials")}
	data.pop("password")
	account = account_from_mapping(data, name="alice")
	source = TokenSource("alice", account.oauth, None)
	account = dataclasses.replace(account, token_source=source)
	with ImapMailbox(account) as mailbox:
		assert mailbox.select("INBOX").messages == 1
	wrong = dataclasses.replace(account.oauth, client_secret="nope")
	with pytest.raises(OAuthSettingsRefused):
		TokenSource("alice", wrong, None).access_token()
	# a server that takes the client's secret only in HTTP Basic authentication
	oauth_server.basic_only = True
	basic = TokenSource("alice", account.oauth, None)
	assert oauth_server.introspect(basic.access_token())["username"] == USER


# -- the transports --------------------------------------------------------------------------


def mail_account(server, oauth_server, source, **overrides):
	data = {**server.account(USER, **overrides), **oauth_server.account()}
	data.pop("password", None)
	return dataclasses.replace(account_from_mapping(data, name="alice"), token_source=source)


@pytest.mark.parametrize("which", ["xoauth2_dovecot", "oauthbearer_dovecot", "oauth_dovecot"])
def test_imap_and_pop3_sign_in_with_the_mechanism_offered(which, request, oauth_server, tokens, caplog):
	server = request.getfixturevalue(which)
	server.reset(USER)
	server.append(USER, make_mail())
	source = signed_in(oauth_server, tokens)
	expected = "XOAUTH2" if which == "xoauth2_dovecot" else "OAUTHBEARER"
	with caplog.at_level(logging.DEBUG, logger="email_account_app"):
		with ImapMailbox(mail_account(server, oauth_server, source)) as mailbox:
			assert mailbox.select("INBOX").messages == 1
		with Pop3Mailbox(mail_account(server, oauth_server, source, protocol="pop3")) as mailbox:
			assert mailbox.stat()[0] == 1
	assert caplog.text.count(f"with {expected}") == 2
	for token in oauth_server.issued_tokens():
		assert token not in caplog.text


def test_a_server_without_oauth_says_so(dovecot, oauth_server, tokens):
	source = signed_in(oauth_server, tokens)
	with pytest.raises(AuthenticationFailed, match="offers no OAuth sign-in"):
		with ImapMailbox(mail_account(dovecot, oauth_server, source)):
			pass


def test_a_token_the_server_refuses_is_replaced_once(xoauth2_dovecot, oauth_server, tokens):
	source = signed_in(oauth_server, tokens)
	account = mail_account(xoauth2_dovecot, oauth_server, source)
	with ImapMailbox(account):
		pass
	oauth_server.expire_access_tokens()  # our clock says the token is fresh; the server disagrees
	with ImapMailbox(account):
		pass
	assert source.refreshes == 2
	# a token for someone else: refused twice, then a plain error that names what to check
	oauth_server.approve_as = "bob@example.com"
	other = signed_in(oauth_server, tokens)
	with pytest.raises(AuthenticationFailed, match="refused the OAuth sign-in") as caught:
		with ImapMailbox(mail_account(xoauth2_dovecot, oauth_server, other)):
			pass
	assert "oauth_scopes" in str(caught.value)
	for token in oauth_server.issued_tokens():
		assert token not in str(caught.value)


def test_a_token_that_expires_in_the_middle_of_a_pull(oauth_dovecot, oauth_server, tokens, store):
	"""The session stays signed in; the next pull signs in with a new token; nothing is lost."""
	oauth_dovecot.reset(USER)
	oauth_dovecot.create_folder(USER, "Jobs")
	raws = [make_mail() for _ in range(6)]
	for raw in raws[:3]:
		oauth_dovecot.append(USER, raw)
	for raw in raws[3:5]:
		oauth_dovecot.append(USER, raw, folder="Jobs")
	source = signed_in(oauth_server, tokens)
	account = mail_account(
		oauth_dovecot, oauth_server, source, email_sync_option="ALL", folders=["INBOX", "Jobs"]
	)
	expired = []

	def progress(folder, done, total):
		if done and not expired:
			oauth_server.expire_access_tokens()
			expired.append(folder)

	report = jobs.pull(account, store, progress=progress)
	assert expired and report.ok and report.stored == 5, report.error
	oauth_dovecot.append(USER, raws[5])
	again = jobs.pull(account, store)
	assert again.ok and again.stored == 1, again.error
	ids = {r["message_id"] for r in store.rows("SELECT message_id FROM communications")}
	assert ids == {message_id_of(r) for r in raws}


def test_pull_with_a_revoked_grant_reports_what_to_do(xoauth2_dovecot, oauth_server, tokens, store):
	source = signed_in(oauth_server, tokens)
	oauth_server.revoke_user(USER)
	report = jobs.pull(mail_account(xoauth2_dovecot, oauth_server, source), store)
	assert not report.ok and report.error_title == "Sign-in needed"
	assert "email-account-app login alice" in report.error


@pytest.mark.parametrize("which", ["smtp_oauth", "smtp_oauthbearer", "smtp_xoauth2"])
def test_smtp_signs_in_with_the_mechanism_offered(which, request, oauth_server, tokens):
	server = request.getfixturevalue(which)
	source = signed_in(oauth_server, tokens)
	account = mail_account(server, oauth_server, source)
	account = dataclasses.replace(account, email_id=USER)
	with SmtpSender(account) as sender:
		sender.send(make_mail(), USER, ["bob@example.com"])
	assert [d.login for d in server.deliveries] == [USER]
	assert server.handler.mechanisms_used == ["XOAUTH2" if which == "smtp_xoauth2" else "OAUTHBEARER"]


def test_smtp_refused_token_is_replaced_once_and_flush_keeps_mail_on_failure(
	smtp_oauth, oauth_server, tokens, store
):
	source = signed_in(oauth_server, tokens)
	account = dataclasses.replace(mail_account(smtp_oauth, oauth_server, source), email_id=USER)
	site = site_from_accounts([account], secret="s")
	queue_mail(store, account, site, OutgoingRequest(to=("bob@example.com",), subject="One", text="1"))
	source.access_token()
	oauth_server.expire_access_tokens()  # our clock says the token is fresh; the server disagrees
	report = jobs.send_due(store, [account])
	assert report.ok and len(smtp_oauth.deliveries) == 1 and source.refreshes == 2
	oauth_server.revoke_user(USER)
	oauth_server.expire_access_tokens()
	queue_mail(store, account, site, OutgoingRequest(to=("bob@example.com",), subject="Two", text="2"))
	report = jobs.send_due(store, [account])
	assert "Sign-in needed" in report.errors["alice"]
	assert len(smtp_oauth.deliveries) == 1
	assert store.count("outbox", status="Queued") == 1


def test_the_token_file_is_private_and_keeps_only_the_current_refresh_token(oauth_server, tmp_path):
	path = tmp_path / "store.sqlite3"
	tokens = SQLiteTokenStore(path)
	source = signed_in(oauth_server, tokens)
	for _ in range(3):
		source.refused(source.access_token())  # force a refresh (and a rotation) each time
	source.access_token()
	current = tokens.load_refresh_token("alice")
	tokens.close()
	assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
	content = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("store.sqlite3"))
	assert current.encode() in content
	for token in oauth_server.issued_tokens() - {current}:
		assert token.encode() not in content
