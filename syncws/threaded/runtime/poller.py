"""Waiting for sockets on every platform: epoll (Linux), poll (macOS, BSD), select (Windows).

Two kinds of waits go through this module:

- ``wait_for(sock, events, deadline)``: the thread inside ``recv()``,
  ``send()`` or a handshake waits for its own socket, alone. Any thread.
- ``make_poller()``: the reactor thread's one-shot watches on many sockets
  (see ``reactor.py``). ``arm``, ``forget`` and ``fired`` are called with the
  reactor's lock held, from any thread; ``wait`` only by the reactor thread.

The mechanism is chosen once, at import: ``epoll`` where it exists (Linux),
else ``poll`` (macOS, the BSDs), else ``select.select`` (Windows, which has
neither). The environment variable ``SYNCWS_POLLER=epoll|poll|select``
forces one: a testing and debugging knob, so that Linux can run the code
paths of macOS (``poll``) and Windows (``select``).

What differs on the portable paths:

- ``poll`` and ``select`` don't see a change made while they wait: the
  reactor wakes itself up after each one (``needs_wakeup``).
- ``select`` watches at most ``SELECT_LIMIT`` sockets per call (512 on
  Windows). Past that the reactor checks the other sockets in turns of
  ``SELECT_SLICE`` seconds. On other systems ``select`` can't watch a
  descriptor numbered ``FD_SETSIZE`` (1024) or more: ``ValueError``.
- Off epoll, a thread that waits alone wakes up every ``WAKE_SLICE`` seconds
  to look at its connection again: another thread closing it shuts the
  socket down, which wakes ``epoll`` on Linux at once but is not documented
  to wake ``select`` on Windows.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import threading
import time
from typing import Final, Protocol

from ..deadline import Deadline
from .errcodes import BAD_DESCRIPTOR
from .heldio import epoll_modify, epoll_register, epoll_unregister

__all__ = [
    "POLLER",
    "POLLERR",
    "POLLHUP",
    "POLLIN",
    "POLLNVAL",
    "POLLOUT",
    "POLLPRI",
    "READABLE",
    "RECV_EVENTS",
    "SEND_EVENTS",
    "WRITABLE",
    "Poller",
    "make_poller",
    "wait_for",
]

# The poll(2) flags, with their usual values where the select module has none
# (Windows). epoll's EPOLLIN... have the same values on Linux.
POLLIN: Final[int] = getattr(select, "POLLIN", 0x001)
POLLPRI: Final[int] = getattr(select, "POLLPRI", 0x002)
POLLOUT: Final[int] = getattr(select, "POLLOUT", 0x004)
POLLERR: Final[int] = getattr(select, "POLLERR", 0x008)
POLLHUP: Final[int] = getattr(select, "POLLHUP", 0x010)
POLLNVAL: Final[int] = getattr(select, "POLLNVAL", 0x020)

#: What ``wait_for`` waits for before a read, and before a write.
RECV_EVENTS: Final[int] = POLLIN | POLLPRI
SEND_EVENTS: Final[int] = POLLOUT
#: Reported events that let a read watch, or a write watch, fire.
#: (POLLNVAL: a descriptor closed while armed, which only poll and select report.)
READABLE: Final[int] = POLLIN | POLLPRI | POLLERR | POLLHUP | POLLNVAL
WRITABLE: Final[int] = POLLOUT | POLLERR | POLLHUP | POLLNVAL

#: The mechanisms, fastest first.
POLLERS: Final = ("epoll", "poll", "select")


def choose(forced: str | None) -> str:
    """The mechanism to use: ``forced`` (``SYNCWS_POLLER``) or the fastest there is.

    Raise ``ValueError`` for a name that isn't one, or that this system lacks.
    """
    if not forced:
        return next(name for name in POLLERS if _available(name))
    name = forced.strip().lower()
    if name not in POLLERS:
        raise ValueError(f"SYNCWS_POLLER={forced!r}: expected one of {', '.join(POLLERS)}")
    if not _available(name):
        raise ValueError(f"SYNCWS_POLLER={forced!r}: this system has no select.{name}")
    return name


def _available(name: str) -> bool:
    # epoll is used on Linux only (where typeshed, and this module, know it).
    return hasattr(select, name) and (name != "epoll" or sys.platform == "linux")


#: The mechanism of this process: "epoll", "poll" or "select".
POLLER: str = choose(os.environ.get("SYNCWS_POLLER"))

#: Off epoll, the longest a thread waits alone before it looks at its connection again.
WAKE_SLICE: float | None = None if POLLER == "epoll" else 0.1

#: Seconds one ``wait_for`` lasts at most (a day): its callers wait again until their deadline.
LONGEST_WAIT: Final = 86_400.0

#: Outside Windows, ``select()`` takes descriptors numbered below this only.
FD_SETSIZE: Final = 1024
#: Sockets one ``select()`` call takes: 512 on Windows (FD_SETSIZE of CPython's build).
SELECT_LIMIT = 512 if sys.platform == "win32" else FD_SETSIZE
#: Past ``SELECT_LIMIT`` sockets, how often the reactor checks those it doesn't wait on.
SELECT_SLICE = 0.05


def _check_select_fd(fd: int) -> None:
    """Outside Windows, select() takes descriptors below FD_SETSIZE only."""
    if sys.platform != "win32" and fd >= FD_SETSIZE:
        raise ValueError(
            f"descriptor {fd} is too large for select() (limit {FD_SETSIZE}); "
            "SYNCWS_POLLER=select is for testing on this system"
        )


# -- one socket, one thread -----------------------------------------------------


def wait_for(sock: socket.socket, events: int, deadline: Deadline) -> bool:
    """Wait until ``sock`` is ready for ``events`` (``RECV_EVENTS``, ``SEND_EVENTS``).

    Return True when it is, False when the deadline passed or ``WAKE_SLICE``
    ran out first: callers look at their state and call again until their
    deadline has passed. Another thread wakes the wait by shutting the socket
    down, which makes it readable and writable at once.
    """
    timeout = deadline.remaining()
    if WAKE_SLICE is not None and (timeout is None or timeout > WAKE_SLICE):
        timeout = WAKE_SLICE
    elif timeout is not None and timeout > LONGEST_WAIT:
        timeout = LONGEST_WAIT  # poll() takes milliseconds in a C int: the caller waits again
    if sys.platform == "win32" or POLLER == "select":
        return _select_one(sock, events, timeout)
    poller = select.poll()
    poller.register(sock, events)
    return bool(poller.poll(None if timeout is None else timeout * 1000))


def _select_one(sock: socket.socket, events: int, timeout: float | None) -> bool:
    fd = sock.fileno()
    _check_select_fd(fd)
    readers = [fd] if events & RECV_EVENTS else []
    writers = [fd] if events & SEND_EVENTS else []
    readable, writable, _ = select.select(readers, writers, [], timeout)
    return bool(readable or writable)


# -- many sockets, the reactor thread ---------------------------------------------


class Poller(Protocol):
    """One-shot readiness notification for the reactor (see ``reactor.py``).

    ``arm(fd, events)`` watches ``fd`` for ``events`` (``READABLE`` and/or
    ``WRITABLE``) until it is reported once by ``wait``; the reactor then
    calls ``fired(fd)`` and arms again what it still wants.
    """

    #: True when ``wait`` doesn't see changes made while it waits.
    needs_wakeup: bool

    def arm(self, fd: int, events: int) -> None: ...

    def forget(self, fd: int) -> None: ...

    def fired(self, fd: int) -> None: ...

    def wait(self, timeout: float | None) -> list[tuple[int, int]]: ...

    def close(self) -> None: ...


def make_poller() -> Poller:
    """A new poller using this process's mechanism (``POLLER``)."""
    if sys.platform == "linux" and POLLER == "epoll":
        return EpollPoller()
    if sys.platform != "win32" and POLLER == "poll":
        return PollPoller()
    return SelectPoller()


if sys.platform == "linux":

    class EpollPoller:
        """Linux: ``EPOLLONESHOT`` disarms in the kernel; changes apply while waiting."""

        needs_wakeup = False

        def __init__(self) -> None:
            self._epoll = select.epoll()
            self._registered: set[int] = set()

        def arm(self, fd: int, events: int) -> None:
            mask = events | select.EPOLLONESHOT
            # The GIL kept (heldio.py): these run under the reactor's lock.
            if fd in self._registered:
                try:
                    epoll_modify(self._epoll, fd, mask)
                except FileNotFoundError:  # the descriptor was closed and reused
                    epoll_register(self._epoll, fd, mask)
            else:
                epoll_register(self._epoll, fd, mask)
                self._registered.add(fd)

        def forget(self, fd: int) -> None:
            if fd in self._registered:
                self._registered.discard(fd)
                with contextlib.suppress(OSError):
                    epoll_unregister(self._epoll, fd)

        def fired(self, fd: int) -> None:
            """Nothing to do: the kernel disarmed it."""

        def wait(self, timeout: float | None) -> list[tuple[int, int]]:
            return self._epoll.poll(-1 if timeout is None else timeout)

        def close(self) -> None:
            self._epoll.close()


if sys.platform != "win32":

    class PollPoller:
        """macOS and the BSDs: ``poll``, one-shot by unregistering what fired."""

        needs_wakeup = True

        def __init__(self) -> None:
            self._poll = select.poll()
            self._registered: set[int] = set()

        def arm(self, fd: int, events: int) -> None:
            self._poll.register(fd, events)  # or modify: register replaces
            self._registered.add(fd)

        def forget(self, fd: int) -> None:
            if fd in self._registered:
                self._registered.discard(fd)
                self._poll.unregister(fd)

        fired = forget

        def wait(self, timeout: float | None) -> list[tuple[int, int]]:
            return self._poll.poll(None if timeout is None else timeout * 1000)

        def close(self) -> None:
            self._registered.clear()


class SelectPoller:
    """Windows: ``select.select`` over the armed sockets, in groups of ``SELECT_LIMIT``.

    The first descriptor armed (the reactor's wake-up socket) stays first, so
    it is always in the group ``wait`` blocks on.
    """

    needs_wakeup = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[int, int] = {}

    def arm(self, fd: int, events: int) -> None:
        _check_select_fd(fd)
        with self._lock:
            self._armed[fd] = events

    def forget(self, fd: int) -> None:
        with self._lock:
            self._armed.pop(fd, None)

    fired = forget

    def close(self) -> None:
        with self._lock:
            self._armed.clear()

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        with self._lock:
            armed = list(self._armed.items())
        if not armed:  # select() with nothing to watch fails on Windows (WSAEINVAL)
            if timeout:
                time.sleep(timeout)
            return []
        limit = SELECT_LIMIT
        groups = [armed[start : start + limit] for start in range(0, len(armed), limit)]
        try:
            ready: list[tuple[int, int]] = []
            for group in groups[1:]:  # the others, without waiting
                ready += _select_group(group, 0.0)
            if ready:
                return ready + _select_group(groups[0], 0.0)
            if len(groups) > 1 and (timeout is None or timeout > SELECT_SLICE):
                timeout = SELECT_SLICE
            return _select_group(groups[0], timeout)
        except (OSError, ValueError) as exc:
            if isinstance(exc, OSError) and exc.errno not in BAD_DESCRIPTOR:
                raise
            return _bad_descriptors(armed)


def _select_group(group: list[tuple[int, int]], timeout: float | None) -> list[tuple[int, int]]:
    readers = [fd for fd, events in group if events & RECV_EVENTS]
    writers = [fd for fd, events in group if events & SEND_EVENTS]
    readable, writable, _ = select.select(readers, writers, [], timeout)
    if not readable and not writable:
        return []
    found: dict[int, int] = dict.fromkeys(readable, POLLIN)
    for fd in writable:
        found[fd] = found.get(fd, 0) | POLLOUT
    return list(found.items())


def _bad_descriptors(armed: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A descriptor was closed while armed: report those that are, as errors.

    Their watches fire, and the reactor disarms them, instead of every later
    ``select()`` failing the same way.
    """
    bad = []
    for fd, _ in armed:
        try:
            select.select([fd], [], [], 0.0)
        except (OSError, ValueError):
            bad.append((fd, POLLNVAL))
    return bad
