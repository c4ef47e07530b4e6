"""Every WSGI server, started for real: 8 WebSockets at once and a plain GET while they're open.

Each server runs tests.wsgi.apps.flask_app in a subprocess with fewer
workers than WebSockets (one thread, two threads, one process, green
threads), so the GET is answered only if the WebSockets freed their workers.
Its log must be clean: no ERROR, no traceback. Then the server stops on
SIGTERM and the WebSocket still open gets 1001.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import syncws

from ..threaded.helpers import WAIT
from .test_wsgi import ROOT

pytestmark = pytest.mark.timeout(90)

BIN = Path(sys.executable).parent
IN_CI = bool(os.environ.get("CI"))


def executable(name: str) -> str:
    found = shutil.which(name, path=str(BIN))
    if found is None:
        if IN_CI:
            raise AssertionError(f"{name} is installed by .ci/run (the wsgi-servers extra)")
        pytest.skip(f"{name} isn't installed")
    return found


def importable(name: str) -> None:
    """Skip (fail in CI) unless ``name`` is installed; don't import it here."""
    if importlib.util.find_spec(name) is None:
        if IN_CI:
            raise AssertionError(f"{name} is installed by .ci/run (the wsgi-servers extra)")
        pytest.skip(f"{name} isn't installed")


#: How a server is asked to let its workers go gracefully (uWSGI 2.0: its graceful
#: reload; its SIGTERM is a brutal reload), and to stop (uWSGI: SIGINT, brutal).
GRACEFUL = {"uwsgi": signal.SIGHUP}
STOP = {"uwsgi": signal.SIGINT}


def serve_command(server: str) -> tuple[list[str], str]:
    """The command that serves flask_app with ``server``, and the line that says it's ready."""
    app = "tests.wsgi.apps:flask_app"
    if server.startswith("gunicorn"):
        worker = {
            "gunicorn-sync": ["-k", "sync"],
            "gunicorn-gthread": ["-k", "gthread", "--threads", "2"],
            "gunicorn-gevent": ["-k", "gevent"],
        }[server]
        command = [executable("gunicorn"), "--bind", "127.0.0.1:0", *worker]
        return [*command, "--access-logfile", "-", app], "Listening at:"
    if server == "uwsgi":
        command = [executable("uwsgi"), "--http-socket", "127.0.0.1:0", "--master"]
        command += ["--enable-threads", "--threads", "2", "--module", app]
        return command, "bound to TCP address"
    if server in {"gevent", "eventlet"}:
        importable(server)
    return [sys.executable, "-W", "ignore", "-m", "tests.wsgi.serve", "flask_app", server], (
        "listening on"
    )


class Server:
    """A server process, its port, and everything it printed."""

    def __init__(
        self, command: list[str], ready: str, name: str = "", env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.signalled = False
        if any(green in part for part in command for green in ("gevent", "eventlet")):
            # Monkey-patching picks the poller (eventlet takes select.poll away): the
            # one .ci/portable.sh forces for the in-process tests doesn't apply there.
            env = {k: v for k, v in (env or os.environ).items() if k != "SYNCWS_POLLER"}
        # A session of its own: SIGTERM goes to the whole group, as Ctrl-C would
        # (flask run's reloader runs the server in a child process).
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env=env,
        )
        assert self.process.stdout is not None
        self.lines: list[str] = []
        try:
            self.port = self._wait_ready(ready)
        except BaseException:  # a timeout of the test too: no server left behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(WAIT)
            self.process.stdout.close()
            raise
        # Keep reading: a full pipe would stall the server.
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _wait_ready(self, ready: str) -> int:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if ready in line:
                return int(re.findall(r"(?::|on )(\d+)", line)[-1])
        raise AssertionError(f"{self.process.args} didn't start:\n{''.join(self.lines)}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, count: int = 1) -> None:
        """Wait until ``text`` was printed ``count`` times."""
        with self._changed:
            printed = self._changed.wait_for(
                lambda: sum(text in line for line in self.lines) >= count, WAIT
            )
        assert printed, "".join(self.lines)

    def signal(self, number: int, *, stopping: bool = True) -> None:
        """Send a signal to the server's process group (``stopping``: one that stops it)."""
        self.signalled = self.signalled or stopping
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, number)

    def stop(self) -> str:
        """Stop (SIGTERM; uWSGI: SIGINT), wait for the exit; return the whole output.

        A server already told to stop gets time to exit first: a second signal
        would land in its exit (in syncws's atexit hook, say).
        """
        if self.signalled:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(WAIT)
        if self.process.poll() is None:
            self.signal(STOP.get(self.name, signal.SIGTERM))
        try:
            self.process.wait(WAIT)
        finally:
            # Whatever is left of the group (a reloader's child) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(WAIT)
            self._reader.join(WAIT)
            assert not self._reader.is_alive(), "the server's output is still open"
            assert self.process.stdout is not None
            self.process.stdout.close()
        return "".join(self.lines)


@contextlib.contextmanager
def running(server: str) -> Iterator[Server]:
    command, ready = serve_command(server)
    started = Server(command, ready, server)
    try:
        yield started
    finally:
        started.stop()


def get(port: int, path: str = "/") -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=WAIT) as response:
        body: bytes = response.read()
        return body


SERVERS = [
    "werkzeug",
    "wsgiref",
    "gunicorn-sync",
    "gunicorn-gthread",
    "gevent",
    "eventlet",
    "gunicorn-gevent",
    "uwsgi",
]


@pytest.mark.parametrize("server", SERVERS)
def test_eight_websockets_and_a_get(server: str) -> None:
    with running(server) as started:
        base = f"ws://127.0.0.1:{started.port}"
        with contextlib.ExitStack() as stack:
            clients = [
                stack.enter_context(syncws.connect(f"{base}/echo", open_timeout=WAIT))
                for _ in range(8)
            ]
            for number, client in enumerate(clients):
                client.send(f"hello {number}")
            for number, client in enumerate(clients):
                assert client.recv(timeout=WAIT) == f"hello {number}"
            # Every WebSocket is open, with fewer workers than WebSockets.
            assert get(started.port) == b"hello from Flask\n"
            for number, client in enumerate(clients):
                client.send(f"again {number}")
                assert client.recv(timeout=WAIT) == f"again {number}"
        # The server's lifecycle governs: its exit closes a WebSocket with 1001.
        with syncws.connect(f"{base}/chat/lobby?name=ada", open_timeout=WAIT) as last:
            assert last.recv(timeout=WAIT) == "joined lobby as ada"
            started.signal(GRACEFUL.get(server, signal.SIGTERM), stopping=server not in GRACEFUL)
            with pytest.raises(syncws.ConnectionClosed) as caught:
                last.recv(timeout=WAIT)
            assert caught.value.code == 1001
        output = started.stop()
    assert "Traceback" not in output, output
    assert "ERROR" not in output, output
    assert "Broken pipe" not in output, output
    assert re.search(r"GET /echo.*\b101\b", output), output  # the access log's 101


def test_gunicorn_max_requests_restart_closes_with_1001() -> None:
    command = [executable("gunicorn"), "--bind", "127.0.0.1:0", "-k", "gthread"]
    command += ["--threads", "2", "--max-requests", "3", "tests.wsgi.apps:flask_app"]
    started = Server(command, "Listening at:")
    try:
        with syncws.connect(f"ws://127.0.0.1:{started.port}/echo", open_timeout=WAIT) as client:
            client.send("before")
            assert client.recv(timeout=WAIT) == "before"
            assert get(started.port) == b"hello from Flask\n"
            assert get(started.port) == b"hello from Flask\n"  # the 3rd request: a restart
            with pytest.raises(syncws.ConnectionClosed) as caught:
                client.recv(timeout=WAIT)
            assert caught.value.code == 1001
    finally:
        output = started.stop()
    assert "Autorestarting worker" in output
    assert "Traceback" not in output, output


def test_flask_run_debug_reload_closes_with_1001(tmp_path: Path) -> None:
    watched = tmp_path / "watched.txt"
    watched.write_text("one")
    command = [sys.executable, "-m", "flask", "--app", "tests.wsgi.apps:flask_app", "run"]
    command += ["--debug", "--port", "0"]
    command += ["--extra-files", str(watched)]
    started = Server(command, "Running on http://127.0.0.1:")
    try:
        with syncws.connect(f"ws://127.0.0.1:{started.port}/echo", open_timeout=WAIT) as client:
            client.send("before")
            assert client.recv(timeout=WAIT) == "before"
            watched.write_text("two, longer")  # a new mtime and size for the reloader
            with pytest.raises(syncws.ConnectionClosed) as caught:
                client.recv(timeout=WAIT)
            assert caught.value.code == 1001
        # The old server's process is gone once the new one starts.
        started.wait_for("Restarting with", 2)
    finally:
        output = started.stop()
    assert "Traceback" not in output, output


def test_waitress_is_refused_when_the_app_starts() -> None:
    command = [executable("waitress-serve"), "--listen=127.0.0.1:0", "tests.wsgi.apps:flask_app"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=WAIT * 3, check=False
    )
    assert result.returncode != 0
    assert "waitress (its I/O thread owns every socket" in result.stderr
    assert "gunicorn" in result.stderr


def test_waitress_serve_refuses_the_first_request() -> None:
    """``waitress.serve(app)`` from a script of one's own: the first request, even plain HTTP."""
    importable("waitress")
    script = (
        "import logging, waitress; from tests.wsgi.apps import flask_app; "
        "logging.basicConfig(level=logging.INFO); "
        "waitress.serve(flask_app, host='127.0.0.1', port=0, threads=1)"
    )
    started = Server([sys.executable, "-c", script], "Serving on http://127.0.0.1:")
    try:
        with pytest.raises(urllib.error.HTTPError) as caught:
            get(started.port)
        assert caught.value.code == 500
        caught.value.close()
        started.wait_for("UnsupportedServer: waitress (its I/O thread owns every socket")
    finally:
        started.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_flask_sock_green_examples_run_with_the_import_changed(library: str) -> None:
    importable(library)
    script = ROOT / "examples" / "flask_sock" / f"echo_{library}.py"
    assert "from syncws.flask import Sock" in script.read_text()
    # The examples listen where PORT says, as flask-sock's listen on 5000.
    environment = os.environ | {"PORT": str(free_port()), "PYTHONWARNINGS": "ignore"}
    started = Server([sys.executable, str(script)], "listening on", env=environment)
    try:
        assert b"new WebSocket" in get(started.port)
        with syncws.connect(f"ws://127.0.0.1:{started.port}/echo", open_timeout=WAIT) as client:
            client.send("hello")
            assert client.recv(timeout=WAIT) == "hello"
            client.send("close")  # the handler returns: flask-sock closes with 1000
            with pytest.raises(syncws.ConnectionClosedOK):
                client.recv(timeout=WAIT)
    finally:
        output = started.stop()
    assert "Traceback" not in output, output
