"""The CLI is a front end of the public API only (issue 16, DESIGN.md "Layers").

Every import in ``cli/projcache_cli/*.py``, at module level or inside a function,
names either a name of ``projcache.__all__`` or one of the public modules
``projcache.errors``, ``projcache.server`` and ``projcache.logs`` (a front end's hook
into the library's lazy loggers): no ``projcache.reads``,
``projcache.codec``... A private helper the CLI needs belongs on the facade.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import projcache

CLI = Path(__file__).resolve().parents[1] / "cli" / "projcache_cli"
PUBLIC_MODULES = {"projcache", "projcache.errors", "projcache.logs", "projcache.server"}


def _imports(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every absolute import of ``projcache`` in ``tree``."""
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):  # walks function bodies too
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "projcache":
                    found.append((node.lineno, alias.name, []))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "projcache"
        ):
            found.append((node.lineno, str(node.module), [a.name for a in node.names]))
    return found


def test_the_walk_finds_the_imports() -> None:
    """The check sees module-level and function-level imports (it is not vacuous)."""
    tree = ast.parse("from projcache import A\ndef f():\n    import projcache.reads\n")
    assert _imports(tree) == [(1, "projcache", ["A"]), (3, "projcache.reads", [])]


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_cli_imports_only_the_public_api(path: Path) -> None:
    """Each ``projcache`` import of this CLI module is public."""
    private = []
    for line, module, names in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        if module not in PUBLIC_MODULES:
            private.append(f"{path.name}:{line}: {module}")
        elif module == "projcache":
            private += [
                f"{path.name}:{line}: projcache.{name}"
                for name in names
                if name not in projcache.__all__ and f"projcache.{name}" not in PUBLIC_MODULES
            ]
    assert private == [], "the CLI imports private parts of projcache"
