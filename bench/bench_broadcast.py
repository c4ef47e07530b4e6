"""Fan-out benchmark: messages delivered per second to N clients, syncws vs websockets.sync.

Run:  python bench/bench_broadcast.py [--quick] [--clients 10,100,1000]

Needs the bench extra (pip install -e '.[bench]') for websockets. The server
runs in this process; the clients run in another process, the same minimal
client for both servers: it completes the handshake on N sockets, then only
counts bytes until every client has every message. syncws sends with one
``broadcast()`` call per message; websockets.sync with a loop of ``send()``
calls (its own ``broadcast()`` is slower than that loop). Each figure is the
median of several runs; nothing here is a test.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import syncws
from tests.rawpeer import handshake

MESSAGE = "x" * 64
FRAME_SIZE = 2 + len(MESSAGE)  # a server's unmasked frame with a 64-byte payload


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- the client process ---------------------------------------------------------------


def run_clients(port: int, clients: int, expected_bytes: int) -> None:
    """Open ``clients`` connections, say "ready", count bytes, say "done" per round."""
    raise_fd_limit()
    selector = selectors.DefaultSelector()
    sockets = []
    for _ in range(clients):
        sock = handshake(port, "/").sock
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        sockets.append(sock)
    print("ready", flush=True)
    for _line in sys.stdin:  # one line per round
        remaining = {sock: expected_bytes for sock in sockets}
        while remaining:
            for key, _ in selector.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = sock.recv(1 << 20)
                if sock in remaining:
                    remaining[sock] -= len(data)
                    if remaining[sock] <= 0:
                        del remaining[sock]
        print("done", flush=True)
    for sock in sockets:
        sock.close()


# -- the servers ----------------------------------------------------------------------


class Clients:
    """The client process, driven round by round."""

    def __init__(self, port: int, clients: int, messages: int) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client-role",
                str(port),
                str(clients),
                str(messages * FRAME_SIZE),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def start_round(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def wait_round(self) -> None:
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "done"

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


def timed_rounds(send_all: Callable[[], None], clients: Clients, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        clients.start_round()
        start = time.perf_counter()
        send_all()
        clients.wait_round()
        times.append(time.perf_counter() - start)
    return times


def bench_syncws(clients: int, messages: int, repeats: int) -> float:
    joined = threading.Semaphore(0)

    def handler(connection: syncws.ServerConnection) -> None:
        joined.release()
        for _ in connection:
            pass

    # A big write_limit: this measures delivery, not the slow-client policy.
    with syncws.serve(
        handler, "127.0.0.1", 0, compression=None, ping_interval=None, write_limit=1 << 30
    ) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        driver = Clients(server.port, clients, messages)
        for _ in range(clients):
            joined.acquire()
        connections = list(server.connections)

        def send_all() -> None:
            for _ in range(messages):
                syncws.broadcast(connections, MESSAGE)

        times = timed_rounds(send_all, driver, repeats)
        skipped = sum(connection.skipped_messages for connection in connections)
        assert skipped == 0, f"{skipped} messages skipped"
        driver.close()
        server.shutdown()
        thread.join()
    return clients * messages / statistics.median(times)


def bench_websockets(clients: int, messages: int, repeats: int) -> float | None:
    try:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.server import serve
    except ImportError:
        return None
    joined = threading.Semaphore(0)
    connections = []
    lock = threading.Lock()

    def handler(connection: object) -> None:
        with lock:
            connections.append(connection)
        joined.release()
        with contextlib.suppress(ConnectionClosed):
            for _ in connection:  # type: ignore[attr-defined]
                pass

    with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        driver = Clients(server.socket.getsockname()[1], clients, messages)
        for _ in range(clients):
            joined.acquire()

        def send_all() -> None:
            for _ in range(messages):
                for connection in connections:
                    connection.send(MESSAGE)

        times = timed_rounds(send_all, driver, repeats)
        driver.close()
        server.shutdown()
        thread.join()
    return clients * messages / statistics.median(times)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--client-role":
        run_clients(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs")
    parser.add_argument("--clients", default="10,100,1000", help="comma-separated client counts")
    args = parser.parse_args()
    raise_fd_limit()
    deliveries, repeats = (30_000, 3) if args.quick else (200_000, 5)
    print(f"broadcast of {len(MESSAGE)}-byte text messages, deliveries per second")
    print(f"{'clients':>8} {'syncws':>12} {'websockets.sync':>16} {'ratio':>7}")
    for clients in (int(n) for n in args.clients.split(",")):
        messages = max(1, deliveries // clients)
        ours = bench_syncws(clients, messages, repeats)
        theirs = bench_websockets(clients, messages, repeats)
        if theirs is None:
            print(f"{clients:>8} {ours:>12,.0f} {'(not installed)':>16}")
        else:
            print(f"{clients:>8} {ours:>12,.0f} {theirs:>16,.0f} {ours / theirs:>6.1f}x")


if __name__ == "__main__":
    main()
