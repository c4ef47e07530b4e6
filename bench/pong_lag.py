"""Pongs under CPU load: an idle connection's ping round trip while handler threads spin.

Run:  python bench/pong_lag.py [--spinners 4] [--seconds 10] [--server syncws|websockets]
      [--rounds N]

The server runs in a process of its own. ``--spinners`` connections have
handlers that spin on pure-Python work (the GIL is always wanted); one more
connection, the probe, has a handler that never reads (syncws: only the
background thread reads it; websockets.sync: its reading thread). A raw
client pings the probe every 50 ms for ``--seconds`` and times each pong.
Printed: p50, p90, p99 and max of the round trips, and for syncws the
background thread's turns. ``--rounds N`` alternates the servers N times and
adds each one's pings pooled: with many spinners a round has few pings, and
its p99 is nearly its maximum. The issue-30 goal: at or below websockets.sync
in the same run. Not a test: the figures vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any


def serve(kind: str) -> None:
    """The server process: print the port, serve until stdin closes, then print stats."""
    stop = threading.Event()

    def spin() -> None:
        count = 0
        while not stop.is_set():
            for _ in range(1000):
                count += 1

    stats: Any = None
    if kind == "syncws":
        import syncws

        def handler(connection: Any) -> None:
            if connection.request.path == "/probe":
                connection.wait_closed()  # only the background thread reads it
            else:
                spin()

        server: Any = syncws.serve(handler, "127.0.0.1", 0)
        port = server.port
        stats = syncws.background_stats
    else:
        from websockets.sync.server import serve as ws_serve

        def handler(connection: Any) -> None:
            if connection.request.path == "/probe":
                connection.wait_closed()
            else:
                spin()

        server = ws_serve(handler, "127.0.0.1", 0)
        port = server.socket.getsockname()[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(port, flush=True)
    sys.stdin.read()
    stop.set()
    answer = {}
    if stats is not None:
        figures = stats()
        answer = {"turns": figures.turns, "peak_lag": figures.peak_lag}
    print(json.dumps(answer), flush=True)
    server.shutdown()


def open_raw(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response[:40]
    return sock


def ping_frame(data: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(data))
    return bytes([0x89, 0x80 | len(data)]) + mask + masked


def measure(kind: str, spinners: int, seconds: float) -> dict[str, Any]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    port = int(process.stdout.readline())
    others = [open_raw(port, "/spin") for _ in range(spinners)]
    probe = open_raw(port, "/probe")
    probe.settimeout(10)
    times = []
    deadline = time.monotonic() + seconds
    sequence = 0
    while time.monotonic() < deadline:
        sequence += 1
        data = sequence.to_bytes(4, "big")
        started = time.perf_counter()
        probe.sendall(ping_frame(data))
        buffer = b""
        while True:  # the pong: unmasked, 4 bytes of payload
            buffer += probe.recv(4096)
            # Skip the server's own frames (keepalive pings: small, unmasked).
            while len(buffer) >= 2 and len(buffer) >= 2 + (buffer[1] & 0x7F):
                if buffer[0] == 0x8A and buffer[2:6] == data:
                    break
                buffer = buffer[2 + (buffer[1] & 0x7F) :]
            else:
                continue
            break
        times.append(time.perf_counter() - started)
        time.sleep(0.05)
    process.stdin.close()
    answer = json.loads(process.stdout.readline() or "{}")
    for sock in [*others, probe]:
        sock.close()
    process.wait(60)
    return {"server": kind, **percentiles(times), "times": times, **answer}


def percentiles(times: list[float]) -> dict[str, Any]:
    """Count, p50, p90, p99 and max of round trips in seconds, as milliseconds."""
    ordered = sorted(times)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e3

    return {
        "pings": len(times),
        "p50_ms": statistics.median(times) * 1e3,
        "p90_ms": at(0.9),
        "p99_ms": at(0.99),
        "max_ms": ordered[-1] * 1e3,
    }


def show(label: str, row: dict[str, Any]) -> None:
    print(
        f"{label:>18}: {row['pings']} pings, p50 {row['p50_ms']:.1f} ms, "
        f"p90 {row['p90_ms']:.1f}, p99 {row['p99_ms']:.1f}, max {row['max_ms']:.1f}",
        flush=True,
    )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spinners", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--server", default="syncws,websockets", help="comma-separated")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate the servers this many times; then print each one's pings pooled",
    )
    parser.add_argument("--json", action="store_true", help="one JSON line per server and round")
    args = parser.parse_args()
    kinds = args.server.split(",")
    pooled: dict[str, list[float]] = {kind: [] for kind in kinds}
    for round_number in range(1, args.rounds + 1):
        for kind in kinds:
            row = measure(kind, args.spinners, args.seconds)
            pooled[kind].extend(row.pop("times"))
            if args.json:
                print(json.dumps({"round": round_number, **row}), flush=True)
            else:
                show(f"{kind} round {round_number}" if args.rounds > 1 else kind, row)
    if args.rounds > 1:
        for kind in kinds:
            row = percentiles(pooled[kind])
            if args.json:
                print(json.dumps({"server": kind, "pooled": True, **row}), flush=True)
            else:
                show(f"{kind} pooled", row)


if __name__ == "__main__":
    main()
