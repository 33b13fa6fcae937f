"""``projcache verify``: check the cache's integrity, optionally repair it."""

from __future__ import annotations

import orjson
import typer

from .errors import EXIT_FINDINGS, EXIT_OK, cli_errors
from .state import open_cache, state_of

__all__ = ["register"]


def verify(
    ctx: typer.Context,
    repair: bool = typer.Option(
        False, "--repair", help="Rebuild derived indexes, drop bad records."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check every record and index; exit 0 when clean, 1 when problems were found."""
    state = state_of(ctx)
    with cli_errors(state.debug), open_cache(state, readonly=not repair) as cache:
        report = cache.verify(repair=repair)
    if as_json:
        data = report.model_dump(mode="json")
        data["ok"] = report.ok
        typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        checked = ", ".join(f"{name} {count}" for name, count in sorted(report.checked.items()))
        typer.echo(f"checked: {checked}")
        for finding in report.findings:
            where = f" {finding.key}" if finding.key else ""
            typer.echo(f"{finding.kind}: {finding.db}{where}: {finding.message}")
        if report.repaired:
            typer.echo(f"repaired {report.repaired} finding(s)")
        typer.echo("ok" if report.ok else f"{len(report.findings)} problem(s) found")
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FINDINGS)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("verify")(verify)
