"""The connection core's budgets: memory per idle connection, calls per send() and recv().

Run:  python bench/core_budget.py [--connections N] [--round-trips N]
      strace -c -f python bench/core_budget.py --only syscalls --round-trips 2000

``memory``: Python memory (tracemalloc) held per idle open connection over a
socketpair, both sides counted, after one message each way: what a
connection's objects cost, without the kernel's socket buffers (RSS adds
those; see ``deflate_idle.py``). ``calls``: Python function calls
(``sys.setprofile``) made by one ``send()`` and by one ``recv()`` whose thread
reads the socket itself. ``syscalls``: round trips on loopback for strace to
count. Counts, not times: they are the same on a busy machine.
"""

from __future__ import annotations

import argparse
import gc
import socket
import sys
import threading
import tracemalloc
from typing import Any

from syncws import Connection
from syncws.protocol import Protocol, Side


def open_pair() -> tuple[Connection, Connection]:
    client_sock, server_sock = socket.socketpair()
    pair = []
    for sock, side in ((client_sock, Side.CLIENT), (server_sock, Side.SERVER)):
        sock.setblocking(False)
        connection = Connection(sock, Protocol(side), ping_interval=None)
        connection.start_background()
        pair.append(connection)
    return pair[0], pair[1]


def memory(count: int) -> float:
    """Bytes of Python memory per idle connection (half a pair)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    pairs = []
    for _ in range(count // 2):
        client, server = open_pair()
        client.send("hello")
        assert server.recv(timeout=5) == "hello"
        server.send("hello")
        assert client.recv(timeout=5) == "hello"
        pairs.append((client, server))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    for client, server in pairs:
        client._abort()
        server._abort()
    return (after - before) / (2 * len(pairs))


def count_calls(action: Any) -> int:
    calls = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return calls


def calls() -> dict[str, int]:
    client, server = open_pair()
    try:
        for _ in range(3):  # warm up: imports, pooled buffers
            client.send("hello")
            server.recv(timeout=5)
        send_calls = count_calls(lambda: client.send("hello"))
        server.recv(timeout=5)
        # recv() reads the socket itself: the message is sent once recv() waits.
        ready = threading.Event()
        result: dict[str, int] = {}

        def receive() -> None:
            ready.set()
            result["recv"] = count_calls(lambda: server.recv(timeout=5))

        thread = threading.Thread(target=receive)
        thread.start()
        ready.wait(5)
        client.send("hello")
        thread.join(5)
        # A recv() that finds the message already read by the background thread
        # or in the socket: the common case of a busy peer.
        client.send("hello")
        server.wait_closed(0.05)  # let the message arrive
        recv_ready = count_calls(lambda: server.recv(timeout=5))
        return {"send": send_calls, "recv (waits)": result["recv"], "recv (ready)": recv_ready}
    finally:
        client._abort()
        server._abort()


def round_trips(count: int) -> None:
    client, server = open_pair()

    def echo() -> None:
        for _ in range(count):
            server.send(server.recv(timeout=10))

    thread = threading.Thread(target=echo)
    thread.start()
    for _ in range(count):
        client.send("ping")
        client.recv(timeout=10)
    thread.join(10)
    client._abort()
    server._abort()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--only", choices=("memory", "calls", "syscalls"))
    args = parser.parse_args()
    if args.only in (None, "memory"):
        print(f"memory: {memory(args.connections):,.0f} bytes per idle connection")
    if args.only in (None, "calls"):
        for name, value in calls().items():
            print(f"calls per {name}: {value}")
    if args.only == "syscalls":
        round_trips(args.round_trips)


if __name__ == "__main__":
    main()
