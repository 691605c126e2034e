"""Raw message bytes in, an IncomingMessage out.

Pure: no I/O, no frappe. ``parse_message`` never raises: a message it cannot read at all still
becomes a record with its raw bytes, a stable derived Message-ID and a warning, so the sync can
store it and go on.

Every message gets a budget, enforced by bounding what each step is given rather than by a clock,
so no message costs much more than a second or more than a few times its size in memory, whatever
it holds (the budgets are the constants below):
- the standard library's header parsers (quadratic on some inputs, and run again on every access)
  never see a long value: Content-Type and Content-Disposition are cut down to their type and the
  parameters that matter, other values are cut, and past a per-message allowance only the type is
  left; address headers and the headers shown are read up to a length, the rest said in a warning;
- a message whose structure is too large to split (too many lines, MIME parts or nested containers
  after long bodies are set aside, or a header block too long) is read for its headers only: its
  text is a note saying why and the whole message is attached as it came (message.eml);
- HTML given to the sanitizer and to the HTML-to-text converter is cut in length and refused past a
  nesting depth (then kept as text, tags stripped), and a text body is cut; what was cut is attached
  whole (message.html, message.txt) so nothing is lost;
- every text in the record encodes as UTF-8 and holds no NUL (broken encoded words and 8-bit
  bytes are repaired as the subject is), so a store can always write it.
"""

from __future__ import annotations

import codecs
import collections
import dataclasses
import email
import email.parser
import email.policy
import email.utils
import functools
import hashlib
import html
import itertools
import logging
import mimetypes
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.headerregistry import AddressHeader, HeaderRegistry
from email.message import EmailMessage, Message, MIMEPart
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote

import html2text
import nh3
from email_reply_parser import EmailMessage as _ReplyMessage

logger = logging.getLogger(__name__)


class _Budget:
	"""What one message may still spend on the standard library's header parsing (characters of
	values parsed without a cache hit) and on decoding headers for display."""

	__slots__ = ("decode", "structured")

	def __init__(self) -> None:
		self.structured = STRUCTURED_HEADER_BUDGET
		self.decode = HEADER_DECODE_BUDGET


if TYPE_CHECKING:  # generic in the stubs only: the messages it makes are EmailMessages
	_EmailPolicy = email.policy.EmailPolicy[EmailMessage]
else:
	_EmailPolicy = email.policy.EmailPolicy


class _CachingPolicy(_EmailPolicy):
	"""email.policy.default that parses each distinct header once, never raises doing it, and never
	hands the standard library's parser a long value.

	The stdlib parses a header again on every access (get_content_type() alone reads Content-Type
	several times per part, and the parser itself asks while it splits multiparts). Parsed headers
	are immutable, so short ones are cached by (name, value): about half of the time of a parse.
	Its parser is slow (and worse than linear on some inputs), so a long value is cut down first
	(``_bounded_value``), and each message has an allowance of characters parsed without a cache
	hit (``budget``, one per message): past it, only a Content-Type's type and boundary are read.
	"""

	budget: _Budget | None = None

	def header_fetch_parse(self, name, value):
		if not isinstance(value, str):
			return _tolerant_header_parse(self, name, value)
		value = _bounded_value(name, value)
		cached = _HEADER_CACHE.get((name, value))
		if cached is not None:
			return cached
		budget = self.budget
		if budget is not None:
			if budget.structured < len(value):
				value = _minimal_value(name, value)
				cached = _HEADER_CACHE.get((name, value))
				if cached is not None:
					return cached
			budget.structured -= len(value)
		parsed = _tolerant_header_parse(self, name, value)
		if len(value) <= HEADER_CACHE_VALUE_LIMIT:
			_HEADER_CACHE.put((name, value), parsed)
		return parsed


class _LRU:
	"""A small least-recently-used cache, safe to share between threads."""

	def __init__(self, size: int) -> None:
		self.size = size
		self.items: collections.OrderedDict = collections.OrderedDict()
		self.lock = threading.Lock()

	def get(self, key):
		with self.lock:
			found = self.items.get(key)
			if found is not None:
				self.items.move_to_end(key)
			return found

	def put(self, key, value) -> None:
		with self.lock:
			self.items[key] = value
			self.items.move_to_end(key)
			while len(self.items) > self.size:
				self.items.popitem(last=False)


# Bounded in count and in the length of a value (a parsed header keeps its whole parse tree): the
# same Content-Type and Content-Transfer-Encoding values come in message after message.
HEADER_CACHE_VALUE_LIMIT = 256
_HEADER_CACHE = _LRU(256)


def _tolerant_header_parse(policy: email.policy.EmailPolicy, name: str, value):
	"""The default policy's parse; a value it chokes on reads as empty. The feed parser asks for
	Content-Type while it splits the message, so one such value ("tex;ut*" raises IndexError in
	3.11) would otherwise lose the whole message."""
	try:
		return email.policy.EmailPolicy.header_fetch_parse(policy, name, value)
	except Exception:
		return email.policy.EmailPolicy.header_fetch_parse(policy, name, "")


# -- bounding header values ------------------------------------------------------------------

# the parameters a reader of the message uses, first the ones the structure depends on
_KEPT_PARAMETERS = ("boundary", "charset", "report-type", "format", "delsp", "name", "filename", "type")
# one of them: "; name=token" or '; name="quoted"', RFC 2231 sections too (linear: each try starts at ";")
_KEPT_PARAMETER = re.compile(
	r";\s*((?:" + "|".join(_KEPT_PARAMETERS) + r')(?:\*\d{0,3}\*?)?)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)',
	re.IGNORECASE,
)
_MIME_TYPE = re.compile(r"\s*([\w.+-]{1,100}(?:/[\w.+-]{1,100})?)")
_CONTENT_HEADERS = ("content-type", "content-disposition")


def _bounded_value(name: str, value: str) -> str:
	"""A header value short enough for the stdlib's parser: as it is when short (the common case);
	a long Content-Type or Content-Disposition cut down to its type and kept parameters (RFC 2231
	sections included, in a bounded number); any other long value cut."""
	if len(value) <= HEADER_FETCH_LIMIT:
		return value
	if name.lower() in _CONTENT_HEADERS:
		return _reduced_content_header(value)
	return value[:HEADER_FETCH_LIMIT]


def _reduced_content_header(value: str, *, minimal: bool = False) -> str:
	"""A Content-Type or Content-Disposition value with its type and the parameters that matter,
	each cut, in at most HEADER_FETCH_LIMIT characters, read from the value's first
	HEADER_PARSE_LIMIT characters; ``minimal``: the type and boundary only."""
	value = value[:HEADER_PARSE_LIMIT].replace("\r", "").replace("\n", "")
	found = _MIME_TYPE.match(value)
	kind = found.group(1) if found else ""
	wanted = _KEPT_PARAMETERS[:1] if minimal else _KEPT_PARAMETERS
	kept: dict[str, list[str]] = {key: [] for key in wanted}
	for match in _KEPT_PARAMETER.finditer(value, found.end() if found else 0):
		key = match.group(1).lower()
		sections = kept.get(key.partition("*")[0])
		if sections is not None and len(sections) < MAX_KEPT_PARAMETERS:
			sections.append(f"{key}={match.group(2).strip()[:PARAMETER_VALUE_LIMIT]}")
	reduced = kind
	for params in kept.values():
		for param in params:
			if len(reduced) + len(param) + 2 > HEADER_FETCH_LIMIT:
				return reduced
			reduced += "; " + param
	return reduced


def _minimal_value(name: str, value: str) -> str:
	"""What is left of a header once the message's parsing allowance is spent."""
	if name.lower() in _CONTENT_HEADERS:
		return _reduced_content_header(value, minimal=True)
	return ""


_POLICY = _CachingPolicy()
# writes attached messages back as they came, without refolding their headers
_VERBATIM = email.policy.default.clone(refold_source="none")
# an EmailPolicy's header_factory is a HeaderRegistry, which the stub types as any callable
_HEADER_TYPES = cast(HeaderRegistry, _POLICY.header_factory)
_TEXT_HEADER = _HEADER_TYPES["x-text"]
_ADDRESS_HEADER = _HEADER_TYPES["to"]
_MIME_TYPES = mimetypes.MimeTypes()  # the built-in table only: the same names on every machine
for _type, _extension in (
	("message/delivery-status", ".txt"),
	("message/disposition-notification", ".txt"),
	("text/rfc822-headers", ".txt"),
	("text/calendar", ".ics"),
):
	_MIME_TYPES.add_type(_type, _extension)

HEADER_VALUE_LIMIT = 8 * 1024  # per value kept in IncomingMessage.headers
HEADER_PARSE_LIMIT = 64 * 1024  # a header (References, Subject...) is read up to this
# -- the budget of one message (see the module docstring)
HEADER_FETCH_LIMIT = 2048  # the longest value the stdlib's header parser is given
PARAMETER_VALUE_LIMIT = 1024  # each parameter kept of a long Content-Type / Content-Disposition
MAX_KEPT_PARAMETERS = 32  # sections (RFC 2231) kept of each parameter of a long one
STRUCTURED_HEADER_BUDGET = 32 * 1024  # characters the stdlib's header parser may read per message
HEADER_DECODE_BUDGET = 256 * 1024  # characters of header values decoded for display per message
ADDRESS_PARSE_LIMIT = 16 * 1024  # an address header (From, To, Cc...) is read up to this
ADDRESS_STRICT_LIMIT = 1024  # longer ones are read by the simpler, faster parser of email.utils
MAX_HEADERS = 1000  # headers kept in IncomingMessage.headers
HEADER_BLOCK_LIMIT = 1024 * 1024  # a message's own header block, past which only its headers are read
MAX_PARSE_LINES = 20_000  # lines the feed parser reads (long bodies set aside), else headers only
MAX_MIME_LINES = 2_000  # lines starting with "--" (boundaries, at most), else headers only
MAX_CONTAINERS = 64  # multipart/* and message/* parts, else headers only
HTML_LIMIT = 512 * 1024  # characters of HTML given to the sanitizer (Gmail shows 102 KB)
HTML_DEPTH_LIMIT = 200  # elements open at once in the HTML; deeper HTML is kept as text only
HTML_TEXT_LIMIT = 48 * 1024  # characters of HTML html2text turns into text (the rest: its words)
TEXT_LIMIT = 1024 * 1024  # characters of a text body kept in text_content
REPLY_SCAN_LIMIT = 64 * 1024  # characters of text searched for where the quoted reply starts
MAX_BOUNCE_BLOCKS = 100  # field blocks read of a delivery status report
FILENAME_LIMIT = 255  # bytes of UTF-8
FUTURE_TOLERANCE = timedelta(days=1)
DERIVED_ID_DOMAIN = "email-account-app.invalid"

_ANGLE_ID = re.compile(r"<([^<>]*)>")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_WHITESPACE = re.compile(r"\s+")
_UNSAFE_FILENAME_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_CID_REFERENCE = re.compile(r"""cid:([^"'\s<>)]+)""", re.IGNORECASE)
_SUBJECT_PREFIXES = re.compile(
	r"^(?:(?:re|fwd?|aw|wg|sv|vs|antw|rif|r|tr|réf|ref|回复|转发|答复)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+",
	re.IGNORECASE,
)
# where the quoted part of a reply starts, for what email-reply-parser does not see by itself
_QUOTE_START = re.compile(
	r"^[ \t]*(?:"
	r"-{3,}[ \t]*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original"
	r"|Messaggio originale|Oorspronkelijk bericht|Originalmeddelande)[ \t]*-{3,}"
	r"|_{20,}[ \t]*\n(?:[ \t]*\n)*[ \t]*\**(?:From|Von|De|Da|Van):"
	r"|\**(?:From|Von|De):\**[ \t].*\n[ \t]*\**(?:Sent|Gesendet|Envoyé|Enviado|Date):\**[ \t]"
	r"|(?-i:On)[ \t][^\n]{1,300}(?:\n[^\n]{0,300})?\swrote:[ \t]*$"
	r")",
	re.MULTILINE | re.IGNORECASE,
)
_AUTO_SENDERS = {
	"mailer-daemon": "mailer-daemon",
	"postmaster": "mailer-daemon",
	"no-reply": "noreply",
	"noreply": "noreply",
	"do-not-reply": "noreply",
	"donotreply": "noreply",
}

_DEFECT_WORDS = {
	"StartBoundaryNotFoundDefect": "the MIME boundary was not found; the body was read as one text",
	"CloseBoundaryNotFoundDefect": "the closing MIME boundary is missing; the message may be cut off",
	"MissingHeaderBodySeparatorDefect": "a header line is malformed; what follows it was read as the body",
	"NoBoundaryInMultipartDefect": "a multipart part has no boundary; it was read as one text",
}
_QUIET_DEFECTS = {"MultipartInvariantViolationDefect"}  # follows one of the above, says nothing more

_HTML_TAGS = nh3.ALLOWED_TAGS | {"tfoot"}
_HTML_ATTRIBUTES = {
	**{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()},
	"*": {"title", "dir", "lang"},
	"a": {"href", "hreflang", "name"},
	"img": {"src", "alt", "width", "height", "align"},
	"table": {"summary", "align", "width", "border", "cellpadding", "cellspacing"},
	"td": {"align", "valign", "width", "headers", "rowspan", "colspan", "nowrap"},
	"th": {"align", "valign", "width", "headers", "rowspan", "colspan", "scope"},
}
_HTML_URL_SCHEMES = nh3.ALLOWED_URL_SCHEMES | {"cid", "data"}
_HTML_DROP_WITH_CONTENT = {"script", "style", "title"}


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
	"""A mailbox: the address with its domain lowercased, and the decoded display name."""

	email: str
	name: str = ""


@dataclass(frozen=True)
class Attachment:
	"""A part that is not the body. ``content`` is None when it was over the attachment limit
	(``dropped_reason`` says so); ``inline`` when the HTML body shows it through its Content-ID."""

	filename: str
	content_type: str
	size: int
	content: bytes | None = field(repr=False)
	content_id: str | None
	inline: bool
	dropped_reason: str | None = None


@dataclass(frozen=True)
class BounceReport:
	"""What a delivery status notification (RFC 3464) says about a message that did not arrive."""

	original_message_id: str | None
	recipients: tuple[str, ...]
	status: str | None
	diagnostic: str | None
	action: str | None


@dataclass(frozen=True, kw_only=True)
class IncomingMessage:
	"""A received message, read. Ids are without <>; ``message_id`` is derived from the bytes when
	the message has none; ``date`` is the time of receipt when the Date header is missing or absurd;
	``auto_submitted`` says why the message looks machine-made; ``headers`` holds every header,
	decoded, each value cut at HEADER_VALUE_LIMIT."""

	raw: bytes = field(repr=False)
	size: int
	message_id: str
	message_id_derived: bool
	date: datetime
	date_from_header: bool
	in_reply_to: tuple[str, ...] = ()
	references: tuple[str, ...] = ()
	subject: str = ""
	sender: Address | None = None
	reply_to: tuple[Address, ...] = ()
	to: tuple[Address, ...] = ()
	cc: tuple[Address, ...] = ()
	delivered_to: tuple[str, ...] = ()
	text_content: str = field(default="", repr=False)
	html_content: str = field(default="", repr=False)
	reply_text: str = field(default="", repr=False)
	attachments: tuple[Attachment, ...] = ()
	auto_submitted: str | None = None
	bounce: BounceReport | None = None
	warnings: tuple[str, ...] = ()
	headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

	@property
	def recipients(self) -> tuple[Address, ...]:
		return self.to + self.cc

	@property
	def has_attachment(self) -> bool:
		"""True when there is an attachment other than an image shown in the body."""
		return any(not a.inline for a in self.attachments)

	@property
	def sender_email(self) -> str:
		return self.sender.email if self.sender else ""

	@property
	def sender_full_name(self) -> str:
		return (self.sender.name or self.sender.email) if self.sender else ""

	def header(self, name: str) -> str | None:
		"""The first value of a header, decoded; None when the message has none."""
		name = name.lower()
		return next((value for key, value in self.headers if key.lower() == name), None)


def _cleaned(record):
	"""``record`` (an IncomingMessage, or any value in one) with every text in it encodable as
	UTF-8 and without NULs: lone surrogates, from broken encoded words or raw 8-bit bytes, are
	read as the subject's are (``_repair``). Bytes are left as they came."""
	if isinstance(record, str):
		return _clean_text(record)
	if isinstance(record, tuple):
		return tuple(_cleaned(item) for item in record)
	if dataclasses.is_dataclass(record):
		changes = {}
		for item in dataclasses.fields(record):
			value = getattr(record, item.name)
			if isinstance(value, (str, tuple)) or dataclasses.is_dataclass(value):
				cleaned = _cleaned(value)
				if cleaned is not value and cleaned != value:
					changes[item.name] = cleaned
		return dataclasses.replace(record, **changes) if changes else record
	return record


def _clean_text(text: str) -> str:
	if "\x00" in text:
		text = text.replace("\x00", "")
	return text if text.isascii() else _repair(text)


# -- public helpers --------------------------------------------------------------------------


def parse_message_ids(value: str | None) -> tuple[str, ...]:
	"""Message ids in a References or In-Reply-To value, without <>, in order, without repeats.

	Takes the <...> ids; only when there are none, the bare words that look like ids (with an @),
	so comments and junk some mailers put there are skipped.
	"""
	if not value:
		return ()
	value = _CONTROLS.sub(" ", value)
	ids = [_WHITESPACE.sub("", found) for found in _ANGLE_ID.findall(value)]
	if not any(ids):
		ids = [word.strip("<>,;") for word in value.split() if "@" in word]
	return tuple(dict.fromkeys(i for i in ids if i))


def parse_message_id(value: str | None) -> str | None:
	"""The first message id in a value, without <>; a lone bare word counts too."""
	ids = parse_message_ids(value)
	if ids:
		return ids[0]
	word = _CONTROLS.sub(" ", value or "").strip().strip("<>")
	return word if word and not any(c.isspace() or c in "<>" for c in word) else None


def normalize_subject(subject: str | None) -> str:
	"""The subject without reply and forward prefixes, whitespace folded, casefolded (for threads)."""
	subject = " ".join((subject or "").split())
	return _SUBJECT_PREFIXES.sub("", subject).strip().casefold()


def derived_message_id(raw: bytes) -> str:
	"""A Message-ID for a message that has none: the same for the same bytes."""
	return f"{hashlib.sha256(raw).hexdigest()[:32]}@{DERIVED_ID_DOMAIN}"


def safe_filename(name: str | None, content_type: str = "application/octet-stream") -> str:
	"""A file name safe to store: no folders, control characters or leading dots; never empty."""
	parts = [p for p in re.split(r"[/\\]", name or "") if p.strip()]
	name = _UNSAFE_FILENAME_CHARS.sub("", parts[-1] if parts else "").strip().lstrip(".").strip()
	return _truncate_utf8(name, FILENAME_LIMIT) or _default_filename(content_type)


def sanitize_html(content: str) -> str:
	"""HTML safe to show in the desk: no scripts, styles, event handlers or javascript: links."""
	return nh3.clean(
		content,
		tags=_HTML_TAGS,
		clean_content_tags=_HTML_DROP_WITH_CONTENT,
		attributes=_HTML_ATTRIBUTES,
		attribute_filter=_keep_attribute,
		url_schemes=_HTML_URL_SCHEMES,
		link_rel="noopener noreferrer",
	)


# -- parse_message ---------------------------------------------------------------------------


def parse_message(
	raw: bytes, *, attachment_limit: int | None = None, received_at: datetime | None = None
) -> IncomingMessage:
	"""Read a raw message. Never raises: what cannot be read is said in ``warnings``.

	``attachment_limit`` is in bytes: larger attachments keep their name and size but no content.
	``received_at`` stands in for a missing, broken or future Date header (default: now).
	"""
	raw = bytes(raw)
	if received_at is not None and received_at.tzinfo is None:
		received_at = received_at.replace(tzinfo=timezone.utc)
	try:
		return _parse(raw, attachment_limit, received_at)
	except Exception as exc:
		logger.exception("could not parse a message of %d bytes", len(raw))
		return _cleaned(
			IncomingMessage(
				raw=raw,
				size=len(raw),
				message_id=derived_message_id(raw),
				message_id_derived=True,
				date=received_at or datetime.now(timezone.utc),
				date_from_header=False,
				warnings=(f"could not parse: {type(exc).__name__}: {exc}"[:500],),
			)
		)


def _parse(raw: bytes, attachment_limit: int | None, received_at: datetime | None) -> IncomingMessage:
	warnings: list[str] = []
	if not raw.strip():
		warnings.append("the message is empty")
	budget = _Budget()
	msg, unread = _message_from_bytes(raw, budget)
	headers, values = _read_headers(msg, warnings, budget)

	if unread is not None:  # over the budget: the headers, a note, and the message as it came
		warnings.append(unread)
		parts = [msg]
		text_content = unread
		html_content = ""
		attachments: tuple[Attachment, ...] = (
			_kept_whole("message.eml", "message/rfc822", raw, attachment_limit, warnings),
		)
	else:
		parts = _parts(msg)
		text_part = _body(msg, parts, "plain")
		html_part = _body(msg, parts, "html")
		if text_part is None and html_part is None and _is_broken_multipart(msg):
			text_part = msg  # better the body with its boundary lines than nothing
		kept: list[Attachment] = []
		raw_html = (
			_part_text(html_part, warnings, HTML_LIMIT, kept, attachment_limit)
			if html_part is not None
			else ""
		)
		html_content, html_as_text = _sanitized(raw_html, warnings) if raw_html else ("", "")
		text_content = (
			_plain_text(text_part, warnings, kept, attachment_limit) if text_part is not None else ""
		)
		if not text_content.strip() and (html_content or html_as_text):
			text_content = html_as_text or _html_to_text(html_content, warnings)

		cids = {unquote(c) for c in _CID_REFERENCE.findall(raw_html)}
		attachments = tuple(
			_attachment(part, attachment_limit, cids, warnings)
			for part in parts
			if part is not text_part and part is not html_part and _is_leaf(part)
		) + tuple(kept)
	warnings.extend(_defect_warnings(parts))

	message_id = parse_message_id(_first(values, "message-id"))
	date, date_from_header = _message_date(_first(values, "date"), received_at, warnings)
	sender = next(iter(_addresses(values, "From", warnings)), None)
	return _cleaned(
		IncomingMessage(
			raw=raw,
			size=len(raw),
			message_id=message_id or derived_message_id(raw),
			message_id_derived=message_id is None,
			date=date,
			date_from_header=date_from_header,
			in_reply_to=parse_message_ids(" ".join(values.get("in-reply-to", ()))),
			references=parse_message_ids(" ".join(values.get("references", ()))),
			subject=_one_line(_decode_words((_first(values, "subject") or "")[:HEADER_VALUE_LIMIT])),
			sender=sender,
			reply_to=_addresses(values, "Reply-To", warnings),
			to=_addresses(values, "To", warnings),
			cc=_addresses(values, "Cc", warnings),
			delivered_to=_delivered_to(values),
			text_content=text_content,
			html_content=html_content,
			reply_text=extract_reply(text_content),
			attachments=attachments,
			auto_submitted=_auto_submitted(values, sender),
			bounce=_bounce_report(msg) if unread is None else None,
			warnings=tuple(dict.fromkeys(warnings)),
			headers=headers,
		)
	)


def _message_from_bytes(raw: bytes, budget: _Budget | None = None) -> tuple[EmailMessage, str | None]:
	"""The message parsed, and None; or, when its structure is over the budget, its headers only
	and the reason.

	email.message_from_bytes, with long bodies set aside while the feed parser runs. The feed
	parser reads a message line by line in Python (a 300 KB attachment is 4,000 lines and about
	10 ms, and each line is tested against every boundary open around it). The text of a part
	that is not a container means nothing to it, up to a line starting with "--" (a boundary, or
	not), so each long run of such lines is swapped for a one-word placeholder, and put back
	into the part that holds it afterwards, exactly as it was. Should a placeholder not land in
	exactly one part's payload, the message is parsed again the plain way.
	"""
	# clone() sets any attribute the policy's class declares; the stub knows only EmailPolicy's
	policy = _POLICY.clone(budget=budget) if budget is not None else _POLICY  # type: ignore[call-arg]
	head_end = _body_start(raw, 0, HEADER_BLOCK_LIMIT)
	if head_end is None and len(raw) > HEADER_BLOCK_LIMIT:
		return _headers_only(
			raw, policy, f"its header block is longer than {_human_size(HEADER_BLOCK_LIMIT)}"
		)
	collapsed, runs = _collapse_bodies(raw)
	unread = _structure_over_budget(collapsed)
	if unread is not None:
		return _headers_only(raw, policy, unread)
	if not runs:
		return email.message_from_bytes(raw, policy=policy), None
	msg = email.message_from_bytes(collapsed, policy=policy)
	restored = 0
	for part in msg.walk():
		# a leaf's text as parsed (a list for multiparts): get_payload() would decode its 8-bit bytes;
		# the stub leaves out this private attribute
		payload = part._payload  # type: ignore[attr-defined]
		if isinstance(payload, str) and _PLACEHOLDER_PREFIX in payload:
			for token, run in runs.items():
				if token in payload:
					restored += payload.count(token)
					payload = payload.replace(token, run)
			part.set_payload(payload)
	if restored != len(runs):
		return email.message_from_bytes(raw, policy=policy), None
	return msg, None


def _structure_over_budget(collapsed: bytes) -> str | None:
	"""Why the feed parser may not read this message (long bodies set aside), or None."""
	lines = collapsed.count(b"\n") + collapsed.count(b"\r") - collapsed.count(b"\r\n")
	if lines > MAX_PARSE_LINES:
		return f"it has {lines:,} lines to split into parts, more than {MAX_PARSE_LINES:,}"
	dashes = collapsed.count(b"\n--") + collapsed.count(b"\r--") + collapsed.startswith(b"--")
	if dashes > MAX_MIME_LINES:
		return f"it has {dashes:,} lines that may start a MIME part, more than {MAX_MIME_LINES:,}"
	lowered = collapsed.lower()
	containers = len(_CONTAINER_LINE.findall(lowered)) + lowered.startswith(b"content-type:")
	if containers > MAX_CONTAINERS:
		return f"it has {containers:,} nested MIME containers, more than {MAX_CONTAINERS:,}"
	return None


def _headers_only(
	raw: bytes, policy: email.policy.EmailPolicy[EmailMessage], reason: str
) -> tuple[EmailMessage, str]:
	"""The message's own header block (cut at HEADER_BLOCK_LIMIT and MAX_PARSE_LINES lines) parsed
	without its body, and the note that says so."""
	end = _body_start(raw, 0, HEADER_BLOCK_LIMIT)
	block = raw[: HEADER_BLOCK_LIMIT if end is None else end]
	cut = _nth_line_end(block, MAX_PARSE_LINES)
	if cut is not None:
		block = block[:cut]
	msg = email.parser.BytesParser(policy=policy).parsebytes(
		block.rstrip(b"\r\n") + b"\n\n", headersonly=True
	)
	note = (
		f"This message is too complex to read here ({reason}), so only its headers were read. "
		"The whole message is attached as it came (message.eml); open it in a mail client to read it."
	)
	return msg, note


def _nth_line_end(data: bytes, count: int) -> int | None:
	"""Where the ``count``-th line of ``data`` ends, or None when it has fewer lines."""
	if data.count(b"\n") < count:
		return None
	position = -1
	for _ in range(count):
		position = data.find(b"\n", position + 1)
	return position + 1


_CONTENT_TYPE_LINE = re.compile(rb"^content-type[ \t]*:", re.IGNORECASE | re.MULTILINE)
# searched in lowercased bytes: a literal start, so the search runs at the speed of a find
_CONTAINER_LINE = re.compile(rb"[\r\n]content-type:\s*(?:multipart|message)/")
_PLACEHOLDER_PREFIX = "EmailAccountAppBodyRun"
BASE64_RUN_MIN = 2048  # shorter bodies are parsed as they are: setting them aside costs more


class _LineStarts:
	"""Successive positions of the lines of ``data`` that start with ``word`` (lines end at CR, LF
	or CRLF, as the feed parser splits them), each found at the speed of bytes.find."""

	def __init__(self, data: bytes, word: bytes) -> None:
		self.data = data
		self.after_lf = b"\n" + word
		self.after_cr = b"\r" + word
		self.next_lf = self.next_cr = -2  # not looked for yet

	def next(self, start: int) -> int:
		"""The first such line at or after ``start`` (the line may begin exactly there), or -1."""
		if start == 0 and self.data.startswith(self.after_lf[1:]):
			return 0
		since = max(0, start - 1)
		if self.next_lf != -1 and self.next_lf < since:
			self.next_lf = self.data.find(self.after_lf, since)
		if self.next_cr != -1 and self.next_cr < since:
			self.next_cr = self.data.find(self.after_cr, since)
		found = [p for p in (self.next_lf, self.next_cr) if p >= 0]
		return min(found) + 1 if found else -1


def _collapse_bodies(raw: bytes) -> tuple[bytes, dict[str, str]]:
	"""The message with each long body text replaced by a placeholder, and the texts by
	placeholder. A body is the text after the blank line that ends the headers of a part whose
	Content-Type is not multipart/* or message/*, up to the next line starting with "--" (a
	boundary, maybe); the message's own body (when it is no container) up to its end. Nothing
	after a message/delivery-status header is set aside: that body is header blocks. At most
	MAX_MIME_LINES headers are looked at: past that the message is over its budget anyway."""
	if len(raw) < BASE64_RUN_MIN or _PLACEHOLDER_PREFIX.encode() in raw:
		return raw, {}
	nonce = secrets.token_hex(8)
	pieces: list[bytes] = []
	runs: dict[str, str] = {}
	position = 0

	def set_aside(start: int, end: int) -> None:
		nonlocal position
		if end - start < BASE64_RUN_MIN:
			return
		token = f"{_PLACEHOLDER_PREFIX}{nonce}N{len(runs)}"
		runs[token] = raw[start:end].decode("ascii", "surrogateescape")
		pieces.append(raw[position:start])
		pieces.append(token.encode("ascii"))
		position = end

	top_end = _body_start(raw, 0)
	if top_end is not None and _is_leaf_block(raw[:top_end], default_leaf=True):
		set_aside(top_end, len(raw))  # not a container: the feed parser reads the rest as one text
	else:
		lowered = raw.lower()
		headers = _LineStarts(lowered, b"content-type")
		dashes = _LineStarts(raw, b"--")
		boundaries: set[bytes] = set()
		search_from = 0
		for _ in range(MAX_MIME_LINES):
			header = headers.next(search_from)
			if header == -1:
				break
			start = _body_start(raw, header)
			if start is None:
				break
			search_from = start
			leaf = _is_leaf_header_block(raw, header, start, boundaries)
			if leaf is None:  # a message/delivery-status body: header blocks, up to a boundary
				after = _next_boundary_line(raw, dashes, start, boundaries)
				if after == -1:
					break
				search_from = after
				continue
			if not leaf:
				continue
			boundary = dashes.next(start)
			search_from = end = len(raw) if boundary == -1 else boundary
			# the last line end is the boundary's, or dropped at the end of the message: not the run's
			if raw.endswith(b"\r\n", start, end):
				end -= 2
			elif raw.endswith((b"\n", b"\r"), start, end):
				end -= 1
			set_aside(start, end)
	if not runs:
		return raw, {}
	pieces.append(raw[position:])
	return b"".join(pieces), runs


_LEAF_CONTENT_TYPE = re.compile(
	rb"^content-type:\s*(?!multipart/|message/)[\w.+-]+/", re.IGNORECASE | re.MULTILINE
)
_CONTAINER_CONTENT_TYPE = re.compile(
	rb"^content-type:\s*(?:multipart|message)/", re.IGNORECASE | re.MULTILINE
)
_DELIVERY_STATUS = re.compile(rb"^content-type:\s*message/delivery-status", re.IGNORECASE | re.MULTILINE)
_BOUNDARY = re.compile(rb'boundary\s*=\s*("[^"\r\n]{1,200}"|[^\s;"]{1,200})', re.IGNORECASE)
HEADER_LOOKBACK = 8 * 1024  # how far before a Content-Type line its header block is looked for


def _is_leaf_header_block(raw: bytes, header: int, body: int, boundaries: set[bytes]) -> bool | None:
	"""Whether the headers around ``header`` (up to ``body``) name a type whose body the parser
	does not open: a message/* body is parsed as a message, a multipart/* body is split, and a
	part without Content-Type is a message in a multipart/digest. None for a
	message/delivery-status (its body is header blocks, which nothing may be set aside in). The
	boundary a multipart header declares is added to ``boundaries``."""
	floor = max(0, header - HEADER_LOOKBACK)
	block_start = max(
		raw.rfind(b"\n\n", floor, header),
		raw.rfind(b"\n\r\n", floor, header),
		raw.rfind(b"\n--", floor, header),
		raw.rfind(b"\r--", floor, header),
	)
	if block_start == -1 and floor > 0:
		return False  # where the block starts is too far back to tell
	block = raw[max(block_start, 0) : body]
	if _DELIVERY_STATUS.search(block):
		return None
	leaf = _is_leaf_block(block, default_leaf=False)
	if not leaf and len(boundaries) < MAX_CONTAINERS:
		boundaries.update(b.strip(b'"').rstrip() for b in _BOUNDARY.findall(block))
	return leaf


def _next_boundary_line(raw: bytes, dashes: _LineStarts, start: int, boundaries: set[bytes]) -> int:
	"""Where the next line that is one of ``boundaries`` (with its closing "--" or not) starts,
	looking at no more than MAX_MIME_LINES lines starting with "--"; -1 when there is none."""
	position = start
	for _ in range(MAX_MIME_LINES):
		found = dashes.next(position)
		if found == -1:
			return -1
		line_end = min(
			(e for e in (raw.find(b"\n", found), raw.find(b"\r", found)) if e != -1), default=len(raw)
		)
		line = raw[found + 2 : line_end].rstrip(b" \t")
		if line.removesuffix(b"--") in boundaries or line in boundaries:
			return found
		position = line_end
	return -1


def _is_leaf_block(block: bytes, *, default_leaf: bool) -> bool:
	"""Whether every Content-Type line of a header block names a type the parser does not open;
	a block without one is a leaf when ``default_leaf`` (the message's own headers: text/plain)."""
	lines = len(_CONTENT_TYPE_LINE.findall(block))
	if not lines:
		return default_leaf
	return len(_LEAF_CONTENT_TYPE.findall(block)) == lines and not _CONTAINER_CONTENT_TYPE.search(block)


_BLANK_LINE = re.compile(rb"\n\r?\n")


def _body_start(raw: bytes, after: int, limit: int = HEADER_PARSE_LIMIT) -> int | None:
	"""Where the body starts: after the first blank line from ``after`` (the headers' end), looked
	for in the next ``limit`` bytes."""
	found = _BLANK_LINE.search(raw, max(0, after - 1), after + limit)
	return found.end() if found is not None else None


# -- headers ---------------------------------------------------------------------------------


def _read_headers(
	msg: Message, warnings: list[str], budget: _Budget | None = None
) -> tuple[tuple[tuple[str, str], ...], dict[str, list[str]]]:
	"""The headers decoded for display (the first MAX_HEADERS, each cut at HEADER_VALUE_LIMIT and
	decoded while the message's allowance lasts), and the raw values by lowercased name for
	parsing (each cut at HEADER_PARSE_LIMIT; of References and In-Reply-To, the end is kept: the
	newest ids)."""
	budget = budget or _Budget()
	pairs = []
	values: dict[str, list[str]] = {}
	items = list(msg.raw_items())
	if len(items) > MAX_HEADERS:
		warnings.append(f"the message has {len(items):,} headers; only the first {MAX_HEADERS:,} were read")
		items = items[:MAX_HEADERS]
	for name, value in items:
		name = _repair(name.replace("\x00", ""))
		value = _unfold(value, warnings, f"the {name} header")
		if len(value) > HEADER_PARSE_LIMIT:
			newest = name.lower() in ("references", "in-reply-to")
			warnings.append(
				f"the {name} header is {len(value) // 1024} KB long; only its {'end' if newest else 'start'} was read"
			)
			value = value[-HEADER_PARSE_LIMIT:] if newest else value[:HEADER_PARSE_LIMIT]
		values.setdefault(name.lower(), []).append(value)
		shown = value[:HEADER_VALUE_LIMIT]
		if budget.decode >= len(shown):
			budget.decode -= len(shown)
			shown = _decode_words(shown)
		pairs.append((name, shown[:HEADER_VALUE_LIMIT]))
	return tuple(pairs), values


def _first(values: dict[str, list[str]], name: str) -> str | None:
	found = values.get(name)
	return found[0] if found else None


def _unfold(value: str, warnings: list[str] | None = None, where: str = "a header") -> str:
	"""A raw header value on one line, without NULs, its raw 8-bit bytes read as text."""
	return _repair(value.replace("\r", "").replace("\n", "").replace("\x00", ""), warnings, where)


def _decode_words(value: str) -> str:
	"""A header value with its RFC 2047 encoded words decoded."""
	if "=?" not in value:
		return value
	try:
		return _repair(str(_TEXT_HEADER("x-text", value)).replace("\x00", ""))
	except Exception:  # the stdlib header parser has raised on odd input before
		return value


def _repair(text: str, warnings: list[str] | None = None, where: str = "a header") -> str:
	"""Text that encodes as UTF-8: raw 8-bit bytes the parser kept as surrogate escapes are read as
	UTF-8, else Latin-1; any other lone surrogate (a UTF-7 trick) becomes "?"."""
	if text.isascii():
		return text
	try:
		text.encode("utf-8")
		return text
	except UnicodeEncodeError:
		pass
	try:
		data = text.encode("utf-8", "surrogateescape")
	except UnicodeEncodeError:
		return text.encode("utf-8", "replace").decode("utf-8")
	return _decode_bytes(data, None, warnings if warnings is not None else [], where)


def _addresses(values: dict[str, list[str]], name: str, warnings: list[str]) -> tuple[Address, ...]:
	found = []
	left = ADDRESS_PARSE_LIMIT
	for value in values.get(name.lower(), ()):
		if left <= 0:
			break
		if len(value) > left:
			cut = value.rfind(",", 0, left)
			warnings.append(
				f"the {name} header is {len(value) // 1024} KB long; only its first addresses were read"
			)
			value = value[: cut if cut > 0 else left]
		left -= len(value)
		for display_name, addr_spec in _address_pairs(value, name, warnings):
			address = _address(addr_spec, display_name)
			if address is not None:
				found.append(address)
			elif addr_spec or display_name:
				warnings.append(
					f"skipped an invalid address in {name}: {(addr_spec or display_name)[:100]!r}"
				)
	return tuple(found)


@functools.lru_cache(maxsize=2048)
def _parsed_addresses(value: str) -> tuple[tuple[str, str], ...]:
	"""The policy's parse of an address header; cached, as the same senders come again and again."""
	header = _ADDRESS_HEADER("to", value)
	if not isinstance(header, AddressHeader):  # never: the registry's class for To is one
		return ()
	return tuple((a.display_name, a.addr_spec) for a in header.addresses)


def _address_pairs(value: str, name: str, warnings: list[str]) -> list[tuple[str, str]]:
	"""(display name, address) pairs: the policy's parser for a short value, email.utils (ten
	times faster) for a long one or when the policy's parser gives up."""
	if len(value) <= ADDRESS_STRICT_LIMIT:
		try:
			return list(_parsed_addresses(value))
		except Exception as exc:
			warnings.append(f"the {name} header is malformed ({exc}); read it the simple way")
	try:
		pairs = email.utils.getaddresses([value])
	except RecursionError:  # comments nested thousands deep
		warnings.append(f"the {name} header nests its comments too deep to read; it was skipped")
		return []
	return [(_decode_words(n), a) for n, a in pairs]


def _address(addr_spec: str, display_name: str = "") -> Address | None:
	local, at, domain = _CONTROLS.sub("", addr_spec).strip().strip("<>").rpartition("@")
	if not (local and at and domain) or any(c.isspace() for c in local + domain):
		return None
	return Address(f"{local}@{domain.lower()}", _one_line(display_name))


def _one_line(text: str) -> str:
	"""A name or subject on one line: control characters and line separators as spaces, runs of
	white space as one."""
	return " ".join(_CONTROLS.sub(" ", _repair(text)).split())


def _delivered_to(values: dict[str, list[str]]) -> tuple[str, ...]:
	"""The envelope recipients the receiving servers noted, for sub-address (plus) tokens."""
	found = []
	for name in ("delivered-to", "x-original-to", "envelope-to"):
		for value in values.get(name, ()):
			try:
				pairs = email.utils.getaddresses([value[:ADDRESS_PARSE_LIMIT]])
			except RecursionError:  # comments nested thousands deep
				continue
			for _, addr_spec in pairs:
				address = _address(addr_spec)
				if address is not None:
					found.append(address.email)
	return tuple(dict.fromkeys(found))


def _message_date(
	value: str | None, received_at: datetime | None, warnings: list[str]
) -> tuple[datetime, bool]:
	"""The Date header as an aware datetime, or the time of receipt when it is missing or absurd."""
	fallback = received_at or datetime.now(timezone.utc)
	if not value:
		return fallback, False
	try:
		date = email.utils.parsedate_to_datetime(value)
	except (TypeError, ValueError, IndexError, OverflowError):
		warnings.append(f"the Date header {value[:100]!r} is not a date; used the time of receipt")
		return fallback, False
	if date.tzinfo is None:
		date = date.replace(tzinfo=timezone.utc)
	if date - fallback > FUTURE_TOLERANCE:
		warnings.append(f"the Date header {value[:100]!r} is in the future; used the time of receipt")
		return fallback, False
	return date, True


def _auto_submitted(values: dict[str, list[str]], sender: Address | None) -> str | None:
	"""Why the message looks machine-made (so no auto-reply goes back), or None."""
	auto = (_first(values, "auto-submitted") or "").split(";")[0].strip().lower()
	if auto and auto != "no":
		return auto
	precedence = (_first(values, "precedence") or "").strip().lower()
	if precedence in ("bulk", "junk", "list"):
		return f"precedence: {precedence}"
	for name in ("x-autoreply", "x-autorespond"):
		if name in values:
			return name
	if "list-id" in values or "list-unsubscribe" in values:
		return "list"
	local_part = sender.email.rpartition("@")[0].lower() if sender else ""
	return _AUTO_SENDERS.get(local_part)


# -- bodies ----------------------------------------------------------------------------------


def _body(msg: EmailMessage, parts: list[EmailMessage], subtype: str) -> MIMEPart | None:
	"""The text/plain or text/html part that is the message's body, as get_body() chooses it."""
	try:
		return msg.get_body(preferencelist=(subtype,))
	except Exception:  # get_body trips over a multipart/related whose boundary was not found
		wanted = f"text/{subtype}"
		return next((p for p in parts if p.get_content_type() == wanted and not p.is_attachment()), None)


def _is_broken_multipart(msg: Message) -> bool:
	"""A multipart whose boundary was never found: the parser kept the body as one string."""
	return msg.get_content_maintype() == "multipart" and not msg.is_multipart()


def _part_text(
	part: Message,
	warnings: list[str],
	limit: int,
	kept: list[Attachment] | None = None,
	attachment_limit: int | None = None,
) -> str:
	"""A text part decoded with its charset, tolerantly; newlines as \\n, no NULs. Only its first
	``limit`` characters: the whole part is then added to ``kept`` as an attachment."""
	data = _decoded(part)
	where = f"the {part.get_content_type()} part"
	cut = len(data) > limit  # a character is at least a byte: more bytes than that may be too long
	text = _decode_bytes(
		data[: limit * 4] if cut else data, part.get_content_charset(), warnings, where, final=not cut
	)
	text = _repair(text, warnings, where).replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
	if len(text) > limit or len(data) > limit * 4:
		subtype = part.get_content_subtype()
		filename = "message.html" if subtype == "html" else "message.txt"
		warnings.append(
			f"{where} is {_human_size(len(data))}; only its first {_human_size(limit)} is shown, "
			f"the whole of it is attached ({filename})"
		)
		text = text[:limit]
		if kept is not None:
			kept.append(_kept_whole(filename, f"text/{subtype}", data, attachment_limit, warnings))
	return text


def _plain_text(
	part: Message,
	warnings: list[str],
	kept: list[Attachment] | None = None,
	attachment_limit: int | None = None,
) -> str:
	text = _part_text(part, warnings, TEXT_LIMIT, kept, attachment_limit)
	if str(part.get_param("format", "")).lower() == "flowed":
		text = _unflow(text, delsp=str(part.get_param("delsp", "")).lower() == "yes")
	return text


def _kept_whole(
	filename: str, content_type: str, data: bytes, limit: int | None, warnings: list[str]
) -> Attachment:
	"""What was cut or not read, attached whole (within the attachment limit)."""
	reason = None
	if limit is not None and len(data) > limit:
		reason = f"over the attachment limit of {_human_size(limit)} ({_human_size(len(data))})"
		warnings.append(f"attachment {filename!r} was not kept: {reason}")
	return Attachment(
		filename=filename,
		content_type=content_type,
		size=len(data),
		content=None if reason else data,
		content_id=None,
		inline=False,
		dropped_reason=reason,
	)


def _decode_bytes(
	data: bytes, charset: str | None, warnings: list[str], where: str, *, final: bool = True
) -> str:
	"""Bytes as text: the declared charset, else UTF-8, else the charset with replacements or Latin-1.
	``final=False``: ``data`` is the start of a text, and may end in the middle of a character."""
	codec = _codec(charset)
	for candidate in dict.fromkeys(c for c in (codec, "utf-8") if c):
		try:
			text = data.decode(candidate) if final else codecs.getincrementaldecoder(candidate)().decode(data)
		except UnicodeDecodeError:
			continue
		if charset and candidate != codec:
			warnings.append(
				f"{where} declares the charset {charset!r}, which is unknown or wrong; read as UTF-8"
			)
		return text
	if codec:
		warnings.append(f"{where} has bytes that are not valid {charset}; they were replaced")
		return data.decode(codec, "replace")
	if charset:
		warnings.append(f"{where} declares the unknown charset {charset!r}; read as Latin-1")
	else:
		warnings.append(f"{where} has 8-bit bytes that are not UTF-8; read as Latin-1")
	return data.decode("latin-1")


@functools.lru_cache(maxsize=256)
def _codec(charset: str | None) -> str | None:
	"""Python's name for a mail charset ("utf8", "cp-850" too), or None when it has no text codec."""
	if not charset:
		return None
	for name in (charset, charset.replace("-", "").replace("_", "")):
		try:
			info = codecs.lookup(name)
		except (LookupError, ValueError):
			continue
		if getattr(info, "_is_text_encoding", True):
			return info.name
	return None


def _unflow(text: str, *, delsp: bool) -> str:
	"""Undo format=flowed (RFC 3676): join soft-broken lines, keep the quote depth of each."""
	out: list[str] = []
	pending: str | None = None
	pending_depth = 0
	for line in text.split("\n"):
		content = line.lstrip(">")
		depth = len(line) - len(content)
		content = content.removeprefix(" ")  # space-stuffing
		flowed = content.endswith(" ") and content != "-- "
		if flowed and delsp:
			content = content[:-1]
		if pending is not None and depth != pending_depth:
			out.append(_quoted(pending, pending_depth))
			pending = None
		pending = content if pending is None else pending + content
		pending_depth = depth
		if not flowed:
			out.append(_quoted(pending, depth))
			pending = None
	if pending is not None:
		out.append(_quoted(pending, pending_depth))
	return "\n".join(out)


def _quoted(line: str, depth: int) -> str:
	return f"{'>' * depth} {line}" if depth else line


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
	"""data: URLs only as images (img src="data:image/..."), nowhere else."""
	if value[:5].lower() != "data:" or (
		tag == "img" and attribute == "src" and value[5:11].lower() == "image/"
	):
		return value
	return None


_HTML_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9:-]{0,40})\b[^<>]*?(/?)>")
# tags that nest: not those without content, nor those the HTML parser closes when the next opens
_NESTING_TAG = re.compile(
	r"<(/?)(?!(?:area|base|br|col|embed|hr|img|input|link|meta|param|source|track|wbr|p|li|dt|dd|tr|td|th"
	r"|option|optgroup|thead|tbody|tfoot|colgroup|rb|rt|rtc|rp)\b)[a-zA-Z][a-zA-Z0-9:-]{0,40}\b[^<>]*>",
	re.IGNORECASE,
)


def _html_depth(content: str) -> int:
	"""How many elements are open at once at most (an upper bound for well-formed HTML)."""
	steps = itertools.accumulate(
		_NESTING_TAG.findall(content),
		lambda depth, closing: depth - 1 if closing and depth else depth + 1,
		initial=0,
	)
	return max(steps)


def _sanitized(content: str, warnings: list[str]) -> tuple[str, str]:
	"""(sanitized HTML, ""), or, for HTML nested too deep to sanitize in bounded time, ("", its
	text with the tags stripped)."""
	depth = _html_depth(content)
	if depth > HTML_DEPTH_LIMIT:
		warnings.append(
			f"the HTML body nests {depth:,} elements deep, more than {HTML_DEPTH_LIMIT}; kept as text only"
		)
		return "", _stripped_html(content)
	return sanitize_html(content), ""


def _stripped_html(content: str) -> str:
	"""The words of some HTML, its tags taken out: linear, for what html2text may not be given."""
	text = html.unescape(_HTML_TAG.sub(" ", content))
	return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def _html_to_text(content: str, warnings: list[str]) -> str:
	"""The HTML as text (Markdown-ish, by html2text); past HTML_TEXT_LIMIT its words only."""
	if len(content) > HTML_TEXT_LIMIT:
		cut = content.rfind("<", 0, HTML_TEXT_LIMIT)
		cut = cut if cut > 0 else HTML_TEXT_LIMIT
		rest = _stripped_html(content[cut:])
		return (_html_to_text(content[:cut], warnings) + "\n\n" + rest).strip("\n")
	converter = html2text.HTML2Text()
	converter.body_width = 0
	converter.ignore_images = True
	converter.ignore_tables = True  # mail uses tables for layout, not for data
	try:
		return converter.handle(content).strip("\n")
	except Exception as exc:  # html2text has choked on odd tables before
		warnings.append(f"could not turn the HTML into text ({exc}); kept its words only")
		return html.unescape(nh3.clean(content, tags=set())).strip()


class _ReplyReader(_ReplyMessage):
	"""email-reply-parser without its search for an "On ... wrote:" header broken over lines: that
	regex backtracks for minutes on a long text with many "On"s. _QUOTE_START finds those headers."""

	MULTI_QUOTE_HDR_REGEX_MULTILINE = re.compile(r"(?!)")


def extract_reply(text: str) -> str:
	"""The new part of a reply: the text before the quoted message, without a signature; all of it
	when that leaves nothing. Only the first REPLY_SCAN_LIMIT characters are read."""
	if len(text) > REPLY_SCAN_LIMIT:
		text = text[: text.rfind("\n", 0, REPLY_SCAN_LIMIT) % (REPLY_SCAN_LIMIT + 1)]
	start = _QUOTE_START.search(text)
	if start is not None and text[: start.start()].strip():
		text = text[: start.start()]
	return _ReplyReader(text).read().reply.strip() or text.strip()


# -- attachments -----------------------------------------------------------------------------


def _parts(msg: EmailMessage) -> list[EmailMessage]:
	"""Every part of the tree, in order; an attached message (message/*) is one part, not opened."""
	found = [msg]
	if msg.is_multipart() and msg.get_content_maintype() != "message":
		for sub in _subparts(msg):
			found.extend(_parts(sub))
	return found


def _subparts(msg: EmailMessage) -> list[EmailMessage]:
	"""The parts a multipart (or message/*) holds; none for a leaf. The parser makes each of them with
	the policy's message factory, as the message itself."""
	payload = msg.get_payload()
	return [p for p in payload if isinstance(p, EmailMessage)] if isinstance(payload, list) else []


def _decoded(part: Message) -> bytes:
	"""A leaf's content, its transfer encoding undone; nothing for a multipart (or message/*)."""
	data = part.get_payload(decode=True)
	return data if isinstance(data, bytes) else b""


def _is_leaf(part: Message) -> bool:
	return not part.is_multipart() or part.get_content_maintype() == "message"


def _attachment(part: Message, limit: int | None, cids: set[str], warnings: list[str]) -> Attachment:
	content_type = part.get_content_type()
	filename = safe_filename(_part_filename(part), content_type)
	content_id = parse_message_id(_part_header(part, "content-id"))
	size = _decoded_size(part, limit) if limit is not None else None
	content = None
	if limit is None or size is None or size <= limit:
		content = _part_bytes(part)
		size = len(content)
	reason = None
	if limit is not None and size > limit:
		content = None
		reason = f"over the attachment limit of {_human_size(limit)} ({_human_size(size)})"
		warnings.append(f"attachment {filename!r} was not kept: {reason}")
	return Attachment(
		filename=filename,
		content_type=content_type,
		size=size,
		content=content,
		content_id=content_id,
		inline=content_id is not None and content_id in cids,
		dropped_reason=reason,
	)


def _part_header(part: Message, name: str) -> str | None:
	"""A part's raw header value, unparsed (the policy's parsing may raise on junk)."""
	return next((_unfold(v) for k, v in part.raw_items() if k.lower() == name), None)


def _part_filename(part: Message) -> str:
	"""The file name from Content-Disposition or Content-Type (RFC 2231 and 2047 decoded).

	Read from a compat32 Message holding the part's raw values with their 8-bit bytes already read
	as text: the default policy would have turned such bytes into U+FFFD first."""
	holder = Message()
	for name in ("content-disposition", "content-type"):
		value = _part_header(part, name)
		if value is not None:
			holder[name] = _bounded_value(name, value)
	try:
		return _decode_words(holder.get_filename() or "")
	except Exception:  # a malformed parameter list
		return ""


def _decoded_size(part: Message, limit: int) -> int | None:
	"""A base64 part's decoded size from its length, without decoding it, when it may be over
	``limit``; None for other parts (decoding those costs about as much as measuring them)."""
	if (_part_header(part, "content-transfer-encoding") or "").strip().lower() != "base64":
		return None
	try:
		payload = part.get_payload()
	except (ValueError, TypeError):  # 8-bit junk in the payload and an odd charset parameter
		return None
	if not isinstance(payload, str):
		return None
	if len(payload) * 3 // 4 <= limit:  # an upper bound: under the limit, whatever the line ends
		return None
	length = len(payload) - sum(payload.count(c) for c in "\r\n \t")
	return max(0, length * 3 // 4 - payload[-8:].count("="))


def _part_bytes(part: Message) -> bytes:
	"""A part's decoded content; an attached message as the bytes of that message."""
	content = part.get_payload(decode=True)
	if isinstance(content, bytes):
		return content
	payload = part.get_payload()
	inner = payload if isinstance(payload, list) else []
	return b"".join(_message_bytes(m) for m in inner if isinstance(m, Message))


def _message_bytes(msg: Message) -> bytes:
	"""An attached message written back; its 8-bit header bytes as they came where the generator can."""
	try:
		return msg.as_bytes(policy=_VERBATIM)
	except UnicodeEncodeError:  # BytesGenerator on a multipart without boundary and 8-bit bytes
		return msg.as_string(policy=_VERBATIM).encode("utf-8", "surrogateescape")


def _truncate_utf8(name: str, limit: int) -> str:
	if len(name.encode("utf-8")) <= limit:
		return name
	stem, dot, extension = name.rpartition(".")
	if not dot or len(extension) > 16:
		stem, dot, extension = name, "", ""
	budget = limit - len((dot + extension).encode("utf-8"))
	return stem.encode("utf-8")[:budget].decode("utf-8", "ignore") + dot + extension


def _default_filename(content_type: str) -> str:
	base = "image" if content_type.startswith("image/") else "attachment"
	return base + (_MIME_TYPES.guess_extension(content_type) or ".bin")


def _human_size(size: int) -> str:
	for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
		if size >= factor:
			return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
	return f"{size} bytes"


def _defect_warnings(parts: list[EmailMessage]) -> list[str]:
	"""The parser's complaints in plain words."""
	found = []
	for part in parts:
		for defect in part.defects:
			name = type(defect).__name__
			if name in _DEFECT_WORDS:
				found.append(_DEFECT_WORDS[name])
			elif name not in _QUIET_DEFECTS:  # "InvalidBase64PaddingDefect" -> "invalid base64 padding"
				words = re.sub(r"(?<!^)(?=[A-Z])", " ", name.removesuffix("Defect")).lower()
				detail = _unfold(str(defect))[:200]  # some carry the offending line, raw bytes and all
				found.append(f"{words}: {detail}" if detail and detail.lower() != words else words)
	return found


# -- bounces ---------------------------------------------------------------------------------


def _bounce_report(msg: EmailMessage) -> BounceReport | None:
	"""A delivery status notification (multipart/report; report-type=delivery-status), read."""
	if msg.get_content_type() != "multipart/report" or not msg.is_multipart():
		return None
	if str(msg.get_param("report-type", "")).lower() != "delivery-status":
		return None
	blocks: list[Message] = []
	original_id = None
	for part in _subparts(msg):
		content_type = part.get_content_type()
		if content_type == "message/delivery-status":
			blocks = _status_blocks(part)
		elif content_type in ("message/rfc822", "text/rfc822-headers") and original_id is None:
			original_id = _original_message_id(part)
	per_recipient = [
		b for b in blocks if _dsn_field(b, "final-recipient") or _dsn_field(b, "original-recipient")
	]
	failed = [b for b in per_recipient if _dsn_field(b, "action") == "failed"]
	main = (failed or per_recipient or [Message()])[0]
	recipients = (
		_dsn_field(b, "final-recipient") or _dsn_field(b, "original-recipient") for b in per_recipient
	)
	return BounceReport(
		original_message_id=original_id,
		recipients=tuple(dict.fromkeys(r for r in recipients if r)),
		status=_dsn_field(main, "status"),
		diagnostic=_dsn_field(main, "diagnostic-code"),
		action=_dsn_field(main, "action"),
	)


def _status_blocks(part: Message) -> list[Message]:
	"""The field blocks of a message/delivery-status part (the parser reads each as a message)."""
	payload = part.get_payload()
	if isinstance(payload, list):
		return [b for b in payload[:MAX_BOUNCE_BLOCKS] if isinstance(b, Message)]
	data = _decoded(part)[:HEADER_BLOCK_LIMIT]
	blocks = re.split(rb"\r?\n\r?\n", data, maxsplit=MAX_BOUNCE_BLOCKS)[:MAX_BOUNCE_BLOCKS]
	return [email.message_from_bytes(block) for block in blocks]


def _dsn_field(block: Message, name: str) -> str | None:
	"""A delivery-status field, tidied: "rfc822; <a@b>" -> "a@b", "5.1.1 (bad)" -> "5.1.1"."""
	value = " ".join((_part_header(block, name) or "").split())
	if name in ("final-recipient", "original-recipient", "diagnostic-code"):
		value = value.partition(";")[2].strip() or value
	if name.endswith("recipient"):
		value = value.strip("<>")
	elif name == "status":
		value = value.partition(" ")[0]
	elif name == "action":
		value = value.lower()
	return value or None


def _original_message_id(part: Message) -> str | None:
	if part.get_content_type() == "message/rfc822":
		inner = part.get_payload()
		original = inner[0] if isinstance(inner, list) and inner and isinstance(inner[0], Message) else None
	else:
		headers = _decoded(part)[:HEADER_BLOCK_LIMIT]
		original = email.parser.BytesParser(policy=_POLICY).parsebytes(headers, headersonly=True)
	return parse_message_id(_part_header(original, "message-id")) if original is not None else None
