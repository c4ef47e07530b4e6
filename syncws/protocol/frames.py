"""Frames as RFC 6455 section 5.2 lays them out, and extension hooks on them."""

from __future__ import annotations

import dataclasses
import enum

__all__ = ["CONTROL_OPCODES", "DATA_OPCODES", "Frame", "Opcode"]


class Opcode(enum.IntEnum):
    """Frame opcodes. Others (3-7, 11-15) are reserved and rejected."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})


@dataclasses.dataclass(slots=True)
class Frame:
    """One WebSocket frame, unmasked.

    ``payload`` is the application data after unmasking (and, once extensions
    ran, after decompression). The ``rsv`` bits are those on the wire; an
    extension that consumes a bit clears it.
    """

    opcode: Opcode
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False
