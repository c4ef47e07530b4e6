"""Autobahn conformance: every case OK or INFORMATIONAL, both roles, compression on and off.

The everyday run (``python -m pytest``) plays every case without compression in
both roles (seconds) and a sample of the permessage-deflate cases. The two full
runs with compression take 10 to 20 minutes on two cores: they are marked
``autobahn_full`` and run only with ``--autobahn-full`` (``.ci/run`` has a step
for them: ``python -m pytest tests/autobahn --autobahn-full``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import failures, run_client_cases, run_server_cases, summarize

# Coverage tracing would triple the time of these CPU-bound runs, and the unit
# tests already cover what they exercise: they run untraced (pytest-cov's no_cover).
pytestmark = [pytest.mark.timeout(900), pytest.mark.no_cover]

RUNNERS = {"server": run_server_cases, "client": run_client_cases}

#: The deflate cases of the everyday run: every 12.x category on its smallest
#: messages, and the 13.x parameter negotiations on theirs, one of them with
#: the client's no-context-takeover offer.
DEFLATE_SAMPLE = ("12.1.1", "12.2.1", "12.3.1", "12.4.1", "12.5.1", "13.1.1", "13.2.1", "13.7.1")


@pytest.mark.parametrize(
    "compression",
    [pytest.param(True, marks=pytest.mark.autobahn_full), False],
    ids=["deflate", "no-compression"],
)
@pytest.mark.parametrize("role", sorted(RUNNERS))
def test_conformance(tmp_path: Path, role: str, compression: bool) -> None:
    report = RUNNERS[role](tmp_path, compression=compression)
    label = "deflate" if compression else "no compression"
    print(summarize(f"{role}, {label}", report))
    assert len(report) > 300
    assert not failures(report), "\n".join(failures(report))


@pytest.mark.parametrize("role", sorted(RUNNERS))
def test_conformance_deflate_sample(tmp_path: Path, role: str) -> None:
    report = RUNNERS[role](tmp_path, compression=True, cases=DEFLATE_SAMPLE)
    print(summarize(f"{role}, deflate sample", report))
    assert sorted(report) == sorted(DEFLATE_SAMPLE)
    assert not failures(report), "\n".join(failures(report))
