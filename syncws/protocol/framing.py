"""Encoding frames into bytes, and the payload of close frames.

Decoding lives in ``connection.py``, next to the rules it enforces while it
reads the header, so a bad frame fails before its payload is buffered.
"""

from __future__ import annotations

import struct

from ..exceptions import InvalidPayload, ProtocolError
from .close_codes import CloseCode, is_valid_on_wire
from .masking import apply_mask

__all__ = [
    "MAX_CLOSE_REASON",
    "MAX_CONTROL_PAYLOAD",
    "encode_close_payload",
    "encode_frame",
    "parse_close_payload",
]

#: Control frames carry at most 125 bytes (RFC 6455 5.5).
MAX_CONTROL_PAYLOAD = 125
#: A close reason leaves 2 of those bytes for the code.
MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2

# Payloads up to this size are joined with their header into one bytes
# object: one allocation beats handing two objects to the socket. Larger ones
# stay separate so the payload is never copied just to prepend a header.
_JOIN_LIMIT = 16384

_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> list[bytes]:
    """Encode one frame as the bytes to write, in order (one or two objects).

    ``mask`` is the 4-byte masking key: a client passes one for every frame, a
    server passes ``None``.
    """
    first = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    length = len(payload)
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = _PACK_16(first, mask_bit | 126, length)
    else:
        header = _PACK_64(first, mask_bit | 127, length)
    if mask is not None:
        header += mask
        payload = apply_mask(payload, mask)
    if length <= _JOIN_LIMIT:
        return [header + payload]
    return [header, payload]


def encode_close_payload(code: int | None, reason: str) -> bytes:
    """Build a close frame's payload; ``code=None`` sends an empty one.

    Raise ``ValueError`` for a code that may not appear on the wire, a reason
    without a code, or a reason longer than 123 bytes in UTF-8.
    """
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    if not is_valid_on_wire(code):
        raise ValueError(
            f"close code {code} may not be sent: use 1000-1003, 1007-1014 or 3000-4999"
        )
    encoded = reason.encode()
    if len(encoded) > MAX_CLOSE_REASON:
        raise ValueError(
            f"close reason is {len(encoded)} bytes in UTF-8; the limit is {MAX_CLOSE_REASON}"
        )
    return code.to_bytes(2, "big") + encoded


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Read a received close frame's code and reason; 1005 when it carried none.

    Raise ``ProtocolError`` for a one-byte payload or a code not allowed on the
    wire, and ``InvalidPayload`` for a reason that is not UTF-8.
    """
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise ProtocolError("close frame payload of 1 byte: a close code takes 2")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_on_wire(code):
        raise ProtocolError(f"close code {code} is not allowed in a close frame")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError as exc:
        raise InvalidPayload(f"close reason is not valid UTF-8: {exc.reason}") from None
    return code, reason


def truncate_reason(reason: str) -> str:
    """Cut ``reason`` so that it fits in a close frame, on a character boundary."""
    encoded = reason.encode()
    if len(encoded) <= MAX_CLOSE_REASON:
        return reason
    return encoded[: MAX_CLOSE_REASON - 3].decode(errors="ignore") + "..."
