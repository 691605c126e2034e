"""How much one reused SMTP session gains over one session per message.

    python3 benchmarks/send.py [--count 500] [--max-seconds 60]

Starts an aiosmtpd server in-process on loopback with STARTTLS and AUTH (as a real submission
server on port 587 is), composes ``--count`` realistic messages (text + html, signature, some
with an attachment), then measures in the same run:
  (a) one session for all of them (SmtpSender reused, as ``flush`` does per account),
  (b) one session per message (connect, EHLO, STARTTLS, EHLO, AUTH, send, QUIT each time),
  (c) the whole outbox: queue_mail into SQLite, then flush (one transaction per state change),
and prints messages per second of each and the ratio a/b. Each part stops after a third of
``--max-seconds`` and is measured on what it sent by then.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

# aiosmtpd's own deprecation notice, once per login of the test server
warnings.filterwarnings("ignore", message="Session.login_data")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trustme

from email_account_app.engine.compose import (
	OutgoingAttachment,
	OutgoingRequest,
	SiteSettings,
	compose,
)
from email_account_app.engine.outbox import flush, queue_mail
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.transports.smtp import SmtpSender
from email_account_app.sqlite_store import SQLiteStore
from tests.smtp_server import SmtpServer

WORDS = "order invoice delivery printer broken help please thanks meeting schedule account refund".split()
SITE = SiteSettings(base_url="https://erp.example.com", secret="bench-secret")


def requests(count: int, seed: int = 7):
	rng = random.Random(seed)
	for n in range(count):
		text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(50, 600)))
		attachments = ()
		if rng.random() < 0.1:
			attachments = (OutgoingAttachment(f"file{n}.pdf", rng.randbytes(rng.randint(10_000, 200_000))),)
		yield OutgoingRequest(
			to=(f"Customer {n} <customer{n}@client.test>",),
			subject=f"{rng.choice(WORDS).title()} {rng.choice(WORDS)} #{n}",
			text=text,
			html=f"<p>{text}</p><p><b>Regards</b></p>",
			attachments=attachments,
		)


def rate(done: int, seconds: float) -> float:
	return done / seconds if seconds else float("inf")


def main() -> None:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	parser.add_argument("--count", type=int, default=500)
	parser.add_argument("--max-seconds", type=float, default=60.0)
	args = parser.parse_args()
	budget = args.max_seconds / 3

	directory = Path(tempfile.mkdtemp(prefix="email-sync-bench-send-"))
	ca = trustme.CA()
	ca_file = str(directory / "ca.pem")
	ca.cert_pem.write_to_path(ca_file)
	server = SmtpServer("starttls", ca, ca_file, owns=directory)
	try:
		account = account_from_mapping(
			server.account(add_signature=True, signature="<p>Best regards,<br>Support</p>"),
			name="support",
			use_presets=False,
		)
		mails = [compose(r, account, SITE) for r in requests(args.count)]
		total_bytes = sum(len(m.raw) for m in mails)
		print(
			f"{args.count} messages, {total_bytes / 1024 / 1024:.1f} MB in all, "
			f"STARTTLS + AUTH on {server.host}:{server.port}"
		)

		server.reset()
		start, done = time.perf_counter(), 0
		with SmtpSender(account) as sender:
			for mail in mails:
				sender.send(mail.raw, mail.envelope_from, mail.recipients)
				done += 1
				if time.perf_counter() - start > budget:
					break
		reused = rate(done, time.perf_counter() - start)
		reused_connections = server.connections
		print(
			f"(a) one session:           {reused:8.1f} msg/s  ({done} sent, {reused_connections} connection)"
		)

		server.reset()
		start, done = time.perf_counter(), 0
		for mail in mails:
			with SmtpSender(account) as sender:
				sender.send(mail.raw, mail.envelope_from, mail.recipients)
			done += 1
			if time.perf_counter() - start > budget:
				break
		single = rate(done, time.perf_counter() - start)
		print(
			f"(b) a session per message: {single:8.1f} msg/s  ({done} sent, {server.connections} connections)"
		)

		server.reset()
		store = SQLiteStore(directory / "outbox.sqlite3")
		start, done = time.perf_counter(), 0
		for request in requests(args.count):
			queue_mail(store, account, SITE, request)
			done += 1
			if time.perf_counter() - start > budget / 2:
				break
		report = flush(store, [account])
		whole = rate(len(report.mails), time.perf_counter() - start)
		store.close()
		print(
			f"(c) queue + flush (SQLite): {whole:6.1f} msg/s  ({report.count('Sent')} sent, "
			f"{server.connections} connection)"
		)
		print(f"ratio a/b: {reused / single:.1f}x")
	finally:
		server.stop()


if __name__ == "__main__":
	main()
