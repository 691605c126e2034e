"""Core's receive() against the app's, on one mailbox, in one run on a Frappe bench.

    cd frappe-bench
    ./env/bin/python apps/email_account_app/benchmarks/bench_pull.py --site SITE [--count 2000]

Runs on a bench where the app is installed (``--sites-path`` defaults to ./sites); it connects to
the site itself, since ``bench execute`` cannot import benchmarks/. It starts a real Dovecot on
loopback (the repository's tests/dovecot.py), fills one mailbox with ``--count`` messages of
benchmarks/pull.py's realistic mix, creates core's Email Account for it (plain IMAP, sync option
ALL, appending to a small test DocType with email settings) and measures, one after the other:

  (a) core's own receive: ``frappe.email.doctype.email_account.email_account.EmailAccount.receive``
      called on the document. Core reads at most 100 messages per folder per call and goes on from
      the highest UID it holds, so it is called again (on a freshly loaded document, as its
      scheduler does) until a call imports nothing new;
  (b) the app's receive (``doc.receive()``, the engine's pull), called the same way.

Between the two, everything core imported is deleted and core's positions reset (IMAP Folder
UIDVALIDITY/UIDNEXT, the account's UIDNEXT), so the app reads the whole mailbox too. The
account's Initial Sync Count is set past the mailbox's size (in the database: the form offers 100,
250 and 500) so that both read every message, from the first. "Imported" is the number of
received Communications of the account; the rate is that over the seconds spent inside receive
calls (every call, the last empty one included). Everything the script created is removed at the
end, also when it fails. Not run by CI: it needs a bench, and it measures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import frappe
from frappe.email.doctype.email_account.email_account import EmailAccount as CoreEmailAccount

from benchmarks.pull import USER, realistic_mix
from email_account_app.tests.utils import (
	TEST_DOCTYPE,
	create_test_doctype,
	dovecot_settings,
	drop_test_doctype,
	start_dovecot,
)

ACCOUNT = "Bench Pull Benchmark"


def imported(account: str) -> int:
	return frappe.db.count(
		"Communication",
		{"email_account": account, "sent_or_received": "Received", "communication_medium": "Email"},
	)


def receive_until_done(account: str, receive) -> dict:
	"""Call ``receive(doc)`` on a freshly loaded account until a call imports nothing new."""
	calls = errors = 0
	seconds = 0.0
	before = imported(account)
	while True:
		frappe.db.commit()
		doc = frappe.get_doc("Email Account", account)
		count = imported(account)
		start = time.perf_counter()
		try:
			receive(doc)
		except Exception:  # core raises the tracebacks of the messages it could not import, at the end
			errors += 1
			frappe.db.rollback()
		seconds += time.perf_counter() - start
		calls += 1
		frappe.db.commit()
		new = imported(account) - count
		print(f"  call {calls}: {new} imported", flush=True)
		if new == 0:
			break
	total = imported(account) - before
	return {"imported": total, "seconds": seconds, "calls": calls, "errors": errors, "rate": total / seconds}


def create_account(server) -> None:
	data = dovecot_settings(server, USER, email_sync_option="ALL")
	data["imap_folder"] = [{"folder_name": "INBOX", "append_to": TEST_DOCTYPE}]
	doc = frappe.get_doc({"doctype": "Email Account", "email_account_name": ACCOUNT, **data})
	doc.flags.ignore_connection_check = True  # no pull queued on save: the script pulls itself
	doc.insert(ignore_permissions=True)
	frappe.db.set_value("Email Account", ACCOUNT, "initial_sync_count", "10000")
	frappe.db.commit()


def clear(account: str, *, delete_account: bool = False) -> None:
	"""Delete what a receive imported for ``account`` and reset core's and the app's positions."""
	frappe.db.rollback()
	comms = frappe.get_all(
		"Communication",
		filters={"email_account": account},
		fields=["name", "reference_doctype", "reference_name"],
	)
	names = [c.name for c in comms]
	documents = {(c.reference_doctype, c.reference_name) for c in comms if c.reference_name}
	documents |= {
		(row.reference_doctype, row.reference_name)
		for row in frappe.get_all(
			"Email Message Log",
			filters={"account": account, "reference_name": ("is", "set")},
			fields=["reference_doctype", "reference_name"],
		)
	}
	files = frappe.get_all(
		"File", filters={"attached_to_doctype": "Communication", "attached_to_name": ("in", names or [""])}
	)
	logs = frappe.get_all("Email Message Log", filters={"account": account}, pluck="name")
	if logs:
		files += frappe.get_all(
			"File", filters={"attached_to_doctype": "Email Message Log", "attached_to_name": ("in", logs)}
		)
	for row in files:  # File.on_trash removes the file on disk too
		if frappe.db.exists("File", row.name):
			frappe.delete_doc("File", row.name, ignore_permissions=True, force=True)
	for doctype, name in documents:
		if doctype == TEST_DOCTYPE and frappe.db.table_exists(doctype):
			frappe.db.delete(doctype, {"name": name})
	if names:
		frappe.db.delete("Communication Link", {"parent": ("in", names)})
		frappe.db.delete("Communication", {"name": ("in", names)})
	for doctype in ("Email Message Log", "Email Folder Cursor", "Email Sync Auto Reply"):
		frappe.db.delete(doctype, {"account": account})
	frappe.db.delete("Unhandled Email", {"email_account": account})
	for name in frappe.get_all("Email Queue", filters={"email_account": account}, pluck="name"):
		frappe.db.delete("Email Queue Recipient", {"parent": name})
		frappe.db.delete("Email Queue", {"name": name})
	if delete_account:
		frappe.db.delete("IMAP Folder", {"parent": account, "parenttype": "Email Account"})
		frappe.db.delete("Email Account", {"name": account})
	else:
		frappe.db.sql(
			"UPDATE `tabIMAP Folder` SET uidvalidity=NULL, uidnext=0 WHERE parenttype='Email Account' AND parent=%s",
			account,
		)
		frappe.db.set_value("Email Account", account, {"uidnext": 0, "uidvalidity": None})
	frappe.db.commit()


def main() -> None:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	parser.add_argument("--site", required=True)
	parser.add_argument(
		"--sites-path", default="./sites", help="the bench's sites directory (default ./sites)"
	)
	parser.add_argument("--count", type=int, default=2000, help="messages in the mailbox (default 2000)")
	args = parser.parse_args()
	sites_path = os.path.abspath(args.sites_path)
	os.chdir(sites_path)  # as bench does: logs and relative paths of the site
	frappe.init(site=args.site, sites_path=sites_path)
	frappe.connect()
	if "email_account_app" not in frappe.get_installed_apps():
		raise SystemExit(
			f"email_account_app is not installed on {args.site}: bench --site {args.site} install-app email_account_app"
		)
	if frappe.db.exists("Email Account", ACCOUNT):
		raise SystemExit(
			f"an Email Account {ACCOUNT!r} exists already (a run cut short?): delete it and run again"
		)
	made_doctype = not frappe.db.exists("DocType", TEST_DOCTYPE)
	server = start_dovecot()
	account_made = False
	try:
		server.reset(USER)
		start = time.perf_counter()
		server.append_many(USER, realistic_mix(args.count))
		print(f"mailbox filled: {args.count} messages in {time.perf_counter() - start:.0f} s", flush=True)
		create_test_doctype()
		create_account(server)
		account_made = True

		print("(a) core's receive()", flush=True)
		core = receive_until_done(ACCOUNT, CoreEmailAccount.receive)
		clear(ACCOUNT)
		print("(b) the app's receive()", flush=True)
		app = receive_until_done(ACCOUNT, lambda doc: doc.receive())
	finally:
		try:
			if account_made:
				clear(ACCOUNT, delete_account=True)
			if made_doctype:
				drop_test_doctype()
		finally:
			server.stop()
			server.cleanup()
			frappe.destroy()

	print()
	print(f"{args.count} mixed messages, one mailbox, one run, on {args.site}:")
	for label, row in (("(a) core receive()", core), ("(b) app receive()", app)):
		print(
			f"{label:20} {row['imported']:>6} imported in {row['seconds']:7.1f} s "
			f"({row['calls']} calls, {row['errors']} failed) = {row['rate']:6.1f} msg/s",
		)
	print(f"ratio app/core (in-call rate): {app['rate'] / core['rate']:.2f}")


if __name__ == "__main__":
	main()
