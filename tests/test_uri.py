"""WebSocket URI parsing."""

from __future__ import annotations

import pytest

from syncws.exceptions import InvalidURI
from syncws.uri import WebSocketURI, parse_uri


@pytest.mark.parametrize(
    ("uri", "expected", "host_header"),
    [
        ("ws://localhost", WebSocketURI(False, "localhost", 80, "/"), "localhost"),
        ("ws://localhost/", WebSocketURI(False, "localhost", 80, "/"), "localhost"),
        (
            "wss://example.com:8443/a/b?x=1&y",
            WebSocketURI(True, "example.com", 8443, "/a/b?x=1&y"),
            "example.com:8443",
        ),
        ("ws://[::1]:9000/chat", WebSocketURI(False, "::1", 9000, "/chat"), "[::1]:9000"),
        ("wss://[::1]/", WebSocketURI(True, "::1", 443, "/"), "[::1]"),
        ("WS://Example.COM/Path", WebSocketURI(False, "example.com", 80, "/Path"), "example.com"),
        ("ws://host/with space", WebSocketURI(False, "host", 80, "/with%20space"), "host"),
        (
            "ws://bücher.example/",
            WebSocketURI(False, "xn--bcher-kva.example", 80, "/"),
            "xn--bcher-kva.example",
        ),
    ],
)
def test_valid(uri: str, expected: WebSocketURI, host_header: str) -> None:
    parsed = parse_uri(uri)
    assert parsed == expected
    assert parsed.host_header == host_header


def test_user_info_is_parsed_and_hidden_from_repr() -> None:
    parsed = parse_uri("wss://alice:s%40cret@example.com/")
    assert parsed.user_info == ("alice", "s@cret")
    assert "cret" not in repr(parsed)
    assert repr(parsed) == "WebSocketURI('wss://example.com/')"
    assert parse_uri("ws://bob@host/").user_info == ("bob", "")


@pytest.mark.parametrize(
    ("uri", "detail"),
    [
        ("http://example.com/", "scheme must be ws:// or wss://"),
        ("example.com", "scheme must be ws:// or wss://"),
        ("ws:///path", "no host"),
        ("ws://host/#frag", "#fragment"),
        ("ws://host:99999/", "out of range"),
        ("ws://host:port/", "Port could not be cast"),
    ],
)
def test_invalid(uri: str, detail: str) -> None:
    with pytest.raises(InvalidURI, match=detail):
        parse_uri(uri)


def test_user_info_becomes_basic_authorization_and_stays_out_of_repr() -> None:
    wsuri = parse_uri("wss://al%40ice:p%3Ass@example.com/")
    assert wsuri.user_info == ("al@ice", "p:ss")
    assert wsuri.authorization == "Basic YWxAaWNlOnA6c3M="
    assert "p:ss" not in repr(wsuri) and "ice" not in repr(wsuri)
    assert parse_uri("ws://example.com/").authorization is None
