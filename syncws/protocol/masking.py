"""XOR masking of frame payloads (RFC 6455 section 5.3).

``apply_mask`` is the C accelerator (``_speedups``) where it was built, else
``py_apply_mask``, which is fast for pure Python: the payload and the
repeated 4-byte key are each read as one big integer, XORed once and written
back, so the work happens in C inside ``int``, with no Python loop per byte.
Both give the same bytes. ``SYNCWS_NO_SPEEDUPS=1`` in the environment forces
the pure-Python path.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["SPEEDUPS", "MaskSource", "apply_mask", "py_apply_mask"]


def py_apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """Return ``data`` XORed with the 4-byte ``mask`` repeated; masking twice restores it."""
    length = len(data)
    if length == 0:
        return b""
    repeated = mask * ((length + 3) >> 2)
    masked = int.from_bytes(data, "little") ^ int.from_bytes(repeated[:length], "little")
    return masked.to_bytes(length, "little")


def _load_speedups() -> Callable[[bytes | bytearray | memoryview, bytes], bytes] | None:
    if os.environ.get("SYNCWS_NO_SPEEDUPS"):
        return None
    try:
        from ._speedups import apply_mask as c_apply_mask  # noqa: PLC0415
    except ImportError:
        return None
    return c_apply_mask


_c_apply_mask = _load_speedups()
#: True when masking runs in the C accelerator.
SPEEDUPS = _c_apply_mask is not None
apply_mask = _c_apply_mask or py_apply_mask


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
