"""The thread that runs application callbacks, so that the background thread never does.

Close callbacks (``add_close_callback()``, the ``Hub``'s) are application
code: they may block, in ``close()`` or ``send()`` on another connection,
say. The reactor (``reactor.py``) never runs them: whoever closes a
connection hands them to this thread with ``call_soon``. It runs them one
after the other, in order, starts on demand and exits as soon as nothing is
left, like the reactor. A callback that blocks delays the callbacks behind
it, never a socket, a ping or a timer.

Threads: ``call_soon`` from any thread (the reactor included, under a
connection's ``_lock``: it never blocks); the callbacks run on the
``syncws-callbacks`` thread.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

__all__ = ["Worker", "worker"]

logger = logging.getLogger("syncws")


class Worker:
    """Run callbacks in order on one lazily started thread."""

    def __init__(self, name: str = "syncws-callbacks") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._queue: collections.deque[Callable[[], object]] = collections.deque()
        self._thread: threading.Thread | None = None

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run ``callback()`` on the worker thread; exceptions are logged. Any thread."""
        with self._lock:
            self._queue.append(callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._thread = None
                    return
                callback = self._queue.popleft()
            try:
                callback()
            except Exception:
                logger.exception("error in a syncws callback")


#: The worker of this process: close callbacks run there.
worker = Worker()
