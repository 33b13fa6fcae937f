"""``projcache show`` (alias ``stats``): where the cache is, how big, how fresh, what failed."""

from __future__ import annotations

import typer

from .errors import cli_errors
from .fastargs import default, flags
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
        document = cache.status_view()  # what GET /api/v1/cache/status sends, too
    if as_json:
        emit_json(mark_degraded(document, cache))
        exit_if_degraded(cache)
        return
    counts = document["counts"]
    rate = document["hit_rate"]
    errors = document["errors"]
    lines = [
        f"cache:        {document['cache_dir']}"
        + (" (a throwaway copy read from the sources)" if cache.is_direct else ""),
        f"size:         {human_bytes(document['file_bytes'])} on disk, "
        f"{human_bytes(document['used_bytes'])} used, map {human_bytes(document['map_size'])}",
        f"schema:       {document['schema_version']}",
        f"collections:  {counts.get('collections', 0)} ({document['stale_collections']} stale)",
        f"projects:     {counts.get('projects', 0)} ({document['stale_projects']} stale)",
        f"artifacts:    {counts.get('artifacts', 0)}",
        f"deployments:  {counts.get('deployments', 0)}",
        f"refreshed:    newest {ago(document['newest_refresh'])}, "
        f"oldest {ago(document['oldest_refresh'])} (ttl {document['ttl_seconds']:.0f}s)",
        f"hit rate:     {'n/a' if rate is None else f'{rate:.0%}'} "
        f"({document['hits']} hits, {document['misses']} misses)",
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
