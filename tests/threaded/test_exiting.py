"""Exit hooks: registered with threading's exit hooks and atexit, run once, cancellable."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable

import pytest

from syncws.threaded.runtime import exiting


def test_a_hook_runs_once_from_both_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    early: list[Callable[[], None]] = []
    late: list[Callable[[], None]] = []
    monkeypatch.setattr(threading, "_register_atexit", early.append, raising=False)
    monkeypatch.setattr(atexit, "register", late.append)
    calls: list[str] = []
    exiting.at_exit(lambda: calls.append("closed"))
    assert len(early) == len(late) == 1
    early[0]()  # threading's hooks run first, while threads may still start
    late[0]()  # atexit finds nothing left to do
    assert calls == ["closed"]


def test_a_cancelled_hook_does_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    late: list[Callable[[], None]] = []
    monkeypatch.setattr(atexit, "register", late.append)
    calls: list[str] = []
    exiting.at_exit(lambda: calls.append("closed")).cancel()
    late[0]()
    assert calls == []


def test_without_threading_hooks_atexit_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under eventlet's monkey-patching threading's hooks don't run (or can't be added)."""

    def refused(hook: Callable[[], None]) -> None:
        raise RuntimeError("can't register atexit after shutdown")

    late: list[Callable[[], None]] = []
    monkeypatch.setattr(threading, "_register_atexit", refused, raising=False)
    monkeypatch.setattr(atexit, "register", late.append)
    calls: list[str] = []
    exiting.at_exit(lambda: calls.append("closed"))
    late[0]()
    assert calls == ["closed"]


def test_without_threading_exit_hooks_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    late: list[Callable[[], None]] = []
    monkeypatch.delattr(threading, "_register_atexit", raising=False)
    monkeypatch.setattr(atexit, "register", late.append)
    calls: list[str] = []
    exiting.at_exit(lambda: calls.append("closed"))
    late[0]()
    assert calls == ["closed"]
