"""A client that reconnects: ``for connection in reconnect(uri): ...``.

Each turn of the loop gets a fresh open connection. When it drops, the loop
body usually ends with ``ConnectionClosed``; catch it and ``continue``, and
the next turn connects again after a backoff delay. Errors that retrying
can't fix (a 4xx answer other than 429, a bad URI) end the loop by raising.
Leaving the loop (``break``, ``return``, an exception) closes the current
connection normally, with code 1000.

websockets' spelling works too (``connect(uri, legacy=False)`` returns this
object): ``process_exception(exc)`` returns None to retry or an exception to
raise, ``reconnect_delays()`` returns an iterator of delays; ``with
reconnect(uri) as connection`` and ``.connect()`` open one connection.
Every keyword is checked at the call, not at the first turn of the loop.
The loop runs in the thread that iterates; ``stop()`` from any thread.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, cast

from ..backoff import Backoff, retryable
from . import SOCKET_KEYWORDS, ClientConnection, connect

__all__ = ["reconnect"]

logger = logging.getLogger("syncws")

ProcessException = Callable[[Exception], "Exception | None"]


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

    websockets' ``process_exception`` (None: retry; an exception: raise it)
    replaces ``should_retry``, and ``reconnect_delays`` (a function returning
    an iterator of delays, started over after each connection) replaces
    ``backoff``. Unknown keywords and wrong types raise ``TypeError`` here.
    """

    def __init__(
        self,
        uri: str,
        *,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        should_retry: Callable[[BaseException], bool] = retryable,
        process_exception: ProcessException | None = None,
        reconnect_delays: Callable[[], Iterator[float]] | None = None,
        **connect_kwargs: Any,
    ) -> None:
        for name, value in (
            ("should_retry", should_retry),
            ("process_exception", process_exception),
            ("reconnect_delays", reconnect_delays),
        ):
            if value is not None and not callable(value):
                raise TypeError(f"reconnect({name}=...) takes a function, not {value!r}")
        if backoff is not None and reconnect_delays is not None:
            raise TypeError("pass either backoff= or reconnect_delays=, not both")
        named = inspect.signature(connect).parameters
        for name in connect_kwargs:
            if name == "legacy" or (name not in named and name not in SOCKET_KEYWORDS):
                raise TypeError(f"reconnect() got an unexpected keyword argument {name!r}")
        self.uri = uri
        self.backoff = backoff or Backoff()
        self.max_attempts = max_attempts
        self.should_retry = should_retry
        self.process_exception = process_exception
        self.reconnect_delays = reconnect_delays
        self.connect_kwargs = connect_kwargs
        self._delays: Iterator[float] | None = None
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

    def connect(self) -> ClientConnection:
        """Open one connection (no retry), as websockets' ``reconnect.connect()``.

        The calling thread.
        """
        return cast(ClientConnection, connect(self.uri, **self.connect_kwargs))

    def __enter__(self) -> ClientConnection:
        """``with reconnect(uri) as connection``: one connection, closed at the end.

        The calling thread.
        """
        if self.connection is not None:
            raise RuntimeError("reconnect() isn't reentrant")
        self.connection = self.connect()
        return self.connection

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.__exit__(exc_type, exc, tb)

    def _fatal(self, exc: Exception, failures: int) -> BaseException | None:
        """The exception to raise after a failed attempt, or None to retry."""
        if self.process_exception is None:
            fatal: BaseException | None = None if self.should_retry(exc) else exc
        else:
            try:
                fatal = self.process_exception(exc)
            except Exception as raised:  # raising instead of returning: websockets accepts it
                fatal = raised
        if fatal is None and self.max_attempts is not None and failures >= self.max_attempts:
            return exc
        return fatal

    def _next_delay(self) -> float:
        if self.reconnect_delays is None:
            return self.backoff.next_delay()
        if self._delays is None:
            self._delays = iter(self.reconnect_delays())
        return next(self._delays)

    def _connected(self) -> None:
        self.backoff.connected()  # the delays start over only if it lives long enough
        self._delays = None  # websockets' delays start over after each connection

    def __iter__(self) -> Iterator[ClientConnection]:
        failures = 0
        while not self._stopping.is_set():
            try:
                connection = self.connect()
            except Exception as exc:
                failures += 1
                fatal = self._fatal(exc, failures)
                if fatal is exc:
                    raise
                if fatal is not None:
                    raise fatal from exc
                delay = self._next_delay()
                logger.info("connection to %s failed (%s); retrying in %.1fs", self.uri, exc, delay)
                self._stopping.wait(delay)
                continue
            failures = 0
            self._connected()
            self.connection = connection
            try:
                with connection:
                    yield connection
            finally:
                self.connection = None
            if not connection.closed_by_us and not self._stopping.is_set():
                # The server closed or the network dropped: don't hammer it.
                self._stopping.wait(self._next_delay())
