"""wss:// through an https:// proxy: the server's TLS inside the proxy's (tls_in_tls.py).

Two authorities: the proxy's, trusted through ``SSL_CERT_FILE`` (as for any
https:// proxy), and the server's, trusted only by the ``ssl=`` context given
to ``connect()``. Each layer must check its certificate with its own.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import syncws
from syncws import ServerConnection
from syncws.threaded.connection import reader
from syncws.threaded.deadline import Deadline
from syncws.threaded.net.tls_in_tls import TLSInTLS
from syncws.threaded.runtime.poller import wait_for

from .. import tls
from ..proxies import tls_proxy
from .helpers import WAIT, echo, running_server


def record_sni(context: ssl.SSLContext, names: list[str | None]) -> None:
    def callback(_: ssl.SSLObject | ssl.SSLSocket, name: str | None, __: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = callback


@pytest.fixture
def proxy_sni() -> list[str | None]:
    return []


@pytest.fixture
def proxy_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy_sni: list[str | None]
) -> ssl.SSLContext:
    """The proxy's TLS context, for 127.0.0.1; its CA is trusted through SSL_CERT_FILE."""
    authority = trustme.CA()
    context = tls.server_context(authority, "127.0.0.1")
    record_sni(context, proxy_sni)
    tls.trust_through_environment(authority, tmp_path, monkeypatch)
    return context


@pytest.fixture(scope="module")
def server_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_sni() -> list[str | None]:
    return []


@pytest.fixture
def server_context(server_authority: trustme.CA, server_sni: list[str | None]) -> ssl.SSLContext:
    """The WebSocket server's context, for localhost only (the proxy's is for 127.0.0.1)."""
    context = tls.server_context(server_authority, "localhost")
    record_sni(context, server_sni)
    return context


@pytest.fixture
def client_context(server_authority: trustme.CA) -> ssl.SSLContext:
    """Trusts the server's authority only."""
    return tls.client_context(server_authority)


@pytest.fixture
def tls_server(server_context: ssl.SSLContext) -> Iterator[syncws.Server]:
    with running_server(echo, ssl=server_context) as server:
        yield server


def test_wss_through_an_https_proxy(
    proxy_context: ssl.SSLContext,
    tls_server: syncws.Server,
    client_context: ssl.SSLContext,
    proxy_sni: list[str | None],
    server_sni: list[str | None],
) -> None:
    """wss:// through an https:// proxy was refused with a ValueError (issue 17, item 8)."""
    uri = f"wss://localhost:{tls_server.port}/"
    with (
        tls_proxy(proxy_context) as (proxy_port, requests),
        syncws.connect(
            uri,
            ssl=client_context,
            proxy=f"https://127.0.0.1:{proxy_port}",
            compression=None,  # random bytes grow when compressed, past max_size
        ) as client,
    ):
        assert isinstance(client.socket, TLSInTLS)
        # End to end: the certificate inside is the server's, not the proxy's.
        assert ("DNS", "localhost") in client.socket.getpeercert()["subjectAltName"]
        client.send("secret")
        assert client.recv(WAIT) == "secret"
        big = os.urandom(2**20)
        for _ in range(3):
            client.send(big)
            assert client.recv(WAIT) == big
        for i in range(50):
            client.send(f"message {i}")
        assert [client.recv(WAIT) for _ in range(50)] == [f"message {i}" for i in range(50)]
        assert client.ping().wait(WAIT)
        with pytest.raises(TimeoutError):
            client.recv(0.05)
        client.send("still open")
        assert client.recv(WAIT) == "still open"
    assert client.close_code == 1000
    assert client.closed_by_us
    assert requests[0].startswith(f"CONNECT localhost:{tls_server.port} HTTP/1.1".encode())
    # SNI: the server's name inside; none outside (the proxy is an IP address).
    assert server_sni == ["localhost"]
    assert proxy_sni == [None]


def test_server_closing_through_the_proxy(
    proxy_context: ssl.SSLContext, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """The server's close frame, then its EOF, come through both layers."""

    def going_away(connection: ServerConnection) -> None:
        connection.send("bye")
        connection.close(1001, "going away")

    with (
        running_server(going_away, ssl=server_context) as server,
        tls_proxy(proxy_context) as (proxy_port, _),
        syncws.connect(
            f"wss://localhost:{server.port}/",
            ssl=client_context,
            proxy=f"https://127.0.0.1:{proxy_port}",
        ) as client,
    ):
        assert client.recv(WAIT) == "bye"
        with pytest.raises(syncws.ConnectionClosedOK):
            client.recv(WAIT)
        assert (client.close_code, client.close_reason) == (1001, "going away")


@pytest.mark.timeout(60)
def test_sends_wait_for_a_slow_server_and_resume(
    proxy_context: ssl.SSLContext, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """Inner records the proxy can't take yet stay queued; nothing is lost or written twice."""
    release = threading.Event()
    received: list[bytes] = []

    def slow(connection: ServerConnection) -> None:
        release.wait(WAIT)
        for message in connection:
            if message == "end":
                digest = hashlib.sha256(b"".join(received)).hexdigest()
                connection.send(f"{len(received)} {digest}")
                return
            assert isinstance(message, bytes)
            received.append(message)

    sent: list[bytes] = []
    with (
        running_server(slow, ssl=server_context, max_queue=1, max_size=None) as server,
        tls_proxy(proxy_context) as (proxy_port, _),
        syncws.connect(
            f"wss://localhost:{server.port}/",
            ssl=client_context,
            proxy=f"https://127.0.0.1:{proxy_port}",
        ) as client,
    ):
        # Kernel buffers fill up, then the proxy's, then a send times out:
        # its message stays queued (send's contract) and goes out later.
        for i in range(200):
            message = i.to_bytes(4, "big") + os.urandom(2**20 - 4)
            sent.append(message)
            try:
                client.send(message, timeout=0.05)
            except TimeoutError:
                break
        else:
            pytest.fail("the sends never had to wait")
        release.set()
        client.send("end", timeout=WAIT)
        expected = f"{len(sent)} {hashlib.sha256(b''.join(sent)).hexdigest()}"
        assert client.recv(WAIT) == expected


def test_inner_handshake_is_bounded_by_open_timeout(proxy_context: ssl.SSLContext) -> None:
    """A server behind the proxy that never answers the ClientHello: open_timeout holds."""
    with (
        socket.create_server(("127.0.0.1", 0)) as silent,  # accepted by the kernel, never read
        tls_proxy(proxy_context) as (proxy_port, _),
        pytest.raises(TimeoutError, match=r"TLS handshake with 127\.0\.0\.1 through the proxy"),
    ):
        syncws.connect(
            f"wss://127.0.0.1:{silent.getsockname()[1]}/",
            proxy=f"https://127.0.0.1:{proxy_port}",
            open_timeout=0.5,
        )


def test_proxy_certificate_is_checked_for_wss(
    monkeypatch: pytest.MonkeyPatch, tls_server: syncws.Server, client_context: ssl.SSLContext
) -> None:
    """The proxy's certificate is checked against the system's CAs, not the ssl= context."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    untrusted = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(untrusted)
    with (
        tls_proxy(untrusted) as (proxy_port, requests),
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        syncws.connect(
            f"wss://localhost:{tls_server.port}/",
            ssl=client_context,
            proxy=f"https://127.0.0.1:{proxy_port}",
        )
    assert not requests


def test_server_certificate_is_checked_inside(
    proxy_context: ssl.SSLContext, tls_server: syncws.Server
) -> None:
    """Inside the tunnel, the server's certificate is checked (the proxy's CA doesn't vouch)."""
    with (
        tls_proxy(proxy_context) as (proxy_port, requests),
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        syncws.connect(
            f"wss://localhost:{tls_server.port}/", proxy=f"https://127.0.0.1:{proxy_port}"
        )
    assert requests  # the tunnel opened; the inner handshake failed


def test_server_hostname_is_checked_inside(
    proxy_context: ssl.SSLContext, tls_server: syncws.Server, client_context: ssl.SSLContext
) -> None:
    with (
        tls_proxy(proxy_context) as (proxy_port, _),
        pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|doesn't match"),
    ):
        syncws.connect(
            f"wss://localhost:{tls_server.port}/",
            ssl=client_context,
            server_hostname="other.example",
            proxy=f"https://127.0.0.1:{proxy_port}",
        )


def test_bytes_decrypted_inside_are_read_before_waiting(
    monkeypatch: pytest.MonkeyPatch,
    proxy_context: ssl.SSLContext,
    tls_server: syncws.Server,
    client_context: ssl.SSLContext,
) -> None:
    """A read turn that ends on its budget may leave decrypted bytes in the inner TLS.

    poll can't see them: a reader that waits on the descriptor then sits until
    the deadline (recv) or forever (the background thread). Every wait is
    checked: none may start with decrypted bytes in hand.
    """
    waits_with_data: list[int] = []

    def checked_wait_for(sock: socket.socket, events: int, deadline: Deadline) -> bool:
        if isinstance(sock, TLSInTLS) and sock._inner.pending():
            waits_with_data.append(sock._inner.pending())
        return wait_for(sock, events, deadline)

    monkeypatch.setattr(reader, "wait_for", checked_wait_for)
    uri = f"wss://localhost:{tls_server.port}/"
    with (
        tls_proxy(proxy_context) as (proxy_port, _),
        syncws.connect(
            uri, ssl=client_context, proxy=f"https://127.0.0.1:{proxy_port}", compression=None
        ) as client,
    ):
        # 1 MiB and its 10-byte header: four full reads leave 10 bytes decrypted.
        big = os.urandom(2**20)
        for _ in range(8):
            client.send(big)
            assert client.recv(WAIT) == big
            assert not waits_with_data


def test_https_proxy_from_the_environment_for_wss(
    monkeypatch: pytest.MonkeyPatch,
    proxy_context: ssl.SSLContext,
    tls_server: syncws.Server,
    client_context: ssl.SSLContext,
) -> None:
    """HTTPS_PROXY=https://... (the usual way to set one) now works for wss://."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        for variant in (name, name.upper()):
            monkeypatch.delenv(variant, raising=False)
    with tls_proxy(proxy_context) as (proxy_port, requests):
        monkeypatch.setenv("HTTPS_PROXY", f"https://127.0.0.1:{proxy_port}")
        with syncws.connect(f"wss://localhost:{tls_server.port}/", ssl=client_context) as client:
            client.send("via HTTPS_PROXY")
            assert client.recv(WAIT) == "via HTTPS_PROXY"
    assert requests
