"""Hostile messages, by class: what a sender can put in a message to make reading it slow, big or
break. Used by the tests (tests/test_hostile_content.py) and by benchmarks/hostile.py.

Each entry of ``HOSTILE`` builds one message (bytes) with a Message-ID naming it, so a test can
find what became of it. Sizes stay under a few MB each (the default message limit is far above).
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Iterator

from hypothesis import strategies as st


def _head(name: str, extra: str = "") -> bytes:
	return (
		f"From: Sender <sender@example.com>\r\nTo: alice@example.com\r\nSubject: hostile {name}\r\n"
		f"Message-ID: <hostile-{name}@example.com>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n{extra}"
	).encode()


def _multipart(name: str, parts: list[bytes], boundary: str = "b") -> bytes:
	body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
	return (
		_head(
			name, f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
		).rstrip(b"\r\n")
		+ b"\r\n\r\n"
		+ body
		+ b"--"
		+ boundary.encode()
		+ b"--\r\n"
	)


def _leaf(name: str, content_type: str, body: bytes, extra: str = "") -> bytes:
	return _head(name, f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n{extra}\r\n") + body


def _n(count: int, scale: float) -> int:
	"""A count scaled down (for a quick test or a mailbox of thousands), never below 1."""
	return max(1, int(count * scale))


LINE = b"The quick brown fox jumps over the lazy dog, and keeps on running far away.\r\n"


def content_type_params(scale: float = 1.0) -> bytes:  # re-parsed on each access: 25 s for 160 KB before
	params = "; ".join(f"p{i}=v{i}" for i in range(_n(25_000, scale)))
	return _leaf("content-type-params", f"text/plain; {params}; charset=utf-8", b"body\r\n")


def content_type_5mb(scale: float = 1.0) -> bytes:  # never finished before
	return _leaf("content-type-5mb", 'text/plain; name="' + "a" * _n(5_000_000, scale) + '"', b"body\r\n")


def rfc2231_sections(scale: float = 1.0) -> bytes:
	sections = "; ".join(f"filename*{i}*=utf-8''%C3%A9{i}" for i in range(_n(20_000, scale)))
	part = (
		f"Content-Type: application/pdf\r\nContent-Disposition: attachment; {sections}\r\n\r\n%PDF".encode()
	)
	return _multipart("rfc2231-sections", [b"Content-Type: text/plain\r\n\r\nsee attached", part])


def encoded_words_subject(scale: float = 1.0) -> bytes:
	subject = " ".join(["=?utf-8?q?caf=C3=A9?="] * _n(20_000, scale))
	return _head("x", f"X-Long: 1\r\nSubject: {subject}\r\n\r\nbody\r\n").replace(
		b"hostile-x", b"hostile-encoded-words-subject"
	)


def many_addresses(scale: float = 1.0) -> bytes:
	to = ", ".join(f'"Name {i}" <user{i}@example.com>' for i in range(_n(30_000, scale)))
	cc = ", ".join(f"=?utf-8?q?N=C3=A9{i}?= <cc{i}@example.com>" for i in range(_n(20_000, scale)))
	return _head("many-addresses", f"Cc: {cc}\r\nReply-To: {to}\r\n\r\nbody\r\n")


def address_comments(scale: float = 1.0) -> bytes:
	return _head(
		"address-comments",
		"Cc: " + "(" * _n(200_000, scale) + "\r\nBcc: " + '"\\' * _n(100_000, scale) + "\r\n\r\nx\r\n",
	)


def many_headers(scale: float = 1.0) -> bytes:
	return _head(
		"many-headers",
		"".join(f"X-H{i}: =?utf-8?q?v=C3=A9{i}?=\r\n" for i in range(_n(60_000, scale))) + "\r\nbody\r\n",
	)


def long_references(scale: float = 1.0) -> bytes:
	refs = " ".join(f"<{i}@example.com>" for i in range(_n(100_000, scale)))
	return _head("long-references", f"References: {refs}\r\nIn-Reply-To: <99999@example.com>\r\n\r\nbody\r\n")


def deep_multipart(scale: float = 1.0) -> bytes:
	depth = _n(3000, scale)
	head = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth))
	return _head(
		"deep-multipart", "MIME-Version: 1.0\r\n" + head + "Content-Type: text/plain\r\n\r\nbottom\r\n"
	)


def deep_rfc822(scale: float = 1.0) -> bytes:
	head = "Content-Type: message/rfc822\r\n\r\n" * _n(3000, scale)
	return _head("deep-rfc822", "MIME-Version: 1.0\r\n" + head + "Subject: inner\r\n\r\nbottom\r\n")


def many_parts(scale: float = 1.0) -> bytes:
	part = b"Content-Type: text/plain\r\n\r\nx"
	return _multipart("many-parts", [part] * _n(60_000, scale))


def many_attachments(scale: float = 1.0) -> bytes:
	parts = [
		f'Content-Type: application/octet-stream; name="f{i}.bin"\r\nContent-Disposition: attachment; '
		f'filename="f{i}.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA'.encode()
		for i in range(_n(5_000, scale))
	]
	return _multipart("many-attachments", parts)


def huge_text(scale: float = 1.0) -> bytes:
	return _leaf("huge-text", "text/plain; charset=utf-8", LINE * _n(120_000, scale))  # 9 MB


def huge_text_in_multipart(scale: float = 1.0) -> bytes:
	return _multipart(
		"huge-text-in-multipart", [b"Content-Type: text/plain\r\n\r\n" + LINE * _n(120_000, scale)]
	)


def dashes_in_text(scale: float = 1.0) -> bytes:  # lines a multipart parser must look at
	return _multipart(
		"dashes-in-text", [b"Content-Type: text/plain\r\n\r\n" + b"-- \r\nline\r\n" * _n(200_000, scale)]
	)


def one_line_html(scale: float = 1.0) -> bytes:  # 34 s before
	return _leaf(
		"one-line-html", "text/html", b"<p>hello <b>world</b> and <i>more</i></p>" * _n(250_000, scale)
	)  # 10 MB


def nested_divs(scale: float = 1.0) -> bytes:  # 8-10 s before
	return _leaf(
		"nested-divs", "text/html", b"<div>" * _n(50_000, scale) + b"x" + b"</div>" * _n(50_000, scale)
	)


def nested_formatting(scale: float = 1.0) -> bytes:
	return _leaf("nested-formatting", "text/html", b"<b><i><u><table><tr><td>" * _n(20_000, scale) + b"x")


def unclosed_paragraphs(
	scale: float = 1.0,
) -> bytes:  # deep by count of tags, flat for a browser: kept as HTML
	return _leaf("unclosed-paragraphs", "text/html", b"<p>para " * _n(20_000, scale))


def binary_garbage(scale: float = 1.0) -> bytes:
	rng = random.Random(5)
	return _head("binary-garbage", "\r\n") + rng.randbytes(_n(3_000_000, scale))


def nul_headers(scale: float = 1.0) -> bytes:
	return (
		b"From: N\x00ame <nul@exa\x00mple.com>\r\nSubject: hostile \x00nul\x00\r\nMessage-ID: <hostile-nul-headers@example.com>\r\n"
		b'Content-Type: text/plain; name="a\x00b.txt"\r\n\r\nbody \x00 with nul\r\n'
	)


def broken_encoded_words(
	scale: float = 1.0,
) -> bytes:  # surrogates in display names: the store's insert failed
	return (
		b"From: =?utf-8?b?gICA?= <broken@example.com>\r\n"
		b"To: =?utf-8?q?=FF=FE?= <to@example.com>, =?utf-7?q?+2D3cAA-?= <u7@example.com>\r\n"
		b"Cc: \xff\xfe\xed <cc@example.com>\r\nSubject: hostile =?utf-8?b?7aCA?= broken\r\n"
		b"Message-ID: <hostile-broken-encoded-words@example.com>\r\nMIME-Version: 1.0\r\n"
		b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n'
		b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
		b'filename="=?utf-8?b?gICA?=.pdf"\r\n\r\n%PDF\r\n--b--\r\n'
	)


def broken_base64(scale: float = 1.0) -> bytes:
	body = (
		base64.encodebytes(bytes(range(256)) * _n(8000, scale)).replace(b"\n", b"\r\n")[:-7] + b"!!@@##\r\n"
	) * 3
	part = b"Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body
	return _multipart("broken-base64", [b"Content-Type: text/plain\r\n\r\nzip", part])


def soft_line_breaks(scale: float = 1.0) -> bytes:
	return _leaf(
		"soft-line-breaks",
		"text/plain",
		b"=\r\n" * _n(1_000_000, scale) + b"end",
		"Content-Transfer-Encoding: quoted-printable\r\n",
	)


def no_newlines(scale: float = 1.0) -> bytes:
	return _leaf("no-newlines", "text/plain", b"x" * _n(8_000_000, scale))


def delivery_status_blocks(scale: float = 1.0) -> bytes:
	status = (
		b"Content-Type: message/delivery-status\r\n\r\n"
		+ b"Final-Recipient: rfc822; a@b.c\r\nAction: failed\r\n\r\n" * _n(50_000, scale)
	)
	msg = _multipart("delivery-status-blocks", [b"Content-Type: text/plain\r\n\r\nbounce", status])
	return msg.replace(b"multipart/mixed;", b"multipart/report; report-type=delivery-status;", 1)


def huge_inner_header(scale: float = 1.0) -> bytes:
	inner = b"Subject: inner\r\nX-Big: " + b"y" * _n(3_000_000, scale) + b"\r\n\r\ninner body\r\n"
	return _multipart(
		"huge-inner-header",
		[b"Content-Type: text/plain\r\n\r\nfwd", b"Content-Type: message/rfc822\r\n\r\n" + inner],
	)


def unknown_charsets(scale: float = 1.0) -> bytes:
	part = b"Content-Type: text/plain; charset=utf-7\r\n\r\n" + b"+2D3cAA-+AGEAYgBj-" * _n(100_000, scale)
	html = b"Content-Type: text/html; charset=x-nonsense\r\n\r\n" + b"<p>\xe9\xe8</p>" * _n(100_000, scale)
	return _multipart("unknown-charsets", [part, html]).replace(
		b"multipart/mixed", b"multipart/alternative", 1
	)


HOSTILE: dict[str, Callable[..., bytes]] = {
	"content-type-params": content_type_params,
	"content-type-5mb": content_type_5mb,
	"rfc2231-sections": rfc2231_sections,
	"encoded-words-subject": encoded_words_subject,
	"many-addresses": many_addresses,
	"address-comments": address_comments,
	"many-headers": many_headers,
	"long-references": long_references,
	"deep-multipart": deep_multipart,
	"deep-rfc822": deep_rfc822,
	"many-parts": many_parts,
	"many-attachments": many_attachments,
	"huge-text": huge_text,
	"huge-text-in-multipart": huge_text_in_multipart,
	"dashes-in-text": dashes_in_text,
	"one-line-html": one_line_html,
	"nested-divs": nested_divs,
	"nested-formatting": nested_formatting,
	"unclosed-paragraphs": unclosed_paragraphs,
	"binary-garbage": binary_garbage,
	"nul-headers": nul_headers,
	"broken-encoded-words": broken_encoded_words,
	"broken-base64": broken_base64,
	"soft-line-breaks": soft_line_breaks,
	"no-newlines": no_newlines,
	"delivery-status-blocks": delivery_status_blocks,
	"huge-inner-header": huge_inner_header,
	"unknown-charsets": unknown_charsets,
}


def hostile_stream(count: int, scale: float = 0.1, full_every: int = 100) -> Iterator[bytes]:
	"""``count`` hostile messages: the catalogue over and over at ``scale`` (one in ``full_every``
	at full size), each copy with its own Message-ID."""
	names = list(HOSTILE)
	cache: dict[tuple[str, float], bytes] = {}
	for n in range(count):
		name = names[n % len(names)]
		size = 1.0 if n % full_every == full_every - 1 else scale
		raw = cache.get((name, size)) or cache.setdefault((name, size), HOSTILE[name](size))
		yield raw.replace(f"<hostile-{name}@".encode(), f"<hostile-{name}-{n}@".encode(), 1)


# -- structure-aware generation: random MIME trees, headers and charsets --------------------------

_CHARSETS = ["utf-8", "latin-1", "utf-7", "gb2312", "x-unknown", "", "utf-16", "iso-2022-jp", '"utf-8"']
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_ENCODED_WORD = st.builds(
	lambda charset, kind, data: f"=?{charset}?{kind}?{data}?=",
	st.sampled_from(["utf-8", "latin-1", "utf-7", "x-bad", ""]),
	st.sampled_from(["q", "b", "Q", "x"]),
	st.sampled_from(["gICA", "=FF=FE", "caf=C3=A9", "7aCA", "+2D3cAA-", "", "===", "Zm9v"]),
)
_HEADER_VALUE = st.lists(
	st.one_of(_TEXT, _ENCODED_WORD, st.sampled_from(["<a@b.c>", ",", ";", '"', "(", ")", "\\", "\x00", " "])),
	max_size=8,
).map("".join)
_PARAMS = st.lists(
	st.builds(
		lambda name, value: f"; {name}={value}",
		st.sampled_from(
			["charset", "name", "filename", "name*", "filename*0*", "filename*1*", "boundary", "format", "x"]
		),
		st.one_of(st.sampled_from(_CHARSETS), _HEADER_VALUE, st.just("utf-8''%C3%A9%FF")),
	),
	max_size=4,
).map("".join)
_LEAF_TYPES = [
	"text/plain",
	"text/html",
	"application/pdf",
	"image/png",
	"message/delivery-status",
	"text/rfc822-headers",
]
_ENCODINGS = ["", "base64", "quoted-printable", "8bit", "7bit", "x-uuencode"]
_BODY = st.one_of(
	st.binary(max_size=300),
	_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
	st.sampled_from(
		[
			b"<div><b>x</div></b>",
			b"=C3=A9=\r\n",
			b"QUJD\r\n",
			b"Final-Recipient: rfc822; a@b.c\r\n\r\nAction: failed",
		]
	),
)


@st.composite
def mime_trees(draw, depth: int = 0) -> bytes:
	"""A message or part: headers from the classes above, a leaf or a multipart of such parts."""
	headers = [
		f"{name}: {draw(_HEADER_VALUE)}"
		for name in draw(
			st.lists(
				st.sampled_from(["From", "To", "Cc", "Subject", "Message-ID", "Date", "References"]),
				max_size=4,
			)
		)
	]
	if depth < 3 and draw(st.booleans()):
		boundary = draw(st.sampled_from(["b", "c", "=_x", "b" * 70]))
		kind = draw(st.sampled_from(["mixed", "alternative", "related", "report", "digest"]))
		headers.append(f'Content-Type: multipart/{kind}; boundary="{boundary}"{draw(_PARAMS)}')
		children = draw(st.lists(mime_trees(depth + 1), max_size=3))
		closing = draw(st.sampled_from([f"--{boundary}--\r\n", "", f"--{boundary}\r\n"]))
		body = (
			b"".join(f"--{boundary}\r\n".encode() + child + b"\r\n" for child in children) + closing.encode()
		)
	elif depth < 3 and draw(st.integers(0, 5)) == 0:
		headers.append("Content-Type: message/rfc822")
		body = draw(mime_trees(depth + 1))
	else:
		headers.append(f"Content-Type: {draw(st.sampled_from(_LEAF_TYPES))}{draw(_PARAMS)}")
		encoding = draw(st.sampled_from(_ENCODINGS))
		if encoding:
			headers.append(f"Content-Transfer-Encoding: {encoding}")
		body = draw(_BODY)
	head = "\r\n".join(headers).encode("utf-8", "surrogatepass")
	return head + b"\r\n\r\n" + body
