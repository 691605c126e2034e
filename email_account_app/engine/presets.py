"""Server settings for well-known providers, from data/domain_presets.toml."""

from __future__ import annotations

import functools
import sys
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
	import tomllib
else:  # Python 3.10
	import tomli as tomllib


@functools.cache
def presets() -> dict[str, dict[str, Any]]:
	"""Provider name -> {"domains": [...], field: value, ...}."""
	text = resources.files(__package__).joinpath("data/domain_presets.toml").read_text("utf-8")
	return tomllib.loads(text)


@functools.cache
def _by_domain() -> dict[str, tuple[str, dict[str, Any]]]:
	table = {}
	for provider, preset in presets().items():
		settings = {k: v for k, v in preset.items() if k != "domains"}
		for domain in preset["domains"]:
			table[domain.lower()] = (provider, settings)
	return table


def preset_for(domain: str) -> dict[str, Any] | None:
	"""The settings for an address's domain (``example.com`` or ``a@example.com``), or None."""
	domain = domain.rpartition("@")[2].strip().lower()
	found = _by_domain().get(domain)
	return dict(found[1]) if found else None


def provider_for(domain: str) -> str | None:
	domain = domain.rpartition("@")[2].strip().lower()
	found = _by_domain().get(domain)
	return found[0] if found else None
