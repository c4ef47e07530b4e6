"""A real browser against a syncws server: headless Chromium runs a test page
served by the server itself, on the same port as the WebSocket.

The page (``harness.html``) exposes small functions that the test awaits
through the DevTools protocol (``chromium.py``); the server records what it
receives and how each connection ends (``EchoRecorder``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncws import ServerConnection
from syncws.protocol.deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from syncws.protocol.http11 import Request, Response
from syncws.testing import RunningServer, run_server

from .chromium import Chromium, Page
from .peers import MESSAGES, WAIT, EchoRecorder, message

pytestmark = pytest.mark.timeout(60)

HARNESS = (Path(__file__).parent / "harness.html").read_bytes()


def serve_harness(connection: ServerConnection, request: Request) -> Response | None:
    """The test page at ``/``; WebSocket upgrades go on to the handler."""
    if "upgrade" in request.headers.get("Connection", "").lower():
        return None
    if request.path.split("?", 1)[0] != "/":
        return connection.respond(404, "Not found.\n")
    response = connection.respond(200, "")
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Content-Length"] = str(len(HARNESS))
    response.body = HARNESS
    return response


@contextlib.contextmanager
def harness(
    chromium: Chromium, **options: Any
) -> Iterator[tuple[RunningServer, EchoRecorder, Page]]:
    """A recording echo server serving the test page, and that page open in a tab."""
    recorder = EchoRecorder()
    with (
        run_server(recorder, process_request=serve_harness, **options) as server,
        chromium.new_page(server.uri.replace("ws://", "http://")) as page,
    ):
        yield server, recorder, page


def open_socket(page: Page, recorder: EchoRecorder) -> tuple[dict[str, Any], ServerConnection]:
    """Open the page's WebSocket; return what the page saw and the server's connection."""
    opened = page.evaluate("openSocket('/ws')")
    return opened, recorder.connections.get(timeout=WAIT)


#: Server options for permessage-deflate, and the response the browser must accept.
DEFLATE: dict[str, tuple[dict[str, Any], str | None]] = {
    "deflate": ({"compression": "deflate"}, "permessage-deflate; client_max_window_bits=12"),
    # Every parameter of RFC 7692, small windows, and even tiny messages compressed.
    "deflate-tight": (
        {
            "extensions": [
                ServerPerMessageDeflateFactory(
                    server_no_context_takeover=True,
                    client_no_context_takeover=True,
                    server_max_window_bits=10,
                    client_max_window_bits=10,
                    compress_min_size=0,
                )
            ]
        },
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits=10",
    ),
    "no-deflate": ({"compression": None}, None),
}


@pytest.mark.parametrize("deflate", DEFLATE)
def test_echo_text_binary_and_a_mebibyte(chromium: Chromium, deflate: str) -> None:
    options, response = DEFLATE[deflate]
    with harness(chromium, **options) as (_, recorder, page):
        opened, connection = open_socket(page, recorder)
        assert connection.request is not None and connection.response is not None
        # Browsers offer permessage-deflate; the server's setting decides.
        offered = connection.request.headers["Sec-WebSocket-Extensions"]
        assert offered == "permessage-deflate; client_max_window_bits"
        assert connection.response.headers.get("Sec-WebSocket-Extensions") == response
        assert opened["extensions"] == (response or "")
        expected = [] if response is None else [PerMessageDeflate]
        assert [type(e) for e in connection.protocol.extensions] == expected
        for size, kind in MESSAGES:
            echoed = page.evaluate(f"echo('{kind}', {size})")
            assert echoed["same"], (size, kind, echoed)
            assert echoed["type"] == kind
            assert recorder.received.get(timeout=WAIT) == message(size, kind)
        # A message sent in fragments arrives whole.
        connection.send(["frag", "mented ", "\u21c4 \U0001f389"])
        assert page.evaluate("receive()") == {
            "type": "text",
            "text": "fragmented \u21c4 \U0001f389",
        }
        connection.send([b"\x00\x01", b"", b"\xff"])
        assert page.evaluate("receive()") == {"type": "binary", "length": 3}


def test_browser_answers_pings(chromium: Chromium) -> None:
    with harness(chromium) as (_, recorder, page):
        _, connection = open_socket(page, recorder)
        for payload in (b"", b"syncws", bytes(range(125))):
            assert connection.ping(payload).wait(WAIT)


def test_browser_closes_with_a_code_and_reason(chromium: Chromium) -> None:
    with harness(chromium) as (_, recorder, page):
        open_socket(page, recorder)
        reason = "done, thanks \u2713"
        closed = page.evaluate(f"closeSocket(1000, {reason!r})")
        assert recorder.closed.get(timeout=WAIT) == (1000, reason)
        # The server echoes the close frame: a clean close on the page's side.
        assert closed == {"code": 1000, "reason": reason, "wasClean": True}


def test_closing_the_tab_is_going_away(chromium: Chromium) -> None:
    with harness(chromium) as (_, recorder, page):
        _, connection = open_socket(page, recorder)
        page.close()
        assert recorder.closed.get(timeout=WAIT) == (1001, "")
        assert connection.closed_by_us is False


@pytest.mark.parametrize("code", [4000, 4321, 4999])
def test_server_closes_with_an_application_code(chromium: Chromium, code: int) -> None:
    with harness(chromium) as (_, recorder, page):
        _, connection = open_socket(page, recorder)
        reason = f"server says {code} \u2014 bye"
        connection.close(code, reason)
        assert page.evaluate("closed()") == {"code": code, "reason": reason, "wasClean": True}
        assert connection.closed_by_us is True
        assert recorder.closed.get(timeout=WAIT) == (code, reason)
