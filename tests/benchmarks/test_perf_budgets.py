"""Issue 15's cases that the main suite does not already time, each with its floor in the run.

* ``verify quick``: ``ProjectCache.verify()`` (the quick check) against a raw
  full scan of the same environment that CRC-checks every framed value
  (py-lmdb cursors + ``zlib.crc32``, no projcache code).
* ``listing memory``: the tracemalloc peak of streaming every artifact's JSON and
  every deployment row; the baseline is the same listing at the run's smallest size
  (item 6: a listing streams in constant memory).

The other issue-15 budgets read cases of ``test_cache_performance.py``
(point read, list by type/tag/project, cold CLI, refresh, invalidate all,
peak RSS); ``bench/report_perf.py`` turns them into verdict rows.
"""

from __future__ import annotations

import tracemalloc
import zlib
from typing import Any, Callable

import pytest
from bench_support import Facts, rounds

from projcache.quickverify import FRAMED  # the baseline scans what quick verify scans

pytestmark = pytest.mark.benchmark_suite


def _crc_scan(cache: Any) -> int:
    """Read every framed value of the cache's environment and check its CRC32: the floor."""
    storage = cache._storage
    checked = 0
    with storage.env.begin() as txn:
        for name in FRAMED:
            if name not in storage.dbs:
                continue
            for _key, value in txn.cursor(storage.dbs[name]):
                if zlib.crc32(value[5:]) != int.from_bytes(value[1:5], "big"):
                    raise AssertionError("bad frame")
                checked += 1
    return checked


@pytest.mark.parametrize("engine", ["projcache", "crc-scan"])
def test_verify_quick(benchmark: Any, stores: Any, size: int, engine: str) -> None:
    """The quick verify finds nothing and checks as many values as the raw CRC scan."""
    cache = stores.cache
    scanned = _crc_scan(cache)
    report = cache.verify()
    assert report.ok and report.findings == []
    assert sum(report.checked.values()) == scanned
    benchmark.group = f"verify quick N={size:,}"
    benchmark.extra_info.update(op="verify quick", size=size, engine=engine, values=scanned)
    call = cache.verify if engine == "projcache" else (lambda: _crc_scan(cache))
    benchmark.pedantic(call, rounds=rounds(5, 3, size), warmup_rounds=1)


def _peak(consume: Callable[[], int]) -> tuple[int, int]:
    """What ``consume()`` returned and its tracemalloc peak in bytes (after a warm-up call)."""
    consume()  # first-call imports and caches are not the listing's
    tracemalloc.start()
    try:
        count = consume()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, peak


def test_listing_memory(stores: Any, size: int, facts: Facts) -> None:
    """Every artifact's JSON and every deployment row, streamed: memory of a page at any N."""
    cache = stores.cache
    counts = cache.counts()
    artifacts, artifacts_peak = _peak(lambda: sum(1 for _ in cache.iter_artifacts_json()))
    assert artifacts == counts["artifacts"]
    rows, rows_peak = _peak(lambda: sum(1 for _ in cache.iter_deployment_rows_json()))
    assert rows == counts["deployments"]
    facts.add(
        metric="listing_memory",
        size=size,
        artifacts=artifacts,
        artifacts_peak=artifacts_peak,
        deployments=rows,
        deployments_peak=rows_peak,
    )
