"""Faults at the edges (issue 17): shutdown from signals and handlers, EMFILE, reconnect storms.

The signal and descriptor cases run in a child process: a deadlock there is a
failed assertion with a bound, not a hung test run, and lowering the
descriptor limit can't disturb the other tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading

import pytest

import syncws
from syncws import ServerConnection
from syncws.threaded import server as server_module

from .helpers import WAIT, echo, running_server


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


# -- 11. options other libraries accept ------------------------------------------------------------


@pytest.mark.timeout(30)
def test_ping_interval_zero_means_off() -> None:
    """websocket-client's meaning; before, it armed a 0 s timer: a ping flood at 100% CPU."""
    opened: list[ServerConnection] = []
    inside = threading.Event()

    def handler(connection: ServerConnection) -> None:
        opened.append(connection)
        inside.set()
        for _ in connection:
            pass

    with (
        running_server(handler, ping_interval=0) as server,
        syncws.connect(f"ws://127.0.0.1:{server.port}/", ping_interval=0) as client,
    ):
        assert inside.wait(WAIT)
        for connection in (client, opened[0]):
            assert connection.ping_interval is None
            assert connection._pings.keepalive_timer is None
        client.send("still fine")


@pytest.mark.timeout(30)
def test_max_queue_none_means_no_limit() -> None:
    """websockets' meaning; before, connect() failed with "'<' not supported"."""
    sent = threading.Event()

    def handler(connection: ServerConnection) -> None:
        for i in range(100):
            connection.send(str(i))
        sent.set()
        connection.recv()

    with (
        running_server(handler, max_queue=None) as server,
        syncws.connect(f"ws://127.0.0.1:{server.port}/", max_queue=None) as client,
    ):
        assert sent.wait(WAIT)
        assert [client.recv(WAIT) for _ in range(100)] == [str(i) for i in range(100)]
        client.send("done")


BAD_OPTIONS = [
    ({"max_size": (2**20, 2**16, 1)}, TypeError, "max_size is a number or (message, frame)"),
    ({"max_size": 0}, ValueError, "max_size must be at least 1"),
    ({"max_queue": 0}, ValueError, "max_queue must be at least 1"),
    ({"max_queue": 2.5}, TypeError, "max_queue is an int"),
    ({"write_limit": -1}, ValueError, "write_limit"),
    ({"open_timeout": "10"}, TypeError, "open_timeout is a number of seconds"),
    ({"close_timeout": -1}, ValueError, "close_timeout must be >= 0"),
    ({"ping_interval": True}, TypeError, "ping_interval is a number of seconds"),
    ({"ping_timeout": 0}, ValueError, "pass None"),
    ({"ping_timeout": float("nan")}, ValueError, "ping_timeout"),
    ({"subprotocols": "chat"}, TypeError, "subprotocols=['chat']"),
    ({"compression": "gzip"}, ValueError, "compression must be 'deflate' or None"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_OPTIONS)
def test_serve_refuses_bad_options_at_the_call(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        syncws.serve(close_at_once, "127.0.0.1", 0, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"origins": "https://example.com"}, TypeError, "origins is a list of origins"),
        ({"max_connections": 0}, ValueError, "max_connections must be at least 1"),
        ({"server_header": b"x"}, TypeError, "server_header is a str"),
        ({"process_request": "yes"}, TypeError, "process_request is a function"),
        ({"ssl": True}, TypeError, "ssl is an ssl.SSLContext"),
    ],
)
def test_serve_refuses_bad_server_options(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        syncws.serve(close_at_once, "127.0.0.1", 0, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        *BAD_OPTIONS,
        ({"max_redirects": -1}, ValueError, "max_redirects must be at least 0"),
        ({"proxy": 3128}, TypeError, "'http://proxy:3128'"),
        ({"origin": 1}, TypeError, "origin is a str"),
        ({"ssl": "yes"}, TypeError, "ssl is an ssl.SSLContext"),
    ],
)
def test_connect_refuses_bad_options_at_the_call(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    # Port 9 (discard): refused at once if validation ever let the call through.
    with pytest.raises(error, match=re.escape(message)):
        syncws.connect("ws://127.0.0.1:9/", **kwargs)  # type: ignore[arg-type]


@pytest.mark.timeout(30)
def test_shutdown_refuses_codes_that_cant_be_sent() -> None:
    """shutdown(1006) and shutdown(False) hung; now they are refused, and shutdown() works."""
    inside = threading.Event()

    def handler(connection: ServerConnection) -> None:
        inside.set()
        for _ in connection:
            pass

    with running_server(handler) as server:
        client = syncws.connect(f"ws://127.0.0.1:{server.port}/")
        assert inside.wait(WAIT)
        with pytest.raises(ValueError, match="1006 can't be sent in a close frame"):
            server.shutdown(1006)
        with pytest.raises(TypeError, match="code is a close code"):
            server.shutdown(False)
        with pytest.raises(TypeError, match="reason is a str"):
            server.shutdown(1001, b"bye")  # type: ignore[arg-type]
        assert not server.shutting_down
        server.shutdown(1012, "restart")
        with pytest.raises(syncws.ConnectionClosed):
            client.recv(WAIT)
        assert client.close_code == 1012
        client.close()


def test_accept_errors_pause_then_resume_in_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The EMFILE path, in this process (the subprocess test above checks real EMFILE)."""
    import errno  # noqa: PLC0415
    import logging  # noqa: PLC0415
    import socket  # noqa: PLC0415

    monkeypatch.setattr(server_module, "ACCEPT_PAUSE", 0.05)
    real_accept = socket.socket.accept
    failures = [3]

    def accept(self: socket.socket) -> tuple[socket.socket, object]:
        if failures[0] > 0:
            failures[0] -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return real_accept(self)

    caplog.set_level(logging.INFO, logger="syncws")
    with running_server(echo) as server:
        monkeypatch.setattr(socket.socket, "accept", accept)
        # The client waits in the backlog through the pauses, then gets its 101.
        with syncws.connect(f"ws://127.0.0.1:{server.port}/") as client:
            client.send("through")
            assert client.recv(WAIT) == "through"
        monkeypatch.setattr(socket.socket, "accept", real_accept)
    errors = [r for r in caplog.records if "accept() failed" in r.getMessage()]
    assert 1 <= len(errors) <= 3  # one per pause, not a busy loop
    assert any("accepting connections again" in r.getMessage() for r in caplog.records)
