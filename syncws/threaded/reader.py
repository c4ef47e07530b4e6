"""Reading the socket: bytes into the protocol, events to their places; the hand-off.

What it guards: who reads the socket (``_reader_thread``: a thread in
``recv()`` or the handshake; otherwise the reactor, when ``_watched``),
``_handshake_event``, ``_on_control`` and ``_last_received``. All under
``_lock``.

How a frame arrives. Whoever reads (``_read_available``, lock held) reads
into a pooled buffer, feeds ``protocol.receive_data``, queues the core's
automatic replies (pongs, close frames) through the driver's ``_emit`` and
asks the reactor to write them (``_flush_later``); then ``_process_events``
routes the events: data frames to the inbox, pongs to keepalive, pings and
pongs to the inbox too when ``queue_control_frames()`` asked for them, close
frames start the close timer, and the transport closes once the core says so.

Bounded work. One read turn feeds the parser a budget (the core's
``set_receive_budget``): the messages the inbox still has room for, and
``_TURN_SIZE`` bytes of payload after decompression. Once it is spent the
parser pauses, the rest stays in the core's buffer and in the socket (TCP
pushes back), and nobody reads: ``max_queue`` holds exactly, compressed or
not. Frames held in the core's buffer are parsed at the next turn; the
reactor schedules that turn with ``call_soon`` (``_parse_held``), after the
other connections that are ready, since the socket may have nothing new to
make ``epoll`` fire (``_watch``; deferred by a tick when ``recv()`` returns,
as the thread will likely parse them itself at its next call).

The hand-off. A thread in ``recv()`` takes the socket from the reactor
(``_unwatch``) and reads it itself, waiting in ``poll`` outside ``_lock``;
when it returns, the reactor watches the socket again (``_resume_watch``),
one tick later if the last read emptied it (the thread will likely call
``recv()`` again at once). While ``max_queue`` messages wait, nobody reads.

Reactor thread: ``_on_readable``. Entry points for other modules:
``receive_early_data`` (wsgi), ``close_after_failed_handshake`` (server),
``queue_control_frames`` (callbacks).

The receive buffers are shared by every thread that reads: a reader takes
one for a single read and gives it back at once, so a thousand handler
threads waiting in ``recv()`` hold none. Anonymous memory is resident only
where written, and the last one returned is the next one taken (its pages
are warm). The pool relies on ``list.pop()`` and ``list.append()`` being
atomic (the GIL; free-threaded CPython locks each list per operation).
"""

from __future__ import annotations

import mmap
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..protocol.connection import State
from ..protocol.events import Binary, Close, Ping, Pong, Text
from ..protocol.http11 import Request, Response
from .deadline import Deadline
from .inbox import Inbox
from .logs import ConnectionLogger, describe, frames_logger, logging_frames
from .poller import RECV_EVENTS, wait_for
from .reactor import reactor
from .tls_in_tls import TLSInTLS
from .transport import TransportState

__all__ = ["Reader"]

_RECV_SIZE = 256 * 1024
# Bytes read in one go by the reactor before it lets other connections run.
_READ_BUDGET = 1024 * 1024
# Bytes of payload, after decompression, parsed in one turn (plus one frame).
_TURN_SIZE = 1024 * 1024

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


def _tls_pending(sock: socket.socket) -> int:
    """Bytes TLS holds (TLS in TLS: either layer) but hasn't returned yet: poll can't see them."""
    assert isinstance(sock, (ssl.SSLSocket, TLSInTLS))
    return sock.pending()


class Reader(Inbox):
    """Read the socket, in the application's thread or the reactor's."""

    __slots__ = (
        "_drained",
        "_handshake_event",
        "_last_received",
        "_parse_held",
        "_reader_thread",
        "_watch_later",
        "_watched",
    )

    # All under _lock.
    # True while a thread reads the socket itself (the handshake, recv()).
    _reader_thread: bool
    # The reactor watches the socket for reading (maybe at the next tick: _watch_later).
    _watched: bool
    _watch_later: bool
    # The last read emptied the socket.
    _drained: bool
    # The peer's handshake request or response, once received.
    _handshake_event: Request | Response | None
    # The parser paused on its budget: frames may wait in the core's buffer,
    # where epoll can't see them (or the read budget ran out with bytes held
    # in TLS). While _watched, the reactor will parse (and read) them.
    _parse_held: bool
    # When bytes last arrived (time.monotonic()); keepalive reads it.
    _last_received: float

    if TYPE_CHECKING:
        # Defined by keepalive.py, the part above this one.
        def _acknowledge_pings(self, data: bytes) -> None: ...

    def _setup_reader(self) -> None:
        self._reader_thread = True
        self._watched = False
        self._watch_later = False
        self._drained = True
        self._handshake_event = None
        self._parse_held = False
        self._last_received = time.monotonic()

    # -- entry points for other modules ------------------------------------------------

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
        ``start_background()``.
        """
        with self._lock:
            if self._controls is None:
                self._controls = []

    # -- reading in the application's thread -------------------------------------------

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
        # Frames held in the core's buffer need no poll either.
        poll_first = not self._tls and not deadline.expired() and not self._parse_held
        try:
            while True:
                if poll_first:
                    poll_first = False
                else:
                    self._read_available(_READ_BUDGET)
                    if ready():
                        return
                if self._transport >= TransportState.CLOSED or not self.protocol.receiving:
                    raise self._closed_exception()
                if deadline.expired():
                    raise deadline.timeout_error("waiting for a message")
                if self._parse_held:
                    continue  # more frames wait in the core's buffer: parse them first
                self._io_users += 1
                self._lock.release()
                try:
                    wait_for(self.socket, RECV_EVENTS, deadline)
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
                if (
                    self._transport >= TransportState.CLOSED
                    or self.protocol.state is not State.CONNECTING
                ):
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
                    wait_for(self.socket, RECV_EVENTS, deadline)
                finally:
                    self._lock.acquire()
            return self._handshake_event

    # -- reading, by whoever reads (lock held) -----------------------------------------

    def _read_available(self, budget: int) -> None:
        """Read what the socket has (up to ``budget`` bytes) and process it (lock held).

        The parser's budget bounds the work: see "Bounded work" above.
        """
        if self._transport >= TransportState.CLOSED:
            return
        sock = self.socket
        protocol = self.protocol
        if protocol.state is State.CLOSING:
            # Read on until the closing handshake ends, full queue or not.
            messages = None
        else:
            messages = self.max_queue - self._messages - self._queued_controls()
        protocol.set_receive_budget(messages, _TURN_SIZE)
        # A peer that pings without reading our pongs: its pings wait until it
        # catches up, then the latest is answered (RFC 6455 5.5.3 allows it;
        # the writer's _answer_owed_ping is the other half).
        protocol.answer_pings = self._backlog() <= self.write_limit
        if self._parse_held:
            self._parse_held = False
            protocol.receive_data(b"")
            if self._emit():
                self._flush_later()
        buffer = _take_buffer()
        got = 0
        try:
            while got < budget and not protocol.receive_paused:
                try:
                    size = sock.recv_into(buffer)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    self._drained = True
                    break
                except OSError as exc:
                    self._on_eof(exc)
                    break
                if not size:
                    self._on_eof()
                    break
                got += size
                protocol.answer_pings = self._backlog() <= self.write_limit
                with memoryview(buffer)[:size] as data:
                    protocol.receive_data(data)
                # The writer may have caught up meanwhile, before the ping was owed.
                if protocol.pong_owed and self._backlog() <= self.write_limit:
                    protocol.send_owed_pong()
                if self._emit():  # pongs and close frames: counted before the next read
                    self._flush_later()
                if size < _RECV_SIZE and not (self._tls and _tls_pending(sock)):
                    self._drained = True
                    break  # drained, most likely: poll will tell if not
                self._drained = False  # a full read: more is probably waiting
        finally:
            _give_back_buffer(buffer)
        # Stopped on the budget with bytes held in TLS (TLS inside TLS holds up to
        # a read's worth): poll can't see them, so they wait like held frames.
        self._parse_held = protocol.receive_paused or (
            got >= budget and self._tls and _tls_pending(sock) > 0
        )
        if got:
            self._last_received = time.monotonic()
        self._process_events()

    def _process_events(self) -> None:
        """Route the protocol's events, queue its output, act on closing (lock held)."""
        protocol = self.protocol
        events = protocol.events_received()
        if events and logging_frames():
            for event in events:
                ConnectionLogger(frames_logger, self.logger.extra).debug("< %s", describe(event))
        for event in events:
            if isinstance(event, (Text, Binary)):
                self._deliver(event)
            elif isinstance(event, Pong):
                self._acknowledge_pings(event.data)
                self._deliver_control(event)
            elif isinstance(event, Ping):
                self._deliver_control(event)
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
        if self._emit():
            self._flush_later()
        if protocol.state is State.CLOSING:
            self._start_close_timer()
            # Keep reading until the closing handshake ends, full queue or not.
            self._resume_watch()
        if protocol.should_close_transport:
            self._close_when_flushed()
        self._changed.notify_all()

    # -- handing the socket between the application and the reactor (lock held) --------

    def _watch(self, later: bool = False) -> None:
        """Let the reactor read the socket while no thread is in ``recv()``.

        ``later``: a ``recv()`` is returning, and its thread will likely call
        again at once; arm the reactor only if it doesn't within a tick, which
        saves two system calls per message in a request/response loop. Any
        other caller arms it now (upgrading a deferred watch).
        """
        # Only when the last read emptied the socket, or the core holds frames
        # the thread will parse itself: a peer that streams (more bytes
        # waiting) is better read ahead by the reactor at once. And not while
        # closing: the closing handshake needs reading now.
        held = self._parse_held
        later = later and (self._drained or held) and self.protocol.state is State.OPEN
        if self._transport >= TransportState.CLOSED or (
            self._watched and (later or not self._watch_later)
        ):
            return
        if self._watched and held:
            reactor.unwatch_read(self._fd)  # drop the deferred watch: called below
        self._watched = True
        self._watch_later = later
        if later:
            reactor.watch_read_later(self._fd, self._on_readable, pending=held)
        elif held:
            # Frames wait in the core: epoll can't see them. Parse them at the
            # next turn, after the other connections ready now.
            reactor.call_soon(self._on_readable)
        else:
            reactor.watch_read(self._fd, self._on_readable)

    def _unwatch(self) -> None:
        if self._watched:
            self._watched = False  # a call_soon pending finds nothing to do
            reactor.unwatch_read(self._fd)

    def _resume_watch(self, later: bool = False) -> None:
        if not self._reader_thread and (
            self._messages + self._queued_controls() <= self._queue_low
            or self.protocol.state is not State.OPEN
        ):
            self._watch(later)

    def _expect_from_reactor(self) -> None:
        """A thread waits for what only the reactor can read (a pong, a close): watch now.

        Upgrades a deferred hand-off (``watch_read_later``) so that the answer
        doesn't wait for the reactor's next tick (lock held).
        """
        if self._watched and self._watch_later:
            self._watch()

    def _on_readable(self) -> None:
        """Reactor thread: bytes wait (in the socket or the core); no thread in ``recv()``."""
        with self._lock:
            if not self._watched:
                return  # a recv() took over meanwhile
            self._watched = False
            self._read_available(_READ_BUDGET)
            self._resume_watch()

    def _drop_on_close(self) -> None:
        super()._drop_on_close()
        self._watched = False  # the transport told the reactor to forget the socket
        self._parse_held = False
