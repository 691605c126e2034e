"""How fast a pull is, and how much memory it needs, against a real Dovecot on loopback.

    python3 benchmarks/pull.py [--sizes 2000,20000]

For each size it fills a mailbox with a realistic mix (plain, html, replies, attachments up to
1 MB), then measures in the same run:
  (a) a bare batched imapclient fetch over IMAPS, as real accounts connect, of the same messages (UID FETCH BODY.PEEK[] of 100 at a time),
  (b) the full pull into SQLite (parse, route, store, one transaction per message), in a child
      process so that its peak memory (max RSS) is its own (plus that of its parsing process),
and prints messages per second of both, the ratio b/a, and the pull's peak memory.
Targets: b/a >= 0.25; peak memory at the largest size within 1.2x that at the smallest.
"""

from __future__ import annotations

import argparse
import random
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imapclient import IMAPClient

from tests.dovecot import Dovecot, _find_dovecot
from tests.factory import make_mail

USER = "alice@example.com"
WORDS = "order invoice delivery printer broken help please thanks meeting schedule account refund".split()


def realistic_mix(count: int, seed: int = 7):
	"""Plain 50%, html 25%, replies 15%, with attachments 10% (most small, some up to 1 MB)."""
	rng = random.Random(seed)
	for n in range(count):
		kind = rng.random()
		text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(50, 800)))
		subject = f"{rng.choice(WORDS).title()} {rng.choice(WORDS)} #{n}"
		if kind < 0.5:
			yield make_mail(subject=subject, body=text)
		elif kind < 0.75:
			yield make_mail(
				subject=subject,
				body=text,
				html=f"<html><body><p>{text}</p><p><b>Regards</b></p></body></html>",
			)
		elif kind < 0.9:
			quoted = "\n".join("> " + line for line in text[:2000].split(". "))
			yield make_mail(
				subject=f"Re: {subject}",
				body=f"Thanks!\n\nOn Mon, 2 Nov 2026 at 10:00, Support wrote:\n{quoted}",
				in_reply_to=f"<parent-{n}@example.com>",
				references=f"<root-{n}@example.com> <parent-{n}@example.com>",
			)
		else:
			size = rng.randint(10_000, 200_000) if rng.random() < 0.8 else rng.randint(200_000, 1_000_000)
			yield make_mail(
				subject=subject, body=text, attachments=[("file.pdf", rng.randbytes(size), "application/pdf")]
			)


def fill(server: Dovecot, count: int) -> float:
	server.reset(USER)
	start = time.perf_counter()
	server.append_many(USER, realistic_mix(count))
	return time.perf_counter() - start


def bare_fetch(server: Dovecot) -> tuple[int, float, int]:
	user = server.users[USER]
	start = time.perf_counter()
	fetched = total = 0
	context = ssl.create_default_context(cafile=server.ca_file)
	with IMAPClient(server.host, server.imaps_port, ssl=True, ssl_context=context, timeout=60) as client:
		client.login(user.login, user.password)
		client.select_folder("INBOX", readonly=True)
		uids = client.search(["ALL"])
		for i in range(0, len(uids), 100):
			for data in client.fetch(uids[i : i + 100], [b"BODY.PEEK[]"]).values():
				total += len(data[b"BODY[]"])
				fetched += 1
	return fetched, time.perf_counter() - start, total


CHILD = """
import json, resource, sys, time
from email_account_app.engine.settings import account_from_mapping
from email_account_app.engine.jobs import pull as pull_account
from email_account_app.sqlite_store import SQLiteStore
config = json.loads(sys.argv[1])
account = account_from_mapping(config["account"], name="bench")
store = SQLiteStore(config["db"])
start = time.perf_counter()
report = pull_account(account, store)
seconds = time.perf_counter() - start
# the pull's own peak, and its parsing process's (reaped when the pull ended), in KiB
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": seconds, "own_kb": own, "worker_kb": worker, **report.as_dict()}))
"""


def full_pull(server: Dovecot, workdir: Path) -> dict:
	import json

	db = workdir / f"pull-{time.monotonic_ns()}.sqlite3"
	account = server.account(USER, security="ssl", email_sync_option="ALL", initial_sync_count=0, timeout=60)
	proc = subprocess.Popen(
		[sys.executable, "-c", CHILD, json.dumps({"account": account, "db": str(db)})],
		stdout=subprocess.PIPE,
		cwd=ROOT,
	)
	out, _ = proc.communicate()
	if proc.returncode != 0:
		raise SystemExit(f"the pull failed with exit code {proc.returncode}")
	result = json.loads(out)
	# peak memory of the pull: its own process plus its parsing process (a sum of two peaks: an upper bound)
	result["peak_mb"] = (result["own_kb"] + result["worker_kb"]) / 1024
	result["db_mb"] = db.stat().st_size / 1024 / 1024
	return result


def main() -> None:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	parser.add_argument("--sizes", default="2000,20000", help="mailbox sizes, comma separated")
	args = parser.parse_args()
	sizes = [int(s) for s in args.sizes.split(",")]
	binary = _find_dovecot()
	if binary is None:
		raise SystemExit("dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)")
	server = Dovecot(binary)
	server.start()
	rows = []
	try:
		with tempfile.TemporaryDirectory(prefix="email-sync-bench-") as tmp:
			for size in sizes:
				filled = fill(server, size)
				# the bare fetch before and after the pull, averaged: its rate varies from run to run
				count, before, total = bare_fetch(server)
				pull = full_pull(server, Path(tmp))
				_, after, _ = bare_fetch(server)
				bare_seconds = (before + after) / 2
				assert pull["stored"] == size, pull
				row = {
					"size": size,
					"mailbox_mb": total / 1024 / 1024,
					"fill_s": filled,
					"bare_rate": count / bare_seconds,
					"pull_rate": pull["stored"] / pull["seconds"],
					"peak_mb": pull["peak_mb"],
					"db_mb": pull["db_mb"],
				}
				row["ratio"] = row["pull_rate"] / row["bare_rate"]
				rows.append(row)
				print(
					f"{size:>6} messages ({row['mailbox_mb']:.0f} MB): bare fetch {row['bare_rate']:7.0f} msg/s | "
					f"full pull {row['pull_rate']:6.0f} msg/s | ratio b/a {row['ratio']:.2f} | "
					f"pull peak memory {row['peak_mb']:.0f} MB | SQLite {row['db_mb']:.0f} MB",
					flush=True,
				)
	finally:
		server.stop()
		server.cleanup()
	small, large = rows[0], rows[-1]
	print()
	ratios = ", ".join(f"{r['ratio']:.2f} at {r['size']}" for r in rows)
	print(f"ratio b/a: {ratios} (target >= 0.25)")
	if len(rows) > 1:
		growth = large["peak_mb"] / small["peak_mb"]
		print(
			f"peak memory {large['size']} vs {small['size']}: {large['peak_mb']:.0f} MB / {small['peak_mb']:.0f} MB"
			f" = {growth:.2f}x (target <= 1.2x)"
		)


if __name__ == "__main__":
	main()
