"""Writing several queued buffers with one system call, with or without ``sendmsg``.

The writer (whichever thread drains a connection's outbox: ``Outbox.write``
in outbox.py, driven by driver.py) hands its queued chunks to ``send_chunks``: a frame
header and its payload, or many broadcast frames, go out in one call.
``socket.sendmsg`` does it without copying where it exists; Windows has no
``sendmsg``, so there the leading chunks are joined, up to ``GATHER_BYTES``,
and sent with ``send``. A chunk of ``GATHER_BYTES`` or more goes out alone,
uncopied. A single small ``bytes`` (a pong, a small message) written
without waiting (``held``: the background thread's writes) goes through
``heldio.send_small``, which keeps the GIL on Linux. Either way the return
value is the number of bytes sent from the front of the queue, in order, so
partial writes are accounted the same way.

``SYNCWS_NO_SENDMSG=1``, read once at import, forces the ``send`` path where
``sendmsg`` exists: a testing and debugging knob (Windows' writer on Linux).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from typing import Final

from .heldio import SMALL_SEND, send_small

__all__ = ["GATHER_BYTES", "MAX_IOV", "USE_SENDMSG", "send_chunks"]

Chunk = bytes | bytearray | memoryview

#: Chunks handed to one ``sendmsg()`` call (Linux accepts up to 1024).
MAX_IOV: Final = 512
#: Without ``sendmsg``: bytes joined into one ``send()`` at most.
GATHER_BYTES: Final = 64 * 1024

#: True when the writer uses ``sendmsg`` (it exists and isn't forced off).
USE_SENDMSG: bool = hasattr(socket.socket, "sendmsg") and os.environ.get(
    "SYNCWS_NO_SENDMSG", ""
) in ("", "0")


def send_chunks(sock: socket.socket, chunks: Sequence[Chunk], held: bool = True) -> int:
    """Send from the front of ``chunks`` (at least one) in one call; bytes sent.

    Raises what ``sock.send`` raises (``BlockingIOError`` on a full
    non-blocking socket). Called by the thread holding the write lock.
    ``held=False``: a single small chunk goes through ``sock.send`` too,
    letting go of the GIL (an application's sender: Python's call costs
    less than the held one when no other thread waits for the GIL).
    """
    if sys.platform != "win32" and USE_SENDMSG and len(chunks) > 1:
        return sock.sendmsg(chunks[:MAX_IOV])
    first = chunks[0]
    if held and len(chunks) == 1 and type(first) is bytes and len(first) <= SMALL_SEND:
        return send_small(sock, first)  # a pong, a small message: the GIL kept (heldio.py)
    if len(chunks) == 1 or len(first) >= GATHER_BYTES:
        return sock.send(first)
    parts: list[Chunk] = []
    room = GATHER_BYTES
    for chunk in chunks[:MAX_IOV]:
        size = len(chunk)
        if size >= room:
            # Top up with the front of a big chunk: its rest goes alone, uncopied.
            parts.append(memoryview(chunk)[:room])
            break
        parts.append(chunk)
        room -= size
    return sock.send(b"".join(parts))
