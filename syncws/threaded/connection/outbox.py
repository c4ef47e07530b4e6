"""The outbox: bytes queued for the peer, in order, and the system call that writes them.

A leaf part of a connection (see ``core.py``): it takes no lock, calls
nothing back and knows nothing of the connection; the core calls it and acts
on what it reports.

What it holds: ``chunks`` (bytes to write, in order) and two counters,
``queued`` (bytes ever appended) and ``written`` (bytes ever handed to the
kernel), whose difference is the backlog (``buffered_amount``). The core
appends under its connection lock; it writes under its write lock, so one
thread writes at a time and owns the front of ``chunks`` and ``written``,
while other threads only append. That relies on single list operations being
atomic: true under the GIL, and on free-threaded CPython, where each list
locks itself per operation. Any thread may read ``backlog()``.

``write()`` makes one system call and reports what happened: ``DRAINED``
(nothing left), ``PARTIAL`` (more to write now), ``BLOCKED`` (the socket is
full: wait, or leave it to the background thread). A lost connection raises
the ``OSError``; the core then drops the rest (``clear()``). Many chunks go
in one call (``gather.py``: ``sendmsg``, or one joined ``send`` where there is
none); with TLS one chunk at a time, at most 1 MiB, which the core writes
under its connection lock since the reader shares the TLS object.
"""

from __future__ import annotations

import enum
import socket
import ssl

from ..runtime.gather import send_chunks

__all__ = ["Outbox", "Wrote"]

# Large writes are split so TLS never sees a huge buffer at once.
_SEND_CHUNK = 1024 * 1024

_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError)


class Wrote(enum.Enum):
    """What one ``Outbox.write()`` did."""

    #: The outbox is empty.
    DRAINED = 0
    #: Some bytes went out and more wait: call again.
    PARTIAL = 1
    #: The socket takes no more for now.
    BLOCKED = 2


class Outbox:
    """Bytes waiting for the peer, and the counts of bytes queued and written.

    Called by the connection's core only: ``append`` by a thread holding the
    connection lock, ``write`` and ``clear`` by the thread holding the write
    lock, ``backlog`` by any thread.
    """

    __slots__ = ("chunks", "queued", "written")

    def __init__(self) -> None:
        self.chunks: list[bytes | memoryview] = []
        self.queued = 0
        self.written = 0

    def backlog(self) -> int:
        """Bytes queued and not yet handed to the kernel (any thread)."""
        return self.queued - self.written

    def append(self, chunks: list[bytes]) -> None:
        """Queue ``chunks`` behind what waits (connection lock held)."""
        self.chunks.extend(chunks)
        self.queued += sum(map(len, chunks))

    def append_sized(self, chunks: list[bytes], size: int) -> None:
        """``append`` for chunks whose total size the caller knows (connection lock held)."""
        self.chunks.extend(chunks)
        self.queued += size

    def append_one(self, chunk: bytes) -> None:
        """Queue one chunk behind what waits (connection lock held)."""
        self.chunks.append(chunk)
        self.queued += len(chunk)

    def clear(self) -> None:
        """Drop what waits: the connection is closed or lost (write lock held)."""
        self.chunks.clear()

    def write(self, sock: socket.socket, tls: bool, held: bool = True) -> Wrote:
        """Hand the front of the outbox to the kernel in one call (write lock held).

        ``held``: see ``send_chunks``.

        Raises:
            OSError: the connection is lost (not a full socket: that is ``BLOCKED``).
        """
        chunks = self.chunks
        try:
            # TLS: one chunk of at most 1 MiB; else many chunks in one call.
            sent = sock.send(chunks[0][:_SEND_CHUNK]) if tls else send_chunks(sock, chunks, held)
        except _WOULD_BLOCK:
            return Wrote.BLOCKED
        self.written += sent
        # Other threads only append: the front is ours.
        done = 0
        while sent and sent >= len(chunks[done]):
            sent -= len(chunks[done])
            done += 1
        del chunks[:done]
        if sent:
            chunks[0] = memoryview(chunks[0])[sent:]
        return Wrote.PARTIAL if chunks else Wrote.DRAINED
