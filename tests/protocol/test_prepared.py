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
    server.send_prepared(frames, b"hello")
    assert server.data_to_send() == frames


def test_send_prepared_respects_the_state() -> None:
    server = Protocol(Side.SERVER)
    frames = server.prepare_message("hello", text=True)
    server.send_text("part", fin=False)
    assert server.sending_fragments
    with pytest.raises(InvalidState, match="fragmented"):
        server.send_prepared(frames, b"hello")
    server.send_continuation("", fin=True)
    assert not server.sending_fragments
    server.send_close()
    with pytest.raises(InvalidState, match="closing"):
        server.send_prepared(frames, b"hello")


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


def test_deflate_with_context_takeover_is_shared() -> None:
    # As browsers negotiate it: the peer keeps its window between messages.
    key = deflate().sharing_key()
    assert key is not None and key == deflate(local_no_context_takeover=True).sharing_key()
    assert Protocol(Side.SERVER, extensions=[deflate()]).sharing_key() == (key,)


def test_deflate_keeping_zlib_state_is_not_shared() -> None:
    # Its compressor's history would miss the shared message.
    assert deflate(keep_state=True).sharing_key() is None
    assert deflate(keep_state=True, local_no_context_takeover=True).sharing_key() is not None
    assert Protocol(Side.SERVER, extensions=[deflate(keep_state=True)]).sharing_key() is None


@pytest.mark.parametrize("queued_by_io_layer", [False, True])
def test_shared_messages_keep_a_context_takeover_stream_whole(queued_by_io_layer: bool) -> None:
    """Broadcasts between ordinary messages: the peer inflates every one of them.

    The ordinary messages after the shared ones refer back into them: the
    server's window must have slid by each shared message as the peer's did.
    """
    server = Protocol(Side.SERVER, extensions=[deflate(compress_min_size=10)])
    # Another connection prepares the shared frames.
    other = Protocol(Side.SERVER, extensions=[deflate(compress_min_size=10)])
    client = Protocol(Side.CLIENT, extensions=[deflate()])
    sent = [
        "a message the next ones refer to " * 4,
        "tiny",  # below compress_min_size: sent uncompressed, the peer's window unchanged
        "a shared message that refers to nothing before it " * 3,
        "a message the next ones refer to " * 4,
        "a shared message that refers to nothing before it " * 3 + "and a bit more",
        "a message the next ones refer to " * 4 + "a shared message that refers to nothing",
    ]
    shared = {1, 2, 4}
    for index, message in enumerate(sent):
        if index in shared:
            frames = other.prepare_message(message, text=True)
            if queued_by_io_layer:
                server.data_to_send()  # what came before goes first
                client.receive_data(b"".join(frames))
                server.prepared_sent(message.encode())
            else:
                server.send_prepared(frames, message.encode())
        else:
            server.send_text(message)
        client.receive_data(b"".join(server.data_to_send()))
    assert client.events_received() == [Text(message) for message in sent]
    # The ordinary messages did refer back: they came out smaller than alone.
    alone = Protocol(Side.SERVER, extensions=[deflate(compress_min_size=10)])
    alone.send_text(sent[5])
    server.send_text(sent[5])
    assert sum(map(len, server.data_to_send())) < sum(map(len, alone.data_to_send()))


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
    extension.sent_standalone(b"nothing to follow")  # the default: no state to update
