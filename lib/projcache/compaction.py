"""Compaction: the cache's file rewritten with its pages full, when nobody else has it open.

LMDB stores every sub-database as a B-tree in 4 KiB pages and never shrinks its file.
Records written in key order fill their pages (appended past the last key: see
``projcache.repository``), but batches of keys spread over the whole key space
(``put_artifacts`` of an import in random order) split pages in the middle, leaving
them 50-75% full, and each batch copies the pages it touches, whose old copies stay
in the file as free pages.  At 100,000 artifacts written in batches of 10,000 that
is a 191 MiB file for 122 MiB of full pages (bench/RESULTS.md, "Bytes on disk: the
bytes branch").

:func:`compact` copies every sub-database, in key order, into a new file (every page
full, no free pages) and renames it over ``data.mdb``.  That is safe only while no
process has the environment open, and LMDB itself says whether one has: every open
environment holds a shared ``fcntl`` lock on the first byte of ``lock.mdb`` for its
whole life, and a process opening it waits for that byte while anyone holds it
exclusively.  :func:`compact` takes that byte exclusively with an open file
description lock (``F_OFD_SETLK``: it conflicts with every other lock, the calling
process's own included), without waiting: when it cannot, someone has the cache
open and nothing is done.  Holding it, nobody can open the cache until the new file
is in place.  Where OFD locks do not exist (not Linux), nothing is compacted.

:class:`~projcache.storage.Storage` calls :func:`worth_compacting` when its last
handle closes after writing, and :func:`compact` when it says so: the file grew by at
least :data:`MIN_GROWTH` while the handle was open and at least :data:`MIN_WASTE` of
it is free pages or slack in half-empty pages (estimated from the biggest
sub-databases' sampled record sizes).  A refresh that changed little does not pay
for a rewrite.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import sys
from pathlib import Path
from typing import Any, Optional

import lmdb

from .logs import get_logger
from .vocabulary import DATABASES

__all__ = ["MIN_GROWTH", "MIN_WASTE", "compact", "worth_compacting"]

logger = get_logger(__name__)

#: The file must have grown by this many bytes while the closing handle had it open.
MIN_GROWTH = 16 * 1024**2
#: ...and at least this share of it must be free pages or slack in partly filled pages.
MIN_WASTE = 0.2
# Where the new file is written (same filesystem as data.mdb, for the rename).
_WORK_DIR = "compact.tmp"
# Records sampled from each end of a big sub-database to estimate its full size.
_SAMPLE = 512
# LMDB's page layout: page header, node header, and the pointer each node has.
_PAGE_HEADER = 16
_NODE_HEADER = 8
_POINTER = 2
# LMDB puts a value on overflow pages when its node is larger than this (4 KiB pages).
_NODE_MAX = 2038
# LMDB 0.9's meta pages (pages 0 and 1; the layout projcache.recovery reads too): a 16-byte
# page header (mp_pgno u64 first), then MDB_meta, whose transaction id is at this offset.
_META_TXNID_AT = 16 + 24 + 2 * 48 + 8
# struct flock on 64-bit Linux: l_type, l_whence, (pad), l_start, l_len, l_pid, (pad).
_FLOCK = "@hhqqi4x"
_WRITE_LOCK = 1  # F_WRLCK on Linux


def _supported() -> bool:
    if not sys.platform.startswith("linux") or struct.calcsize("P") != 8:
        return False
    import fcntl

    return hasattr(fcntl, "F_OFD_SETLK") and struct.calcsize(_FLOCK) == 32


def _estimated_full_pages(txn: Any, db: Any, psize: int) -> int:
    """Leaf pages the sub-database would need with every page full (sampled node sizes)."""
    stat = txn.stat(db)
    entries = int(stat["entries"])
    if entries <= 2 * _SAMPLE:
        return int(stat["leaf_pages"])
    sizes: list[int] = []
    cursor = txn.cursor(db)
    for step in (cursor.iternext, cursor.iterprev):
        if not (cursor.first() if step == cursor.iternext else cursor.last()):
            return int(stat["leaf_pages"])
        for count, (key, value) in enumerate(step()):
            if count >= _SAMPLE:
                break
            node = _NODE_HEADER + len(key) + len(value)
            if node > _NODE_MAX:  # the value is on its own pages: the node holds their number
                node = _NODE_HEADER + len(key) + 8
            sizes.append(node + node % 2)
    per_page = max(1, (psize - _PAGE_HEADER) // (sum(sizes) / len(sizes) + _POINTER))
    return -(-entries // int(per_page))


def worth_compacting(env: lmdb.Environment, dbs: dict[str, Any], opened_pages: int) -> bool:
    """Tell whether the file is worth rewriting (see the module's docstring).

    ``opened_pages`` is the file's size in pages when the handle opened it.
    """
    info, psize = env.info(), env.stat()["psize"]
    pages = int(info["last_pgno"]) + 1
    if (pages - opened_pages) * psize < MIN_GROWTH:
        return False
    used = full = 0
    with env.begin() as txn:
        for name, db in dbs.items():
            stat = txn.stat(db)
            leaf = int(stat["leaf_pages"])
            used += leaf + int(stat["branch_pages"]) + int(stat["overflow_pages"])
            # Dupsort sub-databases keep their values in nested trees: counted as they are.
            full_leaf = leaf if DATABASES.get(name, True) else _estimated_full_pages(txn, db, psize)
            full += full_leaf + int(stat["overflow_pages"])
    return pages - full >= MIN_WASTE * pages


def compact(path: Path, map_size: int) -> Optional[tuple[int, int]]:
    """Rewrite the environment in ``path`` with full pages; return its bytes before and after.

    Returns ``None`` (nothing changed) when another process or handle has the
    environment open, OFD locks are not available, or the copy did not hold every
    record; a leftover work folder of an interrupted compaction is removed first.

    Raises:
        OSError, lmdb.Error: the copy or the rename failed (``data.mdb`` is then as it was).
    """
    if not _supported():
        return None
    import fcntl

    lock = os.open(path / "lock.mdb", os.O_RDWR | os.O_CLOEXEC)
    try:
        try:
            fcntl.fcntl(lock, fcntl.F_OFD_SETLK, struct.pack(_FLOCK, _WRITE_LOCK, 0, 0, 1, 0))
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return None  # somebody has the cache open: it stays as it is
            raise
        return _rewrite(path, map_size)
    finally:
        os.close(lock)  # releases the lock: openers waiting for it go on, with the new file


def _rewrite(path: Path, map_size: int) -> Optional[tuple[int, int]]:
    work = path / _WORK_DIR
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    try:
        before = (path / "data.mdb").stat().st_size
        copied = _copy(path, work, map_size)
        if copied is None:
            return None
        _continue_txnid(work / "data.mdb", *copied)
        os.replace(work / "data.mdb", path / "data.mdb")
        _fsync_dir(path)
        return before, (path / "data.mdb").stat().st_size
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _copy(path: Path, work: Path, map_size: int) -> Optional[tuple[int, int]]:
    """Copy every sub-database in key order into ``work``.

    Returns the source's last transaction id and the page size, or ``None`` when
    a record did not come.
    """
    options: dict[str, Any] = {"subdir": True, "max_dbs": len(DATABASES) + 8, "lock": False}
    source = lmdb.open(str(path), readonly=True, **options)
    try:
        target = lmdb.open(str(work), map_size=map_size, mode=0o600, **options)
        try:
            with source.begin() as rtxn:
                names = {bytes(key) for key in rtxn.cursor().iternext(values=False)}
                if names - {name.encode() for name in DATABASES}:
                    logger.warning("%s: not compacted (unknown sub-databases)", path)
                    return None
                envs, wtxn = (source, target), target.begin(write=True)
                try:
                    for name, dupsort in DATABASES.items():
                        if name.encode() in names and not _copy_db(envs, rtxn, wtxn, name, dupsort):
                            logger.warning("%s: not compacted (%s did not copy whole)", path, name)
                            wtxn.abort()
                            return None
                except BaseException:
                    wtxn.abort()
                    raise
                wtxn.commit()
            target.sync(True)
            psize = int(target.stat()["psize"])
        finally:
            target.close()
        return int(source.info()["last_txnid"]), psize
    finally:
        source.close()


def _continue_txnid(data: Path, txnid: int, psize: int) -> None:
    """Give the copy's state the source's last transaction id, in both meta pages.

    A fresh environment starts counting at 1, but the cache's generation (the
    HTTP lists' ETag, :meth:`~projcache.cache.ProjectCache.generation`) and the
    counters' bookkeeping are transaction ids: the compacted file goes on where
    the old one stopped, so an old ETag is never handed out again for other data.
    Both meta pages get the copy's state: the slot LMDB writes transaction
    ``txnid`` to (``txnid & 1``) with ``txnid``, the other with ``txnid - 1``, so
    the next commit goes to the other slot as LMDB expects.
    """
    with data.open("r+b") as handle:
        pages = [handle.read(psize), handle.read(psize)]
        newest = max(pages, key=lambda page: struct.unpack_from("=Q", page, _META_TXNID_AT)[0])
        for slot in (0, 1):
            page = bytearray(newest)
            struct.pack_into("=Q", page, 0, slot)  # mp_pgno
            struct.pack_into("=Q", page, _META_TXNID_AT, txnid if slot == txnid & 1 else txnid - 1)
            handle.seek(slot * psize)
            handle.write(page)
        handle.flush()
        os.fsync(handle.fileno())


def _copy_db(envs: tuple[Any, Any], rtxn: Any, wtxn: Any, name: str, dupsort: bool) -> bool:
    """Copy one sub-database in key order; tell whether the copy has all its entries."""
    old = envs[0].open_db(name.encode(), txn=rtxn, create=False, dupsort=dupsort)
    new = envs[1].open_db(name.encode(), txn=wtxn, create=True, dupsort=dupsort)
    # In key order: LMDB fills each page before it starts the next (appending, it
    # leaves no room at all: MDB_APPEND; duplicates of a dupsort key come in order).
    wtxn.cursor(new).putmulti(rtxn.cursor(old).iternext(), dupdata=dupsort, append=not dupsort)
    return bool(wtxn.stat(new)["entries"] == rtxn.stat(old)["entries"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
