"""Parsing ``ws://`` and ``wss://`` URIs (RFC 6455 section 3)."""

from __future__ import annotations

import base64
import dataclasses
import urllib.parse

from .exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]

_DEFAULT_PORTS = {"ws": 80, "wss": 443}


@dataclasses.dataclass(frozen=True, slots=True)
class WebSocketURI:
    """A parsed WebSocket URI.

    ``resource_name`` is the path and query sent in the request line;
    ``user_info`` holds credentials from ``ws://user:pass@host``, which a client
    turns into Basic authentication (and never logs).
    """

    secure: bool
    host: str
    port: int
    resource_name: str
    user_info: tuple[str, str] | None = None

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header for ``user_info`` (Basic), or None without it."""
        if self.user_info is None:
            return None
        token = base64.b64encode(":".join(self.user_info).encode()).decode()
        return f"Basic {token}"

    @property
    def host_header(self) -> str:
        """The ``Host`` header value: the port only when it isn't the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS["wss" if self.secure else "ws"]
        return host if self.port == default else f"{host}:{self.port}"

    def __repr__(self) -> str:
        # Keep credentials out of logs and tracebacks.
        scheme = "wss" if self.secure else "ws"
        return f"WebSocketURI('{scheme}://{self.host_header}{self.resource_name}')"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse a WebSocket URI; raise ``InvalidURI`` with the reason if it is not one."""
    try:
        parsed = urllib.parse.urlsplit(uri)
        port = parsed.port
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from None
    if parsed.scheme not in _DEFAULT_PORTS:
        raise InvalidURI(uri, "the scheme must be ws:// or wss://")
    if not parsed.hostname:
        raise InvalidURI(uri, "no host")
    if parsed.fragment:
        raise InvalidURI(uri, "a WebSocket URI may not have a #fragment")
    secure = parsed.scheme == "wss"
    resource_name = urllib.parse.quote(parsed.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parsed.query:
        resource_name += "?" + parsed.query
    user_info = None
    if parsed.username is not None or parsed.password is not None:
        user_info = (
            urllib.parse.unquote(parsed.username or ""),
            urllib.parse.unquote(parsed.password or ""),
        )
    host = parsed.hostname
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        host = host.encode("idna").decode("ascii")
    return WebSocketURI(
        secure=secure,
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[parsed.scheme],
        resource_name=resource_name,
        user_info=user_info,
    )
