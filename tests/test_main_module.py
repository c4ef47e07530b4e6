"""``python -m syncws`` runs the CLI's ``main()`` and exits with what it returns.

tests/test_cli.py runs the command in a child process, which coverage doesn't
follow: this runs ``syncws/__main__.py`` in the test's own process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import syncws


def test_python_m_syncws_runs_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["syncws", "--help"])
    # As `python -m syncws` runs it (runpy can't: pytest's import hook owns syncws).
    path = Path(syncws.__file__).with_name("__main__.py")
    code = compile(path.read_text(), str(path), "exec")
    with pytest.raises(SystemExit) as exited:
        exec(code, {"__name__": "__main__", "__package__": "syncws"})
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: syncws URI [options]")
