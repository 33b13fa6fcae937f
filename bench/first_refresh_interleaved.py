"""A first refresh (open + refresh + close into an empty cache) at two sizes, old and new code.

    python bench/first_refresh_interleaved.py build --sizes 10000,100000 [--dir DIR]
    python bench/first_refresh_interleaved.py time --sizes 10000,100000 \\
        --lib lib --lib /tmp/first8-old/lib [--rounds 3] [--dir DIR] [--profile OUT]

``build`` writes the suite's source trees (``bench_data``, same seed, same project count
as the suite's ``tree`` fixture) under ``--dir`` (default ``/tmp/projcache-first``).
``time`` runs, each round, every ``--lib`` at every size, each in a fresh process
(``PYTHONPATH`` = that lib) into a fresh empty cache, so old and new code alternate and a
slow spell of the machine hits both alike.  Each run reports its wall clock, its CPU time
(user + system: steadier on a shared machine), the time inside write transactions (the
commits included) and the cyclic collector's collections per generation.  The summary
prints the medians and the median ratio of the biggest size to the smallest, per lib.
``--mode full`` times ``refresh(full=True)`` into a cache populated once per lib and size
(the suite's ``test_refresh_full``) instead.  ``--profile OUT`` runs the first lib once per
size under cProfile instead (``OUT-SIZE.prof``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# The child: one first refresh; prints one JSON line.  Write transactions are timed by
# wrapping Storage.write (the facade's only way to write), the collector by gc.callbacks.
CHILD = r"""
import gc, json, os, resource, sys, time
from pathlib import Path
root, cache_dir, profile, full = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "full"
from projcache import ProjectCache
from projcache.config import Settings
from projcache import storage
collections = sorted((root / "collections").iterdir())
projects = sorted((root / "projects").iterdir())
spent = {"write": 0.0, "writes": 0}
original = storage.Storage.write
def timed(self, *args, **kwargs):
    start = time.perf_counter()
    try:
        return original(self, *args, **kwargs)
    finally:
        spent["write"] += time.perf_counter() - start
        spent["writes"] += 1
storage.Storage.write = timed
phases = {}
def phase(module, name, label):
    # CPU seconds inside module.name (outermost calls only: nested ones are not re-counted)
    import importlib
    mod = importlib.import_module(module)
    inner = getattr(mod, name)
    depth = [0]
    def wrapped(*args, **kwargs):
        if depth[0]:
            return inner(*args, **kwargs)
        depth[0] += 1
        start = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            depth[0] -= 1
            phases[label] = phases.get(label, 0.0) + time.process_time() - start
    setattr(mod, name, wrapped)
if os.environ.get("FIRST_PHASES"):
    for spec in os.environ["FIRST_PHASES"].split(","):
        module, name, label = spec.split(":")
        phase(module, name, label)
collected = [0, 0, 0]
def counted(phase, info):
    if phase == "start":
        collected[info["generation"]] += 1
gc.callbacks.append(counted)
def run():
    with ProjectCache.open(settings=Settings(cache_dir=cache_dir)) as cache:
        report = cache.refresh(collections=collections, projects=projects, full=full)
    assert report.ok, report.errors[:3]
    return report
cpu0, wall0 = time.process_time(), time.perf_counter()
if profile:
    import cProfile
    profiler = cProfile.Profile(time.process_time)  # CPU: the machine's load stays out
    report = profiler.runcall(run)
    profiler.dump_stats(profile)
else:
    report = run()
wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
size = sum(f.stat().st_size for f in Path(cache_dir).glob("*.mdb"))
io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
print(json.dumps({"wall": wall, "cpu": cpu, "write": spent["write"], "writes": spent["writes"],
                  "gc": collected, "phases": phases, "artifacts": report.artifacts_written,
                  "file": size, "written": int(io["write_bytes"]),
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build(root: Path, sizes: list[int]) -> None:
    """Write the suite's source tree for each size under ``root``."""
    sys.path.insert(0, str(HERE.parent / "tests" / "benchmarks"))
    from bench_data import build_dataset, write_source_tree

    for size in sizes:
        target = root / f"tree-{size}"
        if target.exists():
            continue
        data = build_dataset(size)
        write_source_tree(target, data.artifacts, max(1, min(100, size // 1000)))
        print(f"wrote {target}")


def run_one(
    lib: str, tree: Path, cache: Path, profile: str = "", mode: str = "first"
) -> dict[str, Any]:
    """One first refresh of ``tree`` into the empty ``cache`` with ``lib``, in a fresh process
    (``mode`` "full": ``refresh(full=True)`` into ``cache`` as it is; "keep": a first
    refresh whose cache is kept)."""
    if mode == "first":
        shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": os.path.abspath(lib)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), str(cache), profile, mode],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    if mode == "first":
        shutil.rmtree(cache, ignore_errors=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Parse the arguments and build, time or profile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("build", "time"))
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/projcache-first"))
    parser.add_argument("--lib", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", default="")
    parser.add_argument("--mode", choices=("first", "full"), default="first")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.what == "build":
        build(args.dir, sizes)
        return
    libs = args.lib or [str(HERE.parent / "lib")]
    if args.profile:
        for size in sizes:
            out = f"{args.profile}-{size}.prof"
            print(size, run_one(libs[0], args.dir / f"tree-{size}", args.dir / "cache", out))
        return
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for round_no in range(args.rounds):
        for size in sizes:
            for lib in libs:
                cache = args.dir / "cache"
                if args.mode == "full":  # a populated cache per lib and size, made once
                    cache = args.dir / f"full-{size}-{libs.index(lib)}"
                    if not cache.exists():
                        run_one(lib, args.dir / f"tree-{size}", cache, mode="keep")
                found = run_one(lib, args.dir / f"tree-{size}", cache, mode=args.mode)
                results.setdefault((lib, size), []).append(found)
                print(f"round {round_no + 1} {lib} {size}: {json.dumps(found)}", flush=True)
    print(f"\n{'lib':40} {'size':>7} {'wall s':>8} {'cpu s':>8} {'write s':>8}")
    for (lib, size), runs in results.items():
        wall, cpu, write = (statistics.median(r[k] for r in runs) for k in ("wall", "cpu", "write"))
        print(f"{lib:40} {size:>7} {wall:8.2f} {cpu:8.2f} {write:8.2f}")
    small, big = min(sizes), max(sizes)
    for lib in libs:
        for key in ("wall", "cpu", "write"):
            ratios = [
                b[key] / s[key] for s, b in zip(results[lib, small], results[lib, big]) if s[key]
            ]
            print(
                f"{lib}: {key} {big} / {small}: median {statistics.median(ratios):.2f}x "
                f"({', '.join(f'{r:.2f}' for r in ratios)})"
            )


if __name__ == "__main__":
    main()
