"""``projcache refresh``: bring the cache up to date with the files on disk."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer

from .errors import EXIT_FINDINGS, EXIT_OK, cli_errors
from .output import emit_json, inert, is_terminal
from .state import open_cache, state_of

if TYPE_CHECKING:
    from projcache.models import RefreshReport

__all__ = ["register"]


def _summary(report: RefreshReport) -> str:
    return (
        f"refreshed {report.collections_checked} collection(s), "
        f"{report.projects_checked} project(s): {report.sources_checked} sources checked, "
        f"{report.sources_changed} re-read; artifacts +{report.artifacts_written} "
        f"-{report.artifacts_removed}, deployments +{report.deployments_written} "
        f"-{report.deployments_removed} in {report.duration_seconds:.2f}s"
    )


def _print_report(report: RefreshReport, as_json: bool) -> None:
    if as_json:
        data = report.model_dump(mode="json")
        data["ok"] = report.ok
        emit_json(data)
        return
    typer.echo(_summary(report))
    for error in report.errors:
        typer.echo(f"error: {inert(error.message)}", err=True)


def _run_with_progress(run: Callable[[Any], RefreshReport]) -> RefreshReport:
    if not is_terminal(sys.stderr):
        return run(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("refreshing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}", style="dim", markup=False),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=inert(Path(label).name))

        return run(progress)


def refresh(
    ctx: typer.Context,
    project: Optional[list[Path]] = typer.Option(
        None, "--project", "-p", help="Refresh this project folder (repeatable)."
    ),
    collection: Optional[list[Path]] = typer.Option(
        None, "--collection", "-c", help="Refresh this collection folder (repeatable)."
    ),
    full: bool = typer.Option(False, "--full", help="Re-read every file, changed or not."),
    stale: bool = typer.Option(
        False, "--stale", help="Only collections and projects that are stale."
    ),
    watch: bool = typer.Option(
        False, "--watch", help="Keep refreshing on file changes until interrupted (Ctrl-C)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Read collections and projects from disk; only changed files are re-read.

    Without --project/--collection: the configured roots plus everything
    already cached.  Exit 1 when some file could not be read (its last good
    data is kept).
    """
    state = state_of(ctx)
    projects = list(project) if project else None
    collections = list(collection) if collection else None
    with cli_errors(state.debug):
        from projcache.refresh import check_folders

        # Before opening: a mistyped folder must not leave an empty cache behind.
        check_folders(collections, projects)
    with cli_errors(state.debug), open_cache(state) as cache:

        def run(progress: Any) -> RefreshReport:
            return cache.refresh(
                collections=collections,
                projects=projects,
                full=full,
                stale_only=stale,
                progress=progress,
            )

        report = _run_with_progress(run)
        _print_report(report, as_json)
        if watch:
            from projcache.watch import watch_and_refresh

            typer.echo("watching for changes; press Ctrl-C to stop", err=True)
            try:
                watch_and_refresh(
                    cache,
                    collections=collections,
                    projects=projects,
                    on_report=lambda r: _print_report(r, as_json),
                )
            except KeyboardInterrupt:
                typer.echo("stopped", err=True)
            raise typer.Exit(EXIT_OK)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FINDINGS)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("refresh")(refresh)
