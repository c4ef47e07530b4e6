"""Atheris harness for the opening handshake: the HTTP parsers and the checks behind them.

Run:  pip install -e '.[fuzz]' && python tests/fuzz/fuzz_http.py -atheris_runs=100000

Each input plays either a client's request to a ``ServerProtocol`` or a
server's response to a ``ClientProtocol``: raw, or spliced into a valid
handshake (as extra header lines, as the ``Sec-WebSocket-Extensions`` value,
or as the frames that follow an accepted handshake), split into pieces, then
ended with EOF. Whatever the bytes, the handshake must succeed or fail with
an ``InvalidHandshake`` (a server answering with an HTTP error), and what
follows an accepted handshake goes to the frame parser: any other exception,
or a broken invariant, is a crash. Without atheris, ``TestOneInput`` is a
plain function (tests/fuzz/test_harnesses.py feeds it).
"""

from __future__ import annotations

import contextlib
import sys

try:
    import atheris
except ImportError:  # the smoke test runs the harness without it
    atheris = None

# Run as a fuzzer, atheris instruments syncws's code as it is imported (and nothing
# else: instrumenting the whole standard library takes a minute at every start).
_instrumented = (
    atheris.instrument_imports(include=["syncws"])
    if atheris is not None and __name__ == "__main__"
    else contextlib.nullcontext()
)
with _instrumented:
    from syncws.exceptions import InvalidHandshake
    from syncws.protocol.client import ClientProtocol
    from syncws.protocol.connection import State
    from syncws.protocol.deflate import (
        ClientPerMessageDeflateFactory,
        ServerPerMessageDeflateFactory,
    )
    from syncws.protocol.events import Binary, Close, Ping, Pong, Text
    from syncws.protocol.http11 import Limits, Request, Response
    from syncws.protocol.server import ServerProtocol

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3
REQUEST_HEAD = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY.encode() + b"\r\n"
    b"Sec-WebSocket-Version: 13\r\nOrigin: https://example.com\r\n"
)
RESPONSE_HEAD = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + ACCEPT.encode() + b"\r\n"
)
ERROR_HEAD = b"HTTP/1.1 403 Forbidden\r\nServer: test\r\n"
DEFLATE_OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
DEFLATE_ACCEPT = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
FRAME_EVENTS = (Text, Binary, Ping, Pong, Close)
ERROR_STATUSES = (400, 403, 405, 414, 426, 431, 505)
SMALL_LIMITS = Limits(max_line=64, max_headers=8, max_head_size=512, max_body=256)


def split(data: bytes, seed: int) -> list[bytes]:
    """Cut ``data`` into pieces whose sizes follow from ``seed``: 1 byte to all of it."""
    if seed == 0:
        return [data]
    pieces, start, step = [], 0, 0
    while start < len(data):
        step = (step * 31 + seed) % 97 + 1 if seed & 1 else seed % 13 + 1
        pieces.append(data[start : start + step])
        start += step
    return pieces


def build_input(mode: int, head: bytes, offer: bytes, fuzz: bytes) -> bytes:
    """Raw bytes (mode 0), or ``fuzz`` spliced into a valid head (modes 1 to 3)."""
    if mode == 0:
        return fuzz
    if mode == 1:  # as header lines, maybe with a body after them
        return head + fuzz + b"\r\n\r\n"
    if mode == 2:  # as the extension offer or answer
        return head + b"Sec-WebSocket-Extensions: " + fuzz + b"\r\n\r\n"
    return head + offer + b"\r\n" + fuzz  # a valid handshake, then frames


def check_frames(events: list[object]) -> None:
    for event in events:
        assert isinstance(event, FRAME_EVENTS), event


def origin_policy(origin: str | None) -> bool:
    return origin is not None and origin.endswith("example.com")


def fuzz_server(flags: int, seed: int, data: bytes) -> None:
    server = ServerProtocol(
        origins=origin_policy if flags & 0x10 else None,
        subprotocols=["chat", "superchat"] if flags & 0x20 else None,
        extensions=[]
        if flags & 0x40
        else [ServerPerMessageDeflateFactory(client_max_window_bits=9 + seed % 7)],
        limits=SMALL_LIMITS if flags & 0x08 else None,
        max_size=256,
    )
    answered = False
    for piece in split(data, seed):
        server.receive_data(piece)
        for event in server.events_received():
            if isinstance(event, Request):
                assert not answered
                answered = True
                response = server.accept(event)
                server.send_response(response)
                assert (response.status == 101) == (server.handshake_exc is None)
            else:
                assert answered, event
                check_frames([event])
        server.data_to_send()
        if server.handshake_exc is not None:
            assert isinstance(server.handshake_exc, InvalidHandshake)
            assert server.state is State.CLOSED
            assert server.should_close_transport
            assert server.response is not None
            assert server.response.status in ERROR_STATUSES, server.response.status
    server.receive_eof()
    check_frames(server.events_received())
    assert server.state is State.CLOSED
    if not answered:
        assert isinstance(server.handshake_exc, InvalidHandshake)


def fuzz_client(flags: int, seed: int, data: bytes) -> None:
    client = ClientProtocol(
        "example.com",
        "/chat",
        subprotocols=["chat"] if flags & 0x20 else None,
        extensions=[]
        if flags & 0x40
        else [
            ClientPerMessageDeflateFactory(
                server_no_context_takeover=bool(flags & 0x10),
                client_max_window_bits=True if seed & 0x80 else 8 + seed % 8,
            )
        ],
        limits=SMALL_LIMITS if flags & 0x08 else None,
        max_size=256,
    )
    client._key = KEY  # so that a valid Sec-WebSocket-Accept can be built in advance
    client.send_request(client.connect())
    client.data_to_send()
    responses = 0
    for piece in split(data, seed):
        client.receive_data(piece)
        for event in client.events_received():
            if isinstance(event, Response):
                responses += 1
            else:
                assert client.state is not State.CONNECTING
                check_frames([event])
        client.data_to_send()
        if client.handshake_exc is not None:
            assert isinstance(client.handshake_exc, InvalidHandshake)
            assert client.state is State.CLOSED
            assert client.should_close_transport
    client.receive_eof()
    for event in client.events_received():
        if isinstance(event, Response):
            responses += 1
        else:
            check_frames([event])
    assert client.state is State.CLOSED
    assert responses <= 1
    if client.handshake_exc is None:
        assert client.response is not None
        assert client.response.status == 101
    else:
        assert isinstance(client.handshake_exc, InvalidHandshake)


def TestOneInput(data: bytes) -> None:  # the name atheris looks for
    if len(data) < 2:
        return
    flags, seed, fuzz = data[0], data[1], data[2:]
    mode = (flags >> 1) & 0x03
    if flags & 0x01:
        head = ERROR_HEAD if mode == 1 and seed & 0x40 else RESPONSE_HEAD
        fuzz_client(flags, seed, build_input(mode, head, DEFLATE_ACCEPT, fuzz))
    else:
        fuzz_server(flags, seed, build_input(mode, REQUEST_HEAD, DEFLATE_OFFER, fuzz))


def main() -> None:
    if atheris is None:
        sys.exit("the fuzzer needs atheris: pip install -e '.[fuzz]'")
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
