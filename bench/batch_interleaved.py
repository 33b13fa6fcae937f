"""CPU of projcache's writes, old and new library alternating, each run on a fresh store copy.

    python bench/batch_interleaved.py STORE --old-lib /work/main/lib [--rounds 3]
        [--batches 3] [--singles 768]

``STORE`` is a built projcache cache directory (its ``data.mdb``, e.g. the ``projcache``
store ``bench/search_writes.py --keep DIR`` leaves).  Each round runs one process per
library (which goes first alternates); each process works on its own copy of ``data.mdb``
(so both see the same store, whatever the other wrote), puts one warm batch of 1,000
records, then ``--batches`` timed batches (durability ``full``), then ``--singles`` single
writes under durability ``none`` (the CPU of the write itself, without the fsync; 768
single writes pass three write-log merges).  Both libraries get the same records.  Reports
per library the minimum and median wall and CPU (process time) of a batch, the mean and
median CPU of a single write and the CPU of each single write that merged the log.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[4])
import search_bench as sb
sys.path.insert(0, sys.argv[1])
from projcache import ProjectCache
from projcache.config import Settings

store, salt, batches, singles = sys.argv[2], sys.argv[3], int(sys.argv[5]), int(sys.argv[6])
records = [sb.new_records(100000, 1000, f"{salt}b{i}") for i in range(batches + 1)]
out = {"batch": [], "single": []}
with ProjectCache.open(
    settings=Settings(cache_dir=store, durability="full", map_size=1 << 34)
) as cache:
    cache.put_artifacts(records[0])
    for batch in records[1:]:
        wall, cpu = time.perf_counter(), time.process_time()
        cache.put_artifacts(batch)
        out["batch"].append((time.perf_counter() - wall, time.process_time() - cpu))
with ProjectCache.open(
    settings=Settings(cache_dir=store, durability="none", map_size=1 << 34)
) as cache:
    for record in sb.new_records(100000, singles, f"{salt}s"):
        cpu = time.thread_time()
        cache.put_artifacts([record])
        out["single"].append(time.thread_time() - cpu)
print(json.dumps(out))
"""


def main(argv: list[str]) -> int:
    """Run the alternating rounds; print a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="a built projcache cache directory")
    parser.add_argument("--old-lib", type=Path, required=True)
    parser.add_argument("--new-lib", type=Path, default=HERE.parent / "lib")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--singles", type=int, default=768)
    args = parser.parse_args(argv)
    libs = {"old": args.old_lib.resolve(), "new": args.new_lib.resolve()}
    batches: dict[str, list[tuple[float, float]]] = {k: [] for k in libs}
    singles: dict[str, list[float]] = {k: [] for k in libs}
    with tempfile.TemporaryDirectory(prefix="projcache-batch-ab-") as scratch:
        for run in range(args.rounds):
            for name in list(libs) if run % 2 == 0 else list(libs)[::-1]:
                copy = Path(scratch) / name
                shutil.rmtree(copy, ignore_errors=True)
                copy.mkdir()
                shutil.copy(args.store / "data.mdb", copy / "data.mdb")
                done = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        _CHILD,
                        str(libs[name]),
                        str(copy),
                        f"r{run}",
                        str(HERE),
                        str(args.batches),
                        str(args.singles),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(done.stdout)
                batches[name].extend((float(w), float(c)) for w, c in result["batch"])
                singles[name].extend(float(c) for c in result["single"])
                shutil.rmtree(copy)
    out: dict[str, object] = {"load": os.getloadavg()}
    for name in libs:
        walls = [wall for wall, _cpu in batches[name]]
        cpus = [cpu for _wall, cpu in batches[name]]
        single = sorted(singles[name])
        out[name] = {
            "batch_wall_ms_min_median": [min(walls) * 1e3, statistics.median(walls) * 1e3],
            "batch_cpu_ms_min_median": [min(cpus) * 1e3, statistics.median(cpus) * 1e3],
            "single_cpu_us_mean_median": [
                statistics.mean(single) * 1e6,
                statistics.median(single) * 1e6,
            ],
            # the writes that merged the log (a merge costs tens of ms; a write without ~0.2)
            "single_merges_cpu_ms": [round(c * 1e3, 1) for c in single if c > 0.005],
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
