"""The short roads' framing (whole.py): the C accelerator and pure Python give the same results."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncws.protocol import whole
from syncws.protocol.framing import encode_frame

MASK = b"\x0a\x0b\x0c\x0d"

WHOLE_FRAME = [whole.py_whole_frame]
ENCODE_WHOLE = [whole.py_encode_whole]
if whole._c_whole_frame is not None:  # built here; not under SYNCWS_NO_SPEEDUPS=1
    WHOLE_FRAME.append(whole._c_whole_frame)
    ENCODE_WHOLE.append(whole._c_encode_whole)


@pytest.fixture(params=WHOLE_FRAME, ids=lambda f: f.__module__)
def whole_frame(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=ENCODE_WHOLE, ids=lambda f: f.__module__)
def encode_whole(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return request.param  # type: ignore[no-any-return]


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None) -> bytes:
    return b"".join(encode_frame(opcode, payload, fin=fin, mask=mask))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535])
@pytest.mark.parametrize("opcode", [1, 2])
def test_one_whole_frame_comes_out_unmasked(
    whole_frame: Callable[..., Any], size: int, opcode: int
) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert whole_frame(frame(opcode, payload, mask=MASK), True) == (opcode, payload)
    assert whole_frame(memoryview(frame(opcode, payload)), False) == (opcode, payload)
    assert whole_frame(bytearray(frame(opcode, payload)), False) == (opcode, payload)


def test_anything_else_is_declined(whole_frame: Callable[..., Any]) -> None:
    text = frame(1, b"hello", mask=MASK)
    big = frame(2, b"x" * 300)
    for data, masked in [
        (b"", True),
        (text[:1], True),  # under 2 bytes
        (text[:-1], True),  # short
        (text + b"\x00", True),  # something after it
        (text, False),  # masked, but it shouldn't be
        (frame(1, b"hello"), True),  # unmasked, but it should be
        (frame(1, b"he", fin=False, mask=MASK), True),  # not final
        (frame(0, b"he", mask=MASK), True),  # a continuation
        (frame(9, b"p", mask=MASK), True),  # a control frame
        (bytes([0xC1]) + text[1:], True),  # RSV1
        (big[:3], False),  # a 16-bit length not there yet
        (big[:-1], False),
        (big + b"\x82", False),
        (frame(2, b"x" * 65536), False),  # a 64-bit length
    ]:
        assert whole_frame(data, masked) is None, data[:12]


@pytest.mark.parametrize("size", [0, 125, 126, 65535])
@pytest.mark.parametrize("first", [0x81, 0x82])
def test_encoding_matches_encode_frame(
    encode_whole: Callable[..., Any], size: int, first: int
) -> None:
    payload = b"\x07" * size
    assert encode_whole(payload, first, None) == frame(first & 0x0F, payload)
    assert encode_whole(payload, first, MASK) == frame(first & 0x0F, payload, mask=MASK)


def test_masked_is_any_truth_value(whole_frame: Callable[..., Any]) -> None:
    assert whole_frame(frame(1, b"hi", mask=MASK), 1) == (1, b"hi")
    assert whole_frame(frame(1, b"hi"), 0) == (1, b"hi")


def test_encoding_refuses_what_the_short_road_never_asks(encode_whole: Callable[..., Any]) -> None:
    with pytest.raises(ValueError):
        encode_whole(b"x", 256, None)
    with pytest.raises(ValueError):
        encode_whole(b"x", -1, None)
    with pytest.raises(ValueError, match="64 KiB"):
        encode_whole(b"x" * 65536, 0x82, None)
    with pytest.raises(ValueError, match="4 bytes"):
        encode_whole(b"x", 0x82, b"abc")


@given(
    payload=st.binary(max_size=70_000), first=st.sampled_from([0x81, 0x82]), masked=st.booleans()
)
def test_both_implementations_agree(payload: bytes, first: int, masked: bool) -> None:
    mask = MASK if masked else None
    results = set()
    for encode in ENCODE_WHOLE:
        try:
            results.add(encode(payload, first, mask))
        except ValueError:
            results.add(None)
    assert len(results) == 1
    (encoded,) = results
    if encoded is not None:
        for decode in WHOLE_FRAME:
            assert decode(encoded, masked) == (first & 0x0F, payload)


def test_the_loader_falls_back_to_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCWS_NO_SPEEDUPS", "1")
    assert whole._load_speedups() == (None, None)
    monkeypatch.delenv("SYNCWS_NO_SPEEDUPS")
    monkeypatch.setitem(sys.modules, "syncws.protocol._speedups", None)  # ImportError
    assert whole._load_speedups() == (None, None)


def test_the_accelerator_checks_its_arguments() -> None:
    if whole._c_whole_frame is None:
        if os.environ.get("SYNCWS_NO_SPEEDUPS"):
            pytest.skip("SYNCWS_NO_SPEEDUPS is set: the pure-Python path runs alone")
        if os.environ.get("CI"):
            pytest.fail("the C accelerator wasn't built: CI has a compiler")
        pytest.skip("the C accelerator isn't built here")
    c_whole: Any = whole._c_whole_frame
    c_encode: Any = whole._c_encode_whole
    with pytest.raises(TypeError):
        c_whole(b"data")
    with pytest.raises(TypeError):
        c_whole("text", True)
    with pytest.raises(TypeError):
        c_encode(b"data", 0x82)
    with pytest.raises(TypeError):
        c_encode("text", 0x82, None)
    with pytest.raises(TypeError):
        c_encode(b"data", "first", None)
    with pytest.raises(TypeError):
        c_encode(b"data", 0x82, "mask")
