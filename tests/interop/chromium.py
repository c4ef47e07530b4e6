"""Headless Chromium, driven over the Chrome DevTools Protocol with syncws's own client.

No driver package: the DevTools protocol is JSON over a WebSocket, and
Chromium's DevTools server is one more real peer for our client. One browser
serves all of tests/interop (the ``chromium`` fixture); each test opens pages
(tabs) and closes them.

.. code-block:: python

    with Chromium.launch() as browser, browser.new_page(url) as page:
        assert page.evaluate("1 + 1") == 2
        page.evaluate("new Promise(r => setTimeout(() => r('later'), 10))")  # awaited

Every wait is bounded; a page's JavaScript exception becomes ``PageError``.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import syncws

from .peers import WAIT

#: Debian's package; Chrome or another Chromium can be named in SYNCWS_CHROMIUM.
EXECUTABLE = os.environ.get("SYNCWS_CHROMIUM") or shutil.which("chromium")

FLAGS = [
    "--headless",
    "--no-sandbox",  # root in CI; the pages are our own
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-proxy-server",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    # Pages in other tabs run at full speed: a test drives several at once.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]

Json = dict[str, Any]


class PageError(Exception):
    """JavaScript evaluated in a page threw, or its promise rejected."""


class Chromium:
    """One headless Chromium process and our DevTools connection to it."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        connection: syncws.ClientConnection,
        profile: tempfile.TemporaryDirectory[str],
    ) -> None:
        self.process = process
        self.connection = connection
        self._profile = profile
        self._ids = itertools.count(1)
        # Events that arrived while we waited for something else, oldest first.
        self._events: collections.deque[Json] = collections.deque()

    @classmethod
    def launch(cls, executable: str | None = None, *, timeout: float = 30.0) -> Chromium:
        """Start Chromium on a fresh profile and connect to its DevTools endpoint."""
        executable = executable or EXECUTABLE
        if executable is None:
            raise FileNotFoundError("no chromium executable")
        profile = tempfile.TemporaryDirectory(prefix="syncws-chromium-")
        log = Path(profile.name) / "chromium.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [executable, *FLAGS, f"--user-data-dir={profile.name}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,  # so that stop() ends its helper processes too
            )
        try:
            # Chromium writes its port and path here once its DevTools server listens.
            active_port = Path(profile.name) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not (active_port.exists() and len(active_port.read_text().split()) >= 2):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Chromium didn't start (exit status {process.returncode}):\n"
                        + log.read_text(errors="replace")[-3000:]
                    )
                time.sleep(0.02)
            port, path = active_port.read_text().split()[:2]
            connection = syncws.connect(
                f"ws://127.0.0.1:{port}{path}",
                proxy=None,
                compression=None,
                max_size=64 * 1024 * 1024,  # screenshots
                max_queue=1024,
                # The keepalive timer keeps the process's reactor thread running as
                # long as the browser: otherwise it would stop whenever this
                # connection is idle and start again inside some test, whose leak
                # check would count it. Chromium answers pings, should one go out.
                ping_interval=3600,
                ping_timeout=None,
            )
        except BaseException:
            _stop_process(process)
            profile.cleanup()
            raise
        return cls(process, connection, profile)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the DevTools connection, stop Chromium and remove its profile."""
        try:
            self.connection.close()
        finally:
            _stop_process(self.process)
            self._profile.cleanup()

    # -- the protocol ---------------------------------------------------------------------

    def call(
        self,
        method: str,
        params: Json | None = None,
        *,
        session: str | None = None,
        timeout: float = WAIT,
    ) -> Json:
        """Send a command and return its result; events that arrive meanwhile are kept."""
        command: Json = {"id": next(self._ids), "method": method, "params": params or {}}
        if session is not None:
            command["sessionId"] = session
        self.connection.send(json.dumps(command))
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline, f"the answer to {method}")
            if message.get("id") == command["id"]:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: Json = message["result"]
                return result
            if "method" in message:
                self._events.append(message)

    def wait_event(
        self,
        method: str,
        *,
        session: str | None = None,
        where: Callable[[Json], bool] = lambda params: True,
        timeout: float = WAIT,
    ) -> Json:
        """Return the parameters of the first event ``method`` of ``session`` that matches."""

        def matches(event: Json) -> bool:
            return (
                event["method"] == method
                and event.get("sessionId") == session
                and where(event.get("params", {}))
            )

        for event in self._events:
            if matches(event):
                self._events.remove(event)
                return dict(event.get("params", {}))
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline, f"the event {method}")
            if "method" not in message:
                continue  # the answer to a command that timed out earlier
            if matches(message):
                return dict(message.get("params", {}))
            self._events.append(message)

    def _receive(self, deadline: float, what: str) -> Json:
        try:
            data = self.connection.recv(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise TimeoutError(f"Chromium: no {what} in time") from None
        message: Json = json.loads(data)
        return message

    def forget_events(self, session: str) -> None:
        """Drop the events of a session that is gone."""
        self._events = collections.deque(e for e in self._events if e.get("sessionId") != session)

    # -- pages ----------------------------------------------------------------------------

    def new_page(
        self, url: str, *, width: int = 800, height: int = 600, before_load: str | None = None
    ) -> Page:
        """Open ``url`` in a new tab and wait until it has loaded.

        ``before_load`` is JavaScript that runs in the page before its own scripts.
        """
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        page: Page | None = None
        try:
            session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"
            ]
            page = Page(self, target, session)
            page.call("Page.enable")
            page.call("Page.setLifecycleEventsEnabled", {"enabled": True})
            page.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            if before_load is not None:
                page.call("Page.addScriptToEvaluateOnNewDocument", {"source": before_load})
            page.goto(url)
        except BaseException:
            if page is not None:
                page.close()
            else:
                self.call("Target.closeTarget", {"targetId": target})
            raise
        return page


class Page:
    """A tab of ``Chromium``; a context manager that closes the tab."""

    def __init__(self, browser: Chromium, target: str, session: str) -> None:
        self.browser = browser
        self.target = target
        self.session = session
        self.closed = False

    def __enter__(self) -> Page:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def call(self, method: str, params: Json | None = None, *, timeout: float = WAIT) -> Json:
        return self.browser.call(method, params, session=self.session, timeout=timeout)

    def goto(self, url: str) -> None:
        """Navigate and wait for the load event of the new document."""
        navigation = self.call("Page.navigate", {"url": url})
        if "errorText" in navigation:
            raise RuntimeError(f"navigating to {url}: {navigation['errorText']}")
        loader = navigation["loaderId"]
        self.browser.wait_event(
            "Page.lifecycleEvent",
            session=self.session,
            where=lambda params: params["name"] == "load" and params["loaderId"] == loader,
        )

    def evaluate(self, expression: str, *, timeout: float = WAIT) -> Any:
        """The value of a JavaScript expression; a promise is awaited."""
        answer = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout=timeout,
        )
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details["text"]
            raise PageError(f"{expression}: {description}")
        return answer["result"].get("value")

    def wait_for(self, condition: str, *, timeout: float = WAIT) -> Any:
        """Wait until the JavaScript expression ``condition`` is truthy; return its value.

        It is checked now and after every change to the document (a
        ``MutationObserver``): no polling, no timers.
        """
        return self.evaluate(
            "new Promise((resolve) => {"
            "  const check = () => {"
            f"    const value = ({condition});"
            "    if (value) { observer.disconnect(); resolve(value); }"
            "  };"
            "  const observer = new MutationObserver(check);"
            "  observer.observe(document,"
            "    { subtree: true, childList: true, characterData: true, attributes: true });"
            "  check();"
            "})",
            timeout=timeout,
        )

    def type(self, text: str) -> None:
        """Type into the focused element, as a keyboard would."""
        self.call("Input.insertText", {"text": text})

    def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                {
                    "type": kind,
                    "key": "Enter",
                    "code": "Enter",
                    "windowsVirtualKeyCode": 13,
                    **({"text": "\r"} if kind == "keyDown" else {}),
                },
            )

    def screenshot(self) -> bytes:
        """The visible part of the page, as PNG."""
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        return base64.b64decode(data)

    def close(self) -> None:
        """Close the tab, as a person closes it (its pages get ``unload``)."""
        if not self.closed:
            self.closed = True
            self.browser.call("Target.closeTarget", {"targetId": self.target})
            self.browser.forget_events(self.session)


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop Chromium (SIGTERM, then SIGKILL) and whatever helpers it left in its group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
