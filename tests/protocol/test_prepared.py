"""Encoding a message once and sending it on many connections (broadcast)."""

from __future__ import annotations

import pytest

from syncws.exceptions import InvalidState
from syncws.protocol.connection import Protocol, Side
from syncws.protocol.deflate import PerMessageDeflate
from syncws.protocol.events import Binary, Text
from syncws.protocol.frames import Frame, Opcode

from .helpers import Identity


def deflate(**kwargs: object) -> PerMessageDeflate:
    return PerMessageDeflate(**kwargs)  # type: ignore[arg-type]


def received(frames: list[bytes], **kwargs: object) -> list[object]:
    """What a client with the given extensions makes of frames a server sent."""
    client = Protocol(Side.CLIENT, **kwargs)  # type: ignore[arg-type]
    client.receive_data(b"".join(frames))
    return client.events_received()


def test_plain_server_connections_share_a_key() -> None:
    assert Protocol(Side.SERVER).sharing_key() == ()
    assert Protocol(Side.SERVER).sharing_key() == Protocol(Side.SERVER).sharing_key()


def test_clients_mask_so_they_never_share() -> None:
    client = Protocol(Side.CLIENT)
    assert client.sharing_key() is None
    with pytest.raises(InvalidState, match="in advance"):
        client.prepare_message("hi", text=True)


def test_prepared_text_and_binary_messages() -> None:
    server = Protocol(Side.SERVER)
    text = server.prepare_message("café", text=True)
    binary = server.prepare_message(b"\x00\x01", text=False)
    assert received(text) == [Text("café")]
    assert received(binary) == [Binary(b"\x00\x01")]
    # Binary from str and text from bytes, as send(text=...) allows.
    assert received(server.prepare_message("ab", text=False)) == [Binary(b"ab")]
    assert received(server.prepare_message(b"ab", text=True)) == [Text("ab")]


def test_send_prepared_writes_the_frames() -> None:
    server = Protocol(Side.SERVER)
    frames = server.prepare_message("hello", text=True)
    assert server.data_to_send() == []  # preparing sends nothing
    server.send_prepared(frames)
    assert server.data_to_send() == frames


def test_send_prepared_respects_the_state() -> None:
    server = Protocol(Side.SERVER)
    frames = server.prepare_message("hello", text=True)
    server.send_text("part", fin=False)
    assert server.sending_fragments
    with pytest.raises(InvalidState, match="fragmented"):
        server.send_prepared(frames)
    server.send_continuation("", fin=True)
    assert not server.sending_fragments
    server.send_close()
    with pytest.raises(InvalidState, match="closing"):
        server.send_prepared(frames)


def test_deflate_without_context_takeover_is_shared() -> None:
    extension = deflate(local_no_context_takeover=True)
    key = extension.sharing_key()
    assert key is not None
    assert key == deflate(local_no_context_takeover=True).sharing_key()
    assert key != deflate(local_no_context_takeover=True, compress_level=1).sharing_key()
    server = Protocol(Side.SERVER, extensions=[extension])
    assert server.sharing_key() == (key,)
    frames = server.prepare_message("hello " * 100, text=True)
    assert sum(map(len, frames)) < 100
    assert received(frames, extensions=[deflate()]) == [Text("hello " * 100)]
    # Preparing didn't touch the connection's own compressor.
    server.send_text("hello " * 100)
    assert server.data_to_send() == frames


def test_deflate_with_context_takeover_is_not_shared() -> None:
    assert deflate().sharing_key() is None
    assert Protocol(Side.SERVER, extensions=[deflate()]).sharing_key() is None


def test_deflate_that_never_compresses_is_shared() -> None:
    # A window of 8 bits: we never compress, so history doesn't matter.
    extension = deflate(local_max_window_bits=8)
    assert extension.sharing_key() is not None
    server = Protocol(Side.SERVER, extensions=[extension])
    frames = server.prepare_message(b"data", text=False)
    assert received(frames, extensions=[deflate()]) == [Binary(b"data")]


def test_small_messages_stay_uncompressed_when_prepared() -> None:
    extension = deflate(local_no_context_takeover=True, compress_min_size=10)
    server = Protocol(Side.SERVER, extensions=[extension])
    frames = server.prepare_message("tiny", text=True)
    assert frames == Protocol(Side.SERVER).prepare_message("tiny", text=True)


def test_unknown_extensions_are_not_shared() -> None:
    extension = Identity()
    assert extension.sharing_key() is None
    assert Protocol(Side.SERVER, extensions=[extension]).sharing_key() is None
    with pytest.raises(NotImplementedError, match="Identity"):
        extension.encode_standalone(Frame(Opcode.TEXT, b""))
