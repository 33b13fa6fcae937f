"""Rebuild a cache whose files are damaged: move them aside, salvage, rebuild from source.

Used by ``verify(repair=True)`` when the file layer fails and when opening
finds the environment unusable (``auto_repair``).  Nothing is discarded
silently: the damaged directory is kept, renamed with a timestamp, and the
report says how many records were carried over and how many were lost.

This module sits below the facade and never imports it: :class:`~projcache.cache.ProjectCache`
hands over what recovery needs as a :class:`CacheAccess` (and an opener of fresh
ones for a rebuild).

Over 400 lines because reading a damaged LMDB file is one subject: the meta-page
layout, the copies that try each meta page, the salvage child's output and the
counts of what was kept and lost belong together and are tested together.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Optional

import orjson

from . import codec
from .vocabulary import META_DB, RECORD_DBS

if TYPE_CHECKING:
    from .config import Settings
    from .models import RefreshReport, VerifyReport
    from .repository import Repositories
    from .roots import SourceRoots
    from .storage import Storage, Txn

__all__ = [
    "CacheAccess",
    "RecoveryResult",
    "move_aside",
    "rebuild",
    "repair_unopenable",
    "verify_cache",
]

logger = logging.getLogger(__name__)

_SALVAGE_TIMEOUT = 600.0


@dataclass(frozen=True)
class CacheAccess:
    """What recovery needs from an open cache, handed over by the facade.

    :meth:`ProjectCache.verify <projcache.cache.ProjectCache.verify>` builds one
    from its own transactions and repositories, so this module never imports
    (or reaches into) the facade.

    Attributes:
        settings: the settings the cache was opened with.
        read: run a callable in one read transaction.
        write: run a callable in one write transaction (the cache must be writable).
        repos: the repositories of the live environment (they change after ``fork()``).
        storage: the live :class:`~projcache.storage.Storage` (it changes after a rebuild).
        refresh: :meth:`ProjectCache.refresh <projcache.cache.ProjectCache.refresh>`.
        cached_folders: the folders of every cached collection and of every cached project.
    """

    settings: Settings
    read: Callable[[Callable[[Txn], Any]], Any]
    write: Callable[[Callable[[Txn], Any]], Any]
    repos: Callable[[], Repositories]
    storage: Callable[[], Storage]
    refresh: Callable[..., RefreshReport]
    cached_folders: Callable[[], tuple[set[str], set[str]]]


# Opens a fresh cache with the given settings, yielding access to it and closing it after.
Opener = Callable[["Settings"], ContextManager[CacheAccess]]


@dataclass
class RecoveryResult:
    """What a rebuild did: where the damaged files went, what was kept and lost."""

    moved_to: Path
    salvaged: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # False when the damaged file could not be read to the end: ``lost`` is then a floor.
    complete: bool = True
    # Records per sub-database the damaged cache held (as far as known).
    expected: dict[str, int] = field(default_factory=dict)
    # Records the salvage reader reached, readable or not.
    seen: dict[str, int] = field(default_factory=dict)
    refresh: Optional[RefreshReport] = None

    def summary(self) -> str:
        """One line for logs and the CLI."""
        kept = sum(self.salvaged.values())
        lost = f"lost {sum(self.lost.values())}" if self.complete else "lost an unknown number"
        return (
            f"moved the damaged cache to {self.moved_to}; carried over {kept} record(s), "
            f"{lost}" + (f" ({'; '.join(self.problems)})" if self.problems else "")
        )


def move_aside(path: Path) -> Path:
    """Rename the cache directory to ``<name>.corrupt-<UTC timestamp>`` and return the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{suffix}")
    os.rename(path, target)
    return target


Record = tuple[str, bytes, bytes]  # (sub-database, key, framed value)


@dataclass
class _Attempt:
    """What one way of reading the damaged file gave."""

    how: str
    txnid: int  # the transaction whose state it read (-1: not known)
    result: RecoveryResult
    records: list[Record]


# LMDB 0.9 on-disk layout (64-bit, host byte order): a 16-byte page header
# (mp_pgno u64, pad u16, flags u16, lower u16, upper u16), then MDB_meta:
# magic u32, version u32, address u64, mapsize u64, free MDB_db (48 bytes; its
# first u32 is the page size), main MDB_db (48 bytes; root page last), last_pg
# u64, txnid u64.  A named sub-database is a leaf node of the main tree whose
# data is its MDB_db (entries at byte 32).
_PAGEHDR = 16
_META_MAGIC = 0xBEEFC0DE
_META_PSIZE_AT = _PAGEHDR + 24
_META_MAIN_ROOT_AT = _PAGEHDR + 24 + 48 + 40
_META_TXNID_AT = _PAGEHDR + 24 + 2 * 48 + 8
_META_BYTES = 136
_P_LEAF = 0x02
_F_SUBDATA = 0x02
_DB_BYTES = 48
_PLAUSIBLE_TXNID = 1 << 48  # a flipped high byte makes a txnid absurd


@dataclass
class _Meta:
    slot: int
    psize: int
    page: bytes
    magic_ok: bool
    txnid: int


def _page_sizes(head: bytes) -> list[int]:
    """Candidate page sizes: what meta page 0 says (if sane), then the system's."""
    sizes = []
    if len(head) >= _META_PSIZE_AT + 4:
        (psize,) = struct.unpack_from("=I", head, _META_PSIZE_AT)
        if 512 <= psize <= 65536 and psize & (psize - 1) == 0:
            sizes.append(psize)
    system = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    for size in (system, 4096):
        if size not in sizes:
            sizes.append(size)
    return sizes


def _read_metas(data: Path) -> list[_Meta]:
    """Both meta pages, under every plausible page size."""
    try:
        with data.open("rb") as handle:
            head = handle.read(2 * 65536)
    except OSError:
        return []
    metas = []
    for psize in _page_sizes(head):
        for slot in (0, 1):
            page = head[slot * psize : slot * psize + psize]
            if len(page) < _PAGEHDR + _META_BYTES:
                continue
            (magic,) = struct.unpack_from("=I", page, _PAGEHDR)
            (txnid,) = struct.unpack_from("=Q", page, _META_TXNID_AT)
            metas.append(_Meta(slot, psize, page, magic == _META_MAGIC, txnid))
    return metas


def _repaired(meta: _Meta, twin: Optional[_Meta]) -> bytes:
    """``meta``'s page with the fields that never change restored from its twin.

    Magic, data version, page flags and page size are the same in both meta
    pages of a file; a flipped byte there is repaired exactly.  Pointers and
    the transaction id cannot be checked this way: a copy with a wrong one
    just fails to read, and another way wins.
    """
    page = bytearray(meta.page)
    if twin is not None and twin.magic_ok:
        page[8:16] = twin.page[8:16]  # pad, flags (P_META), lower, upper
        page[_PAGEHDR : _PAGEHDR + 8] = twin.page[_PAGEHDR : _PAGEHDR + 8]  # magic, version
        page[_META_PSIZE_AT : _META_PSIZE_AT + 4] = twin.page[_META_PSIZE_AT : _META_PSIZE_AT + 4]
    struct.pack_into("=Q", page, 0, meta.slot)
    return bytes(page)


def _meta_copies(aside: Path, scratch: Path, metas: list[_Meta]) -> list[tuple[str, int, Path]]:
    """Copies of the damaged data file in which one meta page wins, for each meta page.

    LMDB keeps two meta pages (pages 0 and 1); the one with the higher
    transaction id is the committed state, the other the state one commit
    earlier, whose pages LMDB does not reuse while it is the fallback.  One
    flipped byte in a meta page makes the whole file unreadable although every
    record is still there.  py-lmdb 3.0 (LMDB 0.9) has no MDB_PREVSNAPSHOT, so
    each copy gets the chosen meta page (its constant fields repaired from the
    other one) written into both slots, the other slot one transaction id
    lower: LMDB then opens the chosen state.  Returns ``(how, txnid, folder)``.
    """
    data = aside / "data.mdb"
    copies: list[tuple[str, int, Path]] = []
    seen: set[bytes] = set()
    for meta in metas:
        twin = next((m for m in metas if m.psize == meta.psize and m.slot != meta.slot), None)
        page = _repaired(meta, twin)
        if page in seen:
            continue
        seen.add(page)
        target = scratch / f"meta{meta.slot}-{meta.psize}"
        target.mkdir(mode=0o700)
        shutil.copyfile(data, target / "data.mdb")
        other = bytearray(page)
        struct.pack_into("=Q", other, 0, 1 - meta.slot)  # mp_pgno
        struct.pack_into("=Q", other, _META_TXNID_AT, max(meta.txnid - 1, 0))
        with (target / "data.mdb").open("r+b") as handle:
            handle.seek(meta.slot * meta.psize)
            handle.write(page)
            handle.seek((1 - meta.slot) * meta.psize)
            handle.write(bytes(other))
        copies.append((f"meta page {meta.slot} (txn {meta.txnid})", meta.txnid, target))
    return copies


def _claimed_counts(data: Path, meta: _Meta) -> Optional[dict[str, int]]:
    """The record counts the state of ``meta`` claims, read from its main tree's leaf page.

    Independent of whether the records themselves still read: this is what
    "present before the repair" means.  ``None`` when that page cannot be read.
    """
    (root,) = struct.unpack_from("=Q", meta.page, _META_MAIN_ROOT_AT)
    try:
        size = data.stat().st_size
        if root < 2 or (root + 1) * meta.psize > size:
            return None
        with data.open("rb") as handle:
            handle.seek(root * meta.psize)
            page = handle.read(meta.psize)
    except OSError:
        return None
    _pgno, _pad, flags, lower, upper = struct.unpack_from("=QHHHH", page, 0)
    if not flags & _P_LEAF or not _PAGEHDR <= lower <= upper <= meta.psize:
        return None
    counts: dict[str, int] = {}
    for i in range((lower - _PAGEHDR) // 2):
        (offset,) = struct.unpack_from("=H", page, _PAGEHDR + 2 * i)
        if offset + 8 > meta.psize:
            return None
        lo, hi, node_flags, ksize = struct.unpack_from("=HHHH", page, offset)
        start = offset + 8 + ksize
        if (lo | hi << 16) != _DB_BYTES or not node_flags & _F_SUBDATA:
            continue
        if start + _DB_BYTES > meta.psize:
            return None
        name = page[offset + 8 : start].decode("utf-8", "replace")
        (counts[name],) = struct.unpack_from("=Q", page, start + 32)
    # A wrong root pointer lands on some other page: only the main tree names them all.
    return counts if all(db in counts for db in (*RECORD_DBS, META_DB)) else None


def _best_salvage(aside: Path, result: RecoveryResult) -> list[Record]:
    """Read the damaged file every way there is; keep the way that carries over the most.

    As it is, then through each meta page (see :func:`_meta_copies`).  What was
    present before is what the newest meta page's state claims; anything the
    best way does not carry over is counted as lost, and when that state's
    counts cannot be read while an older state was used, the loss is unknown.
    """
    data = aside / "data.mdb"
    metas = _read_metas(data)
    plausible = [m for m in metas if m.magic_ok and m.txnid < _PLAUSIBLE_TXNID]
    newest = max(plausible, key=lambda m: m.txnid, default=None)
    # As it is, LMDB reads the state of the meta page with the highest txnid.
    chosen = max((m.txnid for m in metas if m.magic_ok), default=-1)
    as_is = _Attempt("as it is", chosen, RecoveryResult(aside), [])
    as_is.records = _salvage(aside, as_is.result)
    attempts = [as_is]
    scratch = Path(tempfile.mkdtemp(prefix=".meta-repair-", dir=aside))
    try:
        for how, txnid, copy in _meta_copies(aside, scratch, metas):
            attempt = _Attempt(how, txnid, RecoveryResult(moved_to=aside), [])
            attempt.records = _salvage(copy, attempt.result)
            attempts.append(attempt)
    except OSError as exc:
        result.problems.append(f"could not copy the data file to try its meta pages: {exc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def score(attempt: _Attempt) -> tuple[int, int, int, int]:
        # The state in which the most records are reached (a bad frame still
        # counts: the record was there); then one that reads to the end; then
        # the newest, since an older state undoes the last commit's changes.
        r = attempt.result
        clean = r.complete and not r.problems
        txnid = attempt.txnid if attempt.txnid < _PLAUSIBLE_TXNID else -1
        return (sum(r.seen.values()), int(clean), txnid, len(attempt.records))

    best = max(attempts, key=score)  # the first of equals: "as it is" first
    if best is not as_is:
        logger.warning("read the damaged cache %s through %s", aside, best.how)
        result.problems.append(f"records read through {best.how}")
    result.problems.extend(best.result.problems)
    result.salvaged, result.lost = best.result.salvaged, best.result.lost
    result.complete = best.result.complete
    claimed = _claimed_counts(data, newest) if newest is not None else None
    for db in RECORD_DBS:
        seen = result.salvaged.get(db, 0) + result.lost.get(db, 0)
        result.expected[db] = max(seen, claimed.get(db, 0) if claimed else 0)
        result.lost[db] = max(0, result.expected[db] - result.salvaged.get(db, 0))
    if claimed is not None:
        result.complete = True  # what was there before is known exactly
    elif newest is not None and best.txnid < newest.txnid:
        result.complete = False
        result.problems.append(
            f"the last commit (txn {newest.txnid}) could not be read; "
            f"records were read from txn {best.txnid}"
        )
    return best.records


def _salvage(aside: Path, result: RecoveryResult) -> list[Record]:
    """Run the salvage reader in a child process; keep every record it printed."""
    env = dict(os.environ)
    # The child must import this very projcache, wherever it was imported from.
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "projcache.salvage", str(aside)],
            capture_output=True,
            timeout=_SALVAGE_TIMEOUT,
            env=env,
            check=False,
        )
        output, code = done.stdout, done.returncode
    except subprocess.TimeoutExpired as exc:
        output, code = exc.stdout or b"", -1
        result.problems.append("the salvage reader timed out")
    records: list[tuple[str, bytes, bytes]] = []
    tally: dict[str, Any] = {}
    for line in output.splitlines():
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line cut short by a crash
        if "done" in item:
            tally = item
        elif "fatal" in item:
            result.problems.append(f"salvage failed: {item['fatal']}")
        elif "error" in item:
            result.problems.append(f"{item['db']}: {item['error']}")
        else:
            records.append((item["db"], bytes.fromhex(item["key"]), bytes.fromhex(item["value"])))
    if not tally:
        result.complete = False
        if code not in (0, -1):
            result.problems.append(f"the salvage reader stopped with status {code}")
    for db in RECORD_DBS:
        kept = sum(1 for name, _k, _v in records if name == db)
        result.salvaged[db] = kept
        # A reader that crashed (a wild pointer on a damaged page) prints no tally,
        # yet it reached every record it printed: those count as seen.
        result.seen[db] = max(kept, int(tally.get("seen", {}).get(db, 0)))
        expected = max(tally.get("entries", {}).get(db, 0), result.seen[db])
        result.lost[db] = max(0, expected - kept)
    return records


def _restore(cache: CacheAccess, records: list[tuple[str, bytes, bytes]]) -> None:
    """Write the salvaged records through the normal mutations (indexes rebuilt with them)."""
    from . import models, mutations

    repos = cache.repos()
    by_db: dict[str, list[tuple[bytes, Any]]] = {db: [] for db in RECORD_DBS}
    for db, key, raw in records:
        model = getattr(models, RECORD_DBS[db])
        by_db[db].append((key, model.model_validate_json(codec.unframe(raw))))

    def body(txn: Any) -> None:
        for _key, collection in by_db["collections"]:
            repos.collections.put(txn, collection)
        for _key, project in by_db["projects"]:
            mutations.put_project(txn, repos, project)
        for _key, artifact in by_db["artifacts"]:
            mutations.put_artifact(txn, repos, artifact)
        projects = {project.id for _k, project in by_db["projects"]}
        for _key, deployment in by_db["deployments"]:
            if deployment.project_id in projects:
                mutations.put_deployment(txn, repos, deployment)
        for key, fingerprint in by_db["sources"]:
            repos.sources.put_raw(txn, key, fingerprint)

    cache.write(body)


def rebuild(settings: Settings, open_fresh: Opener) -> RecoveryResult:
    """Move the damaged cache in ``settings.cache_dir`` aside and build a fresh one.

    Every record that still reads and validates is carried over, then the
    configured roots and every carried-over collection and project are re-read
    from source (``full``), so what came from files is exact again.  The
    caller must not hold the cache open; ``open_fresh(settings)`` opens the new,
    empty one (the facade passes its own opener: this module does not import it).
    """
    from .roots import META_KEY, read_side_file

    path = Path(settings.cache_dir)
    aside = move_aside(path)
    logger.warning("moved the damaged cache %s aside to %s", path, aside)
    result = RecoveryResult(moved_to=aside)
    roots = read_side_file(aside)  # written beside data.mdb: it survives damage to it
    records = _best_salvage(aside, result)
    fresh = replace(settings, auto_repair=False)
    with open_fresh(fresh) as cache:
        if roots:
            meta = cache.repos().meta
            cache.write(lambda txn: meta.put(txn, META_KEY, roots.to_json()))
        _restore(cache, records)
        # The configured roots, every collection and project carried over and every
        # folder the cache was ever refreshed from by name, re-read from source.
        _refresh_roots(cache, roots, result)
        _count_missing(cache, records, result)
    for db, count in result.lost.items():
        if count:
            logger.warning("recovery lost %d %s record(s) of %s", count, db, path)
    logger.warning("recovered %s: %s", path, result.summary())
    return result


def _refresh_roots(cache: CacheAccess, roots: SourceRoots, result: RecoveryResult) -> None:
    """Re-read from source every folder the damaged cache knew that still exists.

    The folders are named explicitly, so this refresh removes nothing it
    did not re-read: a carried-over project whose folder is gone stays (the
    next ordinary refresh prunes it).  A repair restores; it does not prune.
    """
    from .errors import ProjcacheError
    from .sources import find_collections, find_projects, is_collection, is_project

    settings = cache.settings
    cached_collections, cached_projects = cache.cached_folders()
    collections = set(roots.collections) | set(find_collections(settings.collection_roots))
    collections |= cached_collections
    projects = set(roots.projects) | set(find_projects(settings.project_roots, settings.scan_depth))
    projects |= cached_projects
    gone = [c for c in roots.collections if not (os.path.isdir(c) and is_collection(c))]
    gone += [p for p in roots.projects if not (os.path.isdir(p) and is_project(p))]
    if gone:
        result.problems.append(f"{len(gone)} remembered source folder(s) no longer exist")
    readable_c = sorted(c for c in collections if os.path.isdir(c) and is_collection(c))
    readable_p = sorted(p for p in projects if os.path.isdir(p) and is_project(p))
    if not readable_c and not readable_p:
        return
    try:
        result.refresh = cache.refresh(collections=readable_c, projects=readable_p, full=True)
    except ProjcacheError as exc:
        result.problems.append(f"re-reading the source folders failed: {exc}")


def _count_missing(cache: CacheAccess, records: list[Record], result: RecoveryResult) -> None:
    """Set ``result.lost`` from what the rebuilt cache holds, compared with before.

    Two checks per sub-database, the larger wins: every record carried over
    from the damaged file must still be there (a refresh that dropped it lost
    it), and there must be at least as many records as the damaged cache held
    (records that could not be read and were not re-read from source are
    lost).  Fingerprints are only counted: a refresh rewrites them.
    """
    wanted: dict[str, list[bytes]] = {db: [] for db in RECORD_DBS}
    for db, key, _raw in records:
        if db in wanted and db != "sources":
            wanted[db].append(key)
    handles = cache.storage().live_dbs()

    def body(txn: Any) -> dict[str, tuple[int, int]]:
        return {
            db: (
                sum(1 for key in keys if txn.get(key, db=handles[db]) is None),
                int(txn.stat(handles[db])["entries"]),
            )
            for db, keys in wanted.items()
        }

    after: dict[str, tuple[int, int]] = cache.read(body)
    for db, (missing, count) in after.items():
        if missing:
            result.problems.append(
                f"{missing} {db} record(s) carried over are gone after the rebuild"
            )
        result.lost[db] = max(missing, result.expected.get(db, 0) - count, 0)


def _source_folders(cache: CacheAccess) -> tuple[set[str], set[str]]:
    """Folders of every unit with fingerprints: a dropped record's sources are still known."""
    from .errors import CorruptRecordError

    repos = cache.repos()

    def body(txn: Any) -> tuple[set[str], set[str]]:
        collections: set[str] = set()
        projects: set[str] = set()
        for key, raw in txn.cursor(repos.sources.db).iternext():
            unit, _sep, relative = bytes(key).partition(codec.SEPARATOR)
            try:
                fingerprint = repos.sources.model.model_validate_json(codec.unframe(raw))
            except (CorruptRecordError, ValueError):
                continue
            text = relative.decode("utf-8", "surrogateescape")
            if text.startswith("#") or not fingerprint.path.endswith(text):
                continue  # a digest-keyed deep path: its unit is found through another file
            base = fingerprint.path[: -len(text)].rstrip(os.sep)
            (collections if unit.startswith(b"c:") else projects).add(base)
        return collections, projects

    found: tuple[set[str], set[str]] = cache.read(body)
    return found


def _refresh_known(cache: CacheAccess, folders: tuple[set[str], set[str]]) -> None:
    """Re-read from source: the configured roots, every cached unit and ``folders``."""
    from .sources import is_collection, is_project

    cache.refresh(full=True)
    collections, projects = folders
    cached_collections, cached_projects = cache.cached_folders()
    known = cached_collections | cached_projects
    extra_c = sorted(c for c in collections - known if os.path.isdir(c) and is_collection(c))
    extra_p = sorted(p for p in projects - known if os.path.isdir(p) and is_project(p))
    if extra_c or extra_p:
        cache.refresh(collections=extra_c, projects=extra_p, full=True)


def verify_cache(
    cache: CacheAccess,
    *,
    repair: bool,
    sources: bool,
    rebuild_in_place: Callable[[], RecoveryResult],
    progress: Optional[Callable[[int, int], None]] = None,
) -> VerifyReport:
    """Verify ``cache``; with ``repair`` fix every repairable finding, however deep.

    * index findings: derived indexes rebuilt from the records;
    * frame and model findings: the bad records dropped, then their sources
      re-read (a full refresh of the cached collections and projects);
    * source findings (``sources``): an incremental refresh;
    * file findings, or an environment that cannot be read: ``rebuild_in_place()``
      (the facade releases its environment and runs :func:`rebuild`).
    """
    from .errors import CacheCorruptError, StorageError
    from .models import Finding, VerifyReport
    from .verify import run_verify

    folders: tuple[set[str], set[str]] = (set(), set())
    if repair:
        # A damaged file: run_verify finds and names it below.
        with contextlib.suppress(StorageError):
            folders = _source_folders(cache)
    try:
        report = run_verify(
            cache.storage(), cache.repos(), repair=repair, sources=sources, progress=progress
        )
    except CacheCorruptError as exc:
        finding = Finding(
            kind="file", db="data.mdb", message=f"the environment cannot be read: {exc}"
        )
        report = VerifyReport(findings=[finding])
    if not repair or not report.findings:
        return report
    if any(f.kind == "file" for f in report.findings):
        result = rebuild_in_place()
        return report.model_copy(
            update={
                "repaired": len(report.findings),
                "moved_to": str(result.moved_to),
                "salvaged": result.salvaged,
                "lost": result.lost,
                "lost_complete": result.complete,
                "problems": result.problems,
            }
        )
    dropped = any(f.kind in ("frame", "model") and f.db in RECORD_DBS for f in report.findings)
    source_findings = sum(1 for f in report.findings if f.kind == "source")
    if dropped:
        _refresh_known(cache, folders)
    elif source_findings:
        cache.refresh()
    return report.model_copy(update={"repaired": report.repaired + source_findings})


def repair_unopenable(settings: Settings, open_fresh: Opener) -> VerifyReport:
    """Rebuild a cache that cannot even be opened; report it as a repaired file finding.

    ``open_fresh`` as for :func:`rebuild`; callers use
    :meth:`ProjectCache.repair_unopenable <projcache.cache.ProjectCache.repair_unopenable>`.
    """
    from .models import Finding, VerifyReport

    result = rebuild(settings, open_fresh)
    finding = Finding(
        kind="file",
        db="data.mdb",
        message=f"the environment could not be opened; {result.summary()}",
    )
    return VerifyReport(
        findings=[finding],
        repaired=1,
        moved_to=str(result.moved_to),
        salvaged=result.salvaged,
        lost=result.lost,
        lost_complete=result.complete,
        problems=result.problems,
    )
