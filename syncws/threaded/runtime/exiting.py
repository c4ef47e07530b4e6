"""Hooks that run when the interpreter exits, as early as it lets them.

``threading``'s own exit hooks (the ones ``concurrent.futures`` uses) run
before ``atexit`` functions; under eventlet's monkey-patching they don't run
at all. So a hook is registered with both, and runs at most once. (Since
Python 3.12 neither may start a thread: what a hook needs from the background
thread must be kept running beforehand, see ``keeper.py``.)

Called from any thread; the hooks run in the main thread at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Callable

__all__ = ["ExitHook", "at_exit"]


class ExitHook:
    """A hook registered by ``at_exit()``: it runs once, unless ``cancel()`` came first."""

    def __init__(self, hook: Callable[[], object]) -> None:
        self._hook: Callable[[], object] | None = hook
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            hook, self._hook = self._hook, None
        if hook is not None:
            hook()

    def cancel(self) -> None:
        """Don't run the hook (any thread)."""
        with self._lock:
            self._hook = None


def at_exit(hook: Callable[[], object]) -> ExitHook:
    """Run ``hook`` once at interpreter exit, among threading's exit hooks if it can."""
    registered = ExitHook(hook)
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        with contextlib.suppress(RuntimeError):  # the interpreter already exits
            register(registered)
    atexit.register(registered)
    return registered
