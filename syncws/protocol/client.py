"""The client side of the protocol core: the opening handshake, then frames."""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import InvalidHandshake, InvalidMessage
from ..version import __version__
from .connection import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_SIZE, Protocol, Side, State
from .deflate import ClientPerMessageDeflateFactory
from .extensions import ClientExtensionFactory
from .handshake import build_request, generate_key, validate_response
from .headers import HeadersLike
from .http11 import Limits, Request, Response, parse_response

__all__ = ["DEFAULT_USER_AGENT", "ClientProtocol"]

DEFAULT_USER_AGENT = f"syncws/{__version__}"


class ClientProtocol(Protocol):
    """A client connection: send the request, check the response, then speak frames.

    ``host`` is the ``Host`` header value (``example.com``, ``[::1]:8000``) and
    ``path`` the resource (``/chat?room=1``). ``extensions`` defaults to
    permessage-deflate; pass ``()`` to turn compression off.

    Usage: ``send_request(connect())`` (edit the request in between if you
    like), feed received bytes to ``receive_data``, and wait for the
    ``Response`` event. Then ``state`` is OPEN, or ``handshake_exc`` says why
    not (the ``Response`` event carries the server's status and body).
    """

    __slots__ = (
        "_key",
        "additional_headers",
        "host",
        "origin",
        "path",
        "subprotocols",
        "user_agent",
    )

    def __init__(
        self,
        host: str,
        path: str = "/",
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        extensions: Sequence[ClientExtensionFactory] | None = None,
        additional_headers: HeadersLike | None = None,
        user_agent: str | None = DEFAULT_USER_AGENT,
        max_size: int | None = DEFAULT_MAX_SIZE,
        max_fragments: int | None = DEFAULT_MAX_FRAGMENTS,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(
            Side.CLIENT, state=State.CONNECTING, max_size=max_size, max_fragments=max_fragments
        )
        self.host = host
        self.path = path
        self.origin = origin
        self.subprotocols = subprotocols
        self.extension_factories: Sequence[ClientExtensionFactory] = (
            [ClientPerMessageDeflateFactory()] if extensions is None else extensions
        )
        self.additional_headers = additional_headers
        self.user_agent = user_agent
        self.limits = limits or Limits()
        #: The request sent and the response received, once they were.
        self.request: Request | None = None
        self.response: Response | None = None
        self._key = generate_key()

    def connect(self) -> Request:
        """Build the opening request (not sent yet)."""
        return build_request(
            self.host,
            self.path,
            key=self._key,
            origin=self.origin,
            subprotocols=self.subprotocols,
            extension_factories=self.extension_factories,
            additional_headers=self.additional_headers,
            user_agent=self.user_agent,
        )

    def send_request(self, request: Request) -> None:
        """Queue the opening request for sending."""
        self.request = request
        self._write(request.serialize())

    def _receive_handshake(self) -> None:
        self._read_response(eof=False)

    def _receive_handshake_eof(self) -> None:
        # At EOF the parser either completes the response or raises.
        self._read_response(eof=True)

    def _read_response(self, *, eof: bool) -> None:
        try:
            response = parse_response(self._buffer, self.limits, eof=eof)
        except InvalidHandshake as exc:
            self._fail_handshake(exc)
            return
        if response is None:
            return
        self.response = response
        self._emit(response)
        if self.request is None:
            self._fail_handshake(InvalidMessage("response received before the request was sent"))
            return
        try:
            extensions, subprotocol = validate_response(
                self.request, response, self.extension_factories
            )
        except InvalidHandshake as exc:
            self._fail_handshake(exc)
            return
        self._open(extensions, subprotocol)
