"""A WebSocket connection over a blocking API: ``send``, ``recv``, ``ping``, ``close``.

Threads. A connection owns no thread. The thread that calls ``recv()`` reads
the socket itself; while no thread is in ``recv()``, the process's reactor
thread (see ``reactor.py``) reads it, so pings are answered and a close is
processed while the application is busy elsewhere. Received messages wait in
a queue of at most ``max_queue`` messages; when it is full nobody reads, and
TCP pushes back on the peer.

Locks. ``_lock`` guards the protocol object and every field below it; it is
never held while waiting for the network (the socket is non-blocking, waits
happen in ``poll`` outside the lock). Writes go through an ordered outbox
drained under ``_write_lock`` by whichever thread gets there: a sender that
may block, or the reactor, which never does. So a write blocked on a peer that
doesn't read never stops reading, pong replies, keepalive or ``close()``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import mmap
import os
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self

from ..exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidState,
)
from ..protocol.close_codes import CloseCode
from ..protocol.connection import Protocol, State
from ..protocol.events import Binary, Close, Ping, Pong, Text
from ..protocol.http11 import Request, Response
from .deadline import Deadline, wait_for
from .reactor import Timer, reactor

__all__ = ["Connection", "PendingPing"]

Data = str | bytes
_BytesLike = (bytes, bytearray, memoryview)

#: Default ``write_limit``: past this backlog, broadcasts skip a connection.
DEFAULT_WRITE_LIMIT = 1024 * 1024
_RECV_SIZE = 256 * 1024
# Bytes read in one go by the reactor before it lets other connections run.
_READ_BUDGET = 1024 * 1024
# Large writes are split so TLS never sees a huge buffer at once.
_SEND_CHUNK = 1024 * 1024
# Chunks handed to one sendmsg() call (Linux accepts up to 1024).
_MAX_IOV = 512
_RECV_EVENTS = select.POLLIN | select.POLLPRI
_SEND_EVENTS = select.POLLOUT


#: Frames are logged here, at DEBUG, only when this logger's level is set
#: explicitly: ``logging.getLogger("syncws.frames").setLevel(logging.DEBUG)``.
frames_logger = logging.getLogger("syncws.frames")


def _logging_frames() -> bool:
    return frames_logger.level != logging.NOTSET and frames_logger.isEnabledFor(logging.DEBUG)


class _ConnectionLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefix every record with the connection's short id."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['connection_id']}] {msg}", kwargs  # type: ignore[index]


class PendingPing:
    """A ping waiting for its pong; ``wait()`` for it."""

    def __init__(self, connection: Connection, data: bytes) -> None:
        self.data = data
        self.sent_at = time.monotonic()
        #: The round trip in seconds, once the pong arrived.
        self.latency: float | None = None
        self._connection = connection
        self._done = threading.Event()

    def wait(self, timeout: float | None = None) -> float:
        """Block until the pong arrives and return the round trip in seconds.

        Raise ``TimeoutError`` if it doesn't come within ``timeout`` seconds
        (the connection stays usable), ``ConnectionClosed`` if the connection
        closes first. Callable from any thread.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"no pong within {timeout:g}s")
        if self.latency is None:
            raise self._connection._closed_exception()
        return self.latency

    def done(self) -> bool:
        """True once the pong arrived or the connection closed."""
        return self._done.is_set()

    def _acknowledge(self, now: float | None) -> None:
        if now is not None:
            self.latency = now - self.sent_at
        self._done.set()


class _Changed:
    """A condition variable on a connection's lock: ``wait_for`` and ``notify_all``.

    What ``threading.Condition`` does, in a tenth of its memory: no
    ``__dict__``, and a waiter list only while a thread waits (a server holds
    thousands of idle connections). The lock is a plain ``threading.Lock``.
    """

    __slots__ = ("_lock", "_waiters")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._waiters: list[Any] | None = None

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait (lock held) until ``predicate()``; return its last value."""
        result = predicate()
        if result or (timeout is not None and timeout <= 0):
            return result
        end = None if timeout is None else time.monotonic() + timeout
        while not result:
            if end is None:
                self._wait(None)
            else:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    break
                self._wait(remaining)
            result = predicate()
        return result

    def _wait(self, timeout: float | None) -> None:
        waiter = threading.Lock()
        waiter.acquire()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(waiter)
        self._lock.release()
        try:
            waiter.acquire(True, -1 if timeout is None else timeout)
        finally:
            self._lock.acquire()
            # Not notified (a timeout, an interrupt): leave the list.
            if self._waiters is waiters:
                with contextlib.suppress(ValueError):
                    waiters.remove(waiter)

    def notify_all(self) -> None:
        """Wake every waiting thread (lock held)."""
        waiters = self._waiters
        if waiters:
            self._waiters = None
            for waiter in waiters:
                waiter.release()


class Connection:
    """An open WebSocket connection; see ``ServerConnection`` and ``ClientConnection``.

    Unless a method says otherwise, it may be called from any thread at any
    time. ``recv()``, ``recv_streaming()`` and iteration read messages and
    must be used by one thread at a time.
    """

    # Slots keep an idle connection small (a server holds thousands of them);
    # ``__dict__`` still lets subclasses and applications add attributes.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_base_logger",
        "_changed",
        "_close_callbacks",
        "_close_pending",
        "_close_timer",
        "_closed",
        "_deferred",
        "_deferred_bytes",
        "_drained",
        "_eof",
        "_failure_waits",
        "_fd",
        "_flush_scheduled",
        "_frames",
        "_handshake_event",
        "_io_users",
        "_keepalive_ping",
        "_keepalive_timer",
        "_last_received",
        "_lock",
        "_lost",
        "_messages",
        "_on_control",
        "_outbox",
        "_pings",
        "_pong_timer",
        "_queued_bytes",
        "_reader_thread",
        "_recv_busy",
        "_send_mutex",
        "_skipping",
        "_socket_closed",
        "_socket_released",
        "_tls",
        "_watch_later",
        "_watched",
        "_write_lock",
        "_write_shut",
        "_written_bytes",
        "close_timeout",
        "id",
        "latency",
        "local_address",
        "max_queue",
        "ping_interval",
        "ping_timeout",
        "protocol",
        "remote_address",
        "request",
        "response",
        "skipped_messages",
        "socket",
        "write_limit",
    )

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        *,
        max_queue: int = 16,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float | None = 10.0,
        write_limit: int = DEFAULT_WRITE_LIMIT,
        logger: logging.Logger | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if write_limit < 0:
            raise ValueError("write_limit must not be negative")
        self.socket = sock
        self.protocol = protocol
        # A protocol error waits until the application has taken the messages
        # received before it (see _process_events): errors in stream order.
        protocol.defer_failures = True
        self.max_queue = max_queue
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        #: Past this many bytes waiting to be written, ``broadcast()`` skips
        #: this connection (see ``skipped_messages``).
        self.write_limit = write_limit
        #: Broadcast messages skipped because the peer didn't keep up.
        self.skipped_messages = 0
        #: A unique identifier, handy in logs.
        self.id = uuid.uuid4()
        self._base_logger = logger or logging.getLogger("syncws")
        #: The opening handshake's request and response.
        self.request: Request | None = None
        self.response: Response | None = None
        #: The last measured round trip of a ping, in seconds.
        self.latency = 0.0
        try:
            self.remote_address: Any = sock.getpeername()
        except OSError:
            self.remote_address = None
        self.local_address: Any = sock.getsockname()

        self._fd = sock.fileno()
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._lock = threading.Lock()
        self._changed = _Changed(self._lock)
        self._write_lock = threading.Lock()
        self._send_mutex = threading.Lock()
        self._outbox: list[bytes | memoryview] = []
        # Bytes ever queued (under _lock) and written (under _write_lock):
        # their difference is the backlog, with no lock shared by both sides.
        self._queued_bytes = 0
        self._written_bytes = 0
        # Broadcast messages that arrived during a fragmented send, and their size.
        self._deferred: list[tuple[bytes, bool, list[bytes] | None]] = []
        self._deferred_bytes = 0
        self._close_callbacks: list[Callable[[Connection], None]] = []
        # Told of pings and pongs received, in the background thread (callback adapter).
        self._on_control: Callable[[Ping | Pong], None] | None = None
        # Lists, not deques: an empty deque costs 700 bytes, and a server
        # holds thousands of idle connections. Both stay short.
        self._frames: list[Text | Binary] = []
        self._messages = 0
        self._recv_busy = False
        # True while a thread reads the socket itself (the handshake, recv()).
        self._reader_thread = True
        self._watched = False
        self._watch_later = False  # True while the watch waits for the next tick
        self._drained = True  # the last read emptied the socket
        self._io_users = 0
        self._socket_closed = False
        self._socket_released = False
        self._closed = False  # set once, under _lock; _changed tells waiters
        self._close_timer: Timer | None = None
        self._keepalive_timer: Timer | None = None
        self._pong_timer: Timer | None = None
        # The keepalive ping waiting for its pong (under ping_timeout), if any.
        self._keepalive_ping: PendingPing | None = None
        self._pings: dict[bytes, PendingPing] = {}
        self._last_received = time.monotonic()
        self._lost: BaseException | None = None
        self._handshake_event: Request | Response | None = None
        # Set once TCP should close after the outbox is written; and EOF seen.
        self._close_pending = False
        self._skipping = False
        self._flush_scheduled = False
        self._failure_waits = False
        self._eof = False
        self._write_shut = False

    # -- properties --------------------------------------------------------------

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """The connection's logger: ``syncws`` (or the one given), records prefixed with the id."""
        # Made on each use, not kept: thousands of idle connections would
        # each hold one, and logging is rare on a connection.
        return _ConnectionLogger(self._base_logger, {"connection_id": str(self.id)[:8]})

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
        return self._queued_bytes - self._written_bytes + self._deferred_bytes

    def add_close_callback(self, callback: Callable[[Connection], None]) -> None:
        """Call ``callback(connection)`` once the connection is closed.

        It runs in the process's background thread, so it must return
        quickly and never block; exceptions are logged. Added after the close,
        it runs soon all the same.
        """
        with self._lock:
            if not self._closed:
                self._close_callbacks.append(callback)
                return
        reactor.call_soon(functools.partial(callback, self))

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
        socket; ``timeout`` bounds that wait (``TimeoutError``: the message
        stays queued and is written when the peer reads again). Raise
        ``ConnectionClosed`` once the connection is closing or closed.
        """
        deadline = Deadline(timeout)
        if isinstance(message, (str, *_BytesLike)):
            with self._acquire_send_mutex(deadline):
                self._send_frame(message, text, first=True, fin=True)
        elif isinstance(message, Mapping):
            raise TypeError("send() takes str, bytes or an iterable of them, not a mapping")
        elif isinstance(message, Iterable):
            with self._acquire_send_mutex(deadline):
                self._send_fragments(iter(message), text)
        else:
            raise TypeError(f"send() takes str, bytes or an iterable, not {type(message).__name__}")
        self._flush(deadline)

    @contextlib.contextmanager
    def _acquire_send_mutex(self, deadline: Deadline) -> Iterator[None]:
        remaining = deadline.remaining()
        if not self._send_mutex.acquire(timeout=-1 if remaining is None else remaining):
            raise deadline.timeout_error("waiting for another thread's send")
        try:
            yield
        finally:
            self._send_mutex.release()

    def _send_fragments(self, pieces: Iterator[Any], text: bool | None) -> None:
        try:
            first = next(pieces)
        except StopIteration:
            return
        if not isinstance(first, (str, *_BytesLike)):
            raise TypeError(f"send() iterables yield str or bytes, not {type(first).__name__}")
        kind = str if isinstance(first, str) else bytes
        self._send_frame(first, text, first=True, fin=False)
        try:
            for piece in pieces:
                if not isinstance(piece, kind if kind is str else _BytesLike):
                    raise TypeError("send() iterables must yield all str or all bytes")
                self._send_frame(piece, text, first=False, fin=False)
                # Write as we go: the iterable may be long, or slow to produce.
                self._flush(Deadline(None))
            self._send_frame(b"", text, first=False, fin=True)
        except BaseException:
            # The message can't be completed or taken back: fail the connection.
            if not self._closed:
                self._fail(CloseCode.INTERNAL_ERROR, "error while sending a fragmented message")
            raise

    def _send_frame(
        self, data: Data | bytearray | memoryview, text: bool | None, *, first: bool, fin: bool
    ) -> None:
        with self._lock:
            self._check_open()
            protocol = self.protocol
            if not first:
                protocol.send_continuation(data, fin=fin)
            elif text if text is not None else isinstance(data, str):
                protocol.send_text(data if isinstance(data, (str, bytes)) else bytes(data), fin=fin)
            else:
                protocol.send_binary(data.encode() if isinstance(data, str) else data, fin=fin)
            self._queue(protocol.data_to_send())
            if _logging_frames():
                _ConnectionLogger(frames_logger, self.logger.extra).debug(
                    "> data frame of %d bytes, fin=%s", len(data), fin
                )
            if fin and self._deferred:
                self._send_deferred()

    def _check_open(self) -> None:
        # Called with the lock held.
        if self.protocol.state is State.OPEN:
            return
        if self.protocol.state is State.CONNECTING:
            raise InvalidState("the opening handshake has not completed")
        # Closing or closed: raise at once, with the close frames known so far.
        raise self._closed_exception()

    def ping(self, data: Data | None = None) -> PendingPing:
        """Send a ping; ``wait()`` on the result for the pong.

        ``data`` (at most 125 bytes) defaults to 4 random bytes. Raise
        ``ConcurrencyError`` if a ping with the same data is still waiting.
        """
        if data is None:
            payload = os.urandom(4)
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
        with self._lock:
            self._check_open()
            if payload in self._pings:
                raise ConcurrencyError("already waiting for a pong with the same data")
            pending = PendingPing(self, payload)
            self.protocol.send_ping(pending.data)
            self._pings[pending.data] = pending
            self._queue(self.protocol.data_to_send())
        self._flush(None)
        return pending

    def pong(self, data: Data = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat). Pings are answered automatically."""
        payload = data.encode() if isinstance(data, str) else data
        with self._lock:
            self._check_open()
            self.protocol.send_pong(bytes(payload))
            self._queue(self.protocol.data_to_send())
        self._flush(None)

    # -- receiving ---------------------------------------------------------------

    def recv(self, timeout: float | None = None, decode: bool | None = None) -> Data:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        Block up to ``timeout`` seconds (``None``: no limit, ``0``: don't
        block); then raise ``TimeoutError`` and keep the connection usable, with
        nothing lost. Raise ``ConnectionClosedOK`` after a normal close,
        ``ConnectionClosedError`` otherwise; messages received before the
        close are returned first. ``decode=False`` returns text as UTF-8
        bytes, ``decode=True`` decodes binary as UTF-8.

        One thread at a time: a concurrent call raises ``ConcurrencyError``.
        """
        self._start_reading()
        try:
            frames = self._take_message(Deadline(timeout))
        finally:
            self._stop_reading()
        return _join(frames, decode)

    def recv_streaming(self, decode: bool | None = None) -> Iterator[Data]:
        """Yield the frames of the next message as they arrive.

        Same rules as ``recv()``; the iterator must be consumed to the end
        before the next ``recv()``.
        """
        with self._reading():
            while True:
                frame = self._take_frame(Deadline(None))
                yield _convert(frame, decode)
                if frame.final:
                    return

    def __iter__(self) -> Iterator[Data]:
        """Yield messages until the connection closes; a normal close ends the loop."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        self._start_reading()
        try:
            yield
        finally:
            self._stop_reading()

    def _start_reading(self) -> None:
        with self._lock:
            if self._recv_busy:
                raise ConcurrencyError(
                    "another thread is already in recv() or recv_streaming() on this connection"
                )
            self._recv_busy = True

    def _stop_reading(self) -> None:
        with self._lock:
            self._recv_busy = False

    def _take_message(self, deadline: Deadline) -> list[Text | Binary]:
        with self._lock:
            if not self._messages:
                self._read_until(lambda: self._messages > 0, deadline)
            queued = self._frames
            end = 1
            while not queued[end - 1].final:
                end += 1
            frames = queued[:end]
            del queued[:end]
            self._messages -= 1
            self._resume_watch(later=True)
            return frames

    def _take_frame(self, deadline: Deadline) -> Text | Binary:
        with self._lock:
            if not self._frames:
                self._read_until(lambda: bool(self._frames), deadline)
            frame = self._frames.pop(0)
            if frame.final:
                self._messages -= 1
                self._resume_watch(later=True)
            return frame

    def _read_until(self, ready: Callable[[], bool], deadline: Deadline) -> None:
        """Read the socket in this thread until ``ready()`` (lock held).

        Raise ``ConnectionClosed`` when nothing more can arrive and
        ``TimeoutError`` when the deadline passes.
        """
        if self.protocol.failure_pending:
            # The application took the messages that came before the error.
            self.protocol.fail_pending()
            self._process_events()
        # Take the socket from the reactor while this thread reads it.
        self._reader_thread = True
        self._unwatch()
        # Plain TCP: poll before the first read. poll returns at once when
        # bytes wait, and a peer that answers in turn (request, response)
        # usually has sent nothing yet: this saves a read that would fail.
        # TLS may hold decrypted bytes that poll can't see: read first.
        poll_first = not self._tls and not deadline.expired()
        try:
            while True:
                if poll_first:
                    poll_first = False
                else:
                    self._read_available(_READ_BUDGET)
                    if ready():
                        return
                if self._socket_closed or not self.protocol.receiving:
                    raise self._closed_exception()
                if deadline.expired():
                    raise deadline.timeout_error("waiting for a message")
                self._io_users += 1
                self._lock.release()
                try:
                    wait_for(self.socket, _RECV_EVENTS, deadline)
                finally:
                    self._lock.acquire()
                    self._io_users -= 1
                    self._release_socket_if_unused()
        finally:
            self._reader_thread = False
            self._resume_watch(later=True)

    def _receive_handshake(self, deadline: Deadline) -> Request | Response | None:
        """Read until the peer's request or response arrives; None if the handshake failed.

        Raise ``TimeoutError`` at the deadline. Runs in the thread doing the
        handshake, before anyone else knows about the connection.
        """
        with self._lock:
            while self._handshake_event is None:
                if self._socket_closed or self.protocol.state is not State.CONNECTING:
                    return None
                self._read_available(_READ_BUDGET)
                if self._handshake_event is not None:
                    break
                if self.protocol.state is not State.CONNECTING:
                    return None
                if deadline.expired():
                    raise deadline.timeout_error("waiting for the opening handshake")
                self._lock.release()
                try:
                    wait_for(self.socket, _RECV_EVENTS, deadline)
                finally:
                    self._lock.acquire()
            return self._handshake_event

    # -- reading the socket (lock held) ------------------------------------------

    def _read_available(self, budget: int) -> None:
        """Read what the socket has (up to ``budget`` bytes) and process it (lock held)."""
        if self._socket_closed:
            return
        sock = self.socket
        protocol = self.protocol
        buffer = _take_buffer()
        got = 0
        try:
            while got < budget:
                try:
                    size = sock.recv_into(buffer)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    self._drained = True
                    break
                except OSError as exc:
                    self._lost = exc
                    self._eof = True
                    protocol.receive_eof()
                    break
                if not size:
                    self._eof = True
                    protocol.receive_eof()
                    break
                got += size
                # A peer that pings without reading our pongs: answer no more
                # of its pings until it catches up (RFC 6455 5.5.3 allows it).
                protocol.answer_pings = self._queued_bytes - self._written_bytes <= self.write_limit
                with memoryview(buffer)[:size] as data:
                    protocol.receive_data(data)
                replies = protocol.data_to_send()
                if replies:  # pongs and close frames: counted before the next read
                    self._queue(replies)
                    self._flush_later()
                if size < _RECV_SIZE and not (self._tls and _tls_pending(sock)):
                    self._drained = True
                    break  # drained, most likely: poll will tell if not
                self._drained = False  # a full read: more is probably waiting
        finally:
            _give_back_buffer(buffer)
        if got:
            self._last_received = time.monotonic()
        self._process_events()

    def _process_events(self) -> None:
        """Route the protocol's events, queue its output, act on closing (lock held)."""
        protocol = self.protocol
        events = protocol.events_received()
        if events and _logging_frames():
            for event in events:
                _ConnectionLogger(frames_logger, self.logger.extra).debug("< %s", _describe(event))
        for event in events:
            if isinstance(event, (Text, Binary)):
                self._frames.append(event)
                if event.final:
                    self._messages += 1
            elif isinstance(event, Pong):
                self._acknowledge_pings(event.data)
                if self._on_control is not None:
                    reactor.call_soon(functools.partial(self._on_control, event))
            elif isinstance(event, Ping):
                if self._on_control is not None:
                    reactor.call_soon(functools.partial(self._on_control, event))
            elif isinstance(event, Close):
                self.logger.debug("received close frame: %s %r", event.code, event.reason)
                self._start_close_timer()
            elif isinstance(event, (Request, Response)):
                self._handshake_event = event
        if protocol.failure_pending:
            if self._messages or self._failure_waits:
                # Messages came before the error: the application takes them
                # (and may answer them) first; recv() applies it after them.
                self._failure_waits = True
            else:
                protocol.fail_pending()
        output = protocol.data_to_send()
        if output:
            self._queue(output)
            self._flush_later()
        if protocol.state is State.CLOSING:
            self._start_close_timer()
            # Keep reading until the closing handshake ends, full queue or not.
            self._resume_watch()
        if protocol.should_close_transport:
            self._close_when_flushed()
        self._changed.notify_all()

    def _acknowledge_pings(self, data: bytes) -> None:
        if data not in self._pings:
            return
        now = time.monotonic()
        # A pong acknowledges its ping and every ping sent before it.
        for key in list(self._pings):
            pending = self._pings.pop(key)
            pending._acknowledge(now)
            if key == data:
                self.latency = pending.latency or 0.0
                break
        if self._keepalive_ping is not None and self._keepalive_ping.done():
            # The pong came in time: the next ping may go out at the next interval.
            self._keepalive_ping = None
            if self._pong_timer is not None:
                self._pong_timer.cancel()
                self._pong_timer = None

    # -- handing the socket between the application and the reactor (lock held) --

    def _watch(self, later: bool = False) -> None:
        """Let the reactor read the socket while no thread is in ``recv()``.

        ``later``: a ``recv()`` is returning, and its thread will likely call
        again at once; arm the reactor only if it doesn't within a tick, which
        saves two system calls per message in a request/response loop. Any
        other caller arms it now (upgrading a deferred watch).
        """
        # Only when the last read emptied the socket: a peer that streams
        # (more bytes waiting) is better read ahead by the reactor at once.
        # And not while closing: the closing handshake needs reading now.
        later = later and self._drained and self.protocol.state is State.OPEN
        if self._socket_closed or (self._watched and (later or not self._watch_later)):
            return
        self._watched = True
        self._watch_later = later
        if later:
            reactor.watch_read_later(self._fd, self._on_readable)
        else:
            reactor.watch_read(self._fd, self._on_readable)

    def _unwatch(self) -> None:
        if self._watched:
            self._watched = False
            reactor.unwatch_read(self._fd)

    def _resume_watch(self, later: bool = False) -> None:
        if not self._reader_thread and (
            self._messages < self.max_queue or self.protocol.state is not State.OPEN
        ):
            self._watch(later)

    def _on_readable(self) -> None:
        """Reactor thread: the socket has data and no thread is in ``recv()``."""
        with self._lock:
            if not self._watched:
                return  # a recv() took over meanwhile
            self._watched = False
            self._read_available(_READ_BUDGET)
            self._resume_watch()

    # -- writing -------------------------------------------------------------------

    def _queue(self, chunks: list[bytes]) -> None:
        """Append bytes to the outbox (lock held)."""
        self._outbox.extend(chunks)
        self._queued_bytes += sum(map(len, chunks))

    def _offer(
        self,
        payload: bytes,
        text: bool,
        prepared: dict[Hashable, list[bytes]],
        overflow: int | None,
    ) -> bool | None:
        """Queue a broadcast message without ever blocking.

        Return True when queued, False when the backlog was full, None when
        the connection is closing or closed. ``prepared`` caches encoded
        messages by ``sharing_key()`` across the connections of one broadcast.
        ``overflow`` is the close code for a full backlog, or None to skip.
        """
        with self._lock:
            protocol = self.protocol
            if protocol.state is not State.OPEN:
                if protocol.state is State.CONNECTING:
                    raise InvalidState("the opening handshake has not completed")
                return None
            backlog = self.buffered_amount
            if backlog > self.write_limit:
                self._report_skip(backlog, overflow)  # may queue a close frame
                accepted = False
            else:
                if self._skipping:
                    self._skipping = False
                    self.logger.info(
                        "broadcast: delivering again (%d skipped so far)", self.skipped_messages
                    )
                key = protocol.sharing_key()
                frames = None
                if key is not None:
                    frames = prepared.get(key)
                    if frames is None:
                        frames = prepared[key] = protocol.prepare_message(payload, text=text)
                if protocol.sending_fragments:
                    # Never inside another message: after its final frame.
                    self._deferred.append((payload, text, frames))
                    self._deferred_bytes += len(payload)
                    return True
                self._queue_message(payload, text, frames)
                accepted = True
            # The reactor writes it: broadcasts queued meanwhile go out in the same
            # syscall, and the caller never spends a syscall per connection.
            if not self._flush_scheduled and self._outbox and not self._socket_closed:
                self._flush_scheduled = True
                reactor.watch_write(self._fd, self._on_writable)
        return accepted

    def _report_skip(self, backlog: int, overflow: int | None) -> None:
        # Lock held: the peer is too slow for broadcasts.
        self.skipped_messages += 1
        if overflow is not None:
            self.logger.warning(
                "broadcast: %d bytes waiting, past write_limit: closing with %d",
                backlog,
                overflow,
            )
            self.protocol.send_close(overflow, "too slow to keep up")
            self._process_events()
        elif not self._skipping:
            self._skipping = True
            self.logger.warning(
                "broadcast: %d bytes waiting, past write_limit: skipping messages", backlog
            )

    def _queue_message(self, payload: bytes, text: bool, frames: list[bytes] | None) -> None:
        # Lock held; the connection is open and not in a fragmented message.
        protocol = self.protocol
        if frames is not None:
            protocol.send_prepared(frames)
        elif text:
            protocol.send_text(payload)
        else:
            protocol.send_binary(payload)
        self._queue(protocol.data_to_send())

    def _send_deferred(self) -> None:
        # Lock held: a fragmented message ended, broadcasts held back follow it.
        deferred, self._deferred = self._deferred, []
        self._deferred_bytes = 0
        for payload, text, frames in deferred:
            self._queue_message(payload, text, frames)

    def _flush(self, deadline: Deadline | None) -> None:
        """Write the outbox; block until it is empty when given a deadline.

        Without a deadline (the reactor, automatic replies) never block: what
        can't be written now is left to the reactor to write when the socket
        becomes writable. Raise ``TimeoutError`` when the deadline passes
        (what's left stays queued) and ``ConnectionClosed`` if the connection
        was lost.
        """
        while self._outbox:
            if deadline is None:
                if not self._write_lock.acquire(blocking=False):
                    return  # the thread holding it writes our bytes too
            else:
                remaining = deadline.remaining()
                if not self._write_lock.acquire(timeout=-1 if remaining is None else remaining):
                    self._flush_later()
                    raise deadline.timeout_error("waiting for another thread's write")
            try:
                drained = self._write_outbox(deadline)
            finally:
                self._write_lock.release()
            if not drained:
                return
        if self._lost is not None and deadline is not None:
            raise self._closed_exception()

    def _write_outbox(self, deadline: Deadline | None) -> bool:
        """Write queued bytes (write lock held); False if left to the reactor."""
        outbox = self._outbox
        while outbox:
            if self._socket_closed:
                outbox.clear()
                if deadline is not None:
                    with self._lock:
                        self._changed.wait_for(self._is_closed)
                    raise self._closed_exception()
                return True
            chunk = outbox[0]
            try:
                if self._tls:
                    with self._lock:
                        sent = self.socket.send(chunk[:_SEND_CHUNK])
                elif len(outbox) == 1:
                    sent = self.socket.send(chunk)
                else:
                    # Many chunks (a header and its payload, queued broadcasts): one syscall.
                    sent = self.socket.sendmsg(outbox[:_MAX_IOV])
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                if deadline is None:
                    self._flush_later()
                    return False
                if deadline.expired():
                    self._flush_later()
                    raise deadline.timeout_error("writing to a peer that doesn't read") from None
                with self._lock:
                    self._io_users += 1
                try:
                    wait_for(self.socket, _SEND_EVENTS, deadline)
                finally:
                    with self._lock:
                        self._io_users -= 1
                        self._release_socket_if_unused()
                continue
            except OSError as exc:
                outbox.clear()
                with self._lock:
                    self._lost = exc
                    self._eof = True
                    self.protocol.receive_eof()
                    self._process_events()
                if deadline is not None:
                    raise self._closed_exception() from exc
                return True
            self._written_bytes += sent
            # Other threads only append: the front is ours (list ops are atomic).
            done = 0
            while sent and sent >= len(outbox[done]):
                sent -= len(outbox[done])
                done += 1
            del outbox[:done]
            if sent:
                outbox[0] = memoryview(outbox[0])[sent:]
        with self._lock:
            if self._close_pending and not outbox:
                self._shutdown_write()
        return True

    def _flush_later(self) -> None:
        """Have the reactor write the outbox when the socket is writable (any lock)."""
        if not self._socket_closed:
            reactor.watch_write(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        """Reactor thread: the socket can take more bytes."""
        self._flush_scheduled = False
        self._flush(None)

    # -- closing -------------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake and close the TCP connection.

        Wait at most ``close_timeout`` for the peer, then close anyway.
        Idempotent; callable from any thread, also while another thread is
        blocked in ``recv()`` (which then raises ``ConnectionClosed``).
        """
        deadline = Deadline(self.close_timeout)
        with self._lock:
            if self.protocol.state is State.OPEN:
                if self.protocol.sending_fragments:
                    self.protocol.fail(CloseCode.INTERNAL_ERROR, "close() during a fragmented send")
                else:
                    self.protocol.send_close(code, reason)
                self.logger.debug("sent close frame: %s %r", code, reason)
                self._process_events()
            elif self.protocol.state is State.CONNECTING:
                self._close_socket()
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            self._flush(deadline)
        with self._lock:
            if not self._changed.wait_for(self._is_closed, deadline.remaining()):
                self.logger.debug("closing handshake timed out: closing TCP")
                self._close_socket()

    def _start_closing(self, code: int, reason: str) -> None:
        """Send a close frame without waiting for the answer (server shutdown)."""
        with self._lock:
            if self.protocol.state is State.OPEN:
                self.protocol.send_close(code, reason)
                self._process_events()
            elif self.protocol.state is State.CONNECTING and self._handshake_event is None:
                self._close_socket()  # nothing received yet: drop it
        self._flush(None)

    def _abort(self) -> None:
        """Close the TCP connection now, without a closing handshake."""
        with self._lock:
            self._close_socket()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the connection is closed; False if ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(self._is_closed, timeout)

    def _is_closed(self) -> bool:
        return self._closed

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: send a close frame if possible and close TCP at once."""
        with self._lock:
            self.protocol.fail(code, reason)
            self._process_events()
        self._flush(None)
        with self._lock:
            self._close_socket()

    def _start_close_timer(self) -> None:
        # Lock held. The closing deadline holds on its own, keepalive or not.
        if self._close_timer is None and self.close_timeout is not None and not self._socket_closed:
            self._close_timer = reactor.call_later(self.close_timeout, self._on_close_timeout)

    def _on_close_timeout(self) -> None:
        with self._lock:
            if not self._socket_closed:
                self.logger.debug("closing handshake timed out: closing TCP")
                self._close_socket()

    def _close_when_flushed(self) -> None:
        # Lock held: close TCP once the outbox is written (or at the deadline).
        self._close_pending = True
        if not self._outbox:
            self._shutdown_write()
        else:
            self._flush_later()

    def _shutdown_write(self) -> None:
        """Send FIN, then close once the peer's EOF arrives (lock held).

        Closing at once with unread input would make the kernel send a reset,
        which can destroy our close frame before the peer reads it.
        """
        if self._eof or self._socket_closed:
            self._close_socket()
            return
        if not self._write_shut:
            self._write_shut = True
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_WR)
            self._start_close_timer()
        self._resume_watch()  # read on until the peer's EOF

    def _close_socket(self) -> None:
        """Close the TCP connection now and wake every waiting thread (lock held)."""
        if self._socket_closed:
            return
        self._socket_closed = True
        self._watched = False
        reactor.forget(self._fd)
        for timer in (self._close_timer, self._keepalive_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        # A timer holds a bound method of this connection: dropping them breaks
        # the cycle, so that the connection (and its zlib state, 300 KiB with
        # permessage-deflate) is freed at once, not at the next full collection.
        self._close_timer = self._keepalive_timer = self._pong_timer = None
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self._release_socket_if_unused()
        self.protocol.receive_eof()
        for pending in self._pings.values():
            pending._acknowledge(None)
        self._pings.clear()
        self.protocol.events_received()  # nothing more is delivered
        self.protocol.data_to_send()
        self._deferred.clear()
        self._deferred_bytes = 0
        self._closed = True
        self._changed.notify_all()
        for callback in self._close_callbacks:
            reactor.call_soon(functools.partial(callback, self))
        self._close_callbacks.clear()
        self.logger.debug(
            "connection closed: code %s reason %r",
            self.protocol.close_code,
            self.protocol.close_reason,
        )

    def _release_socket_if_unused(self) -> None:
        # Lock held: the descriptor is closed once no thread waits on it.
        if self._socket_closed and not self._io_users and not self._socket_released:
            self._socket_released = True
            self.socket.close()

    def _closed_exception(self) -> ConnectionClosed:
        exc = self.protocol.close_exc()
        if exc.__cause__ is None and self._lost is not None:
            exc.__cause__ = self._lost
        return exc

    # -- keepalive -----------------------------------------------------------------

    def _activate(self) -> None:
        """After the handshake: let the reactor watch the socket and run keepalive."""
        with self._lock:
            self._reader_thread = False
            self._resume_watch()
            if self.ping_interval is not None and not self._socket_closed:
                self._keepalive_timer = reactor.call_later(self.ping_interval, self._on_keepalive)

    def _on_keepalive(self) -> None:
        """Reactor thread: ping the peer if it has been silent for ``ping_interval``."""
        assert self.ping_interval is not None
        with self._lock:
            if self._socket_closed or self.protocol.state is not State.OPEN:
                return
            idle = time.monotonic() - self._last_received
            if idle < self.ping_interval or self._keepalive_ping is not None:
                # Heard from lately, or still waiting for the last ping's pong.
                delay = (
                    self.ping_interval - idle if idle < self.ping_interval else self.ping_interval
                )
                self._keepalive_timer = reactor.call_later(delay, self._on_keepalive)
                return
            pending = PendingPing(self, os.urandom(4))
            self.protocol.send_ping(pending.data)
            self._pings[pending.data] = pending
            self._queue(self.protocol.data_to_send())
            self._keepalive_timer = reactor.call_later(self.ping_interval, self._on_keepalive)
            self._keepalive_ping = pending
            if self.ping_timeout is not None:
                self._pong_timer = reactor.call_later(
                    self.ping_timeout, lambda: self._on_ping_timeout(pending)
                )
        self.logger.debug("keepalive ping sent")
        self._flush(None)

    def _on_ping_timeout(self, pending: PendingPing) -> None:
        with self._lock:
            self._pong_timer = None
            self._keepalive_ping = None
        if pending.done() or self._socket_closed:
            return
        self.logger.info("keepalive: no pong within %ss, closing with 1011", self.ping_timeout)
        self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

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


# Receive buffers for ``recv_into``, shared by every thread that reads: a
# reader takes one for a single read and gives it back at once, so a thousand
# handler threads waiting in ``recv()`` hold none. Anonymous memory is resident
# only where written, and the last one returned is the next one taken (its
# pages are warm). list.pop() and list.append() are atomic.
_free_buffers: list[mmap.mmap] = []
# Buffers kept for reuse; more than this many readers at once allocate extras.
_MAX_FREE_BUFFERS = 16


def _take_buffer() -> mmap.mmap:
    try:
        return _free_buffers.pop()
    except IndexError:
        return mmap.mmap(-1, _RECV_SIZE)


def _give_back_buffer(buffer: mmap.mmap) -> None:
    if len(_free_buffers) < _MAX_FREE_BUFFERS:
        _free_buffers.append(buffer)
    else:
        buffer.close()


def _describe(event: object) -> str:
    """A short description of a received event for the frame log (never the payload)."""
    if isinstance(event, Close):
        return f"Close {event.code} {event.reason!r}"
    data = getattr(event, "data", b"")
    unit = "chars" if isinstance(data, str) else "bytes"
    more = "" if getattr(event, "final", True) else " (more to come)"
    return f"{type(event).__name__} of {len(data)} {unit}{more}"


def _tls_pending(sock: socket.socket) -> int:
    """Bytes TLS decrypted already but not returned yet: poll can't see them."""
    assert isinstance(sock, ssl.SSLSocket)
    return sock.pending()


def _convert(frame: Text | Binary, decode: bool | None) -> Data:
    if isinstance(frame, Text):
        return frame.data.encode() if decode is False else frame.data
    return frame.data.decode() if decode else frame.data


def _join(frames: list[Text | Binary], decode: bool | None) -> Data:
    if len(frames) == 1:
        return _convert(frames[0], decode)
    if isinstance(frames[0], Text):
        text = "".join(frame.data for frame in frames)  # type: ignore[misc]
        return text.encode() if decode is False else text
    data = b"".join(frame.data for frame in frames)  # type: ignore[misc]
    return data.decode() if decode else data
