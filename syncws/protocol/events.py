"""Events the protocol core produces from received bytes.

Data arrives as ``Text`` or ``Binary`` pieces: one per data frame, each already
decompressed and (for text) decoded. A message that was not fragmented is a
single piece with ``final=True``; a fragmented one is several pieces of the
same class, the last with ``final=True``. With ``Protocol.defer_inflate``, the
frames of a compressed message come as ``Deflated`` pieces instead, which
``Protocol.inflate()`` turns into ``Text`` or ``Binary`` later. The
handshake's events are the ``Request`` (server side) and ``Response`` (client
side) objects themselves.
"""

from __future__ import annotations

import dataclasses
from typing import TypeAlias

from .http11 import Request, Response

__all__ = ["Binary", "Close", "DataEvent", "Deflated", "Event", "Ping", "Pong", "Text"]


@dataclasses.dataclass(frozen=True, slots=True)
class Text:
    """A piece of a text message: the decoded text of one frame."""

    data: str
    final: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Binary:
    """A piece of a binary message: the payload of one frame."""

    data: bytes
    final: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Deflated:
    """A piece of a compressed message, not inflated yet (see ``Protocol.defer_inflate``).

    ``data`` is the frame's payload as it came (unmasked, still compressed);
    ``text`` tells a text message from a binary one, ``first`` its first frame
    from a continuation; ``final`` and ``rsv1`` are the frame's bits.
    ``Protocol.inflate()`` turns it into ``Text`` or ``Binary``: every piece,
    in the order received.
    """

    data: bytes
    text: bool
    first: bool = True
    final: bool = True
    rsv1: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Ping:
    """The peer sent a ping. The core already queued the matching pong."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Pong:
    """The peer sent a pong."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    """The peer sent a close frame; ``code`` is 1005 when it carried none."""

    code: int
    reason: str = ""


#: A piece of a message as the core delivers it: ``Deflated`` only with ``defer_inflate``.
DataEvent = Text | Binary | Deflated

#: What ``Protocol.events_received()`` returns: the frame events above, and the
#: handshake's ``Request`` (server side) or ``Response`` (client side).
Event: TypeAlias = Text | Binary | Deflated | Ping | Pong | Close | Request | Response
