"""A connection's core: its lock, transport, send choke point, event routing and hand-off.

``ConnectionCore`` is the one object that owns a connection's machinery;
``Connection`` (connection.py) adds the public API on top. It holds three
leaf parts, which take no lock, never call back and keep no reference to it:
the outbox (``outbox.py``: bytes for the peer and the system call that
writes them), the inbox (``inbox.py``: frames waiting for ``recv()``) and the
ping table (``keepalive.py``). The core calls them with values and acts on
what they return. Its own jobs are split by file, each a set of functions
over the core: reading the socket (``reader.py``) and sending (the writer's
loop, fragmented messages and broadcasts: ``driver.py``).

What it guards. ``_lock`` (a plain ``threading.Lock``, one per connection)
guards the ``Protocol`` object, the transport state (``_transport``, see
``TransportState``), the inbox, the ping table and every field below unless
its comment says otherwise. It is never held while waiting for the network:
sockets are non-blocking, waits happen in ``poll`` outside it.
``_changed`` is a condition variable on it.

Lock order, outermost first: ``reader.READ_TURN`` (process-wide, taken
by a thread in ``recv()`` after its wait, with no lock held) ->
``_send_mutex`` (one application sender at a time) -> ``_write_lock``
(the writer: the outbox's front and its ``written`` count) -> ``_lock``
-> the reactor's lock (any ``reactor.*`` call may happen under ``_lock``)
-> ``_LAZY_LOCK`` (the id and addresses, a leaf). A write
blocked on a peer that doesn't read holds only ``_write_lock``, so reading,
pong replies, keepalive and ``close()`` go on. Read without ``_lock``, one
attribute at a time: ``_transport`` (by the writer and ``_flush_later``; it
only moves forward), ``_lost`` (by a writer that finished; set before the
transport closes), the outbox's counts, ``protocol.pong_owed`` (by the
writer) and ``_flush_scheduled`` (cleared by the reactor).

The one send choke point: every byte the protocol produces enters the outbox
through ``_emit()`` (lock held), counted in ``buffered_amount`` (but a
broadcast's prepared frames: see ``driver.offer_broadcast``); ``_drive``
wraps the usual steps (lock, check the state, call the protocol, ``_emit``,
then write with ``driver.flush``). ``send``, ``ping``, ``pong``, ``close``,
keepalive, broadcasts, both handshakes, WSGI and ``syncws.testing`` use it.

The one close path: every way a connection ends (``close()``, a close frame,
the peer's EOF, a write error, the close timer, keepalive, ``_abort``) ends
in ``_close_socket`` (lock held), which moves the transport to CLOSED, shuts
TCP down, makes the reactor forget the descriptor, empties the parts, wakes
waiters and hands the close callbacks to the callbacks thread (``worker.py``:
never the reactor). The descriptor is closed once no thread polls it
(``_io_users``).

The hand-off. A thread in ``recv()`` (or the handshake) reads the socket
itself (``_reader_thread``); otherwise the reactor does, with a one-shot
watch armed by ``_resume_watch`` (``_watched``), deferred by a tick when a
``recv()`` returns (``_watch_later``), as its thread will likely call again.

Reactor thread: ``_on_readable``, ``_on_writable``, ``_on_close_timeout``,
``_on_keepalive``, ``_on_ping_timeout``; ``_close_socket`` and the routing run
on whichever thread holds the lock, the reactor included.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar, assert_never

from ...exceptions import ConnectionClosed, InvalidState
from ...protocol.close_codes import CloseCode
from ...protocol.connection import Protocol, State
from ...protocol.events import Binary, Close, Deflated, Ping, Pong, Text
from ...protocol.http11 import Request, Response
from ..deadline import Deadline
from ..net.tls_in_tls import TLSInTLS
from ..runtime.reactor import Timer, reactor
from ..runtime.worker import worker
from . import driver, reader
from .changed import Changed
from .inbox import Inbox
from .keepalive import PendingPing, PingTable, first_ping_delay
from .logs import ConnectionId, ConnectionLogger, describe, frames_logger, logging_frames
from .outbox import Outbox
from .transport import TransportState

__all__ = ["ConnectionCore"]

_T = TypeVar("_T")
# The class body's ``socket`` attribute hides the module there.
_Socket: TypeAlias = socket.socket

# An address not asked for yet (None means the socket couldn't tell).
_UNKNOWN: Any = object()
# Makes the id and the addresses on first use, by any thread, so every thread
# sees the same value (and an address is never looked up on a closed socket).
# A leaf lock: taken under _lock at close, never the other way around.
_LAZY_LOCK = threading.Lock()


def _address(get: Callable[[], Any]) -> Any:
    try:
        return get()
    except OSError:  # not connected any more (reset), or closed
        return None


class ConnectionCore:
    """A connection's machinery; ``Connection`` is its public face."""

    __slots__ = (
        "_base_logger",
        "_changed",
        "_close_callbacks",
        "_close_timer",
        "_deferred",
        "_deferred_bytes",
        "_drained",
        "_fd",
        "_flush_scheduled",
        "_handshake_event",
        "_id",
        "_inbox",
        "_io_users",
        "_last_received",
        "_local_address",
        "_lock",
        "_lost",
        "_outbox",
        "_parse_held",
        "_pings",
        "_queue_low",
        "_reader_thread",
        "_remote_address",
        "_send_mutex",
        "_sharing_key",
        "_skipping",
        "_tls",
        "_transport",
        "_watch_later",
        "_watched",
        "_write_lock",
        "close_timeout",
        "latency",
        "max_queue",
        "ping_interval",
        "ping_timeout",
        "protocol",
        "skipped_messages",
        "socket",
        "write_limit",
    )

    socket: _Socket
    protocol: Protocol

    def __init__(
        self,
        sock: _Socket,
        protocol: Protocol,
        *,
        max_queue: int | tuple[int, int],
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float | None,
        write_limit: int,
        logger: logging.Logger | None,
    ) -> None:
        high, low = max_queue if isinstance(max_queue, tuple) else (max_queue, max_queue - 1)
        if high < 1:
            raise ValueError("max_queue must be at least 1")
        if write_limit < 0:
            raise ValueError("write_limit must not be negative")
        # A protocol error waits until the application has taken the messages
        # received before it (see _process_events): errors in stream order.
        protocol.defer_failures = True
        protocol.defer_inflate = True  # compressed messages wait so: see reader.inflate
        self.socket = sock
        self.protocol = protocol
        self.close_timeout = close_timeout
        #: Received messages kept before reading stops.
        self.max_queue = high
        # Reading resumes once no more than this many wait (websockets' low water mark).
        self._queue_low = low
        #: Past this many bytes waiting to be written, ``broadcast()`` skips this connection.
        self.write_limit = write_limit
        #: Broadcast messages skipped because the peer didn't keep up.
        self.skipped_messages = 0
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        #: The last measured round trip of a ping, in seconds.
        self.latency = 0.0
        # Made on first use (see the properties): a server opening a connection
        # spends no system call and no random bytes on them.
        self._id: uuid.UUID | None = None
        self._remote_address = self._local_address = _UNKNOWN
        self._base_logger = logger or logging.getLogger("syncws")
        self._fd = sock.fileno()
        self._tls = isinstance(sock, (ssl.SSLSocket, TLSInTLS))
        self._lock = threading.Lock()
        self._changed = Changed(self._lock)
        self._transport = TransportState.OPEN
        # Threads polling the descriptor outside _lock; it is closed when 0.
        self._io_users = 0
        # The OSError that lost the connection, if any (the cause of ConnectionClosed).
        self._lost: BaseException | None = None
        self._close_timer: Timer | None = None
        # None until a callback is added: most connections never get one.
        self._close_callbacks: list[Callable[[Any], None]] | None = None
        # The writer: one thread at a time (see the lock order).
        self._write_lock = threading.Lock()
        # One application sender at a time: messages never interleave.
        self._send_mutex = threading.Lock()
        self._outbox = Outbox()
        # Set when a broadcast asked the reactor to write; the reactor clears it
        # without the lock (a race costs at most one extra watch).
        self._flush_scheduled = False
        # Broadcasts that arrived during a fragmented send (None: none), and their size.
        # Protocol.sharing_key(), asked once by the first broadcast.
        self._sharing_key: Any = driver.UNKNOWN_KEY
        self._deferred: list[tuple[bytes, bool, list[bytes] | None]] | None = None
        self._deferred_bytes = 0
        # Broadcasts are being skipped (logged once per episode).
        self._skipping = False
        self._inbox = Inbox()
        # A thread reads the socket itself (the handshake, recv()); else the reactor
        # may, while _watched (maybe from the next tick: _watch_later).
        self._reader_thread = True
        self._watched = False
        self._watch_later = False
        # The last read emptied the socket.
        self._drained = True
        # The peer's handshake request or response, once received.
        self._handshake_event: Request | Response | None = None
        # The parser paused on its budget: frames may wait in the core's buffer,
        # where epoll can't see them (or bytes held in TLS).
        self._parse_held = False
        # When bytes last arrived (time.monotonic()); keepalive reads it.
        self._last_received = time.monotonic()
        self._pings = PingTable()

    # -- identity and addresses, made on first use (any thread) ---------------------

    @property
    def id(self) -> uuid.UUID:
        """A unique identifier (a random UUID), handy in logs; the same on every access."""
        if self._id is None:
            with _LAZY_LOCK:
                if self._id is None:
                    self._id = uuid.uuid4()
        return self._id

    @id.setter
    def id(self, value: uuid.UUID) -> None:
        self._id = value

    @property
    def remote_address(self) -> Any:
        """The peer's address, as ``socket.getpeername()`` gives it; None if unknown.

        Known after the connection closed too (kept at close if not asked before).
        """
        if self._remote_address is _UNKNOWN:
            self._learn_addresses()
        return self._remote_address

    @remote_address.setter
    def remote_address(self, value: Any) -> None:
        self._remote_address = value

    @property
    def local_address(self) -> Any:
        """Our end's address, as ``socket.getsockname()`` gives it; None if unknown.

        Known after the connection closed too (kept at close if not asked before).
        """
        if self._local_address is _UNKNOWN:
            self._learn_addresses()
        return self._local_address

    @local_address.setter
    def local_address(self, value: Any) -> None:
        self._local_address = value

    def _learn_addresses(self) -> None:
        """Ask the socket for the addresses nobody knows yet (any thread; at close, lock held)."""
        with _LAZY_LOCK:
            if self._remote_address is _UNKNOWN:
                self._remote_address = _address(self.socket.getpeername)
            if self._local_address is _UNKNOWN:
                self._local_address = _address(self.socket.getsockname)

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """The connection's logger: ``syncws`` (or the one given), records prefixed with the id."""
        # Made on each use, not kept: thousands of idle connections would
        # each hold one, and logging is rare on a connection.
        return ConnectionLogger(self._base_logger, ConnectionId(self))

    # -- the send choke point (lock held, or taken here) ----------------------------

    def _emit(self) -> bool:
        """Queue what the protocol produced, counting it (lock held); True if there was any."""
        output = self.protocol.data_to_send()
        if not output:
            return False
        self._outbox.append(output)
        return True

    def _drive(
        self,
        action: Callable[..., _T],
        *args: Any,
        check_open: bool = True,
        write: bool = True,
        deadline: Deadline | None = None,
    ) -> _T:
        """Run ``action(*args)`` on the protocol under ``_lock``, queue its output, write it.

        ``check_open``: raise ``InvalidState`` before the handshake and
        ``ConnectionClosed`` once closing, as ``send()`` does. ``write``:
        write the outbox after releasing ``_lock``, waiting until ``deadline``
        (never waiting without one); False leaves that to the caller. Any thread.
        """
        with self._lock:
            if check_open:
                self._check_open()
            result = action(*args)
            self._emit()
        if write:
            driver.flush(self, deadline)
        return result

    def _check_open(self) -> None:
        # Lock held.
        state = self.protocol.state
        if state is State.OPEN:
            return
        if state is State.CONNECTING:
            raise InvalidState("the opening handshake has not completed")
        # Closing or closed: raise at once, with the close frames known so far.
        raise self._closed_exception()

    # -- routing the protocol's events (lock held) ----------------------------------

    def _process_events(self) -> None:
        """Route the protocol's events, queue its output, act on closing (lock held)."""
        protocol = self.protocol
        events = protocol.events_received()
        if events and logging_frames():
            for event in events:
                ConnectionLogger(frames_logger, self.logger.extra).debug("< %s", describe(event))
        inbox = self._inbox
        for event in events:
            if isinstance(event, (Text, Binary, Deflated)):
                closing = protocol.state is State.CLOSING
                if not inbox.deliver(event, self.max_queue, closing):
                    self.logger.debug(
                        "dropped a message received after our close frame, past max_queue"
                    )
            elif isinstance(event, (Ping, Pong)):
                if isinstance(event, Pong):
                    latency = self._pings.acknowledge(event.data)
                    if latency is not None:
                        self.latency = latency
                if not inbox.deliver_control(event, self.max_queue):
                    self.logger.debug(
                        "too many pings and pongs waiting to be reported: dropped one"
                    )
            elif isinstance(event, Close):
                self.logger.debug("received close frame: %s %r", event.code, event.reason)
                self._start_close_timer()
            elif isinstance(event, (Request, Response)):
                self._handshake_event = event
            else:
                assert_never(event)
        if protocol.failure_pending:
            if inbox.messages or inbox.failure_waits:
                # Messages came before the error: the application takes them
                # (and may answer them) first; recv() applies it after them.
                inbox.failure_waits = True
            else:
                protocol.fail_pending()
        if self._emit():
            self._flush_later()
        if protocol.state is State.CLOSING:
            self._start_close_timer()
            # Keep reading until the closing handshake ends, full queue or not.
            self._resume_watch()
        if protocol.should_close_transport:
            self._close_when_flushed()
        # Waiters wait for the transport to close, which _close_socket() announces:
        # nothing to wake them for here (a wake-up per ping would cost a GIL hand-off).

    # -- handing the socket between a reading thread and the reactor (lock held) ------

    def _resume_watch(self, later: bool = False) -> None:
        """The reactor reads again, unless a thread reads or the inbox is full (lock held)."""
        if not self._reader_thread and (
            self._inbox.has_room(self.max_queue, self._queue_low)
            or self.protocol.state is not State.OPEN
        ):
            reader.watch(self, later)

    def _expect_from_reactor(self) -> None:
        """A thread waits for what only the reactor can read (a pong, a close): watch now.

        Upgrades a deferred hand-off (``watch_read_later``) so that the answer
        doesn't wait for the reactor's next tick (lock held).
        """
        if self._watched and self._watch_later:
            reader.watch(self)

    def _on_readable(self) -> None:
        """Reactor thread: bytes wait (in the socket or the core); no thread in ``recv()``.

        Never waits for ``_lock``: if a thread holds it, back in
        ``reader.LOCK_RETRY`` seconds (not at the next turn: see there).
        """
        if not self._lock.acquire(blocking=False):
            reactor.call_later(reader.LOCK_RETRY, self._on_readable)
            return
        try:
            if not self._watched:
                return  # a recv() took over meanwhile
            self._watched = False
            reader.read_available(self)
            self._resume_watch()
        finally:
            self._lock.release()

    def start_background(self, recv_next: bool = False) -> None:
        """After the handshake: let the reactor read the socket and run keepalive.

        For server.py, client.py and wsgi.py, in the thread that did the
        handshake. ``recv_next``: this thread will most likely call ``recv()``
        next (a server's handler), so the reactor's watch is deferred like
        between two ``recv()`` calls, which costs no system call if it does.
        """
        with self._lock:
            self._reader_thread = False
            self._resume_watch(later=recv_next)
            if self.ping_interval is not None and self._transport < TransportState.CLOSED:
                # Spread: connections opened together don't ping (and wake) together.
                self._pings.keepalive_timer = reactor.call_later(
                    first_ping_delay(self.ping_interval), self._on_keepalive
                )

    # -- keepalive (reactor thread) ------------------------------------------------

    def _on_keepalive(self) -> None:
        """Reactor thread: ping the peer if it has been silent for ``ping_interval``."""
        if self._drive(driver.keepalive_turn, self, check_open=False, write=False):
            self.logger.debug("keepalive ping sent")
            driver.flush(self, None)

    def _on_ping_timeout(self, pending: PendingPing) -> None:
        """Reactor thread: the keepalive ping got no pong within ``ping_timeout``."""
        with self._lock:
            self._pings.pong_timer = None
            self._pings.keepalive = None
            if pending.done() or self._transport >= TransportState.CLOSED:
                return
        self.logger.info("keepalive: no pong within %ss, closing with 1011", self.ping_timeout)
        self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _expect_pong(self) -> None:
        """A thread waits for a pong (``PendingPing.wait()``): the reactor must read now."""
        with self._lock:
            self._expect_from_reactor()

    # -- closing (lock held unless said) --------------------------------------------

    def _is_closed(self) -> bool:
        return self._transport >= TransportState.CLOSED

    def _on_eof(self, lost: BaseException | None = None) -> None:
        """The peer's EOF, or an error that ends the connection, came (lock held)."""
        if lost is not None:
            self._lost = lost
        self._transport = max(self._transport, TransportState.PEER_CLOSED)
        self.protocol.receive_eof()

    def _flush_later(self) -> None:
        """Have the reactor write the outbox when the socket is writable (any lock)."""
        if self._transport < TransportState.CLOSED:
            reactor.watch_write(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        """Reactor thread: the socket can take more bytes."""
        self._flush_scheduled = False
        driver.flush(self, None)

    def _close_when_flushed(self) -> None:
        """Close TCP once the outbox is written, or at the close deadline."""
        if self._transport is TransportState.OPEN:
            self._transport = TransportState.DRAINING
        if not self._outbox.chunks:
            self._shutdown_write()
        else:
            self._flush_later()

    def _shutdown_write(self) -> None:
        """Send FIN, then close once the peer's EOF arrives.

        Closing at once with unread input would make the kernel send a reset,
        which can destroy our close frame before the peer reads it.
        """
        if self._transport >= TransportState.PEER_CLOSED:
            self._close_socket()
            return
        if self._transport < TransportState.WRITE_SHUT:
            self._transport = TransportState.WRITE_SHUT
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_WR)
            self._start_close_timer()
        self._resume_watch()  # read on until the peer's EOF

    def _start_close_timer(self) -> None:
        # The closing deadline holds on its own, keepalive or not.
        if (
            self._close_timer is None
            and self.close_timeout is not None
            and self._transport < TransportState.CLOSED
        ):
            self._close_timer = reactor.call_later(self.close_timeout, self._on_close_timeout)

    def _on_close_timeout(self) -> None:
        """Reactor thread: the closing handshake took longer than ``close_timeout``."""
        with self._lock:
            if self._transport < TransportState.CLOSED:
                self.logger.debug("closing handshake timed out: closing TCP")
                self._close_socket()

    def _abort(self) -> None:
        """Close the TCP connection now, without a closing handshake (any thread)."""
        with self._lock:
            self._close_socket()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: send a close frame if possible and close TCP at once.

        Any thread but the writer's (it writes the close frame).
        """
        self._drive(driver.fail_protocol, self, code, reason, check_open=False)
        with self._lock:
            self._close_socket()

    def _close_socket(self) -> None:
        """Close the TCP connection now and wake every waiting thread (lock held).

        The one close path: every other way of closing ends here.
        """
        if self._transport >= TransportState.CLOSED:
            return
        self._transport = TransportState.CLOSED
        # Last chance to learn the addresses: the descriptor may close below.
        if self._remote_address is _UNKNOWN or self._local_address is _UNKNOWN:
            self._learn_addresses()
        reactor.forget(self._fd)
        self._watched = False  # the reactor forgot the socket
        self._parse_held = False
        if self._close_timer is not None:
            self._close_timer.cancel()
            # A timer holds a bound method of this connection: dropping it breaks
            # the cycle, so that the connection (and its zlib state, 300 KiB with
            # permessage-deflate) is freed at once, not at the next full collection.
            self._close_timer = None
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self._release_socket_if_unused()
        self.protocol.receive_eof()
        self._pings.drop()
        self._deferred = None
        self._deferred_bytes = 0
        self.protocol.events_received()  # nothing more is delivered
        self.protocol.data_to_send()
        self._changed.notify_all()
        callbacks, self._close_callbacks = self._close_callbacks, None
        for callback in callbacks or ():
            # Application code: never on the reactor (see worker.py).
            worker.call_soon(functools.partial(callback, self))
        self.logger.debug(
            "connection closed: code %s reason %r",
            self.protocol.close_code,
            self.protocol.close_reason,
        )

    def _release_socket_if_unused(self) -> None:
        # The descriptor is closed once no thread waits on it.
        if self._transport is TransportState.CLOSED and not self._io_users:
            self._transport = TransportState.RELEASED
            self.socket.close()

    def _closed_exception(self) -> ConnectionClosed:
        exc = self.protocol.close_exc()
        if exc.__cause__ is None and self._lost is not None:
            exc.__cause__ = self._lost
        return exc
