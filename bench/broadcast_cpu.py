"""Broadcast cost in CPU time, for bisecting: microseconds of the server process per delivery.

Run:  python bench/broadcast_cpu.py [--clients 500] [--messages 400] [--rounds 5]

Wall-clock throughput (bench/bench_broadcast.py) moves with whatever else the
machine runs; the CPU time the broadcasting process spends per delivered
message moves much less. This script runs ``syncws.broadcast()`` of 64-byte
text messages to N raw clients (another process, which only counts bytes)
and prints, per round, the server process's CPU time (user + system, every
thread: the caller's and the background thread's flushes) divided by the
deliveries, and the same for the broadcasting thread alone.

To compare commits, put their ``syncws/`` first on the path, interleaving runs:

    git archive OLD syncws | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python bench/broadcast_cpu.py
    python bench/broadcast_cpu.py

The first line printed names the syncws that was imported. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time

MESSAGE = "x" * 64


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _handshake(port: int, deflate: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{offer if deflate else ''}\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response[:40]
    return sock


def run_clients(port: int, clients: int, messages: int, deflate: bool) -> None:
    """The client process: open the connections, then count frames, one round per stdin line."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    selector = selectors.DefaultSelector()
    sockets = [_handshake(port, deflate) for _ in range(clients)]
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    print("ready", flush=True)
    for _line in sys.stdin:
        remaining = dict.fromkeys(sockets, messages)
        pending = dict.fromkeys(sockets, b"")
        while remaining:
            for key, _ in selector.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = pending[sock] + sock.recv(1 << 20)
                count, offset = 0, 0
                while len(data) - offset >= 2 and len(data) - offset >= 2 + data[offset + 1]:
                    offset += 2 + data[offset + 1]  # a server's frame of < 126 bytes
                    count += 1
                pending[sock] = data[offset:]
                if sock in remaining:
                    remaining[sock] -= count
                    if remaining[sock] <= 0:
                        del remaining[sock]
        print("done", flush=True)
    for sock in sockets:
        sock.close()


def run_server(
    clients: int, messages: int, rounds: int, profile: bool = False, deflate: bool = False
) -> dict[str, object]:
    import syncws

    joined = threading.Semaphore(0)

    def handler(connection: syncws.ServerConnection) -> None:
        joined.release()
        for _ in connection:
            pass

    server = syncws.serve(
        handler,
        "127.0.0.1",
        0,
        compression="deflate" if deflate else None,
        ping_interval=None,
        write_limit=1 << 30,
    )
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    role = [str(server.port), str(clients), str(messages), str(int(deflate))]
    child = subprocess.Popen(
        [sys.executable, __file__, "--client-role", *role],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    for _ in range(clients):
        joined.acquire()
    connections = list(server.connections)
    process_us: list[float] = []
    thread_us: list[float] = []
    wall: list[float] = []
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    for _ in range(rounds):
        child.stdin.write("go\n")
        child.stdin.flush()
        cpu0, thread0, wall0 = _cpu(), time.thread_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        for _ in range(messages):
            syncws.broadcast(connections, MESSAGE)
        if profiler is not None:
            profiler.disable()
        thread1 = time.thread_time()
        assert child.stdout.readline().strip() == "done"
        cpu1, wall1 = _cpu(), time.perf_counter()
        deliveries = clients * messages
        process_us.append((cpu1 - cpu0) / deliveries * 1e6)
        thread_us.append((thread1 - thread0) / deliveries * 1e6)
        wall.append(deliveries / (wall1 - wall0))
    child.stdin.close()
    child.wait(30)
    server.shutdown()
    thread.join()
    if profiler is not None:
        import pstats

        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return {
        "syncws": os.path.dirname(syncws.__file__),
        "process_us": statistics.median(process_us),
        "thread_us": statistics.median(thread_us),
        "msgs_per_s": statistics.median(wall),
        "all_process_us": [round(x, 3) for x in process_us],
    }


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--client-role":
        run_clients(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--messages", type=int, default=400, help="messages per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one JSON line instead of text")
    parser.add_argument(
        "--deflate", action="store_true", help="clients offer deflate as browsers do"
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the broadcasting thread (stderr)"
    )
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = run_server(args.clients, args.messages, args.rounds, args.profile, args.deflate)
    if args.json:
        print(json.dumps(result))
        return
    print(f"syncws from {result['syncws']}")
    print(
        f"{args.clients} clients: {result['process_us']:.3f} us CPU/delivery (process), "
        f"{result['thread_us']:.3f} (broadcasting thread), {result['msgs_per_s']:,.0f} msgs/s wall"
    )


if __name__ == "__main__":
    main()
