"""A WebSocket connection over a blocking API: ``send``, ``recv``, ``ping``, ``close``.

This module holds the public API; the machinery is in parts, one job each,
stacked as base classes (each declares the slots it owns and says what its
lock guards):

- ``transport.py``: the socket's state (one ``TransportState``) and the one close path;
- ``outbox.py``: bytes queued for the peer; the writer (``sendmsg`` or ``send``, TLS chunks, FIN);
- ``driver.py``: the one way to make the protocol send (``_drive``, ``_emit``); broadcasts;
- ``inbox.py``: received frames waiting for ``recv()``, at most ``max_queue`` messages;
- ``reader.py``: reading the socket, routing events, the hand-off to the reactor;
- ``keepalive.py``: pings, ``PendingPing``, keepalive; ``start_background()``;
- ``changed.py``: the condition variable on ``_lock``; ``logs.py``: logging helpers.

Threads. A connection owns no thread. The thread that calls ``recv()`` reads
the socket itself; while no thread is in ``recv()``, the process's reactor
thread (see ``reactor.py``) reads it, so pings are answered and a close is
processed while the application is busy elsewhere. Received messages wait in
a queue of at most ``max_queue`` messages; when it is full nobody reads, and
TCP pushes back on the peer.

Locks, outermost first: ``_send_mutex`` (one application sender at a time)
-> ``_write_lock`` (the writer: the outbox's front, ``_written_bytes``) ->
``_lock`` (the protocol and every other field; never held while waiting for
the network) -> the reactor's lock. A write blocked on a peer that doesn't
read holds only ``_write_lock``, so reading, pong replies, keepalive and
``close()`` go on. Nothing in this module runs on the reactor thread; close
callbacks run on the callbacks thread (``worker.py``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal, Self, overload

from ..exceptions import ConnectionClosed, ConnectionClosedOK
from ..protocol.close_codes import CloseCode
from ..protocol.connection import Protocol, State
from ..protocol.http11 import Request, Response
from .deadline import Deadline
from .driver import DEFAULT_WRITE_LIMIT, BytesLike, Data
from .inbox import convert, join
from .keepalive import Keepalive, PendingPing
from .logs import ConnectionId, ConnectionLogger, frames_logger
from .worker import worker

__all__ = ["DEFAULT_WRITE_LIMIT", "Connection", "PendingPing", "frames_logger"]

# What send() takes as one message (an iterable of them is a fragmented message).
_MESSAGE_TYPES = (str, *BytesLike)


class Connection(Keepalive):
    """An open WebSocket connection; see ``ServerConnection`` and ``ClientConnection``.

    Unless a method says otherwise, it may be called from any thread at any
    time. ``recv()``, ``recv_streaming()`` and iteration read messages and
    must be used by one thread at a time.
    """

    # Slots keep an idle connection small (a server holds thousands of them);
    # ``__dict__`` still lets subclasses and applications add attributes.
    # The parts (base classes) declare the rest.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "request",
        "response",
    )

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        *,
        max_queue: int | tuple[int, int] = 16,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float | None = 10.0,
        write_limit: int = DEFAULT_WRITE_LIMIT,
        logger: logging.Logger | None = None,
    ) -> None:
        """Wrap a connected non-blocking socket and a fresh ``Protocol``.

        Args:
            sock: the connected socket, non-blocking.
            protocol: the protocol object, in CONNECTING state.
            max_queue: received messages kept before reading stops (at least 1);
                or ``(high, low)``: reading stops at ``high`` and resumes at ``low``.
            ping_interval: seconds of silence before a keepalive ping; None: no keepalive.
            ping_timeout: seconds to wait for the keepalive pong; None: forever.
            close_timeout: seconds to wait for the closing handshake.
            write_limit: bytes waiting past which ``broadcast()`` skips this connection.
            logger: the logger to use instead of ``syncws``.

        Raises:
            ValueError: ``max_queue`` below 1, or ``write_limit`` negative.
        """
        high = max_queue[0] if isinstance(max_queue, tuple) else max_queue
        if high < 1:
            raise ValueError("max_queue must be at least 1")
        if write_limit < 0:
            raise ValueError("write_limit must not be negative")
        # A protocol error waits until the application has taken the messages
        # received before it (see _process_events): errors in stream order.
        protocol.defer_failures = True
        self._setup_transport(sock, protocol, close_timeout, logger)
        self._setup_outbox()
        self._setup_driver(write_limit)
        self._setup_inbox(max_queue)
        self._setup_reader()
        self._setup_keepalive(ping_interval, ping_timeout)
        #: The opening handshake's request and response.
        self.request: Request | None = None
        self.response: Response | None = None
        # ``id``, ``remote_address`` and ``local_address`` are made on first
        # use (transport.py): opening a connection spends no system call on them.

    # -- properties --------------------------------------------------------------

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """The connection's logger: ``syncws`` (or the one given), records prefixed with the id."""
        # Made on each use, not kept: thousands of idle connections would
        # each hold one, and logging is rare on a connection.
        return ConnectionLogger(self._base_logger, ConnectionId(self))

    @property
    def state(self) -> State:
        """CONNECTING, OPEN, CLOSING or CLOSED."""
        return self.protocol.state

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed in the handshake, or None."""
        return self.protocol.subprotocol

    @property
    def close_code(self) -> int | None:
        """The close code (RFC 6455 7.1.5) once the peer's close frame or EOF arrived, else None."""
        return self.protocol.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason, once ``close_code`` is known; else None."""
        return self.protocol.close_reason if self.protocol.close_code is not None else None

    @property
    def closed_by_us(self) -> bool | None:
        """Once closed: True if we started the closing handshake, False if the peer did.

        None while open, and when no close frame was sent (the connection dropped).
        """
        if self.protocol.close_code is None:
            return None
        return self.protocol.close_sent_first

    @property
    def buffered_amount(self) -> int:
        """Bytes queued for the peer and not yet handed to the kernel."""
        return self._backlog() + self._deferred_bytes

    def add_close_callback(self, callback: Callable[[Connection], None]) -> None:
        """Call ``callback(connection)`` once the connection is closed.

        It runs in syncws's callbacks thread (one per process, shared by every
        connection's close callbacks, never the background I/O thread), one
        callback after the other: a callback that blocks delays the others,
        not I/O. Exceptions are logged. Added after the close, it runs soon
        all the same.

        Args:
            callback: called with the connection, in the callbacks thread.
        """
        with self._lock:
            if not self._is_closed():
                self._close_callbacks.append(callback)
                return
        worker.call_soon(functools.partial(callback, self))

    # -- sending -----------------------------------------------------------------

    def send(
        self,
        message: Data | bytearray | memoryview | Iterable[Data | bytearray | memoryview],
        *,
        text: bool | None = None,
        timeout: float | None = None,
    ) -> None:
        """Send a message: ``str`` as text, bytes-like as binary, an iterable as fragments.

        ``text=True`` sends bytes (already UTF-8) as a text message,
        ``text=False`` sends a ``str`` as binary. Concurrent senders never
        interleave their messages. Returns once the message is written to the
        socket.

        Args:
            message: the message, or an iterable of its fragments (all str or all bytes).
            text: send as text (True) or binary (False); None: by the type.
            timeout: seconds to wait for the write; the message stays queued and
                is written when the peer reads again. For an iterable it bounds
                the whole message: a timeout after the first fragment left fails
                the connection with 1011, since a message can't be taken back
                halfway and nothing else may be sent before it ends.

        Raises:
            TimeoutError: the write didn't finish within ``timeout``.
            ConnectionClosed: the connection is closing or closed.
            InvalidState: the opening handshake has not completed.
            TypeError: ``message`` is neither str, bytes-like nor an iterable of them.
        """
        deadline = Deadline(timeout)
        if isinstance(message, _MESSAGE_TYPES):
            self._take_send_mutex(deadline)  # no context manager on the common path
            try:
                self._send_frame(message, text, first=True, fin=True)
            finally:
                self._send_mutex.release()
        elif isinstance(message, Mapping):
            raise TypeError("send() takes str, bytes or an iterable of them, not a mapping")
        elif isinstance(message, Iterable):
            with self._acquire_send_mutex(deadline):
                self._send_fragments(iter(message), text, deadline)
        else:
            raise TypeError(f"send() takes str, bytes or an iterable, not {type(message).__name__}")
        self._flush(deadline)

    def ping(self, data: Data | None = None) -> PendingPing:
        """Send a ping; ``wait()`` on the result for the pong (False on a timeout).

        Args:
            data: the payload, at most 125 bytes; None: 4 random bytes.

        Raises:
            ConcurrencyError: a ping with the same data is still waiting.
            ConnectionClosed: the connection is closing or closed.
            InvalidState: the opening handshake has not completed.
        """
        if data is None:
            payload = os.urandom(4)
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
        return self._drive(functools.partial(self._send_ping, payload))

    def pong(self, data: Data = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat). Pings are answered automatically.

        Args:
            data: the payload, at most 125 bytes.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            InvalidState: the opening handshake has not completed.
        """
        payload = data.encode() if isinstance(data, str) else data
        self._drive(functools.partial(self.protocol.send_pong, bytes(payload)))

    # -- receiving ---------------------------------------------------------------

    @overload
    def recv(self, timeout: float | None, decode: Literal[True]) -> str: ...
    @overload
    def recv(self, timeout: float | None = None, *, decode: Literal[True]) -> str: ...
    @overload
    def recv(self, timeout: float | None, decode: Literal[False]) -> bytes: ...
    @overload
    def recv(self, timeout: float | None = None, *, decode: Literal[False]) -> bytes: ...
    @overload
    def recv(self, timeout: float | None = None, decode: None = None) -> Data: ...

    def recv(self, timeout: float | None = None, decode: bool | None = None) -> Data:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        Messages received before a close are returned first. One thread at a
        time.

        Args:
            timeout: seconds to block (None: no limit, 0: don't block); on
                timeout the connection stays usable, with nothing lost.
            decode: False returns text as UTF-8 bytes, True decodes binary as
                UTF-8, None returns each as it came.

        Raises:
            TimeoutError: no message within ``timeout``.
            ConnectionClosedOK: the connection closed normally.
            ConnectionClosedError: the connection closed with an error.
            ConcurrencyError: another thread is in ``recv()`` or ``recv_streaming()``.
        """
        self._start_reading()
        try:
            frames = self._take_message(Deadline(timeout))
        finally:
            self._stop_reading()
        return join(frames, decode)

    @overload
    def recv_streaming(self, decode: Literal[True]) -> Iterator[str]: ...
    @overload
    def recv_streaming(self, decode: Literal[False]) -> Iterator[bytes]: ...
    @overload
    def recv_streaming(self, decode: None = None) -> Iterator[Data]: ...

    def recv_streaming(self, decode: bool | None = None) -> Iterator[Data]:
        """Yield the frames of the next message as they arrive.

        Same rules as ``recv()``; the iterator must be consumed to the end
        before the next ``recv()``.

        Args:
            decode: as for ``recv()``.

        Raises:
            ConnectionClosedOK: the connection closed normally.
            ConnectionClosedError: the connection closed with an error.
            ConcurrencyError: another thread is in ``recv()`` or ``recv_streaming()``.
        """
        with self._reading():
            first = True
            while True:
                frame = self._take_frame(Deadline(None))
                # An iterable sent by send() ends with an empty final frame:
                # it adds nothing to what was yielded, so it isn't yielded.
                if frame.final and not first and not frame.data:
                    return
                yield convert(frame, decode)
                if frame.final:
                    return
                first = False

    def __iter__(self) -> Iterator[Data]:
        """Yield messages until the connection closes; a normal close ends the loop.

        Raises:
            ConnectionClosedError: the connection closed with an error.
        """
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    # -- closing -------------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake and close the TCP connection.

        Wait at most ``close_timeout`` for the peer, then close anyway.
        Idempotent; callable from any thread, also while another thread is
        blocked in ``recv()`` (which then raises ``ConnectionClosed``).

        Args:
            code: the close code to send (1000 by default).
            reason: the close reason, at most 123 bytes in UTF-8.

        Raises:
            ValueError: ``code`` can't be sent or ``reason`` is too long.
        """
        deadline = Deadline(self.close_timeout)
        self._drive(
            functools.partial(self._begin_close, code, reason), check_open=False, write=False
        )
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            self._flush(deadline)
        with self._lock:
            if not self._changed.wait_for(self._is_closed, deadline.remaining()):
                self.logger.debug("closing handshake timed out: closing TCP")
                self._close_socket()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the connection is closed; False if ``timeout`` passed first.

        Args:
            timeout: seconds to wait; None: no limit.
        """
        with self._changed:
            self._expect_from_reactor()
            return self._changed.wait_for(self._is_closed, timeout)

    def __repr__(self) -> str:
        remote = _format_address(self.remote_address)
        where = f" remote={remote}" if remote else ""
        return f"<{type(self).__name__} id={str(self.id)[:8]} {self.state.name}{where}>"

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None or issubclass(exc_type, (GeneratorExit, ConnectionClosed)):
            self.close()
        else:
            self.close(CloseCode.INTERNAL_ERROR)


def _format_address(address: Any) -> str:
    """``host:port`` (``[host]:port`` for IPv6), a Unix socket's path, or ``""``."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) if address else ""
