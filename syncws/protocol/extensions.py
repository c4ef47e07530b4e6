"""The extension interface: how an extension is negotiated and how it rewrites frames.

RFC 6455 section 9 lets extensions be negotiated in the opening handshake and
then transform data frames. Only permessage-deflate exists in practice, but
the handshake grammar allows several offers and several extensions, so the
core talks to extensions through these small interfaces.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable, Sequence

from .frames import Frame

__all__ = [
    "ClientExtensionFactory",
    "Extension",
    "ExtensionParameters",
    "ServerExtensionFactory",
]

#: Parameters of one extension offer or response: ``(name, value)`` pairs, the
#: value ``None`` for a parameter given without ``=value``.
ExtensionParameters = Sequence[tuple[str, str | None]]


class Extension(abc.ABC):
    """An extension negotiated for one connection.

    Only data frames (text, binary, continuation) go through ``encode`` and
    ``decode``; control frames never do.
    """

    name: str

    @abc.abstractmethod
    def encode(self, frame: Frame) -> Frame:
        """Transform a data frame we are about to send."""

    def sharing_key(self) -> Hashable | None:
        """A key such that equal keys encode a whole message to equal bytes.

        ``None`` (the default) means the encoding depends on what this
        connection sent before, so a message can't be encoded once and sent
        on many connections (broadcast). An extension that returns a key must
        implement ``encode_standalone``.
        """
        return None

    def encode_standalone(self, frame: Frame) -> Frame:
        """Encode a whole message (a final, non-continuation frame) without changing state."""
        raise NotImplementedError(f"{type(self).__name__} can't encode messages for broadcast")

    def sent_standalone(self, payload: bytes) -> None:
        """A message that ``encode_standalone`` encoded went out on this connection.

        ``payload`` is the message before encoding. An extension whose later
        messages depend on what was sent (the peer's state follows the
        stream) brings its own state up to date here. Default: nothing.
        """
        return None

    @abc.abstractmethod
    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        """Transform a data frame we received.

        ``max_size`` is how many more payload bytes the current message may
        hold (``None``: no limit). Raise ``PayloadTooBig`` when the decoded
        payload would be longer, before producing it all (the guard against
        decompression bombs), and ``ProtocolError`` on bad input.
        """


class ClientExtensionFactory(abc.ABC):
    """Offers an extension in a client's request and accepts the server's answer."""

    name: str

    @abc.abstractmethod
    def offer(self) -> ExtensionParameters:
        """Return the parameters to offer in ``Sec-WebSocket-Extensions``."""

    @abc.abstractmethod
    def accept(self, params: ExtensionParameters, accepted: Sequence[Extension]) -> Extension:
        """Build the extension from the server's response parameters.

        ``accepted`` lists the extensions accepted before this one in the same
        response. Raise ``NegotiationError`` if the response is unacceptable.
        """


class ServerExtensionFactory(abc.ABC):
    """Accepts (or declines) a client's extension offer on the server."""

    name: str

    @abc.abstractmethod
    def negotiate(
        self, params: ExtensionParameters, accepted: Sequence[Extension]
    ) -> tuple[ExtensionParameters, Extension]:
        """Accept one offer: return the response parameters and the extension.

        ``accepted`` lists the extensions already accepted for this request.
        Raise ``NegotiationError`` to decline this offer; the server then
        tries the client's next offer, if any.
        """
