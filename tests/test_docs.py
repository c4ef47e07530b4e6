"""The documentation builds without a warning, and no code block in it can rot.

Every code block in docs/ (and in the docstrings that autodoc shows there)
is either a file of examples/ pulled in with ``literalinclude`` (those run in
tests/test_examples.py) or checked here: Python compiles and the syncws names
it uses exist, ``>>>`` sessions run as doctests, shell lines parse and name
files and extras that exist. A block in a language with no check fails.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import syncws
from syncws.testing import RunningServer

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.rst"))
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def have_sphinx() -> bool:
    if importlib.util.find_spec("sphinx") is not None:
        return True
    if os.environ.get("CI"):
        pytest.fail("sphinx is missing: it is in the test extra, and CI builds the docs")
    pytest.skip("sphinx is not installed (pip install -e '.[test]' brings it)")
    return False  # pragma: no cover - skip() raises


# -- the build --------------------------------------------------------------------------------


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    have_sphinx()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"),
            *("-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "html" / "index.html").exists()


def test_every_page_is_in_the_toctree() -> None:
    # Sphinx warns too; this says which page without a build.
    index = (DOCS / "index.rst").read_text()
    listed = set(re.findall(r"^   (\w[\w-]*)$", index, re.MULTILINE))
    assert listed == {page.stem for page in PAGES} - {"index"}


def test_every_example_is_shown_in_the_docs() -> None:
    text = "\n".join(page.read_text() for page in PAGES)
    included = set(re.findall(r"\.\. literalinclude:: \.\./examples/([\w./-]+)", text))
    copied = set(re.findall(r"^\s+:caption:\s+examples/([\w./-]+)\s*$", text, re.MULTILINE))
    missing = {path.name for path in EXAMPLES} - included - copied
    assert not missing, f"examples that no page includes: {sorted(missing)}"


def test_extras_are_installed_from_the_checkout() -> None:
    """syncws isn't on PyPI: no page, example or message says ``pip install 'syncws[...]'``."""
    files = [ROOT / "README.md", *PAGES, *EXAMPLES, *sorted((ROOT / "syncws").rglob("*.py"))]
    from_pypi = re.compile(r"pip install\s+[-\w\s]*['\"]?syncws\b")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if from_pypi.search(line)
    ]
    assert not offenders, f"say pip install '.[extra]' (from the checkout): {offenders}"


def test_the_quickstart_reads_as_a_plain_file() -> None:
    """Its code is in the page (copies of examples/, checked above), not pulled in by Sphinx."""
    text = (DOCS / "quickstart.rst").read_text()
    assert "literalinclude" not in text
    assert len(re.findall(r":caption: examples/", text)) >= 4


def test_a_copied_block_that_differs_fails() -> None:
    page = ".. code-block:: python\n   :caption: examples/hello.py\n\n   print('not in hello.py')\n"
    (block,) = blocks_in(page, "page.rst:1")
    assert block.source == "examples/hello.py"
    with pytest.raises(AssertionError, match=r"differs from examples/hello\.py"):
        test_code_block(block)


# -- collecting the code blocks ---------------------------------------------------------------


@dataclass
class Block:
    where: str  # file:line, for messages
    language: str
    code: str
    # The examples/ file a block copies (its ``:caption:``): the block must be
    # a verbatim part of it, so a page reads well as a plain file and can't rot.
    source: str | None = None


_DIRECTIVE = re.compile(r"^(\s*)\.\. (?:code-block|code|sourcecode)::\s*(\S*)\s*$")
_LITERAL = re.compile(r"^(\s*)(?!\.\.)\S.*::\s*$")


def blocks_in(text: str, where: str) -> Iterator[Block]:
    """Yield the code blocks of reStructuredText: directives and ``::`` literal blocks.

    ``>>>`` sessions are collected separately, as doctests.
    """
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = _DIRECTIVE.match(line)
        literal = _LITERAL.match(line) if not directive else None
        if not directive and not literal:
            i += 1
            continue
        match = directive or literal
        assert match is not None
        indent = len(match.group(1))
        language = directive.group(2) if directive else "python"
        start = i + 1
        i += 1
        # Directive options, then the indented body.
        source = None
        while i < len(lines) and re.match(r"\s+:[\w-]+:", lines[i]) and directive:
            caption = re.match(r"\s+:caption:\s+(examples/\S+)\s*$", lines[i])
            if caption:
                source = caption.group(1)
            i += 1
        body: list[str] = []
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
            body.append(lines[i])
            i += 1
        code = textwrap.dedent("\n".join(body)).strip("\n")
        if code:
            yield Block(f"{where}:{start}", language or "python", code + "\n", source)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def docstrings() -> Iterator[tuple[str, str]]:
    """Every docstring in syncws/, with where it is."""
    for path in sorted((ROOT / "syncws").rglob("*.py")):
        tree = ast.parse(path.read_text())
        nodes = [tree, *ast.walk(tree)]
        for node in nodes:
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                docstring = ast.get_docstring(node)
                if docstring:
                    line = getattr(node, "lineno", 1)
                    yield f"{path.relative_to(ROOT)}:{line}", docstring


def all_blocks() -> list[Block]:
    blocks = []
    for page in PAGES:
        blocks.extend(blocks_in(page.read_text(), str(page.relative_to(ROOT))))
    seen = set()
    for where, docstring in docstrings():
        if docstring in seen:  # the module docstring appears twice in ast.walk
            continue
        seen.add(docstring)
        blocks.extend(blocks_in(docstring, where))
    readme = (ROOT / "README.md").read_text()
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", readme, re.MULTILINE | re.DOTALL):
        line = readme[: match.start()].count("\n") + 1
        blocks.append(Block(f"README.md:{line}", match.group(1) or "text", match.group(2)))
    return blocks


BLOCKS = all_blocks()
CHECKED_LANGUAGES = {"python", "sh", "pycon", "toml"}


def test_code_blocks_are_found() -> None:
    languages = {block.language for block in BLOCKS}
    assert {"python", "sh"} <= languages
    assert len([b for b in BLOCKS if b.language == "python"]) >= 20


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.where)
def test_code_block(block: Block) -> None:
    assert block.language in CHECKED_LANGUAGES, (
        f"{block.where}: no check for {block.language!r} blocks: include a file of "
        "examples/ instead, or teach tests/test_docs.py to check it"
    )
    if block.source is not None:
        path = ROOT / block.source
        assert path.exists(), f"{block.where}: {block.source} doesn't exist"
        assert block.code in path.read_text(), (
            f"{block.where}: the block differs from {block.source}: copy it again"
        )
    if block.language == "python":
        check_python(block)
    elif block.language == "sh":
        check_shell(block)
    elif block.language == "toml":
        tomllib.loads(block.code)
    # pycon: run by test_doctests


# -- Python: it compiles, and the syncws names it uses exist ------------------------------


def check_python(block: Block) -> None:
    try:
        tree = ast.parse(block.code, block.where)
    except SyntaxError as exc:
        pytest.fail(f"{block.where}: {exc}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "syncws":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or _is_module(
                        f"{node.module}.{alias.name}"
                    ), f"{block.where}: {node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "syncws":
                    importlib.import_module(alias.name)
        elif isinstance(node, ast.Attribute):
            check_attribute(node, block.where)


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def _instance_attributes(cls: type) -> set[str]:
    """Names set as ``self.name = ...`` anywhere in ``cls`` and its bases, plus the class's."""
    names = set(dir(cls))
    for klass in cls.__mro__:
        if not klass.__module__.startswith("syncws"):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
    return names


@functools.cache
def _conventional_names() -> dict[str, set[str]]:
    """What the docs call their objects, and the public attributes such an object has."""
    connection = _instance_attributes(syncws.ServerConnection) | _instance_attributes(
        syncws.ClientConnection
    )
    server = _instance_attributes(syncws.Server) | _instance_attributes(RunningServer)
    return {
        "connection": connection,
        "ws": connection,
        "websocket": connection,
        "client": connection,
        "server": server,
        "hub": _instance_attributes(syncws.Hub),
        "backend": _instance_attributes(syncws.RedisBackend),
        "app": set(),  # a Flask app or a WebSocketApp: not checked
    }


def check_attribute(node: ast.Attribute, where: str) -> None:
    parts = _dotted(node)
    if parts is None:
        return
    root, *rest = parts
    if root == "syncws":
        obj: object = syncws
        for i, name in enumerate(rest):
            if not hasattr(obj, name) and _is_module(".".join(parts[: i + 2])):
                obj = importlib.import_module(".".join(parts[: i + 2]))
                continue
            assert hasattr(obj, name), f"{where}: {'.'.join(parts[: i + 2])} doesn't exist"
            obj = getattr(obj, name)
    elif len(rest) == 1 and _conventional_names().get(root):
        known = _conventional_names()[root]
        assert rest[0] in known, f"{where}: a {root} has no attribute {rest[0]!r}"


# -- shell: it parses, and the files and extras it names exist ----------------------------


def check_shell(block: Block) -> None:
    bash = shutil.which("bash")
    if bash is not None:
        result = subprocess.run(
            [bash, "-n"], input=block.code, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{block.where}: {result.stderr}"
    for path in re.findall(r"\b((?:examples|bench|docs|tests)/[\w./-]+\.\w+)", block.code):
        assert (ROOT / path).exists(), f"{block.where}: {path} doesn't exist"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for group in re.findall(r"(?:syncws|\.)\[([\w,]+)\]", block.code):
        for extra in group.split(","):
            assert extra in extras, f"{block.where}: there is no extra {extra!r}"


# -- >>> sessions run ----------------------------------------------------------------------


PAGES_WITH_DOCTESTS = [page for page in PAGES if re.search(r"^\s*>>> ", page.read_text(), re.M)]


@pytest.mark.parametrize("page", PAGES_WITH_DOCTESTS, ids=lambda page: page.name)
def test_doctests(page: Path) -> None:
    # In a process of its own: the examples start servers and threads.
    result = subprocess.run(
        [sys.executable, "-m", "doctest", "-o", "ELLIPSIS", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
