"""Every exception syncws raises, in one hierarchy.

``WebSocketError`` is the base of everything. Below it:

* ``ConnectionClosed`` (``ConnectionClosedOK``, ``ConnectionClosedError``): the
  connection is gone; the close codes and reasons say why.
* ``InvalidHandshake`` and its children: the opening handshake failed.
* ``ProtocolError`` and its children: the peer broke RFC 6455 after the
  handshake; each carries the close code we answer it with.
* ``InvalidURI``, ``ConcurrencyError``, ``InvalidState``: misuse on our side.

Messages say what happened and, where it helps, what to do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .protocol.http11 import Response

__all__ = [
    "BacklogFull",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidHeaderFormat",
    "InvalidHeaderValue",
    "InvalidMessage",
    "InvalidOrigin",
    "InvalidPayload",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "InvalidVersion",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "PubSubError",
    "TooManyFragments",
    "UnsupportedServer",
    "WebSocketError",
]

# This module is a leaf: it imports nothing from syncws (the core imports it).
# The wording of close codes lives here because the messages below use it;
# ``syncws.protocol.close_codes`` re-exports ``describe_close``.

_EXPLANATIONS = {
    1000: "OK",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status code",
    1006: "connection closed abnormally",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "extension required",
    1011: "unexpected error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure",
}


def describe_close(code: int | None, reason: str = "") -> str:
    """Describe a close code and reason for humans, e.g. ``1000 (OK) bye``."""
    if code is None:
        return "no close code"
    if code in _EXPLANATIONS:
        text = f"{code} ({_EXPLANATIONS[code]})"
    elif 3000 <= code < 4000:
        text = f"{code} (registered)"
    elif 4000 <= code < 5000:
        text = f"{code} (private use)"
    else:
        text = f"{code} (unknown)"
    return f"{text} {reason}" if reason else text


class WebSocketError(Exception):
    """Base class of every exception raised by syncws."""


# -- the connection is closed --------------------------------------------------


class CloseFrame(NamedTuple):
    """A close frame's code and reason, as ``ConnectionClosed.rcvd`` and ``sent`` give them."""

    code: int
    reason: str


class ConnectionClosed(WebSocketError):
    """The WebSocket connection is closed.

    ``received_code``/``received_reason`` come from the close frame the peer
    sent, ``sent_code``/``sent_reason`` from ours; a code is ``None`` when that
    frame was never exchanged. ``code`` and ``reason`` give the connection's
    close code and reason as RFC 6455 section 7.1.5 defines them (1006 when no
    close frame was received). ``we_closed_first`` tells which side started the
    closing handshake (``None`` when no close frame was exchanged).

    websockets' spelling works too: ``rcvd`` and ``sent`` are the close frames
    (objects with ``code`` and ``reason``, ``None`` where no frame was
    exchanged) and ``rcvd_then_sent`` tells their order (``None`` unless both
    were).
    """

    def __init__(
        self,
        received_code: int | None,
        received_reason: str,
        sent_code: int | None,
        sent_reason: str,
        *,
        we_closed_first: bool | None = None,
    ) -> None:
        self.received_code = received_code
        self.received_reason = received_reason
        self.sent_code = sent_code
        self.sent_reason = sent_reason
        self.we_closed_first = we_closed_first
        super().__init__(self._message())

    @property
    def code(self) -> int:
        """The close code of the connection (1006 when no close frame arrived)."""
        if self.received_code is None:
            return 1006  # abnormal closure: no close frame
        return self.received_code

    @property
    def reason(self) -> str:
        """The close reason the peer gave, or ``""``."""
        return self.received_reason if self.received_code is not None else ""

    @property
    def rcvd(self) -> CloseFrame | None:
        """The close frame the peer sent (``code``, ``reason``), or None (websockets' name)."""
        if self.received_code is None:
            return None
        return CloseFrame(self.received_code, self.received_reason)

    @property
    def sent(self) -> CloseFrame | None:
        """The close frame we sent (``code``, ``reason``), or None (websockets' name)."""
        if self.sent_code is None:
            return None
        return CloseFrame(self.sent_code, self.sent_reason)

    @property
    def rcvd_then_sent(self) -> bool | None:
        """True if the peer's close frame came before ours; None unless both exist."""
        if self.received_code is None or self.sent_code is None:
            return None
        return not self.we_closed_first

    def _message(self) -> str:
        if self.received_code is None and self.sent_code is None:
            return "no close frame received or sent: the TCP connection dropped"
        if self.received_code is None:
            sent = describe_close(self.sent_code, self.sent_reason)
            return f"sent {sent}; no close frame received"
        if self.sent_code is None:
            return (
                f"received {describe_close(self.received_code, self.received_reason)}; "
                "no close frame sent"
            )
        received = describe_close(self.received_code, self.received_reason)
        sent = describe_close(self.sent_code, self.sent_reason)
        if self.we_closed_first:
            return f"sent {sent}; then received {received}"
        return f"received {received}; then sent {sent}"


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally: both close codes were 1000, 1001 or absent."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error: a close code other than 1000/1001, or none at all."""


# -- the opening handshake failed ----------------------------------------------


class InvalidHandshake(WebSocketError):
    """The opening handshake failed.

    On the server, ``status`` is the HTTP status of the response we send back
    (400 by default).
    """

    status: int = 400


class InvalidMessage(InvalidHandshake):
    """The HTTP request or response is malformed, too large, or cut short."""


class InvalidHeader(InvalidHandshake):
    """An HTTP header is missing or has an unacceptable value."""

    def __init__(self, name: str, value: str | None = None, detail: str = "") -> None:
        self.name = name
        self.value = value
        self.detail = detail
        if value is None:
            message = f"missing {name} header"
        elif value == "":
            message = f"empty {name} header"
        else:
            message = f"invalid {name} header: {value!r}"
        if detail:
            message = f"{message} ({detail})"
        super().__init__(message)


class InvalidHeaderFormat(InvalidHeader):
    """An HTTP header does not follow its grammar."""

    def __init__(self, name: str, value: str, position: int, detail: str) -> None:
        super().__init__(name, value, f"{detail} at position {position}")
        self.position = position


class InvalidHeaderValue(InvalidHeader):
    """An HTTP header is well formed but its value is not acceptable."""


class InvalidUpgrade(InvalidHeader):
    """The ``Upgrade`` or ``Connection`` header does not ask for a WebSocket upgrade.

    A server answers 426 Upgrade Required: plain HTTP reached a WebSocket endpoint.
    """

    status = 426


class InvalidVersion(InvalidHeader):
    """``Sec-WebSocket-Version`` is not 13; the server answers 426 with the version it supports."""

    status = 426


class InvalidOrigin(InvalidHeader):
    """The ``Origin`` header is missing or not in the allowed list; the server answers 403."""

    status = 403


class InvalidStatus(InvalidHandshake):
    """The server answered the opening handshake with something other than 101.

    ``response`` holds the status, headers and body it sent.
    """

    def __init__(self, response: Response) -> None:
        self.response = response
        status_line = f"HTTP {response.status} {response.reason}".rstrip()
        super().__init__(f"server rejected WebSocket connection: {status_line}")

    @property
    def status_code(self) -> int:
        """The HTTP status the server sent."""
        status: int = self.response.status
        return status


class ProxyError(InvalidHandshake):
    """The proxy refused to open a tunnel to the server.

    ``response`` holds what the proxy answered; 407 means it wants
    credentials (put them in the proxy URL: ``http://user:password@proxy:8080``).
    """

    def __init__(self, response: Response) -> None:
        self.response = response
        status_line = f"HTTP {response.status} {response.reason}".rstrip()
        hint = ": it wants credentials" if response.status == 407 else ""
        super().__init__(f"proxy rejected the connection: {status_line}{hint}")

    @property
    def status_code(self) -> int:
        """The HTTP status the proxy sent."""
        status: int = self.response.status
        return status


class NegotiationError(InvalidHandshake):
    """Extension or subprotocol negotiation failed."""


# -- the peer broke the protocol -----------------------------------------------


class ProtocolError(WebSocketError):
    """The peer violated RFC 6455; we close the connection with ``close_code``."""

    close_code: int = 1002


class InvalidPayload(ProtocolError):
    """A text message or close reason is not valid UTF-8 (close code 1007)."""

    close_code = 1007


class PayloadTooBig(ProtocolError):
    """A message is larger than ``max_size`` (close code 1009)."""

    close_code = 1009


class TooManyFragments(PayloadTooBig):
    """A message arrived in more fragments than the limit allows (close code 1009)."""


# -- misuse --------------------------------------------------------------------


class InvalidURI(WebSocketError):
    """A WebSocket URI is malformed or uses an unsupported scheme."""

    def __init__(self, uri: str, detail: str) -> None:
        self.uri = uri
        super().__init__(f"{uri} isn't a valid WebSocket URI: {detail}")


class InvalidState(WebSocketError):
    """An operation was attempted in a state where it is not allowed.

    For example, sending a data frame before the handshake completed or after a
    close frame was sent.
    """


class ConcurrencyError(WebSocketError, RuntimeError):
    """Two threads did at once something only one thread may do, such as ``recv()``."""


class BacklogFull(WebSocketError):
    """``broadcast()`` skipped a connection whose peer doesn't read fast enough.

    More than the connection's ``write_limit`` bytes were waiting for the
    peer. ``closed`` tells whether the connection was also closed (the
    ``overflow`` option of ``broadcast()``) or just missed the message.
    """

    def __init__(self, connection: object, backlog: int, *, closed: bool) -> None:
        self.connection = connection
        self.backlog = backlog
        self.closed = closed
        action = "closing the connection" if closed else "message skipped"
        super().__init__(
            f"{backlog} bytes already wait for this peer, past its write_limit: {action}; "
            "raise write_limit if the peer is just bursty"
        )


class PubSubError(WebSocketError):
    """A pub/sub backend (Redis) couldn't publish: remote subscribers missed the message.

    Local subscribers got it: the hub delivers in its own process first.
    """


class UnsupportedServer(WebSocketError, RuntimeError):
    """This WSGI server can't hand a connection's socket over to a WebSocket.

    Raised at the first upgrade attempt, before anything is written to the
    client, with the server's name and what to run instead.
    """
