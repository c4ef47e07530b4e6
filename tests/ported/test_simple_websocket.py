"""simple-websocket's programs, ported by changing one import, against simple-websocket itself.

The server program (``Server.accept(environ)`` in a Flask view) runs on
Werkzeug with syncws and the original ``simple_websocket.Client`` as its
peer; the client program runs with syncws against the original
``simple_websocket.Server`` in a Flask view.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import flask
import pytest

import syncws
from syncws import simple_websocket, wsgi
from syncws.protocol.framing import encode_frame

from ..threaded.helpers import WAIT
from .helpers import load, original, ported, werkzeug_server

pytestmark = pytest.mark.timeout(60)

# The README's server: an echo inside a Flask view.
SERVER = """\
from flask import Flask, request
from simple_websocket import Server, ConnectionClosed

app = Flask(__name__)

@app.route('/echo', websocket=True)
def echo():
    ws = Server.accept(request.environ)
    try:
        while True:
            data = ws.receive()
            ws.send(data)
    except ConnectionClosed:
        pass
    return ''
"""

# The README's client, with input() fed by the test.
CLIENT = """\
from simple_websocket import Client, ConnectionClosed

def main():
    ws = Client.connect(URL)
    try:
        while True:
            data = input('> ')
            ws.send(data)
            data = ws.receive()
            print(f'< {data}')
    except (KeyboardInterrupt, EOFError, ConnectionClosed):
        ws.close()

if __name__ == '__main__':
    main()
"""

OLD = "from simple_websocket import "
NEW = "from syncws.simple_websocket import "


def test_the_readme_server_with_only_the_import_changed(caplog: pytest.LogCaptureFixture) -> None:
    upstream = original("simple_websocket")
    namespace = load(ported(SERVER, OLD, NEW), "readme_server")
    with werkzeug_server(namespace["app"]) as base, caplog.at_level(logging.INFO, "syncws"):
        client = upstream.Client.connect(f"{base}/echo")
        try:
            client.send("Hello")
            assert client.receive(timeout=WAIT) == "Hello"
            client.send(b"\x00\xff")
            assert client.receive(timeout=WAIT) == b"\x00\xff"
        finally:
            client.close()
        # The view returned after the close: nothing was written into the stream.
        http = upstream.Client.connect(f"{base}/echo")
        http.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_readme_client_with_only_the_import_changed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    upstream = original("simple_websocket")
    app = flask.Flask("upstream_server")
    closes: list[Any] = []
    done = threading.Event()

    @app.route("/echo", websocket=True)
    def echo() -> str:
        ws = upstream.Server.accept(flask.request.environ)
        try:
            while True:
                ws.send(ws.receive())
        except upstream.ConnectionClosed:
            closes.append(ws.close_reason)
        done.set()
        return ""

    lines = ["one", "two"]

    def feed(prompt: str) -> str:
        if not lines:
            raise EOFError
        return lines.pop(0)

    with werkzeug_server(app) as base:
        source = ported(CLIENT, OLD, NEW)
        exec(source, {"__name__": "__main__", "URL": f"{base}/echo", "input": feed})
        assert done.wait(WAIT)
    assert capsys.readouterr().out == "< one\n< two\n"
    assert closes == [1000]


def test_server_names_and_their_behaviour() -> None:
    upstream = original("simple_websocket")
    seen: list[Any] = []
    ended = threading.Event()
    app = flask.Flask("names")

    @app.route("/ws", websocket=True)
    def view() -> str:
        with simple_websocket.Server.accept(
            flask.request.environ, subprotocols=["chat"], ping_interval=5, max_message_size=100
        ) as ws:
            seen.append((ws.connected, ws.subprotocol, ws.environ["PATH_INFO"]))
            seen.append(ws.receive(timeout=0))
            seen.append(ws.receive(timeout=0.01))
            ws.send(42)
            ws.send(bytearray(b"raw"))
            seen.append(ws.receive(timeout=WAIT))
            assert ws.connection in wsgi.connections()
            ws.close(4000, "bye")
            seen.append((ws.connected, ws.close_reason, ws.close_message))
            with pytest.raises(simple_websocket.ConnectionClosed) as closed:
                ws.send("late")
            seen.append((closed.value.reason, closed.value.message))
            seen.append(repr(ws).startswith("<Server "))
        ended.set()
        return ""

    with werkzeug_server(app) as base:
        client = upstream.Client.connect(f"{base}/ws", subprotocols=["chat"])
        assert client.receive(timeout=WAIT) == "42"
        assert client.receive(timeout=WAIT) == b"raw"
        client.send("go")
        assert ended.wait(WAIT)
        with pytest.raises(upstream.ConnectionClosed) as closed:
            client.receive(timeout=WAIT)
        assert closed.value.reason == 4000
        assert not wsgi.connections()
    assert seen == [
        (True, "chat", "/ws"),
        None,
        None,
        "go",
        # simple-websocket's client never answers a close frame: it drops TCP (1006).
        (False, 1006, ""),
        (1006, ""),
        True,
    ]


def test_refusals_and_unsupported_options() -> None:
    app = flask.Flask("refusals")
    errors: list[BaseException] = []

    @app.route("/ws", websocket=True)
    def view() -> str:
        try:
            simple_websocket.Server.accept(flask.request.environ, origins=["https://ok"])
        except simple_websocket.ConnectionError as exc:
            errors.append(exc)
        return ""

    with werkzeug_server(app) as base:
        with pytest.raises(syncws.InvalidStatus) as refused:
            syncws.connect(f"{base}/ws", origin="https://evil")
        assert refused.value.status_code == 403
        with pytest.raises(simple_websocket.ConnectionError) as failed:
            simple_websocket.Client.connect(f"{base}/missing")
        assert failed.value.status_code == 404
    assert [getattr(e, "status_code", None) for e in errors] == [403]
    with pytest.raises(ValueError, match="thread_class"):
        simple_websocket.Server.accept({}, thread_class=object)
    with pytest.raises(ValueError, match="event_class"):
        simple_websocket.Client.connect("ws://127.0.0.1:1/", event_class=object)
    with pytest.raises(TypeError, match="bogus"):
        wsgi.accept_inline({}, bogus=1)


def test_accept_inline_in_a_plain_wsgi_app_keeps_early_frames_and_refuses_post() -> None:
    # syncws.wsgi.accept_inline(): the same, for a WSGI app without Flask.
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        closed = (syncws.InvalidHandshake, syncws.ConnectionClosed)
        with contextlib.suppress(*closed), wsgi.accept_inline(environ) as ws:
            ws.send(f"got {ws.recv(timeout=WAIT)}")
            ws.recv(timeout=WAIT)  # until the client closes
        start_response("200 OK", [])
        return [b""]

    with werkzeug_server(app) as base:
        port = int(base.rsplit(":", 1)[1])
        with handshake(port, extra=masked(0x1, b"early")) as sock:
            data = b""
            while b"got early" not in data:
                data += sock.recv(4096)
            sock.sendall(masked(0x8, b"\x03\xe8"))
            data += read_all(sock)
        assert data.startswith(b"HTTP/1.1 101 ")
        assert data.endswith(b"\x88\x02\x03\xe8") and b"200 OK" not in data
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        with sock:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            assert read_all(sock).startswith(b"HTTP/1.1 405 ")


def handshake(port: int, extra: bytes = b"") -> socket.socket:
    """A raw upgrade request; ``extra`` goes out in the same write."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        + extra
    )
    return sock


def masked(opcode: int, payload: bytes) -> bytes:
    return b"".join(encode_frame(opcode, payload, mask=b"\x01\x02\x03\x04"))


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_client_handshake_that_fails_without_a_status() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def not_websocket() -> None:
        peer, _ = listener.accept()
        with peer:
            peer.recv(4096)
            peer.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: nope\r\n\r\n")

    thread = threading.Thread(target=not_websocket)
    thread.start()
    try:
        with pytest.raises(simple_websocket.ConnectionError) as failed:
            simple_websocket.Client.connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/")
        assert failed.value.status_code is None
    finally:
        thread.join(WAIT)
        listener.close()


def test_the_readme_server_under_gunicorn_gthread(tmp_path: Path) -> None:
    # The same program under gunicorn's gthread worker: the view keeps one of its
    # threads while the WebSocket lives; plain HTTP goes on meanwhile; clean log.
    upstream = original("simple_websocket")
    source = ported(SERVER, OLD, NEW).replace(
        "    return ''\n", "    return ''\n\n@app.route('/')\ndef index():\n    return 'plain'\n"
    )
    (tmp_path / "readme_server.py").write_text(source)
    executable = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert executable, "gunicorn is in the test extra"
    command = [executable, "-k", "gthread", "--threads", "4", "--bind", "127.0.0.1:0"]
    command += ["--chdir", str(tmp_path), "readme_server:app"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if "Listening at:" in line:
                    break
            port = int(line.rsplit(":", 1)[1].split()[0].rstrip(")"))
            client = upstream.Client.connect(f"ws://127.0.0.1:{port}/echo")
            try:
                client.send("under gunicorn")
                assert client.receive(timeout=WAIT) == "under gunicorn"
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=WAIT) as page:
                    assert page.read() == b"plain"  # while the WebSocket is open
            finally:
                client.close()
        finally:
            process.terminate()
            output, _ = process.communicate(timeout=WAIT)
    assert "Traceback" not in output and "[ERROR]" not in output, output
