"""flask-sock's programs, ported by changing one import, with the original clients as peers.

The README's echo route, and its example's chat-style route that reads with
a timeout, run on Werkzeug with ``syncws.flask``; simple-websocket's client
(flask-sock's own) and websocket-client talk to them.
"""

from __future__ import annotations

import logging

import pytest

from ..threaded.helpers import WAIT
from .helpers import load, original, ported, werkzeug_server

pytestmark = pytest.mark.timeout(60)

PROGRAM = """\
from flask import Flask
from flask_sock import Sock

app = Flask(__name__)
sock = Sock(app)


@sock.route('/echo')
def echo(ws):
    while True:
        data = ws.receive()
        ws.send(data)


@sock.route('/clock')
def clock(ws):
    ticks = 0
    while ticks < 3:
        data = ws.receive(timeout=0.01)
        if data is None:
            ticks += 1
            ws.send(f"tick {ticks}")
    ws.close(reason=1000, message='done')
"""


def test_flask_sock_program_with_simple_websocket_and_websocket_client_as_peers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = original("simple_websocket")
    websocket = original("websocket")
    namespace = load(ported(PROGRAM, "from flask_sock import", "from syncws.flask import"), "app")
    with werkzeug_server(namespace["app"]) as base, caplog.at_level(logging.INFO, "syncws"):
        client = upstream.Client.connect(f"{base}/echo")
        try:
            client.send("hello")
            assert client.receive(timeout=WAIT) == "hello"
            client.send(b"\x01\x02")
            assert client.receive(timeout=WAIT) == b"\x01\x02"
        finally:
            client.close()
        ws = websocket.create_connection(f"{base}/echo", timeout=WAIT)
        try:
            ws.send("from websocket-client")
            assert ws.recv() == "from websocket-client"
        finally:
            ws.close()
        ws = websocket.create_connection(f"{base}/clock", timeout=WAIT)
        try:
            assert [ws.recv() for _ in range(3)] == ["tick 1", "tick 2", "tick 3"]
            assert ws.recv() == ""  # websocket-client's "the server closed"
        finally:
            ws.close()  # a no-op once the server's close frame came: websocket-client
            ws.shutdown()  # keeps the socket until this (or garbage collection)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
