"""Incremental refresh: stat fingerprints -> re-read changed sources -> one transaction per unit.

A *unit* is a collection folder or a project folder.  Each unit's changes
(its record, artifacts, deployments and fingerprints) are written in one
write transaction, so no reader ever sees half a project.  Units in which
nothing changed cost one ``stat`` per source and share a single small
transaction that only moves their ``refreshed_at``.  Collections go first:
deployment states depend on the artifacts they hold.

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
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from . import codec, mutations
from .errors import InvalidRecordError, SourceFileError
from .repository import Repositories
from .sources import (
    CollectionRead,
    ProjectRead,
    Stored,
    find_collections,
    find_projects,
    is_collection,
    is_project,
    local_collection,
    read_collection,
    read_project,
    unchanged_collection,
)
from .sources.tracker import SourceTracker
from .storage import Txn

if TYPE_CHECKING:
    from .config import Settings
    from .models import Collection, KnownFingerprint, Project, RefreshReport, SourceError

__all__ = ["Progress", "RefreshContext", "check_folders", "run_refresh"]

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


# Upper estimates of what one artifact (record, terms, postings, facets) and one source
# fingerprint take in the file, for sizing the map ahead of a big write; measured at
# ~3.1 KiB per artifact all told at 100,000 (bench/RESULTS.md).  Over-estimating only
# reserves address space.
_BYTES_PER_ARTIFACT = 8 * 1024
_BYTES_PER_SOURCE = 1024


@dataclass
class _Counts:
    collections_checked: int = 0
    projects_checked: int = 0
    sources_checked: int = 0
    sources_changed: int = 0
    collections_written: int = 0
    collections_removed: int = 0
    artifacts_written: int = 0
    artifacts_removed: int = 0
    projects_written: int = 0
    projects_removed: int = 0
    deployments_written: int = 0
    deployments_removed: int = 0
    errors: list[SourceError] = field(default_factory=list)


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


def _collection_unit(path: str) -> str:
    return "c:" + codec.project_id_for_path(path)


def _project_unit(project_id: str) -> str:
    return "p:" + project_id


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


class _Refresher:
    def __init__(self, ctx: RefreshContext, full: bool, progress: Optional[Progress]):
        from .models import utcnow

        self.ctx = ctx
        self.full = full
        self.progress = progress
        self.now = utcnow()
        self.counts = _Counts()
        self.touched_collections: list[Collection] = []
        self.touched_projects: list[Project] = []

    @property
    def repos(self) -> Repositories:
        return self.ctx.repos()

    def usable(self, paths: list[str], what: str) -> list[str]:
        """Drop (and report) folders whose path is not valid UTF-8: records hold text."""
        from .models import SourceError
        from .sources.tracker import printable

        kept = []
        for path in paths:
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                shown = printable(path)
                message = f"{shown}: the {what} folder's path is not valid UTF-8; not cached"
                logger.warning("%s", message)
                self.counts.errors.append(SourceError(path=shown, message=message))
                continue
            kept.append(path)
        return kept

    def _fingerprints(self, unit: str) -> dict[str, KnownFingerprint]:
        found: dict[str, KnownFingerprint] = self.ctx.read(
            lambda txn: dict(self.repos.sources.scan_unit_raw(txn, unit))
        )
        return found

    def _stored(
        self, unit: str, old: Optional[Collection]
    ) -> tuple[dict[str, KnownFingerprint], Optional[Stored]]:
        """The unit's fingerprints and (unless ``full``) the keys of ``old``'s artifacts.

        Both come from one read transaction, so they describe the same state.
        """
        repos = self.repos

        def body(txn: Txn) -> tuple[dict[str, KnownFingerprint], Optional[Stored]]:
            previous: dict[str, KnownFingerprint] = dict(repos.sources.scan_unit_raw(txn, unit))
            if old is None or self.full:
                return previous, None
            keys = frozenset(repos.artifacts.scan_keys(txn, prefix=old.name + "/"))
            return previous, Stored(old.name, keys)

        found: tuple[dict[str, KnownFingerprint], Optional[Stored]] = self.ctx.read(body)
        return found

    def _stored_front_matter(self, key: str) -> Optional[dict[str, Any]]:
        """The front matter of the artifact record stored under ``key`` (``None``: no record).

        Fingerprints do not keep it (it is stored once, in the record), so an
        artifact rebuilt from unchanged files takes it from here.
        """
        import orjson

        payload = self.ctx.read(lambda txn: self.repos.artifacts.get_payload(txn, key))
        if payload is None:
            return None
        front = orjson.loads(payload).get("front_matter")
        return front if isinstance(front, dict) else {}

    # -- shared diff helpers (inside a write transaction) -------------------------

    def _sync_artifacts(
        self,
        txn: Txn,
        collection: str,
        desired: dict[str, Any],
        counts: _Counts,
        read: Optional[CollectionRead] = None,
    ) -> None:
        """Store ``desired`` and drop the collection's other artifacts, except ``read.kept``.

        Kept artifacts are left as stored (they are what building them would
        give); one that has vanished since it was looked up (another process)
        is built after all.
        """
        repos = self.repos
        existing = set(repos.artifacts.scan_keys(txn, prefix=collection + "/"))
        keep = read.kept if read is not None else {}
        if read is not None and not keep.keys() <= existing:
            desired = dict(desired)
            for key in keep.keys() - existing:
                try:
                    desired[key] = read.build(keep[key])
                except InvalidRecordError as exc:
                    logger.warning("%s: %s", key, exc)
        for key, artifact in desired.items():
            if repos.artifacts.get_payload(txn, key) != artifact.model_dump_json().encode():
                mutations.put_artifact(txn, repos, artifact)
                counts.artifacts_written += 1
        for key in sorted(existing - desired.keys() - keep.keys()):
            mutations.delete_artifact(txn, repos, key)
            counts.artifacts_removed += 1

    def _sync_sources(
        self,
        txn: Txn,
        unit: str,
        previous: dict[str, KnownFingerprint],
        current: dict[str, KnownFingerprint],
    ) -> None:
        from .models import Fingerprint

        sources = self.repos.sources
        for relative, fingerprint in current.items():
            # Only a fresh read (always a Fingerprint model) differs from the previous one.
            if previous.get(relative) is not fingerprint and isinstance(fingerprint, Fingerprint):
                sources.put_for(txn, unit, relative, fingerprint)
        for relative in set(previous) - set(current):
            sources.delete_for(txn, unit, relative)

    # -- collections ---------------------------------------------------------------

    def collection(self, path: str, known: dict[str, Collection]) -> None:
        from .models import Collection, validate

        unit = _collection_unit(path)
        old = known.get(path)
        self.counts.collections_checked += 1
        if not os.path.isdir(path) or not is_collection(path):
            if old is not None:
                self._write_counted(
                    lambda txn, counts: self._remove_collection(txn, old, unit, counts)
                )
                logger.info("collection %s at %s is gone; removed it", old.name, path)
            return
        previous, stored = self._stored(unit, old)
        checker = SourceTracker(
            path, previous, self.full, max_bytes=self.ctx.settings.max_artifact_size
        )
        if old is not None and not self.full and not old.errors and unchanged_collection(checker):
            # Nothing it is read from changed: its records stay; only refreshed_at moves.
            self.counts.sources_checked += checker.checked
            self.touched_collections.append(
                old.model_copy(update={"refreshed_at": self.now, "stale": False})
            )
            return
        read = read_collection(
            path,
            previous,
            tracker=checker,
            full=self.full,
            cap=self.ctx.settings.max_file_size,
            stored=stored,
            max_bytes=self.ctx.settings.max_artifact_size,
            stored_front_matter=self._stored_front_matter,
            manifest_cap=self.ctx.settings.max_manifest_size,
        )
        tracker = read.tracker
        assert tracker is not None
        self.counts.sources_checked += tracker.checked
        self.counts.sources_changed += tracker.changed
        owner = self.ctx.read(lambda txn: self.repos.collections.get(txn, read.name))
        if owner is not None and owner.path != path and os.path.isdir(owner.path):
            message = (
                f"{path}: collection name {read.name!r} is already used by {owner.path}; "
                "not cached (rename one of them in its collection.toml)"
            )
            logger.warning("%s", message)
            tracker.error(path, message)
            self.counts.errors.extend(tracker.errors)
            return
        self.counts.errors.extend(tracker.errors)
        record = validate(Collection, {**read.fields, "refreshed_at": self.now, "stale": False})
        if (
            tracker.unchanged
            and old is not None
            and old.name == read.name
            and old.errors == record.errors
            and not self.full
        ):
            self.touched_collections.append(record)
            return

        def body(txn: Txn, counts: _Counts) -> None:
            if old is not None and old.name != read.name:
                self._remove_collection(txn, old, None, counts)
            if owner is not None and owner.path != path:
                # The name moved here from a folder that is gone: its records go.
                self._remove_collection(txn, owner, _collection_unit(owner.path), counts)
            self._sync_artifacts(txn, read.name, read.artifacts, counts, read)
            new_name = self.repos.collections.get_payload(txn, read.name) is None
            self.repos.collections.put(txn, record)
            if new_name:
                # Deployments of its artifacts that are not there are "missing" now.
                mutations.restate_collection(txn, self.repos, read.name)
            self._sync_sources(txn, unit, previous, tracker.current)
            counts.collections_written += 1

        # One big transaction: size the map for it first, so a first refresh of a large
        # collection is not replayed at every doubling (linear, not superlinear).
        self.ctx.reserve(
            len(read.artifacts) * _BYTES_PER_ARTIFACT + len(tracker.current) * _BYTES_PER_SOURCE
        )
        self._write_counted(body)

    def _remove_collection(
        self, txn: Txn, old: Collection, unit: Optional[str], counts: _Counts
    ) -> None:
        repos = self.repos
        keys = list(repos.artifacts.scan_keys(txn, prefix=old.name + "/"))
        repos.collections.delete(txn, old.name)
        for key in keys:
            mutations.delete_artifact(txn, repos, key)
        # Its deployments now come from a collection the cache does not know:
        # "unknown-collection", not "missing".
        mutations.restate_collection(txn, repos, old.name)
        counts.artifacts_removed += len(keys)
        if unit is not None:
            repos.sources.delete_unit(txn, unit)
        counts.collections_removed += 1

    # -- projects ------------------------------------------------------------------

    def project(self, path: str, known: dict[str, Project]) -> None:
        from .models import Project, validate

        project_id = codec.project_id_for_path(path)
        unit = _project_unit(project_id)
        old = known.get(project_id)
        self.counts.projects_checked += 1
        if not is_project(path):
            if old is not None:
                self._write_counted(
                    lambda txn, counts: self._remove_project(txn, project_id, unit, counts)
                )
                logger.info("project %s at %s is gone; removed it", old.name, path)
            return
        previous = self._fingerprints(unit)
        settings = self.ctx.settings
        read = read_project(
            path,
            previous,
            full=self.full,
            cap=settings.max_file_size,
            manifest_cap=settings.max_manifest_size,
            max_bytes=settings.max_artifact_size,
            stored_front_matter=self._stored_front_matter,
        )
        tracker = read.tracker
        assert tracker is not None
        self.counts.sources_checked += tracker.checked
        self.counts.sources_changed += tracker.changed
        self.counts.errors.extend(tracker.errors)
        record = validate(Project, {**read.fields, "refreshed_at": self.now, "stale": False})
        if tracker.unchanged and old is not None and old.errors == record.errors and not self.full:
            self.touched_projects.append(record)
            return

        def body(txn: Txn, counts: _Counts) -> None:
            self._apply_project(txn, read, record, counts)
            self._sync_sources(txn, unit, previous, tracker.current)

        self._write_counted(body)

    def _apply_project(self, txn: Txn, read: ProjectRead, record: Project, counts: _Counts) -> None:
        repos = self.repos
        mutations.put_project(txn, repos, record)
        counts.projects_written += 1
        self._sync_artifacts(txn, local_collection(read.id), read.artifacts, counts)
        existing = {
            codec.parse_deployment_key(key)[1:]
            for key, _p in repos.deployments.scan_project(txn, read.id)
        }
        for (key, profile), deployment in read.deployments.items():
            stored = deployment.model_copy(
                update={"state": mutations.state_of(txn, repos, deployment)}
            )
            current = repos.deployments.get_for(txn, read.id, key, profile)
            if current != stored:
                mutations.put_deployment(txn, repos, stored)
                counts.deployments_written += 1
        for key, profile in sorted(existing - set(read.deployments)):
            mutations.delete_deployment(txn, repos, read.id, key, profile)
            counts.deployments_removed += 1

    def _remove_project(self, txn: Txn, project_id: str, unit: str, counts: _Counts) -> None:
        repos = self.repos
        removed = sum(1 for _ in repos.deployments.scan_project(txn, project_id))
        mutations.delete_project(txn, repos, project_id)
        keys = list(repos.artifacts.scan_keys(txn, prefix=local_collection(project_id) + "/"))
        for key in keys:
            mutations.delete_artifact(txn, repos, key)
        repos.sources.delete_unit(txn, unit)
        counts.deployments_removed += removed
        counts.artifacts_removed += len(keys)
        counts.projects_removed += 1

    # -- bookkeeping -----------------------------------------------------------------

    def _write_counted(self, body: Callable[[Txn, _Counts], None]) -> None:
        """Run ``body`` in one write transaction; add its counts once it has committed.

        A body may be replayed (map growth), so each attempt counts afresh.
        """
        attempt: list[_Counts] = []

        def run(txn: Txn) -> None:
            attempt[:] = [_Counts()]
            body(txn, attempt[0])

        self.ctx.write(run)
        for item in fields(_Counts):
            if item.name.endswith(("_written", "_removed")):
                total = getattr(self.counts, item.name) + getattr(attempt[0], item.name)
                setattr(self.counts, item.name, total)

    def touch(self) -> None:
        """Move ``refreshed_at`` of every unchanged unit, all in one transaction."""
        if not self.touched_collections and not self.touched_projects:
            return
        repos = self.repos

        def body(txn: Txn) -> None:
            for collection in self.touched_collections:
                repos.collections.put(txn, collection)
            for project in self.touched_projects:
                mutations.put_project(txn, repos, project)

        self.ctx.write(body)


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
    from .models import RefreshReport, utcnow

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
    refresher = _Refresher(ctx, full, progress)
    collection_paths = refresher.usable(collection_paths, "collection")
    project_paths = refresher.usable(project_paths, "project")
    total = len(collection_paths) + len(project_paths)
    done = 0
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
    refresher.touch()
    if rebuild:
        ctx.write(lambda txn: ctx.repos().meta.put(txn, "needs_rebuild", False))
    counts = refresher.counts
    report = RefreshReport(
        started_at=started_at,
        duration_seconds=time.perf_counter() - started,
        **vars(counts),
    )
    logger.info(
        "refresh: %d collections, %d projects, %d sources checked, %d re-read, %d errors in %.3fs",
        counts.collections_checked,
        counts.projects_checked,
        counts.sources_checked,
        counts.sources_changed,
        len(counts.errors),
        report.duration_seconds,
    )
    return report
