"""websocket-client's programs, ported by changing one import, against a websockets server.

Each program runs twice, with ``import websocket`` (the original) and with
``from syncws import callbacks as websocket``; both must print the same.
"""

from __future__ import annotations

import contextlib
import io
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from ..threaded.helpers import WAIT
from .helpers import original, ported, program, read_until, websockets_server

pytestmark = pytest.mark.timeout(60)

ORIGINAL = "import websocket\n"
SYNCWS = "from syncws import callbacks as websocket\n"

# The README's short-lived connection.
SHORT_LIVED = """\
from websocket import create_connection

ws = create_connection(URL)
print("Sending 'Hello, World'...")
ws.send("Hello, World")
print("Sent")
print("Receiving...")
result = ws.recv()
print("Received '%s'" % result)
ws.close()
"""

# The blocking API's calls from websocket-client's examples page, one after the other.
TOUR = """\
import websocket

ws = websocket.WebSocket()
ws.connect(URL, header=["X-Greeting: hi"], subprotocols=["chat"])
print(ws.connected, ws.getstatus(), ws.getheaders()["upgrade"].lower(), ws.subprotocol)
print(ws.recv())
ws.settimeout(0.2)
print(ws.gettimeout())
try:
    ws.recv()
except websocket.WebSocketTimeoutException:
    print("timed out")
ws.settimeout(5)
ws.send("text")
print(repr(ws.recv()))
ws.send_binary(b"\\x00\\x01")
print(repr(ws.recv()))
ws.send(b"bytes as text")
print(repr(ws.recv()))
ws.send("binary", opcode=websocket.ABNF.OPCODE_BINARY)
print(repr(ws.recv_data()))
ws.ping("hello")
print(ws.recv_data(control_frame=True))
ws.send("bye")
while True:
    message = ws.recv()
    if not message:
        break
    print(message)
try:
    ws.recv()
except websocket.WebSocketConnectionClosedException:
    print("closed")
try:
    websocket.create_connection(URL + "missing")
except websocket.WebSocketBadStatusException as exc:
    print(exc.status_code, exc.resp_body)
"""


def peer(connection: Any) -> None:
    """The websockets handler both runs of a program talk to."""
    from websockets.sync.server import ServerConnection  # noqa: PLC0415 - the original

    assert isinstance(connection, ServerConnection)
    connection.send(f"greeting {connection.request.headers.get('X-Greeting')}")
    for message in connection:
        if message == "bye":
            connection.send("m1")
            connection.send("m2")
            connection.close()
            return
        connection.send(message)


def process_request(connection: Any, request: Any) -> Any:
    if request.path == "/missing":
        return connection.respond(404, "no such thing\n")
    return None


def choose_chat(connection: Any, offered: Any) -> str | None:
    return "chat" if "chat" in offered else None


def run_in_process(source: str, url: str) -> str:
    out = io.StringIO()
    namespace: dict[str, Any] = {"__name__": "__main__", "URL": url}
    with contextlib.redirect_stdout(out):
        exec(source, namespace)
    # websocket-client keeps its socket after the server's close until shutdown()
    # (or garbage collection, with a ResourceWarning in some later test).
    namespace["ws"].shutdown()
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "source", "old", "new"),
    [
        (
            "short-lived",
            SHORT_LIVED,
            "from websocket import create_connection\n",
            "from syncws.callbacks import create_connection\n",
        ),
        ("tour", TOUR, ORIGINAL, SYNCWS),
    ],
)
def test_blocking_programs_print_the_same(name: str, source: str, old: str, new: str) -> None:
    original("websocket")
    with websockets_server(
        peer, select_subprotocol=choose_chat, process_request=process_request
    ) as url:
        expected = run_in_process(source, url)
        assert run_in_process(ported(source, old, new), url) == expected
    if name == "tour":
        assert expected.splitlines()[:3] == ["True 101 websocket chat", "greeting hi", "0.2"]
        assert "timed out\n'text'\n" in expected and "m1\nm2\nclosed\n" in expected


# The README's long-lived connection, with its rel event loop, stopped with Ctrl-C.
LONG_LIVED = """\
import sys

import rel
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
    ws = websocket.WebSocketApp(sys.argv[1],
                              on_open=on_open,
                              on_message=on_message,
                              on_error=on_error,
                              on_close=on_close)

    ws.run_forever(dispatcher=rel, reconnect=5)
    rel.signal(2, rel.abort)  # Keyboard Interrupt
    rel.dispatch()
"""


@pytest.mark.parametrize("new", [ORIGINAL, SYNCWS])
def test_the_readme_program_with_rel_runs_as_written(tmp_path: Path, new: str) -> None:
    original("websocket")
    original("rel")
    closed = threading.Event()
    codes: list[int | None] = []

    def ticker(connection: Any) -> None:
        connection.send("tick 1")
        connection.send("tick 2")
        for _ in connection:
            pass
        codes.append(connection.close_code)
        closed.set()

    with websockets_server(ticker) as url:
        with program(tmp_path, ported(LONG_LIVED, ORIGINAL, new), url) as process:
            lines = read_until(process, "tick 2")
            assert lines == ["Opened connection", "tick 1", "tick 2"]
            process.send_signal(signal.SIGINT)  # Ctrl-C: rel.abort() ends rel.dispatch()
            assert process.wait(WAIT) == 0
        if new == SYNCWS:
            assert closed.wait(WAIT)  # the app closed its connection as the program ended
            assert codes == [1000]
