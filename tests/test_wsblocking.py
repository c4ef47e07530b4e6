"""syncws.callbacks' blocking API (websocket-client's create_connection and WebSocket)."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

import syncws
from syncws import callbacks as websocket
from syncws._wsblocking import _translate
from syncws.testing import run_server

from .threaded.helpers import WAIT, refused_port

pytestmark = pytest.mark.timeout(30)


def test_exceptions_translate_from_syncws() -> None:
    protocol = syncws.ConnectionClosedError(None, "", 1002, "bad frame")
    assert isinstance(_translate(protocol), websocket.WebSocketProtocolException)
    too_big = syncws.ConnectionClosedError(None, "", 1009, "too big")
    assert isinstance(_translate(too_big), websocket.WebSocketPayloadException)
    dropped = syncws.ConnectionClosedError(None, "", None, "")
    lost = _translate(dropped)
    assert isinstance(lost, websocket.WebSocketConnectionClosedException)
    assert "lost" in str(lost)
    by_peer = syncws.ConnectionClosedOK(1000, "bye", 1000, "bye")
    assert isinstance(_translate(by_peer), websocket.WebSocketConnectionClosedException)
    assert isinstance(_translate(syncws.ProtocolError("x")), websocket.WebSocketProtocolException)
    assert isinstance(_translate(syncws.InvalidPayload("x")), websocket.WebSocketPayloadException)
    assert isinstance(_translate(syncws.InvalidURI("x", "bad")), ValueError)
    assert isinstance(_translate(socket.gaierror(-2, "no")), websocket.WebSocketAddressException)
    timeout = _translate(TimeoutError())
    assert isinstance(timeout, websocket.WebSocketTimeoutException)
    assert isinstance(timeout, TimeoutError)  # `except TimeoutError` catches it too
    same = websocket.WebSocketException("as is")
    assert _translate(same) is same
    other = KeyError("x")
    assert _translate(other) is other


def test_proxy_refusal_is_a_proxy_exception() -> None:
    # An HTTP proxy on 127.0.0.1 that refuses the tunnel.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def refuse() -> None:
        peer, _ = listener.accept()
        with peer:
            peer.recv(4096)
            peer.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=refuse)
    thread.start()
    try:
        with pytest.raises(websocket.WebSocketProxyException):
            websocket.create_connection(
                "ws://example.invalid/", http_proxy_host="127.0.0.1", http_proxy_port=port
            )
    finally:
        thread.join(WAIT)
        listener.close()


def test_object_api_and_its_misuse() -> None:
    with pytest.raises(ValueError, match="get_mask_key"):
        websocket.WebSocket(get_mask_key=lambda n: b"\0" * n)
    with pytest.raises(ValueError, match="fire_cont_frame"):
        websocket.WebSocket(fire_cont_frame=True)
    ws = websocket.WebSocket()
    assert (ws.connected, ws.status, ws.headers, ws.subprotocol) == (False, None, None, None)
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.send("not connected")
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.recv()
    ws.close()  # nothing to close: no error
    ws.abort()
    previous = websocket.getdefaulttimeout()
    websocket.setdefaulttimeout(7)
    try:
        assert websocket.WebSocket().gettimeout() == 7
        assert websocket.WebSocket().timeout == 7
    finally:
        websocket.setdefaulttimeout(previous)
    with refused_port() as port, pytest.raises(ConnectionRefusedError):
        websocket.create_connection(f"ws://127.0.0.1:{port}/")


def test_sending_opcodes_iteration_and_the_end() -> None:
    received: list[Any] = []

    def record(connection: syncws.ServerConnection) -> None:
        connection.ping(b"from server").wait(WAIT)
        for message in connection:
            received.append(message)
            if message == "stop":
                connection.send("last")
                connection.close(1000, "done")

    class Mine(websocket.WebSocket):
        pass

    with run_server(record) as running:
        ws = websocket.create_connection(
            running.uri, timeout=WAIT, class_=Mine, sslopt=None, enable_multithread=True
        )
        assert isinstance(ws, Mine)
        assert ws.fileno() >= 0 and not ws.is_ssl()
        assert ws.getsubprotocol() is None
        assert ws.send("x", opcode=websocket.ABNF.OPCODE_PING) == 1
        assert ws.recv_data(control_frame=True)[0] == websocket.ABNF.OPCODE_PING
        assert ws.recv_data(control_frame=True) == (websocket.ABNF.OPCODE_PONG, b"x")
        ws.send("y", opcode=websocket.ABNF.OPCODE_PONG)
        ws.pong(b"z")
        with pytest.raises(ValueError, match="opcode"):
            ws.send("close?", opcode=websocket.ABNF.OPCODE_CLOSE)
        assert ws.send_text("t") == 1
        assert ws.send_bytes(b"bb") == 2
        ws.send("stop")
        assert ws.recv_data() == (websocket.ABNF.OPCODE_TEXT, b"last")
        assert ws.recv_data() == (websocket.ABNF.OPCODE_CLOSE, b"\x03\xe8done")
        assert list(ws) == []  # iteration ends at the server's close
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            next(ws)
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            ws.send("after")
        ws.send_close()
        other = websocket.create_connection(running.uri)
        other.send("stop")
        assert list(other) == ["last"]  # iteration ends at the server's close
    assert received == ["t", b"bb", "stop", "stop"]


def test_a_dropped_connection_and_abort() -> None:
    started = threading.Event()

    def wait(connection: syncws.ServerConnection) -> None:
        started.set()
        for _ in connection:
            pass

    with run_server(wait) as running:
        with websocket.create_connection(running.uri, redirect_limit=2) as ws:
            assert started.wait(WAIT)
            errors: list[BaseException] = []

            def reader() -> None:
                try:
                    ws.recv()
                except websocket.WebSocketException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=reader)
            thread.start()
            ws.abort()  # wakes the reader: no close frame came
            thread.join(WAIT)
        assert isinstance(errors[0], websocket.WebSocketConnectionClosedException)
        assert "lost" in str(errors[0])
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            list(ws)  # no close frame came: iteration raises

        sock = socket.create_connection(("127.0.0.1", running.port))
        ws = websocket.WebSocket()
        ws.connect(running.uri, socket=sock)
        assert ws.connected
        ws.shutdown()
        assert not ws.connected
