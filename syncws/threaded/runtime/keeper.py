"""Keeping the background thread alive while a connection may close at interpreter exit.

Since Python 3.12 no thread may start once the interpreter exits, and closing
a connection needs the background thread (it writes what the socket can't
take at once, and reads the peer's close frame). The thread exits by itself
when idle, so something that closes connections from an exit hook (a
``WebSocketApp`` run by an event loop, WebSockets handed over by a WSGI
server) holds it: while held, a timer an hour away keeps it from idling out.

``hold()`` and ``release()`` from any thread; the timer runs on the
background thread. Lock order: the keeper's lock, then the reactor's.
"""

from __future__ import annotations

import threading

from .reactor import Timer, reactor

__all__ = ["Keeper", "keeper"]

#: Seconds between the keeper's timer runs (it only re-arms itself).
KEEP_DELAY = 3600.0


class Keeper:
    """Counts the holders; while there is one, a far timer keeps the background thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._timer: Timer | None = None

    def hold(self) -> None:
        """Keep the background thread running until the matching ``release()``."""
        with self._lock:
            self._holders += 1
            if self._timer is None:
                self._timer = reactor.call_later(KEEP_DELAY, self._rearm)

    def release(self) -> None:
        """Let the background thread exit when idle, once no one else holds it."""
        with self._lock:
            self._holders -= 1
            if not self._holders and self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def held(self) -> bool:
        """Whether anyone holds the background thread now (any thread)."""
        with self._lock:
            return self._holders > 0

    def _rearm(self) -> None:
        with self._lock:
            self._timer = None
            if self._holders:
                self._timer = reactor.call_later(KEEP_DELAY, self._rearm)


#: The process's keeper.
keeper = Keeper()
