"""The thread that runs application callbacks, so that the background thread never does.

Close callbacks (``add_close_callback()``, the ``Hub``'s) are application
code: they may block, in ``close()`` or ``send()`` on another connection,
say. The reactor (``reactor.py``) never runs them: whoever closes a
connection hands them to this thread with ``call_soon``. It runs them one
after the other, in order, starts on demand and exits as soon as nothing is
left, like the reactor. A callback that blocks delays the callbacks behind
it, never a socket, a ping or a timer.

At exit: the thread is a daemon (a callback that never returns can't keep
the process alive), so an ``atexit`` handler waits for it: the callbacks
queued before the interpreter exits, and those queued meanwhile, run, for up
to ``EXIT_TIMEOUT`` seconds in all; past that the interpreter exits with a
warning on the ``syncws`` logger, dropping what is left.

Threads: ``call_soon`` from any thread (the reactor included, under a
connection's ``_lock``: it never blocks); the callbacks run on the
``syncws-callbacks`` thread; the exit handler in the thread that ends the
interpreter. One lock, ``_lock``, guards the queue and the thread.
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
from collections.abc import Callable

__all__ = ["EXIT_TIMEOUT", "Worker", "worker"]

logger = logging.getLogger("syncws")

#: Seconds the interpreter's exit waits, at most, for queued close callbacks.
EXIT_TIMEOUT = 5.0


class Worker:
    """Run callbacks in order on one lazily started thread."""

    def __init__(self, name: str = "syncws-callbacks") -> None:
        self._name = name
        self._lock = threading.Lock()
        # Notified when the thread finds the queue empty and ends.
        self._idle = threading.Condition(self._lock)
        self._queue: collections.deque[Callable[[], object]] = collections.deque()
        self._thread: threading.Thread | None = None

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run ``callback()`` on the worker thread; exceptions are logged. Any thread."""
        with self._lock:
            self._queue.append(callback)
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # Python 3.12+ at interpreter exit: no new threads
                    logger.debug(
                        "interpreter exiting: %d close callbacks skipped", len(self._queue)
                    )
                    self._queue.clear()
                    return
                self._thread = thread

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until every queued callback has run; False if ``timeout`` passed first.

        Any thread but the worker's own.
        """
        with self._idle:
            return self._idle.wait_for(lambda: self._thread is None, timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._thread = None
                    self._idle.notify_all()
                    return
                callback = self._queue.popleft()
            try:
                callback()
            except Exception:
                logger.exception("error in a syncws callback")

    def _at_exit(self) -> None:
        """The ``atexit`` handler: let the queued callbacks run, for ``EXIT_TIMEOUT`` at most."""
        if not self.wait_idle(EXIT_TIMEOUT):
            with self._lock:
                left = len(self._queue)
            logger.warning(
                "exiting with syncws close callbacks still queued or running after %g s "
                "(syncws.threaded.runtime.worker.EXIT_TIMEOUT): one running, %d dropped",
                EXIT_TIMEOUT,
                left,
            )


#: The worker of this process: close callbacks run there.
worker = Worker()
atexit.register(worker._at_exit)
