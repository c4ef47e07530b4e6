"""``WebSocketApp``: callbacks over the blocking client, for programs written for websocket-client.

A program built on websocket-client's ``WebSocketApp`` ports by changing its
import: the callbacks, their arguments and ``run_forever()`` work the same
way. Underneath it is ``connect()`` and ``for message in connection``: the
same connection object, timeouts and close codes as the rest of syncws.

Threads. ``run_forever()`` blocks its thread and runs ``on_open``,
``on_message``, ``on_error`` and ``on_close`` there, in order. ``on_ping`` and
``on_pong`` run in syncws's background thread (pings are answered
automatically before they are reported): keep them short and never block
in them. ``send()`` and ``close()`` may be called from any thread, callbacks
included.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .exceptions import ConnectionClosed, ConnectionClosedOK, InvalidState
from .protocol.events import Ping, Pong
from .threaded.backoff import Backoff, retryable
from .threaded.client import ClientConnection, connect

__all__ = ["WebSocketApp"]

logger = logging.getLogger("syncws")

#: websocket-client's opcode numbers for ``send(data, opcode)``.
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2


class WebSocketApp:
    """Connect to ``url`` and run callbacks on what happens, like websocket-client's.

    Callbacks take the app first: ``on_open(app)``, ``on_message(app,
    message)`` (``str`` for text, ``bytes`` for binary), ``on_error(app,
    exception)``, ``on_close(app, close_status_code, close_msg)``,
    ``on_ping(app, data)``, ``on_pong(app, data)``. ``header`` is a list of
    ``"Name: value"`` strings or a mapping. An exception raised by a callback
    goes to ``on_error``.
    """

    def __init__(  # noqa: PLR0917 - positional, as in websocket-client
        self,
        url: str,
        header: Sequence[str] | Mapping[str, str] | None = None,
        on_open: Callable[[WebSocketApp], object] | None = None,
        on_message: Callable[[WebSocketApp, str | bytes], object] | None = None,
        on_error: Callable[[WebSocketApp, BaseException], object] | None = None,
        on_close: Callable[[WebSocketApp, int | None, str | None], object] | None = None,
        on_ping: Callable[[WebSocketApp, bytes], object] | None = None,
        on_pong: Callable[[WebSocketApp, bytes], object] | None = None,
        subprotocols: Sequence[str] | None = None,
    ) -> None:
        self.url = url
        self.header = header
        self.on_open = on_open
        self.on_message = on_message
        self.on_error = on_error
        self.on_close = on_close
        self.on_ping = on_ping
        self.on_pong = on_pong
        self.subprotocols = subprotocols
        #: The current connection, while there is one.
        self.sock: ClientConnection | None = None
        #: True while ``run_forever()`` runs and wasn't asked to stop.
        self.keep_running = False
        self._stop = threading.Event()

    # -- from any thread -------------------------------------------------------------

    def send(self, data: str | bytes, opcode: int | None = None) -> None:
        """Send a message: text for ``str`` (or ``opcode=0x1``), binary for bytes (``0x2``)."""
        connection = self._connection()
        text = None if opcode is None else opcode == OPCODE_TEXT
        connection.send(data, text=text)

    def send_text(self, text: str) -> None:
        self._connection().send(text)

    def send_bytes(self, data: bytes) -> None:
        self._connection().send(data, text=False)

    def close(self, status: int = 1000, reason: str = "") -> None:
        """Close the connection and make ``run_forever()`` return (no reconnecting)."""
        self.keep_running = False
        self._stop.set()
        connection = self.sock
        if connection is not None:
            connection.close(status, reason)

    # -- the loop --------------------------------------------------------------------

    def run_forever(
        self,
        *,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        reconnect: float | None = None,
        **connect_kwargs: Any,
    ) -> bool:
        """Connect, call the callbacks until the connection ends; return True after an error.

        ``ping_interval``/``ping_timeout`` turn on keepalive (off by default, as
        in websocket-client). ``reconnect=SECONDS`` reconnects after a drop or
        a failed attempt, with exponential backoff from that delay up to 30 s
        (reset once connected); errors that retrying can't fix (a 4xx other
        than 429, a bad URI) end the loop. ``close()`` or Ctrl-C ends it.
        Other options go to ``connect()``.
        """
        if self.keep_running:
            raise RuntimeError("run_forever() is already running")
        self.keep_running = True
        self._stop.clear()
        backoff = Backoff(initial_delay=reconnect or 0.0, max_delay=max(30.0, reconnect or 0.0))
        had_error = False
        try:
            while self.keep_running:
                connected, error = self._run_once(
                    ping_interval, ping_timeout, connect_kwargs, backoff
                )
                had_error |= error is not None
                if reconnect is None or not self.keep_running:
                    break
                if not connected and error is not None and not retryable(error):
                    break  # connecting again would fail the same way
                delay = backoff.next_delay()
                logger.info("WebSocketApp: reconnecting to %s in %.1fs", self.url, delay)
                if self._stop.wait(delay):
                    break
        except KeyboardInterrupt:
            if self.sock is not None:
                self.sock.close()
        finally:
            self.keep_running = False
            self.sock = None
        return had_error

    def _run_once(
        self,
        ping_interval: float | None,
        ping_timeout: float | None,
        connect_kwargs: dict[str, Any],
        backoff: Backoff,
    ) -> tuple[bool, BaseException | None]:
        """One connection, from connecting to on_close: did it open, and what error ended it."""
        # Pings may come right after the handshake: report them from the start.
        connection_class = type("WebSocketAppConnection", (_ReportingConnection,), {"app": self})
        try:
            connection = connect(
                self.url,
                create_connection=connection_class,
                additional_headers=_headers(self.header),
                subprotocols=self.subprotocols,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                **connect_kwargs,
            )
        except Exception as exc:
            self._callback(self.on_error, exc)
            return False, exc
        self.sock = connection
        backoff.reset()
        if self._stop.is_set():  # close() came during the handshake
            connection.close()
        error: BaseException | None = None
        self._callback(self.on_open)
        try:
            for message in connection:
                self._callback(self.on_message, message)
        except ConnectionClosed as exc:
            if not isinstance(exc, ConnectionClosedOK):
                error = exc
                self._callback(self.on_error, exc)
        finally:
            connection.close()
            self._callback(self.on_close, connection.close_code, connection.close_reason)
        return True, error

    # -- internals ---------------------------------------------------------------------

    def _connection(self) -> ClientConnection:
        connection = self.sock
        if connection is None:
            raise InvalidState("not connected: send() works between on_open and on_close")
        return connection

    def _on_control(self, event: Ping | Pong) -> None:
        """Background thread: report a ping or a pong."""
        callback = self.on_ping if isinstance(event, Ping) else self.on_pong
        self._callback(callback, event.data)

    def _callback(self, callback: Callable[..., object] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(self, *args)
        except Exception as exc:
            if callback is self.on_error:
                logger.exception("WebSocketApp: on_error failed")
            else:
                self._callback(self.on_error, exc)


class _ReportingConnection(ClientConnection):
    """A client connection that reports pings and pongs to its app."""

    app: WebSocketApp

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.report_control_frames(self.app._on_control)


def _headers(header: Sequence[str] | Mapping[str, str] | None) -> list[tuple[str, str]]:
    if header is None:
        return []
    if isinstance(header, Mapping):
        return list(header.items())
    pairs = []
    for line in header:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"headers are 'Name: value', not {line!r}")
        pairs.append((name.strip(), value.strip()))
    return pairs
