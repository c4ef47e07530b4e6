"""The options of ``serve()``, ``connect()`` and ``syncws.wsgi``: typed, frozen, checked once.

Users never build these objects: ``serve()`` and ``connect()`` take the same
keyword arguments as always and turn them into one ``ServerOptions`` or
``ClientOptions``. ``__post_init__`` checks every value where it is passed
(a message that says what to write instead) and normalizes the spellings
other libraries use (``ping_interval=0`` for "off", ``max_queue=None`` for
"no limit"). A server shares one object among all its connections, and
each value is read once per connection: no memory per connection.

The defaults are defined here, once; the public signatures refer to them.
No thread runs here: everything happens in the thread that calls
``serve()``, ``connect()`` or ``upgrade()``.
"""

from __future__ import annotations

import dataclasses
import math
import ssl as ssl_module
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal

from ..protocol.client import DEFAULT_USER_AGENT
from ..protocol.close_codes import is_valid_on_wire
from ..protocol.connection import DEFAULT_MAX_SIZE
from ..protocol.deflate import ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory
from ..protocol.extensions import ClientExtensionFactory, ServerExtensionFactory
from ..protocol.handshake import OriginPolicy
from ..protocol.headers import HeadersLike
from ..protocol.server import DEFAULT_SERVER_HEADER
from .origins import Origins, origin_policy

__all__ = [
    "DEFAULT_BACKLOG",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_OPEN_TIMEOUT",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_WRITE_LIMIT",
    "ClientOptions",
    "ConnectionOptions",
    "ServerOptions",
    "check_close",
    "check_count",
]

DEFAULT_MAX_QUEUE = 16
DEFAULT_OPEN_TIMEOUT = 10.0
DEFAULT_CLOSE_TIMEOUT = 10.0
DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0
DEFAULT_BACKLOG = 128
#: Past this backlog (bytes waiting to be written), broadcasts skip a connection.
DEFAULT_WRITE_LIMIT = 1024 * 1024
#: How many HTTP redirects ``connect()`` follows before giving up.
DEFAULT_MAX_REDIRECTS = 10

#: ``max_size``: bytes per message, or websockets' ``(message, frame)``; None: no limit.
MaxSize = int | tuple[int | None, int | None] | None
#: ``max_queue``: messages, or websockets' ``(high, low)`` water marks; None: no limit.
MaxQueue = int | tuple[int | None, int | None] | None

#: What ``max_queue=None`` ("no limit") becomes: the queue never fills.
UNLIMITED_QUEUE = sys.maxsize


def _seconds(name: str, value: object, *, allow_zero: bool = True) -> float | None:
    """A duration in seconds: None (never) or a number >= 0; ``math.inf`` means None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} is a number of seconds or None, not {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0 seconds (or None for no limit), not {value!r}")
    if math.isinf(value):
        return None
    if value == 0 and not allow_zero:
        raise ValueError(f"{name}=0 is not a duration: pass None for no limit")
    return float(value)


def check_count(name: str, value: object, minimum: int, *, none: str | None = None) -> int | None:
    """A whole number >= ``minimum``, or None when ``none`` says what None means."""
    if value is None and none is not None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        what = f"an int >= {minimum}" + (f" or None ({none})" if none else "")
        raise TypeError(f"{name} is {what}, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def queue_marks(value: object) -> int | tuple[int, int]:
    """``max_queue``: a number, None (no limit), or websockets' ``(high, low)`` water marks.

    Reading pauses when ``high`` messages wait and resumes when no more than
    ``low`` do (``low`` defaults to ``high // 4``, as in websockets).
    """
    if isinstance(value, tuple):
        if len(value) != 2:
            raise TypeError(f"max_queue is a number or (high, low), not {value!r}")
        high = check_count("max_queue's high mark", value[0], 1, none="no limit")
        if high is None:
            return UNLIMITED_QUEUE
        low = check_count("max_queue's low mark", value[1], 0, none="high // 4")
        low = high // 4 if low is None else low
        if low >= high:
            raise ValueError(f"max_queue's low mark must be below its high mark, not {value!r}")
        return high, low
    queue = check_count("max_queue", value, 1, none="no limit")
    return UNLIMITED_QUEUE if queue is None else queue


def _names(name: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"{name} is a list of names, e.g. {name}=[{value!r}], not {value!r}")
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f"{name} holds strings, not {item!r}")
    return tuple(value)


def _optional_str(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} is a str or None, not {value!r}")


def _callable(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} is a function or None, not {value!r}")


def check_close(code: object, reason: object, where: str) -> tuple[int, str]:
    """Check a close code and reason given to ``where``; return them."""
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"{where}: code is a close code such as 1000 or 1001, not {code!r}")
    if not is_valid_on_wire(code):
        raise ValueError(
            f"{where}: {code} can't be sent in a close frame: use 1000 (normal), "
            "1001 (going away), 1011 (error) or an application code in 3000-4999"
        )
    if not isinstance(reason, str):
        raise TypeError(f"{where}: reason is a str, not {reason!r}")
    if len(reason.encode()) > 123:
        raise ValueError(f"{where}: reason must fit in 123 bytes of UTF-8")
    return code, reason


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """What both sides share: limits, timeouts, keepalive, compression."""

    compression: Literal["deflate"] | None = "deflate"
    max_size: int | None = DEFAULT_MAX_SIZE
    max_queue: int | None = DEFAULT_MAX_QUEUE
    write_limit: int = DEFAULT_WRITE_LIMIT
    #: ``max_size=(message, frame)``'s second number: the largest data frame, or None.
    #: (An init field: ``dataclasses.replace()`` keeps it after the tuple was split.)
    max_frame_size: int | None = None
    open_timeout: float | None = DEFAULT_OPEN_TIMEOUT
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT
    ping_interval: float | None = DEFAULT_PING_INTERVAL
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT

    def __post_init__(self) -> None:
        if self.compression not in ("deflate", None):
            raise ValueError(f"compression must be 'deflate' or None, not {self.compression!r}")
        max_size: Any = self.max_size
        if isinstance(max_size, tuple):  # websockets' (message, frame) limits
            if len(max_size) != 2:
                raise TypeError(f"max_size is a number or (message, frame), not {max_size!r}")
            max_size, frame = max_size
            check_count("max_size's frame limit", frame, 1, none="no limit")
            self._set("max_frame_size", frame)
            self._set("max_size", max_size)
        check_count("max_size", max_size, 1, none="no limit")
        self._set("max_queue", queue_marks(self.max_queue))
        check_count("write_limit", self.write_limit, 0)
        self._set("open_timeout", _seconds("open_timeout", self.open_timeout))
        self._set("close_timeout", _seconds("close_timeout", self.close_timeout))
        # ping_interval=0 means "off", as in websocket-client (never a ping flood).
        interval = _seconds("ping_interval", self.ping_interval)
        self._set("ping_interval", interval or None)
        timeout = _seconds("ping_timeout", self.ping_timeout)
        if timeout == 0:
            raise ValueError(
                "ping_timeout=0 would close every connection at its first ping: "
                "pass None to wait for pongs forever"
            )
        self._set("ping_timeout", timeout)

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def connection_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``Connection()`` these options set."""
        return {
            "max_queue": self.max_queue,
            "ping_interval": self.ping_interval,
            "ping_timeout": self.ping_timeout,
            "close_timeout": self.close_timeout,
            "write_limit": self.write_limit,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class ServerOptions(ConnectionOptions):
    """The options of ``serve()`` (and ``syncws.wsgi.upgrade()``) for every connection."""

    ssl: ssl_module.SSLContext | None = None
    process_request: Callable[..., Any] | None = None
    process_response: Callable[..., Any] | None = None
    select_subprotocol: Callable[..., Any] | None = None
    origins: Origins | None = None
    subprotocols: Sequence[str] | None = None
    extensions: Sequence[ServerExtensionFactory] | None = None
    additional_headers: HeadersLike | None = None
    server_header: str | None = DEFAULT_SERVER_HEADER
    create_connection: Callable[..., Any] | None = None
    #: ``origins`` in the core's form (patterns turned into a predicate).
    origin_policy: OriginPolicy | None = dataclasses.field(default=None, init=False)

    def __post_init__(self) -> None:
        ConnectionOptions.__post_init__(self)
        if self.ssl is not None and not isinstance(self.ssl, ssl_module.SSLContext):
            raise TypeError(
                f"ssl is an ssl.SSLContext (ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)"
                f" with load_cert_chain()) or None, not {self.ssl!r}"
            )
        for name in ("process_request", "process_response", "select_subprotocol"):
            _callable(name, getattr(self, name))
        self._set("subprotocols", _names("subprotocols", self.subprotocols))
        self._set("origin_policy", origin_policy(self.origins))
        _optional_str("server_header", self.server_header)
        if self.extensions is None:
            deflate = [ServerPerMessageDeflateFactory()] if self.compression == "deflate" else []
            self._set("extensions", deflate)
        if self.create_connection is not None and not callable(self.create_connection):
            raise TypeError("create_connection is a subclass of ServerConnection")


@dataclasses.dataclass(frozen=True, slots=True)
class ClientOptions(ConnectionOptions):
    """The options of ``connect()`` for the connection it opens."""

    ssl: ssl_module.SSLContext | None = None
    server_hostname: str | None = None
    origin: str | None = None
    subprotocols: Sequence[str] | None = None
    additional_headers: HeadersLike | None = None
    user_agent_header: str | None = DEFAULT_USER_AGENT
    extensions: Sequence[ClientExtensionFactory] | None = None
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    proxy: str | bool | None = True
    create_connection: type[Any] | None = None

    def __post_init__(self) -> None:
        ConnectionOptions.__post_init__(self)
        if self.ssl is not None and not isinstance(self.ssl, ssl_module.SSLContext):
            raise TypeError(
                f"ssl is an ssl.SSLContext (ssl.create_default_context()) or None, not {self.ssl!r}"
            )
        for name in ("server_hostname", "origin", "user_agent_header"):
            _optional_str(name, getattr(self, name))
        self._set("subprotocols", _names("subprotocols", self.subprotocols))
        check_count("max_redirects", self.max_redirects, 0)
        if self.proxy is not None and not isinstance(self.proxy, str | bool):
            raise TypeError(
                "proxy is True (from the environment), None (direct) or a URL such as "
                f"'http://proxy:3128', not {self.proxy!r}"
            )
        if self.extensions is None:
            deflate = [ClientPerMessageDeflateFactory()] if self.compression == "deflate" else []
            self._set("extensions", deflate)
        if self.create_connection is not None and not isinstance(self.create_connection, type):
            raise TypeError("create_connection is a subclass of ClientConnection")
