"""``projcache verify``: check the cache's integrity, optionally repair it."""

from __future__ import annotations

import sys
from typing import Any, Callable

import typer

from .errors import EXIT_FINDINGS, EXIT_OK, cli_errors
from .output import emit_json, inert, is_terminal
from .state import open_cache, state_of

__all__ = ["register"]


def _with_progress(run: Callable[[Any], Any], label: str) -> Any:
    """Run ``run(progress)`` under a progress bar on stderr when it is a terminal."""
    if not is_terminal(sys.stderr):
        return run(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return run(progress)


def verify(
    ctx: typer.Context,
    repair: bool = typer.Option(
        False, "--repair", help="Rebuild derived indexes, drop bad records."
    ),
    sources: bool = typer.Option(
        False, "--sources", help="Also compare every source fingerprint with the files now."
    ),
    deep: bool = typer.Option(
        False,
        "--deep",
        help="Also check the file's pages, validate every record and recompute every index.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check every stored value's CRC and the cache's structure; exit 0 when clean, 1 when not.

    With --deep: also walk the file's pages, validate every record and
    recompute every index (about 20 times slower). With --repair (always
    deep): rebuild indexes, drop bad records and re-read their sources; a
    damaged environment is moved aside (kept) and rebuilt.
    """
    from projcache import ProjectCache
    from projcache.errors import CacheCorruptError, CorruptRecordError

    state = state_of(ctx)
    with cli_errors(state):
        try:
            with open_cache(state, readonly=not repair) as cache:
                full = deep or repair or sources
                report = _with_progress(
                    lambda progress: cache.verify(
                        repair=repair, sources=sources, deep=deep, progress=progress
                    ),
                    "verifying (deep)" if full else "verifying",
                )
        except CacheCorruptError as exc:
            if not repair or isinstance(exc, CorruptRecordError):
                raise
            report = ProjectCache.repair_unopenable(state.cache_dir)
    if as_json:
        data = report.model_dump(mode="json")
        data["ok"] = report.ok
        emit_json(data)
    else:
        checked = ", ".join(f"{name} {count}" for name, count in sorted(report.checked.items()))
        typer.echo(
            f"checked: {checked}"
            if checked
            else "checked: the file only (records are not read from a damaged file)"
        )
        for finding in report.findings:
            where = f" {finding.key}" if finding.key else ""
            typer.echo(f"{finding.kind}: {finding.db}{inert(where)}: {inert(finding.message)}")
        if report.repaired:
            typer.echo(f"repaired {report.repaired} finding(s)")
        if report.moved_to:
            kept, lost = sum(report.salvaged.values()), sum(report.lost.values())
            typer.echo(f"damaged files kept in {report.moved_to}")
            if report.lost_complete:
                typer.echo(f"carried over {kept} record(s), lost {lost}")
            else:
                typer.echo(
                    f"carried over {kept} record(s); the damaged file could not be read to the "
                    f"end, so at least {lost} were lost"
                )
            for problem in report.problems:
                typer.echo(f"salvage: {inert(problem)}")
        typer.echo("ok" if report.ok else f"{len(report.findings)} problem(s) found")
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FINDINGS)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("verify")(verify)
