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
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cache import ProjectCache
    from .config import Settings

__all__ = ["open_direct"]

logger = logging.getLogger(__name__)


def open_direct(settings: Settings, reason: str) -> ProjectCache:
    """Read the configured sources into a throwaway store and return a handle on it.

    The folders the cache remembers having been refreshed from (its side file
    ``roots.json``, see :mod:`projcache.roots`) are read too.
    """
    from .cache import ProjectCache

    logger.warning("%s; answering straight from the source files (slower)", reason)
    scratch = Path(tempfile.mkdtemp(prefix="projcache-direct-"))
    private = dataclasses.replace(
        settings, cache_dir=scratch, enabled=True, durability="none", auto_repair=False
    )
    cache = ProjectCache.open(settings=private)
    cache._direct_reason = reason
    cache._scratch = scratch
    try:
        cache.refresh(full=True)
        collections, projects = _remembered(settings.cache_dir)
        if collections or projects:
            # The folders the cache was refreshed from by name, from the side file that
            # survives damage to data.mdb: the answer covers what the cache held.
            cache.refresh(collections=collections, projects=projects, full=True)
    except BaseException:
        cache.close()
        raise
    return cache


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
