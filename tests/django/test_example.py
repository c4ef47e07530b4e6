"""examples/django for real: gunicorn (gthread, sync) with two workers and Redis, runserver.

The servers run as subprocesses on free loopback ports; their whole output is
kept and must hold no ERROR and no traceback.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
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

import gunicorn
import pytest

from syncws import ClientConnection, ConnectionClosed, connect
from syncws.testing import expect_refused

from ..pubsub.conftest import started_redis
from ..threaded.helpers import WAIT

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "examples" / "django"
# runserver says it is ready: "Starting development server at" (Django 6: "Starting WSGI
# development server at").
RUNSERVER_READY = r"Starting (?:\w+ )?development server at"


class ServerProcess:
    """A server subprocess (a session of its own) whose output a thread collects."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path = EXAMPLE) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=os.environ | env | {"PYTHONPATH": f"{cwd}{os.pathsep}{ROOT}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # runserver's reloader and its child get signals together
        )
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for(self, pattern: str, count: int = 1) -> re.Match[str]:
        """Wait until ``count`` lines of output match ``pattern``; return the last match."""
        regex = re.compile(pattern)

        def found() -> list[re.Match[str]]:
            return [m for m in map(regex.search, self.lines) if m]

        with self._changed:
            self._changed.wait_for(lambda: len(found()) >= count or self._ended, WAIT * 3)
            matches = found()
        assert len(matches) >= count, f"no line like {pattern!r} (x{count}) in:\n{self.output}"
        return matches[-1]

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
        try:
            code = self.process.wait(WAIT * 3)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait(WAIT)
        self._reader.join(WAIT)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code

    def assert_clean_log(self) -> None:
        log = self.output
        assert "ERROR" not in log, log
        assert "Traceback" not in log, log


def http_status(url: str, cookie: str) -> int:
    request = urllib.request.Request(url, headers={"Cookie": cookie})
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def login(base: str, name: str) -> str:
    """Pick a nickname through the example's form; return the Cookie header to send."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base}/nickname/", data=f"name={name}".encode(), timeout=WAIT):
        pass
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


def announce(base: str, room: str, text: str) -> str:
    request = urllib.request.Request(f"{base}/announce/{room}/", data=text.encode())
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        return str(response.read().decode())


@contextlib.contextmanager
def clients_closed() -> Iterator[list[ClientConnection]]:
    clients: list[ClientConnection] = []
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def open_client(uri: str, base: str, cookie: str) -> ClientConnection:
    """A browser's WebSocket from the example's page: its origin, its session cookie."""
    return connect(uri, origin=base, additional_headers={"Cookie": cookie}, open_timeout=WAIT)


def gunicorn_command(*options: str) -> list[str]:
    executable = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert executable, "gunicorn is in the test extra"
    command = [executable, "--bind", "127.0.0.1:0", *options]
    if int(gunicorn.__version__.split(".")[0]) >= 27:
        command.append("--no-control-socket")  # else a socket of its own in ~/.gunicorn
    return [*command, "chat.wsgi"]


@pytest.mark.parametrize(
    "worker", [("-k", "gthread", "--threads", "8"), ("-k", "sync")], ids=["gthread", "sync"]
)
def test_chat_under_gunicorn_with_two_workers_and_redis(worker: tuple[str, ...]) -> None:
    with started_redis() as redis_server:
        server = ServerProcess(
            gunicorn_command(*worker, "--workers", "2"),
            {
                "DJANGO_SETTINGS_MODULE": "tests.django.example_settings",
                "SYNCWS_REDIS_URL": redis_server.url,
            },
        )
        try:
            port = server.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)").group(1)
            base = f"http://127.0.0.1:{port}"
            uri = f"ws://127.0.0.1:{port}/ws/lobby/"
            cookie = login(base, "alice")
            # No nickname: refused before the upgrade; a foreign page: refused too.
            expect_refused(uri, 403, origin=base)
            expect_refused(
                uri, 403, origin="http://evil.example", additional_headers={"Cookie": cookie}
            )
            with clients_closed() as clients:
                workers: dict[str, ClientConnection] = {}
                # Connections go to either worker: open some until both have one.
                for _ in range(40):
                    client = open_client(uri, base, cookie)
                    clients.append(client)
                    assert client.recv(timeout=WAIT) == "welcome to lobby, alice"
                    assert client.response is not None
                    workers.setdefault(client.response.headers["X-Worker"], client)
                    if len(workers) == 2:
                        break
                assert len(workers) == 2, "every WebSocket went to the same worker"
                first = next(iter(workers.values()))
                first.send("hi")  # through Redis to the other worker's clients
                for client in clients:
                    assert client.recv(timeout=WAIT) == "alice: hi"
                assert "sent to" in announce(base, "lobby", "news")
                for client in clients:
                    assert client.recv(timeout=WAIT) == "news"
                with urllib.request.urlopen(base + "/", timeout=WAIT) as page:
                    assert page.status == 200
                # A restart (SIGTERM) closes the open WebSockets with 1001.
                assert server.stop() == 0
                for client in clients:
                    with pytest.raises(ConnectionClosed) as closed:
                        client.recv(timeout=WAIT)
                    assert closed.value.code == 1001
        finally:
            server.stop()
        server.assert_clean_log()


def reserved_port() -> int:
    """A loopback port that no one holds and the kernel won't hand out for a while.

    Listened on, connected to and closed: the port sits in TIME_WAIT, which
    keeps it from being picked as anyone's ephemeral port, while a server
    that sets SO_REUSEADDR (runserver does) may bind it.
    """
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = int(listener.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT):
            accepted, _ = listener.accept()
            accepted.close()
    return port


def connect_when_up(server: ServerProcess, uri: str, base: str, cookie: str) -> ClientConnection:
    """Connect once the server listens: runserver says it starts a moment before it binds."""
    for _ in range(200):
        try:
            return open_client(uri, base, cookie)
        except ConnectionRefusedError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(0.05)  # paces the attempts; fails fast if it died
            assert server.process.poll() is None, server.output
    raise AssertionError("runserver never accepted a connection:\n" + server.output)


def test_chat_under_runserver_with_its_autoreloader(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(EXAMPLE, site, ignore=shutil.ignore_patterns("__pycache__"))
    port = reserved_port()
    base = f"http://127.0.0.1:{port}"
    uri = f"ws://127.0.0.1:{port}/ws/lobby/"
    server = ServerProcess(
        [sys.executable, "-u", "manage.py", "runserver", f"127.0.0.1:{port}"],
        {"DJANGO_SETTINGS_MODULE": "chat.settings"},
        cwd=site,
    )
    try:
        server.wait_for(RUNSERVER_READY)
        cookie = login_when_up(server, base, "alice")
        expect_refused(uri, 403, origin=base)  # no nickname
        # Not an upgrade: an HTTP answer (WSGI forbids its Upgrade header: no 500 for that).
        assert http_status(base + "/ws/lobby/", cookie) == 426
        expect_refused(
            uri, 403, origin="http://evil.example", additional_headers={"Cookie": cookie}
        )
        with open_client(uri, base, cookie) as first:
            assert first.recv(timeout=WAIT) == "welcome to lobby, alice"
            first.send("hi")
            assert first.recv(timeout=WAIT) == "alice: hi"
            with urllib.request.urlopen(base + "/", timeout=WAIT) as page:  # while it's open
                assert page.status == 200
            # Edit the code: the reloader's child exits, closing WebSockets with 1001.
            assert edit_until_closed(site / "chat" / "views.py", first) == 1001
        server.wait_for(RUNSERVER_READY, count=2)
        cookie = login_when_up(server, base, "bob")
        with connect_when_up(server, uri, base, cookie) as second:
            assert second.recv(timeout=WAIT) == "welcome to lobby, bob"
    finally:
        server.stop(signal.SIGINT)  # Ctrl-C
    server.assert_clean_log()
    assert '"GET /ws/lobby/ HTTP/1.1" 101' in server.output


def edit_until_closed(source: Path, client: ClientConnection) -> int | None:
    """Change ``source``'s mtime until the reloader restarts; return the client's close code.

    StatReloader compares mtimes once a second with those it saw the second
    before: a change made before its first look goes unnoticed, so the edit
    is made again, each time later, until the WebSocket closes.
    """
    mtime = source.stat().st_mtime
    for attempt in range(1, 11):
        os.utime(source, (mtime + attempt, mtime + attempt))
        try:
            message = client.recv(timeout=2)
        except TimeoutError:
            continue
        except ConnectionClosed as closed:
            return closed.code
        raise AssertionError(f"unexpected message {message!r}")
    raise AssertionError("runserver's reloader never restarted:\n")


def login_when_up(server: ServerProcess, base: str, name: str) -> str:
    for _ in range(200):
        try:
            return login(base, name)
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, ConnectionRefusedError):
                raise
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(0.05)
            assert server.process.poll() is None, server.output
    raise AssertionError("runserver never answered:\n" + server.output)


def test_the_projects_own_tests_pass_as_a_reader_runs_them() -> None:
    # examples/django/test_chat.py, outside our configuration: syncws's pytest plugin
    # loads through its entry point.
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull),
            *("--rootdir", str(EXAMPLE), str(EXAMPLE / "test_chat.py")),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTEST_ADDOPTS", "DJANGO_SETTINGS_MODULE")
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b4 passed in ", result.stdout), result.stdout
