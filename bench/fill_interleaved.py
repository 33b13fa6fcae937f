"""The partial fill of a search: an old and a new library alternating, FTS5 beside them.

    git archive HEAD lib | tar -x -C /tmp/old                  # the "old" library
    python bench/search_bench.py --sizes 100000 --search-only --store /tmp/st \\
        --engines projcache,sqlite-fts5                         # the store, built once
    python bench/fill_interleaved.py --old /tmp/old/lib --store /tmp/st/100000 --rounds 8

``--store`` is a folder made by ``bench/search_bench.py --store DIR`` (``DIR/<N>``: its
``projcache`` cache, ``fts5.db`` and ``meta.json`` with the query per class).  Besides the
store's classes with the fill (``search_json``'s default: partial matches fill a page the
exact ones leave short), a class ``rare|rare`` asks for two rare words of different
artifacts (no exact match: the page is all partial matches).  Each round runs every class
``--calls`` times in a fresh process per engine (old library with fill, new library with
fill, new library without fill, FTS5: exact matches only), in an order that turns round by
round, so a busy machine slows them alike.  The table gives per class the median of the
per-round medians and the median of the per-round ratios new ÷ old and new ÷ FTS5, and
whether the old and the new library returned the same page (keys, scores), total, partial
and partial total in every round.
"""

# ruff: noqa: B023  (timed closures run inside the loop iteration that defines them)
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
ENGINES = ("old", "new", "new-exact", "fts5")


def queries(store: Path) -> dict[str, dict[str, Any]]:
    """The store's query classes plus ``rare|rare`` (the first word of rare&rare, the rare
    word of common&rare: two rare words no artifact holds both of, as a rule)."""
    meta = json.loads((store / "meta.json").read_text())
    found: dict[str, dict[str, Any]] = dict(meta["queries"])
    first = found["rare&rare"]["q"].split()[0]
    last = found["common&rare"]["q"].split()[-1]
    found["rare|rare"] = {"q": f"{first} {last}"}
    return found


def timed(call: Any, calls: int, budget: float = 2.0) -> tuple[float, float]:
    """``(median µs, min µs)`` of ``calls`` calls of ``call`` (fewer, at least 5, once they
    have taken ``budget`` seconds: FTS5 takes a fifth of a second on a common word)."""
    times: list[float] = []
    spent = 0.0
    while len(times) < calls and (spent < budget or len(times) < 5):
        start = time.perf_counter()
        call()
        took = time.perf_counter() - start
        times.append(took)
        spent += took
    return statistics.median(times) * 1e6, min(times) * 1e6


def measure(store: Path, calls: int, fill: bool) -> dict[str, Any]:
    """Per class: ``[median µs, min µs, the page's facts]`` (run in the child process)."""
    from projcache import ProjectCache
    from projcache.config import Settings

    settings = Settings(cache_dir=store / "projcache", durability="full", map_size=1 << 34)
    out: dict[str, Any] = {}
    with ProjectCache.open(settings=settings) as cache:
        for label, spec in queries(store).items():
            q, type_ = spec["q"], spec.get("type")
            page = cache.search_page_json(q, type=type_, limit=20, fill=fill)
            facts = [[[key, score] for key, score, _json in page.hits], *page[1:]]
            median, least = timed(
                lambda: cache.search_json(q, type=type_, limit=20, fill=fill), calls
            )
            out[label] = [median, least, facts]
    return out


def measure_fts5(store: Path, calls: int) -> dict[str, Any]:
    """:func:`measure` for SQLite FTS5 on the same store (``bench/search_bench.py``'s engine:
    exact matches only, bm25, the last word as a prefix)."""
    sys.path.insert(0, str(HERE))
    from search_bench import Fts5Engine

    engine = Fts5Engine(store)
    engine.open()
    out: dict[str, Any] = {}
    for label, spec in queries(store).items():
        q, type_ = spec["q"], spec.get("type")
        keys, total = engine.search(q, type_)
        median, least = timed(lambda: engine.search(q, type_), calls)
        out[label] = [median, least, [keys, total]]
    engine.close()
    return out


def main(argv: list[str]) -> int:
    """Alternate the engines for ``--rounds`` rounds and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="lib folder of the old code")
    parser.add_argument("--new", type=Path, default=HERE.parent / "lib")
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:  # one measurement in a fresh process
        if args.child == "fts5":
            result = measure_fts5(args.store, args.calls)
        else:
            sys.path.insert(0, str(args.old if args.child == "old" else args.new))
            result = measure(args.store, args.calls, args.child != "new-exact")
        print(json.dumps(result))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ENGINES}
    for number in range(args.rounds):
        turn = number % len(ENGINES)
        order = ENGINES[turn:] + ENGINES[:turn]
        if number % 2:
            order = order[::-1]
        for name in order:
            command = [sys.executable, __file__, "--child", name, "--old", str(args.old),
                       "--new", str(args.new), "--store", str(args.store),
                       "--calls", str(args.calls)]  # fmt: skip
            env = {**os.environ, "PYTHONPATH": ""}
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            runs[name].append(json.loads(done.stdout))
        print(f"round {number + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"{args.rounds} rounds x {args.calls} calls, {args.store}; load {os.getloadavg()[0]:.1f}")
    print()
    print("| class | query | total | partial on page | old fill µs | new fill µs | new ÷ old "
          "| new exact-only µs | FTS5 µs | new fill ÷ FTS5 | same |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, spec in queries(args.store).items():
        rows = {name: [run[label] for run in runs[name]] for name in ENGINES}
        medians = {name: statistics.median(r[0] for r in rows[name]) for name in ENGINES}
        per_round = [new[0] / old[0] for new, old in zip(rows["new"], rows["old"])]
        to_fts = [new[0] / fts[0] for new, fts in zip(rows["new"], rows["fts5"])]
        first = rows["old"][0][2]
        same = all(r[2] == first for r in rows["old"] + rows["new"])
        query = spec["q"] + (f" (type={spec['type']})" if spec.get("type") else "")
        print(f"| {label} | `{query}` | {first[1]:,} | {first[2]} | {medians['old']:,.1f} | "
              f"{medians['new']:,.1f} | {statistics.median(per_round):.2f}x | "
              f"{medians['new-exact']:,.1f} | {medians['fts5']:,.1f} | "
              f"{statistics.median(to_fts):.2f}x | {same} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
