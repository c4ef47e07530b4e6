"""Print the Autobahn summaries at the end of the session, with or without -s."""

from __future__ import annotations

import pytest

from .harness import SUMMARIES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for summary in SUMMARIES:
        terminalreporter.write_line(summary)
