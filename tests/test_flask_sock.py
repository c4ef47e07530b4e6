"""syncws.flask.Sock, the flask-sock drop-in, on Werkzeug's server in this process."""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
from collections.abc import Iterator
from typing import Any

import flask
import pytest
from werkzeug.serving import make_server

import syncws
from syncws import wsgi
from syncws._flask_sock import sock_options
from syncws.flask import ConnectionClosed, Sock, SockConnection, Sockets

from .threaded.helpers import WAIT

pytestmark = pytest.mark.timeout(60)

# flask-sock's README program, as its users have it.
README_PROGRAM = """\
from flask import Flask, render_template
from flask_sock import Sock

app = Flask(__name__)
sock = Sock(app)


@sock.route('/echo')
def echo(ws):
    while True:
        data = ws.receive()
        ws.send(data)
"""


@contextlib.contextmanager
def werkzeug(app: flask.Flask) -> Iterator[str]:
    """Werkzeug's threaded server on a free port; yield its ws:// base URI."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.server_port}"
    finally:
        wsgi.shutdown_all()
        server.shutdown()
        thread.join(WAIT)
        server.server_close()


def test_the_readme_program_with_only_the_import_changed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = README_PROGRAM.replace("from flask_sock import Sock", "from syncws.flask import Sock")
    assert source.count("\n") == README_PROGRAM.count("\n")
    namespace: dict[str, Any] = {"__name__": "readme_program"}
    exec(compile(source, "readme_program.py", "exec"), namespace)
    with werkzeug(namespace["app"]) as base, caplog.at_level(logging.INFO, "syncws"):
        with syncws.connect(f"{base}/echo") as connection:
            connection.send("Hello")
            assert connection.recv(timeout=WAIT) == "Hello"
            connection.send(b"\x00\xff")
            assert connection.recv(timeout=WAIT) == b"\x00\xff"
        # The handler's ws.receive() raised ConnectionClosed: a normal end, 1000 both ways.
        assert connection.close_code == 1000
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def serve_one(handler: Any, **config: Any) -> tuple[flask.Flask, Sock]:
    app = flask.Flask(__name__)
    app.config.update(config)
    sock = Sock(app)
    sock.route("/ws")(handler)
    return app, sock


def test_receive_timeout_send_types_connected_and_close() -> None:
    seen: queue.Queue[Any] = queue.Queue()

    def handler(ws: SockConnection) -> None:
        seen.put(ws.receive(timeout=0))
        seen.put(ws.receive(timeout=0.01))
        seen.put(ws.connected)
        ws.send(42)  # anything else than bytes is sent as str(data)
        ws.send(bytearray(b"raw"))
        seen.put(ws.receive())
        ws.close(reason=4000, message="bye")
        seen.put(ws.connected)
        seen.put((ws.close_reason, ws.close_message))
        with pytest.raises(ConnectionClosed) as closed:
            ws.send("too late")
        seen.put((closed.value.reason, closed.value.message))

    app, _ = serve_one(handler)
    with werkzeug(app) as base, syncws.connect(f"{base}/ws") as connection:
        assert connection.recv(timeout=WAIT) == "42"
        assert connection.recv(timeout=WAIT) == b"raw"
        connection.send("go")
        with pytest.raises(syncws.ConnectionClosed):
            connection.recv(timeout=WAIT)
        assert (connection.close_code, connection.close_reason) == (4000, "bye")
    assert [seen.get(timeout=WAIT) for _ in range(7)] == [
        None,
        None,
        True,
        "go",
        False,
        (4000, "bye"),
        (4000, "bye"),
    ]


def test_connection_closed_carries_the_peers_code_and_message() -> None:
    caught: queue.Queue[ConnectionClosed] = queue.Queue()

    def handler(ws: SockConnection) -> None:
        try:
            ws.receive()
        except ConnectionClosed as exc:
            caught.put(exc)
            raise

    app, _ = serve_one(handler)
    with werkzeug(app) as base:
        connection = syncws.connect(f"{base}/ws")
        connection.close(4001, "gone")
        exc = caught.get(timeout=WAIT)
    assert (exc.reason, exc.message) == (4001, "gone")
    assert isinstance(exc.__cause__, syncws.ConnectionClosedOK | syncws.ConnectionClosedError)
    assert "4001" in str(exc)


def test_blueprints_url_values_and_init_app() -> None:
    sock = Sock()  # the application factory pattern: routes first, init_app later
    bp = flask.Blueprint("rooms", __name__)

    @sock.route("/lobby")
    def lobby(ws: SockConnection) -> None:
        ws.send("lobby")

    @sock.route("/<name>", bp=bp)
    def room(ws: SockConnection, name: str) -> None:
        ws.send(f"room {name}: {flask.request.path}")

    app = flask.Flask(__name__)
    app.register_blueprint(bp, url_prefix="/rooms")
    sock.init_app(app)
    assert sock.app is app
    with werkzeug(app) as base:
        for path, expected in [("/lobby", "lobby"), ("/rooms/blue", "room blue: /rooms/blue")]:
            with syncws.connect(f"{base}{path}") as connection:
                assert connection.recv(timeout=WAIT) == expected
    assert {"lobby", "rooms.room"} <= set(app.view_functions)


def test_sock_server_options() -> None:
    options: queue.Queue[tuple[Any, ...]] = queue.Queue()

    def handler(ws: SockConnection) -> None:
        # Other attributes are the ServerConnection's.
        options.put((ws.ping_interval, ws.ping_timeout, ws.subprotocol))
        ws.receive()

    app, _ = serve_one(
        handler,
        SOCK_SERVER_OPTIONS={
            "max_message_size": 10,
            "ping_interval": 5,
            "subprotocols": ["chat"],
            "receive_bytes": 4096,
        },
    )
    with werkzeug(app) as base:
        with syncws.connect(f"{base}/ws", subprotocols=["chat"]) as connection:
            assert options.get(timeout=WAIT) == (5, 5, "chat")
            connection.send("x" * 11)
            with pytest.raises(syncws.ConnectionClosedError):
                connection.recv(timeout=WAIT)
        assert connection.close_code == 1009


def test_bad_sock_server_options_fail_early() -> None:
    app = flask.Flask(__name__)
    app.config["SOCK_SERVER_OPTIONS"] = {"max_msg_size": 10}
    with pytest.raises(TypeError, match="max_msg_size"):
        Sock(app)
    app.config["SOCK_SERVER_OPTIONS"] = {"thread_class": threading.Thread}
    with pytest.raises(ValueError, match="monkey-patching make green"):
        Sock(app)
    app.config["SOCK_SERVER_OPTIONS"] = {"thread_class": None, "max_message_size": None}
    Sock(app)


def test_origins_in_sock_server_options_and_refusals() -> None:
    app, _ = serve_one(
        lambda ws: ws.send("in"),
        SOCK_SERVER_OPTIONS={"origins": [re.compile(r"https://[a-z]+\.example\.com")]},
    )
    with werkzeug(app) as base:
        with syncws.connect(f"{base}/ws", origin="https://app.example.com") as connection:
            assert connection.recv(timeout=WAIT) == "in"
        with pytest.raises(syncws.InvalidStatus) as refused:
            syncws.connect(f"{base}/ws", origin="https://example.com.evil.net")
        assert refused.value.status_code == 403
    with pytest.raises(TypeError, match="not both"):
        sock_options({"max_message_size": 1, "max_size": 2})


def test_sock_connection_repr_and_attributes() -> None:
    reprs: queue.Queue[str] = queue.Queue()

    def handler(ws: SockConnection) -> None:
        reprs.put(repr(ws))
        reprs.put(ws.environ["PATH_INFO"])
        reprs.put(ws.request.path)  # the ServerConnection's

    app, _ = serve_one(handler)
    with werkzeug(app) as base, syncws.connect(f"{base}/ws?x=1"):
        assert reprs.get(timeout=WAIT).startswith("<SockConnection <")
        assert reprs.get(timeout=WAIT) == "/ws"
        assert reprs.get(timeout=WAIT) == "/ws?x=1"


def test_sockets_and_plain_wsgi_take_origin_patterns_too() -> None:
    app = flask.Flask(__name__)
    sockets = Sockets(app, origins=[re.compile(r"https://[a-z]+\.example\.com")])

    @sockets.route("/ws")
    def hello(ws: syncws.ServerConnection) -> None:
        ws.send("in")

    with werkzeug(app) as base:
        with syncws.connect(f"{base}/ws", origin="https://app.example.com") as connection:
            assert connection.recv(timeout=WAIT) == "in"
        with pytest.raises(syncws.InvalidStatus) as refused:
            syncws.connect(f"{base}/ws", origin="https://example.org")
        assert refused.value.status_code == 403
