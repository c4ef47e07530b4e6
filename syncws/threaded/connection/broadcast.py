"""``broadcast()``: one message to many connections, never blocking on a slow one.

Each connection gets the message queued in its outbox and written right away
as far as the kernel takes it; the rest is written by the process's
background thread when the socket drains. A peer that doesn't read can't hold
the caller or delay the others: past its connection's ``write_limit`` bytes
of backlog, it misses messages (or is closed, with ``overflow=``).

The message is encoded once for all the connections that encode it the same
way (server side, no compression or compression without context takeover),
and the encoded bytes are shared, not copied, by their outboxes.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable
from typing import Literal

from ...exceptions import BacklogFull, WebSocketError
from ...protocol.framing import encode_close_payload
from . import Connection

__all__ = ["broadcast", "message_payload"]

logger = logging.getLogger("syncws")


def broadcast(
    connections: Iterable[Connection],
    message: str | bytes | bytearray | memoryview,
    *,
    text: bool | None = None,
    raise_exceptions: bool = False,
    overflow: Literal["skip"] | int = "skip",
) -> int:
    """Send ``message`` to every open connection in ``connections``; return how many got it.

    Never blocks: see the module's docstring. Closed and closing connections
    are skipped silently. When a connection's backlog is past its
    ``write_limit``, the message is skipped for it and counted in its
    ``skipped_messages`` (``overflow="skip"``, the default), or the connection
    is closed with the close code ``overflow`` (1008 or 1013, say) so that its
    client reconnects and catches up. ``raise_exceptions=True`` raises an
    ``ExceptionGroup`` of ``BacklogFull`` and other per-connection errors
    after every connection had its turn; otherwise they are logged.

    ``text`` works as in ``Connection.send``. Callable from any thread.
    """
    payload, is_text = message_payload(message, text, "broadcast()")
    close_code = None
    if overflow != "skip":
        if not isinstance(overflow, int):
            raise ValueError(f'overflow must be "skip" or a close code, not {overflow!r}')
        encode_close_payload(overflow, "")  # ValueError for a code that can't be sent
        close_code = overflow
    prepared: dict[Hashable, list[bytes]] = {}
    errors: list[Exception] = []
    delivered = 0
    for connection in connections:
        try:
            queued = connection.offer_broadcast(payload, is_text, prepared, close_code)
            if queued:
                delivered += 1
            elif queued is False:
                errors.append(
                    BacklogFull(
                        connection, connection.buffered_amount, closed=close_code is not None
                    )
                )
        except WebSocketError as exc:
            errors.append(exc)
            if not raise_exceptions:
                connection.logger.warning("broadcast: skipped: %s", exc)
    if errors and raise_exceptions:
        count = f"{len(errors)} connection{'s' if len(errors) > 1 else ''}"
        raise ExceptionGroup(f"broadcast skipped {count}", errors)
    return delivered


def message_payload(
    message: str | bytes | bytearray | memoryview, text: bool | None, caller: str
) -> tuple[bytes, bool]:
    """A message's bytes and whether it goes as text, by ``Connection.send``'s rules."""
    if isinstance(message, str):
        return message.encode(), text is not False
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message), bool(text)
    raise TypeError(f"{caller} takes str or bytes, not {type(message).__name__}")
