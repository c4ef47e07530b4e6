"""Faults at the edges (issue 17), the network side: proxies, DNS, TLS against plain servers."""

from __future__ import annotations

import re
import socket
import threading

import pytest

import syncws

from .helpers import WAIT


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        for variant in (name, name.upper()):
            monkeypatch.delenv(variant, raising=False)


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
