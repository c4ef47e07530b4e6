"""The leak check itself catches what it should."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import open_fds


def test_open_fds_sees_a_new_socket() -> None:
    before = open_fds()
    assert before is not None
    left, right = socket.socketpair()
    try:
        after = open_fds()
        assert after is not None
        assert {left.fileno(), right.fileno()} <= after - before
    finally:
        left.close()
        right.close()


def test_leaking_tests_fail(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        (Path(__file__).parent / "conftest.py")
        .read_text()
        .replace('pytest_plugins = ["pytester", "syncws.testing.pytest_plugin"]', "")
    )
    pytester.makepyfile(
        """
        import socket
        import threading

        LEFT_OPEN = []
        THREADS = []
        STOP = threading.Event()

        def test_leaks_a_socket():
            LEFT_OPEN.append(socket.socket())

        def test_leaks_a_thread():
            THREADS.append(threading.Thread(target=STOP.wait, daemon=True))
            THREADS[-1].start()

        def test_clean():
            socket.socket().close()

        def test_zz_cleanup():
            STOP.set()
            for thread in THREADS:
                thread.join()
            for sock in LEFT_OPEN:
                sock.close()
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:cov")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(["*file descriptors left open*", "*threads left running*"])
