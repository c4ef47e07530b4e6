"""How long a reconnecting client waits, and which failures are worth a retry."""

from __future__ import annotations

import random as random_module
import time
from collections.abc import Callable

from ..exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI

__all__ = ["Backoff", "retryable"]


class Backoff:
    """Truncated exponential delays with jitter.

    The n-th delay is ``initial_delay * factor ** n`` capped at ``max_delay``,
    then multiplied by a random factor in ``[1 - jitter, 1]`` so that many
    clients cut off together don't all come back at the same instant.
    ``connected()`` when a connection opens: the delays start over after a
    connection that lived ``reset_after`` seconds; ``reset()`` starts over now.
    """

    def __init__(
        self,
        initial_delay: float = 0.5,
        factor: float = 1.618,
        max_delay: float = 30.0,
        jitter: float = 0.5,
        *,
        reset_after: float | None = None,
        random: random_module.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if initial_delay < 0 or factor < 1 or max_delay < initial_delay:
            raise ValueError("need 0 <= initial_delay <= max_delay and factor >= 1")
        if reset_after is not None and reset_after < 0:
            raise ValueError("reset_after must be >= 0 seconds")
        self.initial_delay = initial_delay
        self.factor = factor
        self.max_delay = max_delay
        self.jitter = jitter
        #: How long a connection must have lived for the delays to start over.
        self.reset_after = max_delay if reset_after is None else reset_after
        self._random = random or random_module.Random()
        self._clock = clock
        self._attempts = 0
        self._connected_at: float | None = None

    def connected(self) -> None:
        """Note that a connection opened: the next delay starts over if it lives long enough.

        A server that accepts and closes at once must not get a client back
        at ``initial_delay`` forever: the delays start over only once a
        connection has lived ``reset_after`` seconds (``max_delay`` by default).
        """
        self._connected_at = self._clock()

    def next_delay(self) -> float:
        """Return the delay before the next attempt, and count the attempt."""
        if self._connected_at is not None:
            lived = self._clock() - self._connected_at
            self._connected_at = None
            if lived >= self.reset_after:
                self._attempts = 0
        delay = min(self.initial_delay * self.factor**self._attempts, self.max_delay)
        if delay < self.max_delay:
            self._attempts += 1
        return delay * (1 - self.jitter * self._random.random())

    def reset(self) -> None:
        """Start over from ``initial_delay`` now."""
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """Delays handed out since the last reset (it stops counting at ``max_delay``)."""
        return self._attempts


def retryable(exc: BaseException) -> bool:
    """True if connecting again later may succeed after ``exc``.

    Network errors, timeouts, a server that closed during the handshake,
    and HTTP 429 or 5xx answers are retried. Other refusals (4xx), a bad URI
    and other handshake failures (a server that doesn't speak WebSocket
    properly) are not: retrying would fail the same way.
    """
    if isinstance(exc, InvalidStatus):
        return exc.status_code == 429 or exc.status_code >= 500
    if isinstance(exc, InvalidURI):
        return False
    if isinstance(exc, InvalidMessage):
        return True  # the connection dropped mid-handshake
    if isinstance(exc, InvalidHandshake):
        return exc.__cause__ is not None and isinstance(exc.__cause__, OSError)
    return isinstance(exc, OSError)  # TimeoutError and ConnectionError included
