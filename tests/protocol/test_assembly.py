"""Big data frames gathered apart from the receive buffer (``ASSEMBLE_SIZE`` and over).

The payload of a frame of ``ASSEMBLE_SIZE`` bytes or more that arrives in
pieces is gathered in storage of its own, kept while frames stream in and
let go when the buffer runs dry: the same events as the buffer gives, without
growing and shrinking the buffer (fresh memory, page faults) for each frame.
"""

from __future__ import annotations

import os
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from syncws.exceptions import InvalidPayload
from syncws.protocol.connection import Protocol
from syncws.protocol.deflate import PerMessageDeflate
from syncws.protocol.events import Binary, Event, Ping, Text
from syncws.protocol.receiving import ASSEMBLE_SIZE

from .helpers import assert_failed, client, client_frame, server, server_frame

BIG = ASSEMBLE_SIZE


def feed(protocol: Protocol, stream: bytes, size: int) -> list[Event]:
    """Feed ``stream`` in pieces of ``size`` bytes; return every event."""
    events: list[Event] = []
    for start in range(0, len(stream), size):
        protocol.receive_data(memoryview(stream)[start : start + size])
        events += protocol.events_received()
    return events


def test_big_frames_streamed_in_pieces_keep_their_storage_until_the_buffer_runs_dry() -> None:
    payloads = [os.urandom(BIG + 1000), os.urandom(BIG * 2), os.urandom(BIG)]
    stream = b"".join(server_frame(0x2, payload) for payload in payloads)
    protocol = client(max_size=None)
    piece = 50_000  # never on a frame's boundary
    events: list[Event] = []
    kept = []
    for start in range(0, len(stream), piece):
        protocol.receive_data(stream[start : start + piece])
        events += protocol.events_received()
        kept.append(protocol._assembly is not None)
    assert events == [Binary(payload) for payload in payloads]
    assert any(kept[:-1])  # between frames, with bytes of the next one waiting
    assert protocol._assembly is None and protocol._assembled is None  # ran dry at the end
    assert not protocol._buffer


def test_a_frame_that_ends_a_read_lets_the_storage_go() -> None:
    payload = os.urandom(BIG)
    frame = server_frame(0x2, payload)
    protocol = client(max_size=None)
    protocol.receive_data(frame[:100])
    header = len(frame) - BIG
    assert protocol._assembled == 100 - header  # the header stays out
    protocol.receive_data(frame[100:])
    assert protocol.events_received() == [Binary(payload)]
    assert protocol._assembly is None


def test_masked_frames_from_a_client_are_unmasked() -> None:
    payloads = [os.urandom(BIG + 7), os.urandom(BIG + 9)]
    stream = b"".join(client_frame(0x2, payload) for payload in payloads) + client_frame(0x9, b"p")
    protocol = server(max_size=None)
    events = feed(protocol, stream, 40_000)
    assert events == [Binary(payloads[0]), Binary(payloads[1]), Ping(b"p")]


def test_smaller_frames_and_plain_text_stay_in_the_buffer() -> None:
    protocol = client(max_size=None)
    small = server_frame(0x2, b"x" * (BIG - 1))
    protocol.receive_data(small[:1000])
    assert protocol._assembled is None
    protocol.receive_data(small[1000:])
    text = "é" * BIG  # checked as it arrives, from the buffer
    frame = server_frame(0x1, text.encode())
    protocol.receive_data(frame[:1000])
    assert protocol._assembled is None
    protocol.receive_data(frame[1000:])
    assert protocol.events_received() == [Binary(b"x" * (BIG - 1)), Text(text)]


def test_a_big_frame_after_a_fragment_and_a_small_frame_behind_it() -> None:
    first = os.urandom(BIG)
    second = os.urandom(BIG * 3)  # bigger: new storage
    stream = (
        server_frame(0x2, first, fin=False)
        + server_frame(0x0, second)
        + server_frame(0x1, b"small")
    )
    protocol = client(max_size=None)
    events = feed(protocol, stream, 30_000)
    assert events == [Binary(first, final=False), Binary(second), Text("small")]
    assert protocol._assembly is None  # the small frame emptied the buffer


def test_a_compressed_frame_that_doesnt_inflate_fails_when_it_completes() -> None:
    extension = PerMessageDeflate()
    protocol = client(max_size=None, extensions=[extension])
    bad = os.urandom(BIG)
    frame = bytearray(server_frame(0x2, bad))
    frame[0] |= 0x40  # RSV1: compressed
    protocol.receive_data(bytes(frame[:1000]))
    protocol.receive_data(bytes(frame[1000:]) + server_frame(0x1, b"after"))
    assert_failed(protocol, InvalidPayload, 1007)
    assert protocol._assembly is None and not protocol._buffer


def test_a_compressed_frame_inflates_when_it_completes() -> None:
    extension = PerMessageDeflate()
    protocol = client(max_size=None, extensions=[extension])
    data = os.urandom(BIG)  # incompressible: the compressed frame is big too
    compressor = zlib.compressobj(wbits=-15)
    deflated = (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    frame = bytearray(server_frame(0x2, deflated))
    frame[0] |= 0x40
    events = feed(protocol, bytes(frame), 20_000)
    assert events == [Binary(data)]


def test_eof_in_the_middle_of_a_big_frame_drops_it() -> None:
    protocol = client(max_size=None)
    frame = server_frame(0x2, os.urandom(BIG))
    protocol.receive_data(frame[:5000])
    protocol.receive_eof()
    assert protocol._assembly is None and protocol._assembled is None
    protocol.receive_data(frame[5000:])  # ignored
    assert protocol.events_received() == []


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3 * BIG), min_size=1, max_size=4),
    piece=st.integers(1_000, 2 * BIG),
)
def test_any_split_gives_the_events_of_one_read(sizes: list[int], piece: int) -> None:
    payloads = [bytes([index]) * size for index, size in enumerate(sizes)]
    stream = b"".join(server_frame(0x2, payload) for payload in payloads)
    whole = client(max_size=None)
    whole.receive_data(stream)
    assert feed(client(max_size=None), stream, piece) == whole.events_received()


def read_directly(protocol: Protocol, stream: bytes, size: int) -> list[Event]:
    """Feed ``stream`` as an I/O layer does: into ``receive_buffer()`` when it offers one."""
    events: list[Event] = []
    position = 0
    while position < len(stream):
        target = protocol.receive_buffer()
        if target is None:
            protocol.receive_data(stream[position : position + size])
            position += size
        else:
            piece = stream[position : position + min(size, len(target))]
            target[: len(piece)] = piece
            full = len(piece) == len(target)
            target.release()
            protocol.received_into(len(piece), more=full)
            position += len(piece)
        events += protocol.events_received()
    return events


def test_reading_straight_into_the_frames_storage() -> None:
    payloads = [os.urandom(BIG * 2), os.urandom(BIG + 3)]
    stream = b"".join(server_frame(0x2, payload) for payload in payloads) + server_frame(0x1, b"x")
    protocol = client(max_size=None)
    assert protocol.receive_buffer() is None  # nothing gathered yet
    events = read_directly(protocol, stream, 30_000)
    assert events == [Binary(payloads[0]), Binary(payloads[1]), Text("x")]
    assert protocol._assembly is None  # the small frame emptied the buffer


def test_a_read_that_fills_the_frame_keeps_the_storage_even_through_a_nudge() -> None:
    protocol = client(max_size=None)
    frame = server_frame(0x2, os.urandom(BIG))
    protocol.receive_data(frame[:1000])
    target = protocol.receive_buffer()
    assert target is not None
    rest = frame[1000:]
    target[:] = rest
    target.release()
    protocol.received_into(len(rest), more=True)  # more probably waits
    assert len(protocol.events_received()) == 1
    protocol.receive_data(b"")  # an I/O layer's nudge after a paused budget
    assert protocol._assembly is not None
    # A read that didn't fill its view: the storage goes at the frame's end.
    protocol.receive_data(frame[:1000])
    target = protocol.receive_buffer()
    assert target is not None
    target[: len(rest)] = rest
    target.release()
    protocol.received_into(len(rest), more=False)
    assert len(protocol.events_received()) == 1
    assert protocol._assembly is None


def test_a_frame_read_into_its_storage_that_fails() -> None:
    protocol = client(max_size=None, extensions=[PerMessageDeflate()])
    frame = bytearray(server_frame(0x2, os.urandom(BIG)))
    frame[0] |= 0x40  # compressed, but not deflate data
    protocol.receive_data(bytes(frame[:1000]))
    target = protocol.receive_buffer()
    assert target is not None
    target[:] = frame[1000:]
    target.release()
    protocol.received_into(len(frame) - 1000, more=True)
    assert_failed(protocol, InvalidPayload, 1007)
    assert protocol.receive_buffer() is None
