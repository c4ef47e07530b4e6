"""The outbox and the writer: bytes queued for the peer, written in order.

What it guards: ``_outbox`` (chunks of bytes to write, in order), the byte
counts whose difference is the backlog (``buffered_amount``), and the end of
writing (FIN once the outbox is written, when closing).

Locks. Bytes are appended under ``_lock`` (``_queue``, called only through
the driver's ``_emit`` and ``_drive``) and counted in ``_queued_bytes``
(under ``_lock``). They are written under ``_write_lock`` by whichever thread
gets there first: a sender with a deadline (it may wait, see ``poller.py``), or the
reactor, which never waits. The writer owns the front of ``_outbox`` and
``_written_bytes`` (under ``_write_lock``); other threads only append. That
relies on single list operations being atomic: true under the GIL, and on
free-threaded CPython, where each list locks itself per operation. The
writer takes ``_lock`` briefly inside ``_write_lock`` (TLS writes, errors,
the FIN): the order is ``_write_lock`` -> ``_lock``, never the reverse.

A write blocked on a peer that doesn't read holds ``_write_lock`` only, so
reading, pong replies, keepalive and ``close()`` go on. Pings that arrive
while the backlog is over ``write_limit`` are answered as the writer brings
it back under (``_answer_owed_ping``, driver.py): one pong, for the latest.

Reactor thread: ``_on_writable`` (the socket can take more bytes).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from typing import TYPE_CHECKING

from .deadline import Deadline
from .gather import send_chunks
from .poller import SEND_EVENTS, wait_for
from .reactor import reactor
from .transport import Transport, TransportState

__all__ = ["Outbox"]

# Large writes are split so TLS never sees a huge buffer at once.
_SEND_CHUNK = 1024 * 1024


class Outbox(Transport):
    """Queue bytes for the peer and write them without ever blocking a reader."""

    __slots__ = ("_flush_scheduled", "_outbox", "_queued_bytes", "_write_lock", "_written_bytes")

    # Guards the front of _outbox and _written_bytes; taken before _lock, never after.
    _write_lock: threading.Lock
    # Appended under _lock, consumed from the front under _write_lock (atomic list ops).
    _outbox: list[bytes | memoryview]
    # Bytes ever queued (under _lock) and written (under _write_lock): their
    # difference is the backlog, with no lock shared by both sides.
    _queued_bytes: int
    _written_bytes: int
    # Set under _lock when a broadcast asked the reactor to write; the reactor
    # clears it without the lock (a race costs at most one extra watch).
    _flush_scheduled: bool

    if TYPE_CHECKING:

        def _process_events(self) -> None: ...
        def _resume_watch(self, later: bool = False) -> None: ...
        def _answer_owed_ping(self) -> None: ...

    def _setup_outbox(self) -> None:
        self._write_lock = threading.Lock()
        self._outbox = []
        self._queued_bytes = 0
        self._written_bytes = 0
        self._flush_scheduled = False

    def _backlog(self) -> int:
        """Bytes queued and not yet handed to the kernel (any thread)."""
        return self._queued_bytes - self._written_bytes

    def _queue(self, chunks: list[bytes]) -> None:
        """Append bytes to the outbox (lock held; use the driver's ``_emit`` or ``_drive``)."""
        self._outbox.extend(chunks)
        self._queued_bytes += sum(map(len, chunks))

    def _flush(self, deadline: Deadline | None) -> None:
        """Write the outbox; block until it is empty when given a deadline (no lock held).

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
            if self._transport >= TransportState.CLOSED:
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
                else:
                    # Many chunks (a header and its payload, queued broadcasts) go in
                    # one call: sendmsg, or one send where there is none (Windows).
                    sent = send_chunks(self.socket, outbox)
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
                    wait_for(self.socket, SEND_EVENTS, deadline)
                finally:
                    with self._lock:
                        self._io_users -= 1
                        self._release_socket_if_unused()
                continue
            except OSError as exc:
                outbox.clear()
                with self._lock:
                    self._on_eof(exc)
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
            if self.protocol.pong_owed:
                self._answer_owed_ping()  # the backlog went down: maybe below write_limit
        with self._lock:
            if TransportState.DRAINING <= self._transport < TransportState.CLOSED and not outbox:
                self._shutdown_write()
        return True

    def _flush_later(self) -> None:
        """Have the reactor write the outbox when the socket is writable (any lock)."""
        if self._transport < TransportState.CLOSED:
            reactor.watch_write(self._fd, self._on_writable)

    def _write_soon(self) -> None:
        """Have the reactor write the outbox, once per batch of broadcasts (lock held)."""
        if not self._flush_scheduled and self._outbox and self._transport < TransportState.CLOSED:
            self._flush_scheduled = True
            reactor.watch_write(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        """Reactor thread: the socket can take more bytes."""
        self._flush_scheduled = False
        self._flush(None)

    def _close_when_flushed(self) -> None:
        """Close TCP once the outbox is written, or at the close deadline (lock held)."""
        if self._transport is TransportState.OPEN:
            self._transport = TransportState.DRAINING
        if not self._outbox:
            self._shutdown_write()
        else:
            self._flush_later()

    def _shutdown_write(self) -> None:
        """Send FIN, then close once the peer's EOF arrives (lock held).

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
