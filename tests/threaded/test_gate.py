"""The read gate (runtime/gate.py): past a threshold, recv() waits are released a few at a time."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from syncws import ConnectionClosed, connect
from syncws.threaded.deadline import Deadline
from syncws.threaded.runtime.gate import ReadGate, gate
from syncws.threaded.runtime.reactor import reactor

from .helpers import WAIT, connected_pair, echo, running_server, wait_until


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(3)]
    yield made
    for a, b in made:
        a.close()
        b.close()


@pytest.fixture
def every_wait_gated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every recv() wait goes through the process's gate, one reader released at a time."""
    monkeypatch.setattr(gate, "threshold", 0)
    monkeypatch.setattr(gate, "width", 1)
    monkeypatch.setattr(gate, "enabled", True)
    yield
    wait_until(lambda: gate.waiting == 0)
    assert gate._reading == 0
    assert not gate._queue
    assert not gate._tickets


def test_below_the_threshold_no_ticket(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    small = ReadGate(threshold=1, width=1)
    fd = pairs[0][0].fileno()
    assert small.enter(fd) is None  # 1 waiting: not past 1
    ticket = small.enter(fd)  # 2 waiting
    assert ticket is not None
    small.ready(ticket)  # readable: released (a free slot)
    small.wake_fd(fd)  # released already: nothing to do
    assert small.settle(ticket) is True
    small.done()
    small.leave()
    small.leave()
    assert small.waiting == 0
    off = ReadGate(threshold=0, width=1)
    off.enabled = False  # poll or select: never gated
    assert off.enter(fd) is None


def test_released_one_at_a_time_in_order(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    paced = ReadGate(threshold=0, width=1)
    tickets = [paced.enter(a.fileno()) for a, _ in pairs]
    assert all(ticket is not None for ticket in tickets)
    released: list[int] = []
    lock = threading.Lock()

    def wait(index: int) -> None:
        ticket = tickets[index]
        assert ticket is not None
        paced.wait(ticket, Deadline(WAIT))
        assert paced.settle(ticket)
        with lock:
            released.append(index)

    threads = [threading.Thread(target=wait, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    # Armed: the reactor watches each socket once its thread waits.
    wait_until(lambda: all(t is not None and t._state.name == "WAITING" for t in tickets))
    for index, (_, b) in enumerate(pairs):
        ticket = tickets[index]
        assert ticket is not None
        b.send(b"x")
        # The first gets the one slot; the others queue behind it, in arrival order.
        wait_until(lambda: ticket._state.name in ("RELEASED", "QUEUED"))  # noqa: B023
    assert [t is not None and t._state.name for t in tickets] == ["RELEASED", "QUEUED", "QUEUED"]
    wait_until(lambda: released == [0])
    paced.done()
    wait_until(lambda: released == [0, 1])
    paced.done()
    wait_until(lambda: released == [0, 1, 2])
    paced.done()
    for thread in threads:
        thread.join(WAIT)
        paced.leave()
    assert paced._reading == 0 and not paced._queue and not paced._tickets


def test_a_wait_times_out_and_leaves_nothing_behind(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    paced = ReadGate(threshold=0, width=1)
    a, b = pairs[0]
    ticket = paced.enter(a.fileno())
    assert ticket is not None
    paced.wait(ticket, Deadline(0.01))  # nothing arrives
    assert paced.settle(ticket) is False
    # The watch is gone, or ignored if it fires: bytes now release nobody.
    b.send(b"late")
    paced.ready(ticket)
    assert paced._reading == 0
    paced.leave()
    reactor.forget(a.fileno())  # as a closing connection does: the idle reactor exits


def test_a_queued_wait_that_times_out_leaves_the_queue(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    paced = ReadGate(threshold=0, width=0)  # no slot: every ready ticket queues
    a, _ = pairs[0]
    ticket = paced.enter(a.fileno())
    assert ticket is not None
    paced.ready(ticket)
    assert list(paced._queue) == [ticket]
    paced.wait(ticket, Deadline(0.01))
    assert paced.settle(ticket) is False
    assert not paced._queue
    paced.leave()


@pytest.mark.parametrize("queued", [False, True])
def test_a_close_wakes_the_waiting_thread(
    pairs: list[tuple[socket.socket, socket.socket]], queued: bool
) -> None:
    paced = ReadGate(threshold=0, width=0 if queued else 1)
    a, _ = pairs[0]
    ticket = paced.enter(a.fileno())
    assert ticket is not None
    if queued:
        paced.ready(ticket)
    paced.wake_fd(a.fileno() + 1000)  # another descriptor: nothing
    paced.wake_fd(a.fileno())
    paced.wait(ticket, Deadline(WAIT))  # returns at once
    assert paced.settle(ticket)
    paced.wake_fd(a.fileno())  # settled: nothing left to wake
    paced.done()
    paced.leave()
    assert paced._reading == 0 and not paced._queue and not paced._tickets


@pytest.mark.usefixtures("every_wait_gated")
def test_many_clients_at_once_all_echo_through_the_gate() -> None:
    with running_server(echo) as server:
        clients = [connect(f"ws://127.0.0.1:{server.port}/") for _ in range(20)]
        try:
            for round_ in range(3):
                for client in clients:
                    client.send(f"at once {round_}")
                for client in clients:
                    assert client.recv(WAIT) == f"at once {round_}"
        finally:
            for client in clients:
                client.close()


@pytest.mark.usefixtures("every_wait_gated")
def test_recv_times_out_through_the_gate_and_the_connection_stays_usable() -> None:
    with connected_pair() as (client, server):
        with pytest.raises(TimeoutError):
            server.recv(timeout=0.01)
        client.send("after")
        assert server.recv(WAIT) == "after"


@pytest.mark.usefixtures("every_wait_gated")
def test_closing_from_another_thread_wakes_a_recv_waiting_at_the_gate() -> None:
    with connected_pair() as (_, server):
        outcome: list[BaseException] = []

        def receive() -> None:
            try:
                server.recv(WAIT)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=receive)
        thread.start()
        wait_until(lambda: bool(gate._tickets))
        server._abort()
        thread.join(WAIT)
        assert len(outcome) == 1 and isinstance(outcome[0], ConnectionClosed)
