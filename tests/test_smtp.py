"""SmtpSender against real SMTP servers (aiosmtpd on loopback), and the Sent folder on Dovecot."""

from __future__ import annotations

import base64
import logging
import socket

import pytest

from email_account_app.engine.connection import check_account
from email_account_app.engine.errors import (
	AuthenticationFailed,
	ConnectionRefused,
	HostNotFound,
	PermanentSendError,
	TemporarySendError,
	TLSFailed,
)
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.transports.imap import ImapMailbox
from email_account_app.engine.transports.smtp import (
	RecipientsDeferred,
	RecipientsRefused,
	SmtpSender,
	append_to_sent,
)

from .factory import make_mail, message_id_of

FROM = "support@example.com"


def account(server, address=FROM, **overrides):
	data = server.account(address, **overrides)
	return account_from_mapping(data, name=data.pop("name", "support"), use_presets=False)


@pytest.mark.parametrize("mode", ["starttls", "ssl", "plain"])
def test_sends_over_each_tls_mode(smtp_servers, mode):
	server = smtp_servers[mode]
	server.reset()
	raw = make_mail(sender=FROM, to="customer@client.test")
	with SmtpSender(account(server)) as sender:
		outcome = sender.send(raw, FROM, ["customer@client.test", "other@client.test"])
	assert outcome.accepted == ("customer@client.test", "other@client.test") and not outcome.refused
	(delivery,) = server.deliveries
	assert delivery.content.replace(b"\r\n", b"\n").rstrip() == raw.rstrip()
	assert delivery.mail_from == FROM and delivery.rcpt_tos == ("customer@client.test", "other@client.test")
	assert delivery.secure is (mode != "plain")
	assert delivery.login == (None if mode == "plain" else FROM)


def test_capabilities_and_the_check_command(smtp_starttls):
	acct = account(smtp_starttls)
	with SmtpSender(acct) as sender:
		caps = sender.capabilities()
		assert sender.max_size == 33554432
	assert "SIZE 33554432" in caps and any(c.startswith("AUTH") for c in caps)
	result = check_account(acct)
	assert result.ok, [p.message for p in result.parts]
	assert result.parts[0].message == f"logged in as {FROM}"


def test_utf8_password(smtp_starttls):
	with SmtpSender(account(smtp_starttls, "zoe@example.com")) as sender:
		assert sender.send(make_mail(), "zoe@example.com", ["c@client.test"]).accepted == ("c@client.test",)
	assert smtp_starttls.deliveries[0].login == "zoe@example.com"


def test_wrong_password_says_what_to_do_and_never_shows_it(smtp_starttls, caplog):
	caplog.set_level(logging.DEBUG)
	secret = "wrong-Pa55word"
	with pytest.raises(AuthenticationFailed) as info:
		SmtpSender(account(smtp_starttls, password=secret)).connect()
	text = str(info.value)
	assert FROM in text and "535" in text and "app password" in text
	assert secret not in text
	encoded = base64.b64encode(f"\0{FROM}\0{secret}".encode()).decode()
	ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("email_account_app"))
	assert secret not in caplog.text and encoded not in caplog.text and secret not in ours
	assert set(smtp_starttls.handler.failed_logins) == {FROM}


def test_no_password_reaches_the_log_on_success(smtp_starttls, caplog, capsys):
	caplog.set_level(logging.DEBUG)
	acct = account(smtp_starttls)
	with SmtpSender(acct) as sender:
		sender.send(make_mail(), FROM, ["c@client.test"])
	captured = capsys.readouterr()
	ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("email_account_app"))
	assert "logged in as" in ours
	encoded = base64.b64encode(f"\0{FROM}\0{acct.password}".encode()).decode()
	for text in (caplog.text, captured.out, captured.err):
		assert acct.password not in text and encoded not in text
	assert "send: " not in captured.err  # no smtplib protocol trace (set_debuglevel stays off)


def test_untrusted_certificate(smtp_starttls):
	with pytest.raises(TLSFailed, match="not trusted"):
		SmtpSender(account(smtp_starttls, ca_file=None)).connect()


def test_ssl_against_a_starttls_port_says_to_check_the_choice(smtp_starttls):
	with pytest.raises((TLSFailed,)) as info:
		SmtpSender(account(smtp_starttls, use_tls=False, use_ssl_for_outgoing=True)).connect()
	assert "465" in str(info.value) and "587" in str(info.value)


def test_starttls_asked_of_a_server_without_it(smtp_plain):
	with pytest.raises(TLSFailed, match="does not offer STARTTLS"):
		SmtpSender(account(smtp_plain, use_tls=True)).connect()


def test_login_asked_of_a_server_that_offers_none(smtp_plain):
	with pytest.raises(AuthenticationFailed, match="no_smtp_authentication"):
		SmtpSender(account(smtp_plain, no_smtp_authentication=False, password="x")).connect()


def test_connection_refused_and_host_not_found(smtp_plain):
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		closed = s.getsockname()[1]
	with pytest.raises(ConnectionRefused):
		SmtpSender(account(smtp_plain, smtp_port=closed)).connect()
	with pytest.raises(HostNotFound):
		SmtpSender(account(smtp_plain, smtp_server="no-such-host.invalid")).connect()


def test_host_not_found_names_the_outgoing_server_setting(smtp_plain):
	# the hint names the setting to fix: the outgoing server, not the incoming one
	with pytest.raises(HostNotFound) as caught:
		SmtpSender(account(smtp_plain, smtp_server="no-such-host.invalid")).connect()
	assert "Check smtp_server for typos" in str(caught.value)
	assert "email_server" not in str(caught.value)


def test_one_session_for_many_messages(smtp_starttls):
	with SmtpSender(account(smtp_starttls)) as sender:
		for n in range(20):
			sender.send(make_mail(subject=f"n{n}"), FROM, [f"c{n}@client.test"])
	assert smtp_starttls.connections == 1
	assert len(smtp_starttls.deliveries) == 20
	assert {d.connection for d in smtp_starttls.deliveries} == {1}


def test_size_limit_is_respected_before_sending(smtp_plain):
	smtp_plain.limit_size(4000)
	big = make_mail(attachments=[("big.bin", b"x" * 5000, "application/octet-stream")])
	with SmtpSender(account(smtp_plain)) as sender:
		assert sender.max_size == 4000
		with pytest.raises(PermanentSendError, match="more than the") as info:
			sender.send(big, FROM, ["c@client.test"])
		assert info.value.smtp_code == 552
		assert sender.send(make_mail(), FROM, ["c@client.test"]).accepted == ("c@client.test",)
	assert len(smtp_plain.deliveries) == 1


def test_refused_recipients_keep_the_servers_words(smtp_plain):
	smtp_plain.refuse("gone@client.test", "550 5.1.1 <gone@client.test>: no such user")
	smtp_plain.refuse("busy@client.test", "450 4.2.1 mailbox busy, try later")
	with SmtpSender(account(smtp_plain)) as sender:
		outcome = sender.send(make_mail(), FROM, ["ok@client.test", "gone@client.test", "busy@client.test"])
	assert outcome.accepted == ("ok@client.test",)
	assert outcome.refused == {
		"gone@client.test": (550, "5.1.1 <gone@client.test>: no such user"),
		"busy@client.test": (450, "4.2.1 mailbox busy, try later"),
	}
	assert smtp_plain.deliveries[0].rcpt_tos == ("ok@client.test",)


def test_every_recipient_refused(smtp_plain):
	smtp_plain.refuse("gone@client.test", "550 5.1.1 no such user")
	smtp_plain.refuse("busy@client.test", "451 4.3.0 try later")
	with SmtpSender(account(smtp_plain)) as sender:
		with pytest.raises(RecipientsRefused) as refused:
			sender.send(make_mail(), FROM, ["gone@client.test"])
		assert isinstance(refused.value, PermanentSendError)
		assert refused.value.refused == {"gone@client.test": (550, "5.1.1 no such user")}
		with pytest.raises(RecipientsDeferred) as deferred:
			sender.send(make_mail(), FROM, ["gone@client.test", "busy@client.test"])
		assert isinstance(deferred.value, TemporarySendError)
		# the session is still good
		assert sender.send(make_mail(), FROM, ["ok@client.test"]).accepted == ("ok@client.test",)
	assert smtp_plain.connections == 1


@pytest.mark.parametrize(
	("reply", "error"),
	[
		("451 4.3.0 local problem, try later", TemporarySendError),
		("554 5.7.1 spam detected", PermanentSendError),
	],
)
def test_message_refused_at_data(smtp_plain, reply, error):
	smtp_plain.answer_data(reply)
	with SmtpSender(account(smtp_plain)) as sender:
		with pytest.raises(error) as info:
			sender.send(make_mail(), FROM, ["c@client.test"])
	assert reply.split(" ", 1)[1] in str(info.value)
	assert info.value.smtp_code == int(reply[:3])


def test_dropped_connection_is_temporary_and_the_next_message_reconnects(smtp_starttls):
	with SmtpSender(account(smtp_starttls)) as sender:
		smtp_starttls.drop_at_data()
		with pytest.raises(TemporarySendError, match=r"closed the connection|lost"):
			sender.send(make_mail(), FROM, ["c@client.test"])
		smtp_starttls.drop_at_data(False)
		assert sender.send(make_mail(), FROM, ["c@client.test"]).accepted == ("c@client.test",)
		assert sender.sessions == 2
	assert smtp_starttls.connections == 2 and len(smtp_starttls.deliveries) == 1


# -- the Sent folder -------------------------------------------------------------------------------


def test_append_to_the_sent_folder_found_by_special_use(dovecot):
	user = "bob@example.com"
	dovecot.reset(user)
	acct = account_from_mapping(dovecot.account(user), name="bob")
	raws = [make_mail(sender=user), make_mail(sender=user)]
	with ImapMailbox(acct) as mailbox:
		folder = append_to_sent(mailbox, raws[0], sent_folder_name="Does Not Exist")
		assert folder == "Sent"
		append_to_sent(mailbox, raws[1], folder=folder)
	stored = dovecot.messages(user, "Sent")
	assert sorted(message_id_of(r) for r in stored.values()) == sorted(message_id_of(r) for r in raws)
	assert all("\\Seen" in flags for flags in dovecot.flags(user, "Sent").values())
	assert dovecot.messages(user, "INBOX") == {}
