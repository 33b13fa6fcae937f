"""Source-direct mode: answer from the source files when the cache cannot be used.

When the cache is switched off (``PROJCACHE_ENABLED=false`` or
``SKILLMEAT_ENABLE_CACHE=false``) or cannot be opened, ``ProjectCache.open(...,
fallback=True)`` returns a handle that reads every configured collection and
project on open, and every folder the cache remembers having been refreshed from
(``roots.json``), into a private, throwaway store in a temporary directory,
removed on close.  Queries run through the very same code as on the cache, so
the answers are the same — only slower, since every open re-reads everything.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["DirectStore"]

logger = logging.getLogger(__name__)


class DirectStore:
    """The throwaway store behind a source-direct handle: its folder, settings and reason.

    The facade (:meth:`ProjectCache.open <projcache.cache.ProjectCache.open>` with
    ``fallback``) makes one, opens a cache on :attr:`settings`, calls :meth:`fill`
    with that cache's ``refresh`` and :meth:`remove` on close; this module never
    imports the facade.

    Attributes:
        reason: why the handle reads straight from the source files.
        scratch: the temporary folder holding the store.
        settings: the caller's settings pointed at ``scratch`` (durability ``none``,
            no auto-repair: the store is rebuilt on every open anyway).
    """

    def __init__(self, settings: Settings, reason: str) -> None:
        logger.warning("%s; answering straight from the source files (slower)", reason)
        self.reason = reason
        self.scratch = Path(tempfile.mkdtemp(prefix="projcache-direct-"))
        self._origin = settings
        self.settings = dataclasses.replace(
            settings, cache_dir=self.scratch, enabled=True, durability="none", auto_repair=False
        )

    def fill(self, refresh: Callable[..., Any]) -> None:
        """Read the configured sources, and the folders the cache remembers, through ``refresh``.

        The folders the cache remembers having been refreshed from (its side file
        ``roots.json``, see :mod:`projcache.roots`) are read too.
        """
        refresh(full=True)
        collections, projects = _remembered(self._origin.cache_dir)
        if collections or projects:
            # The folders the cache was refreshed from by name, from the side file that
            # survives damage to data.mdb: the answer covers what the cache held.
            refresh(collections=collections, projects=projects, full=True)

    def remove(self) -> None:
        """Delete the store's folder (idempotent)."""
        shutil.rmtree(self.scratch, ignore_errors=True)


def _remembered(cache_dir: Path) -> tuple[list[str], list[str]]:
    """The collection and project folders the cache remembers that are still there.

    Read only from a cache folder of ours that no one else may write: the side
    file names folders to read, so a planted one must not steer the answer.
    """
    from .roots import read_side_file
    from .sources.discovery import is_collection, is_project

    try:
        info = os.stat(cache_dir)
    except OSError:
        return [], []
    if not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o022:
        return [], []
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        return [], []
    roots = read_side_file(cache_dir)
    return (
        [path for path in roots.collections if os.path.isdir(path) and is_collection(path)],
        [path for path in roots.projects if os.path.isdir(path) and is_project(path)],
    )
