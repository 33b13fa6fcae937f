"""``invalidate()`` of everything beside SQLite's ``UPDATE`` of every row, interleaved.

    python bench/invalidate_interleaved.py CACHE_DIR [--durability full] [--rounds 30]
    python bench/invalidate_interleaved.py CACHE_DIR --build 1000000   # first, once

``--build N`` fills an empty cache with N small artifacts (7 collections, a tag each;
batches of 20,000 with durability ``none``) and 100 projects: about 10 minutes for
1,000,000 on a busy 2-core machine.  Otherwise it opens the cache (any size:
invalidating everything is one ``meta`` key, so the number of artifacts should not
matter), and each round: settles a pending mark
(an untimed ``put_projects`` of one project, as the suite's set-up does), times
``invalidate()``, then times SQLite (WAL, ``synchronous=FULL`` and ``NORMAL``)
marking as many project rows stale in one transaction.  The same round also times
``invalidate()``'s parts without the commit's flush: run it with ``--durability none``
to see what is left without ``fsync``.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from projcache import ProjectCache
from projcache.config import Settings


def build(path: Path, count: int) -> None:
    """Fill the cache at ``path`` with ``count`` small artifacts and 100 projects."""
    with ProjectCache.open(settings=Settings(cache_dir=path, durability="none")) as cache:
        batch = 20_000
        for start in range(0, count, batch):
            cache.put_artifacts(
                {
                    "name": f"a{i}",
                    "type": "skill",
                    "collection": f"c{i % 7}",
                    "description": f"artifact {i} tool{i % 97} word{i % 1013}",
                    "tags": [f"t{i % 31}"],
                }
                for i in range(start, min(count, start + batch))
            )
        cache.put_projects(
            {"id": f"p{i}", "name": f"p{i}", "path": f"/tmp/nowhere/p{i}"} for i in range(100)
        )


def main() -> None:
    """Parse the arguments, run the rounds, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("--durability", default="full")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--build", type=int, metavar="N", help="fill the cache first")
    args = parser.parse_args()
    if args.build:
        build(args.cache_dir, args.build)
        return
    cache = ProjectCache.open(
        settings=Settings(cache_dir=args.cache_dir, durability=args.durability)
    )
    projects = [p.model_dump(mode="json") for p in cache.list_projects()]
    assert projects, "the cache holds no project: nothing to invalidate"
    stats = cache.stats()
    rows = len(projects) + stats.counts.get("collections", 0)
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        connections = {}
        for sync in ("FULL", "NORMAL"):
            con = sqlite3.connect(Path(tmp) / f"{sync}.db", isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA synchronous={sync}")
            con.execute("CREATE TABLE units (id TEXT PRIMARY KEY, body TEXT)")
            con.executemany(
                "INSERT INTO units VALUES (?, ?)",
                [(f"u{i}", '{"stale":false}') for i in range(rows)],
            )
            connections[sync] = con
        for _ in range(args.rounds):
            cache.put_projects(projects[:1])
            started = time.perf_counter()
            marked = cache.invalidate()
            times.setdefault(f"projcache invalidate() [{args.durability}]", []).append(
                time.perf_counter() - started
            )
            assert marked == rows, (marked, rows)
            for sync, con in connections.items():
                con.execute("UPDATE units SET body = '{\"stale\":false}'")
                started = time.perf_counter()
                con.execute("BEGIN")
                con.execute("UPDATE units SET body = '{\"stale\":true}'")
                con.execute("COMMIT")
                times.setdefault(f"sqlite UPDATE of {rows} rows, WAL {sync}", []).append(
                    time.perf_counter() - started
                )
        for con in connections.values():
            con.close()
    cache.close()
    print(f"{stats.counts.get('artifacts', 0):,} artifacts, {rows} units, {args.rounds} rounds:")
    for name, values in times.items():
        print(
            f"  {name:44} median {statistics.median(values) * 1e3:7.3f} ms"
            f"  min {min(values) * 1e3:7.3f} ms"
        )


if __name__ == "__main__":
    main()
