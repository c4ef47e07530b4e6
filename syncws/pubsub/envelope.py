"""The bytes a message travels in between processes: a small versioned binary envelope.

Layout: one version byte, one flags byte (bit 0: text), the 16-byte id of the
publishing process, then the payload as it is. No pickle, no JSON, no base64:
decoding can't run code and binary costs nothing extra.
"""

from __future__ import annotations

import dataclasses
import struct

__all__ = ["Envelope", "decode", "encode"]

VERSION = 1
_TEXT = 0x01
_HEADER = struct.Struct("!BB16s")


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """A message as it crossed the broker."""

    origin: bytes
    payload: bytes
    text: bool


def encode(origin: bytes, payload: bytes, *, text: bool) -> bytes:
    """Wrap ``payload`` published by the process ``origin`` (16 bytes)."""
    if len(origin) != 16:
        raise ValueError("origin must be 16 bytes")
    return _HEADER.pack(VERSION, _TEXT if text else 0, origin) + payload


def decode(data: bytes) -> Envelope:
    """Unwrap an envelope; ``ValueError`` for anything this version can't read."""
    if len(data) < _HEADER.size:
        raise ValueError(f"envelope of {len(data)} bytes is too short")
    version, flags, origin = _HEADER.unpack_from(data)
    if version != VERSION:
        raise ValueError(f"envelope version {version} is not supported (this is {VERSION})")
    if flags & ~_TEXT:
        raise ValueError(f"unknown envelope flags {flags:#04x}")
    return Envelope(origin, data[_HEADER.size :], bool(flags & _TEXT))
