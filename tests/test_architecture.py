"""The layering rules: the protocol core does no I/O, and the public API is exported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import syncws
import syncws.protocol as core
from syncws.protocol.state import ProtocolState

CORE = Path(syncws.__file__).parent / "protocol"
FORBIDDEN = {"socket", "threading", "selectors", "select", "asyncio", "time", "ssl"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_io_or_threads() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert modules
    for path in modules:
        assert not imported_modules(path) & FORBIDDEN, path.name


def test_public_names_are_exported() -> None:
    for name in syncws.__all__:
        assert hasattr(syncws, name), name
    assert syncws.__all__ == sorted(syncws.__all__)


def test_core_api_is_exported() -> None:
    for name in core.__all__:
        assert hasattr(core, name), name
    assert core.__all__ == sorted(core.__all__, key=lambda name: (not name.isupper(), name))


def test_optional_integrations_are_imported_lazily() -> None:
    code = "import sys, syncws; print(sorted({'redis', 'python_socks'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_exceptions_is_a_leaf() -> None:
    # The core imports syncws.exceptions: it may import nothing from syncws at run
    # time (a name for type hints only, under TYPE_CHECKING, is fine).
    tree = ast.parse((CORE.parent / "exceptions.py").read_text())
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for node in ast.walk(block)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and id(node) not in type_only:
            assert node.level == 0 and node.module != "syncws", ast.unparse(node)


def test_parts_of_protocol_add_methods_not_fields() -> None:
    # Protocol is built in parts (state, sending, receiving, connection); only
    # ProtocolState declares fields, so a connection keeps one compact layout
    # (no per-instance __weakref__, no extra slots) however the parts are cut.
    parts = core.Protocol.__mro__[: core.Protocol.__mro__.index(ProtocolState)]
    assert len(parts) >= 2
    for part in parts:
        assert vars(part).get("__slots__") == (), part
    for cls in (core.Protocol, core.ClientProtocol, core.ServerProtocol):
        assert "__weakref__" not in dir(cls), cls
