"""``Changed``: a small condition variable on a connection's ``_lock``.

What it guards: nothing of its own; it lets threads wait, with the
connection's ``_lock`` held, for a state that another thread changes under
that lock (the connection closed, the transport closed). The waiter list is
itself guarded by that lock: ``_wait`` and ``notify_all`` run with it held.

Threads: any thread may wait; any thread holding the lock notifies (the
reactor does when it reads a close, application threads when they close).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Changed"]


class Changed:
    """A condition variable on a connection's lock: ``wait_for`` and ``notify_all``.

    What ``threading.Condition`` does, in a tenth of its memory: no
    ``__dict__``, and a waiter list only while a thread waits (a server holds
    thousands of idle connections). The lock is a plain ``threading.Lock``.
    """

    __slots__ = ("_lock", "_waiters")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        # Guarded by _lock: one released-on-notify lock per waiting thread.
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
