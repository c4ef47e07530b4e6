"""Close callbacks queued before the interpreter exits run (issue 31 item 2), within a bound."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading

import pytest

from syncws.threaded.runtime import worker as worker_module

from .helpers import WAIT, echo, running_server

# Ten connections, each with a close callback doing some work (about 10 ms of
# hashing), all closed at once just before the script ends.
TEN_CALLBACKS = """
import hashlib, sys
import syncws

def callback(number):
    def run(connection):
        digest = b"x"
        for _ in range(20_000):
            digest = hashlib.sha256(digest).digest()
        print(f"callback {number} ran", flush=True)
    return run

connections = [syncws.connect(f"ws://127.0.0.1:{sys.argv[1]}/") for _ in range(10)]
for number, connection in enumerate(connections):
    connection.add_close_callback(callback(number))
for connection in connections:
    connection.close()
"""

# A callback that never returns, then one queued behind it.
BLOCKING_CALLBACK = """
import sys, threading
import syncws
from syncws.threaded.runtime import worker

worker.EXIT_TIMEOUT = 0.5
connection = syncws.connect(f"ws://127.0.0.1:{sys.argv[1]}/")
connection.add_close_callback(lambda connection: threading.Event().wait())
connection.add_close_callback(lambda connection: print("never", flush=True))
connection.close()
print("script ended", flush=True)
"""


def run_script(script: str, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, str(port)],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        check=False,
    )


def test_every_callback_queued_before_exit_runs() -> None:
    with running_server(echo) as server:
        result = run_script(TEN_CALLBACKS, server.port)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == sorted(f"callback {n} ran" for n in range(10))


def test_a_blocking_callback_does_not_hang_the_exit() -> None:
    with running_server(echo) as server:
        result = run_script(BLOCKING_CALLBACK, server.port)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "script ended\n"
    assert "close callbacks still queued or running" in result.stderr
    assert "EXIT_TIMEOUT" in result.stderr


def test_the_exit_handler_waits_then_gives_up(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """In process: the handler returns once the queue is empty, or after EXIT_TIMEOUT."""
    monkeypatch.setattr(worker_module, "EXIT_TIMEOUT", 0.2)
    callbacks = worker_module.Worker("test-callbacks")
    callbacks._at_exit()  # nothing queued: returns at once, quietly
    release = threading.Event()
    ran: list[str] = []
    callbacks.call_soon(lambda: release.wait(WAIT))
    callbacks.call_soon(lambda: ran.append("second"))
    with caplog.at_level(logging.WARNING, logger="syncws"):
        callbacks._at_exit()
    assert "one running, 1 dropped" in caplog.text
    assert ran == []
    release.set()
    assert callbacks.wait_idle(WAIT)
    assert ran == ["second"]
