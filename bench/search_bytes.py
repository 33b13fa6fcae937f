"""Where the bytes of a v3 cache go, per sub-database (like ``mdb_stat``).

    python bench/search_bytes.py --size 100000          # build the bench data set, then report
    python bench/search_bytes.py --size 100000 --batch 100000   # the same records in one batch
    python bench/search_bytes.py --size 100000 --refresh DIR    # a first refresh of a source tree
    python bench/search_bytes.py --dir PATH              # report an existing cache

Pages = branch + leaf + overflow pages (``txn.stat``); bytes = pages x page size;
"free" is the file's pages no sub-database holds (LMDB's free list and its two meta
pages).  The bench data set is bench/search_bench.py's (records with bodies), built
with durability ``none`` in batches of 10,000 as the benchmark builds it (``--batch``
changes the batch size).  ``--refresh DIR`` instead writes the benchmark suite's
source tree for ``--size`` artifacts under DIR (``bench_data.write_source_tree``; kept
and reused) and measures the cache a first ``ProjectCache.refresh`` of it into an
empty cache leaves: the path of a user's first refresh of a big collection.  Its
raw JSON is the artifacts' records as stored, bodies included.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "lib"))


def report(path: Path, raw_json: int = 0) -> list[dict[str, Any]]:
    """Print and return per sub-database entries, pages and bytes."""
    import lmdb

    from projcache.storage import DATABASES

    env = lmdb.open(str(path), readonly=True, max_dbs=32, lock=False)
    rows = []
    with env.begin() as txn:
        psize = env.stat()["psize"]
        for name in DATABASES:
            try:
                db = env.open_db(name.encode(), txn=txn, create=False)
            except lmdb.NotFoundError:
                continue
            st = txn.stat(db)
            pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
            rows.append({"db": name, "entries": st["entries"], "branch": st["branch_pages"],
                         "leaf": st["leaf_pages"], "overflow": st["overflow_pages"],
                         "bytes": pages * psize})  # fmt: skip
        info = env.info()
    file_bytes = (info["last_pgno"] + 1) * psize
    env.close()
    total = sum(r["bytes"] for r in rows)
    print(f"{'sub-db':<24}{'entries':>10}{'branch':>8}{'leaf':>9}{'overflow':>10}{'MiB':>9}")
    for r in sorted(rows, key=lambda r: -r["bytes"]):
        print(f"{r['db']:<24}{r['entries']:>10,}{r['branch']:>8,}{r['leaf']:>9,}"
              f"{r['overflow']:>10,}{r['bytes'] / 2**20:>9.1f}")  # fmt: skip
    print(f"{'in use':<24}{'':>37}{total / 2**20:>9.1f}")
    print(f"{'free':<24}{'':>37}{(file_bytes - total) / 2**20:>9.1f}")
    print(f"{'file (last page)':<24}{'':>37}{file_bytes / 2**20:>9.1f}")
    if raw_json:
        print(f"raw JSON {raw_json / 2**20:.1f} MiB; file / raw JSON {file_bytes / raw_json:.2f}x")
    return rows


def main(argv: list[str]) -> int:
    """Build (``--size``) or open (``--dir``) a cache and report where its bytes go."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--batch", type=int, default=0, help="records per put_artifacts call")
    parser.add_argument("--refresh", type=Path, help="measure a first refresh of a tree here")
    args = parser.parse_args(argv)
    if args.dir:
        report(args.dir)
        return 0
    if args.refresh:
        return first_refresh(args.refresh, args.size)
    from search_bench import ProjcacheEngine, with_bodies

    sys.path.insert(0, str(HERE.parent / "tests" / "benchmarks"))
    from bench_data import generate_artifacts

    start = time.perf_counter()
    records = with_bodies(generate_artifacts(args.size))
    raw = sum(len(orjson.dumps(r)) for r in records)
    print(f"generated {args.size:,} records in {time.perf_counter() - start:.1f} s", flush=True)
    root = Path(tempfile.mkdtemp(prefix="projcache-bytes-"))
    engine = ProjcacheEngine(root)
    start = time.perf_counter()
    build(engine, records, args.batch)
    print(f"built {args.size:,} in {time.perf_counter() - start:.1f} s at {engine.path}")
    report(engine.path, raw)
    return 0


def build(engine: Any, records: list[dict[str, Any]], batch: int = 0) -> None:
    """The benchmark's build (durability none, batches of 10,000 or ``batch``), with its rate."""
    from search_bench import BATCH

    from projcache import ProjectCache
    from projcache.config import Settings

    size = batch or BATCH
    settings = Settings(cache_dir=engine.path, durability="none", map_size=1 << 34)
    start = last = time.perf_counter()
    with ProjectCache.open(settings=settings) as cache:
        for i in range(0, len(records), size):
            cache.put_artifacts(records[i : i + size])
            now = time.perf_counter()
            done = i + size
            if done % 100_000 == 0 or done >= len(records):
                print(f"  {done:>9,} artifacts in {now - start:7.1f} s; last batch "
                      f"{size / (now - last):,.0f}/s", flush=True)  # fmt: skip
            last = now


def first_refresh(root: Path, size: int) -> int:
    """Write (or reuse) the suite's source tree under ``root``, refresh it into an empty cache."""
    import lmdb

    sys.path.insert(0, str(HERE.parent / "tests" / "benchmarks"))
    from bench_data import build_dataset, write_source_tree

    from projcache import ProjectCache, codec
    from projcache.config import Settings

    tree = root / f"tree-{size}"
    if not tree.exists():
        start = time.perf_counter()
        data = build_dataset(size)
        write_source_tree(tree, data.artifacts, max(1, min(100, size // 1000)))
        print(f"wrote the source tree in {time.perf_counter() - start:.1f} s", flush=True)
    cache_dir = Path(tempfile.mkdtemp(prefix="projcache-bytes-refresh-"))
    start = time.perf_counter()
    settings = Settings(cache_dir=cache_dir, durability="none")
    with ProjectCache.open(settings=settings) as cache:
        done = cache.refresh(
            collections=sorted((tree / "collections").iterdir()),
            projects=sorted((tree / "projects").iterdir()),
        )
    print(f"first refresh in {time.perf_counter() - start:.1f} s at {cache_dir}", flush=True)
    if not done.ok:
        print(done.errors)
        return 1
    env = lmdb.open(str(cache_dir), readonly=True, max_dbs=32, lock=False)
    with env.begin() as txn:
        db = env.open_db(b"artifacts", txn=txn, create=False)
        raw = sum(len(codec.unframe(value)) for _key, value in txn.cursor(db))
    env.close()
    report(cache_dir, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
