"""Autobahn conformance: every case OK or INFORMATIONAL, both roles, compression on and off."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import failures, run_client_cases, run_server_cases, summarize

# Coverage tracing would triple the time of these CPU-bound runs, and the unit
# tests already cover what they exercise: they run untraced (pytest-cov's no_cover).
pytestmark = [pytest.mark.timeout(900), pytest.mark.no_cover]

RUNNERS = {"server": run_server_cases, "client": run_client_cases}


@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "no-compression"])
@pytest.mark.parametrize("role", sorted(RUNNERS))
def test_conformance(tmp_path: Path, role: str, compression: bool) -> None:
    report = RUNNERS[role](tmp_path, compression=compression)
    label = "deflate" if compression else "no compression"
    print(summarize(f"{role}, {label}", report))
    assert len(report) > 300
    assert not failures(report), "\n".join(failures(report))
