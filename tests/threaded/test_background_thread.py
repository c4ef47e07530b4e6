"""The shared background thread (issue 16): bounded work, no application code, every ping answered.

One background thread serves every connection of the process, so one peer or
one callback must not be able to hold it up for the others. These tests run
real loopback sockets against it: a compressed batch that would inflate far
past ``max_queue``, pings behind large echoes, callbacks that block, and the
lag figure that reports how far behind the thread is. Also here: the
connection's small items that live next to the hand-off between the
application's thread and the background thread (issues 17.3, 20.2, 21.7).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import syncws
from syncws import ConnectionClosed, ServerConnection, WebSocketApp
from syncws.protocol import Binary, Pong, Protocol, Side, Text
from syncws.protocol.frames import Opcode
from syncws.protocol.framing import encode_frame
from syncws.threaded.connection import Connection
from syncws.threaded.connection import reader as reader_module
from syncws.threaded.runtime import reactor as reactor_module
from syncws.threaded.runtime.reactor import reactor

from ..rawpeer import client_frame, handshake
from .helpers import WAIT, connected_pair, running_server, wait_until

MiB = 2**20


# -- helpers -----------------------------------------------------------------------------------


def watch_queue(monkeypatch: pytest.MonkeyPatch) -> dict[Connection, int]:
    """Record, per connection, the most complete messages ever waiting for ``recv()``."""
    peaks: dict[Connection, int] = {}
    original = Connection._process_events

    def spy(self: Connection) -> None:
        original(self)
        peaks[self] = max(peaks.get(self, 0), self._inbox.messages)

    monkeypatch.setattr(Connection, "_process_events", spy)
    return peaks


class Gated:
    """A handler for one path that waits until the test lets it read, then reads everything."""

    def __init__(self, path: str = "/gated") -> None:
        self.path = path
        self.connection: ServerConnection | None = None
        self.opened = threading.Event()
        self.release = threading.Event()
        self.received: list[str | bytes] = []
        self.error: BaseException | None = None
        self.done = threading.Event()

    def __call__(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        if connection.request.path != self.path:
            syncws.testing.echo(connection)
            return
        self.connection = connection
        self.opened.set()
        try:
            assert self.release.wait(WAIT)
            for message in connection:
                self.received.append(message)
        except ConnectionClosed as exc:
            self.error = exc
        finally:
            self.done.set()


@contextlib.contextmanager
def background(target: Callable[[], Any], name: str) -> Iterator[threading.Thread]:
    """Run ``target`` in a thread for the block; join it at the end."""
    thread = threading.Thread(target=target, name=name)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(WAIT)
        assert not thread.is_alive()


# -- bounded work: a compressed batch ----------------------------------------------------------


@pytest.mark.timeout(60)
def test_compressed_batch_stays_within_max_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """200 frames of ~1 KiB, each inflating to 1 MiB: the queue holds max_queue, never more.

    Meanwhile another, idle connection's ping is answered; once the handler
    reads, every message arrives (TCP pushed back, nothing was dropped).
    """
    peaks = watch_queue(monkeypatch)
    compressor = zlib.compressobj(wbits=-15)
    data = compressor.compress(b"\0" * MiB) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff") and len(data) < 2048
    # No context takeover: every message compresses to the same bytes.
    batch = client_frame(0x2, data[:-4], rsv1=True) * 200
    gated = Gated()
    max_queue = 4
    with running_server(gated, max_queue=max_queue, max_size=MiB, compression="deflate") as server:
        sock = handshake(
            server.port,
            extensions="permessage-deflate; client_no_context_takeover",
            path="/gated",
            timeout=WAIT,
        ).sock
        try:
            with syncws.connect(f"ws://127.0.0.1:{server.port}/") as idle:
                assert gated.opened.wait(WAIT)
                connection = gated.connection
                assert connection is not None
                with background(lambda: sock.sendall(batch), "test-batch-sender"):
                    # The background thread keeps serving others meanwhile.
                    assert idle.ping().wait(WAIT)
                    stats = syncws.background_stats()
                    assert stats.running
                    assert stats.lag >= 0
                    gated.release.set()
                assert gated.release.is_set()
                wait_until(lambda: len(gated.received) == 200)
            assert all(message == b"\0" * MiB for message in gated.received)
            assert peaks[connection] <= max_queue
        finally:
            sock.close()
            gated.release.set()
            assert gated.done.wait(WAIT)


@pytest.mark.timeout(60)
def test_queue_bound_holds_while_closing(monkeypatch: pytest.MonkeyPatch) -> None:
    """After our close frame, reading goes on to the peer's close frame, within max_queue.

    Messages that arrive meanwhile past the bound are dropped (the
    application asked to close); the closing handshake completes cleanly.
    """
    peaks = watch_queue(monkeypatch)
    compressor = zlib.compressobj(wbits=-15)
    data = compressor.compress(b"\0" * MiB) + compressor.flush(zlib.Z_SYNC_FLUSH)
    batch = client_frame(0x2, data[:-4], rsv1=True) * 50 + client_frame(
        0x8, (1000).to_bytes(2, "big")
    )
    closed: dict[str, Any] = {}
    done = threading.Event()

    def closer(connection: ServerConnection) -> None:
        try:
            connection.close()
            closed["code"] = connection.close_code
            closed["kept"] = []
            with contextlib.suppress(ConnectionClosed):
                while True:
                    closed["kept"].append(connection.recv(0))
        finally:
            closed["connection"] = connection
            done.set()

    options = {"max_queue": 4, "max_size": MiB, "compression": "deflate"}
    with running_server(closer, close_timeout=WAIT, **options) as server:
        sock = handshake(
            server.port,
            path="/hostile",
            extensions="permessage-deflate; client_no_context_takeover",
            timeout=WAIT,
        ).sock
        try:
            received = b""
            while b"\x88" not in received:  # the server's close frame
                received += sock.recv(65536)
            sock.sendall(batch)
            while sock.recv(65536):  # until the server closes TCP
                pass
        finally:
            sock.close()
        assert done.wait(WAIT)
    assert closed["code"] == 1000
    assert len(closed["kept"]) <= 4
    assert peaks[closed["connection"]] <= 4


@pytest.mark.timeout(30)
def test_small_turns_keep_the_queue_bound_and_the_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncompressed too: with a tiny per-turn budget, frames wait in the core, nothing is lost.

    The reactor parses a few frames per turn and comes back for the rest; a
    thread in ``recv()`` parses a message larger than one turn in several.
    """
    monkeypatch.setattr(reader_module, "_TURN_SIZE", 1000)
    peaks = watch_queue(monkeypatch)
    with connected_pair(max_queue=2) as (client, server):
        messages: list[str | bytes] = [b"%d" % i * 1000 for i in range(30)]
        for message in messages:
            client.send(message)
        client.send(["x" * 500 for _ in range(10)])
        pending = client.ping()
        wait_until(lambda: server._inbox.messages == 2)
        received = [server.recv(WAIT) for _ in range(31)]
        assert received == [*messages, "x" * 5000]
        assert peaks[server] <= 2
        assert pending.wait(WAIT)  # the ping behind them all was answered


@pytest.mark.timeout(30)
def test_recv_parses_a_message_larger_than_a_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread in recv() goes on parsing what the core holds, without waiting for the socket."""
    monkeypatch.setattr(reader_module, "_TURN_SIZE", 1000)
    pieces = [client_frame(0x1, b"x" * 500, fin=False)]
    pieces += [client_frame(0x0, b"x" * 500, fin=False) for _ in range(8)]
    pieces.append(client_frame(0x0, b"x" * 500))
    with connected_pair() as (client, server):
        received: list[str | bytes] = []
        with background(lambda: received.append(server.recv(WAIT)), "test-recv"):
            wait_until(lambda: server._reader_thread)
            client.write_raw(b"".join(pieces), WAIT)  # one write: one read
        assert received == ["x" * 5000]


# -- every ping answered -----------------------------------------------------------------------


class RawClient:
    """A client socket past the handshake, driven by a core ``Protocol`` we control."""

    def __init__(self, port: int, *, rcvbuf: int) -> None:
        self.sock = handshake(port, rcvbuf=rcvbuf, path="/", timeout=WAIT).sock
        self.protocol = Protocol(Side.CLIENT, max_size=None)
        self.events: list[object] = []

    def write(self) -> None:
        self.sock.sendall(b"".join(self.protocol.data_to_send()))

    def read_until(self, done: Callable[[object], bool]) -> list[object]:
        """Read until an event satisfies ``done``; return every event up to it."""
        seen: list[object] = []
        while True:
            while self.events:
                event = self.events.pop(0)
                seen.append(event)
                if done(event):
                    return seen
            data = self.sock.recv(256 * 1024)
            assert data, "the server closed the connection"
            self.protocol.receive_data(data)
            self.events.extend(self.protocol.events_received())
            self.write()  # our pongs, if any

    def read_some_bytes(self) -> None:
        """Read the first bytes the server sends and keep them for ``read_until``."""
        data = self.sock.recv(1024)
        assert data
        self.protocol.receive_data(data)
        self.events.extend(self.protocol.events_received())


def small_send_buffer(connection: ServerConnection) -> None:
    """Echo with a small kernel send buffer: a big echo stays mostly in our outbox."""
    connection.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    syncws.testing.echo(connection)


@pytest.mark.timeout(120)
def test_every_ping_behind_a_big_echo_gets_its_pong() -> None:
    """RFC 6455 5.5.2: a pong for each ping, even while the backlog is over write_limit.

    Each round: send 1 MiB, wait until the echo starts (the server's backlog
    is then far over write_limit), ping, read the echo, send a marker. The
    pong must arrive before the marker's echo.
    """
    big = b"\x5a" * MiB
    with running_server(small_send_buffer, write_limit=256 * 1024) as server:
        client = RawClient(server.port, rcvbuf=64 * 1024)
        try:
            for round_ in range(200):
                client.protocol.send_binary(big)
                client.write()
                client.read_some_bytes()  # the echo has started
                payload = b"round %d" % round_
                client.protocol.send_ping(payload)
                client.write()
                client.read_until(lambda event: isinstance(event, Binary) and event.final)
                client.protocol.send_text("marker")
                client.write()
                seen = client.read_until(lambda event: isinstance(event, Text))
                pongs = [event for event in seen if isinstance(event, Pong)]
                assert [pong.data for pong in pongs] == [payload], f"round {round_}: {seen}"
        finally:
            client.sock.close()


# -- no application code on the background thread ------------------------------------------------


def assert_background_serves_others(port: int) -> None:
    """An idle connection, read by nobody but the background thread, gets its pong."""
    with syncws.connect(f"ws://127.0.0.1:{port}/", open_timeout=WAIT) as other:
        assert other.ping().wait(WAIT)


def pinger(connection: ServerConnection) -> None:
    """Ping the client once, then echo."""
    connection.ping(b"from the server")
    syncws.testing.echo(connection)


def blocking_action(name: str, app: WebSocketApp) -> None:
    """What a careless callback does: each of these may wait for the network."""
    connection = app.sock
    assert connection is not None
    if name == "close":
        app.close()
    elif name == "send":
        app.send(b"x" * MiB)
    else:
        connection.ping().wait(WAIT)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("callback", ["on_ping", "on_pong"])
@pytest.mark.parametrize("action", ["close", "send", "ping_wait"])
def test_blocking_control_callback_does_not_block_the_background_thread(
    callback: str, action: str
) -> None:
    """on_ping/on_pong run in run_forever()'s thread: blocking there delays no other connection."""
    entered = threading.Event()
    release = threading.Event()
    threads: list[threading.Thread] = []

    def on_control(app: WebSocketApp, data: bytes) -> None:
        threads.append(threading.current_thread())
        if entered.is_set():
            return
        entered.set()
        blocking_action(action, app)
        assert release.wait(WAIT)

    def on_open(app: WebSocketApp) -> None:
        if callback == "on_pong":
            assert app.sock is not None
            app.sock.ping(b"from the client")

    with running_server(pinger) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        app = WebSocketApp(uri, on_open=on_open, **{callback: on_control})
        with background(app.run_forever, "test-run-forever") as runner:
            try:
                assert entered.wait(WAIT)
                assert_background_serves_others(server.port)
            finally:
                release.set()
                app.close()
        assert threads and all(thread is runner for thread in threads)


@pytest.mark.timeout(30)
def test_ping_and_pong_reports_are_bounded_by_max_queue() -> None:
    """A flood of pongs while on_pong blocks: at most max_queue reports wait; messages go on."""
    reports: list[bytes] = []
    messages: list[str | bytes] = []
    release = threading.Event()

    def flood(connection: ServerConnection) -> None:
        # One write, so that one read takes it all: which frames a read sees
        # decides whether "done" finds room beside the reports waiting.
        pongs = [encode_frame(Opcode.PONG, b"%d" % i) for i in range(50)]
        frames = [*pongs, encode_frame(Opcode.TEXT, b"done")]
        connection.write_raw(b"".join(part for parts in frames for part in parts), WAIT)
        syncws.testing.echo(connection)

    def on_pong(app: WebSocketApp, data: bytes) -> None:
        reports.append(data)
        if len(reports) == 1:
            assert release.wait(WAIT)

    def on_message(app: WebSocketApp, message: str | bytes) -> None:
        messages.append(message)
        app.close()

    with running_server(flood) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        app = WebSocketApp(uri, on_pong=on_pong, on_message=on_message)
        with background(lambda: app.run_forever(max_queue=2), "test-run-forever"):
            try:
                wait_until(lambda: app.sock is not None and app.sock._inbox.messages == 1)
            finally:
                release.set()
    # The first report, then at most max_queue waiting; in order; the rest dropped.
    assert reports[0] == b"0" and 1 < len(reports) <= 3
    assert sorted(reports, key=int) == reports
    assert messages == ["done"]


@pytest.mark.timeout(60)
def test_blocking_close_callback_does_not_block_the_background_thread() -> None:
    """A close callback that blocks (here: on close() of another connection) delays no I/O."""
    entered = threading.Event()
    release = threading.Event()

    def on_closed(connection: Connection) -> None:
        entered.set()
        assert release.wait(WAIT)

    with running_server(syncws.testing.echo) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        with syncws.connect(uri) as first:
            first.add_close_callback(on_closed)
        try:
            assert entered.wait(WAIT)
            assert_background_serves_others(server.port)
        finally:
            release.set()


# -- the lag figure ----------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_lag_figure_reports_a_slow_turn_and_late_timers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A turn held up (here by the test itself) shows in the figure, read while it lasts.

    Timers due meanwhile fire late by at least as long; one WARNING is logged
    for two slow turns (rate-limited).
    """
    monkeypatch.setattr(reactor_module, "LAG_WARNING", 0.05)
    monkeypatch.setattr(reactor, "_last_warning", None)  # no earlier warning holds this one back
    caplog.set_level(logging.WARNING, logger="syncws")
    fired = threading.Event()

    def hold(entered: threading.Event, release: threading.Event) -> None:
        entered.set()
        assert release.wait(WAIT)

    for _ in range(2):
        entered, release = threading.Event(), threading.Event()
        reactor.call_soon(lambda e=entered, r=release: hold(e, r))
        try:
            assert entered.wait(WAIT)
            reactor.call_later(0, fired.set)
            due = time.monotonic()
            # Read under load, from another thread, while the turn lasts; hold
            # the turn until the timer too is 50 ms overdue.
            wait_until(
                lambda due=due: (
                    syncws.background_stats().lag >= 0.05 and time.monotonic() - due >= 0.05
                )
            )
        finally:
            release.set()
        assert fired.wait(WAIT)
        stats = syncws.background_stats()
        assert stats.timer_lag >= 0.05
        assert stats.peak_lag >= 0.05
        assert stats.last_turn >= 0 and stats.turns >= 1
    warnings = [r for r in caplog.records if "background thread" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].levelno == logging.WARNING


def test_lag_figure_without_a_thread() -> None:
    stats = syncws.background_stats()
    assert stats.lag >= 0 and stats.peak_lag >= 0
    assert "lag" in repr(stats)


# -- 17.3: send(iterable, timeout=) ------------------------------------------------------------


@pytest.mark.timeout(60)
def test_fragmented_send_to_a_peer_that_never_reads_times_out() -> None:
    """The timeout bounds the whole message; a half-sent message ends the connection.

    A message can't be taken back once its first frame left, and a close
    frame would wait behind bytes the peer doesn't read: TCP is closed, and
    the error and ``close_code`` say so (1006, no close frame sent), instead
    of claiming a 1011 that never reached the peer. Another sender waiting
    meanwhile gets its own timeout.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def flood(connection: ServerConnection) -> None:
        try:
            pieces = (b"x" * 1_000_000 for _ in range(20))
            others: list[BaseException] = []

            def other_sender() -> None:
                try:
                    connection.send("waiting behind", timeout=0.5)
                except (TimeoutError, ConnectionClosed) as exc:
                    others.append(exc)

            other = threading.Thread(target=other_sender)
            try:
                connection.send(pieces, timeout=0.5)
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                other.start()
                other.join(WAIT)
            outcome["other"] = others
            outcome["state"] = connection.state
            outcome["close_sent"] = connection.protocol.close_sent
            outcome["close_code"] = connection.close_code
        finally:
            done.set()

    with running_server(flood) as server:
        sock = handshake(server.port, rcvbuf=4096, path="/", timeout=WAIT).sock
        try:
            assert done.wait(WAIT), "send(iterable, timeout=0.5) is still blocked"
            assert isinstance(outcome["error"], TimeoutError)
            assert outcome["state"] is syncws.State.CLOSED
            assert outcome["close_sent"] is None
            assert outcome["close_code"] == 1006
            assert "without a close frame (close code 1006)" in str(outcome["error"])
            assert len(outcome["other"]) == 1
        finally:
            sock.close()


# -- 20.2: a ping right after recv() -----------------------------------------------------------


@pytest.fixture
def long_tick(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The reactor's tick made 60 s long; afterwards, its last wait (maybe that long) ends."""
    monkeypatch.setattr(reactor_module, "LATER_DELAY", 60.0)
    yield
    monkeypatch.undo()
    with reactor_module.reactor._lock:
        reactor_module.reactor._wakeup()  # it re-plans with the usual tick, and exits


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("long_tick")
def test_ping_after_recv_needs_no_tick() -> None:
    """A pong (only the background thread can read it) doesn't wait for the deferred hand-off.

    The tick is made 60 s long: a ping that waited for it would time out.
    """
    with (
        running_server(syncws.testing.echo) as server,
        syncws.connect(f"ws://127.0.0.1:{server.port}/") as client,
    ):
        for _ in range(3):
            client.send("hello")
            assert client.recv(WAIT) == "hello"
            assert client.ping().wait(WAIT)


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("long_tick")
def test_wait_closed_after_recv_needs_no_tick() -> None:

    def once(connection: ServerConnection) -> None:
        connection.send(connection.recv())
        assert connection.recv(WAIT) == "bye"
        connection.close()

    with (
        running_server(once) as server,
        syncws.connect(f"ws://127.0.0.1:{server.port}/") as client,
    ):
        client.send("hello")
        assert client.recv(WAIT) == "hello"
        client.send("bye")
        assert client.wait_closed(WAIT)


# -- 21.7: repr, recv_streaming ----------------------------------------------------------------


def test_repr_shows_id_state_and_address() -> None:
    with running_server(syncws.testing.echo) as server:
        with syncws.connect(f"ws://127.0.0.1:{server.port}/") as client:
            text = repr(client)
            assert text.startswith("<ClientConnection ")
            assert str(client.id)[:8] in text
            assert "OPEN" in text
            assert f"127.0.0.1:{server.port}" in text
        assert "CLOSED" in repr(client)


@pytest.mark.parametrize("pieces", [["a", "b", "c"], [b"a", b"b"], ["only"]])
def test_recv_streaming_yields_no_trailing_empty_fragment(pieces: list[str | bytes]) -> None:
    with connected_pair() as (client, server):
        client.send(iter(pieces))
        assert list(server.recv_streaming()) == pieces


def test_recv_streaming_keeps_an_empty_message() -> None:
    with connected_pair() as (client, server):
        client.send(iter([""]))
        client.send("")
        assert list(server.recv_streaming()) == [""]
        assert list(server.recv_streaming()) == [""]
