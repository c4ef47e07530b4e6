"""WebSockets inside WSGI apps: Werkzeug and gunicorn, plain WSGI and Flask.

Werkzeug runs in-process (and once as a subprocess in debug mode); gunicorn
runs as a real subprocess on a free loopback port.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import wsgiref.simple_server
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.debug import DebuggedApplication
from werkzeug.serving import make_server

import syncws
from syncws import _held, wsgi
from syncws.protocol import Protocol, Side
from syncws.protocol.events import Close, Text
from syncws.protocol.framing import encode_frame
from syncws.threaded.runtime.keeper import keeper
from syncws.threaded.runtime.reactor import reactor

from ..threaded.helpers import WAIT, wait_until
from . import apps

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).parent.parent.parent
MASK = b"\x01\x02\x03\x04"


@contextlib.contextmanager
def werkzeug(app: Any) -> Iterator[int]:
    """Werkzeug's threaded server in this process; yield its port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server.server_port
    finally:
        assert wsgi.shutdown_all(timeout=WAIT)
        server.shutdown()
        thread.join(WAIT)
        server.server_close()


def start_process(command: list[str], ready: str) -> tuple[subprocess.Popen[str], str]:
    """Start a server process; return it and the line that says it is ready."""
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    for line in process.stdout:
        if ready in line:
            return process, line
    process.wait(WAIT)
    raise AssertionError(f"{command} didn't start")


@contextlib.contextmanager
def gunicorn(app: str, *options: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    executable = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert executable, "gunicorn is in the test extra"
    process, line = start_process(
        [executable, "--bind", "127.0.0.1:0", *options, f"tests.wsgi.apps:{app}"],
        "Listening at:",
    )
    try:
        port = int(re.search(r":(\d+)", line.rsplit("/", 1)[-1] or line).group(1))  # type: ignore[union-attr]
        yield process, port
    finally:
        process.kill()
        process.communicate()


# Built once: the debugger's first instance maps shared memory for good (multiprocessing).
DEBUGGED = {
    name: DebuggedApplication(getattr(apps, name), evalex=False) for name in ("plain", "flask_app")
}

GTHREAD = ("-k", "gthread", "--threads", "8", "-c", "tests/wsgi/gunicorn_conf.py")


def handshake(port: int, path: str, extra: bytes = b"", **headers: str) -> socket.socket:
    """Open a raw WebSocket handshake; ``extra`` goes out in the same write as the request."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    fields = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    } | headers
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v)
    sock.sendall(head.encode() + b"\r\n" + extra)
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def masked(opcode: int, payload: bytes) -> bytes:
    return b"".join(encode_frame(opcode, payload, mask=MASK))


def check_only_frames_after_101(port: int, path: str = "/ws") -> None:
    """Early frames are kept, and nothing but frames follows the 101."""
    sock = handshake(port, path, extra=masked(0x1, b"sent with the request"))
    with sock:
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(1)
        assert response.startswith(b"HTTP/1.1 101 ")
        client = Protocol(Side.CLIENT)
        data = b""
        events: list[object] = []
        while not events:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
            client.receive_data(chunk)
            events = list(client.events_received())
        assert events == [Text("sent with the request")]
        sock.sendall(masked(0x8, b"\x03\xe8"))
        rest = read_all(sock)
        data += rest
        client.receive_data(rest)
        client.receive_eof()
        assert [type(e) for e in client.events_received()] == [Close]
        assert client.protocol_error is None
        assert b"HTTP/1." not in data


# -- Werkzeug, in-process ----------------------------------------------------------------------


def test_plain_wsgi_app_on_werkzeug() -> None:
    with werkzeug(apps.plain) as port:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=WAIT) as response:
            assert response.read() == b"plain HTTP here\n"
        with syncws.connect(f"ws://127.0.0.1:{port}/ws") as client:
            client.send("hello")
            assert client.recv(timeout=WAIT) == "hello"
            (connection,) = wsgi.connections()
            assert connection.server is None
            assert connection.request is not None and connection.request.path == "/ws"
            assert connection.remote_address[0] == "127.0.0.1"
        check_only_frames_after_101(port)


def test_flask_routes_rooms_and_broadcast_from_a_view() -> None:
    with werkzeug(apps.flask_app) as port:
        base = f"ws://127.0.0.1:{port}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=WAIT) as response:
            assert response.read() == b"hello from Flask\n"
        with (
            syncws.connect(f"{base}/chat/kitchen?name=ada") as ada,
            syncws.connect(f"{base}/chat/kitchen?name=bob") as bob,
            syncws.connect(f"{base}/chat/garden") as carol,
        ):
            assert ada.recv(timeout=WAIT) == "joined kitchen as ada"
            assert bob.recv(timeout=WAIT) == "joined kitchen as bob"
            assert carol.recv(timeout=WAIT) == "joined garden as anonymous"
            bob.send("hi kitchen")  # bob's hub subscription is in place: he said so first
            assert ada.recv(timeout=WAIT) == "hi kitchen"
            assert bob.recv(timeout=WAIT) == "hi kitchen"
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/broadcast", data=b"to everyone", method="POST"
            )
            with urllib.request.urlopen(request, timeout=WAIT) as response:
                assert response.read() == b"3\n"
            for client in (ada, bob, carol):
                assert client.recv(timeout=WAIT) == "to everyone"
        # The clients left: each route's handler ends and forgets its connection.
        wait_until(lambda: apps.sockets.connections == set())
        check_only_frames_after_101(port, "/echo")


def test_flask_refusals_are_plain_http() -> None:
    with werkzeug(apps.flask_app) as port:
        # A WebSocket route asked for without the upgrade: Werkzeug answers 400.
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/echo", timeout=WAIT)
        assert caught.value.code == 400
        caught.value.close()
        # A bad upgrade: a normal 426 response, no hijacking.
        with handshake(port, "/echo", **{"Sec-WebSocket-Version": "8"}) as sock:
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 426 ")
        assert b"Sec-WebSocket-Version: 13" in answer


def test_handler_errors_close_with_1011() -> None:
    with werkzeug(apps.flask_app) as port, syncws.connect(f"ws://127.0.0.1:{port}/fail") as client:
        with pytest.raises(syncws.ConnectionClosedError) as caught:
            client.recv(timeout=WAIT)
        assert caught.value.code == 1011


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
@pytest.mark.parametrize("debugger", [True, False], ids=["debugger", "no-debugger"])
@pytest.mark.parametrize(("app", "path"), [("plain", "/ws"), ("flask_app", "/echo")])
def test_a_websocket_logs_101_and_no_traceback(
    app: str, path: str, debugger: bool, reset: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """As ``flask run --debug`` does: Werkzeug's debugger around the application.

    The client closes normally, or drops the connection with a TCP reset.
    """
    errors = io.StringIO()  # where the debugger writes the tracebacks it catches
    debugged = DEBUGGED[app] if debugger else getattr(apps, app)

    def application(environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.errors"] = errors
        return debugged(environ, start_response)

    logged: list[logging.LogRecord] = []
    done = threading.Event()

    class AccessLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if f"GET {path} HTTP/1.1" in record.getMessage():
                logged.append(record)
                done.set()

    werkzeug_logger = logging.getLogger("werkzeug")
    handler = AccessLog()
    werkzeug_logger.addHandler(handler)
    caplog.set_level(logging.INFO, logger="werkzeug")
    try:
        with werkzeug(application) as port:
            if reset:
                with handshake(port, path) as sock:
                    response = b""
                    while b"\r\n\r\n" not in response:
                        chunk = sock.recv(65536)
                        assert chunk
                        response += chunk
                    assert response.startswith(b"HTTP/1.1 101 ")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                with syncws.connect(f"ws://127.0.0.1:{port}{path}") as client:
                    client.send("hi")
                    assert client.recv(timeout=WAIT) == "hi"
                assert client.close_code == 1000
            # Werkzeug logs the request once the WebSocket has ended.
            assert done.wait(WAIT), "no access log line"
    finally:
        werkzeug_logger.removeHandler(handler)
    (record,) = logged
    assert record.args is not None and str(record.args[1]) == "101"
    assert errors.getvalue() == ""
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_bad_handshakes_get_http_errors() -> None:
    with werkzeug(apps.plain) as port:
        with handshake(port, "/ws", **{"Sec-WebSocket-Key": ""}) as sock:
            assert read_all(sock).startswith(b"HTTP/1.1 400 ")
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        with sock:
            sock.sendall(
                b"POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 405 ")


def test_keepalive_closes_a_silent_peer_with_1011() -> None:
    with werkzeug(apps.plain) as port:
        # A raw client never answers the pings.
        with handshake(port, "/ws-slow-keepalive") as sock:
            data = read_all(sock)
        client = Protocol(Side.CLIENT)
        client.receive_data(data.split(b"\r\n\r\n", 1)[1])
        closes = [e for e in client.events_received() if isinstance(e, Close)]
        assert closes and closes[0].code == 1011


def test_shutdown_all_sends_1001() -> None:
    with werkzeug(apps.plain) as port, syncws.connect(f"ws://127.0.0.1:{port}/ws") as client:
        client.send("warm up")
        assert client.recv(timeout=WAIT) == "warm up"
        wsgi.shutdown_all()
        with pytest.raises(syncws.ConnectionClosed) as caught:
            client.recv(timeout=WAIT)
        assert caught.value.code == 1001


def test_the_background_thread_is_held_while_a_websocket_is_open() -> None:
    # Closing one at interpreter exit needs that thread, and Python 3.12 lets
    # no thread start then: the keeper holds it, once per open WebSocket.
    wait_until(lambda: not keeper.held())  # an earlier test's handlers may still be ending
    with werkzeug(apps.plain) as port:
        with (
            syncws.connect(f"ws://127.0.0.1:{port}/ws") as one,
            syncws.connect(f"ws://127.0.0.1:{port}/ws") as two,
        ):
            for client in (one, two):
                client.send("hello")
                assert client.recv(timeout=WAIT) == "hello"
            assert keeper._holders == 2 and reactor.thread_running()
            one.close()
            wait_until(lambda: keeper._holders == 1)
        wait_until(lambda: not keeper.held())
        wsgi._unregister(object())  # type: ignore[arg-type]  # unknown: releases nothing
        assert not keeper.held()


class QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def test_wsgiref_in_one_thread_keeps_early_frames_and_serves_http_meanwhile() -> None:
    """wsgiref serves one request at a time: each WebSocket gives its thread back at once."""
    server = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, apps.plain, handler_class=QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        port = server.server_port
        with (
            syncws.connect(f"ws://127.0.0.1:{port}/ws") as one,
            syncws.connect(f"ws://127.0.0.1:{port}/ws") as two,
        ):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=WAIT) as response:
                assert response.read() == b"plain HTTP here\n"
            # A plain GET to the WebSocket's URL: 426, not wsgiref's 500 for a
            # hop-by-hop header (the 426's "Upgrade: websocket" isn't passed on).
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ws", timeout=WAIT)
            with refused.value:
                assert refused.value.code == 426
            one.send("one")
            two.send("two")
            assert (one.recv(timeout=WAIT), two.recv(timeout=WAIT)) == ("one", "two")
        check_only_frames_after_101(port)
        assert wsgi.shutdown_all(timeout=WAIT)
    finally:
        server.shutdown()
        thread.join(WAIT)
        server.server_close()


def test_flask_handlers_run_in_their_own_thread_with_the_request_context() -> None:
    with (
        werkzeug(apps.flask_app) as port,
        syncws.connect(f"ws://127.0.0.1:{port}/context?user=ada") as client,
    ):
        assert client.recv(timeout=WAIT) == "/context ada syncws-wsgi-handler"


def environ_for(**extra: Any) -> dict[str, Any]:
    return {
        "SERVER_SOFTWARE": "test-server",
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/ws",
        "HTTP_HOST": "x",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_KEY": base64.b64encode(b"k" * 16).decode(),
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
    } | extra


def test_servers_without_a_socket_get_a_clear_error() -> None:
    for stream in (io.BytesIO(), None):
        environ = environ_for(**{"wsgi.input": stream})
        assert wsgi.is_websocket_request(environ)
        assert not wsgi.can_hand_over(environ)
        with pytest.raises(syncws.UnsupportedServer, match="test-server") as caught:
            wsgi.upgrade(environ, apps.echo)
        assert "gunicorn (sync or gthread" in str(caught.value)
    # A file that isn't a socket (a server reading requests from a pipe).
    reader, writer = os.pipe()
    with (
        open(reader, "rb") as stream,
        open(writer, "wb"),
        pytest.raises(syncws.UnsupportedServer),
    ):
        wsgi.upgrade(environ_for(**{"wsgi.input": stream}), apps.echo)


def test_servers_known_not_to_hand_over_are_refused_before_any_upgrade() -> None:
    wsgi.check_server({"SERVER_SOFTWARE": "gunicorn/23"})
    wsgi.check_server({})  # test clients pass
    for environ in ({"SERVER_SOFTWARE": "waitress"}, {"mod_wsgi.version": (5, 0)}):
        with pytest.raises(syncws.UnsupportedServer, match="can't hand a connection over"):
            wsgi.check_server(environ)
    wsgi.check_runner(["gunicorn"])
    for argv in (["/usr/bin/waitress-serve", "app:app"], ["mod_wsgi-express"]):
        with pytest.raises(syncws.UnsupportedServer):
            wsgi.check_runner(argv)


def test_request_from_environ_without_a_raw_uri() -> None:
    environ = {
        "SCRIPT_NAME": "/app",
        "PATH_INFO": "/caf\u00c3\u00a9 room",  # WSGI's latin-1 view of UTF-8 bytes
        "QUERY_STRING": "a=1",
        "CONTENT_TYPE": "text/plain",
        "HTTP_X_THING": "yes",
    }
    request = wsgi.request_from_environ(environ)
    assert request.path == "/app/caf%C3%A9%20room?a=1"
    assert request.headers["X-Thing"] == "yes"
    assert request.headers["Content-Type"] == "text/plain"
    assert not wsgi.is_websocket_request(environ)


# -- real servers in subprocesses ----------------------------------------------------------------


def test_werkzeug_debug_mode_writes_nothing_after_the_101() -> None:
    process, line = start_process(
        [sys.executable, "-m", "tests.wsgi.serve", "flask_app", "--debug"], "listening on"
    )
    try:
        check_only_frames_after_101(int(line.split()[-1]), "/echo")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=WAIT)
    # (The in-process test waits for the access log line: this one may exit before it.)
    assert "Traceback" not in output


@pytest.mark.parametrize("app", ["plain", "flask_app"])
def test_gunicorn_gthread(app: str) -> None:
    path = "/ws" if app == "plain" else "/echo"
    with gunicorn(app, *GTHREAD, "--access-logfile", "-") as (process, port):
        with syncws.connect(f"ws://127.0.0.1:{port}{path}") as client:
            client.send(b"\x00binary")
            assert client.recv(timeout=WAIT) == b"\x00binary"
        check_only_frames_after_101(port, path)
        # SIGTERM: the hook closes WebSockets with 1001 at once (graceful_timeout is 30 s).
        client = syncws.connect(f"ws://127.0.0.1:{port}{path}")
        client.send("still here")
        assert client.recv(timeout=WAIT) == "still here"
        process.send_signal(signal.SIGTERM)
        with pytest.raises(syncws.ConnectionClosed) as caught:
            client.recv(timeout=WAIT)
        assert caught.value.code == 1001
        client.close()
        process.wait(WAIT)
        assert process.stdout is not None
        # The access log gives WebSockets their status.
        assert f'"GET {path} HTTP/1.1" 101 ' in process.stdout.read()


# -- gunicorn's parts, in-process ---------------------------------------------------------------


def test_gunicorn_hook_closes_websockets_then_calls_gunicorn() -> None:
    called = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: called.set())
    try:
        wsgi.gunicorn_post_worker_init(worker=None)
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        with werkzeug(apps.plain) as port, syncws.connect(f"ws://127.0.0.1:{port}/ws") as client:
            client.send("x")
            assert client.recv(timeout=WAIT) == "x"
            handler(signal.SIGTERM, None)
            assert called.is_set()
            with pytest.raises(syncws.ConnectionClosed) as caught:
                client.recv(timeout=WAIT)
            assert caught.value.code == 1001
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("modern", [True, False])
def test_gunicorn_early_bytes_are_taken_from_its_buffer(modern: bool) -> None:
    import io  # noqa: PLC0415

    class Unreader:
        def __init__(self) -> None:
            self.buf = io.BytesIO(b"early")

    class ModernUnreader(Unreader):
        def take_buffered(self) -> bytes:
            return b"early"

    class Reader:
        unreader = ModernUnreader() if modern else Unreader()

    class Body:
        reader = Reader()

    left, right = socket.socketpair()
    with left, right:
        adapter = _held._Gunicorn({"gunicorn.socket": left, "wsgi.input": Body()})
        assert adapter.take_socket() == (left, b"early")
        with pytest.raises(StopIteration):
            iter(adapter.finished())
