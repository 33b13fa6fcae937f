"""Issue 15's growth budgets, both sizes measured in alternation (items 3 and 4).

The refresh cases of ``test_cache_performance.py`` time each size in its own
rounds, minutes apart, after other cases have filled the page cache and left
write-back behind; the quotient of two such medians moves with whatever ran in
between (the raw floor itself went 10.0x-14.1x from 10,000 to 100,000 from run to
run).  Here the two largest tree sizes a tenth apart each get their own tree,
cache and raw floor, and every round refreshes both sizes, one after the other
(the order alternates), so that a slow spell hits both alike:

* unchanged: the floor, then projcache, per size;
* 1% changed: the size's next 1% of main files rewritten (untimed), then the
  floor and projcache, per size;
* first refresh: a fresh, empty cache (a new handle) and a fresh floor, per size.

The medians, the per-round quotients and the CPU times go to the facts
(``metric="refresh_growth"``); ``bench/report_perf.py`` makes the growth verdicts
of them and shows the separate-rounds quotient beside.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from bench_support import Facts, bench_sizes, smoke, tree_max

pytestmark = pytest.mark.benchmark_suite


def growth_pair() -> tuple[int, int]:
    """The two largest tree sizes of the run with the larger at least ten times the smaller."""
    sizes = sorted(s for s in bench_sizes() if s <= tree_max())
    for big in reversed(sizes):
        smaller = [s for s in sizes if s * 10 <= big]
        if smaller:
            return smaller[-1], big
    raise AssertionError(f"no two tree sizes a tenth apart among {sizes}")


def _timed(call: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds (this process) and the result of ``call()``."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = call()
    return time.perf_counter() - wall, time.process_time() - cpu, result


class _Size:
    """One size's tree, projcache cache and raw floor, and what each round measured."""

    def __init__(self, root: Path, size: int) -> None:
        from bench_data import build_dataset, write_source_tree
        from bench_refresh_floor import RefreshFloor

        from projcache import ProjectCache
        from projcache.config import Settings

        self.root, self.size = root, size
        data = build_dataset(size)
        projects = max(1, min(100, size // 1000))
        self.tree = write_source_tree(root / f"tree-{size}", data.artifacts, projects)
        self.cache = ProjectCache.open(settings=Settings(cache_dir=root / f"cache-{size}"))
        first = self.refresh(self.cache)
        assert first.ok, first.errors
        self.floor = RefreshFloor(root / f"floor-{size}", self.tree)
        self.floor.rebuild()
        self.times: dict[str, list[tuple[float, float]]] = {}

    def refresh(self, cache: Any) -> Any:
        """A projcache refresh of this size's tree through ``cache``."""
        return cache.refresh(collections=self.tree.collections, projects=self.tree.projects)

    def record(self, case: str, call: Callable[[], Any]) -> Any:
        """Time ``call()`` as one round of ``case`` (wall and CPU); return its result."""
        wall, cpu, result = _timed(call)
        self.times.setdefault(case, []).append((wall, cpu))
        return result

    def unchanged(self) -> None:
        """One round of the unchanged refresh: floor, then projcache."""
        assert self.record("floor unchanged", self.floor.refresh) == 0
        report = self.record("projcache unchanged", lambda: self.refresh(self.cache))
        assert report.ok and report.sources_changed == 0, report

    def one_percent(self) -> None:
        """One round of the 1%-changed refresh: the change (untimed), floor, projcache."""
        count = max(1, self.size // 100)
        self.tree.change(count)
        assert self.record("floor 1% changed", self.floor.refresh) == count
        report = self.record("projcache 1% changed", lambda: self.refresh(self.cache))
        assert report.ok and report.sources_changed == count, report

    def first(self, number: int) -> None:
        """One round of the first refresh: a new empty cache and a new floor, each filled."""
        from bench_refresh_floor import RefreshFloor

        from projcache import ProjectCache
        from projcache.config import Settings

        path = self.root / f"first-{self.size}-{number}"
        floor = RefreshFloor(path / "floor", self.tree)
        self.record("floor first refresh", floor.rebuild)
        floor.close()

        def fill() -> Any:
            with ProjectCache.open(settings=Settings(cache_dir=path / "cache")) as cache:
                return self.refresh(cache)

        report = self.record("projcache first refresh", fill)
        assert report.ok, report.errors
        shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Close the cache and the floor."""
        self.cache.close()
        self.floor.close()


def _summary(small: _Size, big: _Size) -> dict[str, Any]:
    """Per case: each size's median wall and CPU, and the median per-round quotient."""
    out: dict[str, Any] = {}
    for case in small.times:
        pairs = list(zip(small.times[case], big.times[case]))
        out[case] = {
            "small_wall": statistics.median(w for w, _ in small.times[case]),
            "big_wall": statistics.median(w for w, _ in big.times[case]),
            "small_cpu": statistics.median(c for _, c in small.times[case]),
            "big_cpu": statistics.median(c for _, c in big.times[case]),
            "growth_wall": statistics.median(b[0] / a[0] for a, b in pairs if a[0] > 0),
            "growth_cpu": statistics.median(b[1] / a[1] for a, b in pairs if a[1] > 0),
            "rounds": len(pairs),
        }
    return out


def test_refresh_growth_interleaved(workspace: Path, facts: Facts) -> None:
    """Unchanged, 1%-changed and first refreshes of two sizes a tenth apart, alternating."""
    small_n, big_n = growth_pair()
    root = workspace / "growth"
    sizes = [_Size(root, small_n), _Size(root, big_n)]
    os.sync()  # (the trees, caches and floors just written: not a refresh's cost)
    try:
        steady, firsts = (2, 1) if smoke() else (5, 2)
        for case, count in (("unchanged", steady), ("one_percent", steady), ("first", firsts)):
            for number in range(count):
                # Small first in even rounds, big first in odd ones.
                for size in sizes if number % 2 == 0 else sizes[::-1]:
                    if case == "first":
                        size.first(number)
                        os.sync()  # (its write-back is not the next fill's cost)
                    else:
                        getattr(size, case)()
    finally:
        for size in sizes:
            size.close()
    summary = _summary(*sizes)
    assert summary["projcache unchanged"]["rounds"] == steady
    facts.add(metric="refresh_growth", small=small_n, big=big_n, cases=summary)
