"""``WebSocketApp``: callbacks over the blocking client, for programs written for websocket-client.

A program built on websocket-client's ``WebSocketApp``, or on its blocking
``create_connection()`` and ``WebSocket`` (``_wsblocking.py``), ports by changing its
import (``import websocket`` becomes ``from syncws import callbacks as
websocket``): the callbacks, their arguments, the positional order of
``WebSocketApp()``, ``run_forever()``'s keywords, ``ABNF`` and
``enableTrace()`` work the same way; a keyword syncws can't honour raises at
the call and says what to use. Underneath it is ``connect()`` and ``for
message in connection``: the same connection object, timeouts and close
codes as the rest of syncws.

Threads. ``run_forever()`` blocks its thread and runs every callback there,
in order: ``on_open``, ``on_message``, ``on_ping`` and ``on_pong`` (pings are
answered automatically before they are reported; the connection queues them
with the messages, ``queue_control_frames()``, and reports all three in wire
order), ``on_error``, ``on_close``.
None runs on syncws's background thread, so a callback that blocks delays
only this app. ``send()`` and ``close()`` may be called from any thread,
callbacks included.
"""

from __future__ import annotations

import logging
import socket as socket_module
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._wsblocking import (
    WebSocket,
    WebSocketAddressException,
    WebSocketBadStatusException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketPayloadException,
    WebSocketProtocolException,
    WebSocketProxyException,
    WebSocketTimeoutException,
    create_connection,
    getdefaulttimeout,
    setdefaulttimeout,
)
from ._wsclient import ABNF, connect_options, enableTrace
from ._wsdispatch import DispatcherBridge
from .exceptions import ConnectionClosed, ConnectionClosedOK, InvalidState
from .protocol.connection import State
from .protocol.events import Ping, Pong
from .threaded.backoff import Backoff, retryable
from .threaded.client import ClientConnection, connect

__all__ = [
    "ABNF",
    "WebSocket",
    "WebSocketAddressException",
    "WebSocketApp",
    "WebSocketBadStatusException",
    "WebSocketConnectionClosedException",
    "WebSocketException",
    "WebSocketPayloadException",
    "WebSocketProtocolException",
    "WebSocketProxyException",
    "WebSocketTimeoutException",
    "create_connection",
    "enableTrace",
    "getdefaulttimeout",
    "setdefaulttimeout",
]

logger = logging.getLogger("syncws")

#: websocket-client's opcode numbers for ``send(data, opcode)``.
OPCODE_TEXT = ABNF.OPCODE_TEXT
OPCODE_BINARY = ABNF.OPCODE_BINARY

Header = Sequence[str] | Mapping[str, str]


class WebSocketApp:
    """Connect to ``url`` and run callbacks on what happens, like websocket-client's.

    Callbacks take the app first: ``on_open(app)``, ``on_reconnect(app)``
    (instead of ``on_open`` when ``run_forever(reconnect=...)`` connected
    again), ``on_message(app, message)`` (``str`` for text, ``bytes`` for
    binary), ``on_data(app, message, opcode, True)`` (just before
    ``on_message``), ``on_error(app, exception)``, ``on_close(app,
    close_status_code, close_msg)`` (both ``None`` when no close frame with a
    code came), ``on_ping(app, data)``, ``on_pong(app, data)``. ``header`` is
    a list of ``"Name: value"`` strings, a mapping, or a callable returning
    either (called at each connection). ``cookie`` is sent as the ``Cookie``
    header; ``socket`` is a connected socket to use instead of connecting.
    An exception raised by a callback goes to ``on_error``.

    The arguments come in websocket-client's order, so positional calls port
    as they are. ``keep_running`` is ignored (as upstream); ``on_cont_message``
    and ``get_mask_key`` aren't supported and raise ``ValueError``.
    """

    def __init__(  # noqa: PLR0917 - positional, as in websocket-client
        self,
        url: str,
        header: Header | Callable[[], Header] | None = None,
        on_open: Callable[[WebSocketApp], object] | None = None,
        on_reconnect: Callable[[WebSocketApp], object] | None = None,
        on_message: Callable[[WebSocketApp, str | bytes], object] | None = None,
        on_error: Callable[[WebSocketApp, BaseException], object] | None = None,
        on_close: Callable[[WebSocketApp, int | None, str | None], object] | None = None,
        on_ping: Callable[[WebSocketApp, bytes], object] | None = None,
        on_pong: Callable[[WebSocketApp, bytes], object] | None = None,
        on_cont_message: Callable[..., object] | None = None,
        keep_running: bool = True,
        get_mask_key: Callable[[int], bytes] | None = None,
        cookie: str | None = None,
        subprotocols: Sequence[str] | None = None,
        on_data: Callable[[WebSocketApp, str | bytes, int, bool], object] | None = None,
        socket: socket_module.socket | None = None,
    ) -> None:
        if on_cont_message is not None:
            raise ValueError(
                "on_cont_message isn't supported: on_message gets whole messages; for "
                "fragments as they arrive use syncws.connect() and recv_streaming()"
            )
        if get_mask_key is not None:
            raise ValueError("get_mask_key isn't supported: masks always come from os.urandom()")
        del keep_running  # obsolete in websocket-client too
        self.url = url
        self.header = header
        self.cookie = cookie
        self.on_open = on_open
        self.on_reconnect = on_reconnect
        self.on_message = on_message
        self.on_data = on_data
        self.on_error = on_error
        self.on_close = on_close
        self.on_ping = on_ping
        self.on_pong = on_pong
        self.subprotocols = subprotocols
        self.socket = socket
        #: The current connection, while there is one.
        self.sock: ClientConnection | None = None
        #: True while ``run_forever()`` runs and wasn't asked to stop.
        self.keep_running = False
        #: True once ``run_forever()`` saw an error (what it returns), as in websocket-client.
        self.has_errored = False
        self._stop = threading.Event()
        # How the loop runs a callback: at once, or posted to a dispatcher's thread.
        self._emit: Callable[..., None] = self._callback
        #: With ``run_forever(dispatcher=...)``: the thread that runs the app's loop.
        self.dispatcher_thread: threading.Thread | None = None

    # -- from any thread -------------------------------------------------------------

    def send(self, data: str | bytes, opcode: int | None = None) -> None:
        """Send a message: text for ``str`` (or ``opcode=0x1``), binary for bytes (``0x2``).

        Without ``opcode``, the type decides (websocket-client sends text by default).
        """
        if opcode not in (None, OPCODE_TEXT, OPCODE_BINARY):
            raise ValueError(
                f"send() takes ABNF.OPCODE_TEXT or OPCODE_BINARY, not {opcode!r}: "
                "use app.sock.ping(), pong() or close() for control frames"
            )
        connection = self._connection()
        text = None if opcode is None else opcode == OPCODE_TEXT
        connection.send(data, text=text)

    def send_text(self, text: str) -> None:
        self._connection().send(text)

    def send_bytes(self, data: bytes) -> None:
        self._connection().send(data, text=False)

    def close(
        self, status: int = 1000, reason: str | bytes = "", timeout: float | None = None
    ) -> None:
        """Close the connection and make ``run_forever()`` return (no reconnecting).

        ``reason`` may be ``str`` or UTF-8 ``bytes`` (websocket-client's type),
        at most 123 bytes; a bad one raises ``ValueError`` here and changes
        nothing. ``timeout`` is accepted for websocket-client's sake and
        ignored: ``close_timeout`` bounds the closing handshake.
        """
        del timeout
        text = _close_reason(reason)
        self.keep_running = False
        self._stop.set()
        connection = self.sock
        if connection is not None:
            connection.close(status, text)

    def ready(self) -> bool:
        """True while connected (between ``on_open`` and ``on_close``)."""
        connection = self.sock
        return connection is not None and connection.state is State.OPEN

    # -- the loop --------------------------------------------------------------------

    def run_forever(
        self,
        *,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        reconnect: float | None = None,
        dispatcher: Any = None,
        **options: Any,
    ) -> bool:
        """Connect, call the callbacks until the connection ends; return True after an error.

        ``ping_interval``/``ping_timeout`` turn on keepalive (off by default, as
        in websocket-client; 0 means off). ``reconnect=SECONDS`` reconnects
        after a drop or a failed attempt, waiting that delay first, then
        longer (exponential backoff with jitter, never below the delay) up
        to 30 s (started over once a connection lived 30 s); errors that
        retrying can't fix (a 4xx other than 429, a bad URI) end the
        loop. ``close()`` or Ctrl-C ends it; after Ctrl-C it returns False, as
        websocket-client does.

        Other options go to ``connect()`` (``ssl``, ``proxy``, ``origin``,
        ``open_timeout``...). websocket-client's ``sslopt``,
        ``http_proxy_host``/``port``/``auth``, ``proxy_type`` and
        ``suppress_origin`` are translated; a keyword that can't be honoured
        (``ping_payload``, ``sockopt``...) raises ``ValueError`` here, an
        unknown one ``TypeError``.

        ``dispatcher=rel`` (an event loop with ``read()``, ``signal()`` and
        ``abort()``, as in websocket-client) returns False at once: the app
        runs on a thread of its own and its callbacks run in the thread of
        ``rel.dispatch()``, in order (``_wsdispatch.py``); Ctrl-C stops the
        event loop, and the connection is closed when the program exits.
        """
        connect_kwargs = connect_options(options)
        if self.socket is not None:
            connect_kwargs.setdefault("sock", self.socket)
        ping_interval = ping_interval or None  # websocket-client's 0 means off
        ping_timeout = ping_timeout or None
        reconnect = reconnect or None
        if self.keep_running:
            raise RuntimeError("run_forever() is already running")
        self.keep_running = True
        self.has_errored = False
        self._stop.clear()
        if dispatcher is None:
            self._emit = self._callback
            return self._loop(ping_interval, ping_timeout, reconnect, connect_kwargs)
        try:
            bridge = DispatcherBridge(dispatcher, self._run_posted, self.close)
        except BaseException:
            self.keep_running = False
            raise
        self._emit = bridge.post
        bridge.start(lambda: self._loop(ping_interval, ping_timeout, reconnect, connect_kwargs))
        self.dispatcher_thread = bridge.thread
        return False

    def _loop(
        self,
        ping_interval: float | None,
        ping_timeout: float | None,
        reconnect: float | None,
        connect_kwargs: dict[str, Any],
    ) -> bool:
        """Connect, report, reconnect: the body of ``run_forever()``."""
        backoff = Backoff(initial_delay=reconnect or 0.0, max_delay=max(30.0, reconnect or 0.0))
        opened = False
        try:
            while self.keep_running:
                connected, error = self._run_once(
                    ping_interval, ping_timeout, connect_kwargs, backoff, reconnecting=opened
                )
                opened |= connected
                self.has_errored |= error is not None
                if reconnect is None or not self.keep_running:
                    break
                if not connected and error is not None and not retryable(error):
                    break  # connecting again would fail the same way
                # websocket-client waits exactly `reconnect`: never less (jitter only adds).
                delay = max(reconnect, backoff.next_delay())
                logger.info("WebSocketApp: reconnecting to %s in %.1fs", self.url, delay)
                if self._stop.wait(delay):
                    break
        except KeyboardInterrupt:
            if self.sock is not None:
                self.sock.close()
            return False
        finally:
            self.keep_running = False
            self.sock = None
        return self.has_errored

    def _run_once(
        self,
        ping_interval: float | None,
        ping_timeout: float | None,
        connect_kwargs: dict[str, Any],
        backoff: Backoff,
        *,
        reconnecting: bool,
    ) -> tuple[bool, BaseException | None]:
        """One connection, from connecting to on_close: did it open, and what error ended it."""
        # Pings may come right after the handshake: report them from the start.
        connection_class = type("WebSocketAppConnection", (_ReportingConnection,), {"app": self})
        try:
            connection = connect(
                self.url,
                create_connection=connection_class,
                additional_headers=_headers(self.header, self.cookie),
                subprotocols=self.subprotocols,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                **connect_kwargs,
            )
        except Exception as exc:
            self._emit(self.on_error, exc)
            return False, exc
        self.sock = connection
        backoff.connected()
        if self._stop.is_set():  # close() came during the handshake
            connection.close()
        error: BaseException | None = None
        if reconnecting and self.on_reconnect is not None:
            self._emit(self.on_reconnect)
        else:
            self._emit(self.on_open)
        try:
            while True:
                try:
                    event = connection.next_event()
                except ConnectionClosedOK:
                    break
                if isinstance(event, Ping):
                    self._emit(self.on_ping, event.data)
                elif isinstance(event, Pong):
                    self._emit(self.on_pong, event.data)
                else:
                    if self.on_data is not None:
                        opcode = OPCODE_TEXT if isinstance(event, str) else OPCODE_BINARY
                        self._emit(self.on_data, event, opcode, True)
                    self._emit(self.on_message, event)
        except ConnectionClosed as exc:
            if _is_error(exc) and not self._stop.is_set():
                error = exc
                self._emit(self.on_error, exc)
        finally:
            connection.close()
            self._emit(self.on_close, *_close_args(connection))
        return True, error

    # -- internals ---------------------------------------------------------------------

    def _connection(self) -> ClientConnection:
        connection = self.sock
        if connection is None:
            raise InvalidState("not connected: send() works between on_open and on_close")
        return connection

    def _run_posted(self, callback: Callable[..., object] | None, args: tuple[Any, ...]) -> None:
        self._callback(callback, *args)

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
    """A client connection that queues pings and pongs for its app's loop."""

    app: WebSocketApp

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_control_frames()

    @property
    def connected(self) -> bool:
        """websocket-client's ``ws.sock.connected``: True while the connection is open."""
        return self.state is State.OPEN


def _is_error(exc: ConnectionClosed) -> bool:
    """Whether a closed connection is ``on_error``'s business, as in websocket-client.

    A close frame from the peer, whatever its code, is only ``on_close``'s: the
    peer ended the connection on purpose. A dropped connection (no close frame)
    or one we failed (our close frame first: a protocol error, a message too
    big, no pong) is an error. The app's own ``close()`` never is.
    """
    if isinstance(exc, ConnectionClosedOK) or exc.received_code is None:
        return not isinstance(exc, ConnectionClosedOK)
    return exc.rcvd_then_sent is False


def _close_args(connection: ClientConnection) -> tuple[int | None, str | None]:
    """``on_close``'s arguments: the peer's close code and reason, as websocket-client gives them.

    ``(None, None)`` when no close frame came (1006) or it had no code (1005).
    """
    code = connection.close_code
    if code is None or code in (1005, 1006):
        return None, None
    return code, connection.close_reason


def _close_reason(reason: str | bytes) -> str:
    """``close()``'s reason as text: websocket-client passes UTF-8 bytes."""
    if isinstance(reason, bytes | bytearray | memoryview):
        try:
            text = bytes(reason).decode()
        except UnicodeDecodeError:
            raise ValueError(f"the close reason must be UTF-8, not {bytes(reason)!r}") from None
    elif isinstance(reason, str):
        text = reason
    else:
        raise TypeError(f"the close reason is str or bytes, not {type(reason).__name__}")
    if len(text.encode()) > 123:
        raise ValueError("the close reason must fit in 123 bytes of UTF-8")
    return text


def _headers(
    header: Header | Callable[[], Header] | None, cookie: str | None = None
) -> list[tuple[str, str]]:
    if callable(header):
        header = header()  # websocket-client calls it at each connection
    extra = [("Cookie", cookie)] if cookie else []
    if header is None:
        return extra
    if isinstance(header, Mapping):
        return list(header.items()) + extra
    pairs = []
    for line in header:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"headers are 'Name: value', not {line!r}")
        pairs.append((name.strip(), value.strip()))
    return pairs + extra
