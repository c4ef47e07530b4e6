"""The socket's life: one ``TransportState`` and the one path that closes TCP.

What it guards: the socket, its descriptor, and ``_transport`` (how far
closing got: see ``TransportState``), plus the close timer, the close
callbacks and the error that lost the connection. This is the base of the
connection's parts (``transport`` <- ``outbox`` <- ``driver`` <- ``inbox`` <-
``reader`` <- ``keepalive`` <- ``connection``); each part declares the slots
it owns.

Locks. ``_lock`` (a plain ``threading.Lock``, one per connection) guards the
``Protocol`` object and the fields of every part unless a part says
otherwise; it is never held while waiting for the network (sockets are
non-blocking; waits happen in ``poll`` outside it). ``_changed`` is a
condition variable on ``_lock``. Lock order, outermost first:
``_send_mutex`` (driver.py) -> ``_write_lock`` (outbox.py) -> ``_lock`` ->
the reactor's own lock (every ``reactor.*`` call may happen under ``_lock``).
``_transport`` changes only under ``_lock``; a few places read it without
(``_flush_later``, the writer): one attribute read, atomic.

Closing. Every way a connection ends (``close()``, a close frame, the peer's
EOF, a write error, the close timer, keepalive, ``_abort``) ends in
``_close_socket``, under ``_lock``: it shuts TCP down, tells the reactor to
forget the descriptor, lets every part drop what it holds
(``_drop_on_close``), wakes waiters and hands the close callbacks to the
callbacks thread (``worker.py``: never the reactor, since they may block). The
descriptor itself is closed once no thread polls it (``_io_users``).

Reactor thread: ``_on_close_timeout``; ``_close_socket`` runs on whichever
thread closes, the reactor included.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import socket
import ssl
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from ..exceptions import ConnectionClosed
from ..protocol.connection import Protocol
from .changed import Changed
from .reactor import Timer, reactor
from .tls_in_tls import TLSInTLS
from .worker import worker

__all__ = ["Transport", "TransportState"]

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


class TransportState(enum.IntEnum):
    """How far the TCP connection got towards closed; it only moves forward.

    OPEN -> DRAINING (``_close_when_flushed``: we close) -> WRITE_SHUT (the
    outbox is written: FIN sent) -> CLOSED. The peer's EOF (or a write error)
    moves OPEN, DRAINING or WRITE_SHUT to PEER_CLOSED, which closes once the
    outbox is written. ``_close_socket`` moves any state to CLOSED; the
    descriptor is closed (RELEASED) once no thread polls it.
    """

    #: Both directions open.
    OPEN = 0
    #: We close: write what is queued, then send FIN.
    DRAINING = 1
    #: FIN sent; reading on until the peer's EOF (bounded by ``close_timeout``).
    WRITE_SHUT = 2
    #: The peer's EOF (or a write error) came: close once the outbox is written.
    PEER_CLOSED = 3
    #: Shut down and forgotten by the reactor; the descriptor stays open while a thread polls it.
    CLOSED = 4
    #: The descriptor is closed.
    RELEASED = 5


class Transport:
    """The socket and its state; the base of ``Connection``'s parts."""

    __slots__ = (
        "_base_logger",
        "_changed",
        "_close_callbacks",
        "_close_timer",
        "_fd",
        "_id",
        "_io_users",
        "_local_address",
        "_lock",
        "_lost",
        "_remote_address",
        "_tls",
        "_transport",
        "close_timeout",
        "protocol",
        "socket",
    )

    socket: _Socket
    protocol: Protocol
    close_timeout: float | None
    # Made on first use (see the properties): a server opening a connection
    # spends no system call and no random bytes on them.
    _id: uuid.UUID | None
    _remote_address: Any
    _local_address: Any
    _base_logger: logging.Logger
    _fd: int
    _tls: bool
    # Guards the protocol and the fields of every part unless they say otherwise.
    _lock: threading.Lock
    # Tells threads waiting under _lock that the connection closed (or other news).
    _changed: Changed
    # Under _lock; read without it in a few places (one attribute read).
    _transport: TransportState
    # Under _lock: threads polling the descriptor outside _lock; it is closed when 0.
    _io_users: int
    # Under _lock: the OSError that lost the connection, if any (the cause of ConnectionClosed).
    _lost: BaseException | None
    # Under _lock.
    _close_timer: Timer | None
    _close_callbacks: list[Callable[[Any], None]]

    if TYPE_CHECKING:

        @property
        def logger(self) -> logging.LoggerAdapter[logging.Logger]: ...

    def _setup_transport(
        self,
        sock: _Socket,
        protocol: Protocol,
        close_timeout: float | None,
        logger: logging.Logger | None,
    ) -> None:
        self.socket = sock
        self.protocol = protocol
        self.close_timeout = close_timeout
        self._id = None
        self._remote_address = self._local_address = _UNKNOWN
        self._base_logger = logger or logging.getLogger("syncws")
        self._fd = sock.fileno()
        self._tls = isinstance(sock, (ssl.SSLSocket, TLSInTLS))
        self._lock = threading.Lock()
        self._changed = Changed(self._lock)
        self._transport = TransportState.OPEN
        self._io_users = 0
        self._lost = None
        self._close_timer = None
        self._close_callbacks = []

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

    def _is_closed(self) -> bool:
        return self._transport >= TransportState.CLOSED

    def _on_eof(self, lost: BaseException | None = None) -> None:
        """The peer's EOF, or an error that ends the connection, came (lock held)."""
        if lost is not None:
            self._lost = lost
        self._transport = max(self._transport, TransportState.PEER_CLOSED)
        self.protocol.receive_eof()

    def _start_close_timer(self) -> None:
        # Lock held. The closing deadline holds on its own, keepalive or not.
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
        self._drop_on_close()
        self.protocol.events_received()  # nothing more is delivered
        self.protocol.data_to_send()
        self._changed.notify_all()
        for callback in self._close_callbacks:
            # Application code: never on the reactor (see worker.py).
            worker.call_soon(functools.partial(callback, self))
        self._close_callbacks.clear()
        self.logger.debug(
            "connection closed: code %s reason %r",
            self.protocol.close_code,
            self.protocol.close_reason,
        )

    def _drop_on_close(self) -> None:
        """Each part drops what it holds for an open connection (lock held, at close)."""

    def _release_socket_if_unused(self) -> None:
        # Lock held: the descriptor is closed once no thread waits on it.
        if self._transport is TransportState.CLOSED and not self._io_users:
            self._transport = TransportState.RELEASED
            self.socket.close()

    def _closed_exception(self) -> ConnectionClosed:
        exc = self.protocol.close_exc()
        if exc.__cause__ is None and self._lost is not None:
            exc.__cause__ = self._lost
        return exc
