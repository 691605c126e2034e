"""`email-account-app`: the sync engine without Frappe, on a TOML config and SQLite.

The package holds the click group (group.py), the configuration file (config.py) and one module
per command group: pull.py, check.py, send.py (send and flush), oauth.py (login and logout).
Commands are plain click commands added to the group here, so no module imports another's commands.
"""

from __future__ import annotations

from .check import check
from .group import main
from .oauth import login, logout
from .pull import pull
from .send import flush_command, send

for _command in (pull, check, send, flush_command, login, logout):
	main.add_command(_command)

__all__ = ["main"]
