"""Soak test: a server under steady churn for minutes, with and without compression.

Run:  python bench/soak.py [--quick] [--minutes N] [--compression deflate|none|both]

A syncws server runs in a process of its own, holding ``--connections``
connections (300) from a raw-socket client process (no library: one selector
loop). Every second the client closes ``--churn`` of them (10, with a clean
close handshake) and opens as many new ones; each connection echoes a small
JSON message every 2 s, and the server sends a 64-byte ``broadcast()`` to all
connections 10 times a second. With compression the client makes the offer
every browser makes, ``permessage-deflate; client_max_window_bits``, sends
compressed messages and decompresses what it receives with context takeover.

Every ``--interval`` seconds (30; 10 with --quick) it samples the server's
RSS, threads and file descriptors, and the client's counts. At the end it
checks: RSS after the settling time (minute 2; 30 s with --quick) stays within
``--tolerance`` (20%) of its value then, threads and descriptors track the
connections (and return to the idle server's count after the clients leave),
and nothing failed on either side (handshakes, echoes, broadcasts, closes).
It exits with status 1 otherwise. ``--quick`` runs about a minute per
compression setting; CI runs it.

``--settings`` passes keyword arguments (JSON) to the server's
ServerPerMessageDeflateFactory, e.g. syncws's settings before issue 24:
``'{"server_max_window_bits": 15, "client_max_window_bits": null,
"mem_level": 8, "keep_state": true}'``. ``--arena-max N`` runs the server with
``MALLOC_ARENA_MAX=N`` and ``--trim-every S`` calls glibc's ``malloc_trim(0)``
in the server every S seconds: the allocator-level alternatives, for
comparison. This is a script, not a unit test: numbers vary with the machine.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.rawpeer import BROWSER_OFFER, client_frame, handshake  # noqa: E402

BROADCAST = b"B" * 64
ECHO_PERIOD = 2.0
BROADCASTS_PER_SECOND = 10


# -- the server process -----------------------------------------------------------------------


def run_server(compression: bool, settings: dict[str, Any], trim_every: float) -> None:
    """Serve echo plus a broadcast ticker until stdin closes; print the port first."""
    import syncws
    from syncws.protocol.deflate import ServerPerMessageDeflateFactory

    live: set[syncws.ServerConnection] = set()
    lock = threading.Lock()

    def handler(connection: syncws.ServerConnection) -> None:
        with lock:
            live.add(connection)
        try:
            with contextlib.suppress(syncws.ConnectionClosed):
                for message in connection:
                    connection.send(message)
        finally:
            with lock:
                live.discard(connection)

    stop = threading.Event()

    def ticker() -> None:
        period = 1 / BROADCASTS_PER_SECOND
        next_tick = time.monotonic()
        while not stop.is_set():
            with lock:
                connections = list(live)
            syncws.broadcast(connections, BROADCAST)
            next_tick += period
            stop.wait(max(0.0, next_tick - time.monotonic()))

    def trimmer() -> None:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        while not stop.wait(trim_every):
            libc.malloc_trim(0)

    extensions = [ServerPerMessageDeflateFactory(**settings)] if compression else []
    with syncws.serve(
        handler, "127.0.0.1", 0, extensions=extensions, backlog=1024, ping_timeout=60
    ) as server:
        threads = [threading.Thread(target=ticker), threading.Thread(target=server.serve_forever)]
        if trim_every:
            threads.append(threading.Thread(target=trimmer))
        for thread in threads:
            thread.start()
        print(server.port, flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        stop.set()
        server.shutdown()
        for thread in threads:
            thread.join()
    with lock:
        print(json.dumps({"live_at_exit": len(live)}), flush=True)


# -- the client process -----------------------------------------------------------------------


class Client:
    """One raw WebSocket client connection in the driver's selector loop."""

    def __init__(self, sock: socket.socket, number: int, deflate: bool, now: float) -> None:
        self.sock = sock
        self.number = number
        self.deflate = deflate
        self.buffer = bytearray()
        # The server compresses with context takeover: one decompressor per connection.
        self.decompressor = zlib.decompressobj(-15) if deflate else None
        self.expected: collections.deque[bytes] = collections.deque()
        self.sent = 0
        self.next_echo = now + (number % 20) * ECHO_PERIOD / 20  # spread the echoes
        self.closing_since: float | None = None

    def send_echo(self, stats: dict[str, int]) -> None:
        self.sent += 1
        message = json.dumps(
            {"type": "echo", "client": self.number, "n": self.sent, "text": "ping from a client"}
        ).encode()
        if self.deflate:  # a fresh compressor: valid whether or not the server keeps context
            compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload = (compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
            frame = client_frame(0x1, payload, rsv1=True)
        else:
            frame = client_frame(0x1, message)
        self.expected.append(message)
        self.sock.sendall(frame)
        stats["echoes_sent"] += 1

    def start_close(self, now: float) -> None:
        self.closing_since = now
        self.sock.sendall(client_frame(0x8, struct.pack("!H", 1000)))

    def feed(self, data: bytes, stats: dict[str, int]) -> bool:
        """Parse what arrived; return True once the server's close frame came."""
        self.buffer += data
        while len(self.buffer) >= 2:
            first, second = self.buffer[0], self.buffer[1]
            length, offset = second & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    return False
                (length,) = struct.unpack_from("!H", self.buffer, 2)
                offset = 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return False
                (length,) = struct.unpack_from("!Q", self.buffer, 2)
                offset = 10
            if len(self.buffer) < offset + length:
                return False
            payload = bytes(self.buffer[offset : offset + length])
            del self.buffer[: offset + length]
            opcode = first & 0x0F
            if opcode == 0x8:
                if self.closing_since is None:  # the server closed on its own: say why
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    stats[f"error: server closed with {code}"] += 1
                return True
            if opcode == 0x9:
                self.sock.sendall(client_frame(0xA, payload))
                continue
            if opcode == 0xA:
                continue
            if not first & 0x80 or opcode not in (1, 2):
                stats["error: unexpected frame"] += 1  # small messages are never fragmented
                continue
            if first & 0x40:
                if self.decompressor is None:
                    stats["error: compressed without deflate"] += 1
                    continue
                payload = self.decompressor.decompress(payload + b"\x00\x00\xff\xff")
            if payload == BROADCAST:
                stats["broadcasts_received"] += 1
            elif self.expected and payload == self.expected[0]:
                self.expected.popleft()
                stats["echoes_received"] += 1
            elif self.closing_since is None:
                stats["error: unexpected message"] += 1
        return False


def errors(stats: dict[str, int]) -> int:
    return sum(count for name, count in stats.items() if name.startswith("error: "))


def run_clients(port: int, connections: int, churn: int, seconds: float, deflate: bool) -> None:
    """Drive the server; print a JSON line of counts every second, then a final one."""
    selector = selectors.DefaultSelector()
    stats: dict[str, int] = collections.Counter()  # type: ignore[assignment]
    for name in (
        "opened",
        "closed_clean",
        "errors",
        "echoes_sent",
        "echoes_received",
        "broadcasts_received",
        "not_compressed",
    ):
        stats[name] = 0
    clients: collections.OrderedDict[socket.socket, Client] = collections.OrderedDict()
    number = 0

    def open_one(now: float) -> None:
        nonlocal number
        try:
            peer = handshake(
                port, "/soak", extensions=BROWSER_OFFER if deflate else None, timeout=10
            )
            # A broadcast may follow the response at once: it stays in the socket.
            sock, accepted = peer.sock, peer.deflate
        except (OSError, EOFError, ConnectionError) as exc:
            stats[f"error: handshake: {type(exc).__name__}"] += 1
            return
        if deflate and not accepted:
            stats["not_compressed"] += 1
        number += 1
        clients[sock] = Client(sock, number, deflate and accepted, now)
        selector.register(sock, selectors.EVENT_READ)
        stats["opened"] += 1

    def drop(client: Client, error: str | None) -> None:
        """Forget a connection: closed cleanly (``error`` None) or not, and why."""
        selector.unregister(client.sock)
        client.sock.close()
        del clients[client.sock]
        if error is None:
            stats["closed_clean"] += 1
        elif error:  # "": counted already
            stats[f"error: {error}"] += 1

    start = time.monotonic()
    for _ in range(connections):
        open_one(start)
    next_churn = start + 1.0
    next_report = start + 1.0
    end = start + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_churn:
            next_churn += 1.0
            active = [client for client in clients.values() if client.closing_since is None]
            for client in active[:churn]:
                try:
                    client.start_close(now)
                except OSError:
                    drop(client, "send failed")
            for _ in range(churn):
                open_one(now)
        for client in list(clients.values()):
            if client.closing_since is None and now >= client.next_echo:
                client.next_echo += ECHO_PERIOD
                try:
                    client.send_echo(stats)
                except OSError:
                    drop(client, "send failed")
            elif client.closing_since is not None and now - client.closing_since > 10:
                drop(client, "no close frame from the server within 10 s")
        for key, _ in selector.select(timeout=0.02):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            client = clients[sock]
            try:
                data = sock.recv(1 << 16)
            except OSError as exc:
                drop(client, f"recv: {type(exc).__name__}")
                continue
            if not data:
                drop(client, None if client.closing_since is not None else "EOF before closing")
                continue
            try:
                if client.feed(data, stats):  # the server's close frame (feed counts early ones)
                    drop(client, None if client.closing_since is not None else "")
            except (OSError, zlib.error) as exc:
                drop(client, f"reading: {type(exc).__name__}")
        if now >= next_report:
            next_report += 1.0
            live = sum(1 for client in clients.values() if client.closing_since is None)
            stats["errors"] = errors(stats)
            print(json.dumps({**stats, "live": live}), flush=True)
    # Leave: close every connection cleanly and wait for the server's answers.
    now = time.monotonic()
    for client in list(clients.values()):
        if client.closing_since is None:
            try:
                client.start_close(now)
            except OSError:
                drop(client, "send failed")
    deadline = now + 20
    while clients and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            client = clients[sock]
            try:
                data = sock.recv(1 << 16)
                if not data or client.feed(data, stats):
                    drop(client, None)
            except (OSError, zlib.error) as exc:
                drop(client, f"closing: {type(exc).__name__}")
    for client in list(clients.values()):
        drop(client, "no close frame from the server within 20 s")
    stats["errors"] = errors(stats)
    print(json.dumps({**stats, "live": 0, "final": True}), flush=True)


# -- the driver -------------------------------------------------------------------------------


def proc_sample(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


class Latest:
    """The client process's last JSON line, read by a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.value: dict[str, Any] = {}
        self.process = process
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.value = json.loads(line)


def soak(args: argparse.Namespace, compression: bool) -> bool:
    label = "deflate" if compression else "no compression"
    env = dict(os.environ)
    if args.arena_max:
        env["MALLOC_ARENA_MAX"] = str(args.arena_max)
    server = subprocess.Popen(
        [
            *(sys.executable, __file__, "--role", "server"),
            *("--compression", "deflate" if compression else "none"),
            *("--settings", args.settings or "{}", "--trim-every", str(args.trim_every)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert server.stdout is not None and server.stdin is not None
    port = int(server.stdout.readline())
    time.sleep(0.5)
    idle = proc_sample(server.pid)
    seconds = args.minutes * 60
    client = subprocess.Popen(
        [
            *(sys.executable, __file__, "--role", "client", "--port", str(port)),
            *("--connections", str(args.connections), "--churn", str(args.churn)),
            *("--seconds", str(seconds), "--compression", "deflate" if compression else "none"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    latest = Latest(client)
    print(f"\n== {label}: {args.connections} connections, {args.churn}/s churn, {args.minutes} min")
    print(
        f"idle server: RSS {idle['rss_kib'] / 1024:.1f} MiB, threads {idle['threads']}, "
        f"fds {idle['fds']}"
    )
    print(
        f"{'time':>6} {'RSS MiB':>8} {'threads':>8} {'fds':>6} {'live':>6} {'opened':>7} "
        f"{'echoes':>8} {'bcasts':>9} {'errors':>7}"
    )
    samples: list[tuple[float, dict[str, int]]] = []
    start = time.monotonic()
    ok = True
    next_sample = start + args.interval
    while client.poll() is None:
        time.sleep(max(0.0, min(1.0, next_sample - time.monotonic())))
        if time.monotonic() < next_sample or client.poll() is not None:
            continue
        next_sample += args.interval
        sample = proc_sample(server.pid)
        elapsed = time.monotonic() - start
        samples.append((elapsed, sample))
        counts = latest.value
        errors = counts.get("errors", 0)
        print(
            f"{elapsed:>5.0f}s {sample['rss_kib'] / 1024:>8.1f} {sample['threads']:>8} "
            f"{sample['fds']:>6} {counts.get('live', 0):>6} {counts.get('opened', 0):>7} "
            f"{counts.get('echoes_received', 0):>8} {counts.get('broadcasts_received', 0):>9} "
            f"{errors:>7}",
            flush=True,
        )
        if errors:
            kinds = {name[7:]: n for name, n in counts.items() if name.startswith("error: ")}
            print(f"   errors so far: {kinds}")
        live = counts.get("live", 0)
        # One thread per connection (closing ones included), plus a few of the server's own.
        extra = sample["threads"] - idle["threads"] - live
        if not -args.churn * 2 <= extra <= args.churn * 3 + 10:
            print(f"   threads don't track the connections: {extra:+} beyond them")
            ok = False
        if not -args.churn * 2 <= sample["fds"] - idle["fds"] - live <= args.churn * 3 + 10:
            print(f"   descriptors don't track the connections: {sample['fds']} for {live}")
            ok = False
    client.wait()
    latest.thread.join(5)
    final = latest.value
    time.sleep(2.0)  # handler threads finish
    after = proc_sample(server.pid)
    server.stdin.close()
    server.wait(60)
    errors = final.get("errors", 0)
    print(
        f"after the clients left: RSS {after['rss_kib'] / 1024:.1f} MiB, threads "
        f"{after['threads']}, fds {after['fds']}"
    )
    print(f"client: {json.dumps(final)}")
    if errors or final.get("not_compressed") or not final.get("final"):
        print("   FAIL: errors on the client side")
        ok = False
    if after["threads"] > idle["threads"] + 1 or after["fds"] > idle["fds"]:
        print("   FAIL: threads or descriptors left over after the clients left")
        ok = False
    if server.returncode != 0:
        print(f"   FAIL: the server exited with {server.returncode}")
        ok = False
    settle = args.settle * 60
    reference = next((s for t, s in samples if t >= settle - 1), None)
    if reference is not None:
        later = [s["rss_kib"] for t, s in samples if t >= settle - 1]
        high = max(later) / reference["rss_kib"] - 1
        print(
            f"RSS from {args.settle:g} min on: {reference['rss_kib'] / 1024:.1f} MiB, then "
            f"at most {max(later) / 1024:.1f} MiB ({high:+.0%}; tolerance {args.tolerance:.0%})"
        )
        if high > args.tolerance:
            print("   FAIL: RSS keeps growing")
            ok = False
    print("OK" if ok else "FAILED")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute per setting")
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--compression", choices=["deflate", "none", "both"], default="both")
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--churn", type=int, default=10, help="connections replaced per second")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--settle", type=float, default=2.0, help="minutes before RSS must hold")
    parser.add_argument("--tolerance", type=float, default=0.2)
    parser.add_argument("--settings", help="ServerPerMessageDeflateFactory arguments, JSON")
    parser.add_argument("--arena-max", type=int, default=0, help="MALLOC_ARENA_MAX for the server")
    parser.add_argument("--trim-every", type=float, default=0.0, help="malloc_trim(0) period, s")
    parser.add_argument("--role", choices=["server", "client"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "server":
        run_server(args.compression == "deflate", json.loads(args.settings), args.trim_every)
        return
    if args.role == "client":
        run_clients(
            args.port, args.connections, args.churn, args.seconds, args.compression == "deflate"
        )
        return
    if args.quick:
        args.minutes, args.interval, args.settle = 1.0, 10.0, 0.5
    settings = ["deflate", "none"] if args.compression == "both" else [args.compression]
    results = [soak(args, setting == "deflate") for setting in settings]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
