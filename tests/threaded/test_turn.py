"""The read turn (runtime/turn.py): a lock taken after a wait, with the C accelerator or without."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator

import pytest

from syncws.threaded.connection import reader
from syncws.threaded.deadline import Deadline
from syncws.threaded.runtime import turn
from syncws.threaded.runtime.poller import RECV_EVENTS
from syncws.threaded.runtime.turn import ReadTurn

from .helpers import WAIT, connected_pair, wait_until

# Both ways where the accelerator is built (Linux, epoll); the Python way everywhere.
MODES = [False, True] if turn.TURN_IN_C else [False]


@pytest.fixture(params=MODES, ids=lambda in_c: "c" if in_c else "python")
def read_turn(request: pytest.FixtureRequest) -> ReadTurn:
    return ReadTurn(in_c=request.param)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_a_lock_like_threading_lock(read_turn: ReadTurn) -> None:
    assert not read_turn.locked()
    assert read_turn.acquire() is True
    assert read_turn.locked()
    taken = threading.Event()

    def other() -> None:
        read_turn.acquire()  # waits until the main thread gives it back
        taken.set()
        read_turn.release()

    thread = threading.Thread(target=other)
    thread.start()
    assert not taken.wait(0.05)
    read_turn.release()
    thread.join(WAIT)
    assert taken.is_set() and not read_turn.locked()
    with pytest.raises(RuntimeError):
        read_turn.release()


def test_the_wait_ends_ready_or_at_the_deadline_and_takes_the_turn_either_way(
    read_turn: ReadTurn, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    assert read_turn.wait_then_acquire(a, a.fileno(), RECV_EVENTS, Deadline(0.01)) is False
    assert read_turn.locked()
    read_turn.release()
    b.send(b"x")
    assert read_turn.wait_then_acquire(a, a.fileno(), RECV_EVENTS, Deadline(None)) is True
    assert read_turn.locked()
    read_turn.release()


def test_a_thread_waits_for_the_turn_after_its_socket(
    read_turn: ReadTurn, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    b.send(b"x")  # ready at once: the thread then waits for the turn alone
    read_turn.acquire()
    result: list[bool] = []
    thread = threading.Thread(
        target=lambda: result.append(
            read_turn.wait_then_acquire(a, a.fileno(), RECV_EVENTS, Deadline(WAIT))
        )
    )
    thread.start()
    thread.join(0.05)
    assert thread.is_alive() and not result  # ready, but the turn is ours
    read_turn.release()
    thread.join(WAIT)
    assert result == [True]
    assert read_turn.locked()  # the thread took it
    read_turn.release()


@pytest.mark.skipif(sys.platform == "win32", reason="setitimer")
def test_a_signal_during_the_wait_runs_its_handler_with_the_turn_taken(
    read_turn: ReadTurn, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, _ = pair
    calls: list[int] = []

    def handler(signum: int, frame: object) -> None:
        calls.append(signum)
        if len(calls) == 2:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        # A handler that returns: the wait says "not ready", as at a deadline (or
        # Python's poll, which retries, says so at the deadline).
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        assert read_turn.wait_then_acquire(a, a.fileno(), RECV_EVENTS, Deadline(0.5)) is False
        assert calls == [signal.SIGALRM]
        read_turn.release()
        # A handler that raises: raised, with the turn taken.
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        with pytest.raises(KeyboardInterrupt):
            read_turn.wait_then_acquire(a, a.fileno(), RECV_EVENTS, Deadline(WAIT))
        assert read_turn.locked()
        read_turn.release()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_accelerator_checks_its_arguments() -> None:
    if not turn.TURN_IN_C:
        if os.environ.get("SYNCWS_HELD_IO") == "0" or turn.poller.POLLER != "epoll":
            pytest.skip("the portable path: Python's poll and lock")
        if os.environ.get("CI"):
            pytest.fail("the read turn's accelerator wasn't built: CI has a compiler")
        pytest.skip("the read turn's accelerator isn't built here")
    raw = turn._Turn()  # type: ignore[misc]
    # Whatever it raises, it raises with the turn taken: the caller releases it.
    for args, error in [
        ((-1, RECV_EVENTS, 0), ValueError),
        ((0, 1 << 20, 0), ValueError),
        ((0, RECV_EVENTS, 1 << 40), ValueError),
        ((0, RECV_EVENTS), TypeError),
        (("fd", RECV_EVENTS, 0), TypeError),
        ((0, RECV_EVENTS, 1 << 70), OverflowError),
    ]:
        with pytest.raises(error):
            raw.wait_then_acquire(*args)
        assert raw.locked(), args
        raw.release()
    with pytest.raises(TypeError):
        type(raw)(1)


def test_the_accelerator_is_used_only_where_it_helps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCWS_HELD_IO", "0")  # the portable path
    assert turn._load_turn() is None
    monkeypatch.delenv("SYNCWS_HELD_IO")
    monkeypatch.setattr(turn.poller, "POLLER", "poll")  # a slice per wait: Python's
    assert turn._load_turn() is None
    monkeypatch.setattr(turn.poller, "POLLER", "epoll")
    monkeypatch.setitem(sys.modules, "syncws.threaded.runtime._turn", None)  # not built
    assert turn._load_turn() is None
    assert not ReadTurn(in_c=False).locked()


@pytest.mark.parametrize("seconds", [30 * 86_400.0, float("inf")])
def test_waits_longer_than_poll_takes_are_cut_into_days(
    read_turn: ReadTurn, pair: tuple[socket.socket, socket.socket], seconds: float
) -> None:
    # poll() takes milliseconds in a C int (24.8 days): a longer wait is one
    # day at a time, its caller waiting again until its deadline.
    a, b = pair
    b.send(b"x")
    assert read_turn.wait_then_acquire(a, a.fileno(), RECV_EVENTS, Deadline(seconds)) is True
    assert read_turn.locked()
    read_turn.release()


@pytest.mark.parametrize("seconds", [30 * 86_400.0, float("inf")])
def test_recv_with_a_timeout_past_what_poll_takes(seconds: float) -> None:
    with connected_pair() as (client, server):
        got: list[object] = []
        reading = threading.Thread(target=lambda: got.append(server.recv(timeout=seconds)))
        reading.start()
        wait_until(lambda: server._reader_thread)  # waiting in recv()
        client.send("in time")
        reading.join(WAIT)
        assert got == ["in time"]
        assert not reader.READ_TURN.locked()
