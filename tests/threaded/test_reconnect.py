"""Reconnecting clients: backoff delays, what is retried, leaving the loop cleanly."""

from __future__ import annotations

import random
import threading

import pytest

import syncws
from syncws import Backoff, InvalidStatus, InvalidURI, reconnect
from syncws.protocol.http11 import Response
from syncws.threaded.backoff import retryable

from .helpers import WAIT, refused_port, running_server

NO_WAIT = Backoff(0.0, 1.0, 0.0, 0.0)


def test_backoff_grows_then_caps() -> None:
    backoff = Backoff(1.0, 2.0, 5.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.attempts == 3  # it stops counting at max_delay
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == 1.0


def test_backoff_jitter_stays_in_range() -> None:
    backoff = Backoff(1.0, 1.0, 1.0, jitter=0.5, random=random.Random(7))
    delays = [backoff.next_delay() for _ in range(100)]
    assert all(0.5 <= delay <= 1.0 for delay in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    "kwargs",
    [{"jitter": 2.0}, {"initial_delay": -1.0}, {"factor": 0.5}, {"max_delay": 0.1}],
)
def test_backoff_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def _status(code: int) -> InvalidStatus:
    return InvalidStatus(Response(code, "", syncws.Headers(), b""))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (_status(503), True),
        (_status(429), True),
        (_status(403), False),
        (_status(404), False),
        (InvalidURI("x", "bad"), False),
        (syncws.InvalidMessage("dropped"), True),
        (syncws.InvalidHandshake("wrong accept key"), False),
        (ValueError(), False),
    ],
)
def test_retryable(exc: BaseException, expected: bool) -> None:
    assert retryable(exc) is expected


def test_handshake_error_caused_by_the_network_is_retryable() -> None:
    exc = syncws.InvalidHandshake("closed")
    exc.__cause__ = ConnectionResetError()
    assert retryable(exc)


def test_reconnects_after_each_drop() -> None:
    accepted = []
    closed = threading.Event()
    codes: list[int | None] = []

    def handler(connection: syncws.ServerConnection) -> None:
        accepted.append(connection)
        if len(accepted) < 3:
            return  # close at once: the client reconnects
        connection.send("welcome")
        for _ in connection:
            pass
        codes.append(connection.close_code)
        closed.set()

    with running_server(handler) as server:
        turns = 0
        for connection in reconnect(f"ws://127.0.0.1:{server.port}/", backoff=NO_WAIT):
            turns += 1
            try:
                assert connection.recv(WAIT) == "welcome"
            except syncws.ConnectionClosedOK:
                continue
            break
        assert closed.wait(WAIT)
    assert turns == 3
    assert codes == [1000]


def test_break_closes_normally() -> None:
    closed = threading.Event()
    codes: list[int | None] = []

    def handler(connection: syncws.ServerConnection) -> None:
        for _ in connection:
            pass
        codes.append(connection.close_code)
        closed.set()

    with running_server(handler) as server:
        turns = 0
        for connection in reconnect(f"ws://127.0.0.1:{server.port}/", backoff=NO_WAIT):
            turns += 1
            connection.send("hi")
            break
        assert closed.wait(WAIT)
    assert turns == 1
    assert codes == [1000]


def test_gives_up_on_errors_retrying_cannot_fix() -> None:
    def refuse(connection: syncws.ServerConnection, request: syncws.Request) -> Response:
        return connection.respond(403, "go away\n")

    with running_server(lambda c: None, process_request=refuse) as server:
        loop = reconnect(f"ws://127.0.0.1:{server.port}/", backoff=NO_WAIT)
        with pytest.raises(InvalidStatus) as raised:
            next(iter(loop))
    assert raised.value.status_code == 403


def test_max_attempts_bounds_retries() -> None:
    attempts: list[BaseException] = []

    def count(exc: BaseException) -> bool:  # asked after each failed attempt
        attempts.append(exc)
        return retryable(exc)

    with refused_port() as port:
        loop = reconnect(
            f"ws://127.0.0.1:{port}/", backoff=NO_WAIT, max_attempts=3, should_retry=count
        )
        with pytest.raises(ConnectionRefusedError) as raised:
            next(iter(loop))
    assert len(attempts) == 3
    assert all(isinstance(exc, ConnectionRefusedError) for exc in attempts)
    assert raised.value is attempts[-1]


def test_stop_ends_the_loop_from_another_thread() -> None:
    entered = threading.Event()

    with running_server(lambda c: c.wait_closed()) as server:
        loop = reconnect(f"ws://127.0.0.1:{server.port}/", backoff=NO_WAIT)
        stopper = threading.Thread(target=lambda: (entered.wait(WAIT), loop.stop()))
        stopper.start()
        turns = 0
        for connection in loop:
            turns += 1
            entered.set()
            with pytest.raises(syncws.ConnectionClosedOK):
                connection.recv(WAIT)
        stopper.join(WAIT)
    assert turns == 1


def test_stop_cuts_a_backoff_delay_short() -> None:
    def stop_then_retry(exc: BaseException) -> bool:
        loop.stop()  # as a signal handler would, just before the 60 s delay
        return True

    with refused_port() as port:
        loop = reconnect(
            f"ws://127.0.0.1:{port}/",
            backoff=Backoff(60.0, 1.0, 60.0, 0.0),
            should_retry=stop_then_retry,
        )
        assert list(loop) == []
