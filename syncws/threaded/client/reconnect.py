"""A client that reconnects: ``for connection in reconnect(uri): ...``.

Each turn of the loop gets a fresh open connection. When it drops, the loop
body usually ends with ``ConnectionClosed``; catch it and ``continue``, and
the next turn connects again after a backoff delay. Errors that retrying
can't fix (a 4xx answer other than 429, a bad URI) end the loop by raising.
Leaving the loop (``break``, ``return``, an exception) closes the current
connection normally, with code 1000.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..backoff import Backoff, retryable
from . import ClientConnection, connect

__all__ = ["reconnect"]

logger = logging.getLogger("syncws")


class reconnect:  # noqa: N801 - used like a function, in a for loop
    """Iterate over connections to ``uri``, reconnecting after each one drops.

    ``connect_kwargs`` go to ``connect()``. ``backoff`` sets the delays
    between attempts (default: ``Backoff()``, exponential with jitter, up to
    30 s); they start over after a connection that lived ``backoff.reset_after``
    seconds (``max_delay`` by default), so a server that accepts and closes
    at once is retried ever more slowly, not every half second. ``max_attempts``
    bounds consecutive failed attempts (None: keep trying). ``should_retry``
    decides which connection errors are retried (default: ``retryable``).

    ``stop()``, callable from any thread or a signal handler, ends the loop:
    the current connection closes with 1000 and a pending delay is cut short.
    """

    def __init__(
        self,
        uri: str,
        *,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        should_retry: Callable[[BaseException], bool] = retryable,
        **connect_kwargs: Any,
    ) -> None:
        self.uri = uri
        self.backoff = backoff or Backoff()
        self.max_attempts = max_attempts
        self.should_retry = should_retry
        self.connect_kwargs = connect_kwargs
        #: The connection of the current turn, if any.
        self.connection: ClientConnection | None = None
        self._stopping = threading.Event()

    def stop(self) -> None:
        """End the loop: close the current connection (1000) and stop reconnecting."""
        self._stopping.set()
        connection = self.connection
        if connection is not None:
            # close() may wait; from a signal handler, don't block the main thread.
            threading.Thread(target=connection.close, name="syncws-stop", daemon=True).start()

    def __iter__(self) -> Iterator[ClientConnection]:
        failures = 0
        while not self._stopping.is_set():
            try:
                connection = connect(self.uri, **self.connect_kwargs)
            except Exception as exc:
                failures += 1
                if not self.should_retry(exc) or (
                    self.max_attempts is not None and failures >= self.max_attempts
                ):
                    raise
                delay = self.backoff.next_delay()
                logger.info("connection to %s failed (%s); retrying in %.1fs", self.uri, exc, delay)
                self._stopping.wait(delay)
                continue
            failures = 0
            self.backoff.connected()  # the delays start over only if it lives long enough
            self.connection = connection
            try:
                with connection:
                    yield connection
            finally:
                self.connection = None
            if not connection.closed_by_us and not self._stopping.is_set():
                # The server closed or the network dropped: don't hammer it.
                self._stopping.wait(self.backoff.next_delay())
