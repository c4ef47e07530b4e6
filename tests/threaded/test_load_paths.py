"""The paths that carry load (issue 30): counted, never timed.

- a broadcast's per-delivery path: the sharing key asked once per
  connection, a prepared message's frames queued without passing through the
  protocol's output again, their size counted once per broadcast;
- the read turn: threads woken at once read one at a time, and nothing holds
  the turn while waiting;
- keepalive timers spread out (a replaced random source, not the clock);
- the background thread never waits for a connection lock a handler holds.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import syncws
from syncws import Connection, broadcast
from syncws.protocol import Protocol, Side
from syncws.protocol.connection import Protocol as CoreProtocol
from syncws.threaded.connection import core as core_module
from syncws.threaded.connection import driver, keepalive, reader
from syncws.threaded.runtime.reactor import Timer, reactor

from .helpers import WAIT, connected_pair, echo, running_server, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def peers() -> Iterator[list[tuple[Connection, socket.socket]]]:
    """Server-side connections whose peers are raw sockets; closed after the test."""
    made: list[tuple[Connection, socket.socket]] = []
    yield made
    for connection, peer in made:
        connection._abort()
        peer.close()


def server_side(made: list[tuple[Connection, socket.socket]]) -> Connection:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    connection = Connection(ours, Protocol(Side.SERVER))
    connection.start_background()
    made.append((connection, theirs))
    return connection


def read_texts(peer: socket.socket, count: int) -> list[object]:
    client = Protocol(Side.CLIENT)
    peer.settimeout(WAIT)
    events: list[object] = []
    while len(events) < count:
        client.receive_data(peer.recv(65536))
        events += client.events_received()
    return events


def counting(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> Callable[[], int]:
    """Count the calls of ``owner.name`` (a method, patched on its class)."""
    calls = 0
    original = getattr(owner, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return lambda: calls


# -- broadcasts -------------------------------------------------------------------------


def test_a_broadcast_asks_each_connection_for_its_sharing_key_once(
    monkeypatch: pytest.MonkeyPatch, peers: list[tuple[Connection, socket.socket]]
) -> None:
    connections = [server_side(peers) for _ in range(3)]
    asked = counting(monkeypatch, CoreProtocol, "sharing_key")
    prepared = counting(monkeypatch, CoreProtocol, "prepare_message")
    for number in range(4):
        assert broadcast(connections, f"message {number}") == 3
    assert prepared() == 4  # once per broadcast (it asks for the key itself) ...
    assert asked() - prepared() == 3  # ... and the key once per connection, not per delivery
    for _, peer in peers:
        assert [event.data for event in read_texts(peer, 4)] == [  # type: ignore[attr-defined]
            f"message {number}" for number in range(4)
        ]


def test_prepared_frames_go_to_the_outbox_as_they_are_and_are_counted(
    monkeypatch: pytest.MonkeyPatch, peers: list[tuple[Connection, socket.socket]]
) -> None:
    connections = [server_side(peers) for _ in range(3)]
    emitted = counting(monkeypatch, core_module.ConnectionCore, "_emit")
    sent_prepared = counting(monkeypatch, CoreProtocol, "send_prepared")
    frames = Protocol(Side.SERVER).prepare_message(b"x" * 300, text=False)
    size = sum(map(len, frames))
    for connection in connections:
        connection._flush_scheduled = True  # hold the reactor's write: count the backlog
    assert broadcast(connections, b"x" * 300) == 3
    # No pass through the protocol's output, no _emit per delivery.
    assert emitted() == 0
    assert sent_prepared() == 0
    assert [connection.buffered_amount for connection in connections] == [size] * 3
    prepared = driver.Prepared(frames)
    assert prepared == frames
    assert prepared.size == size
    for connection in connections:
        driver.flush(connection, None)
    for _, peer in peers:
        assert [event.data for event in read_texts(peer, 1)] == [b"x" * 300]  # type: ignore[attr-defined]


# -- the read turn ----------------------------------------------------------------------


def test_handlers_woken_at_once_all_answer_and_the_read_turn_is_free() -> None:
    # Every peer sends at once, so every handler thread wakes at once: all echo,
    # and the read turn is free once they are back waiting in recv().
    with running_server(echo) as server:
        clients = [syncws.connect(f"ws://127.0.0.1:{server.port}/") for _ in range(30)]
        try:
            for client in clients:
                client.send("at once")
            for client in clients:
                assert client.recv(WAIT) == "at once"
            wait_until(lambda: not reader.READ_TURN.locked())
        finally:
            for client in clients:
                client.close()


def test_the_read_turn_is_taken_after_each_wait_and_given_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken = 0
    real = reader.READ_TURN

    class Counting:
        def wait_then_acquire(self, *args: Any) -> bool:
            nonlocal taken
            taken += 1
            return real.wait_then_acquire(*args)

        def release(self) -> None:
            real.release()

    monkeypatch.setattr(reader, "READ_TURN", Counting())
    with connected_pair() as (client, server):
        with pytest.raises(TimeoutError):
            server.recv(timeout=0)
        assert not real.locked()
        assert taken == 0  # no wait, no turn
        client.send("one")
        assert server.recv(WAIT) == "one"
        assert not real.locked()
        assert taken >= 1  # after its wait, the reader took the turn


# -- keepalive spread -------------------------------------------------------------------


def test_keepalive_timers_are_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    call_later = reactor.call_later

    def recording(delay: float, callback: Callable[[], None]) -> object:
        delays.append(delay)
        return call_later(delay, callback)

    monkeypatch.setattr(reactor, "call_later", recording)
    monkeypatch.setattr(keepalive, "_random", lambda: 1.0)
    assert keepalive.first_ping_delay(20.0) == 15.0
    assert keepalive.later_spread(20.0) == 5.0
    with connected_pair(ping_interval=40.0) as (_client, server):
        # The first check comes at 0.75 x ping_interval with the largest draw.
        assert delays.count(30.0) == 2
        delays.clear()
        with server._lock:
            timer = server._pings.keepalive_timer
            assert timer is not None
            timer.cancel()  # keepalive_turn schedules the next one
            server._last_received = time.monotonic()
            assert not driver.keepalive_turn(server)
        # Heard from just now: the next check is later by a quarter of the interval.
        (delay,) = delays
        assert 40.0 < delay <= 50.0
    monkeypatch.setattr(keepalive, "_random", lambda: 0.0)
    assert keepalive.first_ping_delay(20.0) == 20.0
    assert keepalive.later_spread(20.0) == 0.0


# -- the background thread and handler-held locks ---------------------------------------


def test_the_background_thread_never_waits_for_a_held_connection_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deferred: list[tuple[float, object]] = []
    call_later = reactor.call_later

    def recording(delay: float, callback: Callable[[], None]) -> Timer:
        deferred.append((delay, callback))
        return call_later(delay, callback)

    monkeypatch.setattr(reactor, "call_later", recording)
    with connected_pair() as (busy_peer, busy), connected_pair() as (client, server):
        busy._lock.acquire()
        try:
            busy_peer.send("while its lock is held")
            # The background thread found the lock taken and comes back a
            # little later (not at its next turn: no spinning) ...
            wait_until(lambda: (reader.LOCK_RETRY, busy._on_readable) in deferred)
            # ... and meanwhile answers the other connections.
            assert client.ping().wait(WAIT)
            assert server.ping().wait(WAIT)
        finally:
            busy._lock.release()
        assert busy.recv(WAIT) == "while its lock is held"
