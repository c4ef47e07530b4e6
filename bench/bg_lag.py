"""The background thread under compressed batches: does an idle connection still get its pongs?

Run:  python bench/bg_lag.py [--peers 4] [--frames 200] [--seconds 10]

A syncws server runs in a process of its own, with permessage-deflate. Each
peer (a raw socket) sends batches of ``--frames`` frames of about 1 KiB, each
inflating to 1 MiB of zeros, for ``--seconds``; the server's handler takes
one message every 5 ms, so most of the reading falls to the background
thread. Meanwhile a probe, whose server side never calls ``recv()`` (only the
background thread reads it), pings every 50 ms. Printed: the probe's round
trips (median, p99, max), the server's memory growth (peak RSS minus RSS
before the peers came) and its background-thread figures. Goals (issue 16):
p99 < 100 ms, growth < 256 MiB on the 2-core machine. Not a test: the
figures vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: tests/rawpeer.py

from tests.rawpeer import client_frame, handshake

MiB = 2**20
#: The raw peers' offer: each message compressed on its own.
NO_TAKEOVER_OFFER = "permessage-deflate; client_no_context_takeover"


def serve() -> None:
    """The server process: print the port, serve until stdin closes, print stats on request."""
    import syncws

    def handler(connection: syncws.ServerConnection) -> None:
        assert connection.request is not None
        if connection.request.path == "/probe":
            connection.wait_closed()  # only the background thread reads it
            return
        for _ in connection:
            time.sleep(0.005)  # the application's work, per message

    with syncws.serve(handler, "127.0.0.1", 0, compression="deflate") as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(server.port, flush=True)
        for line in sys.stdin:
            if line.strip() == "stats":
                stats = syncws.background_stats()
                print(
                    json.dumps(
                        {
                            "rss": _status("VmRSS"),
                            "hwm": _status("VmHWM"),
                            "peak_lag": stats.peak_lag,
                            "timer_lag": stats.timer_lag,
                            "turns": stats.turns,
                        }
                    ),
                    flush=True,
                )
        server.shutdown()


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    import syncws

    process = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None

    def server_stats() -> dict[str, float]:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write("stats\n")
        process.stdin.flush()
        return json.loads(process.stdout.readline())  # type: ignore[no-any-return]

    try:
        port = int(process.stdout.readline())
        probe = syncws.connect(f"ws://127.0.0.1:{port}/probe", compression=None)
        before = server_stats()
        batch = compressed_frame() * args.frames
        stop = threading.Event()
        sent = [0] * args.peers

        def peer(index: int) -> None:
            sock = handshake(port, "/peer", extensions=NO_TAKEOVER_OFFER).sock
            try:
                while not stop.is_set():
                    sock.sendall(batch)
                    sent[index] += args.frames
            finally:
                sock.close()

        threads = [threading.Thread(target=peer, args=(i,), daemon=True) for i in range(args.peers)]
        for thread in threads:
            thread.start()
        rtts = []
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            rtts.append(probe.ping().round_trip(30))
            time.sleep(0.05)
        after = server_stats()
        stop.set()
        probe.close()
    finally:
        process.stdin.close()
        process.wait(30)
    rtts.sort()
    p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
    print(
        f"{args.peers} peers x batches of {args.frames} compressed frames (1 MiB each inflated), "
        f"{args.seconds:g} s; probe pings every 50 ms"
    )
    print(
        f"probe round trip: median {statistics.median(rtts) * 1e3:.1f} ms, "
        f"p99 {p99 * 1e3:.1f} ms, max {rtts[-1] * 1e3:.1f} ms ({len(rtts)} pings)"
    )
    print(
        f"server growth: {(after['hwm'] - before['rss']) / MiB:.0f} MiB "
        f"(peak RSS {after['hwm'] / MiB:.0f} MiB); messages sent: {sum(sent):,}"
    )
    print(
        f"server background thread: peak lag {after['peak_lag'] * 1e3:.1f} ms, "
        f"last timer {after['timer_lag'] * 1e3:.1f} ms late, {after['turns']:,} turns"
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        main()
