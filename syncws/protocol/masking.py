"""XOR masking of frame payloads (RFC 6455 section 5.3), fast in pure Python.

The payload and the repeated 4-byte key are each read as one big integer, XORed
once and written back: the work happens in C inside ``int``, with no Python
loop per byte.
"""

from __future__ import annotations

import os

__all__ = ["MaskSource", "apply_mask"]


def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """Return ``data`` XORed with the 4-byte ``mask`` repeated; masking twice restores it."""
    length = len(data)
    if length == 0:
        return b""
    repeated = mask * ((length + 3) >> 2)
    masked = int.from_bytes(data, "little") ^ int.from_bytes(repeated[:length], "little")
    return masked.to_bytes(length, "little")


class MaskSource:
    """Hands out unpredictable 4-byte masking keys, as RFC 6455 10.3 requires.

    The keys come from ``os.urandom``, read 4 KiB at a time so that a client
    sending many small frames does not make one system call per frame.
    """

    __slots__ = ("_pool", "_position")

    _POOL_SIZE = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._position = self._POOL_SIZE

    def next_mask(self) -> bytes:
        """Return a fresh masking key."""
        position = self._position
        if position >= len(self._pool):
            self._pool = os.urandom(self._POOL_SIZE)
            position = 0
        self._position = position + 4
        return self._pool[position : position + 4]
