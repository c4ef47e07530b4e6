"""System calls that can't block, made without letting go of the GIL: one GIL wait per turn.

CPython releases the GIL around every socket and epoll call, even a
non-blocking one that returns within a microsecond or two. While other
threads want the GIL (handlers busy on the CPU), taking it back after each
call can cost a switch interval (5 ms) or several. The background thread
answering a ping did that three times after ``epoll_wait`` returned: read,
write the pong, arm the socket again; a thread blocked in ``recv()``
(websockets.sync's reading thread) once or twice. These calls never wait:
the socket was reported ready, ``MSG_DONTWAIT`` makes the read and the
write non-blocking, and ``epoll_ctl`` returns at once. So on Linux they
go to libc through ``ctypes.PyDLL``, which keeps the GIL: then a ping costs
the background thread one wait for the GIL, when ``epoll_wait`` returns.

- ``recv_into``: the background thread's reads of plain TCP sockets (TLS
  bytes must pass through OpenSSL; ``held=False`` uses ``socket.recv_into``).
  A thread in ``recv()`` reads with Python's call: it holds the read turn
  (reader.py), and letting go of the GIL there lets a crowd of woken handler
  threads queue on that turn, asleep, instead of waking every 5 ms for the
  GIL; with no other thread waiting, Python's call also costs less.
  ``RecvBuffer`` holds an anonymous mmap (resident only where written) and
  its address.
- ``send_small``: a write of one ``bytes`` object of up to ``SMALL_SEND``
  bytes made without waiting (the background thread's pongs and writes,
  automatic replies); a bigger write lets other threads run while the
  kernel copies it, so it stays with ``socket.send``, as a ``send()`` that
  may wait does (gather.py).
- ``epoll_modify``, ``epoll_register``, ``epoll_unregister``: the reactor's
  ``epoll`` changes, which other threads make too, under the reactor's lock:
  a thread that let go of the GIL there would keep the lock while it waits
  for the GIL again, and the background thread would wait behind it.

``SYNCWS_HELD_IO=0``, read once at import, turns them all off (the
portable path: Windows and macOS have no such libc calls to load; nor does
a libc that ctypes can't find). Any thread may call these functions; each
``RecvBuffer`` is used by one thread at a time.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import select
import socket
import sys
from typing import Any, Final

__all__ = [
    "HELD_IO",
    "SMALL_SEND",
    "RecvBuffer",
    "epoll_modify",
    "epoll_register",
    "epoll_unregister",
    "recv_into",
    "send_small",
]

# Linux and the BSDs give MSG_DONTWAIT; MSG_NOSIGNAL is Linux's (Python ignores SIGPIPE anyway).
_MSG_DONTWAIT: Final = getattr(socket, "MSG_DONTWAIT", 0)
_SEND_FLAGS: Final = _MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0)
_EPOLL_CTL_ADD: Final = 1
_EPOLL_CTL_DEL: Final = 2
_EPOLL_CTL_MOD: Final = 3

#: The largest write made with the GIL held.
SMALL_SEND: Final = 16 * 1024


def _load_libc() -> Any:
    """libc, its calls made with the GIL held; None where it can't be (or is turned off)."""
    if os.environ.get("SYNCWS_HELD_IO", "") not in ("", "1"):
        return None
    if sys.platform != "linux":  # pragma: no cover - Linux only
        return None
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        libc.recv, libc.send, libc.epoll_ctl  # noqa: B018  (all three, or none)
    except (OSError, AttributeError):  # pragma: no cover - a libc without them
        return None
    # No argtypes: converting each argument costs more than the call. Sizes
    # and addresses go as ready-made ctypes objects, descriptors and flags as
    # ints, bytes objects as pointers to their data; results are ints.
    return libc


_libc = _load_libc()
_recv = None if _libc is None else _libc.recv
_send = None if _libc is None else _libc.send
_epoll_ctl = None if _libc is None else _libc.epoll_ctl

#: True when these calls keep the GIL (else they are Python's socket and epoll calls).
HELD_IO: Final = _libc is not None


class _EpollData(ctypes.Union):
    _fields_ = (("fd", ctypes.c_int), ("u64", ctypes.c_uint64))


class _EpollEvent(ctypes.Structure):
    # glibc packs struct epoll_event on x86-64 only.
    _pack_ = 1 if platform.machine() in ("x86_64", "AMD64") else 0
    _fields_ = (("events", ctypes.c_uint32), ("data", _EpollData))


def _raise(code: int) -> None:
    if code in (errno.EAGAIN, errno.EWOULDBLOCK):
        raise BlockingIOError(code, os.strerror(code))
    raise OSError(code, os.strerror(code))  # ConnectionResetError, FileNotFoundError...


class RecvBuffer:
    """A receive buffer: an anonymous mmap, and its address when held calls are on."""

    __slots__ = ("_array", "_c_address", "_c_size", "address", "memory", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.memory = mmap.mmap(-1, size)
        self._array: ctypes.Array[ctypes.c_char] | None = None
        self.address = 0
        if _recv is not None:
            # The array exports the mmap's buffer for as long as this object lives:
            # dropping the last reference frees both (mmap.close() would refuse).
            self._array = (ctypes.c_char * size).from_buffer(self.memory)
            self.address = ctypes.addressof(self._array)
        self._c_address = ctypes.c_void_p(self.address)
        self._c_size = ctypes.c_size_t(size)


def recv_into(sock: socket.socket, fd: int, buffer: RecvBuffer, held: bool) -> int:
    """Read what ``sock`` has into ``buffer``, without blocking; the number of bytes (0: EOF).

    ``held``: keep the GIL; for a plain TCP socket only, not TLS (``fd`` is
    its descriptor). Raises
    ``BlockingIOError`` when nothing waits, and ``OSError``
    (``ConnectionResetError``...) as ``socket.recv_into`` does.
    """
    recv = _recv
    if recv is None or not held:
        return sock.recv_into(buffer.memory)
    while True:
        size: int = recv(fd, buffer._c_address, buffer._c_size, _MSG_DONTWAIT)
        if size >= 0:
            return size
        code = ctypes.get_errno()
        if code != errno.EINTR:  # pragma: no branch - a non-blocking call is hardly interrupted
            _raise(code)


def send_small(sock: socket.socket, data: bytes) -> int:
    """Write ``data`` (a plain TCP socket's, ``SMALL_SEND`` bytes at most) without blocking.

    The number of bytes written; ``BlockingIOError`` if the socket is full,
    ``OSError`` as ``socket.send`` raises it.
    """
    send = _send
    if send is None:
        return sock.send(data)
    while True:
        sent: int = send(sock.fileno(), data, ctypes.c_size_t(len(data)), _SEND_FLAGS)
        if sent >= 0:
            return sent
        code = ctypes.get_errno()
        if code != errno.EINTR:  # pragma: no branch - as above
            _raise(code)


def epoll_modify(epoll: select.epoll, fd: int, events: int) -> None:
    """``epoll.modify(fd, events)``; ``FileNotFoundError`` if ``fd`` isn't registered."""
    if _epoll_ctl is None:
        epoll.modify(fd, events)
        return
    _control(epoll, _EPOLL_CTL_MOD, fd, events)


def epoll_register(epoll: select.epoll, fd: int, events: int) -> None:
    """``epoll.register(fd, events)``; ``FileExistsError`` if ``fd`` is registered."""
    if _epoll_ctl is None:
        epoll.register(fd, events)
        return
    _control(epoll, _EPOLL_CTL_ADD, fd, events)


def epoll_unregister(epoll: select.epoll, fd: int) -> None:
    """``epoll.unregister(fd)``; ``FileNotFoundError`` if ``fd`` isn't registered."""
    if _epoll_ctl is None:
        epoll.unregister(fd)
        return
    _control(epoll, _EPOLL_CTL_DEL, fd, 0)


def _control(epoll: select.epoll, operation: int, fd: int, events: int) -> None:
    assert _epoll_ctl is not None
    event = _EpollEvent(events)
    event.data.fd = fd  # what Python's epoll.poll() reports
    if _epoll_ctl(epoll.fileno(), operation, fd, ctypes.byref(event)) < 0:
        _raise(ctypes.get_errno())
