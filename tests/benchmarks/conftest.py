"""The speed suite's switches, sizes and shared (per-size, session-long) stores.

The suite is heavy, so the main test run (``pytest`` from the repository root)
does not collect it: its test modules are ignored unless ``PROJCACHE_BENCH=1``,
which ``bench/run.py`` (``python3 tasks.py bench``, ``make bench``, ``tox -e bench``)
sets.  Nothing here is skipped: ignored modules are simply not collected, and
this file imports nothing heavy at module level.

Environment (all set by ``bench/run.py`` from its options):

* ``PROJCACHE_BENCH_SIZES``: comma-separated artifact counts (default
  ``10,100,1000,10000,100000``); ``PROJCACHE_BENCH_MILLION=1`` adds 1,000,000.
* ``PROJCACHE_BENCH_SMOKE=1``: fewer rounds for the slow cases (CI's smoke run).
* ``PROJCACHE_BENCH_FACTS``: where the non-timing measurements go (JSON).
* ``PROJCACHE_BENCH_TMP``: parent of the scratch directory (default: the system temp dir).
* ``PROJCACHE_BENCH_TREE_MAX``: the largest size that gets a source tree for the
  refresh cases (default 100,000: a million files is a disk benchmark).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bench_support import Facts

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

if os.environ.get("PROJCACHE_BENCH") != "1":
    collect_ignore_glob = ["test_*.py"]
elif str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the bench_* helper modules (this folder is no package)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``size`` per session, so each size's stores are built once and freed after."""
    from bench_support import bench_sizes, tree_max

    if "size" in metafunc.fixturenames:
        sizes = bench_sizes()
        if getattr(metafunc.function, "needs_tree", False):
            sizes = [s for s in sizes if s <= tree_max()]
        low, high = getattr(metafunc.function, "size_range", (0, float("inf")))
        sizes = [s for s in sizes if low <= s <= high]
        metafunc.parametrize("size", sizes, scope="session", ids=lambda s: f"N={s}")


@pytest.fixture(scope="session")
def facts() -> Iterator[Facts]:
    """The run's non-timing measurements; written to ``$PROJCACHE_BENCH_FACTS`` at the end."""
    from bench_support import Facts

    collected = Facts()
    yield collected
    target = os.environ.get("PROJCACHE_BENCH_FACTS") or str(ROOT / "bench/results/facts.json")
    collected.save(Path(target))


@pytest.fixture(scope="session")
def workspace() -> Iterator[Path]:
    """One scratch directory for the whole run (stores, source trees), removed at the end."""
    parent = os.environ.get("PROJCACHE_BENCH_TMP") or None
    path = Path(tempfile.mkdtemp(prefix="projcache-bench-", dir=parent))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def data(size: int) -> Any:
    """The size's records, projects, deployments and queries (fixed seed)."""
    from bench_data import build_dataset

    return build_dataset(size)


@pytest.fixture(scope="session")
def stores(data: Any, size: int, workspace: Path, facts: Facts) -> Iterator[Any]:
    """Every engine's store, loaded with ``data``; closed when the next size starts."""
    from bench_engines import Stores

    built = Stores(data, workspace / f"stores-{size}")
    facts.add(
        metric="disk_bytes",
        size=size,
        raw_json=data.raw_json_bytes,
        artifacts=len(data.artifacts),
        projects=len(data.projects),
        deployments=len(data.deployments),
        engines=built.disk_bytes(),
        projcache_used=built.cache.stats().used_bytes,
        lmdb_used=built.lmdb_used_bytes(),
    )
    yield built
    built.close()


@pytest.fixture(scope="session")
def scratch(data: Any) -> Iterator[dict[str, Any]]:
    """An endless supply of fresh records for the write cases (unique names, no query words)."""
    from bench_data import scratch_artifacts

    avoid = {word for query in data.queries.values() for word in query.words}
    pool = list(scratch_artifacts(2000, avoid))

    def supply() -> Iterator[dict[str, Any]]:
        number = 0
        while True:
            for record in pool:
                number += 1
                yield {**record, "name": f"scratch-{number}"}

    return supply()


@pytest.fixture(scope="session")
def tree(size: int, data: Any, workspace: Path) -> Any:
    """The size's records written as SkillMeat collections and projects (aged an hour)."""
    from bench_data import write_source_tree

    projects = max(1, min(100, size // 1000))
    written = write_source_tree(workspace / f"tree-{size}", data.artifacts, projects)
    # Flushed before any timing: the kernel's write-back of a fresh tree (~100k files)
    # would otherwise run during the first refresh cases, more at 100,000 than at 10,000.
    os.sync()
    return written


@pytest.fixture(scope="session")
def refreshers(tree: Any, size: int, workspace: Path) -> Iterator[dict[str, Any]]:
    """A projcache cache and the raw floor, each primed with a first read of ``tree``."""
    from bench_refresh_floor import RefreshFloor

    from projcache import ProjectCache
    from projcache.config import Settings

    cache = ProjectCache.open(settings=Settings(cache_dir=workspace / f"refresh-{size}"))
    first = cache.refresh(collections=tree.collections, projects=tree.projects)
    assert first.ok, first.errors
    floor = RefreshFloor(workspace / f"refresh-floor-{size}", tree)
    floor.rebuild()
    os.sync()  # (both fsync their commits; the tree's and other pages: not a refresh's cost)
    yield {"projcache": cache, "lmdb": floor, "first": first}
    cache.close()
    floor.close()
