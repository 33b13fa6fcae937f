"""Unchanged and 1%-changed refresh against the raw-lmdb floor, interleaved round by round.

    python bench/refresh_interleaved.py SIZE build [--dir DIR]     # once: tree, cache, floor
    python bench/refresh_interleaved.py SIZE time [--rounds 5] [--cli]
    python bench/refresh_interleaved.py 10000,100000 growth [--rounds 5] [--old-lib DIR]

``build`` writes the suite's source tree for SIZE artifacts (``bench_data``, same seed),
refreshes a projcache cache from it and rebuilds the floor
(``tests/benchmarks/bench_refresh_floor.py``), all kept under ``--dir`` (default
``/tmp/projcache-refresh``).  ``time`` alternates, each round: floor unchanged,
projcache unchanged, then 1% of the main files rewritten (new bytes, an old mtime,
as ``SourceTree.change`` does), floor, projcache: the machine's slow spells hit both
alike.  It prints the medians and the median of the per-round ratios, of the wall
clock and of the process's CPU time (steadier on a shared machine).  ``--cli``
times ``projcache refresh --json`` (a fresh process, configured by environment
variables) instead of ``ProjectCache.refresh``, unchanged only.  ``growth`` (sizes built
before) opens each size's cache in one process and alternates their unchanged refreshes
round by round, printing each size's median wall and CPU time and the growth quotients
(largest over smallest): the two sizes meet the same load, which separate runs do not.
With ``--old-lib DIR`` (a frozen copy of another version's ``lib``), ``growth`` runs
each library in its own worker process (``PYTHONPATH``), both with every size's cache
open, and alternates them refresh by refresh (old first in odd rounds, new first in even
ones): each library's medians and quotients, and the median of the per-round new/old
ratios of each size.  The old library refreshes ``cache-SIZE-old`` where every size has
one (``cp -a cache-SIZE cache-SIZE-old``), else the same caches as the new one.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "benchmarks"))


class Tree:
    """The collections, projects and main files of a tree written by ``build``."""

    def __init__(self, root: Path, size: int) -> None:
        self.root = root / f"tree-{size}"
        self.collections = sorted((self.root / "collections").iterdir())
        self.projects = sorted((self.root / "projects").iterdir())
        self.main = [Path(p) for p in json.loads((root / f"main-{size}.json").read_text())]
        self.cursor_file = root / f"cursor-{size}"
        self.cursor = int(self.cursor_file.read_text()) if self.cursor_file.exists() else 0

    def change(self, count: int) -> None:
        """Rewrite the next ``count`` main files (an old mtime: not "racy")."""
        when = time.time_ns() - 1800 * 10**9 + self.cursor
        for _ in range(count):
            path = self.main[self.cursor % len(self.main)]
            self.cursor += 1
            path.write_text(path.read_text() + f"\nchanged {self.cursor}\n")
            os.utime(path, ns=(when, when))
        self.cursor_file.write_text(str(self.cursor))


def build(root: Path, size: int) -> None:
    """Write the tree, refresh a cache from it, rebuild the floor."""
    from bench_data import build_dataset, write_source_tree
    from bench_refresh_floor import RefreshFloor

    from projcache import ProjectCache
    from projcache.config import Settings

    data = build_dataset(size)
    tree = write_source_tree(root / f"tree-{size}", data.artifacts, max(1, min(100, size // 1000)))
    (root / f"main-{size}.json").write_text(json.dumps([str(p) for p in tree.main_files]))
    with ProjectCache.open(settings=Settings(cache_dir=root / f"cache-{size}")) as cache:
        report = cache.refresh(collections=tree.collections, projects=tree.projects)
        assert report.ok, report.errors
    floor = RefreshFloor(root / f"floor-{size}", tree)  # type: ignore[arg-type]
    floor.rebuild()
    floor.close()


# Seconds of CPU (user + system) of this process per timed call, by label, beside the wall
# clock: on a shared machine the CPU time of an in-process refresh moves much less than its
# wall time (it leaves out waiting for a core and for the disk, fsync included).
CPU: dict[str, list[float]] = {}


def timed(call: Any, label: str = "") -> tuple[float, Any]:
    """Seconds ``call()`` took, and what it returned (its CPU seconds go to ``CPU[label]``)."""
    cpu = time.process_time()
    started = time.perf_counter()
    result = call()
    took = time.perf_counter() - started
    if label:
        CPU.setdefault(label, []).append(time.process_time() - cpu)
    return took, result


def growth(root: Path, sizes: list[int], rounds: int) -> None:
    """Unchanged refreshes of each size's cache, alternating in one process: growth quotients."""
    from projcache import ProjectCache
    from projcache.config import Settings

    runs = []
    for size in sizes:
        tree = Tree(root, size)
        cache = ProjectCache.open(settings=Settings(cache_dir=root / f"cache-{size}"))
        cache.refresh(collections=tree.collections, projects=tree.projects)  # catch up
        runs.append((size, tree, cache))
    for _ in range(rounds):
        for size, tree, cache in runs:
            call = functools.partial(
                cache.refresh, collections=tree.collections, projects=tree.projects
            )
            took, report = timed(call, str(size))
            assert report.sources_changed == 0, report
            CPU.setdefault(f"wall {size}", []).append(took)
    for _size, _tree, cache in runs:
        cache.close()
    print(f"unchanged refresh, {rounds} rounds, sizes alternating in one process:")
    for size in sizes:
        wall, cpu = statistics.median(CPU[f"wall {size}"]), statistics.median(CPU[str(size)])
        print(f"  N={size:>9,}: median wall {wall:8.3f} s, CPU {cpu:8.3f} s")
    small, large = str(min(sizes)), str(max(sizes))
    for what, key in (("wall", "wall "), ("CPU", "")):
        quotient = statistics.median(CPU[key + large]) / statistics.median(CPU[key + small])
        print(f"  growth {small} -> {large}, {what}: {quotient:.2f}x")


def worker(root: Path, sizes: list[int], suffix: str) -> None:
    """``growth --old-lib``'s worker: each size's cache open; one unchanged refresh per line read.

    Reads a size per line from stdin and answers ``wall cpu`` (seconds) on stdout.
    ``suffix``: of the cache folders' names (``cache-SIZE`` + suffix).
    """
    from projcache import ProjectCache
    from projcache.config import Settings

    caches = {}
    for size in sizes:
        tree = Tree(root, size)
        folder = root / f"cache-{size}{suffix}"
        cache = ProjectCache.open(settings=Settings(cache_dir=folder))
        cache.refresh(collections=tree.collections, projects=tree.projects)  # catch up
        caches[size] = (tree, cache)
    print("ready", flush=True)
    for line in sys.stdin:
        tree, cache = caches[int(line)]
        call = functools.partial(
            cache.refresh, collections=tree.collections, projects=tree.projects
        )
        cpu = time.process_time()
        took, report = timed(call)
        assert report.sources_changed == 0, report
        print(f"{took} {time.process_time() - cpu}", flush=True)
    for _tree, cache in caches.values():
        cache.close()


def growth_against(root: Path, sizes: list[int], rounds: int, old_lib: Path) -> None:
    """``growth`` for this library and ``old_lib``, each in a worker, alternating refreshes."""
    libs = {"old": old_lib.resolve(), "new": HERE.parent / "lib"}
    # The old library refreshes copies of the caches when there are (``cache-SIZE-old``,
    # made with ``cp -a``): sharing one, each library's refresh would follow a commit of
    # the other's, which a process refreshing again on its own does not see.
    apart = all((root / f"cache-{size}-old").is_dir() for size in sizes)
    workers = {}
    for name, lib in libs.items():
        env = {**os.environ, "PYTHONPATH": str(lib)}
        command = [sys.executable, __file__, ",".join(map(str, sizes)), "worker"]
        suffix = "-old" if apart and name == "old" else ""
        workers[name] = subprocess.Popen(
            [*command, "--dir", str(root), f"--cache-suffix={suffix}"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
    for proc in workers.values():
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for number in range(rounds):
        order = ["old", "new"] if number % 2 == 0 else ["new", "old"]
        for size in sizes:
            for name in order:
                proc = workers[name]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(f"{size}\n")
                proc.stdin.flush()
                wall, cpu = map(float, proc.stdout.readline().split())
                results.setdefault((name, size), []).append((wall, cpu))
    for proc in workers.values():
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
    shared = "" if apart else "; one cache for both"
    print(f"unchanged refresh, {rounds} rounds, old ({old_lib}) and new alternating{shared}:")
    small, large = min(sizes), max(sizes)
    for name in libs:
        for size in sizes:
            wall, cpu = (statistics.median(v) for v in zip(*results[(name, size)]))
            print(f"  {name} N={size:>9,}: median wall {wall:8.3f} s, CPU {cpu:8.3f} s")
        for what, index in (("wall", 0), ("CPU", 1)):
            quotient = statistics.median(
                r[index] for r in results[(name, large)]
            ) / statistics.median(r[index] for r in results[(name, small)])
            print(f"  {name} growth {small} -> {large}, {what}: {quotient:.2f}x")
    for size in sizes:
        for what, index in (("wall", 0), ("CPU", 1)):
            ratios = [
                n[index] / o[index] for n, o in zip(results[("new", size)], results[("old", size)])
            ]
            print(
                f"  N={size:,} new/old {what}:"
                f" median of per-round ratios {statistics.median(ratios):.3f}"
            )


def main() -> None:
    """Parse the arguments; build or time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", help="artifacts; for growth, sizes separated by commas")
    parser.add_argument("what", choices=("build", "time", "growth", "worker"))
    parser.add_argument("--dir", type=Path, default=Path("/tmp/projcache-refresh"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cli", action="store_true")
    parser.add_argument(
        "--old-lib", type=Path, help="growth: another version's lib, alternating with this one"
    )
    parser.add_argument("--cache-suffix", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = args.dir
    root.mkdir(parents=True, exist_ok=True)
    if args.what == "worker":
        worker(root, [int(size) for size in args.size.split(",")], args.cache_suffix)
        return
    if args.what == "growth":
        sizes = [int(size) for size in args.size.split(",")]
        if args.old_lib is not None:
            growth_against(root, sizes, args.rounds, args.old_lib)
        else:
            growth(root, sizes, args.rounds)
        return
    size = int(args.size)
    if args.what == "build":
        build(root, size)
        return
    from bench_refresh_floor import RefreshFloor

    from projcache import ProjectCache
    from projcache.config import Settings

    tree = Tree(root, size)
    floor = RefreshFloor(root / f"floor-{size}", tree)  # type: ignore[arg-type]
    env = {
        **os.environ,
        "PROJCACHE_DIR": str(root / f"cache-{size}"),
        "PROJCACHE_COLLECTIONS": str(tree.root / "collections"),
        "PROJCACHE_PROJECT_ROOTS": str(tree.root / "projects"),
    }
    command = [str(Path(sys.executable).with_name("projcache")), "refresh", "--json"]
    times: dict[str, list[float]] = {}
    count = max(1, size // 100)
    if args.cli:
        subprocess.run(command, env=env, capture_output=True, check=True)
        floor.refresh()
        for _ in range(args.rounds):
            times.setdefault("floor unchanged", []).append(timed(floor.refresh)[0])
            took, done = timed(
                lambda: subprocess.run(command, env=env, capture_output=True, check=True)
            )
            assert json.loads(done.stdout)["sources_changed"] == 0
            times.setdefault("`projcache refresh --json` unchanged", []).append(took)
    else:
        cache = ProjectCache.open(settings=Settings(cache_dir=root / f"cache-{size}"))

        def refresh() -> Any:
            return cache.refresh(collections=tree.collections, projects=tree.projects)

        refresh()
        floor.refresh()  # both catch up first
        for _ in range(args.rounds):
            times.setdefault("floor unchanged", []).append(timed(floor.refresh, "unchanged")[0])
            took, report = timed(refresh, "projcache unchanged")
            assert report.sources_changed == 0, report
            times.setdefault("projcache unchanged", []).append(took)
            tree.change(count)
            took, changed = timed(floor.refresh, "1%")
            assert changed == count
            times.setdefault("floor 1%", []).append(took)
            took, report = timed(refresh, "projcache 1%")
            assert report.sources_changed == count, report
            times.setdefault("projcache 1%", []).append(took)
        cache.close()
    floor.close()
    print(f"N={size}, {args.rounds} interleaved rounds:")
    for name, values in times.items():
        print(f"  {name:40} median {statistics.median(values):8.3f} s")
    for case in ("unchanged", "1%"):
        mine = [v for k, v in times.items() if not k.startswith("floor") and k.endswith(case)]
        if mine:
            ratios = [a / b for a, b in zip(mine[0], times[f"floor {case}"])]
            print(
                f"  {case}: median of per-round ratios {statistics.median(ratios):.2f}x the floor"
            )
        if case in CPU:
            ratios = [a / b for a, b in zip(CPU[f"projcache {case}"], CPU[case])]
            print(
                f"  {case}, CPU time: median {statistics.median(CPU[f'projcache {case}']):.3f} s"
                f" vs the floor's {statistics.median(CPU[case]):.3f} s,"
                f" median of per-round ratios {statistics.median(ratios):.2f}x"
            )


if __name__ == "__main__":
    main()
