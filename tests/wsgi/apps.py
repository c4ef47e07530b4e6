"""WSGI applications the WSGI tests serve, in-process and under real servers.

``plain``: a bare WSGI app (echo at /ws, text elsewhere). ``flask_app``: a
Flask app with WebSocket routes, HTTP routes, and broadcast from a view.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import flask

import syncws
from syncws import wsgi
from syncws.flask import Sockets


def echo(connection: syncws.ServerConnection) -> None:
    for message in connection:
        connection.send(message)


def plain(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/ws":
        return wsgi.accept(environ, start_response, echo, ping_interval=None)
    if environ.get("PATH_INFO") == "/ws-slow-keepalive":
        return wsgi.accept(environ, start_response, echo, ping_interval=0.2, ping_timeout=0.5)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain HTTP here\n"]


flask_app = flask.Flask(__name__)
flask_app.config["SYNCWS_OPTIONS"] = {"ping_interval": None}
flask_app.secret_key = "tests only"
sockets = Sockets(flask_app)


@sockets.route("/chat/<room>")
def chat(ws: syncws.ServerConnection, room: str) -> None:
    # Flask's request context works inside the handler.
    ws.send(f"joined {room} as {flask.request.args.get('name', 'anonymous')}")
    sockets.hub.subscribe(ws, room)
    for message in ws:
        sockets.hub.publish(room, message)


@flask_app.before_request
def who() -> None:
    flask.g.user = flask.request.args.get("user", "nobody")


@sockets.route("/context")
def context(ws: syncws.ServerConnection) -> None:
    # The handler's own thread, in a copy of the request context: request, g, session.
    flask.session.get("seen")  # a session works (signed cookies need the secret key)
    ws.send(f"{flask.request.path} {flask.g.user} {threading.current_thread().name}")


@sockets.route("/echo")
def echo_route(ws: syncws.ServerConnection) -> None:
    echo(ws)


@sockets.route("/fail")
def fail(ws: syncws.ServerConnection) -> None:
    raise RuntimeError("a bug in a handler")


@flask_app.get("/")
def index() -> str:
    return "hello from Flask\n"


@flask_app.post("/broadcast")
def announce() -> tuple[str, int]:
    count = sockets.broadcast(flask.request.get_data(as_text=True))
    return f"{count}\n", 200
