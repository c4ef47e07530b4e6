"""The server side of the protocol core: the opening handshake, then frames."""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import InvalidHandshake, InvalidMessage, InvalidStatus
from ..version import __version__
from .connection import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_SIZE, Protocol, Side, State
from .deflate import ServerPerMessageDeflateFactory
from .extensions import Extension, ServerExtensionFactory
from .handshake import (
    OriginPolicy,
    SubprotocolSelector,
    build_response,
    negotiate_extensions,
    negotiate_subprotocol,
    response_for_error,
    validate_request,
)
from .headers import HeadersLike
from .http11 import Limits, Request, Response, error_response, parse_request

__all__ = ["DEFAULT_SERVER_HEADER", "ServerProtocol"]

DEFAULT_SERVER_HEADER = f"syncws/{__version__}"


class ServerProtocol(Protocol):
    """A server connection: read the request, answer it, then speak frames.

    When a whole request arrived, a ``Request`` event comes out. The I/O
    layer (or the application) then answers with ``send_response(accept(request))``
    to upgrade, or ``send_response(reject(status, text))`` to refuse or to
    serve plain HTTP on the same port. A malformed request is answered by the
    core itself with the right 4xx response; ``handshake_exc`` says why.

    ``extensions`` defaults to permessage-deflate; pass ``()`` to turn
    compression off.
    """

    __slots__ = (
        "_accepted",
        "available_subprotocols",
        "origins",
        "select_subprotocol",
        "server_header",
    )

    def __init__(
        self,
        *,
        origins: OriginPolicy | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: SubprotocolSelector | None = None,
        extensions: Sequence[ServerExtensionFactory] | None = None,
        server_header: str | None = DEFAULT_SERVER_HEADER,
        max_size: int | None = DEFAULT_MAX_SIZE,
        max_fragments: int | None = DEFAULT_MAX_FRAGMENTS,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(
            Side.SERVER, state=State.CONNECTING, max_size=max_size, max_fragments=max_fragments
        )
        self.origins = origins
        self.available_subprotocols = subprotocols
        self.select_subprotocol = select_subprotocol
        self.extension_factories: Sequence[ServerExtensionFactory] = (
            [ServerPerMessageDeflateFactory()] if extensions is None else extensions
        )
        self.server_header = server_header
        self.limits = limits or Limits()
        #: The request received and the response sent, once they were.
        self.request: Request | None = None
        self.response: Response | None = None
        self._accepted: tuple[list[Extension], str | None] | None = None

    def accept(
        self, request: Request, *, additional_headers: HeadersLike | None = None
    ) -> Response:
        """Check ``request`` and build the response: 101, or the right error if it's invalid.

        An invalid request records ``handshake_exc``; sending the error
        response then fails the handshake.
        """
        try:
            key = validate_request(request, origins=self.origins)
            extensions_header, extensions = negotiate_extensions(request, self.extension_factories)
            subprotocol = negotiate_subprotocol(
                request, self.available_subprotocols, self.select_subprotocol
            )
        except InvalidHandshake as exc:
            self.handshake_exc = exc
            return response_for_error(exc)
        self._accepted = (extensions, subprotocol)
        return build_response(
            key,
            extensions_header=extensions_header,
            subprotocol=subprotocol,
            additional_headers=additional_headers,
            server_header=self.server_header,
        )

    def reject(self, status: int, text: str, *, headers: HeadersLike | None = None) -> Response:
        """Build a plain HTTP response instead of an upgrade: a refusal, a health check..."""
        response = error_response(status, text, headers)
        if self.server_header is not None and "Server" not in response.headers:
            response.headers["Server"] = self.server_header
        return response

    def send_response(self, response: Response) -> None:
        """Queue the response.

        A 101 from ``accept()`` opens the connection (frames that arrived
        meanwhile are parsed now); any other response ends it.
        """
        self.response = response
        self._write(response.serialize())
        if response.status == 101 and self._accepted is not None and self.handshake_exc is None:
            self._open(*self._accepted)
        else:
            self._fail_handshake(self.handshake_exc or InvalidStatus(response))

    def _receive_handshake(self) -> None:
        if self.request is not None:
            return  # the request is waiting for an answer
        try:
            request = parse_request(self._buffer, self.limits)
        except InvalidHandshake as exc:
            self.response = response_for_error(exc)
            self._write(self.response.serialize())
            self._fail_handshake(exc)
            return
        if request is not None:
            self.request = request
            self._emit(request)

    def _receive_handshake_eof(self) -> None:
        self._fail_handshake(InvalidMessage("connection closed during the opening handshake"))
