"""A real redis-server, started and stopped by the tests, on a unix socket of its own.

A unix socket in a fresh private folder: no TCP port is picked ahead, closed
and bound later (another process could take it meanwhile, above all when a test
stops Redis and starts it again "on the same port").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    """One redis-server process that a test can stop and start again at the same address."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "redis.sock"
        self.url = f"unix://{self.path}?db=0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER is not None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a killed server
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                *("--port", "0"),  # no TCP at all
                *("--unixsocket", str(self.path), "--unixsocketperm", "700"),
                *("--save", "", "--appendonly", "no", "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
        )
        # Ready once it accepts a connection; bounded, and a dead process fails at once.
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.settimeout(1)
                    probe.connect(str(self.path))
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server didn't start") from None
                # Not there yet: wait on the process, which also paces the retries.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@contextlib.contextmanager
def started_redis() -> Iterator[RedisServer]:
    """A running redis-server in a folder of its own; skipped (failed in CI) if missing."""
    if REDIS_SERVER is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: .ci/run installs it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    # A short path: a unix socket's path has a limit of about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="syncws-redis-") as folder:
        server = RedisServer(Path(folder))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with started_redis() as server:
        yield server
