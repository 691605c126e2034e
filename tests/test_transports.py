"""The IMAP and POP3 transports against the real Dovecot of the test suite."""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import time

import pytest
from imapclient import IMAPClient

from email_account_app.engine.errors import (
	AuthenticationFailed,
	ConnectionLost,
	ConnectionRefused,
	ConnectionTimeout,
	FolderMissing,
	HostNotFound,
	ServerRefused,
	TLSFailed,
)
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.transports import open_incoming
from email_account_app.engine.transports.imap import ImapMailbox
from email_account_app.engine.transports.pop3 import Pop3Mailbox

from .factory import make_mail, message_id_of

ALICE = "alice@example.com"
ZOE = "zoe@example.com"  # password "pässwörd"
CAROL = "carol@example.com"  # logs in as "carol"


def settings(dovecot, user=ALICE, **overrides):
	return account_from_mapping(dovecot.account(user, **overrides), name=user.split("@")[0])


def imap(dovecot, user=ALICE, **overrides):
	return ImapMailbox(settings(dovecot, user, **overrides))


def pop3(dovecot, user=ALICE, security="ssl", **overrides):
	return Pop3Mailbox(settings(dovecot, user, protocol="pop3", security=security, **overrides))


class RecordingClient(IMAPClient):
	"""IMAPClient that remembers the size of every FETCH it sends."""

	def __init__(self, *args, **kwargs):
		super().__init__(*args, **kwargs)
		self.fetches: list[list[int]] = []

	def fetch(self, messages, data, modifiers=None):
		self.fetches.append(list(messages))
		return super().fetch(messages, data, modifiers)


def recording_factory(created):
	def factory(host, port, use_ssl, context, timeout):
		client = RecordingClient(host, port=port, ssl=use_ssl, ssl_context=context, timeout=timeout)
		created.append(client)
		return client

	return factory


def crlf(raw: bytes) -> bytes:
	"""``raw`` as the server keeps it: IMAP APPEND turns bare LF line ends into CRLF."""
	return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def closed_port():
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		return s.getsockname()[1]


# -- connecting and logging in ----------------------------------------------------------------


@pytest.mark.parametrize("security", ["ssl", "starttls", "plain"])
def test_imap_connects_in_every_mode(mailbox, security):
	created = []
	account = settings(mailbox, security=security)
	with ImapMailbox(account, client_factory=recording_factory(created)) as box:
		assert "IMAP4REV1" in box.capabilities()
		assert {"INBOX", "Sent", "Drafts", "Trash", "Junk"} <= {f.name for f in box.list_folders()}
		encrypted = isinstance(created[0].socket(), ssl.SSLSocket)
	assert encrypted == (security != "plain")


@pytest.mark.parametrize("security", ["ssl", "starttls", "plain"])
def test_pop3_connects_in_every_mode(mailbox, security):
	mailbox.append(ALICE, make_mail())
	with pop3(mailbox, security=security) as box:
		assert "UIDL" in box.capabilities()
		assert box.stat()[0] == 1
		encrypted = isinstance(box._client.sock, ssl.SSLSocket)
	assert encrypted == (security != "plain")


def test_open_incoming_picks_the_protocol(dovecot):
	assert isinstance(open_incoming(settings(dovecot)), ImapMailbox)
	assert isinstance(open_incoming(settings(dovecot, protocol="pop3")), Pop3Mailbox)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_login_id_that_is_not_the_address(dovecot, protocol):
	account = settings(dovecot, CAROL, protocol=protocol)
	assert account.login == "carol"
	with open_incoming(account) as box:
		assert box.capabilities()


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_non_ascii_password_goes_as_utf8(dovecot, protocol):
	with open_incoming(settings(dovecot, ZOE, protocol=protocol)) as box:
		assert box.capabilities()


def test_imap_uses_login_for_ascii_and_authenticate_plain_for_utf8(dovecot, caplog):
	caplog.set_level(logging.DEBUG)
	with imap(dovecot, ALICE, ascii_encode_password=True):
		pass
	assert " LOGIN " in caplog.text and "AUTHENTICATE" not in caplog.text
	caplog.clear()
	with imap(dovecot, ZOE):
		pass
	assert "AUTHENTICATE" in caplog.text


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_non_ascii_password_with_ascii_encoding_is_refused_before_sending(dovecot, protocol):
	data = dovecot.account(ZOE, protocol=protocol, ascii_encode_password=True)
	account = account_from_mapping(data, validate=False)
	with pytest.raises(AuthenticationFailed, match="ascii_encode_password"), open_incoming(account):
		pass


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_wrong_password(dovecot, protocol):
	with (
		pytest.raises(AuthenticationFailed) as info,
		open_incoming(settings(dovecot, protocol=protocol, password="wrong-Secret-42")),
	):
		pass
	message = str(info.value)
	assert "app password" in message and ALICE in message
	assert "wrong-Secret-42" not in message


def test_password_never_reaches_the_log(dovecot, caplog):
	caplog.set_level(logging.DEBUG)
	for user in (ALICE, ZOE):
		password = dovecot.users[user].password
		with imap(dovecot, user) as box:
			box.select("INBOX")
		with pytest.raises(AuthenticationFailed), imap(dovecot, user, password=password + "x"):
			pass
		auth = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
		assert caplog.text and password not in caplog.text and auth not in caplog.text


# -- TLS and network failures -----------------------------------------------------------------


@pytest.mark.parametrize(
	("protocol", "security"), [("imap", "ssl"), ("imap", "starttls"), ("pop3", "ssl"), ("pop3", "starttls")]
)
def test_untrusted_certificate(dovecot, protocol, security):
	untrusted = settings(dovecot, protocol=protocol, security=security, ca_file=None)
	with pytest.raises(TLSFailed, match="not trusted") as info, open_incoming(untrusted):
		pass
	assert "validate_ssl_certificate" in str(info.value)
	trusting = settings(
		dovecot, protocol=protocol, security=security, ca_file=None, validate_ssl_certificate=False
	)
	with open_incoming(trusting) as box:
		assert box.capabilities()


def test_ssl_on_a_plain_text_port(dovecot):
	with pytest.raises(TLSFailed, match="STARTTLS"), imap(dovecot, incoming_port=dovecot.imap_port):
		pass


def test_starttls_not_offered(dovecot):
	class NoStartTLS(IMAPClient):
		def has_capability(self, capability):
			return capability != "STARTTLS" and super().has_capability(capability)

	def factory(host, port, use_ssl, context, timeout):
		return NoStartTLS(host, port=port, ssl=use_ssl, ssl_context=context, timeout=timeout)

	account = settings(dovecot, security="starttls")
	with (
		pytest.raises(TLSFailed, match="does not offer STARTTLS"),
		ImapMailbox(account, client_factory=factory),
	):
		pass


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_host_not_found(dovecot, protocol):
	account = settings(dovecot, protocol=protocol, email_server="no-such-host.invalid")
	with pytest.raises(HostNotFound, match=r"no-such-host\.invalid.*Check email_server for typos"):
		with open_incoming(account):
			pass


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_connection_refused(dovecot, protocol):
	account = settings(dovecot, protocol=protocol, incoming_port=closed_port())
	with pytest.raises(ConnectionRefused, match="Check the server name and port"), open_incoming(account):
		pass


def test_server_that_never_greets_times_out(dovecot, flaky_proxy):
	flaky_proxy.stall()
	started = time.monotonic()
	with (
		pytest.raises(ConnectionTimeout, match="within 2 seconds"),
		imap(dovecot, security="plain", incoming_port=flaky_proxy.port, timeout=2),
	):
		pass
	assert time.monotonic() - started < 6


def test_server_that_hangs_mid_session_times_out(dovecot, flaky_proxy):
	box = imap(dovecot, security="starttls", incoming_port=flaky_proxy.port, timeout=2)
	with box:
		box.select("INBOX")
		flaky_proxy.stall()
		started = time.monotonic()
		with pytest.raises(ConnectionTimeout):
			box.search(["ALL"])
		assert time.monotonic() - started < 6


def test_connection_dropped_mid_fetch(mailbox, flaky_proxy):
	uids = mailbox.append_many(ALICE, [make_mail(body="x" * 20_000) for _ in range(10)])
	got = []
	with imap(mailbox, security="plain", incoming_port=flaky_proxy.port) as box:
		box.select("INBOX", readonly=True)
		flaky_proxy.drop_after(50_000)
		with pytest.raises(ConnectionLost, match="next pull"):
			got.extend(uid for uid, _raw in box.iter_raw(uids, batch_size=3))
	assert got == uids[: len(got)] and len(got) < len(uids)


# -- folders ----------------------------------------------------------------------------------


def test_folder_missing(mailbox):
	with imap(mailbox) as box:
		for call in (
			lambda: box.select("Nope"),
			lambda: box.folder_status("Nope"),
			lambda: box.append("Nope", make_mail()),
		):
			with pytest.raises(FolderMissing, match="INBOX") as info:
				call()
			assert "'Nope'" in str(info.value)


def test_server_refusal_carries_the_servers_words(mailbox):
	with imap(mailbox) as box:
		box.select("INBOX")
		with pytest.raises(ServerRefused) as info:
			box.search(["NO-SUCH-KEY"])
	assert info.value.server_text and info.value.server_text in str(info.value)


def test_list_folders_reports_special_use(mailbox):
	mailbox.create_folder(ALICE, "Projects/2026")
	with imap(mailbox) as box:
		folders = {f.name: f for f in box.list_folders()}
	assert folders["Sent"].special_use == "\\Sent"
	assert folders["Trash"].special_use == "\\Trash"
	assert folders["INBOX"].special_use is None
	assert folders["Projects/2026"].delimiter == "/"


def test_find_sent_folder(mailbox):
	mailbox.create_folder(ALICE, "Copies")
	with imap(mailbox) as box:
		assert box.find_sent_folder("Copies") == "Sent"  # SPECIAL-USE wins over the setting


def test_append_to_sent_is_seen(mailbox):
	raw = make_mail(subject="Our reply")
	with imap(mailbox) as box:
		uid = box.append(box.find_sent_folder(None), raw)
	assert "\\Seen" in mailbox.flags(ALICE, "Sent")[uid]
	assert mailbox.messages(ALICE, "Sent")[uid] == crlf(raw)


def test_uidvalidity_change_shows_in_folder_status(mailbox):
	mailbox.append(ALICE, make_mail())
	with imap(mailbox) as box:
		before = box.folder_status("INBOX")
	mailbox.change_uidvalidity(ALICE, "INBOX")
	with imap(mailbox) as box:
		after = box.folder_status("INBOX")
		selected = box.select("INBOX")
	assert after.uidvalidity != before.uidvalidity
	assert selected.uidvalidity == after.uidvalidity and selected.messages == 1


def test_folder_status_and_select(mailbox):
	uids = mailbox.append_many(ALICE, [make_mail() for _ in range(3)])
	mailbox.append(ALICE, make_mail(), flags=("\\Seen",))
	with imap(mailbox) as box:
		status = box.folder_status("INBOX")
		selected = box.select("INBOX", readonly=True)
	assert (status.messages, status.unseen, status.uidnext) == (4, 3, uids[-1] + 2)
	assert (selected.messages, selected.uidnext, selected.uidvalidity) == (
		4,
		status.uidnext,
		status.uidvalidity,
	)


# -- messages ---------------------------------------------------------------------------------


def test_uids_above(mailbox):
	with imap(mailbox) as box:
		box.select("INBOX")
		assert box.uids_above(0) == []
	first, second, third = mailbox.append_many(ALICE, [make_mail() for _ in range(3)])
	fourth = mailbox.append(ALICE, make_mail(), flags=("\\Seen",))
	with imap(mailbox) as box:
		box.select("INBOX")
		assert box.uids_above(0) == [first, second, third, fourth]
		assert box.uids_above(first) == [second, third, fourth]
		assert box.uids_above(fourth) == []  # "n:*" would give back the last message
		assert box.uids_above(fourth + 100) == []
		assert box.uids_above(first, unseen_only=True) == [second, third]
		assert box.search(["UNSEEN"]) == [first, second, third]


def test_iter_raw_in_batches_returns_every_message_intact(mailbox):
	raws = [make_mail(body=f"message {n}\n") for n in range(250)]
	uids = mailbox.append_many(ALICE, raws)
	created = []
	account = settings(mailbox)
	with ImapMailbox(account, client_factory=recording_factory(created)) as box:
		box.select("INBOX")
		got = list(box.iter_raw(reversed(uids), batch_size=100))
	assert [uid for uid, _ in got] == uids
	assert [raw for _, raw in got] == [crlf(raw) for raw in raws]
	assert [len(batch) for batch in created[0].fetches] == [100, 100, 50]


def test_iter_raw_keeps_batches_under_the_byte_limit(mailbox):
	uids = mailbox.append_many(ALICE, [make_mail(body="y" * 30_000) for _ in range(10)])
	created = []
	with ImapMailbox(settings(mailbox), client_factory=recording_factory(created)) as box:
		box.select("INBOX")
		sizes = box.fetch_sizes(uids)
		got = [uid for uid, _ in box.iter_raw(uids, sizes=sizes, max_batch_bytes=100_000)]
	assert got == uids
	body_fetches = created[0].fetches[1:]
	assert len(body_fetches) > 1
	assert all(sum(sizes[u] for u in batch) <= 100_000 for batch in body_fetches)


def test_iter_raw_skips_expunged_uids(mailbox):
	uids = mailbox.append_many(ALICE, [make_mail() for _ in range(3)])
	with imap(mailbox) as box:
		box.select("INBOX")
		assert [uid for uid, _ in box.iter_raw([*uids, uids[-1] + 50])] == uids


def test_fetching_never_sets_seen_and_mark_seen_does(mailbox):
	raws = [make_mail() for _ in range(3)]
	uids = mailbox.append_many(ALICE, raws)
	with imap(mailbox) as box:
		box.select("INBOX")
		assert box.fetch_sizes(uids) == {uid: len(crlf(raw)) for uid, raw in zip(uids, raws, strict=True)}
		assert box.fetch_message_ids(uids) == {
			uid: message_id_of(raw) for uid, raw in zip(uids, raws, strict=True)
		}
		assert box.fetch_headers(uids[0]).startswith(b"From: ")
		assert len(list(box.iter_raw(uids))) == 3
		assert not any("\\Seen" in f for f in mailbox.flags(ALICE).values())
		box.mark_seen(uids[:2])
	flags = mailbox.flags(ALICE)
	assert ["\\Seen" in flags[uid] for uid in uids] == [True, True, False]


def test_fetch_message_ids_without_and_with_folded_ids(mailbox):
	folded = b"Message-ID:\r\n <folded.1@client.test>\r\nSubject: a\r\n\r\nbody\r\n"
	none = b"Subject: no id\r\n\r\nbody\r\n"
	uids = mailbox.append_many(ALICE, [folded, none])
	with imap(mailbox) as box:
		box.select("INBOX", readonly=True)
		assert box.fetch_message_ids(uids) == {uids[0]: "folded.1@client.test", uids[1]: None}


# -- POP3 -------------------------------------------------------------------------------------


def test_pop3_retrieves_identical_bytes_with_stable_uidls(mailbox):
	raws = [
		crlf(make_mail()),
		crlf(make_mail(body=".starts with a dot\n..two dots\n.\nend\n")),
		crlf(make_mail(html="<p>" + "long line " * 500 + "</p>")),
	]
	for raw in raws:
		mailbox.append(ALICE, raw)
	with pop3(mailbox) as box:
		uidls = box.list_uidls()
		assert [n for n, _ in uidls] == [1, 2, 3]
		assert box.sizes() == {n: len(raw) for n, raw in zip((1, 2, 3), raws, strict=True)}
		assert [box.retrieve(n) for n, _ in uidls] == raws
		assert box.top(1, 0) == raws[0].split(b"\r\n\r\n")[0] + b"\r\n\r\n"
	with pop3(mailbox, security="plain") as box:
		assert box.list_uidls() == uidls
	assert len(mailbox.flags(ALICE)) == 3  # nothing deleted
