"""The read gate: when thousands of threads wait in ``recv()``, wake them a few at a time.

A thread in ``recv()`` waits for its socket in ``poll``, with the GIL
released. When every peer sends at once (a broadcast they all answer, a
reconnect wave), every such thread wakes at once, and each must take the GIL
before it can do anything, even queue for the read turn (``READ_TURN`` in
connection/reader.py). CPython's GIL waiters sleep in timed waits of the
switch interval (5 ms): 19,000 of them are 19,000 x 200 futile wake-ups a
second, all system time, and the process froze for a minute before it
recovered (issue 30). A thread per connection can't avoid being woken; it
can avoid being woken all at once.

So past ``THRESHOLD`` threads waiting in ``recv()`` (below it ``poll`` is
cheapest), a thread that waits arms a one-shot read watch on the reactor
and sleeps on a lock of its own: an untimed futex wait (timed only by its
``recv()`` timeout), not runnable, no GIL. The reactor's one ``epoll_wait``
sees every ready socket; for each, ``ready()`` releases the waiter if fewer
than ``WIDTH`` released threads are still reading, or queues it. A released
thread calls ``done()`` when its read turn is over, which releases the next
one in the queue: at most ``WIDTH`` threads at a time want the GIL to read.

Threads: ``ready`` runs in the reactor thread; ``enter``, ``wait``,
``settle``, ``leave``, ``done`` and ``wake_fd`` in any thread. ``_lock``
guards the queue, the counts and the tickets' states; it is taken under a
connection's lock (``enter``, ``wake_fd``) and before the reactor's (a wait
arms its watch under it), never the other way round. Only with epoll
(Linux): other pollers wake the reactor for every watch change, and
``select`` can't hold thousands of sockets.
"""

from __future__ import annotations

import collections
import enum
import os
import threading

from ..deadline import Deadline
from .poller import POLLER
from .reactor import reactor

__all__ = ["THRESHOLD", "WIDTH", "Ticket", "gate"]

#: Threads waiting in ``recv()`` past which they wait through the gate.
#: ``SYNCWS_GATE_THRESHOLD``, read once at import, changes it: a testing and
#: debugging knob (0 sends every wait through the gate; .ci/portable.sh does).
THRESHOLD = int(os.environ.get("SYNCWS_GATE_THRESHOLD") or 1000)
#: Released threads that may be reading at once.
WIDTH = 8


class _State(enum.Enum):
    WAITING = 1  # the reactor watches its socket
    QUEUED = 2  # its socket is readable; released when a slot frees
    RELEASED = 3  # it may read; it calls done() when its turn is over
    CANCELLED = 4  # its wait timed out before it was released


class Ticket:
    """One wait through the gate: the sleeping thread's lock and where it stands."""

    __slots__ = ("_lock", "_state", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()
        self._lock.acquire()
        self._state = _State.WAITING


class ReadGate:
    """Paces the wake-ups of threads waiting in ``recv()``; see the module's docstring."""

    def __init__(self, threshold: int = THRESHOLD, width: int = WIDTH) -> None:
        self.threshold = threshold
        self.width = width
        self.enabled = POLLER == "epoll"
        self._lock = threading.Lock()
        self._queue: collections.deque[Ticket] = collections.deque()
        self._reading = 0  # released, done() not called yet
        # The ticket of each descriptor waited on through the gate, for wake_fd().
        self._tickets: dict[int, Ticket] = {}
        #: Threads waiting in recv() now, through the gate or in poll.
        self.waiting = 0

    def enter(self, fd: int) -> Ticket | None:
        """A thread starts a ``recv()`` wait: a ticket if it must use the gate, else None."""
        with self._lock:
            self.waiting += 1
            if self.waiting <= self.threshold or not self.enabled:
                return None
            ticket = self._tickets[fd] = Ticket(fd)
            return ticket

    def leave(self) -> None:
        """The wait that ``enter`` counted is over."""
        with self._lock:
            self.waiting -= 1

    def wait(self, ticket: Ticket, deadline: Deadline) -> None:
        """Sleep until the gate releases ``ticket``, or the deadline; then call ``settle``."""
        with self._lock:
            # Armed only while WAITING: a close that woke it first leaves no watch behind.
            if ticket._state is _State.WAITING:
                reactor.watch_read(ticket.fd, lambda: self.ready(ticket))
        timeout = deadline.remaining()
        ticket._lock.acquire(True, -1 if timeout is None else timeout)

    def settle(self, ticket: Ticket) -> bool:
        """After ``wait`` (or an error in it): True if released (``done()`` owed); else cancel."""
        with self._lock:
            del self._tickets[ticket.fd]  # one recv() per connection: its ticket
            state = ticket._state
            if state is _State.RELEASED:
                return True
            if state is _State.QUEUED:
                self._queue.remove(ticket)
            ticket._state = _State.CANCELLED
        if state is _State.WAITING:
            reactor.unwatch_read(ticket.fd)  # if it fires anyway, ready() ignores it
        return False

    def ready(self, ticket: Ticket) -> None:
        """Reactor thread: ``ticket``'s socket is readable. Release it now, or queue it."""
        with self._lock:
            if ticket._state is not _State.WAITING:
                return  # cancelled, or woken by a close
            if self._reading < self.width:
                self._release(ticket)
            else:
                ticket._state = _State.QUEUED
                self._queue.append(ticket)

    def wake_fd(self, fd: int) -> None:
        """The connection of ``fd`` closed: release its waiting thread at once, slot or not.

        Called under the connection's lock, like the wait's ``enter``: a
        thread that entered the gate before the close is found here.
        """
        if not self._tickets:
            return
        with self._lock:
            ticket = self._tickets.get(fd)
            if ticket is None:
                return
            state = ticket._state
            if state is _State.QUEUED:
                self._queue.remove(ticket)
            if state in (_State.WAITING, _State.QUEUED):
                self._release(ticket)
        if state is _State.WAITING:
            reactor.unwatch_read(ticket.fd)  # the watch its wait may have armed

    def done(self) -> None:
        """A released thread's read turn is over: release the next one waiting."""
        with self._lock:
            self._reading -= 1
            queue = self._queue
            while queue and self._reading < self.width:
                self._release(queue.popleft())

    def _release(self, ticket: Ticket) -> None:
        # Lock held.
        ticket._state = _State.RELEASED
        self._reading += 1
        ticket._lock.release()


#: The gate of this process's ``recv()`` waits.
gate = ReadGate()
