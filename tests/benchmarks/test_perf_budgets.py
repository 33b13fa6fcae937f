"""Issue 15's cases that the main suite does not already time, each with its floor in the run.

* ``verify quick``: ``ProjectCache.verify()`` (the quick check) against a raw
  full scan of the same environment that CRC-checks every framed value
  (py-lmdb cursors + ``zlib.crc32``, no projcache code).

The other issue-15 budgets read cases of ``test_cache_performance.py``
(point read, list by type/tag/project, cold CLI, refresh, invalidate all,
peak RSS); ``bench/report_perf.py`` turns them into verdict rows.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from bench_support import rounds

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
