"""``projcache show`` (alias ``stats``): where the cache is, how big, how fresh, what failed."""

from __future__ import annotations

import typer

from .errors import cli_errors
from .fastpath import default, flags, show_document, source_errors
from .output import ago, emit_json, human_bytes, inert
from .state import exit_if_degraded, mark_degraded, open_cache, state_of

__all__ = ["register"]


def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(
        default("show", "as_json"), *flags("show", "as_json"), help="Print as JSON."
    ),
) -> None:
    """Location, size on disk, counts, freshness, recorded errors and hit rate."""
    state = state_of(ctx)
    with cli_errors(state), open_cache(state, readonly=True, fallback=True) as cache:
        if as_json:
            document = show_document(cache)
        stats = cache.stats()
        ttl = cache.settings.ttl_seconds
        collections = cache.list_collections()
        projects = cache.list_projects()
    errors = source_errors(collections, projects)
    if as_json:
        emit_json(mark_degraded(document, cache))
        exit_if_degraded(cache)
        return
    counts = stats.counts
    rate = "n/a" if stats.hit_rate is None else f"{stats.hit_rate:.0%}"
    stale_collections = sum(1 for c in collections if c.is_stale(ttl))
    lines = [
        f"cache:        {stats.path}"
        + (" (a throwaway copy read from the sources)" if cache.is_direct else ""),
        f"size:         {human_bytes(stats.file_bytes)} on disk, "
        f"{human_bytes(stats.used_bytes)} used, map {human_bytes(stats.map_size)}",
        f"schema:       {stats.schema_version}",
        f"collections:  {counts.get('collections', 0)} ({stale_collections} stale)",
        f"projects:     {counts.get('projects', 0)} ({stats.stale_projects} stale)",
        f"artifacts:    {counts.get('artifacts', 0)}",
        f"deployments:  {counts.get('deployments', 0)}",
        f"refreshed:    newest {ago(stats.newest_refresh)}, oldest {ago(stats.oldest_refresh)}"
        f" (ttl {ttl:.0f}s)",
        f"hit rate:     {rate} ({stats.hits} hits, {stats.misses} misses)",
        f"errors:       {len(errors)}",
    ]
    typer.echo("\n".join(lines))
    for error in errors:
        typer.echo(f"  {error['kind']} {inert(error['name'])}: {inert(error['message'])}")
    exit_if_degraded(cache)


def register(app: typer.Typer) -> None:
    """Add ``show`` and its alias ``stats`` to ``app``."""
    app.command("show")(show)
    app.command("stats", help="Same as `show`.")(show)
