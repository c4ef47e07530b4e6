"""Deadlines shared by the steps of one blocking operation (waits: see ``poller.py``)."""

from __future__ import annotations

import time

__all__ = ["Deadline"]


class Deadline:
    """A point in time after which an operation gives up; ``None`` seconds means never."""

    __slots__ = ("seconds", "when")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.when = None if seconds is None else time.monotonic() + max(seconds, 0.0)

    def remaining(self) -> float | None:
        """Seconds left (0.0 once passed), or None without a deadline."""
        if self.when is None:
            return None
        return max(0.0, self.when - time.monotonic())

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self.when is not None and time.monotonic() >= self.when

    def timeout_error(self, doing: str) -> TimeoutError:
        """Build the ``TimeoutError`` for an operation that ran out of time."""
        return TimeoutError(f"timed out after {self.seconds:g}s while {doing}")
