"""The reactor's own write watches run at the end of the turn that made them (issue 30)."""

from __future__ import annotations

import logging
import os
import socket
import threading

import pytest

import syncws
from syncws.protocol.events import Ping
from syncws.threaded.connection.keepalive import keepalive_payload
from syncws.threaded.runtime import heldio
from syncws.threaded.runtime import reactor as reactor_module
from syncws.threaded.runtime.reactor import Reactor, reactor
from syncws.threaded.server import ServerConnection

from .helpers import WAIT, running_server, wait_until


def test_a_write_watch_made_in_a_turn_runs_at_its_end_without_the_poller() -> None:
    own = Reactor()
    a, b = socket.socketpair()
    order: list[str] = []
    turns: list[int] = []
    done = threading.Event()

    def reply() -> None:
        order.append("reply")
        turns.append(own._turns)
        done.set()

    def in_turn() -> None:
        own.watch_write(a.fileno(), reply)
        order.append("after the watch")
        turns.append(own._turns)
        assert a.fileno() not in own._watches  # no epoll_ctl for it

    with a, b:
        own.call_soon(in_turn)
        assert done.wait(WAIT)
        assert order == ["after the watch", "reply"]
        assert turns[0] == turns[1]  # the same turn: _turns counts finished turns
        own.forget(a.fileno())
    wait_until(lambda: not own.thread_running())


def test_watching_again_from_the_end_of_a_turn_goes_to_the_poller() -> None:
    # A socket that couldn't take the reply: its callback watches again, and
    # that watch waits for the socket to become writable, like any other.
    own = Reactor()
    a, b = socket.socketpair()
    calls: list[bool] = []
    fired = threading.Event()

    def reply() -> None:
        calls.append(a.fileno() in own._watches)
        if len(calls) == 1:
            own.watch_write(a.fileno(), reply)
            calls.append(a.fileno() in own._watches)
        else:
            fired.set()

    with a, b:
        own.call_soon(lambda: own.watch_write(a.fileno(), reply))
        assert fired.wait(WAIT)
        assert calls == [False, True, False]  # armed for real, then fired and disarmed
        own.forget(a.fileno())
    wait_until(lambda: not own.thread_running())


def test_an_error_at_the_end_of_a_turn_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    own = Reactor()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    done = threading.Event()

    def broken() -> None:
        raise RuntimeError("boom")

    def in_turn() -> None:
        own.watch_write(a.fileno(), broken)
        own.watch_write(c.fileno(), done.set)

    with a, b, c, d, caplog.at_level(logging.ERROR, logger="syncws"):
        own.call_soon(in_turn)
        assert done.wait(WAIT)
        wait_until(lambda: any("background callback" in r.getMessage() for r in caplog.records))
    wait_until(lambda: not own.thread_running())


def test_other_threads_still_arm_the_poller() -> None:
    own = Reactor()
    a, b = socket.socketpair()
    fired = threading.Event()
    with a, b:
        own.watch_write(a.fileno(), fired.set)
        assert a.fileno() in own._watches or fired.is_set()
        assert fired.wait(WAIT)
        own.forget(a.fileno())
    wait_until(lambda: not own.thread_running())


def test_a_pong_leaves_in_the_turn_that_read_the_ping(monkeypatch: pytest.MonkeyPatch) -> None:
    # The handler never reads: the background thread reads the ping and
    # writes the pong itself, with no write watch on the poller.
    armed_for_writing: list[int] = []
    watch = reactor._watch

    def recording(fd: int, on_read: object, on_write: object) -> None:
        if on_write is not None:
            armed_for_writing.append(fd)
        watch(fd, on_read, on_write)  # type: ignore[arg-type]

    monkeypatch.setattr(reactor, "_watch", recording)
    release = threading.Event()

    def handler(connection: ServerConnection) -> None:
        release.wait(WAIT)

    with (
        running_server(handler) as server,
        syncws.connect(f"ws://127.0.0.1:{server.port}/") as client,
    ):
        for index in range(5):
            assert client.ping(f"ping {index}".encode()).wait(WAIT)
        answered = list(armed_for_writing)
        release.set()
    assert answered == []


def test_keepalive_pings_take_no_system_call_for_their_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # os.urandom lets go of the GIL: in the background thread's turn, that
    # would be a second wait for it behind every busy thread.
    payloads = [keepalive_payload() for _ in range(1000)]
    assert all(len(payload) == 4 for payload in payloads)
    assert len(set(payloads)) == 1000
    in_background: list[int] = []
    urandom = os.urandom

    def recording(size: int) -> bytes:
        if threading.get_ident() == reactor._ident:
            in_background.append(size)
        return urandom(size)

    monkeypatch.setattr(os, "urandom", recording)
    pinged = threading.Event()

    def handler(connection: ServerConnection) -> None:
        connection.wait_closed()

    with (
        running_server(handler, ping_interval=0.05, ping_timeout=WAIT) as server,
        syncws.connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as client,
    ):
        client.queue_control_frames()
        while not pinged.is_set():
            if isinstance(client.next_event(timeout=WAIT), Ping):
                pinged.set()
    assert in_background == []


def test_the_waker_is_drained_with_the_held_read(monkeypatch: pytest.MonkeyPatch) -> None:
    drained: list[int] = []
    held_read = heldio.recv_into

    def recording(sock: socket.socket, fd: int, buffer: heldio.RecvBuffer, plain: bool) -> int:
        drained.append(fd)
        return held_read(sock, fd, buffer, plain)

    monkeypatch.setattr(reactor_module, "recv_into", recording)
    own = Reactor()
    ran = threading.Event()
    own.call_soon(ran.set)
    assert ran.wait(WAIT)
    wait_until(lambda: bool(drained))
    wait_until(lambda: not own.thread_running())
