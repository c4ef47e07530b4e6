"""syncws.testing for web applications: serve_app, the client factory, ScriptedClient.

A Flask application served for real (Werkzeug's threaded server) by
``serve_app`` and the ``syncws_app_server`` fixture; ``ScriptedClient`` and
``expect_refused`` against ``run_server``; Flask's ``test_client()`` on a
WebSocket route says what to use instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask
import pytest

import syncws
from syncws.flask import Sockets
from syncws.protocol.framing import encode_frame
from syncws.testing import (
    ClientFactory,
    RunningApp,
    ScriptedClient,
    expect_refused,
    run_server,
    serve_app,
)
from syncws.testing.apps import _local_port, request_headers, websocket_path

from .threaded.helpers import WAIT

pytestmark = pytest.mark.timeout(60)


def make_app() -> flask.Flask:
    app = flask.Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/ws/<room>")
    def room(ws: syncws.ServerConnection, room: str) -> None:
        request = flask.request
        ws.send(
            f"{room} q={request.args.getlist('q')} x={request.headers.get('X-Test')} "
            f"c={request.cookies.get('c')} origin={request.headers.get('Origin')}"
        )
        for message in ws:
            ws.send(message)

    @app.get("/")
    def index() -> str:
        return "home"

    return app


@pytest.fixture
def syncws_wsgi_app() -> Callable[..., Any]:
    return make_app()


def test_the_factory_opens_clients_with_path_query_headers_and_cookies(
    syncws_app_server: RunningApp, syncws_clients: ClientFactory
) -> None:
    first = syncws_clients(
        "/ws/red", query={"q": ["1", "2"]}, headers={"X-Test": "yes"}, cookies={"c": "v"}
    )
    second = syncws_clients("/ws/blue?q=3", query=[("q", "4")], headers=[("X-Test", "pairs")])
    third = syncws_clients("/ws/green", query="q=5", origin=None)
    assert first.recv(timeout=WAIT) == (
        f"red q=['1', '2'] x=yes c=v origin={syncws_app_server.url}"
    )
    assert (
        second.recv(timeout=WAIT)
        == f"blue q=['3', '4'] x=pairs c=None origin={syncws_app_server.url}"
    )
    assert third.recv(timeout=WAIT) == "green q=['5'] x=None c=None origin=None"
    assert syncws_clients.clients == [first, second, third]
    third.close()
    syncws_clients.close()  # closes the others; third stays closed
    assert syncws_clients.clients == []


def test_serve_app_closes_its_websockets_and_stops() -> None:
    with serve_app(make_app()) as app:
        assert str(app) == app.url == f"http://127.0.0.1:{app.port}"
        assert app.ws_url("/ws/x", {"a": "b"}) == f"ws://127.0.0.1:{app.port}/ws/x?a=b"
        client = app.connect("/ws/x")
        assert client.recv(timeout=WAIT).startswith("x ")
        # Another app's WebSockets are left alone when this one stops.
        with serve_app(make_app()) as other:
            stopped = other.connect("/ws/y")
            assert stopped.recv(timeout=WAIT).startswith("y ")
        with pytest.raises(syncws.ConnectionClosed) as closed:
            stopped.recv(timeout=WAIT)
        assert closed.value.code == 1001
        stopped.close()
        client.send("still here")
        assert client.recv(timeout=WAIT) == "still here"
    with pytest.raises(syncws.ConnectionClosed) as closed:
        client.recv(timeout=WAIT)
    assert closed.value.code == 1001
    client.close()


def test_serve_app_on_wsgiref() -> None:
    # The standard library's server, as Django's runserver: for apps without Werkzeug.
    with (
        serve_app(make_app(), server="wsgiref") as app,
        app.connect("/ws/w", query="q=1") as client,
    ):
        assert client.recv(timeout=WAIT) == f"w q=['1'] x=None c=None origin={app.url}"
        client.send("over wsgiref")
        assert client.recv(timeout=WAIT) == "over wsgiref"
    with (
        pytest.raises(ValueError, match="'auto', 'werkzeug' or 'wsgiref'"),
        serve_app(
            make_app(),
            server="gunicorn",  # type: ignore[arg-type]
        ),
    ):
        pass


def test_paths_and_headers() -> None:
    assert websocket_path("/ws") == "/ws"
    assert websocket_path("/ws", {}) == "/ws"
    assert websocket_path("/ws?a=1", {"b": "2 3"}) == "/ws?a=1&b=2+3"
    with pytest.raises(ValueError, match="starts with /"):
        websocket_path("ws")
    assert _local_port(object()) is None  # not a connection: never matches a port
    assert request_headers(None, None) == []
    assert request_headers({"A": "1"}, {"x": "1", "y": "2"}) == [("A", "1"), ("Cookie", "x=1; y=2")]


def test_flask_test_client_says_to_serve_the_app() -> None:
    app = make_app()
    app.testing = True  # exceptions reach the test
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    with pytest.raises(syncws.UnsupportedServer, match=r"serve_app\(app\)"):
        app.test_client().get("/ws/x", headers=upgrade)


# -- ScriptedClient ----------------------------------------------------------------------------


def greeter(connection: syncws.ServerConnection) -> None:
    connection.send("welcome")
    for message in connection:
        if message == "bye":
            connection.close(4000, "asked to")
            return
        connection.send(f"you said {message}")


def test_scripted_client_drives_a_server() -> None:
    with run_server(greeter) as server, ScriptedClient(server.uri) as client:
        client.expect("welcome")
        client.send("hi")
        client.expect("you said hi")
        assert client.ping() >= 0
        client.send_raw(b"".join(encode_frame(0x1, b"raw", mask=b"abcd")))
        assert client.recv() == "you said raw"
        client.send("bye")
        client.expect_close(4000, "asked to")


def test_scripted_client_reports_surprises() -> None:
    with run_server(greeter) as server:
        with ScriptedClient(server.uri, timeout=WAIT) as client:
            with pytest.raises(AssertionError, match="expected 'hello', got 'welcome'"):
                client.expect("hello")
            with pytest.raises(AssertionError, match="no message in time"):
                client.recv(timeout=0.01)
            with pytest.raises(AssertionError, match="didn't close"):
                client.expect_close(timeout=0.01)
            client.send("x")
            with pytest.raises(AssertionError, match="got message 'you said x'"):
                client.expect_close()
            client.send("bye")
            with pytest.raises(AssertionError, match="expected close code 1000"):
                client.expect_close(1000)
        with ScriptedClient(server.uri) as client:
            client.send("bye")
            client.expect("welcome")
            with pytest.raises(AssertionError, match="expected close reason 'other'"):
                client.expect_close(reason="other")
        with ScriptedClient(server.uri) as client:
            client.send("bye")
            client.expect("welcome")
            with pytest.raises(AssertionError, match="but the connection closed"):
                client.expect("more")
        with ScriptedClient(server.uri) as client:
            client.close()
            client.expect("welcome")  # received before the close
    with pytest.raises(RuntimeError, match="with block"):
        ScriptedClient("ws://127.0.0.1:1/").connection  # noqa: B018


def test_expect_refused() -> None:
    with run_server(greeter, origins=["https://app.example"]) as server:
        assert expect_refused(server.uri, origin="https://evil.example") == 403
        with pytest.raises(AssertionError, match="expected HTTP 404"):
            expect_refused(server.uri, 404, origin="https://evil.example")
        with pytest.raises(AssertionError, match="it accepted"):
            expect_refused(server.uri, origin="https://app.example")


def test_the_app_fixture_must_be_defined(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_app(syncws_clients):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*define it in your conftest.py*"])
    assert result.ret != 0
