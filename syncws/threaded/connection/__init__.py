"""A WebSocket connection over a blocking API: ``send``, ``recv``, ``ping``, ``close``.

``Connection`` is the public face of ``ConnectionCore`` (core.py), which owns
the machinery: the connection lock, the transport state and the one close
path, the send choke point, event routing and the hand-off to the background
thread; its jobs are split by file (``reader.py`` reads, ``driver.py`` sends)
and it holds three leaf parts (``outbox.py``, ``inbox.py``, ``keepalive.py``)
that take no lock and never call back. This module adds the public methods
and the entry points other modules use (broadcast.py, wsgi, testing,
callbacks), each a few lines over the core.

Threads. A connection owns no thread. The thread that calls ``recv()`` reads
the socket itself; while no thread is in ``recv()``, the process's reactor
thread (see ``reactor.py``) reads it, so pings are answered and a close is
processed while the application is busy elsewhere. Received messages wait in
a queue of at most ``max_queue`` messages; when it is full nobody reads, and
TCP pushes back on the peer. A compressed message waits compressed: the
thread that takes it from the queue inflates it, so that the reactor, shared
by every connection, only frames. Nothing in this module runs on the reactor
thread; close callbacks run on the callbacks thread (``worker.py``).

Locks, outermost first (see core.py): ``_send_mutex`` -> ``_write_lock`` ->
``_lock`` -> the reactor's lock. ``send()`` takes the send mutex, then
``_lock`` once to hand the frame to the protocol and queue its bytes, then
writes under ``_write_lock`` after releasing the mutex. ``recv()`` holds
``_lock`` from start to end except while it waits in ``poll`` and while it
inflates a compressed message (the inbox stays ``busy`` meanwhile).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal, Self, overload

from ...exceptions import ConnectionClosed, ConnectionClosedOK
from ...protocol.close_codes import CloseCode
from ...protocol.connection import Protocol, State
from ...protocol.events import Deflated, Ping, Pong
from ...protocol.http11 import Request, Response
from ..deadline import Deadline
from ..options import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WRITE_LIMIT,
)
from ..runtime.worker import worker
from . import driver, reader
from .core import ConnectionCore
from .inbox import Data, convert, convert_data, join
from .keepalive import PendingPing
from .logs import frames_logger

__all__ = ["DEFAULT_WRITE_LIMIT", "Connection", "PendingPing", "frames_logger"]

# What send() takes as one message (an iterable of them is a fragmented message).
_MESSAGE_TYPES = (str, *driver.BytesLike)


class Connection(ConnectionCore):
    """An open WebSocket connection; see ``ServerConnection`` and ``ClientConnection``.

    Unless a method says otherwise, it may be called from any thread at any
    time. ``recv()``, ``recv_streaming()`` and iteration read messages and
    must be used by one thread at a time.
    """

    # Slots keep an idle connection small (a server holds thousands of them);
    # ``__dict__`` still lets subclasses and applications add attributes.
    # The core declares the rest.
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
        max_queue: int | tuple[int, int] = DEFAULT_MAX_QUEUE,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
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
        super().__init__(
            sock,
            protocol,
            max_queue=max_queue,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            write_limit=write_limit,
            logger=logger,
        )
        #: The opening handshake's request and response.
        self.request: Request | None = None
        self.response: Response | None = None
        # ``id``, ``remote_address`` and ``local_address`` are made on first
        # use (core.py): opening a connection spends no system call on them.

    # -- properties --------------------------------------------------------------

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
        return self._outbox.backlog() + self._deferred_bytes

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
                if self._close_callbacks is None:
                    self._close_callbacks = []
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
                the whole message, waiting for its pieces included. A message
                can't be taken back halfway, so a timeout after the first
                fragment left ends the connection: with 1011 if everything
                sent so far was written; else TCP is closed without a close
                frame (``close_code`` 1006) and the ``TimeoutError`` says so.

        Raises:
            TimeoutError: the write didn't finish within ``timeout``.
            ConnectionClosed: the connection is closing or closed.
            InvalidState: the opening handshake has not completed.
            TypeError: ``message`` is neither str, bytes-like nor an iterable of them.
        """
        deadline = Deadline(timeout)
        if (type(message) is str or type(message) is bytes) and driver.queue_whole(
            self, message, text
        ):
            driver.flush(self, deadline)  # framed and queued at once: the short road
            return
        if isinstance(message, _MESSAGE_TYPES):
            driver.take_send_mutex(self, deadline)
            try:
                self._drive(driver.frame_to_protocol, self, message, text, True, True, write=False)
            finally:
                self._send_mutex.release()
        elif isinstance(message, Mapping):
            raise TypeError("send() takes str, bytes or an iterable of them, not a mapping")
        elif isinstance(message, Iterable):
            driver.take_send_mutex(self, deadline)
            try:
                driver.send_fragments(self, iter(message), text, deadline)
            finally:
                self._send_mutex.release()
        else:
            raise TypeError(f"send() takes str, bytes or an iterable, not {type(message).__name__}")
        driver.flush(self, deadline)

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
        return self._drive(driver.send_ping, self, payload)

    def pong(self, data: Data = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat). Pings are answered automatically.

        Args:
            data: the payload, at most 125 bytes.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            InvalidState: the opening handshake has not completed.
        """
        payload = data.encode() if isinstance(data, str) else data
        self._drive(self.protocol.send_pong, bytes(payload))

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
        time. A compressed message waits compressed and is inflated here, in
        the calling thread.

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
        frames = None
        with self._lock:
            inbox = reader.start_reading(self)
            try:
                frames = inbox.take_message()
                if frames is None:
                    message = reader.read_until(self, reader.MESSAGE, Deadline(timeout))
                    if message is not None:
                        return message if decode is None else convert_data(message, decode)
                    frames = inbox.take_message()
                    assert frames is not None
            finally:
                # A compressed message keeps the inbox busy until it is inflated.
                inbox.busy = compressed = frames is not None and isinstance(frames[0], Deflated)
                self._resume_watch(later=True)
        if compressed:
            try:
                return join(reader.inflate(self, frames), decode)
            finally:
                with self._lock:
                    inbox.busy = False
        return join(frames, decode)  # type: ignore[arg-type]  # not compressed: no Deflated

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
        with self._lock:
            reader.start_reading(self)
        try:
            first = True
            while True:
                frame = reader.take_frame(self)
                # An iterable sent by send() ends with an empty final frame:
                # it adds nothing to what was yielded, so it isn't yielded.
                if frame.final and not first and not frame.data:
                    return
                yield convert(frame, decode)
                if frame.final:
                    return
                first = False
        finally:
            with self._lock:
                self._inbox.busy = False

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
        self._drive(driver.begin_close, self, code, reason, check_open=False, write=False)
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            driver.flush(self, deadline)
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

    # -- entry points for other modules of syncws -------------------------------------

    def start_closing(self, code: int, reason: str) -> None:
        """Send a close frame without waiting for the answer (any thread).

        For server and WSGI shutdown (``Server.shutdown()``, ``syncws.wsgi.shutdown_all()``).
        """
        self._drive(driver.start_closing, self, code, reason, check_open=False)

    def offer_broadcast(
        self,
        payload: bytes,
        text: bool,
        prepared: dict[Hashable, list[bytes]],
        overflow: int | None,
    ) -> bool | None:
        """Queue a broadcast message without ever blocking (for ``broadcast()``; any thread).

        Return True when queued, False when the backlog was full, None when
        the connection is closing or closed. ``prepared`` caches encoded
        messages by ``sharing_key()`` across the connections of one broadcast.
        ``overflow`` is the close code for a full backlog, or None to skip.
        The reactor writes the message: broadcasts queued meanwhile go out in
        the same syscall, and the caller never spends a syscall per connection.

        Raises:
            InvalidState: the opening handshake has not completed.
        """
        return driver.offer_broadcast(self, payload, text, prepared, overflow)

    def write_raw(self, data: bytes, timeout: float | None) -> None:
        """Write ``data`` as it is, bypassing the protocol (for ``syncws.testing``; any thread).

        Raises:
            TimeoutError: not written within ``timeout`` seconds.
            ConnectionClosed: the connection was lost.
        """
        self._drive(
            self._outbox.append, [bytes(data)], check_open=False, deadline=Deadline(timeout)
        )

    def receive_early_data(self, data: bytes) -> None:
        """Process bytes the peer sent right behind its handshake, read by someone else.

        For ``syncws.wsgi``: the WSGI server's buffer may hold the first
        frames. Called by the handler's thread before ``start_background()``.
        """
        with self._lock:
            self.protocol.receive_data(data)
            self._process_events()

    def close_after_failed_handshake(self) -> None:
        """Let the reactor drain what the peer still sends, and close once our answer is out.

        For ``ServerConnection._handshake``: closing at once with unread input
        could reset the error response away. Called by the handshake's thread.
        """
        with self._lock:
            self._reader_thread = False
            self._close_when_flushed()

    def queue_control_frames(self) -> None:
        """Queue pings and pongs received for ``next_event()`` (for ``syncws.callbacks``).

        They count towards ``max_queue`` like messages. Call it before
        ``start_background()``, from the thread that will call ``next_event()``.
        """
        with self._lock:
            self._inbox.keep_controls()

    def next_event(self, timeout: float | None = None) -> Data | Ping | Pong:
        """The next message, or ping or pong received (for ``syncws.callbacks``).

        Like ``recv()``; pings, pongs and messages come in the order they
        arrived (a ping received in the middle of a fragmented message comes
        before it). One thread at a time (the ``recv()`` rule).
        """
        frames = None
        with self._lock:
            inbox = reader.start_reading(self)
            try:
                event = inbox.take_control()
                if event is None and not inbox.messages:
                    reader.read_until(self, reader.EVENT, Deadline(timeout))
                    event = inbox.take_control()
                frames = None if event is not None else inbox.take_message()
            finally:
                # A compressed message keeps the inbox busy until it is inflated.
                inbox.busy = compressed = frames is not None and isinstance(frames[0], Deflated)
                self._resume_watch(later=True)
        if frames is None:
            assert event is not None
            return event
        if compressed:
            try:
                return join(reader.inflate(self, frames), None)
            finally:
                with self._lock:
                    inbox.busy = False
        return join(frames, None)  # type: ignore[arg-type]  # not compressed: no Deflated

    def _receive_handshake(self, deadline: Deadline) -> Request | Response | None:
        """The handshake's thread: read until the peer's request or response (see reader.py)."""
        return reader.receive_handshake(self, deadline)

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
