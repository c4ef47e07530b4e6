"""syncws side by side with websockets.sync, websocket-client and raw TCP, in one run.

Run:  pip install -e '.[bench]' && python bench/compare.py [--quick]

Every figure comes from a server and a client in two processes of their own
on loopback, without compression unless the scenario says so; each is the
median of several runs. The 1 MiB rows run twice where there are two CPUs:
server and client pinned to different cores, then both to one (``--no-pin``:
once, placed by the scheduler). The table ends with the ratios the performance issue
sets targets for. Quick mode takes under two minutes, full mode under ten.
Nothing here is a test: numbers vary with the machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_broadcast  # noqa: E402
import deflate_idle  # noqa: E402

from tests.rawpeer import handshake  # noqa: E402  (deflate_idle put the checkout on the path)

PEERS = str(HERE / "peers.py")
#: Where the server and the client run: CPU sets (None: the scheduler decides).
#: Bulk transfers are bimodal unpinned: one core (sender and reader take turns
#: each time the socket buffer fills) or two; see docs/performance.rst. The
#: bulk rows run in both placements; the others unpinned.
Placement = tuple[set[int], set[int]] | None
TWO_CORES: Placement = ({0}, {1}) if len(os.sched_getaffinity(0)) >= 2 else None
ONE_CORE: Placement = ({0}, {0})
#: The rows that also run with both processes on one core.
BULK = ("upload", "download")
LIBS = ["syncws", "websockets", "websocket-client", "raw"]
#: (scenario, what is measured, compressed, libraries that can run it)
SCENARIOS = [
    ("echo", "16-byte echo, round trips/s", False, LIBS),
    ("upload", "client->server 1 MiB messages, MB/s", False, LIBS),
    ("download", "server->client 1 MiB messages, MB/s", False, LIBS),
    ("deflate", "deflate echo of 16 KiB JSON, round trips/s", True, ["syncws", "websockets"]),
    ("handshake", "handshakes/s, 4 client threads", False, ["syncws", "websockets"]),
    ("ping", "ping right after recv(), median ms", False, ["syncws", "websockets"]),
]


def available(lib: str) -> bool:
    module = {"websockets": "websockets", "websocket-client": "websocket"}.get(lib)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _pin(pid: int, cpus: set[int] | None) -> None:
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


@contextmanager
def server(lib: str, compressed: bool, cpus: set[int] | None = None) -> Iterator[tuple[int, int]]:
    """A server process, on ``cpus`` if given; yield its port and pid."""
    if lib == "websocket-client":
        lib = "websockets"  # websocket-client has no server: it talks to websockets'
    process = subprocess.Popen(
        [sys.executable, PEERS, "server", lib, "deflate" if compressed else "none"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        _pin(process.pid, cpus)
        assert process.stdout is not None
        yield int(process.stdout.readline()), process.pid
    finally:
        process.kill()
        process.wait()


def client_run(
    lib: str,
    scenario: str,
    port: int,
    compressed: bool,
    seconds: float,
    *,
    cpus: set[int] | None = None,
) -> float:
    """One client process, on ``cpus`` if given: its figure for ``scenario``."""
    with subprocess.Popen(
        [
            *(sys.executable, PEERS, "client", lib, scenario, str(port)),
            *("deflate" if compressed else "none", str(seconds)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        _pin(process.pid, cpus)
        out, err = process.communicate(timeout=120)
    if process.returncode:
        raise RuntimeError(f"{lib} client, {scenario}: exit {process.returncode}\n{err}")
    return float(out.strip().splitlines()[-1])


def measure(
    lib: str,
    scenario: str,
    compressed: bool,
    repeats: int,
    seconds: float,
    *,
    placement: Placement = None,
) -> float:
    server_cpus, client_cpus = placement or (None, None)
    with server(lib, compressed, server_cpus) as (port, _):
        return statistics.median(
            client_run(lib, scenario, port, compressed, seconds, cpus=client_cpus)
            for _ in range(repeats)
        )


# -- idle connections: threads, memory and handshakes on the server side ---------------------


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "Threads"):
            fields[name] = int(value.split()[0])
    return fields


def hold_connections(port: int, count: int) -> tuple[list[socket.socket], float]:
    """Open ``count`` WebSocket connections to /idle one after the other; time the handshakes."""
    sockets = []
    start = time.perf_counter()
    for _ in range(count):
        sockets.append(handshake(port, "/idle").sock)
    return sockets, count / (time.perf_counter() - start)


def idle(lib: str, count: int) -> dict[str, float]:
    with server(lib, False) as (port, pid):
        time.sleep(0.5)  # let the server settle before the baseline
        before = proc_status(pid)
        sockets, rate = hold_connections(port, count)
        time.sleep(1.0)  # handler threads reach their idle state
        after = proc_status(pid)
        for sock in sockets:
            sock.close()
    return {
        "handshakes/s": rate,
        "threads per connection": (after["Threads"] - before["Threads"]) / count,
        "RSS KiB per connection": (after["VmRSS"] - before["VmRSS"]) / count,
    }


# -- the table ------------------------------------------------------------------------------


def _cell(value: float | None) -> str:
    if not value:
        return f"{'-':>17}"
    return f"{value:>17,.3f}" if value < 10 else f"{value:>17,.1f}"


def row(name: str, figures: dict[str, float | None]) -> None:
    cells = [_cell(figures.get(lib)) for lib in LIBS]
    ours, theirs, raw = figures.get("syncws"), figures.get("websockets"), figures.get("raw")
    ratio = f"{ours / theirs:>8.2f}x" if ours and theirs else f"{'-':>9}"
    to_raw = f"{ours / raw:>8.2f}x" if ours and raw else f"{'-':>9}"
    print(f"{name:<44}{''.join(cells)} {ratio} {to_raw}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="under two minutes")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only these rows (repeatable): a scenario name, broadcast, idle or deflate-idle",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="let the scheduler place server and client"
    )
    args = parser.parse_args()
    wanted = set(args.only or []) or None
    quick = (3, 0.7, 500, 20_000)
    repeats, seconds, idle_count, fanout = quick if args.quick else (5, 2.0, 2000, 100_000)
    bench_broadcast.raise_fd_limit()
    libs = [lib for lib in LIBS if available(lib)]
    header = "".join(f"{lib:>17}" for lib in LIBS)
    print(f"{'scenario':<44}{header} {'vs ws':>9} {'vs raw':>9}")
    pin = TWO_CORES is not None and not args.no_pin
    if pin:
        print("(bulk rows: server on CPU 0 and client on CPU 1, then both on CPU 0)")
    for scenario, title, compressed, runners in SCENARIOS:
        if wanted and scenario not in wanted:
            continue
        # Unpinned, a request/response loop often runs both processes on one
        # core in turn, which suits it: pinning only makes the bulk rows stable.
        placement = TWO_CORES if pin and scenario in BULK else None
        figures: dict[str, float | None] = {
            lib: measure(lib, scenario, compressed, repeats, seconds, placement=placement)
            for lib in runners
            if lib in libs
        }
        row(f"{title}, two cores" if placement else title, figures)
        if placement:
            figures = {
                lib: measure(lib, scenario, compressed, repeats, seconds, placement=ONE_CORE)
                for lib in runners
                if lib in libs
            }
            row(f"{title.split(',')[0]}, one core", figures)
    clients = 500
    messages = max(1, fanout // clients)
    if not wanted or "broadcast" in wanted:
        broadcast_row(clients, messages, repeats, libs)
    if not wanted or "idle" in wanted:
        idle_rows(idle_count, libs)
    if not wanted or "deflate-idle" in wanted:
        deflate_idle_row(idle_count, libs)
    print(
        "\nvs ws: syncws / websockets.sync (higher is better, except ms, threads and RSS);"
        " vs raw: syncws / length-prefixed TCP"
    )


def broadcast_row(clients: int, messages: int, repeats: int, libs: list[str]) -> None:
    row(
        f"broadcast 64 B to {clients} clients, msgs/s",
        {
            "syncws": bench_broadcast.bench_syncws(clients, messages, repeats),
            "websockets": bench_broadcast.bench_websockets(clients, messages, repeats)
            if "websockets" in libs
            else None,
        },
    )


def idle_rows(idle_count: int, libs: list[str]) -> None:
    results = {lib: idle(lib, idle_count) for lib in ("syncws", "websockets") if lib in libs}
    for measure_name in ("handshakes/s", "threads per connection", "RSS KiB per connection"):
        row(
            f"{idle_count} idle connections: {measure_name}",
            {lib: results[lib][measure_name] for lib in results},
        )


def deflate_idle_row(idle_count: int, libs: list[str]) -> None:
    """RSS per idle server connection that negotiated deflate as browsers do and echoed once."""
    row(
        f"{idle_count} idle deflate conns: RSS KiB per conn",
        {
            lib: deflate_idle.measure(lib, idle_count)
            for lib in ("syncws", "websockets")
            if lib in libs
        },
    )


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    main()
