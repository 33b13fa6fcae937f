"""Several processes on one cache: sharing records, fork safety, growth under readers, dead readers.

Child functions live at module level so the "spawn" start method can import
them; they receive paths as ``str`` and report ``("ok", value)`` or
``("error", traceback)`` through a multiprocessing queue, so a failure in a
child fails the test with the child's own traceback.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Callable

import lmdb
import pytest

from children import collect_messages, fork_allowed
from projcache import ProjectCache
from projcache.config import Settings

TINY_MAP = 64 * 1024
JOIN_TIMEOUT = 120.0
START_METHODS = ["spawn", "fork"]

# The growth property: GROWTH_BATCHES x GROWTH_BATCH_SIZE records from a 64 KiB map.
GROWTH_BATCHES = 100
GROWTH_BATCH_SIZE = 1000


def _artifacts(prefix: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    """Return small artifact dicts named ``<prefix>-<i>`` in the default collection."""
    return [
        {
            "name": f"{prefix}-{i}",
            "type": "skill",
            "collection": "default",
            "description": f"{prefix} number {i}",
        }
        for i in range(start, start + count)
    ]


def _key(prefix: str, i: int) -> str:
    """Return the key of artifact ``i`` of ``_artifacts(prefix, ...)``."""
    return f"default/skill/{prefix}-{i}"


def _settings(path: str, **overrides: Any) -> Settings:
    """Settings for the cache in ``path`` with a 64 KiB initial map."""
    return Settings(cache_dir=Path(path), **{"map_size": TINY_MAP, **overrides})


def _run_child(ctx: BaseContext, target: Callable[..., None], *args: Any) -> Any:
    """Run ``target(*args, results)`` in a child process and return the value it reports."""
    results = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, results))  # type: ignore[attr-defined]
    with fork_allowed():
        process.start()
    try:
        status, value = results.get(timeout=JOIN_TIMEOUT)
    finally:
        process.join(timeout=JOIN_TIMEOUT)
        if process.is_alive():
            process.kill()
            process.join()
    assert status == "ok", f"child failed:\n{value}"
    assert process.exitcode == 0
    return value


# -- children -------------------------------------------------------------------------------


def _read_then_write_child(path: str, read_prefix: str, count: int, results: Any) -> None:
    """Read ``count`` records of ``read_prefix``, then write ``count`` records of ``child``."""
    try:
        with ProjectCache.open(settings=_settings(path)) as cache:
            found = [
                i for i in range(count) if cache.get_artifact(_key(read_prefix, i)) is not None
            ]
            cache.put_artifacts(_artifacts("child", count))
        results.put(("ok", {"pid": os.getpid(), "found": found}))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _use_inherited_cache_child(cache: ProjectCache, results: Any) -> None:
    """Read and write through a ProjectCache inherited across fork, then close it."""
    try:
        before = cache.get_artifact(_key("parent", 0))
        cache.put_artifacts(_artifacts("forked", 3))
        after = cache.get_artifact(_key("forked", 2))
        cache.close()
        results.put(("ok", {"pid": os.getpid(), "before": before is not None, "after": after}))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _growth_writer(path: str, ready: Any, done: Any, committed: Any, results: Any) -> None:
    """Write GROWTH_BATCHES batches, publishing the number committed after each commit."""
    try:
        if not ready.wait(JOIN_TIMEOUT):
            raise TimeoutError("the reader never opened the cache")
        with ProjectCache.open(settings=_settings(path)) as cache:
            for batch in range(GROWTH_BATCHES):
                records = [
                    {
                        "name": f"b{batch}-{i}",
                        "type": "skill",
                        "collection": "default",
                        "description": f"batch{batch}x item {i}",
                    }
                    for i in range(GROWTH_BATCH_SIZE)
                ]
                cache.put_artifacts(records)
                committed.value = batch + 1
            map_size = cache.stats().map_size
        results.put(("ok", {"map_size": map_size}))
    except BaseException:
        results.put(("error", traceback.format_exc()))
    finally:
        done.set()


def _growth_reader(path: str, ready: Any, done: Any, committed: Any, results: Any) -> None:
    """Read committed records and search them in a loop until the writer is done."""
    try:
        with ProjectCache.open(readonly=True, settings=_settings(path)) as cache:
            map_sizes = {cache.stats().map_size}  # before the writer may start
            ready.set()
            rounds = 0
            while True:
                finished = done.is_set()  # checked first, so the last round sees every commit
                batches = committed.value
                if batches:
                    batch = rounds % batches
                    item = (rounds * 7919) % GROWTH_BATCH_SIZE
                    key = _key(f"b{batch}", item)
                    if cache.get_artifact(key) is None:
                        raise AssertionError(f"committed record {key} not found")
                    total = cache.search(f"batch{batch}x", limit=3).total
                    if total != GROWTH_BATCH_SIZE:
                        raise AssertionError(f"search found {total} of batch {batch}")
                map_sizes.add(cache.stats().map_size)
                rounds += 1
                if finished:
                    break
        results.put(("ok", {"rounds": rounds, "map_sizes": sorted(map_sizes)}))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _hold_read_transaction_child(path: str, release: Any, results: Any) -> None:
    """Open the environment with raw lmdb, start a read transaction and wait to be killed."""
    try:
        env = lmdb.open(path, readonly=True, max_dbs=16)
        txn = env.begin()
        results.put(("ok", os.getpid()))
    except BaseException:
        results.put(("error", traceback.format_exc()))
        return
    release.wait(JOIN_TIMEOUT)  # the parent SIGKILLs us long before this returns
    txn.abort()
    env.close()


def _open_and_report_child(path: str, results: Any) -> None:
    """Open the cache (running reader_check) and report its log and the reader table after."""
    try:
        messages = collect_messages("projcache.storage")
        with ProjectCache.open(settings=_settings(path)) as cache:
            env = cache._storage.env
            report = {
                "messages": messages,
                "reader_check": env.reader_check(),
                "reader_pids": sorted(_reader_pids(cache)),
            }
        results.put(("ok", report))
    except BaseException:
        results.put(("error", traceback.format_exc()))


# -- tests ----------------------------------------------------------------------------------


def _reader_pids(cache: ProjectCache) -> set[int]:
    """Return the pids holding reader slots, parsed from LMDB's reader table."""
    pids = set()
    for line in cache._storage.env.readers().splitlines():
        fields = line.split()
        if fields and fields[0].isdigit():
            pids.add(int(fields[0]))
    return pids


@pytest.mark.parametrize("method", START_METHODS)
def test_records_cross_processes(tmp_path: Path, method: str) -> None:
    """A child reads what the parent wrote, and the parent reads what the child wrote."""
    ctx = multiprocessing.get_context(method)
    path = str(tmp_path / "cache")
    with ProjectCache.open(settings=_settings(path)) as cache:
        cache.put_artifacts(_artifacts("parent", 500))
        size_before = cache.stats().map_size

        result = _run_child(ctx, _read_then_write_child, path, "parent", 500)

        assert result["pid"] != os.getpid()
        assert result["found"] == list(range(500))
        # The child grew the map: the parent adopts the new size on its next read.
        for i in range(500):
            assert cache.get_artifact(_key("child", i)) is not None, i
        stats = cache.stats()
        assert stats.counts["artifacts"] == 1000
        assert stats.map_size > size_before


class TestFork:
    """A ProjectCache object inherited across fork() keeps working in the child."""

    def test_child_reads_and_writes_through_inherited_cache(self, tmp_path: Path) -> None:
        """The child's Storage detects the fork and reopens; the parent sees the child's write."""
        ctx = multiprocessing.get_context("fork")
        with ProjectCache.open(settings=_settings(str(tmp_path / "cache"))) as cache:
            cache.put_artifacts(_artifacts("parent", 1))

            result = _run_child(ctx, _use_inherited_cache_child, cache)

            assert result["pid"] != os.getpid()
            assert result["before"] is True
            assert result["after"] is not None
            assert cache.get_artifact(_key("forked", 2)) is not None
            # The parent's own environment is unharmed by the child's reopen and close.
            cache.put_artifacts(_artifacts("parent-after", 1))
            assert cache.stats().counts["artifacts"] == 5


@pytest.mark.slow
def test_growth_under_a_concurrent_reader(tmp_path: Path) -> None:
    """100,000 records written in batches from a 64 KiB map never disturb a concurrent reader.

    The writer keeps the default durability ("full"): 100 fsynced commits stay
    well inside the time budget.  The reader opens read-only at the initial
    size and must adopt every growth transparently; every round it checks that
    a committed record is there and that a search finds its whole batch.
    """
    ctx = multiprocessing.get_context("spawn")
    path = str(tmp_path / "cache")
    ProjectCache.open(settings=_settings(path)).close()  # both children find a cache

    ready, done = ctx.Event(), ctx.Event()
    committed = ctx.Value("i", 0)
    writer_results, reader_results = ctx.Queue(), ctx.Queue()
    writer = ctx.Process(target=_growth_writer, args=(path, ready, done, committed, writer_results))
    reader = ctx.Process(target=_growth_reader, args=(path, ready, done, committed, reader_results))
    reader.start()
    writer.start()
    try:
        writer_status, writer_value = writer_results.get(timeout=4 * JOIN_TIMEOUT)
        reader_status, reader_value = reader_results.get(timeout=JOIN_TIMEOUT)
    finally:
        done.set()
        for process in (writer, reader):
            process.join(timeout=JOIN_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()

    assert reader_status == "ok", f"reader failed:\n{reader_value}"
    assert writer_status == "ok", f"writer failed:\n{writer_value}"
    assert (writer.exitcode, reader.exitcode) == (0, 0)
    assert reader_value["rounds"] >= 1
    # The reader started at the initial size and followed the growth.
    assert reader_value["map_sizes"][0] == TINY_MAP
    assert reader_value["map_sizes"][-1] > TINY_MAP
    assert writer_value["map_size"] >= reader_value["map_sizes"][-1]

    expected = {
        _key(f"b{batch}", i) for batch in range(GROWTH_BATCHES) for i in range(GROWTH_BATCH_SIZE)
    }
    with ProjectCache.open(readonly=True, settings=_settings(path)) as cache:
        stats = cache.stats()
        assert stats.counts["artifacts"] >= GROWTH_BATCHES * GROWTH_BATCH_SIZE
        assert stats.map_size >= stats.used_bytes
        assert {artifact.key for artifact in cache.list_artifacts()} == expected
        for key in sorted(expected):
            assert cache.get_artifact_json(key) is not None, key
        for batch in (0, GROWTH_BATCHES // 2, GROWTH_BATCHES - 1):
            assert cache.search(f"batch{batch}x").total == GROWTH_BATCH_SIZE


def test_killed_reader_slot_is_reclaimed_on_open(tmp_path: Path) -> None:
    """A reader SIGKILLed inside a transaction leaves a stale slot that the next open clears.

    The parent keeps the cache open throughout: were the environment closed
    everywhere, LMDB would reset the whole reader table on the next open and
    ``reader_check`` would have nothing to do.
    """
    ctx = multiprocessing.get_context("spawn")
    path = str(tmp_path / "cache")
    release = ctx.Event()
    results = ctx.Queue()
    with ProjectCache.open(settings=_settings(path)) as cache:
        cache.put_artifacts(_artifacts("r", 3))
        reader = ctx.Process(target=_hold_read_transaction_child, args=(path, release, results))
        reader.start()
        try:
            status, value = results.get(timeout=JOIN_TIMEOUT)
            assert status == "ok", f"reader failed:\n{value}"
            assert value == reader.pid
            assert reader.pid in _reader_pids(cache)
            os.kill(reader.pid, signal.SIGKILL)
        finally:
            reader.join(timeout=JOIN_TIMEOUT)
            if reader.is_alive():
                reader.kill()
                reader.join()
        assert reader.exitcode == -signal.SIGKILL
        # Nothing clears the dead process's slot by itself.
        assert reader.pid in _reader_pids(cache)

        opened = _run_child(ctx, _open_and_report_child, path)

        assert "cleared 1 stale reader slot(s)" in " ".join(opened["messages"])
        assert opened["reader_check"] == 0
        assert reader.pid not in opened["reader_pids"]
        assert reader.pid not in _reader_pids(cache)
        assert cache._storage.env.reader_check() == 0
        assert cache.get_artifact(_key("r", 2)) is not None


# -- another process grows the map while this one opens the cache -------------------------


def _grow_child(path: str, count: int, results: Any) -> None:
    """Write ``count`` records (the map grows many times over), then report the map size."""
    try:
        with ProjectCache.open(settings=_settings(path)) as cache:
            cache.put_artifacts(_artifacts("grown", count))
            size = cache.stats().map_size
        results.put(("ok", size))
    except BaseException:
        results.put(("error", traceback.format_exc()))


@pytest.mark.parametrize("readonly", [False, True], ids=["read-write", "read-only"])
def test_open_adopts_a_map_another_process_grew_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, readonly: bool
) -> None:
    """Another process grows the map between LMDB's open and the sub-databases' open.

    The first transaction of the opener then meets ``MDB_MAP_RESIZED``: it adopts the
    new size (``set_mapsize(0)``) and goes on, instead of failing with ``StorageError``.
    """
    from projcache.storage import Storage

    path = str(tmp_path / "cache")
    with ProjectCache.open(settings=_settings(path)) as cache:
        cache.put_artifacts(_artifacts("parent", 3))
    original = Storage._open_waiting_for_a_slot
    grown: list[int] = []

    def open_then_grow(self: Storage, options: dict[str, Any]) -> lmdb.Environment:
        env = original(self, options)
        if not grown:  # (the test's own reopen below must not grow it again)
            ctx = multiprocessing.get_context("spawn")
            grown.append(_run_child(ctx, _grow_child, path, 2000))
        return env

    monkeypatch.setattr(Storage, "_open_waiting_for_a_slot", open_then_grow)
    with ProjectCache.open(readonly=readonly, settings=_settings(path)) as cache:
        assert grown and grown[0] > TINY_MAP
        assert cache.get_artifact(_key("grown", 1999)) is not None
        assert cache.get_artifact(_key("parent", 2)) is not None
        assert cache.stats().map_size >= grown[0]
