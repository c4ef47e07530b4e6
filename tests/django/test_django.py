"""syncws.django in this process: Django's WSGI app on a real threaded server (serve_app).

Each behaviour of ``@websocket``: middleware and ``check`` before the upgrade,
the Origin policy (ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS, overrides), options
from the decorator and from settings, the hub, and the database.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from typing import Any

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.settings")
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.test import AsyncRequestFactory, Client, override_settings  # noqa: E402

import syncws.django  # noqa: E402
from syncws import ConnectionClosed, RedisBackend, UnsupportedServer  # noqa: E402
from syncws.django import allowed_origin, hub, websocket  # noqa: E402
from syncws.testing import (  # noqa: E402
    ClientFactory,
    RunningApp,
    ScriptedClient,
    expect_refused,
    serve_app,
)
from syncws.wsgi import Upgrade  # noqa: E402

from ..pubsub.conftest import started_redis  # noqa: E402
from ..threaded.helpers import WAIT  # noqa: E402
from . import views  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def syncws_wsgi_app() -> Callable[..., Any]:
    return get_wsgi_application()


def session_cookie(app: RunningApp, name: str) -> dict[str, str]:
    """Log in through an ordinary view; return the session cookie it set."""
    with urllib.request.urlopen(f"{app.url}/login/?name={name}", timeout=WAIT) as response:
        cookie = SimpleCookie(response.headers["Set-Cookie"])
    return {"sessionid": cookie["sessionid"].value}


def http_status(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=WAIT):
            return 200
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_the_view_gets_request_url_values_and_connection(
    syncws_app_server: RunningApp, syncws_clients: ClientFactory
) -> None:
    cookies = session_cookie(syncws_app_server, "alice") | {"flavour": "mint"}
    client = syncws_clients(
        "/echo/lobby/",
        query={"q": "x y"},
        headers={"X-Test": "yes", "Accept-Encoding": "gzip"},  # GZipMiddleware is on
        cookies=cookies,
    )
    assert client.recv(timeout=WAIT) == ("room=lobby q=x y cookie=mint header=yes session=alice")
    client.send("ping")
    assert client.recv(timeout=WAIT) == "ping"
    assert syncws_clients.clients == [client]


def test_check_and_view_decorators_refuse_before_the_upgrade(
    syncws_app_server: RunningApp,
) -> None:
    members = syncws_app_server.ws_url("/members/")
    expect_refused(members, 403, origin=syncws_app_server.url)
    cookies = session_cookie(syncws_app_server, "bob")
    with ScriptedClient(
        members,
        origin=syncws_app_server.url,
        additional_headers={"Cookie": f"sessionid={cookies['sessionid']}"},
    ) as client:
        client.expect("hello bob")
        client.expect_close(1000)
    # require_GET (outside @websocket) answers a HEAD itself; a plain GET gets 426.
    assert http_status(f"{syncws_app_server.url}/members/", "HEAD") == 405
    assert http_status(f"{syncws_app_server.url}/echo/x/") == 426


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (None, True),  # not a browser: no cross-site risk
        ("http://127.0.0.1:1234", True),  # ALLOWED_HOSTS
        ("http://evil.example", False),
        ("http://127.0.0.1.evil.example", False),
        ("https://chat.trusted.example", True),  # CSRF_TRUSTED_ORIGINS, wildcard
        ("http://chat.trusted.example", False),  # ... for https only
        ("http://exact.example:8080", True),
        ("http://exact.example:8081", False),
        ("null", False),
    ],
)
def test_origin_is_checked_against_allowed_hosts_by_default(
    syncws_app_server: RunningApp, origin: str | None, accepted: bool
) -> None:
    uri = syncws_app_server.ws_url("/echo/lobby/")
    if accepted:
        with ScriptedClient(uri, origin=origin) as client:
            assert client.recv().startswith("room=lobby")
    else:
        expect_refused(uri, 403, origin=origin)


def test_origin_policy_overrides(syncws_app_server: RunningApp) -> None:
    with ScriptedClient(
        syncws_app_server.ws_url("/any-origin/"), origin="http://evil.example"
    ) as client:
        client.expect("any origin")
    listed = syncws_app_server.ws_url("/listed-origins/")
    for origin in ("https://app.example", "https://eu.app.example"):
        with ScriptedClient(listed, origin=origin) as client:
            client.expect("listed origin")
    expect_refused(listed, 403, origin=syncws_app_server.url)


def test_the_default_policy_reads_as_its_name() -> None:
    assert repr(syncws.django.ALLOWED_HOSTS) == "ALLOWED_HOSTS"  # in signatures and docs


def test_a_finished_websocket_whose_body_needs_no_close() -> None:
    response = syncws.django._response(Upgrade("101 Switching Protocols", [], []))
    assert response.status_code == 101
    assert list(response) == []
    response.close()


def test_allowed_origin_with_debug_defaults() -> None:
    with override_settings(DEBUG=True, ALLOWED_HOSTS=[], CSRF_TRUSTED_ORIGINS=[]):
        assert allowed_origin("http://localhost:8000")
        assert allowed_origin("http://app.localhost:8000")
        assert allowed_origin("http://[::1]:8000")
        assert not allowed_origin("http://example.com")
    with override_settings(DEBUG=False, ALLOWED_HOSTS=[]):
        assert not allowed_origin("http://localhost:8000")
    with override_settings(ALLOWED_HOSTS=["*"]):
        assert allowed_origin("https://anything.example")
    assert not allowed_origin("garbage")


def test_decorator_options_and_settings(syncws_app_server: RunningApp) -> None:
    with ScriptedClient(
        syncws_app_server.ws_url("/options/"), subprotocols=["chat"], origin=syncws_app_server.url
    ) as client:
        client.expect("chat")
        assert client.connection.response is not None
        assert (
            "Sec-WebSocket-Extensions" not in client.connection.response.headers
        )  # compression=None
        client.send("x" * 17)  # max_size=16
        client.expect_close(1009)
    # SYNCWS_OPTIONS["origins"] replaces the default policy (not a view's own).
    with override_settings(SYNCWS_OPTIONS={"origins": ["https://app.example"]}):
        expect_refused(syncws_app_server.ws_url("/echo/o/"), 403, origin=syncws_app_server.url)
        with ScriptedClient(
            syncws_app_server.ws_url("/echo/o/"), origin="https://app.example"
        ) as scripted:
            assert scripted.recv().startswith("room=o")
        with ScriptedClient(
            syncws_app_server.ws_url("/any-origin/"), origin=syncws_app_server.url
        ) as scripted:
            scripted.expect("any origin")
    # SYNCWS_OPTIONS applies to every view, under the decorator's own options.
    with (
        override_settings(SYNCWS_OPTIONS={"max_size": 4}),
        ScriptedClient(
            syncws_app_server.ws_url("/echo/small/"), origin=syncws_app_server.url
        ) as client,
    ):
        assert client.recv().startswith("room=small")
        client.send("12345")
        client.expect_close(1009)


def test_options_are_checked_when_decorating() -> None:
    def view(request: Any, ws: Any) -> None:
        pass

    with pytest.raises(TypeError, match="unknown option"):
        websocket(bogus=1)(view)
    with pytest.raises(ValueError, match="max_size"):
        websocket(max_size=0)
    with pytest.raises(TypeError, match="check"):
        websocket(check="yes")
    with pytest.raises(TypeError, match="origins"):
        websocket(origins="https://app.example")


def test_the_view_never_runs_in_a_transaction(syncws_app_server: RunningApp) -> None:
    # ATOMIC_REQUESTS is on in the settings: it would wrap any other view.
    with ScriptedClient(syncws_app_server.ws_url("/transaction/"), origin=None) as client:
        client.expect("in transaction: False")


def test_a_view_that_raises_closes_with_1011(
    syncws_app_server: RunningApp, caplog: pytest.LogCaptureFixture
) -> None:
    with ScriptedClient(syncws_app_server.ws_url("/fails/"), origin=None) as client:
        client.expect_close(1011)
    assert "the view failed" in caplog.text


def test_the_hub_and_waiting_for_subscribers(
    syncws_app_server: RunningApp, syncws_clients: ClientFactory
) -> None:
    first = syncws_clients("/room/red/")
    second = syncws_clients("/room/red/")
    assert hub().wait_for_subscribers("red", count=2)
    first.send("hi")
    assert first.recv(timeout=WAIT) == "hi"
    assert second.recv(timeout=WAIT) == "hi"
    assert hub().publish("red", "from a view") == 2


@pytest.fixture
def fresh_hub() -> Iterator[None]:
    saved = list(syncws.django._hub)
    syncws.django._hub.clear()
    try:
        yield
    finally:
        for made in syncws.django._hub:
            made.close()
        syncws.django._hub[:] = saved


@pytest.mark.usefixtures("fresh_hub")
def test_the_hub_uses_redis_when_configured() -> None:
    with started_redis() as redis_server, override_settings(SYNCWS_REDIS_URL=redis_server.url):
        made = hub()
    assert isinstance(made.backend, RedisBackend)
    assert hub() is made


def test_djangos_test_client_gets_an_http_answer_or_a_hint() -> None:
    assert Client().get("/echo/lobby/").status_code == 426
    upgrade = {
        "Host": "testserver",  # the test client leaves it out
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    with pytest.raises(UnsupportedServer, match=r"serve_app\(app\)"):
        Client().get("/echo/lobby/", headers=upgrade)


def test_connection_closed_when_the_app_server_stops(syncws_wsgi_app: Callable[..., Any]) -> None:
    with serve_app(syncws_wsgi_app) as app:
        client = app.connect("/echo/lobby/")
        assert client.recv(timeout=WAIT).startswith("room=lobby")
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=WAIT)
    assert closed.value.code == 1001
    client.close()


def test_servers_that_cannot_hand_over_are_refused_early(monkeypatch: pytest.MonkeyPatch) -> None:
    def view(request: Any, ws: Any) -> None:
        pass

    monkeypatch.setattr("sys.argv", ["/usr/bin/waitress-serve", "mysite.wsgi:application"])
    with pytest.raises(UnsupportedServer, match="waitress"):
        websocket(view)
    monkeypatch.undo()
    # At the first request, whatever the request (an HTTP GET here).
    extra = {"SERVER_SOFTWARE": "waitress", "waitress.client_disconnected": lambda: False}
    with pytest.raises(UnsupportedServer, match="waitress"):
        Client().get("/echo/lobby/", **extra)


def test_async_views_and_asgi_requests_are_refused() -> None:
    async def view(request: Any, ws: Any) -> None:
        pass

    with pytest.raises(TypeError, match="plain function"):
        websocket(view)
    request = AsyncRequestFactory().get("/echo/lobby/")  # what Django gives under ASGI
    with pytest.raises(UnsupportedServer, match="ASGI"):
        views.echo(request, room="lobby")


def test_served_by_wsgiref_as_runserver_does(syncws_wsgi_app: Callable[..., Any]) -> None:
    with serve_app(syncws_wsgi_app, server="wsgiref") as app:
        with ScriptedClient(app.ws_url("/echo/std/", {"q": "1"}), origin=app.url) as scripted:
            assert scripted.recv().startswith("room=std q=1")
            scripted.send("echo")
            scripted.expect("echo")
        expect_refused(app.ws_url("/echo/std/"), 403, origin="http://evil.example")
        assert http_status(f"{app.url}/echo/std/") == 426  # no hop-by-hop header: no 500
