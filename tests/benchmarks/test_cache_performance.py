"""projcache against raw lmdb, diskcache and SQLite (FTS5), case by case, in the same run.

Run through ``python3 tasks.py bench`` (or ``--smoke``); ``bench/report.py`` turns the
pytest-benchmark JSON and the facts file into ``bench/RESULTS.md``.  Every case
checks that each engine returned the right answer; none asserts a time (the
ratios are reported, not enforced).  Each case's ``extra_info`` names its
operation, size and engine, which is what the report groups by.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, TypeVar

import orjson
import pytest
from bench_support import ROOT, Facts, measure_io, paired, rounds, smoke

pytestmark = pytest.mark.benchmark_suite

F = TypeVar("F", bound=Callable[..., Any])

READ_ENGINES = ["projcache", "projcache-models", "lmdb", "diskcache", "sqlite"]
LIST_ENGINES = ["projcache", "projcache-models", "lmdb", "sqlite"]
SEARCH_ENGINES = ["projcache", "projcache-models", "sqlite", "sqlite-prefix"]
WRITE_ENGINES = ["projcache", "lmdb", "diskcache", "diskcache-sync-full", "sqlite"]
MAINTENANCE_ENGINES = ["projcache", "lmdb", "diskcache", "sqlite"]
REFRESH_ENGINES = ["projcache", "lmdb"]
QUERY_CLASSES = ["rare&rare", "common&rare", "common&common"]
BATCH = 1000


def needs_tree(function: F) -> F:
    """Mark a case that reads a source tree (not run above ``PROJCACHE_BENCH_TREE_MAX``)."""
    function.needs_tree = True  # type: ignore[attr-defined]
    return function


def label(benchmark: Any, op: str, size: int, engine: str, **info: Any) -> None:
    """Name the case for the terminal table and for the report."""
    benchmark.group = f"{op} N={size:,}"
    benchmark.extra_info.update(op=op, size=size, engine=engine, **info)


def record_key(result: Any) -> str:
    """The artifact key of a record read back (a model, or a dict with or without ``key``)."""
    if hasattr(result, "key"):
        return str(result.key)
    return str(result.get("key") or f"{result['collection']}/{result['type']}/{result['name']}")


# -- reads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", READ_ENGINES)
def test_point_read(benchmark: Any, stores: Any, size: int, engine: str) -> None:
    """A point read returns the record asked for, decoded (dict or model)."""
    adapter = stores.engine(engine)
    keys = stores.data.read_keys
    for key in keys:
        assert record_key(adapter.read(key)) == key
    cycle = itertools.cycle(keys)
    label(benchmark, "point read", size, engine)
    benchmark(lambda: adapter.read(next(cycle)))


@pytest.mark.parametrize("engine", LIST_ENGINES)
@pytest.mark.parametrize("by", ["type", "tag", "project"])
def test_list(benchmark: Any, stores: Any, size: int, engine: str, by: str) -> None:
    """Listing by type, by tag, or a project's deployments returns exactly the expected records."""
    adapter = stores.engine(engine)
    data = stores.data
    call: Callable[[], list[Any]]
    if by == "type":
        call, expected = partial(adapter.list_type, data.list_type), data.counts["type:skill"]
    elif by == "tag":
        call, expected = (
            partial(adapter.list_tag, data.list_tag),
            data.counts[f"tag:{data.list_tag}"],
        )
    else:
        call, expected = partial(adapter.list_project, data.list_project), data.counts["project"]
    assert len(call()) == expected
    label(benchmark, f"list by {by}", size, engine, returned=expected)
    if expected > 10_000:
        benchmark.pedantic(call, rounds=rounds(10, 5, size), warmup_rounds=1)
    else:
        benchmark(call)


@pytest.mark.parametrize("qclass", QUERY_CLASSES)
@pytest.mark.parametrize("engine", SEARCH_ENGINES)
def test_search(benchmark: Any, stores: Any, size: int, engine: str, qclass: str) -> None:
    """A two-word search returns a top-20 page of matches and the exact total."""
    adapter = stores.engine(engine)
    query = stores.data.queries[qclass]
    page, total = adapter.search(query)
    assert total == len(query.keys)
    # The exact matches come first; projcache fills a short page with partial matches
    # (the other engines return the exact ones only), so only those are compared.
    exact = min(20, total)
    assert len(page) >= exact
    assert set(page[:exact]) <= query.keys
    label(benchmark, f"search {qclass}", size, engine, query=query.text, total=total)
    benchmark(adapter.search, query)


def test_search_result_sets_identical(stores: Any, size: int, facts: Facts) -> None:
    """projcache and FTS5 (exact words and last-word prefix) match the same artifacts."""
    for qclass in QUERY_CLASSES:
        query = stores.data.queries[qclass]
        found = {
            name: stores.engine(name).search_all(query)
            for name in ("projcache", "sqlite", "sqlite-prefix")
        }
        for name, keys in found.items():
            assert keys == query.keys, f"{name} found {len(keys)} for {query.text!r}"
        facts.add(
            metric="search_sets",
            size=size,
            qclass=qclass,
            query=query.text,
            fts_exact=query.fts_exact,
            fts_prefix=query.fts_prefix,
            total=len(query.keys),
            identical=True,
        )


# -- verify ------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", MAINTENANCE_ENGINES)
def test_verify(benchmark: Any, stores: Any, size: int, engine: str) -> None:
    """A full consistency check finds nothing wrong."""
    adapter = stores.engine(engine)
    label(benchmark, "verify", size, engine)
    assert benchmark.pedantic(adapter.verify, rounds=rounds(3, 1, size))


# -- cold command line ----------------------------------------------------------------------

_RAW_GET = (
    "import sys, lmdb\n"
    "env = lmdb.open(sys.argv[1], readonly=True, max_dbs=8)\n"
    "db = env.open_db(b'records', create=False)\n"
    "with env.begin(db=db) as txn:\n"
    "    sys.stdout.buffer.write(txn.get(sys.argv[2].encode()) + b'\\n')\n"
)
_SQL_SEARCH = (
    "import sys, sqlite3, orjson\n"
    "conn = sqlite3.connect(sys.argv[1])\n"
    "rows = conn.execute('SELECT f.key, a.json FROM fts f JOIN artifacts a ON a.id = f.rowid "
    "WHERE fts MATCH ? ORDER BY rank LIMIT 20', (sys.argv[2],)).fetchall()\n"
    "(total,) = conn.execute('SELECT count(*) FROM fts WHERE fts MATCH ?', "
    "(sys.argv[2],)).fetchone()\n"
    "hits = [{**orjson.loads(j), 'key': k} for k, j in rows]\n"
    "sys.stdout.buffer.write(orjson.dumps({'total': total, 'items': hits}) + b'\\n')\n"
)
CLI_CASES = [
    "python -c pass",
    "python -c 'import lmdb, orjson'",
    "python -c 'import projcache'",
    "raw lmdb get (script)",
    "projcache get --json",
    "sqlite FTS5 search (script)",
    "projcache search --json",
]


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROJCACHE_", "SKILLMEAT_"))}
    env["XDG_CONFIG_HOME"] = str(home)  # no user config file
    # An installed package has its bytecode (pip compiles it); with this set, every cold call
    # would compile projcache's modules again while the baselines (C extensions) compile nothing.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _cli_command(case: str, stores: Any) -> list[str]:
    python = sys.executable
    script = str(Path(sys.executable).with_name("projcache"))
    key = stores.data.read_keys[0]
    query = stores.data.queries["common&rare"]
    cache_dir = str(stores.paths["projcache"])
    return {
        "python -c pass": [python, "-c", "pass"],
        "python -c 'import lmdb, orjson'": [python, "-c", "import lmdb, orjson"],
        "python -c 'import projcache'": [python, "-c", "import projcache"],
        "raw lmdb get (script)": [python, "-c", _RAW_GET, str(stores.paths["lmdb"]), key],
        "projcache get --json": [script, "--cache-dir", cache_dir, "get", "--json", key],
        "sqlite FTS5 search (script)": [
            python,
            "-c",
            _SQL_SEARCH,
            str(stores.paths["sqlite"] / "bench.sqlite"),
            query.fts_exact,
        ],
        "projcache search --json": [
            script,
            "--cache-dir",
            cache_dir,
            "search",
            "--json",
            query.text,
        ],
    }[case]


@pytest.mark.parametrize("case", CLI_CASES)
def test_cold_cli(benchmark: Any, stores: Any, size: int, case: str, workspace: Path) -> None:
    """A fresh process per call (page cache warm): wall time from spawn to exit."""
    command = _cli_command(case, stores)
    env = _clean_env(workspace)

    def call() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(command, env=env, capture_output=True, check=False)

    done = call()
    assert done.returncode == 0, done.stderr.decode()
    if "get" in case:
        assert orjson.loads(done.stdout)["key"] == stores.data.read_keys[0]
    if "search" in case:
        found = orjson.loads(done.stdout)
        query = stores.data.queries["common&rare"]
        assert found["total"] == len(query.keys)
        assert {hit["key"] for hit in found["items"][: found["total"]]} <= query.keys
    label(benchmark, "cold CLI", size, case)
    benchmark.pedantic(call, rounds=rounds(15, 15, size), warmup_rounds=2)


def test_cold_cli_interleaved(stores: Any, size: int, workspace: Path, facts: Facts) -> None:
    """The cold start-up cases that budgets compare, interleaved round by round."""
    cases = [
        "python -c pass",
        "python -c 'import lmdb, orjson'",
        "python -c 'import projcache'",
        "projcache get --json",
        "projcache search --json",
    ]
    env = _clean_env(workspace)
    commands = {case: _cli_command(case, stores) for case in cases}

    def spawn(command: list[str]) -> None:
        done = subprocess.run(command, env=env, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr.decode()

    def starter(command: list[str]) -> Callable[[int], None]:
        return lambda _number: spawn(command)

    calls = {case: starter(commands[case]) for case in cases}
    paired(calls, 2, baseline="python -c 'import lmdb, orjson'")  # warm-up
    result = paired(calls, 8 if smoke() else 30, baseline="python -c 'import lmdb, orjson'")
    facts.add(metric="interleaved", op="cold CLI", size=size, **result)


# -- memory and disk ------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["projcache", "lmdb", "sqlite"])
def test_peak_rss(stores: Any, size: int, engine: str, facts: Facts) -> None:
    """Peak RSS of 5 x 512 point reads plus the three searches, in a fresh process."""
    data = stores.data
    paths = {
        "projcache": stores.paths["projcache"],
        "lmdb": stores.paths["lmdb"],
        "sqlite": stores.paths["sqlite"] / "bench.sqlite",
    }
    config = {
        "engine": engine,
        "path": str(paths[engine]),
        "keys": data.read_keys,
        "queries": [q.text for q in data.queries.values()],
        "fts": [q.fts_exact for q in data.queries.values()],
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "rss_probe.py"), json.dumps(config)],
        env=_clean_env(Path(stores.root)),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    memory = json.loads(done.stdout)
    assert memory["VmHWM"] > 0
    facts.add(
        metric="peak_rss",
        size=size,
        engine=engine,
        seconds=time.perf_counter() - started,
        **memory,
    )


def test_disk_and_load(stores: Any, size: int, facts: Facts) -> None:
    """Record how long each store took to load (the bytes on disk were recorded at load)."""
    assert stores.cache.stats().counts["artifacts"] >= size
    facts.add(metric="load_seconds", size=size, engines=dict(stores.load_seconds))


# -- writes --------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", WRITE_ENGINES)
def test_durable_write(benchmark: Any, stores: Any, size: int, engine: str, scratch: Any) -> None:
    """One record with its index entries, committed durably (where the engine can)."""
    adapter = stores.engine(engine)
    written: list[str] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        record = next(scratch)
        written.append(f"scratch/mcp/{record['name']}")
        return (record,), {}

    label(benchmark, "durable write", size, engine, durability=adapter.durability)
    with adapter.writes():
        benchmark.pedantic(adapter.put_one, setup=setup, rounds=rounds(300, 300, size))
        io = measure_io(lambda: adapter.put_one(next(scratch)), 30)
    benchmark.extra_info["io"] = io
    assert record_key(adapter.read(written[-1])) == written[-1]


def test_durable_write_interleaved(stores: Any, size: int, scratch: Any, facts: Facts) -> None:
    """Durable single writes of every engine, interleaved round by round (the budget's pair)."""
    count = 60 if smoke() else 300
    engines = ["projcache", "lmdb", "sqlite", "diskcache-sync-full"]
    adapters = {name: stores.engine(name) for name in engines}
    records = {name: [next(scratch) for _ in range(count)] for name in engines}

    def writer(adapter: Any, batch: list[dict[str, Any]]) -> Callable[[int], None]:
        return lambda number: adapter.put_one(batch[number])

    calls = {name: writer(adapters[name], records[name]) for name in engines}
    with adapters["diskcache-sync-full"].writes():
        result = paired(calls, count, baseline="lmdb")
    for name in engines:
        last = records[name][-1]
        key = f"scratch/mcp/{last['name']}"
        assert record_key(adapters[name].read(key)) == key
    facts.add(metric="interleaved", op="durable write", size=size, **result)


@pytest.mark.parametrize("engine", WRITE_ENGINES)
def test_batch_write(benchmark: Any, stores: Any, size: int, engine: str, scratch: Any) -> None:
    """1,000 records with their index entries in one transaction."""
    adapter = stores.engine(engine)
    batches: list[list[dict[str, Any]]] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        batch = list(itertools.islice(scratch, BATCH))
        batches.append(batch)
        return (batch,), {}

    label(benchmark, "batch write (1,000)", size, engine, durability=adapter.durability)
    with adapter.writes():
        benchmark.pedantic(adapter.put_batch, setup=setup, rounds=rounds(10, 6, size))
        io = measure_io(lambda: adapter.put_batch(list(itertools.islice(scratch, BATCH))), 3)
    benchmark.extra_info["io"] = io
    last = batches[-1][-1]
    key = f"scratch/mcp/{last['name']}"
    assert record_key(adapter.read(key)) == key


@pytest.mark.parametrize("engine", MAINTENANCE_ENGINES)
@pytest.mark.parametrize("scope", ["one", "all"])
def test_invalidate(benchmark: Any, stores: Any, size: int, engine: str, scope: str) -> None:
    """Marking one project (or every project) stale, durably; each round starts from fresh."""
    adapter = stores.engine(engine)
    projects = [p["id"] for p in stores.data.projects]
    project = stores.data.list_project
    targets = [project] if scope == "one" else projects
    if scope == "one":
        call: Callable[[], Any] = lambda: adapter.invalidate_one(project)  # noqa: E731
    else:
        call = adapter.invalidate_all

    def setup() -> None:
        adapter.freshen(targets)

    label(benchmark, f"invalidate {scope}", size, engine, projects=len(projects))
    count = rounds(100, 30, size) if scope == "one" else rounds(20, 10, size)
    benchmark.pedantic(call, setup=setup, rounds=count)
    benchmark.extra_info["io"] = measure_io(call, 5, setup=setup)
    if engine == "projcache":
        assert stores.cache.get_project(project).stale


# -- refresh from source files ------------------------------------------------------------


def _refresh(refreshers: dict[str, Any], tree: Any, engine: str) -> Callable[[], Any]:
    if engine == "projcache":
        cache = refreshers["projcache"]
        return lambda: cache.refresh(collections=tree.collections, projects=tree.projects)
    return refreshers["lmdb"].refresh  # type: ignore[no-any-return]


@needs_tree
@pytest.mark.parametrize("engine", REFRESH_ENGINES)
def test_refresh_unchanged(
    benchmark: Any, refreshers: dict[str, Any], tree: Any, size: int, engine: str
) -> None:
    """A refresh when no source changed re-reads nothing."""
    run = _refresh(refreshers, tree, engine)
    label(benchmark, "refresh unchanged", size, engine)
    result = benchmark.pedantic(run, rounds=rounds(10, 5, size), warmup_rounds=1)
    if engine == "projcache":
        assert result.ok and result.sources_changed == 0, result
        benchmark.extra_info["sources"] = result.sources_checked
    else:
        assert result == 0
    benchmark.extra_info["io"] = measure_io(run, 3)


@needs_tree
@pytest.mark.parametrize("engine", REFRESH_ENGINES)
def test_refresh_one_percent(
    benchmark: Any, refreshers: dict[str, Any], tree: Any, size: int, engine: str
) -> None:
    """A refresh after 1% of the artifacts changed re-reads exactly those."""
    run = _refresh(refreshers, tree, engine)
    count = max(1, size // 100)

    def setup() -> None:
        tree.change(count)

    label(benchmark, "refresh 1% changed", size, engine, changed=count)
    # The warm-up round also catches up with changes made while the other engine ran.
    result = benchmark.pedantic(run, setup=setup, rounds=rounds(6, 3, size), warmup_rounds=1)
    if engine == "projcache":
        assert result.ok and result.sources_changed == count, result
        benchmark.extra_info["sources"] = result.sources_checked
    else:
        assert result == count
    benchmark.extra_info["io"] = measure_io(run, 2, setup=setup)


@needs_tree
@pytest.mark.parametrize("engine", REFRESH_ENGINES)
def test_refresh_rebuild(
    benchmark: Any, tree: Any, size: int, engine: str, workspace: Path
) -> None:
    """Building a cache from nothing but the source files (open, read all, write, close)."""
    from bench_refresh_floor import RefreshFloor

    from projcache import ProjectCache
    from projcache.config import Settings

    counter = itertools.count()
    target: list[Path] = []

    def setup() -> None:
        if target:
            shutil.rmtree(target[-1], ignore_errors=True)
        target.append(workspace / f"rebuild-{engine}-{size}-{next(counter)}")

    def run() -> Any:
        if engine == "projcache":
            with ProjectCache.open(settings=Settings(cache_dir=target[-1])) as cache:
                return cache.refresh(collections=tree.collections, projects=tree.projects)
        floor = RefreshFloor(target[-1], tree)
        try:
            return floor.rebuild()
        finally:
            floor.close()

    label(benchmark, "refresh rebuild (empty cache)", size, engine)
    result = benchmark.pedantic(run, setup=setup, rounds=rounds(3, 1, size, big=10_000))
    if engine == "projcache":
        assert result.ok and result.artifacts_written >= size, result
        benchmark.extra_info["sources"] = result.sources_checked
    else:
        assert result == size
    shutil.rmtree(target[-1], ignore_errors=True)


@needs_tree
def test_refresh_full(benchmark: Any, refreshers: dict[str, Any], tree: Any, size: int) -> None:
    """``refresh(full=True)``: every source re-read into a populated cache.

    Its floor is the rebuild case's (the floor has no cheaper way to re-read everything).
    """
    cache = refreshers["projcache"]

    def run() -> Any:
        return cache.refresh(collections=tree.collections, projects=tree.projects, full=True)

    label(benchmark, "refresh full=True", size, "projcache")
    result = benchmark.pedantic(run, rounds=rounds(3, 1, size, big=10_000))
    assert result.ok and result.sources_changed >= size, result
