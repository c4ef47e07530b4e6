"""The hand-off's parts, in-process: what each server's environ gives, and the hooks.

The servers themselves run for real in test_servers.py (subprocesses, where
coverage isn't measured); here the same paths run on socket pairs.
"""

from __future__ import annotations

import socket
import sys
import threading
import types
from typing import Any

import pytest

import syncws
from syncws import _handoff, wsgi

from ..threaded.helpers import WAIT
from .test_wsgi import environ_for


def test_eventlet_input_and_its_reader() -> None:
    left, right = socket.socketpair()
    with left, right, left.makefile("rb") as reader:

        class EventletInput:
            rfile = reader

            def get_socket(self) -> socket.socket:
                return left

        handoff = _handoff.take({"eventlet.input": EventletInput()})
        assert handoff is not None
        with handoff.sock:
            assert not handoff.late
            handoff.sock.sendall(b"ours")
            assert right.recv(10) == b"ours"
        handoff.release()


def test_uwsgi_connection_fd_and_late_release(monkeypatch: pytest.MonkeyPatch) -> None:
    left, right = socket.socketpair()
    with left, right:
        monkeypatch.setitem(sys.modules, "uwsgi", types.SimpleNamespace(connection_fd=left.fileno))
        handoff = _handoff.take({"uwsgi.version": b"2.0"})
        assert handoff is not None
        with handoff.sock:
            # uWSGI writes its response after closing the iterable: the stand-in
            # stays writable until the WebSocket ends.
            assert handoff.late
            wsgi._Released(handoff).close()
            left.sendall(b"uWSGI's late headers")
            handoff.release()


def test_datagram_sockets_and_missing_readers_are_not_taken() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert _handoff.take({"werkzeug.socket": udp}) is None
    assert _handoff.take({"wsgi.input": object()}) is None
    assert _handoff.drain_gunicorn(None) == b""


def test_eventlet_patching_allows_two_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    patcher = types.SimpleNamespace(is_monkey_patched=lambda name: name == "select")
    debug = types.SimpleNamespace(hub_prevent_multiple_readers=calls.append)
    monkeypatch.setitem(sys.modules, "eventlet.patcher", patcher)
    monkeypatch.setitem(sys.modules, "eventlet.debug", debug)
    _handoff.allow_green_readers()
    assert calls == [False]


def test_a_client_gone_before_the_101_leaves_nothing_open() -> None:
    left, right = socket.socketpair()
    right.close()
    with left, pytest.raises(OSError):
        wsgi.upgrade(environ_for(**{"werkzeug.socket": left}), lambda connection: None)
    assert wsgi.connections() == set()


def test_uwsgi_atexit_hook_is_chained(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[str] = []
    uwsgi: Any = types.SimpleNamespace(atexit=lambda: called.append("previous"))
    wsgi._chain_uwsgi_atexit(uwsgi)
    uwsgi.atexit()  # no WebSocket open: nothing to wait for
    assert called == ["previous"]
    bare: Any = types.SimpleNamespace()
    wsgi._chain_uwsgi_atexit(bare)
    bare.atexit()


@pytest.mark.usefixtures("fresh_held")
def test_gunicorn_hook_without_a_previous_handler() -> None:
    import signal  # noqa: PLC0415

    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        wsgi.gunicorn_post_worker_init(types.SimpleNamespace(cfg=types.SimpleNamespace(threads=4)))
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        assert wsgi.shutdown_all(timeout=1)
        assert isinstance(syncws.UnsupportedServer("x"), Exception)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_callbacks_at_interpreter_exit_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.12 refuses new threads once the interpreter exits, where syncws.wsgi closes."""
    from syncws.threaded.runtime.worker import Worker  # noqa: PLC0415

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    called: list[int] = []
    worker = Worker()
    monkeypatch.setattr(threading.Thread, "start", refuse)
    worker.call_soon(lambda: called.append(1))
    monkeypatch.undo()
    done = threading.Event()
    worker.call_soon(done.set)  # the next one starts a thread as usual
    assert done.wait(WAIT)
    assert called == []


@pytest.mark.usefixtures("fresh_held")
def test_accept_inline_without_duplicable_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows (or TLS at the server): accept_inline() duplicates the server's socket itself."""
    from syncws.wsgi_inline import RefusedUpgrade  # noqa: PLC0415

    from .test_wsgi import handshake, read_all, werkzeug  # noqa: PLC0415

    monkeypatch.setattr(_handoff, "CAN_DUPLICATE", False)
    refused: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            with wsgi.accept_inline(environ) as ws:
                ws.send("inline")
                ws.recv(timeout=WAIT)
        except RefusedUpgrade as exc:
            refused.append(exc.status_code)
        start_response("200 OK", [])
        return []

    with werkzeug(app) as port:
        with syncws.connect(f"ws://127.0.0.1:{port}/") as client:
            assert client.recv(timeout=WAIT) == "inline"
            client.send("bye")
            with pytest.raises(syncws.ConnectionClosedOK):
                client.recv(timeout=WAIT)
        with handshake(port, "/", **{"Sec-WebSocket-Version": "8"}) as sock:
            assert read_all(sock).startswith(b"HTTP/1.1 426 ")
    assert refused == [426]


def test_take_finds_the_socket_behind_stream_wrappers() -> None:
    left, right = socket.socketpair()
    with left, right, left.makefile("rb") as reader:

        class GeventInput:  # gevent's pywsgi: the reader is its ``rfile``
            rfile = reader

        class LimitedStream:  # Django's runserver: the reader's bound ``read``
            _read = reader.read

        for stream in (reader, GeventInput(), LimitedStream()):
            assert _handoff.findable({"wsgi.input": stream})
        right.sendall(b"early")
        assert reader.peek(5)[:5] == b"early"  # now in the server's buffer
        handoff = _handoff.take({"wsgi.input": LimitedStream()})
        assert handoff is not None
        with handoff.sock:
            assert handoff.early == b"early"
            handoff.sock.sendall(b"to the client")
            assert right.recv(100) == b"to the client"
            # The server's descriptor is a stand-in now: EOF, and its writes go nowhere.
            assert left.recv(100) == b""
            left.sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            handoff.release()
            handoff.release()
            handoff.sock.sendall(b"still ours")
            assert right.recv(100) == b"still ours"
