"""The short roads of ``send()`` and ``recv()`` for a whole message of one frame.

``recv()``: a read that brings exactly one whole message returns it past the
inbox (``Protocol.receive_message``); anything else goes the usual way.
``send()``: a whole message is framed at once (``Protocol.frame_message``)
when no other sender, broadcast or frame log stands in the way. Each test
checks that the short road was taken, or not, and that the outcome is the
usual road's.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

import syncws
from syncws import ConnectionClosed
from syncws.protocol.connection import Protocol
from syncws.protocol.events import Ping
from syncws.protocol.framing import encode_frame
from syncws.threaded.connection import Connection, driver, reader

from .. import tls
from .helpers import WAIT, connected_pair, echo, raw_pair, running_server, wait_until

MASK = b"\x01\x02\x03\x04"


def client_bytes(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    return b"".join(encode_frame(opcode, payload, fin=fin, mask=MASK))


@pytest.fixture
def short_reads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Messages that came by ``recv()``'s short road."""
    taken: list[object] = []
    real = Protocol.receive_message

    def recording(self: Protocol, data: Any) -> object:
        message = real(self, data)
        if message is not None:
            taken.append(message)
        return message

    monkeypatch.setattr(Protocol, "receive_message", recording)
    return taken


@pytest.fixture
def short_sends(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each ``send()`` of a whole message got from its short road."""
    outcomes: list[bool] = []
    real = driver.queue_whole

    def recording(*args: Any) -> bool:
        outcome = real(*args)
        outcomes.append(outcome)
        return outcome

    monkeypatch.setattr(driver, "queue_whole", recording)
    return outcomes


@pytest.fixture
def raw() -> Iterator[tuple[Connection, socket.socket]]:
    connection, peer = raw_pair(ping_interval=None)
    yield connection, peer
    connection._abort()
    peer.close()


def recv_in_thread(connection: Connection, **kwargs: Any) -> tuple[threading.Thread, list[object]]:
    """A thread in ``recv()``, reading the socket itself once this returns."""
    got: list[object] = []

    def reading() -> None:
        try:
            got.append(connection.recv(timeout=WAIT, **kwargs))
        except Exception as exc:  # the test looks at it
            got.append(exc)

    thread = threading.Thread(target=reading)
    thread.start()
    wait_until(lambda: connection._reader_thread)
    return thread, got


def recv_after(connection: Connection, peer: socket.socket, data: bytes, **kwargs: Any) -> object:
    """What ``recv()`` returns (or raises) when ``data`` comes while it waits."""
    thread, got = recv_in_thread(connection, **kwargs)
    peer.sendall(data)
    thread.join(WAIT)
    (result,) = got
    return result


@pytest.mark.parametrize(
    ("opcode", "payload", "decode", "expected"),
    [
        (1, "café".encode(), None, "café"),
        (1, "café".encode(), False, "café".encode()),
        (2, b"\x00\xff", None, b"\x00\xff"),
        (2, b"abc", True, "abc"),
    ],
)
def test_recv_takes_a_whole_message_straight_from_the_read(  # noqa: PLR0917
    raw: tuple[Connection, socket.socket],
    short_reads: list[object],
    opcode: int,
    payload: bytes,
    decode: bool | None,
    expected: object,
) -> None:
    connection, peer = raw
    got = [recv_after(connection, peer, client_bytes(opcode, payload), decode=decode)]
    assert got == [expected]
    assert len(short_reads) == 1
    assert connection._inbox.arrived == 1 and connection._inbox.messages == 0
    # The socket went back to the background thread: a ping is answered.
    peer.sendall(client_bytes(9, b"p"))
    assert peer.recv(16) == b"\x8a\x01p"


def test_two_messages_in_one_read_take_the_usual_road(
    raw: tuple[Connection, socket.socket], short_reads: list[object]
) -> None:
    connection, peer = raw
    both = client_bytes(1, b"one") + client_bytes(1, b"two")  # one segment, one read
    got = [recv_after(connection, peer, both)]
    assert got == ["one"]
    assert connection.recv(timeout=WAIT) == "two"
    assert short_reads == []


def test_a_message_in_pieces_takes_the_usual_road(
    raw: tuple[Connection, socket.socket], short_reads: list[object]
) -> None:
    connection, peer = raw
    thread, got = recv_in_thread(connection)
    frame = client_bytes(2, b"x" * 1000)
    peer.sendall(frame[:10])  # half a frame: the usual road buffers it
    wait_until(lambda: connection.protocol._buffer != b"")
    peer.sendall(frame[10:])
    thread.join(WAIT)
    assert got == [b"x" * 1000]
    peer.sendall(client_bytes(1, b"he", fin=False))  # a fragmented message
    got = [recv_after(connection, peer, client_bytes(0, b"llo"))]
    assert got == ["hello"]
    assert short_reads == []


def test_a_small_message_after_a_big_frame_read_into_its_storage_comes_after_it(
    raw: tuple[Connection, socket.socket], short_reads: list[object]
) -> None:
    # The big frame completes through a read into its own storage, which fills
    # what it was given: the next read, one small frame, must not jump ahead.
    connection, peer = raw
    big = client_bytes(2, b"b" * 100_000)
    thread, got = recv_in_thread(connection)
    peer.sendall(big[:70_000])
    wait_until(lambda: connection.protocol.receive_buffer() is not None)
    peer.sendall(big[70_000:] + client_bytes(1, b"small"))
    thread.join(WAIT)
    assert got == [b"b" * 100_000]
    assert connection.recv(timeout=WAIT) == "small"
    assert connection.protocol._assembly is None  # let go once the stream ran dry


def test_a_pong_owed_goes_out_after_a_short_road_read(
    raw: tuple[Connection, socket.socket], short_reads: list[object]
) -> None:
    # A ping parsed while our backlog was over write_limit waits for its pong;
    # once the backlog is down, a read answers it, the short road's too.
    connection, peer = raw
    with connection._lock:
        connection.protocol.answer_pings = False
        connection.protocol.receive_data(client_bytes(9, b"owed"))
        connection.protocol.events_received()
        assert connection.protocol.pong_owed
    got = [recv_after(connection, peer, client_bytes(1, b"message"))]
    assert got == ["message"] and short_reads == ["message"]
    assert peer.recv(16) == b"\x8a\x04owed"


def test_bad_bytes_fail_as_on_the_usual_road(
    raw: tuple[Connection, socket.socket], short_reads: list[object]
) -> None:
    connection, peer = raw
    got = [recv_after(connection, peer, client_bytes(1, b"\xff"))]  # invalid UTF-8
    assert isinstance(got[0], ConnectionClosed)
    assert connection.protocol.close_sent is not None
    assert connection.protocol.close_sent.code == 1007
    assert short_reads == []


def test_a_ping_after_a_short_road_message_comes_after_it(
    raw: tuple[Connection, socket.socket], short_reads: list[object]
) -> None:
    # next_event() orders pings and messages by what arrived: the short road counts too.
    connection, peer = raw
    with connection._lock:
        connection._inbox.keep_controls()
    got = [recv_after(connection, peer, client_bytes(1, b"first"))]
    assert got == ["first"] and short_reads == ["first"]
    peer.sendall(client_bytes(9, b"p") + client_bytes(1, b"second"))
    assert connection.next_event(WAIT) == Ping(b"p")
    assert connection.next_event(WAIT) == "second"


# -- send -------------------------------------------------------------------------------


def test_send_frames_a_whole_message_at_once(short_sends: list[bool]) -> None:
    with connected_pair() as (client, server):
        client.send("hello")
        client.send(b"\x00\x01")
        client.send("as binary", text=False)
        client.send(b"as text", text=True)
        assert [server.recv(timeout=WAIT) for _ in range(4)] == [
            "hello",
            b"\x00\x01",
            b"as binary",
            "as text",
        ]
        assert short_sends == [True] * 4
        server.send(b"x" * 70_000)  # 64 KiB or more: the usual road
        assert client.recv(timeout=WAIT) == b"x" * 70_000
        assert short_sends[-1] is False


def test_a_message_behind_another_senders_waits_on_the_usual_road(
    short_sends: list[bool],
) -> None:
    with connected_pair() as (client, server):
        client._send_mutex.acquire()  # another thread is sending
        sending = threading.Thread(target=client.send, args=("behind",))
        sending.start()
        wait_until(lambda: short_sends == [False])
        client._send_mutex.release()
        sending.join(WAIT)
        assert server.recv(timeout=WAIT) == "behind"


def test_the_frame_log_and_held_broadcasts_take_the_usual_road(
    short_sends: list[bool], caplog: pytest.LogCaptureFixture
) -> None:
    frames = logging.getLogger("syncws.frames")
    with connected_pair() as (client, server):
        frames.setLevel(logging.DEBUG)
        try:
            with caplog.at_level(logging.DEBUG, "syncws.frames"):
                server.send("logged")
        finally:
            frames.setLevel(logging.NOTSET)
        assert "data frame of 6 bytes" in caplog.text
        assert client.recv(timeout=WAIT) == "logged"
        with server._lock:
            server._deferred = [(b"held", True, None)]  # as a broadcast during a fragmented send
        server.send("first")
        assert client.recv(timeout=WAIT) == "first"
        assert client.recv(timeout=WAIT) == "held"
        assert short_sends == [False, False]


def test_a_closed_connection_raises_on_the_usual_road(short_sends: list[bool]) -> None:
    with connected_pair() as (client, _server):
        client.close()
        with pytest.raises(ConnectionClosed):
            client.send("too late")
        assert short_sends == [False]


def test_a_short_road_message_counts_in_buffered_amount(
    raw: tuple[Connection, socket.socket], short_sends: list[bool]
) -> None:
    connection, peer = raw
    chunk = b"x" * 60_000
    sent = 0
    with pytest.raises(TimeoutError):
        while True:  # until the socket is full: the peer doesn't read
            connection.send(chunk, timeout=0.05)
            sent += 1
    assert all(short_sends)
    assert connection.buffered_amount > 0
    got = 0
    while got < (sent + 1) * (len(chunk) + 4):
        got += len(peer.recv(1 << 20))
    wait_until(lambda: connection.buffered_amount == 0)


def test_the_frame_log_keeps_recv_on_the_usual_road(
    raw: tuple[Connection, socket.socket],
    short_reads: list[object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    connection, peer = raw
    frames = logging.getLogger("syncws.frames")
    frames.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG, "syncws.frames"):
            got = [recv_after(connection, peer, client_bytes(1, b"logged"))]
    finally:
        frames.setLevel(logging.NOTSET)
    assert got == ["logged"]
    assert short_reads == []
    assert "< Text of 6 chars" in caplog.text


def test_bytes_held_in_tls_keep_recv_on_the_usual_road(monkeypatch: pytest.MonkeyPatch) -> None:
    # TLS may hold decrypted bytes that poll can't see: a read that leaves
    # some there goes the usual road, which reads on until TLS is empty.
    authority = trustme.CA()
    context = tls.server_context(authority, "localhost")
    with running_server(echo, ssl=context, compression=None) as server:
        uri = f"wss://localhost:{server.port}/"
        with syncws.connect(uri, ssl=tls.client_context(authority), compression=None) as client:
            taken: list[object] = []
            real_receive = Protocol.receive_message

            def recording(self: Protocol, data: Any) -> object:
                message = real_receive(self, data)
                if message is not None and self is client.protocol:
                    taken.append(message)
                return message

            monkeypatch.setattr(Protocol, "receive_message", recording)
            client.send("first")
            assert client.recv(WAIT) == "first"
            assert taken == ["first"]
            held = iter([1])  # the client's next read leaves a byte in TLS, as far as it knows
            real_pending = reader._tls_pending

            def pending(sock: socket.socket) -> int:
                if sock is client.socket:
                    return next(held, 0) or real_pending(sock)
                return real_pending(sock)

            monkeypatch.setattr(reader, "_tls_pending", pending)
            client.send("second")
            assert client.recv(WAIT) == "second"
            assert taken == ["first"]
