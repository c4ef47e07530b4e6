"""Fixtures of the WSGI tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncws import _held


@pytest.fixture
def fresh_held() -> Iterator[None]:
    """The held-WebSockets counters as in a new process, restored afterwards."""
    saved = (list(_held._held), list(_held.threads_per_worker), list(_held._warned))
    _held._held[:], _held.threads_per_worker[:], _held._warned[:] = [0], [], []
    try:
        yield
    finally:
        _held._held[:], _held.threads_per_worker[:], _held._warned[:] = saved
