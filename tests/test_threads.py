"""Threads sharing one ProjectCache while the map grows under them."""

from __future__ import annotations

import threading
import traceback
from pathlib import Path
from typing import Callable

import pytest

from projcache import ProjectCache
from projcache.config import Settings

READERS = 4
BATCHES = 40
BATCH_SIZE = 250


def _check_in_threads(check: Callable[[int], None], drive: Callable[[], None]) -> int:
    """Run ``drive()`` while ``READERS`` threads call ``check(round)`` in a loop.

    Every thread checks at least once, and goes on until ``drive`` returns.
    Fails with the first thread's traceback; returns how many checks passed.
    """
    errors: list[str] = []
    passed = [0] * READERS
    done = threading.Event()

    def loop(t: int) -> None:
        try:
            while not done.is_set() or passed[t] == 0:
                check(passed[t])
                passed[t] += 1
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(READERS)]
    for thread in threads:
        thread.start()
    try:
        drive()
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=120)
    assert errors == [], errors[0]
    return sum(passed)


@pytest.mark.slow
def test_readers_in_threads_survive_map_growth_by_a_writer_thread(tmp_path: Path) -> None:
    """Reader threads never fail or see a partial batch while another thread grows the map.

    ``set_mapsize`` invalidates the transactions other threads hold; the storage
    must retry those reads rather than let the error escape.
    """
    settings = Settings(cache_dir=tmp_path / "cache", map_size=64 * 1024, durability="none")
    committed = [0]

    with ProjectCache.open(settings=settings) as cache:
        start_size = cache.stats().map_size

        def read(rounds: int) -> None:
            batches = committed[0]
            if batches:
                batch = rounds % batches
                key = f"default/skill/t{batch}-{rounds % BATCH_SIZE}"
                if cache.get_artifact(key) is None:
                    raise AssertionError(f"committed {key} missing")
                total = cache.search(f"tb{batch}x").total
                if total != BATCH_SIZE:
                    raise AssertionError(f"batch {batch}: search found {total}")

        def write() -> None:
            for batch in range(BATCHES):
                cache.put_artifacts(
                    {
                        "name": f"t{batch}-{i}",
                        "type": "skill",
                        "collection": "default",
                        "description": f"tb{batch}x item {i} " + "filler words " * 20,
                    }
                    for i in range(BATCH_SIZE)
                )
                committed[0] = batch + 1

        _check_in_threads(read, write)
        assert cache.stats().map_size > start_size
        assert cache.stats().counts["artifacts"] == BATCHES * BATCH_SIZE
        assert cache.verify(deep=True).ok


def test_stats_in_threads_during_map_growth_by_a_writer_thread(tmp_path: Path) -> None:
    """``stats()`` (LMDB env info and page size) never fails while another thread resizes.

    py-lmdb answers ``env.info()``/``env.stat()`` with EINVAL while a
    ``set_mapsize`` of the same process is in flight (CI saw
    ``mdb_env_stat: Invalid argument`` escape from ``stats()``), so those calls
    must wait out resizes as read transactions do.
    """
    settings = Settings(cache_dir=tmp_path / "cache", map_size=64 * 1024, durability="none")

    with ProjectCache.open(settings=settings) as cache:
        start_size = cache.stats().map_size

        def read_stats(_round: int) -> None:
            stats = cache.stats()
            if stats.used_bytes <= 0 or stats.used_bytes > stats.map_size:
                raise AssertionError(f"used {stats.used_bytes} of {stats.map_size}")
            if stats.counts["artifacts"] % 50:
                raise AssertionError(f"torn batch: {stats.counts['artifacts']}")

        def write() -> None:
            for batch in range(60):
                cache.put_artifacts(
                    {
                        "name": f"s{batch}-{i}",
                        "type": "skill",
                        "collection": "default",
                        "description": f"sb{batch}x item {i} " + "filler words " * 20,
                    }
                    for i in range(50)
                )

        assert _check_in_threads(read_stats, write) >= READERS
        assert cache.stats().map_size > start_size * 8  # it grew several times under the readers


def test_env_queries_wait_out_map_adoption_in_another_thread(tmp_path: Path) -> None:
    """``info()`` and ``page_size()`` hold back while another thread adopts the map size.

    Adopting (``set_mapsize(0)``) is what a process does when another one grew
    the map; repeating it makes the window py-lmdb reports EINVAL in wide.
    """
    settings = Settings(cache_dir=tmp_path / "cache", durability="none")
    with ProjectCache.open(settings=settings) as cache:
        storage = cache._storage
        page = storage.page_size()

        def query(_round: int) -> None:
            if storage.page_size() != page or storage.info()["map_size"] <= 0:
                raise AssertionError("inconsistent environment answer")

        def adopt() -> None:
            for _ in range(2000):
                storage._adopt_map_size()

        assert _check_in_threads(query, adopt) >= READERS
