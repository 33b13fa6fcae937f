"""Compaction: a file left half-empty by scattered batches is rewritten full, records unchanged."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lmdb
import pytest

from projcache import ProjectCache, compaction
from projcache.config import Settings
from projcache.vocabulary import DATABASES

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "excel",
    "sheet",
    "merge",
    "pdf",
    "form",
    "server",
    "build",
    "test",
    "web",
    "app",
]


def _artifacts(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` artifacts with bodies, named at random (their keys spread over the key space)."""
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        words = [rnd.choice(WORDS) for _ in range(60)]
        out.append(
            {
                "name": f"{rnd.randrange(10**9):09d}-{i}",
                "type": rnd.choice(["skill", "command", "agent"]),
                "collection": rnd.choice(["default", "work", "team"]),
                "description": " ".join(words[:12]),
                "tags": words[12:14],
                "body": "# Title\n\n" + " ".join(words),
            }
        )
    return out


def _build(path: Path, records: list[dict[str, Any]], batch: int) -> None:
    settings = Settings(cache_dir=path, durability="none")
    with ProjectCache.open(settings=settings) as cache:
        for i in range(0, len(records), batch):
            cache.put_artifacts(records[i : i + batch])


def _dump(path: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every sub-database's pairs in key order, read with raw lmdb (the cache is closed)."""
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=32)
    try:
        out = {}
        with env.begin() as txn:
            for name, dupsort in DATABASES.items():
                db = env.open_db(name.encode(), txn=txn, create=False, dupsort=dupsort)
                out[name] = [(bytes(k), bytes(v)) for k, v in txn.cursor(db).iternext()]
        return out
    finally:
        env.close()


def _records(path: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    """:func:`_dump` without what differs between two caches of the same records."""
    dump = _dump(path)
    del dump["meta"]
    dump["search-pending"] = [p for p in dump["search-pending"] if p[0] != b"\xff\x06version"]
    return dump


def _file(path: Path) -> os.stat_result:
    return (path / "data.mdb").stat()


@pytest.fixture
def small_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compact after a growth of 64 KiB (16 MiB by default: test caches are small)."""
    monkeypatch.setattr(compaction, "MIN_GROWTH", 64 * 1024)


@pytest.fixture
def never(monkeypatch: pytest.MonkeyPatch) -> None:
    """No compaction on close."""
    monkeypatch.setattr(compaction, "MIN_GROWTH", 1 << 62)


def test_compact_keeps_every_record_and_fills_the_pages(tmp_path: Path, never: None) -> None:
    path = tmp_path / "cache"
    _build(path, _artifacts(3000), batch=300)
    with ProjectCache.open(settings=Settings(cache_dir=path)) as cache:
        generation, found = cache.generation(), cache.search_json("excel sheet", limit=5)
        last = cache.stats().last_txn_id
    before, size = _dump(path), _file(path).st_size

    sizes = compaction.compact(path, 1 << 30)

    assert sizes is not None and sizes[0] == size
    assert _dump(path) == before  # every key and value, byte for byte
    assert sizes[1] == _file(path).st_size < 0.8 * size
    assert not (path / "compact.tmp").exists()
    with ProjectCache.open(settings=Settings(cache_dir=path)) as cache:
        report = cache.verify(deep=True)
        assert report.ok, report
        assert cache.search_json("excel sheet", limit=5) == found
        # The transaction ids go on: an ETag handed out before is never reused.
        assert cache.generation() == generation
        cache.put_artifacts(_artifacts(1, seed=9))
        assert cache.stats().last_txn_id == last + 1
        assert cache.generation() != generation
    with ProjectCache.open(settings=Settings(cache_dir=path)) as cache:
        assert cache.stats().last_txn_id == last + 1


def test_scattered_batches_are_compacted_when_the_handle_closes(
    tmp_path: Path, small_growth: None
) -> None:
    records = _artifacts(3000)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compaction, "MIN_GROWTH", 1 << 62)
        _build(tmp_path / "plain", records, batch=300)
    _build(tmp_path / "compacted", records, batch=300)

    # The same records and indexes; meta and the write log's version differ per cache.
    assert _records(tmp_path / "compacted") == _records(tmp_path / "plain")
    assert _file(tmp_path / "compacted").st_size < 0.8 * _file(tmp_path / "plain").st_size


def test_a_write_in_key_order_is_not_rewritten(tmp_path: Path, small_growth: None) -> None:
    path = tmp_path / "cache"
    records = sorted(_artifacts(3000), key=lambda r: (r["collection"], r["type"], r["name"]))
    settings = Settings(cache_dir=path, durability="none")
    with ProjectCache.open(settings=settings) as cache:
        cache.put_artifacts(records)
        inode = _file(path).st_ino
    assert _file(path).st_ino == inode  # data.mdb was not replaced


def test_small_growth_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "cache"
    _build(path, _artifacts(3000), batch=300)  # a few MiB: under the 16 MiB default
    inode = _file(path).st_ino
    with ProjectCache.open(settings=Settings(cache_dir=path, durability="none")) as cache:
        cache.put_artifacts(_artifacts(300, seed=8))
    assert _file(path).st_ino == inode


def test_not_compacted_while_this_process_has_it_open_elsewhere(
    tmp_path: Path, never: None
) -> None:
    path = tmp_path / "cache"
    _build(path, _artifacts(3000), batch=300)
    size = _file(path).st_size
    other = lmdb.open(str(path), max_dbs=32)  # LMDB's own lock: held while open
    try:
        assert compaction.compact(path, 1 << 30) is None
    finally:
        other.close()
    assert _file(path).st_size == size
    assert compaction.compact(path, 1 << 30) is not None  # alone now


def test_not_compacted_while_another_process_has_it_open(tmp_path: Path, never: None) -> None:
    path = tmp_path / "cache"
    _build(path, _artifacts(3000), batch=300)
    inode = _file(path).st_ino
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import lmdb, sys; env = lmdb.open(sys.argv[1], max_dbs=32); "
            "print('open', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
        assert compaction.compact(path, 1 << 30) is None
        assert _file(path).st_ino == inode
    finally:
        holder.communicate(b"")
    with ProjectCache.open(settings=Settings(cache_dir=path)) as cache:
        assert cache.verify().ok


def test_an_interrupted_compaction_leaves_the_cache_as_it_was(
    tmp_path: Path, never: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cache"
    _build(path, _artifacts(1000), batch=100)
    before = _dump(path)

    def fail(*_args: Any) -> tuple[int, int]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(compaction, "_copy", fail)
    with pytest.raises(OSError):
        compaction.compact(path, 1 << 30)
    assert _dump(path) == before
    assert not (path / "compact.tmp").exists()


def test_a_process_opening_meanwhile_waits_and_sees_the_new_file(
    tmp_path: Path, never: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cache"
    records = _artifacts(2000)
    _build(path, records, batch=200)
    key = f"{records[5]['collection']}/{records[5]['type']}/{records[5]['name']}"
    child = "\n".join(
        [
            "import sys",
            "from projcache import ProjectCache",
            "from projcache.config import Settings",
            "print('ready', flush=True)",
            "sys.stdin.readline()",
            "with ProjectCache.open(settings=Settings(cache_dir=sys.argv[1])) as cache:",
            "    found = cache.get_artifact_json(sys.argv[2]) is not None",
            "    print(cache.stats().counts['artifacts'], found)",
        ]
    )
    opener = subprocess.Popen(
        [sys.executable, "-c", child, str(path), key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert opener.stdin is not None and opener.stdout is not None
    assert opener.stdout.readline() == b"ready\n"
    copy = compaction._copy
    inode = _file(path).st_ino

    def copy_while_it_opens(*args: Any) -> Any:
        assert opener.stdin is not None
        opener.stdin.write(b"go\n")
        opener.stdin.flush()
        time.sleep(0.5)  # the opener is waiting for LMDB's lock byte by now
        assert opener.poll() is None
        return copy(*args)

    monkeypatch.setattr(compaction, "_copy", copy_while_it_opens)
    assert compaction.compact(path, 1 << 30) is not None
    out, _err = opener.communicate(timeout=60)
    assert opener.returncode == 0
    assert out.split() == [b"2000", b"True"]
    assert _file(path).st_ino != inode


def test_records_written_in_key_order_fill_their_pages(tmp_path: Path, never: None) -> None:
    # Records of ~1.2 KiB: three to a page.  A plain put in key order kept two.
    path = tmp_path / "cache"
    records = _artifacts(600)
    for record in records:
        record["body"] = (record["body"] + " ") * 3
    with ProjectCache.open(settings=Settings(cache_dir=path, durability="none")) as cache:
        cache.put_artifacts(records)  # one batch: written in key order
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=32)
    try:
        db = env.open_db(b"artifacts", create=False)
        with env.begin() as txn:
            leaf_pages = txn.stat(db)["leaf_pages"]
            pages, room = 1, 0
            psize = env.stat()["psize"] - 16
            for key, value in txn.cursor(db):  # greedy packing in key order: the best possible
                node = 8 + len(key) + len(value)
                node += node % 2 + 2
                if room + node > psize:
                    pages, room = pages + 1, 0
                room += node
    finally:
        env.close()
    assert leaf_pages == pages
