"""Helpers for testing WebSocket code: a server in one line, peers you script, web apps.

``run_server(handler)`` serves ``handler`` on a free port of 127.0.0.1 in a
background thread, as a context manager that yields the running server (its
``uri``) and stops it cleanly. ``ScriptedPeer`` is a server whose every move
your test makes (expect this message, send that one, close with this code)
to test a client against. Both work from pytest (see ``pytest_plugin``,
loaded automatically: fixtures ``syncws_server``, ``syncws_client``,
``syncws_peer``) and from unittest (``self.enterContext(run_server(...))``).

For servers: ``ScriptedClient`` drives a server the way ``ScriptedPeer``
drives a client (``scripted_client``), and ``serve_app(app)`` serves a WSGI
application (Flask, Django) for real during a test, with ``RunningApp.connect()``
and a ``ClientFactory`` for its clients (``apps``; fixtures
``syncws_app_server`` and ``syncws_clients``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from ..threaded.server import Server, ServerConnection, serve
from .apps import ClientFactory, RunningApp, serve_app
from .script import Script
from .scripted_client import ScriptedClient, expect_refused

__all__ = [
    "ClientFactory",
    "RunningApp",
    "RunningServer",
    "ScriptedClient",
    "ScriptedPeer",
    "echo",
    "expect_refused",
    "run_server",
    "serve_app",
]

#: Default bound on every wait of these helpers, in seconds.
TIMEOUT = 10.0


def echo(connection: ServerConnection) -> None:
    """A handler that sends every message back."""
    for message in connection:
        connection.send(message)


@dataclasses.dataclass(frozen=True)
class RunningServer:
    """A server started by ``run_server()``."""

    server: Server
    #: ``ws://127.0.0.1:PORT/``: pass it to your client.
    uri: str

    @property
    def port(self) -> int:
        return self.server.port

    def __str__(self) -> str:
        return self.uri


@contextlib.contextmanager
def run_server(
    handler: Callable[[ServerConnection], Any] = echo, **options: Any
) -> Iterator[RunningServer]:
    """Serve ``handler`` (echo by default) on a free port until the block ends.

    ``options`` go to ``serve()``; ``host`` defaults to 127.0.0.1. On exit,
    open connections are closed with 1001 and the server's threads are joined.
    """
    host = options.pop("host", "127.0.0.1")
    with serve(handler, host, options.pop("port", 0), **options) as server:
        thread = threading.Thread(target=server.serve_forever, name="syncws-test-server")
        thread.start()
        try:
            literal = f"[{host}]" if ":" in host else host
            yield RunningServer(server, f"ws://{literal}:{server.port}/")
        finally:
            server.shutdown()
            thread.join(TIMEOUT)


class ScriptedPeer(Script):
    """A server your test drives step by step, to test a WebSocket client.

    .. code-block:: python

        with ScriptedPeer() as peer:
            my_client.start(peer.uri)          # the code under test connects
            peer.accept()
            peer.expect("hello")               # AssertionError if it sent something else
            peer.send("welcome")
            peer.close(4000, "bye")            # how does the client take it?

    ``send_raw()`` writes bytes as they are, for broken frames. Options go to
    ``serve()`` (``subprotocols``, ``compression``...). Methods run in the
    test's thread; each wait is bounded by ``timeout``.
    """

    other = "client"

    def __init__(self, *, timeout: float = TIMEOUT, **options: Any) -> None:
        self.timeout = timeout
        self._options = options
        self._accepted: queue.Queue[ServerConnection] = queue.Queue()
        self._released = threading.Event()
        self._running: contextlib.ExitStack | None = None
        self._connection: ServerConnection | None = None
        self.uri = ""

    def __enter__(self) -> ScriptedPeer:
        stack = contextlib.ExitStack()
        running = stack.enter_context(run_server(self._handle, **self._options))
        self.uri = running.uri
        self._running = stack
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._released.set()
        if self._running is not None:
            self._running.close()

    def _handle(self, connection: ServerConnection) -> None:
        self._accepted.put(connection)
        # Keep the connection open until the test is over: it closes it if it wants.
        self._released.wait()

    @property
    def connection(self) -> ServerConnection:
        """The connection accepted last (``accept()`` first)."""
        if self._connection is None:
            self._connection = self.accept()
        return self._connection

    def accept(self, timeout: float | None = None) -> ServerConnection:
        """Wait for the next client to connect (handshake done); return its connection."""
        try:
            self._connection = self._accepted.get(timeout=timeout or self.timeout)
        except queue.Empty:
            raise AssertionError("no client connected in time") from None
        return self._connection
