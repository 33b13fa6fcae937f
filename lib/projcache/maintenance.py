"""Refresh and maintenance of :class:`~projcache.cache.ProjectCache`.

A mixin, like :class:`~projcache.reads.CacheReads` and
:class:`~projcache.writes.CacheWrites`: refresh from source, the remembered
roots, invalidation, clear, statistics, verify (and its repair through
:mod:`projcache.recovery`, handed a :class:`~projcache.recovery.CacheAccess`)
and backup.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import CacheCorruptError, InvalidArgumentError, NotFoundError, translate_os_error
from .logs import get_logger
from .writes import CacheWrites

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional, TypeVar, Union

    from .config import Settings
    from .models import CacheStats, Collection, RefreshReport, VerifyReport
    from .recovery import CacheAccess, RecoveryResult
    from .refresh import PathLike, Progress
    from .roots import SourceRoots
    from .storage import Txn

__all__ = ["CacheMaintenance"]

logger = get_logger(__name__)

if TYPE_CHECKING:
    T = TypeVar("T")


class CacheMaintenance(CacheWrites):
    """Refresh and maintenance methods shared by every :class:`~projcache.cache.ProjectCache`."""

    settings: Settings

    if TYPE_CHECKING:

        @property
        def path(self) -> Path: ...

        def _check_writable(self) -> None: ...

        def _rebuild(self) -> RecoveryResult: ...

    def _access(self) -> CacheAccess:
        """What recovery needs from this handle (projcache.recovery does not import the facade)."""
        from .recovery import CacheAccess

        def cached_folders() -> tuple[set[str], set[str]]:
            return (
                {c.path for c in self.list_collections()},
                {p.path for p in self.list_projects()},
            )

        return CacheAccess(
            settings=self.settings,
            read=self._read,
            write=self._write,
            repos=lambda: self._repos,
            storage=lambda: self._storage,
            refresh=self.refresh,
            cached_folders=cached_folders,
        )

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
        return verify_cache(
            self._access(),
            repair=repair,
            sources=sources,
            rebuild_in_place=self._rebuild,
            progress=progress,
        )

    def backup(self, dest: Union[str, Path], compact: bool = True) -> Path:
        """Write a consistent copy of the cache into directory ``dest``; return its path.

        ``dest`` is created if needed and must not already hold a cache.  With
        ``compact`` free pages are omitted (smaller, slower).  Readers and
        writers go on meanwhile (the copy reads one snapshot).

        Raises:
            InvalidArgumentError: ``dest`` already holds a cache (an argument, not a record).
        """
        target = Path(dest).expanduser().resolve()
        if os.path.lexists(target / "data.mdb"):
            raise InvalidArgumentError(f"{target} already holds a cache; choose an empty directory")
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
