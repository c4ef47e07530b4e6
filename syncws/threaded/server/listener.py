"""The listening socket's helpers: binding with useful errors, answers without a thread.

``listen()`` binds (every interface, IPv4 and IPv6, when no host is given)
and turns the usual binding errors into hints. ``refuse_busy()`` answers 503
past ``max_connections`` in the accepting thread and hands the socket to the
background thread (``_Drain``), which reads what the client still sends and
closes: no thread per refused client. ``not_http()`` judges a new
connection's first bytes, peeked by its handler thread, so that bytes that
can't be HTTP get 400 at once instead of waiting for ``open_timeout``.
"""

from __future__ import annotations

import contextlib
import http
import socket
import threading

from ...protocol.http11 import error_response
from ..runtime.errcodes import ADDRESS_IN_USE, ADDRESS_NOT_AVAILABLE
from ..runtime.reactor import reactor

__all__ = ["PEEK_SIZE", "listen", "not_http", "refuse_busy"]

#: Bytes a server peeks at before reading a request (see ``not_http()``).
PEEK_SIZE = 16
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def not_http(head: bytes) -> str | None:
    """Why ``head`` (a request's first bytes) can't start an HTTP request, or None if it may."""
    head = head.lstrip(b"\r\n")  # empty lines first (RFC 9112 2.2): judge what follows
    if head[:2] == b"\x16\x03":
        return "this server speaks plain HTTP and ws://, the client tried TLS (wss://)"
    method = head.partition(b" ")[0]
    if all(byte in _TCHAR for byte in method):
        return None
    return "not an HTTP request line"


def refuse_busy(sock: socket.socket, server_header: str | None) -> None:
    """Answer 503 without a thread: write the response, let the reactor drain and close."""
    response = error_response(http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections.\n")
    response.headers["Retry-After"] = "1"
    if server_header is not None:
        response.headers["Server"] = server_header
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.send(response.serialize())
        sock.shutdown(socket.SHUT_WR)
    _Drain(sock)


class _Drain:
    """Read and discard until EOF (or a second passed), then close: no RST on unread data."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._done = False
        self._lock = threading.Lock()
        self._timer = reactor.call_later(1.0, self._close)
        reactor.watch_read(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(65536)
        except BlockingIOError:
            data = b"-"
        except OSError:
            data = b""
        if data:
            with self._lock:
                if not self._done:
                    reactor.watch_read(self._fd, self._on_readable)
            return
        self._close()

    def _close(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._timer.cancel()
        reactor.forget(self._fd)
        self._sock.close()


def listen(host: str | None, port: int, backlog: int) -> socket.socket:
    """Bind a listening TCP socket; no host means every interface, IPv4 and IPv6."""
    try:
        if not host:
            if socket.has_dualstack_ipv6():
                return socket.create_server(
                    ("", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=backlog
                )
            return socket.create_server(("", port), backlog=backlog)  # pragma: no cover
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        return socket.create_server(address[:2], family=family, backlog=backlog)
    except socket.gaierror as exc:
        raise OSError(exc.errno, f"cannot listen on {host!r}: {exc.strerror}") from exc
    except OSError as exc:
        where = f"{host or '*'}:{port}"
        if exc.errno in ADDRESS_NOT_AVAILABLE:
            hint = (
                f"cannot listen on {where}: this address isn't configured on any interface "
                "of this machine (for IPv6 check that it is enabled; use host=None for all "
                "interfaces)"
            )
        elif exc.errno in ADDRESS_IN_USE:
            hint = f"cannot listen on {where}: another program already listens on this port"
        else:
            raise
        raise OSError(exc.errno, hint) from exc
