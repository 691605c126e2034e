"""The copy in the Sent folder, on a real Dovecot: found by SPECIAL-USE \\Sent first, then by name;
created as mail clients do when the mailbox has none (dan and erin start without one; erin's server
also takes CREATE ... (USE (\\Sent)), RFC 6154)."""

from __future__ import annotations

import logging

import pytest

from email_account_app.engine.compose import OutgoingRequest, SiteSettings
from email_account_app.engine.outbox import flush, queue_mail
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.transports.imap import ImapMailbox
from email_account_app.engine.transports.smtp import append_to_sent

from .factory import make_mail, message_id_of

DAN = "dan@example.com"  # no Sent folder, no CREATE-SPECIAL-USE
ERIN = "erin@example.com"  # no Sent folder, CREATE-SPECIAL-USE


@pytest.fixture
def fresh(dovecot):
	for user in (DAN, ERIN, "alice@example.com"):
		dovecot.reset(user)
	return dovecot


def incoming(dovecot, user, **overrides):
	return account_from_mapping(dovecot.account(user, **overrides), name=user.split("@")[0])


def folders(dovecot, user) -> dict[str, tuple[str, ...]]:
	with dovecot.session(user) as client:
		listed = {name: tuple(f.decode() for f in flags) for flags, _d, name in client.list_folders()}
		subscribed = {name for _f, _d, name in client.list_sub_folders()}
	return {name: (*flags, *(["subscribed"] if name in subscribed else [])) for name, flags in listed.items()}


def test_the_fixture_gives_dan_and_erin_no_sent_folder(fresh):
	assert "Sent" not in folders(fresh, DAN) and "Sent" not in folders(fresh, ERIN)
	assert "Sent" in folders(fresh, "alice@example.com")


def test_a_mailbox_without_sent_gets_one_and_the_copy(fresh):
	raws = [make_mail(sender=DAN), make_mail(sender=DAN)]
	with ImapMailbox(incoming(fresh, DAN)) as mailbox:
		assert mailbox.find_sent_folder() is None
		folder = append_to_sent(mailbox, raws[0])
		assert folder == "Sent"
		assert mailbox.find_sent_folder() == "Sent"  # found again, not created twice
		assert append_to_sent(mailbox, raws[1]) == "Sent"
	flags = folders(fresh, DAN)["Sent"]
	assert "\\Sent" in flags and "subscribed" in flags  # Dovecot marks a folder named Sent \Sent
	stored = fresh.messages(DAN, "Sent")
	assert sorted(message_id_of(r) for r in stored.values()) == sorted(message_id_of(r) for r in raws)
	assert all("\\Seen" in f for f in fresh.flags(DAN, "Sent").values())


def test_with_create_special_use_the_folder_is_created_marked_sent(fresh, caplog):
	caplog.set_level(logging.DEBUG)
	with ImapMailbox(incoming(fresh, ERIN)) as mailbox:
		assert "CREATE-SPECIAL-USE" in mailbox.capabilities()
		assert append_to_sent(mailbox, make_mail(sender=ERIN)) == "Sent"
	sent_commands = [r.getMessage() for r in caplog.records if "CREATE" in r.getMessage()]
	assert any("(USE (\\\\Sent))" in line for line in sent_commands), sent_commands
	assert "\\Sent" in folders(fresh, ERIN)["Sent"] and len(fresh.messages(ERIN, "Sent")) == 1


def test_sent_folder_name_is_the_name_of_the_folder_made(fresh):
	with ImapMailbox(incoming(fresh, DAN)) as mailbox:
		assert append_to_sent(mailbox, make_mail(sender=DAN), sent_folder_name="Sent Items") == "Sent Items"
		assert mailbox.find_sent_folder("Sent Items") == "Sent Items"
	assert "subscribed" in folders(fresh, DAN)["Sent Items"]
	assert len(fresh.messages(DAN, "Sent Items")) == 1 and "Sent" not in folders(fresh, DAN)


def test_special_use_comes_before_the_name_and_a_usual_name_before_creating(fresh):
	alice = "alice@example.com"
	fresh.create_folder(alice, "Sent Items")
	with ImapMailbox(incoming(fresh, alice)) as mailbox:
		assert append_to_sent(mailbox, make_mail(sender=alice), sent_folder_name="Sent Items") == "Sent"
	fresh.create_folder(DAN, "Sent Messages")
	with ImapMailbox(incoming(fresh, DAN)) as mailbox:
		assert append_to_sent(mailbox, make_mail(sender=DAN)) == "Sent Messages"
	assert "Sent" not in folders(fresh, DAN)


def test_the_outbox_copies_into_a_sent_folder_it_creates(fresh, smtp_plain, store):
	data = {
		**fresh.account(DAN, security="plain"),
		**smtp_plain.account(DAN),
		"append_emails_to_sent_folder": True,
	}
	account = account_from_mapping(data, name="dan")
	mail = queue_mail(store, account, SiteSettings(), OutgoingRequest(to=("c@client.test",), subject="Hi"))
	report = flush(store, [account])
	assert report.ok and not report.warnings, report.as_dict()
	assert store.get_outgoing(mail.name).extra.get("sent_copy") in (True, 1)
	(copy,) = fresh.messages(DAN, "Sent").values()
	assert message_id_of(copy) == mail.message_id
