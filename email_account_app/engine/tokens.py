"""Thread tokens and signed tokens.

A thread token names one conversation. We put it in the Message-ID of every message we send
(``<TOKEN.RANDOM@domain>``) and, where an account is set up for it, in a sub-address of the
Reply-To (``support+TOKEN@example.com``), so that a reply finds its thread even when a client drops
In-Reply-To and References.

Signed tokens (unsubscribe links, the tracking pixel) carry a small payload and an HMAC-SHA256 over
it with the site's secret; a forged or altered token is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable

from .errors import EmailSyncError

_B32 = "abcdefghijklmnopqrstuvwxyz234567"
TOKEN_LENGTH = 16
_TOKEN = f"[{_B32}]{{{TOKEN_LENGTH}}}"
_MESSAGE_ID_RE = re.compile(rf"^(?P<token>{_TOKEN})\.[0-9a-f]{{12}}@", re.IGNORECASE)
_SUBADDRESS_RE = re.compile(rf"^[^+@]+\+(?P<token>{_TOKEN})@", re.IGNORECASE)


def new_thread_token() -> str:
	"""16 characters of base32: 80 random bits."""
	return base64.b32encode(secrets.token_bytes(TOKEN_LENGTH * 5 // 8)).decode("ascii").lower()


def make_message_id(token: str, domain: str) -> str:
	"""A Message-ID (without angle brackets) that carries the thread token."""
	return f"{token}.{secrets.token_hex(6)}@{domain}"


def token_from_message_id(message_id: str | None) -> str | None:
	match = _MESSAGE_ID_RE.match((message_id or "").strip().strip("<>"))
	return match.group("token").lower() if match else None


def subaddress(address: str, token: str) -> str:
	local, _, domain = address.partition("@")
	return f"{local}+{token}@{domain}"


def token_from_address(address: str | None) -> str | None:
	match = _SUBADDRESS_RE.match((address or "").strip())
	return match.group("token").lower() if match else None


def tokens_in(message_ids: Iterable[str] = (), addresses: Iterable[str] = ()) -> list[str]:
	"""Thread tokens found in these Message-IDs and addresses, in order, without repeats."""
	found = [token_from_message_id(i) for i in message_ids] + [token_from_address(a) for a in addresses]
	return list(dict.fromkeys(t for t in found if t))


# -- signed tokens ------------------------------------------------------------------------------


class BadToken(EmailSyncError):
	title = "Invalid link"


def _b64(data: bytes) -> str:
	return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
	return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(payload: dict, secret: str | bytes, *, purpose: str) -> str:
	"""A URL-safe token: base64(payload JSON) + "." + base64(HMAC over purpose and payload)."""
	key = secret.encode() if isinstance(secret, str) else secret
	body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
	mac = hmac.new(key, f"{purpose}:{body}".encode(), hashlib.sha256).digest()
	return f"{body}.{_b64(mac)}"


def verify(token: str, secret: str | bytes, *, purpose: str) -> dict:
	"""The payload of a token signed for ``purpose``; BadToken when forged, altered or malformed."""
	key = secret.encode() if isinstance(secret, str) else secret
	try:
		body, mac = token.strip().split(".", 1)
		expected = hmac.new(key, f"{purpose}:{body}".encode(), hashlib.sha256).digest()
		if not hmac.compare_digest(expected, _unb64(mac)):
			raise ValueError("signature does not match")
		payload = json.loads(_unb64(body))
		if not isinstance(payload, dict):
			raise ValueError("not an object")
		return payload
	except (ValueError, TypeError, UnicodeDecodeError, AttributeError) as exc:
		raise BadToken(
			"This link is not valid: it may have been cut short or changed.",
			hint="Use the link exactly as it came in the email.",
		) from exc
