"""``ProjectCache``: the facade that users hold.

Every public mutation is exactly one LMDB write transaction covering the
records and all their index entries, so readers in any process see all of a
change or none of it.  Reads never block (LMDB MVCC) and never hold a
transaction across calls; a listing is one read transaction (one snapshot),
streamed while its iterator is open.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union

from . import codec
from .config import Settings, load_settings
from .errors import (
    ArtifactNotFound,
    CacheClosedError,
    CacheCorruptError,
    CacheNotFoundError,
    CachePermissionError,
    CorruptRecordError,
    InvalidRecordError,
    NotFoundError,
    ProjcacheError,
    ProjectNotFound,
    ReadOnlyCacheError,
    SchemaVersionError,
    StorageError,
    translate_os_error,
)
from .migrate import SCHEMA_VERSION, MigrationProgress, ensure_schema, read_schema
from .reads import SearchResults
from .repository import Repositories
from .storage import Storage, Txn
from .views import CacheViews

if TYPE_CHECKING:
    from types import TracebackType

    from .models import (
        Artifact,
        CacheStats,
        Collection,
        Deployment,
        Project,
        RefreshReport,
        VerifyReport,
    )
    from .refresh import PathLike, Progress
    from .roots import SourceRoots

__all__ = ["CacheDisabledError", "ProjectCache", "SearchResults"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


# The settings that belong to the LMDB environment, not to a handle: a second open of a
# directory in this process shares the first opener's environment, so these are its.
_ENVIRONMENT_SETTINGS = ("map_size", "max_map_size", "durability")


def _applied(settings: Settings, storage: Storage) -> Settings:
    """``settings`` with the environment's own values where a shared environment differs.

    A handle then reports what really applies (``settings.durability``,
    ``stats().max_map_size``) instead of what it asked for; a warning says so.
    """
    differ = {
        name: getattr(storage.settings, name)
        for name in _ENVIRONMENT_SETTINGS
        if getattr(storage.settings, name) != getattr(settings, name)
    }
    if not differ:
        return settings
    logger.warning(
        "%s is already open in this process with %s; this handle shares that environment",
        storage.path,
        ", ".join(f"{name}={value!r}" for name, value in sorted(differ.items())),
    )
    return dataclasses.replace(settings, **differ)


class CacheDisabledError(ProjcacheError):
    """The cache is switched off by ``PROJCACHE_ENABLED=false`` (or ``SKILLMEAT_ENABLE_CACHE``)."""

    default_hint = (
        "Set PROJCACHE_ENABLED=true (and unset SKILLMEAT_ENABLE_CACHE=false) to use the cache."
    )


class ProjectCache(CacheViews):
    """A persistent, memory-mapped cache of projects, artifacts and deployments.

    Open it with :meth:`open` (preferably as a context manager).  One instance
    may be shared by threads; opening the same directory again in the process
    shares the same LMDB environment.
    """

    def __init__(self, storage: Storage, settings: Settings, readonly: bool = False):
        self._storage = storage
        self.settings = settings
        # A read-only handle may share a writer's environment: it enforces its own mode.
        self._readonly = readonly or storage.readonly
        self._repos_for: Optional[dict[str, Any]] = None
        self._repos_cache: Optional[Repositories] = None
        self._hits = 0
        self._misses = 0
        self._closed = False
        # Set when the directory is not writable and the cache was opened read-only instead.
        self._write_denied = False
        # Set on a source-direct handle (see projcache.direct).
        self._direct_reason: Optional[str] = None
        self._scratch: Optional[Path] = None

    @property
    def _repos(self) -> Repositories:
        dbs = self._storage.live_dbs()  # reopens after fork(): handles change then
        if dbs is not self._repos_for or self._repos_cache is None:
            self._repos_cache = Repositories(dbs)
            self._repos_for = dbs
        return self._repos_cache

    def _check_open(self) -> None:
        if self._closed:
            raise CacheClosedError(f"the cache in {self.path} is closed")

    # -- lifecycle -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Union[str, Path, None] = None,
        readonly: bool = False,
        *,
        settings: Optional[Settings] = None,
        fallback: bool = False,
        progress: Optional[MigrationProgress] = None,
    ) -> ProjectCache:
        """Open (creating if needed) the cache in ``path``, else the configured directory.

        Checks the schema version: a cache written by a newer projcache raises
        :class:`~projcache.errors.SchemaVersionError`; an older one is migrated
        in place, in one transaction (or emptied, to be rebuilt from source, when
        no migration exists); ``progress(step, done, total)`` is told how far.

        A directory that is not writable opens read-only: reads work, writes raise
        :class:`~projcache.errors.CachePermissionError` naming the directory.  A
        damaged cache raises :class:`~projcache.errors.CacheCorruptError`, or
        is rebuilt (damaged files moved aside) when ``auto_repair`` is set.

        With ``fallback``, when the cache is switched off or cannot be opened,
        a source-direct handle is returned instead (see :mod:`projcache.direct`):
        same answers, read from the source files; one warning is logged.

        Raises:
            CacheDisabledError: the feature flag switched the cache off.
            CacheNotFoundError: ``readonly`` and no cache exists in the directory.
            CacheCorruptError: the environment is damaged (and ``auto_repair`` is off).
            ConfigError: a setting is invalid.
        """
        if settings is None:
            settings = load_settings(dir=str(path) if path is not None else None)
        elif path is not None:
            settings = dataclasses.replace(settings, cache_dir=Path(path))
        if not settings.enabled:
            if fallback:
                from .direct import open_direct

                return open_direct(settings, "the cache is disabled by configuration")
            raise CacheDisabledError("the cache is disabled by configuration")
        try:
            return cls._open(settings, readonly, progress)
        except CacheCorruptError as exc:
            if settings.auto_repair and not readonly:
                from .recovery import rebuild

                logger.warning(
                    "the cache in %s is damaged (%s); repairing it", settings.cache_dir, exc
                )
                rebuild(settings)
                return cls._open(settings, readonly, progress)
            if fallback:
                from .direct import open_direct

                return open_direct(settings, f"the cache in {settings.cache_dir} is damaged")
            if isinstance(exc, CorruptRecordError):
                raise  # names the record; its hint already says what to run
            where = str(Path(settings.cache_dir).resolve())
            reason = str(exc)
            # Storage names the directory by its absolute path; a relative one given by
            # the caller would otherwise be stripped from the middle of that path.
            for shown in dict.fromkeys((where, str(settings.cache_dir))):
                reason = reason.replace(f" ({shown})", "").replace(f"{shown}: ", "")
            raise CacheCorruptError(
                f"the cache in {where} is damaged: {reason}",
                hint="Run `projcache verify --repair` (the damaged files are kept aside), "
                "or set PROJCACHE_AUTO_REPAIR=true.",
            ) from exc
        except (CachePermissionError, StorageError) as exc:
            if not fallback or isinstance(exc, (CacheNotFoundError, SchemaVersionError)):
                raise
            from .direct import open_direct

            return open_direct(
                settings, f"the cache in {settings.cache_dir} cannot be used ({exc})"
            )

    @classmethod
    def _open(
        cls, settings: Settings, readonly: bool, progress: Optional[MigrationProgress] = None
    ) -> ProjectCache:
        denied = False
        try:
            storage = Storage.acquire(settings.cache_dir, settings, readonly)
        except CachePermissionError:
            if readonly or not (Path(settings.cache_dir) / "data.mdb").exists():
                raise
            # Reads still work from a directory we may not write: open read-only.
            storage = Storage.acquire(settings.cache_dir, settings, True)
            denied = True
            logger.warning("cannot write %s; opened it read-only", settings.cache_dir)
        try:
            cache = cls(storage, _applied(settings, storage), readonly=readonly)
            cache._write_denied = denied and not readonly
            meta = cache._repos.meta
            if readonly or denied:
                storage.read(lambda txn: read_schema(txn, meta, storage.path))
            elif storage.read(lambda txn: meta.get(txn, "schema_version")) != SCHEMA_VERSION:
                # Only then take the writer lock: opening must not wait for a long refresh.
                storage.write(lambda txn: ensure_schema(txn, cache._repos.meta, storage, progress))
        except BaseException:
            storage.release()
            raise
        return cache

    @property
    def direct(self) -> Optional[str]:
        """Why this handle reads straight from the source files, or ``None`` for a real cache."""
        return self._direct_reason

    def _rebuild(self) -> Any:
        """Rebuild a damaged environment in place (see :func:`projcache.recovery.rebuild`)."""
        from .errors import CacheBusyError
        from .recovery import rebuild

        self._check_writable()
        if self._storage.refs > 1:
            raise CacheBusyError(
                f"cannot rebuild {self.path}: it is open {self._storage.refs} times "
                "in this process",
                hint="Close the other handles of this cache first.",
            )
        self._storage.release()
        try:
            return rebuild(self.settings)
        finally:
            self._storage = Storage.acquire(self.settings.cache_dir, self.settings, False)
            self._repos_cache = None
            self._repos_for = None

    def close(self) -> None:
        """Flush the hit/miss counters and release the environment; idempotent."""
        if self._closed:
            return
        try:
            if not self._readonly and not self._write_denied and (self._hits or self._misses):
                self._write(self._mark_counters_only)
        except ProjcacheError as exc:
            logger.warning("could not save cache counters on close: %s", exc)
        finally:
            self._closed = True
            self._storage.release()
            if self._scratch is not None:
                import shutil

                shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> ProjectCache:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """The cache directory."""
        return self._storage.path

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @property
    def readonly(self) -> bool:
        """True when opened read-only."""
        return self._readonly

    def generation(self) -> str:
        """An opaque token that changes whenever data is written (an HTTP ETag's source).

        The environment's creation time and the id of the last committed write
        transaction that changed data, read in one snapshot: saving the hit
        counters does not change it, and a cache rebuilt from scratch never
        repeats an old token.
        """
        meta = self._repos.meta

        def body(txn: Txn) -> str:
            created = str(meta.get(txn, "created_at", ""))
            last = txn.id()
            if meta.get(txn, "counters_txn") == last:
                last = int(meta.get(txn, "counters_generation", last))
            return f"{zlib.crc32(created.encode()):08x}-{last}"

        return self._read(body)

    def _mark_counters_only(self, txn: Txn) -> None:
        """Record that this write only saves counters, so :meth:`generation` looks past it.

        Any other write leaves ``counters_txn`` behind the last commit id, so it
        moves the generation as every data write must (the safe default).
        """
        meta = self._repos.meta
        before = txn.id() - 1
        if meta.get(txn, "counters_txn") == before:  # consecutive counter-only saves
            before = int(meta.get(txn, "counters_generation", before))
        meta.put(txn, "counters_txn", txn.id())
        meta.put(txn, "counters_generation", before)

    def _check_writable(self) -> None:
        self._check_open()
        if self._write_denied:
            raise CachePermissionError(
                f"cannot write the cache in {self.path}: permission denied (opened read-only)"
            )
        if self._readonly:
            raise ReadOnlyCacheError(f"the cache in {self.path} is open read-only")

    def _read(self, fn: Callable[[Txn], T]) -> T:
        self._check_open()
        return self._storage.read(fn)

    def _write(self, fn: Callable[[Txn], T]) -> T:
        self._check_writable()
        hits, misses = self._hits, self._misses

        def body(txn: Txn) -> T:
            result = fn(txn)
            # Counters ride along with the next write instead of costing one of their own.
            if hits:
                self._repos.meta.add(txn, "hits", hits)
            if misses:
                self._repos.meta.add(txn, "misses", misses)
            return result

        result = self._storage.write(body)
        self._hits -= hits
        self._misses -= misses
        return result

    def _put_many(
        self, model_name: str, items: Iterable[Any], put: Callable[[Txn, Repositories, Any], Any]
    ) -> int:
        """Validate every item as ``model_name``, then ``put`` them all in one transaction."""
        from . import models

        model = getattr(models, model_name)
        records = [models.validate(model, item) for item in items]
        if model_name == "Artifact":
            # Key order fills LMDB's pages (appends split full pages) and gives a batch's ids
            # in key order; a stable sort keeps the last of two records with one key last.
            records.sort(key=lambda record: record.key)

        def body(txn: Txn) -> int:
            for record in records:
                put(txn, self._repos, record)
            return len(records)

        return self._write(body) if records else 0

    # -- writes (queries are in CacheReads) -----------------------------------

    def put_artifacts(self, artifacts: Iterable[Union[Artifact, dict[str, Any]]]) -> int:
        """Insert or replace artifacts in one transaction; return how many were written.

        Every record is validated before anything is written; the search index,
        facets and the states of their deployments are updated in the same transaction.

        Raises:
            InvalidRecordError: a record is invalid (nothing is written).
        """
        from . import mutations  # the write side: not loaded by read-only CLI calls

        return self._put_many("Artifact", artifacts, mutations.put_artifact)

    def delete_artifact(self, key: str) -> None:
        """Remove an artifact and its index entries; its deployments become ``missing``.

        Raises:
            ArtifactNotFound: no such artifact.
        """
        from . import mutations  # the write side: not loaded by read-only CLI calls

        codec.parse_artifact_key(key)
        if not self._write(lambda txn: mutations.delete_artifact(txn, self._repos, key)):
            raise ArtifactNotFound(f"no artifact {key!r} in the cache")

    def put_projects(self, projects: Iterable[Union[Project, dict[str, Any]]]) -> int:
        """Insert or replace projects in one transaction; return how many were written."""
        from . import mutations  # the write side: not loaded by read-only CLI calls

        return self._put_many("Project", projects, mutations.put_project)

    def delete_project(self, project_id: str) -> None:
        """Remove a project and all its deployments in one transaction.

        Raises:
            ProjectNotFound: no such project.
        """
        from . import mutations  # the write side: not loaded by read-only CLI calls

        if not self._write(lambda txn: mutations.delete_project(txn, self._repos, project_id)):
            raise ProjectNotFound(f"no project {project_id!r} in the cache")

    def put_deployments(self, deployments: Iterable[Union[Deployment, dict[str, Any]]]) -> int:
        """Insert or replace deployments in one transaction, computing each one's state.

        Raises:
            InvalidRecordError: a record is invalid or names a project not in the cache.
        """
        from . import mutations  # the write side: not loaded by read-only CLI calls

        return self._put_many("Deployment", deployments, mutations.put_deployment)

    def delete_deployment(
        self, project_id: str, artifact_key: str, profile: str = "claude_code"
    ) -> bool:
        """Remove one deployment (of ``artifact_key`` to ``profile``); return whether it existed."""
        from . import mutations  # the write side: not loaded by read-only CLI calls

        return self._write(
            lambda txn: mutations.delete_deployment(
                txn, self._repos, project_id, artifact_key, profile
            )
        )

    # -- refresh and maintenance -------------------------------------------------------------

    def refresh(
        self,
        collections: Optional[Iterable[PathLike]] = None,
        projects: Optional[Iterable[PathLike]] = None,
        full: bool = False,
        stale_only: bool = False,
        *,
        progress: Optional[Progress] = None,
    ) -> RefreshReport:
        """Bring the cache up to date with the files on disk; return what was done.

        Without ``collections`` and ``projects``, refreshes the configured
        collection and project roots plus everything already cached (a cached
        folder that is gone is removed).  Given either, refreshes just those
        folders.  Only sources whose stat changed are re-read, unless ``full``;
        ``stale_only`` skips collections and projects that are still fresh.
        A bad file never aborts: it is reported in the result and on its
        project or collection, whose last good data is kept.

        Raises:
            SourceFileError: a folder given is not a collection or project.
            ReadOnlyCacheError: the cache is open read-only.
        """
        from .refresh import RefreshContext, run_refresh

        self._check_writable()
        ctx = RefreshContext(
            read=self._read,
            write=self._write,
            repos=lambda: self._repos,
            settings=self.settings,
            reserve=self._storage.reserve,
        )
        given_collections = None if collections is None else list(collections)
        given_projects = None if projects is None else list(projects)
        report = run_refresh(
            ctx,
            collections=given_collections,
            projects=given_projects,
            full=full,
            stale_only=stale_only,
            progress=progress,
        )
        if given_collections or given_projects:
            self._remember_roots(given_collections or [], given_projects or [])
        return report

    def _remember_roots(self, collections: list[PathLike], projects: list[PathLike]) -> None:
        """Add folders given to a refresh to the remembered roots (meta and ``roots.json``).

        Only the folders passed explicitly: configured roots live in the
        config.  A rebuild re-reads all of them (see :mod:`projcache.roots`).
        """
        from .roots import META_KEY, SourceRoots, read_side_file, write_side_file

        def resolved(paths: list[PathLike]) -> list[str]:
            return [os.path.realpath(os.path.expanduser(os.fspath(p))) for p in paths]

        given = SourceRoots.of(resolved(collections), resolved(projects))
        meta = self._repos.meta
        stored = self._read(lambda txn: SourceRoots.from_json(meta.get(txn, META_KEY)))
        merged = stored | given
        if merged != stored:
            self._write(lambda txn: meta.put(txn, META_KEY, merged.to_json()))
        side = read_side_file(self.path)
        if side | merged != side:
            try:
                write_side_file(self.path, side | merged)
            except OSError as exc:  # the roots are in the cache anyway; warn, do not fail
                logger.warning("could not write %s/roots.json: %s", self.path, exc)

    def source_roots(self) -> SourceRoots:
        """Every collection and project folder this cache was ever refreshed from by name.

        The union of what the cache itself remembers (``meta``) and its side
        file ``<cache_dir>/roots.json``, which survives damage to the data file.
        A rebuild (``verify(repair=True)`` on a damaged file) re-reads all of
        them; configured roots (settings) are not listed here.
        """
        from .roots import META_KEY, SourceRoots, read_side_file

        self._check_open()
        meta = self._repos.meta
        try:
            stored = self._read(lambda txn: SourceRoots.from_json(meta.get(txn, META_KEY)))
        except CacheCorruptError:
            stored = SourceRoots()
        return stored | read_side_file(self.path)

    def invalidate(self, project: Optional[str] = None, collection: Optional[str] = None) -> int:
        """Mark a project (id, name or path), a collection (name), or everything as stale.

        Returns how many were marked.  Data stays readable until the next
        refresh replaces it; ``refresh(stale_only=True)`` re-reads just these.
        """
        from . import mutations  # the write side: not loaded by read-only CLI calls

        repos = self._repos
        if project is None and collection is None:
            # Everything: one meta key, whatever the number of units (see UnitStaleness).
            def count(txn: Txn) -> int:
                return repos.projects.count(txn) + repos.collections.count(txn)

            if not self._read(count):
                return 0

            def mark_all(txn: Txn) -> int:
                units = repos.projects.count(txn) + repos.collections.count(txn)
                if units:
                    repos.staleness.mark(txn)
                return units

            return self._write(mark_all)
        projects = [self.find_project(project)] if project is not None else []
        collections: list[Collection] = []
        if collection is not None:
            found = self.get_collection(collection)
            if found is None:
                raise NotFoundError(
                    f"no collection {collection!r} in the cache",
                    hint="Run `projcache show` to see the cached collections.",
                )
            collections = [found]

        def body(txn: Txn) -> int:
            for target in projects:
                mutations.put_project(txn, repos, target.model_copy(update={"stale": True}))
            for record in collections:
                repos.collections.put(txn, record.model_copy(update={"stale": True}))
            return len(projects) + len(collections)

        return self._write(body) if projects or collections else 0

    def clear(self) -> None:
        """Remove every record and index entry in one transaction (schema and counters stay)."""
        from . import mutations  # the write side: not loaded by read-only CLI calls

        self._write(lambda txn: mutations.clear_all(txn, self._storage.dbs))

    def stats(self) -> CacheStats:
        """Counts, bytes, map size, hit/miss counters and freshness (one pass over projects)."""
        from .stats import collect_stats

        self._check_open()
        return collect_stats(
            self._storage, self._repos, self._hits, self._misses, self.settings.ttl_seconds
        )

    def verify(
        self,
        repair: bool = False,
        sources: bool = False,
        *,
        deep: bool = False,
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> VerifyReport:
        """Check the cache; by default quickly, with ``deep`` (or ``repair``/``sources``) fully.

        The quick check (:func:`projcache.quickverify.quick_verify`) reads every
        stored value once: frame and CRC32 of each, key shapes, index sizes.
        The deep check also walks the file's pages (``lmdb.verify`` on a copy),
        validates every record against its model and recomputes every index;
        ``sources`` also compares every source fingerprint with the file now.
        With ``repair`` (always deep) every repairable finding is fixed: indexes
        rebuilt, bad records dropped and re-read from source, and a damaged
        environment moved aside (kept for inspection) and rebuilt from what
        still reads and from source.  ``progress(done, total)`` is called as
        values are checked.
        """
        from .recovery import verify_cache

        self._check_open()
        if repair:
            self._check_writable()
        if not (deep or repair or sources):
            from .quickverify import quick_verify

            return quick_verify(self._storage, progress)
        return verify_cache(self, repair=repair, sources=sources, progress=progress)

    def backup(self, dest: Union[str, Path], compact: bool = True) -> Path:
        """Write a consistent copy of the cache into directory ``dest``; return its path.

        ``dest`` is created if needed and must not already hold a cache.  With
        ``compact`` free pages are omitted (smaller, slower).  Readers and
        writers go on meanwhile (the copy reads one snapshot).
        """
        target = Path(dest).expanduser().resolve()
        if os.path.lexists(target / "data.mdb"):
            raise InvalidRecordError(f"{target} already holds a cache; choose an empty directory")
        self._check_open()
        missing = [target, *(p for p in target.parents if not p.exists())]
        try:
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
            # A backup is as private as the cache: the folder (and every folder
            # created for it) 0700 whatever the umask, the data file 0600.
            for folder in missing:
                if folder.is_dir() and folder.stat().st_uid == os.geteuid():
                    folder.chmod(0o700)
        except OSError as exc:
            raise translate_os_error(exc, path=str(target)) from exc
        self._storage.copy(target, compact=compact)
        return target
