"""The sync engine: settings, transports, parsing, threading, rules, composing and sync.

Never imports frappe. It talks to storage through the ``Store`` protocol (store.py).
"""
