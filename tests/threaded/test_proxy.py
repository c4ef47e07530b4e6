"""Connecting through proxies: a tiny HTTP CONNECT proxy and a tiny SOCKS5 proxy, in-test."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import struct
import sys
from collections.abc import Callable

import pytest
import trustme

import syncws
from syncws import ProxyError
from syncws.threaded.deadline import Deadline
from syncws.threaded.net.proxy import connect_through_proxy, proxy_for
from syncws.uri import parse_uri

from ..proxies import http_connect, tiny_proxy
from .helpers import WAIT, echo, read_exactly, refused_port, running_server


def test_websocket_through_an_http_proxy() -> None:
    requests: list[bytes] = []
    with (
        running_server(echo) as server,
        tiny_proxy(http_connect(requests)) as (proxy_port, _),
        syncws.connect(
            f"ws://127.0.0.1:{server.port}/", proxy=f"http://127.0.0.1:{proxy_port}"
        ) as client,
    ):
        client.send("tunneled")
        assert client.recv(WAIT) == "tunneled"
    assert requests[0].startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1".encode())


def test_proxy_credentials_are_sent() -> None:
    requests: list[bytes] = []
    opening = http_connect(requests, credentials="user:p@ss")
    with (
        running_server(echo) as server,
        tiny_proxy(opening) as (proxy_port, _),
        syncws.connect(
            f"ws://127.0.0.1:{server.port}/", proxy=f"http://user:p%40ss@127.0.0.1:{proxy_port}"
        ) as client,
    ):
        client.send("authorized")
        assert client.recv(WAIT) == "authorized"


def test_proxy_wants_credentials() -> None:
    requests: list[bytes] = []
    with (
        tiny_proxy(http_connect(requests, credentials="user:pass")) as (proxy_port, _),
        pytest.raises(ProxyError, match="wants credentials") as raised,
    ):
        syncws.connect("ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{proxy_port}")
    assert raised.value.status_code == 407


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"garbage\r\n\r\n", syncws.InvalidMessage),
        (b"HTTP/1.1 200 OK\r\n\r\nextra", syncws.InvalidMessage),
        (b"HTTP/1.1 200 OK\r\n", syncws.InvalidMessage),  # then EOF
        (b"HTTP/1.1 200 OK\r\nX: " + b"x" * 70000, syncws.InvalidMessage),
    ],
)
def test_proxy_answering_nonsense(answer: bytes, error: type[Exception]) -> None:
    requests: list[bytes] = []
    with (
        tiny_proxy(http_connect(requests, answer)) as (proxy_port, _),
        pytest.raises(error),
    ):
        connect_through_proxy(f"http://127.0.0.1:{proxy_port}", "::1", 80, Deadline(WAIT))
    assert requests[0].startswith(b"CONNECT [::1]:80 ")


def test_silent_proxy_times_out() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        pytest.raises(TimeoutError, match="proxy"),
    ):
        port = listener.getsockname()[1]
        connect_through_proxy(f"http://127.0.0.1:{port}", "example.com", 80, Deadline(0.2))


def test_unsupported_proxy_urls() -> None:
    with pytest.raises(ValueError, match="unsupported proxy scheme"):
        connect_through_proxy("ftp://proxy", "example.com", 80, Deadline(1))
    with pytest.raises(ValueError, match="no host"):
        connect_through_proxy("http://", "example.com", 80, Deadline(1))


def test_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        for variant in (name, name.upper()):
            monkeypatch.delenv(variant, raising=False)
    plain = parse_uri("ws://example.com/")
    secure = parse_uri("wss://example.com/")
    assert proxy_for(plain) is None
    monkeypatch.setenv("HTTP_PROXY", "http://plain-proxy:3128")
    monkeypatch.setenv("https_proxy", "http://secure-proxy:3128")
    assert proxy_for(plain) == "http://plain-proxy:3128"
    assert proxy_for(secure) == "http://secure-proxy:3128"
    monkeypatch.setenv("NO_PROXY", "example.com")
    assert proxy_for(plain) is None
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.setenv("ALL_PROXY", "socks5://all-proxy:1080")
    assert proxy_for(plain) == "socks5://all-proxy:1080"


def test_environment_proxy_is_used_by_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    requests: list[bytes] = []
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with running_server(echo) as server, tiny_proxy(http_connect(requests)) as (proxy_port, _):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
        with syncws.connect(f"ws://127.0.0.1:{server.port}/") as client:
            client.send("via env")
            assert client.recv(WAIT) == "via env"
    assert requests


# -- SOCKS -------------------------------------------------------------------------------------


def socks5(client: socket.socket) -> tuple[str, int] | None:
    """A minimal SOCKS5 server side: no authentication, CONNECT to an IPv4 address or name."""
    greeting = client.recv(2)
    client.recv(greeting[1])  # the methods offered
    client.sendall(b"\x05\x00")
    header = client.recv(4)
    if header[3] == 1:
        host = socket.inet_ntoa(client.recv(4))
    else:
        host = client.recv(client.recv(1)[0]).decode()
    port = int.from_bytes(client.recv(2), "big")
    client.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + b"\x00\x00")
    return host, port


def test_websocket_through_a_socks5_proxy() -> None:
    with (
        running_server(echo) as server,
        tiny_proxy(socks5) as (proxy_port, _),
        syncws.connect(
            f"ws://127.0.0.1:{server.port}/", proxy=f"socks5://127.0.0.1:{proxy_port}"
        ) as client,
    ):
        client.send("socks")
        assert client.recv(WAIT) == "socks"


def test_socks_proxy_refusing() -> None:
    def refuse(client: socket.socket) -> None:
        client.recv(3)
        client.sendall(b"\x05\xff")  # no acceptable method

    with (
        tiny_proxy(refuse) as (proxy_port, _),  # type: ignore[arg-type]
        pytest.raises(OSError, match=r"SOCKS proxy socks5://127\.0\.0\.1:\d+ refused"),
    ):
        syncws.connect("ws://127.0.0.1:9/", proxy=f"socks5://127.0.0.1:{proxy_port}")


def test_socks_proxy_timeout() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        pytest.raises(TimeoutError, match="SOCKS"),
    ):
        port = listener.getsockname()[1]
        connect_through_proxy(f"socks5h://127.0.0.1:{port}", "example.com", 80, Deadline(0.2))


def test_socks_needs_no_other_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """syncws speaks SOCKS itself: python-socks isn't needed (the socks extra is empty)."""
    monkeypatch.setitem(sys.modules, "python_socks", None)
    with (
        running_server(echo) as server,
        tiny_proxy(socks5) as (proxy_port, _),
        syncws.connect(
            f"ws://127.0.0.1:{server.port}/", proxy=f"socks5://127.0.0.1:{proxy_port}"
        ) as client,
    ):
        client.send("no extra")
        assert client.recv(WAIT) == "no extra"


def socks5_with_password(
    seen: list[bytes], *, accept: bool
) -> Callable[[socket.socket], tuple[str, int] | None]:
    """A SOCKS5 server side that asks for a user name and password (RFC 1929)."""

    def opening(client: socket.socket) -> tuple[str, int] | None:
        _, count = read_exactly(client, 2)
        seen.append(read_exactly(client, count))  # the methods offered
        client.sendall(b"\x05\x02")
        _, size = read_exactly(client, 2)
        user = read_exactly(client, size)
        password = read_exactly(client, read_exactly(client, 1)[0])
        seen.append(user + b":" + password)
        if not accept:
            client.sendall(b"\x01\x01")
            return None
        client.sendall(b"\x01\x00")
        header = read_exactly(client, 4)
        assert header[3] == 1
        host = socket.inet_ntoa(read_exactly(client, 4))
        port = int.from_bytes(read_exactly(client, 2), "big")
        # The bound address as a name, which a client must read past.
        client.sendall(b"\x05\x00\x00\x03\x05proxy\x00\x00")
        return host, port

    return opening


def test_socks5_with_a_user_name_and_password() -> None:
    seen: list[bytes] = []
    with (
        running_server(echo) as server,
        tiny_proxy(socks5_with_password(seen, accept=True)) as (proxy_port, _),
        syncws.connect(
            f"ws://127.0.0.1:{server.port}/",
            proxy=f"socks5://al%3Ace:s%40cret@127.0.0.1:{proxy_port}",
        ) as client,
    ):
        client.send("authenticated")
        assert client.recv(WAIT) == "authenticated"
    assert seen == [b"\x00\x02", b"al:ce:s@cret"]


def test_socks5_wrong_password() -> None:
    seen: list[bytes] = []
    with (
        tiny_proxy(socks5_with_password(seen, accept=False)) as (proxy_port, _),
        pytest.raises(OSError, match="refused: wrong user name or password"),
    ):
        connect_through_proxy(
            f"socks5://user:wrong@127.0.0.1:{proxy_port}", "127.0.0.1", 80, Deadline(WAIT)
        )


def answering(*answers: bytes) -> Callable[[socket.socket], tuple[str, int] | None]:
    """A proxy that sends each answer after a read of what the client sent."""

    def opening(client: socket.socket) -> tuple[str, int] | None:
        for answer in answers:
            client.recv(4096)
            client.sendall(answer)
        return None

    return opening


@pytest.mark.parametrize(
    ("proxy", "answers", "message"),
    [
        ("socks5", [b"\x04\x00"], r"not a SOCKS5 answer \(version 4\)"),
        ("socks5", [b"\x05\x02"], "wants a user name and password"),
        ("socks5", [b"\x05\x00", b"\x05\x05\x00\x01"], "refused: connection refused"),
        ("socks5", [b"\x05\x00", b"\x05\x63\x00\x01"], "refused: error 99"),
        ("socks5", [b"\x05\x00", b"\x04\x00\x00\x01"], "not a SOCKS5 answer"),
        ("socks5", [b"\x05\x00", b"\x05\x00\x00\x07"], "unknown address type 7"),
        ("socks5", [b"\x05\x00", b"\x05\x00"], "closed the connection before answering"),
        ("socks4", [b"\x00\x5b" + bytes(6)], "refused: request rejected or failed"),
        ("socks4", [b"\x00\x42" + bytes(6)], "refused: error 0x42"),
        ("socks4", [b"\x04\x5a" + bytes(6)], "not a SOCKS4 answer"),
    ],
)
def test_socks_proxy_answering_no(proxy: str, answers: list[bytes], message: str) -> None:
    with (
        tiny_proxy(answering(*answers)) as (proxy_port, _),
        pytest.raises(OSError, match=message),
    ):
        connect_through_proxy(f"{proxy}://127.0.0.1:{proxy_port}", "127.0.0.1", 80, Deadline(WAIT))


def test_socks4a_passes_the_name_and_the_user_id() -> None:
    asked: list[bytes] = []

    def opening(client: socket.socket) -> tuple[str, int] | None:
        asked.append(client.recv(4096))
        client.sendall(b"\x00\x5a" + bytes(6))
        return None

    with tiny_proxy(opening) as (proxy_port, _):
        tunnel = connect_through_proxy(
            f"socks4a://me@127.0.0.1:{proxy_port}", "example.com", 80, Deadline(WAIT)
        )
        tunnel.close()
    assert asked == [b"\x04\x01\x00\x50\x00\x00\x00\x01me\x00example.com\x00"]


def test_socks5_names_longer_than_255_bytes() -> None:
    with (
        tiny_proxy(answering(b"\x05\x00")) as (proxy_port, _),
        pytest.raises(ValueError, match="longer than 255 bytes"),
    ):
        connect_through_proxy(
            f"socks5h://127.0.0.1:{proxy_port}", "a" * 60 + ".b" * 100, 80, Deadline(WAIT)
        )


def socks5_any(client: socket.socket) -> tuple[str, int] | None:
    """``socks5`` that also takes IPv6 addresses (a name may resolve to ::1 first)."""
    first = client.recv(1)
    if not first:
        return None  # tiny_proxy's own wake-up call: the client never came
    greeting = first + read_exactly(client, 1)
    read_exactly(client, greeting[1])  # the methods offered
    client.sendall(b"\x05\x00")
    header = read_exactly(client, 4)
    if header[3] == 1:
        host = socket.inet_ntoa(read_exactly(client, 4))
    elif header[3] == 4:
        host = socket.inet_ntop(socket.AF_INET6, read_exactly(client, 16))
    else:
        host = read_exactly(client, read_exactly(client, 1)[0]).decode()
    port = int.from_bytes(read_exactly(client, 2), "big")
    client.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + b"\x00\x00")
    return host, port


def socks4(client: socket.socket) -> tuple[str, int] | None:
    """A minimal SOCKS4 and SOCKS4a server side: CONNECT to an IPv4 address, or a name (4a)."""

    def until_nul() -> bytes:
        data = b""
        while (byte := read_exactly(client, 1)) != b"\x00":
            data += byte
        return data

    first = client.recv(1)
    if not first:
        return None  # tiny_proxy's own wake-up call: the client never came
    version, command, port, address = struct.unpack("!BBH4s", first + read_exactly(client, 7))
    assert (version, command) == (4, 1)
    until_nul()  # the user id
    if address[:3] == b"\x00\x00\x00" and address[3]:  # 0.0.0.x: SOCKS4a, a name follows
        host = until_nul().decode()
    else:
        host = socket.inet_ntoa(address)
    client.sendall(b"\x00\x5a" + b"\x00" * 6)  # request granted
    return host, port


@pytest.mark.parametrize(
    ("scheme", "resolved_by_the_proxy"),
    [
        ("socks4", False),
        ("socks4a", True),
        ("socks5", False),
        ("socks5h", True),
    ],
)
def test_websocket_through_each_socks_scheme(
    scheme: str, resolved_by_the_proxy: bool | None
) -> None:
    """socks4a and socks5h pass the name to the proxy; socks4 and socks5 resolve it here
    (as curl and requests do)."""
    asked: list[str] = []

    def recording(client: socket.socket) -> tuple[str, int] | None:
        target = (socks4 if scheme.startswith("socks4") else socks5_any)(client)
        if target is not None:
            asked.append(target[0])
        return target

    with (
        running_server(echo) as server,
        tiny_proxy(recording) as (proxy_port, _),
        syncws.connect(
            f"ws://localhost:{server.port}/", proxy=f"{scheme}://127.0.0.1:{proxy_port}"
        ) as client,
    ):
        client.send(scheme)
        assert client.recv(WAIT) == scheme
    if resolved_by_the_proxy:
        assert asked == ["localhost"]
    elif resolved_by_the_proxy is False:
        (address,) = asked
        assert ipaddress.ip_address(address).is_loopback
    else:
        assert len(asked) == 1


def test_wss_through_the_https_proxy_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """wss:// takes HTTPS_PROXY (not HTTP_PROXY); TLS runs inside the CONNECT tunnel."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        for variant in (name, name.upper()):
            monkeypatch.delenv(variant, raising=False)
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    requests: list[bytes] = []
    with (
        running_server(echo, ssl=server_context) as server,
        tiny_proxy(http_connect(requests)) as (proxy_port, _),
        refused_port() as nowhere,
    ):
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{nowhere}")  # for ws:// only
        with syncws.connect(f"wss://localhost:{server.port}/", ssl=client_context) as client:
            client.send("secret, tunneled")
            assert client.recv(WAIT) == "secret, tunneled"
    assert len(requests) == 1
    assert requests[0].startswith(f"CONNECT localhost:{server.port} HTTP/1.1\r\n".encode())
    assert b"secret" not in requests[0]


def test_socks_proxy_unreachable_is_named() -> None:
    with refused_port() as nowhere, pytest.raises(OSError, match=f"socks5://127.0.0.1:{nowhere}"):
        connect_through_proxy(f"socks5://127.0.0.1:{nowhere}", "127.0.0.1", 80, Deadline(WAIT))


@pytest.mark.parametrize(
    ("proxy", "host", "error", "message"),
    [
        ("socks5://", "127.0.0.1", ValueError, "no host in proxy URL"),
        ("socks5://127.0.0.1:99999", "127.0.0.1", ValueError, "bad proxy URL"),
        ("socks4://127.0.0.1:1080", "::1", OSError, "no IPv4 address"),
        ("socks5://name.invalid:1080", "127.0.0.1", socket.gaierror, "the SOCKS proxy"),
    ],
)
def test_socks_proxy_errors_before_connecting(
    proxy: str, host: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        connect_through_proxy(proxy, host, 80, Deadline(WAIT))
