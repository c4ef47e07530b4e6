"""Masking: RFC 6455 5.3 examples, involution, the mask source, and the C accelerator."""

import importlib
import os
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncws.protocol import masking
from syncws.protocol.masking import MaskSource, apply_mask, py_apply_mask


def test_rfc_example_hello() -> None:
    # RFC 6455 5.7: "Hello" masked with 37 fa 21 3d.
    assert apply_mask(b"Hello", bytes.fromhex("37fa213d")) == bytes.fromhex("7f9f4d5158")


def test_empty_payload() -> None:
    assert apply_mask(b"", b"abcd") == b""


def test_accepts_bytearray_and_memoryview() -> None:
    data = bytearray(b"payload!")
    expected = apply_mask(bytes(data), b"\x01\x02\x03\x04")
    assert apply_mask(data, b"\x01\x02\x03\x04") == expected
    assert apply_mask(memoryview(data), b"\x01\x02\x03\x04") == expected


@given(st.binary(max_size=2000), st.binary(min_size=4, max_size=4))
def test_masking_twice_restores(data: bytes, mask: bytes) -> None:
    assert apply_mask(apply_mask(data, mask), mask) == data


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_matches_bytewise_definition(data: bytes, mask: bytes) -> None:
    assert apply_mask(data, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_mask_source_gives_fresh_keys_across_pool_refills() -> None:
    source = MaskSource()
    keys = [source.next_mask() for _ in range(3000)]  # crosses the 4 KiB pool twice
    assert all(len(key) == 4 for key in keys)
    assert len(set(keys)) > 2900


# -- the C accelerator and the pure-Python fallback ---------------------------------------


def _speedups() -> object:
    if not masking.SPEEDUPS:
        if os.environ.get("SYNCWS_NO_SPEEDUPS"):
            pytest.skip("SYNCWS_NO_SPEEDUPS is set: the pure-Python path runs alone")
        if os.environ.get("CI"):
            pytest.fail("the C accelerator wasn't built: CI has a compiler")
        pytest.skip("the C accelerator isn't built here")
    from syncws.protocol import _speedups  # noqa: PLC0415 - built only where a compiler is

    return _speedups


@given(st.binary(max_size=5000), st.binary(min_size=4, max_size=4), st.integers(0, 7))
def test_accelerator_gives_the_same_bytes(data: bytes, mask: bytes, offset: int) -> None:
    speedups = _speedups()
    # Unaligned views too: the C code must not assume 8-byte alignment.
    view = memoryview(b"\x00" * offset + data)[offset:]
    assert speedups.apply_mask(view, mask) == py_apply_mask(data, mask)  # type: ignore[attr-defined]
    assert speedups.apply_mask(bytearray(data), mask) == py_apply_mask(data, mask)  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [64 * 1024 - 1, 64 * 1024, 64 * 1024 + 7])
def test_accelerator_on_both_sides_of_the_gil_threshold(size: int) -> None:
    # Below 64 KiB it keeps the GIL (a hand-off costs more than the work); from
    # there it lets other threads run while it masks. Same bytes either way.
    speedups: Any = _speedups()
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    mask = b"\x01\x02\x03\x04"
    assert speedups.apply_mask(data, mask) == py_apply_mask(data, mask)


def test_accelerator_checks_its_arguments() -> None:
    speedups: Any = _speedups()
    with pytest.raises(ValueError, match="4 bytes"):
        speedups.apply_mask(b"data", b"abc")
    with pytest.raises(TypeError):
        speedups.apply_mask(b"data")
    with pytest.raises(TypeError):
        speedups.apply_mask("text", b"abcd")
    with pytest.raises(TypeError):
        speedups.apply_mask(b"data", "abcd")


def test_fallback_without_the_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        monkeypatch.setitem(sys.modules, "syncws.protocol._speedups", None)  # ImportError
        importlib.reload(masking)
        assert not masking.SPEEDUPS
        assert masking.apply_mask is masking.py_apply_mask
        monkeypatch.delitem(sys.modules, "syncws.protocol._speedups")
        monkeypatch.setenv("SYNCWS_NO_SPEEDUPS", "1")
        importlib.reload(masking)
        assert masking.apply_mask is masking.py_apply_mask
    finally:
        monkeypatch.undo()
        importlib.reload(masking)
