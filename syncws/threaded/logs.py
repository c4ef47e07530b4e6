"""Logging for connections: a per-connection prefix and the opt-in frame log.

Guards nothing and takes no lock; any thread logs.
"""

from __future__ import annotations

import logging
from typing import Any

from ..protocol.events import Close
from ..protocol.http11 import Request, Response

__all__ = ["ConnectionLogger", "describe", "frames_logger", "logging_frames"]

#: Frames are logged here, at DEBUG, only when this logger's level is set
#: explicitly: ``logging.getLogger("syncws.frames").setLevel(logging.DEBUG)``.
frames_logger = logging.getLogger("syncws.frames")


def logging_frames() -> bool:
    """True if the frame log is on (its level was set explicitly, to DEBUG)."""
    return frames_logger.level != logging.NOTSET and frames_logger.isEnabledFor(logging.DEBUG)


class ConnectionLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefix every record with the connection's short id."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['connection_id']}] {msg}", kwargs  # type: ignore[index]


def describe(event: object) -> str:
    """A short description of a received event for the frame log (never the payload)."""
    if isinstance(event, Close):
        return f"Close {event.code} {event.reason!r}"
    if isinstance(event, Request):  # the opening handshake; tokens ride in query strings
        path, query, _ = event.path.partition("?")
        return f"{event.method} {path}{'?...' if query else ''} HTTP/1.1"
    if isinstance(event, Response):
        return f"HTTP/1.1 {event.status} {event.reason}"
    data = getattr(event, "data", b"")
    unit = "chars" if isinstance(data, str) else "bytes"
    more = "" if getattr(event, "final", True) else " (more to come)"
    return f"{type(event).__name__} of {len(data)} {unit}{more}"
