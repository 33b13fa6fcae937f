"""What the global options hand to every command, and how a command opens the cache."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import typer

from projcache import ProjectCache
from projcache.errors import StorageError

from .errors import EXIT_DEGRADED, hint_for, warn

__all__ = [
    "CliState",
    "degraded_reason",
    "exit_if_degraded",
    "mark_degraded",
    "open_cache",
    "state_of",
]

# The reason ProjectCache.open gives when the feature flag switched the cache off.  That is
# the configured way of working, not a cache in trouble: the answer is not "degraded".
_DISABLED = "the cache is disabled by configuration"


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
    be opened is replaced by a source-direct handle, and a warning is printed
    (with a hint when the cache itself needs attention).
    """
    cache = ProjectCache.open(state.cache_dir, readonly=readonly, fallback=fallback)
    if cache.direct_reason is not None:
        warn(f"{cache.direct_reason}; answering straight from the source files (slower)")
        if degraded_reason(cache) is not None:
            hint = hint_for(StorageError(cache.direct_reason), state.cache_dir)
            typer.echo(
                f"hint: {hint or 'Run `projcache verify` to see what is wrong with the cache.'}",
                err=True,
            )
    return cache


def degraded_reason(cache: ProjectCache) -> Optional[str]:
    """Why the answer of ``cache`` is degraded (the cache could not be used), else ``None``.

    A source-direct answer because the cache is switched off by configuration
    is the configured behaviour, not a degraded one.
    """
    reason = cache.direct_reason
    if reason is None or reason == _DISABLED:
        return None
    return reason


def mark_degraded(data: dict[str, Any], cache: ProjectCache) -> dict[str, Any]:
    """Add ``degraded: true`` and ``degraded_reason`` to a JSON object when degraded."""
    reason = degraded_reason(cache)
    if reason is not None:
        data["degraded"] = True
        data["degraded_reason"] = reason
    return data


def exit_if_degraded(cache: ProjectCache) -> None:
    """End the command with exit code 20 when its answer came from the sources instead."""
    if degraded_reason(cache) is not None:
        raise typer.Exit(EXIT_DEGRADED)
