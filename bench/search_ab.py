"""Two versions of the library's search on the same stores, interleaved (before -> after).

    git archive 93ff589 lib | tar -x -C /tmp/before       # the "before" library
    python bench/search_ab.py --before /tmp/before/lib --store /tmp/s1m/1000000

``--store`` is a folder made by ``bench/search_bench.py --store DIR`` (``DIR/<N>``: its
``projcache`` cache and ``meta.json`` with the query per class).  Each round runs every
class ``--calls`` times in a fresh process per library, the two libraries in alternating
order, so a busy machine slows both alike; the table gives the min and the median of the
per-round medians, and whether both returned the same page and total.  ``--tantivy`` adds
Tantivy (the same store's index, ``bench/search_bench.py``'s engine) as a third engine in
every round, and the per-round ratios of each library to it.  ``--before-store`` gives
the old library a store of its own (built by it from the same records) when the two
versions store the index differently.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def measure(store: Path, calls: int, fill: bool) -> dict[str, Any]:
    """Per class: ``[median µs, min µs, total, page keys]`` (run inside the child process)."""
    from projcache import ProjectCache
    from projcache.config import Settings

    meta = json.loads((store / "meta.json").read_text())
    settings = Settings(cache_dir=store / "projcache", durability="full", map_size=1 << 34)
    out: dict[str, Any] = {}
    with ProjectCache.open(settings=settings) as cache:
        for label, spec in meta["queries"].items():
            page, total = cache.search_json(spec["q"], type=spec.get("type"), limit=20, fill=fill)
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                cache.search_json(spec["q"], type=spec.get("type"), limit=20, fill=fill)
                times.append(time.perf_counter() - start)
            keys = [key for key, _score, _json in page]
            out[label] = [statistics.median(times) * 1e6, min(times) * 1e6, total, keys]
    return out


def measure_tantivy(store: Path, calls: int) -> dict[str, Any]:
    """:func:`measure` for Tantivy on the same store (``bench/search_bench.py``'s engine and
    queries: exact matches only, as projcache's ``fill=False``)."""
    sys.path.insert(0, str(HERE))
    from search_bench import TantivyEngine

    meta = json.loads((store / "meta.json").read_text())
    engine = TantivyEngine(store)
    engine.open()
    out: dict[str, Any] = {}
    for label, spec in meta["queries"].items():
        engine.prefix = bool(spec.get("prefix"))
        keys, total = engine.search(spec["q"], spec.get("type"))
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            engine.search(spec["q"], spec.get("type"))
            times.append(time.perf_counter() - start)
        out[label] = [statistics.median(times) * 1e6, min(times) * 1e6, total, keys]
    engine.close()
    return out


def main(argv: list[str]) -> int:
    """Alternate the two libraries for ``--rounds`` rounds and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="lib folder of the old code")
    parser.add_argument("--after", type=Path, default=HERE.parent / "lib")
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument(
        "--before-store",
        type=Path,
        help="the old library's store when the layout changed (same records; default --store)",
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--fill", action="store_true", help="partial matches fill the page")
    parser.add_argument(
        "--tantivy",
        action="store_true",
        help="Tantivy (the store's tantivy/ index) as a third engine in every round; the "
        "table then gives each library's median of per-round ratios to it",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:  # one measurement, with the library given on sys.path
        sys.path.insert(0, str(args.child))
        if args.tantivy:
            print(json.dumps(measure_tantivy(args.store, args.calls)))
        else:
            print(json.dumps(measure(args.store, args.calls, args.fill)))
        return 0
    libs = {"before": args.before, "after": args.after}
    stores = {"before": args.before_store or args.store, "after": args.store}
    if args.tantivy:
        libs["tantivy"] = args.after
        stores["tantivy"] = args.store
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in libs}
    for number in range(args.rounds):
        order = list(libs) if number % 2 == 0 else list(libs)[::-1]
        for name in order:
            command = [sys.executable, __file__, "--child", str(libs[name]), "--before", ".",
                       "--store", str(stores[name]), "--calls", str(args.calls)]  # fmt: skip
            if args.fill:
                command.append("--fill")
            if name == "tantivy":
                command.append("--tantivy")
            env = {**os.environ, "PYTHONPATH": ""}
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            runs[name].append(json.loads(done.stdout))
    if args.tantivy:
        print_tantivy(runs)
    print("| class | total | before min µs | after min µs | before median | after median | same |")
    print("|---|---|---|---|---|---|---|")
    for label in runs["before"][0]:
        before = [run[label] for run in runs["before"]]
        after = [run[label] for run in runs["after"]]
        same = all(r[2:] == before[0][2:] for r in before + after)
        print(f"| {label} | {before[0][2]:,} | {min(r[1] for r in before):,.0f} | "
              f"{min(r[1] for r in after):,.0f} | {statistics.median(r[0] for r in before):,.0f} | "
              f"{statistics.median(r[0] for r in after):,.0f} | {same} |")  # fmt: skip
    return 0


def print_tantivy(runs: dict[str, list[dict[str, Any]]]) -> None:
    """Per class: Tantivy's min / median, and each library's per-round median ÷ Tantivy's
    (median and worst of the rounds); whether Tantivy's total is the same."""
    print("| class | Tantivy min µs | Tantivy median | before ÷ Tantivy (median, worst) | "
          "after ÷ Tantivy (median, worst) | same total as after |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for label in runs["tantivy"][0]:
        engine = [run[label] for run in runs["tantivy"]]
        cells = []
        for name in ("before", "after"):
            ratios = [mine[label][0] / theirs[label][0]
                      for mine, theirs in zip(runs[name], runs["tantivy"])]  # fmt: skip
            cells.append(f"{statistics.median(ratios):.2f}x, {max(ratios):.2f}x")
        same = all(r[2] == runs["after"][0][label][2] for r in engine)
        print(f"| {label} | {min(r[1] for r in engine):,.0f} | "
              f"{statistics.median(r[0] for r in engine):,.0f} | {cells[0]} | {cells[1]} | "
              f"{same} |")  # fmt: skip
    print()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
