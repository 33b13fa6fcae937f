"""The Typer application: global options and command registration."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import typer

from . import (
    init_cmd,
    maintenance_cmd,
    query_cmd,
    refresh_cmd,
    serve_cmd,
    show_cmd,
    verify_cmd,
)
from .errors import CliGroup
from .list_cmd import list_app
from .output import configure_logging
from .state import CliState

__all__ = ["app", "hoist_global_options", "main", "setup_logging"]


app = typer.Typer(
    name="projcache",
    cls=CliGroup,
    help="A persistent, memory-mapped cache of project metadata: the skills, commands, agents, "
    "hooks and MCP servers of SkillMeat collections and the projects they are deployed in.",
    no_args_is_help=True,
    add_completion=True,
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
        help="Cache directory (default: the configured dir, else the user cache dir).",
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
    """Manage the projcache cache.

    Global options may be given before or after the command
    (``projcache --cache-dir DIR show`` or ``projcache show --cache-dir DIR``).
    """
    setup_logging(debug)
    ctx.obj = CliState(cache_dir=cache_dir, debug=debug)


def setup_logging(debug: bool) -> None:
    """Send library log records to stderr in the CLI's ``warning: …`` style."""
    configure_logging(debug)


refresh_cmd.register(app)
show_cmd.register(app)
app.add_typer(list_app, name="list")
query_cmd.register(app)
maintenance_cmd.register(app)
verify_cmd.register(app)
serve_cmd.register(app)
init_cmd.register(app)

# Global options that may also follow the command: name -> whether it takes a value.
_GLOBAL_OPTIONS = {"--cache-dir": True, "--debug": False}


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Move global options given after the command to the front, where Click expects them.

    ``projcache show --cache-dir X`` becomes ``projcache --cache-dir X show``.
    Nothing after ``--`` is touched, and options before the command stay put.
    """
    args = list(argv)
    # Where the command starts: the first word that is neither an option nor a global value.
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        i += 2 if _GLOBAL_OPTIONS.get(args[i]) else 1
    if i >= len(args) or args[i] == "--":
        return args
    front, rest, hoisted = args[:i], args[i:], []
    kept: list[str] = []
    j = 0
    while j < len(rest):
        token = rest[j]
        if token == "--":
            kept.extend(rest[j:])
            break
        name = token.split("=", 1)[0]
        if name in _GLOBAL_OPTIONS:
            if _GLOBAL_OPTIONS[name] and "=" not in token and j + 1 < len(rest):
                hoisted += [token, rest[j + 1]]
                j += 2
                continue
            hoisted.append(token)
        else:
            kept.append(token)
        j += 1
    return front + hoisted + kept


def main(argv: Optional[Sequence[str]] = None, **kwargs: Any) -> None:
    """Console-script entry point."""
    app(args=hoist_global_options(sys.argv[1:] if argv is None else argv), **kwargs)
