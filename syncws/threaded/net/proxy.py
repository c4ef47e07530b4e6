"""Reaching a WebSocket server through a proxy: HTTP(S) CONNECT, or SOCKS (``socks.py``).

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

from ...exceptions import InvalidMessage, ProxyError
from ...protocol.http11 import Limits, parse_response
from ...uri import WebSocketURI
from ..deadline import Deadline
from .dns import open_tcp, resolve
from .socks import recv_within, send_within, socks_handshake
from .tls_in_tls import wrap_tls

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
    ``socks5://`` (with ``user:password@`` if the proxy wants them),
    ``socks5h://``, ``socks4://`` and ``socks4a://`` speak SOCKS. Every step
    (DNS, TCP, TLS, each read of the answer) gets what is left of
    ``deadline``. Raise ``ProxyError`` when an HTTP proxy refuses, ``OSError``
    naming the proxy when it can't be reached or a SOCKS proxy refuses,
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
            context = ssl.create_default_context()
            sock = wrap_tls(sock, context, proxy_host, deadline, f"the TLS handshake with {what}")
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
    buffer = bytearray()
    # Each read gets what is left of the deadline, not a timeout of its own.
    send_within(sock, ("\r\n".join(lines) + "\r\n\r\n").encode(), deadline, "waiting for the proxy")
    while b"\r\n\r\n" not in buffer:
        data = recv_within(sock, 4096, deadline, "waiting for the proxy")
        if not data:
            raise InvalidMessage("the proxy closed the connection instead of answering")
        buffer += data
        if len(buffer) > _MAX_HEAD:
            raise InvalidMessage("the proxy's response is too large")
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    # A response to CONNECT has no body (RFC 9110 9.3.6): the head is all.
    response = parse_response(bytearray(head + b"\r\n\r\n"), Limits(), eof=True)
    assert response is not None
    if not 200 <= response.status < 300:
        raise ProxyError(response)
    if rest:
        raise InvalidMessage("the proxy sent data before the tunnel opened")


def _connect_socks(proxy: str, host: str, port: int, deadline: Deadline) -> socket.socket:
    """A SOCKS tunnel (``socks.py``); names are resolved within ``deadline``, by the proxy or here.

    As curl and requests spell it: ``socks4a://`` and ``socks5h://`` hand the
    host name to the proxy, ``socks4://`` (IPv4 only) and ``socks5://``
    resolve it here. The proxy's own name is always resolved here.
    """
    parsed = urllib.parse.urlsplit(proxy)
    scheme = parsed.scheme.lower()
    version4 = scheme.startswith("socks4")
    try:
        proxy_host, proxy_port = parsed.hostname, parsed.port or 1080
    except ValueError as exc:
        raise ValueError(f"bad proxy URL {_redact(parsed)!r}: {exc}") from None
    if not proxy_host:
        raise ValueError(f"no host in proxy URL {_redact(parsed)!r}")
    what = f"the SOCKS proxy {scheme}://{proxy_host}:{proxy_port}"
    if scheme not in ("socks4a", "socks5h"):
        host = _address(host, port, deadline, host, ipv4_only=version4)
    username = urllib.parse.unquote(parsed.username) if parsed.username is not None else None
    password = urllib.parse.unquote(parsed.password) if parsed.password is not None else None
    sock = open_tcp(proxy_host, proxy_port, deadline, what)
    try:
        socks_handshake(
            sock,
            host,
            port,
            deadline,
            what=what,
            version4=version4,
            username=username,
            password=password,
        )
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def _address(host: str, port: int, deadline: Deadline, what: str, *, ipv4_only: bool) -> str:
    """The first address of ``host`` (IPv4 only for SOCKS4), resolved within ``deadline``."""
    try:
        infos = resolve(host, port, deadline)
    except socket.gaierror as exc:
        raise socket.gaierror(exc.errno, f"cannot resolve {what}: {exc.strerror}") from exc
    for family, _, _, _, address in infos:
        if not ipv4_only or family == socket.AF_INET:
            return str(address[0])
    raise OSError(f"{what} has no IPv4 address, which SOCKS4 needs: use socks4a:// or socks5://")
