"""The chat example as two server processes behind one Redis, with clients on each."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import syncws

from ..threaded.helpers import WAIT
from .conftest import RedisServer

pytestmark = pytest.mark.timeout(60)

CHAT = Path(__file__).parent.parent.parent / "examples" / "chat_server.py"


@pytest.fixture
def two_servers(redis_server: RedisServer) -> Iterator[list[str]]:
    """Start two chat processes sharing Redis; yield their URIs; stop them with SIGTERM."""
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(CHAT),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--redis",
                redis_server.url,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        uris = []
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("listening on ws://"), line
            uris.append(line.split()[-1])
        yield uris
        for process in processes:
            process.send_signal(signal.SIGTERM)
            stdout, _ = process.communicate(timeout=WAIT)
            assert process.returncode == 0
            assert "server stopped" in stdout
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_rooms_span_processes(two_servers: list[str]) -> None:
    first, second = two_servers
    # A server joins the room (in Redis too) before it reads the first message,
    # so a client's first message coming back proves its process is subscribed.
    with syncws.connect(first + "kitchen") as alice:
        alice.send("alice here")
        assert alice.recv(timeout=WAIT) == "alice here"
        with syncws.connect(second + "kitchen") as bob:
            bob.send("bob here")
            assert bob.recv(timeout=WAIT) == "bob here"
            assert alice.recv(timeout=WAIT) == "bob here"  # across processes
            with syncws.connect(second + "garden") as carol:
                carol.send("carol here")
                assert carol.recv(timeout=WAIT) == "carol here"
                alice.send("dinner is ready")
                assert alice.recv(timeout=WAIT) == "dinner is ready"
                assert bob.recv(timeout=WAIT) == "dinner is ready"
                # Bob's process delivered it already: carol, in another room, didn't get it.
                carol.send("bye")
                assert carol.recv(timeout=WAIT) == "bye"
