"""Connection logs (frames at DEBUG, never payloads), close during a blocked send, and a
connection's identity and addresses (made on first use)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest

from syncws import ConnectionClosed, State
from syncws.protocol import Protocol, Side
from syncws.threaded.connection import Connection

from .helpers import WAIT, connected_pair, connection_pair, raw_pair, wait_until

# -- logging -------------------------------------------------------------------------------------


def test_frames_are_logged_only_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    frames = logging.getLogger("syncws.frames")
    with caplog.at_level(logging.DEBUG, logger="syncws"), connected_pair() as (client, server):
        client.send("quiet")
        assert server.recv(WAIT) == "quiet"
        assert not [r for r in caplog.records if r.name == "syncws.frames"]
        frames.setLevel(logging.DEBUG)
        try:
            client.send(["loud", "er"])
            assert server.recv(WAIT) == "louder"
            client.close(1000, "bye")
            assert server.wait_closed(WAIT)
        finally:
            frames.setLevel(logging.NOTSET)
    messages = [r.getMessage() for r in caplog.records if r.name == "syncws.frames"]
    assert any("> data frame of 4 bytes, fin=False" in m for m in messages)
    assert any("< Text of 4 chars (more to come)" in m for m in messages)
    assert any("< Close 1000 'bye'" in m for m in messages)


def test_frame_logs_never_contain_payloads(caplog: pytest.LogCaptureFixture) -> None:
    """The frame log says what went by and its size, never what it carried."""
    frames = logging.getLogger("syncws.frames")
    frames.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG), connected_pair() as (client, server):
            client.send("secret-text")
            client.send(b"secret-binary")
            client.send(["secret-", "fragments"])
            assert client.ping(b"secret-ping").wait(WAIT)
            server.pong(b"secret-pong")
            server.send("secret-reply")
            assert [server.recv(WAIT) for _ in range(3)] == [
                "secret-text",
                b"secret-binary",
                "secret-fragments",
            ]
            assert client.recv(WAIT) == "secret-reply"
            client.close()
            assert server.wait_closed(WAIT)
    finally:
        frames.setLevel(logging.NOTSET)
    logged = [r for r in caplog.records if r.name == "syncws.frames"]
    assert any("Ping of 11 bytes" in r.getMessage() for r in logged)  # the log ran
    assert any("Text of 11 chars" in r.getMessage() for r in logged)
    leaks = [r.getMessage() for r in caplog.records if "secret" in r.getMessage()]
    assert not leaks


def test_close_while_another_thread_is_blocked_in_send() -> None:
    """close() returns (bounded by close_timeout) and the blocked send() raises ConnectionClosed."""
    connection, peer = raw_pair(close_timeout=0.2)
    started = threading.Event()
    outcome: list[BaseException | None] = []

    def send_until_blocked() -> None:
        started.set()
        try:
            for _ in range(1000):
                connection.send(b"x" * 65536)  # no timeout: blocks on the peer that doesn't read
            outcome.append(None)
        except ConnectionClosed as exc:
            outcome.append(exc)

    sender = threading.Thread(target=send_until_blocked)
    sender.start()
    try:
        assert started.wait(WAIT)
        wait_until(lambda: connection._io_users > 0)  # the sender waits in poll for the socket
        # The peer never answers: close_timeout bounds the wait (a hang fails after WAIT).
        closer = threading.Thread(target=connection.close, args=(1001, "going away"))
        closer.start()
        closer.join(WAIT)
        assert not closer.is_alive()
        assert connection.state is State.CLOSED
        sender.join(WAIT)
        assert not sender.is_alive()
        (error,) = outcome
        assert isinstance(error, ConnectionClosed)
    finally:
        connection._abort()
        peer.close()


# -- identity and addresses (made on first use) ----------------------------------------------


@contextlib.contextmanager
def tcp_pair() -> Iterator[tuple[Connection, socket.socket]]:
    """A server-side connection over real loopback TCP, and its peer's raw socket."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname(), timeout=WAIT)
        sock, _ = listener.accept()
    sock.setblocking(False)
    connection = Connection(sock, Protocol(Side.SERVER))
    connection.start_background()
    try:
        yield connection, peer
    finally:
        connection._abort()
        peer.close()


def test_addresses_are_known_after_close_even_if_never_asked_before() -> None:
    with tcp_pair() as (connection, peer):
        connection._abort()
        assert connection.socket.fileno() == -1  # the descriptor is closed
        assert connection.remote_address == peer.getsockname()
        assert connection.local_address == peer.getpeername()


def test_addresses_asked_while_open_stay_after_close() -> None:
    with tcp_pair() as (connection, peer):
        assert connection.remote_address == peer.getsockname()
        assert connection.local_address == peer.getpeername()
        connection._abort()
        assert connection.remote_address == peer.getsockname()
        assert connection.local_address == peer.getpeername()


def test_addresses_can_be_set() -> None:
    with tcp_pair() as (connection, _):
        connection.remote_address = ("192.0.2.1", 4242)
        connection._abort()
        assert connection.remote_address == ("192.0.2.1", 4242)
        connection.local_address = None
        assert connection.local_address is None


def test_id_is_stable_unique_and_the_same_for_every_thread() -> None:
    pairs = [connection_pair() for _ in range(20)]
    try:
        connections = [connection for pair in pairs for connection in pair]
        # Several threads asking for a new connection's id first all see the same one.
        barrier = threading.Barrier(4)
        seen: list[object] = []

        def ask(connection: Connection) -> None:
            barrier.wait(WAIT)
            seen.append(connection.id)

        threads = [threading.Thread(target=ask, args=(connections[0],)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert len(seen) == 4 and len(set(seen)) == 1
        ids = [connection.id for connection in connections]
        assert len(set(ids)) == len(connections)
        assert ids == [connection.id for connection in connections]
        assert all(isinstance(value, uuid.UUID) and value.version == 4 for value in ids)
        chosen = uuid.uuid4()
        connections[0].id = chosen  # an application may set its own
        assert connections[0].id == chosen
    finally:
        for pair in pairs:
            for connection in pair:
                connection._abort()


def test_log_records_carry_the_short_id(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="syncws"), connected_pair() as (client, _):
        assert client.logger.extra is not None
        assert dict(client.logger.extra) == {"connection_id": str(client.id)[:8]}
        assert len(client.logger.extra) == 1
        assert "other" not in client.logger.extra
        client.logger.info("hello")
    assert f"[{str(client.id)[:8]}] hello" in [r.getMessage() for r in caplog.records]


def test_a_connection_makes_no_id_until_asked(caplog: pytest.LogCaptureFixture) -> None:
    # The id is random bytes and a UUID: a server opening thousands of
    # connections makes none unless a log record or the application needs it.
    with caplog.at_level(logging.INFO, logger="syncws"), connected_pair() as (client, server):
        client.send("hi")
        assert server.recv(WAIT) == "hi"
        client.close()
        assert client._id is None and server._id is None
