"""examples/django for real: gunicorn gthread with two workers and Redis, and runserver.

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
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import gunicorn
import pytest

from syncws import ClientConnection, connect
from syncws.testing import expect_refused

from ..pubsub.conftest import started_redis
from ..threaded.helpers import WAIT

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "examples" / "django"


class ServerProcess:
    """A server subprocess whose output a thread collects; ``ready`` once a line matches."""

    def __init__(self, command: list[str], ready: str, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.ready_line = ""
        self._ready_pattern = re.compile(ready)
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            command,
            cwd=EXAMPLE,
            env=os.environ | env | {"PYTHONPATH": f"{EXAMPLE}{os.pathsep}{ROOT}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if not self._ready.is_set() and self._ready_pattern.search(line):
                self.ready_line = line
                self._ready.set()
        self._ready.set()  # the process ended: wait_ready() reports it

    def wait_ready(self) -> str:
        assert self._ready.wait(WAIT * 3), "the server didn't start in time"
        assert self.ready_line, "the server exited:\n" + self.output
        return self.ready_line

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(WAIT * 3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(WAIT)
        self._reader.join(WAIT)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code

    def assert_clean_log(self) -> None:
        log = self.output
        assert "ERROR" not in log, log
        assert "Traceback" not in log, log


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


def test_chat_under_gunicorn_with_two_workers_and_redis() -> None:
    with started_redis() as redis_server:
        server = ServerProcess(
            gunicorn_command("-k", "gthread", "--threads", "8", "--workers", "2"),
            r"Listening at: http://127\.0\.0\.1:(\d+)",
            {
                "DJANGO_SETTINGS_MODULE": "tests.django.example_settings",
                "SYNCWS_REDIS_URL": redis_server.url,
            },
        )
        try:
            line = server.wait_ready()
            port = re.search(r"127\.0\.0\.1:(\d+)", line).group(1)  # type: ignore[union-attr]
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
        finally:
            server.stop()
        server.assert_clean_log()
