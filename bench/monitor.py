"""``SCALING_MONITOR=1`` for bench/scaling.py: what the server and the clients do, on stderr.

Each line is stamped with the monotonic clock, which both processes share,
so the server's figures and the clients' phases read as one timeline.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from typing import Any

#: Whether the monitor runs (read once).
ON = bool(os.environ.get("SCALING_MONITOR"))


def say(line: str) -> None:
    print(f"[{time.monotonic():.1f}] {line}", file=sys.stderr, flush=True)


def phase(name: str) -> None:
    """The clients' side: a phase of the run begins."""
    if ON:
        say(f"client: {name}")


def watch(stats: Any) -> None:
    """The server's side, forever: the background thread's figures twice a second,
    and every garbage collection of 10 ms or more (at thousands of connections a
    full one stops every thread for a while)."""
    started = [0.0]

    def timing(phase: str, info: dict[str, Any]) -> None:
        took = time.perf_counter() - started[0]
        if phase == "start":
            started[0] = time.perf_counter()
        elif took >= 0.01:
            say(f"gc generation {info['generation']} took {took:.3f} s")

    gc.callbacks.append(timing)
    while True:
        figures = stats()
        say(
            f"lag {figures.lag:.3f} turn {figures.last_turn:.3f} timer_lag {figures.timer_lag:.3f} "
            f"turns {figures.turns} sockets {figures.sockets} timers {figures.timers} "
            f"threads {threading.active_count()}"
        )
        time.sleep(0.5)
