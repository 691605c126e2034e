"""Outgoing messages: a request and the account's rules in, a MIME message out.

Pure: no I/O. ``compose`` applies the account's rules (From, Reply-To, signature, unsubscribe link,
tracking pixel, Auto-Submitted) to an ``OutgoingRequest`` and gives a ``ComposedMail``: the message
as kept for the record and the Sent folder, plus, when it carries an unsubscribe link, one copy per
recipient with that recipient's own signed link (RFC 8058 one-click needs the link to name the
recipient).

Every value that becomes a header is checked first: a line break (CR, LF, and every character the
standard library also breaks lines at: VT, FF, FS, GS, RS, NEL, U+2028, U+2029), any other C0 or C1
control, or a lone surrogate in a subject, a name, an address, a Message-ID or a file name raises
``HeaderInjection``; an address that is not one raises ``InvalidAddress``. The built message is
checked once more, header by header and part by part, so no value (a link from the site settings,
a domain, a token) reaches a header unchecked. Values taken from incoming mail (a subject to
answer, a sender's name, Message-IDs) go through ``header_text`` and ``usable_message_ids`` first:
an automatic reply cleans them rather than refusing.
"""

from __future__ import annotations

import email.policy
import html
import mimetypes
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from pathlib import Path
from urllib.parse import quote, urlencode

import html2text

from . import tokens
from .errors import ConfigError, EmailSyncError, HeaderInjection
from .settings import EMAIL_RE, AccountSettings
from .store import DocRef

#: how many ids References keeps: the first (the thread's root) and the newest ones (RFC 5322 3.6.4)
REFERENCES_LIMIT = 20
AUTOMATIC_KINDS = ("auto-replied", "auto-generated")
DEFAULT_UNSUBSCRIBE_PATH = "/api/method/email_account_app.api.unsubscribe"
DEFAULT_TRACKING_PATH = "/api/method/email_account_app.api.track"


class _TokenListHeader(UnstructuredHeader):
	"""A header of ASCII tokens (Message-IDs, <URL>s), folded between tokens and never encoded.

	The default folding turns a token longer than a line into encoded words, which breaks a long
	unsubscribe URL or Message-ID for every reader of the message.
	"""

	def fold(self, *, policy):
		head = f"{self.name}:"
		lines, line = [], head
		for word in str(self).split():
			if line != head and len(line) + 1 + len(word) > policy.max_line_length:
				lines.append(line)
				line = ""
			line += " " + word
		lines.append(line)
		return policy.linesep.join(lines) + policy.linesep


_HEADERS = HeaderRegistry()
for _name in ("message-id", "in-reply-to", "references", "list-unsubscribe", "list-unsubscribe-post"):
	# the stub wants a BaseHeader subclass, but the registry takes the specialised class it mixes with one
	_HEADERS.map_to_type(_name, _TokenListHeader)  # type: ignore[arg-type]
_POLICY = email.policy.SMTP.clone(header_factory=_HEADERS)
#: what may not appear in a header value: C0 controls but TAB, DEL, C1 controls, the Unicode line
#: and paragraph separators, lone surrogates
_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
#: the characters ``str.splitlines`` breaks at: the standard library starts a new header line there
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_LOOKS_LIKE_HTML = re.compile(r"<(?:[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?|/[a-zA-Z][a-zA-Z0-9]*\s*)>")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


class InvalidAddress(EmailSyncError):
	title = "Invalid address"


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingAttachment:
	filename: str
	content: bytes = field(repr=False)
	content_type: str | None = None  # guessed from the file name when not given

	@classmethod
	def from_path(cls, path: str | Path) -> OutgoingAttachment:
		path = Path(path)
		return cls(path.name, path.read_bytes())

	@property
	def mime_type(self) -> tuple[str, str]:
		guessed = self.content_type or mimetypes.guess_type(self.filename)[0] or "application/octet-stream"
		maintype, _, subtype = guessed.partition("/")
		return maintype, subtype or "octet-stream"


@dataclass(frozen=True)
class OutgoingRequest:
	"""What someone (a user in the desk, a notification, the auto-reply) wants to send.

	Addresses are ``"addr@x"`` or ``"Name <addr@x>"``. ``in_reply_to`` and ``references`` are
	Message-IDs with or without ``<>``: the parent's id and the parent's own References.
	``automatic`` is None, "auto-replied" or "auto-generated" (Auto-Submitted, RFC 3834).
	``bulk`` mail (newsletters, notifications to many) is not sent to unsubscribed addresses.
	"""

	to: tuple[str, ...] = ()
	subject: str = ""
	text: str | None = None
	html: str | None = None
	cc: tuple[str, ...] = ()
	bcc: tuple[str, ...] = ()
	sender: str | None = None  # the user's address; the account's when not given
	sender_name: str | None = None
	attachments: tuple[OutgoingAttachment, ...] = ()
	in_reply_to: tuple[str, ...] = ()
	references: tuple[str, ...] = ()
	document: DocRef | None = None
	thread_token: str | None = None
	automatic: str | None = None
	bulk: bool = False
	unsubscribe: bool = True  # add the link when the account sends one; off for auto-replies

	@property
	def recipients(self) -> tuple[str, ...]:
		return (*self.to, *self.cc, *self.bcc)


@dataclass(frozen=True)
class SiteSettings:
	"""What composing needs to know of the site rather than of one account.

	``incoming_by_doctype`` maps a DocType to the address of the incoming account that appends to
	it: replies to mail about such a document go there. ``default_incoming`` is the address of the
	default incoming account. With ``reply_to_subaddress`` the Reply-To carries the thread token as
	a sub-address (support+TOKEN@example.com); turn it off for a server that does not deliver
	sub-addresses.
	"""

	base_url: str = "http://localhost"
	secret: str | None = field(default=None, repr=False)
	unsubscribe_path: str = DEFAULT_UNSUBSCRIBE_PATH
	tracking_path: str = DEFAULT_TRACKING_PATH
	default_incoming: str | None = None
	incoming_by_doctype: Mapping[str, str] = field(default_factory=dict)
	reply_to_subaddress: bool = True

	def url(self, path: str, token: str) -> str:
		return f"{self.base_url.rstrip('/')}/{path.lstrip('/')}?{urlencode({'token': token})}"

	def require_secret(self, why: str) -> str:
		if not self.secret:
			raise ConfigError(
				f"{why} needs the site's secret to sign its links: set one "
				"(the CLI: secret_env in the [site] table of the config)"
			)
		return self.secret


def site_from_accounts(accounts: Iterable[AccountSettings], **values) -> SiteSettings:
	"""Site settings whose Reply-To addresses come from the incoming accounts: the default incoming
	one, and per DocType the account (or folder) that appends to it."""
	accounts = list(accounts)
	by_doctype: dict[str, str] = {}
	default = None
	for account in accounts:
		if not account.enable_incoming:
			continue
		if account.default_incoming:
			default = account.email_id
		for folder in account.sync_folders:
			if folder.append_to:
				by_doctype.setdefault(folder.append_to, account.email_id)
	values.setdefault("default_incoming", default)
	values.setdefault("incoming_by_doctype", by_doctype)
	return SiteSettings(**values)


@dataclass(frozen=True)
class ComposedMail:
	"""A composed message and what the outbox and the record of it need."""

	message: EmailMessage = field(repr=False)  # as kept for the record and the Sent folder
	raw: bytes = field(repr=False)  # ``message`` as bytes (CRLF line ends)
	message_id: str  # without <>
	thread_token: str
	envelope_from: str
	recipients: tuple[str, ...]  # every envelope recipient (To, Cc and Bcc), without repeats
	personal: Mapping[str, bytes] = field(default_factory=dict, repr=False)  # recipient -> own copy
	sender: str = ""
	sender_name: str = ""
	to: tuple[str, ...] = ()
	cc: tuple[str, ...] = ()
	bcc: tuple[str, ...] = ()
	subject: str = ""
	text: str = field(default="", repr=False)
	html: str = field(default="", repr=False)
	in_reply_to: tuple[str, ...] = ()
	references: tuple[str, ...] = ()
	date: datetime | None = None
	automatic: str | None = None
	document: DocRef | None = None


# -- checks ----------------------------------------------------------------------------------


def check_header_value(value: str | None, what: str) -> None:
	"""HeaderInjection when ``value`` holds a line break (it would start a header of its own), another
	control character or a lone surrogate (neither can be written into a header)."""
	if not value:
		return
	found = _FORBIDDEN.search(value)
	if found is None:
		return
	char = found.group()
	shown = f"{value[:80]!r}" + ("..." if len(value) > 80 else "")
	if char in LINE_BREAKS:
		raise HeaderInjection(
			f"The {what} contains a line break (U+{ord(char):04X}), which would let it add headers of "
			f"its own: {shown}.",
			hint="Remove the line break and send again.",
		)
	kind = "a lone surrogate" if 0xD800 <= ord(char) <= 0xDFFF else "a control character"
	raise HeaderInjection(
		f"The {what} contains {kind} (U+{ord(char):04X}), which a header cannot carry: {shown}.",
		hint="Remove it and send again.",
	)


def header_text(value: str | None) -> str:
	"""``value`` fit for a header whatever it holds: every control character, line separator and
	lone surrogate becomes a space, and runs of white space one space. For values taken from
	incoming mail (a subject to answer, a sender's name), which are cleaned rather than refused."""
	return " ".join(_FORBIDDEN.sub(" ", value or "").split())


def usable_message_ids(values: Iterable[str | None]) -> tuple[str, ...]:
	"""The Message-IDs among ``values`` (one id each, with or without <>, as taken from incoming mail)
	that can go into In-Reply-To or References: printable ASCII with an "@", without <> or white
	space inside; the others are left out, and repeats."""
	ids = (value.strip().strip("<>") for value in values if value)
	return tuple(dict.fromkeys(i for i in ids if i and _is_message_id(i)))


def _is_message_id(value: str) -> bool:
	return value.isascii() and value.isprintable() and "@" in value and not any(ch in value for ch in "<> ")


def parse_address(value: str, what: str = "address") -> Address:
	"""``"Name <addr@x>"`` or ``"addr@x"`` as an Address; refuses line breaks and non-addresses."""
	check_header_value(value, what)
	pairs = getaddresses([value], strict=True) if _STRICT_GETADDRESSES else getaddresses([value])
	if len(pairs) != 1 or not pairs[0][1]:
		raise InvalidAddress(
			f"The {what} {value!r} is not one email address.", hint="Write it as name@example.com."
		)
	name, addr_spec = pairs[0]
	if not EMAIL_RE.match(addr_spec):
		raise InvalidAddress(
			f"The {what} {value!r} is not an email address.", hint="Write it as name@example.com."
		)
	local, _, domain = addr_spec.rpartition("@")
	try:
		return Address(display_name=name, username=local, domain=domain)
	except (ValueError, IndexError) as exc:
		raise InvalidAddress(f"The {what} {value!r} is not an email address: {exc}.") from None


def format_address(email: str, name: str | None = None) -> str:
	"""``"Name" <email>`` with the name quoted, so commas and quotes in it stay part of it."""
	name = " ".join((name or "").split())
	if not name:
		return email
	quoted = name.replace("\\", "\\\\").replace('"', '\\"')
	return f'"{quoted}" <{email}>'


def _strict_getaddresses() -> bool:
	try:
		getaddresses(["a@b.c"], strict=True)
	except TypeError:  # before the 2024 security releases
		return False
	return True


_STRICT_GETADDRESSES = _strict_getaddresses()


def _message_ids(values: Iterable[str] | str | None, what: str) -> tuple[str, ...]:
	if isinstance(values, str):
		values = [values]
	ids = []
	for value in values or ():
		check_header_value(value, what)
		for part in value.split():
			part = part.strip().strip("<>").strip()
			if part:
				if not _is_message_id(part):
					continue  # not an id others could match: leave it out rather than refuse the reply
				ids.append(part)
	return tuple(dict.fromkeys(ids))


def cap_references(ids: Sequence[str], limit: int = REFERENCES_LIMIT) -> tuple[str, ...]:
	"""The thread's first id and the newest ones, ``limit`` at most."""
	ids = tuple(dict.fromkeys(ids))
	if len(ids) <= limit:
		return ids
	return (ids[0], *ids[-(limit - 1) :])


# -- bodies ----------------------------------------------------------------------------------


def looks_like_html(text: str | None) -> bool:
	return bool(text and _LOOKS_LIKE_HTML.search(text))


def text_to_html(text: str) -> str:
	"""Plain text as HTML: escaped, line breaks kept."""
	escaped = html.escape(text.replace("\r\n", "\n"), quote=True)
	return "<div>" + escaped.replace("\n", "<br>\n") + "</div>"


def html_to_text(content: str) -> str:
	converter = html2text.HTML2Text(bodywidth=0)
	converter.ignore_images = True
	converter.ignore_emphasis = True
	converter.protect_links = True
	lines = (line.rstrip() for line in converter.handle(content).splitlines())
	return "\n".join(lines).strip() + "\n"


def _append_html(document: str, fragment: str) -> str:
	"""``fragment`` at the end of the body: before </body> when there is one."""
	matches = list(_BODY_END.finditer(document))
	if matches:
		at = matches[-1].start()
		return document[:at] + fragment + document[at:]
	return document + fragment


def _signature(account: AccountSettings) -> tuple[str, str] | None:
	"""(text, html) of the account's signature, or None."""
	signature = (account.signature or "").strip()
	if not account.add_signature or not signature:
		return None
	if looks_like_html(signature):
		return html_to_text(signature).rstrip(), signature
	return signature, text_to_html(signature)


# -- links -----------------------------------------------------------------------------------


def unsubscribe_token(site: SiteSettings, email: str, account: str, document: DocRef | None = None) -> str:
	payload = {"email": email.lower(), "account": account}
	if document is not None:
		payload.update(doctype=document.doctype, name=document.name)
	return tokens.sign(payload, site.require_secret("send_unsubscribe_message"), purpose="unsubscribe")


UNSUBSCRIBE_SUBJECT = "unsubscribe"  # the subject of a List-Unsubscribe mailto:, before the token
_UNSUBSCRIBE_REQUEST = re.compile(rf"^\s*{UNSUBSCRIBE_SUBJECT}\s+([\w.=-]+)\s*$", re.IGNORECASE)


def unsubscribe_request(site: SiteSettings | None, subject: str) -> dict | None:
	"""The payload of the unsubscribe token in a List-Unsubscribe mailto's subject; None when the
	subject is not one, or its token is not ours (then the mail is an ordinary one)."""
	found = _UNSUBSCRIBE_REQUEST.match(subject or "")
	if found is None or site is None or not site.secret:
		return None
	try:
		return {**verify_unsubscribe(site, found.group(1)), "token": found.group(1)}
	except tokens.BadToken:
		return None


def verify_unsubscribe(site: SiteSettings, token: str) -> dict:
	"""The payload (email, account, doctype, name) of an unsubscribe link; BadToken when forged."""
	payload = tokens.verify(token, site.require_secret("unsubscribe"), purpose="unsubscribe")
	if not isinstance(payload.get("email"), str):
		raise tokens.BadToken("This unsubscribe link does not name an address.")
	return payload


def tracking_token(site: SiteSettings, account: str, message_id: str) -> str:
	return tokens.sign(
		{"account": account, "message_id": message_id},
		site.require_secret("track_email_status"),
		purpose="track",
	)


def verify_tracking(site: SiteSettings, token: str) -> dict:
	"""The payload (account, message_id) of a tracking pixel; BadToken when forged or altered."""
	payload = tokens.verify(token, site.require_secret("tracking"), purpose="track")
	if not isinstance(payload.get("message_id"), str) or not isinstance(payload.get("account"), str):
		raise tokens.BadToken("This tracking link does not name a message.")
	return payload


def _pixel(url: str) -> str:
	return (
		f'<img src="{html.escape(url, quote=True)}" alt="" width="1" height="1" border="0" '
		'style="height:1px !important;width:1px !important;border-width:0 !important;'
		'margin:0 !important;padding:0 !important">'
	)


def _unsubscribe_footer(url: str) -> tuple[str, str]:
	text = f"\n\n--\nTo stop receiving these emails, open: {url}\n"
	markup = (
		'<div style="margin-top:2em;font-size:small;color:#888">'
		f'<a href="{html.escape(url, quote=True)}">Unsubscribe</a> from these emails.</div>'
	)
	return text, markup


# -- compose ---------------------------------------------------------------------------------


def sender_of(account: AccountSettings, request: OutgoingRequest) -> Address:
	"""The From address per the account's rules."""
	name = request.sender_name or ""
	check_header_value(name, "sender's name")
	address = parse_address(request.sender or account.email_id, "sender's address")
	if account.always_use_account_email_id_as_sender:
		address = parse_address(account.email_id, "account's address")
	if account.always_use_account_name_as_sender_name:
		name = account.email_account_name or account.name
		check_header_value(name, "account's name")
	return Address(display_name=name or address.display_name, addr_spec=address.addr_spec)


def reply_to_of(
	account: AccountSettings, site: SiteSettings, document: DocRef | None, token: str
) -> str | None:
	"""The incoming account that appends to the document's DocType, else the default incoming one,
	else this account when it receives mail itself; with the thread token as sub-address."""
	address = None
	if document is not None:
		address = site.incoming_by_doctype.get(document.doctype)
	address = address or site.default_incoming or (account.email_id if account.enable_incoming else None)
	if not address:
		return None
	address = parse_address(address, "reply-to address").addr_spec
	return tokens.subaddress(address, token) if site.reply_to_subaddress else address


def compose(
	request: OutgoingRequest,
	account: AccountSettings,
	site: SiteSettings,
	*,
	now: datetime | None = None,
) -> ComposedMail:
	"""Build the message for ``request`` as ``account`` sends it. Raises HeaderInjection,
	InvalidAddress or ConfigError (a link to sign and no secret) before building anything."""
	now = now or datetime.now(timezone.utc)
	check_header_value(request.subject, "subject")
	sender = sender_of(account, request)
	to = tuple(parse_address(a, "recipient") for a in request.to)
	cc = tuple(parse_address(a, "Cc recipient") for a in request.cc)
	bcc = tuple(parse_address(a, "Bcc recipient") for a in request.bcc)
	recipients = tuple(dict.fromkeys(a.addr_spec for a in (*to, *cc, *bcc)))
	lowered: dict[str, str] = {}
	for address in recipients:
		lowered.setdefault(address.lower(), address)
	recipients = tuple(lowered.values())
	if not recipients:
		raise InvalidAddress("The message has no recipient.", hint="Give at least one To address.")
	in_reply_to = _message_ids(request.in_reply_to, "In-Reply-To")
	references = cap_references(_message_ids(request.references, "References") + in_reply_to)
	for attachment in request.attachments:
		check_header_value(attachment.filename, "attachment's file name")
	if request.automatic is not None and request.automatic not in AUTOMATIC_KINDS:
		raise ValueError(f"automatic must be one of {AUTOMATIC_KINDS}, not {request.automatic!r}")

	token = request.thread_token or tokens.new_thread_token()
	domain = account.email_id.rpartition("@")[2]
	message_id = tokens.make_message_id(token, domain)
	reply_to = reply_to_of(account, site, request.document, token)
	tracking = account.track_email_status
	unsubscribe = account.send_unsubscribe_message and request.unsubscribe
	if tracking:
		site.require_secret("track_email_status")
	if unsubscribe:
		site.require_secret("send_unsubscribe_message")

	# bodies: the text the person wrote, and html for it when there is html to carry
	text = request.text
	markup = request.html
	if text is None:
		text = html_to_text(markup) if markup is not None else ""
	signature = _signature(account)
	if signature:
		text = text.rstrip("\n") + "\n\n-- \n" + signature[0] + "\n"
	if markup is None and (tracking or unsubscribe or (signature and looks_like_html(account.signature))):
		markup = text_to_html(request.text or "")
	if markup is not None and signature:
		markup = _append_html(markup, f'<br><div class="signature">{signature[1]}</div>')
	if markup is not None and tracking:
		markup = _append_html(
			markup, _pixel(site.url(site.tracking_path, tracking_token(site, account.name, message_id)))
		)

	headers = _Headers(
		sender=sender,
		to=to,
		cc=cc,
		reply_to=reply_to,
		subject=request.subject,
		date=now,
		message_id=message_id,
		in_reply_to=in_reply_to,
		references=references,
		automatic=request.automatic,
	)
	record = _build(headers, text, markup, request.attachments)
	personal: dict[str, bytes] = {}
	if unsubscribe:
		for address in recipients:
			signed = unsubscribe_token(site, address, account.name, request.document)
			url = site.url(site.unsubscribe_path, signed)
			foot_text, foot_html = _unsubscribe_footer(url)
			# the mail a client sends for this address comes back to the account, token and all
			mailto = f"mailto:{account.email_id}?subject={quote(f'{UNSUBSCRIBE_SUBJECT} {signed}')}"
			copy = _build(
				headers,
				text + foot_text,
				_append_html(markup or "", foot_html),
				request.attachments,
				list_unsubscribe=f"<{url}>, <{mailto}>",
			)
			personal[address] = copy.as_bytes(policy=_POLICY)

	return ComposedMail(
		message=record,
		raw=record.as_bytes(policy=_POLICY),
		message_id=message_id,
		thread_token=token,
		envelope_from=account.email_id,
		recipients=recipients,
		personal=personal,
		sender=sender.addr_spec,
		sender_name=sender.display_name,
		to=tuple(a.addr_spec for a in to),
		cc=tuple(a.addr_spec for a in cc),
		bcc=tuple(a.addr_spec for a in bcc),
		subject=request.subject,
		text=text,
		html=markup or "",
		in_reply_to=in_reply_to,
		references=references,
		date=now,
		automatic=request.automatic,
		document=request.document,
	)


@dataclass(frozen=True)
class _Headers:
	sender: Address
	to: tuple[Address, ...]
	cc: tuple[Address, ...]
	reply_to: str | None
	subject: str
	date: datetime
	message_id: str
	in_reply_to: tuple[str, ...]
	references: tuple[str, ...]
	automatic: str | None


def _build(
	h: _Headers,
	text: str,
	markup: str | None,
	attachments: Sequence[OutgoingAttachment],
	*,
	list_unsubscribe: str | None = None,
) -> EmailMessage:
	msg = _CheckedMessage(policy=_POLICY)
	msg["From"] = h.sender
	if h.to:
		msg["To"] = h.to
	if h.cc:
		msg["Cc"] = h.cc
	if h.reply_to:
		msg["Reply-To"] = h.reply_to
	msg["Subject"] = h.subject
	msg["Date"] = format_datetime(h.date)
	msg["Message-ID"] = f"<{h.message_id}>"
	if h.in_reply_to:
		msg["In-Reply-To"] = " ".join(f"<{i}>" for i in h.in_reply_to)
	if h.references:
		msg["References"] = " ".join(f"<{i}>" for i in h.references)
	if h.automatic:
		msg["Auto-Submitted"] = h.automatic
		msg["X-Auto-Response-Suppress"] = "All"  # Exchange: do not auto-answer an automatic message
	if list_unsubscribe:
		msg["List-Unsubscribe"] = list_unsubscribe
		msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
	msg.set_content(text, charset="utf-8")
	if markup is not None:
		msg.add_alternative(markup, subtype="html", charset="utf-8")
	for attachment in attachments:
		maintype, subtype = attachment.mime_type
		msg.add_attachment(
			attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
		)
	_check_headers(msg)
	return msg


class _CheckedMessage(EmailMessage):
	"""A message whose top-level headers are checked as they are set (before the standard library
	sees a value it would refuse with a ValueError, or split into lines of its own)."""

	def __setitem__(self, name: str, value) -> None:
		values = value if isinstance(value, tuple | list) else (value,)
		for item in values:
			check_header_value(str(item), f"{name} header")
		super().__setitem__(name, value)


def _check_headers(msg: EmailMessage) -> None:
	"""The last word before a message is written out: every header of every part, as it will be
	serialised, is free of line breaks and controls (whatever value it was built from)."""
	for part in msg.walk():
		for name, value in part.items():
			check_header_value(str(value), f"{name} header")
