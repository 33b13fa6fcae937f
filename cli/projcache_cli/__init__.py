"""The ``projcache`` command line: a Typer app that only talks to :class:`projcache.ProjectCache`.

The app is mountable in a host CLI: ``host_app.add_typer(projcache_cli.app, name="cache")``.
"""

from __future__ import annotations

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .root import app as app
    from .root import main as main

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the fast path (projcache_cli.fastpath) must not import typer.
    if name in __all__:
        from . import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
