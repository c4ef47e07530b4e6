"""websockets.sync programs, ported by changing imports, with websockets itself as the peer."""

from __future__ import annotations

import functools
import socket
import threading
from typing import Any

import pytest

import syncws
from syncws.protocol import Protocol, Side
from syncws.protocol.events import Text
from syncws.testing import run_server

from ..threaded.helpers import WAIT, wait_until
from .helpers import load, original, ported

pytestmark = pytest.mark.timeout(60)

# The router's example from websockets' documentation, in a program's shape.
ROUTER = """\
from websockets.sync.router import route
from werkzeug.routing import Map, Rule


def echo(websocket):
    for message in websocket:
        websocket.send(message)


def channel(websocket, channel_id):
    websocket.send(f"channel {channel_id} for {websocket.request.path}")


url_map = Map([
    Rule("/echo", endpoint=echo),
    Rule("/channel/<int:channel_id>", endpoint=channel),
    Rule("/old-echo", redirect_to="/echo"),
])

server = route(url_map, "127.0.0.1", 0, server_name=None)
"""


def serving(server: Any) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="ported-server")
    thread.start()
    return thread


def test_the_router_program_with_only_the_import_changed() -> None:
    client = original("websockets.sync.client")
    exceptions = original("websockets.exceptions")
    namespace = load(
        ported(ROUTER, "from websockets.sync.router import", "from syncws.router import"),
        "router_program",
    )
    server = namespace["server"]
    thread = serving(server)
    base = f"ws://127.0.0.1:{server.port}"
    try:
        with client.connect(f"{base}/echo") as websocket:
            websocket.send("hello")
            assert websocket.recv(timeout=WAIT) == "hello"
        with client.connect(f"{base}/channel/42?x=1") as websocket:
            assert websocket.recv(timeout=WAIT) == "channel 42 for /channel/42?x=1"
        with client.connect(f"{base}/old-echo") as websocket:  # a 302, followed
            websocket.send("moved")
            assert websocket.recv(timeout=WAIT) == "moved"
        with pytest.raises(exceptions.InvalidStatus) as refused:
            client.connect(f"{base}/nowhere")
        assert refused.value.response.status_code == 404
    finally:
        server.shutdown()
        thread.join(WAIT)


def redirect(port: int) -> str:
    """Where /old sends a client (with sock=, connect() doesn't follow redirects)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    with pytest.raises(syncws.InvalidStatus) as moved:
        syncws.connect(f"ws://127.0.0.1:{port}/old", sock=sock)
    assert moved.value.status_code == 302
    return moved.value.response.headers["Location"]


def test_route_keeps_process_request_and_runs_on_unix_sockets(tmp_path: Any) -> None:
    from werkzeug.routing import Map, Rule  # noqa: PLC0415 - Flask brings werkzeug

    from syncws.router import Router, route, unix_route  # noqa: PLC0415

    def hello(connection: syncws.ServerConnection) -> None:
        connection.send("hello")

    def teapot(connection: syncws.ServerConnection, request: syncws.Request) -> Any:
        if request.path == "/teapot":
            return connection.respond(418, "I'm a teapot\n")
        return None

    class Named(Router):
        def get_server_name(self, connection: Any, request: Any) -> str:
            return "example.com"

    url_map = Map([Rule("/", endpoint=hello), Rule("/old", redirect_to="/")])
    with route(url_map, "127.0.0.1", 0, process_request=teapot, create_router=Named) as server:
        thread = serving(server)
        try:
            with pytest.raises(syncws.InvalidStatus) as refused:
                syncws.connect(f"ws://127.0.0.1:{server.port}/teapot")
            assert refused.value.status_code == 418
            assert redirect(server.port) == "ws://example.com/"
        finally:
            server.shutdown()
            thread.join(WAIT)
    mine = functools.partial(syncws.ServerConnection)  # a factory is used as it is
    with route(
        url_map, "127.0.0.1", 0, server_name="example.org", create_connection=mine
    ) as server:
        thread = serving(server)
        try:
            assert redirect(server.port) == "ws://example.org/"
        finally:
            server.shutdown()
            thread.join(WAIT)
    with route(url_map, "127.0.0.1", 0, ssl=True) as server:
        thread = serving(server)
        try:
            assert redirect(server.port).startswith("wss://127.0.0.1:")
        finally:
            server.shutdown()
            thread.join(WAIT)
    path = str(tmp_path / "router.sock")
    with unix_route(url_map, path) as server:
        thread = serving(server)
        try:
            with syncws.unix_connect(path) as connection:
                assert connection.recv(timeout=WAIT) == "hello"
        finally:
            server.shutdown()
            thread.join(WAIT)
    with pytest.raises(TypeError, match="path"):
        unix_route(url_map)


# basic_auth's example from websockets' documentation.
BASIC_AUTH = """\
from websockets.sync.server import basic_auth, serve


def handler(websocket):
    websocket.send(f"Hello {websocket.username}!")


server = serve(
    handler,
    "127.0.0.1",
    0,
    process_request=basic_auth(
        realm="my dev server",
        credentials=("hello", "iloveyou"),
    ),
)
"""


def test_the_basic_auth_program_with_only_the_import_changed() -> None:
    client = original("websockets.sync.client")
    exceptions = original("websockets.exceptions")
    namespace = load(
        ported(BASIC_AUTH, "from websockets.sync.server import", "from syncws import"),
        "basic_auth_program",
    )
    server = namespace["server"]
    thread = serving(server)
    try:
        with client.connect(f"ws://hello:iloveyou@127.0.0.1:{server.port}/") as websocket:
            assert websocket.recv(timeout=WAIT) == "Hello hello!"
        for credentials in ("hello:wrong@", "", "nobody:iloveyou@"):
            with pytest.raises(exceptions.InvalidStatus) as refused:
                client.connect(f"ws://{credentials}127.0.0.1:{server.port}/")
            response = refused.value.response
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"] == (
                'Basic realm="my dev server", charset="UTF-8"'
            )
    finally:
        server.shutdown()
        thread.join(WAIT)


def test_basic_auth_forms_and_misuse() -> None:
    checked: list[tuple[str, str]] = []

    def check(user: str, password: str) -> bool:
        checked.append((user, password))
        return password == "ok"

    def whoami(connection: syncws.ServerConnection) -> None:
        connection.send(str(connection.username))

    for process_request in (
        syncws.basic_auth(check_credentials=check),
        syncws.basic_auth(credentials=[("a", "ok"), ("b", "ok")]),
    ):
        with run_server(whoami, process_request=process_request) as running:
            with syncws.connect(running.uri.replace("//", "//a:ok@")) as connection:
                assert connection.recv(timeout=WAIT) == "a"
            for header in ("Bearer xyz", "Basic !!!", "Basic bm9jb2xvbg=="):
                with pytest.raises(syncws.InvalidStatus) as refused:
                    syncws.connect(running.uri, additional_headers={"Authorization": header})
                assert refused.value.response.body == b"Unsupported credentials\n"
    assert checked == [("a", "ok")]
    with pytest.raises(ValueError, match="either"):
        syncws.basic_auth()
    with pytest.raises(ValueError, match="either"):
        syncws.basic_auth(credentials=("a", "b"), check_credentials=check)
    with pytest.raises(TypeError, match="pairs"):
        syncws.basic_auth(credentials=[("a",)])  # type: ignore[list-item]


# websockets 17's reconnecting client, as its documentation has it.
RECONNECTING = """\
from websockets.sync.client import connect
from websockets.exceptions import ConnectionClosed

received = []
for websocket in connect(URL, legacy=False, process_exception=retry_all):
    try:
        websocket.send("hi")
        received.append(websocket.recv())
        if len(received) == 2:
            break
    except ConnectionClosed:
        continue
"""


def test_the_reconnecting_client_with_only_the_imports_changed() -> None:
    server_module = original("websockets.sync.server")
    opened: list[int] = []

    def drop_first(websocket: Any) -> None:
        opened.append(1)
        message = websocket.recv()
        websocket.send(f"{message} #{len(opened)}")
        if len(opened) == 1:
            websocket.close(1011, "going down")
        else:
            for _ in websocket:
                pass

    def retry_all(exc: Exception) -> None:
        return None

    with server_module.serve(drop_first, "127.0.0.1", 0) as server:
        thread = serving(server)
        try:
            url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
            source = RECONNECTING.replace(
                "from websockets.sync.client import", "from syncws import"
            ).replace("from websockets.exceptions import", "from syncws import")
            namespace: dict[str, Any] = {"URL": url, "retry_all": retry_all}
            exec(source, namespace)
        finally:
            server.shutdown()
            thread.join(WAIT)
    assert namespace["received"] == ["hi #1", "hi #2"]


def test_reconnect_takes_websockets_keywords_at_the_call() -> None:
    with pytest.raises(TypeError, match="process_exception"):
        syncws.connect("ws://127.0.0.1:1/", legacy=False, process_exception=42)
    with pytest.raises(TypeError, match="'bogus'"):
        syncws.reconnect("ws://127.0.0.1:1/", bogus=1)
    with pytest.raises(TypeError, match="not both"):
        syncws.reconnect("ws://x/", backoff=syncws.Backoff(), reconnect_delays=lambda: iter([1]))

    seen: list[BaseException] = []

    def fatal_after_two(exc: Exception) -> Exception | None:
        seen.append(exc)
        if len(seen) == 2:
            raise RuntimeError("given up")  # raising works too, as in websockets
        return None

    delays: list[float] = []

    def no_wait() -> Any:
        while True:
            delays.append(0.0)
            yield 0.0

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        listener.close()  # a refused port, for a moment
        loop = syncws.reconnect(
            f"ws://127.0.0.1:{port}/", process_exception=fatal_after_two, reconnect_delays=no_wait
        )
        with pytest.raises(RuntimeError, match="given up"):
            next(iter(loop))
    assert len(seen) == 2 and delays == [0.0]
    loop = syncws.reconnect("ws://127.0.0.1:1/", process_exception=lambda exc: exc)
    with pytest.raises(OSError):
        next(iter(loop))
    with run_server() as running:
        once = syncws.connect(running.uri, legacy=False, open_timeout=WAIT)
        assert isinstance(once, syncws.reconnect)
        with once as connection:
            connection.send("one")
            assert connection.recv(timeout=WAIT) == "one"
            with pytest.raises(RuntimeError, match="reentrant"):
                once.__enter__()
        assert connection.close_code == 1000


def test_socket_keywords_and_a_websockets_style_connection_class() -> None:
    class Mine(syncws.ClientConnection):
        # websockets' ClientConnection.__init__: no write_limit, no logger.
        def __init__(
            self,
            sock: socket.socket,
            protocol: Any,
            *,
            ping_interval: float | None = 20,
            ping_timeout: float | None = 20,
            close_timeout: float | None = 10,
            max_queue: Any = 16,
        ) -> None:
            super().__init__(
                sock,
                protocol,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                close_timeout=close_timeout,
                max_queue=max_queue,
            )

    family = socket.AF_INET
    with run_server(family=family, reuse_port=True) as running:
        assert running.server.socket.family == family
        with syncws.connect(
            running.uri, create_connection=Mine, source_address=("127.0.0.1", 0)
        ) as connection:
            assert isinstance(connection, Mine)
            connection.send("x")
            assert connection.recv(timeout=WAIT) == "x"
        other = f"ws://example.invalid:{running.port}/"
        with syncws.connect(other, address=("127.0.0.1", running.port), timeout=WAIT) as c:
            assert c.request is not None and c.request.headers["Host"].startswith("example")
        with pytest.raises(TypeError, match="'bogus'"):
            syncws.connect(running.uri, bogus=1)
        with pytest.raises(TypeError, match="not both"), socket.socket() as sock:
            syncws.connect(running.uri, sock=sock, source_address=("127.0.0.1", 0))
        with pytest.raises(TypeError, match="proxy"):
            syncws.connect(running.uri, proxy="http://p:1", source_address=("127.0.0.1", 0))
    with pytest.raises(TypeError, match="'bogus'"):
        syncws.serve(lambda c: None, "127.0.0.1", 0, bogus=1)
    with socket.create_server(("127.0.0.1", 0)) as sock, pytest.raises(TypeError, match="not both"):
        syncws.serve(lambda c: None, sock=sock, reuse_port=True)


def test_ping_wait_false_on_a_timeout_against_websockets() -> None:
    server_module = original("websockets.sync.server")
    proceed = threading.Event()

    def slow(websocket: Any) -> None:
        proceed.wait(WAIT)
        for _ in websocket:
            pass

    with server_module.serve(slow, "127.0.0.1", 0) as server:
        thread = serving(server)
        try:
            port = server.socket.getsockname()[1]
            with syncws.connect(f"ws://127.0.0.1:{port}/") as connection:
                pong = connection.ping()
                if not pong.wait(WAIT):  # as written for websockets: False means no pong
                    pytest.fail("websockets answers pings in its background thread")
                assert pong.latency is not None and connection.latency == pong.latency
                proceed.set()
        finally:
            server.shutdown()
            thread.join(WAIT)


def test_max_size_and_max_queue_tuples_as_websockets_means_them() -> None:
    # max_size=(message, frame): a frame over the second number closes with 1009.
    with run_server(max_size=(100, 10)) as running:
        with syncws.connect(running.uri, compression=None) as connection:  # frames as sent
            connection.send(["0123456789"] * 3)  # 30 bytes in frames of 10: fine
            assert connection.recv(timeout=WAIT) == "0123456789" * 3
            connection.send("01234567890")  # one frame of 11 bytes
            with pytest.raises(syncws.ConnectionClosedError):
                connection.recv(timeout=WAIT)
        assert connection.close_code == 1009
    # max_queue=(high, low): reading stops at high waiting messages, resumes at low.
    sent = threading.Event()

    def flood(connection: syncws.ServerConnection) -> None:
        for n in range(8):
            connection.send(str(n))
        sent.set()
        for _ in connection:
            pass

    with run_server(flood) as running, syncws.connect(running.uri, max_queue=(4, 1)) as connection:
        assert sent.wait(WAIT)
        wait_until(lambda: connection._inbox.messages == 4)
        assert [connection.recv(timeout=WAIT) for _ in range(2)] == ["0", "1"]
        assert not connection._watched  # 2 waiting: above the low mark, still paused
        assert connection.recv(timeout=WAIT) == "2"
        assert connection._watched  # 1 waiting: reading resumed
        assert [connection.recv(timeout=WAIT) for _ in range(5)] == list("34567")


def test_limit_tuples_are_checked_at_the_call() -> None:
    from syncws.threaded.options import queue_marks  # noqa: PLC0415

    assert queue_marks((16, None)) == (16, 4)  # websockets' default low mark: high // 4
    assert queue_marks((None, 3)) == queue_marks(None)
    for bad, error in (((1, 2, 3), TypeError), ((4, 4), ValueError), ((0, 0), ValueError)):
        with pytest.raises(error):
            queue_marks(bad)
    with pytest.raises(TypeError, match="message, frame"):
        syncws.serve(lambda c: None, "127.0.0.1", 0, max_size=(1, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frame limit"):
        syncws.connect("ws://127.0.0.1:1/", max_size=(100, 0))


def test_the_protocol_limits_frames_not_control_frames() -> None:
    protocol = Protocol(Side.SERVER, max_size=None)
    protocol.max_frame_size = 4
    client = Protocol(Side.CLIENT)
    client.send_ping(b"longer than four")
    client.send_text(b"1234")
    protocol.receive_data(b"".join(client.data_to_send()))
    events = protocol.events_received()
    assert [type(e).__name__ for e in events] == ["Ping", "Text"]
    assert isinstance(events[1], Text) and events[1].data == "1234"
    client.send_text(b"12345")
    protocol.receive_data(b"".join(client.data_to_send()))
    assert protocol.protocol_error is not None and "frame size limit" in str(
        protocol.protocol_error
    )
