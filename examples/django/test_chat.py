"""Testing the chat of this Django project with syncws.testing.

    python -m pytest examples/django/test_chat.py

Django's test ``Client`` can't open a WebSocket (there is no socket): the
``syncws_app_server`` fixture serves the project's WSGI application for real
on a free port, and ``syncws_clients`` opens clients to it.
"""

from __future__ import annotations

import http.cookiejar
import os
import urllib.request
from collections.abc import Callable
from typing import Any

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chat.settings")
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402

from syncws.testing import ClientFactory, RunningApp, expect_refused  # noqa: E402


@pytest.fixture
def syncws_wsgi_app() -> Callable[..., Any]:
    return get_wsgi_application()


def nickname(app: RunningApp, name: str) -> dict[str, str]:
    """Pick a nickname through the site's form; return the session cookie."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{app.url}/nickname/", data=f"name={name}".encode(), timeout=5):
        pass
    return {cookie.name: str(cookie.value) for cookie in jar}


def test_members_chat(syncws_app_server: RunningApp, syncws_clients: ClientFactory) -> None:
    ada = syncws_clients("/ws/lobby/", cookies=nickname(syncws_app_server, "ada"))
    assert ada.recv(timeout=5) == "welcome to lobby, ada"  # sent once subscribed
    bob = syncws_clients("/ws/lobby/", cookies=nickname(syncws_app_server, "bob"))
    assert bob.recv(timeout=5) == "welcome to lobby, bob"
    ada.send("hello")
    assert bob.recv(timeout=5) == "ada: hello"
    assert ada.recv(timeout=5) == "ada: hello"


def test_announcements_reach_the_room(
    syncws_app_server: RunningApp, syncws_clients: ClientFactory
) -> None:
    ada = syncws_clients("/ws/news/", cookies=nickname(syncws_app_server, "ada"))
    assert ada.recv(timeout=5) == "welcome to news, ada"
    request = urllib.request.Request(f"{syncws_app_server.url}/announce/news/", data=b"extra!")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.read() == b"sent to 1 here\n"
    assert ada.recv(timeout=5) == "extra!"


def test_no_nickname_no_websocket(syncws_app_server: RunningApp) -> None:
    expect_refused(syncws_app_server.ws_url("/ws/lobby/"), 403, origin=syncws_app_server.url)


def test_other_sites_are_refused(syncws_app_server: RunningApp) -> None:
    cookies = nickname(syncws_app_server, "ada")
    expect_refused(
        syncws_app_server.ws_url("/ws/lobby/"),
        403,
        origin="https://evil.example",
        additional_headers={"Cookie": f"sessionid={cookies['sessionid']}"},
    )
