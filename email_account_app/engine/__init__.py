"""The sync engine: settings, transports, parsing, threading, rules, composing, and the jobs.

Never imports frappe, reads no environment variable and changes no library's globals: what it
needs comes in as settings (frozen dataclasses, settings.py) and arguments.

Jobs (jobs.py), one entry point each, called alike by the CLI and the Frappe app:
``pull``, ``send_due``, ``send_unreplied_notices``, ``test_connection``.

Ports (store.py), small protocols named for what they hold, implemented by both stores:
``FolderCursors``, ``MessageLedger``, ``ThreadIndex``, ``ReplyWatch``, ``OutgoingQueue``, ``Outbox``,
``Suppressions``, ``OpenTracking``, ``AutoReplyLog``; and ``oauth.TokenStore``, the refresh token
of an account that signs in with OAuth 2.0 (the CLI keeps it in its SQLite file).
"""
