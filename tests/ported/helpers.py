"""Helpers for running other libraries' programs, ported by changing one import.

The original libraries are the peers: a ``websockets`` server for the
clients, a ``websocket-client`` or ``simple-websocket`` client for the servers.
They are in the test extra; outside CI a missing one skips, in CI it fails.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ..threaded.helpers import WAIT


def original(module: str) -> ModuleType:
    """Import one of the original libraries (a package of the test extra)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is missing: it is in the test extra")
        pytest.skip(f"{module} is not installed (pip install -e '.[test]' brings it)")
        raise  # pragma: no cover - skip() raises


def ported(source: str, old: str, new: str) -> str:
    """``source`` with only the import line ``old`` replaced by ``new``."""
    assert source.count(old) == 1, f"{old!r} is not in the program once"
    result = source.replace(old, new)
    assert result.count("\n") == source.count("\n")
    return result


@contextlib.contextmanager
def websockets_server(handler: Callable[[Any], None], **options: Any) -> Iterator[str]:
    """Serve ``handler`` with the original ``websockets.sync.server``; yield its ws:// URL."""
    server_module = original("websockets.sync.server")
    with server_module.serve(handler, "127.0.0.1", 0, **options) as server:
        thread = threading.Thread(target=server.serve_forever, name="websockets-server")
        thread.start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
        finally:
            server.shutdown()
            thread.join(WAIT)


@contextlib.contextmanager
def werkzeug_server(app: Any) -> Iterator[str]:
    """A WSGI app on Werkzeug's threaded server, on a free port; yield its ws:// base URL."""
    from werkzeug.serving import make_server  # noqa: PLC0415 - Flask brings it

    from syncws import wsgi  # noqa: PLC0415

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="werkzeug-server")
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.server_port}"
    finally:
        wsgi.shutdown_all()
        server.shutdown()
        thread.join(WAIT)
        server.server_close()


def load(source: str, name: str) -> dict[str, Any]:
    """Run a program's source as module ``name``; return its namespace."""
    namespace: dict[str, Any] = {"__name__": name}
    exec(compile(source, f"{name}.py", "exec"), namespace)
    return namespace


@contextlib.contextmanager
def program(tmp_path: Path, source: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """Run ``source`` as a script in a fresh interpreter, output unbuffered; kill it at the end."""
    script = tmp_path / "program.py"
    script.write_text(source)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=WAIT)


def read_until(process: subprocess.Popen[str], line: str) -> list[str]:
    """The program's output lines up to and including ``line`` (pytest-timeout bounds it)."""
    assert process.stdout is not None
    lines = []
    while True:
        text = process.stdout.readline()
        assert text, f"the program ended before printing {line!r}: {lines}"
        lines.append(text.rstrip("\n"))
        if lines[-1] == line:
            return lines
