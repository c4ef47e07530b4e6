"""The seams of the threaded layer: the connection's core and its parts, and the rooms.

Read from the source (AST), so a change that crosses a seam fails here with
the file and the line, before it shows up as a race:

- the connection's leaf parts import nothing from its core;
- only the core takes the connection's locks (a subclass or another module
  goes through the core's methods);
- no method stubs under ``TYPE_CHECKING`` (how up-calls used to hide);
- no module over 600 lines;
- no import running up between rooms: every module of ``syncws/threaded``
  belongs to a room, and a room imports only from the rooms below it.

Modules are found by name wherever they are in ``syncws/threaded``, flat or
in sub-packages named after the rooms (a module's room is its folder when it
has one, else the table below), so the rules hold either way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import syncws

PACKAGE = Path(syncws.__file__).parent
THREADED = PACKAGE / "threaded"

#: The connection's core: the only modules that take the connection's locks.
CORE = {"core", "connection", "reader", "driver"}
#: Its leaf parts: they take values and return results, and know nothing of the core.
PARTS = {"outbox", "inbox", "keepalive", "transport", "changed", "logs"}
#: The connection's locks (and the condition variable on ``_lock``).
CONNECTION_LOCKS = {"_lock", "_write_lock", "_send_mutex", "_changed"}

#: Rooms from the bottom up; a room imports only from rooms of a lower rank.
RANKS = {"shared": 0, "runtime": 1, "net": 2, "connection": 3, "server": 4, "client": 4}
#: Where each module of syncws/threaded lives (by name, flat or in a room's folder).
ROOMS = {
    "shared": {"__init__", "deadline", "options", "origins", "backoff"},
    "runtime": {"reactor", "worker", "poller", "gather", "errcodes"},
    "net": {"dns", "proxy", "tls_in_tls"},
    "connection": CORE | PARTS | {"broadcast"},
    "server": {"server", "server_connection", "listener", "connection_factory"},
    "client": {"client", "reconnect"},
}
_ROOM_OF_MODULE = {name: room for room, names in ROOMS.items() for name in names}


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def dotted_name(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" and path.parent != THREADED else parts


def imports(path: Path) -> list[tuple[int, list[str]]]:
    """Every module ``path`` imports from syncws, as dotted names, with the line."""
    here = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)[:-1]
    found = []
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            if node.module:
                found.append((node.lineno, module))
            else:  # from . import a, b: modules
                found.extend((node.lineno, [*module, alias.name]) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")) for alias in node.names)
    return [(line, name) for line, name in found if name[:1] == ["syncws"]]


def room(dotted: list[str]) -> str | None:
    """The room of a module of syncws/threaded (by its folder, else its name); None outside."""
    if dotted[:2] != ["syncws", "threaded"]:
        return None
    first = (dotted[2:] or ["__init__"])[0]
    # A room's folder, or (flat layout) a module named after its room, or the table.
    return first if first in RANKS else _ROOM_OF_MODULE.get(first)


def test_every_threaded_module_has_a_room() -> None:
    for path in sorted(THREADED.rglob("*.py")):
        assert room(dotted_name(path)) is not None, f"{path.name}: add it to ROOMS"


def test_no_import_runs_up_between_rooms() -> None:
    for path in sorted(THREADED.rglob("*.py")):
        mine = room(dotted_name(path))
        assert mine is not None
        for line, name in imports(path):
            theirs = room(name)
            if theirs is None or theirs == mine:
                continue
            assert RANKS[theirs] < RANKS[mine], (
                f"{path.relative_to(PACKAGE)}:{line} ({mine}) imports {'.'.join(name)} ({theirs})"
            )


def role(dotted: list[str]) -> str | None:
    """ "core" or "part" for the connection's modules (in its room), else None."""
    if room(dotted) != "connection":
        return None
    name = dotted[-1]
    return "core" if name in CORE else "part" if name in PARTS else None


def test_parts_import_nothing_from_the_core() -> None:
    paths = [path for path in THREADED.rglob("*.py") if role(dotted_name(path)) == "part"]
    assert {dotted_name(path)[-1] for path in paths} == PARTS
    for path in paths:
        for line, name in imports(path):
            assert role(name) != "core", f"{path.name}:{line} imports {'.'.join(name)}"


def test_only_the_core_takes_the_connection_lock() -> None:
    """Outside the core, ``x._lock`` is only a class's own lock (``self._lock = ...``)."""
    for path in sources():
        if role(dotted_name(path)) == "core":
            continue
        tree = parse(path)
        owned = {
            target.attr
            for node in ast.walk(tree)
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in CONNECTION_LOCKS:
                own = isinstance(node.value, ast.Name) and node.value.id == "self"
                assert own and node.attr in owned, (
                    f"{path.relative_to(PACKAGE)}:{node.lineno} takes {ast.unparse(node)}"
                )


def test_no_method_stubs_under_type_checking() -> None:
    for path in sources():
        for block in ast.walk(parse(path)):
            if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING"):
                for node in ast.walk(block):
                    assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)), (
                        f"{path.relative_to(PACKAGE)}:{node.lineno}: a stub under TYPE_CHECKING"
                    )


def test_no_module_over_600_lines() -> None:
    for path in sources():
        lines = len(path.read_text().splitlines())
        assert lines <= 600, f"{path.relative_to(PACKAGE)}: {lines} lines"
