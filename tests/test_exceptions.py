"""Messages and attributes of the exception hierarchy."""

from __future__ import annotations

import pytest

from syncws.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderFormat,
    InvalidOrigin,
    InvalidPayload,
    InvalidUpgrade,
    InvalidURI,
    InvalidVersion,
    PayloadTooBig,
    ProtocolError,
    TooManyFragments,
    WebSocketError,
)


def test_connection_closed_without_frames() -> None:
    exc = ConnectionClosedError(None, "", None, "")
    assert exc.code == 1006
    assert exc.reason == ""
    assert isinstance(exc, ConnectionClosed)
    assert isinstance(exc, WebSocketError)


def test_connection_closed_by_peer_only() -> None:
    exc = ConnectionClosed(4001, "kicked", None, "")
    assert (exc.code, exc.reason) == (4001, "kicked")
    assert str(exc) == "received 4001 (private use) kicked; no close frame sent"


@pytest.mark.parametrize(
    ("value", "detail", "message"),
    [
        (None, "", "missing Upgrade header"),
        ("", "", "empty Upgrade header"),
        ("h2c", "", "invalid Upgrade header: 'h2c'"),
        ("h2c", "expected websocket", "invalid Upgrade header: 'h2c' (expected websocket)"),
    ],
)
def test_invalid_header_messages(value: str | None, detail: str, message: str) -> None:
    assert str(InvalidHeader("Upgrade", value, detail)) == message


def test_invalid_header_format() -> None:
    exc = InvalidHeaderFormat("Sec-WebSocket-Extensions", "a;;", 2, "expected token")
    assert exc.position == 2
    assert (
        str(exc) == "invalid Sec-WebSocket-Extensions header: 'a;;' (expected token at position 2)"
    )


def test_http_statuses() -> None:
    assert InvalidHandshake.status == 400
    assert InvalidUpgrade.status == 426
    assert InvalidVersion.status == 426
    assert InvalidOrigin.status == 403


def test_close_codes_of_protocol_errors() -> None:
    assert ProtocolError.close_code == 1002
    assert InvalidPayload.close_code == 1007
    assert PayloadTooBig.close_code == 1009
    assert TooManyFragments.close_code == 1009


def test_misuse_errors() -> None:
    assert "isn't a valid WebSocket URI: no host" in str(InvalidURI("ws://", "no host"))
    assert issubclass(ConcurrencyError, RuntimeError)
