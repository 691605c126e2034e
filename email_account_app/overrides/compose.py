"""Controller classes composed per site: the app's mixin on top of the class the site would use
without the app.

Invariants:
- v15 takes the LAST ``override_doctype_class`` entry of a DocType (apps in install order), so a
  second app that overrides Email Account (frappe/helpdesk) and this app cannot both win. The app's
  hook names a module attribute that does not exist; the module's ``__getattr__`` (PEP 562, which
  Frappe's ``import_controller`` goes through) composes ``type(name, (Mixin, Base), ...)`` where
  Base is the entry before ours for this site (or core's class). Hooks are per site and classes
  per process, so the base is looked up on every resolution, and each composed class is made once
  per base and cached.
- Documents get pickled (the document cache, ``frappe.enqueue`` of bound methods): every composed
  class is reachable as ``module.<encoded name>`` (the base's dotted path with "." as "__"), which
  ``__getattr__`` resolves in any process, so a pickled document loads back to the same class.
- When another app's override comes after ours, Frappe uses that app's class and ours is never
  asked: ``winning_controller`` tells, for the form and the README's warning.
"""

from __future__ import annotations

import threading
from typing import Any

import frappe


class Composer:
	"""Resolves ``public_name`` (the hook's class name) and the encoded names of composed classes
	for one DocType."""

	def __init__(self, module: str, public_name: str, doctype: str, core_path: str, mixin: type):
		self.module = module
		self.public_name = public_name
		self.doctype = doctype
		self.core_path = core_path
		self.mixin = mixin
		self.own_path = f"{module}.{public_name}"
		self._classes: dict[str, type] = {}
		self._lock = threading.Lock()

	# -- names ---------------------------------------------------------------------------------

	def encoded(self, base_path: str) -> str:
		return f"{self.public_name}__{base_path.replace('.', '__')}"

	def decoded(self, name: str) -> str | None:
		prefix = f"{self.public_name}__"
		return name[len(prefix) :].replace("__", ".") if name.startswith(prefix) else None

	# -- resolution ----------------------------------------------------------------------------

	def base_path(self) -> str:
		"""The class the site would use without this app: the override entry before ours (the
		last other one), else core's."""
		hooks = frappe.get_hooks("override_doctype_class", {}) or {}
		entries = hooks.get(self.doctype) or []
		if isinstance(entries, str):
			entries = [entries]
		others = [path for path in entries if path != self.own_path]
		return others[-1] if others else self.core_path

	def for_site(self) -> type:
		return self.compose(self.base_path())

	def compose(self, base_path: str) -> type:
		cls = self._classes.get(base_path)
		if cls is not None:
			return cls
		with self._lock:
			cls = self._classes.get(base_path)
			if cls is None:
				base = frappe.get_attr(base_path)
				if issubclass(base, self.mixin):  # already ours (v16 extension, or a re-entry)
					return base
				name = self.encoded(base_path)
				cls = type(name, (self.mixin, base), {"__module__": self.module, "__qualname__": name})
				self._classes[base_path] = cls
		return cls

	def resolve(self, name: str) -> Any:
		"""The module's ``__getattr__``."""
		if name == self.public_name:
			return self.for_site()
		base_path = self.decoded(name)
		if base_path:
			return self.compose(base_path)
		raise AttributeError(f"module {self.module!r} has no attribute {name!r}")


def winning_controller(doctype: str) -> type:
	"""The class Frappe uses for ``doctype`` on this site (as a fresh process would resolve it)."""
	from frappe.model.base_document import import_controller

	return import_controller(doctype)


def app_controls(doctype: str, mixin: type) -> tuple[bool, str]:
	"""Whether the app's behaviour runs for ``doctype`` on this site, and the path of the class
	that runs instead when it does not."""
	cls = winning_controller(doctype)
	return issubclass(cls, mixin), f"{cls.__module__}.{cls.__qualname__}"
