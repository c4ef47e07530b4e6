"""Property-based robustness of the sans-I/O core: any bytes, in any split, give events or a
clean failure, with permessage-deflate and during the opening handshake too.

test_properties.py covers frames without extensions; this file adds compressed
connections, frames that are nearly valid (built, or mutated from valid ones,
since random bytes rarely get past the first header check), the HTTP parsers
of both sides, and handshakes followed by frames in the same bytes. The
atheris harnesses in tests/fuzz/ explore the same ground for longer.
"""

from __future__ import annotations

import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncws.exceptions import InvalidHandshake
from syncws.protocol.client import ClientProtocol
from syncws.protocol.connection import Protocol, Side, State
from syncws.protocol.deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from syncws.protocol.events import Binary, Close, Ping, Pong, Text
from syncws.protocol.http11 import Limits, Request, Response
from syncws.protocol.server import ServerProtocol

from .test_properties import split

# Modest example counts, the same examples on every run (derandomize): the whole
# suite has a tight time budget and must not fail at random. The atheris
# harnesses (tests/fuzz/) are the place for long runs that explore.
FAST = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

FRAME_EVENTS = (Text, Binary, Ping, Pong, Close)
ERROR_CODES = (1002, 1007, 1009)
ERROR_STATUSES = (400, 403, 405, 414, 426, 431, 505)
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

sides = st.sampled_from([Side.CLIENT, Side.SERVER])
cuts = st.lists(st.integers(min_value=0), max_size=10)
window_bits = st.integers(min_value=8, max_value=15)
deflates = st.builds(
    PerMessageDeflate,
    remote_no_context_takeover=st.booleans(),
    local_no_context_takeover=st.booleans(),
    remote_max_window_bits=window_bits,
    local_max_window_bits=window_bits,
)


def feed(
    protocol: Protocol, data: bytes, points: list[int], output: list[bytes] | None = None
) -> list[object]:
    """Feed ``data`` in pieces; return the events, and add what it sends to ``output``."""
    events: list[object] = []
    for piece in split(data, points):
        protocol.receive_data(piece)
        events += protocol.events_received()
        for chunk in protocol.data_to_send():
            assert isinstance(chunk, bytes)
            if output is not None:
                output.append(chunk)
    return events


def assert_clean_end(protocol: Protocol) -> None:
    """A failure, if any, sent the right close code; EOF then closes with a close code."""
    error = protocol.protocol_error
    if error is not None:
        assert error.close_code in ERROR_CODES
        assert protocol.should_close_transport
        assert protocol.close_sent is not None
        assert protocol.close_sent.code == error.close_code
    protocol.receive_eof()
    for event in protocol.events_received():
        assert isinstance(event, FRAME_EVENTS)
    assert protocol.state is State.CLOSED
    assert protocol.close_code is not None
    assert protocol.close_exc().code == protocol.close_code


# -- frames on a compressed connection -------------------------------------------------


@FAST
@given(st.binary(max_size=400), sides, deflates, cuts)
def test_any_bytes_with_deflate_give_events_or_a_clean_error(
    data: bytes, side: Side, deflate: PerMessageDeflate, points: list[int]
) -> None:
    protocol = Protocol(side, max_size=300, max_fragments=4, extensions=[deflate])
    for event in feed(protocol, data, points):
        assert isinstance(event, FRAME_EVENTS)
    assert_clean_end(protocol)


# One frame a peer might send: header bits as on the wire (FIN, RSV1-3,
# opcode, valid or not), a payload, whether the payload continues a deflate
# stream, and whether it is masked the wrong way for its direction.
frame_specs = st.tuples(
    st.sampled_from([0x80, 0x00]),
    st.sampled_from([0x00, 0x00, 0x40, 0x40, 0x20, 0x10]),
    st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xB]),
    st.binary(max_size=150),
    st.booleans(),
    st.integers(min_value=0, max_value=20),
)


def build_frames(
    specs: list[tuple[int, int, int, bytes, bool, int]], side: Side, bits: int
) -> bytes:
    """Frames that a peer of ``side`` would send, from ``frame_specs``."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -max(9, bits))
    out = bytearray()
    for fin, rsv, opcode, data, compress, wrong_mask in specs:
        payload = data
        if compress:
            payload = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
            if fin:
                payload = payload.removesuffix(b"\x00\x00\xff\xff")
        masked = (side is Side.SERVER) != (wrong_mask == 0)  # wrong once in 21
        length = len(payload)
        mask_bit = 0x80 if masked else 0
        if length < 126:
            out += bytes((fin | rsv | opcode, mask_bit | length))
        else:
            out += bytes((fin | rsv | opcode, mask_bit | 126)) + length.to_bytes(2, "big")
        if masked:
            out += b"\x01\x02\x03\x04"
            out += bytes(byte ^ (index % 4 + 1) for index, byte in enumerate(payload))
        else:
            out += payload
    return bytes(out)


@FAST
@given(st.lists(frame_specs, max_size=8), sides, deflates, cuts, st.booleans())
def test_nearly_valid_frames_with_deflate_give_events_or_a_clean_error(
    specs: list[tuple[int, int, int, bytes, bool, int]],
    side: Side,
    deflate: PerMessageDeflate,
    points: list[int],
    defer: bool,
) -> None:
    protocol = Protocol(side, max_size=200, max_fragments=3, extensions=[deflate])
    protocol.defer_failures = defer
    data = build_frames(specs, side, deflate.remote_max_window_bits)
    for event in feed(protocol, data, points):
        assert isinstance(event, FRAME_EVENTS)
    if protocol.failure_pending:
        protocol.fail_pending()
    assert_clean_end(protocol)


@FAST
@given(
    messages=st.lists(
        st.one_of(st.text(max_size=60), st.binary(max_size=200)).map(lambda m: [m]), max_size=5
    ),
    sender_side=sides,
    no_context=st.booleans(),
    bits=window_bits,
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=4
    ),
    points=cuts,
)
def test_corrupted_compressed_streams_give_events_or_a_clean_error(
    *,
    messages: list[list[str | bytes]],
    sender_side: Side,
    no_context: bool,
    bits: int,
    flips: list[tuple[int, int]],
    points: list[int],
) -> None:
    receiver_side = Side.SERVER if sender_side is Side.CLIENT else Side.CLIENT
    sender = Protocol(
        sender_side,
        extensions=[
            PerMessageDeflate(local_no_context_takeover=no_context, local_max_window_bits=bits)
        ],
    )
    for [message] in messages:
        if isinstance(message, str):
            sender.send_text(message)
        else:
            sender.send_binary(message)
    sender.send_close(1000)
    wire = bytearray(b"".join(sender.data_to_send()))
    for position, xor in flips:
        wire[position % len(wire)] ^= xor
    receiver = Protocol(
        receiver_side,
        max_size=500,
        extensions=[
            PerMessageDeflate(remote_no_context_takeover=no_context, remote_max_window_bits=bits)
        ],
    )
    for event in feed(receiver, bytes(wire), points):
        assert isinstance(event, FRAME_EVENTS)
    assert_clean_end(receiver)


# -- the opening handshake, then frames -------------------------------------------------


def server_protocol(deflate: bool, small: bool) -> ServerProtocol:
    return ServerProtocol(
        subprotocols=["chat"],
        extensions=None if deflate else [],
        limits=Limits(max_line=80, max_headers=6, max_head_size=400) if small else None,
        max_size=300,
    )


def run_server(server: ServerProtocol, data: bytes, points: list[int]) -> None:
    """Feed a server ``data``, answering the request as the I/O layer does; then EOF."""
    answered = False
    for piece in split(data, points):
        server.receive_data(piece)
        for event in server.events_received():
            if isinstance(event, Request):
                assert not answered
                answered = True
                response = server.accept(event)
                server.send_response(response)
                assert (response.status == 101) == (server.handshake_exc is None)
            else:
                assert answered
                assert isinstance(event, FRAME_EVENTS)
        server.data_to_send()
        if server.handshake_exc is not None:
            assert isinstance(server.handshake_exc, InvalidHandshake)
            assert server.state is State.CLOSED
            assert server.should_close_transport
            assert server.response is not None
            assert server.response.status in ERROR_STATUSES
    if server.state is State.OPEN:
        assert_clean_end(server)
        return
    server.receive_eof()
    assert server.state is State.CLOSED
    if not answered:
        assert isinstance(server.handshake_exc, InvalidHandshake)


@FAST
@given(st.binary(max_size=400), st.booleans(), st.booleans(), cuts)
def test_any_bytes_as_a_request_give_a_request_or_an_http_error(
    data: bytes, deflate: bool, small: bool, points: list[int]
) -> None:
    run_server(server_protocol(deflate, small), data, points)


# Header lines: the ones a handshake needs, with valid and invalid values,
# and arbitrary ones. Bytes are Latin-1 so that any byte can appear.
latin1 = st.binary(max_size=30).map(lambda data: data.decode("latin-1"))
header_names = st.one_of(
    st.sampled_from(
        [
            "Host",
            "Upgrade",
            "Connection",
            "Sec-WebSocket-Key",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Extensions",
            "Sec-WebSocket-Protocol",
            "Sec-WebSocket-Accept",
            "Origin",
            "Content-Length",
            "Transfer-Encoding",
        ]
    ),
    latin1,
)
header_values = st.one_of(
    st.sampled_from(
        [
            "websocket",
            "Upgrade",
            "13",
            KEY,
            ACCEPT,
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=10; client_no_context_takeover",
            'permessage-deflate; client_max_window_bits="9"',
            "permessage-deflate; server_max_window_bits=16",
            "chat, superchat",
            "chunked",
            "5",
            "",
        ]
    ),
    latin1,
)
header_lines = st.lists(
    st.tuples(header_names, header_values).map(
        lambda pair: f"{pair[0]}: {pair[1]}\r\n".encode("latin-1")
    ),
    max_size=8,
)
VALID_REQUEST_LINES = (
    "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
).encode()
VALID_RESPONSE_LINES = (
    f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n"
).encode()


@FAST
@given(
    request_line=st.sampled_from(
        [b"GET /chat HTTP/1.1", b"GET /a?b=c HTTP/1.1", b"POST / HTTP/1.1", b"GET / HTTP/1.0"]
    ),
    base=st.booleans(),
    lines=header_lines,
    specs=st.lists(frame_specs, max_size=4),
    deflate=st.booleans(),
    small=st.booleans(),
    points=cuts,
)
def test_requests_with_odd_headers_then_frames_never_raise(
    *,
    request_line: bytes,
    base: bool,
    lines: list[bytes],
    specs: list[tuple[int, int, int, bytes, bool, int]],
    deflate: bool,
    small: bool,
    points: list[int],
) -> None:
    head = request_line + b"\r\n" + (VALID_REQUEST_LINES if base else b"") + b"".join(lines)
    data = head + b"\r\n" + build_frames(specs, Side.SERVER, 15)
    run_server(server_protocol(deflate, small), data, points)


def run_client(data: bytes, points: list[int], deflate: bool, small: bool) -> None:
    """Feed a client ``data`` as the server's answer, then EOF."""
    client = ClientProtocol(
        "example.com",
        subprotocols=["chat"],
        extensions=[ClientPerMessageDeflateFactory(server_max_window_bits=12)] if deflate else [],
        limits=Limits(max_line=80, max_headers=6, max_head_size=400, max_body=100)
        if small
        else None,
        max_size=300,
    )
    client._key = KEY  # so that the accept key in the bytes can match
    client.send_request(client.connect())
    client.data_to_send()
    events = feed(client, data, points)
    if client.handshake_exc is not None:
        assert client.state is State.CLOSED
        assert client.should_close_transport
    opened = client.state is not State.CONNECTING and client.handshake_exc is None
    if opened:
        assert_clean_end(client)
    else:
        client.receive_eof()
        events += client.events_received()
        assert client.state is State.CLOSED
        assert isinstance(client.handshake_exc, InvalidHandshake)
    responses = [event for event in events if isinstance(event, Response)]
    assert len(responses) <= 1
    if responses:
        assert events[0] is responses[0]
    assert all(isinstance(event, FRAME_EVENTS) for event in events[len(responses) :])


@FAST
@given(st.binary(max_size=400), st.booleans(), st.booleans(), cuts)
def test_any_bytes_as_a_response_give_a_response_or_a_handshake_failure(
    data: bytes, deflate: bool, small: bool, points: list[int]
) -> None:
    run_client(data, points, deflate, small)


@FAST
@given(
    status_line=st.sampled_from(
        [
            b"HTTP/1.1 101 Switching Protocols",
            b"HTTP/1.1 101",
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 403 Forbidden",
            b"HTTP/1.0 503 Service Unavailable",
            b"HTTP/1.1 204 No Content",
        ]
    ),
    base=st.booleans(),
    lines=header_lines,
    after=st.one_of(st.binary(max_size=60), st.lists(frame_specs, max_size=4)),
    deflate=st.booleans(),
    small=st.booleans(),
    points=cuts,
)
def test_responses_with_odd_headers_then_frames_or_a_body_never_raise(
    *,
    status_line: bytes,
    base: bool,
    lines: list[bytes],
    after: bytes | list[tuple[int, int, int, bytes, bool, int]],
    deflate: bool,
    small: bool,
    points: list[int],
) -> None:
    head = status_line + b"\r\n" + (VALID_RESPONSE_LINES if base else b"") + b"".join(lines)
    body = after if isinstance(after, bytes) else build_frames(after, Side.CLIENT, 12)
    run_client(head + b"\r\n" + body, points, deflate, small)


@FAST
@given(
    st.lists(st.one_of(st.text(max_size=50), st.binary(max_size=300)), max_size=5),
    st.builds(
        ServerPerMessageDeflateFactory,
        server_no_context_takeover=st.booleans(),
        client_no_context_takeover=st.booleans(),
        server_max_window_bits=st.none() | window_bits,
        client_max_window_bits=st.none() | window_bits,
    ),
    st.builds(
        ClientPerMessageDeflateFactory,
        server_no_context_takeover=st.booleans(),
        client_no_context_takeover=st.booleans(),
        server_max_window_bits=st.none() | window_bits,
        client_max_window_bits=st.booleans() | window_bits,
    ),
    cuts,
    cuts,
)
def test_negotiated_deflate_round_trips_in_any_split(
    messages: list[str | bytes],
    server_factory: ServerPerMessageDeflateFactory,
    client_factory: ClientPerMessageDeflateFactory,
    client_points: list[int],
    server_points: list[int],
) -> None:
    """Whatever both sides negotiate, messages arrive intact, each way, in any split."""
    client = ClientProtocol("example.com", extensions=[client_factory], max_size=None)
    server = ServerProtocol(extensions=[server_factory], max_size=None)
    client.send_request(client.connect())
    [request] = feed(server, b"".join(client.data_to_send()), server_points)
    server.send_response(server.accept(request))
    [_response] = feed(client, b"".join(server.data_to_send()), client_points)
    assert client.handshake_exc is None
    assert client.extensions, "both sides offer and accept permessage-deflate"
    for message in messages:
        for sender in (server, client):
            if isinstance(message, str):
                sender.send_text(message)
            else:
                sender.send_binary(message)
    server.send_close(1000)
    client_output = client.data_to_send()
    events = feed(client, b"".join(server.data_to_send()), client_points, client_output)
    expected = [Text(m) if isinstance(m, str) else Binary(m) for m in messages]
    assert events == [*expected, Close(1000, "")]
    events = feed(server, b"".join(client_output), server_points)
    assert events == [*expected, Close(1000, "")]
    assert server.protocol_error is None
    assert client.protocol_error is None
