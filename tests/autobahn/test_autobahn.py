"""Autobahn conformance: every case OK or INFORMATIONAL, both roles, compression on and off."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import failures, run_client_cases, run_server_cases, summarize

pytestmark = pytest.mark.timeout(900)


@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "no-compression"])
def test_server_conformance(tmp_path: Path, compression: bool) -> None:
    report = run_server_cases(tmp_path, compression=compression)
    label = "deflate" if compression else "no compression"
    print(summarize(f"server, {label}", report))
    assert len(report) > 300
    assert not failures(report), "\n".join(failures(report))


@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "no-compression"])
def test_client_conformance(tmp_path: Path, compression: bool) -> None:
    report = run_client_cases(tmp_path, compression=compression)
    label = "deflate" if compression else "no compression"
    print(summarize(f"client, {label}", report))
    assert len(report) > 300
    assert not failures(report), "\n".join(failures(report))
