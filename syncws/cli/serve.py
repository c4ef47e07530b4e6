"""``python -m syncws serve``: an echo server, or with ``--demo`` a chat with its web page.

The demo serves a small HTML page at ``/`` and the chat's WebSocket at
``/ws`` on the same port, through ``process_request``: a plain GET gets the
page, an upgrade gets the chat. Every message goes to every page with
``broadcast()``; a page that joins gets the last messages first.

Pages send JSON (``{"name": ..., "text": ...}``); any other text message, as
typed in ``python -m syncws ws://localhost:8765/ws``, is a chat message from
that connection, named by the URI's ``?name=`` or ``user-N``. Each handler
runs in its connection's thread; the history and the members are shared
under a lock.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.resources
import itertools
import json
import signal
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..protocol.http11 import Request, Response
from ..threaded.connection.broadcast import broadcast
from ..threaded.server import Server, ServerConnection, serve

__all__ = ["DemoChat", "run_server"]

#: Messages a page gets when it joins.
HISTORY = 20
#: The longest chat message, in characters.
MAX_TEXT = 1000
#: The longest name, in characters.
MAX_NAME = 40


BINARY_REFUSED = "The demo chat takes text messages; this binary one was dropped."


def echo(connection: ServerConnection) -> None:
    for message in connection:
        connection.send(message)


class DemoChat:
    """The demo: a chat room for every page connected to ``/ws``."""

    def __init__(self) -> None:
        self.page = importlib.resources.files(__package__).joinpath("demo.html").read_bytes()
        self._lock = threading.Lock()
        self._history: collections.deque[str] = collections.deque(maxlen=HISTORY)
        self._members: set[ServerConnection] = set()
        self._numbers = itertools.count(1)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Serve the page to plain HTTP requests; let WebSocket upgrades through."""
        path = request.path.split("?", 1)[0]
        if "upgrade" in request.headers.get("Connection", "").lower():
            if path == "/ws":
                return None
            return connection.respond(404, "The chat's WebSocket is at /ws.\n")
        if path in ("/", "/index.html"):
            response = connection.respond(200, "")
            response.headers["Content-Type"] = "text/html; charset=utf-8"
            response.headers["Content-Length"] = str(len(self.page))
            response.headers["Cache-Control"] = "no-store"
            response.body = self.page
            return response
        return connection.respond(404, "Not found. The chat is at /.\n")

    def handler(self, connection: ServerConnection) -> None:
        """One page: catch up on history, then relay its messages to everyone."""
        with self._lock:
            name = self._name(connection)
            for earlier in self._history:
                connection.send(earlier)
            self._members.add(connection)
        self._presence()
        try:
            for message in connection:
                if isinstance(message, bytes):
                    connection.send(json.dumps({"type": "error", "text": BINARY_REFUSED}))
                    continue
                line = self._chat_line(message, name)
                if line is not None:
                    with self._lock:
                        self._history.append(line)
                        members = list(self._members)
                    broadcast(members, line)
        finally:
            with self._lock:
                self._members.discard(connection)
            self._presence()

    def _presence(self) -> None:
        with self._lock:
            members = list(self._members)
        broadcast(members, json.dumps({"type": "presence", "count": len(members)}))

    def _name(self, connection: ServerConnection) -> str:
        """The name of a connection's plain text messages (lock held)."""
        path = connection.request.path if connection.request else ""
        names = parse_qs(urlsplit(path).query).get("name", [])
        name = names[0].strip()[:MAX_NAME] if names else ""
        return name or f"user-{next(self._numbers)}"

    @staticmethod
    def _chat_line(message: str, name: str) -> str | None:
        """The JSON broadcast for a text message, or None for a blank one.

        A page's ``{"name": ..., "text": ...}`` carries its own name; any
        other text is a chat message from ``name``.
        """
        text = message
        if message.startswith("{"):
            try:
                data = json.loads(message)
            except ValueError:
                data = None
            if isinstance(data, dict) and "name" in data and "text" in data:
                name, text = str(data["name"])[:MAX_NAME], str(data["text"])
        if not text.strip():
            return None
        return json.dumps({"type": "message", "name": name, "text": text[:MAX_TEXT]})


def run_server(
    host: str | None,
    port: int,
    *,
    demo: bool,
    ready: Callable[[Server], object] | None = None,
    **options: Any,
) -> None:
    """Serve until Ctrl-C or SIGTERM; print where to go first. ``ready(server)`` once listening."""
    if demo:
        chat = DemoChat()
        handler: Any = chat.handler
        options |= {"process_request": chat.process_request, "max_size": 64 * 1024}
    else:
        handler = echo
    server: Server
    with serve(handler, host, port, **options) as server:
        signal.signal(signal.SIGTERM, lambda signum, frame: server.shutdown())
        where = host if host and host not in ("0.0.0.0", "::") else "localhost"
        where = f"[{where}]" if ":" in where else where
        if demo:
            print(f"syncws demo chat: open http://{where}:{server.port}/ in two browser tabs")
            print(f"listening on ws://{where}:{server.port}/ws (Ctrl-C stops)", flush=True)
        else:
            print(f"listening on ws://{where}:{server.port}/ (echo; Ctrl-C stops)", flush=True)
        if not host or host in ("0.0.0.0", "::"):
            print("on every interface: other machines can connect too", flush=True)
        if ready is not None:
            ready(server)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    print("server stopped", flush=True)
