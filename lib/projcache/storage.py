"""The LMDB environment: opening, sub-databases, transactions, growth, fork and reader hygiene.

Hazards this module exists to contain (each learned from py-lmdb's users):

* Opening one environment twice in a process corrupts LMDB's locks (POSIX
  fcntl locks belong to the process, so closing either copy drops both).  A
  process-wide registry hands out one :class:`Storage` per directory.
* An environment must not be used across ``fork()``.  A child detects the fork
  and reopens before its first use.
* ``MapFullError`` can come from ``put`` *or* from ``commit``.  The whole
  transaction is aborted, the map grown under an inter-process ``flock`` and
  the transaction replayed, which is why writes are callables, not blocks.
* Another process growing the map makes our next ``begin`` fail with
  ``MapResizedError``; ``set_mapsize(0)`` adopts the new size.
* Slots of killed readers stay taken until ``reader_check()`` clears them; it
  runs on open and whenever ``ReadersFullError`` is seen.
* ``writemap`` is off: with it, a full disk kills the process with SIGBUS, processes
  opening one environment with and without it defeat LMDB's durability (LMDB's own
  warning: the CLI, the server and older versions share caches), and it saves no flush
  (the data pages are ``msync``-ed, then the meta page: the same two flushes; a durable
  put measured the same with and without it, docs/cache/performance.md).
* Threads: ``set_mapsize`` must not race other threads' transactions (a read
  begun meanwhile fails with EINVAL), and py-lmdb 3.0's write-transaction
  ``abort`` waits for every in-flight operation of the environment, so busy
  reader threads can starve it.  :class:`~projcache.mapguard.MapGuard` holds
  reads back during both.

Over 400 lines on purpose: every hazard above is handled by the same object at
the same moment (a write replays after growth, a read adopts another process's
growth, a reopen after fork resets the registry and the guard), under one
write lock and one :class:`MapGuard`; split apart, each piece would need the
others' private state.  The sub-database names live in :mod:`projcache.vocabulary`,
the folder checks in :mod:`projcache.cachedir`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import time
import zlib

# Locks from ``_thread`` (``threading.Lock`` and ``threading.RLock`` are its ``allocate_lock``
# and ``RLock``): importing ``threading`` costs a cold CLI read ~0.8 ms, and only a map resize
# needs it (MapGuard's condition).
from _thread import RLock, allocate_lock
from collections.abc import Iterator
from pathlib import Path

import lmdb

from . import cachedir, codec
from .config import Settings
from .errors import (
    CacheAlreadyOpenError,
    CacheBusyError,
    CacheClosedError,
    CacheFullError,
    CacheNotFoundError,
    CachePermissionError,
    CorruptRecordError,
    ReadOnlyCacheError,
    StorageError,
    translate_lmdb_error,
    translate_os_error,
)
from .logs import get_logger
from .mapguard import MapGuard
from .vocabulary import DATABASES

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, ClassVar, Optional, TypeVar

__all__ = ["DATABASES", "Storage", "Txn", "before_commit", "run_before_commit", "scan"]

logger = get_logger(__name__)

if TYPE_CHECKING:
    T = TypeVar("T")
    S = TypeVar("S")
if TYPE_CHECKING:
    # Transactions are opened with buffers=False, so they hand out bytes.
    Txn = lmdb.Transaction[bytes]
else:
    Txn = lmdb.Transaction

# name -> dupsort, written out once in vocabulary.py (re-exported here).
# Sub-databases whose flags changed since schema 2: a v2 cache has them dupsort,
# and they are opened that way until the migration replaces them.
_LEGACY_DUPSORT = frozenset({"search-tokens"})
_NEW_IN_V3 = frozenset({"search-pending", "artifact-ids", "artifact-keys"})

# The point read's inline check of a plain frame (see codec.checked_payload).
_FRAME_HEAD = struct.Struct(">BI").unpack_from
_PLAIN = codec.FORMAT_VERSION
_FAILED = object()  # (get_payload: the read raised, as opposed to a miss)
_crc32 = zlib.crc32

# id(write transaction) -> callbacks run just before it commits (see before_commit).
_before_commit: dict[int, list[Callable[[], None]]] = {}


def before_commit(txn: Txn, callback: Callable[[], None]) -> None:
    """Run ``callback`` just before ``txn`` commits in :meth:`Storage.write` (once).

    Write-back caches (the bitmap index's tail) use it to write what they
    gathered during the transaction; an aborted transaction drops them.
    """
    _before_commit.setdefault(id(txn), []).append(callback)


def run_before_commit(txn: Txn) -> None:
    """Run and forget ``txn``'s pre-commit callbacks (for code committing a raw transaction)."""
    for callback in _before_commit.pop(id(txn), ()):
        callback()


def scan(
    txn: Txn, db: Any, prefix: bytes = b"", start: bytes = b""
) -> Iterator[tuple[bytes, bytes]]:
    """Yield ``(key, value)`` of ``db`` for keys starting with ``prefix``, from ``start`` on."""
    cursor = txn.cursor(db)
    first = max(prefix, start)
    if not (cursor.set_range(first) if first else cursor.first()):
        return
    for key, value in cursor.iternext():
        if prefix and not key.startswith(prefix):
            return
        yield key, value


MAX_READERS = 1024
_MAX_DBS = len(DATABASES) + 6  # headroom for future indexes without a format change
_NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "9p", "fuse.sshfs", "ceph"}
_RETRIES = 64
_OPEN_SLOT_WAIT = 3.0  # seconds an opener waits for a reader slot
# Times an opener adopts a map another process grew while it opened (each retry follows
# a commit of that process that grew the map again: a handful is plenty).
_OPEN_RESIZE_RETRIES = 5

_registry_lock = allocate_lock()
_registry: dict[tuple[int, int], Storage] = {}
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation, _registry_lock
    _fork_generation += 1
    _registry_lock = allocate_lock()  # a lock held by another thread at fork stays held


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _filesystem_type(path: Path) -> Optional[str]:
    """Return the filesystem type holding ``path`` from /proc/self/mountinfo, if known."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    best, fstype = "", None
    target = str(path)
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount = fields[4].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, fstype = mount, right.split()[0]
    return fstype


class Storage:
    """One open LMDB environment for a cache directory, shared by everyone in the process.

    Obtain it with :meth:`acquire` and give it back with :meth:`release`; the
    environment closes when the last user releases it.  Reads and writes are
    callables run inside a transaction (:meth:`read`, :meth:`write`) so they
    can be replayed after a map growth.
    """

    _durability_flags: ClassVar[dict[str, tuple[bool, bool]]] = {
        # mode -> (sync, metasync)
        "full": (True, True),
        "no-metasync": (True, False),
        "none": (False, False),
    }

    def __init__(self, path: Path, settings: Settings, readonly: bool, key: tuple[int, int]):
        self.path = path
        self.settings = settings
        self.readonly = readonly
        self._key = key
        self._refs = 1
        self._closed = False
        self._write_lock = RLock()
        self._guard = MapGuard()
        self._fork_generation = _fork_generation
        self._replaced: dict[str, Any] = {}
        self.env, self.dbs = self._open_env()
        # The file's size when opened: closing after a big, scattered write compacts it.
        self._opened_pages = int(self.env.info()["last_pgno"]) + 1

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    def acquire(cls, path: Path, settings: Settings, readonly: bool) -> Storage:
        """Open (or share) the environment in ``path``.

        Creates the directory (mode 0700) and the environment when writable and
        missing.  Refuses network filesystems, where LMDB's locking is unsafe.

        Raises:
            CacheNotFoundError: ``readonly`` and no cache exists there.
            CacheAlreadyOpenError: already open read-only here, and a writer is asked for.
            CachePermissionError: the directory cannot be created or opened.
            UnsafeCacheDirError: another user could write the folder or its files.
        """
        path = Path(os.path.abspath(os.fspath(path)))
        if path.is_dir():
            cachedir.check_folder(path)  # before anything else looks inside (see _open_env)
        if not (path / "data.mdb").exists():
            if readonly and (path.is_dir() or not os.path.lexists(path)):
                raise CacheNotFoundError(f"no cache in {path}")
            if readonly:
                raise StorageError(f"{path} is not a cache directory (it is a file)")
            try:
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except PermissionError as exc:
                raise CachePermissionError(f"cannot create cache directory {path}") from exc
            except OSError as exc:
                raise StorageError(f"cannot create cache directory {path}: {exc}") from exc
        st = path.stat()
        key = (st.st_dev, st.st_ino)
        with _registry_lock:
            shared = _registry.get(key)
            if shared is not None and shared._fork_generation != _fork_generation:
                # Inherited from the parent: py-lmdb refuses a second open of the
                # same files until the inherited copy is closed, so reopen it here.
                shared._reopen_env()
            if shared is not None:
                if shared.readonly and not readonly:
                    raise CacheAlreadyOpenError(f"{path} is already open read-only in this process")
                shared._refs += 1
                return shared
            storage = cls(path, settings, readonly, key)
            _registry[key] = storage
            return storage

    def release(self) -> None:
        """Give back one reference; the environment closes with the last one."""
        with _registry_lock:
            if self._closed:
                return
            self._refs -= 1
            if self._refs > 0:
                return
            self._closed = True
            if _registry.get(self._key) is self:
                del _registry[self._key]
        if self._fork_generation == _fork_generation:
            compact = self._worth_compacting()
            map_size = int(self.env.info()["map_size"])
            self.env.close()
            if compact:
                self._compact(map_size)

    def _worth_compacting(self) -> bool:
        """Tell whether this handle's writes left a file worth rewriting (projcache.compaction)."""
        if self.readonly or self.legacy:
            return False
        from . import compaction

        try:
            return compaction.worth_compacting(self.env, self.dbs, self._opened_pages)
        except Exception as exc:  # an optional saving of space must never fail a close
            logger.warning("could not size up %s for compaction: %s", self.path, exc)
            return False

    def _compact(self, map_size: int) -> None:
        """Rewrite the closed environment's file with full pages, if nobody else has it open."""
        from . import compaction

        try:
            sizes = compaction.compact(self.path, map_size)
        except Exception as exc:  # the file is as it was (only space is lost): close goes on
            logger.warning("could not compact %s: %s", self.path, exc)
            return
        if sizes is not None:
            logger.info("compacted %s: %d -> %d bytes", self.path, *sizes)

    @property
    def refs(self) -> int:
        """How many handles in this process share this environment."""
        return self._refs

    @property
    def closed(self) -> bool:
        """True once the last reference was released."""
        return self._closed

    def _open_env(self) -> tuple[lmdb.Environment, dict[str, Any]]:
        # Checked only when an environment is really opened, not on every shared acquire.
        fstype = _filesystem_type(self.path.resolve())
        if fstype in _NETWORK_FS:
            raise StorageError(
                f"{self.path} is on a network filesystem ({fstype}); "
                "LMDB's locks do not work there",
                hint="Point PROJCACHE_DIR at a local disk.",
            )
        # Another user's writable folder, or a planted lock.mdb/data.mdb link, is
        # refused before LMDB opens (and writes) anything; see projcache.cachedir.
        cachedir.check_folder(self.path)
        created = [] if self.readonly else cachedir.prepare_files(self.path, MAX_READERS)
        try:
            env, dbs = self._open_checked_env()
        except BaseException:
            cachedir.remove_created(created)
            raise
        return env, dbs

    def _open_checked_env(self) -> tuple[lmdb.Environment, dict[str, Any]]:
        sync, metasync = self._durability_flags[self.settings.durability]
        options: dict[str, Any] = {
            "map_size": self.settings.map_size,
            "subdir": True,
            "readonly": self.readonly,
            "create": not self.readonly,
            "sync": sync,
            "metasync": metasync,
            "writemap": False,
            "max_readers": MAX_READERS,
            "max_dbs": _MAX_DBS,
            "max_spare_txns": 0,
            "mode": 0o600,
        }
        try:
            env = self._open_waiting_for_a_slot(options)
        except lmdb.Error as exc:
            if not (self.readonly and getattr(exc, "code", 0) in (errno.EACCES, errno.EROFS)):
                raise translate_lmdb_error(exc, path=str(self.path)) from exc
            # Someone else's cache, or a read-only mount: LMDB opens lock.mdb for
            # writing even to read.  Without the lock file a reader is not seen by
            # writers, so a concurrent writer may reuse pages under it; the frame
            # checks turn such a torn read into CorruptRecordError, never garbage.
            logger.warning(
                "cannot write the lock file of %s; reading it without LMDB's lock", self.path
            )
            try:
                env = lmdb.open(str(self.path), lock=False, **options)
            except lmdb.Error as again:
                raise translate_lmdb_error(again, path=str(self.path)) from again
        try:
            cleared = env.reader_check()
            if cleared:
                logger.info("cleared %d stale reader slot(s) in %s", cleared, self.path)
            dbs = self._open_dbs(env)
        except lmdb.Error as exc:
            env.close()
            raise translate_lmdb_error(exc, path=str(self.path)) from exc
        except BaseException:
            env.close()
            raise
        return env, dbs

    def _open_waiting_for_a_slot(self, options: dict[str, Any]) -> lmdb.Environment:
        """``lmdb.open``, waiting a little while the reader table is full.

        py-lmdb's Environment begins a read transaction inside its constructor,
        so an opener needs a free reader slot *before* it could run
        ``reader_check``.  Slots of killed processes are freed by any process
        that has the cache open and reads (its read hits ReadersFullError and
        clears them), or reset when the last process using the cache exits.
        """
        deadline = time.monotonic() + _OPEN_SLOT_WAIT
        delay = 0.005
        while True:
            try:
                return lmdb.open(str(self.path), **options)
            except lmdb.ReadersFullError as exc:
                if time.monotonic() >= deadline:
                    raise CacheBusyError(
                        f"all reader slots of {self.path} are taken",
                        hint="Slots of killed processes are freed when a process that has the "
                        "cache open reads, or when every process using it has exited; retry.",
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _open_dbs(self, env: lmdb.Environment) -> dict[str, Any]:
        # Another process may grow the map between lmdb.open() and the first transaction
        # here: that transaction then fails with MDB_MAP_RESIZED.  Nothing of this
        # environment is in use yet (no other transaction, no other thread has it), so
        # the new size is adopted at once and the handles are opened again.
        for _attempt in range(_OPEN_RESIZE_RETRIES):
            try:
                return self._open_dbs_once(env)
            except lmdb.MapResizedError:
                env.set_mapsize(0)
        return self._open_dbs_once(env)

    def _open_dbs_once(self, env: lmdb.Environment) -> dict[str, Any]:
        self.legacy: set[str] = set()
        if self.readonly:
            # Without a transaction py-lmdb opens each handle in its own read
            # transaction; a handle opened in a read transaction we pass in is
            # discarded when that transaction ends (seen with py-lmdb 3.0).
            dbs: dict[str, Any] = {}
            for name, dupsort in DATABASES.items():
                try:
                    dbs[name] = self._open_db(env, None, name, dupsort, create=False)
                except lmdb.NotFoundError as exc:
                    if name == "meta" or name not in _NEW_IN_V3:
                        raise CacheNotFoundError(
                            f"{self.path} holds no projcache cache (a sub-database is missing)"
                        ) from exc
                    # An older cache: its schema check refuses it with a clear message.
                    dbs[name] = None
            return dbs
        with env.begin(write=True) as txn:
            return {
                name: self._open_db(env, txn, name, dupsort, create=True)
                for name, dupsort in DATABASES.items()
            }

    def _open_db(
        self, env: lmdb.Environment, txn: Optional[Txn], name: str, dupsort: bool, create: bool
    ) -> Any:
        try:
            return env.open_db(name.encode(), txn=txn, dupsort=dupsort, create=create)
        except lmdb.IncompatibleError:
            if name not in _LEGACY_DUPSORT:
                raise
            self.legacy.add(name)  # a schema-2 cache: the migration replaces it
            return env.open_db(name.encode(), txn=txn, dupsort=True, create=False)

    def replace_db(self, txn: Txn, name: str) -> Any:
        """Drop sub-database ``name`` and create it anew with its v3 flags, inside ``txn``.

        The new handle is installed in :attr:`dbs` (a new dict, so repositories
        rebuild) only once ``txn`` commits: see :func:`before_commit`.
        """
        txn.drop(self.dbs[name], delete=True)
        handle = self.env.open_db(name.encode(), txn=txn, dupsort=DATABASES[name], create=True)
        self._replaced[name] = handle
        return handle

    def _live_env(self) -> lmdb.Environment:
        if self._closed:
            raise CacheClosedError(f"the cache in {self.path} is closed")
        if self._fork_generation != _fork_generation:
            with _registry_lock:
                if self._fork_generation != _fork_generation:
                    self._reopen_env()
                _registry[self._key] = self
        return self.env

    def live_dbs(self) -> dict[str, Any]:
        """The sub-database handles, after reopening if this process was forked.

        Handles belong to one environment: callers that cache objects built on
        them (repositories) must rebuild those when this returns a new dict.
        """
        self._live_env()
        return self.dbs

    def _reopen_env(self) -> None:
        # The child must not use the parent's environment.  Closing our copy
        # drops only this process's mappings and locks; py-lmdb refuses a
        # second open until it is closed.  Hazard: a read transaction that
        # another thread of the parent held at fork time loses its slot here.
        # Called with _registry_lock held.
        logger.debug("fork detected; reopening %s in pid %d", self.path, os.getpid())
        self._write_lock = RLock()
        self._guard = MapGuard()  # its lock may have been held by a parent thread at fork
        with contextlib.suppress(lmdb.Error):
            self.env.close()
        self.env, self.dbs = self._open_env()
        self._fork_generation = _fork_generation

    # -- transactions --------------------------------------------------------

    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a read transaction and return its result.

        Never blocks on writers (LMDB MVCC); waits only while this process
        resizes the map.  ``fn`` may be run again after a ``MapResizedError``,
        so it must not have side effects.

        Raises:
            CacheBusyError: every reader slot is taken, even after clearing stale ones.
        """
        for attempt in range(_RETRIES):
            env = self._live_env()
            resized = False
            self._guard.enter_read()
            try:
                with env.begin() as txn:
                    return fn(txn)
            except lmdb.MapResizedError:
                resized = True  # adopted below, once our read share is given back
            except lmdb.ReadersFullError as exc:
                if env.reader_check() == 0 and attempt >= 2:
                    raise CacheBusyError(
                        f"all {MAX_READERS} reader slots of {self.path} are in use"
                    ) from exc
            except lmdb.Error as exc:
                raise translate_lmdb_error(exc, path=str(self.path)) from exc
            finally:
                self._guard.exit_read()
            if resized:
                self._adopt_map_size()
        raise CacheBusyError(f"could not get a stable read transaction on {self.path}")

    def stream(
        self, step: Callable[[Txn, S], tuple[list[T], Optional[S]]], start: S
    ) -> Iterator[T]:
        """Yield what ``step`` reads, chunk by chunk, all from one read transaction.

        One call is one snapshot: ``step(txn, state)`` returns a chunk of items
        and the state to resume from (``None`` when done), and every chunk is
        read in the same transaction, so a listing never mixes two writes.
        The map guard's read share is held only while a chunk is read, never
        between chunks: a slow (or abandoned) consumer pins old pages, like any
        LMDB reader, but never blocks map growth or a write's abort, and the
        thread consuming the listing may write meanwhile.

        If this process replaces the map meanwhile (growth; py-lmdb then
        invalidates open transactions) the transaction is begun again, which is
        the same snapshot only if nothing was committed in between.  When it is
        not, a listing that has yielded nothing yet starts over from ``start`` in
        the new snapshot (the caller has seen nothing of the old one).

        Raises:
            CacheBusyError: the map grew and a write committed after the listing
                had yielded items, so its snapshot is gone; call again.
        """
        txn: Optional[Txn] = None
        snapshot: Optional[int] = None
        state: Optional[S] = start
        emitted = False
        try:
            while state is not None:
                current: S = state
                for attempt in range(_RETRIES):
                    env = self._live_env()
                    resized = False
                    fresh = txn is None
                    self._guard.enter_read()
                    try:
                        if txn is None:
                            txn = env.begin()
                            if snapshot is None or not emitted:
                                if snapshot is not None and txn.id() != snapshot:
                                    current = start  # nothing seen yet: start over
                                snapshot = txn.id()
                            elif txn.id() != snapshot:
                                raise CacheBusyError(
                                    f"the cache in {self.path} changed while a listing was read "
                                    "and the map grew meanwhile; the listing's snapshot is gone",
                                    hint="Run the listing again.",
                                )
                        items, state = step(txn, current)
                        break
                    except lmdb.MapResizedError:
                        resized, txn = True, None
                    except lmdb.ReadersFullError as exc:
                        txn = None
                        if env.reader_check() == 0 and attempt >= 2:
                            raise CacheBusyError(
                                f"all {MAX_READERS} reader slots of {self.path} are in use"
                            ) from exc
                    except lmdb.Error as exc:
                        if fresh:
                            raise translate_lmdb_error(exc, path=str(self.path)) from exc
                        # Invalidated between chunks (a resize in another thread, a
                        # reopen after fork): begin again, same snapshot or error.
                        txn = None
                    finally:
                        self._guard.exit_read()
                    if resized:
                        self._adopt_map_size()
                else:
                    raise CacheBusyError(f"could not get a stable read transaction on {self.path}")
                emitted = emitted or bool(items)
                yield from items
        finally:
            if txn is not None:
                with contextlib.suppress(lmdb.Error):
                    txn.abort()

    def get_payload(self, db_name: str, key: bytes) -> Optional[bytes]:
        """Return the checked JSON of ``key``'s frame in one sub-database, or ``None``.

        The point read of a record (:func:`projcache.codec.checked_payload`): the
        value is copied out of the map by the read (a record is small: a copy costs
        less than a ``buffers=True`` view and the copy of the JSON out of it) and its
        CRC checked after the transaction ended; a plain frame's JSON is then one more
        slice.  The map guard's share is taken inline (its slow path only while a
        resize is pending), and on any LMDB error this falls back to :meth:`read`.

        Raises:
            CorruptRecordError: the frame fails its check (naming the record).
            CacheClosedError: the storage is closed.
        """
        if self._closed or self._fork_generation != _fork_generation:
            self._live_env()  # raises when closed, reopens after a fork
        guard = self._guard
        active = guard._active
        active.append(None)
        if guard._resizing:  # a resize is pending: wait for it like any reader
            active.pop()
            guard.enter_read()
        raw: Any = _FAILED
        try:
            # The transaction is a temporary: CPython frees it as soon as get()
            # returns, which aborts the read as abort() or `with` would (py-lmdb's
            # dealloc), before the guard's share is given back below; no context
            # manager, no abort() call, and `db` positional: ~0.3 us of a ~3 us read.
            raw = self.env.begin(self.dbs[db_name]).get(key)
        except lmdb.Error:
            raw = _FAILED
        finally:
            active.pop()
        if raw is _FAILED:  # an LMDB error: read() recovers or translates it
            raw = self.read(lambda txn: txn.get(key, db=self.dbs[db_name]))
        if raw is None:
            return None
        # The plain frame inline (the usual case): codec.checked_payload's checks.
        if len(raw) >= 5:
            version, crc = _FRAME_HEAD(raw)
            if version == _PLAIN:
                plain: bytes = raw[5:]
                if _crc32(plain) == crc:
                    return plain
        payload = codec.checked_payload(raw)
        if payload is not None:
            return payload
        # The frame failed its check: unframe raises the error naming the record.
        codec.unframe(raw, what=f"{db_name}[{key.decode('utf-8', 'replace')!r}]")
        raise CorruptRecordError(f"{db_name}: a frame failed its check")  # pragma: no cover

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in one write transaction, commit it, and return ``fn``'s result.

        Writers queue on LMDB's writer lock (one at a time across processes).
        On ``MapFullError`` (from a put or from the commit) the transaction is
        aborted, the map grown and ``fn`` replayed from the start, so ``fn``
        must only touch the transaction.  Nothing partial is ever committed.

        Raises:
            ReadOnlyCacheError: the cache was opened read-only.
            CacheFullError: the map would exceed ``max_map_size``.
            DiskFullError: the filesystem is full.
        """
        if self.readonly:
            raise ReadOnlyCacheError(f"the cache in {self.path} is open read-only")
        with self._write_lock:
            for _attempt in range(_RETRIES):
                env = self._live_env()
                try:
                    txn = env.begin(write=True)
                except lmdb.MapResizedError:
                    self._adopt_map_size()
                    continue
                except lmdb.Error as exc:
                    raise translate_lmdb_error(exc, path=str(self.path)) from exc
                self._replaced = {}
                try:
                    result = fn(txn)
                    run_before_commit(txn)
                    txn.commit()
                    if self._replaced:
                        self.dbs = {**self.dbs, **self._replaced}
                        self.legacy.difference_update(self._replaced)
                        self._replaced = {}
                    return result
                except lmdb.MapFullError:
                    _before_commit.pop(id(txn), None)
                    self._abort(txn)
                    # The size this transaction ran with, read only now (env.info() builds a
                    # dict: ~2 us of every single write): only this process's set_mapsize
                    # changes it, and every caller of that holds the write lock we hold.
                    self._grow(env.info()["map_size"])
                except lmdb.MapResizedError:
                    _before_commit.pop(id(txn), None)
                    self._abort(txn)
                    self._adopt_map_size()
                except lmdb.Error as exc:
                    _before_commit.pop(id(txn), None)
                    self._abort(txn)
                    raise translate_lmdb_error(exc, path=str(self.path)) from exc
                except OSError as exc:
                    _before_commit.pop(id(txn), None)
                    self._abort(txn)
                    if exc.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", 0)):
                        raise translate_os_error(exc, path=str(self.path)) from exc
                    raise
                except BaseException:
                    _before_commit.pop(id(txn), None)
                    self._abort(txn)
                    raise
        raise CacheBusyError(f"the write to {self.path} kept losing the race to grow the map")

    def _abort(self, txn: Txn) -> None:
        # py-lmdb 3.0 makes a write transaction's abort wait until no operation
        # of any thread is in flight on the environment; readers that never
        # pause starve it forever (seen with 4 reader threads on 2 cores).
        # Holding new reads back for the abort lets it through.
        self._guard.exclusive(txn.abort)

    def _adopt_map_size(self) -> None:
        # No write transaction (write lock) and no read transaction (guard) may
        # be active in this process while the map is replaced.
        with self._write_lock:
            self._guard.exclusive(lambda: self.env.set_mapsize(0))

    @contextlib.contextmanager
    def _growth_lock(self) -> Iterator[None]:
        # Imported here: only a growing writer locks, so a cold read never loads fcntl.
        try:  # POSIX only; on other platforms growth is not coordinated across processes.
            import fcntl
        except ImportError:  # pragma: no cover
            yield
            return
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path / "grow.lock", flags, 0o600)
        except OSError as exc:
            raise translate_os_error(exc, path=str(self.path)) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _grow(self, size_before: int) -> None:
        """Grow the map (doubling) unless another process already did; called with no txn open."""
        with self._growth_lock():
            self._guard.exclusive(lambda: self._resize(size_before))

    def reserve(self, extra: int) -> None:
        """Grow the map ahead of a big write so it is not replayed at every doubling.

        A write that fills the map is aborted and replayed after the map
        doubled; for one huge transaction (the first refresh of a big
        collection) that replays the whole transaction several times.  This
        grows the map once, geometrically (doubling until it holds the pages in
        use plus ``extra`` bytes, capped at ``max_map_size``), before the write
        begins.  The map is only address space: a larger one costs no disk.
        Must be called with no transaction open in this thread.
        """
        if self.readonly or extra <= 0:
            return
        info = self.info()
        needed = (info["last_pgno"] + 1) * self.page_size() + extra
        size = info["map_size"]
        if needed <= size:
            return
        target = size
        while target < needed:
            target *= 2
        target = min(target, self.settings.max_map_size)
        if target <= size:
            return  # at the limit already: the write itself reports CacheFullError
        logger.info("growing the map of %s from %d to %d bytes ahead of a write", self.path,
                    size, target)  # fmt: skip
        with self._write_lock, self._growth_lock():
            self._guard.exclusive(lambda: self._resize_to(target))

    def _resize_to(self, target: int) -> None:
        self.env.set_mapsize(0)  # adopt a size another process committed
        if self.env.info()["map_size"] < target:
            self.env.set_mapsize(target)

    def _resize(self, size_before: int) -> None:
        self.env.set_mapsize(0)  # adopt a size another process committed
        # set_mapsize(0) adopts the size recorded by the last *commit*, which
        # can be smaller than a size we set for a transaction that then failed.
        current = self.env.info()["map_size"]
        if current > size_before:
            return  # another process grew it meanwhile: just retry
        limit = self.settings.max_map_size
        if size_before >= limit:
            raise CacheFullError(
                f"the cache in {self.path} reached its maximum map size of {limit} bytes"
            )
        new_size = min(limit, size_before * 2)
        logger.info("growing the map of %s from %d to %d bytes", self.path, size_before, new_size)
        self.env.set_mapsize(new_size)

    # -- information ---------------------------------------------------------

    def info(self) -> dict[str, int]:
        """LMDB's ``env.info()``: map size, last page, last committed txn id, readers."""
        info = self._env_query(lambda env: env.info())
        return {key: int(value) for key, value in info.items()}  # type: ignore[call-overload]

    def page_size(self) -> int:
        """The environment's page size in bytes."""
        return int(self._env_query(lambda env: env.stat())["psize"])

    def _env_query(self, fn: Callable[[lmdb.Environment], T]) -> T:
        # py-lmdb 3.0 answers env.info()/env.stat() with EINVAL while another
        # thread of this process is in set_mapsize(); a read share keeps
        # resizes out for the duration, as it does for transactions.
        env = self._live_env()
        self._guard.enter_read()
        try:
            return fn(env)
        except lmdb.Error as exc:
            raise translate_lmdb_error(exc, path=str(self.path)) from exc
        finally:
            self._guard.exit_read()

    def file_bytes(self) -> int:
        """Bytes the data file occupies on disk (blocks actually allocated)."""
        try:
            st = (self.path / "data.mdb").stat()
        except OSError:
            return 0
        return min(st.st_size, st.st_blocks * 512) if st.st_blocks else st.st_size

    def copy(self, dest: Path, compact: bool) -> None:
        """Copy the environment into the existing empty directory ``dest`` (consistent snapshot).

        The copy is private like the cache: ``data.mdb`` is created 0600 by us
        (LMDB's own ``mdb_env_copy`` would create it 0644, readable by every
        local user), never through a symlink, and removed again if the copy fails.
        """
        target = dest / "data.mdb"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(target, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
        except FileExistsError as exc:
            raise StorageError(f"{target} already exists; choose an empty directory") from exc
        except PermissionError as exc:
            raise CachePermissionError(f"cannot write the backup {target}") from exc
        except OSError as exc:
            raise translate_os_error(exc, path=str(dest)) from exc
        done = False
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            env = self._live_env()
            self._guard.enter_read()  # the copy reads through its own read transaction
            try:
                env.copyfd(fd, compact=compact)
            except lmdb.Error as exc:
                raise translate_lmdb_error(exc, path=str(dest)) from exc
            finally:
                self._guard.exit_read()
            try:
                os.fsync(fd)
            except OSError as exc:
                raise translate_os_error(exc, path=str(dest)) from exc
            done = True
        finally:
            os.close(fd)
            if not done:
                with contextlib.suppress(OSError):
                    os.unlink(target)
