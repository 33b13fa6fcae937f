"""Incremental refresh: stat fingerprints -> re-read changed sources -> write units atomically.

The modules: this one resolves the folders and runs the units in order;
:mod:`projcache.refresh_units` reads one unit and decides what changed;
:mod:`projcache.refresh_writes` writes it and tallies the report.

A *unit* is a collection folder or a project folder.  Each unit's changes
(its record, artifacts, deployments and fingerprints) are written in one
write transaction, so no reader ever sees half a project; small units share
it (:mod:`projcache.refresh_units`: a bounded batch, one durable commit).
Units in which nothing changed cost one ``stat`` per source; their
``refreshed_at`` moves in the last batch.  Collections go first:
deployment states depend on the artifacts they hold; among them, the order of
their keys as far as the folder names tell it (:func:`write_order`).  When a
unit's read raises (a folder gone mid-read), the units read before it that
wait in the batch are committed before the error propagates.

A malformed or unreadable file never aborts a refresh: its unit keeps the last
good data for that file, the error is recorded on the unit's record and in
the :class:`~projcache.models.RefreshReport`, and the rest goes on.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from . import codec
from .errors import SourceFileError
from .refresh_units import UnitRefresher
from .repository import Repositories
from .sources import find_collections, find_projects, is_collection, is_project
from .storage import Txn

if TYPE_CHECKING:
    from .config import Settings
    from .models import Collection, Project, RefreshReport

__all__ = ["Progress", "RefreshContext", "check_folders", "run_refresh", "write_order"]

logger = logging.getLogger(__name__)

# progress(done, total, label): called before each unit (label: the folder being read) and
# after it (done counts the finished units).
Progress = Callable[[int, int, str], None]
PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class RefreshContext:
    """What a refresh needs from the cache facade: transactions, repositories, settings."""

    read: Callable[[Callable[[Txn], Any]], Any]
    write: Callable[[Callable[[Txn], Any]], Any]
    repos: Callable[[], Repositories]
    settings: Settings
    # Grow the map ahead of a write of about this many bytes (Storage.reserve).
    reserve: Callable[[int], None] = lambda _bytes: None


_gc_lock = threading.Lock()
_gc_pauses = 0  # refreshes running with collection paused (any thread)
_gc_was_enabled = False


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while refreshes run; restore it after the last.

    A refresh holds a few containers per source (fingerprints and their data)
    until it ends, and that many survivors make the collector scan the whole
    heap once or more per refresh: ~15% of an unchanged refresh of 10,000
    sources.  Reference counting frees all of it when the refresh ends, so
    pausing loses nothing.  Counted across threads; the collector is
    re-enabled only if it was enabled when the first of them started.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def _resolve(paths: Iterable[PathLike], check: Callable[[str], bool], what: str) -> list[str]:
    resolved = []
    for given in paths:
        path = os.path.realpath(os.path.expanduser(os.fspath(given)))
        if not os.path.isdir(path):
            raise SourceFileError(
                f"{given}: no such directory",
                path=path,
                hint="Check the folder's path: it does not exist (or is not a folder).",
            )
        if not check(path):
            hint = (
                "A project folder holds a .claude/ folder, a SkillMeat deployment file "
                "(.agents/.skillmeat-deployed.toml, ...) or .skillmeat/manifest.toml."
                if what == "project"
                else "A collection folder holds collection.toml or skills/, commands/, agents/."
            )
            raise SourceFileError(f"{given} is not a {what} folder", path=path, hint=hint)
        resolved.append(path)
    return sorted(set(resolved))


def check_folders(
    collections: Optional[Iterable[PathLike]], projects: Optional[Iterable[PathLike]]
) -> tuple[list[str], list[str]]:
    """Resolve folders given to a refresh; each must be a collection or a project folder.

    Raises:
        SourceFileError: a folder does not exist or is not of its kind.
    """
    return (
        _resolve(collections or (), is_collection, "collection"),
        _resolve(projects or (), is_project, "project"),
    )


def write_order(paths: Iterable[str]) -> list[str]:
    """Collection folders in the order a refresh reads and writes them: by folder name + "/",
    then path (the order their artifact keys most likely sort in).

    A collection is usually named after its folder, and its artifact keys are
    ``name/type/artifact``: written in key order, a first refresh appends to the B-trees
    and fills their pages.  In path order ``default-2`` (keys ``default-2/...``) came
    after ``default`` and its keys went in front of ``default/...``, splitting half-full
    pages: at 100,000 artifacts in 21 such collections a quarter of the file was then slack and
    it was rewritten (compacted) on close (bench/RESULTS.md, first9).  Which of two folders
    claiming one collection name keeps it follows this order too: the first one read.
    """
    return sorted(paths, key=lambda path: (os.path.basename(path) + "/", path))


def _commit_waiting(refresher: UnitRefresher) -> None:
    """Commit the unit writes waiting in the batch when a later unit's read raised.

    Those units were read whole and each is written whole, so committing them keeps
    the all-or-nothing rule per unit, and the next refresh need not read them again.
    A failure of this commit is logged; the read's error is the one raised.  (A
    failed commit of the batch itself leaves nothing waiting: nothing is retried.)
    """
    try:
        refresher.flush()
    except Exception as exc:
        logger.warning("refresh: the units read before the error were not committed: %s", exc)


def _known(ctx: RefreshContext) -> tuple[dict[str, Collection], dict[str, Project]]:
    repos = ctx.repos()

    def body(txn: Txn) -> tuple[dict[str, Collection], dict[str, Project]]:
        collections = {}
        for record in repos.collections.scan(txn):
            collections[record.path] = record
        projects = {}
        for project in repos.projects.scan(txn):
            projects[project.id] = project
        return collections, projects

    result: tuple[dict[str, Collection], dict[str, Project]] = ctx.read(body)
    return result


def run_refresh(
    ctx: RefreshContext,
    *,
    collections: Optional[Sequence[PathLike]] = None,
    projects: Optional[Sequence[PathLike]] = None,
    full: bool = False,
    stale_only: bool = False,
    progress: Optional[Progress] = None,
) -> RefreshReport:
    """Refresh the cache from the files on disk; see :meth:`ProjectCache.refresh`."""
    with _gc_paused():
        return _run_refresh(
            ctx,
            collections=collections,
            projects=projects,
            full=full,
            stale_only=stale_only,
            progress=progress,
        )


def _run_refresh(
    ctx: RefreshContext,
    *,
    collections: Optional[Sequence[PathLike]],
    projects: Optional[Sequence[PathLike]],
    full: bool,
    stale_only: bool,
    progress: Optional[Progress],
) -> RefreshReport:
    from .models import utcnow

    started = time.perf_counter()
    started_at = utcnow()
    settings = ctx.settings
    known_collections, known_projects = _known(ctx)
    if collections is None and projects is None:
        collection_paths = sorted(
            set(find_collections(settings.collection_roots)) | set(known_collections)
        )
        project_paths = sorted(
            set(find_projects(settings.project_roots, settings.scan_depth))
            | {project.path for project in known_projects.values()}
        )
    else:
        collection_paths, project_paths = check_folders(collections, projects)
    rebuild = bool(ctx.read(lambda txn: ctx.repos().meta.get(txn, "needs_rebuild", False)))
    full = full or rebuild
    if stale_only:
        ttl = settings.ttl_seconds
        by_id = known_projects
        collection_paths = [
            p
            for p in collection_paths
            if p not in known_collections or known_collections[p].is_stale(ttl)
        ]
        project_paths = [
            p
            for p in project_paths
            if codec.project_id_for_path(p) not in by_id
            or by_id[codec.project_id_for_path(p)].is_stale(ttl)
        ]
    refresher = UnitRefresher(ctx, full)
    collection_paths = write_order(refresher.usable(collection_paths, "collection"))
    project_paths = refresher.usable(project_paths, "project")
    total = len(collection_paths) + len(project_paths)
    done = 0
    try:
        for path in collection_paths:
            if progress is not None:  # before too: a big collection takes most of the time
                progress(done, total, path)
            refresher.collection(path, known_collections)
            done += 1
            if progress is not None:
                progress(done, total, path)
        for path in project_paths:
            if progress is not None:
                progress(done, total, path)
            refresher.project(path, known_projects)
            done += 1
            if progress is not None:
                progress(done, total, path)
    except Exception:
        _commit_waiting(refresher)
        raise
    refresher.touch()
    if rebuild:
        ctx.write(lambda txn: ctx.repos().meta.put(txn, "needs_rebuild", False))
    report = refresher.tally.report(started_at, time.perf_counter() - started)
    logger.info(
        "refresh: %d collections, %d projects, %d sources checked, %d re-read, %d errors in %.3fs",
        report.collections_checked,
        report.projects_checked,
        report.sources_checked,
        report.sources_changed,
        len(report.errors),
        report.duration_seconds,
    )
    return report
