"""websocket-client's blocking API: ``create_connection()``, ``WebSocket`` and its exceptions.

A program written as ``ws = websocket.create_connection(url)``, then
``ws.send()``/``ws.recv()`` and ``ws.close()``, runs with ``from syncws import
callbacks as websocket``. ``WebSocket`` wraps a ``ClientConnection``
(``.connection``, once connected) and translates what differs: one
timeout for the whole object (``settimeout()``), ``recv()`` returning ``""``
once when the server's close frame arrives (websocket-client's signal for
"closed"; then ``WebSocketConnectionClosedException``), ``recv_data()``'s
``(opcode, bytes)`` pairs, and the exceptions under websocket-client's names.

Threads: as in websocket-client with ``enable_multithread=True`` (its
default), ``send*()``, ``ping()``, ``pong()`` and ``close()`` may be called
from any thread; ``recv*()`` from one thread at a time. Pings are answered
by syncws's background thread even while nobody calls ``recv()``. No lock
of its own: the connection's.
"""

from __future__ import annotations

import socket as socket_module
from collections.abc import Iterator
from typing import Any

from ._wsclient import ABNF, connect_options
from .exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidPayload,
    InvalidStatus,
    InvalidURI,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
)
from .protocol.connection import State
from .protocol.events import Ping
from .threaded.client import ClientConnection, connect

__all__ = [
    "WebSocket",
    "WebSocketAddressException",
    "WebSocketBadStatusException",
    "WebSocketConnectionClosedException",
    "WebSocketException",
    "WebSocketPayloadException",
    "WebSocketProtocolException",
    "WebSocketProxyException",
    "WebSocketTimeoutException",
    "create_connection",
    "getdefaulttimeout",
    "setdefaulttimeout",
]


class WebSocketException(Exception):
    """websocket-client's base exception; the syncws exception, if any, is ``__cause__``."""


class WebSocketProtocolException(WebSocketException):
    """The peer broke the protocol (the connection closed with 1002)."""


class WebSocketPayloadException(WebSocketException):
    """A bad payload: invalid UTF-8 (1007) or a message over ``max_size`` (1009)."""


class WebSocketConnectionClosedException(WebSocketException):
    """The connection is closed: nothing more to send or receive."""


class WebSocketTimeoutException(WebSocketException, TimeoutError):
    """The timeout (``settimeout()``, ``timeout=``) passed; the connection stays usable."""


class WebSocketProxyException(WebSocketException):
    """The proxy refused the tunnel or failed."""


class WebSocketAddressException(WebSocketException):
    """The host name could not be resolved."""


class WebSocketBadStatusException(WebSocketException):
    """The server answered the upgrade with another status than 101.

    ``status_code``, ``resp_headers`` (a dict with lower-case names) and
    ``resp_body`` as in websocket-client; ``response`` is syncws's ``Response``.
    """

    def __init__(self, exc: InvalidStatus) -> None:
        response = exc.response
        super().__init__(f"Handshake status {response.status} {response.reason}")
        self.status_code = response.status
        self.resp_headers = {name.lower(): value for name, value in response.headers.items()}
        self.resp_body = response.body
        self.response = response


_default_timeout: list[float | None] = [None]


def setdefaulttimeout(timeout: float | None) -> None:
    """The timeout of new ``WebSocket`` objects (None: block). Any thread."""
    _default_timeout[0] = timeout


def getdefaulttimeout() -> float | None:
    """The timeout new ``WebSocket`` objects get. Any thread."""
    return _default_timeout[0]


def _translate(exc: BaseException) -> BaseException:
    """websocket-client's exception for a syncws one (returned; the caller raises it)."""
    if isinstance(exc, WebSocketException):
        return exc
    if isinstance(exc, ConnectionClosed):
        # Whoever closed first says why: us (a protocol error, too big) or the peer.
        ours_first = exc.rcvd_then_sent is False or exc.received_code is None
        code = exc.sent_code if ours_first else exc.received_code
        if code == 1002:
            return WebSocketProtocolException(str(exc))
        if code in (1007, 1009):
            return WebSocketPayloadException(str(exc))
        return WebSocketConnectionClosedException(
            "Connection to remote host was lost." if exc.received_code is None else str(exc)
        )
    if isinstance(exc, InvalidStatus):
        return WebSocketBadStatusException(exc)
    if isinstance(exc, ProxyError):
        return WebSocketProxyException(str(exc))
    if isinstance(exc, InvalidPayload | PayloadTooBig):
        return WebSocketPayloadException(str(exc))
    if isinstance(exc, ProtocolError | InvalidHandshake):
        return WebSocketProtocolException(str(exc))
    if isinstance(exc, InvalidURI):
        return ValueError(str(exc))
    if isinstance(exc, socket_module.gaierror):
        return WebSocketAddressException(str(exc))
    if isinstance(exc, TimeoutError):
        return WebSocketTimeoutException(str(exc) or "timed out")
    return exc


class WebSocket:
    """websocket-client's ``WebSocket``: ``connect(url)``, then send and receive.

    ``WebSocket(sslopt=..., sockopt=..., enable_multithread=True, ...)``
    takes websocket-client's arguments; ``fire_cont_frame`` and
    ``get_mask_key`` aren't supported (``ValueError``): messages come whole,
    masks from ``os.urandom()``. Iterating yields messages until the server
    closes normally.
    """

    def __init__(  # noqa: PLR0917 - positional, as in websocket-client
        self,
        get_mask_key: Any = None,
        sockopt: Any = None,
        sslopt: Any = None,
        fire_cont_frame: bool = False,
        enable_multithread: bool = True,
        skip_utf8_validation: bool = False,
        **options: Any,
    ) -> None:
        if get_mask_key is not None:
            raise ValueError("get_mask_key isn't supported: masks always come from os.urandom()")
        if fire_cont_frame:
            raise ValueError(
                "fire_cont_frame isn't supported: recv() returns whole messages; use "
                "syncws.connect() and recv_streaming() for fragments"
            )
        del enable_multithread  # always safe from several threads
        self._options = dict(options, sockopt=sockopt, sslopt=sslopt)
        self._options["skip_utf8_validation"] = skip_utf8_validation
        #: The syncws ``ClientConnection`` underneath, once connected.
        self.connection: ClientConnection | None = None
        self._timeout = getdefaulttimeout()
        self._close_reported = False

    # -- opening -----------------------------------------------------------------------

    def connect(self, url: str, **options: Any) -> None:
        """Open the connection to ``url``: websocket-client's options (``header``,
        ``cookie``, ``origin``, ``subprotocols``, ``sslopt``, ``http_proxy_host``...,
        ``timeout``) and syncws's ``connect()`` ones. Calling thread only."""
        from .callbacks import _headers  # noqa: PLC0415 - callbacks imports this module

        options = self._options | options
        timeout = options.pop("timeout", self._timeout)
        header = options.pop("header", None)
        cookie = options.pop("cookie", None)
        subprotocols = options.pop("subprotocols", None)
        sock = options.pop("socket", None)
        for ignored in ("class_", "enable_multithread", "redirect_limit"):
            if ignored == "redirect_limit" and ignored in options:
                options["max_redirects"] = options.pop(ignored)
            options.pop(ignored, None)
        kwargs = connect_options(options)
        if sock is not None:
            kwargs["sock"] = sock
        kwargs.setdefault("open_timeout", timeout)
        kwargs.setdefault("ping_interval", None)  # websocket-client sends no pings of its own
        kwargs.setdefault("max_size", None)  # nor limits message sizes
        self._timeout = timeout
        try:
            connection = connect(
                url,
                additional_headers=_headers(header, cookie),
                subprotocols=subprotocols,
                create_connection=_QueueingConnection,
                **kwargs,
            )
        except Exception as exc:
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        self.connection = connection
        self._close_reported = False

    # -- properties --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the connection is open. Any thread."""
        return self.connection is not None and self.connection.state is State.OPEN

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose, or None. Any thread."""
        return None if self.connection is None else self.connection.subprotocol

    def getsubprotocol(self) -> str | None:
        """``subprotocol``. Any thread."""
        return self.subprotocol

    @property
    def status(self) -> int | None:
        """The handshake's HTTP status (101), or None before it. Any thread."""
        response = None if self.connection is None else self.connection.response
        return None if response is None else response.status

    def getstatus(self) -> int | None:
        """``status``. Any thread."""
        return self.status

    @property
    def headers(self) -> dict[str, str] | None:
        """The handshake response's headers, names in lower case. Any thread."""
        response = None if self.connection is None else self.connection.response
        if response is None:
            return None
        return {name.lower(): value for name, value in response.headers.items()}

    def getheaders(self) -> dict[str, str] | None:
        """``headers``. Any thread."""
        return self.headers

    def settimeout(self, timeout: float | None) -> None:
        """The timeout of ``recv*()`` and ``send*()`` from now on (None: block). Any thread."""
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        """The current timeout. Any thread."""
        return self._timeout

    timeout = property(gettimeout, settimeout)

    def fileno(self) -> int:
        """The socket's descriptor. Any thread."""
        return self._connection().socket.fileno()

    def is_ssl(self) -> bool:
        """True over TLS. Any thread."""
        return hasattr(self._connection().socket, "getpeercert")

    # -- sending -----------------------------------------------------------------------

    def send(self, payload: str | bytes, opcode: int = ABNF.OPCODE_TEXT) -> int:
        """Send a message, as text by default (``bytes`` too: they must be UTF-8), or with
        ``opcode=ABNF.OPCODE_BINARY`` as binary; ping and pong opcodes work too. Return the
        payload's length. Any thread."""
        if opcode == ABNF.OPCODE_PING:
            self.ping(payload)
        elif opcode == ABNF.OPCODE_PONG:
            self.pong(payload)
        elif opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY):
            text = opcode == ABNF.OPCODE_TEXT
            self._call(lambda c: c.send(payload, text=text, timeout=self._timeout))
        else:
            raise ValueError(f"send() takes a text, binary, ping or pong opcode, not {opcode!r}")
        return len(payload)

    def send_text(self, text_data: str) -> int:
        """Send a text message. Any thread."""
        return self.send(text_data, ABNF.OPCODE_TEXT)

    def send_bytes(self, data: bytes) -> int:
        """Send a binary message. Any thread."""
        return self.send(data, ABNF.OPCODE_BINARY)

    send_binary = send_bytes

    def ping(self, payload: str | bytes = "") -> None:
        """Send a ping (the pong is answered in the background; ``recv()`` skips it). Any
        thread."""
        self._call(lambda c: c.ping(payload or None))  # None: a random payload, never a clash

    def pong(self, payload: str | bytes = "") -> None:
        """Send an unsolicited pong. Any thread."""
        self._call(lambda c: c.pong(payload))

    # -- receiving ---------------------------------------------------------------------

    def recv(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary. ``""`` once when the
        server's close frame came (as websocket-client), then
        ``WebSocketConnectionClosedException``. One thread at a time."""
        opcode, data = self.recv_data()
        if opcode == ABNF.OPCODE_TEXT:
            return data.decode()
        if opcode == ABNF.OPCODE_BINARY:
            return data
        return ""

    def recv_data(self, control_frame: bool = False) -> tuple[int, bytes]:
        """``(opcode, data)`` of the next message; with ``control_frame=True`` pings and
        pongs too (already answered). ``(OPCODE_CLOSE, payload)`` once when the server's
        close frame came (its code and reason, as sent). One thread at a time."""
        connection = self._connection()
        while True:
            try:
                event = connection.next_event(self._timeout)
            except ConnectionClosed as exc:
                code = exc.received_code
                if code is not None and not self._close_reported:
                    self._close_reported = True
                    payload = b"" if code == 1005 else code.to_bytes(2, "big")
                    return ABNF.OPCODE_CLOSE, payload + (exc.received_reason or "").encode()
                raise _translate(exc) from exc
            except TimeoutError as exc:
                raise _translate(exc) from exc
            if isinstance(event, str):
                return ABNF.OPCODE_TEXT, event.encode()
            if isinstance(event, bytes):
                return ABNF.OPCODE_BINARY, event
            if control_frame:
                opcode = ABNF.OPCODE_PING if isinstance(event, Ping) else ABNF.OPCODE_PONG
                return opcode, event.data

    def __iter__(self) -> Iterator[str | bytes]:
        """Messages until the server closes normally. One thread at a time."""
        while True:
            try:
                message = self.recv()
            except WebSocketConnectionClosedException:
                if self._close_reported:
                    return  # the server closed normally, reported before
                raise
            if message == "" and self._close_reported:
                return
            yield message

    def __next__(self) -> str | bytes:
        return self.recv()

    # -- closing -----------------------------------------------------------------------

    def close(self, status: int = 1000, reason: bytes | str = b"", timeout: float = 3) -> None:
        """Close (waits up to ``close_timeout`` for the server's close frame). Any thread."""
        from .callbacks import _close_reason  # noqa: PLC0415 - callbacks imports this module

        del timeout  # close_timeout bounds it
        connection = self.connection
        if connection is not None:
            connection.close(status, _close_reason(reason))

    def send_close(self, status: int = 1000, reason: bytes | str = b"") -> None:
        """``close()`` (syncws always waits for the answer). Any thread."""
        self.close(status, reason)

    def abort(self) -> None:
        """Close the TCP connection at once, without a closing handshake; a ``recv()`` in
        another thread wakes up. Any thread."""
        connection = self.connection
        if connection is not None:
            connection._abort()

    shutdown = abort

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _connection(self) -> ClientConnection:
        connection = self.connection
        if connection is None:
            raise WebSocketConnectionClosedException("socket is already closed.")
        return connection

    def _call(self, action: Any) -> None:
        connection = self._connection()
        try:
            action(connection)
        except (ConnectionClosed, TimeoutError) as exc:
            raise _translate(exc) from exc


class _QueueingConnection(ClientConnection):
    """A client connection that queues pings and pongs (for ``recv_data(True)``)."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_control_frames()


def create_connection(url: str, timeout: float | None = None, **options: Any) -> WebSocket:
    """Connect to ``url`` and return a ``WebSocket``, as websocket-client's.

    ``timeout`` bounds the opening and then each ``recv()`` and ``send()``
    (``settimeout()`` changes it); ``class_=`` a ``WebSocket`` subclass. Other
    options as ``WebSocket.connect()``. Calling thread only.
    """
    class_ = options.pop("class_", WebSocket)
    names = ("sockopt", "sslopt", "fire_cont_frame", "enable_multithread", "skip_utf8_validation")
    init = {name: options.pop(name) for name in names if name in options}
    websocket: WebSocket = class_(**init)
    websocket.settimeout(timeout if timeout is not None else getdefaulttimeout())
    websocket.connect(url, **options)
    return websocket
