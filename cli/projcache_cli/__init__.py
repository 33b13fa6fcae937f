"""The ``projcache`` command line: a Typer app that only talks to :class:`projcache.ProjectCache`.

The app is mountable in a host CLI: ``host_app.add_typer(projcache_cli.app, name="cache")``.
"""

from __future__ import annotations

from .root import app as app
from .root import main as main

__all__ = ["app", "main"]
