"""``projcache invalidate``, ``clear`` and ``backup``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .completion import complete_collection, complete_project
from .errors import EXIT_USAGE, cli_errors
from .output import emit_json, is_terminal
from .state import open_cache, state_of

__all__ = ["register"]


def invalidate(
    ctx: typer.Context,
    project: Optional[str] = typer.Option(
        None,
        "--project",
        "-p",
        help="Only this project (id, name or path).",
        autocompletion=complete_project,
    ),
    collection: Optional[str] = typer.Option(
        None,
        "--collection",
        "-c",
        help="Only this collection (name).",
        autocompletion=complete_collection,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Mark projects and collections stale; data stays readable until the next refresh."""
    state = state_of(ctx)
    with cli_errors(state), open_cache(state) as cache:
        marked = cache.invalidate(project=project, collection=collection)
    if as_json:
        emit_json({"invalidated": marked})
    else:
        typer.echo(f"marked {marked} stale; `projcache refresh --stale` re-reads them")


def clear(
    ctx: typer.Context,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Remove every record from the cache (the next refresh rebuilds it from source)."""
    state = state_of(ctx)
    if not yes:
        if not is_terminal(sys.stdin):
            typer.echo("error: clear needs --yes when not run from a terminal", err=True)
            raise typer.Exit(EXIT_USAGE)
        if not typer.confirm("Remove every record from the cache?", default=False):
            typer.echo("cancelled")
            raise typer.Exit(EXIT_USAGE)
    with cli_errors(state), open_cache(state) as cache:
        cache.clear()
        where = cache.path
    typer.echo(f"cleared {where}")


def backup(
    ctx: typer.Context,
    dest: Path = typer.Argument(..., help="An empty (or new) directory for the copy."),
    no_compact: bool = typer.Option(
        False, "--no-compact", help="Copy free pages too (faster, bigger)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Write a consistent copy of the cache while others keep reading and writing."""
    from projcache.errors import InvalidArgumentError

    state = state_of(ctx)
    with cli_errors(state):
        target_dir = Path(os.path.expanduser(os.fspath(dest)))
        if os.path.lexists(target_dir) and not target_dir.is_dir():
            raise InvalidArgumentError(
                f"{dest} is a file; backup writes into a folder",
                hint="Name an empty or new folder, e.g. backup-$(date +%F).",
            )
        if target_dir.is_dir() and any(target_dir.iterdir()):
            raise InvalidArgumentError(
                f"{dest} is not empty; backup writes into an empty or new folder",
                hint="Name an empty or new folder (nothing in it is overwritten or removed).",
            )
        with open_cache(state, readonly=True) as cache:
            target = cache.backup(dest, compact=not no_compact)
    size = (target / "data.mdb").stat().st_size
    if as_json:
        emit_json({"backup": str(target), "bytes": size})
    else:
        typer.echo(f"backed up to {target} ({size} bytes)")


def register(app: typer.Typer) -> None:
    """Add the commands to ``app``."""
    app.command("invalidate")(invalidate)
    app.command("clear")(clear)
    app.command("backup")(backup)
