"""An IMAP mailbox on imapclient: connect, log in, list, select, search, fetch, flag, append.

Fetching uses BODY.PEEK, so reading never marks mail \\Seen; only ``mark_seen`` does. Every
failure comes out as one of the engine's errors (see ``_errors``), with a message that says
what to do and never the password. Everything the server sends is read through a ``Guard``
(guard.py): a command has a time bound besides the read timeout, and a literal may not be larger
than the largest message the account downloads.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import logging
import re
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from imapclient import IMAPClient, imap4, tls
from imapclient.exceptions import LoginError, ProtocolError
from imapclient.imapclient import SocketTimeout

from ..errors import EmailSyncError, FolderMissing, ServerMisbehaved, ServerRefused, TLSFailed
from ..settings import AccountSettings
from . import (
	connection_lost,
	incoming_host,
	login_failed,
	network_error,
	remember_password,
	require_encodable_password,
	sasl,
	scrub,
	scrubbed,
	security_of,
	server_refused,
	uid_batches,
)
from .guard import MB, Guard, GuardedReader, Limits

log = logging.getLogger(__name__)

#: (host, port, ssl, ssl_context, timeout) -> a connected, not yet logged-in IMAPClient
ClientFactory = Callable[[str, int, bool, "ssl.SSLContext | None", SocketTimeout], IMAPClient]

#: UIDs per command for small items (sizes, Message-IDs, flags)
META_BATCH = 500
#: the longest line a server may send (a SEARCH result is one line: ~8 bytes a message)
MAX_LINE = 16 * MB
SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
SENT_NAMES = ("Sent", "Sent Items", "Sent Messages", "[Gmail]/Sent Mail")
APPENDUID_RE = re.compile(rb"\[APPENDUID \d+ (\d+)\]", re.IGNORECASE)
MESSAGE_ID_RE = re.compile(r"<([^<>]*)>")
# imapclient hands on imaplib's bytes as their repr: "b'[AUTHENTICATIONFAILED] ...'"
BYTES_REPR_RE = re.compile(r"b(['\"])(.*)\1", re.DOTALL)


@dataclass(frozen=True)
class FolderInfo:
	name: str
	flags: tuple[str, ...]
	delimiter: str | None
	#: the RFC 6154 role, e.g. "\\Sent", or None
	special_use: str | None


@dataclass(frozen=True)
class FolderStatus:
	name: str
	uidvalidity: int
	uidnext: int | None
	messages: int
	#: None from ``select`` (SELECT does not count unseen mail)
	unseen: int | None = None


if TYPE_CHECKING:
	from _typeshed import ReadableBuffer

	_IMAP4Base = imaplib.IMAP4
else:
	_IMAP4Base = object


class _Guarded(_IMAP4Base):
	"""imaplib's reading and writing, through a Guard; a command begins with its tag."""

	def __init__(self, *args: Any, guard: Guard, **kwargs: Any):
		self.guard = guard
		super().__init__(*args, **kwargs)

	def _reader(self) -> GuardedReader:
		"""``file``, made a guarded reader again when the connection got a new one (STARTTLS)."""
		if not isinstance(self.file, GuardedReader):
			self.file = self.guard.reader(self.sock)
		return self.file

	def read(self, size: int) -> bytes:
		return self.guard.read(self._reader(), size)

	def readline(self) -> bytes:
		return self.guard.readline(self._reader())

	def send(self, data: ReadableBuffer) -> None:
		self.guard.sendall(self.sock, data)

	# _new_tag and _append_untagged are imaplib's own (private, so not in its type stubs)

	def _new_tag(self) -> bytes:
		self.guard.begin()
		return super()._new_tag()  # type: ignore[misc]  # not in imaplib's stubs

	def _append_untagged(self, typ: str, dat: bytes) -> None:
		self.guard.count_response()
		super()._append_untagged(typ, dat)  # type: ignore[misc]  # not in imaplib's stubs


class _GuardedIMAP4(_Guarded, imap4.IMAP4WithTimeout):
	pass


class _GuardedIMAP4TLS(_Guarded, tls.IMAP4_TLS):
	pass


class GuardedIMAPClient(IMAPClient):
	"""An IMAPClient whose connection reads and writes through ``guard``."""

	def __init__(self, *args, guard: Guard, **kwargs):
		self._guard = guard
		super().__init__(*args, **kwargs)

	def _create_IMAP4(self):
		connect_timeout = getattr(self._timeout, "connect", None)
		if self.ssl:
			return _GuardedIMAP4TLS(
				self.host, self.port, self.ssl_context, connect_timeout, guard=self._guard
			)
		return _GuardedIMAP4(self.host, self.port, connect_timeout, guard=self._guard)


class ImapMailbox:
	"""One logged-in IMAP session; use it as a context manager."""

	def __init__(
		self,
		account: AccountSettings,
		*,
		client_factory: ClientFactory | None = None,
		stop_at: float | None = None,
	):
		"""``stop_at``: a ``time.monotonic()`` moment at which every command ends (a pull's time limit)."""
		self.account = account
		self.server = f"{account.email_server}:{account.port}"
		self._factory = client_factory or self._guarded_client
		self._client: IMAPClient | None = None
		self._logged_in = False
		self._guard = Guard(
			self.server,
			account.timeout,
			Limits.for_messages(account.message_size_limit, line=MAX_LINE),
			stop_at=stop_at,
		)

	def _guarded_client(
		self, host: str, port: int, use_ssl: bool, context: ssl.SSLContext | None, timeout: SocketTimeout
	) -> IMAPClient:
		return GuardedIMAPClient(
			host, port=port, ssl=use_ssl, ssl_context=context, timeout=timeout, guard=self._guard
		)

	@property
	def client(self) -> IMAPClient:
		"""The IMAPClient of the open session."""
		if self._client is None:
			raise RuntimeError(f"The IMAP session with {self.server} is not open: call open() first.")
		return self._client

	# -- session -------------------------------------------------------------------------------

	def __enter__(self) -> ImapMailbox:
		self.open()
		return self

	def __exit__(self, *exc_info: object) -> None:
		self.close()

	def open(self) -> None:
		"""Connect (SSL, STARTTLS or plain text) and log in."""
		try:
			with self._errors("connect"):
				self._connect()
				self._login()
		except BaseException:
			self.close()
			raise

	def close(self) -> None:
		"""Log out, then shut the connection down; quiet on a connection that is already dead."""
		client, self._client, self._logged_in = self._client, None, False
		if client is None:
			return
		try:
			if self._guard.broken:  # in the middle of a reply: no LOGOUT, it would read that reply
				raise ConnectionAbortedError("the session was broken off")
			client.logout()
		except Exception as exc:
			log.debug("logout from %s failed (%s); shutting the connection down", self.server, exc)
			try:
				client.shutdown()
			except Exception:
				pass

	def _connect(self) -> None:
		acct = self.account
		mode, context = security_of(acct)
		log.debug("connecting to %s (%s)", self.server, mode)
		timeout = SocketTimeout(connect=acct.timeout, read=acct.timeout)
		self._client = client = self._factory(incoming_host(acct), acct.port, acct.use_ssl, context, timeout)
		if acct.use_starttls:
			if not client.has_capability("STARTTLS"):
				raise TLSFailed(
					f"{self.server} does not offer STARTTLS.",
					hint="Use SSL (port 993), or turn off use_starttls to send everything in plain text.",
				)
			client.starttls(context)

	def _login(self) -> None:
		acct = self.account
		if acct.uses_oauth:
			self._oauth_login()
			return
		password = acct.password or ""
		require_encodable_password(acct)
		remember_password(acct)
		if (acct.login + password).isascii():
			self.client.login(acct.login, password)
		else:  # LOGIN takes ASCII only; AUTHENTICATE PLAIN carries UTF-8
			self.client.plain_login(acct.login, password)
		self._logged_in = True
		log.debug("logged in to %s as %s", self.server, acct.login)

	def _oauth_login(self) -> None:
		"""AUTHENTICATE OAUTHBEARER or XOAUTH2, whichever the server offers (see ``sasl``)."""
		acct = self.account
		source = sasl.require_source(acct)
		offered = [_text(c)[5:] for c in self.client.capabilities() if _text(c).upper().startswith("AUTH=")]
		mechanism = sasl.mechanism_for(self.server, offered)

		def attempt(token: str) -> None:
			conversation = sasl.Conversation(mechanism, acct.login, token, acct.email_server, acct.port)
			try:
				self.client._imap.authenticate(mechanism, conversation)
			except imaplib.IMAP4.abort:
				raise
			except imaplib.IMAP4.error as exc:
				words = scrub(self._words(exc), token)
				raise conversation.refused(words) from None

		sasl.login(source, attempt, server=self.server, login_name=acct.login, mechanism=mechanism)
		self._logged_in = True
		log.debug("signed in to %s as %s with %s", self.server, acct.login, mechanism)

	@contextmanager
	def _errors(self, action: str) -> Iterator[None]:
		"""Turn what imapclient, imaplib, ssl and socket raise into the engine's errors."""
		acct = self.account
		try:
			yield
		except EmailSyncError:
			raise
		except LoginError as exc:
			raise login_failed(self.server, acct.login, self._words(exc)) from scrubbed(exc)
		except ProtocolError as exc:  # a reply imapclient cannot parse
			self._guard.broken = True
			raise _not_imap(self.server, self._words(exc)) from scrubbed(exc)
		except imaplib.IMAP4.abort as exc:  # EOF or BYE: the server hung up
			self._guard.broken = True
			words = self._words(exc)
			if "unexpected response" in words:
				raise _not_imap(self.server, words) from scrubbed(exc)
			raise connection_lost(self.server, words, connecting=not self._logged_in) from scrubbed(exc)
		except imaplib.IMAP4.error as exc:  # NO or BAD
			raise server_refused(self.server, action, self._words(exc)) from scrubbed(exc)
		except OSError as exc:
			self._guard.broken = True
			connecting = not self._logged_in
			raise network_error(
				exc, acct.email_server or "", acct.port, acct.timeout, connecting=connecting
			) from scrubbed(exc)

	def _words(self, exc: Exception) -> str:
		"""The server's (or imaplib's) words in ``exc``, as text, without the password."""
		text = exc.args[0] if exc.args else ""
		text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
		match = BYTES_REPR_RE.fullmatch(text)
		return scrub((match.group(2) if match else text).strip(), self.account)

	@contextmanager
	def _on_folder(self, name: str, action: str) -> Iterator[None]:
		"""Like ``_errors``, and a refusal for a folder the server does not have is FolderMissing."""
		try:
			with self._errors(f"{action} folder {name!r}"):
				yield
		except ServerRefused:
			names = [f.name for f in self.list_folders()]
			if name in names:
				raise
			shown = ", ".join(names[:40]) + (f" and {len(names) - 40} more" if len(names) > 40 else "")
			raise FolderMissing(
				f"{self.server} has no folder {name!r}.",
				hint=f"The folders there are: {shown}. Fix the folder name in the account's settings.",
			) from None

	# -- folders -------------------------------------------------------------------------------

	def capabilities(self) -> tuple[str, ...]:
		with self._errors("list its capabilities"):
			return tuple(_text(c) for c in self.client.capabilities())

	def list_folders(self) -> list[FolderInfo]:
		with self._errors("list the folders"):
			rows = self.client.list_folders()
		return [_folder_info(flags, delimiter, name) for flags, delimiter, name in rows]

	def folder_status(self, name: str) -> FolderStatus:
		"""Counts and UIDs of a folder, with STATUS (the folder is not selected)."""
		with self._on_folder(name, "give the status of"):
			data = self.client.folder_status(name, [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN"])
		return FolderStatus(
			name,
			uidvalidity=int(data.get(b"UIDVALIDITY", 0)),
			uidnext=data.get(b"UIDNEXT"),
			messages=int(data.get(b"MESSAGES", 0)),
			unseen=data.get(b"UNSEEN"),
		)

	def select(self, name: str, readonly: bool = False) -> FolderStatus:
		with self._on_folder(name, "select"):
			data = self.client.select_folder(name, readonly=readonly)
		return FolderStatus(
			name,
			uidvalidity=int(data.get(b"UIDVALIDITY", 0)),
			uidnext=data.get(b"UIDNEXT"),
			messages=int(data.get(b"EXISTS", 0)),
		)

	def create_sent_folder(self, name: str | None = None) -> str:
		"""Create the Sent folder as mail clients do, and return its name: ``name``, else "Sent" in
		the personal namespace (e.g. "INBOX.Sent" where folders live under INBOX). It is marked
		\\Sent where the server takes that with CREATE (CREATE-SPECIAL-USE, RFC 6154), and subscribed."""
		client = self.client
		caps = {c.upper() for c in self.capabilities()}
		if not name:
			prefix = ""
			if "NAMESPACE" in caps:
				with self._errors("give its namespaces"):
					personal = client.namespace().personal
				prefix = personal[0][0] if personal else ""
			name = f"{prefix}Sent"
		with self._errors(f"create the folder {name!r}"):
			marked = False
			if "CREATE-SPECIAL-USE" in caps:
				try:  # imapclient has no CREATE with arguments
					typ, _data = client._imap._simple_command(
						"CREATE", client._normalise_folder(name), "(USE (\\Sent))"
					)
					marked = typ == "OK"  # NO [USEATTR]: the server cannot mark it; create it plainly
				except imaplib.IMAP4.abort:
					raise
				except imaplib.IMAP4.error:  # BAD: it does not take USE after all
					marked = False
			if not marked:
				client.create_folder(name)
			try:
				client.subscribe_folder(name)
			except imaplib.IMAP4.error as exc:  # the folder is there; a client just will not list it
				log.info("%s: could not subscribe to %r (%s)", self.server, name, self._words(exc))
		log.info("%s: created the Sent folder %r%s", self.server, name, " (\\Sent)" if marked else "")
		return name

	def find_sent_folder(self, fallback: str | None = None) -> str | None:
		"""The Sent folder: the one flagged \\Sent, else ``fallback``, else a usual name; None if none."""
		folders = [f for f in self.list_folders() if "\\noselect" not in {x.lower() for x in f.flags}]
		for folder in folders:
			if folder.special_use == "\\Sent":
				return folder.name
		names = {f.name for f in folders}
		return next((name for name in (fallback, *SENT_NAMES) if name and name in names), None)

	# -- messages in the selected folder -------------------------------------------------------

	def search(self, criteria: Sequence[str]) -> list[int]:
		"""UIDs matching ``criteria`` (e.g. ["UNSEEN"]), ascending."""
		with self._errors("search"):
			return sorted(self.client.search(list(criteria)))

	def uids_above(self, last_uid: int, *, unseen_only: bool = False) -> list[int]:
		"""UIDs greater than ``last_uid``, ascending (only unseen ones if asked)."""
		criteria = ["UID", f"{last_uid + 1}:*", *(["UNSEEN"] if unseen_only else [])]
		# "n:*" always matches the highest UID, even one below n
		return [uid for uid in self.search(criteria) if uid > last_uid]

	def fetch_sizes(self, uids: Iterable[int]) -> dict[int, int]:
		items = self._fetch(uids, b"RFC822.SIZE", "give message sizes")
		return {uid: int(item[b"RFC822.SIZE"]) for uid, item in items if b"RFC822.SIZE" in item}

	def fetch_message_ids(self, uids: Iterable[int]) -> dict[int, str | None]:
		"""UID -> Message-ID without angle brackets (None when the message has none)."""
		items = self._fetch(uids, b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]", "give Message-IDs")
		return {uid: _message_id(_section(item, b"BODY[HEADER.FIELDS")) for uid, item in items}

	def fetch_headers(self, uid: int) -> bytes:
		for _uid, item in self._fetch([uid], b"BODY.PEEK[HEADER]", "give message headers"):
			return _section(item, b"BODY[HEADER]")
		raise ServerRefused(
			f"{self.server} has no message with UID {uid} in this folder any more.",
			hint="It was probably deleted meanwhile; the next pull goes on without it.",
		)

	def iter_raw(
		self,
		uids: Iterable[int],
		*,
		sizes: Mapping[int, int] | None = None,
		batch_size: int = 100,
		max_batch_bytes: int = 20 * 1024 * 1024,
	) -> Iterator[tuple[int, bytes]]:
		"""(uid, raw message) in ascending UID order, fetched in batches; never sets \\Seen.

		A batch holds at most ``batch_size`` UIDs and, where ``sizes`` are known, at most
		``max_batch_bytes``. A UID the server no longer has is left out.
		"""
		items = self._fetch(
			uids,
			b"BODY.PEEK[]",
			"give messages",
			batch_size=batch_size,
			sizes=sizes,
			max_bytes=max_batch_bytes,
		)
		for uid, item in items:
			yield uid, _section(item, b"BODY[]")

	def _fetch(
		self,
		uids: Iterable[int],
		what: bytes,
		action: str,
		*,
		batch_size: int = META_BATCH,
		sizes: Mapping[int, int] | None = None,
		max_bytes: int | None = None,
	) -> Iterator[tuple[int, dict[bytes, Any]]]:
		"""UID FETCH ``what`` batch by batch: (uid, item) in ascending order, asked-for UIDs only."""
		for batch in uid_batches(sorted(set(uids)), batch_size, sizes, max_bytes):
			with self._errors(action):
				response = self.client.fetch(batch, [what])
			wanted = set(batch)
			for uid in sorted(u for u in response if u in wanted):
				yield uid, response[uid]

	def add_flags(self, uids: Iterable[int], flags: Sequence[str]) -> None:
		for batch in uid_batches(sorted(set(uids)), META_BATCH):
			with self._errors("set flags"):
				self.client.add_flags(batch, list(flags), silent=True)

	def mark_seen(self, uids: Iterable[int]) -> None:
		self.add_flags(uids, ["\\Seen"])

	def append(
		self, folder: str, raw: bytes, flags: Sequence[str] = ("\\Seen",), date: datetime | None = None
	) -> int | None:
		"""Store ``raw`` in ``folder``; its UID when the server says (UIDPLUS), else None."""
		with self._on_folder(folder, "append to"):
			response = self.client.append(folder, raw, tuple(flags), date)
		match = APPENDUID_RE.search(response or b"")
		return int(match.group(1)) if match else None


# -- helpers ----------------------------------------------------------------------------------


def _not_imap(server: str, words: str) -> ServerMisbehaved:
	shown = words if len(words) <= 200 else words[:200] + "..."
	return ServerMisbehaved(
		f"{server} sent a reply that is not IMAP ({shown}).",
		hint="This is a fault of the server (or of something between it and here): tell its administrator. "
		"Nothing is lost: the next pull starts again where this one stopped.",
	)


def _text(value: bytes | str) -> str:
	return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _folder_info(flags: Sequence[bytes], delimiter: bytes | None, name: str) -> FolderInfo:
	texts = tuple(_text(f) for f in flags)
	uses = {s.lower(): s for s in SPECIAL_USES}
	special = next((uses[f.lower()] for f in texts if f.lower() in uses), None)
	return FolderInfo(_text(name), texts, _text(delimiter) if delimiter else None, special)


def _section(item: Mapping[bytes, Any], prefix: bytes) -> bytes:
	"""The body section of a FETCH item whose name starts with ``prefix`` (servers vary in how they
	echo the field names of HEADER.FIELDS); b"" when it is missing."""
	for key, value in item.items():
		if key.upper().startswith(prefix):
			return value or b""
	return b""


def _message_id(header: bytes) -> str | None:
	value = email.message_from_bytes(header, policy=email.policy.compat32).get("Message-ID")
	if value is None:
		return None
	value = " ".join(str(value).split())
	match = MESSAGE_ID_RE.search(value)
	return (match.group(1) if match else value).strip() or None
