"""Logging for connections: a per-connection prefix and the opt-in frame log.

Guards nothing and takes no lock; any thread logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from ...protocol.events import Close
from ...protocol.http11 import Request, Response

__all__ = ["ConnectionLogger", "describe", "frames_logger", "logging_frames"]

#: Frames are logged here, at DEBUG, only when this logger's level is set
#: explicitly: ``logging.getLogger("syncws.frames").setLevel(logging.DEBUG)``.
frames_logger = logging.getLogger("syncws.frames")


def logging_frames() -> bool:
    """True if the frame log is on (its level was set explicitly, to DEBUG)."""
    return frames_logger.level != logging.NOTSET and frames_logger.isEnabledFor(logging.DEBUG)


class _HasId(Protocol):
    @property
    def id(self) -> object: ...


class ConnectionId(Mapping[str, str]):
    """A logger adapter's ``extra``: ``{"connection_id": ...}``, the short id of a connection.

    Made when a record is actually logged: a connection whose debug lines are
    off never makes its id (a random UUID) at all.
    """

    __slots__ = ("_connection",)

    def __init__(self, connection: _HasId) -> None:
        self._connection = connection

    def __getitem__(self, key: str) -> str:
        if key != "connection_id":
            raise KeyError(key)
        return str(self._connection.id)[:8]

    def __iter__(self) -> Iterator[str]:
        yield "connection_id"

    def __len__(self) -> int:
        return 1


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
