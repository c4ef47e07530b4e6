"""syncws: WebSocket for Python with threads, no async and no await."""

from .auth import basic_auth
from .callbacks import WebSocketApp
from .exceptions import (
    BacklogFull,
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderFormat,
    InvalidHeaderValue,
    InvalidMessage,
    InvalidOrigin,
    InvalidPayload,
    InvalidState,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    InvalidVersion,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    PubSubError,
    TooManyFragments,
    UnsupportedServer,
    WebSocketError,
)
from .protocol.close_codes import CloseCode
from .protocol.connection import State
from .protocol.headers import Headers
from .protocol.http11 import Request, Response
from .pubsub import Hub, RedisBackend
from .threaded.backoff import Backoff
from .threaded.client import ClientConnection, connect, unix_connect
from .threaded.client.reconnect import reconnect
from .threaded.connection import Connection, PendingPing
from .threaded.connection.broadcast import broadcast
from .threaded.runtime.reactor import BackgroundStats, background_stats
from .threaded.server import Server, ServerConnection, serve, unix_serve
from .version import __version__ as __version__

__all__ = [
    "BackgroundStats",
    "BacklogFull",
    "Backoff",
    "ClientConnection",
    "CloseCode",
    "ConcurrencyError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Headers",
    "Hub",
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
    "PendingPing",
    "ProtocolError",
    "ProxyError",
    "PubSubError",
    "RedisBackend",
    "Request",
    "Response",
    "Server",
    "ServerConnection",
    "State",
    "TooManyFragments",
    "UnsupportedServer",
    "WebSocketApp",
    "WebSocketError",
    "background_stats",
    "basic_auth",
    "broadcast",
    "connect",
    "reconnect",
    "serve",
    "unix_connect",
    "unix_serve",
]
