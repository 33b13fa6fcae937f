"""Durable writes of issue 13, interleaved per operation: projcache v3 beside SQLite FTS5.

    python bench/search_writes.py --size 100000 [--rounds 300] [--keep DIR]

Builds both engines at ``--size`` (bench/search_bench.py's records and engines), then
does ``--rounds`` single writes, then as many updates, then as many deletes, each one on
projcache and on FTS5 back to back (which engine goes first alternates), so that both
see the same load on a shared machine.  Reports per case the median of the per-pair
ratios and of each engine's times, bytes sent to disk per operation (``/proc/self/io``,
tail merges included), then a batch of 1,000 on each (best of ``--batches``
alternating runs).  ``--keep DIR`` keeps the built stores (and reuses them: the
records are generated again, the build is skipped).

``--floor`` adds a third engine, raw py-lmdb: the same records as JSON in one unnamed
database, each write one durable ``put`` (``sync=True, metasync=True``: LMDB's two flushes
per commit), so the report shows what no LMDB store can go under on this machine beside
the ratio to FTS5 (``floor`` ratios: projcache / raw-lmdb).

``--page-cache small`` (the default) first drops both engines' files from the page cache
(``posix_fadvise(DONTNEED)``) and reads them back 4 KiB at a time without readahead: the
build leaves large page-cache folios behind, and on Linux 6.x a 4 KiB write into one dirties
(and is accounted as) the whole folio, so the bytes per write depended on how the file was
last written.  ``--page-cache asis`` measures right after the build.  ``--bytes written``
counts instead the bytes each engine passed to ``write``/``pwrite`` (``wchar``): the exact
pages an LMDB commit writes (plus its meta page), whatever the page cache accounts.
``--lib DIR`` imports projcache from another checkout's ``lib`` (before -> after
comparisons).  ``--old-lib DIR`` instead adds that checkout's projcache as one more engine,
``projcache-old`` (its own store built from the same records, the package loaded under
another name), so old and new code alternate operation by operation in one run:
``vs_old`` ratios are projcache / projcache-old, per pair (median) and for the batch.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import search_bench as sb  # type: ignore[import-not-found]  # noqa: E402


def written_chars() -> int:
    """Bytes this process has passed to write(2)/pwrite(2) (``wchar`` of /proc/self/io)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


_COUNTERS: dict[str, Callable[[], int]] = {"disk": sb.written_bytes, "written": written_chars}
_counter: Callable[[], int] = sb.written_bytes


def _timed(fn: Callable[[], Any]) -> tuple[float, int]:
    before = _counter()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, _counter() - before


class RawLmdbEngine:
    """The floor: raw py-lmdb, one durable put (or delete) per operation, no index."""

    name = "raw-lmdb"

    def __init__(self, root: Path):
        self.path = root / "raw-lmdb"
        self.env: Any = None

    def build(self, records: list[dict[str, Any]]) -> float:
        import lmdb
        import orjson

        start = time.perf_counter()
        env = lmdb.open(str(self.path), map_size=1 << 36, sync=False)
        for i in range(0, len(records), 10_000):
            with env.begin(write=True) as txn:
                for r in records[i : i + 10_000]:
                    txn.put(sb.artifact_key(r).encode(), orjson.dumps(r))
        env.sync(True)
        env.close()
        took = time.perf_counter() - start
        self.open()
        return took

    def open(self) -> None:
        import lmdb

        self.env = lmdb.open(str(self.path), map_size=1 << 36, sync=True, metasync=True)

    def put(self, records: list[dict[str, Any]]) -> None:
        import orjson

        with self.env.begin(write=True) as txn:
            for r in records:
                txn.put(sb.artifact_key(r).encode(), orjson.dumps(r))

    def delete(self, key: str) -> None:
        with self.env.begin(write=True) as txn:
            txn.delete(key.encode())

    def close(self) -> None:
        self.env.close()


def load_package(lib: Path, name: str) -> Any:
    """Import ``lib/projcache`` as the package ``name`` (its imports are all relative), so a
    second copy of projcache runs beside the one imported as ``projcache``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        name, lib / "projcache" / "__init__.py", submodule_search_locations=[str(lib / "projcache")]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class OldProjcacheEngine(sb.ProjcacheEngine):  # type: ignore[misc]
    """projcache from another checkout (``--old-lib``), on a store of its own."""

    name = "projcache-old"

    def __init__(self, root: Path, lib: Path):
        super().__init__(root)
        self.path = root / "projcache-old"
        self.package = load_package(lib, "projcache_old")
        self.settings = importlib.import_module("projcache_old.config").Settings

    def build(self, records: list[dict[str, Any]]) -> float:
        settings = self.settings(cache_dir=self.path, durability="none", map_size=1 << 34)
        start = time.perf_counter()
        with self.package.ProjectCache.open(settings=settings) as cache:
            for i in range(0, len(records), sb.BATCH):
                cache.put_artifacts(records[i : i + sb.BATCH])
        took = time.perf_counter() - start
        self.open()
        return took

    def open(self) -> None:
        settings = self.settings(cache_dir=self.path, durability="full", map_size=1 << 34)
        self.cache = self.package.ProjectCache.open(settings=settings)


def _reload_in_pages(path: Path) -> None:
    """Drop ``path`` from the page cache, then read it back one 4 KiB page at a time."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        offset, size = 0, os.fstat(fd).st_size
        while offset < size:
            os.pread(fd, 4096, offset)
            offset += 4096
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    """Run the interleaved write cases; print a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    # 300: the writes alone pass MERGE_AT (256 log entries), so a merge counts in their bytes
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--page-cache", choices=("small", "asis"), default="small")
    parser.add_argument("--lib", type=Path, default=None)
    parser.add_argument(
        "--old-lib", type=Path, default=None, help="also this checkout's projcache (its lib)"
    )
    parser.add_argument("--floor", action="store_true", help="also raw py-lmdb (the floor)")
    parser.add_argument(
        "--bytes",
        choices=tuple(_COUNTERS),
        default="disk",
        help="disk: write_bytes (what the page cache accounts, whole folios); written: the "
        "bytes each engine passed to write/pwrite (exact pages of a commit)",
    )
    args = parser.parse_args(argv)
    global _counter
    _counter = _COUNTERS[args.bytes]
    if args.lib is not None:
        sys.path.insert(0, str(args.lib))
    root = args.keep or Path(tempfile.mkdtemp(prefix="projcache-writes-"))
    root.mkdir(parents=True, exist_ok=True)
    records = sb.with_bodies(sb.generate_artifacts(args.size))
    engines: list[Any] = [sb.ProjcacheEngine(root), sb.Fts5Engine(root)]
    if args.floor:
        engines.append(RawLmdbEngine(root))
    if args.old_lib is not None:
        engines.append(OldProjcacheEngine(root, args.old_lib.resolve()))
    old = args.old_lib is not None
    for engine in engines:
        marker = root / f"{engine.name}.built"
        if marker.exists():
            engine.open()
        else:
            took = engine.build(records)
            marker.write_text(str(took))
            print(f"{engine.name}: built in {took:.1f} s", file=sys.stderr, flush=True)
    if args.page_cache == "small":
        for path in root.rglob("*"):
            if path.is_file():
                _reload_in_pages(path)
    salt = f"i{int(time.time())}"
    fresh = sb.new_records(args.size, args.rounds, salt)
    cases: dict[str, Callable[[Any, dict[str, Any]], Callable[[], Any]]] = {
        "write": lambda e, r: lambda: e.put([r]),
        "update": lambda e, r: lambda: e.put([{**r, "description": r["description"] + " upd"}]),
        "delete": lambda e, r: lambda: e.delete(sb.artifact_key(r)),
    }
    out: dict[str, Any] = {"size": args.size, "rounds": args.rounds, "load": os.getloadavg()}
    for case, make in cases.items():
        ratios: list[float] = []
        floors: list[float] = []
        over_floor: list[float] = []
        over_old: list[float] = []
        times: dict[str, list[float]] = {e.name: [] for e in engines}
        sent = {e.name: 0 for e in engines}
        for i, record in enumerate(fresh):
            order = engines[i % len(engines) :] + engines[: i % len(engines)]
            took = {}
            for engine in order:
                seconds, written = _timed(make(engine, record))
                took[engine.name] = seconds
                times[engine.name].append(seconds)
                sent[engine.name] += written
            ratios.append(took["projcache"] / took["sqlite-fts5"])
            if args.floor:
                floors.append(took["raw-lmdb"] / took["sqlite-fts5"])
                over_floor.append(took["projcache"] / took["raw-lmdb"])
            if old:
                over_old.append(took["projcache"] / took["projcache-old"])
        out[case] = {
            "ratio_median": statistics.median(ratios),
            **(
                {
                    "floor_vs_fts5_median": statistics.median(floors),
                    "projcache_vs_floor_median": statistics.median(over_floor),
                }
                if args.floor
                else {}
            ),
            **({"vs_old_median": statistics.median(over_old)} if old else {}),
            **{f"{n}_us": statistics.median(t) * 1e6 for n, t in times.items()},
            **{f"{n}_kib_per_op": b / len(fresh) / 1024 for n, b in sent.items()},
        }
        print(case, json.dumps(out[case]), file=sys.stderr, flush=True)
    best: dict[str, float] = {e.name: float("inf") for e in engines}
    for run in range(args.batches):
        batch = sb.new_records(args.size, 1000, f"{salt}b{run}")
        for engine in engines[run % len(engines) :] + engines[: run % len(engines)]:
            seconds, _ = _timed(functools.partial(engine.put, batch))
            best[engine.name] = min(best[engine.name], seconds)
    out["batch1000"] = {
        "ratio": best["projcache"] / best["sqlite-fts5"],
        **({"vs_old": best["projcache"] / best["projcache-old"]} if old else {}),
        **{f"{n}_ms": s * 1000 for n, s in best.items()},
    }
    for engine in engines:
        engine.close()
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
