"""Fixtures of the interop tests: one headless Chromium for the whole package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .chromium import EXECUTABLE, Chromium
from .peers import require


@pytest.fixture(scope="package")
def chromium() -> Iterator[Chromium]:
    """A headless Chromium shared by the package's tests (each opens its own tabs).

    Package-scoped, not session-scoped: its DevTools connection keeps the
    reactor thread alive, which the rest of the suite must not see.
    """
    require(EXECUTABLE is not None, "Chromium", "Debian: apt-get install chromium")
    with Chromium.launch() as browser:
        yield browser
