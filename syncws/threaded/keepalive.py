"""Pings: ``PendingPing``, keepalive, and starting the background work after the handshake.

What it guards: the pings waiting for their pong (``_pings``), the
keepalive ping and its timers, and ``latency``. All under ``_lock``;
``PendingPing`` is set once, from under ``_lock``, through a
``threading.Event`` that any thread may wait on.

Who writes a ping or a pong. ``ping()`` and keepalive queue a ping through
the driver's ``_drive``; a pong that answers the peer's ping is queued by the
core itself, taken from it by reader.py (``_emit``) and written by the
reactor (``_flush_later``). A pong received acknowledges its ping and every
ping sent before it (``_acknowledge_pings``, called by reader.py).

Reactor thread: ``_on_keepalive`` (every ``ping_interval`` of silence) and
``_on_ping_timeout`` (no pong within ``ping_timeout``: fail with 1011).
Entry point for other modules: ``start_background`` (server, client, wsgi).
"""

from __future__ import annotations

import functools
import os
import threading
import time

from ..exceptions import ConcurrencyError
from ..protocol.close_codes import CloseCode
from ..protocol.connection import State
from .reactor import Timer, reactor
from .reader import Reader
from .transport import TransportState

__all__ = ["Keepalive", "PendingPing"]


class PendingPing:
    """A ping waiting for its pong; ``wait()`` for it."""

    def __init__(self, connection: Keepalive, data: bytes) -> None:
        self.data = data
        self.sent_at = time.monotonic()
        #: The round trip in seconds, once the pong arrived.
        self.latency: float | None = None
        self._connection = connection
        self._done = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the pong arrives: True, or False if ``timeout`` passed first.

        As ``threading.Event.wait()`` (websockets' ``ping()`` returns an
        Event): ``if not pong.wait(5)`` means "no pong in 5 s". The round trip
        is in ``latency`` once the pong came. Callable from any thread.

        Args:
            timeout: seconds to wait; None waits as long as the connection lives.

        Raises:
            ConnectionClosed: the connection closed first.
        """
        if not self._done.is_set():
            self._connection._expect_pong()
        if not self._done.wait(timeout):
            return False
        if self.latency is None:
            raise self._connection._closed_exception()
        return True

    def round_trip(self, timeout: float | None = None) -> float:
        """Wait for the pong and return the round trip in seconds. Any thread.

        Raises:
            TimeoutError: no pong within ``timeout`` (the connection stays usable).
            ConnectionClosed: the connection closed first.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"no pong within {timeout:g}s")
        assert self.latency is not None
        return self.latency

    def done(self) -> bool:
        """True once the pong arrived or the connection closed."""
        return self._done.is_set()

    def is_set(self) -> bool:
        """``threading.Event``'s name for ``done()``: websockets' ``ping()`` returns an Event."""
        return self._done.is_set()

    def _acknowledge(self, now: float | None) -> None:
        if now is not None:
            self.latency = now - self.sent_at
        self._done.set()


class Keepalive(Reader):
    """Pings, their pongs, and the keepalive timer."""

    __slots__ = (
        "_keepalive_ping",
        "_keepalive_timer",
        "_pings",
        "_pong_timer",
        "latency",
        "ping_interval",
        "ping_timeout",
    )

    # All under _lock.
    _pings: dict[bytes, PendingPing]
    # The keepalive ping waiting for its pong (under ping_timeout), if any.
    _keepalive_ping: PendingPing | None
    _keepalive_timer: Timer | None
    _pong_timer: Timer | None
    latency: float
    ping_interval: float | None
    ping_timeout: float | None

    def _setup_keepalive(self, ping_interval: float | None, ping_timeout: float | None) -> None:
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        #: The last measured round trip of a ping, in seconds.
        self.latency = 0.0
        self._pings = {}
        self._keepalive_ping = None
        self._keepalive_timer = None
        self._pong_timer = None

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
                self._keepalive_timer = reactor.call_later(self.ping_interval, self._on_keepalive)

    _activate = start_background

    def _send_ping(self, data: bytes) -> PendingPing:
        """``ping()``: send a ping with ``data`` and remember it (lock held, connection open)."""
        if data in self._pings:
            raise ConcurrencyError("already waiting for a pong with the same data")
        self._expect_from_reactor()  # the pong may come while no thread reads
        return self._register_ping(data)

    def _register_ping(self, data: bytes) -> PendingPing:
        """Send a ping with ``data`` and remember it (lock held)."""
        pending = PendingPing(self, data)
        self.protocol.send_ping(data)
        self._pings[data] = pending
        return pending

    def _on_keepalive(self) -> None:
        """Reactor thread: ping the peer if it has been silent for ``ping_interval``."""
        if self._drive(self._keepalive_turn, check_open=False, write=False):
            self.logger.debug("keepalive ping sent")
            self._flush(None)

    def _keepalive_turn(self) -> bool:
        # Lock held: True if a ping went out.
        assert self.ping_interval is not None
        if self._transport >= TransportState.CLOSED or self.protocol.state is not State.OPEN:
            return False
        idle = time.monotonic() - self._last_received
        if idle < self.ping_interval or self._keepalive_ping is not None:
            # Heard from lately, or still waiting for the last ping's pong.
            delay = self.ping_interval - idle if idle < self.ping_interval else self.ping_interval
            self._keepalive_timer = reactor.call_later(delay, self._on_keepalive)
            return False
        pending = self._register_ping(os.urandom(4))
        self._keepalive_timer = reactor.call_later(self.ping_interval, self._on_keepalive)
        self._keepalive_ping = pending
        if self.ping_timeout is not None:
            self._pong_timer = reactor.call_later(
                self.ping_timeout, functools.partial(self._on_ping_timeout, pending)
            )
        return True

    def _on_ping_timeout(self, pending: PendingPing) -> None:
        """Reactor thread: the keepalive ping got no pong within ``ping_timeout``."""
        with self._lock:
            self._pong_timer = None
            self._keepalive_ping = None
        if pending.done() or self._transport >= TransportState.CLOSED:
            return
        self.logger.info("keepalive: no pong within %ss, closing with 1011", self.ping_timeout)
        self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _expect_pong(self) -> None:
        """A thread waits for a pong (``PendingPing.wait()``): the reactor must read now."""
        with self._lock:
            self._expect_from_reactor()

    def _acknowledge_pings(self, data: bytes) -> None:
        # Lock held: a pong arrived.
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

    def _drop_on_close(self) -> None:
        super()._drop_on_close()
        for timer in (self._keepalive_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        # Timers hold bound methods: dropping them frees the connection at once.
        self._keepalive_timer = self._pong_timer = None
        for pending in self._pings.values():
            pending._acknowledge(None)
        self._pings.clear()
