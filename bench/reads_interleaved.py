"""Point reads, a project's deployments and a listing by tag, projcache beside raw lmdb in
alternating rounds.

    python bench/reads_interleaved.py --size 100000 --rounds 60
    python bench/reads_interleaved.py --store /tmp/reads-100k --cases tag,project \
        [--lib /work/main/lib]

Issue 15 item 1's budgets, measured so that machine load hits both sides alike: the
benchmark suite's records (tests/benchmarks/bench_data.py, same seed) are loaded into a
projcache cache and into a raw py-lmdb environment (records as their JSON, deployments
keyed ``<project id> NUL <artifact key>``, tags as a dupsort ``tag NUL <tag>`` -> key
table, as the suite's floor has them), then each round times, one after the other,
raw get + ``orjson.loads``, ``get_artifact_json`` + ``orjson.loads`` and ``get_artifact``
over the suite's 512 read keys (case ``read``); a raw prefix scan + ``orjson.loads``,
``list_deployments_json`` + ``orjson.loads`` and ``list_deployments`` of the suite's
project (case ``project``); and the raw tag table's keys, each record read +
``orjson.loads``, ``iter_artifacts_json(tag=)`` + ``orjson.loads`` and
``list_artifacts(tag=)`` of the suite's tag (case ``tag``).  Prints the best round of
each and the median of the per-round ratios.

``--store DIR`` keeps both stores (and the few facts of the dataset the cases need) in
DIR, building them on the first run only; ``--lib DIR`` imports projcache from DIR (e.g.
another checkout's ``lib``), so that old and new code time the same stores, run after run;
``--gc`` keeps the garbage collector on while timing (``timeit`` turns it off; the suite's
pytest-benchmark does not), so the collections a listing's objects trigger are counted.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any, Callable

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "benchmarks"))

CASES = ("read", "project", "tag")


def build(root: Path, size: int) -> dict[str, Any]:
    """Load the suite's dataset into a projcache cache and a raw lmdb environment."""
    import lmdb
    from bench_data import build_dataset

    from projcache import ProjectCache
    from projcache.config import Settings

    data = build_dataset(size)
    with ProjectCache.open(settings=Settings(cache_dir=root / "pc", durability="none")) as c:
        for i in range(0, size, 5000):
            c.put_artifacts(data.artifacts[i : i + 5000])
        c.put_projects(data.projects)
        for i in range(0, len(data.deployments), 5000):
            c.put_deployments(data.deployments[i : i + 5000])
    env = lmdb.open(str(root / "raw"), map_size=1 << 34, max_dbs=4, sync=False)
    records, deployments = env.open_db(b"records"), env.open_db(b"deployments")
    facets = env.open_db(b"facets", dupsort=True)
    with env.begin(write=True) as txn:
        for r, raw in zip(data.artifacts, data.artifact_json):
            key = f"{r['collection']}/{r['type']}/{r['name']}".encode()
            txn.put(key, raw, db=records)
            for tag in r["tags"]:
                txn.put(b"tag\x00" + tag.encode(), key, db=facets)
        for dep, raw in zip(data.deployments, data.deployment_json):
            key = f"{dep['project_id']}\x00{dep['artifact_key']}".encode()
            txn.put(key, raw, db=deployments)
    env.close()
    facts = {
        "size": size,
        "read_keys": list(data.read_keys),
        "list_project": data.list_project,
        "list_tag": data.list_tag,
        "counts": data.counts,
    }
    (root / "facts.json").write_text(json.dumps(facts))
    return facts


def main(argv: list[str]) -> int:
    """Build (or reuse) both stores, time the reads in alternating rounds, print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--store", type=Path, help="keep (or reuse) the stores in this folder")
    parser.add_argument("--lib", type=Path, default=HERE.parent / "lib", help="projcache's lib")
    parser.add_argument("--cases", default=",".join(CASES), help="of " + ",".join(CASES))
    parser.add_argument(
        "--gc", action="store_true", help="keep the garbage collector on (as the suite does)"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.lib.resolve()))
    import lmdb

    from projcache import ProjectCache
    from projcache.config import Settings

    chosen = set(args.cases.split(","))
    if chosen - set(CASES):
        parser.error(f"--cases: one or more of {', '.join(CASES)}")
    root = args.store or Path(tempfile.mkdtemp(prefix="projcache-reads-"))
    if (root / "facts.json").exists():
        facts = json.loads((root / "facts.json").read_text())
    else:
        root.mkdir(parents=True, exist_ok=True)
        facts = build(root, args.size)
    env = lmdb.open(str(root / "raw"), max_dbs=4, readonly=True, lock=False)
    records, deployments = env.open_db(b"records"), env.open_db(b"deployments")
    facets = env.open_db(b"facets", dupsort=True)
    cache = ProjectCache.open(settings=Settings(cache_dir=root / "pc"), readonly=True)
    keys, project, tag = facts["read_keys"], facts["list_project"], facts["list_tag"]

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

    def raw_tag() -> list[Any]:  # the suite's RawLmdbEngine.list_tag
        with env.begin() as txn:
            cursor = txn.cursor(facets)
            found = list(cursor.iternext_dup()) if cursor.set_key(b"tag\x00" + tag.encode()) else []
            return [orjson.loads(txn.get(k, db=records) or b"null") for k in found]

    every: dict[str, tuple[str, Callable[[], Any], int, int]] = {
        "raw read": ("read", lambda: [raw_read(k) for k in keys], len(keys), 3),
        "get_artifact_json": (
            "read",
            lambda: [orjson.loads(cache.get_artifact_json(k) or b"null") for k in keys],
            len(keys),
            3,
        ),
        "get_artifact": ("read", lambda: [cache.get_artifact(k) for k in keys], len(keys), 3),
        "raw list": ("project", raw_list, 1, 300),
        "list_deployments_json": (
            "project",
            lambda: [orjson.loads(p) for p in cache.list_deployments_json(project)],
            1,
            300,
        ),
        "list_deployments": ("project", lambda: cache.list_deployments(project), 1, 300),
        "raw tag": ("tag", raw_tag, 1, 3),
        "iter_artifacts_json(tag)": (
            "tag",
            lambda: [orjson.loads(p) for p in cache.iter_artifacts_json(tag=tag)],
            1,
            3,
        ),
        "list_artifacts(tag)": ("tag", lambda: list(cache.list_artifacts(tag=tag)), 1, 3),
    }
    cases = {name: case[1:] for name, case in every.items() if case[0] in chosen}
    if "project" in chosen:
        listed = len(raw_list()), len(cache.list_deployments(project))
        assert listed == (facts["counts"]["project"],) * 2, listed
    if "tag" in chosen:
        listed = len(raw_tag()), len(list(cache.list_artifacts(tag=tag)))
        assert listed == (facts["counts"][f"tag:{tag}"],) * 2, listed
    base = {
        "get_artifact_json": "raw read",
        "get_artifact": "raw read",
        "list_deployments_json": "raw list",
        "list_deployments": "raw list",
        "iter_artifacts_json(tag)": "raw tag",
        "list_artifacts(tag)": "raw tag",
    }
    base = {name: against for name, against in base.items() if name in cases}
    best = {name: float("inf") for name in cases}
    here = {"gc": gc}  # timeit turns the collector off unless the setup turns it on again
    ratios: dict[str, list[float]] = {name: [] for name in base}
    for _ in range(args.rounds):
        this = {}
        for name, (fn, per, number) in cases.items():
            timer = timeit.Timer(fn, setup="gc.enable()" if args.gc else "pass", globals=here)
            this[name] = timer.timeit(number=number) / (number * per)
            best[name] = min(best[name], this[name])
        for name, against in base.items():
            ratios[name].append(this[name] / this[against])
    cache.close()
    env.close()
    print(
        f"N={facts['size']:,}, {args.rounds} alternating rounds, lib {args.lib}, "
        f"gc {'on' if args.gc else 'off'}"
    )
    for name, against in base.items():
        print(
            f"{name}: best {best[name] * 1e6:.2f} µs vs {against} {best[against] * 1e6:.2f} µs "
            f"= {best[name] / best[against]:.2f}x; median of per-round ratios "
            f"{statistics.median(ratios[name]):.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
