"""What the interop tests share: the messages they exchange, a recording echo
handler, reading a child process's output with a deadline, and skipping (never
in CI) when a peer isn't installed.

The messages are generated the same way here, in the browser's test page
(``harness.html``) and in the Node peer (``node/peer.mjs``), so each side can
check what the other sent without shipping a mebibyte through a pipe.
"""

from __future__ import annotations

import functools
import os
import queue
import select
import time
from typing import IO

import pytest

from syncws import ConnectionClosed, ServerConnection

#: Generous bound on any wait; the tests synchronize on events, this only stops hangs.
WAIT = 10.0

MIB = 1 << 20

#: 32 bytes of UTF-8 with characters of 1, 2, 3 and 4 bytes (the last one is a
#: surrogate pair in JavaScript).
TEXT_UNIT = "syncws ⇄ ws, grüße 🎉 ok! "
assert len(TEXT_UNIT.encode()) == 32

#: (size in bytes, kind) of the messages every echo test sends: empty ones, small
#: ones, and a mebibyte (the default ``max_size`` of syncws, to the byte).
MESSAGES = [
    (0, "text"),
    (0, "binary"),
    (32, "text"),
    (100, "binary"),
    (MIB, "text"),
    (MIB, "binary"),
]


def text_message(size: int) -> str:
    """A text message of ``size`` bytes of UTF-8 (a multiple of 32)."""
    assert size % len(TEXT_UNIT.encode()) == 0
    return TEXT_UNIT * (size // 32)


@functools.cache
def binary_message(size: int) -> bytes:
    """A binary message of ``size`` bytes that deflate compresses only somewhat."""
    return bytes((i * 2654435761 >> 13) & 0xFF for i in range(size))


def message(size: int, kind: str) -> str | bytes:
    return text_message(size) if kind == "text" else binary_message(size)


def require(found: bool, what: str, hint: str) -> None:
    """Skip the test if ``what`` is missing on this machine; in CI, fail instead."""
    if found:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing: .ci/run installs it ({hint})")
    pytest.skip(f"{what} is not installed ({hint})")


class EchoRecorder:
    """An echo handler that tells the test what it received and how each connection ended.

    ``connections`` gets each connection as it opens, ``received`` every message,
    ``closed`` each connection's ``(close_code, close_reason)`` once it is closed
    (the peer's code when the peer closed first).
    """

    def __init__(self) -> None:
        self.connections: queue.Queue[ServerConnection] = queue.Queue()
        self.received: queue.Queue[str | bytes] = queue.Queue()
        self.closed: queue.Queue[tuple[int | None, str | None]] = queue.Queue()

    def __call__(self, connection: ServerConnection) -> None:
        self.connections.put(connection)
        try:
            for data in connection:
                self.received.put(data)
                connection.send(data)
        except ConnectionClosed:
            pass
        finally:
            connection.wait_closed(WAIT)
            self.closed.put((connection.close_code, connection.close_reason))


class LineReader:
    """Lines from a child process's pipe, each wait bounded (``select()``, no thread)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._fd = stream.fileno()
        self._buffer = b""
        self._eof = False

    def readline(self, timeout: float = WAIT) -> str | None:
        """The next line without its newline; ``None`` at the end of the output."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            if self._eof:
                rest, self._buffer = self._buffer, b""
                return rest.decode() if rest else None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete line within {timeout} s")
            readable, _, _ = select.select([self._fd], [], [], remaining)
            if readable:
                chunk = os.read(self._fd, 65536)
                self._eof = not chunk
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()
