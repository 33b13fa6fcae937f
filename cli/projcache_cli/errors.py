"""Turn exceptions into one-line messages and documented exit codes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import typer

from projcache.errors import ProjcacheError

from .output import inert

__all__ = ["EXIT_FINDINGS", "EXIT_OK", "EXIT_USAGE", "cli_errors"]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def cli_errors(debug: bool) -> Iterator[None]:
    """Print ``error: <message>`` (and the hint) on stderr and exit with the error's code.

    With ``debug`` the traceback is printed too.
    """
    try:
        yield
    except ProjcacheError as exc:
        if debug:
            logger.exception("command failed")
        # typer.echo flushes; a bare print() to a captured stderr may never show.
        typer.echo(f"error: {inert(exc)}", err=True)  # messages may quote source text
        if exc.hint:
            typer.echo(f"hint: {inert(exc.hint)}", err=True)
        raise typer.Exit(code=exc.exit_code) from None
