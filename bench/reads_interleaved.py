"""Point reads and a project's deployments, projcache beside raw lmdb in alternating rounds.

    python bench/reads_interleaved.py --size 100000 --rounds 60

Issue 15 item 1's budgets, measured so that machine load hits both sides alike: the
benchmark suite's records (tests/benchmarks/bench_data.py, same seed) are loaded into a
projcache cache and into a raw py-lmdb environment (records as their JSON, deployments
keyed ``<project id> NUL <artifact key>``), then each round times, one after the other,
raw get + ``orjson.loads``, ``get_artifact_json`` + ``orjson.loads`` and ``get_artifact``
over the suite's 512 read keys, and a raw prefix scan + ``orjson.loads``,
``list_deployments_json`` + ``orjson.loads`` and ``list_deployments`` of the suite's
project.  Prints the best round of each and the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any, Callable

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))
sys.path.insert(0, str(HERE.parent / "tests" / "benchmarks"))


def main(argv: list[str]) -> int:
    """Build both stores, time the reads in alternating rounds, print the ratios."""
    import lmdb
    from bench_data import build_dataset

    from projcache import ProjectCache
    from projcache.config import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args(argv)
    data = build_dataset(args.size)
    root = Path(tempfile.mkdtemp(prefix="projcache-reads-"))
    with ProjectCache.open(settings=Settings(cache_dir=root / "pc", durability="none")) as c:
        for i in range(0, args.size, 5000):
            c.put_artifacts(data.artifacts[i : i + 5000])
        c.put_projects(data.projects)
        for i in range(0, len(data.deployments), 5000):
            c.put_deployments(data.deployments[i : i + 5000])
    env = lmdb.open(str(root / "raw"), map_size=1 << 34, max_dbs=3, sync=False)
    records, deployments = env.open_db(b"records"), env.open_db(b"deployments")
    with env.begin(write=True) as txn:
        for r, raw in zip(data.artifacts, data.artifact_json):
            txn.put(f"{r['collection']}/{r['type']}/{r['name']}".encode(), raw, db=records)
        for dep, raw in zip(data.deployments, data.deployment_json):
            key = f"{dep['project_id']}\x00{dep['artifact_key']}".encode()
            txn.put(key, raw, db=deployments)
    cache = ProjectCache.open(settings=Settings(cache_dir=root / "pc"), readonly=True)
    keys, project = data.read_keys, data.list_project

    def raw_read(key: str) -> Any:
        with env.begin(db=records) as txn:
            return orjson.loads(txn.get(key.encode()) or b"null")

    def raw_list() -> list[Any]:
        prefix, out = project.encode() + b"\x00", []
        with env.begin(db=deployments) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    out.append(orjson.loads(value))
        return out

    cases: dict[str, tuple[Callable[[], Any], int, int]] = {
        "raw read": (lambda: [raw_read(k) for k in keys], len(keys), 3),
        "get_artifact_json": (
            lambda: [orjson.loads(cache.get_artifact_json(k) or b"null") for k in keys],
            len(keys),
            3,
        ),
        "get_artifact": (lambda: [cache.get_artifact(k) for k in keys], len(keys), 3),
        "raw list": (raw_list, 1, 300),
        "list_deployments_json": (
            lambda: [orjson.loads(p) for p in cache.list_deployments_json(project)],
            1,
            300,
        ),
        "list_deployments": (lambda: cache.list_deployments(project), 1, 300),
    }
    assert len(raw_list()) == len(cache.list_deployments(project)) == data.counts["project"]
    base = {
        "get_artifact_json": "raw read",
        "get_artifact": "raw read",
        "list_deployments_json": "raw list",
        "list_deployments": "raw list",
    }
    best = {name: float("inf") for name in cases}
    ratios: dict[str, list[float]] = {name: [] for name in base}
    for _ in range(args.rounds):
        this = {}
        for name, (fn, per, number) in cases.items():
            this[name] = timeit.timeit(fn, number=number) / (number * per)
            best[name] = min(best[name], this[name])
        for name, against in base.items():
            ratios[name].append(this[name] / this[against])
    cache.close()
    env.close()
    print(f"N={args.size:,}, {args.rounds} alternating rounds")
    for name, against in base.items():
        print(
            f"{name}: best {best[name] * 1e6:.2f} µs vs {against} {best[against] * 1e6:.2f} µs "
            f"= {best[name] / best[against]:.2f}x; median of per-round ratios "
            f"{statistics.median(ratios[name]):.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
