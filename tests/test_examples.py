"""Every script in examples/ runs: the docs can't rot.

Scripts that run to completion run as they are; servers are started, used by
a client, and stopped with SIGTERM; clients run against an echo server.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

import syncws

from .threaded.helpers import WAIT, running_server

EXAMPLES_DIR = Path(__file__).parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))

#: Examples that run to completion with no arguments.
STANDALONE = {"hello.py", "sansio_demo.py", "send_to_user.py"}
#: Servers: print "listening on ws://..." then serve until SIGTERM.
SERVERS = {"echo_server.py", "chat_server.py", "flask_app.py"}
#: Clients: take the URI of an echo server as their first argument.
CLIENTS = {"echo_client.py", "reconnecting_client.py"}
#: Test suites of their own, run with pytest as a reader would.
TEST_SUITES = {"test_greeting_client.py"}


def test_every_example_has_a_smoke_test() -> None:
    names = {path.name for path in EXAMPLES}
    assert names == STANDALONE | SERVERS | CLIENTS | TEST_SUITES


@pytest.mark.parametrize("name", sorted(TEST_SUITES))
def test_example_test_suite_passes(name: str) -> None:
    # Outside our own configuration: the plugin loads through its entry point.
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "/dev/null"),
            *("--rootdir", str(EXAMPLES_DIR), str(EXAMPLES_DIR / name)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout


@pytest.mark.parametrize("name", sorted(STANDALONE))
def test_standalone_example_runs(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES_DIR / name)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_server_example_serves_and_stops_on_sigterm(name: str) -> None:
    with subprocess.Popen(
        [sys.executable, str(EXAMPLES_DIR / name), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            first_line = process.stdout.readline()
            assert first_line.startswith("listening on ws://"), first_line
            uri = first_line.split()[-1]
            with syncws.connect(uri) as client:
                client.send("ping?")
                assert client.recv(WAIT) == "ping?"
                process.send_signal(signal.SIGTERM)
                with pytest.raises(syncws.ConnectionClosed) as closed:
                    client.recv(WAIT)
                assert closed.value.code == 1001
            stdout, stderr = process.communicate(timeout=WAIT)
        finally:
            process.kill()
    assert process.returncode == 0, stderr
    assert "server stopped" in stdout


def _echo(connection: syncws.ServerConnection) -> None:
    for message in connection:
        connection.send(message)


@pytest.mark.parametrize("name", sorted(CLIENTS))
def test_client_example_talks_to_a_server(name: str) -> None:
    with running_server(_echo) as server:
        result = subprocess.run(
            [sys.executable, str(EXAMPLES_DIR / name), f"ws://127.0.0.1:{server.port}/"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert "received" in result.stdout
