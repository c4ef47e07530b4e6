"""Helpers for the threaded layer's tests: running servers, connected pairs."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from syncws import ClientConnection, Connection, Server, ServerConnection, connect, serve
from syncws.protocol import Protocol, Side

from ..rawpeer import read_exactly

__all__ = [
    "WAIT",
    "connected_pair",
    "connection_pair",
    "echo",
    "echo_client",
    "raw_pair",
    "read_exactly",
    "refused_port",
    "running_server",
    "wait_until",
]

#: Generous bound on any wait in a test; tests synchronize on events, this only stops hangs.
WAIT = 10.0


def wait_until(condition: Callable[[], bool]) -> None:
    """Wait for a state that a background thread reaches by itself (bounded by WAIT).

    Only for states no event announces; it polls every millisecond.
    """
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback TCP port where every connection is refused while the block runs.

    A socket bound to it and not listening holds it: connecting gets
    ECONNREFUSED, and no other process can listen there meanwhile (a port just
    freed may be taken again at once by anything on the machine).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(
    handler: Callable[[ServerConnection], Any], host: str = "127.0.0.1", **kwargs: Any
) -> Iterator[Server]:
    """Serve ``handler`` in a background thread; shut down and join on exit."""
    with serve(handler, host, kwargs.pop("port", 0), **kwargs) as server:
        thread = threading.Thread(target=server.serve_forever, name="test-serve-forever")
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            thread.join(WAIT)


def echo(connection: ServerConnection) -> None:
    """Send every message back."""
    for message in connection:
        connection.send(message)


@contextlib.contextmanager
def echo_client(**kwargs: Any) -> Iterator[ClientConnection]:
    """An echo server and a client connected to it."""
    server_kwargs = kwargs.pop("server", {})
    with (
        running_server(echo, **server_kwargs) as server,
        connect(f"ws://127.0.0.1:{server.port}/", **kwargs) as client,
    ):
        yield client


def connection_pair(max_size: int | None = 2**20, **kwargs: Any) -> tuple[Connection, Connection]:
    """A client-side and a server-side ``Connection`` over a socketpair, already open."""
    client_sock, server_sock = socket.socketpair()
    pair = []
    for sock, side in ((client_sock, Side.CLIENT), (server_sock, Side.SERVER)):
        sock.setblocking(False)
        connection = Connection(sock, Protocol(side, max_size=max_size), **kwargs)
        connection.start_background()
        pair.append(connection)
    return pair[0], pair[1]


@contextlib.contextmanager
def connected_pair(**kwargs: Any) -> Iterator[tuple[Connection, Connection]]:
    """``connection_pair()`` that closes both sides on exit (abruptly if needed)."""
    client, server = connection_pair(**kwargs)
    try:
        yield client, server
    finally:
        for connection in (client, server):
            connection._abort()


def raw_pair(**kwargs: object) -> tuple[Connection, socket.socket]:
    """A server-side connection and the raw socket of its peer."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    connection = Connection(ours, Protocol(Side.SERVER), **kwargs)  # type: ignore[arg-type]
    connection.start_background()
    return connection, theirs
