"""``projcache get`` and ``projcache search``: the hot read paths (stored JSON, no models)."""

from __future__ import annotations

from typing import Any, Optional

import orjson
import typer

from .completion import complete_artifact, complete_collection, complete_project
from .errors import EXIT_USAGE, cli_errors
from .fastargs import default, flags
from .fastpath import search_json
from .list_cmd import TYPE_HELP
from .names import display_key, project_names
from .output import emit_json_bytes, emit_table, inert
from .state import exit_if_degraded, mark_degraded_json, open_cache, state_of

__all__ = ["register"]


def get(
    ctx: typer.Context,
    key: str = typer.Argument(
        ...,
        help="The artifact: its key <collection>/<type>/<name>, its name when only one "
        "artifact has it, <type>/<name>, or <project> \u203a <type>/<name>.",
        autocompletion=complete_artifact,
    ),
    as_json: bool = typer.Option(
        default("get", "as_json"), *flags("get", "as_json"), help="Print the stored JSON record."
    ),
) -> None:
    """Show one artifact and where it is deployed (exit 4 when it is not cached)."""
    from projcache.errors import ArtifactNotFound

    from .names import resolve_artifact

    state = state_of(ctx)
    with cli_errors(state), open_cache(state, readonly=True, fallback=True) as cache:
        payload = cache.get_artifact_json(key) if key.count("/") == 2 else None
        if payload is None:
            resolved = resolve_artifact(cache, key)
            payload = cache.get_artifact_json(resolved)
        if payload is None:
            raise ArtifactNotFound(f"no artifact {key!r} in the cache")
        if as_json:
            emit_json_bytes([payload], array=False)
            exit_if_degraded(cache)
            return
        names = project_names(cache)
        # What GET /api/v1/cache/artifacts/{key} sends: the record plus its deployments.
        record = cache.artifact_view(orjson.loads(payload)["key"])
        if record is None:  # deleted since: as if never found
            raise ArtifactNotFound(f"no artifact {key!r} in the cache")
        deployments = record["deployments"]
    shown = display_key(record["key"], names)
    # Every value comes from a source: printed inert (escapes, never control sequences).
    typer.echo(f"{'key:':<18}{inert(record['key'])}")
    if shown != record["key"]:
        typer.echo(f"{'artifact:':<18}{inert(shown)}")
    for field in ("type", "title", "description", "version", "resolved_version"):
        if record.get(field):
            typer.echo(f"{field + ':':<18}{inert(record[field])}")
    if record.get("tags"):
        typer.echo(f"{'tags:':<18}{inert(', '.join(record['tags']))}")
    for field in ("path", "upstream", "content_hash", "updated_at"):
        if record.get(field):
            typer.echo(f"{field + ':':<18}{inert(record[field])}")
    typer.echo(f"{'managed:':<18}{'yes' if record.get('managed') else 'no'}")
    if not deployments:
        typer.echo(f"{'deployed:':<18}nowhere")
    for n, deployment in enumerate(deployments):
        project = names.get(deployment["project"], deployment["project"])
        where = deployment.get("artifact_path") or ""
        label = "deployed:" if n == 0 else ""
        typer.echo(f"{label:<18}{inert(project)} ({deployment['state']}) {inert(where)}".rstrip())
    exit_if_degraded(cache)


def search(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="Words to find; the last may be a prefix."),
    type_: Optional[str] = typer.Option(
        default("search", "type_"), *flags("search", "type_"), help=TYPE_HELP
    ),
    project: Optional[str] = typer.Option(
        default("search", "project"),
        *flags("search", "project"),
        help="Only artifacts deployed in this project (id, name, path).",
        autocompletion=complete_project,
    ),
    collection: Optional[str] = typer.Option(
        default("search", "collection"),
        *flags("search", "collection"),
        help="Only this collection (name).",
        autocompletion=complete_collection,
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
    options: dict[str, Any] = {"query": query, "type_": type_, "project": project}
    options.update(collection=collection, tag=tag, limit=limit, offset=offset)
    with cli_errors(state), open_cache(state, readonly=True, fallback=True) as cache:
        if as_json:  # what GET /api/v1/cache/search sends, too
            emit_json_bytes([mark_degraded_json(search_json(cache, options), cache)], array=False)
            exit_if_degraded(cache)
            return
        result = cache.search_page_json(
            query, type_, project, limit, offset, collection=collection, tag=tag
        )
        page, total = result.hits, result.total
        names = project_names(cache) if page else {}
    if total == 0 and not page:
        typer.echo(f"no artifacts match {query!r}")
        exit_if_degraded(cache)
        return
    rows = []
    for key, score, payload in page:
        record = orjson.loads(payload)
        rows.append(
            (
                display_key(key, names),
                record["type"],
                f"{score:g}",
                record.get("description") or record.get("title") or "",
            )
        )
    if rows:
        emit_table(("artifact", "type", "score", "description"), rows, flexible="description")
    if result.partial:
        typer.echo(
            f"{len(page) - result.partial} of {total} match(es) every word; "
            f"the last {result.partial} match only some"
        )
    else:
        typer.echo(f"{len(page)} of {total} match(es)")
    exit_if_degraded(cache)


def register(app: typer.Typer) -> None:
    """Add ``get`` and ``search`` to ``app``."""
    app.command("get")(get)
    app.command("search")(search)
