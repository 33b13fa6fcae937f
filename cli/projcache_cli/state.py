"""What the global options hand to every command."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from projcache import ProjectCache

__all__ = ["CliState", "open_cache", "state_of"]


@dataclasses.dataclass(frozen=True)
class CliState:
    """Global options: the cache directory and whether to debug."""

    cache_dir: Optional[Path] = None
    debug: bool = False


def state_of(ctx: typer.Context) -> CliState:
    """Return the :class:`CliState` of the root command (also when mounted in a host app)."""
    node: Optional[typer.Context] = ctx
    while node is not None:
        if isinstance(node.obj, CliState):
            return node.obj
        node = node.parent  # type: ignore[assignment]
    return CliState()


def open_cache(state: CliState, readonly: bool = False, fallback: bool = False) -> ProjectCache:
    """Open the cache the global options name.

    With ``fallback`` (read commands), a cache that is switched off or cannot
    be opened is replaced by a source-direct handle, and a warning is printed.
    """
    cache = ProjectCache.open(state.cache_dir, readonly=readonly, fallback=fallback)
    if cache.direct is not None:
        typer.echo(
            f"warning: {cache.direct}; answering straight from the source files (slower)",
            err=True,
        )
    return cache
