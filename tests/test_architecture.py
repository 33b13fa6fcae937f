"""The import graph of ``lib/projcache`` and ``cli/projcache_cli`` against the documented layers.

``docs/cache/architecture.md`` has a module map: every module, its one job and
its layer.  This test reads that table (so the page and the code cannot drift)
and parses every module's imports, the lazy ones inside functions included;
only imports under ``if TYPE_CHECKING:`` are left out (they never run).  It
asserts that ``lib/projcache`` has no import cycles and that no module imports one of a
higher layer ("imports flow downwards only").  Importing ``pkg.sub`` also runs
``pkg/__init__.py``; that implicit edge is not counted (a package's
``__init__`` re-exports its own modules by design).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "projcache": ROOT / "lib" / "projcache",
    "projcache_cli": ROOT / "cli" / "projcache_cli",
}
MAP_PAGE = ROOT / "docs" / "cache" / "architecture.md"


def _modules() -> dict[str, Path]:
    """Every module of the two packages by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.stmt]:
    """Every import statement under ``node``, lazy ones too, except under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _import_nodes(child)


def _imports(name: str, path: Path) -> set[str]:
    """The modules of the two packages that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            assert isinstance(node, ast.ImportFrom)
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            subs = [f"{module}.{alias.name}" for alias in node.names]
            candidates = [module, *subs]
            # ``from . import codec``: the submodule, not (only) the package.
            if all(sub in MODULES for sub in subs):
                candidates = subs
        for candidate in candidates:
            # ``import projcache.x.y`` runs x.y: take the longest known module name.
            while candidate and candidate not in MODULES:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _module_map() -> dict[str, int]:
    """The module map of architecture.md: dotted module name -> layer number."""
    text = MAP_PAGE.read_text(encoding="utf-8")
    section = text.split("\n## Module map\n", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {}
    for line in section.splitlines():
        row = re.match(r"\|\s*`([\w/]+\.py)`\s*\|\s*(\d+)\b", line)
        if row is None:
            continue
        parts = Path(row.group(1)).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        assert name not in layers, f"{row.group(1)} is listed twice in the module map"
        layers[name] = int(row.group(2))
    return layers


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_parser_sees_lazy_imports_and_skips_type_checking_ones() -> None:
    """The graph would be worthless if function-level imports were missed."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from . import storage\n"
        "def f():\n    from .codec import frame\n    import projcache.errors\n"
    )
    nodes = list(_import_nodes(ast.parse(source)))
    names = sorted(n.module or "" for n in nodes if isinstance(n, ast.ImportFrom))
    assert names == ["codec", "typing"]
    assert any(isinstance(n, ast.Import) for n in nodes)
    # The real graph holds a lazy import: the write methods load mutations when called.
    assert "projcache.mutations" in GRAPH["projcache.writes"]


def test_every_module_is_in_the_module_map() -> None:
    """architecture.md lists every module of both packages, and no module that is gone."""
    layers = _module_map()
    assert sorted(set(MODULES) - set(layers)) == [], "modules missing from the module map"
    assert sorted(set(layers) - set(MODULES)) == [], "the module map lists modules that are gone"


def test_there_are_no_import_cycles_in_the_library() -> None:
    """No module of ``lib/projcache`` imports, directly or through others, one that imports it."""
    library = {
        name: {t for t in targets if t.split(".")[0] == "projcache"}
        for name, targets in GRAPH.items()
        if name.split(".")[0] == "projcache"
    }
    assert _cycles(library) == []


def test_imports_flow_downwards_only() -> None:
    """No module imports a module of a higher layer than its own."""
    layers = _module_map()
    upward = sorted(
        f"{name} (layer {layers[name]}) -> {target} (layer {layers[target]})"
        for name, targets in GRAPH.items()
        for target in targets
        if name in layers and target in layers and layers[target] > layers[name]
    )
    assert upward == []


@pytest.mark.parametrize("name", ["projcache.recovery", "projcache.direct"])
def test_recovery_and_direct_mode_do_not_import_the_facade(name: str) -> None:
    """The facade hands them what they need; they never reach back into it."""
    assert "projcache.cache" not in GRAPH[name]


#: Issue 16: "no module over ~400 lines without a reason written at its top".
LONG_MODULE = 400


def test_a_long_module_says_why_at_its_top() -> None:
    """Every module over 400 lines explains in its docstring why it is one module."""
    unexplained = []
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= LONG_MODULE:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if "400 lines" not in docstring:
            unexplained.append(f"{name} ({text.count(chr(10))} lines)")
    assert unexplained == []
