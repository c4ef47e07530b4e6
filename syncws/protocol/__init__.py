"""The sans-I/O WebSocket protocol core: bytes in, events and bytes out.

Nothing in this package touches a socket, a thread or a clock. Build a
``ClientProtocol`` or ``ServerProtocol``, feed it what you read with
``receive_data()``, and take ``events_received()`` and ``data_to_send()``.
"""

from .client import ClientProtocol
from .close_codes import CloseCode
from .connection import DEFAULT_MAX_SIZE, Protocol, Side, State
from .deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from .events import Binary, Close, Deflated, Ping, Pong, Text
from .extensions import ClientExtensionFactory, Extension, ServerExtensionFactory
from .frames import Frame, Opcode
from .headers import Headers, MultipleValuesError
from .http11 import Limits, Request, Response
from .messages import MessageAssembler
from .server import ServerProtocol

__all__ = [
    "DEFAULT_MAX_SIZE",
    "Binary",
    "ClientExtensionFactory",
    "ClientPerMessageDeflateFactory",
    "ClientProtocol",
    "Close",
    "CloseCode",
    "Deflated",
    "Extension",
    "Frame",
    "Headers",
    "Limits",
    "MessageAssembler",
    "MultipleValuesError",
    "Opcode",
    "PerMessageDeflate",
    "Ping",
    "Pong",
    "Protocol",
    "Request",
    "Response",
    "ServerExtensionFactory",
    "ServerPerMessageDeflateFactory",
    "ServerProtocol",
    "Side",
    "State",
    "Text",
]
