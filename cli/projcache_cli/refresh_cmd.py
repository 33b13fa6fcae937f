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
    from projcache import RefreshReport

__all__ = ["register"]


def _changes(
    report: RefreshReport, before: dict[str, int], after: dict[str, int]
) -> dict[str, int]:
    """Added and updated counts, from the report and the record counts before and after.

    The report counts records *written*; a written record that did not exist
    before was added: added = (after - before) + removed.
    """
    out: dict[str, int] = {}
    for what in ("artifacts", "deployments"):
        written = getattr(report, f"{what}_written")
        removed = getattr(report, f"{what}_removed")
        added = min(written, max(0, after.get(what, 0) - before.get(what, 0) + removed))
        out[f"{what}_added"] = added
        out[f"{what}_updated"] = written - added
    return out


def _summary(report: RefreshReport, changes: dict[str, int]) -> str:
    def part(what: str) -> str:
        return (
            f"{what} {changes[what + '_added']} added, {changes[what + '_updated']} updated, "
            f"{getattr(report, what + '_removed')} removed"
        )

    return (
        f"refreshed {report.collections_checked} collection(s), "
        f"{report.projects_checked} project(s): {report.sources_checked} sources checked, "
        f"{report.sources_changed} re-read; {part('artifacts')}; {part('deployments')} "
        f"in {report.duration_seconds:.2f}s"
    )


def _print_report(report: RefreshReport, as_json: bool, changes: dict[str, int]) -> None:
    if as_json:
        data = report.model_dump(mode="json")
        data.update(changes)
        data["ok"] = report.ok
        emit_json(data)
        return
    typer.echo(_summary(report, changes))
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
        TextColumn("folders", style="dim"),
        TextColumn("{task.description}", style="dim", markup=False),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("finding the folders", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(
                task, completed=done, total=total, description=f"reading {inert(Path(label).name)}"
            )

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
    with cli_errors(state):
        from projcache import check_folders

        # Before opening: a mistyped folder must not leave an empty cache behind.
        check_folders(collections, projects)
    with cli_errors(state), open_cache(state) as cache:
        before = cache.counts()

        def run(progress: Any) -> RefreshReport:
            return cache.refresh(
                collections=collections,
                projects=projects,
                full=full,
                stale_only=stale,
                progress=progress,
            )

        report = _run_with_progress(run)
        after = cache.counts()
        _print_report(report, as_json, _changes(report, before, after))
        if watch:
            from projcache import watch_and_refresh

            typer.echo("watching for changes; press Ctrl-C to stop", err=True)
            counts = [after]

            def on_report(report: RefreshReport) -> None:
                now = cache.counts()
                _print_report(report, as_json, _changes(report, counts[0], now))
                counts[0] = now

            try:
                watch_and_refresh(
                    cache,
                    collections=collections,
                    projects=projects,
                    on_report=on_report,
                )
            except KeyboardInterrupt:
                typer.echo("stopped", err=True)
            raise typer.Exit(EXIT_OK)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FINDINGS)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("refresh")(refresh)
