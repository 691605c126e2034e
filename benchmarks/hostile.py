"""What hostile mail costs a pull, against ordinary mail, through a real Dovecot on loopback.

    python3 benchmarks/hostile.py [--count 3000]

Fills a mailbox with COUNT ordinary messages (the realistic mix of benchmarks/pull.py), pulls them
into SQLite, then does the same with COUNT hostile ones (tests/hostile_mail.py: huge and quadratic
headers, deep and wide MIME trees, huge and deeply nested HTML, huge bodies, binary garbage, NULs,
broken encoded words...; one in a hundred at full size, up to 10 MB, the others at a tenth). Each
set is pulled twice, in a child process so that its peak memory (max RSS) is its own:
  - parsing in the pull's own process, timing each message (parse, route, store): the time per
    message (median, p99, max; wall clock, and the CPU time of the thread that pulls, which other
    load on the machine and the thread fetching the next batch do not inflate) is what one
    message can cost a pull;
  - as a real pull of that size runs (parsing in a second process): messages per second, and the
    peak memory of both processes.
Targets: no hostile message costs much more than a second; the peak memory of the hostile pull
stays within a few hundred MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.pull import USER, realistic_mix
from tests.dovecot import Dovecot, _find_dovecot
from tests.hostile_mail import hostile_stream

CHILD = """
import json, resource, sys, time
from email_account_app.engine import jobs, sync
from email_account_app.engine.settings import account_from_mapping
from email_account_app.sqlite_store import SQLiteStore
config = json.loads(sys.argv[1])
account = account_from_mapping(config["account"], name="bench")
store = SQLiteStore(config["db"])
times = []
cpu = []
handle = sync.Puller._handle

def timed(self, *args, **kwargs):
	started, started_cpu = time.perf_counter(), time.thread_time()
	try:
		return handle(self, *args, **kwargs)
	finally:
		times.append(time.perf_counter() - started)
		cpu.append(time.thread_time() - started_cpu)

sync.Puller._handle = timed
start = time.perf_counter()
report = jobs.pull(account, store, parse_process=config["parse_process"])
seconds = time.perf_counter() - start
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": seconds, "own_kb": own, "worker_kb": worker, "times": times, "cpu": cpu, **report.as_dict()}))
"""


def pull(server: Dovecot, workdir: Path, *, parse_process: bool) -> dict:
	db = workdir / f"pull-{time.monotonic_ns()}.sqlite3"
	account = server.account(USER, security="ssl", email_sync_option="ALL", initial_sync_count=0, timeout=60)
	proc = subprocess.Popen(
		[
			sys.executable,
			"-c",
			CHILD,
			json.dumps({"account": account, "db": str(db), "parse_process": parse_process}),
		],
		stdout=subprocess.PIPE,
		cwd=ROOT,
	)
	out, _ = proc.communicate()
	if proc.returncode != 0:
		raise SystemExit(f"the pull failed with exit code {proc.returncode}")
	result = json.loads(out)
	result["peak_mb"] = (result["own_kb"] + result["worker_kb"]) / 1024
	for key, prefix in (("times", ""), ("cpu", "cpu_")):
		times = sorted(result.pop(key))
		result[f"{prefix}median_ms"] = times[len(times) // 2] * 1000
		result[f"{prefix}p99_ms"] = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
		result[f"{prefix}max_ms"] = times[-1] * 1000
	return result


def measure(server: Dovecot, workdir: Path, name: str, messages) -> dict:
	server.reset(USER)
	total = 0

	def counted():
		nonlocal total
		for raw in messages:
			total += len(raw)
			yield raw

	server.append_many(USER, counted())
	timed = pull(server, workdir, parse_process=False)
	real = pull(server, workdir, parse_process=True)
	row = {
		"name": name,
		"count": timed["fetched"],
		"mb": total / 1024 / 1024,
		"kept": timed["stored"] + timed["skipped"] + timed["failed"] + timed["duplicates"],
		"failed": timed["failed"],
		"median_ms": timed["median_ms"],
		"p99_ms": timed["p99_ms"],
		"max_ms": timed["max_ms"],
		"cpu_p99_ms": timed["cpu_p99_ms"],
		"cpu_max_ms": timed["cpu_max_ms"],
		"peak_one_mb": timed["peak_mb"],
		"rate": real["fetched"] / real["seconds"],
		"peak_two_mb": real["peak_mb"],
	}
	print(
		f"{name:>9}: {row['count']} messages ({row['mb']:.0f} MB), {row['kept']} kept ({row['failed']} failed) | "
		f"per message: median {row['median_ms']:.1f} ms, p99 {row['p99_ms']:.0f} ms, max {row['max_ms']:.0f} ms "
		f"(CPU of the pulling thread: p99 {row['cpu_p99_ms']:.0f} ms, max {row['cpu_max_ms']:.0f} ms) | "
		f"peak memory {row['peak_one_mb']:.0f} MB (one process) | two processes: {row['rate']:.0f} msg/s, "
		f"peak memory {row['peak_two_mb']:.0f} MB",
		flush=True,
	)
	return row


def main() -> None:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	parser.add_argument("--count", type=int, default=3000, help="messages of each kind")
	args = parser.parse_args()
	binary = _find_dovecot()
	if binary is None:
		raise SystemExit("dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)")
	server = Dovecot(binary)
	server.start()
	try:
		with tempfile.TemporaryDirectory(prefix="email-sync-bench-") as tmp:
			ordinary = measure(server, Path(tmp), "ordinary", realistic_mix(args.count))
			hostile = measure(server, Path(tmp), "hostile", hostile_stream(args.count))
	finally:
		server.stop()
		server.cleanup()
	print()
	print(
		f"hostile / ordinary: max per message {hostile['max_ms'] / ordinary['max_ms']:.1f}x, "
		f"p99 {hostile['p99_ms'] / ordinary['p99_ms']:.1f}x, "
		f"peak memory {hostile['peak_two_mb'] / ordinary['peak_two_mb']:.2f}x"
	)


if __name__ == "__main__":
	main()
