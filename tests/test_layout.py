"""The code's shape holds: no import cycle between the project's modules, no oversized file or
class, and the sidecar's module map (docs/sidecar-internals.md) lists exactly its files.

Generic over the project's packages. Every import in a module counts, function-level and
``TYPE_CHECKING`` ones included: ``import a.b`` is an edge to ``a.b``; ``from a import b`` to
``a.b`` when that is a module, else to ``a`` (its ``__init__``). A cycle is a strongly connected
group of two or more modules. Sizes: no file over 500 lines and no class over 400 lines,
tests and migrations aside (docs/sidecar-internals.md and docs/webapp.md say why).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sidecar", "orders", "ordersite")
MAX_FILE_LINES = 500
MAX_CLASS_LINES = 400
# A package's module map: the doc and its section whose table lists the package's files.
MODULE_MAPS = {
    "sidecar": ROOT / "docs" / "sidecar-internals.md",
    "orders": ROOT / "docs" / "webapp.md",
}


@cache
def modules() -> dict[str, Path]:
    """Every project module by dotted name (a package by its ``__init__``)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports, anywhere in its body."""
    known = modules()
    is_package = path.name == "__init__.py"
    edges: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target:
                    edges.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".")
                drop = node.level - 1 if is_package else node.level
                anchor = anchor[: len(anchor) - drop]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in known:
                    edges.add(submodule)
                elif base in known:
                    edges.add(base)
    edges.discard(name)
    return edges


@cache
def import_graph() -> dict[str, frozenset[str]]:
    return {name: frozenset(_imports(name, path)) for name, path in modules().items()}


@cache
def cycles() -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan's algorithm)."""
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _sized(package: str) -> list[tuple[str, Path]]:
    """The package's modules that the size limits apply to (not tests, not migrations)."""
    return [
        (name, path)
        for name, path in modules().items()
        if _in_package(name, package)
        and not {"tests", "migrations"} & set(path.relative_to(ROOT).parts)
    ]


def test_the_import_graph_sees_function_level_and_relative_imports() -> None:
    # The checker itself: the sidecar's server imports its engine at module level, and the
    # engine's roles import their shared state relatively or absolutely.
    graph = import_graph()
    assert "sidecar.engine.core" in graph["sidecar.server"]
    assert "sidecar.engine.state" in graph["sidecar.engine.turns"]
    assert "sidecar.storage.sql" in graph["sidecar.storage.store"]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package: str) -> None:
    found = [group for group in cycles() if any(_in_package(m, package) for m in group)]
    assert found == [], "modules that import each other (directly or round a circle): " + "; ".join(
        " <-> ".join(group) for group in found
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_no_file_over_500_lines(package: str) -> None:
    too_long = {
        name: lines
        for name, path in _sized(package)
        if (lines := len(path.read_text("utf-8").splitlines())) > MAX_FILE_LINES
    }
    assert too_long == {}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_class_over_400_lines(package: str) -> None:
    too_long = {}
    for name, path in _sized(package):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    too_long[f"{name}.{node.name}"] = lines
    assert too_long == {}


def _mapped_files(doc: Path, package: str) -> set[str]:
    """The package's modules and schemas named in the first column of the doc's "Module map"
    table, relative to the package. A map may name them as `package/x.py` or as `x.py`, and
    may also list other packages' files, directories and templates, which are not checked."""
    text = doc.read_text("utf-8")
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)
    others = tuple(f"{name}/" for name in PACKAGES if name != package)
    return {
        name.removeprefix(f"{package}/")
        for name in named
        if name.endswith((".py", ".sql")) and not name.startswith(others)
    }


def _docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text("utf-8")).body
    return not body or (len(body) == 1 and isinstance(body[0], ast.Expr))


@pytest.mark.parametrize("package", sorted(MODULE_MAPS))
def test_the_module_map_matches_the_tree(package: str) -> None:
    # Every module and schema but tests, migrations and the subpackages' empty or
    # docstring-only __init__.py.
    base = ROOT / package
    files = {
        path.relative_to(base).as_posix()
        for path in base.rglob("*")
        if path.is_file()
        and path.suffix in (".py", ".sql")
        and not {"tests", "migrations"} & set(path.relative_to(base).parts)
        and not (path.name == "__init__.py" and path.parent != base and _docstring_only(path))
    }
    mapped = {
        name
        for name in _mapped_files(MODULE_MAPS[package], package)
        # A map may describe a subpackage's docstring (its contract); the tree skips those.
        if not (name.endswith("/__init__.py") and _docstring_only(base / name))
    }
    assert mapped == files
