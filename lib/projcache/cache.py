"""``ProjectCache``: the facade that users hold.

This module holds its lifecycle (open, source-direct fallback, rebuild,
close) and the transaction plumbing; the methods come in layers of mixins:
reads (:mod:`projcache.reads`), writes (:mod:`projcache.writes`), refresh
and maintenance (:mod:`projcache.maintenance`).

Every public mutation is exactly one LMDB write transaction covering the
records and all their index entries, so readers in any process see all of a
change or none of it.  Reads never block (LMDB MVCC) and never hold a
transaction across calls; a listing is one read transaction (one snapshot),
streamed while its iterator is open.

A little over 400 lines on purpose: opening, the source-direct fallback, the
rebuild of a damaged environment and closing are one state machine (which
storage, which settings, which mode) and are read together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

from .config import Settings, load_settings
from .errors import (
    CacheClosedError,
    CacheCorruptError,
    CacheDisabledError,
    CacheNotFoundError,
    CachePermissionError,
    CorruptRecordError,
    ProjcacheError,
    ReadOnlyCacheError,
    SchemaVersionError,
    StorageError,
)
from .logs import get_logger
from .maintenance import CacheMaintenance
from .migrate import SCHEMA_VERSION, ensure_schema, read_schema
from .repository import Repositories
from .search_reads import SearchResults
from .storage import Storage, Txn
from .views import CacheViews

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Callable, Optional, TypeVar, Union

    from .direct import DirectStore
    from .migrate import MigrationProgress
    from .models import (
        VerifyReport,
    )
    from .recovery import CacheAccess, RecoveryResult

# CacheDisabledError lives in errors.py; the import above keeps ``projcache.cache`` importing it.
__all__ = ["ProjectCache", "SearchResults"]

logger = get_logger(__name__)

if TYPE_CHECKING:
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


class ProjectCache(CacheMaintenance, CacheViews):
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
        # The throwaway store of a source-direct handle (see projcache.direct).
        self._direct: Optional[DirectStore] = None

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
                return cls._open_direct(settings, "the cache is disabled by configuration")
            raise CacheDisabledError("the cache is disabled by configuration")
        try:
            return cls._open(settings, readonly, progress)
        except CacheCorruptError as exc:
            if settings.auto_repair and not readonly:
                from .recovery import rebuild

                logger.warning(
                    "the cache in %s is damaged (%s); repairing it", settings.cache_dir, exc
                )
                rebuild(settings, cls._open_access)
                return cls._open(settings, readonly, progress)
            if fallback:
                return cls._open_direct(settings, f"the cache in {settings.cache_dir} is damaged")
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
            return cls._open_direct(
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

    @classmethod
    def _open_direct(cls, settings: Settings, reason: str) -> ProjectCache:
        """A source-direct handle: a throwaway store read from the sources (projcache.direct)."""
        from .direct import DirectStore

        store = DirectStore(settings, reason)
        try:
            cache = cls._open(store.settings, False)
        except BaseException:
            store.remove()
            raise
        cache._direct = store
        try:
            store.fill(cache.refresh)
        except BaseException:
            cache.close()
            raise
        return cache

    @property
    def direct_reason(self) -> Optional[str]:
        """Why this handle reads straight from the source files, or ``None`` for a real cache."""
        return None if self._direct is None else self._direct.reason

    @property
    def is_direct(self) -> bool:
        """True when this handle reads straight from the source files (source-direct mode)."""
        return self._direct is not None

    @property
    def direct(self) -> Optional[str]:
        """Deprecated alias of :attr:`direct_reason` (it reads like a boolean; it is not one).

        Use :attr:`is_direct` to test, :attr:`direct_reason` for the reason.
        """
        warnings.warn(
            "ProjectCache.direct is deprecated; use .is_direct or .direct_reason",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.direct_reason

    @property
    def _scratch(self) -> Optional[Path]:
        """The folder of a source-direct handle's throwaway store (removed on close)."""
        return None if self._direct is None else self._direct.scratch

    @classmethod
    @contextlib.contextmanager
    def _open_access(cls, settings: Settings) -> Iterator[CacheAccess]:
        """Open a fresh cache for a rebuild and hand recovery access to it."""
        with cls.open(settings=settings) as cache:
            yield cache._access()

    @classmethod
    def repair_unopenable(
        cls, path: Union[str, Path, None] = None, *, settings: Optional[Settings] = None
    ) -> VerifyReport:
        """Rebuild a cache that cannot even be opened; report it as a repaired file finding.

        For ``verify --repair`` when :meth:`open` raises
        :class:`~projcache.errors.CacheCorruptError`: the damaged files are moved
        aside (kept), what still reads is carried over and the rest re-read from
        source, as :meth:`verify` with ``repair`` does for a cache it could open.
        The directory is ``path``, else the configured one.
        """
        from .recovery import repair_unopenable

        if settings is None:
            settings = load_settings(dir=str(path) if path is not None else None)
        elif path is not None:
            settings = dataclasses.replace(settings, cache_dir=Path(path))
        return repair_unopenable(settings, cls._open_access)

    def _rebuild(self) -> RecoveryResult:
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
            return rebuild(self.settings, type(self)._open_access)
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
            if self._direct is not None:
                self._direct.remove()

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
        if not hits and not misses:  # (no counters to add: no wrapper around fn)
            return self._storage.write(fn)

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
