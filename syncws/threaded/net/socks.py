"""SOCKS tunnels (SOCKS4, SOCKS4a, SOCKS5), and reads bounded by the opening deadline.

``socks_handshake()`` asks a SOCKS proxy, on a connected socket, for a
tunnel to a host and port: SOCKS5 (RFC 1928) with no authentication or with
a user name and password (RFC 1929), SOCKS4 with an IPv4 address, SOCKS4a
with a name. ``proxy.py`` opens the TCP connection and decides who resolves
the name.

Every read and write here (and the HTTP CONNECT exchange's, in
``proxy.py``) gets what is left of the opening deadline, computed again
before each call: a proxy that drips its answer a byte at a time can't
stretch the wait past ``open_timeout``, as a timeout set once per socket
would (each read would get it whole again).

Threads: runs in the thread that calls ``connect()``; blocking calls on a
socket nobody else uses yet.
"""

from __future__ import annotations

import ipaddress
import socket

from ..deadline import Deadline

__all__ = ["recv_within", "send_within", "socks_handshake"]

_SOCKS5_ERRORS = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
_SOCKS4_ERRORS = {
    0x5B: "request rejected or failed",
    0x5C: "request rejected: the proxy can't reach our identd",
    0x5D: "request rejected: identd reports a different user id",
}
_NO_AUTHENTICATION, _PASSWORD, _NO_METHOD = 0x00, 0x02, 0xFF


def recv_within(sock: socket.socket, size: int, deadline: Deadline, doing: str) -> bytes:
    """``sock.recv(size)``, given what is left of ``deadline``; ``TimeoutError`` past it."""
    remaining = deadline.remaining()
    if remaining == 0.0:
        raise deadline.timeout_error(doing)
    sock.settimeout(remaining)
    try:
        return sock.recv(size)
    except TimeoutError as exc:
        raise deadline.timeout_error(doing) from exc


def send_within(sock: socket.socket, data: bytes, deadline: Deadline, doing: str) -> None:
    """``sock.sendall(data)`` within what is left of ``deadline`` (one timeout for it all)."""
    remaining = deadline.remaining()
    if remaining == 0.0:
        raise deadline.timeout_error(doing)
    sock.settimeout(remaining)
    try:
        sock.sendall(data)
    except TimeoutError as exc:
        raise deadline.timeout_error(doing) from exc


class _Exchange:
    """Reads and writes on one proxy's socket, each within the deadline."""

    def __init__(self, sock: socket.socket, deadline: Deadline, what: str) -> None:
        self.sock = sock
        self.deadline = deadline
        self.what = what
        self.doing = f"waiting for {what}"

    def send(self, data: bytes) -> None:
        send_within(self.sock, data, self.deadline, self.doing)

    def recv(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = recv_within(self.sock, size - len(data), self.deadline, self.doing)
            if not chunk:
                raise ConnectionError(f"{self.what} closed the connection before answering")
            data += chunk
        return data

    def refused(self, why: str) -> OSError:
        return OSError(f"{self.what} refused: {why}")


def socks_handshake(
    sock: socket.socket,
    host: str,
    port: int,
    deadline: Deadline,
    *,
    what: str,
    version4: bool,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Ask the SOCKS proxy on ``sock`` for a tunnel to ``host``:``port``.

    ``host`` is an IP address, or a name the proxy resolves (SOCKS5, SOCKS4a).
    ``what`` names the proxy in errors. Raise ``OSError`` ("... refused: why")
    when the proxy refuses or answers nonsense, ``ConnectionError`` when it
    hangs up, ``TimeoutError`` at the deadline, ``ValueError`` for a name or
    credentials SOCKS can't carry.
    """
    exchange = _Exchange(sock, deadline, what)
    if version4:
        _socks4(exchange, host, port, username)
    else:
        _socks5(exchange, host, port, username, password)


def _socks5(
    exchange: _Exchange, host: str, port: int, username: str | None, password: str | None
) -> None:
    methods = bytes([_NO_AUTHENTICATION, _PASSWORD] if username is not None else [0])
    exchange.send(b"\x05" + bytes([len(methods)]) + methods)
    version, method = exchange.recv(2)
    if version != 5:
        raise exchange.refused(f"not a SOCKS5 answer (version {version})")
    if method == _PASSWORD and username is not None:
        user = _field(username, "user name")
        secret = _field(password or "", "password")
        exchange.send(b"\x01" + user + secret)
        _, status = exchange.recv(2)
        if status != 0:
            raise exchange.refused("wrong user name or password")
    elif method == _PASSWORD:
        raise exchange.refused("it wants a user name and password (put them in the proxy URL)")
    elif method != _NO_AUTHENTICATION:
        raise exchange.refused("no acceptable authentication method")
    exchange.send(b"\x05\x01\x00" + _socks5_address(host) + port.to_bytes(2, "big"))
    version, reply, _, kind = exchange.recv(4)
    if version != 5:
        raise exchange.refused(f"not a SOCKS5 answer (version {version})")
    if reply != 0:
        raise exchange.refused(_SOCKS5_ERRORS.get(reply, f"error {reply}"))
    if kind == 3:  # a name: its length first
        size = exchange.recv(1)[0]
    elif kind in (1, 4):
        size = 4 if kind == 1 else 16
    else:
        raise exchange.refused(f"an unknown address type {kind} in its answer")
    exchange.recv(size + 2)  # the address the proxy bound, and its port: unused


def _socks5_address(host: str) -> bytes:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return b"\x03" + _field(host, "host name", encoding="idna")
    return (b"\x01" if address.version == 4 else b"\x04") + address.packed


def _socks4(exchange: _Exchange, host: str, port: int, username: str | None) -> None:
    user = (username or "").encode() + b"\x00"
    try:
        address = ipaddress.IPv4Address(host).packed
        name = b""
    except ValueError:  # SOCKS4a: 0.0.0.1, and the name after the user id
        address = b"\x00\x00\x00\x01"
        name = host.encode("idna") + b"\x00"
    exchange.send(b"\x04\x01" + port.to_bytes(2, "big") + address + user + name)
    answer = exchange.recv(8)
    if answer[0] != 0:
        raise exchange.refused(f"not a SOCKS4 answer (version {answer[0]})")
    if answer[1] != 0x5A:
        raise exchange.refused(_SOCKS4_ERRORS.get(answer[1], f"error {answer[1]:#x}"))


def _field(text: str, name: str, *, encoding: str = "utf-8") -> bytes:
    """A length-prefixed SOCKS5 field (at most 255 bytes)."""
    data = text.encode(encoding)
    if len(data) > 255:
        raise ValueError(f"SOCKS5 can't carry a {name} longer than 255 bytes")
    return bytes([len(data)]) + data
