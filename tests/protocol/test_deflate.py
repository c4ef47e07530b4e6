"""permessage-deflate: RFC 7692 byte examples, negotiation, round trips, bombs."""

from __future__ import annotations

import itertools
import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncws.exceptions import InvalidPayload, NegotiationError, PayloadTooBig, ProtocolError
from syncws.protocol.connection import Protocol, Side
from syncws.protocol.deflate import (
    DEFAULT_MEM_LEVEL,
    DEFAULT_WINDOW_BITS,
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from syncws.protocol.events import Binary, Text
from syncws.protocol.frames import Frame, Opcode
from syncws.protocol.masking import apply_mask

HELLO = bytes.fromhex("f248cdc9c90700")


def decode(extension: PerMessageDeflate, *frames: Frame, max_size: int | None = None) -> bytes:
    return b"".join(extension.decode(frame, max_size=max_size).payload for frame in frames)


# -- RFC 7692 section 7.2.3 examples -------------------------------------------------


def test_rfc_hello_compressed() -> None:
    frame = PerMessageDeflate(compress_min_size=0).encode(Frame(Opcode.TEXT, b"Hello"))
    assert frame.payload == HELLO
    assert frame.rsv1


def test_rfc_hello_decompressed() -> None:
    frame = PerMessageDeflate().decode(Frame(Opcode.TEXT, HELLO, rsv1=True), max_size=None)
    assert frame == Frame(Opcode.TEXT, b"Hello")


def test_rfc_sharing_the_window() -> None:
    extension = PerMessageDeflate(compress_min_size=0)
    assert extension.encode(Frame(Opcode.TEXT, b"Hello")).payload == HELLO
    assert extension.encode(Frame(Opcode.TEXT, b"Hello")).payload == bytes.fromhex("f200110000")
    receiver = PerMessageDeflate()
    for payload in (HELLO, bytes.fromhex("f200110000")):
        assert decode(receiver, Frame(Opcode.TEXT, payload, rsv1=True)) == b"Hello"


def test_rfc_no_context_takeover_repeats_the_bytes() -> None:
    extension = PerMessageDeflate(local_no_context_takeover=True, compress_min_size=0)
    assert extension.encode(Frame(Opcode.TEXT, b"Hello")).payload == HELLO
    assert extension.encode(Frame(Opcode.TEXT, b"Hello")).payload == HELLO


def test_rfc_uncompressed_block() -> None:
    payload = bytes.fromhex("0005 00fa ff48 656c 6c6f 00")
    assert decode(PerMessageDeflate(), Frame(Opcode.TEXT, payload, rsv1=True)) == b"Hello"


def test_rfc_bfinal_block() -> None:
    payload = bytes.fromhex("f348cdc9c90700 00")
    assert decode(PerMessageDeflate(), Frame(Opcode.TEXT, payload, rsv1=True)) == b"Hello"


def test_rfc_fragmented_compressed_message() -> None:
    extension = PerMessageDeflate()
    first = Frame(Opcode.TEXT, bytes.fromhex("f248cd"), fin=False, rsv1=True)
    second = Frame(Opcode.CONTINUATION, bytes.fromhex("c9c90700"))
    assert decode(extension, first, second) == b"Hello"


# -- encoding and decoding ---------------------------------------------------------


def test_small_messages_are_not_compressed() -> None:
    extension = PerMessageDeflate(compress_min_size=64)
    frame = Frame(Opcode.TEXT, b"short")
    assert extension.encode(frame) is frame


def test_fragmented_small_first_frame_still_compresses() -> None:
    # Only a final first frame is known to be the whole message.
    extension = PerMessageDeflate(compress_min_size=64)
    first = extension.encode(Frame(Opcode.TEXT, b"ab", fin=False))
    rest = extension.encode(Frame(Opcode.CONTINUATION, b"cd"))
    assert first.rsv1 and not rest.rsv1
    assert decode(PerMessageDeflate(), first, rest) == b"abcd"


def test_uncompressed_messages_pass_through() -> None:
    frame = Frame(Opcode.BINARY, b"raw", fin=False)
    extension = PerMessageDeflate()
    assert extension.decode(frame, max_size=None) is frame
    continuation = Frame(Opcode.CONTINUATION, b"more")
    assert extension.decode(continuation, max_size=None) is continuation


def test_rsv1_on_a_continuation_frame_is_an_error() -> None:
    extension = PerMessageDeflate()
    extension.decode(Frame(Opcode.TEXT, b"\xf2\x48", fin=False, rsv1=True), max_size=None)
    with pytest.raises(ProtocolError, match="continuation"):
        extension.decode(Frame(Opcode.CONTINUATION, b"", rsv1=True), max_size=None)


def test_corrupt_data() -> None:
    with pytest.raises(InvalidPayload, match="invalid compressed data"):
        PerMessageDeflate().decode(Frame(Opcode.TEXT, b"\xff\xff", rsv1=True), max_size=None)


def test_decompression_bomb_is_stopped_early() -> None:
    bomb = PerMessageDeflate(compress_min_size=0).encode(Frame(Opcode.BINARY, bytes(100 << 20)))
    assert len(bomb.payload) < 200_000
    with pytest.raises(PayloadTooBig, match="1048576"):
        PerMessageDeflate().decode(bomb, max_size=1 << 20)


def test_exact_size_limit_passes() -> None:
    frame = PerMessageDeflate(compress_min_size=0).encode(Frame(Opcode.BINARY, bytes(1000)))
    assert len(PerMessageDeflate().decode(frame, max_size=1000).payload) == 1000


def test_window_of_8_never_compresses() -> None:
    extension = PerMessageDeflate(local_max_window_bits=8, compress_min_size=0)
    frame = Frame(Opcode.TEXT, b"x" * 1000)
    assert extension.encode(frame) is frame


def test_remote_no_context_takeover_resets_the_decompressor() -> None:
    sender = PerMessageDeflate(local_no_context_takeover=True, compress_min_size=0)
    receiver = PerMessageDeflate(remote_no_context_takeover=True)
    for _ in range(3):
        frame = sender.encode(Frame(Opcode.TEXT, b"same again " * 10))
        assert decode(receiver, frame) == b"same again " * 10


@pytest.mark.parametrize(
    "kwargs",
    [{"remote_max_window_bits": 7}, {"local_max_window_bits": 16}],
)
def test_window_bits_are_checked(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="between 8 and 15"):
        PerMessageDeflate(**kwargs)


@pytest.mark.parametrize("level", [0, 10])
def test_mem_level_is_checked(level: int) -> None:
    with pytest.raises(ValueError, match="mem_level must be between 1 and 9"):
        PerMessageDeflate(mem_level=level)
    for factory_class in (ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory):
        with pytest.raises(ValueError, match="mem_level must be between 1 and 9"):
            factory_class(mem_level=level)


# -- zlib state only while a message goes through (issues 20 and 24) ---------------


def holds_zlib_state(extension: PerMessageDeflate) -> bool:
    return extension._compressor is not None or extension._decompressor is not None


def test_no_zlib_state_between_messages() -> None:
    """An idle connection holds no compressor or decompressor, only the window's bytes."""
    sender = PerMessageDeflate(local_max_window_bits=9)
    receiver = PerMessageDeflate(remote_max_window_bits=9)
    assert not holds_zlib_state(sender) and not holds_zlib_state(receiver)
    first = sender.encode(Frame(Opcode.TEXT, b"x" * 300, fin=False))
    assert sender._compressor is not None  # kept for the rest of the message
    assert decode(receiver, first) == b"x" * 300
    assert receiver._decompressor is not None
    last = sender.encode(Frame(Opcode.CONTINUATION, b"y" * 300))
    assert decode(receiver, last) == b"y" * 300
    assert not holds_zlib_state(sender) and not holds_zlib_state(receiver)
    # What stays is the last 512 bytes (a 9-bit window) of each direction.
    assert sender._sent_window == receiver._received_window == b"x" * 212 + b"y" * 300


def test_context_takeover_across_released_state() -> None:
    """The next message refers back to the previous one: few bytes for a repeat."""
    sender = PerMessageDeflate(local_max_window_bits=12)
    receiver = PerMessageDeflate(remote_max_window_bits=12)
    message = os.urandom(2000)
    first = sender.encode(Frame(Opcode.BINARY, message))
    second = sender.encode(Frame(Opcode.BINARY, message))
    assert len(first.payload) > 2000 and len(second.payload) < 40
    assert decode(receiver, first) == decode(receiver, second) == message


def test_keep_state_keeps_zlib_objects() -> None:
    sender = PerMessageDeflate(keep_state=True)
    receiver = PerMessageDeflate(keep_state=True)
    for _ in range(2):
        assert decode(receiver, sender.encode(Frame(Opcode.TEXT, b"Hello"))) == b"Hello"
        assert sender._compressor is not None and receiver._decompressor is not None
    assert sender._sent_window == receiver._received_window == b""


def test_no_context_takeover_keeps_nothing() -> None:
    sender = PerMessageDeflate(local_no_context_takeover=True, keep_state=True)
    receiver = PerMessageDeflate(remote_no_context_takeover=True, keep_state=True)
    assert decode(receiver, sender.encode(Frame(Opcode.TEXT, b"Hello" * 9))) == b"Hello" * 9
    assert not holds_zlib_state(sender) and not holds_zlib_state(receiver)
    assert sender._sent_window == receiver._received_window == b""


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(max_size=3000), min_size=1, max_size=8),
    st.integers(min_value=9, max_value=15),
)
def test_streams_interoperate_with_plain_zlib(messages: list[bytes], bits: int) -> None:
    """What a peer with one zlib stream for the whole connection (a browser) sends
    decodes with our per-message state, and what we send decodes with its."""
    ours = PerMessageDeflate(local_max_window_bits=bits, remote_max_window_bits=bits)
    their_compressor = zlib.compressobj(6, zlib.DEFLATED, -bits)
    their_decompressor = zlib.decompressobj(-bits)
    for message in messages:
        sent = ours.encode(Frame(Opcode.BINARY, message)).payload
        assert their_decompressor.decompress(sent + b"\x00\x00\xff\xff") == message
        theirs = their_compressor.compress(message) + their_compressor.flush(zlib.Z_SYNC_FLUSH)
        received = Frame(Opcode.BINARY, theirs.removesuffix(b"\x00\x00\xff\xff"), rsv1=True)
        assert decode(ours, received) == message


def test_repr() -> None:
    assert "local_max_window_bits=15" in repr(PerMessageDeflate())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(st.binary(max_size=2000), min_size=1, max_size=4), min_size=1, max_size=5),
    st.booleans(),
    st.booleans(),
    st.integers(min_value=9, max_value=15),
    st.tuples(st.booleans(), st.booleans()),
)
def test_round_trip(
    messages: list[list[bytes]],
    sender_reset: bool,
    receiver_reset: bool,
    bits: int,
    keep_state: tuple[bool, bool],
) -> None:
    sender_keeps, receiver_keeps = keep_state
    no_context = sender_reset or receiver_reset
    sender = PerMessageDeflate(
        local_no_context_takeover=no_context,
        local_max_window_bits=bits,
        compress_min_size=16,
        keep_state=sender_keeps,
    )
    receiver = PerMessageDeflate(
        remote_no_context_takeover=no_context,
        remote_max_window_bits=bits,
        keep_state=receiver_keeps,
    )
    for fragments in messages:
        frames = [
            sender.encode(
                Frame(
                    Opcode.BINARY if index == 0 else Opcode.CONTINUATION,
                    fragment,
                    fin=index == len(fragments) - 1,
                )
            )
            for index, fragment in enumerate(fragments)
        ]
        assert decode(receiver, *frames, max_size=None) == b"".join(fragments)


# -- negotiation -------------------------------------------------------------------


def test_default_client_offer_is_what_browsers_send() -> None:
    assert ClientPerMessageDeflateFactory().offer() == [("client_max_window_bits", None)]


def test_full_client_offer() -> None:
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=10,
        client_max_window_bits=12,
    )
    assert factory.offer() == [
        ("server_no_context_takeover", None),
        ("client_no_context_takeover", None),
        ("server_max_window_bits", "10"),
        ("client_max_window_bits", "12"),
    ]
    assert ClientPerMessageDeflateFactory(client_max_window_bits=False).offer() == []


@pytest.mark.parametrize(
    ("factory_class", "kwargs"),
    [
        (ClientPerMessageDeflateFactory, {"server_max_window_bits": 16}),
        (ClientPerMessageDeflateFactory, {"client_max_window_bits": 7}),
        (ServerPerMessageDeflateFactory, {"server_max_window_bits": 7}),
        (ServerPerMessageDeflateFactory, {"client_max_window_bits": 16}),
    ],
)
def test_factory_settings_are_checked(factory_class: type, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="between 8 and 15"):
        factory_class(**kwargs)


@pytest.mark.parametrize(
    "factory_class", [ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory]
)
def test_compress_level_reaches_the_extension(factory_class: type) -> None:
    with pytest.raises(ValueError, match="between 0 and 9"):
        factory_class(compress_level=10)
    fast = factory_class(compress_level=1)
    if factory_class is ClientPerMessageDeflateFactory:
        extension = fast.accept([], [])
    else:
        _, extension = fast.negotiate([], [])
    assert extension.compress_level == 1
    data = b"compressible " * 1000
    # Level 1 still round-trips, and level 9 compresses at least as well.
    frame = Frame(Opcode.BINARY, data)
    encoded = extension.encode(frame)
    assert len(PerMessageDeflate(compress_level=9).encode(frame).payload) <= len(encoded.payload)
    assert decode(PerMessageDeflate(), encoded) == data


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ([("foo", None)], "unknown permessage-deflate parameter"),
        ([("server_no_context_takeover", None)] * 2, "duplicate"),
        ([("server_no_context_takeover", "1")], "takes no value"),
        ([("server_max_window_bits", None)], "integer from 8 to 15"),
        ([("server_max_window_bits", "7")], "integer from 8 to 15"),
        ([("server_max_window_bits", "16")], "integer from 8 to 15"),
        ([("server_max_window_bits", "010")], "integer from 8 to 15"),
        ([("server_max_window_bits", "+9")], "integer from 8 to 15"),
        ([("client_max_window_bits", "x")], "integer from 8 to 15"),
    ],
)
def test_client_rejects_bad_responses(response: list[tuple[str, str | None]], message: str) -> None:
    with pytest.raises(NegotiationError, match=message):
        ClientPerMessageDeflateFactory().accept(response, [])


def test_client_rejects_what_it_did_not_offer_or_was_not_confirmed() -> None:
    with pytest.raises(NegotiationError, match="not offered"):
        ClientPerMessageDeflateFactory(client_max_window_bits=False).accept(
            [("client_max_window_bits", "10")], []
        )
    with pytest.raises(NegotiationError, match="larger than the 12 offered"):
        ClientPerMessageDeflateFactory(client_max_window_bits=12).accept(
            [("client_max_window_bits", "13")], []
        )
    with pytest.raises(NegotiationError, match="larger than the 10 offered"):
        ClientPerMessageDeflateFactory(server_max_window_bits=10).accept(
            [("server_max_window_bits", "11")], []
        )
    with pytest.raises(NegotiationError, match="not confirmed"):
        ClientPerMessageDeflateFactory(server_max_window_bits=10).accept([], [])
    with pytest.raises(NegotiationError, match="not confirmed"):
        ClientPerMessageDeflateFactory(server_no_context_takeover=True).accept([], [])
    with pytest.raises(NegotiationError, match="accepted twice"):
        ClientPerMessageDeflateFactory().accept([], [PerMessageDeflate()])


def test_client_accepts_a_window_of_8_and_does_not_compress() -> None:
    extension = ClientPerMessageDeflateFactory().accept([("client_max_window_bits", "8")], [])
    assert isinstance(extension, PerMessageDeflate)
    frame = Frame(Opcode.TEXT, b"y" * 500)
    assert extension.encode(frame) is frame


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ([("bar", None)], "unknown"),
        ([("client_max_window_bits", "99")], "integer from 8 to 15"),
        ([("server_max_window_bits", None)], "integer from 8 to 15"),
    ],
)
def test_server_declines_bad_offers(offer: list[tuple[str, str | None]], message: str) -> None:
    with pytest.raises(NegotiationError, match=message):
        ServerPerMessageDeflateFactory().negotiate(offer, [])


def test_server_declines_when_it_must_limit_the_client_window() -> None:
    factory = ServerPerMessageDeflateFactory(
        client_max_window_bits=10, require_client_max_window_bits=True
    )
    with pytest.raises(NegotiationError, match="limit the client's window"):
        factory.negotiate([], [])
    assert factory.negotiate([("client_max_window_bits", None)], [])[0] == [
        ("client_max_window_bits", "10")
    ]
    # Without the requirement, the offer is accepted and the client's window is unbounded.
    params, _ = ServerPerMessageDeflateFactory(client_max_window_bits=10).negotiate([], [])
    assert params == []
    # The requirement holds with the default bound too.
    with pytest.raises(NegotiationError, match="limit the client's window"):
        ServerPerMessageDeflateFactory(require_client_max_window_bits=True).negotiate([], [])


def test_server_declines_a_second_deflate() -> None:
    with pytest.raises(NegotiationError, match="accepted twice"):
        ServerPerMessageDeflateFactory().negotiate([], [PerMessageDeflate()])


def test_server_default_response_to_a_browser_offer() -> None:
    """12-bit windows both ways and memLevel 5, as websockets: little memory per connection.
    The server's own window is not announced: nobody asked, and a smaller window than
    the client's decompressor allows needs no agreement."""
    params, extension = ServerPerMessageDeflateFactory().negotiate(
        [("client_max_window_bits", None)], []
    )
    assert params == [("client_max_window_bits", "12")]
    assert isinstance(extension, PerMessageDeflate)
    assert extension.local_max_window_bits == extension.remote_max_window_bits == 12
    assert DEFAULT_WINDOW_BITS == 12
    assert extension.mem_level == DEFAULT_MEM_LEVEL == 5
    assert not extension.keep_state


def test_server_window_settings_for_more_ratio() -> None:
    """Set explicitly, the server's window is named in every response."""
    factory = ServerPerMessageDeflateFactory(
        server_max_window_bits=15, client_max_window_bits=15, mem_level=8, keep_state=True
    )
    params, extension = factory.negotiate([("client_max_window_bits", None)], [])
    assert params == [("server_max_window_bits", "15"), ("client_max_window_bits", "15")]
    assert isinstance(extension, PerMessageDeflate)
    assert extension.local_max_window_bits == extension.remote_max_window_bits == 15
    assert extension.mem_level == 8 and extension.keep_state
    params, extension = factory.negotiate([("server_max_window_bits", "11")], [])
    assert params == [("server_max_window_bits", "11")]
    assert isinstance(extension, PerMessageDeflate)
    assert extension.remote_max_window_bits == 15  # the client didn't let us bound it


def test_server_window_by_default_is_named_only_when_asked() -> None:
    factory = ServerPerMessageDeflateFactory()
    params, extension = factory.negotiate([], [])
    assert params == []
    assert isinstance(extension, PerMessageDeflate)
    assert (extension.local_max_window_bits, extension.remote_max_window_bits) == (12, 15)
    params, extension = factory.negotiate(
        [("server_max_window_bits", "14"), ("client_max_window_bits", "10")], []
    )
    assert params == [("server_max_window_bits", "12"), ("client_max_window_bits", "10")]
    params, _ = factory.negotiate([("server_max_window_bits", "9")], [])
    assert params == [("server_max_window_bits", "9")]


def test_client_settings_reach_the_extension() -> None:
    factory = ClientPerMessageDeflateFactory(mem_level=9, keep_state=True)
    extension = factory.accept([], [])
    assert isinstance(extension, PerMessageDeflate)
    assert extension.mem_level == 9 and extension.keep_state


def test_server_takes_the_smaller_server_window() -> None:
    params, _ = ServerPerMessageDeflateFactory(server_max_window_bits=12).negotiate(
        [("server_max_window_bits", "10")], []
    )
    assert params == [("server_max_window_bits", "10")]
    params, _ = ServerPerMessageDeflateFactory(client_max_window_bits=12).negotiate(
        [("client_max_window_bits", "10")], []
    )
    assert params == [("client_max_window_bits", "10")]


# Every combination of the four parameters, end to end through the core.
BITS = [None, 8, 9, 12, 15]
CLIENT_OFFERS = [
    {
        "server_no_context_takeover": snct,
        "client_no_context_takeover": cnct,
        "server_max_window_bits": smwb,
        "client_max_window_bits": cmwb,
    }
    for snct, cnct, smwb, cmwb in itertools.product(
        [False, True], [False, True], BITS, [False, True, 8, 10, 15]
    )
]
SERVER_POLICIES = [
    {},
    {"server_no_context_takeover": True, "client_no_context_takeover": True},
    {"server_max_window_bits": 10, "client_max_window_bits": 9},
    {"server_max_window_bits": 8, "client_max_window_bits": 8},
]


@pytest.mark.parametrize("policy", SERVER_POLICIES, ids=str)
def test_every_parameter_combination_end_to_end(policy: dict[str, object]) -> None:
    payloads = [b"hello " * 50, os.urandom(300), b"hello " * 50, b"z" * 5000]
    for offer in CLIENT_OFFERS:
        client_factory = ClientPerMessageDeflateFactory(**offer)  # type: ignore[arg-type]
        response, server_ext = ServerPerMessageDeflateFactory(**policy).negotiate(  # type: ignore[arg-type]
            client_factory.offer(), []
        )
        client_ext = client_factory.accept(response, [])
        client = Protocol(Side.CLIENT, extensions=[client_ext])
        server = Protocol(Side.SERVER, extensions=[server_ext])
        for sender, receiver in ((client, server), (server, client)):
            for payload in payloads:
                sender.send_binary(payload[:100], fin=False)
                sender.send_continuation(payload[100:], fin=True)
                sender.send_text(payload.hex()[:200])
            receiver.receive_data(b"".join(sender.data_to_send()))
            events = receiver.events_received()
            assert receiver.protocol_error is None, (offer, policy)
            binary = b"".join(e.data for e in events if isinstance(e, Binary))
            assert binary == b"".join(payloads), (offer, policy)
            assert [e.data for e in events if isinstance(e, Text)] == [
                p.hex()[:200] for p in payloads
            ]


def test_compression_really_happens_on_the_wire() -> None:
    response, server_ext = ServerPerMessageDeflateFactory().negotiate(
        ClientPerMessageDeflateFactory().offer(), []
    )
    client = Protocol(
        Side.CLIENT, extensions=[ClientPerMessageDeflateFactory().accept(response, [])]
    )
    client.send_text("a" * 10_000)
    wire = b"".join(client.data_to_send())
    assert len(wire) < 100
    payload = apply_mask(wire[6:], wire[2:6])  # 2-byte header, then the masking key
    assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == b"a" * 10_000
    server = Protocol(Side.SERVER, extensions=[server_ext])
    server.receive_data(wire)
    assert server.events_received() == [Text("a" * 10_000)]


def test_bomb_through_the_core_closes_with_1009() -> None:
    _, server_ext = ServerPerMessageDeflateFactory().negotiate([], [])
    sender = PerMessageDeflate(compress_min_size=0)
    client = Protocol(Side.CLIENT, extensions=[sender])
    client.send_binary(bytes(50 << 20))
    server = Protocol(Side.SERVER, extensions=[server_ext], max_size=1 << 20)
    server.receive_data(b"".join(client.data_to_send()))
    assert isinstance(server.protocol_error, PayloadTooBig)
    assert server.close_sent is not None and server.close_sent.code == 1009


def test_a_compressed_message_of_max_size_is_not_refused_for_its_wire_size() -> None:
    # Another peer may compress incompressible bytes: the frame is then a
    # little over the message, which is still within max_size once inflated.
    noise = os.urandom(1 << 20)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = (compressor.compress(noise) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(payload) > 1 << 20
    _, server_ext = ServerPerMessageDeflateFactory().negotiate([], [])
    server = Protocol(Side.SERVER, extensions=[server_ext], max_size=1 << 20)
    mask = b"\x01\x02\x03\x04"
    header = bytes([0x82, 0x80 | 127]) + len(payload).to_bytes(8, "big")
    header = bytes([header[0] | 0x40]) + header[1:]  # RSV1: compressed
    server.receive_data(header + mask + apply_mask(payload, mask))
    assert server.events_received() == [Binary(noise)]
