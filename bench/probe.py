"""Quick probe: point-read and search timings on a synthetic cache (not the benchmark suite).

    python bench/probe.py [--size 100000] [--dir /tmp/projcache-probe]

Builds the cache once (fixed seed; reused when present), then times a point read
against raw py-lmdb doing the same get + orjson decode, and a few two-word searches.
The pytest-benchmark suite with its baselines is issue 6; this is a smoke probe.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any, Callable

import orjson

from projcache import ProjectCache
from projcache.codec import unframe
from projcache.config import Settings

COMMON = [
    "pdf",
    "text",
    "extract",
    "review",
    "code",
    "python",
    "agent",
    "skill",
    "docs",
    "test",
    "browser",
    "data",
]
COMMON += ["excel", "git", "commit", "security", "audit", "deploy", "cloud", "api"]
QUERIES = ["pdf text", "pdf rare5", "rare5 rare77", "rare5 rar", "pdf te", "p"]


def build(path: Path, size: int) -> None:
    """Write ``size`` artifacts with a realistic mix of common and rare words."""
    rng = random.Random(1)
    rare = [f"rare{i}" for i in range(2000)]
    settings = Settings(cache_dir=path, durability="none")
    with ProjectCache.open(settings=settings) as cache:
        for start in range(0, size, 5000):
            batch = []
            for i in range(start, min(size, start + 5000)):
                words = rng.choices(COMMON, k=6) + rng.choices(rare, k=3)
                batch.append(
                    {
                        "name": f"a{i}",
                        "type": rng.choice(["skill", "command", "agent"]),
                        "collection": "big",
                        "title": " ".join(words[:2]),
                        "description": " ".join(words),
                        "tags": rng.sample(COMMON, 2),
                    }
                )
            cache.put_artifacts(batch)


def per_call_us(fn: Callable[[], Any], calls: int) -> float:
    """Mean wall time of ``fn`` in microseconds over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    """Build if needed, then print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/projcache-probe"))
    args = parser.parse_args()
    path = args.dir / str(args.size)
    if not (path / "data.mdb").exists():
        started = time.perf_counter()
        build(path, args.size)
        print(f"built {args.size} artifacts in {time.perf_counter() - started:.1f} s")
    with ProjectCache.open(path, readonly=True) as cache:
        for query in QUERIES:
            cache.search(query)
            took = per_call_us(lambda q=query: cache.search(q), 20) / 1000  # type: ignore[misc]
            print(f"search {query!r:16} total={cache.search(query).total:6d} {took:7.2f} ms")
        key = f"big/agent/a{args.size // 2}"
        key = key if cache.get_artifact(key) else next(iter(cache.list_artifacts())).key
        env, db, raw_key = cache._storage.env, cache._storage.dbs["artifacts"], key.encode()

        def raw() -> Any:
            with env.begin(db=db) as txn:
                return orjson.loads(unframe(txn.get(raw_key) or b""))

        floor = per_call_us(raw, 200_000)
        fast = per_call_us(lambda: orjson.loads(cache.get_artifact_json(key) or b""), 200_000)
        model = per_call_us(lambda: cache.get_artifact(key), 50_000)
        print(
            f"point read: raw lmdb get+orjson {floor:.2f} us; get_artifact_json+orjson "
            f"{fast:.2f} us ({fast / floor:.2f}x); get_artifact (model) {model:.2f} us"
        )


if __name__ == "__main__":
    main()
