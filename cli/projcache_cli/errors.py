"""Turn exceptions into one-line messages and documented exit codes; one style for warnings."""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import click
import typer
from typer.core import TyperGroup

from projcache.errors import ProjcacheError, StorageError

from .output import CliLogFormatter, CliLogHandler, inert

if TYPE_CHECKING:
    from .state import CliState

__all__ = [
    "EXIT_DEGRADED",
    "EXIT_FINDINGS",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliGroup",
    "CliLogFormatter",
    "CliLogHandler",
    "cli_errors",
    "hint_for",
    "warn",
]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
# The answer came from the source files because the cache could not be used: the output is
# complete for the folders read, but the cache itself needs attention.  Far from the error
# classes' codes (3..19) so that a script can tell "answered, degraded" from "failed".
EXIT_DEGRADED = 20

logger = logging.getLogger(__name__)


class CliGroup(TyperGroup):
    """A command group whose unknown-command error suggests the near name exactly once.

    Click 8.2+ already appends "Did you mean …?" and Typer appends its own: the
    user saw the sentence twice.  Older Click adds none, so it is added here then.
    """

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[Optional[str], Optional[click.Command], list[str]]:
        """Resolve ``args[0]`` to a command; an unknown one names the nearest command once."""
        try:
            return click.Group.resolve_command(self, ctx, args)
        except click.UsageError as exc:
            # Click >= 8.4 keeps its own suggestion apart (NoSuchCommand.possibilities).
            if not getattr(exc, "possibilities", None) and args:
                near = difflib.get_close_matches(args[0], list(self.commands))
                if near:
                    suggestion = exc.message.rstrip(".") + f". Did you mean {near[0]!r}?"
                    exc.message = suggestion  # type: ignore[misc]
            raise


def warn(message: str) -> None:
    """Print ``warning: <message>`` on stderr (the one warning style of the CLI)."""
    typer.echo(f"warning: {inert(message)}", err=True)


def hint_for(exc: ProjcacheError, cache_dir: Optional[Path]) -> Optional[str]:
    """A hint that fits the situation better than the class's generic one, if any."""
    if isinstance(exc, StorageError) and cache_dir is not None:
        target = Path(os.path.expanduser(os.fspath(cache_dir)))
        if os.path.lexists(target) and not target.is_dir():
            return (
                f"{cache_dir} is a file, not a folder: point --cache-dir (or PROJCACHE_DIR) "
                "at a folder, which is created if missing."
            )
        # A file where a parent folder should be: the folder cannot be created under it.
        for parent in target.parents:
            if os.path.lexists(parent) and not parent.is_dir():
                return (
                    f"{parent} is a file, so {cache_dir} cannot be created under it: point "
                    "--cache-dir (or PROJCACHE_DIR) at a folder elsewhere."
                )
    return None


@contextlib.contextmanager
def cli_errors(debug: Union[bool, CliState], cache_dir: Optional[Path] = None) -> Iterator[None]:
    """Print ``error: <message>`` (and the hint) on stderr and exit with the error's code.

    ``debug`` is the ``--debug`` flag, or the whole :class:`CliState`.  With
    debug the traceback is printed too.  The cache directory (the global option)
    lets the hint name the actual mistake, e.g. a file given as the folder.
    """
    if not isinstance(debug, bool):
        state = debug
        debug, cache_dir = state.debug, state.cache_dir
    try:
        yield
    except ProjcacheError as exc:
        if debug:
            logger.exception("command failed")
        # typer.echo flushes; a bare print() to a captured stderr may never show.
        typer.echo(f"error: {inert(exc)}", err=True)  # messages may quote source text
        hint = hint_for(exc, cache_dir) or exc.hint
        if hint:
            typer.echo(f"hint: {inert(hint)}", err=True)
        raise typer.Exit(code=exc.exit_code) from None
