"""Testing a Flask application's WebSocket routes with syncws.testing, in pytest.

    python -m pytest examples/test_flask_chat.py

The application is served for real on a free port (``syncws_app_server``,
from the ``syncws_wsgi_app`` fixture below); ``syncws_clients`` opens
browsers' WebSockets with cookies; ``ScriptedClient`` plays one client step
by step; ``hub.wait_for_subscribers()`` waits until the handlers joined.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

import flask
import pytest

import syncws
from syncws.flask import Sockets
from syncws.testing import ClientFactory, RunningApp, ScriptedClient, expect_refused

# -- the application under test ---------------------------------------------------------------


def create_app() -> flask.Flask:
    app = flask.Flask(__name__)
    app.secret_key = "only for this example"
    # Browsers from this server's pages only (and clients that send no Origin).
    sockets = Sockets(app, origins=[None, re.compile(r"http://127\.0\.0\.1:\d+")])

    @app.post("/login")
    def login() -> str:
        flask.session["name"] = flask.request.form["name"]
        return "welcome"

    @sockets.route("/chat/<room>")
    def chat(ws: syncws.ServerConnection, room: str) -> None:
        name = flask.session.get("name")
        if name is None:
            ws.close(4001, "log in first")
            return
        sockets.hub.subscribe(ws, room)
        for message in ws:
            sockets.hub.publish(room, f"{name}: {message}")

    return app


# -- the tests ----------------------------------------------------------------------------------


@pytest.fixture
def flask_app() -> flask.Flask:
    return create_app()


@pytest.fixture
def syncws_wsgi_app(flask_app: flask.Flask) -> Callable[..., Any]:
    """What syncws_app_server serves."""
    return flask_app


def log_in(app: RunningApp, name: str) -> dict[str, str]:
    """Log in with an ordinary HTTP request; return the session cookie."""
    request = urllib.request.Request(f"{app.url}/login", data=f"name={name}".encode())
    with urllib.request.urlopen(request, timeout=5) as response:
        cookie = SimpleCookie(response.headers["Set-Cookie"])
    return {"session": cookie["session"].value}


def test_messages_reach_everyone_in_the_room(
    flask_app: flask.Flask, syncws_app_server: RunningApp, syncws_clients: ClientFactory
) -> None:
    alice = syncws_clients("/chat/tea", cookies=log_in(syncws_app_server, "alice"))
    bob = syncws_clients("/chat/tea", cookies=log_in(syncws_app_server, "bob"))
    # connect() returns after the handshake: wait until both handlers subscribed.
    hub = flask_app.extensions["syncws"].hub
    assert hub.wait_for_subscribers("tea", count=2)
    alice.send("hi")
    assert bob.recv(timeout=5) == "alice: hi"
    assert alice.recv(timeout=5) == "alice: hi"


def test_rooms_are_separate(
    flask_app: flask.Flask, syncws_app_server: RunningApp, syncws_clients: ClientFactory
) -> None:
    cookies = log_in(syncws_app_server, "carol")
    tea = syncws_clients("/chat/tea", cookies=cookies)
    coffee = syncws_clients("/chat/coffee", cookies=cookies)
    hub = flask_app.extensions["syncws"].hub
    assert hub.wait_for_subscribers("tea") and hub.wait_for_subscribers("coffee")
    coffee.send("espresso")
    assert coffee.recv(timeout=5) == "carol: espresso"
    with pytest.raises(TimeoutError):
        tea.recv(timeout=0.2)


def test_anonymous_clients_are_sent_away(syncws_app_server: RunningApp) -> None:
    with ScriptedClient(syncws_app_server.ws_url("/chat/tea")) as client:
        client.expect_close(4001, "log in first")


def test_other_sites_are_refused(syncws_app_server: RunningApp) -> None:
    expect_refused(syncws_app_server.ws_url("/chat/tea"), 403, origin="https://evil.example")
