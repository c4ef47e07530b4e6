"""The opening handshake (RFC 6455 section 4): building and checking both sides.

Pure functions over ``Request`` and ``Response``; ``ClientProtocol`` and
``ServerProtocol`` call them in order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Sequence

from ..exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderValue,
    InvalidOrigin,
    InvalidStatus,
    InvalidUpgrade,
    InvalidVersion,
    NegotiationError,
)
from .extensions import ClientExtensionFactory, Extension, ServerExtensionFactory
from .headers import (
    Headers,
    HeadersLike,
    MultipleValuesError,
    build_extensions,
    build_subprotocols,
    parse_connection,
    parse_extensions,
    parse_subprotocols,
    parse_upgrade,
)
from .http11 import Request, Response, error_response

__all__ = [
    "OriginPolicy",
    "SubprotocolSelector",
    "accept_key",
    "build_request",
    "build_response",
    "generate_key",
    "negotiate_extensions",
    "negotiate_subprotocol",
    "response_for_error",
    "validate_request",
    "validate_response",
]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WEBSOCKET_VERSION = "13"

#: Allowed origins: a list of values (``None`` in it admits requests without
#: ``Origin``), or a function of the origin that says yes or no.
OriginPolicy = Sequence[str | None] | Callable[[str | None], bool]
#: Picks a subprotocol from the client's list and the server's; None for none.
SubprotocolSelector = Callable[[Sequence[str], Sequence[str]], str | None]


def generate_key() -> str:
    """Return a fresh ``Sec-WebSocket-Key``: 16 random bytes in base64."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_key(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` value that answers ``key``."""
    digest = hashlib.sha1((key + _GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


def _single(headers: Headers, name: str) -> str:
    """Return a header that must appear exactly once."""
    try:
        return headers[name]
    except MultipleValuesError:
        raise InvalidHeader(name, ", ".join(headers.get_all(name)), "more than one") from None
    except KeyError:
        raise InvalidHeader(name) from None


def _header_items(headers: Headers, name: str, parse: Callable[[str], list[str]]) -> list[str]:
    """Parse every line of a list-valued header into one list of items."""
    return [item for value in headers.get_all(name) for item in parse(value)]


def _check_upgrade(headers: Headers, exc_type: type[InvalidHeader]) -> None:
    for name, parse, expected in (
        ("Connection", parse_connection, "upgrade"),
        ("Upgrade", parse_upgrade, "websocket"),
    ):
        if expected not in (item.lower() for item in _header_items(headers, name, parse)):
            raise exc_type(name, ", ".join(headers.get_all(name)) or None)


# -- client side ---------------------------------------------------------------------


def build_request(
    host: str,
    path: str,
    *,
    key: str,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    extension_factories: Sequence[ClientExtensionFactory] = (),
    additional_headers: HeadersLike | None = None,
    user_agent: str | None = None,
) -> Request:
    """Build the client's opening request; ``host`` is the ``Host`` header value."""
    headers = Headers()
    headers["Host"] = host
    headers["Upgrade"] = "websocket"
    headers["Connection"] = "Upgrade"
    headers["Sec-WebSocket-Key"] = key
    headers["Sec-WebSocket-Version"] = WEBSOCKET_VERSION
    if origin is not None:
        headers["Origin"] = origin
    if extension_factories:
        headers["Sec-WebSocket-Extensions"] = build_extensions(
            (factory.name, factory.offer()) for factory in extension_factories
        )
    if subprotocols:
        headers["Sec-WebSocket-Protocol"] = build_subprotocols(subprotocols)
    if additional_headers is not None:
        headers.update(additional_headers)
    if user_agent is not None and "User-Agent" not in headers:
        headers["User-Agent"] = user_agent
    return Request(path, headers)


def validate_response(
    request: Request,
    response: Response,
    extension_factories: Sequence[ClientExtensionFactory] = (),
) -> tuple[list[Extension], str | None]:
    """Check the server's response; return the extensions and subprotocol it agreed to."""
    if response.status != 101:
        raise InvalidStatus(response)
    headers = response.headers
    _check_upgrade(headers, InvalidUpgrade)
    expected = accept_key(request.headers["Sec-WebSocket-Key"])
    accept = _single(headers, "Sec-WebSocket-Accept")
    if accept != expected:
        raise InvalidHeaderValue("Sec-WebSocket-Accept", accept, "does not match the key")

    extensions: list[Extension] = []
    for value in headers.get_all("Sec-WebSocket-Extensions"):
        for name, params in parse_extensions(value):
            for factory in extension_factories:
                if factory.name == name:
                    extensions.append(factory.accept(params, extensions))
                    break
            else:
                raise NegotiationError(f"the server accepted {name}, which we did not offer")

    subprotocol = None
    values = headers.get_all("Sec-WebSocket-Protocol")
    if values:
        chosen = _header_items(headers, "Sec-WebSocket-Protocol", parse_subprotocols)
        offered = _header_items(request.headers, "Sec-WebSocket-Protocol", parse_subprotocols)
        if len(chosen) != 1:
            raise NegotiationError(f"the server chose several subprotocols: {', '.join(chosen)}")
        if chosen[0] not in offered:
            raise NegotiationError(f"the server chose {chosen[0]}, which we did not offer")
        subprotocol = chosen[0]
    return extensions, subprotocol


# -- server side ---------------------------------------------------------------------


def validate_request(request: Request, *, origins: OriginPolicy | None = None) -> str:
    """Check a client's opening request; return its ``Sec-WebSocket-Key``.

    Raise a child of ``InvalidHandshake`` whose ``status`` is the HTTP status
    to answer with (400, 403 or 426).
    """
    headers = request.headers
    _check_upgrade(headers, InvalidUpgrade)
    version = _single(headers, "Sec-WebSocket-Version")
    if version != WEBSOCKET_VERSION:
        raise InvalidVersion("Sec-WebSocket-Version", version, "only 13 is supported")
    key = _single(headers, "Sec-WebSocket-Key")
    try:
        raw = base64.b64decode(key.encode(), validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 16:
        raise InvalidHeaderValue("Sec-WebSocket-Key", key, "must be 16 bytes in base64")
    if not _single(headers, "Host"):
        raise InvalidHeader("Host", "")
    if origins is not None:
        try:
            origin = headers.get("Origin")
        except MultipleValuesError:
            raise InvalidOrigin(
                "Origin", ", ".join(headers.get_all("Origin")), "more than one"
            ) from None
        allowed = origins(origin) if callable(origins) else origin in origins
        if not allowed:
            raise InvalidOrigin("Origin", origin, "not allowed")
    return key


def negotiate_extensions(
    request: Request, factories: Sequence[ServerExtensionFactory]
) -> tuple[str | None, list[Extension]]:
    """Accept the client's extension offers the server supports, in the client's order.

    Return the ``Sec-WebSocket-Extensions`` response value (None if nothing was
    accepted) and the extensions. An offer a factory declines is skipped; the
    client's next offer of the same extension is tried; at most one of each
    extension is accepted.
    """
    accepted: list[Extension] = []
    response: list[tuple[str, list[tuple[str, str | None]]]] = []
    for value in request.headers.get_all("Sec-WebSocket-Extensions"):
        for name, params in parse_extensions(value):
            if any(extension.name == name for extension in accepted):
                continue
            for factory in factories:
                if factory.name != name:
                    continue
                try:
                    response_params, extension = factory.negotiate(params, accepted)
                except NegotiationError:
                    continue
                accepted.append(extension)
                response.append((name, list(response_params)))
                break
    return (build_extensions(response) if response else None), accepted


def negotiate_subprotocol(
    request: Request,
    available: Sequence[str] | None,
    select: SubprotocolSelector | None = None,
) -> str | None:
    """Pick the subprotocol for this connection, or None.

    By default: the first in the client's list that the server supports (the
    client lists its preferences first). ``select(client_list, available)``
    replaces that rule. A client whose subprotocols the server doesn't
    support still connects, without one: the application may then close it.
    """
    offered = _header_items(request.headers, "Sec-WebSocket-Protocol", parse_subprotocols)
    if select is not None:
        return select(offered, available or ())
    if not offered or not available:
        return None
    return next((name for name in offered if name in available), None)


def build_response(
    key: str,
    *,
    extensions_header: str | None = None,
    subprotocol: str | None = None,
    additional_headers: HeadersLike | None = None,
    server_header: str | None = None,
) -> Response:
    """Build the 101 response that accepts the upgrade."""
    # A fresh Headers: add() each name once (no replacing to do).
    headers = Headers()
    headers.add("Upgrade", "websocket")
    headers.add("Connection", "Upgrade")
    headers.add("Sec-WebSocket-Accept", accept_key(key))
    if extensions_header is not None:
        headers.add("Sec-WebSocket-Extensions", extensions_header)
    if subprotocol is not None:
        headers.add("Sec-WebSocket-Protocol", subprotocol)
    if server_header is not None:
        headers.add("Server", server_header)
    if additional_headers is not None:
        headers.update(additional_headers)
    return Response(101, "Switching Protocols", headers)


def response_for_error(exc: InvalidHandshake) -> Response:
    """Build the HTTP error response a server sends for a failed handshake.

    The body names the problem generically: no request data is reflected.
    """
    headers = Headers()
    if exc.status == 426:
        headers["Upgrade"] = "websocket"
        headers["Sec-WebSocket-Version"] = WEBSOCKET_VERSION
    if isinstance(exc, InvalidHeader):
        problem = "missing" if exc.value is None else "invalid"
        text = f"Failed to open a WebSocket connection: {problem} {exc.name} header."
    elif exc.status == 405:
        headers["Allow"] = "GET"
        text = "Failed to open a WebSocket connection: use GET."
    elif exc.status == 505:
        text = "Failed to open a WebSocket connection: use HTTP/1.1."
    elif exc.status in (414, 431):
        text = "Failed to open a WebSocket connection: request too large."
    else:
        text = "Failed to open a WebSocket connection: invalid request."
    return error_response(exc.status, text, headers)
