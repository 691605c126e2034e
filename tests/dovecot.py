"""A real Dovecot on loopback for the tests, and a TCP proxy that misbehaves on request.

The ``dovecot`` fixture (one per test session) writes a config, users, a Maildir tree and a TLS
certificate from a trustme CA into a temporary directory and runs ``dovecot -F`` from there as a
subprocess. Dovecot runs unprivileged: as the current user, or, when the tests run as root, as
``nobody`` (Dovecot refuses to run its login and mail processes as root). The helpers talk to the
server over IMAP the way real clients do; only changing a UIDVALIDITY needs ``doveadm``.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import socket
import string
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import trustme
from imapclient import IMAPClient

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
SPECIAL_FOLDERS = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk"}
PERMANENT_FOLDERS = {"INBOX", *SPECIAL_FOLDERS}
APPENDUID_RE = re.compile(rb"\[APPENDUID \d+ (\d+)\]")
NO_SENT = "userdb_namespace/inbox/mailbox/Sent/auto=no"
NO_DRAFTS = "userdb_namespace/inbox/mailbox/Drafts/auto=no"


@dataclass(frozen=True)
class MailUser:
	address: str
	password: str
	#: the name Dovecot knows the user by (what goes into LOGIN)
	login: str
	#: settings of this user's own (Dovecot userdb extra fields)
	settings: tuple[str, ...] = ()

	@property
	def has_sent(self) -> bool:
		"""Whether the Sent folder is there from the start (and stays, emptied, on reset)."""
		return not any(s.startswith(NO_SENT) for s in self.settings)


USERS = (
	MailUser("alice@example.com", "alice-pass", "alice@example.com"),
	MailUser("bob@example.com", "bob-pass", "bob@example.com"),
	MailUser("zoe@example.com", "pässwörd", "zoe@example.com"),
	# logs in with a name that is not the address
	MailUser("carol@example.com", "carol-pass", "carol"),
	# mailboxes without a Sent (or Drafts) folder; erin's server also takes CREATE ... (USE (\Sent))
	MailUser("dan@example.com", "dan-pass", "dan@example.com", (NO_SENT, NO_DRAFTS)),
	MailUser(
		"erin@example.com",
		"erin-pass",
		"erin@example.com",
		(NO_SENT, NO_DRAFTS, "userdb_imap_capability=+CREATE-SPECIAL-USE"),
	),
)

CONFIG = string.Template(
	"""\
protocols = imap pop3
listen = $host
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
default_internal_user = $user
default_login_user = $user
default_internal_group = $group
ssl = yes
ssl_cert = <$dir/cert.pem
ssl_key = <$dir/key.pem
ssl_min_protocol = TLSv1.2
auth_mechanisms = $mechanisms
disable_plaintext_auth = no
auth_failure_delay = 0
mail_location = maildir:~/Maildir
# tests: no fsync, appends are many times faster
mail_fsync = never

$oauth_passdb
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/passwd
}
userdb {
  driver = passwd-file
  args = $dir/passwd
}

namespace inbox {
  inbox = yes
  separator = /
$special_folders
}

protocol imap {
  mail_max_userip_connections = 200
}
protocol pop3 {
  mail_max_userip_connections = 200
}

# Unprivileged: no chroot. The auth penalty socket moves away, so that failed logins in the tests
# are not slowed down by seconds (auth looks for "anvil-auth-penalty" and skips the penalty).
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    path = anvil-auth-penalty-off
  }
}
service imap-login {
  chroot =
  inet_listener imap {
    port = $imap_port
  }
  inet_listener imaps {
    port = $imaps_port
    ssl = yes
  }
}
service pop3-login {
  chroot =
  inet_listener pop3 {
    port = $pop3_port
  }
  inet_listener pop3s {
    port = $pop3s_port
    ssl = yes
  }
}
"""
)

#: Dovecot's oauth2 passdb (2.3): every token is checked with the test OAuth server's introspection
#: endpoint (RFC 7662); the user is the one it names, and must match the user the client logs in as
OAUTH_PASSDB = """\
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $dir/dovecot-oauth2.conf.ext
}"""
OAUTH_CONF = """\
tokeninfo_url = $url/tokeninfo?access_token=
introspection_url = $url/introspect
introspection_mode = post
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 10000
"""

SPECIAL_FOLDER = """\
  mailbox $name {
    special_use = $flag
    auto = subscribe
  }"""


def _free_ports(count: int) -> list[int]:
	sockets = []
	try:
		for _ in range(count):
			s = socket.socket()
			s.bind((HOST, 0))
			sockets.append(s)
		return [s.getsockname()[1] for s in sockets]
	finally:
		for s in sockets:
			s.close()


def _find_dovecot() -> str | None:
	return shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin:/sbin")


def _run_as() -> pwd.struct_passwd:
	"""The account Dovecot runs as: the current one, or ``nobody`` for root."""
	if os.getuid() == 0:
		return pwd.getpwnam("nobody")
	return pwd.getpwuid(os.getuid())


def _wait_for_port(port: int, deadline: float) -> bool:
	while time.monotonic() < deadline:
		with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
			return True
		time.sleep(0.05)
	return False


class Dovecot:
	"""A running Dovecot and the helpers the tests need."""

	def __init__(self, binary: str, *, oauth_url: str | None = None, mechanisms: str = "plain login"):
		"""``oauth_url``: the test OAuth server whose tokens this Dovecot takes too (for the
		mechanisms among ``mechanisms``: xoauth2, oauthbearer)."""
		self.binary = binary
		self.oauth_url = oauth_url
		self.mechanisms = mechanisms
		self.host = HOST
		self.users = {u.address: u for u in USERS}
		self.run_as = _run_as()
		self.dir = Path(tempfile.mkdtemp(prefix="email-sync-dovecot-"))
		self.ca = trustme.CA()
		self.ca_file = str(self.dir / "ca.pem")
		self.log_file = self.dir / "dovecot.log"
		self.process: subprocess.Popen | None = None
		self.imap_port = self.imaps_port = self.pop3_port = self.pop3s_port = 0

	# -- life cycle ------------------------------------------------------------------------------

	def start(self) -> None:
		self._write_files()
		for attempt in range(3):  # a port picked as free may be taken before Dovecot binds it
			self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port = _free_ports(4)
			self._write_config()
			problem = self._launch()
			if problem is None:
				return
			self.stop()
			if attempt < 2 and "Address already in use" in self.log():
				continue
			raise RuntimeError(f"Dovecot did not start: {problem}. Its log ({self.dir}):\n{self.log()}")

	def _write_files(self) -> None:
		cert = self.ca.issue_cert("localhost", HOST)
		cert.private_key_pem.write_to_path(str(self.dir / "key.pem"))
		cert.cert_chain_pems[0].write_to_path(str(self.dir / "cert.pem"))
		self.ca.cert_pem.write_to_path(self.ca_file)
		for sub in ("run", "state", "mail"):
			(self.dir / sub).mkdir(exist_ok=True)
		lines = [
			f"{u.login}:{{PLAIN}}{u.password}::::{self.dir}/mail/{u.login}::{' '.join(u.settings)}\n"
			for u in USERS
		]
		(self.dir / "passwd").write_text("".join(lines), encoding="utf-8")

	def _write_config(self) -> None:
		special = "\n".join(
			string.Template(SPECIAL_FOLDER).substitute(name=name, flag=flag)
			for name, flag in SPECIAL_FOLDERS.items()
		)
		oauth_passdb = ""
		if self.oauth_url:
			oauth_passdb = string.Template(OAUTH_PASSDB).substitute(dir=self.dir)
			conf = string.Template(OAUTH_CONF).substitute(url=self.oauth_url)
			(self.dir / "dovecot-oauth2.conf.ext").write_text(conf)
		text = CONFIG.substitute(
			mechanisms=self.mechanisms,
			oauth_passdb=oauth_passdb,
			host=HOST,
			dir=self.dir,
			user=self.run_as.pw_name,
			group=grp.getgrgid(self.run_as.pw_gid).gr_name,
			special_folders=special,
			imap_port=self.imap_port,
			imaps_port=self.imaps_port,
			pop3_port=self.pop3_port,
			pop3s_port=self.pop3s_port,
		)
		(self.dir / "dovecot.conf").write_text(text)
		if os.getuid() == 0:
			for path in (self.dir, *self.dir.rglob("*")):
				os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)

	def _run_kwargs(self) -> dict:
		"""subprocess arguments that run a Dovecot binary as the account Dovecot runs as."""
		if os.getuid() != 0:
			return {}
		return {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": []}

	def _argv(self, binary: str, *args: str) -> list[str]:
		return [binary, "-c", str(self.dir / "dovecot.conf"), *args]

	def _launch(self) -> str | None:
		"""Start Dovecot and wait until every port takes connections; what went wrong, if anything."""
		with open(self.dir / "dovecot.stderr", "ab") as stderr:
			self.process = subprocess.Popen(
				self._argv(self.binary, "-F"), stdout=stderr, stderr=stderr, **self._run_kwargs()
			)
		deadline = time.monotonic() + START_TIMEOUT
		for port in (self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port):
			while not _wait_for_port(port, min(deadline, time.monotonic() + 0.2)):
				if self.process.poll() is not None:
					return f"it exited with status {self.process.returncode}"
				if time.monotonic() >= deadline:
					return f"port {port} did not open within {START_TIMEOUT:g} seconds"
		return None

	def stop(self) -> None:
		if self.process is None:
			return
		self.process.terminate()
		try:
			self.process.wait(timeout=10)
		except subprocess.TimeoutExpired:
			self.process.kill()
			self.process.wait(timeout=10)
		self.process = None

	def cleanup(self) -> None:
		self.stop()
		shutil.rmtree(self.dir, ignore_errors=True)

	def log(self) -> str:
		parts = [
			p.read_text(errors="replace") for p in (self.dir / "dovecot.stderr", self.log_file) if p.exists()
		]
		return "\n".join(parts)

	# -- settings for the engine ---------------------------------------------------------------

	def port_for(self, protocol: str = "imap", security: str = "ssl") -> int:
		ports = {
			("imap", "ssl"): self.imaps_port,
			("imap", "starttls"): self.imap_port,
			("imap", "plain"): self.imap_port,
			("pop3", "ssl"): self.pop3s_port,
			("pop3", "starttls"): self.pop3_port,
			("pop3", "plain"): self.pop3_port,
		}
		return ports[protocol, security]

	def account(self, user: str, *, protocol: str = "imap", security: str = "ssl", **overrides) -> dict:
		"""A mapping for ``account_from_mapping``: ``protocol`` imap or pop3, ``security`` ssl,
		starttls or plain; anything else overrides a field."""
		u = self.users[user]
		data = {
			"email_id": u.address,
			"password": u.password,
			"enable_incoming": True,
			"use_imap": protocol == "imap",
			"email_server": HOST,
			"incoming_port": self.port_for(protocol, security),
			"use_ssl": security == "ssl",
			"use_starttls": security == "starttls",
			"ca_file": self.ca_file,
			"timeout": 10,
		}
		if u.login != u.address:
			data["login_id"] = u.login
		data.update(overrides)
		return data

	# -- mailbox helpers (IMAP, as a client) ---------------------------------------------------

	@contextlib.contextmanager
	def session(self, user: str) -> Iterator[IMAPClient]:
		"""A logged-in IMAP session for ``user`` (plain text on loopback)."""
		u = self.users[user]
		with IMAPClient(HOST, self.imap_port, ssl=False, timeout=30) as client:
			if (u.login + u.password).isascii():
				client.login(u.login, u.password)
			else:
				client.plain_login(u.login, u.password)
			yield client

	def append(
		self,
		user: str,
		raw: bytes,
		folder: str = "INBOX",
		flags: Iterable[str] = (),
		date: datetime | None = None,
	) -> int:
		"""Deliver ``raw`` into ``folder`` with IMAP APPEND; returns its UID."""
		with self.session(user) as client:
			return _appended_uid(client.append(folder, raw, tuple(flags), date))

	def append_many(self, user: str, raws: Iterable[bytes], folder: str = "INBOX") -> list[int]:
		"""Deliver many messages over one session; returns their UIDs."""
		with self.session(user) as client:
			return [_appended_uid(client.append(folder, raw)) for raw in raws]

	def create_folder(self, user: str, name: str) -> None:
		with self.session(user) as client:
			if not client.folder_exists(name):
				client.create_folder(name)
				client.subscribe_folder(name)

	def folders(self, user: str) -> list[str]:
		with self.session(user) as client:
			return [name for _flags, _delim, name in client.list_folders()]

	def reset(self, user: str) -> None:
		"""Delete every message and every folder of ``user`` but INBOX and the special-use ones (a
		user without a Sent folder from the start loses the one a test made)."""
		keep = PERMANENT_FOLDERS if self.users[user].has_sent else PERMANENT_FOLDERS - {"Sent", "Drafts"}
		with self.session(user) as client:
			# children before their parents; a parent that only holds children goes with the last one
			names = [name for flags, _delim, name in client.list_folders() if b"\\Noselect" not in flags]
			for name in sorted(names, key=len, reverse=True):
				if name in keep:
					if client.select_folder(name)[b"EXISTS"]:
						client.delete_messages("1:*")
						client.expunge()
					client.unselect_folder()
				else:
					client.delete_folder(name)

	def change_uidvalidity(self, user: str, folder: str = "INBOX") -> int:
		"""Give ``folder`` a new UIDVALIDITY, as a server does after rebuilding its index."""
		u = self.users[user]
		with self.session(user) as client:
			new = client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"] + 1
		doveadm = shutil.which("doveadm", path=str(Path(self.binary).parent)) or "doveadm"
		result = subprocess.run(
			self._argv(doveadm, "mailbox", "update", "--uid-validity", str(new), "-u", u.login, folder),
			capture_output=True,
			text=True,
			timeout=30,
			**self._run_kwargs(),
		)
		if result.returncode:
			raise RuntimeError(f"doveadm could not change the UIDVALIDITY: {result.stdout}{result.stderr}")
		return new

	def renumber(self, user: str, folder: str = "INBOX") -> int:
		"""Rebuild ``folder``'s index as a server does after losing it: a new UIDVALIDITY, and every
		message gets a new UID (in the order Dovecot finds the files). Flags stay (Maildir keeps them
		in the file names). Returns the new UIDVALIDITY."""
		u = self.users[user]
		maildir = self.dir / "mail" / u.login / "Maildir"
		path = maildir if folder == "INBOX" else maildir / f".{folder.replace('/', '.')}"
		with self.session(user) as client:
			old = client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"]
		for _attempt in range(50):  # an IMAP process of a killed client may still write the index
			for name in os.listdir(path):
				if name == "dovecot-uidlist" or name.startswith("dovecot.index"):
					with contextlib.suppress(FileNotFoundError):
						os.remove(path / name)
			with self.session(user) as client:
				new = client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"]
			if new != old:
				return new
			time.sleep(0.1)
		raise RuntimeError(f"the UIDVALIDITY of {folder} did not change")

	def flags(self, user: str, folder: str = "INBOX") -> dict[int, tuple[str, ...]]:
		"""UID -> flags as text, e.g. ("\\\\Seen",), of every message in ``folder`` (\\\\Recent left out)."""
		with self.session(user) as client:
			client.select_folder(folder, readonly=True)
			data = client.fetch("1:*", ["FLAGS"]) if client.search(["ALL"]) else {}
			return {
				uid: tuple(_text(f) for f in item[b"FLAGS"] if f != b"\\Recent") for uid, item in data.items()
			}

	def messages(self, user: str, folder: str = "INBOX") -> dict[int, bytes]:
		"""UID -> raw bytes of every message in ``folder`` (read without setting \\Seen)."""
		with self.session(user) as client:
			client.select_folder(folder, readonly=True)
			data = client.fetch("1:*", ["BODY.PEEK[]"]) if client.search(["ALL"]) else {}
			return {uid: item[b"BODY[]"] for uid, item in data.items()}


def _appended_uid(response: bytes) -> int:
	match = APPENDUID_RE.search(response)
	if not match:
		raise AssertionError(f"APPEND gave no APPENDUID: {response!r}")
	return int(match.group(1))


def _text(value: bytes | str) -> str:
	return value.decode() if isinstance(value, bytes) else value


class LoopbackProxy:
	"""A TCP proxy on loopback in front of ``target_port``: the listener, the accept loop and the
	threads; a subclass says what to do with each connected pair (``_serve``)."""

	POLL = 0.1
	#: connections accepted at most at once (None: any number)
	MAX_CONNECTIONS: int | None = None
	#: the socket timeout of each connection's two sockets
	SOCKET_TIMEOUT = POLL

	def __init__(self, target_port: int, host: str = HOST):
		self.host = host
		self.target_port = target_port
		self._listener = socket.create_server((host, 0))
		self._listener.settimeout(self.POLL)
		self.port = self._listener.getsockname()[1]
		self._lock = threading.Lock()
		self._closed = threading.Event()
		self._sockets: list[socket.socket] = []
		self._threads: list[threading.Thread] = []

	def start(self) -> None:
		self._spawn(self._accept_loop)

	def close(self) -> None:
		self._closed.set()
		self._listener.close()
		with self._lock:
			for sock in self._sockets:
				sock.close()
		for thread in self._threads:
			thread.join(timeout=2)

	def _spawn(self, target, *args) -> None:
		thread = threading.Thread(target=target, args=args, daemon=True)
		self._threads.append(thread)
		thread.start()

	def _accept_loop(self) -> None:
		while not self._closed.is_set():
			try:
				client, _ = self._listener.accept()
			except TimeoutError:
				continue
			except OSError:
				return
			if self.MAX_CONNECTIONS is not None and len(self._sockets) >= 2 * self.MAX_CONNECTIONS:
				client.close()
				continue
			try:
				server = socket.create_connection((self.host, self.target_port), timeout=5)
			except OSError:
				client.close()
				continue
			for sock in (client, server):
				sock.settimeout(self.SOCKET_TIMEOUT)
			with self._lock:
				self._sockets += [client, server]
			self._serve(client, server)

	def _serve(self, client: socket.socket, server: socket.socket) -> None:
		raise NotImplementedError


class FlakyProxy(LoopbackProxy):
	"""A TCP proxy on loopback in front of ``target_port`` that can fail on request.

	``drop_after(n)``: forward ``n`` more bytes from the server, then close the connections.
	``stall()``: stop forwarding in both directions; the connections stay open, so the client's
	timeout is what ends the wait. ``heal()``: back to forwarding.
	"""

	MAX_CONNECTIONS = 16

	def __init__(self, target_port: int, host: str = HOST):
		super().__init__(target_port, host)
		self._budget: int | None = None
		self._stalled = threading.Event()
		self.start()

	# -- controls --------------------------------------------------------------------------------

	def drop_after(self, n_bytes: int) -> None:
		with self._lock:
			self._budget = n_bytes

	def stall(self) -> None:
		self._stalled.set()

	def heal(self) -> None:
		with self._lock:
			self._budget = None
		self._stalled.clear()

	# -- plumbing --------------------------------------------------------------------------------

	def _serve(self, client: socket.socket, server: socket.socket) -> None:
		self._spawn(self._pump, client, server, False)
		self._spawn(self._pump, server, client, True)

	def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
		try:
			while not self._closed.is_set():
				try:
					data = src.recv(65536)
				except TimeoutError:
					continue
				if not data:
					break
				while self._stalled.is_set() and not self._closed.is_set():
					time.sleep(self.POLL)
				data, drop = self._take(data) if from_server else (data, False)
				dst.sendall(data)
				if drop:
					break
		except OSError:
			pass
		finally:
			src.close()
			dst.close()

	def _take(self, data: bytes) -> tuple[bytes, bool]:
		"""The part of ``data`` to forward, and whether to drop the connection after it."""
		with self._lock:
			if self._budget is None or len(data) < self._budget:
				if self._budget is not None:
					self._budget -= len(data)
				return data, False
			part, self._budget = data[: self._budget], 0
			return part, True


# -- fixtures ---------------------------------------------------------------------------------


def _started(**kwargs) -> Iterator[Dovecot]:
	binary = _find_dovecot()
	if binary is None:
		message = "dovecot is not installed (Debian/Ubuntu: apt-get install dovecot-imapd dovecot-pop3d)"
		if os.environ.get("CI"):
			pytest.fail(f"{message}; CI is set, so the tests that need it fail instead of skipping")
		pytest.skip(message)
	server = Dovecot(binary, **kwargs)
	try:
		try:
			server.start()
		except RuntimeError as exc:
			pytest.fail(str(exc), pytrace=False)
		yield server
	finally:
		server.cleanup()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
	"""A real Dovecot (IMAP, IMAPS, POP3, POP3S) on loopback for the whole test session."""
	yield from _started()


@pytest.fixture(scope="session")
def oauth_dovecot(oauth_session_server) -> Iterator[Dovecot]:
	"""A Dovecot that also takes the test OAuth server's tokens (XOAUTH2 and OAUTHBEARER)."""
	yield from _started(oauth_url=oauth_session_server.url, mechanisms="plain login xoauth2 oauthbearer")


@pytest.fixture(scope="session")
def oauthbearer_dovecot(oauth_session_server) -> Iterator[Dovecot]:
	"""A Dovecot whose only OAuth mechanism is OAUTHBEARER (no XOAUTH2)."""
	yield from _started(oauth_url=oauth_session_server.url, mechanisms="plain login oauthbearer")


@pytest.fixture(scope="session")
def xoauth2_dovecot(oauth_session_server) -> Iterator[Dovecot]:
	"""A Dovecot whose only OAuth mechanism is XOAUTH2, as Microsoft 365's servers."""
	yield from _started(oauth_url=oauth_session_server.url, mechanisms="plain login xoauth2")


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Dovecot:
	"""The session's Dovecot with every user's mail deleted first."""
	for user in dovecot.users:
		dovecot.reset(user)
	return dovecot


@pytest.fixture
def flaky_proxy(dovecot: Dovecot) -> Iterator[FlakyProxy]:
	"""A proxy in front of Dovecot's IMAP port (plain text, STARTTLS-capable)."""
	proxy = FlakyProxy(dovecot.imap_port)
	try:
		yield proxy
	finally:
		proxy.close()
