"""Shared test configuration: leak checks after every test, hypothesis profiles, the
syncws pytest plugin when its entry point is blocked, and the full Autobahn runs kept
out of the everyday run (``--autobahn-full`` brings them in)."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator

import pytest
from hypothesis import settings

from syncws.threaded.runtime import gather, poller

_FD_DIR = "/proc/self/fd"

pytest_plugins = ["pytester"]

# Property tests are the same on every run (a failure can be rerun as it was) and have
# no per-example deadline (a loaded machine is not a bug). HYPOTHESIS_PROFILE=explore
# draws new examples: for a session spent looking for bugs, not for CI.
settings.register_profile("repeatable", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

#: Seconds a test's threads get to exit after it ends before they count as leaked.
THREAD_EXIT_GRACE = 5.0
#: Seconds a descriptor on its way out gets to close before it counts as leaked.
FD_CLOSE_GRACE = 2.0


def open_fds() -> set[int] | None:
    """Return the process's open file descriptors, or None where the OS doesn't say."""
    try:
        listed = {int(name) for name in os.listdir(_FD_DIR)}
    except FileNotFoundError:  # pragma: no cover - not Linux
        return None
    # The listing shows the directory descriptor it used, closed by now.
    return {fd for fd in listed if _is_open(fd)}


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves threads or file descriptors open after it."""
    if request.node.get_closest_marker("allow_leaks"):
        yield
        return
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    yield
    # Threads that are on their way out get a moment to finish (the reactor
    # thread exits by itself once idle); a thread still running after that leaks.
    for thread in threading.enumerate():
        if thread not in threads_before:
            thread.join(THREAD_EXIT_GRACE)
    leaked_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert not leaked_threads, f"threads left running: {leaked_threads}"
    fds_after = open_fds()
    if fds_before is not None and fds_after is not None and fds_after - fds_before:
        # A descriptor held only by a reference cycle (an exception's traceback in
        # a server's thread, say) is released by the next collection: not a leak.
        # One on its way out (an HTTP answer the background thread drains until
        # the peer's EOF, under close_timeout) gets FD_CLOSE_GRACE to close.
        grace = threading.Event()
        for _ in range(int(FD_CLOSE_GRACE / 0.01)):
            gc.collect()
            fds_after = open_fds()
            assert fds_after is not None
            if not fds_after - fds_before:
                break
            grace.wait(0.01)
        leaked_fds = fds_after - fds_before
        assert not leaked_fds, f"file descriptors left open: {sorted(leaked_fds)}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--autobahn-full",
        action="store_true",
        help="also run the four full Autobahn conformance runs (10-20 minutes; .ci/run does)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_leaks: skip the thread and file-descriptor leak check"
    )
    config.addinivalue_line(
        "markers", "autobahn_full: a full Autobahn run, deselected without --autobahn-full"
    )
    # Coverage (CI) blocks the plugin's entry point with `-p no:syncws`, which pytest
    # imports before coverage starts: it is loaded here instead, once coverage measures.
    if config.pluginmanager.is_blocked("syncws"):
        config.pluginmanager.import_plugin("syncws.testing.pytest_plugin")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--autobahn-full"):
        return
    kept = [item for item in items if not item.get_closest_marker("autobahn_full")]
    if len(kept) < len(items):
        config.hook.pytest_deselected(
            items=[item for item in items if item.get_closest_marker("autobahn_full")]
        )
        items[:] = kept


def pytest_report_header() -> str:
    """Which platform's paths run: ``SYNCWS_POLLER``, ``SYNCWS_NO_SENDMSG`` (.ci/portable.sh)."""
    return f"syncws: poller {poller.POLLER}, sendmsg {'on' if gather.USE_SENDMSG else 'off'}"
