"""Faults at the edges (issue 17): shutdown from signals and handlers, EMFILE, reconnect storms.

The signal and descriptor cases run in a child process: a deadlock there is a
failed assertion with a bound, not a hung test run, and lowering the
descriptor limit can't disturb the other tests.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

import syncws
from syncws import ServerConnection
from syncws.threaded import server as server_module

from .helpers import WAIT, running_server


def run_child(script: str, timeout: float = 50.0) -> str:
    """Run ``script`` in a fresh interpreter; return its output, fail on a hang or an error."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the child process hung: {exc.stdout!r} {exc.stderr!r}")
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- 1. shutdown() from a signal handler -----------------------------------------------------------

SIGNAL_PRELUDE = """
    import signal, socket, threading
    import syncws
    from syncws import ServerConnection

    armed = threading.Event()

    class Tripwire(ServerConnection):
        # Raises SIGUSR1 where the server reads the connection's state (under
        # the server's lock, before the fix): the handler runs right there.
        @property
        def state(self):
            if armed.is_set():
                armed.clear()
                signal.raise_signal(signal.SIGUSR1)
            return ServerConnection.state.fget(self)

    def idle(connection):
        for _ in connection:
            pass
"""


@pytest.mark.timeout(60)
def test_shutdown_from_a_signal_handler_while_reading_connections() -> None:
    """A monitoring loop in the main thread reads server.connections when the signal lands."""
    out = run_child(
        SIGNAL_PRELUDE
        + """
    for i in range(100):
        server = syncws.serve(idle, "127.0.0.1", 0, create_connection=Tripwire)
        signal.signal(signal.SIGUSR1, lambda signum, frame: server.shutdown())
        serving = threading.Thread(target=server.serve_forever)
        serving.start()
        client = syncws.connect(f"ws://127.0.0.1:{server.port}/")
        while not server.connections:
            pass
        armed.set()
        while not server.shutting_down:
            len(server.connections)   # the signal lands in here, once
        serving.join(10)
        assert not serving.is_alive()
        client.close()
    print("ok", i + 1)
    """
    )
    assert out.split() == ["ok", "100"]


@pytest.mark.timeout(60)
def test_shutdown_from_a_signal_handler_while_accepting() -> None:
    """serve_forever() in the main thread; the signal lands inside the accept step."""
    out = run_child(
        SIGNAL_PRELUDE
        + """
    class Limit(int):
        # max_connections is compared in _accept (under the server's lock, before the fix).
        def __le__(self, other):
            signal.raise_signal(signal.SIGUSR1)
            return int(self) <= other

    for i in range(100):
        server = syncws.serve(idle, "127.0.0.1", 0, max_connections=Limit(10))
        signal.signal(signal.SIGUSR1, lambda signum, frame: server.shutdown())
        client = socket.create_connection(("127.0.0.1", server.port))
        server.serve_forever()   # returns once the handler has asked
        client.close()
    print("ok", i + 1)
    """
    )
    assert out.split() == ["ok", "100"]


# -- 2. shutdown() inside a handler ----------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("clients", [1, 3])
def test_shutdown_inside_a_handler_returns_once_the_others_are_done(
    monkeypatch: pytest.MonkeyPatch, clients: int
) -> None:
    # With the old bug shutdown() waited for the caller's own thread: the whole grace.
    monkeypatch.setattr(server_module, "SHUTDOWN_GRACE", 60.0)
    returned = threading.Event()
    others_done = threading.Event()
    ready = threading.Barrier(clients)

    def handler(connection: ServerConnection) -> None:
        ready.wait(WAIT)
        if connection.request is not None and connection.request.path == "/stop":
            assert connection.server is not None
            connection.server.shutdown()
            returned.set()
        else:
            for _ in connection:
                pass
            others_done.set()

    with running_server(handler) as server:
        others = [syncws.connect(f"ws://127.0.0.1:{server.port}/") for _ in range(clients - 1)]
        stopper = syncws.connect(f"ws://127.0.0.1:{server.port}/stop")
        assert returned.wait(WAIT), "shutdown() inside a handler didn't return"
        if others:
            assert others_done.is_set()  # it waited for the other handlers
        assert server.shutting_down
        for client in [*others, stopper]:
            client.close()


# -- 4. out of file descriptors --------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_out_of_descriptors_pauses_accepting_logs_once_and_resumes() -> None:
    out = run_child(
        """
    import logging, os, resource, socket, threading, time
    import syncws
    from syncws.threaded import server as server_module

    server_module.ACCEPT_PAUSE = 0.2
    errors = []
    first = threading.Event()

    class Count(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.ERROR:
                errors.append(record.getMessage())
                first.set()

    logging.getLogger("syncws").addHandler(Count())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    warm = threading.Event()

    def handler(connection):
        connection.send("hello")
        warm.set()
        for _ in connection:
            pass

    server = syncws.serve(handler, "127.0.0.1", 0)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    # A first connection, open until the end: the accept loop runs, and no
    # descriptor is freed behind the test's back while they are used up.
    warmup = syncws.connect(f"ws://127.0.0.1:{server.port}/")
    assert warm.wait(10) and warmup.recv(10) == "hello"
    client = socket.socket()
    spare = os.open(os.devnull, os.O_RDONLY)
    filler = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        while True:   # use up every descriptor
            try:
                filler.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        client.connect(("127.0.0.1", server.port))   # queued by the kernel
        assert first.wait(10)
        # Before the fix: one record per spin, tens of thousands in this window.
        window = time.monotonic() + 1.0
        while time.monotonic() < window:
            time.sleep(0.05)
        logged = len(errors)
    finally:
        for fd in filler:
            os.close(fd)
        os.close(spare)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # Accepting resumes: the queued client gets its handshake answered.
    client.settimeout(10)
    client.sendall(
        b"GET / HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n"
    )
    answer = client.recv(4096)
    client.close()
    warmup.close()
    server.shutdown()
    serving.join(10)
    print(logged, answer.split(b"\\r\\n")[0].decode())
    """
    )
    logged, status = out.split(maxsplit=1)
    assert 1 <= int(logged) <= 8, out  # one per pause (0.2 s) at most
    assert status.strip() == "HTTP/1.1 101 Switching Protocols"


# -- 5. reconnecting to a server that accepts and closes at once -----------------------------------


def close_at_once(connection: ServerConnection) -> None:
    """The handler returns at once: every connection is closed right after opening."""


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.timeout(30)
def test_reconnect_backs_off_from_a_server_that_closes_at_once() -> None:
    clock = FakeClock()
    backoff = syncws.Backoff(0.001, 2.0, 10.0, jitter=0.0, reset_after=5.0, clock=clock)
    attempts = []
    with running_server(close_at_once) as server:
        for turn, connection in enumerate(reconnect_to(server, backoff)):
            with pytest.raises(syncws.ConnectionClosed):
                connection.recv(WAIT)
            attempts.append(backoff.attempts)
            if turn == 2:
                clock.now += 5.0  # this one lived reset_after: the delays start over
            if turn == 5:
                break
    # Delays counted before each turn: growing, started over after turn 2 only.
    # Before the fix: [0, 1, 1, 1, 1, 1], reset at each handshake.
    assert attempts == [0, 1, 2, 1, 2, 3]


def reconnect_to(server: syncws.Server, backoff: syncws.Backoff) -> syncws.reconnect:
    return syncws.reconnect(f"ws://127.0.0.1:{server.port}/", backoff=backoff)


@pytest.mark.timeout(30)
def test_websocketapp_backs_off_from_a_server_that_closes_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[int] = []
    original = syncws.Backoff.next_delay

    def next_delay(self: syncws.Backoff) -> float:
        delay = original(self)
        attempts.append(self.attempts)
        if len(attempts) == 5:
            app.close()
        return delay

    monkeypatch.setattr(syncws.Backoff, "next_delay", next_delay)
    with running_server(close_at_once) as server:
        app = syncws.WebSocketApp(f"ws://127.0.0.1:{server.port}/")
        app.run_forever(reconnect=0.001)
    assert attempts == [1, 2, 3, 4, 5]  # before: [1, 1, 1, 1, 1], reset at each connection
