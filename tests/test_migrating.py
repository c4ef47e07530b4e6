"""Programs written for websockets.sync and websocket-client, ported by changing imports.

Each test is a trap a migrating user fell into (issue 18): it runs against a
real server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import queue
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

import syncws
from syncws import WebSocketApp, callbacks
from syncws._wsclient import connect_options, ssl_context
from syncws.testing import run_server
from syncws.threaded.origins import origin_policy

from .threaded.helpers import WAIT, wait_until

pytestmark = pytest.mark.timeout(30)


# -- websockets.sync ---------------------------------------------------------------


def test_origins_with_patterns_match_the_whole_origin() -> None:
    origins = [re.compile(r"https://[a-z]+\.example\.com"), "https://exact.org"]
    with run_server(origins=origins) as running:
        for origin in ("https://app.example.com", "https://exact.org"):
            with syncws.connect(running.uri, origin=origin) as connection:
                connection.send("hi")
                assert connection.recv(timeout=WAIT) == "hi"
        for origin in ("https://app.example.com.evil.net", "https://exact.org.evil.net", None):
            with pytest.raises(syncws.InvalidStatus) as refused:
                syncws.connect(running.uri, origin=origin)
            assert refused.value.status_code == 403


def test_origin_policy_forms() -> None:
    plain = ["https://a.org", None]
    assert origin_policy(plain) == plain  # the core's own form, untouched
    assert origin_policy(None) is None
    policy = origin_policy([None, re.compile("https://.*")])
    assert callable(policy)
    assert policy(None) and policy("https://x") and not policy("http://x")
    assert "https://.*" in repr(policy)
    with pytest.raises(TypeError, match="not one string"):
        origin_policy("https://a.org")
    with pytest.raises(TypeError, match="not 42"):
        origin_policy([42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="bytes"):
        origin_policy([re.compile(b"https://.*")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        syncws.serve(lambda c: None, "127.0.0.1", 0, origins=[b"https://a.org"])  # type: ignore[list-item]


def test_connection_closed_rcvd_sent_and_their_order() -> None:
    def close_first(connection: syncws.ServerConnection) -> None:
        connection.close(4000, "server first")

    with (
        run_server(close_first) as running,
        syncws.connect(running.uri) as connection,
        pytest.raises(syncws.ConnectionClosed) as closed,
    ):
        connection.recv(timeout=WAIT)
    exc = closed.value
    assert exc.rcvd is not None and exc.sent is not None
    assert (exc.rcvd.code, exc.rcvd.reason) == (4000, "server first")
    assert (exc.sent.code, exc.sent.reason) == (4000, "server first")  # echoed
    assert exc.rcvd_then_sent is True

    with run_server() as running:
        connection = syncws.connect(running.uri)
        connection.close(1000, "client first")
        with pytest.raises(syncws.ConnectionClosedOK) as closed:
            connection.recv(timeout=WAIT)
    assert closed.value.sent is not None and closed.value.sent.reason == "client first"
    assert closed.value.rcvd_then_sent is False

    dropped = syncws.ConnectionClosedError(None, "", None, "")
    assert (dropped.rcvd, dropped.sent, dropped.rcvd_then_sent) == (None, None, None)


def test_shutdown_keywords_and_keeping_connections() -> None:
    with run_server() as running:
        connection = syncws.connect(running.uri)
        running.server.shutdown(code=4000, reason="maintenance")
        with pytest.raises(syncws.ConnectionClosed):
            connection.recv(timeout=WAIT)
        assert (connection.close_code, connection.close_reason) == (4000, "maintenance")

    with run_server() as running:
        connection = syncws.connect(running.uri)
        stopping = threading.Thread(
            target=running.server.shutdown, kwargs={"close_connections": False}
        )
        stopping.start()
        wait_until(lambda: running.server.shutting_down)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", running.port), timeout=WAIT).close()
        connection.send("still open")  # the connection lives on while shutdown() waits
        assert connection.recv(timeout=WAIT) == "still open"
        assert stopping.is_alive()
        connection.close()  # the handler returns: shutdown() does too
        stopping.join(WAIT)
        assert not stopping.is_alive()


def test_shutdown_keeping_connections_during_a_handshake_keeps_it_too() -> None:
    # shutdown(close_connections=False) that lands while a handshake completes
    # must not close that connection with 1001 (it did, at random, in CI).
    servers: list[syncws.Server] = []
    stopping: list[threading.Thread] = []

    def process_response(connection: syncws.ServerConnection, request: Any, response: Any) -> None:
        server = servers[0]
        thread = threading.Thread(target=server.shutdown, kwargs={"close_connections": False})
        thread.start()
        stopping.append(thread)
        wait_until(lambda: server.shutting_down)

    with run_server(process_response=process_response) as running:
        servers.append(running.server)
        with syncws.connect(running.uri) as connection:
            connection.send("still open")
            assert connection.recv(timeout=WAIT) == "still open"
            assert stopping[0].is_alive()  # waiting for this handler
        stopping[0].join(WAIT)
        assert not stopping[0].is_alive()


def test_ping_wait_returns_false_on_timeout_as_websockets_event() -> None:
    # websockets' ping() returns a threading.Event: `if not pong.wait(t)` means no pong.
    with run_server() as running, syncws.connect(running.uri) as connection:
        pong = connection.ping()
        assert pong.wait(WAIT) is True
        assert pong.latency is not None and pong.latency > 0 and pong.done() and pong.is_set()
        assert connection.latency == pong.latency
    with (
        silent_server() as uri,
        syncws.connect(uri, ping_interval=None, close_timeout=0.1) as connection,
    ):
        pong = connection.ping()
        assert pong.wait(0.01) is False
        with pytest.raises(TimeoutError, match="no pong"):
            pong.round_trip(0.01)
        assert not pong.done() and not pong.is_set()


def test_process_response_aliases_and_two_cookies() -> None:
    seen = []

    def process_response(
        connection: syncws.ServerConnection, request: syncws.Request, response: syncws.Response
    ) -> None:
        seen.append((response.status_code, response.reason_phrase))
        response.headers["Set-Cookie"] = "session=1; HttpOnly"
        response.headers["Set-Cookie"] = "theme=dark"

    with (
        run_server(process_response=process_response) as running,
        syncws.connect(running.uri) as connection,
    ):
        assert connection.response is not None
        cookies = connection.response.headers.get_all("Set-Cookie")
    assert seen == [(101, "Switching Protocols")]
    assert cookies == ["session=1; HttpOnly", "theme=dark"]


class WebsocketsStyleConnection(syncws.ServerConnection):
    """A subclass written for websockets.sync: its __init__ has no write_limit nor logger."""

    def __init__(
        self,
        socket: socket.socket,
        protocol: Any,
        server: Any,
        *,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_queue: int = 16,
    ) -> None:
        super().__init__(
            socket,
            protocol,
            server,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_queue=max_queue,
        )
        self.flavour = "websockets"


class NeedsMore(syncws.ServerConnection):
    def __init__(self, sock: socket.socket, protocol: Any, server: Any, extra: int, **kw: Any):
        super().__init__(sock, protocol, server, **kw)


def test_create_connection_with_websockets_signature() -> None:
    def flavour(connection: syncws.ServerConnection) -> None:
        connection.send(getattr(connection, "flavour", "?"))

    with (
        run_server(flavour, create_connection=WebsocketsStyleConnection) as running,
        syncws.connect(running.uri) as connection,
    ):
        assert connection.recv(timeout=WAIT) == "websockets"
    with pytest.raises(TypeError, match="write_limit"):
        syncws.serve(
            flavour, "127.0.0.1", 0, create_connection=WebsocketsStyleConnection, write_limit=1
        )
    with pytest.raises(TypeError, match="extra"):
        syncws.serve(flavour, "127.0.0.1", 0, create_connection=NeedsMore)


# -- websocket-client ----------------------------------------------------------------

# websocket-client's README program for a long-lived connection, as its users have it
# (with the URL of the server in this test, and without its optional `rel` event loop:
# with it, see tests/test_ported_wsclient.py).
README_PROGRAM = """\
import websocket


def on_message(ws, message):
    print(message)

def on_error(ws, error):
    print(error)

def on_close(ws, close_status_code, close_msg):
    print("### closed ###")

def on_open(ws):
    print("Opened connection")

if __name__ == "__main__":
    websocket.enableTrace(True)
    ws = websocket.WebSocketApp(URL,
                              on_open=on_open,
                              on_message=on_message,
                              on_error=on_error,
                              on_close=on_close)

    ws.run_forever(reconnect=5)
"""


def test_the_readme_program_with_only_the_import_changed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = README_PROGRAM.replace(
        "import websocket\n", "from syncws import callbacks as websocket\n"
    )
    assert source.count("\n") == README_PROGRAM.count("\n")
    opened = threading.Event()

    def feed(connection: syncws.ServerConnection) -> None:
        connection.send("tick 1")
        connection.send("tick 2")
        opened.set()
        for _ in connection:
            pass

    namespace: dict[str, Any] = {"__name__": "__main__"}
    out, err = [], []

    def printed(text: str) -> bool:
        captured = capsys.readouterr()
        out.append(captured.out)
        err.append(captured.err)
        return text in "".join(out)

    with run_server(feed) as running:
        namespace["URL"] = running.uri
        program = threading.Thread(target=exec, args=(source, namespace))
        try:
            program.start()
            assert opened.wait(WAIT)
            wait_until(lambda: printed("tick 2") or not program.is_alive())
            namespace["ws"].close()  # as Ctrl-C or another thread would
            program.join(WAIT)
        finally:
            callbacks.enableTrace(False)
    assert not program.is_alive()
    printed("")
    assert "".join(out) == "Opened connection\ntick 1\ntick 2\n### closed ###\n"
    assert "connection open" in "".join(err)  # enableTrace(True) logs to stderr


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("on_"):
            raise AttributeError(name)
        return lambda app, *args: self.events.append((name, *args))


def test_positional_order_as_upstream() -> None:
    r = Recorder()
    names = ["on_open", "on_reconnect", "on_message", "on_error", "on_close", "on_ping"]
    names.append("on_pong")
    handlers = [getattr(r, name) for name in names]
    app = WebSocketApp("ws://x/", ["A: b"], *handlers, None, True, None, "c=1", ["p"], r.on_data)
    for name, handler in zip(names, handlers, strict=True):
        assert getattr(app, name) is handler
    assert (app.header, app.cookie, app.subprotocols) == (["A: b"], "c=1", ["p"])
    assert app.on_data is not None
    with pytest.raises(ValueError, match="on_cont_message"):
        WebSocketApp("ws://x/", on_cont_message=r.on_cont_message)
    with pytest.raises(ValueError, match="get_mask_key"):
        WebSocketApp("ws://x/", get_mask_key=lambda n: b"\0" * n)


def test_close_with_a_bytes_reason() -> None:
    r = Recorder()
    closes: queue.Queue[tuple[int | None, str | None]] = queue.Queue()

    def watch(connection: syncws.ServerConnection) -> None:
        try:
            for message in connection:
                connection.send(message)
        finally:
            closes.put((connection.close_code, connection.close_reason))

    def on_message(app: WebSocketApp, message: str | bytes) -> None:
        app.close(status=4000, reason=b"d\xc3\xa9j\xc3\xa0 vu")

    with run_server(watch) as running:
        app = WebSocketApp(
            running.uri,
            on_open=lambda app: app.send(b"bin"),
            on_message=on_message,
            on_close=r.on_close,
            on_error=r.on_error,
        )
        assert app.run_forever() is False
        assert closes.get(timeout=WAIT) == (4000, "déjà vu")
    assert r.events == [("on_close", 4000, "déjà vu")]  # no on_error: the app asked for it
    with pytest.raises(ValueError, match="UTF-8"):
        app.close(reason=b"\xff")
    with pytest.raises(ValueError, match="123"):
        app.close(reason="x" * 124)
    with pytest.raises(TypeError, match="int"):
        app.close(reason=42)  # type: ignore[arg-type]


def test_a_socket_of_ones_own() -> None:
    received = []

    def on_message(app: WebSocketApp, message: str | bytes) -> None:
        received.append(message)
        app.close()

    with run_server() as running:
        sock = socket.create_connection(("127.0.0.1", running.port), timeout=WAIT)
        app = WebSocketApp(
            running.uri, on_open=lambda app: app.send("mine"), on_message=on_message, socket=sock
        )
        assert app.run_forever() is False
    assert received == ["mine"]


def test_on_data_comes_before_on_message() -> None:
    r = Recorder()

    def on_message(app: WebSocketApp, message: str | bytes) -> None:
        r.events.append(("on_message", message))
        if message == "text":
            app.close()

    with run_server() as running:
        app = WebSocketApp(
            running.uri,
            on_open=lambda app: (app.send(b"bin"), app.send("text")),
            on_message=on_message,
            on_data=r.on_data,
        )
        assert app.run_forever() is False
    assert r.events == [
        ("on_data", b"bin", callbacks.ABNF.OPCODE_BINARY, True),
        ("on_message", b"bin"),
        ("on_data", "text", callbacks.ABNF.OPCODE_TEXT, True),
        ("on_message", "text"),
    ]


def test_run_forever_checks_its_keywords_at_the_call() -> None:
    app = WebSocketApp("ws://127.0.0.1:1/")
    with pytest.raises(TypeError, match=r"dispatcher has no read\(\).*rel"):
        app.run_forever(dispatcher=object())
    with pytest.raises(ValueError, match="ping_payload"):
        app.run_forever(ping_payload="hb")
    with pytest.raises(TypeError, match="'bogus'"):
        app.run_forever(bogus=1)
    with pytest.raises(TypeError, match="header="):
        app.run_forever(additional_headers={})
    assert not app.keep_running
    # websocket-client's defaults, spelled out, are accepted.
    defaults = {
        "sockopt": None,
        "sslopt": None,
        "ping_payload": "",
        "http_proxy_host": None,
        "http_proxy_port": None,
        "http_no_proxy": None,
        "http_proxy_auth": None,
        "skip_utf8_validation": False,
        "host": None,
        "origin": None,
        "suppress_origin": False,
        "proxy_type": None,
    }
    assert connect_options(defaults) == {"origin": None}


def test_proxy_and_ssl_options_are_translated() -> None:
    options = connect_options(
        {"http_proxy_host": "proxy", "http_proxy_port": 3128, "http_proxy_auth": ("u", "p w")}
    )
    assert options == {"proxy": "http://u:p%20w@proxy:3128"}
    options = connect_options({"http_proxy_host": "::1", "proxy_type": "socks5"})
    assert options == {"proxy": "socks5://[::1]:80"}
    assert connect_options({"origin": "https://a", "suppress_origin": True}) == {}
    with pytest.raises(ValueError, match="proxy_type"):
        connect_options({"http_proxy_host": "p", "proxy_type": "ftp"})
    with pytest.raises(ValueError, match="need http_proxy_host"):
        connect_options({"http_proxy_port": 8080})
    with pytest.raises(TypeError, match="not both"):
        connect_options({"http_proxy_host": "p", "proxy": "http://q:1"})
    insecure = ssl_context({"cert_reqs": ssl.CERT_NONE, "server_hostname": "h"})
    assert insecure["server_hostname"] == "h"
    assert insecure["ssl"].verify_mode == ssl.CERT_NONE
    assert not insecure["ssl"].check_hostname
    context = ssl.create_default_context()
    assert ssl_context({"context": context}) == {"ssl": context}
    with pytest.raises(ValueError, match="not both"):
        ssl_context({"context": context, "ca_certs": "x"})
    with pytest.raises(ValueError, match="'ssl_version'"):
        ssl_context({"ssl_version": 2})
    authority = trustme.CA()
    with authority.issue_cert("client").private_key_and_cert_chain_pem.tempfile() as path:
        client = ssl_context({"certfile": path, "ciphers": "ECDHE+AESGCM"})
    assert client["ssl"].verify_mode == ssl.CERT_REQUIRED


def test_sslopt_against_a_wss_server() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    received = []
    with (
        run_server(ssl=server_context) as running,
        authority.cert_pem.tempfile() as ca_path,
    ):
        uri = running.uri.replace("ws://", "wss://")

        def on_open(app: WebSocketApp) -> None:
            assert app.ready() and app.sock is not None and app.sock.connected
            app.send("secure")

        def on_message(app: WebSocketApp, message: str | bytes) -> None:
            received.append(message)
            app.close()

        app = WebSocketApp(uri, on_open=on_open, on_message=on_message)
        assert app.run_forever(sslopt={"ca_certs": ca_path}) is False
        assert not app.ready()
    assert received == ["secure"]


def test_header_callable_and_cookie() -> None:
    seen = []

    def record(connection: syncws.ServerConnection) -> None:
        assert connection.request is not None
        headers = connection.request.headers
        seen.append((headers.get("X-Token"), headers.get("Cookie")))

    tokens = iter(["t1", "t2"])
    with run_server(record) as running:
        app = WebSocketApp(running.uri, header=lambda: [f"X-Token: {next(tokens)}"], cookie="a=1")
        assert app.run_forever() is False
        assert app.run_forever() is False
    assert seen == [("t1", "a=1"), ("t2", "a=1")]


@contextlib.contextmanager
def silent_server(*, drop: bool = False) -> Iterator[str]:
    """A server that completes the handshake, then says nothing (or drops TCP at once)."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def run() -> None:
        sock, _ = listener.accept()
        with sock:
            request = b""
            while b"\r\n\r\n" not in request:
                request += sock.recv(4096)
            key = re.search(rb"Sec-WebSocket-Key: (\S+)", request, re.IGNORECASE)
            assert key is not None
            accept = base64.b64encode(
                hashlib.sha1(key.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
            )
            sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            if not drop:
                done.wait(WAIT)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        done.set()
        thread.join(WAIT)
        listener.close()


def test_on_close_gets_none_without_a_close_frame() -> None:
    r = Recorder()
    with silent_server(drop=True) as uri:
        app = WebSocketApp(uri, on_close=r.on_close, on_error=r.on_error)
        assert app.run_forever() is True
    assert r.events[-1] == ("on_close", None, None)
    assert isinstance(r.events[0][1], syncws.ConnectionClosedError)


def test_ctrl_c_returns_false_even_after_errors() -> None:
    with run_server() as running:
        port = running.port
    errors = []

    def on_error(app: WebSocketApp, error: BaseException) -> None:
        errors.append(error)
        if len(errors) == 2:
            raise KeyboardInterrupt  # as Ctrl-C would, in the run_forever thread

    app = WebSocketApp(f"ws://127.0.0.1:{port}/", on_error=on_error)
    assert app.run_forever(reconnect=0.01, open_timeout=2) is False
    assert len(errors) == 2 and app.has_errored


def test_on_reconnect_replaces_on_open_after_the_first_connection() -> None:
    calls = []

    def once(connection: syncws.ServerConnection) -> None:
        connection.close(1012, "restarting")

    def on_reconnect(app: WebSocketApp) -> None:
        calls.append("reconnect")
        app.close()

    with run_server(once) as running:
        app = WebSocketApp(
            running.uri, on_open=lambda app: calls.append("open"), on_reconnect=on_reconnect
        )
        # The server's close frame (1012) is not an error: on_close only.
        assert app.run_forever(reconnect=0.01) is False
    assert calls[:2] == ["open", "reconnect"]


def test_opcodes_and_send_checks() -> None:
    assert (callbacks.ABNF.OPCODE_TEXT, callbacks.ABNF.OPCODE_BINARY) == (1, 2)
    assert (callbacks.ABNF.OPCODE_CLOSE, callbacks.ABNF.OPCODE_PING) == (8, 9)
    with pytest.raises(ValueError, match="OPCODE_TEXT"):
        WebSocketApp("ws://x/").send("x", callbacks.ABNF.OPCODE_PING)
