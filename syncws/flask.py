"""Flask integration: WebSocket routes beside HTTP routes, on the same port.

.. code-block:: python

    from flask import Flask, request
    from syncws.flask import Sockets

    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/chat/<room>")
    def chat(ws, room):                      # ws is a syncws ServerConnection
        sockets.hub.subscribe(ws, room)
        for message in ws:
            sockets.hub.publish(room, message)

    @app.post("/announce")
    def announce():                          # an ordinary HTTP view
        sockets.broadcast(request.get_data(as_text=True))
        return "", 204

The handler runs in a thread of its own, inside a copy of the request's
context: ``flask.request``, ``session`` and ``g`` work, and the server's
worker goes back to serving HTTP once the 101 is sent. It needs a WSGI
server that hands over the connection (see ``syncws.wsgi``): Werkzeug's
(``flask run``), gunicorn, wsgiref, gevent or eventlet. Options for every route come from
``Sockets(app, **options)`` and the ``SYNCWS_OPTIONS`` config dict
(``ping_interval``, ``max_size``, ``compression``...).

``Sock`` is a drop-in for flask-sock's ``Sock``: change ``from flask_sock
import Sock`` to ``from syncws.flask import Sock`` (and ``from
simple_websocket import ConnectionClosed`` to ``from syncws.flask import
ConnectionClosed``). Its handlers get a ``SockConnection`` with
simple-websocket's ``receive()``/``send()``/``close()``/``connected`` over a
syncws connection; its options come from the ``SOCK_SERVER_OPTIONS`` config
dict, in simple-websocket's names or syncws's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal

import flask

from ._flask_sock import (
    ConnectionClosed,
    Sock,
    SockConnection,
    flask_response,
    in_request_context,
    refuse_unsupported_servers,
)
from .pubsub.hub import Hub
from .threaded.connection.broadcast import broadcast
from .threaded.server import ServerConnection
from .wsgi import check_runner, upgrade

__all__ = ["ConnectionClosed", "Sock", "SockConnection", "Sockets"]


class Sockets:
    """WebSocket routes for a Flask application, and the connections they hold.

    ``connections``, ``broadcast()`` and ``hub`` may be used from any thread,
    for example from ordinary HTTP views.
    """

    def __init__(self, app: flask.Flask | None = None, *, hub: Hub | None = None, **options: Any):
        self.options = options
        #: A pub/sub hub for rooms and topics (give it a RedisBackend for several workers).
        self.hub = hub if hub is not None else Hub()
        self._routes: list[tuple[str, str, Callable[..., Any], dict[str, Any]]] = []
        self._apps: list[flask.Flask] = []
        self._lock = threading.Lock()
        self._connections: set[ServerConnection] = set()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Register the WebSocket routes on ``app`` (the application factory pattern)."""
        app.extensions["syncws"] = self
        self._apps.append(app)
        refuse_unsupported_servers(app)
        for rule, endpoint, view, options in self._routes:
            app.add_url_rule(rule, endpoint, view, websocket=True, **options)

    def route(
        self, rule: str, **options: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate ``handler(ws, **url_values)`` to serve WebSockets at ``rule``."""

        def decorator(handler: Callable[..., Any]) -> Callable[..., Any]:
            endpoint = options.pop("endpoint", None) or handler.__name__

            def view(**url_values: Any) -> flask.Response:
                return self._serve(handler, url_values)

            view.__name__ = endpoint
            check_runner()
            self._routes.append((rule, endpoint, view, options))
            for app in self._apps:
                app.add_url_rule(rule, endpoint, view, websocket=True, **options)
            return handler

        return decorator

    @property
    def connections(self) -> set[ServerConnection]:
        """The open connections of this extension's routes (a new set each time)."""
        with self._lock:
            return set(self._connections)

    def broadcast(
        self,
        message: str | bytes,
        *,
        text: bool | None = None,
        overflow: Literal["skip"] | int = "skip",
    ) -> int:
        """Send ``message`` to every connection; never blocks (see ``syncws.broadcast``)."""
        return broadcast(self.connections, message, text=text, overflow=overflow)

    def _serve(self, handler: Callable[..., Any], url_values: dict[str, Any]) -> flask.Response:
        options = flask.current_app.config.get("SYNCWS_OPTIONS", {}) | self.options

        def run(connection: ServerConnection) -> None:
            with self._lock:
                self._connections.add(connection)
            try:
                handler(connection, **url_values)
            finally:
                with self._lock:
                    self._connections.discard(connection)

        return flask_response(upgrade(flask.request.environ, in_request_context(run), **options))
