"""CPU of one single write, update and delete: old and new projcache alternating op by op.

    python bench/single_write_cpu.py STORE --old-lib OLD/lib [--ops 900]

``STORE`` is a built projcache cache directory (its ``data.mdb``, e.g. the ``projcache``
store ``bench/search_writes.py --keep DIR`` leaves).  Both libraries are loaded in this
process (the old one as a second package, ``projcache_old``), each on its own copy of the
store, durability ``none`` (the CPU of the write, not the disk's flush).  Each case does
``--ops`` single operations on fresh records (bench/search_bench.py's), the two libraries
back to back per record, which goes first alternating; each operation's CPU is
``time.thread_time_ns``.  Operations over 3 ms are the ones that merged the write log (every
``MERGE_AT`` log entries) and are reported apart: the median over all, the mean of the
others, and the merges' count and mean.  ``new/old`` is the median of the per-pair ratios.

A merge falls on the same operation for both libraries, so which library merged first (cold
caches) depends on that operation's parity: compare merge times across runs, or with
``bench/batch_interleaved.py`` (a process per library), not within one run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import search_bench as sb  # type: ignore[import-not-found]  # noqa: E402
from search_writes import load_package  # type: ignore[import-not-found]  # noqa: E402

MERGED_NS = 3_000_000


def _summary(times: list[int]) -> str:
    rest = [t for t in times if t < MERGED_NS]
    merged = [t for t in times if t >= MERGED_NS]
    out = f"median {statistics.median(times) / 1000:.1f} mean-no-merge "
    out += f"{statistics.mean(rest) / 1000:.1f} us" if rest else "- us"
    if merged:
        out += f", merges {len(merged)} x {statistics.mean(merged) / 1e6:.1f} ms"
    return out


def main(argv: list[str]) -> int:
    """Run the three cases; print one line per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="a built projcache cache directory")
    parser.add_argument("--old-lib", type=Path, required=True)
    parser.add_argument("--new-lib", type=Path, default=HERE.parent / "lib")
    parser.add_argument("--ops", type=int, default=900)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.new_lib.resolve()))  # before search_bench's own lib
    for name in [n for n in sys.modules if n == "projcache" or n.startswith("projcache.")]:
        del sys.modules[name]
    new = importlib.import_module("projcache")
    old = load_package(args.old_lib.resolve(), "projcache_old")
    settings = {
        "new": importlib.import_module("projcache.config").Settings,
        "old": importlib.import_module("projcache_old.config").Settings,
    }
    root = Path(tempfile.mkdtemp(prefix="single-write-cpu-"))
    caches: dict[str, Any] = {}
    try:
        for name, package in (("new", new), ("old", old)):
            work = root / name
            work.mkdir()
            shutil.copy(args.store / "data.mdb", work / "data.mdb")
            caches[name] = package.ProjectCache.open(
                settings=settings[name](cache_dir=work, durability="none", map_size=1 << 34)
            )
        records = sb.new_records(100_000, args.ops + 3, f"cpu{time.time_ns()}")
        for cache in caches.values():
            cache.put_artifacts(records[:3])  # warm: imports, first transaction
        cases: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
            "write": lambda c, r: c.put_artifacts([r]),
            "update": lambda c, r: c.put_artifacts(
                [{**r, "description": r["description"] + " upd"}]
            ),
            "delete": lambda c, r: c.delete_artifact(sb.artifact_key(r)),
        }
        print("load", os.getloadavg())
        for case, op in cases.items():
            times: dict[str, list[int]] = {"old": [], "new": []}
            for i, record in enumerate(records[3:]):
                for name in ("new", "old") if i % 2 else ("old", "new"):
                    start = time.thread_time_ns()
                    op(caches[name], record)
                    times[name].append(time.thread_time_ns() - start)
            ratio = statistics.median(a / b for a, b in zip(times["new"], times["old"]))
            print(
                f"{case:7s} old: {_summary(times['old'])} | new: {_summary(times['new'])}"
                f" | new/old {ratio:.3f}"
            )
        print("load", os.getloadavg())
    finally:
        for cache in caches.values():
            cache.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
