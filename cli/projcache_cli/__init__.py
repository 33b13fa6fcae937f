"""The ``projcache`` command line: a Typer app that only talks to :class:`projcache.ProjectCache`.

The app is mountable in a host CLI: ``host_app.add_typer(projcache_cli.app, name="cache")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .root import app as app
    from .root import main as main

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the fast path (projcache_cli.fastpath) must not import typer.
    if name in __all__:
        from . import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
