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

from ...exceptions import InvalidMessage, ProxyError
from ...protocol.http11 import Limits, parse_response
from ...uri import WebSocketURI
from ..deadline import Deadline
from .dns import open_tcp, resolve

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
    """A SOCKS tunnel; names are resolved within ``deadline``, by the proxy or here.

    As curl and requests spell it: ``socks4a://`` and ``socks5h://`` hand the
    host name to the proxy, ``socks4://`` (IPv4 only) and ``socks5://``
    resolve it here. The proxy's own name is always resolved here.
    """
    try:
        from python_socks import ProxyType  # noqa: PLC0415 - optional dependency
        from python_socks.sync import Proxy  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(
            "SOCKS proxies need the python-socks package: pip install 'syncws[socks]'"
        ) from exc
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
    proxy_address = _address(proxy_host, proxy_port, deadline, what, ipv4_only=False)
    remote_dns = scheme in ("socks4a", "socks5h")
    if not remote_dns:
        host = _address(host, port, deadline, host, ipv4_only=version4)
    username = urllib.parse.unquote(parsed.username) if parsed.username is not None else None
    password = urllib.parse.unquote(parsed.password) if parsed.password is not None else None
    tunnel = Proxy(
        ProxyType.SOCKS4 if version4 else ProxyType.SOCKS5,
        proxy_address,
        proxy_port,
        username=username,
        password=password,
        rdns=remote_dns,
    )
    try:
        sock: socket.socket = tunnel.connect(
            dest_host=host, dest_port=port, timeout=deadline.remaining()
        )
    except TimeoutError as exc:
        raise deadline.timeout_error(f"connecting through {what}") from exc
    except Exception as exc:
        name = type(exc).__name__
        if name == "ProxyConnectionError":  # python_socks: the proxy can't be reached
            raise OSError(exc.args[0] if exc.args else None, f"{what}: {exc}") from exc
        if name == "ProxyError":  # python_socks: the proxy refused
            raise OSError(f"{what} refused: {exc}") from exc
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
