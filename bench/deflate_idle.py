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
import contextlib
import json
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the checkout: the raw peer in tests/rawpeer.py

from tests.rawpeer import BROWSER_OFFER, client_frame, handshake, read_frame  # noqa: E402

PEERS = str(HERE / "peers.py")
#: A small JSON message, what a browser application typically sends.
MESSAGE = (
    b'{"type": "update", "id": 4242, "user": "someone@example.com", "room": "lobby", '
    b'"text": "hello, is anybody there? this is a message of about two hundred bytes", '
    b'"ts": 1764605000}'
)


def send_compressed(sock: socket.socket, message: bytes) -> None:
    """Send one compressed text frame (a fresh compressor: valid with or without takeover)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = (compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    sock.sendall(client_frame(0x1, payload, rsv1=True))


def echo_once(sock: socket.socket, compressed: bool) -> None:
    if compressed:
        send_compressed(sock, MESSAGE)
    else:
        sock.sendall(client_frame(0x1, MESSAGE))
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
            peer = handshake(port, "/echo", extensions=BROWSER_OFFER)
            sock = peer.sock
            assert peer.deflate, "the server declined permessage-deflate"
            echo_once(sock, peer.deflate)
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
