"""Framing for the short roads: one whole data frame of under 64 KiB, in and out.

``Protocol.receive_message`` and ``frame_message`` (receiving.py,
sending.py) handle the commonest case, a message of one frame, in a call or
two. ``whole_frame`` and ``encode_whole`` are their framing: the C
accelerator's (``_speedups``) where it was built, else ``py_whole_frame``
and ``py_encode_whole``, which give the same results (``SYNCWS_NO_SPEEDUPS=1``
forces these, as for masking).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

from .masking import apply_mask

__all__ = ["encode_whole", "py_encode_whole", "py_whole_frame", "whole_frame"]

_PACK_16 = struct.Struct("!BBH").pack
# The first byte of a final text or binary frame without reserved bits.
_WHOLE_DATA_FRAME = frozenset((0x81, 0x82))


def py_whole_frame(data: bytes | bytearray | memoryview, masked: bool) -> tuple[int, bytes] | None:
    """``(opcode, payload)`` if ``data`` is exactly one whole frame of the short road; else None.

    That is a final, uncompressed text or binary frame (first byte 0x81 or
    0x82), masked if and only if ``masked``, of under 64 KiB, nothing before
    or after it. The payload comes unmasked. Anything else, well-formed or
    not, is None: the usual road parses it, or fails it.
    """
    size = len(data)
    if size < 2 or data[0] not in _WHOLE_DATA_FRAME:
        return None
    second = data[1]
    if bool(second & 0x80) != bool(masked):
        return None
    length = second & 0x7F
    start = 2
    if length == 127:
        return None
    if length == 126:
        if size < 4:
            return None
        length = (data[2] << 8) | data[3]
        start = 4
    if not masked:
        if start + length != size:
            return None
        return data[0] & 0x0F, bytes(data[start:])
    end = start + 4
    if end + length != size:
        return None
    return data[0] & 0x0F, apply_mask(data[end:], bytes(data[start:end]))


def py_encode_whole(payload: bytes, first: int, mask: bytes | None) -> bytes:
    """A final data frame as one bytes object: ``first`` byte, ``payload`` under 64 KiB.

    ``mask``: the 4-byte masking key (a client's frame), or None.
    """
    length = len(payload)
    if length >= 65536:
        raise ValueError("a whole frame here carries under 64 KiB")
    mask_bit = 0 if mask is None else 0x80
    if length < 126:
        header = bytes((first, mask_bit | length))
    else:
        header = _PACK_16(first, mask_bit | 126, length)
    if mask is None:
        return header + payload
    if len(mask) != 4:
        raise ValueError("the mask must be 4 bytes")
    return header + mask + apply_mask(payload, mask)


def _load_speedups() -> tuple[Any, Any]:
    if os.environ.get("SYNCWS_NO_SPEEDUPS"):
        return None, None
    try:
        from ._speedups import encode_whole as c_encode  # noqa: PLC0415
        from ._speedups import whole_frame as c_whole  # noqa: PLC0415
    except ImportError:
        return None, None
    return c_whole, c_encode


_c_whole_frame, _c_encode_whole = _load_speedups()
whole_frame: Callable[[bytes | bytearray | memoryview, bool], tuple[int, bytes] | None] = (
    _c_whole_frame or py_whole_frame
)
encode_whole: Callable[[bytes, int, bytes | None], bytes] = _c_encode_whole or py_encode_whole
