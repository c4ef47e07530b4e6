"""TLS contexts for tests, from a trustme authority: a server's, a client's, an environment's.

Every test that runs TLS (wss://, https:// proxies, TLS inside TLS) builds
its contexts here, so that the three kinds stay alike. Runs in the test's
thread.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

__all__ = ["client_context", "server_context", "trust_through_environment"]


def server_context(authority: trustme.CA, *hosts: str) -> ssl.SSLContext:
    """A server's context with a certificate for ``hosts``, issued by ``authority``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(*hosts).configure_cert(context)
    return context


def client_context(authority: trustme.CA) -> ssl.SSLContext:
    """A client's context that trusts ``authority`` only."""
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


def trust_through_environment(
    authority: trustme.CA, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make default contexts trust ``authority``, through ``SSL_CERT_FILE`` (as a user would)."""
    ca_file = directory / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
