"""The connection's leaf parts on their own: values in, results out, no connection needed."""

from __future__ import annotations

import socket

import pytest

from syncws import ConcurrencyError
from syncws.protocol import Binary, Ping, Pong, Text
from syncws.threaded.connection.inbox import Inbox
from syncws.threaded.connection.keepalive import PingTable
from syncws.threaded.connection.outbox import Outbox, Wrote


class Owner:
    """What a ``PendingPing`` asks of its connection."""

    def _expect_pong(self) -> None:
        pass

    def _closed_exception(self) -> Exception:
        return ConnectionError("closed")


def test_outbox_reports_drained_partial_and_blocked() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        outbox = Outbox()
        outbox.append([b"head", b"payload"])
        assert outbox.backlog() == 11
        assert outbox.write(ours, False) is Wrote.DRAINED
        assert outbox.backlog() == 0
        assert theirs.recv(64) == b"headpayload"
        # Fill the socket: a write reports BLOCKED once the kernel takes no more.
        chunk = b"x" * 65536
        results = set()
        for _ in range(1000):
            outbox.append([chunk])
            result = outbox.write(ours, False)
            results.add(result)
            if result is Wrote.BLOCKED:
                break
        assert Wrote.BLOCKED in results
        assert outbox.backlog() > 0
        assert outbox.queued - outbox.written == outbox.backlog()
        outbox.clear()
        assert not outbox.chunks


def test_outbox_write_raises_when_the_connection_is_lost() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        theirs.close()
        outbox = Outbox()
        outbox.append([b"x" * 1024])
        with pytest.raises(OSError):
            for _ in range(100):  # the first write may still succeed
                outbox.write(ours, False)


def test_inbox_counts_messages_and_keeps_max_queue_while_closing() -> None:
    inbox = Inbox()
    assert inbox.room(2) == 2
    assert inbox.deliver(Text("a", final=False), 2, closing=False)
    assert inbox.take_message() is None  # not whole yet
    assert inbox.deliver(Text("b"), 2, closing=False)
    assert inbox.deliver(Binary(b"c"), 2, closing=False)
    assert inbox.room(2) == 0
    # Closing, full: the next message is dropped, and says so on its last frame.
    assert inbox.deliver(Binary(b"d", final=False), 2, closing=True)
    assert not inbox.deliver(Binary(b"e"), 2, closing=True)
    assert inbox.take_message() == [Text("a", final=False), Text("b")]
    assert inbox.take_frame() == Binary(b"c")
    assert inbox.take_frame() is None
    assert inbox.messages == 0


def test_inbox_keeps_controls_only_when_asked() -> None:
    inbox = Inbox()
    assert inbox.deliver_control(Ping(b"1"), 1)
    assert inbox.take_control() is None
    inbox.keep_controls()
    assert inbox.deliver_control(Ping(b"1"), 1)
    assert not inbox.deliver_control(Pong(b"2"), 1)  # past max_queue: dropped
    assert inbox.room(1) == 0
    assert inbox.take_control() == Ping(b"1")


def test_ping_table_acknowledges_earlier_pings_and_drops_the_rest() -> None:
    table = PingTable()
    owner = Owner()
    first = table.add(owner, b"1")
    second = table.add(owner, b"2")
    third = table.add(owner, b"3")
    with pytest.raises(ConcurrencyError):
        table.check_new(b"3")
    table.check_new(b"4")
    assert table.acknowledge(b"unknown") is None
    latency = table.acknowledge(b"2")
    assert latency is not None and latency >= 0
    assert first.done() and second.done() and not third.done()
    table.drop()
    assert third.done() and third.latency is None
    with pytest.raises(ConnectionError):
        third.wait(0)
