"""Whitelisted methods: the buttons and status of core's Email Account form, and the two guest links
every message carries (unsubscribe, tracking pixel), whose signed tokens the engine verifies."""

from __future__ import annotations

import frappe
from frappe import _
from frappe.utils import escape_html

from .accounts import (
	ACCOUNT_DOCTYPE,
	account_settings,
	all_domains,
	filled_in_fields,
	labelled,
	site_settings,
	site_words,
)
from .engine.errors import ConfigError, EmailSyncError
from .engine.settings import AccountSettings
from .frappe_store import FrappeStore

#: seconds a connection test may wait on one server operation
TEST_TIMEOUT = 15.0
#: a transparent 1x1 GIF
PIXEL = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"


# -- the form ------------------------------------------------------------------------------------


@frappe.whitelist()
def test_connection(name: str) -> dict:
	"""Connect to the account's servers (as saved) and say plainly whether it works."""
	frappe.has_permission(ACCOUNT_DOCTYPE, "write", doc=name, throw=True)
	doc = frappe.get_doc(ACCOUNT_DOCTYPE, name)
	try:
		settings = account_settings(doc)
	except ConfigError as exc:
		result = {"ok": False, "parts": [], "problems": exc.problems}
	else:
		result = check(settings)
	return with_labels(result)


def with_labels(result: dict) -> dict:
	"""``result`` (``check``'s) with the engine's words also as the form shows them (``*_html``:
	HTML, fields named by their labels, "email_server" -> "Incoming Server")."""
	result["problems_html"] = [labelled(problem) for problem in result["problems"]]
	for part in result["parts"]:
		part["message_html"] = labelled(part["message"])
	return result


def check(settings: AccountSettings) -> dict:
	"""The engine's verdict on an account's servers, as a plain dict for the desk."""
	from .engine.jobs import test_connection

	result = test_connection(settings, timeout=TEST_TIMEOUT)
	parts = [
		{
			"label": part.label,
			"server": part.server,
			"ok": part.ok,
			"message": site_words(part.message),
			"folders": [
				{"name": name, "messages": messages, "unseen": unseen}
				for name, messages, unseen in part.folders
			],
		}
		for part in result.parts
	]
	problems = [] if parts else [_("Neither incoming nor outgoing is enabled: there is nothing to test.")]
	return {"ok": result.ok and bool(parts), "parts": parts, "problems": problems}


@frappe.whitelist()
def pull_now(name: str) -> str:
	"""Queue a pull of the account now (a background job)."""
	frappe.has_permission(ACCOUNT_DOCTYPE, "write", doc=name, throw=True)
	doc = frappe.get_doc(ACCOUNT_DOCTYPE, name)
	if not doc.enable_incoming:
		frappe.throw(_("Incoming is not enabled for this account."))
	if doc.awaiting_password:
		frappe.throw(_("This account is awaiting its password."))
	from .accounts import engine_serves
	from .tasks import queue_pull

	if not engine_serves(doc):
		frappe.throw(_("Frappe's own code reads this account (Frappe Mail): it pulls every 10 minutes."))
	from .connected_app import blocked

	if words := blocked(doc):
		frappe.throw(escape_html(words), title=_("Sign-in needed"))

	queue_pull(name)
	return _("A pull is queued; its result shows here when it is done.")


@frappe.whitelist()
def server_settings_for(
	email_id: str | None = None,
	domain: str | None = None,
	email_server: str | None = None,
	smtp_server: str | None = None,
) -> dict:
	"""The server settings a domain (or a well-known provider) gives an address whose servers are
	not set (or that names a domain): the form fills them in."""
	frappe.has_permission(ACCOUNT_DOCTYPE, "read", throw=True)
	data = {
		"email_id": email_id or "",
		"domain": domain or "",
		"email_server": email_server or "",
		"smtp_server": smtp_server or "",
	}
	domains = all_domains()
	keys = filled_in_fields(data, domains)
	if not keys:
		return {}
	try:
		settings = account_settings(
			frappe._dict(data, name=email_id or "new"), password="", domains=domains, validate=False
		)
	except ConfigError:
		return {}
	values = {}
	for key in keys:
		value = getattr(settings, key)
		if isinstance(value, bool):
			value = int(value)
		elif key in ("incoming_port", "smtp_port") and value is not None:
			value = str(value)  # Data fields, as in core's Email Account
		values[key] = value
	return values


# -- the form's status ----------------------------------------------------------------------------


@frappe.whitelist()
def account_status(name: str) -> dict:
	"""What core's Email Account form shows: whether the app reads this account (and, when another
	app's controller wins on this site, which), and the last pull."""
	from .accounts import engine_serves
	from .overrides.email_account import form_status

	frappe.has_permission(ACCOUNT_DOCTYPE, "read", doc=name, throw=True)
	status = form_status(name)
	doc = frappe.get_doc(ACCOUNT_DOCTYPE, name)
	status["engine_serves"] = engine_serves(doc)
	for field in ("last_pull", "last_pull_summary", "last_error"):
		status[field] = doc.get(field)
	# the error as the form shows it (HTML, fields named by their labels)
	status["last_error_html"] = labelled(status["last_error"]) if status["last_error"] else None
	if not status["controls"]:
		status["message"] = _(
			"Another app ({0}) controls Email Account on this site, so mail is read and checked by its "
			"code, not by Email Account App. Move Email Account App last under Installed Applications > "
			"Update Hooks Resolution Order, then restart the bench."
		).format(status["controller"])
	elif not status["engine_serves"]:
		status["message"] = _(
			"Email Account App does not read Frappe Mail accounts: Frappe's own code reads and sends "
			"this account's mail."
		)
	return status


# -- guest links: unsubscribe and the tracking pixel ---------------------------------------------


@frappe.whitelist(allow_guest=True, methods=["GET", "POST"])
def unsubscribe(token: str | None = None):
	"""The unsubscribe link of a message. GET shows what it does and a button (link scanners only
	GET); POST (the button, or a mail client's one-click, RFC 8058) records it, once."""
	from .engine.outbox import unsubscribe as record
	from .engine.tokens import BadToken

	site = site_settings()
	try:
		if frappe.request and frappe.request.method == "POST":
			result = record(FrappeStore(), site, token or "")
			_page(
				_("Unsubscribed"),
				_("{0} will not get these emails any more.").format(escape_html(result["email"]))
				if result["new"]
				else _("{0} was already unsubscribed.").format(escape_html(result["email"])),
				success=True,
			)
			return
		from .engine.compose import verify_unsubscribe

		payload = verify_unsubscribe(site, token or "")
	except BadToken as exc:
		_page(_("Invalid link"), escape_html(str(exc)), success=False, status=400)
		return
	except EmailSyncError as exc:
		_page(_("Unsubscribe"), escape_html(str(exc)), success=False, status=400)
		return
	csrf = "" if frappe.session.user == "Guest" else frappe.sessions.get_csrf_token()
	form = (
		f'<form method="post" action="{escape_html(frappe.request.path if frappe.request else "")}">'
		f'<input type="hidden" name="token" value="{escape_html(token or "")}">'
		+ (f'<input type="hidden" name="csrf_token" value="{escape_html(csrf)}">' if csrf else "")
		+ f"<p>{_('Stop sending emails to {0}?').format(escape_html(payload['email']))}</p>"
		f'<button type="submit" class="btn btn-primary">{escape_html(_("Unsubscribe"))}</button></form>'
	)
	_page(_("Unsubscribe"), form, success=None)


def _page(title: str, html: str, *, success: bool | None, status: int | None = None) -> None:
	frappe.respond_as_web_page(
		title,
		html,
		success=success,
		http_status_code=status,
		indicator_color="green" if success else ("red" if success is False else "blue"),
		primary_action=None,
	)


@frappe.whitelist(allow_guest=True, methods=["GET"])
def track(token: str | None = None) -> None:
	"""The tracking pixel: marks the message Opened when the token is good; always a 1x1 GIF.
	A GET is not committed by the framework, so the store commits the one change it makes."""
	from .engine.outbox import track_open

	try:
		track_open(FrappeStore(), site_settings(), token or "")
	except EmailSyncError:
		pass  # a forged or cut link: nothing to mark, and nothing to tell whoever loaded it
	except Exception:
		frappe.db.rollback()
		frappe.log_error(title=_("Email sync: tracking pixel failed"))
	frappe.local.response.update(
		{
			"type": "download",
			"filename": "pixel.gif",
			"filecontent": PIXEL,
			"content_type": "image/gif",
			"display_content_as": "inline",
		}
	)
