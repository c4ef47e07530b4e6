"""A WebSocket peer by hand, for tests and benchmarks: the handshake, client frames, frame reading.

Standard library only, so that a benchmark's client is the same for every
server it measures (no library on the client side) and a test's peer can
send what no library would. bench/ imports it as ``tests.rawpeer`` (its
scripts put the checkout on ``sys.path``).

- ``handshake()``: an opening handshake on a new socket, optionally with an
  extension offer (``BROWSER_OFFER``: what every browser sends), returning
  the socket and the response's head; frames sent right behind it stay in
  the socket.
- ``client_frame()``: a masked frame as a client sends it, any length.
- ``read_frame()``, ``read_exactly()``: reading a server's (unmasked) frames.

Runs in the caller's thread; blocking sockets, bounded by their timeout.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import socket
import struct

__all__ = [
    "BROWSER_OFFER",
    "Upgraded",
    "client_frame",
    "handshake",
    "mask",
    "read_exactly",
    "read_frame",
    "read_head",
    "upgrade_request",
]

#: The extension offer every browser sends.
BROWSER_OFFER = "permessage-deflate; client_max_window_bits"


@dataclasses.dataclass
class Upgraded:
    """A socket past the opening handshake."""

    sock: socket.socket
    #: The response's status line and headers, without the blank line.
    head: bytes

    @property
    def deflate(self) -> bool:
        """True if the server accepted permessage-deflate."""
        return b"permessage-deflate" in self.head.lower()


def upgrade_request(
    port: int,
    path: str = "/",
    *,
    extensions: str | None = None,
    key: str | None = None,
    host: str = "127.0.0.1",
) -> bytes:
    """The bytes of an opening handshake's request; a random key unless given."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def handshake(
    port: int,
    path: str = "/",
    *,
    extensions: str | None = None,
    rcvbuf: int | None = None,
    timeout: float | None = None,
    host: str = "127.0.0.1",
) -> Upgraded:
    """Connect to ``host:port`` and upgrade; raise ``ConnectionError`` unless the answer is 101.

    ``rcvbuf`` sets ``SO_RCVBUF`` before connecting (a small window: a peer
    that reads slowly); ``timeout`` bounds every operation on the socket.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(upgrade_request(port, path, extensions=extensions, host=host))
        head = read_head(sock)
        if not head.startswith(b"HTTP/1.1 101 "):
            raise ConnectionError(f"the server refused the upgrade: {head[:60]!r}")
    except BaseException:
        sock.close()
        raise
    return Upgraded(sock, head)


def read_head(sock: socket.socket) -> bytes:
    """An HTTP response's head, without its blank line; what follows stays in the socket.

    Frames a server sends right behind its response are left for the caller
    to read (peeking first: a few system calls, not one per byte).
    """
    head = b""
    while True:
        seen = sock.recv(4096, socket.MSG_PEEK)
        if not seen:
            raise EOFError("the server closed the connection during the handshake")
        end = (head + seen).find(b"\r\n\r\n")
        if end >= 0:
            head += read_exactly(sock, end + 4 - len(head))
            return head[:-4]
        head += read_exactly(sock, len(seen))


def mask(data: bytes, key: bytes) -> bytes:
    """``data`` XORed with the 4-byte ``key``, repeated (no loop per byte)."""
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    masked = int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")
    return masked.to_bytes(len(data), "big")


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    key: bytes | None = None,
) -> bytes:
    """A masked frame, as a client sends it; a random masking key unless given."""
    key = key or os.urandom(4)
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    return header + key + mask(payload, key)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes, however TCP cuts them; ``EOFError`` if the connection ends first."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"the connection closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """The next frame a server sent (unmasked): its first byte (FIN, RSV, opcode) and payload."""
    first, second = read_exactly(sock, 2)
    if second & 0x80:
        raise ValueError("a server's frames are unmasked")
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", read_exactly(sock, 2))
    elif size == 127:
        (size,) = struct.unpack("!Q", read_exactly(sock, 8))
    return first, read_exactly(sock, size)
