"""Core's Email Domain, checked by the engine.

``EmailDomainEngine`` is the app's behaviour as a mixin on the class the site would otherwise use
(hooks.py; compose.py): empty servers are filled from the engine's provider presets for the domain,
the engine checks the settings (fields named by their labels), and core's own checks (a connection
to each server with a 30 s timeout, outside tests) and its copy of the settings onto every account
of the domain (each account's save, with the account's own connection check) stay core's. A
connection core cannot make is told in the engine's words (what failed, which field to check), not
as core's "Error connecting via IMAP/POP3: [Errno -2] Name or service not known".
"""

from __future__ import annotations

import frappe
from frappe import _
from frappe.model.document import Document
from frappe.utils import cint

from .compose import Composer

CORE_PATH = "frappe.email.doctype.email_domain.email_domain.EmailDomain"

#: the preset's fields that core's Email Domain has, filled in when the domain's server is empty
PRESET_FIELDS = (
	"email_server",
	"use_imap",
	"use_ssl",
	"use_starttls",
	"incoming_port",
	"smtp_server",
	"smtp_port",
	"use_tls",
	"use_ssl_for_outgoing",
	"sent_folder_name",
)


class EmailDomainEngine(Document):
	def validate(self):
		from email_account_app.accounts import DOMAIN_DOCTYPE, domain_settings, throw_config_error
		from email_account_app.engine.errors import ConfigError
		from email_account_app.engine.presets import preset_for

		self.domain_name = (self.domain_name or "").strip().lstrip("@")
		preset = preset_for(self.domain_name) or {}
		for server, group in (("email_server", PRESET_FIELDS[1:5]), ("smtp_server", PRESET_FIELDS[6:])):
			if not self.get(server) and preset.get(server):
				for fieldname in (server, *group):
					if fieldname in preset and self.meta.has_field(fieldname):
						value = preset[fieldname]
						self.set(fieldname, int(value) if isinstance(value, bool) else value)
		try:
			domain_settings(self)
		except ConfigError as exc:
			throw_config_error(exc, DOMAIN_DOCTYPE)
		super().validate()

	def validate_incoming_server_conn(self):
		self._connect_as_core(super().validate_incoming_server_conn, outgoing=False)

	def validate_outgoing_server_conn(self):
		self._connect_as_core(super().validate_outgoing_server_conn, outgoing=True)

	def _connect_as_core(self, check, *, outgoing: bool) -> None:
		"""Core's connection check (``check``) without core's catch-all around it: a failure is
		told in the engine's words."""
		unwrapped = getattr(check, "__wrapped__", None)  # core's check inside its error decorator
		if unwrapped is None:
			check()
			return
		try:
			unwrapped(self)
		except Exception as exc:
			from email_account_app.accounts import DOMAIN_DOCTYPE, labelled
			from email_account_app.overrides.email_account import ConnectionCheckFailed

			label, server, error = connection_problem(self, exc, outgoing=outgoing)
			frappe.throw(
				f"{frappe.utils.escape_html(_(label))} ({frappe.utils.escape_html(server)}): "
				+ labelled(f"{error.title}: {error}", DOMAIN_DOCTYPE),
				exc=ConnectionCheckFailed,
				title=_("Cannot connect"),
			)


#: core's timeout for each connection check (seconds)
CORE_CHECK_TIMEOUT = 30


def connection_problem(doc, exc: Exception, *, outgoing: bool):
	"""What went wrong connecting to a domain's server, as the engine says it for an account: the
	part's label, the server, and the engine's error."""
	import imaplib
	import poplib

	from email_account_app.engine.errors import TransportError
	from email_account_app.engine.transports import TLS_CHOICE_HINT, network_error
	from email_account_app.engine.transports.smtp import SMTP_TLS_HINT

	if outgoing:
		label, host, port, field = (
			"Outgoing (SMTP)",
			doc.smtp_server or "",
			cint(doc.smtp_port),
			"smtp_server",
		)
		hint = SMTP_TLS_HINT
	else:
		label = "Incoming (IMAP)" if doc.use_imap else "Incoming (POP3)"
		host, port, field, hint = (
			doc.email_server or "",
			cint(doc.incoming_port),
			"email_server",
			TLS_CHOICE_HINT,
		)
	server = f"{host}:{port}" if port else host
	if isinstance(exc, (imaplib.IMAP4.error, poplib.error_proto)) or not isinstance(exc, OSError):
		error = TransportError(f"{server} answered with an error: {exc}", hint=hint)
	else:  # socket and TLS errors (smtplib's are OSErrors too)
		error = network_error(exc, host, port, CORE_CHECK_TIMEOUT, connecting=True, server_field=field)
		if outgoing and error.hint and TLS_CHOICE_HINT in error.hint:
			error = type(error)(error.message, hint=error.hint.replace(TLS_CHOICE_HINT, SMTP_TLS_HINT))
	return label, server, error


_composer = Composer(__name__, "EmailDomain", "Email Domain", CORE_PATH, EmailDomainEngine)


def __getattr__(name: str):
	return _composer.resolve(name)
