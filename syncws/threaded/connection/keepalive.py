"""The ping table: pings waiting for their pong (``PendingPing``), and the keepalive's state.

A leaf part of a connection (see ``core.py``): it takes no lock, calls
nothing back and keeps no reference to the connection. The core calls it
under its connection lock: ``ping()`` and the keepalive timer add pings; the
thread that read a pong (the one in ``recv()``, or the background thread)
acknowledges it; the close path drops the rest. The keepalive's timers are
values the core stores here and cancels through ``drop()``; the timers
themselves (``_on_keepalive``, ``_on_ping_timeout``) are the core's and run
on the background thread.

A ``PendingPing`` is set once, from under the connection lock, through a
``threading.Event`` that any thread may wait on. It is handed to the
application, so it keeps its owner (anything with ``_expect_pong()`` and
``_closed_exception()``: the connection) to wake the background reader and
to raise the right ``ConnectionClosed``.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from typing import Protocol

from ...exceptions import ConcurrencyError, ConnectionClosed
from ..runtime.reactor import Timer

__all__ = ["PendingPing", "PingTable", "first_ping_delay", "keepalive_payload", "later_spread"]

# Where the spread comes from (a test replaces it).
_random = random.random

# Keepalive pings' payloads: a process-wide count from a random start, 4 bytes.
# Not os.urandom per ping: the background thread sends these, and urandom lets
# go of the GIL (getrandom), so each ping would wait for the GIL again in the
# middle of a turn, behind every busy thread, and every connection with it.
_keepalive_ids = itertools.count(int.from_bytes(os.urandom(4), "big"))


def keepalive_payload() -> bytes:
    """Data for a keepalive ping: unique among the pings in flight; no system call."""
    return (next(_keepalive_ids) & 0xFFFFFFFF).to_bytes(4, "big")


def first_ping_delay(interval: float) -> float:
    """When the first keepalive check comes: 0.75 to 1 x ``interval`` after the handshake.

    Connections opened together (a deploy, a reconnect wave) would otherwise
    ping together, and their pongs would wake every reading thread at once.
    """
    return interval * (1.0 - 0.25 * _random())


def later_spread(interval: float) -> float:
    """What a rescheduled keepalive check adds: 0 to 0.25 x ``interval``.

    Later, never earlier, so a check never comes before the peer's silence
    reached ``interval``; a ping thus follows 0.75 to 1.25 x ``interval`` of silence.
    """
    return 0.25 * interval * _random()


class _Owner(Protocol):
    def _expect_pong(self) -> None: ...
    def _closed_exception(self) -> ConnectionClosed: ...


class PendingPing:
    """A ping waiting for its pong; ``wait()`` for it."""

    def __init__(self, owner: _Owner, data: bytes) -> None:
        self.data = data
        self.sent_at = time.monotonic()
        #: The round trip in seconds, once the pong arrived.
        self.latency: float | None = None
        self._owner = owner
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
            self._owner._expect_pong()
        if not self._done.wait(timeout):
            return False
        if self.latency is None:
            raise self._owner._closed_exception()
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
        """True once the pong arrived or the connection closed (any thread)."""
        return self._done.is_set()

    def is_set(self) -> bool:
        """``threading.Event``'s name for ``done()``: websockets' ``ping()`` returns an Event."""
        return self._done.is_set()

    def _acknowledge(self, now: float | None) -> None:
        if now is not None:
            self.latency = now - self.sent_at
        self._done.set()


class PingTable:
    """Pings sent and not yet answered; the keepalive ping and its two timers.

    Its methods are called by the connection's core only, by whichever thread
    holds the connection lock.
    """

    __slots__ = ("keepalive", "keepalive_timer", "pending", "pong_timer")

    def __init__(self) -> None:
        self.pending: dict[bytes, PendingPing] = {}
        #: The keepalive ping waiting for its pong (within ``ping_timeout``), if any.
        self.keepalive: PendingPing | None = None
        self.keepalive_timer: Timer | None = None
        self.pong_timer: Timer | None = None

    def check_new(self, data: bytes) -> None:
        """Raise ``ConcurrencyError`` if a ping with ``data`` still waits for its pong."""
        if data in self.pending:
            raise ConcurrencyError("already waiting for a pong with the same data")

    def add(self, owner: _Owner, data: bytes) -> PendingPing:
        """Remember a ping sent with ``data`` (a keepalive ping's random data replaces any)."""
        pending = self.pending[data] = PendingPing(owner, data)
        return pending

    def acknowledge(self, data: bytes) -> float | None:
        """A pong with ``data`` arrived: the round trip of its ping, or None if none waited.

        A pong acknowledges its ping and every ping sent before it. When that
        settles the keepalive ping, its pong timer is cancelled.
        """
        if data not in self.pending:
            return None
        now = time.monotonic()
        latency = 0.0
        for key in list(self.pending):
            pending = self.pending.pop(key)
            pending._acknowledge(now)
            if key == data:
                latency = pending.latency or 0.0
                break
        if self.keepalive is not None and self.keepalive.done():
            # The pong came in time: the next ping may go out at the next interval.
            self.keepalive = None
            if self.pong_timer is not None:
                self.pong_timer.cancel()
                self.pong_timer = None
        return latency

    def drop(self) -> None:
        """The connection closed: cancel the timers, release every waiter."""
        for timer in (self.keepalive_timer, self.pong_timer):
            if timer is not None:
                timer.cancel()
        # Timers hold bound methods of the connection: dropping them frees it at once.
        self.keepalive_timer = self.pong_timer = None
        for pending in self.pending.values():
            pending._acknowledge(None)
        self.pending.clear()
