"""Hostile and broken peers against a real server: each has one defined outcome.

For every case the server stays up and serves the next client, the outcome
(exception, close code, HTTP status) is the documented one, and the autouse
leak check of ``tests/conftest.py`` makes sure no thread or descriptor is
left behind. docs/security.rst lists these outcomes.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import random
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import syncws
from syncws import ConnectionClosedError, ServerConnection

from ..rawpeer import client_frame, handshake
from .helpers import WAIT, read_exactly, running_server

MASK = b"\x01\x02\x03\x04"


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as a close)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def hostile_only(handler: Callable[[ServerConnection], None]) -> Callable[[ServerConnection], None]:
    """Run ``handler`` for /hostile (the raw clients' path), echo everywhere else."""

    def route(connection: ServerConnection) -> None:
        assert connection.request is not None
        if connection.request.path == "/hostile":
            handler(connection)
        else:
            syncws.testing.echo(connection)

    return route


def assert_still_serving(server: syncws.Server) -> None:
    """Another client gets its echo: the hostile one harmed nobody else."""
    with syncws.connect(f"ws://127.0.0.1:{server.port}/", open_timeout=WAIT) as client:
        client.send("still here")
        assert client.recv(WAIT) == "still here"


class Recorder:
    """A handler that echoes and records how its connection ended."""

    def __init__(self) -> None:
        self.connection: ServerConnection | None = None
        self.opened = threading.Event()
        self.ended = threading.Event()
        self.error: BaseException | None = None

    def __call__(self, connection: ServerConnection) -> None:
        self.connection = connection
        self.opened.set()
        try:
            for message in connection:
                connection.send(message)
        except ConnectionClosedError as exc:
            self.error = exc
        finally:
            self.ended.set()

    def wait_error(self) -> ConnectionClosedError:
        assert self.ended.wait(WAIT)
        assert isinstance(self.error, ConnectionClosedError)
        return self.error


@contextlib.contextmanager
def recorded_server(**options: Any) -> Iterator[tuple[syncws.Server, Recorder]]:
    recorder = Recorder()
    with running_server(recorder, **options) as server:
        yield server, recorder


# -- broken handshakes -----------------------------------------------------------------------


def http_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        return read_until_closed(sock)


def test_random_bytes_instead_of_a_handshake_get_400() -> None:
    garbage = random.Random(7).randbytes(2000).replace(b"\r\n", b"..") + b"\r\n\r\n"
    with running_server(syncws.testing.echo) as server:
        reply = http_exchange(server.port, garbage)
        assert reply.startswith(b"HTTP/1.1 400 ")
        assert_still_serving(server)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", b"414"),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 200 + b"\r\n", b"431"),
        (b"GET / HTTP/1.1\r\n" + (b"X-Long: " + b"c" * 8000 + b"\r\n") * 9, b"431"),
    ],
    ids=["request line", "header line", "header count", "head size"],
)
def test_oversized_requests_are_refused(request_bytes: bytes, status: bytes) -> None:
    with running_server(syncws.testing.echo) as server:
        reply = http_exchange(server.port, request_bytes)
        assert reply.split(b" ")[1] == status, reply[:80]
        assert_still_serving(server)


def test_slowloris_handshake_is_dropped_at_open_timeout() -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    with (
        running_server(syncws.testing.echo, open_timeout=0.3) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock,
    ):
        sock.setblocking(False)
        closed = False
        for byte in request * 10:  # never finishes: 10 x 0.05 s per line is past the timeout
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed = True
                break
            with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                sock.send(bytes([byte]))
            time.sleep(0.01)  # the pace of the attack, not a synchronization
        if not closed:
            sock.settimeout(WAIT)
            assert read_until_closed(sock) == b""
        assert_still_serving(server)


# -- open connections that misbehave ----------------------------------------------------------


def test_silent_client_is_closed_by_keepalive_with_1011() -> None:
    with recorded_server(ping_interval=0.05, ping_timeout=0.1) as (server, recorder):
        sock = handshake(server.port, path="/hostile", timeout=WAIT).sock
        try:
            error = recorder.wait_error()  # the client never reads nor answers the pings
            assert error.sent_code == 1011
            assert error.sent_reason == "keepalive ping timeout"
        finally:
            sock.close()
        assert_still_serving(server)


@pytest.mark.parametrize(
    "before_reset",
    [
        client_frame(0x1, b"hello")[:4],  # in the middle of a frame
        client_frame(0x1, b"part one", fin=False),  # in the middle of a fragmented message
    ],
    ids=["mid-frame", "mid-message"],
)
def test_reset_in_the_middle_gives_1006(before_reset: bytes) -> None:
    with recorded_server() as (server, recorder):
        sock = handshake(server.port, path="/hostile", timeout=WAIT).sock
        assert recorder.opened.wait(WAIT)
        sock.sendall(before_reset)
        reset(sock)
        error = recorder.wait_error()
        assert error.received_code is None  # no close frame: code 1006
        assert recorder.connection is not None
        assert recorder.connection.close_code == 1006
        assert_still_serving(server)


def test_reset_during_the_closing_handshake() -> None:
    closed = threading.Event()
    codes: list[int | None] = []

    def close_at_once(connection: ServerConnection) -> None:
        connection.close(4000, "bye")  # the peer resets instead of answering
        codes.append(connection.close_code)
        closed.set()

    with running_server(hostile_only(close_at_once), close_timeout=WAIT) as server:
        sock = handshake(server.port, path="/hostile", timeout=WAIT).sock
        header = sock.recv(2)
        assert header[0] == 0x88  # our close frame arrived
        reset(sock)
        assert closed.wait(WAIT)
        assert codes == [1006]
        assert_still_serving(server)


def test_peer_that_never_answers_the_close_frame() -> None:
    closed = threading.Event()
    codes: list[int | None] = []

    def close_at_once(connection: ServerConnection) -> None:
        connection.close()
        codes.append(connection.close_code)
        closed.set()

    with running_server(hostile_only(close_at_once), close_timeout=0.2) as server:
        sock = handshake(server.port, path="/hostile", timeout=WAIT).sock
        try:
            assert closed.wait(WAIT)  # close() gave up after close_timeout
            assert codes == [1006]
            assert sock.recv(2)[0] == 0x88  # it did send its close frame
        finally:
            sock.close()
        assert_still_serving(server)


def test_peer_that_stops_reading() -> None:
    """send() blocks only up to its timeout; close() still ends within close_timeout."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def flood(connection: ServerConnection) -> None:
        try:
            sent = 0
            with pytest.raises(TimeoutError):
                while sent < 1000:
                    connection.send(b"x" * 65536, timeout=0.2)
                    sent += 1
            outcome["sent"] = sent
            connection.close()
            outcome["state"] = connection.state
        finally:
            done.set()

    with running_server(hostile_only(flood), close_timeout=0.2) as server:
        sock = handshake(server.port, rcvbuf=4096, path="/hostile", timeout=WAIT).sock
        try:
            assert done.wait(WAIT)
            assert outcome["sent"] < 1000
            assert outcome["state"] is syncws.State.CLOSED
        finally:
            sock.close()
        assert_still_serving(server)


def test_decompression_bomb_closes_with_1009() -> None:
    compressor = zlib.compressobj(wbits=-15)
    bomb = compressor.compress(b"\x00" * (50 * 2**20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 100_000
    with recorded_server(max_size=2**20, compression="deflate") as (server, recorder):
        sock = handshake(
            server.port, extensions="permessage-deflate", path="/hostile", timeout=WAIT
        ).sock
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(client_frame(0x2, bomb[:-4], rsv1=True))
            error = recorder.wait_error()
            assert error.sent_code == 1009
        finally:
            sock.close()
        assert_still_serving(server)


def test_ping_flood_from_a_peer_that_does_not_read() -> None:
    """Pongs stop piling up past write_limit; the peer gets answers again once it reads."""
    write_limit = 64 * 1024
    with recorded_server(write_limit=write_limit) as (server, recorder):
        sock = handshake(server.port, rcvbuf=4096, path="/hostile", timeout=WAIT).sock
        try:
            assert recorder.opened.wait(WAIT)
            ping = client_frame(0x9, b"p" * 125)
            for _ in range(10):  # 7.5 MB of pings, nothing read
                sock.sendall(ping * 5000)
            sock.sendall(client_frame(0x1, b"after the flood"))
            connection = recorder.connection
            assert connection is not None
            # Bounded: the limit, plus the pongs of one read (256 KiB at most).
            assert connection.buffered_amount <= write_limit + 300 * 1024
            received = b""
            while b"after the flood" not in received:
                chunk = sock.recv(65536)
                assert chunk, "the server closed before the message after the flood"
                received += chunk
        finally:
            sock.close()
        assert_still_serving(server)


@pytest.mark.parametrize(("payload", "outcome"), [(b"", 1009), (b"x", 1009), (b"y" * 16, None)])
def test_ten_thousand_tiny_fragments(payload: bytes, outcome: int | None) -> None:
    """Past max_fragments (1024), each frame must carry 16 bytes, or the message fails with 1009."""
    with recorded_server(max_size=None) as (server, recorder):
        sock = handshake(server.port, path="/hostile", timeout=WAIT).sock
        try:
            data = [client_frame(0x1, payload, fin=False)]
            data += [client_frame(0x0, payload, fin=False)] * 9998
            data.append(client_frame(0x0, payload))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"".join(data))
            if outcome is None:
                header = read_exactly(sock, 10)
                assert header[:2] == b"\x81\x7f"  # the echo, whole, with a 64-bit length
                assert struct.unpack("!Q", header[2:10])[0] == 16 * 10000
            else:
                error = recorder.wait_error()
                assert error.sent_code == outcome
        finally:
            sock.close()
        assert_still_serving(server)


# -- what never reaches a response or a log ----------------------------------------------------


def test_error_responses_never_reflect_the_request() -> None:
    marker = b"<script>alert(1)</script>"
    with running_server(syncws.testing.echo) as server:
        for request in (
            b"GET /" + marker + b" HTTP/1.0\r\n\r\n",  # bad version
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: " + marker + b"\r\n\r\n",  # bad upgrade
            b"GET / HTTP/1.1\r\n" + marker + b"\r\n\r\n",  # bad header line
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # plain HTTP: 426
        ):
            reply = http_exchange(server.port, request)
            assert reply[:10] in (b"HTTP/1.1 4", b"HTTP/1.1 5"), reply[:40]
            assert b"script" not in reply


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nInjected: 1", "a\rb", "a\x00b"])
def test_header_injection_is_refused(value: str) -> None:
    with running_server(syncws.testing.echo) as server:
        with pytest.raises(ValueError, match="header"):
            syncws.connect(f"ws://127.0.0.1:{server.port}/", additional_headers={"X-Custom": value})
        with pytest.raises(ValueError, match="header"):
            syncws.connect(f"ws://127.0.0.1:{server.port}/", user_agent_header=value)
        assert_still_serving(server)


def test_server_headers_with_cr_lf_give_500_not_injection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def inject(connection: ServerConnection, request: syncws.Request) -> syncws.Response:
        return connection.respond(200, "hi\n", headers={"X-Evil": "1\r\nSet-Cookie: pwned"})

    caplog.set_level(logging.ERROR, logger="syncws")
    with running_server(syncws.testing.echo, process_request=inject) as server:
        reply = http_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 500 ")
        assert b"pwned" not in reply


def test_credentials_are_sent_but_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[syncws.Request] = []

    def record(connection: ServerConnection) -> None:
        assert connection.request is not None
        seen.append(connection.request)
        for message in connection:
            connection.send(message)

    caplog.set_level(logging.DEBUG)
    logging.getLogger("syncws.frames").setLevel(logging.DEBUG)
    try:
        with (
            running_server(record) as server,
            syncws.connect(
                f"ws://alice:s3cr3t-pw@127.0.0.1:{server.port}/?token=t0ken-value",
                additional_headers={"Cookie": "session=c00kie-value"},
            ) as client,
        ):
            client.send("hi")
            assert client.recv(WAIT) == "hi"
    finally:
        logging.getLogger("syncws.frames").setLevel(logging.NOTSET)
    expected = "Basic " + base64.b64encode(b"alice:s3cr3t-pw").decode()
    assert seen[0].headers["Authorization"] == expected
    assert caplog.records, "DEBUG logging was on: something should have been logged"
    for secret in ("s3cr3t-pw", expected, "c00kie-value", "t0ken-value"):
        assert secret not in caplog.text
