"""The envelope between processes: round trips, and refusal of what it can't read."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncws.pubsub import envelope

ORIGIN = bytes(range(16))


@given(payload=st.binary(), text=st.booleans())
def test_round_trip(payload: bytes, text: bool) -> None:
    data = envelope.encode(ORIGIN, payload, text=text)
    assert envelope.decode(data) == envelope.Envelope(ORIGIN, payload, text)


def test_layout_is_version_flags_origin_payload() -> None:
    assert envelope.encode(ORIGIN, b"hi", text=True) == b"\x01\x01" + ORIGIN + b"hi"
    assert envelope.encode(ORIGIN, b"", text=False) == b"\x01\x00" + ORIGIN


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00" + b"short", "too short"),
        (b"\x02\x00" + ORIGIN, "version 2"),
        (b"\x01\x80" + ORIGIN, "flags"),
        (b"\x80\x04\x95" + b"pickle?" * 4, "version 128"),
    ],
)
def test_bad_envelopes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        envelope.decode(data)


def test_origin_must_be_16_bytes() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        envelope.encode(b"short", b"", text=False)
