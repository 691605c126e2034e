"""Core's Email Domain, checked by the engine.

``EmailDomainEngine`` is the app's behaviour as a mixin on the class the site would otherwise use
(hooks.py; compose.py): empty servers are filled from the engine's provider presets for the domain,
the engine checks the settings (fields named by their labels), and core's own checks (a connection
to each server with a 30 s timeout, outside tests) and its copy of the settings onto every account
of the domain (each account's save, with the account's own connection check) stay core's.
"""

from __future__ import annotations

from frappe.model.document import Document

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


_composer = Composer(__name__, "EmailDomain", "Email Domain", CORE_PATH, EmailDomainEngine)


def __getattr__(name: str):
	return _composer.resolve(name)
