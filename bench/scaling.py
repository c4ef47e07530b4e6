"""How cost grows with connections: one server, 10 to 10,000 (and more) clients.

Run:  python bench/scaling.py [--quick] [--counts 10,100,1000,10000] [--max N]
                              [--websockets-max N] [--png docs/_static/scaling.png]

For each count N, a fresh server process (syncws, then websockets.sync up to
``--websockets-max``: it needs 2-3 threads per connection) and this process
as N raw clients, in one thread (selectors), that offer permessage-deflate
as browsers do and send compressed 50-byte messages:

- echo: every client sends one message every ``--period`` seconds
  (staggered) for two periods; the round trip of each is timed (p50, p99),
  and messages not echoed within ``--drain`` seconds count as lost;
- broadcast: the server sends one 50-byte message to every client with
  ``syncws.broadcast()`` (websockets.sync: a loop of ``send()``), three
  times; latency is from the call to each client's arrival (the monotonic
  clock is the same in both processes), delivered/s is N over the last
  arrival;
- the server's RSS per connection (over its RSS before the clients came),
  its threads per connection, and for syncws the background thread's
  ``peak_lag`` and ``timer_lag`` (``syncws.background_stats()``) after the echo.

Results print as a table and go to ``--json`` and, with matplotlib (the
bench extra), a PNG of the curves. ``--quick`` (under a minute) is the CI
smoke run: 10, 100 and 300 clients, exits non-zero if a message is lost.
Nothing here is a test: figures on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
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
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import monitor  # noqa: E402  (SCALING_MONITOR=1: the timeline on stderr)

MESSAGE = b'{"type":"chat","text":"hello from a browser tab!!"}'[:50].ljust(50, b" ")
OFFER = "permessage-deflate; client_max_window_bits"


def raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# -- the server process ---------------------------------------------------------------


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0  # pragma: no cover - Linux only


def run_server(kind: str) -> None:
    """Serve echo on an ephemeral port; obey one command per stdin line, answer in JSON."""
    raise_fd_limit()
    connections: list[Any] = []
    lock = threading.Lock()
    stats: Any = None
    if kind == "syncws":
        sys.path.append(str(HERE.parent))  # after PYTHONPATH: another syncws/ may come first
        import syncws

        def handler(connection: Any) -> None:
            with lock:
                connections.append(connection)
            for message in connection:
                connection.send(message)

        print(f"syncws from {os.path.dirname(syncws.__file__)}", file=sys.stderr, flush=True)
        server: Any = syncws.serve(handler, "127.0.0.1", 0, backlog=1024)
        port = server.port
        stats = syncws.background_stats

        def broadcast(message: str) -> None:
            syncws.broadcast(list(server.connections), message)

    else:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.server import serve

        def handler(connection: Any) -> None:
            with lock:
                connections.append(connection)
            with contextlib.suppress(ConnectionClosed):
                for message in connection:
                    connection.send(message)

        server = serve(handler, "127.0.0.1", 0)
        port = server.socket.getsockname()[1]

        def broadcast(message: str) -> None:
            with lock:
                targets = list(connections)
            for connection in targets:
                with contextlib.suppress(ConnectionClosed):
                    connection.send(message)

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    if stats is not None and monitor.ON:
        threading.Thread(target=monitor.watch, args=(stats,), daemon=True).start()
    print(json.dumps({"port": port, "rss_kib": _rss_kib()}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            answer: dict[str, Any] = {"rss_kib": _rss_kib(), "threads": threading.active_count()}
            if stats is not None:
                figures = stats()
                answer.update(peak_lag=figures.peak_lag, timer_lag=figures.timer_lag)
            print(json.dumps(answer), flush=True)
        elif command == "broadcast":
            started = time.monotonic()
            broadcast(MESSAGE.decode())
            print(json.dumps({"started": started, "returned": time.monotonic()}), flush=True)
        else:
            break
    server.shutdown()
    thread.join(60)
    print("{}", flush=True)


class ServerProcess:
    def __init__(self, kind: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--server-role", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        first = self.read()
        self.port: int = first["port"]
        self.rss_before: int = first["rss_kib"]

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the server process exited")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("quit")
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- the clients (this process) -------------------------------------------------------


def _masked(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    mask = os.urandom(4)
    head = bytes([0x80 | (0x40 if rsv1 else 0) | opcode, 0x80 | len(payload)])
    body = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return head + mask + body


def _compressed_message() -> bytes:
    """One client frame, deflated as a browser would (a fresh window: always allowed)."""
    compressor = zlib.compressobj(wbits=-15)
    data = compressor.compress(MESSAGE) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return _masked(0x1, data[:-4], rsv1=True)


class Client:
    __slots__ = ("buffer", "deflate", "frames", "sent", "sock")

    def __init__(self, sock: socket.socket, deflate: bool) -> None:
        self.sock = sock
        self.deflate = deflate
        self.buffer = b""
        self.sent: collections.deque[float] = collections.deque()
        self.frames = 0


def open_clients(port: int, count: int, batch: int = 64) -> list[Client]:
    """Handshake ``count`` connections, ``batch`` at a time (the listen backlog is finite)."""
    clients: list[Client] = []
    while len(clients) < count:
        socks = []
        for _ in range(min(batch, count - len(clients))):
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: {OFFER}\r\n\r\n".encode()
            )
            socks.append(sock)
        for sock in socks:
            response = b""
            while b"\r\n\r\n" not in response:
                chunk = sock.recv(4096)
                if not chunk:
                    raise RuntimeError("the server closed during the handshake")
                response += chunk
            head, _, rest = response.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"handshake refused: {head[:60]!r}")
            sock.setblocking(False)
            client = Client(sock, b"permessage-deflate" in head.lower())
            client.buffer = rest
            clients.append(client)
    return clients


class Driver:
    """The clients' event loop: read frames, answer pings, time echoes and broadcasts."""

    def __init__(self, clients: list[Client]) -> None:
        self.clients = clients
        self.selector = selectors.DefaultSelector()
        for client in clients:
            self.selector.register(client.sock, selectors.EVENT_READ, client)
        self.echo_times: list[float] = []
        self.arrivals: list[float] = []
        self.broadcasting = False
        self.frame = _compressed_message()

    def close(self) -> None:
        self.selector.close()
        for client in self.clients:
            client.sock.close()

    def _on_readable(self, client: Client) -> None:
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return
        if not data:
            raise RuntimeError("the server closed a connection")
        buffer = client.buffer + data
        now = time.monotonic()
        while len(buffer) >= 2:
            opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                break
            payload, buffer = buffer[start : start + length], buffer[start + length :]
            if opcode == 0x9:  # ping: the server's keepalive
                client.sock.send(_masked(0xA, payload))
            elif opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if payload else 1005
                raise RuntimeError(f"the server closed a connection: {code} {payload[2:]!r}")
            elif opcode in (0x1, 0x2):
                if self.broadcasting:
                    self.arrivals.append(now)
                elif client.sent:
                    self.echo_times.append(now - client.sent.popleft())
        client.buffer = buffer

    def poll(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            self._on_readable(key.data)

    def echo(self, period: float, rounds: int, drain: float) -> tuple[int, int]:
        """Each client sends ``rounds`` messages, ``period`` apart; return (sent, echoed)."""
        count = len(self.clients)
        total = count * rounds
        start = time.monotonic()
        sent = 0
        while sent < total:
            due = start + sent * period / count
            now = time.monotonic()
            if now < due:
                self.poll(due - now)
                continue
            while sent < total and start + sent * period / count <= now:
                client = self.clients[sent % count]
                client.sent.append(time.monotonic())
                client.sock.send(self.frame)
                sent += 1
        deadline = time.monotonic() + drain
        while len(self.echo_times) < total and time.monotonic() < deadline:
            self.poll(0.1)
        return total, len(self.echo_times)

    def burst(self, timeout: float) -> tuple[int, float]:
        """Every client sends one message at once; return (echoed, seconds until the last)."""
        self.echo_times = []
        start = time.monotonic()
        for client in self.clients:
            client.sent.append(time.monotonic())
            client.sock.send(self.frame)
        while len(self.echo_times) < len(self.clients) and time.monotonic() < start + timeout:
            self.poll(0.1)
        return len(self.echo_times), max(self.echo_times, default=0.0)

    def broadcast(self, server: ServerProcess, drain: float) -> tuple[float, list[float], int]:
        """One broadcast; return (when it started, arrival latencies, clients reached)."""
        self.arrivals = []
        self.broadcasting = True
        assert server.process.stdin is not None
        server.process.stdin.write("broadcast\n")
        server.process.stdin.flush()
        # Read arrivals while the server is busy; its answer comes on the pipe.
        assert server.process.stdout is not None
        reply_fd = server.process.stdout.fileno()
        self.selector.register(reply_fd, selectors.EVENT_READ, None)
        started: float | None = None
        try:
            deadline = time.monotonic() + drain
            while time.monotonic() < deadline and (
                started is None or len(self.arrivals) < len(self.clients)
            ):
                for key, _ in self.selector.select(0.1):
                    if key.data is None:
                        started = json.loads(server.process.stdout.readline())["started"]
                        self.selector.unregister(reply_fd)
                    else:
                        self._on_readable(key.data)
        finally:
            with contextlib.suppress(KeyError):
                self.selector.unregister(reply_fd)
            self.broadcasting = False
        if started is None:
            started = json.loads(server.process.stdout.readline())["started"]
        return started, [arrival - started for arrival in self.arrivals], len(self.arrivals)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(kind: str, count: int, args: argparse.Namespace) -> dict[str, Any]:
    server = ServerProcess(kind)
    row: dict[str, Any] = {"server": kind, "connections": count}
    driver: Driver | None = None
    try:
        opened = time.monotonic()
        clients = open_clients(server.port, count)
        row["open_seconds"] = round(time.monotonic() - opened, 2)
        row["deflate"] = sum(client.deflate for client in clients)
        driver = Driver(clients)
        if args.burst:
            # The stall test: all at once, then again 3 s later.
            for round_ in (1, 2):
                monitor.phase(f"burst {round_}")
                echoed, last = driver.burst(args.drain)
                row[f"burst{round_}_echoed"] = echoed
                row[f"burst{round_}_seconds"] = round(last, 2)
                for client in clients:
                    client.sent.clear()
                time.sleep(3.0)
            driver.echo_times = []
        monitor.phase("echo")
        sent, echoed = driver.echo(args.period, 2, args.drain)
        row.update(sent=sent, echoed=echoed)
        row["echo_p50_ms"] = percentile(driver.echo_times, 0.5) * 1e3
        row["echo_p99_ms"] = percentile(driver.echo_times, 0.99) * 1e3
        stats = server.ask("stats")
        row["rss_per_connection_kib"] = (stats["rss_kib"] - server.rss_before) / count
        row["threads_per_connection"] = (stats["threads"] - 1) / count
        if "peak_lag" in stats:
            row["bg_peak_lag_ms"] = stats["peak_lag"] * 1e3
            row["bg_timer_lag_ms"] = stats["timer_lag"] * 1e3
        monitor.phase("broadcast")
        rates, latencies, reached = [], [], []
        for _ in range(3):
            _started, arrived, got = driver.broadcast(server, args.drain)
            reached.append(got)
            latencies += arrived
            if arrived:
                rates.append(got / max(*arrived, 1e-6))
        row["broadcast_reached"] = min(reached)
        row["broadcast_per_s"] = statistics.median(rates) if rates else 0.0
        row["broadcast_p50_ms"] = percentile(latencies, 0.5) * 1e3
        row["broadcast_p99_ms"] = percentile(latencies, 0.99) * 1e3
    except (OSError, RuntimeError) as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        monitor.phase("close")
        if driver is not None:
            driver.close()
        server.close()
        monitor.phase("closed")
    return row


def print_row(row: dict[str, Any]) -> None:
    if "burst1_echoed" in row:
        print(
            f"{row['server']:>10} {row['connections']:>7}  bursts: "
            f"{row['burst1_echoed']} echoed in {row['burst1_seconds']} s, "
            f"{row.get('burst2_echoed')} in {row.get('burst2_seconds')} s",
            flush=True,
        )
    if "error" in row and "echoed" not in row:
        print(f"{row['server']:>10} {row['connections']:>7}  failed: {row['error']}", flush=True)
        return
    print(
        f"{row['server']:>10} {row['connections']:>7} "
        f"{row['echoed']:>7}/{row['sent']:<7} "
        f"{row['echo_p50_ms']:>8.2f} {row['echo_p99_ms']:>9.2f} "
        f"{row.get('broadcast_per_s', 0):>11,.0f} {row.get('broadcast_p99_ms', 0):>9.1f} "
        f"{row.get('rss_per_connection_kib', 0):>8.1f} "
        f"{row.get('threads_per_connection', 0):>7.2f} "
        f"{row.get('bg_peak_lag_ms', float('nan')):>8.1f}"
        + (f"  ({row['error']})" if "error" in row else ""),
        flush=True,
    )


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no matplotlib: pip install -e '.[bench]' for the picture)")
        return
    figure, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    panels = [
        (axes[0][0], "echo round trip at a fixed rate (ms)", ["echo_p50_ms", "echo_p99_ms"]),
        (axes[0][1], "burst: seconds until all echoed", ["burst1_seconds", "burst2_seconds"]),
        (axes[0][2], "background thread peak lag (ms)", ["bg_peak_lag_ms"]),
        (axes[1][0], "broadcast deliveries/s", ["broadcast_per_s"]),
        (axes[1][1], "broadcast latency (ms)", ["broadcast_p50_ms", "broadcast_p99_ms"]),
        (axes[1][2], "server RSS per connection (KiB)", ["rss_per_connection_kib"]),
    ]
    kinds = sorted({row["server"] for row in rows}, key=lambda kind: kind != "syncws")
    for axis, title, keys in panels:
        log = "RSS" not in title
        for kind, style in zip(kinds, ("-o", "--s", ":^", "-.v"), strict=False):
            ok = [row for row in rows if row["server"] == kind and "echoed" in row]
            for key in keys:
                points = [(row["connections"], row[key]) for row in ok if row.get(key)]
                if not points:
                    continue
                suffix = key.split("_")[1] if key.endswith("_ms") else key[:6]
                suffix = "" if len(keys) == 1 else f" {suffix}"
                axis.plot(*zip(*points, strict=True), style, label=f"{kind}{suffix}")
                if key.startswith("burst"):
                    # A round that didn't echo everything: say how many did.
                    for row in ok:
                        done = row.get(key.replace("seconds", "echoed"))
                        if done is not None and done < row["connections"]:
                            axis.annotate(
                                f"{done} of {row['connections']}",
                                (row["connections"], row[key]),
                                fontsize="x-small",
                                color="red",
                            )
        axis.set_xscale("log")
        if log:
            axis.set_yscale("log")
        axis.set_title(title)
        axis.set_xlabel("connections")
        axis.grid(True, which="both", alpha=0.3)
        if axis.get_legend_handles_labels()[0]:  # a panel may have no data (no --burst)
            axis.legend(fontsize="small")
    figure.suptitle("One server, N clients with permessage-deflate (bench/scaling.py)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    print(f"picture: {path}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--server-role":
        run_server(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10, 100, 300 clients: CI's run")
    parser.add_argument("--counts", default="10,100,1000,10000")
    parser.add_argument("--max", type=int, default=0, help="add counts up to this (x1.5 steps)")
    parser.add_argument("--websockets-max", type=int, default=3000)
    parser.add_argument(
        "--period", type=float, default=5.0, help="seconds between a client's sends"
    )
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for echoes")
    parser.add_argument(
        "--burst", action="store_true", help="first, all clients send at once, twice, 3 s apart"
    )
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--png", type=Path, help="write the picture here")
    parser.add_argument(
        "--plot",
        nargs="+",
        metavar="JSON[:NAME]",
        help="only draw --png from earlier --json files (NAME renames their syncws rows)",
    )
    args = parser.parse_args()
    if args.plot:
        rows = []
        for item in args.plot:
            path, _, name = item.partition(":")
            for row in json.loads(Path(path).read_text()):
                if name and row["server"] == "syncws":
                    row["server"] = name
                rows.append(row)
        plot(rows, args.png or Path("scaling.png"))
        return
    if args.quick:
        args.counts, args.period, args.drain = "10,100,300", 1.0, 10.0
    counts = sorted({int(n) for n in args.counts.split(",")})
    while args.max and counts[-1] < args.max:
        counts.append(min(args.max, int(counts[-1] * 1.5)))
    limit = raise_fd_limit()
    print(f"echo every {args.period}s per client, twice; 3 broadcasts; file limit {limit}")
    print(
        f"{'server':>10} {'conns':>7} {'echoed/sent':>15} {'p50 ms':>8} {'p99 ms':>9} "
        f"{'bcast/s':>11} {'b99 ms':>9} {'KiB/conn':>8} {'thr/conn':>7} {'lag ms':>8}"
    )
    rows = []
    for count in counts:
        kinds = ["syncws"]
        if count <= args.websockets_max:
            try:
                import websockets  # noqa: F401
            except ImportError:
                pass
            else:
                kinds.append("websockets")
        for kind in kinds:
            if count + 64 > limit:
                print(f"{kind:>10} {count:>7}  skipped: file limit {limit}")
                continue
            row = measure(kind, count, args)
            rows.append(row)
            print_row(row)
            if args.json:  # after every row: a run stopped halfway keeps what it measured
                args.json.write_text(json.dumps(rows, indent=1))
    if args.png:
        plot(rows, args.png)
    lost = [
        row for row in rows if row["server"] == "syncws" and row.get("echoed") != row.get("sent")
    ]
    if args.quick and lost:
        sys.exit(f"syncws lost echoes: {lost}")


if __name__ == "__main__":
    main()
