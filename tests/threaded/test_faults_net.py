"""Faults at the edges (issue 17), the network side: proxies, DNS, TLS against plain servers."""

from __future__ import annotations

import re
import socket
import ssl
import threading
from pathlib import Path

import pytest
import trustme

import syncws
from syncws.threaded.net import dns

from .. import tls
from ..proxies import http_connect, tiny_proxy, tls_proxy
from .helpers import WAIT, echo, running_server


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        for variant in (name, name.upper()):
            monkeypatch.delenv(variant, raising=False)


# -- 8. proxies ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_proxy_env")
def test_environment_proxy_without_a_scheme_means_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY=host:port (no scheme, common) raised "unsupported proxy scheme"."""
    requests: list[bytes] = []
    with running_server(echo) as server, tiny_proxy(http_connect(requests)) as (proxy_port, _):
        monkeypatch.setenv("HTTP_PROXY", f"127.0.0.1:{proxy_port}")
        with syncws.connect(f"ws://127.0.0.1:{server.port}/") as client:
            client.send("no scheme")
            assert client.recv(WAIT) == "no scheme"
    assert requests[0].startswith(b"CONNECT ")


def test_refused_proxy_is_named_in_the_error() -> None:
    with socket.socket() as unused:  # bound, not listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        with pytest.raises(
            ConnectionRefusedError, match=re.escape(f"the proxy http://127.0.0.1:{port}")
        ):
            syncws.connect("ws://example.com/", proxy=f"http://127.0.0.1:{port}")


@pytest.fixture
def proxy_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """The proxy's TLS context; its CA is trusted through SSL_CERT_FILE."""
    authority = trustme.CA()
    tls.trust_through_environment(authority, tmp_path, monkeypatch)
    return tls.server_context(authority, "127.0.0.1")


def test_websocket_through_an_https_proxy(proxy_context: ssl.SSLContext) -> None:
    """https:// proxies were refused: TLS to the proxy, CONNECT inside it, then ws://."""
    with (
        running_server(echo) as server,
        tls_proxy(proxy_context) as (proxy_port, requests),
        syncws.connect(
            f"ws://127.0.0.1:{server.port}/", proxy=f"https://127.0.0.1:{proxy_port}"
        ) as client,
    ):
        client.send("inside TLS")
        assert client.recv(WAIT) == "inside TLS"
    assert requests[0].startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1".encode())


def test_https_proxy_certificate_is_checked() -> None:
    authority = trustme.CA()  # not trusted: SSL_CERT_FILE isn't set
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    with (
        tls_proxy(context) as (proxy_port, _),
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        syncws.connect("ws://127.0.0.1:9/", proxy=f"https://127.0.0.1:{proxy_port}")


# wss:// through an https:// proxy (TLS inside TLS): test_tls_in_tls.py.


# -- 10. DNS within open_timeout -------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_dns_lookup_is_bounded_by_open_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def slow_getaddrinfo(host: str, *args: object, **kwargs: object) -> object:
        if host == "slow.invalid":  # a resolver that doesn't answer
            release.wait(WAIT)
            host = "127.0.0.1"
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    try:
        with pytest.raises(TimeoutError, match=re.escape("resolving slow.invalid")):
            syncws.connect("ws://slow.invalid:9/", open_timeout=0.3, proxy=None)
    finally:
        release.set()  # the lookup thread ends with it


@pytest.mark.timeout(30)
def test_dns_failure_names_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_getaddrinfo(host: str, *args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", failing_getaddrinfo)
    with pytest.raises(socket.gaierror, match=re.escape("cannot resolve nowhere.invalid")):
        syncws.connect("ws://nowhere.invalid/", proxy=None)


@pytest.mark.timeout(30)
def test_too_many_lookups_in_progress_wait_within_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dns, "_slots", threading.BoundedSemaphore(1))
    dns._slots.acquire()  # every slot taken by lookups that hang
    with pytest.raises(TimeoutError, match="too many lookups in progress"):
        syncws.connect("ws://busy.invalid/", open_timeout=0.1, proxy=None)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("open_timeout", [None, WAIT])
def test_host_names_resolve_with_and_without_a_deadline(open_timeout: float | None) -> None:
    with (
        running_server(echo) as server,
        syncws.connect(
            f"ws://localhost:{server.port}/", open_timeout=open_timeout, proxy=None
        ) as client,
    ):
        client.send("by name")
        assert client.recv(WAIT) == "by name"


# -- 9. bytes that can't be HTTP fail at once ------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "first_bytes",
    [
        b"\x00\xff\x13\x37 random bytes, no line end",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # the start of a TLS ClientHello
        b"GE\x00T / HTTP/1.1",
    ],
)
def test_server_answers_400_at_once_to_bytes_that_cant_be_http(first_bytes: bytes) -> None:
    with (
        running_server(echo, open_timeout=60) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as raw,
    ):
        raw.sendall(first_bytes)
        answer = b""
        while b"\r\n" not in answer:
            chunk = raw.recv(4096)  # before the fix: nothing until open_timeout
            assert chunk
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 ")


@pytest.mark.timeout(30)
def test_wss_to_a_plain_server_fails_at_once() -> None:
    """Before: the client's TLS handshake waited open_timeout for an answer."""
    with running_server(echo, open_timeout=60) as server:
        with pytest.raises(ssl.SSLError, match=r"WRONG_VERSION_NUMBER|wrong version number"):
            syncws.connect(f"wss://127.0.0.1:{server.port}/", open_timeout=WAIT)
        with syncws.connect(f"ws://127.0.0.1:{server.port}/") as client:  # ws:// still works
            client.send("plain")
            assert client.recv(WAIT) == "plain"
