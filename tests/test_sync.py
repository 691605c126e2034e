"""The pull, end to end, against the real Dovecot of the test suite."""

from __future__ import annotations

import dataclasses

import pytest

from email_account_app.engine.jobs import pull as pull_account
from email_account_app.engine.settings import account_from_mapping

from .factory import make_mail, message_id_of

USER = "alice@example.com"


@pytest.fixture
def fresh(dovecot):
	dovecot.reset(USER)
	return dovecot


def account(dovecot, user=USER, **overrides):
	data = dovecot.account(user)
	data.update(overrides)
	return account_from_mapping(data, name=overrides.pop("name", None) or user.split("@")[0])


def received_ids(store, account_name=None):
	rows = store.rows("SELECT account, message_id FROM communications WHERE sent_or_received='Received'")
	return [r["message_id"] for r in rows if account_name in (None, r["account"])]


def flags_of(dovecot, user, folder="INBOX"):
	return dovecot.flags(user, folder)


def test_first_pull_all_then_only_new(fresh, store):
	raws = [make_mail() for _ in range(5)]
	for raw in raws:
		fresh.append(USER, raw)
	acct = account(fresh, email_sync_option="ALL")
	report = pull_account(acct, store)
	assert (report.fetched, report.stored, report.failed, report.error) == (5, 5, 0, None)
	assert sorted(received_ids(store)) == sorted(message_id_of(r) for r in raws)

	again = pull_account(acct, store)
	assert again.fetched == 0 and again.stored == 0

	fresh.append(USER, make_mail())
	third = pull_account(acct, store)
	assert (third.fetched, third.stored) == (1, 1)
	assert store.count("communications") == 6


def test_initial_sync_count_takes_the_newest(fresh, store):
	raws = [make_mail(subject=f"n{i}") for i in range(10)]
	for raw in raws:
		fresh.append(USER, raw)
	report = pull_account(account(fresh, email_sync_option="ALL", initial_sync_count=3), store)
	assert report.stored == 3
	assert sorted(received_ids(store)) == sorted(message_id_of(r) for r in raws[-3:])
	# the older ones are not pulled later either: the cursor starts at the newest
	assert pull_account(account(fresh, email_sync_option="ALL", initial_sync_count=3), store).fetched == 0


def test_all_mode_never_marks_read(fresh, store):
	fresh.append(USER, make_mail())
	pull_account(account(fresh, email_sync_option="ALL"), store)
	assert all("\\Seen" not in f for f in flags_of(fresh, USER).values())


def test_unseen_mode_pulls_unseen_and_marks_them_read_after_commit(fresh, store):
	seen = make_mail(subject="already read")
	unseen = make_mail(subject="new one")
	fresh.append(USER, seen, flags=("\\Seen",))
	fresh.append(USER, unseen)
	report = pull_account(account(fresh, email_sync_option="UNSEEN"), store)
	assert report.stored == 1
	assert received_ids(store) == [message_id_of(unseen)]
	assert all("\\Seen" in f for f in flags_of(fresh, USER).values())
	# a new unseen message later; an old one marked unread again is not pulled twice
	fresh.append(USER, make_mail(subject="later"))
	assert pull_account(account(fresh, email_sync_option="UNSEEN"), store).stored == 1


def test_a_pull_flags_what_a_crashed_pull_committed_but_did_not_flag(fresh, store):
	raws = [make_mail(subject=f"m{n}") for n in range(5)]
	uids = fresh.append_many(USER, raws)
	acct = account(fresh, email_sync_option="UNSEEN")
	assert pull_account(acct, store).stored == 5
	# as if the pull had died between its commits and its flags: none flagged, the cursor says so,
	# and one message (the third) never committed
	with fresh.session(USER) as client:
		client.select_folder("INBOX")
		client.remove_flags(uids, ["\\Seen"])
	cursor = store.get_cursor(acct.name, "INBOX")
	store.set_cursor(acct.name, "INBOX", dataclasses.replace(cursor, seen_uid=0))
	store.db.execute("DELETE FROM communications WHERE uid=?", (str(uids[2]),))
	assert store.known_uids(acct.name, "INBOX", cursor.uidvalidity, among=[str(u) for u in uids[1:3]]) == {
		str(uids[1])
	}

	assert pull_account(acct, store).fetched == 0
	flags = flags_of(fresh, USER)
	assert [("\\Seen" in flags[uid]) for uid in uids] == [True, True, False, True, True]
	assert store.get_cursor(acct.name, "INBOX").seen_uid == cursor.last_uid


def test_folders_each_with_their_append_to(fresh, store):
	fresh.create_folder(USER, "Jobs")
	fresh.append(USER, make_mail(subject="My printer is broken"))
	fresh.append(USER, make_mail(subject="Application: developer"), folder="Jobs")
	acct = account(
		fresh,
		email_sync_option="ALL",
		append_to="Issue",
		folders=[{"folder_name": "INBOX"}, {"folder_name": "Jobs", "append_to": "Job Applicant"}],
	)
	report = pull_account(acct, store, keep_messages=True)
	assert report.stored == 2 and report.created == 2
	docs = {r["doctype"]: r for r in store.rows("SELECT * FROM documents")}
	assert docs["Issue"]["subject"] == "My printer is broken"
	assert docs["Issue"]["sender"] == "customer@client.test"
	assert docs["Issue"]["status"] == "Open"
	assert docs["Job Applicant"]["sender_name"] == "Customer One"


def test_missing_folder_is_a_clear_error(fresh, store):
	report = pull_account(account(fresh, folders=[{"folder_name": "Nope"}]), store)
	assert report.error and "Nope" in report.error
	assert report.error_title == "Folder not found"


def test_attachment_limit_drops_big_attachments_with_a_note(fresh, store):
	big = b"x" * (2 * 1024 * 1024)
	small = b"y" * 1000
	fresh.append(
		USER,
		make_mail(
			attachments=[("big.bin", big, "application/octet-stream"), ("small.txt", small, "text/plain")]
		),
	)
	report = pull_account(account(fresh, email_sync_option="ALL", attachment_limit=1), store)
	assert report.stored == 1
	rows = {r["filename"]: r for r in store.rows("SELECT * FROM attachments")}
	assert rows["small.txt"]["content"] == small
	assert rows["big.bin"]["content"] is None and "limit" in rows["big.bin"]["dropped_reason"]


def test_oversized_message_is_never_pulled_whole(fresh, store):
	huge = b"z" * (3 * 1024 * 1024)
	fresh.append(
		USER, make_mail(subject="huge", attachments=[("huge.bin", huge, "application/octet-stream")])
	)
	# a limit of 0.25 MB per attachment makes a message over ~2 MB too big to download
	report = pull_account(account(fresh, email_sync_option="ALL", attachment_limit=0.25), store)
	assert report.stored == 1
	row = store.rows("SELECT subject, text_content FROM communications")[0]
	assert row["subject"] == "huge" and "only its headers" in row["text_content"]


def test_uidvalidity_change_resyncs_without_duplicates(fresh, store):
	raws = [make_mail() for _ in range(4)]
	for raw in raws:
		fresh.append(USER, raw)
	acct = account(fresh, email_sync_option="ALL")
	assert pull_account(acct, store).stored == 4
	fresh.change_uidvalidity(USER, "INBOX")
	fresh.append(USER, make_mail(subject="arrived after the change"))
	report = pull_account(acct, store)
	assert report.stored == 1 and report.duplicates == 0
	assert store.count("communications") == 5
	assert len(set(received_ids(store))) == 5


def test_same_mail_to_two_accounts_is_stored_once_per_account(fresh, store):
	fresh.reset("bob@example.com")
	raw = make_mail(to="alice@example.com, bob@example.com")
	fresh.append(USER, raw)
	fresh.append("bob@example.com", raw)
	a = account(fresh, email_sync_option="ALL", name="alice")
	b = account(fresh, "bob@example.com", email_sync_option="ALL", name="bob")
	assert pull_account(a, store).stored == 1
	assert pull_account(b, store).stored == 1
	assert pull_account(a, store).stored == 0
	assert sorted(r["account"] for r in store.rows("SELECT account FROM communications")) == ["alice", "bob"]


def test_the_same_message_twice_in_a_folder_is_stored_once(fresh, store):
	raw = make_mail()
	fresh.append(USER, raw)
	fresh.append(USER, raw)
	report = pull_account(account(fresh, email_sync_option="ALL"), store)
	assert (report.stored, report.duplicates) == (1, 1)


def test_pop3_pulls_by_uidl_and_deletes_nothing(fresh, store):
	raws = [make_mail() for _ in range(3)]
	for raw in raws:
		fresh.append(USER, raw)
	acct = account_from_mapping(fresh.account(USER, protocol="pop3"), name="alice-pop")
	assert not acct.use_imap
	report = pull_account(acct, store)
	assert (report.stored, report.error) == (3, None)
	assert pull_account(acct, store).fetched == 0
	fresh.append(USER, make_mail())
	assert pull_account(acct, store).stored == 1
	assert len(flags_of(fresh, USER)) == 4  # nothing deleted on the server


def test_pop3_initial_sync_count(fresh, store):
	for _ in range(5):
		fresh.append(USER, make_mail())
	acct = account_from_mapping({**fresh.account(USER, protocol="pop3"), "initial_sync_count": 2}, name="p")
	assert pull_account(acct, store).stored == 2
	assert pull_account(acct, store).fetched == 0


def test_wrong_password_is_a_clear_error_without_the_password(fresh, store):
	report = pull_account(account(fresh, password="not-the-password-123"), store)
	assert report.error_title == "Login failed"
	assert "not-the-password-123" not in report.error
	assert store.count("communications") == 0


def test_untrusted_certificate_is_refused_unless_validation_is_off(fresh, store):
	fresh.append(USER, make_mail())
	acct = account(fresh, ca_file=None, email_sync_option="ALL")
	report = pull_account(acct, store)
	assert report.error_title == "Secure connection failed"
	trusting = dataclasses.replace(acct, validate_ssl_certificate=False)
	assert pull_account(trusting, store).stored == 1


def test_a_message_that_fails_is_kept_with_its_error_and_the_pull_goes_on(fresh, store, monkeypatch):
	from email_account_app.engine import routing

	raws = [make_mail(subject=s) for s in ("fine 1", "explode", "fine 2")]
	for raw in raws:
		fresh.append(USER, raw)
	original = routing.Router.decide

	def decide(self, message, folder):
		if message.subject == "explode":
			raise RuntimeError("boom")
		return original(self, message, folder)

	monkeypatch.setattr(routing.Router, "decide", decide)
	report = pull_account(account(fresh, email_sync_option="ALL"), store)
	assert (report.stored, report.failed) == (2, 1)
	failure = store.rows("SELECT * FROM failures")[0]
	assert failure["raw"] == raws[1].replace(b"\n", b"\r\n") or b"explode" in failure["raw"]
	assert "boom" in failure["error"]
	monkeypatch.setattr(routing.Router, "decide", original)
	assert pull_account(account(fresh, email_sync_option="ALL"), store).fetched == 0


def test_dry_run_writes_nothing(fresh, store):
	fresh.append(USER, make_mail())
	report = pull_account(account(fresh, email_sync_option="UNSEEN", append_to="Issue"), store, dry_run=True)
	assert report.fetched == 1 and report.messages[0].action == "created"
	assert store.count("communications") == 0 and store.count("documents") == 0
	assert store.get_cursor("alice", "INBOX") is None
	assert all("\\Seen" not in f for f in flags_of(fresh, USER).values())
