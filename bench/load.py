"""Load test: thousands of connections, keepalive, broadcast and churn against one syncws server.

Run:  python bench/load.py [--quick] [--connections N] [--churn N]

The server runs in this process (one handler thread per connection, as in
production); the clients run in other processes. Phases:

1. open: ``--connections`` WebSocket connections (2,000; 200 with --quick),
   opened by raw-socket clients split over ``--client-processes`` processes
   (no library in the clients: a selector loop per process parses frames,
   answers pings and counts messages);
2. keepalive: they stay idle while the server pings them every
   ``--ping-interval`` seconds, until every client saw two pings or more and
   every server connection measured a pong;
3. broadcast: ``syncws.broadcast()`` sends ``--messages`` numbered messages to
   every connection; each client checks that it got every one, in order; then
   the clients close with 1000;
4. churn: ``--churn`` cycles (10,000; 1,000 with --quick) of ``syncws.connect()``,
   one echo round trip and ``close()``, from several threads in other processes.

It reports peak threads, peak RSS and open file descriptors of the server
process, errors and lost messages, durations and rates, and checks that
threads and file descriptors are back to where they were before the run. It
exits with status 1 if anything went wrong: an error on either side, a lost
message, a connection the server closed on its own, or a leak. This is a
script, not a unit test; CI runs ``--quick``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import logging
import os
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_broadcast import raise_fd_limit

import syncws
from tests.rawpeer import client_frame, handshake

#: Every broadcast message is this long: an 8-digit sequence number, then padding.
MESSAGE_SIZE = 64
#: How long a client process waits for a phase before giving up and reporting.
PHASE_TIMEOUT = 120.0


# -- the raw clients (another process) ----------------------------------------------


class RawClients:
    """Many WebSocket connections on raw sockets, driven by a selector loop.

    Frames from the server are parsed by hand: pings get a (masked) pong,
    text messages are checked against the sequence number expected next,
    a close frame is answered. Anything unexpected counts as an error.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.buffers: dict[socket.socket, bytearray] = {}
        self.pings: dict[socket.socket, int] = {}
        self.received: dict[socket.socket, int] = {}
        self.closing: set[socket.socket] = set()
        self.closed_cleanly = 0
        self.closed_by_server = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.commands = bytearray()

    # Each mask is fixed: these clients measure the server, not their masking.
    def send_frame(self, sock: socket.socket, opcode: int, payload: bytes) -> None:
        frame = client_frame(opcode, payload)
        try:
            sent = sock.send(frame)
        except OSError as exc:
            self.errors[f"send: {type(exc).__name__}"] += 1
            return
        if sent != len(frame):  # never with a few bytes and an empty buffer
            self.errors["short send"] += 1

    def open(self, count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            try:
                sock = handshake(self.port, "/hold").sock
            except (OSError, AssertionError) as exc:
                self.errors[f"handshake: {type(exc).__name__}"] += 1
                continue
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
            self.buffers[sock] = bytearray()
            self.pings[sock] = 0
            self.received[sock] = 0
            # Answer the pings of the connections already open while opening more.
            self.poll(0)
        return time.perf_counter() - start

    def poll(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            if key.fileobj is sys.stdin:
                self.commands += os.read(sys.stdin.fileno(), 4096)
                continue
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                self.errors[f"recv: {type(exc).__name__}"] += 1
                data = b""
            if not data:
                self.drop(sock)
                continue
            buffer = self.buffers[sock]
            buffer += data
            self.parse(sock, buffer)

    def drop(self, sock: socket.socket) -> None:
        if sock in self.closing:
            self.closed_cleanly += 1
        else:
            self.errors["connection lost"] += 1
        self.selector.unregister(sock)
        self.closing.discard(sock)
        del self.buffers[sock]
        sock.close()

    def parse(self, sock: socket.socket, buffer: bytearray) -> None:
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            length, start = second & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = struct.unpack_from("!H", buffer, 2)[0], 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = struct.unpack_from("!Q", buffer, 2)[0], 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            opcode = first & 0x0F
            if second & 0x80 or first & 0x70 or not first & 0x80:
                self.errors["unexpected frame header"] += 1
            elif opcode == 0x1:
                expected = self.received[sock]
                if len(payload) != MESSAGE_SIZE or int(payload[:8]) != expected:
                    self.errors["message out of order or corrupt"] += 1
                self.received[sock] = expected + 1
            elif opcode == 0x9:
                self.pings[sock] += 1
                self.send_frame(sock, 0xA, payload)
            elif opcode == 0x8:
                if sock not in self.closing:
                    self.closed_by_server += 1
                    self.send_frame(sock, 0x8, payload[:2])
                    self.closing.add(sock)
                # The server closes TCP next; drop() counts the connection then.
            elif opcode != 0xA:
                self.errors[f"unexpected opcode {opcode}"] += 1

    def close_all(self) -> None:
        for sock in list(self.buffers):
            if sock not in self.closing:
                self.closing.add(sock)
                self.send_frame(sock, 0x8, struct.pack("!H", 1000))

    def stats(self, seconds: float) -> dict[str, Any]:
        return {
            "open": len(self.buffers),
            "min_pings": min(self.pings[sock] for sock in self.buffers) if self.buffers else 0,
            "received": sum(self.received.values()),
            "min_received": min(self.received.values(), default=0),
            "closed_cleanly": self.closed_cleanly,
            "closed_by_server": self.closed_by_server,
            "errors": dict(self.errors),
            "seconds": seconds,
        }

    def wait(self, done: Callable[[], bool], timeout: float) -> float:
        start = time.perf_counter()
        while not done() and time.perf_counter() - start < timeout:
            self.poll(0.05)
        return time.perf_counter() - start

    def all_reached(self, counts: dict[socket.socket, int], wanted: int) -> bool:
        return all(counts[sock] >= wanted for sock in self.buffers)

    def run(self, count: int) -> None:
        """Open ``count`` connections, then obey the commands that come on stdin."""
        seconds = self.open(count)
        os.set_blocking(sys.stdin.fileno(), False)
        self.selector.register(sys.stdin, selectors.EVENT_READ)
        reply(self.stats(seconds))
        while True:
            while b"\n" not in self.commands:
                self.poll(1.0)
            line, _, rest = bytes(self.commands).partition(b"\n")
            self.commands = bytearray(rest)
            command, *args = line.decode().split()
            if command in ("pings", "messages"):
                # Wait until every connection saw this many pings, or got this many messages.
                counts = self.pings if command == "pings" else self.received
                seconds = self.wait(
                    functools.partial(self.all_reached, counts, int(args[0])), PHASE_TIMEOUT
                )
            elif command == "close":
                self.close_all()
                seconds = self.wait(lambda: not self.buffers, PHASE_TIMEOUT)
                reply(self.stats(seconds))
                return
            reply(self.stats(seconds))


def reply(data: dict[str, Any]) -> None:
    print(json.dumps(data), flush=True)


# -- the churning clients (another process) -------------------------------------------


def run_churn(port: int, cycles: int, threads: int) -> None:
    """``cycles`` times: connect, one echo round trip, close; from ``threads`` threads."""
    uri = f"ws://127.0.0.1:{port}/echo"
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    remaining = [cycles]

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
                number = remaining[0]
            message = f"cycle {number}"
            try:
                with syncws.connect(uri, open_timeout=30, close_timeout=30) as connection:
                    connection.send(message)
                    if connection.recv(timeout=30) != message:
                        raise AssertionError("wrong echo")
            except Exception as exc:
                with lock:
                    errors[f"{type(exc).__name__}: {exc}"[:120]] += 1

    start = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    reply({"cycles": cycles, "errors": dict(errors), "seconds": time.perf_counter() - start})


# -- the server and the driver (this process) -----------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_links() -> list[str]:
    links = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the directory's own fd, closed by now
            links.append(f"{fd}:{os.readlink(f'/proc/self/fd/{fd}')}")
    return links


def memory_kib(field: str) -> int:
    """A field of /proc/self/status in KiB: VmRSS (resident now), VmHWM (peak)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


class Sampler:
    """Samples the server process's threads, RSS and fds in the background."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_threads = 0
        self.peak_fds = 0
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self.peak_threads = self.peak_fds = self.peak_rss = 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        self.peak_threads = max(self.peak_threads, threading.active_count())
        self.peak_fds = max(self.peak_fds, open_fds())
        self.peak_rss = max(self.peak_rss, memory_kib("VmRSS"))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class ErrorCounter(logging.Handler):
    """Counts what the server logs at WARNING or above: a refusal, a handler failure."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages[record.getMessage()[:120]] += 1


class Server:
    """The syncws server under test: echoes on /echo, holds the connection on /hold."""

    def __init__(self, ping_interval: float, ping_timeout: float, compression: bool) -> None:
        self.lock = threading.Lock()
        self.closed: collections.Counter[str] = collections.Counter()
        self.server = syncws.serve(
            self.handler,
            "127.0.0.1",
            0,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            compression="deflate" if compression else None,
            backlog=4096,
        )
        self.thread = threading.Thread(target=self.server.serve_forever, name="load-server")
        self.thread.start()

    def handler(self, connection: syncws.ServerConnection) -> None:
        try:
            for message in connection:
                connection.send(message)
        except syncws.ConnectionClosedError as exc:
            with self.lock:
                self.closed[f"closed with an error: {exc}"[:120]] += 1
        else:
            with self.lock:
                self.closed["ok"] += 1

    def shutdown(self) -> None:
        self.server.shutdown()
        self.thread.join()


class Clients:
    """Client processes of one role, driven through their stdin and stdout."""

    def __init__(self, args_per_process: list[list[str]]) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, __file__, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for args in args_per_process
        ]

    def send(self, command: str) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(command + "\n")
            process.stdin.flush()

    def replies(self) -> list[dict[str, Any]]:
        results = []
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"client process {process.pid} died: {process.wait()}")
            results.append(json.loads(line))
        return results

    def wait(self) -> None:
        for process in self.processes:
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
            process.wait(60)


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up the reports of several client processes."""
    errors: collections.Counter[str] = collections.Counter()
    for result in results:
        errors.update(result["errors"])
    merged = {"errors": dict(errors), "seconds": max(result["seconds"] for result in results)}
    for key in ("open", "received", "closed_cleanly", "closed_by_server", "cycles"):
        if key in results[0]:
            merged[key] = sum(result[key] for result in results)
    for key in ("min_pings", "min_received"):
        if key in results[0]:
            merged[key] = min(result[key] for result in results)
    return merged


def split_evenly(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--raw-role":
        raise_fd_limit()
        socket.setdefaulttimeout(60)  # the raw peer's sockets: never hang forever
        RawClients(int(sys.argv[2])).run(int(sys.argv[3]))
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "--churn-role":
        raise_fd_limit()
        run_churn(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return 0

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 connections, 1,000 cycles")
    parser.add_argument("--connections", type=int, help="concurrent connections (2,000)")
    parser.add_argument("--messages", type=int, help="broadcast messages (100)")
    parser.add_argument("--churn", type=int, help="connect/echo/close cycles (10,000)")
    parser.add_argument("--client-processes", type=int, default=2, help="processes per role (2)")
    parser.add_argument("--churn-threads", type=int, default=4, help="threads per process (4)")
    parser.add_argument("--pings", type=int, help="pings each connection must answer (5)")
    parser.add_argument(
        "--no-compression",
        action="store_true",
        help="the server declines permessage-deflate (the churn clients offer it)",
    )
    parser.add_argument("--ping-interval", type=float, default=1.0, help="seconds (1.0)")
    parser.add_argument("--ping-timeout", type=float, default=10.0, help="seconds (10.0)")
    args = parser.parse_args()
    connections = args.connections or (200 if args.quick else 2000)
    messages = args.messages or (20 if args.quick else 100)
    pings = args.pings or (2 if args.quick else 5)
    cycles = args.churn if args.churn is not None else (1000 if args.quick else 10_000)
    processes = args.client_processes
    raise_fd_limit()

    errors: collections.Counter[str] = collections.Counter()
    log = ErrorCounter()
    logging.getLogger("syncws").addHandler(log)
    baseline_threads, baseline_fds = threading.active_count(), open_fds()
    sampler = Sampler()
    rows: list[tuple[str, str, str]] = []  # phase, duration, what happened
    started = time.perf_counter()

    server = Server(args.ping_interval, args.ping_timeout, not args.no_compression)
    # Let serve_forever() open its selector before counting what an idle server holds.
    time.sleep(0.5)
    serving_threads, serving_fds = threading.active_count(), open_fds()
    serving_links = fd_links()
    serving_rss = memory_kib("VmRSS")
    print(
        f"server on port {server.server.port}; {connections} connections, {messages} messages, "
        f"{cycles} churn cycles, ping_interval={args.ping_interval}s"
    )

    # 1. open
    start = time.perf_counter()
    raw = Clients(
        [
            ["--raw-role", str(server.server.port), str(n)]
            for n in split_evenly(connections, processes)
        ]
    )
    opened = merge(raw.replies())
    held = wait_until(lambda: len(server.server.connections) >= connections, 30)
    open_seconds = time.perf_counter() - start
    errors.update(opened["errors"])
    if not held:
        errors["server has fewer connections than opened"] += 1
    rows.append(
        (
            "open",
            f"{open_seconds:.1f} s",
            f"{opened['open']:,} connections, "
            f"{opened['open'] / opened['seconds']:,.0f} handshakes/s",
        )
    )

    # 2. keepalive
    start = time.perf_counter()
    raw.send(f"pings {pings}")
    pinged = merge(raw.replies())
    server_side = list(server.server.connections)

    def unanswered() -> int:
        # A pong may still be on its way when the client reports: give it time.
        return sum(1 for connection in server_side if connection.latency <= 0)

    wait_until(lambda: unanswered() == 0, args.ping_timeout)
    unanswered_count = unanswered()
    keepalive_seconds = time.perf_counter() - start
    if pinged["min_pings"] < pings:
        errors[f"a connection got fewer than {pings} pings"] += 1
    if unanswered_count:
        errors["server connections without a pong"] += unanswered_count
    rows.append(
        (
            "keepalive",
            f"{keepalive_seconds:.1f} s",
            f"every connection pinged {pinged['min_pings']}+ times, "
            f"{len(server_side) - unanswered_count:,} pongs measured by the server",
        )
    )
    peak_threads_held = threading.active_count()

    # 3. broadcast
    start = time.perf_counter()
    for number in range(messages):
        syncws.broadcast(server_side, f"{number:08d}".ljust(MESSAGE_SIZE, "."))
    raw.send(f"messages {messages}")
    delivered = merge(raw.replies())
    broadcast_seconds = time.perf_counter() - start
    expected = messages * connections
    lost = expected - delivered["received"]
    skipped = sum(connection.skipped_messages for connection in server_side)
    errors.update(delivered["errors"])
    rows.append(
        (
            "broadcast",
            f"{broadcast_seconds:.1f} s",
            f"{delivered['received']:,} of {expected:,} messages delivered "
            f"({delivered['received'] / broadcast_seconds:,.0f}/s), {skipped} skipped",
        )
    )

    raw.send("close")
    closed = merge(raw.replies())
    raw.wait()
    errors.update(closed["errors"])
    if closed["closed_by_server"]:
        errors["connections closed by the server"] += closed["closed_by_server"]
    if closed["closed_cleanly"] != connections:
        errors["connections not closed cleanly"] += connections - closed["closed_cleanly"]
    held_peak = (sampler.peak_threads, sampler.peak_rss, sampler.peak_fds)
    if not wait_until(lambda: threading.active_count() <= serving_threads, 30):
        errors["handler threads still running after the close"] += 1

    # 4. churn
    sampler.reset()
    start = time.perf_counter()
    churn = (
        Clients(
            [
                ["--churn-role", str(server.server.port), str(n), str(args.churn_threads)]
                for n in split_evenly(cycles, processes)
            ]
        )
        if cycles
        else None
    )
    churned = merge(churn.replies()) if churn else {"cycles": 0, "errors": {}, "seconds": 0.0}
    if churn:
        churn.wait()
    churn_seconds = time.perf_counter() - start
    errors.update(churned["errors"])
    if cycles:
        rows.append(
            (
                "churn",
                f"{churn_seconds:.1f} s",
                f"{churned['cycles']:,} connect/echo/close cycles, "
                f"{churned['cycles'] / churned['seconds']:,.0f}/s",
            )
        )
    churn_peak = (sampler.peak_threads, sampler.peak_rss, sampler.peak_fds)

    # Back to where it started?
    settled = wait_until(
        lambda: threading.active_count() <= serving_threads and open_fds() <= serving_fds, 30
    )
    after_threads, after_fds = threading.active_count(), open_fds()
    if not settled:
        errors["threads or fds above the idle server's after the run"] += 1
        print("left open:", sorted(set(fd_links()) - set(serving_links)))
        print("threads:", threading.enumerate())
    server.shutdown()
    sampler.stop()
    final_threads, final_fds = threading.active_count(), open_fds()
    if final_threads > baseline_threads or final_fds > baseline_fds:
        errors["threads or fds left after shutdown"] += 1
    errors.update(
        {f"server closed a connection: {k}": v for k, v in server.closed.items() if k != "ok"}
    )
    errors.update({f"server logged: {k}": v for k, v in log.messages.items()})
    total = time.perf_counter() - started

    print()
    print(f"{'phase':<10} {'time':>8}  result")
    for phase, duration, result in rows:
        print(f"{phase:<10} {duration:>8}  {result}")
    print()
    mib = 1024
    print(
        f"server threads: {baseline_threads} before, {serving_threads} idle server, "
        f"peak {held_peak[0]:,} with {connections:,} connections "
        f"({peak_threads_held:,} after keepalive), peak {churn_peak[0]} during churn, "
        f"{after_threads} after the run, {final_threads} after shutdown"
    )
    print(
        f"server RSS: {serving_rss / mib:,.0f} MiB idle, "
        f"peak {held_peak[1] / mib:,.0f} MiB with {connections:,} connections "
        f"({(held_peak[1] - serving_rss) / max(connections, 1):,.0f} KiB each), "
        f"peak {churn_peak[1] / mib:,.0f} MiB during churn, "
        f"{memory_kib('VmRSS') / mib:,.0f} MiB at the end (high-water mark "
        f"{memory_kib('VmHWM') / mib:,.0f} MiB)"
    )
    print(
        f"server fds: {baseline_fds} before, {serving_fds} idle server, "
        f"peak {held_peak[2]:,} with {connections:,} connections, peak {churn_peak[2]} during "
        f"churn, {after_fds} after the run, {final_fds} after shutdown"
    )
    print(f"messages lost: {lost}")
    print(f"errors: {sum(errors.values())}")
    for message, count in errors.most_common():
        print(f"  {count:>6} x {message}")
    print(f"total: {total:.1f} s")
    return 1 if errors or lost else 0


if __name__ == "__main__":
    sys.exit(main())
