"""Bytes on disk and point-read cost of artifact records, by body length (issue 15 item 1).

    python bench/record_bytes.py --size 100000                    # the search benchmark's records
    python bench/record_bytes.py --size 100000 --body-chars 2000  # bodies as long as real ones

Builds a cache the way ``bench/search_bytes.py`` does (durability ``none``, batches of
10,000) from bench/search_bench.py's records, whose bodies are a heading and four other
records' descriptions (about 270 characters).  ``--body-chars N`` lengthens every body to N
characters with more descriptions: real SKILL.md bodies run to kilobytes and projcache keeps
the first 2,000 characters (``codec.MAX_BODY_CHARS``).  Then it prints where the bytes went
(per sub-database), the file's size over the records' raw JSON, and the median cost of a
point read (``get_artifact_json`` + ``orjson.loads`` and ``get_artifact``) beside a raw
py-lmdb get + ``orjson.loads`` of the same JSON, in alternating rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "lib"))
sys.path.insert(0, str(HERE.parent / "tests" / "benchmarks"))


def lengthen(records: list[dict[str, Any]], chars: int) -> None:
    """Grow every body to ``chars`` characters with other records' descriptions."""
    count = len(records)
    for i, record in enumerate(records):
        parts = [record["body"]]
        step = 1
        while sum(map(len, parts)) < chars:
            parts.append(records[(i * 7919 + step * 104729) % count]["description"])
            step += 1
        record["body"] = "\n\n".join(parts)[:chars]


def read_costs(path: Path, records: list[dict[str, Any]], rounds: int) -> dict[str, float]:
    """Median µs per read: projcache JSON, projcache model, raw lmdb (same JSON), alternating."""
    import lmdb

    from projcache import ProjectCache
    from projcache.config import Settings
    from projcache.models import Artifact

    sample = records[:: max(1, len(records) // 512)]
    keys = [f"{r['collection']}/{r['type']}/{r['name']}" for r in sample]
    raw_dir = path.parent / "raw"
    # The floor holds every record (not just the ones read), as the cache does.
    env = lmdb.open(str(raw_dir), map_size=1 << 34, max_dbs=1, sync=False)
    with env.begin(write=True) as txn:
        for r in records:
            whole = Artifact.model_validate(r).model_dump_json().encode()
            txn.put(f"{r['collection']}/{r['type']}/{r['name']}".encode(), whole)
    times: dict[str, list[float]] = {"raw": [], "json": [], "model": []}
    with ProjectCache.open(settings=Settings(cache_dir=path), readonly=True) as cache:

        def raw_read(k: str) -> Any:
            with env.begin() as txn:
                return orjson.loads(txn.get(k.encode()) or b"null")

        fns = {
            "raw": raw_read,
            "json": lambda k: orjson.loads(cache.get_artifact_json(k) or b"null"),
            "model": cache.get_artifact,
        }
        for _ in range(rounds):
            for name, fn in fns.items():
                start = time.perf_counter()
                for k in keys:
                    fn(k)
                times[name].append((time.perf_counter() - start) / len(keys) * 1e6)
    env.close()
    return {name: min(values) for name, values in times.items()} | {
        f"{name} median": statistics.median(values) for name, values in times.items()
    }


def main(argv: list[str]) -> int:
    """Build the cache, report its bytes and the read costs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--body-chars", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    from bench_data import generate_artifacts
    from search_bench import ProjcacheEngine, with_bodies
    from search_bytes import build, report

    records = with_bodies(generate_artifacts(args.size))
    if args.body_chars:
        lengthen(records, args.body_chars)
    raw = sum(len(orjson.dumps(r)) for r in records)
    print(f"{args.size:,} records, {raw / args.size:,.0f} bytes of JSON each on average")
    root = Path(tempfile.mkdtemp(prefix="projcache-record-bytes-"))
    engine = ProjcacheEngine(root)
    build(engine, records)
    report(engine.path, raw)
    costs = read_costs(engine.path, records, args.rounds)
    print(
        f"point read, best of {args.rounds} rounds (median): raw get + loads "
        f"{costs['raw']:.2f} µs ({costs['raw median']:.2f}); get_artifact_json + loads "
        f"{costs['json']:.2f} µs ({costs['json median']:.2f}) = "
        f"{costs['json'] / costs['raw']:.2f}x; "
        f"get_artifact {costs['model']:.2f} µs ({costs['model median']:.2f}) = "
        f"{costs['model'] / costs['raw']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
