"""simple-websocket's names over syncws: ``Server.accept(environ)``, ``Client.connect(url)``.

A program written for simple-websocket ports by changing its import
(``import simple_websocket`` becomes ``from syncws import simple_websocket``):
``Server.accept(environ, subprotocols=, ping_interval=, max_message_size=)``
inside a WSGI view, ``Client.connect(url, subprotocols=, headers=,
ping_interval=, max_message_size=, ssl_context=)``, then ``receive(timeout)``
(``None`` after the timeout), ``send(data)`` (bytes as binary, anything else
as ``str(data)``), ``close(reason, message)``, ``connected``,
``subprotocol``, ``close_reason``/``close_message``, and the exceptions
``SimpleWebsocketError``, ``ConnectionError`` (a refused handshake, with
``status_code``) and ``ConnectionClosed`` (``reason``: the close code,
``message``: its text). ``syncws.flask`` raises the same ``ConnectionClosed``.

Threads. ``Server.accept()`` keeps the WSGI worker's thread for as long as
the view runs (as simple-websocket does): the routes of ``syncws.flask`` and
``syncws.wsgi`` are the way to free it. ``receive()`` from one thread at a
time; ``send()`` and ``close()`` from any thread (simple-websocket's
``send()`` isn't safe from two threads at once; this one is). No thread of
its own: syncws's background thread reads and answers pings.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Mapping, Sequence
from typing import Any

from . import exceptions
from .protocol.close_codes import CloseCode, describe_close
from .protocol.connection import State
from .threaded.client import ClientConnection, connect
from .threaded.connection import Connection
from .threaded.server.connection import ServerConnection
from .wsgi_inline import RefusedUpgrade, accept_inline

__all__ = [
    "Base",
    "Client",
    "ConnectionClosed",
    "ConnectionError",
    "Server",
    "SimpleWebsocketError",
]


class SimpleWebsocketError(exceptions.WebSocketError):
    """simple-websocket's base exception."""


class ConnectionError(SimpleWebsocketError):
    """The handshake failed: ``status_code`` is the HTTP status of the refusal."""

    def __init__(self, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(f"connection error: {status_code}")


class ConnectionClosed(SimpleWebsocketError):
    """The connection is closed: ``reason`` is the close code, ``message`` its text.

    Raised by ``receive()`` and ``send()`` once the connection is closed
    (after every message received before the close was returned). The
    syncws exception it replaces is its ``__cause__``.
    """

    def __init__(self, reason: int = CloseCode.NO_STATUS_RCVD, message: str | None = None):
        self.reason = reason
        self.message = message
        super().__init__(f"connection closed: {describe_close(reason, message or '')}")


class Base:
    """simple-websocket's methods over a syncws connection (``connection``).

    Every other attribute is the connection's (``recv()``, ``ping()``,
    ``request``, ``remote_address``...).
    """

    def __init__(self, connection: Connection) -> None:
        #: The syncws connection underneath.
        self.connection = connection

    @property
    def connected(self) -> bool:
        """True while the connection is open (not closing nor closed). Any thread."""
        return self.connection.state is State.OPEN

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, or None. Any thread."""
        return self.connection.subprotocol

    @property
    def close_reason(self) -> int | None:
        """The close code (simple-websocket's name), once closed; 1006 if no close frame came."""
        return self.connection.close_code

    @property
    def close_message(self) -> str | None:
        """The close reason the peer gave, once closed. Any thread."""
        return self.connection.close_reason

    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """The next message (``str`` or ``bytes``), or ``None`` after ``timeout`` seconds.

        ``timeout=0`` doesn't wait. Raise ``ConnectionClosed`` once the
        connection is closed and every message before the close was returned.
        One thread at a time.
        """
        try:
            return self.connection.recv(timeout)
        except TimeoutError:
            return None
        except exceptions.ConnectionClosed as exc:
            raise self._closed(exc) from exc

    def send(self, data: Any) -> None:
        """Send bytes-like data as a binary message, anything else as text (``str(data)``).

        Raise ``ConnectionClosed`` if the connection is closed. Any thread.
        """
        binary = isinstance(data, bytes | bytearray | memoryview)
        payload = bytes(data) if binary else str(data)
        try:
            self.connection.send(payload)
        except exceptions.ConnectionClosed as exc:
            raise self._closed(exc) from exc

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Close with code ``reason`` (1000) and text ``message``; wait for the peer. Any thread."""
        self.connection.close(reason or CloseCode.NORMAL_CLOSURE, message or "")

    def _closed(self, exc: exceptions.ConnectionClosed) -> ConnectionClosed:
        # The closing handshake may still run (the peer's close frame came):
        # finish it before the caller moves on (a view returns, its server
        # writes a response), within close_timeout.
        self.connection.close()
        return ConnectionClosed(exc.code, exc.reason)

    def __enter__(self) -> Base:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.connection!r}>"


# simple-websocket's options for threads, events and selectors of eventlet or gevent.
_GREEN = ("thread_class", "event_class", "selector_class")


def _check_green(options: Mapping[str, Any]) -> None:
    for name in _GREEN:
        if options.get(name) is not None:
            raise ValueError(f"{name}= isn't supported: syncws runs on OS threads")


class Server(Base):
    """A WebSocket accepted inside a WSGI view: ``ws = Server.accept(request.environ)``."""

    connection: ServerConnection

    def __init__(self, connection: ServerConnection, environ: Mapping[str, Any]) -> None:
        super().__init__(connection)
        #: The WSGI environ of the upgrade request.
        self.environ = environ

    @classmethod
    def accept(  # noqa: PLR0917 - positional, as in simple-websocket
        cls,
        environ: Mapping[str, Any],
        subprotocols: Sequence[str] | None = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | None = None,
        thread_class: Any = None,
        event_class: Any = None,
        selector_class: Any = None,
        **options: Any,
    ) -> Server:
        """Answer the view's request with 101 and return the connection. The view's thread.

        It keeps the server's worker while the view runs. ``ping_interval``
        pings every so many seconds and closes (1011) if no pong comes within
        as long; ``max_message_size`` closes (1009) on a bigger message; both
        off by default, as in simple-websocket. ``receive_bytes`` is accepted
        and ignored. Other ``options`` are ``syncws.wsgi.upgrade()``'s
        (``origins``, ``compression``...). A bad request gets its 4xx and
        raises ``ConnectionError`` (with ``status_code``).
        """
        del receive_bytes  # syncws sizes its reads itself
        _check_green(
            {
                "thread_class": thread_class,
                "event_class": event_class,
                "selector_class": selector_class,
            }
        )
        options.setdefault("ping_timeout", ping_interval)
        try:
            connection = accept_inline(
                environ,
                subprotocols=subprotocols,
                ping_interval=ping_interval,
                max_size=max_message_size,
                **options,
            )
        except RefusedUpgrade as exc:
            raise ConnectionError(exc.status_code) from exc
        return cls(connection, environ)


class Client(Base):
    """A client connection: ``ws = Client.connect(url)``."""

    connection: ClientConnection

    @classmethod
    def connect(  # noqa: PLR0917 - positional, as in simple-websocket
        cls,
        url: str,
        subprotocols: Sequence[str] | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | None = None,
        ssl_context: ssl_module.SSLContext | None = None,
        thread_class: Any = None,
        event_class: Any = None,
        **options: Any,
    ) -> Client:
        """Connect to ``url`` and return the connection. Calling thread.

        ``headers`` (a dict or pairs) go with the handshake; ``ssl_context``
        for ``wss://``. ``ping_interval`` and ``max_message_size`` as for
        ``Server.accept()``. Other ``options`` are ``syncws.connect()``'s. A
        refusal raises ``ConnectionError`` with its status; network errors
        raise ``OSError``.
        """
        del receive_bytes
        _check_green({"thread_class": thread_class, "event_class": event_class})
        options.setdefault("ping_timeout", ping_interval)
        try:
            connection = connect(
                url,
                subprotocols=subprotocols,
                additional_headers=headers,
                ping_interval=ping_interval,
                max_size=max_message_size,
                ssl=ssl_context,
                **options,
            )
        except exceptions.InvalidStatus as exc:
            raise ConnectionError(exc.status_code) from exc
        except exceptions.InvalidHandshake as exc:
            raise ConnectionError() from exc
        return cls(connection)
