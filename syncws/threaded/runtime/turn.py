"""The read turn: a process-wide lock taken after a wait for one socket.

A thread in ``recv()`` waits for its socket, then takes the read turn
before it reads and parses (connection/reader.py says why). ``ReadTurn``
is that lock (``acquire``, ``release``, ``locked``, as ``threading.Lock``)
with one more call, ``wait_then_acquire``: the wait, then the lock.

Where the C accelerator ``_turn`` is built (POSIX, with ``epoll``'s wait
for one socket: Linux), the two happen without the GIL in between. When
every peer sends at once, thousands of handler threads return from their
wait at once; with Python's ``poll`` each one needs the GIL just to queue
for the turn, and thousands of threads waiting for the GIL each wake every
5 ms while the thread holding the turn waits among them. Without the GIL
they go from ``poll`` straight to the turn's lock and sleep there; the one
holding the turn asks for the GIL alone. ``SYNCWS_HELD_IO=0`` (the portable
path, see heldio.py) turns it off, as does a missing accelerator: then the
wait is ``poller.wait_for`` and the lock a ``threading.Lock``.

Any thread may call these; a thread releases the turn it took.
"""

from __future__ import annotations

import math
import os
import socket
import threading
from typing import Any, Final

from ..deadline import Deadline
from . import poller

__all__ = ["TURN_IN_C", "ReadTurn"]


def _load_turn() -> Any:
    """The accelerator's ``Turn`` type; None where it isn't built or is turned off."""
    if os.environ.get("SYNCWS_HELD_IO", "") not in ("", "1") or poller.POLLER != "epoll":
        return None
    try:
        from ._turn import Turn  # noqa: PLC0415
    except ImportError:
        return None
    return Turn


# Seconds one wait lasts at most: poll() takes milliseconds in a C int.
_LONGEST_WAIT: Final = int(poller.LONGEST_WAIT)

_Turn = _load_turn()
#: True when the wait and the lock need no GIL in between (the accelerator).
TURN_IN_C: Final = _Turn is not None


class ReadTurn:
    """A lock whose ``wait_then_acquire`` waits for a socket, then takes it."""

    __slots__ = ("_lock", "_wait_then_acquire", "acquire", "locked", "release")

    def __init__(self, in_c: bool = TURN_IN_C) -> None:
        lock: Any = _Turn() if in_c and _Turn is not None else threading.Lock()
        self._lock = lock
        self.acquire = lock.acquire
        self.release = lock.release
        self.locked = lock.locked
        self._wait_then_acquire = getattr(lock, "wait_then_acquire", None)

    def wait_then_acquire(
        self, sock: socket.socket, fd: int, events: int, deadline: Deadline
    ) -> bool:
        """Wait until ``sock`` is ready for ``events``, then take the turn (``fd``: its descriptor).

        True if it is ready; False at the deadline or, off epoll, at the end of
        ``poller.WAKE_SLICE`` (as ``poller.wait_for``). The turn is taken
        whatever happens, an exception included: the caller releases it.
        """
        wait = self._wait_then_acquire
        if wait is None:
            try:
                return poller.wait_for(sock, events, deadline)
            finally:
                self._lock.acquire()
        remaining = deadline.remaining()
        if remaining is None:
            milliseconds = -1
        elif remaining >= _LONGEST_WAIT:
            milliseconds = _LONGEST_WAIT * 1000  # the caller looks at its deadline and waits again
        else:
            milliseconds = math.ceil(remaining * 1000)
        return bool(wait(fd, events, milliseconds))
