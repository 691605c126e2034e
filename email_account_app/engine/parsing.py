"""Raw message bytes in, an IncomingMessage out.

Pure: no I/O, no frappe. ``parse_message`` never raises: a message it cannot read at all still
becomes a record with its raw bytes, a stable derived Message-ID and a warning, so the sync can
store it and go on.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import email.utils
import functools
import hashlib
import html
import logging
import mimetypes
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import Message
from urllib.parse import unquote

import html2text
import nh3
from email_reply_parser import EmailMessage as _ReplyMessage

logger = logging.getLogger(__name__)


class _CachingPolicy(email.policy.EmailPolicy):
	"""email.policy.default that parses each distinct header once, and never raises doing it.

	The stdlib parses a header again on every access (get_content_type() alone reads Content-Type
	several times per part, and the parser itself asks while it splits multiparts). Parsed headers
	are immutable, so they are cached by (name, value): about half of the time of a parse.
	"""

	def header_fetch_parse(self, name, value):
		if not isinstance(value, str) or len(value) > 256:
			return _tolerant_header_parse(self, name, value)
		return _parsed_header(self, name, value)


# Bounded in count and in the length of a value (a parsed header keeps its whole parse tree): the
# same Content-Type and Content-Transfer-Encoding values come in message after message.
@functools.lru_cache(maxsize=256)
def _parsed_header(policy: email.policy.EmailPolicy, name: str, value: str):
	return _tolerant_header_parse(policy, name, value)


def _tolerant_header_parse(policy: email.policy.EmailPolicy, name: str, value):
	"""The default policy's parse; a value it chokes on reads as empty. The feed parser asks for
	Content-Type while it splits the message, so one such value ("tex;ut*" raises IndexError in
	3.11) would otherwise lose the whole message."""
	try:
		return email.policy.EmailPolicy.header_fetch_parse(policy, name, value)
	except Exception:
		return email.policy.EmailPolicy.header_fetch_parse(policy, name, "")


_POLICY = _CachingPolicy()
# writes attached messages back as they came, without refolding their headers
_VERBATIM = email.policy.default.clone(refold_source="none")
_TEXT_HEADER = _POLICY.header_factory["x-text"]
_ADDRESS_HEADER = _POLICY.header_factory["to"]
_MIME_TYPES = mimetypes.MimeTypes()  # the built-in table only: the same names on every machine
for _type, _extension in (
	("message/delivery-status", ".txt"),
	("message/disposition-notification", ".txt"),
	("text/rfc822-headers", ".txt"),
	("text/calendar", ".ics"),
):
	_MIME_TYPES.add_type(_type, _extension)

HEADER_VALUE_LIMIT = 8 * 1024  # per value kept in IncomingMessage.headers
HEADER_PARSE_LIMIT = 64 * 1024  # a structured header (To, Cc, References...) is read up to this
FILENAME_LIMIT = 255  # bytes of UTF-8
FUTURE_TOLERANCE = timedelta(days=1)
DERIVED_ID_DOMAIN = "email-account-app.invalid"

_ANGLE_ID = re.compile(r"<([^<>]*)>")
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


# -- public helpers --------------------------------------------------------------------------


def parse_message_ids(value: str | None) -> tuple[str, ...]:
	"""Message ids in a References or In-Reply-To value, without <>, in order, without repeats.

	Takes the <...> ids; only when there are none, the bare words that look like ids (with an @),
	so comments and junk some mailers put there are skipped.
	"""
	if not value:
		return ()
	ids = [_WHITESPACE.sub("", found) for found in _ANGLE_ID.findall(value)]
	if not any(ids):
		ids = [word.strip("<>,;") for word in value.split() if "@" in word]
	return tuple(dict.fromkeys(i for i in ids if i))


def parse_message_id(value: str | None) -> str | None:
	"""The first message id in a value, without <>; a lone bare word counts too."""
	ids = parse_message_ids(value)
	if ids:
		return ids[0]
	word = (value or "").strip().strip("<>")
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
		return IncomingMessage(
			raw=raw,
			size=len(raw),
			message_id=derived_message_id(raw),
			message_id_derived=True,
			date=received_at or datetime.now(timezone.utc),
			date_from_header=False,
			warnings=(f"could not parse: {type(exc).__name__}: {exc}"[:500],),
		)


def _parse(raw: bytes, attachment_limit: int | None, received_at: datetime | None) -> IncomingMessage:
	warnings: list[str] = []
	if not raw.strip():
		warnings.append("the message is empty")
	msg = _message_from_bytes(raw)
	headers, values = _read_headers(msg, warnings)

	parts = _parts(msg)
	text_part = _body(msg, parts, "plain")
	html_part = _body(msg, parts, "html")
	if text_part is None and html_part is None and _is_broken_multipart(msg):
		text_part = msg  # better the body with its boundary lines than nothing
	raw_html = _part_text(html_part, warnings) if html_part is not None else ""
	html_content = sanitize_html(raw_html) if raw_html else ""
	text_content = _plain_text(text_part, warnings) if text_part is not None else ""
	if not text_content.strip() and html_content:
		text_content = _html_to_text(html_content, warnings)

	cids = {unquote(c) for c in _CID_REFERENCE.findall(raw_html)}
	attachments = tuple(
		_attachment(part, attachment_limit, cids, warnings)
		for part in parts
		if part is not text_part and part is not html_part and _is_leaf(part)
	)
	warnings.extend(_defect_warnings(parts))

	message_id = parse_message_id(_first(values, "message-id"))
	date, date_from_header = _message_date(_first(values, "date"), received_at, warnings)
	sender = next(iter(_addresses(values, "From", warnings)), None)
	return IncomingMessage(
		raw=raw,
		size=len(raw),
		message_id=message_id or derived_message_id(raw),
		message_id_derived=message_id is None,
		date=date,
		date_from_header=date_from_header,
		in_reply_to=parse_message_ids(" ".join(values.get("in-reply-to", ()))),
		references=parse_message_ids(" ".join(values.get("references", ()))),
		subject=" ".join(_decode_words(_first(values, "subject") or "").split()),
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
		bounce=_bounce_report(msg),
		warnings=tuple(dict.fromkeys(warnings)),
		headers=headers,
	)


def _message_from_bytes(raw: bytes) -> Message:
	"""email.message_from_bytes, with long base64 bodies set aside while the feed parser runs.

	The feed parser reads a message line by line in Python: a 300 KB attachment is 4,000 lines
	and about 10 ms. Its base64 lines mean nothing to it (they hold no boundary, no header), so
	each long run of them is swapped for a one-word placeholder, and put back into the part that
	holds it afterwards, exactly as it was. Should a placeholder not land in exactly one part's
	payload, the message is parsed again the plain way.
	"""
	collapsed, runs = _collapse_base64(raw)
	if not runs:
		return email.message_from_bytes(raw, policy=_POLICY)
	msg = email.message_from_bytes(collapsed, policy=_POLICY)
	restored = 0
	for part in msg.walk():
		payload = part._payload  # a leaf's text as parsed (a list for multiparts)
		if isinstance(payload, str) and _PLACEHOLDER_PREFIX in payload:
			for token, run in runs.items():
				if token in payload:
					restored += payload.count(token)
					payload = payload.replace(token, run)
			part.set_payload(payload)
	if restored != len(runs):
		return email.message_from_bytes(raw, policy=_POLICY)
	return msg


_BASE64_CTE = re.compile(rb"^content-transfer-encoding:[ \t]*base64[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n\t "
_PLACEHOLDER_PREFIX = "EmailAccountAppBase64Run"
BASE64_RUN_MIN = 2048  # shorter bodies are parsed as they are: setting them aside costs more


def _collapse_base64(raw: bytes) -> tuple[bytes, dict[str, str]]:
	"""The message with each long base64 body replaced by a placeholder, and the bodies by
	placeholder. A body is the text after the blank line that follows a base64
	Content-Transfer-Encoding header, up to the next line starting with "--" (a boundary);
	it is set aside only when it is long and all base64 characters and whitespace."""
	if len(raw) < BASE64_RUN_MIN or _PLACEHOLDER_PREFIX.encode() in raw:
		return raw, {}
	nonce = secrets.token_hex(8)
	pieces: list[bytes] = []
	runs: dict[str, str] = {}
	position = search_from = 0
	while (found := _BASE64_CTE.search(raw, search_from)) is not None:
		start = _body_start(raw, found.end())
		if start is None:
			break
		if not _is_leaf_header_block(raw, found.start(), start):
			search_from = start
			continue
		boundary = raw.find(b"\n--", start)
		search_from = end = len(raw) if boundary == -1 else boundary + 1
		# the last line end is the boundary's, or dropped at the end of the message: not the run's
		if raw.endswith(b"\r\n", start, end):
			end -= 2
		elif raw.endswith((b"\n", b"\r"), start, end):
			end -= 1
		if end - start < BASE64_RUN_MIN:
			continue
		run = raw[start:end]
		if run.translate(None, _BASE64_ALPHABET):
			continue
		token = f"{_PLACEHOLDER_PREFIX}{nonce}N{len(runs)}"
		runs[token] = run.decode("ascii")
		pieces.append(raw[position:start])
		pieces.append(token.encode("ascii"))
		position = end
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


def _is_leaf_header_block(raw: bytes, header: int, body: int) -> bool:
	"""Whether the headers around ``header`` (up to ``body``) name a type whose body the parser
	does not open: a message/* body is parsed as a message, a multipart/* body is split, and a
	part without Content-Type is a message in a multipart/digest."""
	floor = max(0, header - HEADER_PARSE_LIMIT)
	block_start = max(
		raw.rfind(b"\n\n", floor, header),
		raw.rfind(b"\n\r\n", floor, header),
		raw.rfind(b"\n--", floor, header),
		0,
	)
	block = raw[block_start:body]
	return bool(_LEAF_CONTENT_TYPE.search(block)) and not _CONTAINER_CONTENT_TYPE.search(block)


def _body_start(raw: bytes, after: int) -> int | None:
	"""Where the body starts: after the first blank line from ``after`` (the headers' end)."""
	limit = after + HEADER_PARSE_LIMIT  # the part's remaining headers, not its whole body
	crlf = raw.find(b"\n\r\n", after - 1, limit)
	lf = raw.find(b"\n\n", after - 1, limit)
	if crlf == -1 and lf == -1:
		return None
	if lf == -1 or (crlf != -1 and crlf < lf):
		return crlf + 3
	return lf + 2


# -- headers ---------------------------------------------------------------------------------


def _read_headers(
	msg: Message, warnings: list[str]
) -> tuple[tuple[tuple[str, str], ...], dict[str, list[str]]]:
	"""All headers decoded for display, and the raw values by lowercased name for parsing."""
	pairs = []
	values: dict[str, list[str]] = {}
	for name, value in msg.raw_items():
		value = _unfold(value, warnings, f"the {name} header")
		if len(value) > HEADER_PARSE_LIMIT:
			warnings.append(f"the {name} header is {len(value) // 1024} KB long; only its start was read")
			value = value[:HEADER_PARSE_LIMIT]
		values.setdefault(name.lower(), []).append(value)
		pairs.append((name, _decode_words(value)[:HEADER_VALUE_LIMIT]))
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
	for value in values.get(name.lower(), ()):
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
	return tuple((a.display_name, a.addr_spec) for a in _ADDRESS_HEADER("to", value).addresses)


def _address_pairs(value: str, name: str, warnings: list[str]) -> list[tuple[str, str]]:
	"""(display name, address) pairs; the policy's parser first, email.utils when it gives up."""
	try:
		return list(_parsed_addresses(value))
	except Exception as exc:
		warnings.append(f"the {name} header is malformed ({exc}); read it the simple way")
		return [(_decode_words(n), a) for n, a in email.utils.getaddresses([value])]


def _address(addr_spec: str, display_name: str = "") -> Address | None:
	local, at, domain = addr_spec.strip().strip("<>").rpartition("@")
	if not (local and at and domain) or any(c.isspace() for c in local + domain):
		return None
	return Address(f"{local}@{domain.lower()}", " ".join(display_name.split()))


def _delivered_to(values: dict[str, list[str]]) -> tuple[str, ...]:
	"""The envelope recipients the receiving servers noted, for sub-address (plus) tokens."""
	found = []
	for name in ("delivered-to", "x-original-to", "envelope-to"):
		for value in values.get(name, ()):
			for _, addr_spec in email.utils.getaddresses([value]):
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


def _body(msg: Message, parts: list[Message], subtype: str) -> Message | None:
	"""The text/plain or text/html part that is the message's body, as get_body() chooses it."""
	try:
		return msg.get_body(preferencelist=(subtype,))
	except Exception:  # get_body trips over a multipart/related whose boundary was not found
		wanted = f"text/{subtype}"
		return next((p for p in parts if p.get_content_type() == wanted and not p.is_attachment()), None)


def _is_broken_multipart(msg: Message) -> bool:
	"""A multipart whose boundary was never found: the parser kept the body as one string."""
	return msg.get_content_maintype() == "multipart" and not msg.is_multipart()


def _part_text(part: Message, warnings: list[str]) -> str:
	"""A text part decoded with its charset, tolerantly; newlines as \\n, no NULs."""
	data = part.get_payload(decode=True) or b""
	where = f"the {part.get_content_type()} part"
	text = _repair(_decode_bytes(data, part.get_content_charset(), warnings, where), warnings, where)
	return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def _plain_text(part: Message, warnings: list[str]) -> str:
	text = _part_text(part, warnings)
	if str(part.get_param("format", "")).lower() == "flowed":
		text = _unflow(text, delsp=str(part.get_param("delsp", "")).lower() == "yes")
	return text


def _decode_bytes(data: bytes, charset: str | None, warnings: list[str], where: str) -> str:
	"""Bytes as text: the declared charset, else UTF-8, else the charset with replacements or Latin-1."""
	codec = _codec(charset)
	for candidate in dict.fromkeys(c for c in (codec, "utf-8") if c):
		try:
			text = data.decode(candidate)
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


def _html_to_text(content: str, warnings: list[str]) -> str:
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
	when that leaves nothing."""
	start = _QUOTE_START.search(text)
	if start is not None and text[: start.start()].strip():
		text = text[: start.start()]
	return _ReplyReader(text).read().reply.strip() or text.strip()


# -- attachments -----------------------------------------------------------------------------


def _parts(msg: Message) -> list[Message]:
	"""Every part of the tree, in order; an attached message (message/*) is one part, not opened."""
	found = [msg]
	if msg.is_multipart() and msg.get_content_maintype() != "message":
		for sub in msg.get_payload():
			found.extend(_parts(sub))
	return found


def _is_leaf(part: Message) -> bool:
	return not part.is_multipart() or part.get_content_maintype() == "message"


def _attachment(part: Message, limit: int | None, cids: set[str], warnings: list[str]) -> Attachment:
	content_type = part.get_content_type()
	filename = safe_filename(_part_filename(part), content_type)
	content_id = parse_message_id(_part_header(part, "content-id"))
	size = _decoded_size(part, limit) if limit is not None else None
	content = None
	if size is None or size <= limit:
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
			holder[name] = value
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
	if content is not None:
		return content
	return b"".join(_message_bytes(inner) for inner in part.get_payload())


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


def _defect_warnings(parts: list[Message]) -> list[str]:
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


def _bounce_report(msg: Message) -> BounceReport | None:
	"""A delivery status notification (multipart/report; report-type=delivery-status), read."""
	if msg.get_content_type() != "multipart/report" or not msg.is_multipart():
		return None
	if str(msg.get_param("report-type", "")).lower() != "delivery-status":
		return None
	blocks: list[Message] = []
	original_id = None
	for part in msg.get_payload():
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
		return payload
	data = part.get_payload(decode=True) or b""
	return [email.message_from_bytes(block) for block in re.split(rb"\r?\n\r?\n", data)]


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
		original = inner[0] if isinstance(inner, list) and inner else None
	else:
		original = email.message_from_bytes(part.get_payload(decode=True) or b"", policy=_POLICY)
	return parse_message_id(_part_header(original, "message-id")) if original is not None else None
