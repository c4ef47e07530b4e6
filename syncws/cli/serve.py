"""``python -m syncws serve``: an echo server, or with ``--demo`` a chat with its web page.

The demo serves a small HTML page at ``/`` and the chat's WebSocket at
``/ws`` on the same port, through ``process_request``: a plain GET gets the
page, an upgrade gets the chat. Every message goes to every page with
``broadcast()``; a page that joins gets the last messages first.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.resources
import json
import signal
import threading
from collections.abc import Callable
from typing import Any

from ..protocol.http11 import Request, Response
from ..threaded.broadcast import broadcast
from ..threaded.server import Server, ServerConnection, serve

__all__ = ["DemoChat", "run_server"]

#: Messages a page gets when it joins.
HISTORY = 20
#: The longest chat message, in characters.
MAX_TEXT = 1000


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
            for earlier in self._history:
                connection.send(earlier)
            self._members.add(connection)
        self._presence()
        try:
            for message in connection:
                line = self._chat_line(message)
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

    @staticmethod
    def _chat_line(message: str | bytes) -> str | None:
        """The JSON broadcast for a page's message, or None if it isn't a chat message."""
        try:
            data = json.loads(message)
            name, text = str(data["name"])[:40], str(data["text"])[:MAX_TEXT]
        except (ValueError, TypeError, KeyError):
            return None
        return json.dumps({"type": "message", "name": name, "text": text})


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
        if ready is not None:
            ready(server)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    print("server stopped", flush=True)
