import pytest

from email_account_app.engine.errors import ConfigError
from email_account_app.engine.presets import presets, provider_for
from email_account_app.engine.settings import (
	account_from_mapping,
	check_defaults,
	domain_from_mapping,
)


def base(**kw):
	data = {
		"email_id": "support@example.com",
		"password": "secret",
		"enable_incoming": True,
		"email_server": "mail.example.com",
	}
	data.update(kw)
	return data


def test_defaults_and_derived_values():
	a = account_from_mapping(base(), name="support")
	assert a.name == "support"
	assert a.login == "support@example.com"
	assert a.port == 993 and a.use_ssl and a.validate_ssl_certificate
	assert a.email_sync_option == "UNSEEN"
	assert [f.folder_name for f in a.sync_folders] == ["INBOX"]
	assert a.attachment_limit_bytes == 25 * 1024 * 1024
	assert "secret" not in repr(a)


def test_login_id_and_ports():
	a = account_from_mapping(base(login_id="u123", use_ssl=False, use_starttls=True))
	assert a.login == "u123" and a.port == 143
	p = account_from_mapping(base(use_imap=0, use_ssl=1))
	assert p.port == 995
	assert account_from_mapping(base(use_imap="false", use_ssl="no")).port == 110


def test_values_from_a_doctype_dict_are_coerced():
	a = account_from_mapping(
		base(
			incoming_port="1993",
			initial_sync_count="100",
			attachment_limit="10",
			use_imap=1,
			doctype="Email Account",
			owner="Administrator",
			docstatus=0,
			imap_folder=[
				{"folder_name": "INBOX", "append_to": "Issue"},
				{"folder_name": "Jobs", "append_to": "Job Applicant"},
			],
		)
	)
	assert a.incoming_port == 1993 and a.initial_sync_count == 100 and a.attachment_limit == 10.0
	assert [(f.folder_name, f.append_to) for f in a.sync_folders] == [
		("INBOX", "Issue"),
		("Jobs", "Job Applicant"),
	]


@pytest.mark.parametrize(
	"overrides, words",
	[
		({"email_server": None}, "email_server is not set"),
		({"incoming_port": 70000}, "out of range"),
		({"use_ssl": True, "use_starttls": True}, "both set"),
		({"email_sync_option": "SOME"}, "ALL or UNSEEN"),
		({"initial_sync_count": -1}, "cannot be negative"),
		({"attachment_limit": -3}, "cannot be negative"),
		({"email_id": "not an address"}, "is not an email address"),
		({"password": None}, "no password"),
		({"incoming_port": "abc"}, "must be a number"),
		({"use_ssl": "maybe"}, "true or false"),
		({"surprise": 1}, "unknown setting"),
		({"notify_if_unreplied": True}, "send_notification_to"),
		({"enable_outgoing": True}, "smtp_server is not set"),
		({"enable_auto_reply": True}, "auto_reply_message is empty"),
		({"ascii_encode_password": True, "password": "pässword"}, "not ASCII"),
		({"use_imap": False, "folders": ["Archive"]}, "POP3 reads only the inbox"),
	],
)
def test_validation_messages(overrides, words):
	with pytest.raises(ConfigError) as info:
		account_from_mapping(base(**overrides), name="acct")
	assert words in str(info.value)
	assert "acct" in str(info.value)


def test_awaiting_password_needs_no_password():
	a = account_from_mapping(base(password=None, awaiting_password=True))
	assert a.awaiting_password and not a.password


def test_missing_email_id():
	with pytest.raises(ConfigError, match="email_id"):
		account_from_mapping({"enable_incoming": True})


@pytest.mark.parametrize(
	"address, server",
	[
		("a@gmail.com", "imap.gmail.com"),
		("a@googlemail.com", "imap.gmail.com"),
		("a@hotmail.com", "outlook.office365.com"),
		("a@outlook.com", "outlook.office365.com"),
		("a@live.com", "outlook.office365.com"),
		("a@yahoo.com", "imap.mail.yahoo.com"),
		("a@icloud.com", "imap.mail.me.com"),
		("a@zoho.com", "imap.zoho.com"),
		("a@yandex.ru", "imap.yandex.com"),
		("a@fastmail.com", "imap.fastmail.com"),
		("a@gmx.net", "imap.gmx.com"),
		("a@aol.com", "imap.aol.com"),
	],
)
def test_presets_fill_servers(address, server):
	a = account_from_mapping(
		{"email_id": address, "password": "x", "enable_incoming": True, "enable_outgoing": True}
	)
	assert a.email_server == server
	assert a.smtp_server and a.port == 993
	assert provider_for(address) is not None


def test_every_preset_is_complete():
	for name, preset in presets().items():
		for key in ("domains", "email_server", "smtp_server", "incoming_port", "smtp_port"):
			assert key in preset, (name, key)


def test_configured_domain_overrides_preset_and_account_overrides_domain():
	domain = domain_from_mapping(
		{"email_server": "imap.corp.test", "smtp_server": "smtp.corp.test", "smtp_port": 2525}, "Gmail.com"
	)
	assert domain.domain_name == "gmail.com"
	a = account_from_mapping(
		{"email_id": "x@gmail.com", "password": "p", "enable_incoming": 1}, domains=[domain]
	)
	assert a.email_server == "imap.corp.test" and a.smtp_port == 2525 and a.domain == "gmail.com"
	b = account_from_mapping(
		{"email_id": "x@gmail.com", "password": "p", "enable_incoming": 1, "email_server": "own.test"},
		domains=[domain],
	)
	assert b.email_server == "own.test"


def test_domain_named_explicitly():
	domain = domain_from_mapping({"domain_name": "corp.test", "email_server": "imap.corp.test"})
	a = account_from_mapping(
		{"email_id": "x@other.test", "domain": "corp.test", "password": "p", "enable_incoming": 1},
		domains={"corp.test": domain},
	)
	assert a.email_server == "imap.corp.test"


def test_one_default_each():
	a = account_from_mapping(base(default_incoming=True), name="a")
	b = account_from_mapping(base(default_incoming=True), name="b")
	c = account_from_mapping(base(enable_automatic_linking=True), name="c")
	d = account_from_mapping(base(enable_automatic_linking=True), name="d")
	check_defaults([a, c])
	with pytest.raises(ConfigError, match="default incoming"):
		check_defaults([a, b])
	with pytest.raises(ConfigError, match="enable_automatic_linking"):
		check_defaults([c, d])
