"""The frame log's descriptions: what arrived and its size, never a payload or a token."""

from __future__ import annotations

from syncws.protocol.events import Close, Text
from syncws.protocol.headers import Headers
from syncws.protocol.http11 import Request, Response
from syncws.threaded.connection.logs import describe


def test_handshakes_are_described_by_their_request_and_status_lines() -> None:
    assert describe(Request("/chat", Headers())) == "GET /chat HTTP/1.1"
    # The query string may carry a token: it stays out of the log.
    assert describe(Request("/chat?token=secret", Headers())) == "GET /chat?... HTTP/1.1"
    assert describe(Response(101, "Switching Protocols", Headers())) == (
        "HTTP/1.1 101 Switching Protocols"
    )


def test_frames_are_described_by_their_size() -> None:
    assert describe(Text("secret", final=False)) == "Text of 6 chars (more to come)"
    assert describe(Close(1000, "bye")) == "Close 1000 'bye'"
