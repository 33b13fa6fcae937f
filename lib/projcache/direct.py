"""Source-direct mode: answer from the source files when the cache cannot be used.

When the cache is switched off (``PROJCACHE_ENABLED=false`` or
``SKILLMEAT_ENABLE_CACHE=false``) or cannot be opened, ``ProjectCache.open(...,
fallback=True)`` returns a handle that reads every configured collection and
project on open into a private, throwaway store in a temporary directory,
removed on close.  Queries run through the very same code as on the cache, so
the answers are the same — only slower, since every open re-reads everything.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cache import ProjectCache
    from .config import Settings

__all__ = ["open_direct"]

logger = logging.getLogger(__name__)


def open_direct(settings: Settings, reason: str) -> ProjectCache:
    """Read the configured sources into a throwaway store and return a handle on it."""
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
    except BaseException:
        cache.close()
        raise
    return cache
