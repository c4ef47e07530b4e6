"""Masking: RFC 6455 5.3 examples, involution, and the mask source."""

from hypothesis import given
from hypothesis import strategies as st

from syncws.protocol.masking import MaskSource, apply_mask


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
