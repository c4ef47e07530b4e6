"""The background thread under compressed batches: does an idle connection still get its pongs?

Run:  python bench/bg_lag.py [--peers 4] [--frames 200] [--seconds 10]
                             [--server syncws,websockets]

Each server (``--server``, comma-separated: syncws, websockets.sync) runs in a
process of its own, with permessage-deflate, one after the other. Each peer (a
raw socket) sends batches of ``--frames`` frames of about 1 KiB, each
inflating to 1 MiB of zeros, for ``--seconds``; the server's handler takes
one message every 5 ms. With syncws, the background thread reads while the
handler sleeps: it only frames (the handler's thread inflates what it takes);
websockets.sync reads and inflates in a thread per connection. Meanwhile a
probe, whose server side never calls ``recv()`` (syncws: only the background
thread reads it), pings every 50 ms. Printed per server: the probe's round
trips (median, p99, max), the server's memory growth (peak RSS minus RSS
before the peers came) and, for syncws, its background-thread figures.
Goals (issues 16, 30): p99 < 100 ms, growth < 64 MiB on the 2-core machine.
Not a test: the figures vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: tests/rawpeer.py

from tests.rawpeer import client_frame, handshake

MiB = 2**20
#: The raw peers' offer: each message compressed on its own.
NO_TAKEOVER_OFFER = "permessage-deflate; client_no_context_takeover"


def serve(kind: str) -> None:
    """The server process: print the port, serve until stdin closes, print stats on request."""
    server: Any
    background_stats: Any = None
    if kind == "syncws":
        import syncws

        def handler(connection: Any) -> None:
            if connection.request.path == "/probe":
                connection.wait_closed()  # only the background thread reads it
                return
            for _ in connection:
                time.sleep(0.005)  # the application's work, per message

        server = syncws.serve(handler, "127.0.0.1", 0, compression="deflate")
        port = server.port
        background_stats = syncws.background_stats
    else:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.server import serve as ws_serve

        def ws_handler(connection: Any) -> None:
            if connection.request.path == "/probe":
                connection.wait_closed()  # its own reading thread answers the pings
                return
            with contextlib.suppress(ConnectionClosed):  # the shutdown's 1001
                for _ in connection:
                    time.sleep(0.005)

        server = ws_serve(ws_handler, "127.0.0.1", 0, compression="deflate")
        port = server.socket.getsockname()[1]
    with server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(port, flush=True)
        for line in sys.stdin:
            if line.strip() == "stats":
                figures: dict[str, Any] = {"rss": _status("VmRSS"), "hwm": _status("VmHWM")}
                if background_stats is not None:
                    stats = background_stats()
                    figures.update(
                        peak_lag=stats.peak_lag,
                        timer_lag=stats.timer_lag,
                        turns=stats.turns,
                        reactor_cpu=_thread_cpu("syncws-reactor"),
                    )
                print(json.dumps(figures), flush=True)
        server.shutdown()


def _thread_cpu(name: str) -> float:
    """CPU seconds (user + system) of the thread called ``name`` so far, from /proc."""
    for thread in threading.enumerate():
        if thread.name == name and thread.native_id is not None:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
            utime, stime = fields.rsplit(")", 1)[1].split()[11:13]
            return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _status(field: str) -> int:
    """A field of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def compressed_frame() -> bytes:
    """A masked binary frame of ~1 KiB that inflates to 1 MiB of zeros."""
    compressor = zlib.compressobj(wbits=-15)
    payload = (compressor.compress(b"\0" * MiB) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(payload) < 65536
    return client_frame(0x2, payload, rsv1=True)


def measure(kind: str, peers: int, frames: int, seconds: float) -> dict[str, Any]:
    """Run one server under the batches; return its figures."""
    import syncws

    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None

    def server_stats() -> dict[str, Any]:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write("stats\n")
        process.stdin.flush()
        return json.loads(process.stdout.readline())  # type: ignore[no-any-return]

    try:
        port = int(process.stdout.readline())
        probe = syncws.connect(f"ws://127.0.0.1:{port}/probe", compression=None)
        before = server_stats()
        batch = compressed_frame() * frames
        stop = threading.Event()
        sent = [0] * peers

        def peer(index: int) -> None:
            sock = handshake(port, "/peer", extensions=NO_TAKEOVER_OFFER).sock
            try:
                while not stop.is_set():
                    sock.sendall(batch)
                    sent[index] += frames
            except OSError:  # the server closed: the figures say so
                pass
            finally:
                sock.close()

        threads = [threading.Thread(target=peer, args=(i,), daemon=True) for i in range(peers)]
        for thread in threads:
            thread.start()
        rtts = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rtts.append(probe.ping().round_trip(30))
            time.sleep(0.05)
        after = server_stats()
        stop.set()
        probe.close()
    finally:
        process.stdin.close()
        process.wait(60)
    rtts.sort()
    return {
        "server": kind,
        "pings": len(rtts),
        "p50_ms": statistics.median(rtts) * 1e3,
        "p99_ms": rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] * 1e3,
        "max_ms": rtts[-1] * 1e3,
        "growth_mib": (after["hwm"] - before["rss"]) / MiB,
        "peak_rss_mib": after["hwm"] / MiB,
        "messages_sent": sum(sent),
        **{key: after[key] for key in ("peak_lag", "timer_lag", "turns") if key in after},
        **(
            {"reactor_cpu_s": after["reactor_cpu"] - before["reactor_cpu"]}
            if "reactor_cpu" in after
            else {}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--server", default="syncws,websockets", help="comma-separated")
    parser.add_argument("--json", action="store_true", help="one JSON line per server")
    args = parser.parse_args()
    print(
        f"{args.peers} peers x batches of {args.frames} compressed frames (1 MiB each inflated), "
        f"{args.seconds:g} s; probe pings every 50 ms",
        flush=True,
    )
    for kind in args.server.split(","):
        row = measure(kind, args.peers, args.frames, args.seconds)
        if args.json:
            print(json.dumps(row), flush=True)
            continue
        print(
            f"{kind:>10}: probe round trip: median {row['p50_ms']:.1f} ms, "
            f"p99 {row['p99_ms']:.1f} ms, max {row['max_ms']:.1f} ms ({row['pings']} pings)"
        )
        print(
            f"{'':>10}  server growth: {row['growth_mib']:.0f} MiB "
            f"(peak RSS {row['peak_rss_mib']:.0f} MiB); messages sent: {row['messages_sent']:,}"
        )
        if "turns" in row:
            print(
                f"{'':>10}  background thread: peak lag {row['peak_lag'] * 1e3:.1f} ms, "
                f"last timer {row['timer_lag'] * 1e3:.1f} ms late, {row['turns']:,} turns, "
                f"{row['reactor_cpu_s']:.2f} s of CPU",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        main()
