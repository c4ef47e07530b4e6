"""A WebSocket client: ``connect(uri)`` returns an open ``ClientConnection``.

The whole opening sequence (DNS, TCP, proxy, TLS, HTTP upgrade, redirects)
shares one deadline, ``open_timeout``.
"""

from __future__ import annotations

import inspect
import logging
import socket
import ssl as ssl_module
import urllib.parse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from ...exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from ...protocol.client import DEFAULT_USER_AGENT, ClientProtocol
from ...protocol.connection import DEFAULT_MAX_SIZE, State
from ...protocol.extensions import ClientExtensionFactory
from ...protocol.headers import Headers, HeadersLike
from ...protocol.http11 import Response
from ...uri import WebSocketURI, parse_uri
from ..connection import DEFAULT_WRITE_LIMIT, Connection
from ..deadline import Deadline
from ..net.dns import open_tcp
from ..net.proxy import connect_through_proxy, proxy_for
from ..net.tls_in_tls import wrap_tls, wrap_tls_in_tls
from ..options import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    ClientOptions,
    MaxQueue,
    MaxSize,
)

if TYPE_CHECKING:
    from .reconnect import reconnect

__all__ = ["MAX_REDIRECTS", "SOCKET_KEYWORDS", "ClientConnection", "connect", "unix_connect"]

#: How many HTTP redirects ``connect()`` follows before giving up.
MAX_REDIRECTS = DEFAULT_MAX_REDIRECTS

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers that must not follow a redirect to another origin.
_CREDENTIAL_HEADERS = ("Authorization", "Cookie", "Proxy-Authorization")


class ClientConnection(Connection):
    """A connection opened by ``connect()``. Use it as a context manager to close it."""

    __slots__ = ()

    protocol: ClientProtocol

    def _handshake(self, deadline: Deadline) -> None:
        """Send the request, read the response; raise ``InvalidHandshake`` if refused."""

        def send_request() -> None:
            self.request = self.protocol.connect()
            self.protocol.send_request(self.request)

        self._drive(send_request, check_open=False, deadline=deadline)
        response = self._receive_handshake(deadline)
        if isinstance(response, Response):
            self.response = response
        if self.protocol.state is State.CONNECTING or self.protocol.handshake_exc is not None:
            self._abort()
            exc = self.protocol.handshake_exc
            if exc is None:
                exc = InvalidHandshake("the server closed the connection during the handshake")
                if self._lost is not None:
                    exc.__cause__ = self._lost
            raise exc
        self.logger.debug("connection open: %s", self.remote_address)


@overload
def connect(uri: str, *, legacy: Literal[False], **kwargs: Any) -> reconnect: ...


@overload
def connect(
    uri: str,
    *,
    sock: socket.socket | None = ...,
    ssl: ssl_module.SSLContext | None = ...,
    server_hostname: str | None = ...,
    origin: str | None = ...,
    subprotocols: Sequence[str] | None = ...,
    additional_headers: HeadersLike | None = ...,
    user_agent_header: str | None = ...,
    compression: Literal["deflate"] | None = ...,
    extensions: Sequence[ClientExtensionFactory] | None = ...,
    open_timeout: float | None = ...,
    max_size: MaxSize = ...,
    max_queue: MaxQueue = ...,
    write_limit: int = ...,
    ping_interval: float | None = ...,
    ping_timeout: float | None = ...,
    close_timeout: float | None = ...,
    max_redirects: int = ...,
    proxy: str | bool | None = ...,
    create_connection: type[ClientConnection] | None = ...,
    logger: logging.Logger | None = ...,
    unix_path: str | None = ...,
    legacy: Literal[True] | None = ...,
    **socket_kwargs: Any,
) -> ClientConnection: ...


def connect(
    uri: str,
    *,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    additional_headers: HeadersLike | None = None,
    user_agent_header: str | None = DEFAULT_USER_AGENT,
    compression: Literal["deflate"] | None = "deflate",
    extensions: Sequence[ClientExtensionFactory] | None = None,
    open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
    max_size: MaxSize = DEFAULT_MAX_SIZE,
    max_queue: MaxQueue = DEFAULT_MAX_QUEUE,
    write_limit: int = DEFAULT_WRITE_LIMIT,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    max_redirects: int = MAX_REDIRECTS,
    proxy: str | bool | None = True,
    create_connection: type[ClientConnection] | None = None,
    logger: logging.Logger | None = None,
    unix_path: str | None = None,
    legacy: bool | None = None,
    **socket_kwargs: Any,
) -> ClientConnection | reconnect:
    """Open a WebSocket connection to ``uri`` (``ws://`` or ``wss://``) and return it.

    Certificates are verified for ``wss://`` unless ``ssl`` says otherwise.
    Redirects (301, 302, 303, 307, 308) are followed up to ``max_redirects``
    times, never from ``wss://`` to ``ws://``. Raise ``InvalidStatus`` (with
    the response's status, headers and body) when the server refuses,
    ``InvalidHandshake`` for other handshake failures, ``TimeoutError`` when
    ``open_timeout`` passes (DNS included), ``OSError`` when the network
    fails, ``TypeError`` or ``ValueError`` at once for an option that makes
    no sense (the message says what to write instead).

    ``proxy=True`` (the default) uses the proxy that ``HTTPS_PROXY``,
    ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` ask for; a URL
    (``http://user:pass@host:port``, ``https://...``, ``socks5://...``) sets
    one; ``None`` connects directly.

    ``extensions`` replaces what ``compression`` chooses with extension
    offers of your own, e.g. ``[ClientPerMessageDeflateFactory(
    server_no_context_takeover=True)]``.

    As in websockets: ``legacy=False`` returns a ``reconnect`` object (``for
    connection in connect(uri, legacy=False)`` reconnects, ``with`` opens one
    connection); ``create_connection`` may be a ``ClientConnection``
    subclass whose ``__init__`` takes websockets' arguments (``sock,
    protocol, *, ping_interval, ping_timeout, close_timeout, max_queue``);
    ``address=``, ``source_address=`` and ``all_errors=`` go to
    ``socket.create_connection()`` (no proxy then). Calling thread only.
    """
    if legacy is False:
        from .reconnect import reconnect  # noqa: PLC0415 - reconnect.py imports this module

        arguments = dict(locals())
        for name in ("uri", "legacy", "socket_kwargs", "reconnect", "options"):
            arguments.pop(name, None)
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(connect).parameters.items()
        }
        changed = {k: v for k, v in arguments.items() if v is not defaults.get(k)}
        return reconnect(uri, **changed, **socket_kwargs)
    if socket_kwargs:
        sock = _create_socket(uri, sock, proxy, socket_kwargs, open_timeout)
    options = ClientOptions(
        ssl=ssl,
        server_hostname=server_hostname,
        origin=origin,
        subprotocols=subprotocols,
        additional_headers=additional_headers,
        user_agent_header=user_agent_header,
        compression=compression,
        extensions=extensions,
        open_timeout=open_timeout,
        max_size=cast("int | None", max_size),  # a tuple: split by ClientOptions
        max_queue=cast("int | None", max_queue),
        write_limit=write_limit,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_redirects=max_redirects,
        proxy=proxy,
        create_connection=create_connection,
    )
    return _connect(uri, options, sock=sock, logger=logger, unix_path=unix_path)


def _connect(
    uri: str,
    options: ClientOptions,
    *,
    sock: socket.socket | None,
    logger: logging.Logger | None,
    unix_path: str | None,
) -> ClientConnection:
    deadline = Deadline(options.open_timeout)
    wsuri = parse_uri(uri)
    ssl = options.ssl
    if wsuri.secure and ssl is None:
        ssl = ssl_module.create_default_context()
    elif not wsuri.secure and ssl is not None:
        raise ValueError("ssl is only for wss:// URIs")
    additional_headers = options.additional_headers
    headers = Headers(additional_headers) if additional_headers is not None else Headers()
    proxy = options.proxy
    for _ in range(options.max_redirects + 1):
        # ws://user:pass@host/ means Basic authentication, unless the
        # application set its own Authorization header.
        if wsuri.authorization is not None and "Authorization" not in headers:
            headers["Authorization"] = wsuri.authorization
        transport = _open_socket(
            wsuri,
            sock=sock,
            unix_path=unix_path,
            proxy=proxy_for(wsuri) if proxy is True else proxy or None,
            context=ssl,
            server_hostname=options.server_hostname,
            deadline=deadline,
        )
        protocol = ClientProtocol(
            wsuri.host_header,
            wsuri.resource_name,
            origin=options.origin,
            subprotocols=options.subprotocols,
            extensions=options.extensions,
            additional_headers=headers,
            user_agent=options.user_agent_header,
            max_size=options.max_size,
        )
        protocol.max_frame_size = options.max_frame_size
        factory = _client_factory(options.create_connection or ClientConnection)
        kwargs: dict[str, Any] = dict(options.connection_kwargs(), logger=logger)
        connection = factory(transport, protocol, **kwargs)
        try:
            connection._handshake(deadline)
        except InvalidStatus as exc:
            location = exc.response.headers.get("Location")
            if exc.status_code not in _REDIRECT_STATUSES or location is None or sock is not None:
                raise
            target = _redirect_target(wsuri, location)
            if not _same_origin(wsuri, target):
                for name in _CREDENTIAL_HEADERS:
                    del headers[name]
            connection.logger.debug("following a redirect to %s", target.host_header)
            wsuri = target
            if wsuri.secure and ssl is None:
                ssl = ssl_module.create_default_context()
            continue
        except BaseException:
            connection._abort()
            raise
        connection.start_background()
        return connection
    raise InvalidHandshake(f"too many redirects (more than {options.max_redirects})")


#: websockets' keywords for ``socket.create_connection()`` that ``connect()`` takes.
SOCKET_KEYWORDS = frozenset({"address", "source_address", "all_errors", "timeout"})


def _create_socket(
    uri: str,
    sock: socket.socket | None,
    proxy: str | bool | None,
    socket_kwargs: dict[str, Any],
    open_timeout: float | None,
) -> socket.socket:
    """websockets' ``**kwargs`` for ``socket.create_connection()``: open TCP with them."""
    unknown = sorted(set(socket_kwargs) - SOCKET_KEYWORDS)
    if unknown:
        raise TypeError(f"connect() got an unexpected keyword argument {unknown[0]!r}")
    if sock is not None:
        raise TypeError("pass either sock= or socket.create_connection()'s keywords, not both")
    if isinstance(proxy, str):
        raise TypeError("socket.create_connection()'s keywords connect directly: not with proxy=")
    wsuri = parse_uri(uri)
    kwargs = dict(socket_kwargs)
    address = kwargs.pop("address", None) or (wsuri.host, wsuri.port)
    kwargs.setdefault("timeout", open_timeout)
    return socket.create_connection(address, **kwargs)


# Keywords syncws passes to a connection class, which a websockets-style class may lack.
_CLIENT_OPTIONAL = ("write_limit", "logger")


def _client_factory(cls: type[ClientConnection]) -> Callable[..., ClientConnection]:
    """``cls``, or a wrapper that drops what a websockets-style ``__init__`` doesn't take."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return cls
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return cls
    dropped = [name for name in _CLIENT_OPTIONAL if name not in parameters]

    def create(sock: socket.socket, protocol: ClientProtocol, **kwargs: Any) -> ClientConnection:
        for name in dropped:
            kwargs.pop(name, None)
        return cls(sock, protocol, **kwargs)

    return create


def unix_connect(path: str, uri: str = "ws://localhost/", **kwargs: Any) -> ClientConnection:
    """Like ``connect()``, over the Unix socket at ``path``; ``uri`` gives Host and path."""
    return cast(ClientConnection, connect(uri, unix_path=path, **kwargs))


def _open_socket(
    wsuri: WebSocketURI,
    *,
    sock: socket.socket | None,
    unix_path: str | None,
    proxy: str | None,
    context: ssl_module.SSLContext | None,
    server_hostname: str | None,
    deadline: Deadline,
) -> socket.socket:
    """Open TCP (or use ``sock``), then TLS; return a non-blocking socket."""
    if sock is None:
        if unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(deadline.remaining())
                sock.connect(unix_path)
            except BaseException:
                sock.close()
                raise
        elif proxy is not None:
            sock = connect_through_proxy(proxy, wsuri.host, wsuri.port, deadline)
        else:
            # DNS included in the deadline (a lookup thread: see dns.py).
            sock = open_tcp(wsuri.host, wsuri.port, deadline, wsuri.host_header)
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is not None:
            hostname = server_hostname or wsuri.host
            if isinstance(sock, ssl_module.SSLSocket):
                # An https:// proxy's tunnel: the server's TLS runs inside the
                # proxy's (see tls_in_tls.py); the wrapper acts as a socket.
                sock = cast(socket.socket, wrap_tls_in_tls(sock, context, hostname, deadline))
            else:
                sock = wrap_tls(
                    sock, context, hostname, deadline, f"the TLS handshake with {hostname}"
                )
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _redirect_target(current: WebSocketURI, location: str) -> WebSocketURI:
    base = ("wss" if current.secure else "ws") + "://" + current.host_header
    absolute = urllib.parse.urljoin(base + current.resource_name, location)
    scheme, _, rest = absolute.partition("://")
    scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower())
    target = parse_uri(f"{scheme}://{rest}")
    if current.secure and not target.secure:
        raise InvalidURI(location, "refusing to follow a redirect from wss:// to ws://")
    return target


def _same_origin(a: WebSocketURI, b: WebSocketURI) -> bool:
    return (a.secure, a.host.lower(), a.port) == (b.secure, b.host.lower(), b.port)
