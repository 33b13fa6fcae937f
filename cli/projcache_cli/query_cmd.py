"""``projcache get`` and ``projcache search``: the hot read paths (stored JSON, no models)."""

from __future__ import annotations

from typing import Optional

import orjson
import typer

from .errors import EXIT_USAGE, cli_errors
from .fastpath import default, flags, search_document
from .output import emit_json, emit_json_bytes, emit_table, inert
from .state import open_cache, state_of

__all__ = ["register"]


def get(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="Artifact key: <collection>/<type>/<name>."),
    as_json: bool = typer.Option(
        default("get", "as_json"), *flags("get", "as_json"), help="Print the stored JSON record."
    ),
) -> None:
    """Show one artifact by key (exit 4 when it is not cached)."""
    from projcache.errors import ArtifactNotFound

    state = state_of(ctx)
    with cli_errors(state.debug):
        with open_cache(state, readonly=True, fallback=True) as cache:
            payload = cache.get_artifact_json(key)
        if payload is None:
            raise ArtifactNotFound(f"no artifact {key!r} in the cache")
    if as_json:
        emit_json_bytes([payload], array=False)
        return
    record = orjson.loads(payload)
    # Every value comes from a source: printed inert (escapes, never control sequences).
    for field in ("key", "type", "title", "description", "version", "resolved_version"):
        if record.get(field):
            typer.echo(f"{field + ':':<18}{inert(record[field])}")
    if record.get("tags"):
        typer.echo(f"{'tags:':<18}{inert(', '.join(record['tags']))}")
    for field in ("path", "upstream", "content_hash", "updated_at"):
        if record.get(field):
            typer.echo(f"{field + ':':<18}{inert(record[field])}")
    typer.echo(f"{'managed:':<18}{'yes' if record.get('managed') else 'no'}")


def search(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="Words to find; the last may be a prefix."),
    type_: Optional[str] = typer.Option(
        default("search", "type_"), *flags("search", "type_"), help="Only this artifact type."
    ),
    project: Optional[str] = typer.Option(
        default("search", "project"),
        *flags("search", "project"),
        help="Only artifacts deployed in this project (id, name, path).",
    ),
    collection: Optional[str] = typer.Option(
        default("search", "collection"),
        *flags("search", "collection"),
        help="Only this collection.",
    ),
    tag: Optional[str] = typer.Option(
        default("search", "tag"), *flags("search", "tag"), help="Only artifacts with this tag."
    ),
    limit: int = typer.Option(
        default("search", "limit"), *flags("search", "limit"), min=0, help="At most this many hits."
    ),
    offset: int = typer.Option(
        default("search", "offset"),
        *flags("search", "offset"),
        min=0,
        help="Skip this many hits first.",
    ),
    as_json: bool = typer.Option(
        default("search", "as_json"), *flags("search", "as_json"), help="Print hits as JSON."
    ),
) -> None:
    """Find artifacts by words in their name, tags, title and description."""
    state = state_of(ctx)
    if not query.strip():
        typer.echo("error: the query is empty", err=True)
        raise typer.Exit(EXIT_USAGE)
    with cli_errors(state.debug), open_cache(state, readonly=True, fallback=True) as cache:
        page, total = cache.search_json(
            query, type_, project, limit, offset, collection=collection, tag=tag
        )
    if as_json:
        emit_json(search_document(query, total, offset, page))
        return
    if total == 0:
        typer.echo(f"no artifacts match {query!r}")
        return
    rows = []
    for key, score, payload in page:
        record = orjson.loads(payload)
        rows.append((key, record["type"], f"{score:g}", record.get("description", "")[:70]))
    if rows:
        emit_table(("key", "type", "score", "description"), rows)
    typer.echo(f"{len(page)} of {total} match(es)")


def register(app: typer.Typer) -> None:
    """Add ``get`` and ``search`` to ``app``."""
    app.command("get")(get)
    app.command("search")(search)
