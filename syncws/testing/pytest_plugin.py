"""pytest fixtures for WebSocket tests, loaded automatically once syncws is installed.

- ``syncws_server``: a server running ``syncws_handler`` (echo unless you
  override that fixture) with ``syncws_server_options``; ``.uri`` to connect.
- ``syncws_client``: a client connected to ``syncws_server``, closed afterwards.
- ``syncws_peer``: a ``ScriptedPeer`` to test your own client against.
- ``syncws_app_server``: the WSGI application of ``syncws_wsgi_app`` (a
  fixture you define: your Flask app, Django's ``get_wsgi_application()``)
  served on a free loopback port (a ``RunningApp``).
- ``syncws_clients``: a ``ClientFactory`` opening WebSocket clients to
  ``syncws_app_server`` (path, query, headers, cookies), all closed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..threaded.client import ClientConnection, connect
from ..threaded.server import ServerConnection
from . import ClientFactory, RunningApp, RunningServer, ScriptedPeer, echo, run_server, serve_app


@pytest.fixture
def syncws_handler() -> Callable[[ServerConnection], Any]:
    """The handler of ``syncws_server``: override this fixture to serve your own."""
    return echo


@pytest.fixture
def syncws_server_options() -> dict[str, Any]:
    """Options for ``serve()`` in ``syncws_server``: override this fixture to set them."""
    return {}


@pytest.fixture
def syncws_server(
    syncws_handler: Callable[[ServerConnection], Any], syncws_server_options: dict[str, Any]
) -> Iterator[RunningServer]:
    """A server on a free loopback port for the duration of the test."""
    with run_server(syncws_handler, **syncws_server_options) as running:
        yield running


@pytest.fixture
def syncws_client(syncws_server: RunningServer) -> Iterator[ClientConnection]:
    """A client connected to ``syncws_server``."""
    client = connect(syncws_server.uri)
    with client:
        yield client


@pytest.fixture
def syncws_peer() -> Iterator[ScriptedPeer]:
    """A scripted server for testing a client."""
    with ScriptedPeer() as peer:
        yield peer


@pytest.fixture
def syncws_wsgi_app() -> Callable[..., Any]:
    """The WSGI application of ``syncws_app_server``: define this fixture in your tests."""
    raise pytest.UsageError(
        "syncws_app_server serves the fixture syncws_wsgi_app: define it in your conftest.py "
        "to return your WSGI application (a Flask app, Django's get_wsgi_application())"
    )


@pytest.fixture
def syncws_app_server(syncws_wsgi_app: Callable[..., Any]) -> Iterator[RunningApp]:
    """``syncws_wsgi_app`` on Werkzeug's threaded server, on a free loopback port."""
    with serve_app(syncws_wsgi_app) as running:
        yield running


@pytest.fixture
def syncws_clients(syncws_app_server: RunningApp) -> Iterator[ClientFactory]:
    """Open clients with ``syncws_clients(path, query=, headers=, cookies=)``; closed afterwards."""
    factory = ClientFactory(syncws_app_server)
    try:
        yield factory
    finally:
        factory.close()
