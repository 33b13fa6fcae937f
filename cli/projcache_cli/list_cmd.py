"""``projcache list artifacts|projects|deployments``: filtered listings through the indexes."""

from __future__ import annotations

import sys
from typing import Optional

import orjson
import typer

from .completion import complete_collection, complete_project
from .errors import CliGroup, cli_errors
from .fastargs import default, flags
from .fastpath import deployment_rows, stream_artifacts, stream_deployments, write_stdout
from .names import display_key, project_names
from .output import ago, emit_json, emit_table, inert
from .state import exit_if_degraded, open_cache, state_of

__all__ = ["list_app"]

list_app = typer.Typer(
    name="list",
    cls=CliGroup,
    help="List artifacts, projects or deployments.",
    no_args_is_help=True,
)


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else values[0]


def type_help() -> str:
    """``--type``'s help, naming every artifact type."""
    from projcache import ARTIFACT_TYPES

    return f"Only this artifact type: {_choices(ARTIFACT_TYPES)}."


def state_help(what: str = "Only this deployment state") -> str:
    """``--state``'s help, naming every deployment state."""
    from projcache import DEPLOYMENT_STATES

    return f"{what}: {_choices(DEPLOYMENT_STATES)}."


TYPE_HELP = type_help()
STATE_HELP = state_help()
_PROFILE_HELP = "Only deployments to this SkillMeat deployment profile (claude_code, codex, ...)."
_A, _D = "list artifacts", "list deployments"  # their entries in the command table


@list_app.command("artifacts")
def list_artifacts(
    ctx: typer.Context,
    type_: Optional[str] = typer.Option(default(_A, "type_"), *flags(_A, "type_"), help=TYPE_HELP),
    collection: Optional[str] = typer.Option(
        default(_A, "collection"),
        *flags(_A, "collection"),
        help="Only this collection (name).",
        autocompletion=complete_collection,
    ),
    tag: Optional[str] = typer.Option(
        default(_A, "tag"), *flags(_A, "tag"), help="Only artifacts with this tag."
    ),
    project: Optional[str] = typer.Option(
        default(_A, "project"),
        *flags(_A, "project"),
        help="Only artifacts deployed in this project (id, name, path).",
        autocompletion=complete_project,
    ),
    state_: Optional[str] = typer.Option(
        default(_A, "state_"),
        *flags(_A, "state_"),
        help=state_help("Only artifacts with a deployment in this state"),
    ),
    outdated: bool = typer.Option(
        default(_A, "outdated"), *flags(_A, "outdated"), help="Same as --state outdated."
    ),
    as_json: bool = typer.Option(
        default(_A, "as_json"), *flags(_A, "as_json"), help="Print a JSON array of artifacts."
    ),
) -> None:
    """List artifacts, filtered by type, collection, tag, project and deployment state."""
    state = state_of(ctx)
    wanted_state = "outdated" if outdated else state_
    with cli_errors(state), open_cache(state, readonly=True, fallback=True) as cache:
        if as_json:  # streamed: a million records in constant memory
            stream_artifacts(cache, type_, collection, tag, project, wanted_state, write_stdout)
            sys.stdout.flush()
        else:
            payloads = list(
                cache.iter_artifacts_json(
                    type_,
                    collection,
                    tag,
                    project=project,
                    state=wanted_state,  # type: ignore[arg-type]
                )
            )
            names = project_names(cache)
    if as_json:
        exit_if_degraded(cache)
        return
    rows = []
    for payload in payloads:
        record = orjson.loads(payload)
        rows.append(
            (
                display_key(record["key"], names),
                record["type"],
                record.get("version") or record.get("resolved_version") or "",
                ", ".join(record.get("tags", [])),
                "" if record.get("managed") else "local",
                record.get("description") or record.get("title") or "",
            )
        )
    emit_table(
        ("artifact", "type", "version", "tags", "", "description"),
        rows,
        optional=("version", "tags", ""),
        flexible="description",
    )
    typer.echo(f"{len(rows)} artifact(s)")
    exit_if_degraded(cache)


@list_app.command("projects")
def list_projects(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array of projects."),
) -> None:
    """List projects with their freshness and recorded errors."""
    state = state_of(ctx)
    with cli_errors(state), open_cache(state, readonly=True, fallback=True) as cache:
        rows = cache.project_rows()  # what GET /api/v1/cache/projects pages through
    if as_json:
        emit_json(rows)
        exit_if_degraded(cache)
        return
    table = [
        (
            p["name"],
            p["id"],
            p["path"],
            p["deployments"],
            ago(p["refreshed_at"]) + (" (stale)" if p["is_stale"] else ""),
            len(p["errors"]) or "",
        )
        for p in rows
    ]
    emit_table(("name", "id", "path", "deployed", "refreshed", "errors"), table)
    for project in rows:
        for error in project["errors"]:
            typer.echo(f"error: {inert(project['name'])}: {inert(error['message'])}", err=True)
    typer.echo(f"{len(table)} project(s)")
    exit_if_degraded(cache)


@list_app.command("deployments")
def list_deployments(
    ctx: typer.Context,
    project: Optional[str] = typer.Option(
        default(_D, "project"),
        *flags(_D, "project"),
        help="Only this project (id, name or path).",
        autocompletion=complete_project,
    ),
    state_: Optional[str] = typer.Option(
        default(_D, "state_"), *flags(_D, "state_"), help=STATE_HELP
    ),
    outdated: bool = typer.Option(
        default(_D, "outdated"), *flags(_D, "outdated"), help="Same as --state outdated."
    ),
    type_: Optional[str] = typer.Option(default(_D, "type_"), *flags(_D, "type_"), help=TYPE_HELP),
    profile: Optional[str] = typer.Option(
        default(_D, "profile"), *flags(_D, "profile"), help=_PROFILE_HELP
    ),
    as_json: bool = typer.Option(
        default(_D, "as_json"), *flags(_D, "as_json"), help="Print a JSON array of deployments."
    ),
) -> None:
    """List deployments with their profile and state (current, outdated, modified, ...)."""
    state = state_of(ctx)
    options = {"project": project, "state_": state_, "outdated": outdated, "type_": type_}
    values = {**options, "profile": profile}
    if as_json:  # streamed, a chunk of rows at a time (the same bytes as the fast path)
        with cli_errors(state), open_cache(state, readonly=True, fallback=True) as cache:
            stream_deployments(cache, values, write_stdout)
            sys.stdout.flush()
        exit_if_degraded(cache)
        return
    with cli_errors(state), open_cache(state, readonly=True, fallback=True) as cache:
        records = deployment_rows(cache, values)
        names = project_names(cache)
    rows = [
        (
            names.get(r["project"], r["project"]),
            display_key(r["artifact"], names),
            r["profile"],
            r["state"],
            r.get("version") or "",
        )
        for r in records
    ]
    emit_table(
        ("project", "artifact", "profile", "state", "deployed version"),
        rows,
        optional=("deployed version",),
    )
    typer.echo(f"{len(rows)} deployment(s)")
    exit_if_degraded(cache)
