"""The blocking connection API over socketpairs: send, recv, ping, close, keepalive, limits."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from syncws import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    State,
)
from syncws.protocol import Protocol, ServerProtocol, Side
from syncws.threaded.connection import Connection
from syncws.threaded.connection import reader as reader_module

from ..rawpeer import client_frame, read_frame
from .helpers import (
    WAIT,
    connected_pair,
    raw_pair,
    wait_until,
)

# -- send and recv ---------------------------------------------------------------------


def test_text_and_binary_round_trip() -> None:
    with connected_pair() as (client, server):
        client.send("café")
        client.send(b"\x00\xff")
        client.send(bytearray(b"ba"))
        client.send(memoryview(b"mv"))
        assert server.recv(WAIT) == "café"
        assert server.recv(WAIT) == b"\x00\xff"
        assert server.recv(WAIT) == b"ba"
        assert server.recv(WAIT) == b"mv"


def test_text_flag_overrides_the_type() -> None:
    with connected_pair() as (client, server):
        client.send(b"bytes as text", text=True)
        client.send("text as bytes", text=False)
        assert server.recv(WAIT) == "bytes as text"
        assert server.recv(WAIT) == b"text as bytes"


def test_decode_flag() -> None:
    with connected_pair() as (client, server):
        client.send("é")
        client.send("é".encode(), text=False)
        client.send(["a", "b"])
        client.send([b"c", b"d"])
        assert server.recv(WAIT, decode=False) == "é".encode()
        assert server.recv(WAIT, decode=True) == "é"
        assert server.recv(WAIT, decode=False) == b"ab"
        assert server.recv(WAIT, decode=True) == "cd"


def test_iterable_sends_one_fragmented_message() -> None:
    with connected_pair() as (client, server):
        client.send(["a", "b", "c"])
        client.send(iter([b"x", bytearray(b"y")]))
        client.send([])  # nothing to send
        client.send("after")
        assert server.recv(WAIT) == "abc"
        assert server.recv(WAIT) == b"xy"
        assert server.recv(WAIT) == "after"


def test_recv_streaming_yields_fragments() -> None:
    with connected_pair() as (client, server):
        client.send(["a", "b"])
        client.send(b"whole")
        assert list(server.recv_streaming()) == ["a", "b"]  # no trailing "" (issue 21.7)
        assert list(server.recv_streaming(decode=False)) == [b"whole"]


@pytest.mark.parametrize("message", [{"a": 1}, 42, None])
def test_send_refuses_other_types(message: object) -> None:
    with connected_pair() as (client, _server), pytest.raises(TypeError):
        client.send(message)  # type: ignore[arg-type]


@pytest.mark.parametrize("pieces", [["a", b"b"], [b"a", "b"], [1, 2]])
def test_mixed_fragments_fail_the_connection(pieces: list[object]) -> None:
    with connected_pair() as (client, server):
        with pytest.raises(TypeError):
            client.send(pieces)  # type: ignore[arg-type]
        if not isinstance(pieces[0], int):
            with pytest.raises(ConnectionClosedError) as raised:
                server.recv(WAIT)
            assert raised.value.received_code == 1011


def test_send_from_many_threads_never_interleaves() -> None:
    with connected_pair() as (client, server):
        count = 50

        def sender(name: str) -> None:
            for index in range(count):
                if index % 2:
                    client.send([f"{name}:", str(index)])
                else:
                    client.send(f"{name}:{index}")

        threads = [threading.Thread(target=sender, args=(str(n),)) for n in range(4)]
        received: list[str] = []
        reader = threading.Thread(
            target=lambda: received.extend(str(server.recv(WAIT)) for _ in range(4 * count))
        )
        reader.start()
        for thread in threads:
            thread.start()
        for thread in (*threads, reader):
            thread.join(WAIT)
        for name in range(4):
            mine = [m for m in received if m.startswith(f"{name}:")]
            assert mine == [f"{name}:{index}" for index in range(count)]


# -- recv timeouts -------------------------------------------------------------------------


def test_recv_timeout_then_later_success() -> None:
    with connected_pair() as (client, server):
        with pytest.raises(TimeoutError, match=r"timed out after 0\.05s"):
            server.recv(timeout=0.05)
        client.send("later")
        assert server.recv(WAIT) == "later"


def test_recv_timeout_zero_returns_a_queued_message() -> None:
    with connected_pair() as (client, server):
        client.send("queued")
        client.ping().wait(WAIT)  # the message arrived before the pong
        assert server.recv(timeout=0) == "queued"
        with pytest.raises(TimeoutError):
            server.recv(timeout=0)


def test_recv_timeout_mid_message_loses_nothing() -> None:
    connection, peer = raw_pair()
    try:
        peer.sendall(client_frame(0x1, b"hel", fin=False))
        with pytest.raises(TimeoutError):
            connection.recv(timeout=0.05)
        peer.sendall(client_frame(0x0, b"lo"))
        assert connection.recv(WAIT) == "hello"
    finally:
        connection._abort()
        peer.close()


def test_concurrent_recv_raises() -> None:
    with connected_pair() as (client, server):
        entered = threading.Event()
        results: list[object] = []

        def first() -> None:
            entered.set()
            results.append(server.recv(WAIT))

        thread = threading.Thread(target=first)
        thread.start()
        entered.wait(WAIT)
        # The first thread may not be inside recv() yet: retry until it is (bounded).

        def refused() -> bool:
            try:
                server.recv(timeout=0)
            except ConcurrencyError as exc:
                assert "another thread" in str(exc)
                return True
            except TimeoutError:
                return False
            raise AssertionError("recv() returned a message nobody sent")

        wait_until(refused)
        client.send("for the first")
        thread.join(WAIT)
        assert results == ["for the first"]


# -- closing -------------------------------------------------------------------------------


def test_close_from_another_thread_unblocks_recv() -> None:
    with connected_pair() as (client, server):
        outcome: list[BaseException] = []
        started = threading.Event()

        def reader() -> None:
            started.set()
            try:
                server.recv()
            except ConnectionClosed as exc:
                outcome.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        started.wait(WAIT)
        server.close(1000, "bye")
        thread.join(WAIT)
        assert isinstance(outcome[0], ConnectionClosedOK)
        assert client.wait_closed(WAIT)
        assert client.close_code == 1000
        assert client.close_reason == "bye"
        assert client.closed_by_us is False
        assert server.closed_by_us is True


def test_iteration_ends_on_normal_close() -> None:
    with connected_pair() as (client, server):
        client.send("one")
        client.send("two")
        client.close()
        assert list(server) == ["one", "two"]
        # The loop ends with the close frame; TCP closes right after.
        assert server.wait_closed(WAIT)
        assert server.state is State.CLOSED


def test_iteration_raises_on_error_close() -> None:
    with connected_pair() as (client, server):
        client.close(4000, "app error")
        with pytest.raises(ConnectionClosedError) as raised:
            list(server)
        assert raised.value.received_code == 4000
        assert raised.value.received_reason == "app error"


def test_send_after_close_raises_at_once() -> None:
    with connected_pair() as (client, server):
        client.close(1001, "going")
        with pytest.raises(ConnectionClosedOK) as raised:
            client.send("late")
        assert raised.value.sent_code == 1001
        with pytest.raises(ConnectionClosed):
            server.send("late")
        with pytest.raises(ConnectionClosed):
            client.ping()
        with pytest.raises(ConnectionClosed):
            client.pong()


def test_close_is_idempotent_and_context_manager_closes() -> None:
    with connected_pair() as (client, server):
        with client:
            pass
        client.close()
        assert client.wait_closed(WAIT)
        assert server.wait_closed(WAIT)
        assert client.close_code == 1000


def test_context_manager_closes_with_1011_on_error() -> None:
    with connected_pair() as (client, server):
        with pytest.raises(RuntimeError), client:
            raise RuntimeError("boom")
        assert server.wait_closed(WAIT)
        assert server.close_code == 1011


def test_close_times_out_when_the_peer_never_answers() -> None:
    connection, peer = raw_pair(close_timeout=0.1)
    try:
        connection.close()
        assert connection.state is State.CLOSED
        assert connection.close_code == 1006
        assert peer.recv(100).startswith(b"\x88")  # our close frame went out
    finally:
        peer.close()


def test_close_deadline_holds_when_peer_closes_and_keeps_tcp_open() -> None:
    """The peer sends Close, then neither answers nor closes TCP (as a client would)."""
    connection, peer = raw_pair(close_timeout=0.1, ping_interval=None)
    try:
        peer.sendall(client_frame(0x8, b"\x03\xe8"))
        with pytest.raises(ConnectionClosedOK):
            connection.recv(WAIT)
        assert connection.wait_closed(WAIT)
    finally:
        peer.close()


def test_peer_vanishing_gives_1006() -> None:
    connection, peer = raw_pair()
    peer.close()
    with pytest.raises(ConnectionClosedError) as raised:
        connection.recv(WAIT)
    assert raised.value.code == 1006
    assert connection.close_code == 1006


def test_messages_received_before_close_are_still_returned() -> None:
    with connected_pair() as (client, server):
        client.send("last words")
        client.close()
        assert server.wait_closed(WAIT)
        assert server.recv(WAIT) == "last words"
        with pytest.raises(ConnectionClosedOK):
            server.recv(WAIT)


def test_protocol_error_closes_with_1002() -> None:
    connection, peer = raw_pair()
    try:
        peer.sendall(b"\x81\x05hello")  # unmasked frame from a client
        with pytest.raises(ConnectionClosedError) as raised:
            connection.recv(WAIT)
        assert raised.value.sent_code == 1002
        assert raised.value.__cause__ is not None
    finally:
        peer.close()


def test_errors_surface_in_stream_order() -> None:
    """A message received before a protocol error can still be answered (Autobahn 3.2)."""
    connection, peer = raw_pair()
    try:
        bad_opcode = client_frame(0x5, b"")
        peer.sendall(client_frame(0x1, b"first") + bad_opcode + client_frame(0x9, b"ping"))
        assert connection.recv(WAIT) == "first"
        connection.send("answer")  # still allowed: the error comes after
        with pytest.raises(ConnectionClosedError) as raised:
            connection.recv(WAIT)
        assert raised.value.sent_code == 1002
        peer.settimeout(WAIT)
        received = b""
        while len(received) < 12:
            received += peer.recv(100)
        assert received.startswith(b"\x81\x06answer\x88")
        assert received[10:12] == b"\x03\xea"  # then a close frame with 1002
    finally:
        peer.close()


def test_error_right_away_fails_at_once() -> None:
    connection, peer = raw_pair()
    try:
        peer.sendall(client_frame(0x5, b""))
        peer.settimeout(WAIT)
        frame = peer.recv(100)
        assert frame[0] == 0x88
        assert frame[2:4] == b"\x03\xea"  # close 1002
        assert peer.recv(100) == b""  # then FIN
    finally:
        peer.close()
    assert connection.wait_closed(WAIT)


def test_message_too_big_closes_with_1009() -> None:
    with connected_pair(max_size=1000) as (client, server):
        with contextlib.suppress(ConnectionClosedError):  # the server may close first
            client.send(b"x" * 1001)
        with pytest.raises(ConnectionClosedError) as raised:
            server.recv(WAIT)
        assert raised.value.sent_code == 1009


def test_state_and_attributes() -> None:
    with connected_pair() as (client, server):
        assert client.state is State.OPEN
        assert client.subprotocol is None
        assert client.close_code is None
        assert client.close_reason is None
        assert client.closed_by_us is None
        assert client.id != server.id
        assert client.request is None


def test_send_before_the_handshake_is_refused() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    connection = Connection(ours, ServerProtocol())
    try:
        with pytest.raises(InvalidState):
            connection.send("too early")
    finally:
        connection.close()
        theirs.close()


def test_max_queue_must_be_positive() -> None:
    ours, theirs = socket.socketpair()
    try:
        with pytest.raises(ValueError, match="max_queue"):
            Connection(ours, Protocol(Side.SERVER), max_queue=0)
    finally:
        ours.close()
        theirs.close()


# -- pings ---------------------------------------------------------------------------------


def test_ping_waits_for_the_pong() -> None:
    with connected_pair() as (client, server):
        pending = client.ping()
        assert pending.wait(WAIT) is True
        latency = pending.latency
        assert latency is not None and latency >= 0
        assert client.latency == latency
        assert client.ping().round_trip(WAIT) >= 0
        waiter = server.ping("custom")
        assert waiter.wait(WAIT)
        assert waiter.done()


def test_ping_with_the_same_data_twice_is_refused() -> None:
    connection, peer = raw_pair()
    try:
        waiter = connection.ping(b"same")
        with pytest.raises(ConcurrencyError):
            connection.ping(b"same")
        assert waiter.wait(0.01) is False
        with pytest.raises(TimeoutError):
            waiter.round_trip(0.01)
    finally:
        connection._abort()
        peer.close()
    with pytest.raises(ConnectionClosed):
        waiter.wait(WAIT)


def test_a_pong_acknowledges_earlier_pings() -> None:
    connection, peer = raw_pair()
    try:
        first = connection.ping(b"1")
        second = connection.ping(b"2")
        peer.sendall(client_frame(0xA, b"2"))
        assert second.wait(WAIT)
        assert first.done()
        peer.sendall(client_frame(0xA, b"unsolicited"))
        peer.sendall(client_frame(0x1, b"ok"))
        assert connection.recv(WAIT) == "ok"
    finally:
        connection._abort()
        peer.close()


def test_pings_are_answered_while_the_application_is_busy() -> None:
    """No thread is in recv(): the reactor answers."""
    with connected_pair() as (client, server):
        assert client.ping().wait(WAIT)
        assert server.ping().wait(WAIT)
        client.pong(b"heartbeat")


def test_keepalive_pings_an_idle_peer() -> None:
    connection, peer = raw_pair(ping_interval=0.02, ping_timeout=WAIT)
    try:
        peer.settimeout(WAIT)
        header = peer.recv(2)
        assert header[0] == 0x89  # a ping, unprompted
        payload = peer.recv(header[1])
        peer.sendall(client_frame(0xA, payload))
        peer.sendall(client_frame(0x1, b"still here"))
        assert connection.recv(WAIT) == "still here"
        assert connection.latency > 0
        assert connection.state is State.OPEN
    finally:
        connection._abort()
        peer.close()


def test_keepalive_pings_again_once_the_pong_came() -> None:
    """ping_timeout longer than ping_interval: each pong lets the next ping go out."""
    connection, peer = raw_pair(ping_interval=0.02, ping_timeout=60)
    try:
        peer.settimeout(WAIT)
        for _ in range(3):  # without the pong clearing the timeout, the 2nd ping waits 60 s
            header = peer.recv(2)
            assert header[0] == 0x89
            peer.sendall(client_frame(0xA, peer.recv(header[1])))
        assert connection.state is State.OPEN
    finally:
        connection._abort()
        peer.close()


def test_keepalive_closes_a_peer_that_stops_answering() -> None:
    connection, peer = raw_pair(ping_interval=0.02, ping_timeout=0.05)
    try:
        assert connection.wait_closed(WAIT)
        with pytest.raises(ConnectionClosedError) as raised:
            connection.recv(WAIT)
        assert raised.value.sent_code == 1011
        assert raised.value.sent_reason == "keepalive ping timeout"
    finally:
        peer.close()


# -- flow control ----------------------------------------------------------------------------


def test_full_queue_pushes_back_and_loses_nothing() -> None:
    with connected_pair(max_queue=2) as (client, server):
        payload = b"x" * 65536
        sent = 0
        # Nobody reads the server side: the client's writes block eventually.
        with pytest.raises(TimeoutError):
            while sent < 1000:
                client.send(payload, timeout=0.2)
                sent += 1
        assert sent < 1000
        # The server stopped reading at max_queue messages, give or take what its
        # last read brought (one read is at most _RECV_SIZE bytes): TCP holds the rest.
        with server._lock:
            queued = server._inbox.messages
        assert 2 <= queued <= 2 + reader_module._RECV_SIZE // len(payload)
        # Every message sent comes out, then the one whose send() timed out: it
        # stayed queued and goes out once the server reads again. Nothing more.
        for _ in range(sent + 1):
            assert server.recv(WAIT) == payload
        with pytest.raises(TimeoutError):
            server.recv(timeout=0)


def test_blocked_writer_does_not_stop_reading_or_closing() -> None:
    """Our writes are stuck on a peer that doesn't read; we still read, pong and close."""
    connection, peer = raw_pair(close_timeout=0.2)
    try:
        with pytest.raises(TimeoutError):
            for _ in range(1000):
                connection.send(b"x" * 65536, timeout=0.1)
        peer.sendall(client_frame(0x9, b"are you there?") + client_frame(0x1, b"still reading"))
        # The message after the ping arrives: the ping was read (and answered) before it.
        assert connection.recv(WAIT) == "still reading"
        # The peer reads at last: what was queued goes out, then the pong.
        peer.settimeout(WAIT)
        first, payload = read_frame(peer)
        while first & 0x0F == 0x2:
            assert payload == b"x" * 65536
            first, payload = read_frame(peer)
        assert (first & 0x0F, payload) == (0xA, b"are you there?")
        connection.close()
        assert connection.state is State.CLOSED
    finally:
        peer.close()


def test_both_sides_sending_big_messages_do_not_deadlock() -> None:
    size = 8 * 2**20
    with connected_pair(max_size=size) as (client, server):
        payload = b"y" * size

        def blast(connection: Connection) -> None:
            for _ in range(4):
                connection.send(payload)

        threads = [threading.Thread(target=blast, args=(c,)) for c in (client, server)]
        for thread in threads:
            thread.start()
        for _ in range(4):
            assert server.recv(WAIT) == payload
            assert client.recv(WAIT) == payload
        for thread in threads:
            thread.join(WAIT)
            assert not thread.is_alive()


def test_a_ping_the_protocol_refuses_leaves_nothing_waiting() -> None:
    """A ping whose data is too long raises, and no pong is awaited for it."""
    with connected_pair() as (client, _server):
        with pytest.raises(ValueError):
            client.ping(b"x" * 126)
        assert not client._pings.pending
        assert client.ping(b"x" * 125).wait(WAIT)
