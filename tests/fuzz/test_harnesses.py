"""Smoke tests of the atheris harnesses: CI runs their code without atheris installed."""

from __future__ import annotations

import random

import pytest

from . import fuzz_frames, fuzz_http

# Client (flags bit 0) in mode 1 (bits 1-2): the bytes become header lines
# after a 403 status line (seed bit 6), i.e. a body the client must parse.
HTTP_INPUTS = [
    b"",
    b"\x00",
    b"\x00\x00GET / HTTP/1.1\r\n\r\n",
    b"\x06\x00Upgrade: h2c",  # server, extra header lines
    b"\x04\x05permessage-deflate; client_max_window_bits=9, x-other",  # server, offer
    b"\x06\x00\x81\x85\x00\x00\x00\x00hello\x88\x80\x00\x00\x00\x00",  # server, frames
    b"\x01\x00HTTP/1.1 101 OK\r\n\r\n",  # client, raw
    b"\x05\x07permessage-deflate; server_max_window_bits=16",  # client, answer
    b"\x07\x00\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00\x88\x00",  # client, compressed frame
    # Found by the property tests: these raised out of the client's parser.
    b"\x03\x40Content-Length: \xb2\r\n\r\nab",
    b"\x03\x40Content-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
]

FRAME_INPUTS = [
    b"",
    b"\x00\x00\x00",
    b"\x00\x00\x00\x00\x81\x85\x00\x00\x00\x00hello",  # server: masked text
    b"\x01\x00\x00\x00\x81\x05hello\x88\x02\x03\xe8",  # client: text, close
    b"\x05\x07\x00\x00\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00",  # client, deflate: "Hello"
    b"\x05\x07\x00\x00\xc1\x03\xff\xff\xff",  # client, deflate: corrupt data
    b"\x01\x00\x00\x00\x81\x04\xed\xa0\x80\x80",  # client: a UTF-16 surrogate
    b"\x81\x00\x07\x01\x01\x05hello\x80\x05world",  # structured, sending too
    b"\x87\x10\x03\x01\xc1\x85hello\x00\x83abc\x80\x02!!",  # structured, compressed
]


@pytest.mark.parametrize("data", HTTP_INPUTS)
def test_http_harness_runs(data: bytes) -> None:
    fuzz_http.TestOneInput(data)


@pytest.mark.parametrize("data", FRAME_INPUTS)
def test_frames_harness_runs(data: bytes) -> None:
    fuzz_frames.TestOneInput(data)


@pytest.mark.parametrize("harness", [fuzz_frames, fuzz_http], ids=["frames", "http"])
def test_harness_on_random_inputs(harness: object) -> None:
    rng = random.Random(7)  # deterministic
    for _ in range(300):
        data = rng.randbytes(rng.randrange(0, 200))
        harness.TestOneInput(data)  # type: ignore[attr-defined]


def test_harness_checks_fire() -> None:
    """A broken invariant is an AssertionError, which atheris reports as a crash."""
    with pytest.raises(AssertionError):
        fuzz_frames.check_events(type("Fake", (), {"events_received": lambda self: [1]})())
