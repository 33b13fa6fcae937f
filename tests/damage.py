"""Break a closed cache on purpose (raw py-lmdb, page surgery) and look at what is left.

Plain functions shared by the verify, recovery and crash tests: write a
sub-database behind the facade's back (:func:`tamper`), read one raw
(:func:`raw_rows`), damage an LMDB page where a test wants it (the layout of
LMDB 0.9, 64-bit), and compare what a cache holds before and after
(:func:`records_snapshot`, :func:`index_view`, :func:`unit_invariants`).
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import Any, Callable

import lmdb
import pytest

from projcache import ProjectCache
from projcache.config import Settings
from projcache.storage import DATABASES


def unit_invariants(cache: ProjectCache) -> list[str]:
    """Problems with what one unit's transaction must keep together (empty when fine).

    Each collection's ``artifact_count`` equals the artifacts under its key
    prefix; each project's local pseudo-collection holds only artifacts that
    the project itself deploys.
    """
    problems = []
    for collection in cache.list_collections():
        held = sum(1 for _ in cache.list_artifacts(collection=collection.name))
        if held != collection.artifact_count:
            problems.append(
                f"collection {collection.name!r}: artifact_count {collection.artifact_count}"
                f" but {held} artifacts under its prefix"
            )
    for project in cache.list_projects():
        local = f"@{project.id}"
        deployed = {d.artifact_key for d in cache.list_deployments(project=project.id)}
        for artifact in cache.list_artifacts(collection=local):
            if artifact.key not in deployed:
                problems.append(f"project {project.name}: local {artifact.key} not deployed there")
    return problems


def assert_clean(cache: ProjectCache) -> None:
    """Assert verify finds nothing and every per-unit invariant holds."""
    findings = [f"{f.kind} {f.db} {f.key}: {f.message}" for f in cache.verify(deep=True).findings]
    assert findings == [], "verify findings:\n" + "\n".join(findings)
    problems = unit_invariants(cache)
    assert problems == [], "\n".join(problems)


BAD_PGNO = 999_999


def open_raw(cache_dir: Path) -> tuple[lmdb.Environment, dict[str, Any]]:
    """Open a closed cache with raw py-lmdb: the environment and every sub-database handle."""
    env = lmdb.open(str(cache_dir), max_dbs=32)
    with env.begin(write=True) as txn:
        dbs = {
            name: env.open_db(name.encode(), txn=txn, dupsort=dup)
            for name, dup in DATABASES.items()
        }
    return env, dbs


def tamper(cache_dir: Path, fn: Callable[[Any, dict[str, Any]], None]) -> None:
    """Run ``fn(txn, dbs)`` in one raw py-lmdb write transaction on a closed cache."""
    env, dbs = open_raw(cache_dir)
    try:
        with env.begin(write=True) as txn:
            fn(txn, dbs)
    finally:
        env.close()


def raw_rows(cache_dir: Path, db: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of one sub-database, read with raw py-lmdb."""
    env = lmdb.open(str(cache_dir), max_dbs=32, readonly=True, lock=False)
    try:
        handle = env.open_db(db.encode(), create=False, dupsort=DATABASES[db])
        with env.begin() as txn:
            return [(bytes(k), bytes(v)) for k, v in txn.cursor(handle)]
    finally:
        env.close()


def flip_last_byte(txn: Any, db: Any, key: bytes) -> None:
    """Flip the last bit of one stored value (its frame's checksum no longer matches)."""
    value = bytearray(txn.get(key, db=db))
    value[-1] ^= 0x01
    txn.put(key, bytes(value), db=db)


def page_nodes(data: bytes, psize: int, pgno: int) -> list[int]:
    """Offsets (in ``data``) of the nodes of page ``pgno``."""
    page = pgno * psize
    lower = struct.unpack_from("=H", data, page + 12)[0]
    return [
        page + struct.unpack_from("=H", data, page + 16 + 2 * index)[0]
        for index in range((lower - 16) // 2)
    ]


def db_root_page(data: bytes, name: str) -> tuple[int, int]:
    """``(page size, root page number)`` of sub-database ``name`` (LMDB 0.9 layout, 64-bit).

    Reads the newer meta page, then the main DB's root leaf, whose node for
    ``name`` carries the sub-database's ``MDB_db`` record (root at offset 40).
    """
    psize = struct.unpack_from("=I", data, 40)[0]
    metas = [(struct.unpack_from("=Q", data, base + 144)[0], base) for base in (0, psize)]
    _txnid, meta = max(metas)
    main_root = struct.unpack_from("=Q", data, meta + 128)[0]
    assert struct.unpack_from("=H", data, main_root * psize + 10)[0] & 0x02, "main DB not a leaf"
    for node in page_nodes(data, psize, main_root):
        ksize = struct.unpack_from("=H", data, node + 6)[0]
        if data[node + 8 : node + 8 + ksize] == name.encode():
            return psize, struct.unpack_from("=Q", data, node + 8 + ksize + 40)[0]
    raise AssertionError(f"no sub-database {name!r} in the main DB")


def branch_children(data: bytes, psize: int, pgno: int) -> list[int]:
    """Child page numbers of branch page ``pgno`` (a branch node packs it in lo, hi, flags)."""
    assert struct.unpack_from("=H", data, pgno * psize + 10)[0] & 0x01, "not a branch page"
    children = []
    for node in page_nodes(data, psize, pgno):
        lo, hi, flags = struct.unpack_from("=HHH", data, node)
        children.append(lo | hi << 16 | flags << 32)
    return children


def leaf_keys(data: bytes, psize: int, pgno: int) -> list[bytes]:
    """The keys stored on leaf page ``pgno``."""
    assert struct.unpack_from("=H", data, pgno * psize + 10)[0] & 0x02, "not a leaf page"
    keys = []
    for node in page_nodes(data, psize, pgno):
        ksize = struct.unpack_from("=H", data, node + 6)[0]
        keys.append(data[node + 8 : node + 8 + ksize])
    return keys


def break_page_header(cache_dir: Path, db: str) -> int:
    """Make the root leaf of ``db`` store a wrong page number; return the page's number.

    LMDB reads such a page without complaint, but ``lmdb.verify`` reports it:
    structural damage that leaves the environment openable and every record readable.
    """
    path = cache_dir / "data.mdb"
    psize, pgno = db_root_page(path.read_bytes(), db)
    with path.open("r+b") as handle:
        handle.seek(pgno * psize + 10)
        assert struct.unpack("=H", handle.read(2))[0] & 0x02, f"{db} root is not a leaf"
        handle.seek(pgno * psize)
        handle.write(struct.pack("=Q", BAD_PGNO))
    return pgno


def garbage_over_metas(cache_dir: Path) -> bytes:
    """Overwrite the first 8 KiB of data.mdb (both meta pages); return the garbage."""
    garbage = bytes(range(256)) * 32
    with (cache_dir / "data.mdb").open("r+b") as handle:
        handle.write(garbage)
    return garbage


def corrupt_dirs(cache_dir: Path) -> list[Path]:
    """The damaged copies repair moved aside, next to ``cache_dir`` (oldest first)."""
    return sorted(cache_dir.parent.glob(f"{cache_dir.name}.corrupt-*"))


def artifact_keys(cache: ProjectCache) -> list[str]:
    """The key of every artifact, in key order."""
    return [artifact.key for artifact in cache.list_artifacts()]


def log_records(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[int, str]]:
    """(level, message) of every record ``logger`` emitted."""
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger]


def capture_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Let caplog see the INFO records of verify, recovery and the cache."""
    # The CLI's root callback raises these loggers to ERROR; set them back for this test.
    for name in ("projcache.verify", "projcache.recovery", "projcache.cache"):
        caplog.set_level(logging.INFO, logger=name)


def records_snapshot(settings: Settings) -> dict[str, Any]:
    """Every artifact, collection, project and deployment of a cache, as plain data."""
    with ProjectCache.open(settings=settings, readonly=True) as cache:
        return {
            "artifacts": {a.key: a.model_dump() for a in cache.list_artifacts()},
            "collections": [
                c.model_dump(exclude={"refreshed_at"}) for c in cache.list_collections()
            ],
            "projects": [p.model_dump(exclude={"refreshed_at"}) for p in cache.list_projects()],
            "deployments": [d.model_dump() for d in cache.list_deployments()],
        }


def index_view(cache_dir: Path) -> dict[str, Any]:
    """The derived indexes as plain data that does not depend on which id an artifact got:
    deployment indexes as raw rows, the search index as ``{bitmap name: artifact keys}``
    (main bitmaps with the write log applied, ids mapped as the mappings that wait in
    ``search-pending`` say)."""
    env, dbs = open_raw(cache_dir)
    try:
        with env.begin() as txn:
            index, ids = _raw_index(dbs)
            keys = dict(ids.reverse_items(txn))
            names = dict(index.names_of(txn))
    finally:
        env.close()
    view: dict[str, Any] = {
        db: raw_rows(cache_dir, db) for db in ("deployments-by-artifact", "deployments-by-state")
    }
    view["search"] = {name: sorted(keys[d] for d in ids) for name, ids in names.items() if ids}
    view["ids"] = sorted(keys.values())
    return view


def _raw_index(dbs: dict[str, Any]) -> tuple[Any, Any]:
    """The bitmap index and id map over raw py-lmdb handles."""
    from projcache.postings import BitmapIndex, IdRepository

    ids = IdRepository(dbs["artifact-ids"], dbs["artifact-keys"], dbs["search-pending"])
    return BitmapIndex(dbs["search-tokens"], dbs["search-pending"], ids), ids


def merge_index(settings: Settings) -> None:
    """Fold a closed cache's write log into its main bitmaps (``search-tokens``), so that a
    test can damage a name's stored bitmap."""
    with ProjectCache.open(settings=settings) as cache:
        cache._write(lambda txn: cache._repos.index.merge(txn))


def pdf_id(cache_dir: Path) -> int:
    """The integer id of ``default/skill/pdf``."""
    env, dbs = open_raw(cache_dir)
    try:
        with env.begin() as txn:
            doc = _raw_index(dbs)[1].id_of(txn, "default/skill/pdf")
    finally:
        env.close()
    assert doc is not None
    return int(doc)
