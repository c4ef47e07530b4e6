"""WebSocketApp: websocket-client's callbacks over syncws's blocking client."""

from __future__ import annotations

import select
import threading
from typing import Any

import pytest

import syncws
from syncws import WebSocketApp
from syncws.testing import run_server

from .threaded.helpers import WAIT, refused_port

pytestmark = pytest.mark.timeout(30)


class Recorder:
    """Callbacks that write down what happened."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.pinged = threading.Event()
        self.ponged = threading.Event()

    def on_open(self, app: WebSocketApp) -> None:
        self.events.append(("open",))

    def on_message(self, app: WebSocketApp, message: str | bytes) -> None:
        self.events.append(("message", message))

    def on_error(self, app: WebSocketApp, error: BaseException) -> None:
        self.events.append(("error", type(error).__name__))

    def on_close(self, app: WebSocketApp, code: int | None, reason: str | None) -> None:
        self.events.append(("close", code, reason))

    def on_ping(self, app: WebSocketApp, data: bytes) -> None:
        self.events.append(("ping", data))
        self.pinged.set()

    def on_pong(self, app: WebSocketApp, data: bytes) -> None:
        self.events.append(("pong", data))
        self.ponged.set()

    def app(self, url: str, **kwargs: Any) -> WebSocketApp:
        callbacks = {
            name: getattr(self, name)
            for name in ("on_open", "on_message", "on_error", "on_close", "on_ping", "on_pong")
        }
        return WebSocketApp(url, **(callbacks | kwargs))


def test_callbacks_in_order_and_a_clean_end() -> None:
    recorder = Recorder()
    with run_server() as running:
        app = recorder.app(running.uri)

        def on_open(app: WebSocketApp) -> None:
            recorder.on_open(app)
            app.send("text")
            app.send(b"bytes")
            app.send("as binary", opcode=0x2)
            app.send_text("t")
            app.send_bytes(b"b")

        def on_message(app: WebSocketApp, message: str | bytes) -> None:
            recorder.on_message(app, message)
            if message == b"b":
                app.close()

        app.on_open = on_open
        app.on_message = on_message
        assert app.run_forever() is False
    assert recorder.events == [
        ("open",),
        ("message", "text"),
        ("message", b"bytes"),
        ("message", b"as binary"),
        ("message", "t"),
        ("message", b"b"),
        ("close", 1000, ""),
    ]
    assert app.sock is None and not app.keep_running


def test_pings_and_pongs_are_reported() -> None:
    recorder = Recorder()

    def pinger(connection: syncws.ServerConnection) -> None:
        connection.ping(b"from server").wait(WAIT)
        for _ in connection:
            pass

    with run_server(pinger) as running:
        app = recorder.app(running.uri)

        def on_open(app: WebSocketApp) -> None:
            assert app.sock is not None
            app.sock.ping(b"from client")

        app.on_open = on_open
        thread = threading.Thread(target=app.run_forever)
        thread.start()
        assert recorder.pinged.wait(WAIT)
        assert recorder.ponged.wait(WAIT)
        app.close()
        thread.join(WAIT)
    assert ("ping", b"from server") in recorder.events
    assert ("pong", b"from client") in recorder.events


def test_errors_in_callbacks_go_to_on_error() -> None:
    recorder = Recorder()
    with run_server() as running:
        app = recorder.app(running.uri)

        def on_open(app: WebSocketApp) -> None:
            app.send("boom")
            raise KeyError("in on_open")

        def on_message(app: WebSocketApp, message: str | bytes) -> None:
            app.close()
            raise ValueError("in on_message")

        def on_error(app: WebSocketApp, error: BaseException) -> None:
            recorder.on_error(app, error)
            raise RuntimeError("on_error fails too: logged, not looped")

        app.on_open, app.on_message, app.on_error = on_open, on_message, on_error
        assert app.run_forever() is False
    assert recorder.events == [("error", "KeyError"), ("error", "ValueError"), ("close", 1000, "")]


def test_a_close_frame_is_not_an_error_a_drop_is_and_both_reconnect() -> None:
    # As websocket-client: the server's close frame, whatever its code, goes to
    # on_close only; a connection dropped without one goes to on_error first.
    recorder = Recorder()
    opened = []
    served = []

    def handler(connection: syncws.ServerConnection) -> None:
        served.append(connection)
        if len(served) == 1:
            connection.close(1011, "going down")
        else:
            connection._abort()  # TCP closed, no close frame

    with run_server(handler) as running:
        app = recorder.app(running.uri)

        def on_open(app: WebSocketApp) -> None:
            opened.append(True)
            if len(opened) == 3:
                app.close()

        app.on_open = on_open
        assert app.run_forever(reconnect=0.01) is True  # the drop was an error
    assert len(opened) == 3
    first_close = recorder.events.index(("close", 1011, "going down"))
    assert ("error", "ConnectionClosedError") not in recorder.events[:first_close]
    assert ("error", "ConnectionClosedError") in recorder.events[first_close:]
    assert ("close", None, None) in recorder.events[first_close:]


def test_a_close_frame_with_an_error_code_returns_false() -> None:
    recorder = Recorder()

    def handler(connection: syncws.ServerConnection) -> None:
        connection.close(4000, "bye")

    with run_server(handler) as running:
        assert recorder.app(running.uri).run_forever() is False
    assert [e for e in recorder.events if e[0] in ("error", "close")] == [("close", 4000, "bye")]


def test_connection_failures() -> None:
    recorder = Recorder()
    with refused_port() as port:
        app = recorder.app(f"ws://127.0.0.1:{port}/")
        assert app.run_forever(open_timeout=2) is True
    assert recorder.events == [("error", "ConnectionRefusedError")]

    def refuse(connection: syncws.ServerConnection, request: syncws.Request) -> syncws.Response:
        return connection.respond(404, "no such thing")

    recorder = Recorder()
    with run_server(process_request=refuse) as running:
        # 404 can't be fixed by retrying: reconnect or not, the loop ends.
        assert recorder.app(running.uri).run_forever(reconnect=0.01) is True
    assert recorder.events == [("error", "InvalidStatus")]


def test_reconnect_waits_can_be_cut_short_by_close() -> None:
    recorder = Recorder()
    with refused_port() as port:
        app = recorder.app(f"ws://127.0.0.1:{port}/")
        failed = threading.Event()
        app.on_error = lambda app, error: failed.set()
        thread = threading.Thread(target=app.run_forever, kwargs={"reconnect": 60})
        thread.start()
        assert failed.wait(WAIT)
        app.close()  # during the 60 s wait
        thread.join(WAIT)
    assert not thread.is_alive()


def test_headers_subprotocols_and_misuse() -> None:
    seen = []

    def record(connection: syncws.ServerConnection) -> None:
        assert connection.request is not None
        seen.append((connection.request.headers.get("X-A"), connection.subprotocol))

    with run_server(record, subprotocols=["v1"]) as running:
        for header in (["X-A: list"], {"X-A": "mapping"}):
            app = WebSocketApp(running.uri, header=header, subprotocols=["v1"])
            assert app.run_forever() is False
        errors: list[BaseException] = []
        app = WebSocketApp(running.uri, header=["no colon"], on_error=lambda a, e: errors.append(e))
        assert app.run_forever() is True
    assert seen == [("list", "v1"), ("mapping", "v1")]
    assert isinstance(errors[0], ValueError)
    with pytest.raises(syncws.InvalidState, match="not connected"):
        WebSocketApp("ws://127.0.0.1:1/").send("too early")


def test_run_forever_twice_at_once_and_ctrl_c() -> None:
    with run_server() as running:
        app = WebSocketApp(running.uri)
        closes = []

        def on_open(app: WebSocketApp) -> None:
            with pytest.raises(RuntimeError, match="already running"):
                app.run_forever()
            app.send("stop")

        def on_message(app: WebSocketApp, message: str | bytes) -> None:
            raise KeyboardInterrupt  # as Ctrl-C would, in the run_forever thread

        app.on_open, app.on_message = on_open, on_message
        app.on_close = lambda app, code, reason: closes.append(code)
        assert app.run_forever() is False
    assert closes == [1000]


def test_pings_come_in_wire_order_with_messages() -> None:
    # m1, m2, a ping, m3 on the wire: websocket-client calls back m1, m2, ping, m3.
    recorder = Recorder()
    sent = threading.Event()

    def talker(connection: syncws.ServerConnection) -> None:
        connection.send("m1")
        connection.send("m2")
        connection.ping(b"p")
        connection.send("m3")
        sent.set()
        for _ in connection:
            pass

    with run_server(talker) as running:
        app = recorder.app(running.uri)

        def on_open(app: WebSocketApp) -> None:
            recorder.on_open(app)
            assert sent.wait(WAIT)  # everything is on its way before the first report

        def on_message(app: WebSocketApp, message: str | bytes) -> None:
            recorder.on_message(app, message)
            if message == "m3":
                app.close()

        app.on_open, app.on_message = on_open, on_message
        assert app.run_forever() is False
    assert recorder.events == [
        ("open",),
        ("message", "m1"),
        ("message", "m2"),
        ("ping", b"p"),
        ("message", "m3"),
        ("close", 1000, ""),
    ]


class _RecordedWaits(threading.Event):
    """An app's stop event that notes each reconnect delay and stops after ``turns`` waits."""

    def __init__(self, turns: int) -> None:
        super().__init__()
        self.delays: list[float] = []
        self.turns = turns

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.delays.append(timeout)
        return len(self.delays) >= self.turns


def test_reconnect_waits_the_delay_first_then_never_less() -> None:
    # websocket-client's reconnect=5 waits 5 s; jitter must not shorten it (it was 2.8 s).
    with refused_port() as port:
        app = WebSocketApp(f"ws://127.0.0.1:{port}/")
        waits = _RecordedWaits(turns=6)
        app._stop = waits
        assert app.run_forever(reconnect=5) is True
    assert waits.delays[0] == 5
    assert all(5 <= delay <= 30 for delay in waits.delays)
    assert waits.delays[-1] > 5  # it backs off


class SelectLoop:
    """The smallest real event loop with rel's interface: read(), signal(), abort(), dispatch()."""

    def __init__(self) -> None:
        self.readers: dict[Any, Any] = {}
        self.signals: list[int] = []
        self.running = False

    def read(self, sock: Any, callback: Any) -> None:
        self.readers[sock] = callback

    def signal(self, number: int, callback: Any) -> None:
        self.signals.append(number)

    def abort(self) -> None:
        self.running = False

    def dispatch(self) -> None:
        self.running = True
        while self.running and self.readers:
            ready, _, _ = select.select(list(self.readers), [], [], WAIT)
            assert ready, "the app's loop posted nothing in time"
            for sock in ready:
                if not self.readers[sock]():
                    del self.readers[sock]


def test_run_forever_with_a_dispatcher_runs_callbacks_in_its_thread() -> None:
    recorder = Recorder()
    threads: set[threading.Thread] = set()
    loop = SelectLoop()
    with run_server() as running:
        app = recorder.app(running.uri)

        def on_open(app: WebSocketApp) -> None:
            threads.add(threading.current_thread())
            recorder.on_open(app)
            app.send("one")
            app.send("two")

        def on_message(app: WebSocketApp, message: str | bytes) -> None:
            threads.add(threading.current_thread())
            recorder.on_message(app, message)
            if message == "two":
                app.close()
            if message == "one":
                raise ValueError("from a callback")

        app.on_open, app.on_message = on_open, on_message
        assert app.run_forever(dispatcher=loop) is False  # at once
        assert loop.signals == [2]  # Ctrl-C stops the event loop, as websocket-client sets
        loop.dispatch()  # returns when the app's loop ended
        assert app.dispatcher_thread is not None
        app.dispatcher_thread.join(WAIT)
    assert threads == {threading.current_thread()}
    assert recorder.events == [
        ("open",),
        ("message", "one"),
        ("error", "ValueError"),
        ("message", "two"),
        ("close", 1000, ""),
    ]
