"""``create_connection=``: check the class at ``serve()``, not when the first client comes.

The server builds each connection as ``create_connection(sock, protocol,
server, max_queue=, ping_interval=, ping_timeout=, close_timeout=,
write_limit=, logger=)``. A subclass written for websockets has the same
positional arguments but no ``write_limit`` or ``logger``: it is accepted,
and called without them when they have their default values. Any other
mismatch (a required argument of its own, a missing positional) raises
``TypeError`` from ``serve()``, naming what is wrong, instead of dropping every
connection with a log line. Runs once, in the thread that calls ``serve()``.
"""

from __future__ import annotations

import inspect
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..options import DEFAULT_WRITE_LIMIT

if TYPE_CHECKING:
    from ...protocol.server import ServerProtocol
    from . import Server, ServerConnection

__all__ = ["connection_factory"]

# Keywords the server always passes, and those a websockets-style class may lack.
_KEYWORDS = ("max_queue", "ping_interval", "ping_timeout", "close_timeout")
_OPTIONAL = ("write_limit", "logger")


def connection_factory(
    create_connection: Callable[..., ServerConnection],
    *,
    write_limit: int = DEFAULT_WRITE_LIMIT,
    logger: logging.Logger | None = None,
) -> Callable[..., ServerConnection]:
    """Return ``create_connection``, or a wrapper dropping keywords its signature lacks.

    Raise ``TypeError`` if it can't be called the way the server calls it.
    """
    try:
        signature = inspect.signature(create_connection)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return create_connection
    name = getattr(create_connection, "__name__", repr(create_connection))
    probe = dict.fromkeys(_KEYWORDS + _OPTIONAL)
    try:
        signature.bind(None, None, None, **probe)
    except TypeError:
        pass
    else:
        return create_connection  # takes everything, as syncws's own classes do
    try:
        signature.bind(None, None, None, **dict.fromkeys(_KEYWORDS))
    except TypeError as exc:
        raise TypeError(
            f"create_connection={name} can't be called as {name}(sock, protocol, server, "
            f"max_queue=, ping_interval=, ping_timeout=, close_timeout=, write_limit=, "
            f"logger=): {exc}; give its own arguments with functools.partial() and take "
            "the others as **kwargs for super().__init__()"
        ) from None
    accepted = {key for key in _OPTIONAL if key in signature.parameters}
    missing = {"write_limit": write_limit != DEFAULT_WRITE_LIMIT, "logger": logger is not None}
    for key, was_given in missing.items():
        if was_given and key not in accepted:
            raise TypeError(
                f"serve() got {key}= but create_connection={name} doesn't take it: "
                "add **kwargs to its __init__ and pass them to super().__init__()"
            )

    def create(
        sock: socket.socket, protocol: ServerProtocol, server: Server | None, **kwargs: Any
    ) -> ServerConnection:
        for key in _OPTIONAL:
            if key not in accepted:
                kwargs.pop(key, None)
        return create_connection(sock, protocol, server, **kwargs)

    return create
