"""wss:// with certificates made for the test: verification on by default, errors clear."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme

import syncws

from .. import tls
from .helpers import WAIT, echo, running_server


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_context(authority: trustme.CA) -> ssl.SSLContext:
    return tls.server_context(authority, "localhost", "127.0.0.1")


@pytest.fixture
def client_context(authority: trustme.CA) -> ssl.SSLContext:
    return tls.client_context(authority)


@pytest.fixture
def tls_server(server_context: ssl.SSLContext) -> Iterator[syncws.Server]:
    with running_server(echo, ssl=server_context) as server:
        yield server


def test_wss_echo(tls_server: syncws.Server, client_context: ssl.SSLContext) -> None:
    uri = f"wss://localhost:{tls_server.port}/"
    with syncws.connect(uri, ssl=client_context) as client:
        client.send("secret")
        assert client.recv(WAIT) == "secret"
        big = b"z" * 2**20
        client.send(big)
        assert client.recv(WAIT) == big
        assert client.ping().wait(WAIT)


def test_certificate_is_verified_by_default(tls_server: syncws.Server) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        syncws.connect(f"wss://localhost:{tls_server.port}/")


def test_hostname_is_checked(tls_server: syncws.Server, client_context: ssl.SSLContext) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|doesn't match"):
        syncws.connect(
            f"wss://localhost:{tls_server.port}/",
            ssl=client_context,
            server_hostname="example.com",
        )


def test_ssl_context_only_for_wss(client_context: ssl.SSLContext) -> None:
    with pytest.raises(ValueError, match="wss"):
        syncws.connect("ws://localhost:1/", ssl=client_context)


def test_tls_handshake_is_bounded_by_open_timeout(client_context: ssl.SSLContext) -> None:
    """A server that accepts TCP and never speaks TLS."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        accepted: list[socket.socket] = []
        thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]))
        thread.start()
        port = listener.getsockname()[1]
        try:
            with pytest.raises(TimeoutError):
                syncws.connect(f"wss://localhost:{port}/", ssl=client_context, open_timeout=0.2)
        finally:
            thread.join(WAIT)
            for sock in accepted:
                sock.close()


def test_server_drops_a_client_that_never_speaks_tls(server_context: ssl.SSLContext) -> None:
    done = threading.Event()

    def handler(connection: syncws.ServerConnection) -> None:
        done.set()  # never reached

    with (
        running_server(handler, ssl=server_context, open_timeout=0.2) as server,
        socket.create_connection(("127.0.0.1", server.port)) as sock,
    ):
        # The server gives up on the TLS handshake and closes: we read EOF.
        sock.settimeout(WAIT)
        assert sock.recv(100) == b""
    assert not done.is_set()
