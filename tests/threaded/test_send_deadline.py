"""``send(iterable, timeout=T)``: the deadline bounds the whole message (issue 31 items 4-5).

The clock the deadline reads is a fake one, moved forward by the iterable
itself: "pieces 0.3 s apart" without any sleep, and no assertion on a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncws import ConnectionClosedError
from syncws.threaded import deadline as deadline_module

from .helpers import WAIT, connected_pair


class FakeClock:
    """Stands for the ``time`` module in deadline.py: ``monotonic()`` moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(deadline_module, "time", fake)
    return fake


def slow_pieces(clock: FakeClock, count: int, apart: float) -> Iterator[bytes]:
    """``count`` pieces, the iterable taking ``apart`` seconds to produce each next one."""
    for index in range(count):
        yield b"piece %d" % index
        clock.advance(apart)


@pytest.mark.timeout(30)
def test_waiting_for_pieces_counts_towards_the_timeout(clock: FakeClock) -> None:
    """6 pieces 0.3 s apart with timeout=0.5: TimeoutError, and the peer gets 1011.

    Everything sent was written (the peer reads), so the close frame goes
    out behind the fragments, as documented.
    """
    with connected_pair() as (client, server):
        with pytest.raises(TimeoutError, match="next piece of a message"):
            client.send(slow_pieces(clock, 6, 0.3), timeout=0.5)
        with pytest.raises(ConnectionClosedError) as raised:
            server.recv(timeout=WAIT)
        assert raised.value.received_code == 1011
        assert client.protocol.close_sent is not None
        assert client.protocol.close_sent.code == 1011


@pytest.mark.timeout(30)
def test_a_message_within_its_timeout_goes_out_whole(clock: FakeClock) -> None:
    with connected_pair() as (client, server):
        client.send(slow_pieces(clock, 4, 0.1), timeout=0.5)
        assert server.recv(timeout=WAIT) == b"piece 0piece 1piece 2piece 3"
        client.send("still open", timeout=0.5)
        assert server.recv(timeout=WAIT) == "still open"


@pytest.mark.timeout(30)
def test_an_iterable_that_ends_late_fails_too(clock: FakeClock) -> None:
    """The deadline bounds the message to its end: the final frame isn't sent past it."""
    with connected_pair() as (client, server):
        with pytest.raises(TimeoutError, match="end of a message"):
            client.send(slow_pieces(clock, 1, 0.6), timeout=0.5)
        with pytest.raises(ConnectionClosedError) as raised:
            server.recv(timeout=WAIT)
        assert raised.value.received_code == 1011
