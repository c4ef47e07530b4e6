"""Memory of an idle server connection with permessage-deflate, syncws vs websockets.sync.

Run:  python bench/deflate_idle.py [--connections N] [--libs syncws,websockets]
      python bench/deflate_idle.py --settings '{"mem_level": 8, "keep_state": true}'

Each connection is opened by hand (no library in the client) with the offer
every browser sends, ``permessage-deflate; client_max_window_bits``, then
echoes one compressed 200-byte JSON message, then stays idle. The figure is
the growth of the server process's RSS divided by the number of connections.
bench/compare.py prints the same figure as its ``deflate-idle`` row.
``--settings`` runs a syncws server whose ServerPerMessageDeflateFactory gets
these keyword arguments (JSON), to weigh the options. Nothing here is a test:
numbers vary with the machine.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = str(HERE / "peers.py")
#: A small JSON message, what a browser application typically sends.
MESSAGE = (
    b'{"type": "update", "id": 4242, "user": "someone@example.com", "room": "lobby", '
    b'"text": "hello, is anybody there? this is a message of about two hundred bytes", '
    b'"ts": 1764605000}'
)
BROWSER_OFFER = "permessage-deflate; client_max_window_bits"


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the server closed the connection")
        data += chunk
    return bytes(data)


def _mask(data: bytes, key: bytes) -> bytes:
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(data), "big"
    )


def browser_connection(port: int, path: str = "/echo") -> tuple[socket.socket, bool]:
    """Open a connection as a browser would; return it and whether deflate was accepted."""
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: {BROWSER_OFFER}\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("the server closed the connection during the handshake")
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response[:40]
    return sock, b"permessage-deflate" in response.lower()


def client_frame(first: int, payload: bytes) -> bytes:
    """A masked frame, as clients send them (payloads under 64 KiB)."""
    key = os.urandom(4)
    if len(payload) < 126:
        header = bytes([first, 0x80 | len(payload)])
    else:
        header = bytes([first, 0x80 | 126]) + struct.pack("!H", len(payload))
    return header + key + _mask(payload, key)


def send_compressed(sock: socket.socket, message: bytes) -> None:
    """Send one compressed text frame (a fresh compressor: valid with or without takeover)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = (compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    sock.sendall(client_frame(0xC1, payload))


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """Read one unmasked frame from the server; return its first byte and payload."""
    first, second = _read_exact(sock, 2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _read_exact(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _read_exact(sock, 8))
    return first, _read_exact(sock, length)


def echo_once(sock: socket.socket, compressed: bool) -> None:
    if compressed:
        send_compressed(sock, MESSAGE)
    else:
        sock.sendall(client_frame(0x81, MESSAGE))
    first, payload = read_frame(sock)
    if first & 0x40:  # RSV1: compressed
        payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
    assert payload == MESSAGE, payload[:40]


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def footprint(port: int, pid: int, count: int) -> float:
    """KiB of server RSS per idle deflate connection that echoed one message."""
    time.sleep(0.5)  # let the server settle before the baseline
    before = vm_rss_kib(pid)
    sockets = []
    try:
        for _ in range(count):
            sock, compressed = browser_connection(port)
            assert compressed, "the server declined permessage-deflate"
            echo_once(sock, compressed)
            sockets.append(sock)
        time.sleep(1.0)  # handler threads reach their idle state
        after = vm_rss_kib(pid)
    finally:
        for sock in sockets:
            sock.close()
    return (after - before) / count


def serve_with_settings(settings: dict[str, object]) -> None:
    """An echo server (in this process) with these permessage-deflate settings; print its port."""
    sys.path.insert(0, str(HERE.parent))
    import syncws
    from syncws.protocol.deflate import ServerPerMessageDeflateFactory

    def handler(connection: syncws.ServerConnection) -> None:
        with contextlib.suppress(syncws.ConnectionClosed):
            for message in connection:
                connection.send(message)

    factory = ServerPerMessageDeflateFactory(**settings)  # type: ignore[arg-type]
    with syncws.serve(
        handler, "127.0.0.1", 0, extensions=[factory], ping_interval=None, backlog=4096
    ) as server:
        print(server.port, flush=True)
        server.serve_forever()


@contextlib.contextmanager
def deflate_server(lib: str, settings: str | None = None) -> Iterator[tuple[int, int]]:
    """A server process with compression on; yield its port and pid."""
    if settings is None:
        command = [sys.executable, PEERS, "server", lib, "deflate"]
    else:
        command = [sys.executable, __file__, "--serve", settings]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline()), process.pid
    finally:
        process.kill()
        process.wait()


def measure(lib: str, count: int, settings: str | None = None) -> float:
    with deflate_server(lib, settings) as (port, pid):
        return footprint(port, pid, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--libs", default="syncws,websockets")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--settings", help="syncws only: factory keyword arguments, as JSON")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve_with_settings(json.loads(args.serve))
        return
    libs = ["syncws"] if args.settings else args.libs.split(",")
    for lib in libs:
        figures = [measure(lib, args.connections, args.settings) for _ in range(args.repeats)]
        shown = ", ".join(f"{figure:.1f}" for figure in figures)
        label = f"{lib} {args.settings}" if args.settings else lib
        print(f"{label:<12} KiB per idle deflate connection ({args.connections}): {shown}")


if __name__ == "__main__":
    main()
