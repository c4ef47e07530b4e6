"""The harness's own behaviour: a crash of kosoku is retried once, a verdict never."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from . import harness


def scripted(codes: list[int]) -> Any:
    calls: list[list[str]] = []

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        return subprocess.CompletedProcess(command, codes.pop(0), "", "boom")

    run.calls = calls  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize(
    ("codes", "fails", "runs"),
    [
        ([0], False, 1),
        ([-6, 0], False, 2),  # killed by SIGABRT once: run again
        ([-6, -6], True, 2),  # twice: fail
        ([1], True, 1),  # kosoku's own failure: never retried
    ],
)
def test_a_crash_of_kosoku_is_retried_once(
    monkeypatch: pytest.MonkeyPatch, codes: list[int], fails: bool, runs: int
) -> None:
    run = scripted(codes)
    monkeypatch.setattr(harness.subprocess, "run", run)
    if fails:
        with pytest.raises(subprocess.CalledProcessError):
            harness._run_fuzzing_client(["kosoku"])
    else:
        harness._run_fuzzing_client(["kosoku"])
    assert len(run.calls) == runs
