"""Keep a cache fresh on file changes (watchfiles), debounced, until stopped.

Only the folders that hold sources are watched: each collection folder and
each project's ``.claude/`` folder.  A batch of changes refreshes just the
collections and projects it touched (incrementally, so only changed files are
re-read).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from .cache import ProjectCache
    from .models import RefreshReport
    from .refresh import PathLike

__all__ = ["watch_and_refresh", "watched_folders"]

logger = logging.getLogger(__name__)


def watched_folders(
    cache: ProjectCache,
    collections: Optional[Iterable[PathLike]] = None,
    projects: Optional[Iterable[PathLike]] = None,
) -> tuple[list[str], list[str]]:
    """Return ``(collection folders, project folders)`` to watch: those given, else all cached."""
    if collections is None and projects is None:
        collection_paths = [c.path for c in cache.list_collections()]
        project_paths = [p.path for p in cache.list_projects()]
    else:
        collection_paths = [os.path.realpath(os.fspath(c)) for c in collections or ()]
        project_paths = [os.path.realpath(os.fspath(p)) for p in projects or ()]
    return sorted(set(collection_paths)), sorted(set(project_paths))


def _owner(path: str, roots: list[str]) -> Optional[str]:
    best = None
    for root in roots:
        if (path == root or path.startswith(root + os.sep)) and (
            best is None or len(root) > len(best)
        ):
            best = root
    return best


def watch_and_refresh(
    cache: ProjectCache,
    collections: Optional[Iterable[PathLike]] = None,
    projects: Optional[Iterable[PathLike]] = None,
    *,
    debounce_ms: int = 400,
    stop_event: Optional[threading.Event] = None,
    on_report: Optional[Callable[[RefreshReport], None]] = None,
    refresh: Optional[Callable[[list[str], list[str]], Optional[RefreshReport]]] = None,
) -> int:
    """Refresh what changes until ``stop_event`` is set (or Ctrl-C); return how many refreshes ran.

    ``refresh(collections, projects)`` replaces ``cache.refresh`` (the server
    passes one that takes its refresh lock); it may return ``None`` on failure.

    Raises:
        SourceFileError: there is nothing to watch.
    """
    from watchfiles import watch

    from .errors import SourceFileError

    collection_paths, project_paths = watched_folders(cache, collections, projects)
    claude_dirs = [os.path.join(p, ".claude") for p in project_paths]
    targets = [p for p in collection_paths + claude_dirs if os.path.isdir(p)]
    if not targets:
        raise SourceFileError(
            "nothing to watch: no collection or project folders are cached or given",
            hint="Run `projcache refresh --collection DIR --project DIR` first.",
        )
    logger.info("watching %d folder(s)", len(targets))
    refreshes = 0
    for changes in watch(*targets, debounce=debounce_ms, stop_event=stop_event, step=50):
        touched_collections: set[str] = set()
        touched_projects: set[str] = set()
        for _change, changed in changes:
            real = os.path.realpath(changed)
            owner = _owner(real, collection_paths)
            if owner is not None:
                touched_collections.add(owner)
            owner = _owner(real, project_paths)
            if owner is not None:
                touched_projects.add(owner)
        if not touched_collections and not touched_projects:
            continue
        folders = (
            sorted(c for c in touched_collections if os.path.isdir(c)),
            sorted(p for p in touched_projects if os.path.isdir(p)),
        )
        if refresh is None:
            report: Optional[RefreshReport] = cache.refresh(
                collections=folders[0], projects=folders[1]
            )
        else:
            report = refresh(*folders)
        refreshes += 1
        if on_report is not None and report is not None:
            on_report(report)
    return refreshes
