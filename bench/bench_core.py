"""Micro-benchmark of the protocol core: masking, parsing and serializing, in MB/s.

Run:  python bench/bench_core.py [--quick]

Each figure is the median of several timed runs. Nothing here is a test: the
numbers vary with the machine, and no test asserts on them.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syncws.protocol.connection import Protocol, Side
from syncws.protocol.framing import encode_frame
from syncws.protocol.masking import apply_mask

SIZES = [16, 1024, 65536, 1 << 20]


def measure(action: Callable[[], object], nbytes: int, repeats: int, budget: float) -> float:
    """Return the median throughput of ``action`` in MB/s."""
    loops = max(1, int(budget * 5e8 / max(nbytes, 256) / repeats))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            action()
        elapsed = time.perf_counter() - start
        rates.append(loops * nbytes / elapsed / 1e6)
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs")
    args = parser.parse_args()
    repeats, budget = (3, 0.05) if args.quick else (5, 0.3)

    print(f"{'operation':<34}" + "".join(f"{size:>12,}B" for size in SIZES))
    rows: dict[str, list[float]] = {}
    for size in SIZES:
        payload = os.urandom(size)
        mask = os.urandom(4)
        client_frame = b"".join(encode_frame(0x2, payload, mask=mask))
        server_frame = b"".join(encode_frame(0x2, payload))
        server = Protocol(Side.SERVER, max_size=None)
        client = Protocol(Side.CLIENT, max_size=None)

        def parse(proto: Protocol, frame: bytes) -> None:
            proto.receive_data(frame)
            proto.events_received()

        def send(proto: Protocol, data: bytes) -> None:
            proto.send_binary(data)
            proto.data_to_send()

        cases: dict[str, Callable[[], object]] = {
            "apply_mask": lambda data=payload, key=mask: apply_mask(data, key),
            "parse, masked (server receives)": functools.partial(parse, server, client_frame),
            "parse, unmasked (client receives)": functools.partial(parse, client, server_frame),
            "serialize, masked (client sends)": functools.partial(send, client, payload),
            "serialize, unmasked (server sends)": functools.partial(send, server, payload),
        }
        for name, action in cases.items():
            rows.setdefault(name, []).append(measure(action, size, repeats, budget))
    for name, rates in rows.items():
        print(f"{name:<34}" + "".join(f"{rate:>10,.0f}MB/s" for rate in rates))


if __name__ == "__main__":
    main()
