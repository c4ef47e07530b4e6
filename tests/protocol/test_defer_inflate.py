"""``defer_inflate``: compressed frames come out as ``Deflated``, inflated later by ``inflate()``.

Byte-level: a client ``Protocol`` with permessage-deflate compresses (context
takeover on, so each message depends on the ones before it), a server
``Protocol`` in defer mode parses, and the test inflates what came out.
"""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncws.exceptions import InvalidPayload, PayloadTooBig, ProtocolError
from syncws.protocol import Deflated
from syncws.protocol.connection import Protocol, Side
from syncws.protocol.deflate import PerMessageDeflate
from syncws.protocol.events import Binary, Event, Ping, Text
from syncws.protocol.frames import Frame

from .helpers import Identity, assert_failed, client_frame, sent


class CountingDeflate(PerMessageDeflate):
    """permessage-deflate that counts its ``decode`` calls."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.decoded = 0

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        self.decoded += 1
        return super().decode(frame, max_size=max_size)


def pair(
    max_size: int | None = 2**20, compress_min_size: int = 0, **kwargs: object
) -> tuple[Protocol, Protocol, CountingDeflate]:
    """A compressing client and a server in defer mode (its extension counts decodes)."""
    sender = Protocol(
        Side.CLIENT, extensions=[PerMessageDeflate(compress_min_size=compress_min_size)]
    )
    extension = CountingDeflate(**kwargs)
    receiver = Protocol(Side.SERVER, extensions=[extension], max_size=max_size)
    receiver.defer_inflate = True
    return sender, receiver, extension


def transfer(sender: Protocol, receiver: Protocol) -> list[Event]:
    receiver.receive_data(sent(sender))
    return receiver.events_received()


def inflate_all(receiver: Protocol, events: list[Event]) -> list[Event]:
    return [receiver.inflate(event) if isinstance(event, Deflated) else event for event in events]


def compressed(data: bytes, final: bool = True) -> bytes:
    """Raw deflate of ``data`` as permessage-deflate sends it (no context)."""
    compressor = zlib.compressobj(wbits=-15)
    payload = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return payload[:-4] if final else payload


# -- what the parser emits ---------------------------------------------------------------


def test_a_compressed_message_comes_out_deflated_and_is_not_inflated() -> None:
    sender, receiver, extension = pair()
    sender.send_text("hello " * 100)
    [event] = transfer(sender, receiver)
    assert isinstance(event, Deflated)
    assert (event.text, event.first, event.final, event.rsv1) == (True, True, True, True)
    assert len(event.data) < 600  # still compressed
    assert extension.decoded == 0
    assert receiver.inflate(event) == Text("hello " * 100)
    assert extension.decoded == 1


def test_context_takeover_across_several_deferred_messages() -> None:
    sender, receiver, _ = pair()
    messages = [f"message {i} " * 20 for i in range(5)]
    for message in messages:
        sender.send_text(message)
    sender.send_binary(b"bytes" * 50)
    events = transfer(sender, receiver)
    assert all(isinstance(event, Deflated) for event in events)
    # The later messages only inflate after the earlier ones: they refer to them.
    assert sum(len(e.data) for e in events if isinstance(e, Deflated)) < 400
    assert inflate_all(receiver, events) == [Text(m) for m in messages] + [Binary(b"bytes" * 50)]


def test_parsing_goes_on_while_deflated_messages_wait() -> None:
    """The parser's state and the inflater's are apart: inflate late, in wire order."""
    sender, receiver, _ = pair()
    waiting: list[Event] = []
    for i in range(3):
        sender.send_text(f"round {i} " * 30)
        waiting += transfer(sender, receiver)
    assert inflate_all(receiver, waiting) == [Text(f"round {i} " * 30) for i in range(3)]


def test_a_fragmented_compressed_message() -> None:
    sender, receiver, _ = pair()
    text = "é" * 300  # two bytes per character: frame boundaries may split one
    sender.send_text(text[:100], fin=False)
    sender.send_continuation(text[100:250], fin=False)
    sender.send_continuation(text[250:], fin=True)
    events = transfer(sender, receiver)
    assert [(e.first, e.final, e.rsv1) for e in events if isinstance(e, Deflated)] == [
        (True, False, True),
        (False, False, False),
        (False, True, False),
    ]
    pieces = inflate_all(receiver, events)
    assert all(isinstance(piece, Text) for piece in pieces)
    assert "".join(piece.data for piece in pieces if isinstance(piece, Text)) == text
    assert [piece.final for piece in pieces if isinstance(piece, Text)] == [False, False, True]


def test_a_fragmented_compressed_binary_message() -> None:
    sender, receiver, _ = pair()
    sender.send_binary(b"\x00\x01" * 100, fin=False)
    sender.send_continuation(b"\x02" * 100, fin=True)
    pieces = inflate_all(receiver, transfer(sender, receiver))
    assert pieces == [Binary(b"\x00\x01" * 100, False), Binary(b"\x02" * 100, True)]


def test_text_split_inside_a_character_across_frames() -> None:
    sender, receiver, _ = pair()
    encoded = "€".encode()  # 3 bytes
    sender.send_text(b"a" + encoded[:2], fin=False)
    sender.send_continuation(encoded[2:], fin=True)
    assert inflate_all(receiver, transfer(sender, receiver)) == [Text("a", False), Text("€", True)]


def test_interleaved_pings_are_answered_at_parse_time_in_order() -> None:
    sender, receiver, _ = pair()
    sender.send_text("first half " * 20, fin=False)
    sender.send_ping(b"one")
    sender.send_continuation("second half " * 20, fin=True)
    sender.send_ping(b"two")
    events = transfer(sender, receiver)
    assert [type(event) for event in events] == [Deflated, Ping, Deflated, Ping]
    # Both pongs are queued before anything was inflated, in the pings' order.
    assert sent(receiver) == b"\x8a\x03one\x8a\x03two"
    pieces = inflate_all(receiver, events)
    assert pieces[1] == Ping(b"one") and pieces[3] == Ping(b"two")
    assert pieces[0] == Text("first half " * 20, False)
    assert pieces[2] == Text("second half " * 20, True)


def test_uncompressed_messages_take_the_normal_path_without_the_extension() -> None:
    sender, receiver, extension = pair(compress_min_size=50)
    sender.send_text("short")  # under compress_min_size: sent uncompressed
    sender.send_text("long enough to compress " * 10)
    data = sent(sender)
    # A fragmented message is always compressed by us: write an uncompressed one.
    data += client_frame(0x2, b"tiny", fin=False) + client_frame(0x0, b" and more")
    sender.send_binary(b"z" * 500)
    receiver.receive_data(data + sent(sender))
    events = receiver.events_received()
    assert [type(event) for event in events] == [Text, Deflated, Binary, Binary, Deflated]
    assert extension.decoded == 0  # its per-message state is the deferred path's alone
    assert inflate_all(receiver, events) == [
        Text("short"),
        Text("long enough to compress " * 10),
        Binary(b"tiny", False),
        Binary(b" and more", True),
        Binary(b"z" * 500),
    ]
    assert extension.decoded == 2


def test_uncompressed_text_still_fails_on_invalid_utf8_at_parse_time() -> None:
    _, receiver, _ = pair()
    receiver.receive_data(client_frame(0x1, b"\xff"))
    assert_failed(receiver, InvalidPayload, 1007)


@pytest.mark.parametrize("first_rsv", [0, 4])
def test_rsv1_on_a_continuation_frame_fails_at_parse_time(first_rsv: int) -> None:
    _, receiver, extension = pair()
    first = compressed(b"x" * 10, final=False) if first_rsv else b"plain"
    receiver.receive_data(client_frame(0x1, first, fin=False, rsv=first_rsv))
    receiver.receive_data(client_frame(0x0, compressed(b"y"), rsv=4))
    assert_failed(receiver, ProtocolError, 1002)
    assert extension.decoded == 0


def test_other_extensions_decode_at_parse_time() -> None:
    receiver = Protocol(Side.SERVER, extensions=[Identity()])
    receiver.defer_inflate = True
    receiver.receive_data(client_frame(0x2, b"as is"))
    assert receiver.events_received() == [Binary(b"as is")]
    extension = CountingDeflate()
    two = Protocol(Side.SERVER, extensions=[Identity(), extension])
    two.defer_inflate = True
    two.receive_data(client_frame(0x2, compressed(b"deflated"), rsv=4))
    assert two.events_received() == [Binary(b"deflated")]
    assert extension.decoded == 1


# -- the bounds ----------------------------------------------------------------------------


def test_too_big_once_inflated() -> None:
    _, receiver, _ = pair(max_size=1000)
    receiver.receive_data(client_frame(0x2, compressed(b"\x00" * 1001), rsv=4))
    [event] = receiver.events_received()
    assert isinstance(event, Deflated)
    assert receiver.protocol_error is None  # the parser saw only a few bytes
    with pytest.raises(PayloadTooBig) as caught:
        receiver.inflate(event)
    receiver.fail_inflate(caught.value)
    assert_failed(receiver, PayloadTooBig, 1009)


def test_too_big_once_inflated_across_frames() -> None:
    _, receiver, _ = pair(max_size=1000)
    compressor = zlib.compressobj(wbits=-15)
    first = compressor.compress(b"a" * 600) + compressor.flush(zlib.Z_SYNC_FLUSH)
    second = compressor.compress(b"b" * 600) + compressor.flush(zlib.Z_SYNC_FLUSH)
    receiver.receive_data(client_frame(0x2, first, fin=False, rsv=4))
    receiver.receive_data(client_frame(0x0, second[:-4]))
    first_event, second_event = receiver.events_received()
    assert isinstance(first_event, Deflated) and isinstance(second_event, Deflated)
    assert receiver.inflate(first_event) == Binary(b"a" * 600, False)
    with pytest.raises(PayloadTooBig):
        receiver.inflate(second_event)


def test_exactly_max_size_once_inflated_passes() -> None:
    _, receiver, _ = pair(max_size=1000)
    receiver.receive_data(client_frame(0x2, compressed(b"\x00" * 1000), rsv=4))
    [event] = receiver.events_received()
    assert isinstance(event, Deflated)
    assert receiver.inflate(event) == Binary(b"\x00" * 1000)


def test_invalid_utf8_once_inflated() -> None:
    _, receiver, _ = pair()
    receiver.receive_data(client_frame(0x1, compressed(b"caf\xc3"), rsv=4))
    [event] = receiver.events_received()
    assert isinstance(event, Deflated)
    with pytest.raises(InvalidPayload) as caught:
        receiver.inflate(event)
    receiver.fail_inflate(caught.value)
    assert_failed(receiver, InvalidPayload, 1007)


def test_invalid_utf8_once_inflated_in_a_fragment() -> None:
    _, receiver, _ = pair()
    compressor = zlib.compressobj(wbits=-15)
    first = compressor.compress(b"ok") + compressor.flush(zlib.Z_SYNC_FLUSH)
    second = compressor.compress(b"\xed\xa0") + compressor.flush(zlib.Z_SYNC_FLUSH)
    receiver.receive_data(client_frame(0x1, first, fin=False, rsv=4))
    receiver.receive_data(client_frame(0x0, second, fin=False))
    first_event, second_event = receiver.events_received()
    assert isinstance(first_event, Deflated) and isinstance(second_event, Deflated)
    assert receiver.inflate(first_event) == Text("ok", False)
    with pytest.raises(InvalidPayload, match="surrogate"):
        receiver.inflate(second_event)


def test_bad_deflate_data_once_inflated() -> None:
    _, receiver, _ = pair()
    receiver.receive_data(client_frame(0x2, b"\xff\xff\xff\xff", rsv=4))
    [event] = receiver.events_received()
    assert isinstance(event, Deflated)
    with pytest.raises(InvalidPayload):
        receiver.inflate(event)


def test_no_size_limit() -> None:
    _, receiver, _ = pair(max_size=None)
    receiver.receive_data(client_frame(0x2, compressed(b"\x00" * 3_000_000), rsv=4))
    [event] = receiver.events_received()
    assert isinstance(event, Deflated)
    assert receiver.inflate(event) == Binary(b"\x00" * 3_000_000)


def test_the_wire_size_of_a_whole_message_is_bounded_at_parse_time() -> None:
    _, receiver, _ = pair(max_size=1024)
    limit = 1024 + 64 + 64  # max_size, 1/16 of it, 64 bytes
    receiver.receive_data(client_frame(0x2, b"\x00" * 1000, fin=False, rsv=4))
    receiver.receive_data(client_frame(0x0, b"\x00" * (limit - 1000), fin=False))
    assert receiver.protocol_error is None
    receiver.receive_data(client_frame(0x0, b"\x00", fin=True))
    assert_failed(receiver, PayloadTooBig, 1009)


def test_the_receive_budget_counts_wire_bytes_of_deferred_frames() -> None:
    sender, receiver, _ = pair()
    sender.send_binary(b"\x00" * 100_000)
    sender.send_binary(b"\x00" * 100_000)
    data = sent(sender)
    receiver.set_receive_budget(size=1000)
    receiver.receive_data(data)
    # 100 KB inflated each, a few hundred bytes on the wire: both fit 1,000 bytes.
    events = receiver.events_received()
    assert len(events) == 2
    assert not receiver.receive_paused
    receiver.set_receive_budget(messages=1, size=None)
    sender.send_binary(b"\x00" * 100_000)
    sender.send_binary(b"\x00" * 100_000)
    receiver.receive_data(sent(sender))
    assert len(receiver.events_received()) == 1
    assert receiver.receive_paused


# -- failing afterwards -------------------------------------------------------------------


def test_fail_inflate_drops_a_later_parse_error_waiting() -> None:
    _, receiver, _ = pair(max_size=100)
    receiver.defer_failures = True
    receiver.receive_data(client_frame(0x2, compressed(b"\x00" * 200), rsv=4))
    receiver.receive_data(client_frame(0x0, b"no message to continue"))
    assert receiver.failure_pending
    [event] = receiver.events_received()
    assert isinstance(event, Deflated)
    with pytest.raises(PayloadTooBig) as caught:
        receiver.inflate(event)
    receiver.fail_inflate(caught.value)
    assert not receiver.failure_pending
    assert_failed(receiver, PayloadTooBig, 1009)


def test_fail_inflate_after_the_connection_failed_keeps_the_first_error() -> None:
    _, receiver, _ = pair(max_size=100)
    receiver.receive_data(client_frame(0x2, compressed(b"\x00" * 200), rsv=4))
    [event] = receiver.events_received()
    receiver.receive_data(client_frame(0x0, b"no message to continue"))
    assert_failed(receiver, ProtocolError, 1002)
    first = receiver.protocol_error
    assert isinstance(event, Deflated)
    with pytest.raises(PayloadTooBig) as caught:
        receiver.inflate(event)
    receiver.fail_inflate(caught.value)
    assert receiver.protocol_error is first
    assert receiver.close_sent is not None and receiver.close_sent.code == 1002


def test_inflate_rejects_rsv1_on_a_continuation_event() -> None:
    _, receiver, _ = pair()
    receiver.receive_data(client_frame(0x2, compressed(b"abc", final=False), fin=False, rsv=4))
    [event] = receiver.events_received()
    assert isinstance(event, Deflated)
    receiver.inflate(event)
    with pytest.raises(ProtocolError, match="continuation"):
        receiver.inflate(Deflated(compressed(b"d"), text=False, first=False, rsv1=True))


# -- any mix, any fragmentation ------------------------------------------------------------

pieces = st.lists(st.binary(max_size=300), min_size=1, max_size=4)
messages = st.lists(st.tuples(st.booleans(), pieces), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(messages=messages, min_size=st.sampled_from([0, 64, 10_000]), takeover=st.booleans())
def test_any_mix_round_trips(
    messages: list[tuple[bool, list[bytes]]], min_size: int, takeover: bool
) -> None:
    sender = Protocol(
        Side.CLIENT,
        extensions=[
            PerMessageDeflate(compress_min_size=min_size, local_no_context_takeover=not takeover)
        ],
    )
    extension = PerMessageDeflate(remote_no_context_takeover=not takeover)
    receiver = Protocol(Side.SERVER, extensions=[extension])
    receiver.defer_inflate = True
    expected: list[bytes | str] = []
    for is_text, parts in messages:
        if is_text:
            texts = [part.decode("latin-1") for part in parts]
            for index, text in enumerate(texts):
                last = index == len(texts) - 1
                if index == 0:
                    sender.send_text(text, fin=last)
                else:
                    sender.send_continuation(text, fin=last)
            expected.append("".join(texts))
        else:
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                if index == 0:
                    sender.send_binary(part, fin=last)
                else:
                    sender.send_continuation(part, fin=last)
            expected.append(b"".join(parts))
        sender.send_ping(b"p")
    events = inflate_all(receiver, transfer(sender, receiver))
    assert receiver.protocol_error is None
    received: list[bytes | str] = []
    current: list[bytes | str] = []
    for event in events:
        if isinstance(event, (Text, Binary)):
            current.append(event.data)
            if event.final:
                joined = "".join(current) if isinstance(event, Text) else b"".join(current)  # type: ignore[arg-type]
                received.append(joined)
                current = []
    assert received == expected
    assert sum(isinstance(event, Ping) for event in events) == len(messages)
