"""``ProjectCache``: the facade that users hold.

Every public mutation is exactly one LMDB write transaction covering the
records and all their index entries, so readers in any process see all of a
change or none of it.  Reads never block (LMDB MVCC) and never hold a
transaction across calls: listings read in pages of short transactions, so a
slow consumer does not pin old pages and make the file grow.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, TypeVar, Union

from . import codec, listing, mutations
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
)
from .repository import Repositories
from .schema import SCHEMA_VERSION, ensure_schema, read_schema
from .search import QueryFilters, run_query
from .storage import Storage, Txn

if TYPE_CHECKING:
    from types import TracebackType

    from .models import (
        Artifact,
        CacheStats,
        Collection,
        Deployment,
        DeploymentState,
        Project,
        RefreshReport,
        SearchHit,
        VerifyReport,
    )
    from .refresh import PathLike, Progress

__all__ = ["CacheDisabledError", "ProjectCache", "SearchResults"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_STATES = ("current", "outdated", "modified", "missing")


class CacheDisabledError(ProjcacheError):
    """The cache is switched off by ``PROJCACHE_ENABLED=false`` (or ``SKILLMEAT_ENABLE_CACHE``)."""

    default_hint = (
        "Set PROJCACHE_ENABLED=true (and unset SKILLMEAT_ENABLE_CACHE=false) to use the cache."
    )


class SearchResults(List["SearchHit"]):
    """The hits of one page of a search (a list), plus ``total``: all matches."""

    def __init__(self, hits: Iterable[SearchHit] = (), total: int = 0):
        super().__init__(hits)
        self.total = total


class ProjectCache:
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
    ) -> ProjectCache:
        """Open (creating if needed) the cache in ``path``, else the configured directory.

        Checks the schema version: a cache written by a newer projcache raises
        :class:`~projcache.errors.SchemaVersionError`; an older one is migrated
        in place (or emptied, to be rebuilt from source, when no migration exists).

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
            return cls._open(settings, readonly)
        except CacheCorruptError as exc:
            if settings.auto_repair and not readonly:
                from .recovery import rebuild

                logger.warning(
                    "the cache in %s is damaged (%s); repairing it", settings.cache_dir, exc
                )
                rebuild(settings)
                return cls._open(settings, readonly)
            if fallback:
                from .direct import open_direct

                return open_direct(settings, f"the cache in {settings.cache_dir} is damaged")
            if isinstance(exc, CorruptRecordError):
                raise  # names the record; its hint already says what to run
            where = str(settings.cache_dir)
            reason = str(exc).replace(f" ({where})", "").replace(f"{where}: ", "")
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
    def _open(cls, settings: Settings, readonly: bool) -> ProjectCache:
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
            cache = cls(storage, settings, readonly=readonly)
            cache._write_denied = denied and not readonly
            meta = cache._repos.meta
            if readonly or denied:
                storage.read(lambda txn: read_schema(txn, meta, storage.path))
            elif storage.read(lambda txn: meta.get(txn, "schema_version")) != SCHEMA_VERSION:
                # Only then take the writer lock: opening must not wait for a long refresh.
                storage.write(lambda txn: ensure_schema(txn, meta, storage))
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
                self._write(lambda txn: None)
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

        def body(txn: Txn) -> int:
            for record in records:
                put(txn, self._repos, record)
            return len(records)

        return self._write(body) if records else 0

    # -- artifacts -------------------------------------------------------------

    def get_artifact_json(self, key: str) -> Optional[bytes]:
        """Return the stored JSON bytes of one artifact, or ``None`` (no model is built).

        The frame's CRC is checked; this is the hot path of ``projcache get --json``.
        """
        self._check_open()
        # The same lookup as ArtifactRepository.get_payload, minus the per-call
        # closure and read() retry loop: this is the hottest path of the CLI.
        raw = self._storage.get("artifacts", codec.encode_key(key, what="artifact key"))
        payload = None if raw is None else codec.unframe(raw, what=f"artifacts[{key!r}]")
        if payload is None:
            # Stored keys were validated on write, so only a miss can be malformed;
            # checking here keeps the validation off the hit path.
            codec.parse_artifact_key(key)
            self._misses += 1
        else:
            self._hits += 1
        return payload

    def get_artifact(self, key: str) -> Optional[Artifact]:
        """Return the artifact with ``key`` (``<collection>/<type>/<name>``), or ``None``."""
        payload = self.get_artifact_json(key)
        return None if payload is None else self._repos.artifacts.model.model_validate_json(payload)

    def list_artifacts(
        self,
        type: Optional[str] = None,
        collection: Optional[str] = None,
        tag: Optional[str] = None,
    ) -> Iterator[Artifact]:
        """Yield artifacts in key order, filtered by type, collection and tag.

        Filters use indexes (tag and type facets, the collection key prefix);
        records are read in pages of short read transactions.
        """
        model = self._repos.artifacts.model
        for payload in self.iter_artifacts_json(type, collection, tag):
            yield model.model_validate_json(payload)

    def iter_artifacts_json(
        self,
        type: Optional[str] = None,
        collection: Optional[str] = None,
        tag: Optional[str] = None,
    ) -> Iterator[bytes]:
        """Like :meth:`list_artifacts`, yielding the stored JSON bytes (no models built)."""
        if type is not None and type not in codec.ARTIFACT_TYPES:
            raise InvalidRecordError(
                f"type must be one of {', '.join(codec.ARTIFACT_TYPES)}; got {type!r}"
            )
        self._check_open()
        yield from listing.artifact_payloads(self._read, lambda: self._repos, type, collection, tag)

    def put_artifacts(self, artifacts: Iterable[Union[Artifact, dict[str, Any]]]) -> int:
        """Insert or replace artifacts in one transaction; return how many were written.

        Every record is validated before anything is written; the search index,
        facets and the states of their deployments are updated in the same transaction.

        Raises:
            InvalidRecordError: a record is invalid (nothing is written).
        """
        return self._put_many("Artifact", artifacts, mutations.put_artifact)

    def delete_artifact(self, key: str) -> None:
        """Remove an artifact and its index entries; its deployments become ``missing``.

        Raises:
            ArtifactNotFound: no such artifact.
        """
        codec.parse_artifact_key(key)
        if not self._write(lambda txn: mutations.delete_artifact(txn, self._repos, key)):
            raise ArtifactNotFound(f"no artifact {key!r} in the cache")

    # -- projects ----------------------------------------------------------------

    def list_projects(self) -> list[Project]:
        """Return every project, in id order."""
        model = self._repos.projects.model
        payloads = self._read(lambda txn: list(self._repos.projects.scan_payloads(txn)))
        return [model.model_validate_json(p) for _k, p in payloads]

    def get_project(self, project_id: str) -> Optional[Project]:
        """Return the project with ``project_id``, or ``None``."""
        return self._read(lambda txn: self._repos.projects.get(txn, project_id))

    def find_project(self, ref: str) -> Project:
        """Return the project whose id, name or path is ``ref``.

        Raises:
            ProjectNotFound: nothing matches, or a name matches several projects.
        """
        direct = self.get_project(ref) if ref and "\x00" not in ref else None
        if direct is not None:
            return direct
        resolved = str(Path(ref).expanduser().resolve()) if ref else ""
        by_name = []
        for project in self.list_projects():
            if project.path in (ref, resolved):
                return project
            if project.name == ref:
                by_name.append(project)
        if len(by_name) == 1:
            return by_name[0]
        if by_name:
            raise ProjectNotFound(
                f"{len(by_name)} projects are named {ref!r}", hint="Use the project's id or path."
            )
        raise ProjectNotFound(f"no project {ref!r} in the cache")

    def put_projects(self, projects: Iterable[Union[Project, dict[str, Any]]]) -> int:
        """Insert or replace projects in one transaction; return how many were written."""
        return self._put_many("Project", projects, mutations.put_project)

    def delete_project(self, project_id: str) -> None:
        """Remove a project and all its deployments in one transaction.

        Raises:
            ProjectNotFound: no such project.
        """
        if not self._write(lambda txn: mutations.delete_project(txn, self._repos, project_id)):
            raise ProjectNotFound(f"no project {project_id!r} in the cache")

    # -- deployments ---------------------------------------------------------------

    def put_deployments(self, deployments: Iterable[Union[Deployment, dict[str, Any]]]) -> int:
        """Insert or replace deployments in one transaction, computing each one's state.

        Raises:
            InvalidRecordError: a record is invalid or names a project not in the cache.
        """
        return self._put_many("Deployment", deployments, mutations.put_deployment)

    def delete_deployment(self, project_id: str, artifact_key: str) -> bool:
        """Remove one deployment; return whether it existed."""
        return self._write(
            lambda txn: mutations.delete_deployment(txn, self._repos, project_id, artifact_key)
        )

    def list_deployments(
        self, project: Optional[str] = None, state: Optional[DeploymentState] = None
    ) -> list[Deployment]:
        """Return deployments, optionally of one project (id, name or path) and in one state.

        A state filter reads the ``deployments-by-state`` index; a project filter
        is a key-prefix scan.  Neither scans everything.
        """
        model = self._repos.deployments.model
        return [model.model_validate_json(p) for p in self.list_deployments_json(project, state)]

    def list_deployments_json(
        self, project: Optional[str] = None, state: Optional[DeploymentState] = None
    ) -> list[bytes]:
        """Like :meth:`list_deployments`, returning the stored JSON bytes (no models built)."""
        if state is not None and state not in _STATES:
            raise InvalidRecordError(f"state must be one of {', '.join(_STATES)}; got {state!r}")
        project_id = self.find_project(project).id if project is not None else None
        return self._read(
            lambda txn: listing.deployment_payloads(txn, self._repos, project_id, state)
        )

    # -- search ------------------------------------------------------------------------

    def search(
        self,
        query: str,
        type: Optional[str] = None,
        project: Optional[str] = None,
        limit: int = 20,
        offset: int = 0,
        *,
        collection: Optional[str] = None,
        tag: Optional[str] = None,
    ) -> SearchResults:
        """Find artifacts by words; every word must match, the last also as a prefix.

        Returns the page ``[offset, offset + limit)`` ranked by field (name >
        tags > title > description) then name; ``.total`` counts all matches.
        ``project`` (id, name or path) keeps artifacts deployed there.
        """
        from .models import SearchHit

        page, total = self.search_json(
            query, type, project, limit, offset, collection=collection, tag=tag
        )
        artifact_model = self._repos.artifacts.model
        hits = []
        for key, score, payload in page:
            artifact = artifact_model.model_validate_json(payload)
            hits.append(
                SearchHit(
                    key=key, name=artifact.name, type=artifact.type, score=score, artifact=artifact
                )
            )
        return SearchResults(hits, total)

    def search_json(
        self,
        query: str,
        type: Optional[str] = None,
        project: Optional[str] = None,
        limit: int = 20,
        offset: int = 0,
        *,
        collection: Optional[str] = None,
        tag: Optional[str] = None,
    ) -> tuple[list[tuple[str, float, bytes]], int]:
        """Like :meth:`search`, returning ``([(key, score, JSON bytes)], total)`` (no models)."""
        if limit < 0 or offset < 0:
            raise InvalidRecordError("limit and offset must not be negative")
        if type is not None and type not in codec.ARTIFACT_TYPES:
            raise InvalidRecordError(
                f"type must be one of {', '.join(codec.ARTIFACT_TYPES)}; got {type!r}"
            )
        project_id = self.find_project(project).id if project is not None else None
        filters = QueryFilters(type=type, collection=collection, tag=tag, project=project_id)
        repos = self._repos

        def body(txn: Txn) -> tuple[list[tuple[str, float, bytes]], int]:
            page, total = run_query(txn, repos, query, filters, limit, offset)
            found = []
            for key, score in page:
                payload = repos.artifacts.get_payload(txn, key)
                if payload is not None:  # index entry without record: verify reports it
                    found.append((key, score, payload))
            return found, total

        return self._read(body)

    # -- collections ---------------------------------------------------------------------

    def list_collections(self) -> list[Collection]:
        """Return every collection read by a refresh, in name order."""
        model = self._repos.collections.model
        payloads = self._read(lambda txn: list(self._repos.collections.scan_payloads(txn)))
        return [model.model_validate_json(p) for _k, p in payloads]

    def get_collection(self, name: str) -> Optional[Collection]:
        """Return the collection named ``name``, or ``None``."""
        return self._read(lambda txn: self._repos.collections.get(txn, name))

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
            read=self._read, write=self._write, repos=lambda: self._repos, settings=self.settings
        )
        return run_refresh(
            ctx,
            collections=None if collections is None else list(collections),
            projects=None if projects is None else list(projects),
            full=full,
            stale_only=stale_only,
            progress=progress,
        )

    def invalidate(self, project: Optional[str] = None, collection: Optional[str] = None) -> int:
        """Mark a project (id, name or path), a collection (name), or everything as stale.

        Returns how many were marked.  Data stays readable until the next
        refresh replaces it; ``refresh(stale_only=True)`` re-reads just these.
        """
        repos = self._repos
        if project is None and collection is None:
            projects: list[Project] = self.list_projects()
            collections: list[Collection] = self.list_collections()
        else:
            projects = [self.find_project(project)] if project is not None else []
            collections = []
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
        self._write(lambda txn: mutations.clear_all(txn, self._storage.dbs))

    def stats(self) -> CacheStats:
        """Counts, bytes, map size, hit/miss counters and freshness (one pass over projects)."""
        from .stats import collect_stats

        self._check_open()
        return collect_stats(self._storage, self._repos, self._hits, self._misses)

    def verify(self, repair: bool = False, sources: bool = False) -> VerifyReport:
        """Check the file, every frame, record and index; optionally the sources on disk.

        With ``repair`` every repairable finding is fixed: indexes rebuilt,
        bad records dropped and re-read from source, and a damaged environment
        moved aside (kept for inspection) and rebuilt from what still reads and
        from source.  Cost: reads the whole cache (and copies it once).
        """
        from .recovery import verify_cache

        self._check_open()
        if repair:
            self._check_writable()
        return verify_cache(self, repair=repair, sources=sources)

    def backup(self, dest: Union[str, Path], compact: bool = True) -> Path:
        """Write a consistent copy of the cache into directory ``dest``; return its path.

        ``dest`` is created if needed and must not already hold a cache.  With
        ``compact`` free pages are omitted (smaller, slower).  Readers and
        writers go on meanwhile (the copy reads one snapshot).
        """
        target = Path(dest).expanduser().resolve()
        if (target / "data.mdb").exists():
            raise InvalidRecordError(f"{target} already holds a cache; choose an empty directory")
        self._check_open()
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._storage.copy(target, compact=compact)
        return target
