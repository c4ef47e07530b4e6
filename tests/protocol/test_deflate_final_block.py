"""permessage-deflate: a peer that ends its messages with a final block (BFINAL=1).

RFC 7692 7.2.3.4 allows it; with ``keep_state=True`` every later message
decompressed to ``b""`` until a new decompressor was started after a final block.
"""

from __future__ import annotations

import os
import zlib

import pytest

from syncws.exceptions import InvalidPayload
from syncws.protocol.deflate import PerMessageDeflate
from syncws.protocol.frames import Frame, Opcode

from .test_deflate import HELLO, decode

# -- a peer that ends its messages with a final block (BFINAL=1, RFC 7692 7.2.3.4) ----


def final_block_message(data: bytes, zdict: bytes = b"") -> bytes:
    """``data`` as a peer compresses it when it finishes each message's deflate stream.

    A new compressor per message (a finished stream can't go on), preset with
    ``zdict``; the stream's end, then an empty block header (``00``) so that the
    ``00 00 ff ff`` the receiver appends makes an empty stored block, as in the RFC.
    """
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=zdict) if zdict else None
    compressor = compressor or zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH) + b"\x00"


@pytest.mark.parametrize("keep_state", [False, True])
def test_messages_after_a_final_block_are_decoded(keep_state: bool) -> None:
    """Every message of a peer that ends each one with BFINAL=1 comes out whole."""
    receiver = PerMessageDeflate(keep_state=keep_state)
    messages = [b"Hello", b"Hello", b"world " * 50, b"", b"again"]
    received = [
        decode(receiver, Frame(Opcode.BINARY, final_block_message(message), rsv1=True))
        for message in messages
    ]
    assert received == messages


@pytest.mark.parametrize("keep_state", [False, True])
def test_a_stream_after_a_final_block_may_refer_to_the_last_message(keep_state: bool) -> None:
    """A peer that presets its next stream with what it sent: references back decode."""
    receiver = PerMessageDeflate(keep_state=keep_state)
    first = os.urandom(1000)
    assert decode(receiver, Frame(Opcode.BINARY, final_block_message(first), rsv1=True)) == first
    second = final_block_message(first, zdict=first)
    assert len(second) < 40  # all back references
    assert decode(receiver, Frame(Opcode.BINARY, second, rsv1=True)) == first


@pytest.mark.parametrize("keep_state", [False, True])
def test_the_rfc_bfinal_example_twice(keep_state: bool) -> None:
    receiver = PerMessageDeflate(keep_state=keep_state)
    payload = bytes.fromhex("f348cdc9c90700 00")
    for _ in range(3):
        assert decode(receiver, Frame(Opcode.TEXT, payload, rsv1=True)) == b"Hello"


@pytest.mark.parametrize("keep_state", [False, True])
def test_final_block_in_a_fragment_then_the_tail(keep_state: bool) -> None:
    """The final block ends in the first frame; the last frame holds only the empty block."""
    receiver = PerMessageDeflate(keep_state=keep_state)
    body = final_block_message(b"Hello")
    first = Frame(Opcode.TEXT, body[:-1], fin=False, rsv1=True)
    last = Frame(Opcode.CONTINUATION, body[-1:])
    assert decode(receiver, first, last) == b"Hello"
    assert decode(receiver, Frame(Opcode.TEXT, HELLO, rsv1=True)) == b"Hello"


@pytest.mark.parametrize("keep_state", [False, True])
def test_compressed_data_after_a_final_block_is_an_error(keep_state: bool) -> None:
    """Data after the stream's end in the same message would be lost: 1007, not b''."""
    receiver = PerMessageDeflate(keep_state=keep_state)
    first = Frame(Opcode.TEXT, final_block_message(b"Hello")[:-1], fin=False, rsv1=True)
    assert decode(receiver, first) == b"Hello"
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    more = compressor.compress(b"lost") + compressor.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(InvalidPayload, match="after the final deflate block"):
        decode(receiver, Frame(Opcode.CONTINUATION, more.removesuffix(b"\x00\x00\xff\xff")))


def test_garbage_after_a_final_block_is_an_error() -> None:
    receiver = PerMessageDeflate(keep_state=True)
    payload = final_block_message(b"Hello")[:-1] + b"\xff\xff\xff"
    with pytest.raises(InvalidPayload, match="after the final deflate block"):
        decode(receiver, Frame(Opcode.TEXT, payload, rsv1=True))
