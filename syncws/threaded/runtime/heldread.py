"""Reading a socket that is ready without letting go of the GIL: one GIL wait per read, not two.

CPython releases the GIL around every socket call, even a non-blocking
``recv_into`` that returns within a microsecond or two. While other threads
want the GIL (handlers busy on the CPU), taking it back after the call can
cost a switch interval (5 ms) or several, and the thread already waited once
for the GIL when its ``epoll_wait`` or ``poll`` returned. Our readers (the
background thread, and a thread in ``recv()`` after its wait) read only
sockets that poll says are ready, and never block in the read: releasing the
GIL for it buys nothing. So on POSIX, ``recv_into`` calls libc's ``recv``
through ``ctypes.PyDLL``, which keeps the GIL, with ``MSG_DONTWAIT``. A ping
that wakes the background thread is then answered after one GIL wait, as by
a thread blocked in ``recv()`` (websockets.sync's reading thread).

``RecvBuffer`` holds an anonymous mmap (resident only where written) and,
when held reads are on, its address for libc. TLS sockets can't be read this
way (the bytes must pass through OpenSSL): their callers pass ``plain=False``
and get ``socket.recv_into``. ``SYNCWS_HELD_READ=0``, read once at import,
turns held reads off (the portable path: Windows has no libc ``recv`` to load).
Any thread may call these functions; each buffer is used by one thread at a time.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import socket
import sys
from collections.abc import Callable
from typing import Final

__all__ = ["HELD_READ", "RecvBuffer", "recv_into"]

# Linux and the BSDs (macOS too) give MSG_DONTWAIT; the plain path is used without it.
_MSG_DONTWAIT: Final = getattr(socket, "MSG_DONTWAIT", 0)

_Recv = Callable[[int, "ctypes.c_void_p", "ctypes.c_size_t", int], int]


def _load_libc_recv() -> _Recv | None:
    """libc's ``recv`` called with the GIL held, or None where it can't be (or is turned off)."""
    if os.environ.get("SYNCWS_HELD_READ", "") not in ("", "1"):
        return None
    if sys.platform == "win32" or not _MSG_DONTWAIT:  # pragma: no cover - not POSIX
        return None
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        function = libc.recv
    except (OSError, AttributeError):  # pragma: no cover - a libc without recv
        return None
    # No argtypes: converting each argument costs more than the call. The
    # buffer's address and size are passed as ready-made ctypes objects, the
    # descriptor and flags as ints; an int result holds -1 and a read's size.
    recv: _Recv = function
    return recv


_libc_recv = _load_libc_recv()

#: True when plain TCP sockets are read with the GIL held.
HELD_READ: Final = _libc_recv is not None


class RecvBuffer:
    """A receive buffer: an anonymous mmap, and its address when held reads are on."""

    __slots__ = ("_array", "_c_address", "_c_size", "address", "memory", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.memory = mmap.mmap(-1, size)
        self._array: ctypes.Array[ctypes.c_char] | None = None
        self.address = 0
        if _libc_recv is not None:
            # The array exports the mmap's buffer for as long as this object lives:
            # dropping the last reference frees both (mmap.close() would refuse).
            self._array = (ctypes.c_char * size).from_buffer(self.memory)
            self.address = ctypes.addressof(self._array)
        self._c_address = ctypes.c_void_p(self.address)
        self._c_size = ctypes.c_size_t(size)


def recv_into(sock: socket.socket, fd: int, buffer: RecvBuffer, plain: bool) -> int:
    """Read what ``sock`` has into ``buffer``, without blocking; the number of bytes (0: EOF).

    ``plain``: a TCP socket, not TLS (``fd`` is its descriptor): read with the
    GIL held where held reads are on. Raises ``BlockingIOError`` when nothing
    waits, and ``OSError`` (``ConnectionResetError``...) as ``socket.recv_into``.
    """
    recv = _libc_recv
    if recv is None or not plain:
        return sock.recv_into(buffer.memory)
    while True:
        size = recv(fd, buffer._c_address, buffer._c_size, _MSG_DONTWAIT)
        if size >= 0:
            return size
        code = ctypes.get_errno()
        if code == errno.EINTR:  # pragma: no cover - a non-blocking call isn't interrupted
            continue
        if code in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise BlockingIOError(code, os.strerror(code))
        raise OSError(code, os.strerror(code))
