"""The servers and clients that bench/compare.py runs, one per library, in processes of their own.

Servers: ``python bench/peers.py server LIB COMPRESSION`` prints its port, then
serves until killed. Paths choose the work: ``/echo`` sends each message back,
``/sink`` takes N messages then answers ``done``, ``/source`` answers
``source N SIZE`` with N messages of SIZE bytes, ``/idle`` holds the
connection. LIB is syncws, websockets (its ``websockets.sync`` module) or raw
(length-prefixed messages on plain TCP, the ceiling).

Clients: ``python bench/peers.py client LIB SCENARIO PORT COMPRESSION`` runs
one timed scenario and prints its figure. LIB may also be websocket-client.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.rawpeer import read_exactly, upgrade_request

#: 16-byte text for the round-trip scenarios.
SMALL = "x" * 16
#: A 16 KiB JSON-like document for the compression scenario.
DOCUMENT = json.dumps(
    [{"id": i, "name": f"user {i}", "active": i % 3 == 0, "score": i * 7 % 101} for i in range(260)]
)[:16384]
BULK_SIZE = 1 << 20


# -- servers ----------------------------------------------------------------------------------


def _work(path: str, recv: Any, send: Any) -> None:
    """What each server does on a connection, by path; shared by the WebSocket servers."""
    if path.startswith("/echo"):
        while True:
            send(recv())
    elif path.startswith("/sink"):
        count = int(recv())
        for _ in range(count):
            recv()
        send("done")
    elif path.startswith("/source"):
        _, count, size = str(recv()).split()
        payload = b"\x00" * int(size)
        for _ in range(int(count)):
            send(payload)
        recv()
    else:  # /idle
        while True:
            recv()


def serve_syncws(compression: bool) -> None:
    import syncws

    def handler(connection: syncws.ServerConnection) -> None:
        assert connection.request is not None
        with contextlib.suppress(syncws.ConnectionClosed):
            _work(connection.request.path, connection.recv, connection.send)

    with syncws.serve(
        handler,
        "127.0.0.1",
        0,
        compression="deflate" if compression else None,
        max_size=None,
        ping_interval=None,
        backlog=4096,
    ) as server:
        print(server.port, flush=True)
        server.serve_forever()


def serve_websockets(compression: bool) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.server import serve

    def handler(connection: Any) -> None:
        with contextlib.suppress(ConnectionClosed):
            _work(connection.request.path, connection.recv, connection.send)

    with serve(
        handler,
        "127.0.0.1",
        0,
        compression="deflate" if compression else None,
        max_size=None,
        ping_interval=None,
        backlog=4096,
    ) as server:
        print(server.socket.getsockname()[1], flush=True)
        server.serve_forever()


class RawChannel:
    """Length-prefixed messages over TCP: what a protocol with no framing costs."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, message: str | bytes) -> None:
        data = message.encode() if isinstance(message, str) else message
        self.sock.sendall(struct.pack("!I", len(data)) + data)

    def recv(self) -> bytes:
        (size,) = struct.unpack("!I", read_exactly(self.sock, 4))
        return read_exactly(self.sock, size)


def serve_raw(compression: bool) -> None:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            channel = RawChannel(self.request)
            with contextlib.suppress(EOFError, OSError):
                path = channel.recv().decode()
                _work(path, lambda: channel.recv().decode(errors="replace"), channel.send)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 4096

    with Server(("127.0.0.1", 0), Handler) as server:
        print(server.server_address[1], flush=True)
        server.serve_forever()


# -- clients ----------------------------------------------------------------------------------


def open_client(lib: str, port: int, path: str, compression: bool) -> Any:
    uri = f"ws://127.0.0.1:{port}{path}"
    if lib == "syncws":
        import syncws

        return syncws.connect(
            uri, compression="deflate" if compression else None, max_size=None, ping_interval=None
        )
    if lib == "websockets":
        from websockets.sync.client import connect

        return connect(
            uri, compression="deflate" if compression else None, max_size=None, ping_interval=None
        )
    if lib == "websocket-client":
        import websocket

        client = websocket.create_connection(uri, skip_utf8_validation=False)
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client
    sock = socket.create_connection(("127.0.0.1", port))
    channel = RawChannel(sock)
    channel.send(path)
    return channel


def echo_rate(client: Any, message: str | bytes, seconds: float) -> float:
    """Round trips per second of one message at a time."""
    for _ in range(50):  # warm up
        client.send(message)
        client.recv()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            client.send(message)
            client.recv()
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def ping_after_recv_ms(client: Any, seconds: float) -> float:
    """Median milliseconds of a ping's round trip right after a ``recv()``.

    The pattern of an application that reads a message, then checks the
    peer is alive: the pong arrives while no thread is in ``recv()``.
    """
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(latencies) < 20:
        client.send(SMALL)
        client.recv()
        start = time.perf_counter()
        pong = client.ping()
        if not pong.wait(10):  # websockets' Event and syncws's PendingPing alike
            raise TimeoutError("no pong")
        latencies.append((time.perf_counter() - start) * 1000)
    return statistics.median(latencies)


def handshake_rate(port: int, seconds: float, threads: int = 4) -> float:
    """Opening handshakes per second from ``threads`` threads: handshake, then close.

    The client is the same for every server and as lean as it gets (one
    prepared request, no DNS lookup), so that the server's cost shows.
    """
    import threading

    request = upgrade_request(port, "/idle", key="dGhlIHNhbXBsZSBub25jZQ==")
    counts = [0] * threads
    start = time.perf_counter()
    deadline = start + seconds

    def worker(index: int) -> None:
        while time.perf_counter() < deadline:
            with socket.socket() as sock:
                sock.connect(("127.0.0.1", port))
                sock.sendall(request)
                response = sock.recv(4096)
                while not response.endswith(b"\r\n\r\n"):
                    response += sock.recv(4096)
                assert response.startswith(b"HTTP/1.1 101"), response[:40]
            counts[index] += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def run_client(lib: str, scenario: str, port: int, compression: bool, seconds: float) -> float:
    if scenario == "handshake":
        return handshake_rate(port, seconds)
    if scenario == "echo":
        client = open_client(lib, port, "/echo", compression)
        return echo_rate(client, SMALL, seconds)
    if scenario == "deflate":
        client = open_client(lib, port, "/echo", compression)
        return echo_rate(client, DOCUMENT, seconds)
    if scenario == "ping":
        client = open_client(lib, port, "/echo", compression)
        return ping_after_recv_ms(client, seconds)
    payload = b"\x01" * BULK_SIZE
    count = max(16, int(seconds * 400))  # about a second's worth at 400 MB/s
    if scenario == "upload":
        client = open_client(lib, port, "/sink", compression)
        start = time.perf_counter()
        client.send(str(count))
        for _ in range(count):
            client.send(payload)
        client.recv()  # "done"
        return count * BULK_SIZE / (time.perf_counter() - start) / 1e6
    if scenario == "download":
        client = open_client(lib, port, "/source", compression)
        start = time.perf_counter()
        client.send(f"source {count} {BULK_SIZE}")
        for _ in range(count):
            client.recv()
        elapsed = time.perf_counter() - start
        client.send("bye")
        return count * BULK_SIZE / elapsed / 1e6
    raise ValueError(scenario)


def main() -> None:
    role, lib = sys.argv[1], sys.argv[2]
    if role == "server":
        compression = sys.argv[3] == "deflate"
        {"syncws": serve_syncws, "websockets": serve_websockets, "raw": serve_raw}[lib](compression)
    else:
        scenario, port, compression = sys.argv[3], int(sys.argv[4]), sys.argv[5] == "deflate"
        print(run_client(lib, scenario, port, compression, float(sys.argv[6])), flush=True)


if __name__ == "__main__":
    main()
