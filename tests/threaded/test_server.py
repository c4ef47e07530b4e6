"""The threaded server on real loopback sockets: handlers, hooks, limits, binding, shutdown."""

from __future__ import annotations

import errno
import gc
import logging
import signal
import socket
import struct
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest

import syncws
from syncws import InvalidStatus, Request, Response, ServerConnection
from syncws.threaded import server as server_module
from syncws.threaded.runtime.reactor import reactor

from .helpers import WAIT, echo, running_server, wait_until


def uri(server: syncws.Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def raw_http(port: int, request: bytes, host: str = "127.0.0.1") -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection((host, port), timeout=WAIT) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- handler lifetime ------------------------------------------------------------------------


def test_handler_return_closes_normally() -> None:
    with running_server(lambda connection: None) as server, syncws.connect(uri(server)) as client:
        with pytest.raises(syncws.ConnectionClosedOK):
            client.recv(WAIT)
        assert client.close_code == 1000


def test_handler_exception_closes_with_1011_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    def handler(connection: ServerConnection) -> None:
        raise RuntimeError("handler bug")

    with (
        caplog.at_level(logging.ERROR, logger="syncws"),
        running_server(handler) as server,
        syncws.connect(uri(server)) as client,
    ):
        with pytest.raises(syncws.ConnectionClosedError):
            client.recv(WAIT)
        assert client.close_code == 1011
    assert any("handler bug" in (r.exc_text or "") for r in caplog.records)


def test_handler_letting_connection_closed_escape_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(connection: ServerConnection) -> None:
        connection.recv()  # raises ConnectionClosedOK when the client leaves

    with (
        caplog.at_level(logging.ERROR, logger="syncws"),
        running_server(handler) as server,
        syncws.connect(uri(server)),
    ):
        pass
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_request_attributes_in_the_handler() -> None:
    seen: dict[str, object] = {}

    def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        seen["path"] = connection.request.path
        seen["header"] = connection.request.headers.get("X-Token")
        seen["remote"] = connection.remote_address
        seen["local"] = connection.local_address
        seen["server"] = connection.server
        connection.send("done")

    with running_server(handler) as server:
        with syncws.connect(
            uri(server, "/room/7?x=1"), additional_headers={"X-Token": "abc"}
        ) as client:
            assert client.recv(WAIT) == "done"
            assert seen["remote"] == client.local_address
            assert seen["local"] == client.remote_address
        assert seen["server"] is server
    assert seen["path"] == "/room/7?x=1"
    assert seen["header"] == "abc"


def test_addresses_of_a_server_connection_after_it_closed() -> None:
    # Never asked while open: the peer's address comes from accept(), ours is kept at close.
    accepted: list[ServerConnection] = []

    def handler(connection: ServerConnection) -> None:
        accepted.append(connection)

    with running_server(handler) as server, syncws.connect(uri(server)) as client:
        with pytest.raises(syncws.ConnectionClosedOK):
            client.recv(WAIT)
        (connection,) = accepted
        assert connection.wait_closed(WAIT)
        assert connection.remote_address == client.local_address
        assert connection.local_address == client.remote_address


def test_a_client_that_resets_before_its_request_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled = threading.Event()
    with (
        caplog.at_level(logging.INFO, logger="syncws"),
        running_server(lambda connection: handled.set()) as server,
    ):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST: the first-bytes check's peek fails
        wait_until(lambda: any("handshake failed" in r.getMessage() for r in caplog.records))
    assert not handled.is_set()


def test_the_handshake_thread_writes_the_response_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    # The 101 is written by the thread that read the request: asking the
    # reactor to write it too cost a system call (and a thread start when the
    # reactor was idle) on every handshake.
    watched: list[int] = []
    watch_write = reactor.watch_write
    monkeypatch.setattr(
        reactor, "watch_write", lambda fd, callback: (watched.append(fd), watch_write(fd, callback))
    )
    with running_server(echo) as server, syncws.connect(uri(server)) as client:
        client.send("hi")
        assert client.recv(WAIT) == "hi"
        assert watched == []


def test_a_handler_busy_before_its_first_recv_still_answers_pings() -> None:
    # The first read watch waits for the handler's recv(), a tick at most:
    # a handler doing something else first still has its pings answered.
    release = threading.Event()

    def handler(connection: ServerConnection) -> None:
        release.wait(WAIT)
        echo(connection)

    with running_server(handler) as server, syncws.connect(uri(server)) as client:
        client.ping(b"busy").wait(WAIT)
        release.set()
        client.send("then")
        assert client.recv(WAIT) == "then"


def test_connections_lists_open_connections() -> None:
    inside = threading.Event()
    release = threading.Event()

    def handler(connection: ServerConnection) -> None:
        inside.set()
        release.wait(WAIT)

    with running_server(handler) as server, syncws.connect(uri(server)):
        assert inside.wait(WAIT)
        assert len(server.connections) == 1
        release.set()
    assert server.connections == set()


def test_closed_connections_are_freed_without_the_garbage_collector() -> None:
    """No reference cycle outlives a connection: with keepalive and the closing timer
    armed, a closed connection (and its zlib state, 300 KiB with permessage-deflate)
    goes at once. Found by bench/load.py: 10,000 connections grew the server to 500 MiB
    between full collections."""
    server_side: list[weakref.ref[ServerConnection]] = []

    def handler(connection: ServerConnection) -> None:
        server_side.append(weakref.ref(connection))
        for message in connection:
            connection.send(message)

    gc.disable()
    try:
        with running_server(handler, ping_interval=WAIT, close_timeout=WAIT) as server:
            with syncws.connect(uri(server), ping_interval=WAIT) as client:
                client.send("hello")
                assert client.recv(WAIT) == "hello"
            client_side = weakref.ref(client)
            del client
            assert client_side() is None
            wait_until(lambda: bool(server_side) and server_side[0]() is None)
    finally:
        gc.enable()


# -- opening handshake ------------------------------------------------------------------------


def test_silent_client_is_dropped_after_open_timeout() -> None:
    with (
        running_server(echo, open_timeout=0.2) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock,
    ):
        assert sock.recv(100) == b""


def test_malformed_request_gets_400_and_server_stays_up() -> None:
    with running_server(echo) as server:
        reply = raw_http(server.port, b"NONSENSE\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400")
        with syncws.connect(uri(server)) as client:
            client.send("still up")
            assert client.recv(WAIT) == "still up"


def test_plain_http_get_gets_426() -> None:
    with running_server(echo) as server:
        reply = raw_http(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 426")


def health_check(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/healthz":
        return connection.respond(200, "OK\n")
    return None


def test_process_request_serves_http_on_the_same_port() -> None:
    with running_server(echo, process_request=health_check) as server:
        reply = raw_http(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200")
        assert reply.endswith(b"OK\n")
        with pytest.raises(InvalidStatus) as raised:
            syncws.connect(uri(server, "/healthz"))
        assert raised.value.status_code == 200
        assert raised.value.response.body == b"OK\n"
        with syncws.connect(uri(server, "/chat")) as client:
            client.send("upgraded")
            assert client.recv(WAIT) == "upgraded"


def test_process_request_failure_gives_500(caplog: pytest.LogCaptureFixture) -> None:
    def broken(connection: ServerConnection, request: Request) -> Response | None:
        raise ValueError("oops")

    with (
        caplog.at_level(logging.ERROR, logger="syncws"),
        running_server(echo, process_request=broken) as server,
        pytest.raises(InvalidStatus) as raised,
    ):
        syncws.connect(uri(server))
    assert raised.value.status_code == 500


def test_process_response_edits_headers() -> None:
    def add_header(
        connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        response.headers["X-Served-By"] = "test"
        return None

    with (
        running_server(echo, process_response=add_header) as server,
        syncws.connect(uri(server)) as client,
    ):
        assert client.response is not None
        assert client.response.headers["X-Served-By"] == "test"


def test_additional_headers_and_server_header() -> None:
    with (
        running_server(
            echo, additional_headers={"X-Extra": "1"}, server_header="custom/1"
        ) as server,
        syncws.connect(uri(server)) as client,
    ):
        assert client.response is not None
        assert client.response.headers["X-Extra"] == "1"
        assert client.response.headers["Server"] == "custom/1"


def test_subprotocol_selection() -> None:
    def select(connection: ServerConnection, offered: object) -> str | None:
        return "b"

    with (
        running_server(echo, subprotocols=["a", "b"]) as server,
        syncws.connect(uri(server), subprotocols=["x", "b", "a"]) as client,
    ):
        assert client.subprotocol == "b"
    with (
        running_server(echo, select_subprotocol=select) as server,
        syncws.connect(uri(server), subprotocols=["a", "b"]) as client,
    ):
        assert client.subprotocol == "b"


def test_origin_check() -> None:
    with running_server(echo, origins=["https://good.example"]) as server:
        with syncws.connect(uri(server), origin="https://good.example"):
            pass
        with pytest.raises(InvalidStatus) as raised:
            syncws.connect(uri(server), origin="https://evil.example")
        assert raised.value.status_code == 403


@pytest.mark.parametrize("compression", ["deflate", None])
def test_compression_setting(compression: str | None) -> None:
    extensions: list[object] = []

    def handler(connection: ServerConnection) -> None:
        extensions.extend(connection.protocol.extensions)
        echo(connection)

    with (
        running_server(handler, compression=compression) as server,
        syncws.connect(uri(server)) as client,
    ):
        client.send("x" * 1000)
        assert client.recv(WAIT) == "x" * 1000
        assert bool(client.protocol.extensions) == (compression is not None)
    assert bool(extensions) == (compression is not None)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="compression"):
        syncws.serve(echo, "127.0.0.1", 0, compression="gzip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_queue"):
        syncws.serve(echo, "127.0.0.1", 0, max_queue=0)
    with pytest.raises(TypeError, match="port"):
        syncws.serve(echo, "127.0.0.1")
    with socket.socket() as sock, pytest.raises(TypeError, match="either"):
        syncws.serve(echo, "127.0.0.1", 0, sock=sock)


def test_serve_on_a_socket_of_your_own() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    with syncws.serve(echo, sock=sock) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        with syncws.connect(uri(server)) as client:
            client.send("mine")
            assert client.recv(WAIT) == "mine"
        server.shutdown()
        thread.join(WAIT)


# -- limits ------------------------------------------------------------------------------------


def test_max_connections_refuses_with_503_then_recovers() -> None:
    inside = threading.Event()

    def handler(connection: ServerConnection) -> None:
        inside.set()
        for _ in connection:
            pass

    with running_server(handler, max_connections=1) as server:
        with syncws.connect(uri(server)):
            assert inside.wait(WAIT)
            with pytest.raises(InvalidStatus) as raised:
                syncws.connect(uri(server))
            assert raised.value.status_code == 503
            assert raised.value.response.headers["Retry-After"] == "1"
        # The first client left; once its handler's thread ends (no event says when:
        # until then the answer is still 503), a new client gets in.
        inside.clear()

        def gets_in() -> bool:
            try:
                with syncws.connect(uri(server)):
                    return True
            except InvalidStatus as exc:
                assert exc.status_code == 503
                return False

        wait_until(gets_in)
        assert inside.wait(WAIT)


# -- binding -------------------------------------------------------------------------------------


def test_no_host_listens_on_ipv4_and_ipv6() -> None:
    with syncws.serve(echo, port=0) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            with syncws.connect(f"ws://127.0.0.1:{server.port}/") as client:
                client.send("v4")
                assert client.recv(WAIT) == "v4"
            if socket.has_ipv6:
                with syncws.connect(f"ws://[::1]:{server.port}/") as client:
                    client.send("v6")
                    assert client.recv(WAIT) == "v6"
        finally:
            server.shutdown()
            thread.join(WAIT)


def test_ipv6_literal_host() -> None:
    with (
        running_server(echo, host="::1") as server,
        syncws.connect(f"ws://[::1]:{server.port}/") as client,
    ):
        client.send("v6")
        assert client.recv(WAIT) == "v6"


def test_port_in_use_has_a_clear_message() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="already listens") as raised:
            syncws.serve(echo, "127.0.0.1", port)
    assert raised.value.errno == errno.EADDRINUSE


def test_unavailable_address_has_a_clear_message() -> None:
    with pytest.raises(OSError, match="isn't configured") as raised:
        syncws.serve(echo, "192.0.2.1", 0)
    assert raised.value.errno == errno.EADDRNOTAVAIL


def test_unknown_host_name() -> None:
    with pytest.raises(OSError, match="cannot listen"):
        syncws.serve(echo, "no-such-host.invalid", 0)


def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    with syncws.unix_serve(echo, path) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        with syncws.unix_connect(path) as client:
            client.send("over unix")
            assert client.recv(WAIT) == "over unix"
        server.shutdown()
        thread.join(WAIT)
    assert not Path(path).exists()


def test_unix_serve_on_a_bad_path(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        syncws.unix_serve(echo, str(tmp_path / "missing" / "ws.sock"))


# -- shutdown ------------------------------------------------------------------------------------


def test_shutdown_closes_clients_with_1001() -> None:
    inside = threading.Event()

    def handler(connection: ServerConnection) -> None:
        inside.set()
        for _ in connection:
            pass

    with running_server(handler) as server:
        client = syncws.connect(uri(server))
        assert inside.wait(WAIT)
        server.shutdown()
        with pytest.raises(syncws.ConnectionClosedOK):
            client.recv(WAIT)
        assert client.close_code == 1001
        client.close()
        server.shutdown()  # idempotent


def test_shutdown_waits_for_a_stuck_handler_only_for_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler that never returns doesn't hold shutdown() past SHUTDOWN_GRACE."""
    monkeypatch.setattr(server_module, "SHUTDOWN_GRACE", 0.2)
    inside = threading.Event()
    release = threading.Event()
    returned = threading.Event()

    def stuck(connection: ServerConnection) -> None:
        inside.set()
        release.wait(WAIT)  # ignores the close, reads nothing: stuck elsewhere
        returned.set()

    server = syncws.serve(stuck, "127.0.0.1", 0)
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    try:
        with syncws.connect(uri(server)) as client:
            assert inside.wait(WAIT)
            assert returns(server.shutdown)
            assert not returned.is_set()  # shutdown() returned while the handler still ran
            # The connection itself was closed, with 1001, all the same.
            with pytest.raises(syncws.ConnectionClosedOK):
                client.recv(WAIT)
            assert client.close_code == 1001
    finally:
        release.set()
        serving.join(WAIT)
    assert returned.wait(WAIT)


def returns(call: Callable[[], object]) -> bool:
    """Run ``call`` in a thread: True if it returned, False if it still waits after WAIT.

    "At once" isn't timed (no test asserts on the clock): a call that waits for
    something that never comes fails here instead of hanging the test.
    """
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(WAIT)
    return not thread.is_alive()


def test_leaving_with_without_serve_forever_returns_at_once() -> None:
    server = syncws.serve(echo, "127.0.0.1", 0)
    # Leaving the with block shuts down: no serve_forever() to wait for.
    assert returns(lambda: server.__exit__(None, None, None))
    assert server.socket.fileno() == -1  # the listening socket is closed


def test_serve_forever_after_shutdown_returns_at_once() -> None:
    server = syncws.serve(echo, "127.0.0.1", 0)
    assert returns(server.shutdown)
    assert returns(server.serve_forever)
    assert server.socket.fileno() == -1  # the listening socket is closed


def test_serve_forever_twice_is_refused() -> None:
    with running_server(echo) as server, pytest.raises(syncws.InvalidState):
        server.serve_forever()


def test_shutdown_from_a_signal_handler_in_the_serving_thread() -> None:
    """SIGTERM-style: the handler runs in the thread that runs serve_forever()."""
    inside = threading.Event()

    def handler(connection: ServerConnection) -> None:
        inside.set()
        for _ in connection:
            pass

    with syncws.serve(handler, "127.0.0.1", 0) as server:
        previous = signal.signal(signal.SIGUSR1, lambda signum, frame: server.shutdown())
        codes: list[int | None] = []

        def client_then_signal() -> None:
            with syncws.connect(uri(server)) as client:
                inside.wait(WAIT)
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)
                with pytest.raises(syncws.ConnectionClosedOK):
                    client.recv(WAIT)
                codes.append(client.close_code)

        thread = threading.Thread(target=client_then_signal)
        thread.start()
        try:
            server.serve_forever()  # returns once the signal handler asked
        finally:
            signal.signal(signal.SIGUSR1, previous)
            thread.join(WAIT)
    assert codes == [1001]
