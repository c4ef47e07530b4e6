"""The short roads for a whole message of one frame: ``receive_message`` and ``frame_message``.

Each either does exactly what the usual road does (``receive_data`` and its
events; ``send_text``/``send_binary`` and their bytes) or returns None and
changes nothing, leaving the usual road to give its events or its error.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncws.exceptions import InvalidPayload, PayloadTooBig, ProtocolError
from syncws.protocol.connection import Protocol, Side, State
from syncws.protocol.events import Binary, Ping, Text
from syncws.protocol.frames import Opcode

from .helpers import Identity, client, client_frame, server, server_frame

TEXT, BINARY = int(Opcode.TEXT), int(Opcode.BINARY)


def state_of(protocol: Protocol) -> dict[str, object]:
    """Every field of the protocol but the mask source (its pool moves with each key)."""
    fields: dict[str, object] = {}
    for cls in type(protocol).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name != "_masks" and hasattr(protocol, name):
                value = getattr(protocol, name)
                # Containers change in place: copied. Anything else by identity.
                fields[name] = copy.copy(value) if isinstance(value, (bytearray, list)) else value
    return fields


def frame_for(protocol: Protocol, opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A frame as the peer of ``protocol`` sends it."""
    if protocol.side is Side.SERVER:
        return client_frame(opcode, payload, fin=fin)
    return server_frame(opcode, payload, fin=fin)


# -- receive_message ----------------------------------------------------------------------


@pytest.mark.parametrize("make", [server, client])
@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535])
def test_a_whole_message_comes_out_as_the_usual_road_gives_it(make: object, size: int) -> None:
    text, data = "é" * (size // 2) + "a" * (size % 2), bytes(range(256)) * (size // 256 + 1)
    for opcode, payload, message in (
        (TEXT, text.encode(), text),
        (BINARY, data[:size], data[:size]),
    ):
        short, usual = make(), make()  # type: ignore[operator]
        short.set_receive_budget(3, 100_000)
        usual.set_receive_budget(3, 100_000)
        frame = frame_for(short, opcode, payload)
        assert short.receive_message(memoryview(frame)) == message
        usual.receive_data(frame)
        event = Text(message, True) if opcode == TEXT else Binary(message, True)  # type: ignore[arg-type]
        assert usual.events_received() == [event]
        assert short.events_received() == []
        assert short.data_to_send() == usual.data_to_send() == []
        assert state_of(short) == state_of(usual)  # the budget counted alike


def test_no_budget_set_means_no_bound() -> None:
    protocol = server()
    assert protocol.receive_message(client_frame(TEXT, b"hi")) == "hi"
    assert protocol.receive_message(client_frame(BINARY, b"hi")) == b"hi"


def declined(protocol: Protocol, data: bytes) -> list[object]:
    """Check that ``receive_message`` declines ``data`` unchanged; the usual road's events."""
    before = state_of(protocol)
    assert protocol.receive_message(data) is None
    assert state_of(protocol) == before
    protocol.receive_data(data)
    return protocol.events_received()


def test_it_declines_what_is_not_exactly_one_whole_frame() -> None:
    frame = client_frame(TEXT, b"hello")
    assert declined(server(), frame[:1]) == []  # under 2 bytes
    assert declined(server(), frame[:4]) == []  # a partial frame
    assert declined(server(), frame + frame) == [Text("hello"), Text("hello")]
    big = client_frame(BINARY, b"x" * 300)
    assert declined(server(), big[:3]) == []  # a 16-bit length not there yet
    assert declined(server(), big[:-1]) == []
    unmasked_big = server_frame(BINARY, b"x" * 300)
    assert declined(client(), unmasked_big[:-1]) == []
    assert declined(client(), unmasked_big + b"\x82") == [Binary(b"x" * 300)]


def test_it_declines_fragments_control_frames_and_64_bit_lengths() -> None:
    protocol = server()
    assert declined(protocol, client_frame(TEXT, b"he", fin=False)) == [Text("he", False)]
    # Inside a fragmented message: the continuation goes the usual way.
    assert declined(protocol, client_frame(0, b"llo")) == [Text("llo", True)]
    assert declined(server(), client_frame(int(Opcode.PING), b"p")) == [Ping(b"p")]
    huge = client_frame(BINARY, b"x" * 65536)
    assert declined(server(), huge) == [Binary(b"x" * 65536)]


def test_it_leaves_errors_to_the_usual_road() -> None:
    # Reserved bits, the wrong masking, invalid UTF-8, sizes over the limits.
    protocol = server()
    assert declined(protocol, client_frame(TEXT, b"hi", rsv=4)) == []
    assert isinstance(protocol.protocol_error, ProtocolError)
    protocol = server()
    assert declined(protocol, server_frame(TEXT, b"hi")) == []  # a client must mask
    assert isinstance(protocol.protocol_error, ProtocolError)
    protocol = client()
    assert declined(protocol, client_frame(TEXT, b"hi")) == []  # a server must not
    assert isinstance(protocol.protocol_error, ProtocolError)
    protocol = server()
    assert declined(protocol, client_frame(TEXT, b"\xff")) == []
    assert isinstance(protocol.protocol_error, InvalidPayload)
    protocol = server(max_size=4)
    assert declined(protocol, client_frame(BINARY, b"12345")) == []
    assert isinstance(protocol.protocol_error, PayloadTooBig)
    protocol = server()
    protocol.max_frame_size = 4
    assert declined(protocol, client_frame(BINARY, b"12345")) == []
    assert isinstance(protocol.protocol_error, PayloadTooBig)


def test_a_big_frames_storage_goes_when_the_stream_runs_dry_as_on_the_usual_road() -> None:
    big = client_frame(BINARY, b"x" * 70_000)
    small = client_frame(TEXT, b"hi")
    short, usual = server(), server()
    for protocol in (short, usual):
        protocol.receive_data(big[:1000])
        target = protocol.receive_buffer()
        assert target is not None
        rest = big[1000:]
        target[: len(rest)] = rest
        target.release()
        protocol.received_into(len(rest), more=True)  # as if more bytes waited: kept
        assert protocol._assembly is not None
        assert protocol.events_received() == [Binary(b"x" * 70_000)]
    assert short.receive_message(small) == "hi"
    usual.receive_data(small)
    assert usual.events_received() == [Text("hi")]
    assert short._assembly is usual._assembly is None
    assert state_of(short) == state_of(usual)


def test_it_declines_while_events_wait() -> None:
    protocol = server()
    protocol.receive_data(client_frame(TEXT, b"first"))  # not collected yet
    assert declined(protocol, client_frame(TEXT, b"second")) == [Text("first"), Text("second")]


def test_it_declines_when_the_parser_is_not_idle() -> None:
    frame = client_frame(TEXT, b"hi")
    # Bytes buffered (half a header).
    protocol = server()
    protocol.receive_data(b"\x81")
    assert protocol.receive_message(frame) is None
    # A big frame being gathered apart from the buffer.
    protocol = server()
    protocol.receive_data(client_frame(BINARY, b"x" * 70_000)[:1000])
    assert protocol.receive_buffer() is not None
    assert protocol.receive_message(frame) is None
    # Budget spent.
    protocol = server()
    protocol.set_receive_budget(0)
    assert declined(protocol, frame) == []
    protocol = server()
    protocol.set_receive_budget(None, 0)
    assert declined(protocol, frame) == []
    # An extension negotiated: it may have to decode the frame.
    assert declined(server(extensions=[Identity()]), frame) == [Text("hi")]
    # Not open: closing, or no more input.
    protocol = server()
    protocol.send_close()
    assert declined(protocol, frame) == [Text("hi")]
    protocol = server(state=State.CONNECTING)
    assert protocol.receive_message(frame) is None
    protocol = server()
    protocol.receive_data(client_frame(TEXT, b"\xff"))  # failed: input is discarded
    protocol.state = State.OPEN  # as if the close frame weren't sent yet
    assert protocol.receive_message(frame) is None


@given(
    side=st.sampled_from([Side.SERVER, Side.CLIENT]),
    opcode=st.sampled_from([TEXT, BINARY, int(Opcode.PING), 0]),
    payload=st.binary(max_size=300),
    fin=st.booleans(),
    cut=st.integers(min_value=0, max_value=320),
    max_size=st.sampled_from([None, 10, 1000]),
)
def test_short_or_usual_the_same_messages(  # noqa: PLR0917  (hypothesis draws each)
    side: Side, opcode: int, payload: bytes, fin: bool, cut: int, max_size: int | None
) -> None:
    short = Protocol(side, max_size=max_size)
    usual = Protocol(side, max_size=max_size)
    data = frame_for(short, opcode, payload, fin=fin)[:cut]
    message = short.receive_message(data)
    usual.receive_data(data)
    events = usual.events_received()
    if message is None:
        short.receive_data(data)
        assert short.events_received() == events
    else:
        assert events == [Text(message, True) if isinstance(message, str) else Binary(message)]
        assert short.events_received() == []
        assert state_of(short) == state_of(usual)
    assert short.protocol_error == usual.protocol_error or (
        type(short.protocol_error) is type(usual.protocol_error)
    )


# -- frame_message ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 125, 126, 65535])
def test_a_server_frames_a_message_as_send_text_and_send_binary_do(size: int) -> None:
    for data, text in (("a" * size, True), (b"b" * size, False), (b"c" * size, True)):
        short, usual = server(), server()
        frame = short.frame_message(data, text)
        if text:
            usual.send_text(data)
        else:
            usual.send_binary(data)  # type: ignore[arg-type]
        assert frame == b"".join(usual.data_to_send())
        assert short.data_to_send() == []
        assert state_of(short) == state_of(usual)


@pytest.mark.parametrize("size", [0, 125, 126, 65535])
def test_a_client_masks_the_frame_with_a_fresh_key(size: int) -> None:
    protocol = client()
    first = protocol.frame_message("x" * size, True)
    second = protocol.frame_message("x" * size, True)
    assert first is not None and second is not None
    assert first != second or size == 0  # a new key each time
    peer = server()
    peer.receive_data(first + second)
    assert peer.events_received() == [Text("x" * size), Text("x" * size)]
    assert peer.protocol_error is None
    binary = protocol.frame_message("é", False)
    assert binary is not None
    peer.receive_data(binary)
    assert peer.events_received() == [Binary("é".encode())]


def test_frame_message_takes_any_bytes_like_payload() -> None:
    for data in (bytearray(b"ab"), memoryview(b"ab"), memoryview(b"abcd").cast("H")):
        frame = server().frame_message(data, False)  # type: ignore[arg-type]
        usual = server()
        usual.send_binary(data)
        assert frame == b"".join(usual.data_to_send())


def test_frame_message_declines_what_the_usual_road_must_handle() -> None:
    protocol = server()
    assert protocol.frame_message(b"x" * 65536, False) is None  # 64 KiB or more
    assert server(extensions=[Identity()]).frame_message("hi", True) is None
    protocol.send_text("he", fin=False)
    protocol.data_to_send()
    assert protocol.frame_message("hi", True) is None  # a fragmented message is being sent
    protocol = server(state=State.CONNECTING)
    assert protocol.frame_message("hi", True) is None
    protocol = server()
    protocol.send_close()
    before = state_of(protocol)
    assert protocol.frame_message("hi", True) is None  # closing: send_text raises
    assert state_of(protocol) == before
