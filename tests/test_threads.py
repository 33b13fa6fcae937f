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
