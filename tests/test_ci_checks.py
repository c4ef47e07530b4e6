""".ci/check_coverage.py fails on a module without a floor, a floor that matches
nothing, a module missing from the data and a module below its floor."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parent.parent / ".ci" / "check_coverage.py"


@pytest.fixture
def checker(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_coverage", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(
        module, "FLOORS", {"syncws/protocol/": 100.0, "syncws/protocol/x.py": 50.0, "a.py": 90.0}
    )
    return module


def test_the_most_specific_floor_applies(checker: ModuleType) -> None:
    assert checker.floor_for("syncws/protocol/x.py") == "syncws/protocol/x.py"
    assert checker.floor_for("syncws/protocol/y.py") == "syncws/protocol/"
    assert checker.floor_for("syncws/protocolz.py") is None


def test_every_module_at_its_floor_passes(checker: ModuleType) -> None:
    files = {"syncws/protocol/x.py": 50.0, "syncws/protocol/y.py": 100.0, "a.py": 95.0}
    assert checker.check(files, sorted(files)) == []


def test_each_problem_is_reported(checker: ModuleType) -> None:
    files = {"syncws/protocol/x.py": 49.9, "syncws/protocol/y.py": 100.0, "b.py": 100.0}
    problems = checker.check(files, ["b.py", "syncws/protocol/x.py", "syncws/protocol/z.py"])
    assert problems == [
        "b.py: no floor in .ci/check_coverage.py",
        "syncws/protocol/x.py: 49.90% is below its floor of 50%",
        "syncws/protocol/z.py: not in the coverage data (never imported?)",
        "floor 'a.py' matches no module of syncws/",
    ]
