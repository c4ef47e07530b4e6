"""Compressed messages are inflated by the thread that reads them, never by the reactor.

Issue 30: the background thread, shared by every connection, framed *and*
inflated the messages of connections whose handler would read them anyway,
and queued them inflated (up to ``max_queue`` x ``max_size`` each). Now it only
frames: a compressed message waits in the inbox as ``Deflated`` frames, and
``recv()``, ``recv_streaming()`` or ``next_event()`` inflate it on their own
thread. Real socketpairs, permessage-deflate with context takeover on both
sides.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from syncws import Connection
from syncws.exceptions import (
    ConcurrencyError,
    ConnectionClosedError,
    InvalidPayload,
    PayloadTooBig,
)
from syncws.protocol import Deflated, Protocol, Side
from syncws.protocol.deflate import PerMessageDeflate
from syncws.protocol.events import Binary, Text
from syncws.threaded.connection.inbox import Inbox

from ..protocol.helpers import client_frame
from ..protocol.test_defer_inflate import compressed
from .helpers import WAIT, wait_until

pytestmark = pytest.mark.timeout(30)

#: Repetitive, so that context takeover matters: later copies cost a few bytes.
MESSAGES = [f'{{"n": {i}, "text": "{"hello " * 40}"}}' for i in range(8)]


class InflateLog:
    """Wraps a connection's ``protocol.inflate``: which threads inflated what."""

    def __init__(self, connection: Connection) -> None:
        self.threads: list[str] = []
        self.inside: Any = None  # called inside each inflate, if set
        self._inflate = connection.protocol.inflate
        connection.protocol.inflate = self  # type: ignore[method-assign]

    def __call__(self, event: Deflated) -> Text | Binary:
        self.threads.append(threading.current_thread().name)
        if self.inside is not None:
            self.inside()
        return self._inflate(event)


@contextlib.contextmanager
def deflate_pair(
    max_size: int | None = 2**20, controls: bool = False, **kwargs: Any
) -> Iterator[tuple[Connection, Connection]]:
    """A client and a server ``Connection`` over a socketpair, both with permessage-deflate."""
    client_sock, server_sock = socket.socketpair()
    pair = []
    for sock, side in ((client_sock, Side.CLIENT), (server_sock, Side.SERVER)):
        sock.setblocking(False)
        protocol = Protocol(side, max_size=max_size, extensions=[PerMessageDeflate()])
        connection = Connection(sock, protocol, **kwargs)
        if controls:
            connection.queue_control_frames()
        connection.start_background()
        pair.append(connection)
    try:
        yield pair[0], pair[1]
    finally:
        for connection in pair:
            connection._abort()


def test_the_background_thread_queues_compressed_messages_and_the_reader_inflates() -> None:
    with deflate_pair() as (client, server):
        log = InflateLog(server)
        for message in MESSAGES:
            client.send(message)
        # Nobody is in recv(): the reactor reads them all, and inflates none.
        wait_until(lambda: server._inbox.messages == len(MESSAGES))
        assert all(isinstance(frame, Deflated) for frame in server._inbox.frames)
        # Compressed with context takeover: they wait a fraction of their size.
        waiting = sum(len(frame.data) for frame in server._inbox.frames)
        assert waiting < sum(len(message) for message in MESSAGES) // 4
        assert log.threads == []
        assert [server.recv(WAIT) for _ in MESSAGES] == MESSAGES
        assert log.threads == [threading.current_thread().name] * len(MESSAGES)


def test_messages_read_while_the_handler_is_in_recv_arrive_intact_too() -> None:
    with deflate_pair() as (client, server):
        log = InflateLog(server)
        received: list[Any] = []

        def handler() -> None:
            received.extend(server.recv(WAIT) for _ in MESSAGES)

        thread = threading.Thread(target=handler, name="handler")
        thread.start()
        for message in MESSAGES:
            client.send(message)
        thread.join(WAIT)
        assert received == MESSAGES
        assert set(log.threads) == {"handler"}


def test_compressed_and_uncompressed_messages_interleaved() -> None:
    with deflate_pair() as (client, server):
        deflate = client.protocol.extensions[0]
        assert isinstance(deflate, PerMessageDeflate)
        expected: list[str | bytes] = []
        for index, message in enumerate(MESSAGES):
            deflate.compress_min_size = 10_000 if index % 2 else 0
            payload: str | bytes = message if index % 3 else message.encode()
            client.send(payload)
            expected.append(payload)
        wait_until(lambda: server._inbox.messages == len(MESSAGES))
        kinds = [isinstance(frame, Deflated) for frame in server._inbox.frames]
        assert kinds == [index % 2 == 0 for index in range(len(MESSAGES))]
        assert [server.recv(WAIT) for _ in MESSAGES] == expected


def test_recv_streaming_inflates_a_fragmented_compressed_message() -> None:
    with deflate_pair() as (client, server):
        log = InflateLog(server)
        pieces = ["é" * 100, "wide " * 60, "end"]
        client.send(iter(pieces))
        client.send(MESSAGES[0])
        wait_until(lambda: server._inbox.messages == 2)
        assert all(isinstance(frame, Deflated) for frame in server._inbox.frames)
        assert "".join(server.recv_streaming(decode=True)) == "".join(pieces)
        assert server.recv(WAIT) == MESSAGES[0]
        assert set(log.threads) == {threading.current_thread().name}


def test_next_event_inflates_too() -> None:
    with deflate_pair(controls=True) as (client, server):
        client.send(MESSAGES[0])
        client.ping(b"between").wait(WAIT)
        client.send(MESSAGES[1].encode())
        assert server.next_event(WAIT) == MESSAGES[0]
        event = server.next_event(WAIT)
        assert getattr(event, "data", None) == b"between"
        assert server.next_event(WAIT) == MESSAGES[1].encode()
        deflate = client.protocol.extensions[0]
        assert isinstance(deflate, PerMessageDeflate)
        deflate.compress_min_size = 10_000
        client.send("sent uncompressed")
        assert server.next_event(WAIT) == "sent uncompressed"


def test_the_lock_is_free_and_the_inbox_busy_while_inflating() -> None:
    with deflate_pair() as (client, server):
        log = InflateLog(server)
        inflating, go_on = threading.Event(), threading.Event()
        seen: list[bool] = []

        def inside() -> None:
            seen.append(server._lock.acquire(blocking=False))
            server._lock.release()
            inflating.set()
            assert go_on.wait(WAIT)

        log.inside = inside
        client.send(MESSAGES[0])
        client.send(MESSAGES[1])
        wait_until(lambda: server._inbox.messages == 2)
        received: list[Any] = []
        thread = threading.Thread(target=lambda: received.append(server.recv(WAIT)))
        thread.start()
        try:
            assert inflating.wait(WAIT)
            with pytest.raises(ConcurrencyError):
                server.recv(0)
            # A ping is answered meanwhile: the reactor reads, the lock is free.
            assert client.ping(b"meanwhile").wait(WAIT)
        finally:
            log.inside = None
            go_on.set()
            thread.join(WAIT)
        assert seen == [True]
        assert received == [MESSAGES[0]]
        assert server.recv(WAIT) == MESSAGES[1]


def closed_error(connection: Connection) -> ConnectionClosedError:
    with pytest.raises(ConnectionClosedError) as caught:
        connection.recv(WAIT)
    return caught.value


def test_a_bomb_closes_with_1009_and_recv_raises() -> None:
    with deflate_pair(max_size=1000) as (client, server):
        log = InflateLog(server)
        client.write_raw(client_frame(0x2, compressed(b"\x00" * 100_000), rsv=4), WAIT)
        client.send(MESSAGES[0])  # behind it: dropped with the connection
        wait_until(lambda: server._inbox.messages == 2)
        error = closed_error(server)
        assert log.threads == [threading.current_thread().name]
        assert error.rcvd is None
        assert error.sent is not None and error.sent.code == 1009
        assert isinstance(error.__cause__, PayloadTooBig)
        assert server.protocol.protocol_error is error.__cause__
        assert not server._inbox.frames and not server._inbox.busy
        # The peer got our close frame with 1009.
        peer_error = closed_error(client)
        assert peer_error.rcvd is not None and peer_error.rcvd.code == 1009
        # recv() goes on raising the same way.
        assert closed_error(server).sent_code == 1009


def test_invalid_utf8_once_inflated_closes_with_1007_as_when_parsed() -> None:
    outcomes = []
    for frame in (
        client_frame(0x1, compressed(b"caf\xc3\x28"), rsv=4),  # found by the reader
        client_frame(0x1, b"caf\xc3\x28"),  # found by the parser
    ):
        with deflate_pair() as (client, server):
            client.write_raw(frame, WAIT)
            error = closed_error(server)
            peer = closed_error(client)
            outcomes.append(
                (
                    type(error),
                    error.rcvd,
                    error.sent_code,
                    type(error.__cause__),
                    peer.received_code,
                )
            )
    assert outcomes[0] == outcomes[1] == (ConnectionClosedError, None, 1007, InvalidPayload, 1007)


def test_an_inflate_error_in_recv_streaming_closes_too() -> None:
    with deflate_pair(max_size=1000) as (client, server):
        first = compressed(b"a" * 800, final=False)
        client.write_raw(client_frame(0x2, first, fin=False, rsv=4), WAIT)
        client.write_raw(client_frame(0x0, compressed(b"b" * 800)), WAIT)
        stream = server.recv_streaming()
        assert next(stream) == b"a" * 800
        with pytest.raises(ConnectionClosedError) as caught:
            next(stream)
        assert caught.value.sent_code == 1009
        assert not server._inbox.busy


# -- the inbox: a compressed message dropped while closing ---------------------------------


def test_after_a_dropped_compressed_message_the_later_ones_are_dropped_too() -> None:
    inbox = Inbox()
    assert inbox.deliver(Deflated(b"1", text=False), 1, closing=True)
    # Past max_queue while closing: dropped, uninflated.
    assert not inbox.deliver(Deflated(b"2", text=False), 1, closing=True)
    assert inbox.take_message() == [Deflated(b"1", text=False)]
    # Room again, but this one may refer to the one dropped: dropped as well.
    assert inbox.deliver(Deflated(b"3", text=False, final=False), 1, closing=True)
    assert not inbox.deliver(Deflated(b"4", text=False, first=False, rsv1=False), 1, closing=True)
    assert inbox.frames == []
    # An uncompressed message needs nothing before it.
    assert inbox.deliver(Binary(b"plain"), 1, closing=True)
    assert inbox.take_message() == [Binary(b"plain")]
