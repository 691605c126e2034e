"""Misbehaving mail servers on loopback: each refuses every login and echoes the credentials back.

Real sockets and the real protocols (IMAP4rev1, POP3, ESMTP), only as much of them as a login
takes; what a client sends comes back in the refusal in every form it was sent: as typed
(IMAP-quoted), decoded, and the SASL base64 as it came, also split over the lines of a multi-line
SMTP reply. ``server.logins`` keeps what each client sent, for the tests to check against.
"""

from __future__ import annotations

import base64
import binascii
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

HOST = "127.0.0.1"


class EchoServer:
	"""One protocol on a loopback port; one thread per connection."""

	def __init__(self, protocol: str):
		self.protocol = protocol
		self.handler: Callable[[socket.socket, object], None] = {
			"imap": _imap,
			"pop3": _pop3,
			"smtp": _smtp,
		}[protocol]
		self.logins: list[bytes] = []
		self._sock = socket.create_server((HOST, 0))
		self.port = self._sock.getsockname()[1]
		self._stop = False
		self._thread = threading.Thread(target=self._serve, daemon=True)
		self._thread.start()

	def _serve(self) -> None:
		while not self._stop:
			try:
				conn, _ = self._sock.accept()
			except OSError:
				return
			threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

	def _handle(self, conn: socket.socket) -> None:
		conn.settimeout(10)
		try:
			with conn, conn.makefile("rwb") as stream:
				self.handler(stream, self)
		except (OSError, ValueError):
			pass

	def stop(self) -> None:
		self._stop = True
		self._sock.close()


@contextmanager
def echo_server(protocol: str) -> Iterator[EchoServer]:
	server = EchoServer(protocol)
	try:
		yield server
	finally:
		server.stop()


def _send(stream, *lines: bytes) -> None:
	for line in lines:
		stream.write(line + b"\r\n")
	stream.flush()


def _read(stream) -> bytes | None:
	line = stream.readline(100_000)
	return line.rstrip(b"\r\n") if line else None


def _decoded(value: bytes) -> bytes:
	try:
		return base64.b64decode(value, validate=False)
	except (binascii.Error, ValueError):
		return b"?"


# -- IMAP --------------------------------------------------------------------------------------


def _imap(stream, server: EchoServer) -> None:
	caps = b"IMAP4rev1 AUTH=PLAIN"
	_send(stream, b"* OK [CAPABILITY " + caps + b"] echo ready")
	while (line := _read(stream)) is not None:
		tag, _, rest = line.partition(b" ")
		command, _, args = rest.partition(b" ")
		command = command.upper()
		if command == b"CAPABILITY":
			_send(stream, b"* CAPABILITY " + caps, tag + b" OK done")
		elif command == b"LOGIN":
			server.logins.append(args)
			# as sent (quoted and escaped), and as the server read it
			unquoted = args.replace(b'\\"', b'"').replace(b"\\\\", b"\\")
			_send(stream, tag + b" NO [AUTHENTICATIONFAILED] Invalid login " + args + b" = " + unquoted)
		elif command == b"AUTHENTICATE":
			_send(stream, b"+ ")
			answer = _read(stream) or b""
			server.logins.append(answer)
			plain = _decoded(answer).replace(b"\0", b" ")
			_send(stream, tag + b" NO [AUTHENTICATIONFAILED] Refused " + answer + b" that is " + plain)
		elif command == b"LOGOUT":
			_send(stream, b"* BYE echo", tag + b" OK bye")
			return
		else:
			_send(stream, tag + b" BAD not here")


# -- POP3 --------------------------------------------------------------------------------------


def _pop3(stream, server: EchoServer) -> None:
	_send(stream, b"+OK echo ready")
	user = b""
	while (line := _read(stream)) is not None:
		command, _, args = line.partition(b" ")
		command = command.upper()
		if command == b"CAPA":
			_send(stream, b"+OK", b"USER", b"UIDL", b".")
		elif command == b"USER":
			user = args
			_send(stream, b"+OK tell me " + args + b"'s password")
		elif command == b"PASS":
			server.logins.append(args)
			_send(stream, b"-ERR [AUTH] " + user + b" cannot log in with " + args)
		elif command == b"QUIT":
			_send(stream, b"+OK bye")
			return
		else:
			_send(stream, b"-ERR not here")


# -- SMTP --------------------------------------------------------------------------------------


def _smtp(stream, server: EchoServer) -> None:
	_send(stream, b"220 echo ESMTP")
	while (line := _read(stream)) is not None:
		command, _, args = line.partition(b" ")
		command = command.upper()
		if command in (b"EHLO", b"HELO"):
			_send(stream, b"250-echo", b"250-AUTH PLAIN LOGIN XOAUTH2", b"250-8BITMIME", b"250 SMTPUTF8")
		elif command == b"AUTH":
			mechanism, _, initial = args.partition(b" ")
			if mechanism.upper() == b"XOAUTH2":
				server.logins.append(initial)
				said = _decoded(initial).replace(b"\x01", b" ")
				_send(stream, b"535-5.7.8 Token " + initial + b" refused", b"535 5.7.8 that is " + said)
			elif mechanism.upper() == b"PLAIN":
				if not initial:
					_send(stream, b"334 ")
					initial = _read(stream) or b""
				server.logins.append(initial)
				plain = _decoded(initial).replace(b"\0", b" ")
				half = len(initial) // 2
				# the base64 split over two lines of the reply, then whole, then decoded
				_send(
					stream,
					b"535-5.7.8 Refused " + initial[:half],
					b"535-" + initial[half:],
					b"535-5.7.8 that is " + initial,
					b"535 5.7.8 or " + plain,
				)
			else:  # LOGIN
				if not initial:
					_send(stream, b"334 VXNlcm5hbWU6")
					initial = _read(stream) or b""
				_send(stream, b"334 UGFzc3dvcmQ6")
				password = _read(stream) or b""
				server.logins.append(password)
				_send(
					stream,
					b"535-5.7.8 " + initial + b" / " + password,
					b"535 5.7.8 that is " + _decoded(initial) + b" / " + _decoded(password),
				)
		elif command == b"QUIT":
			_send(stream, b"221 bye")
			return
		elif command == b"RSET" or command == b"NOOP":
			_send(stream, b"250 OK")
		else:
			_send(stream, b"530 5.7.0 Authentication required")
