"""A TCP proxy on loopback in front of a real server (Dovecot, aiosmtpd) that turns hostile on request.

``misbehave(action, trigger=..., after=...)``: once the client has sent ``trigger`` (in any case;
b"" for at once, greeting included) and ``after`` more bytes have come back from the server, what the client
receives on every connection is changed:

- ``trickle``: the server's bytes, one every ``delay`` seconds;
- ``stall``: nothing more (the connection stays open);
- ``drop``: the connection closes;
- ``garbage``: ``data`` instead of the server's reply, then nothing;
- ``flood``: ``data`` again and again, as long as the client reads;
- ``literal``: the next ``{n}`` (an IMAP literal's size) becomes ``{size}``; the rest passes.

``heal()`` makes new connections honest again.
"""

from __future__ import annotations

import re
import select
import socket
import time
from dataclasses import dataclass

from .dovecot import HOST, LoopbackProxy

LITERAL_RE = re.compile(rb"\{(\d+)\}\r\n")


@dataclass(frozen=True)
class Misbehaviour:
	action: str
	trigger: bytes = b""
	after: int = 0
	delay: float = 0.2
	data: bytes = b""
	size: int = 0


class _Connection:
	def __init__(self, client: socket.socket, server: socket.socket, plan: Misbehaviour | None):
		self.client, self.server, self.plan = client, server, plan
		self.triggered = plan is not None and plan.trigger == b""
		self.passed = 0  # bytes forwarded since the trigger
		self.done = False


class HostileProxy(LoopbackProxy):
	POLL = 0.05
	SOCKET_TIMEOUT = 30  # sends wait for a slow reader; receives poll (see _recv)

	def __init__(self, target_port: int, host: str = HOST):
		super().__init__(target_port, host)
		self._plan: Misbehaviour | None = None
		self.start()

	def misbehave(self, action: str, **options) -> None:
		self._plan = Misbehaviour(action, **options)

	def heal(self) -> None:
		self._plan = None

	# -- plumbing --------------------------------------------------------------------------------

	def _serve(self, client: socket.socket, server: socket.socket) -> None:
		conn = _Connection(client, server, self._plan)
		self._spawn(self._upstream, conn)
		self._spawn(self._downstream, conn)

	def _upstream(self, conn: _Connection) -> None:
		"""Client to server, unchanged; notes the trigger."""
		try:
			while not self._closed.is_set() and not conn.done:
				data = self._recv(conn.client)
				if data is None:
					continue
				if not data:
					break
				if conn.plan is not None and conn.plan.trigger and conn.plan.trigger.lower() in data.lower():
					conn.triggered = True
				conn.server.sendall(data)
		except (OSError, ValueError):  # ValueError: a socket closed by the other pump
			pass
		finally:
			self._end(conn)

	def _downstream(self, conn: _Connection) -> None:
		"""Server to client, changed once triggered."""
		try:
			while not self._closed.is_set() and not conn.done:
				data = self._recv(conn.server)
				if data == b"":
					break
				if data is None:
					if conn.triggered and conn.plan.action == "flood" and conn.passed >= conn.plan.after:
						self._flood(conn)
					continue
				self._forward(conn, data)
		except (OSError, ValueError):  # ValueError: a socket closed by the other pump
			pass
		finally:
			self._end(conn)

	def _recv(self, sock: socket.socket) -> bytes | None:
		"""What ``sock`` has (b"" at its end), or None when nothing came within POLL."""
		ready, _, _ = select.select([sock], [], [], self.POLL)
		return sock.recv(65536) if ready else None

	def _forward(self, conn: _Connection, data: bytes) -> None:
		plan = conn.plan
		if not conn.triggered or plan is None:
			conn.client.sendall(data)
			return
		if conn.passed < plan.after:
			head, data = data[: plan.after - conn.passed], data[plan.after - conn.passed :]
			conn.client.sendall(head)
			conn.passed += len(head)
			if not data:
				return
		action = plan.action
		if action == "trickle":
			for byte in data:
				if self._closed.is_set() or conn.done:
					return
				conn.client.sendall(bytes([byte]))
				time.sleep(plan.delay)
		elif action == "stall":
			return
		elif action == "drop":
			self._end(conn)
		elif action == "garbage":
			if conn.passed <= plan.after:
				conn.client.sendall(plan.data)
				conn.passed = plan.after + 1  # sent once
		elif action == "flood":
			self._flood(conn)
		elif action == "literal":
			changed, count = LITERAL_RE.subn(b"{%d}\r\n" % plan.size, data, count=1)
			conn.client.sendall(changed)
			if count:
				conn.triggered = False  # one lie; the rest passes
		else:
			raise ValueError(action)

	def _flood(self, conn: _Connection) -> None:
		chunk = conn.plan.data * max(1, 65536 // len(conn.plan.data))
		while not self._closed.is_set() and not conn.done:
			conn.client.sendall(chunk)

	def _end(self, conn: _Connection) -> None:
		conn.done = True
		for sock in (conn.client, conn.server):
			try:
				sock.shutdown(socket.SHUT_RDWR)
			except OSError:
				pass
			sock.close()
