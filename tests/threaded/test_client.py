"""The threaded client: connecting, refusals, timeouts, redirects, options."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

import syncws
from syncws import InvalidHandshake, InvalidStatus, InvalidURI, Request, Response
from syncws.threaded.client import _redirect_target
from syncws.uri import parse_uri

from .helpers import WAIT, echo, refused_port, running_server


def test_connection_refused() -> None:
    with refused_port() as port, pytest.raises(ConnectionRefusedError):
        syncws.connect(f"ws://127.0.0.1:{port}/")


def test_server_that_never_answers_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with pytest.raises(TimeoutError, match="opening handshake"):
            syncws.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.2)


def test_server_that_closes_during_the_handshake() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept_and_close() -> None:
            sock, _ = listener.accept()
            sock.recv(4096)
            sock.close()

        thread = threading.Thread(target=accept_and_close)
        thread.start()
        with pytest.raises(InvalidHandshake):
            syncws.connect(f"ws://127.0.0.1:{port}/")
        thread.join(WAIT)


def test_refusal_carries_status_headers_and_body() -> None:
    def refuse(connection: syncws.ServerConnection, request: Request) -> Response:
        return connection.respond(403, "no entry\n", {"X-Why": "test"})

    with (
        running_server(echo, process_request=refuse) as server,
        pytest.raises(InvalidStatus) as raised,
    ):
        syncws.connect(f"ws://127.0.0.1:{server.port}/")
    response = raised.value.response
    assert raised.value.status_code == 403
    assert response.headers["X-Why"] == "test"
    assert response.body == b"no entry\n"


def test_request_options_reach_the_server() -> None:
    seen: list[Request] = []

    def handler(connection: syncws.ServerConnection) -> None:
        assert connection.request is not None
        seen.append(connection.request)

    with (
        running_server(handler) as server,
        syncws.connect(
            f"ws://127.0.0.1:{server.port}/path",
            origin="https://app.example",
            user_agent_header="tester/1",
            additional_headers=[("X-A", "1"), ("X-A", "2")],
        ),
    ):
        pass
    headers = seen[0].headers
    assert headers["Origin"] == "https://app.example"
    assert headers["User-Agent"] == "tester/1"
    assert headers.get_all("X-A") == ["1", "2"]


def test_no_user_agent() -> None:
    seen: list[Request] = []
    with (
        running_server(lambda c: seen.append(c.request)) as server,  # type: ignore[func-returns-value,arg-type]
        syncws.connect(f"ws://127.0.0.1:{server.port}/", user_agent_header=None),
    ):
        pass
    assert "User-Agent" not in seen[0].headers


def test_connect_over_a_socket_of_your_own() -> None:
    with running_server(echo) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        with syncws.connect("ws://example.com/", sock=sock) as client:
            client.send("via sock")
            assert client.recv(WAIT) == "via sock"


def test_bad_compression_option() -> None:
    with pytest.raises(ValueError, match="compression"):
        syncws.connect("ws://127.0.0.1:1/", compression="br")  # type: ignore[arg-type]


def test_bad_uri() -> None:
    with pytest.raises(InvalidURI):
        syncws.connect("http://example.com/")


# -- redirects -------------------------------------------------------------------------------------


def redirect_to(location: str, status: int = 302):  # type: ignore[no-untyped-def]
    def process_request(connection: syncws.ServerConnection, request: Request) -> Response:
        return connection.respond(status, "moved\n", {"Location": location})

    return process_request


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_follows_redirects(status: int) -> None:
    with running_server(echo) as target:
        location = f"ws://127.0.0.1:{target.port}/new"
        with (
            running_server(echo, process_request=redirect_to(location, status)) as origin,
            syncws.connect(f"ws://127.0.0.1:{origin.port}/old") as client,
        ):
            assert client.request is not None
            assert client.request.path == "/new"
            assert client.remote_address[1] == target.port


def test_relative_redirect_and_http_scheme() -> None:
    calls: list[str] = []

    def process_request(connection: syncws.ServerConnection, request: Request) -> Response | None:
        calls.append(request.path)
        if request.path == "/old":
            return connection.respond(302, "", {"Location": "/new"})
        return None

    with (
        running_server(echo, process_request=process_request) as server,
        syncws.connect(f"ws://127.0.0.1:{server.port}/old"),
    ):
        pass
    assert calls == ["/old", "/new"]
    target = _redirect_target(parse_uri("ws://a.example/x"), "https://b.example/y")
    assert target.secure
    assert target.host == "b.example"


def test_cross_origin_redirect_drops_credentials() -> None:
    seen: list[Request] = []

    def handler(connection: syncws.ServerConnection) -> None:
        assert connection.request is not None
        seen.append(connection.request)

    with running_server(handler, host="::1") as target:
        location = f"ws://[::1]:{target.port}/"
        with (
            running_server(echo, process_request=redirect_to(location)) as origin,
            syncws.connect(
                f"ws://127.0.0.1:{origin.port}/",
                additional_headers={
                    "Authorization": "Bearer secret",
                    "Cookie": "session=secret",
                    "Proxy-Authorization": "Basic secret",
                    "X-Keep": "1",
                },
            ),
        ):
            pass
    assert "Authorization" not in seen[0].headers
    assert "Cookie" not in seen[0].headers
    assert "Proxy-Authorization" not in seen[0].headers
    assert seen[0].headers["X-Keep"] == "1"


def test_same_origin_redirect_keeps_credentials() -> None:
    seen: list[Request] = []

    def process_request(connection: syncws.ServerConnection, request: Request) -> Response | None:
        seen.append(request)
        return connection.respond(302, "", {"Location": "/new"}) if request.path == "/" else None

    with (
        running_server(echo, process_request=process_request) as server,
        syncws.connect(
            f"ws://127.0.0.1:{server.port}/",
            additional_headers={"Authorization": "Bearer secret", "Cookie": "session=secret"},
        ),
    ):
        pass
    assert [request.path for request in seen] == ["/", "/new"]
    assert seen[1].headers["Authorization"] == "Bearer secret"
    assert seen[1].headers["Cookie"] == "session=secret"


def test_too_many_redirects() -> None:
    def loop(connection: syncws.ServerConnection, request: Request) -> Response:
        return connection.respond(302, "", {"Location": request.path})

    with (
        running_server(echo, process_request=loop) as server,
        pytest.raises(InvalidHandshake, match="too many redirects"),
    ):
        syncws.connect(f"ws://127.0.0.1:{server.port}/", max_redirects=2)


def test_redirect_without_location_is_a_refusal() -> None:
    def no_location(connection: syncws.ServerConnection, request: Request) -> Response:
        return connection.respond(302, "")

    with (
        running_server(echo, process_request=no_location) as server,
        pytest.raises(InvalidStatus),
    ):
        syncws.connect(f"ws://127.0.0.1:{server.port}/")


def test_redirect_from_wss_to_ws_is_refused() -> None:
    with pytest.raises(InvalidURI, match="wss"):
        _redirect_target(parse_uri("wss://a.example/"), "ws://a.example/")


# -- process lifetime ----------------------------------------------------------------------


def test_a_script_that_forgets_to_close_still_exits() -> None:
    with running_server(echo) as server:
        script = (
            "import syncws\n"
            f"ws = syncws.connect('ws://127.0.0.1:{server.port}/')\n"
            "ws.send('hi'); print(ws.recv())\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"


def test_buffered_amount_counts_the_handshake() -> None:
    # The request went through the outbox like every other byte: it was
    # counted when queued, so the backlog is 0 once it is written, never negative.
    with running_server(echo) as server, syncws.connect(f"ws://127.0.0.1:{server.port}/") as client:
        assert client.buffered_amount == 0
        client.send("hello", timeout=WAIT)
        assert client.buffered_amount == 0
        assert client.recv(timeout=WAIT) == "hello"
        assert client.buffered_amount == 0
