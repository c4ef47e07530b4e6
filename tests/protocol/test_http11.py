"""HTTP/1.1 parsing and serialization for the handshake, with its limits."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncws.exceptions import InvalidMessage
from syncws.protocol.headers import Headers
from syncws.protocol.http11 import (
    Limits,
    Request,
    Response,
    error_response,
    parse_request,
    parse_response,
)

REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"X-Spaces:   padded value \t\r\n"
    b"\r\n"
)


def test_parse_request_leaves_what_follows() -> None:
    buffer = bytearray(REQUEST + b"\x81\x85frame")
    request = parse_request(buffer)
    assert request is not None
    assert request.method == "GET"
    assert request.path == "/chat?room=1"
    assert request.headers["host"] == "example.com"
    assert request.headers["X-Spaces"] == "padded value"
    assert buffer == b"\x81\x85frame"


def test_parse_request_incrementally() -> None:
    buffer = bytearray()
    for byte in REQUEST[:-1]:
        buffer.append(byte)
        assert parse_request(buffer) is None
    buffer.append(REQUEST[-1])
    assert parse_request(buffer) is not None
    assert buffer == b""


def test_request_round_trip() -> None:
    request = Request("/a", Headers({"Host": "h"}))
    parsed = parse_request(bytearray(request.serialize()))
    assert parsed == request


def error_of(data: bytes, limits: Limits | None = None) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as info:
        parse_request(bytearray(data), limits)
    return info.value


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"POST / HTTP/1.1\r\n\r\n", 405, "GET request"),
        (b"GET / HTTP/1.0\r\n\r\n", 505, "HTTP/1.1"),
        (b"GET / HTTP/2\r\n\r\n", 400, "malformed request line"),
        (b"GET /  HTTP/1.1\r\n\r\n", 400, "malformed request line"),
        (b"G(T / HTTP/1.1\r\n\r\n", 400, "malformed request line"),
        (b"GET * HTTP/1.1\r\n\r\n", 400, "path starting with /"),
        (b"GET http://x/ HTTP/1.1\r\n\r\n", 400, "path starting with /"),
        (b"GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400, "invalid header line"),
        (b"GET / HTTP/1.1\r\nName : v\r\n\r\n", 400, "invalid header line"),
        # Decoded from a table of common strings, still not a header name.
        (b"GET / HTTP/1.1\r\ngzip, deflate, br, zstd: v\r\n\r\n", 400, "invalid header line"),
        (b"GET / HTTP/1.1\r\nHost\r\n\r\n", 400, "invalid header line"),
        (b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400, "line folding"),
        (b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n", 400, "invalid characters in the A header"),
        (b"GET / HTTP/1.1\r\nA: b\nc\r\n\r\n", 400, "invalid characters"),
    ],
)
def test_malformed_requests(data: bytes, status: int, message: str) -> None:
    exc = error_of(data)
    assert exc.status == status
    assert message in str(exc)


def test_limits_fail_before_the_head_is_complete() -> None:
    limits = Limits(max_line=100, max_headers=3, max_head_size=500)
    # A request line that never ends.
    assert error_of(b"GET /" + b"a" * 200, limits).status == 414
    # A header line that never ends.
    assert error_of(b"GET / HTTP/1.1\r\nX: " + b"a" * 200, limits).status == 431
    # Too many header lines, still no blank line.
    assert error_of(b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 10, limits).status == 431
    # Too large overall.
    assert (
        error_of(
            b"GET / HTTP/1.1\r\n" + b"A: " + b"b" * 90 + b"\r\n" * 1,
            Limits(max_line=1000, max_headers=100, max_head_size=50),
        ).status
        == 431
    )


def test_limits_on_a_complete_head() -> None:
    limits = Limits(max_line=30, max_headers=2)
    assert error_of(b"GET /" + b"a" * 40 + b" HTTP/1.1\r\n\r\n", limits).status == 414
    assert error_of(b"GET / HTTP/1.1\r\nX: " + b"a" * 40 + b"\r\n\r\n", limits).status == 431
    assert error_of(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits).status == 431


def test_slowloris_buffers_at_most_the_limit() -> None:
    limits = Limits(max_head_size=1000, max_line=2000, max_headers=1000)
    buffer = bytearray(b"GET / HTTP/1.1\r\n")
    with pytest.raises(InvalidMessage):
        while True:
            buffer += b"X: y\r\n"
            assert len(buffer) < 1100
            parse_request(buffer, limits)


RESPONSE_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
)


def test_parse_101_leaves_frames() -> None:
    buffer = bytearray(RESPONSE_101 + b"\x81\x02hi")
    response = parse_response(buffer)
    assert response is not None
    assert (response.status, response.reason, response.body) == (101, "Switching Protocols", b"")
    assert buffer == b"\x81\x02hi"


def test_parse_response_without_reason() -> None:
    response = parse_response(bytearray(b"HTTP/1.1 101\r\n\r\n"))
    assert response is not None
    assert response.reason == ""


def test_response_with_content_length() -> None:
    data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!"
    buffer = bytearray(data[:-1])
    assert parse_response(buffer) is None
    with pytest.raises(InvalidMessage, match="end of the response body"):
        parse_response(bytearray(data[:-1]), eof=True)
    buffer += data[-1:]
    response = parse_response(buffer)
    assert response is not None
    assert response.body == b"nope!"


def test_response_body_until_eof() -> None:
    buffer = bytearray(b"HTTP/1.1 500 Oops\r\n\r\nbody")
    assert parse_response(buffer) is None
    response = parse_response(buffer, eof=True)
    assert response is not None
    assert response.body == b"body"


def test_no_body_statuses() -> None:
    for status in (204, 304, 100):
        buffer = bytearray(f"HTTP/1.1 {status} X\r\n\r\n".encode())
        response = parse_response(buffer)
        assert response is not None
        assert response.body == b""


def test_chunked_body() -> None:
    data = b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n"
    for cut in range(len(body)):
        assert parse_response(bytearray(data + body[:cut])) is None
    with pytest.raises(InvalidMessage, match="end of the response body"):
        parse_response(bytearray(data + body[:-2]), eof=True)
    buffer = bytearray(data + body + b"extra")
    response = parse_response(buffer)
    assert response is not None
    assert response.body == b"Wikipedia"
    assert buffer == b"extra"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"HTTP/1.1 1000 X\r\n\r\n", "malformed status line"),
        (b"HTTP/2 101 X\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 099 X\r\n\r\n", "invalid status code"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", "exceeds"),
        # Found by the property tests: these raised ValueError and
        # MultipleValuesError out of the parser instead of InvalidMessage.
        (b"HTTP/1.1 403 X\r\nContent-Length: \xb2\r\n\r\nab", "invalid Content-Length"),
        (b"HTTP/1.1 403 X\r\nContent-Length: 1234567890123456789\r\n\r\n", "invalid Content-"),
        (
            b"HTTP/1.1 403 X\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            "invalid Content-Length",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", "not followed"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 1100,
            "chunk size line",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n",
            "exceeds",
        ),
    ],
)
def test_malformed_responses(data: bytes, message: str) -> None:
    with pytest.raises(InvalidMessage, match=message):
        parse_response(bytearray(data))


def test_repeated_identical_content_length_is_accepted() -> None:
    data = b"HTTP/1.1 403 X\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nabc"
    buffer = bytearray(data)
    response = parse_response(buffer)
    assert response is not None
    assert response.body == b"ab"
    assert buffer == b"c"


def test_body_until_eof_is_bounded() -> None:
    with pytest.raises(InvalidMessage, match="exceeds 10 bytes"):
        parse_response(bytearray(b"HTTP/1.1 500 X\r\n\r\n" + b"x" * 11), Limits(max_body=10))


def test_response_head_cut_by_eof() -> None:
    with pytest.raises(InvalidMessage, match="end of the response head"):
        parse_response(bytearray(b"HTTP/1.1 101 Sw"), eof=True)


def test_error_response() -> None:
    response = error_response(403, "Forbidden origin.", {"X-Why": "origin"})
    assert response.status == 403
    assert response.reason == "Forbidden"
    assert response.body == b"Forbidden origin.\n"
    assert response.headers["Content-Length"] == "18"
    assert response.headers["Connection"] == "close"
    assert response.headers["X-Why"] == "origin"
    parsed = parse_response(bytearray(response.serialize()))
    assert parsed == response
    custom = error_response(299, "done\n", {"Content-Type": "application/json"})
    assert custom.reason == ""
    assert custom.headers["Content-Type"] == "application/json"
    assert Response(200, "OK", Headers()).serialize() == b"HTTP/1.1 200 OK\r\n\r\n"


@given(st.binary(max_size=300), st.booleans())
def test_any_bytes_parse_or_fail_cleanly(data: bytes, eof: bool) -> None:
    for parse in (parse_request, lambda b, limits: parse_response(b, limits, eof=eof)):
        with contextlib.suppress(InvalidMessage):
            parse(bytearray(data), Limits(max_line=100, max_headers=5, max_head_size=200))


def test_response_aliases_and_two_cookies_on_the_wire() -> None:
    # websockets' names, as process_response hooks written for it use them.
    response = Response(101, "Switching Protocols", Headers({"Upgrade": "websocket"}))
    assert (response.status_code, response.reason_phrase) == (101, "Switching Protocols")
    response.headers["Set-Cookie"] = "session=1; HttpOnly"
    response.headers["Set-Cookie"] = "theme=dark"
    assert response.serialize() == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Set-Cookie: session=1; HttpOnly\r\n"
        b"Set-Cookie: theme=dark\r\n"
        b"\r\n"
    )
    response.status_code, response.reason_phrase = 403, "Forbidden"
    assert response.serialize().startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert (response.status, response.reason) == (403, "Forbidden")
