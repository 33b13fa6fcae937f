"""Threads sharing one ProjectCache while the map grows under them."""

from __future__ import annotations

import threading
import traceback
from pathlib import Path

import pytest

from projcache import ProjectCache
from projcache.config import Settings

READERS = 4
BATCHES = 40
BATCH_SIZE = 250


@pytest.mark.slow
def test_readers_in_threads_survive_map_growth_by_a_writer_thread(tmp_path: Path) -> None:
    """Reader threads never fail or see a partial batch while another thread grows the map.

    ``set_mapsize`` invalidates the transactions other threads hold; the storage
    must retry those reads rather than let the error escape.
    """
    settings = Settings(cache_dir=tmp_path / "cache", map_size=64 * 1024, durability="none")
    errors: list[str] = []
    committed = [0]
    done = threading.Event()

    with ProjectCache.open(settings=settings) as cache:
        start_size = cache.stats().map_size

        def reader() -> None:
            rounds = 0
            try:
                while not done.is_set() or rounds == 0:
                    batches = committed[0]
                    if batches:
                        batch = rounds % batches
                        key = f"default/skill/t{batch}-{rounds % BATCH_SIZE}"
                        if cache.get_artifact(key) is None:
                            raise AssertionError(f"committed {key} missing")
                        total = cache.search(f"tb{batch}x").total
                        if total != BATCH_SIZE:
                            raise AssertionError(f"batch {batch}: search found {total}")
                    rounds += 1
            except BaseException:
                errors.append(traceback.format_exc())

        threads = [threading.Thread(target=reader) for _ in range(READERS)]
        for thread in threads:
            thread.start()
        try:
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
        finally:
            done.set()
            for thread in threads:
                thread.join(timeout=120)
        assert errors == []
        assert cache.stats().map_size > start_size
        assert cache.stats().counts["artifacts"] == BATCHES * BATCH_SIZE
        assert cache.verify().ok


def test_stats_in_threads_during_map_growth_by_a_writer_thread(tmp_path: Path) -> None:
    """``stats()`` (LMDB env info and page size) never fails while another thread resizes.

    py-lmdb answers ``env.info()``/``env.stat()`` with EINVAL while a
    ``set_mapsize`` of the same process is in flight (CI saw
    ``mdb_env_stat: Invalid argument`` escape from ``stats()``), so those calls
    must wait out resizes as read transactions do.
    """
    settings = Settings(cache_dir=tmp_path / "cache", map_size=64 * 1024, durability="none")
    errors: list[str] = []
    calls = [0]
    done = threading.Event()

    with ProjectCache.open(settings=settings) as cache:
        start_size = cache.stats().map_size

        def reader() -> None:
            try:
                while not done.is_set():
                    stats = cache.stats()
                    if stats.used_bytes <= 0 or stats.used_bytes > stats.map_size:
                        raise AssertionError(f"used {stats.used_bytes} of {stats.map_size}")
                    if stats.counts["artifacts"] % 50:
                        raise AssertionError(f"torn batch: {stats.counts['artifacts']}")
                    calls[0] += 1
            except BaseException:
                errors.append(traceback.format_exc())

        threads = [threading.Thread(target=reader) for _ in range(READERS)]
        for thread in threads:
            thread.start()
        try:
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
        finally:
            done.set()
            for thread in threads:
                thread.join(timeout=120)
        assert errors == [], errors[0]
        assert calls[0] > 0
        assert cache.stats().map_size > start_size * 8  # it grew several times under the readers


def test_env_queries_wait_out_map_adoption_in_another_thread(tmp_path: Path) -> None:
    """``info()`` and ``page_size()`` hold back while another thread adopts the map size.

    Adopting (``set_mapsize(0)``) is what a process does when another one grew
    the map; repeating it makes the window py-lmdb reports EINVAL in wide.
    """
    settings = Settings(cache_dir=tmp_path / "cache", durability="none")
    errors: list[str] = []
    done = threading.Event()
    with ProjectCache.open(settings=settings) as cache:
        storage = cache._storage
        page = storage.page_size()

        def query() -> None:
            try:
                while not done.is_set():
                    if storage.page_size() != page or storage.info()["map_size"] <= 0:
                        raise AssertionError("inconsistent environment answer")
            except BaseException:
                errors.append(traceback.format_exc())

        threads = [threading.Thread(target=query) for _ in range(READERS)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(2000):
                storage._adopt_map_size()
        finally:
            done.set()
            for thread in threads:
                thread.join(timeout=120)
        assert errors == [], errors[0]
