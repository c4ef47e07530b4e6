"""In-process proxies for tests: HTTP CONNECT (optionally inside TLS, an https:// proxy).

``tiny_proxy(opening)`` accepts one connection, lets ``opening`` read the
client's request and choose the target (or refuse), then relays bytes both
ways until both sides end. ``http_connect`` is the usual ``opening``: an HTTP
CONNECT request, with optional credentials or a canned answer. With
``tls=context`` the proxy speaks TLS to the client first (one relay thread
then: an ``SSLSocket`` can't be read and written by two threads at once).
``tls_proxy(context)`` is the https:// proxy. The proxy runs in threads of its
own, all joined on exit.
"""

from __future__ import annotations

import base64
import contextlib
import selectors
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

__all__ = ["http_connect", "relay", "relay_both_ways", "tiny_proxy", "tls_proxy"]

#: Bound on every wait of a proxy's threads.
WAIT = 10.0

Opening = Callable[[socket.socket], "tuple[str, int] | None"]


def relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes from a to b until EOF, then pass the EOF on."""
    with contextlib.suppress(OSError):
        while data := a.recv(65536):
            b.sendall(data)
    with contextlib.suppress(OSError):
        b.shutdown(socket.SHUT_WR)


def relay_both_ways(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways in one thread (an SSLSocket can't be read and written at once).

    An EOF from one side is passed on as a FIN to the other; done when both ended.
    """
    with selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while selector.get_map():
            for key, _ in selector.select(WAIT):
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                target: socket.socket = key.data
                try:
                    data = source.recv(65536)
                    while isinstance(source, ssl.SSLSocket) and source.pending():
                        data += source.recv(65536)
                except ssl.SSLWantReadError:
                    continue
                except OSError:
                    data = b""
                try:
                    if data:
                        target.sendall(data)
                        continue
                    selector.unregister(source)
                    if isinstance(target, ssl.SSLSocket):
                        target = target.unwrap()  # close_notify, then FIN
                    target.shutdown(socket.SHUT_WR)
                except (OSError, ValueError):  # ValueError: unwrap() after the teardown's shutdown
                    return


@contextlib.contextmanager
def tiny_proxy(
    opening: Opening, *, tls: ssl.SSLContext | None = None
) -> Iterator[tuple[int, list[bytes]]]:
    """A one-connection proxy: ``opening`` reads the request and returns the target, or None."""
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []
    threads: list[threading.Thread] = []
    sockets: list[socket.socket] = [listener]

    def serve() -> None:
        client, _ = listener.accept()
        sockets.append(client)
        if tls is not None:
            try:
                client = tls.wrap_socket(client, server_side=True)
            except (OSError, ssl.SSLError):
                return
            sockets.append(client)
        target = opening(client)
        if target is None:
            # The client may have hung up already (it stops reading a reply that's too long).
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)
            return
        upstream = socket.create_connection(target)
        sockets.append(upstream)
        if tls is not None:
            relay_both_ways(client, upstream)
            return
        for a, b in ((client, upstream), (upstream, client)):
            thread = threading.Thread(target=relay, args=(a, b))
            threads.append(thread)
            thread.start()

    main = threading.Thread(target=serve)
    main.start()
    try:
        yield listener.getsockname()[1], requests
    finally:
        with contextlib.suppress(OSError):  # unblock accept() if nobody came
            socket.create_connection(listener.getsockname(), timeout=WAIT).close()
        if tls is None:
            main.join(WAIT)  # every socket is listed: the relay threads end below
        for sock in sockets[1:]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        main.join(WAIT)  # with TLS, it relays itself: it ends once the sockets are shut
        for thread in threads:
            thread.join(WAIT)
        for sock in sockets:
            sock.close()


def http_connect(
    requests: list[bytes], answer: bytes | None = None, *, credentials: str | None = None
) -> Opening:
    """An ``opening`` for HTTP CONNECT: records each request's head in ``requests``.

    ``answer``: send it and stop (a refusal, nonsense). ``credentials``:
    answer 407 unless the request carries them (Basic).
    """

    def opening(client: socket.socket) -> tuple[str, int] | None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return None
            head += chunk
        requests.append(head)
        if answer is not None:
            client.sendall(answer)
            return None
        if credentials is not None:
            token = base64.b64encode(credentials.encode())
            if b"Proxy-Authorization: Basic " + token not in head:
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                return None
        host, _, port = head.split(b" ")[1].decode().rpartition(":")
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return host, int(port)

    return opening


@contextlib.contextmanager
def tls_proxy(context: ssl.SSLContext) -> Iterator[tuple[int, list[bytes]]]:
    """A one-connection https:// proxy: TLS from the client, then CONNECT, then a relay."""
    requests: list[bytes] = []
    with tiny_proxy(http_connect(requests), tls=context) as (port, _):
        yield port, requests
