"""The threaded layer's small building blocks: the condition variable and the buffer pool."""

from __future__ import annotations

import socket
import threading

from syncws.threaded.connection import reader as connection_module
from syncws.threaded.connection.changed import Changed as _Changed
from syncws.threaded.runtime.reactor import LATER_DELAY, Reactor, reactor

from .helpers import WAIT, wait_until


def test_wait_for_returns_at_once_when_true() -> None:
    lock = threading.Lock()
    changed = _Changed(lock)
    with changed:
        assert changed.wait_for(lambda: True) is True
        assert changed.wait_for(lambda: False, 0) is False


def test_wait_for_times_out_and_leaves_no_waiter() -> None:
    changed = _Changed(threading.Lock())
    with changed:
        assert changed.wait_for(lambda: False, 0.01) is False
        assert changed._waiters == []


def test_notify_all_wakes_every_waiter() -> None:
    lock = threading.Lock()
    changed = _Changed(lock)
    ready = [False]
    results: list[bool] = []

    def wait() -> None:
        with changed:
            results.append(changed.wait_for(lambda: ready[0], WAIT))

    threads = [threading.Thread(target=wait) for _ in range(2)]
    for thread in threads:
        thread.start()

    def both_waiting() -> bool:
        with lock:
            return changed._waiters is not None and len(changed._waiters) == 2

    wait_until(both_waiting)
    with changed:
        ready[0] = True
        changed.notify_all()
    for thread in threads:
        thread.join(WAIT)
    assert results == [True, True]
    assert changed._waiters is None


def test_buffer_pool_keeps_a_bounded_number() -> None:
    buffers = [connection_module._take_buffer() for _ in range(40)]
    assert len({id(buffer) for buffer in buffers}) == 40
    for buffer in buffers:
        connection_module._give_back_buffer(buffer)
    assert len(connection_module._free_buffers) == connection_module._MAX_FREE_BUFFERS
    kept = {id(buffer) for buffer in connection_module._free_buffers}
    assert kept == {id(buffer) for buffer in buffers[: connection_module._MAX_FREE_BUFFERS]}
    assert connection_module._take_buffer() is buffers[connection_module._MAX_FREE_BUFFERS - 1]


def test_watch_read_later_arms_at_the_next_tick() -> None:
    a, b = socket.socketpair()
    fired = threading.Event()
    seen: list[tuple[bool, bool, bool]] = []

    def watch_now() -> None:
        # In the reactor thread: no tick can pass while this runs.
        reactor.watch_read_later(a.fileno(), fired.set)
        seen.append((a.fileno() in reactor._later, a.fileno() in reactor._watches, fired.is_set()))

    try:
        b.send(b"x")  # readable already, but the watch waits for its tick
        reactor.call_soon(watch_now)
        assert fired.wait(WAIT)  # the tick armed it, and it fired
        assert seen == [(True, False, False)]  # waiting for the tick, not armed
    finally:
        reactor.forget(a.fileno())
        a.close()
        b.close()


def test_a_later_watch_taken_back_costs_nothing_and_never_fires() -> None:
    a, b = socket.socketpair()
    fired = threading.Event()
    armed = threading.Event()
    try:
        reactor.watch_read_later(a.fileno(), fired.set)
        reactor.unwatch_read(a.fileno())  # the reader came back first
        reactor.watch_read_later(a.fileno(), fired.set)
        reactor.forget(a.fileno())  # or the socket closed
        reactor.watch_read_later(a.fileno(), fired.set)
        reactor.watch_read(a.fileno(), armed.set)  # an immediate watch replaces it
        b.send(b"x")
        assert armed.wait(WAIT)
        # The tick passes with nothing left to arm.
        tick = threading.Event()
        reactor.call_later(2 * LATER_DELAY, tick.set)
        assert tick.wait(WAIT)
        assert not fired.is_set()
    finally:
        reactor.forget(a.fileno())
        a.close()
        b.close()


def test_the_reactor_thread_stays_a_tick_after_a_later_watch() -> None:
    # A connection in a recv() loop makes a later watch per message: without
    # the extra tick the thread exited and started again at every tick.
    idle = Reactor()  # never started: _prepare_wait() is what its thread asks
    with idle._lock:
        assert idle._prepare_wait() == -1.0  # nothing to do: exit
        idle._later_used = True  # what watch_read_later() records
        assert idle._prepare_wait() == LATER_DELAY
        assert idle._prepare_wait() == -1.0  # no recv() came back meanwhile: exit
