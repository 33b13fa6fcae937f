"""The Typer application: global options and command registration."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from . import maintenance_cmd, query_cmd, refresh_cmd, serve_cmd, show_cmd, verify_cmd
from .list_cmd import list_app
from .output import InertFormatter
from .state import CliState

__all__ = ["app", "main"]

app = typer.Typer(
    name="projcache",
    help="A persistent, memory-mapped cache of project metadata (skills, commands, agents).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        import projcache

        typer.echo(f"projcache {projcache.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    cache_dir: Optional[Path] = typer.Option(
        None,
        "--cache-dir",
        envvar="PROJCACHE_DIR",
        help="Cache directory (default: $PROJCACHE_DIR, else the user cache dir).",
    ),
    debug: bool = typer.Option(False, "--debug", help="Log debug messages and show tracebacks."),
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Manage the projcache cache."""
    handler = logging.StreamHandler()
    handler.setFormatter(InertFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])
    if not debug:
        # These commands print each bad source or finding themselves; the warning would repeat it.
        for name in ("sources.tracker", "verify", "direct", "recovery"):
            logging.getLogger(f"projcache.{name}").setLevel(logging.ERROR)
    ctx.obj = CliState(cache_dir=cache_dir, debug=debug)


refresh_cmd.register(app)
show_cmd.register(app)
app.add_typer(list_app, name="list")
query_cmd.register(app)
maintenance_cmd.register(app)
verify_cmd.register(app)
serve_cmd.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
