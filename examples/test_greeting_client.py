"""Testing your own WebSocket client with syncws.testing, in pytest and in unittest.

    python -m pytest examples/test_greeting_client.py

``fetch_greeting`` stands for the client code you want to test. The
``syncws_peer`` fixture (from the pytest plugin that comes with syncws) is a
server that the test scripts step by step.
"""

from __future__ import annotations

import threading
import unittest
from collections.abc import Callable

import syncws
from syncws.testing import ScriptedPeer, run_server


def fetch_greeting(uri: str, name: str) -> str:
    """The code under test: say hello, return the server's greeting, close politely."""
    with syncws.connect(uri, open_timeout=5) as connection:
        connection.send(f"hello, I am {name}")
        greeting = connection.recv(timeout=5)
    if not isinstance(greeting, str):
        raise TypeError("the server sent binary")
    return greeting


# -- pytest -----------------------------------------------------------------------------


def test_the_client_says_hello_and_returns_the_greeting(syncws_peer: ScriptedPeer) -> None:
    # The client blocks, so it runs in a thread while the test plays the server.
    result: list[str] = []
    client = _in_thread(lambda: result.append(fetch_greeting(syncws_peer.uri, "Ada")))
    syncws_peer.expect("hello, I am Ada")
    syncws_peer.send("welcome, Ada")
    syncws_peer.expect_close(code=1000)
    client.join(5)
    assert result == ["welcome, Ada"]


def test_the_client_refuses_binary(syncws_peer: ScriptedPeer) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fetch_greeting(syncws_peer.uri, "Ada")
        except TypeError as exc:
            errors.append(exc)

    client = _in_thread(run)
    syncws_peer.expect("hello, I am Ada")
    syncws_peer.send(b"\x00\x01")
    client.join(5)
    assert len(errors) == 1


def test_the_client_against_a_real_server(syncws_server: object) -> None:
    # The syncws_server fixture echoes unless you override syncws_handler.
    assert fetch_greeting(str(syncws_server), "Bob") == "hello, I am Bob"


# -- unittest -----------------------------------------------------------------------------


class GreetingClientTest(unittest.TestCase):
    def test_against_a_greeting_server(self) -> None:
        def greeter(connection: syncws.ServerConnection) -> None:
            name = str(connection.recv()).rsplit(" ", 1)[-1]
            connection.send(f"welcome, {name}")

        server = self.enterContext(run_server(greeter))
        self.assertEqual(fetch_greeting(server.uri, "Eve"), "welcome, Eve")


def _in_thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target)
    thread.start()
    return thread
