"""Connections of your own class: methods and state added, settings passed in.

    python examples/custom_connection.py

``serve(..., create_connection=cls)`` and ``connect(..., create_connection=cls)``
build each connection from a subclass of ``ServerConnection`` or
``ClientConnection``. syncws calls the class with its own arguments, so
settings of yours travel as class attributes: ``server_class()`` below makes
a subclass that carries them. The demo runs a server and a client that talk
JSON through methods of their connections.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import syncws


class JSONServerConnection(syncws.ServerConnection):
    """A server connection that speaks JSON and counts what it sends."""

    greeting = "hello"  # a setting: server_class() makes subclasses that change it

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # keep syncws's arguments as they are
        self.sent = 0

    def send_json(self, value: object) -> None:
        self.send(json.dumps(value))
        self.sent += 1

    def recv_json(self, timeout: float | None = None) -> Any:
        return json.loads(self.recv(timeout))


class JSONClientConnection(syncws.ClientConnection):
    def send_json(self, value: object) -> None:
        self.send(json.dumps(value))

    def recv_json(self, timeout: float | None = None) -> Any:
        return json.loads(self.recv(timeout))


def server_class(greeting: str) -> type[JSONServerConnection]:
    """A connection class whose connections greet with ``greeting``."""

    class Configured(JSONServerConnection):
        pass

    Configured.greeting = greeting
    return Configured


def greeter(connection: JSONServerConnection) -> None:
    """The handler gets a connection of our class."""
    while True:
        request = connection.recv_json()
        connection.send_json({"reply": f"{connection.greeting}, {request['name']}"})
        connection.send_json({"messages_sent": connection.sent + 1})


def main() -> None:
    with syncws.serve(greeter, "127.0.0.1", 0, create_connection=server_class("bonjour")) as server:
        threading.Thread(target=server.serve_forever).start()
        uri = f"ws://127.0.0.1:{server.port}/"
        with syncws.connect(uri, create_connection=JSONClientConnection) as client:
            assert isinstance(client, JSONClientConnection)
            for name in ("Ada", "Grace"):
                client.send_json({"name": name})
                print("client received", client.recv_json(timeout=5), client.recv_json(timeout=5))


if __name__ == "__main__":
    main()
