"""The demo as a person sees it: ``python -m syncws serve --demo`` in headless Chromium.

Pages are typed into and read through their DOM, as a person would use
them; every wait is for the document to change (a ``MutationObserver``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncws.cli.serve import DemoChat
from syncws.testing import run_server

from .chromium import Chromium
from .demo_page import join, lines, online, say
from .peers import WAIT, LineReader

pytestmark = pytest.mark.timeout(60)

SCREENSHOT_SCRIPT = Path(__file__).parent.parent.parent / "docs" / "screenshot.py"


@pytest.fixture
def demo() -> Iterator[str]:
    """``python -m syncws serve --demo`` on a free port; yield the page's URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "syncws", "serve", "--demo", "--host", "127.0.0.1", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        output = LineReader(process.stdout)
        lines = [output.readline(WAIT), output.readline(WAIT)]
        assert lines[0] is not None and lines[0].startswith("syncws demo chat: open http://")
        yield lines[0].split()[4]
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=WAIT)
        assert process.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr, stderr.decode()
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_demo_chat_between_pages(chromium: Chromium, demo: str) -> None:
    with contextlib.ExitStack() as pages:
        ada, ada_name = join(chromium, demo, online=1)
        pages.enter_context(ada)
        bob, bob_name = join(chromium, demo, online=2)
        pages.enter_context(bob)
        online(ada, 2)
        assert ada_name != bob_name
        say(ada, "Hello from Ada <b>not bold</b>")
        first = [ada_name, "Hello from Ada <b>not bold</b>"]
        assert lines(bob, 1) == [[False, *first]]
        assert lines(ada, 1) == [[True, *first]]  # her own line, in her colour
        assert bob.evaluate("document.querySelectorAll('#log b').length") == 0  # text, not markup
        assert ada.evaluate("document.getElementById('text').value") == ""
        say(bob, "Hi Ada \U0001f44b")
        second = [bob_name, "Hi Ada \U0001f44b"]
        assert lines(ada, 2)[1] == [False, *second]

        # A page that joins later gets the conversation so far, then what follows.
        carol, carol_name = join(chromium, demo, online=3)
        pages.enter_context(carol)
        assert lines(carol, 2) == [[False, *first], [False, *second]]
        say(bob, "Welcome, Carol")
        for page in (ada, carol):
            assert lines(page, 3)[2] == [False, bob_name, "Welcome, Carol"]
        say(carol, "Thanks!")
        for page in (ada, bob):
            assert lines(page, 4)[3] == [False, carol_name, "Thanks!"]

        # Bob closes his tab: the others are told.
        bob.close()
        online(ada, 2)
        online(carol, 2)


def test_the_docs_screenshot_script_works(chromium: Chromium) -> None:
    """``docs/screenshot.py`` (which made docs/_static/demo.png) still runs."""
    spec = importlib.util.spec_from_file_location("screenshot", SCREENSHOT_SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    chat = DemoChat()
    with run_server(chat.handler, process_request=chat.process_request) as server:
        png = script.take(chromium, server.uri.replace("ws://", "http://"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", png[16:24]) == (script.WIDTH, script.HEIGHT)
