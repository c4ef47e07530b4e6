"""Frame encoding and close payloads, byte by byte."""

import pytest

from syncws.exceptions import InvalidPayload, ProtocolError
from syncws.protocol.close_codes import CloseCode, describe_close, is_valid_on_wire
from syncws.protocol.framing import (
    encode_close_payload,
    encode_frame,
    parse_close_payload,
    truncate_reason,
)


def test_unmasked_text_hello() -> None:
    # RFC 6455 5.7: a single-frame unmasked text message.
    assert b"".join(encode_frame(0x1, b"Hello")) == bytes.fromhex("810548656c6c6f")


def test_masked_text_hello() -> None:
    frame = b"".join(encode_frame(0x1, b"Hello", mask=bytes.fromhex("37fa213d")))
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


def test_fragmented_first_frame() -> None:
    assert b"".join(encode_frame(0x1, b"Hel", fin=False)) == bytes.fromhex("010348656c")


def test_rsv1_bit() -> None:
    assert encode_frame(0x1, b"", rsv1=True) == [b"\xc1\x00"]


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_length_encodings(length: int, header: bytes) -> None:
    data = b"".join(encode_frame(0x2, b"x" * length))
    assert data[: len(header)] == header
    assert len(data) == len(header) + length


def test_large_payload_is_not_copied_into_the_header() -> None:
    payload = b"y" * 100_000
    parts = encode_frame(0x2, payload)
    assert len(parts) == 2
    assert parts[1] is payload


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        (999, False),
        (1000, True),
        (1003, True),
        (1004, False),
        (1005, False),
        (1006, False),
        (1007, True),
        (1014, True),
        (1015, False),
        (1016, False),
        (2999, False),
        (3000, True),
        (4999, True),
        (5000, False),
    ],
)
def test_close_codes_allowed_on_the_wire(code: int, valid: bool) -> None:
    assert is_valid_on_wire(code) is valid


def test_describe_close() -> None:
    assert describe_close(None) == "no close code"
    assert describe_close(1000, "bye") == "1000 (OK) bye"
    assert describe_close(3001) == "3001 (registered)"
    assert describe_close(4001) == "4001 (private use)"
    assert describe_close(2500) == "2500 (unknown)"
    assert CloseCode.GOING_AWAY == 1001


def test_close_payload_round_trip() -> None:
    payload = encode_close_payload(1001, "bye ✓")
    assert payload == b"\x03\xe9" + "bye ✓".encode()
    assert parse_close_payload(payload) == (1001, "bye ✓")


def test_empty_close_payload() -> None:
    assert encode_close_payload(None, "") == b""
    assert parse_close_payload(b"") == (1005, "")


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (None, "why", "needs a close code"),
        (1005, "", "may not be sent"),
        (1000, "x" * 124, "limit is 123"),
    ],
)
def test_encode_close_payload_errors(code: int | None, reason: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_close_payload(code, reason)


def test_parse_close_payload_errors() -> None:
    with pytest.raises(ProtocolError, match="1 byte"):
        parse_close_payload(b"\x03")
    with pytest.raises(ProtocolError, match="1006 is not allowed"):
        parse_close_payload(b"\x03\xee")
    with pytest.raises(InvalidPayload, match="UTF-8"):
        parse_close_payload(b"\x03\xe8\xff")


def test_truncate_reason_keeps_characters_whole() -> None:
    assert truncate_reason("short") == "short"
    cut = truncate_reason("é" * 100)
    assert len(cut.encode()) <= 123
    assert cut.endswith("...")
    assert set(cut[:-3]) == {"é"}
