"""Sphinx configuration for the syncws documentation.

Build it with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``;
``tests/test_docs.py`` does the same on every test run, so a warning fails CI.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document this checkout even when it isn't installed

from syncws.version import __version__  # noqa: E402

project = "syncws"
author = "the syncws developers"
copyright = "the syncws developers"
release = __version__
version = ".".join(__version__.split(".")[:2])

# napoleon renders the Args:/Raises: sections of the docstrings.
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build"]
# Warnings are errors (-W): also report references to things that don't exist.
nitpicky = True
nitpick_ignore_regex = [
    # Standard library and third-party names in signatures: there is no
    # intersphinx (the build must work offline), so they can't be linked.
    (r"py:.*", r"(?!syncws\b).*"),
    # Private helpers and type variables that appear in signatures.
    (r"py:.*", r"syncws\..*\._\w+|syncws\..*\.T"),
    # The connection's core, shown as Connection's base class.
    (r"py:class", r"syncws\.threaded\.(connection\.)?core\.ConnectionCore"),
    # The protocol core's internal parts, shown as Protocol's base class.
    (r"py:class", r"syncws\.protocol\.(state|sending|receiving)\.\w+"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}

default_role = "literal"  # `x` renders as code, like ``x``
highlight_language = "python"
html_theme = "alabaster"
html_title = f"syncws {release}"
html_static_path: list[str] = []
