"""CPU of projcache's writes, old and new library alternating, each run on a fresh store copy.

    python bench/batch_interleaved.py STORE --old-lib /work/main/lib [--rounds 3]
        [--batches 3] [--singles 768] [--fts5 DB]

``STORE`` is a built projcache cache directory (its ``data.mdb``, e.g. the ``projcache``
store ``bench/search_writes.py --keep DIR`` leaves).  Each round runs one process per
library (which goes first alternates); each process works on its own copy of ``data.mdb``
(so both see the same store, whatever the other wrote), puts one warm batch of 1,000
records, then ``--batches`` timed batches (durability ``full``), then ``--singles`` single
writes under durability ``none`` (the CPU of the write itself, without the fsync; 768
single writes pass three write-log merges).  Both libraries get the same records.  Reports
per library the minimum and median wall and CPU (process time) of a batch, the mean and
median CPU of a single write and the CPU of each single write that merged the log, and
per round the median batch of each library: the median over rounds of the new/old ratios.

``--fts5 DB`` (an ``fts5.db`` of ``bench/search_bench.py``'s SQLite FTS5 engine at the same
size, e.g. the one ``bench/search_writes.py --keep DIR`` leaves) adds a third process per
round (the order rotates): on its own copy of ``DB`` it puts the same batches with
search_bench's FTS5 batch code (one transaction, ``synchronous=FULL``), the same warm batch
first; the report then gives each library's per-round ratio to FTS5's batch (wall and CPU).
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

_FTS5_CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import search_bench as sb

root, salt, batches = Path(sys.argv[1]), sys.argv[2], int(sys.argv[4])
records = [sb.new_records(100000, 1000, f"{salt}b{i}") for i in range(batches + 1)]
engine = sb.Fts5Engine(root)
engine.open()
engine.put(records[0])
out = {"batch": [], "single": []}
for batch in records[1:]:
    wall, cpu = time.perf_counter(), time.process_time()
    engine.put(batch)
    out["batch"].append((time.perf_counter() - wall, time.process_time() - cpu))
engine.close()
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
    parser.add_argument("--fts5", type=Path, help="an fts5.db of search_bench at that size")
    args = parser.parse_args(argv)
    libs = {"old": args.old_lib.resolve(), "new": args.new_lib.resolve()}
    engines = [*libs, "fts5"] if args.fts5 else list(libs)
    batches: dict[str, list[tuple[float, float]]] = {k: [] for k in engines}
    singles: dict[str, list[float]] = {k: [] for k in libs}
    # per round, each engine's median batch (wall, CPU)
    rounds: list[dict[str, tuple[float, float]]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="projcache-batch-ab-") as scratch:
        for run in range(args.rounds):
            turn = run % len(engines)
            this_round: dict[str, tuple[float, float]] = {}
            for name in engines[turn:] + engines[:turn]:
                copy = Path(scratch) / name
                shutil.rmtree(copy, ignore_errors=True)
                copy.mkdir()
                if name == "fts5":
                    shutil.copy(args.fts5, copy / "fts5.db")
                    command = [_FTS5_CHILD, str(copy), f"r{run}", str(HERE), str(args.batches)]
                else:
                    shutil.copy(args.store / "data.mdb", copy / "data.mdb")
                    command = [
                        _CHILD,
                        str(libs[name]),
                        str(copy),
                        f"r{run}",
                        str(HERE),
                        str(args.batches),
                        str(args.singles),
                    ]
                done = subprocess.run(
                    [sys.executable, "-c", *command], capture_output=True, text=True, check=True
                )
                result = json.loads(done.stdout)
                timed = [(float(w), float(c)) for w, c in result["batch"]]
                batches[name].extend(timed)
                if name in singles:
                    singles[name].extend(float(c) for c in result["single"])
                this_round[name] = (
                    statistics.median(w for w, _c in timed),
                    statistics.median(c for _w, c in timed),
                )
                shutil.rmtree(copy)
            rounds.append(this_round)
    out: dict[str, object] = {"load_before_after": [load_before, os.getloadavg()]}
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
            "round_medians_wall_cpu_ms": [
                [round(r[name][0] * 1e3, 1), round(r[name][1] * 1e3, 1)] for r in rounds
            ],
        }
    if "fts5" in batches:
        walls = [wall for wall, _cpu in batches["fts5"]]
        cpus = [cpu for _wall, cpu in batches["fts5"]]
        out["fts5"] = {
            "batch_wall_ms_min_median": [min(walls) * 1e3, statistics.median(walls) * 1e3],
            "batch_cpu_ms_min_median": [min(cpus) * 1e3, statistics.median(cpus) * 1e3],
            "round_medians_wall_cpu_ms": [
                [round(r["fts5"][0] * 1e3, 1), round(r["fts5"][1] * 1e3, 1)] for r in rounds
            ],
        }
    # medians over rounds of the per-round ratios (wall, CPU)
    pairs = [("new", "old")] + ([("new", "fts5"), ("old", "fts5")] if args.fts5 else [])
    out["round_ratios_wall_cpu"] = {
        f"{a}/{b}": [
            round(statistics.median(r[a][0] / r[b][0] for r in rounds), 3),
            round(statistics.median(r[a][1] / r[b][1] for r in rounds), 3),
        ]
        for a, b in pairs
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
