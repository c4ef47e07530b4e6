"""The frame-level state machine: parsing, validation, messages, limits and closing."""

from __future__ import annotations

import pytest

from syncws.exceptions import (
    InvalidPayload,
    InvalidState,
    PayloadTooBig,
    ProtocolError,
    TooManyFragments,
)
from syncws.protocol.connection import Protocol, Side, State
from syncws.protocol.deflate import PerMessageDeflate
from syncws.protocol.events import Binary, Ping, Pong, Text
from syncws.protocol.extensions import Extension
from syncws.protocol.frames import Frame, Opcode

from .helpers import MASK, assert_failed, client, client_frame, sent, server, server_frame

# -- receiving messages ---------------------------------------------------------


def test_server_receives_masked_text() -> None:
    proto = server()
    proto.receive_data(client_frame(0x1, "héllo".encode()))
    assert proto.events_received() == [Text("héllo")]
    assert proto.events_received() == []


def test_client_receives_unmasked_binary() -> None:
    proto = client()
    proto.receive_data(server_frame(0x2, b"\x00\xff"))
    assert proto.events_received() == [Binary(b"\x00\xff")]


def test_frames_split_at_every_byte() -> None:
    data = client_frame(0x2, b"x" * 300) + client_frame(0x1, b"ok")
    proto = server()
    for i in range(len(data)):
        proto.receive_data(data[i : i + 1])
    assert proto.events_received() == [Binary(b"x" * 300), Text("ok")]


def test_several_frames_in_one_chunk() -> None:
    proto = server()
    proto.receive_data(client_frame(0x1, b"a") + client_frame(0x1, b"b") + client_frame(0x9))
    assert proto.events_received() == [Text("a"), Text("b"), Ping(b"")]


def test_64_bit_length_split_everywhere_in_the_header() -> None:
    proto = server(max_size=None)
    data = client_frame(0x2, b"z" * 70000)
    for i in range(14):
        proto.receive_data(data[i : i + 1])
    proto.receive_data(data[14:])
    assert proto.events_received() == [Binary(b"z" * 70000)]


def test_fragmented_message_with_control_frames_between() -> None:
    proto = server()
    proto.receive_data(
        client_frame(0x1, b"Hel", fin=False)
        + client_frame(0x9, b"p")
        + client_frame(0x0, b"lo", fin=False)
        + client_frame(0xA, b"q")
        + client_frame(0x0, b"!", fin=True)
    )
    assert proto.events_received() == [
        Text("Hel", final=False),
        Ping(b"p"),
        Text("lo", final=False),
        Pong(b"q"),
        Text("!", final=True),
    ]
    # The ping was answered automatically, unmasked since we are the server.
    assert sent(proto) == server_frame(0xA, b"p")


def test_fragmented_binary() -> None:
    proto = client()
    proto.receive_data(server_frame(0x2, b"ab", fin=False) + server_frame(0x0, b"cd"))
    assert proto.events_received() == [Binary(b"ab", final=False), Binary(b"cd")]


def test_code_point_split_across_frames() -> None:
    euro = "€".encode()
    proto = server()
    proto.receive_data(client_frame(0x1, euro[:1], fin=False))
    proto.receive_data(client_frame(0x0, euro[1:2], fin=False))
    proto.receive_data(client_frame(0x0, euro[2:]))
    pieces = proto.events_received()
    assert "".join(event.data for event in pieces) == "€"
    assert proto.protocol_error is None


def test_empty_messages() -> None:
    proto = server()
    proto.receive_data(client_frame(0x1) + client_frame(0x2))
    assert proto.events_received() == [Text(""), Binary(b"")]


# -- invalid input ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (client_frame(0x3), "reserved opcode 0x3"),
        (client_frame(0xB), "reserved opcode 0xb"),
        (client_frame(0x1, rsv=4), "reserved bits"),
        (client_frame(0x1, rsv=2), "reserved bits"),
        (client_frame(0x1, rsv=1), "reserved bits"),
        (client_frame(0x9, fin=False), "must not be fragmented"),
        (client_frame(0x9, b"x" * 126), "at most 125"),
        (server_frame(0x1, b"hi"), "client must mask"),
        (client_frame(0x0, b"x"), "continuation frame without a message"),
        (client_frame(0x1, b"a", fin=False) + client_frame(0x1, b"b"), "new message started"),
        (client_frame(0x8, b"\x03"), "1 byte"),
        (client_frame(0x8, b"\x03\xed"), "1005 is not allowed"),
        (b"\x82\xff\x80" + b"\x00" * 7 + MASK, "most significant bit"),
    ],
)
def test_protocol_errors(data: bytes, message: str) -> None:
    proto = server()
    proto.receive_data(data)
    assert_failed(proto, ProtocolError, 1002)
    assert message in str(proto.protocol_error)
    assert proto.close_sent is not None
    assert message[:20] in proto.close_sent.reason


def test_server_frames_must_not_be_masked() -> None:
    proto = client()
    proto.receive_data(client_frame(0x1, b"hi"))
    assert_failed(proto, ProtocolError, 1002)
    assert "server must not mask" in str(proto.protocol_error)


def test_reserved_bit_on_control_frame_with_extension() -> None:
    proto = server(extensions=[Passthrough()])
    proto.receive_data(client_frame(0x9, rsv=4))
    assert_failed(proto, ProtocolError, 1002)


def test_input_after_failure_is_discarded() -> None:
    proto = server()
    proto.receive_data(client_frame(0x3) + client_frame(0x1, b"late"))
    proto.receive_data(client_frame(0x1, b"later"))
    assert proto.events_received() == []


def test_invalid_utf8_single_frame() -> None:
    proto = server()
    proto.receive_data(client_frame(0x1, b"\xce\xba\xe1\xbd\xb9\xff"))
    assert_failed(proto, InvalidPayload, 1007)


@pytest.mark.parametrize(
    "bad",
    [b"\xf4\x90", b"\xed\xa0", b"\xc0", b"\xf5", b"\xe0\x80"],
)
def test_invalid_utf8_fails_fast_inside_a_fragmented_message(bad: bytes) -> None:
    proto = server()
    proto.receive_data(client_frame(0x1, "κόσμε".encode(), fin=False))
    proto.receive_data(client_frame(0x0, bad, fin=False))
    assert_failed(proto, InvalidPayload, 1007)
    assert proto.events_received() == [Text("κόσμε", final=False)]


def test_incomplete_utf8_at_end_of_message() -> None:
    proto = server()
    proto.receive_data(client_frame(0x1, b"\xe2\x82", fin=False) + client_frame(0x0, b""))
    assert_failed(proto, InvalidPayload, 1007)


def test_invalid_utf8_close_reason() -> None:
    proto = server()
    proto.receive_data(client_frame(0x8, b"\x03\xe8\xc3"))
    assert_failed(proto, InvalidPayload, 1007)


# -- limits ----------------------------------------------------------------------


def test_max_size_rejects_on_header_before_payload_arrives() -> None:
    proto = server(max_size=1000)
    header = client_frame(0x2, b"x" * 1001)[:8]  # header and mask only
    proto.receive_data(header)
    assert_failed(proto, PayloadTooBig, 1009)


def test_max_size_exact_limit_passes() -> None:
    proto = server(max_size=1000)
    proto.receive_data(client_frame(0x2, b"x" * 1000))
    assert proto.events_received() == [Binary(b"x" * 1000)]


def test_max_size_counts_the_whole_fragmented_message() -> None:
    proto = server(max_size=1000)
    proto.receive_data(client_frame(0x2, b"x" * 600, fin=False))
    proto.receive_data(client_frame(0x0, b"x" * 401))
    assert_failed(proto, PayloadTooBig, 1009)


def test_max_size_resets_between_messages() -> None:
    proto = server(max_size=1000)
    for _ in range(3):
        proto.receive_data(client_frame(0x2, b"x" * 600, fin=False))
        proto.receive_data(client_frame(0x0, b"x" * 400))
    assert proto.protocol_error is None
    assert len(proto.events_received()) == 6


def test_control_frames_are_not_subject_to_max_size() -> None:
    proto = server(max_size=10)
    proto.receive_data(client_frame(0x9, b"p" * 100))
    assert proto.events_received() == [Ping(b"p" * 100)]


def test_pings_wait_while_answer_pings_is_off_and_the_latest_is_answered() -> None:
    proto = server()
    assert not proto.pong_owed
    proto.send_owed_pong()  # nothing owed: nothing sent
    proto.answer_pings = False
    proto.receive_data(client_frame(0x9, b"one") + client_frame(0x9, b"two"))
    assert proto.events_received() == [Ping(b"one"), Ping(b"two")]
    assert sent(proto) == b""
    assert proto.pong_owed
    proto.send_owed_pong()
    assert sent(proto) == server_frame(0xA, b"two")
    assert not proto.pong_owed


def test_a_ping_answered_at_once_settles_the_owed_pong() -> None:
    proto = server()
    proto.answer_pings = False
    proto.receive_data(client_frame(0x9, b"one"))
    proto.answer_pings = True
    proto.receive_data(client_frame(0x9, b"two"))
    assert proto.events_received() == [Ping(b"one"), Ping(b"two")]
    assert sent(proto) == server_frame(0xA, b"two")
    assert not proto.pong_owed


def test_no_owed_pong_after_our_close_frame() -> None:
    proto = server()
    proto.answer_pings = False
    proto.receive_data(client_frame(0x9, b"one"))
    proto.send_close()
    sent(proto)
    proto.send_owed_pong()
    assert sent(proto) == b""
    assert not proto.pong_owed
    proto.receive_data(client_frame(0x9, b"after close"))
    assert not proto.pong_owed


# -- the receive budget ---------------------------------------------------------


def test_receive_budget_pauses_after_whole_messages() -> None:
    proto = server()
    proto.set_receive_budget(messages=2)
    data = client_frame(0x1, b"a") + client_frame(0x2, b"b", fin=False)
    data += client_frame(0x0, b"c") + client_frame(0x1, b"d") + client_frame(0x9, b"p")
    proto.receive_data(data)
    assert proto.events_received() == [Text("a"), Binary(b"b", final=False), Binary(b"c")]
    assert proto.receive_paused
    proto.set_receive_budget(messages=1)
    assert not proto.receive_paused
    proto.receive_data(b"")
    assert proto.events_received() == [Text("d"), Ping(b"p")]
    assert proto.receive_paused  # spent, though nothing more waits


def test_receive_budget_counts_decompressed_bytes() -> None:
    proto = server(extensions=[PerMessageDeflate()])
    compressor = PerMessageDeflate()
    frames = []
    for _ in range(3):
        frame = compressor.encode(Frame(Opcode.BINARY, b"\0" * 1000))
        frames.append(client_frame(0x2, frame.payload, rsv=4))
    proto.set_receive_budget(size=1500)
    proto.receive_data(b"".join(frames))
    assert proto.events_received() == [Binary(b"\0" * 1000)] * 2
    assert proto.receive_paused
    proto.set_receive_budget()
    proto.receive_data(b"")
    assert proto.events_received() == [Binary(b"\0" * 1000)]
    assert not proto.receive_paused


def test_control_frames_are_parsed_while_paused_until_a_data_frame() -> None:
    proto = server()
    proto.set_receive_budget(messages=0)
    text = "é".encode() * 10
    proto.receive_data(client_frame(0x9, b"p") + client_frame(0x1, text)[:-3])
    assert proto.events_received() == [Ping(b"p")]
    assert sent(proto) == server_frame(0xA, b"p")
    proto.receive_data(client_frame(0x1, text)[-3:])
    assert proto.events_received() == []
    proto.set_receive_budget(messages=None)
    proto.receive_data(b"")
    assert proto.events_received() == [Text("é" * 10)]


def test_many_empty_fragments_fail() -> None:
    proto = server(max_fragments=100)
    data = client_frame(0x2, b"", fin=False) + client_frame(0x0, b"", fin=False) * 100
    proto.receive_data(data)
    assert_failed(proto, TooManyFragments, 1009)


def test_large_message_in_small_fragments_passes() -> None:
    # 4 KiB in 64-byte frames: 64 frames, fine; the allowance grows with the size.
    proto = server(max_fragments=16)
    chunks = [b"z" * 64] * 64
    data = client_frame(0x2, chunks[0], fin=False)
    data += b"".join(client_frame(0x0, chunk, fin=False) for chunk in chunks[1:-1])
    data += client_frame(0x0, chunks[-1])
    proto.receive_data(data)
    assert proto.protocol_error is None
    assert b"".join(event.data for event in proto.events_received()) == b"z" * 4096


def test_limits_can_be_disabled() -> None:
    proto = server(max_size=None, max_fragments=None)
    data = client_frame(0x2, b"", fin=False) + client_frame(0x0, b"", fin=False) * 5000
    proto.receive_data(data + client_frame(0x0, b"end"))
    assert proto.protocol_error is None
    assert proto.events_received()[-1] == Binary(b"end")


# -- sending ----------------------------------------------------------------------


def test_client_masks_and_server_reads() -> None:
    sender, receiver = client(), server()
    sender.send_text("hi")
    sender.send_binary(b"\x01")
    sender.send_binary(bytearray(b"\x02"))
    data = sent(sender)
    assert data[1] & 0x80  # masked
    receiver.receive_data(data)
    assert receiver.events_received() == [Text("hi"), Binary(b"\x01"), Binary(b"\x02")]


def test_text_bytes_are_sent_as_is() -> None:
    proto = server()
    proto.send_text(b"raw")
    assert sent(proto) == server_frame(0x1, b"raw")


def test_send_fragmented_message() -> None:
    sender, receiver = server(), client()
    sender.send_text("a", fin=False)
    sender.send_ping(b"between")
    sender.send_continuation("b", fin=False)
    sender.send_continuation(b"c", fin=True)
    receiver.receive_data(sent(sender))
    assert receiver.events_received() == [
        Text("a", final=False),
        Ping(b"between"),
        Text("b", final=False),
        Text("c"),
    ]


def test_fragment_sequencing_is_enforced_on_send() -> None:
    proto = server()
    with pytest.raises(InvalidState, match="no fragmented message"):
        proto.send_continuation(b"x", fin=True)
    proto.send_binary(b"x", fin=False)
    with pytest.raises(InvalidState, match="finish it first"):
        proto.send_text("y")
    proto.send_continuation(b"", fin=True)
    proto.send_text("y")


def test_control_frame_size_limit_on_send() -> None:
    proto = server()
    with pytest.raises(ValueError, match="at most 125"):
        proto.send_ping(b"x" * 126)
    proto.send_pong(b"x" * 125)
    assert len(sent(proto)) == 127


def test_cannot_send_while_connecting() -> None:
    proto = Protocol(Side.SERVER, state=State.CONNECTING)
    with pytest.raises(InvalidState, match="opening handshake"):
        proto.send_text("x")


def test_frame_protocol_has_no_handshake() -> None:
    proto = Protocol(Side.SERVER, state=State.CONNECTING)
    with pytest.raises(InvalidState, match="no opening handshake"):
        proto.receive_data(b"GET / HTTP/1.1\r\n")
    proto = Protocol(Side.SERVER, state=State.CONNECTING)
    with pytest.raises(InvalidState, match="no opening handshake"):
        proto.receive_eof()


# -- extensions ------------------------------------------------------------------


class Passthrough(Extension):
    """Claims RSV1 on the frames it sends, and clears it on those it receives."""

    name = "x-passthrough"

    def __init__(self) -> None:
        self.decoded: list[tuple[Opcode, int | None]] = []

    def encode(self, frame: Frame) -> Frame:
        return Frame(frame.opcode, frame.payload[::-1], frame.fin, rsv1=True)

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        self.decoded.append((frame.opcode, max_size))
        return Frame(frame.opcode, frame.payload[::-1], frame.fin, rsv1=False)


class Ignores(Extension):
    name = "x-ignores"

    def encode(self, frame: Frame) -> Frame:
        return frame

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        return frame


def test_extensions_transform_data_frames_both_ways() -> None:
    sender = client(extensions=[Passthrough()])
    extension = Passthrough()
    receiver = server(extensions=[extension], max_size=100)
    sender.send_text("abc", fin=False)
    sender.send_continuation("de", fin=True)
    sender.send_ping(b"ping")  # control frames bypass extensions
    receiver.receive_data(sent(sender))
    assert receiver.events_received() == [Text("abc", final=False), Text("de"), Ping(b"ping")]
    assert extension.decoded == [(Opcode.TEXT, 100), (Opcode.CONTINUATION, 97)]


def test_rsv1_left_set_by_extensions_is_an_error() -> None:
    proto = server(extensions=[Ignores()])
    proto.receive_data(client_frame(0x1, b"x", rsv=4))
    assert_failed(proto, ProtocolError, 1002)
    assert "no extension used it" in str(proto.protocol_error)


def test_decoded_size_is_checked_against_max_size() -> None:
    class Inflates(Ignores):
        def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
            return Frame(frame.opcode, frame.payload * 10, frame.fin)

    proto = server(extensions=[Inflates()], max_size=50)
    proto.receive_data(client_frame(0x2, b"x" * 6))
    assert_failed(proto, PayloadTooBig, 1009)


def test_extension_errors_fail_the_connection() -> None:
    class Breaks(Ignores):
        def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
            raise InvalidPayload("corrupt")

    proto = server(extensions=[Breaks()], max_size=None)
    proto.receive_data(client_frame(0x2, b"x"))
    assert_failed(proto, InvalidPayload, 1007)


# -- errors in stream order (defer_failures) ------------------------------------------------


def test_deferred_failure_waits_for_the_application() -> None:
    proto = server()
    proto.defer_failures = True
    proto.receive_data(client_frame(0x1, b"first") + client_frame(0x1, b"x", rsv=2))
    assert proto.events_received() == [Text("first", final=True)]
    assert proto.failure_pending
    assert not proto.receiving
    assert proto.state is State.OPEN
    proto.send_text("echo of first")  # the application may still answer
    assert proto.data_to_send()
    proto.receive_data(client_frame(0x1, b"ignored"))
    assert proto.events_received() == []
    proto.fail_pending()
    assert not proto.failure_pending
    assert proto.close_sent is not None and proto.close_sent.code == 1002
    assert proto.protocol_error is not None
    assert proto.should_close_transport
    proto.fail_pending()  # nothing left to do


def test_deferred_failure_at_eof_is_recorded() -> None:
    proto = server()
    proto.defer_failures = True
    proto.receive_data(client_frame(0x9, b"p" * 126))  # control frame too long
    assert proto.failure_pending
    proto.receive_eof()
    assert not proto.failure_pending
    assert proto.protocol_error is not None
    assert proto.close_sent is None


# -- text validated while a frame arrives ---------------------------------------------------


def test_invalid_utf8_fails_before_the_frame_is_complete() -> None:
    proto = server()
    frame = client_frame(
        0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" + b"\xf4\x90\x80\x80" + b"edited"
    )
    proto.receive_data(frame[: 6 + 11])  # header + valid prefix
    assert proto.events_received() == []
    assert proto.protocol_error is None
    proto.receive_data(frame[17:21])  # the invalid sequence
    assert proto.protocol_error is not None
    assert proto.close_sent is not None and proto.close_sent.code == 1007


def test_text_decoded_in_pieces_comes_out_whole() -> None:
    proto = server()
    text = "κόσμε" * 50
    frame = client_frame(0x1, text.encode(), fin=False) + client_frame(0x0, "µ€".encode())
    for index in range(len(frame)):  # byte by byte: the worst split
        proto.receive_data(frame[index : index + 1])
    events = proto.events_received()
    assert "".join(e.data for e in events) == text + "µ€"  # type: ignore[union-attr]
    assert events[-1].final  # type: ignore[union-attr]


def test_unmasked_text_decoded_in_pieces() -> None:
    proto = client()
    frame = server_frame(0x1, "é".encode() * 10)
    proto.receive_data(frame[:5])
    proto.receive_data(frame[5:])
    assert proto.events_received() == [Text("é" * 10, final=True)]


def test_compressed_continuations_are_not_decoded_early() -> None:
    """A continuation of a compressed message carries deflate data, not text."""
    proto = server(extensions=[PerMessageDeflate(compress_min_size=0)])
    sender = PerMessageDeflate(compress_min_size=0)
    first = sender.encode(Frame(Opcode.TEXT, b"a" * 300, fin=False))
    rest = sender.encode(Frame(Opcode.CONTINUATION, "ü".encode() * 300, fin=True))
    data = client_frame(0x1, first.payload, fin=False, rsv=4)
    data += client_frame(0x0, rest.payload)
    for index in range(0, len(data), 7):
        proto.receive_data(data[index : index + 7])
    assert proto.protocol_error is None
    events = proto.events_received()
    assert "".join(e.data for e in events) == "a" * 300 + "ü" * 300  # type: ignore[union-attr]
