"""Reaching a WebSocket server through a proxy: HTTP(S) CONNECT, or SOCKS with python-socks.

``proxy_for(uri)`` finds the proxy the environment asks for (``HTTPS_PROXY``
for ``wss://``, ``HTTP_PROXY`` for ``ws://``, ``ALL_PROXY``, ``NO_PROXY``);
``connect_through_proxy()`` opens the tunnel and returns a connected socket.
"""

from __future__ import annotations

import base64
import socket
import ssl
import urllib.parse
import urllib.request

from ..exceptions import InvalidMessage, ProxyError
from ..protocol.http11 import Limits, parse_response
from ..uri import WebSocketURI
from .deadline import Deadline
from .dns import open_tcp

__all__ = ["connect_through_proxy", "proxy_for"]

_SOCKS_SCHEMES = ("socks5", "socks5h", "socks4", "socks4a")
_MAX_HEAD = 65536


def proxy_for(uri: WebSocketURI) -> str | None:
    """The proxy URL the environment sets for ``uri``, or None (also when NO_PROXY matches)."""
    proxies = urllib.request.getproxies()
    if urllib.request.proxy_bypass(uri.host):
        return None
    for key in ("https", "all") if uri.secure else ("http", "all"):
        if key in proxies:
            return proxies[key]
    return None


def connect_through_proxy(proxy: str, host: str, port: int, deadline: Deadline) -> socket.socket:
    """Open a TCP tunnel to ``host``:``port`` through ``proxy``; return the socket.

    ``http://[user:password@]proxy[:port]`` uses ``CONNECT`` (Basic
    authentication when credentials are given); a URL without a scheme
    (``proxy.example:3128``, as ``HTTP_PROXY`` often says) means ``http://``.
    ``https://`` speaks TLS to the proxy (its certificate checked against
    the system's CAs, or ``SSL_CERT_FILE``) and returns the TLS socket, which
    carries ``ws://``, or ``wss://`` with TLS inside it (``tls_in_tls.py``).
    ``socks5://``, ``socks5h://``,
    ``socks4://`` and ``socks4a://`` need the ``python-socks`` package
    (``pip install 'syncws[socks]'``). Raise ``ProxyError`` when the proxy
    refuses, ``OSError`` naming the proxy when it can't be reached,
    ``TimeoutError`` at the deadline.
    """
    if "://" not in proxy:
        proxy = "http://" + proxy
    parsed = urllib.parse.urlsplit(proxy)
    scheme = parsed.scheme.lower()
    if scheme in _SOCKS_SCHEMES:
        return _connect_socks(proxy, host, port, deadline)
    if scheme not in ("http", "https"):
        raise ValueError(
            f"unsupported proxy scheme {scheme!r}: use http://, https://, socks5://, "
            "socks5h://, socks4:// or socks4a://"
        )
    try:
        proxy_host, proxy_port = parsed.hostname, parsed.port
    except ValueError as exc:
        raise ValueError(f"bad proxy URL {_redact(parsed)!r}: {exc}") from None
    if not proxy_host:
        raise ValueError(f"no host in proxy URL {_redact(parsed)!r}")
    proxy_port = proxy_port or (443 if scheme == "https" else 8080)
    where = f"[{proxy_host}]" if ":" in proxy_host else proxy_host
    what = f"the proxy {scheme}://{where}:{proxy_port}"
    sock = open_tcp(proxy_host, proxy_port, deadline, what)
    try:
        if scheme == "https":
            sock.settimeout(deadline.remaining())
            context = ssl.create_default_context()
            try:
                sock = context.wrap_socket(sock, server_hostname=proxy_host)
            except TimeoutError as exc:
                raise deadline.timeout_error(f"TLS handshake with {what}") from exc
        _send_connect(sock, parsed, host, port, deadline)
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def _redact(parsed: urllib.parse.SplitResult) -> str:
    """The proxy URL without its password, for error messages."""
    host = parsed.netloc.rpartition("@")[2]
    return f"{parsed.scheme}://{host}"


def _send_connect(
    sock: socket.socket,
    proxy: urllib.parse.SplitResult,
    host: str,
    port: int,
    deadline: Deadline,
) -> None:
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.username is not None:
        user = urllib.parse.unquote(proxy.username)
        password = urllib.parse.unquote(proxy.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    sock.settimeout(deadline.remaining())
    buffer = bytearray()
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in buffer:
            data = sock.recv(4096)
            if not data:
                raise InvalidMessage("the proxy closed the connection instead of answering")
            buffer += data
            if len(buffer) > _MAX_HEAD:
                raise InvalidMessage("the proxy's response is too large")
    except TimeoutError as exc:
        raise deadline.timeout_error("waiting for the proxy") from exc
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    # A response to CONNECT has no body (RFC 9110 9.3.6): the head is all.
    response = parse_response(bytearray(head + b"\r\n\r\n"), Limits(), eof=True)
    assert response is not None
    if not 200 <= response.status < 300:
        raise ProxyError(response)
    if rest:
        raise InvalidMessage("the proxy sent data before the tunnel opened")


def _connect_socks(proxy: str, host: str, port: int, deadline: Deadline) -> socket.socket:
    try:
        from python_socks.sync import Proxy  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise ImportError(
            "SOCKS proxies need the python-socks package: pip install 'syncws[socks]'"
        ) from exc
    try:
        sock: socket.socket = Proxy.from_url(proxy).connect(
            dest_host=host, dest_port=port, timeout=deadline.remaining()
        )
    except TimeoutError as exc:
        raise deadline.timeout_error("connecting through the SOCKS proxy") from exc
    except Exception as exc:
        if type(exc).__name__ == "ProxyError":  # python_socks.ProxyError
            raise OSError(f"SOCKS proxy refused: {exc}") from exc
        raise
    sock.settimeout(None)
    return sock
