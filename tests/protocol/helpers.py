"""Helpers for the core's byte-level tests: frames as each side sends them, and protocols."""

from __future__ import annotations

from syncws.exceptions import ProtocolError
from syncws.protocol.connection import Protocol, Side
from syncws.protocol.extensions import Extension
from syncws.protocol.frames import Frame
from syncws.protocol.framing import encode_frame

MASK = b"\x11\x22\x33\x44"


class Identity(Extension):
    """An extension that changes nothing (not permessage-deflate): its encoding can't be shared."""

    name = "x-identity"

    def encode(self, frame: Frame) -> Frame:
        return frame

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        return frame


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """Bytes of a frame as a client sends it (masked), with raw control of the RSV bits."""
    data = bytearray(b"".join(encode_frame(opcode, payload, fin=fin, mask=MASK)))
    data[0] |= rsv << 4
    return bytes(data)


def server_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    return b"".join(encode_frame(opcode, payload, fin=fin))


def server(**kwargs: object) -> Protocol:
    return Protocol(Side.SERVER, **kwargs)  # type: ignore[arg-type]


def client(**kwargs: object) -> Protocol:
    return Protocol(Side.CLIENT, **kwargs)  # type: ignore[arg-type]


def sent(protocol: Protocol) -> bytes:
    return b"".join(protocol.data_to_send())


def assert_failed(protocol: Protocol, exc_type: type[ProtocolError], code: int) -> None:
    assert isinstance(protocol.protocol_error, exc_type)
    assert protocol.close_sent is not None
    assert protocol.close_sent.code == code
    assert protocol.should_close_transport
    assert protocol.close_sent_first is True
