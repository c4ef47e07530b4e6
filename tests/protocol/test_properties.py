"""Property-based tests of the frame layer: round trips and robustness, for any split."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncws.protocol.connection import Protocol, Side
from syncws.protocol.events import Binary, Close, Ping, Pong, Text

# A message: text or binary, sent in one or several fragments.
messages = st.one_of(
    st.lists(st.text(max_size=40), min_size=1, max_size=4).map(lambda parts: ("text", parts)),
    st.lists(st.binary(max_size=300), min_size=1, max_size=4).map(lambda parts: ("binary", parts)),
    st.binary(max_size=125).map(lambda data: ("ping", [data])),
    st.binary(max_size=125).map(lambda data: ("pong", [data])),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces, start = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


def send(protocol: Protocol, kind: str, parts: list[object]) -> None:
    if kind == "ping":
        protocol.send_ping(parts[0])  # type: ignore[arg-type]
    elif kind == "pong":
        protocol.send_pong(parts[0])  # type: ignore[arg-type]
    else:
        first, *rest = parts
        starter = protocol.send_text if kind == "text" else protocol.send_binary
        starter(first, fin=not rest)  # type: ignore[operator]
        for index, part in enumerate(rest):
            protocol.send_continuation(part, fin=index == len(rest) - 1)  # type: ignore[arg-type]


def expected_events(kind: str, parts: list[object]) -> list[object]:
    if kind == "ping":
        return [Ping(parts[0])]  # type: ignore[arg-type]
    if kind == "pong":
        return [Pong(parts[0])]  # type: ignore[arg-type]
    cls = Text if kind == "text" else Binary
    return [cls(part, index == len(parts) - 1) for index, part in enumerate(parts)]  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(messages, max_size=8),
    st.sampled_from([Side.CLIENT, Side.SERVER]),
    st.lists(st.integers(min_value=0), max_size=12),
)
def test_serialize_then_parse_gives_the_same_frames(
    sequence: list[tuple[str, list[object]]], sender_side: Side, cuts: list[int]
) -> None:
    receiver_side = Side.SERVER if sender_side is Side.CLIENT else Side.CLIENT
    sender = Protocol(sender_side)
    receiver = Protocol(receiver_side, max_size=None)
    for kind, parts in sequence:
        send(sender, kind, parts)
    sender.send_close(4000, "done")
    wire = b"".join(sender.data_to_send())

    received = []
    for piece in split(wire, cuts):
        receiver.receive_data(piece)
        received += receiver.events_received()

    def normalize(events: list[object]) -> list[object]:
        # A code point may be split across text frames differently on each
        # side only when the sender split it, which str fragments never do.
        return events

    expected = [event for kind, parts in sequence for event in expected_events(kind, parts)]
    assert normalize(received) == [*expected, Close(4000, "done")]
    assert receiver.protocol_error is None


@settings(max_examples=500, deadline=None)
@given(
    st.binary(max_size=600),
    st.sampled_from([Side.CLIENT, Side.SERVER]),
    st.lists(st.integers(min_value=0), max_size=8),
)
def test_any_bytes_give_events_or_a_clean_protocol_error(
    data: bytes, side: Side, cuts: list[int]
) -> None:
    protocol = Protocol(side, max_size=200, max_fragments=4)
    for piece in split(data, cuts):
        protocol.receive_data(piece)  # must never raise
        for event in protocol.events_received():
            assert isinstance(event, Text | Binary | Ping | Pong | Close)
        protocol.data_to_send()
    if protocol.protocol_error is not None:
        assert protocol.should_close_transport
        assert protocol.close_sent is not None
        assert protocol.close_sent.code in (1002, 1007, 1009)
    protocol.receive_eof()
    assert protocol.close_code is not None
