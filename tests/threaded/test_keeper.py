"""The keeper holds the background thread while someone may close a connection at exit."""

from __future__ import annotations

from syncws.threaded.runtime import keeper as keeper_module
from syncws.threaded.runtime.keeper import Keeper
from syncws.threaded.runtime.reactor import reactor

from .helpers import WAIT


def test_held_the_background_thread_stays_and_released_it_may_go() -> None:
    keeper = Keeper()
    keeper.hold()
    keeper.hold()
    assert keeper.held() and reactor.thread_running()
    keeper.release()
    assert keeper.held()  # one holder left: the timer stays
    keeper.release()
    assert not keeper.held()
    thread = reactor._thread
    if thread is not None:  # idle now: it exits by itself
        thread.join(WAIT)
        assert not thread.is_alive()


def test_the_timer_rearms_only_while_held() -> None:
    keeper = Keeper()
    keeper.hold()
    first = keeper._timer
    assert first is not None
    first.cancel()  # as if it had fired: then it re-arms
    keeper._rearm()
    assert keeper._timer is not None and keeper._timer is not first
    keeper.release()  # cancels the new one
    keeper._rearm()  # a late run, not held: nothing re-armed
    assert keeper._timer is None


def test_one_keeper_per_process() -> None:
    assert isinstance(keeper_module.keeper, Keeper)
