"""Atheris harness for the frame parser of the sans-I/O core.

Run:  pip install -e '.[fuzz]' && python tests/fuzz/fuzz_frames.py -atheris_runs=100000

Each input picks a configuration from its first bytes (side, permessage-deflate
and its parameters, size limits, deferred failures, how the rest is split),
then feeds the rest to a ``Protocol`` in pieces. Whatever the bytes, the core
must produce events or fail the connection cleanly with 1002, 1007 or 1009:
any other exception, or a broken invariant, is a crash. Without atheris,
``TestOneInput`` is a plain function (tests/fuzz/test_harnesses.py feeds it).
"""

from __future__ import annotations

import contextlib
import sys
import zlib

try:
    import atheris
except ImportError:  # the smoke test runs the harness without it
    atheris = None

# Run as a fuzzer, atheris instruments syncws's code as it is imported (and nothing
# else: instrumenting the whole standard library takes a minute at every start).
_instrumented = (
    atheris.instrument_imports(include=["syncws"])
    if atheris is not None and __name__ == "__main__"
    else contextlib.nullcontext()
)
with _instrumented:
    from syncws.protocol.connection import Protocol, Side, State
    from syncws.protocol.deflate import PerMessageDeflate
    from syncws.protocol.events import Binary, Close, Ping, Pong, Text
    from syncws.protocol.extensions import Extension

#: The close codes a protocol error may send (RFC 6455 7.4.1).
ERROR_CODES = (1002, 1007, 1009)
EVENT_TYPES = (Text, Binary, Ping, Pong, Close)


def split(data: bytes, seed: int) -> list[bytes]:
    """Cut ``data`` into pieces whose sizes follow from ``seed``: 1 byte to all of it."""
    if seed == 0:
        return [data]
    pieces, start, step = [], 0, 0
    while start < len(data):
        step = (step * 31 + seed) % 97 + 1 if seed & 1 else seed % 13 + 1
        pieces.append(data[start : start + step])
        start += step
    return pieces


def build_frames(records: bytes, side: Side, window_bits: int, mask: bytes) -> bytes:
    """Turn ``records`` into frames a peer of ``side`` could send, mostly well formed.

    Each record is a header byte (FIN, RSV and opcode bits as on the wire), a
    control byte (bit 7: compress the payload, bit 6: mask the wrong way, bits
    0-5: payload length) and the payload. Compressed payloads continue one
    deflate stream, as a peer with context takeover sends them. The parser
    then sees valid frames, invalid ones and compressed data far more often
    than in random bytes.
    """
    compressor = zlib.compressobj(6, zlib.DEFLATED, -max(9, window_bits))
    out = bytearray()
    pos = 0
    while pos + 2 <= len(records):
        first, control = records[pos], records[pos + 1]
        payload = records[pos + 2 : pos + 2 + (control & 0x3F)]
        pos += 2 + len(payload)
        if control & 0x80:
            payload = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
            if first & 0x80:
                payload = payload.removesuffix(b"\x00\x00\xff\xff")
        masked = (side is Side.SERVER) != bool(control & 0x40)
        length = len(payload)
        if length < 126:
            out += bytes((first, length | (0x80 if masked else 0)))
        else:
            out += bytes((first, 126 | (0x80 if masked else 0))) + length.to_bytes(2, "big")
        if masked:
            out += mask
            payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        out += payload
    return bytes(out)


def make_extensions(flags: int, bits: int) -> list[Extension]:
    if not flags & 0x04:
        return []
    return [
        PerMessageDeflate(
            remote_no_context_takeover=bool(flags & 0x08),
            local_no_context_takeover=bool(flags & 0x10),
            remote_max_window_bits=8 + bits % 8,
            local_max_window_bits=8 + (bits >> 3) % 8,
        )
    ]


def check_events(protocol: Protocol) -> None:
    for event in protocol.events_received():
        assert isinstance(event, EVENT_TYPES), event
    for chunk in protocol.data_to_send():
        assert isinstance(chunk, bytes | bytearray | memoryview), chunk


def check_closed(protocol: Protocol) -> None:
    """After EOF: the connection is closed with a close code, and a clean exception."""
    error = protocol.protocol_error
    if error is not None:
        assert protocol.close_sent is not None
        assert protocol.close_sent.code == error.close_code
        assert error.close_code in ERROR_CODES
    protocol.receive_eof()
    check_events(protocol)
    assert protocol.state is State.CLOSED
    assert protocol.should_close_transport
    assert protocol.close_code is not None
    exc = protocol.close_exc()
    assert exc.code == protocol.close_code


def TestOneInput(data: bytes) -> None:  # the name atheris looks for
    if len(data) < 4:
        return
    flags, bits, seed, mode, rest = data[0], data[1], data[2], data[3], data[4:]
    side = Side.CLIENT if flags & 0x01 else Side.SERVER
    max_size = None if flags & 0x20 else 64 + bits * 4
    max_fragments = None if flags & 0x40 else 1 + seed % 8
    protocol = Protocol(
        side,
        max_size=max_size,
        max_fragments=max_fragments,
        extensions=make_extensions(flags, bits),
    )
    protocol.defer_failures = bool(flags & 0x02)
    if mode & 0x01:
        rest = build_frames(rest, side, 8 + bits % 8, data[:4])
    for piece in split(rest, seed):
        protocol.receive_data(piece)
        check_events(protocol)
        if protocol.failure_pending:
            protocol.fail_pending()
            assert protocol.protocol_error is not None
            check_events(protocol)
        if flags & 0x80 and protocol.state is State.OPEN:
            # Sending interleaved with receiving, as an application does.
            protocol.send_text("x" * (seed % 40))
            protocol.send_ping(b"p")
    check_closed(protocol)


def main() -> None:
    if atheris is None:
        sys.exit("the fuzzer needs atheris: pip install -e '.[fuzz]'")
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
