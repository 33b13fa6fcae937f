"""Issue 15's budget rows (reads near the floor, cold CLI, refresh, verify, memory, invalidation).

``bench/report.py`` calls :func:`perf_budgets` from its budget table; every row
is a ratio of two measurements of the same run (or, for the absolute targets,
a time at the largest size run).  Kept apart so the search engineer's budget
rows and these merge without touching each other.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

Add = Callable[[str, str, str, Optional[float], float], None]


def _fmt(seconds: Optional[float]) -> str:
    if seconds is None:
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def perf_budgets(run: Any, size: int, add: Add) -> None:
    """Add issue 15's rows for ``size`` (the budget size) and the refresh sizes run."""
    n = f"N={size:,}"
    # 1. reads through the model API and the JSON path
    lmdb = run.get("point read", size, "lmdb")
    for engine, what, limit in (
        ("projcache", "`get_artifact_json` + `orjson.loads`", 1.3),
        ("projcache-models", "`get_artifact` (model, not re-validated)", 2.0),
    ):
        mine = run.get("point read", size, engine)
        add(
            f"issue 15: point read, {what} ({n})",
            f"≤ {limit}x raw lmdb get + orjson",
            f"{_fmt(mine)} vs {_fmt(lmdb)}",
            run.ratio("point read", size, engine, "lmdb"),
            limit,
        )
    for by in ("type", "tag", "project"):
        op = f"list by {by}"
        what = "`list_deployments`" if by == "project" else "`list_artifacts`"
        add(
            f"issue 15: {op}, {what} (models) per record ({n})",
            "≤ 2x raw lmdb + orjson",
            f"{_fmt(run.get(op, size, 'projcache-models'))} vs {_fmt(run.get(op, size, 'lmdb'))}",
            run.ratio(op, size, "projcache-models", "lmdb"),
            2.0,
        )
    # 2. cold CLI, interleaved
    inter = {(r["op"], r["size"]): r for r in run.fact_rows("interleaved")}
    cli = inter.get(("cold CLI", size))
    base = "python -c 'import lmdb, orjson'"
    for case in ("projcache get --json", "projcache search --json"):
        if cli and case in cli["ratio"]:
            add(
                f"issue 15: cold `{case.removeprefix('projcache ')}` ({n})",
                f"≤ 1.5x `{base[10:-1]}`",
                f"interleaved, {cli['rounds']} rounds: {_fmt(cli['median'][case])} vs "
                f"{_fmt(cli['median'][base])}",
                cli["ratio"][case],
                1.5,
            )
    # 3. refresh against the raw floor, and its growth (4. the first refresh's growth)
    tree_sizes = sorted(s for s in run.sizes if run.get("refresh unchanged", s, "projcache"))
    # Growth: both sizes alternating round by round (tests/benchmarks/test_refresh_growth.py);
    # the quotient of the separate-rounds medians above is shown beside it.
    grown = {(r["small"], r["big"]): r["cases"] for r in run.fact_rows("refresh_growth")}
    for op, case in (("refresh unchanged", "unchanged"), ("refresh 1% changed", "1% changed")):
        for tree in tree_sizes[-1:]:
            add(
                f"issue 15: {op} (N={tree:,})",
                "≤ 2x the raw-lmdb floor",
                f"{_fmt(run.get(op, tree, 'projcache'))} vs {_fmt(run.get(op, tree, 'lmdb'))}",
                run.ratio(op, tree, "projcache", "lmdb"),
                2.0,
            )
        if len(tree_sizes) >= 2:
            small, big = tree_sizes[-2], tree_sizes[-1]
            a, b = run.get(op, small, "projcache"), run.get(op, big, "projcache")
            _growth_row(
                add,
                f"issue 15: {op}, growth N={small:,} → {big:,}",
                "linear: time ratio ≤ size ratio (shown as their quotient)",
                grown.get((small, big), {}),
                case,
                big / small,
                f"{_fmt(a)} → {_fmt(b)}",
                None if not a or b is None else (b / a) / (big / small),
            )
    rebuild = "refresh rebuild (empty cache)"
    built = sorted(s for s in run.sizes if run.get(rebuild, s, "projcache"))
    if len(built) >= 2 and built[-1] >= 10 * built[-2]:
        small, big = built[-2], built[-1]
        a, b = run.get(rebuild, small, "projcache"), run.get(rebuild, big, "projcache")
        factor = big // small
        _growth_row(
            add,
            f"issue 15: first refresh N={big:,} over N={small:,}",
            f"≤ {factor}x (linear)",
            grown.get((small, big), {}),
            "first refresh",
            factor,
            f"{_fmt(b)} vs {_fmt(a)}",
            None if not a or b is None else (b / a) / factor,
        )
    # 5. quick verify against a raw CRC scan of the same environment
    add(
        f"issue 15: `verify` (quick) ({n})",
        "≤ 3x a raw scan CRC-checking every value",
        f"{_fmt(run.get('verify quick', size, 'projcache'))} vs "
        f"{_fmt(run.get('verify quick', size, 'crc-scan'))}",
        run.ratio("verify quick", size, "projcache", "crc-scan"),
        3.0,
    )
    # 6. memory: the heap apart from mapped file pages
    rss = {(r["size"], r["engine"]): r for r in run.fact_rows("peak_rss")}
    sizes = sorted(s for s, e in rss if e == "projcache")
    if len(sizes) >= 2:
        small, big = rss[(sizes[0], "projcache")], rss[(sizes[-1], "projcache")]
        if small.get("RssAnon_peak") and big.get("RssAnon_peak"):
            add(
                f"issue 15: heap (largest RssAnon) of reads + searches, "
                f"N={sizes[-1]:,} over N={sizes[0]:,}",
                "≤ 1.2x (mapped file pages, RssFile, shown apart)",
                f"{big['RssAnon_peak'] / 1024:.1f} MiB vs {small['RssAnon_peak'] / 1024:.1f} MiB; "
                # The mapped pages touched while open (older runs: RssFile after the close).
                f"mapped {big.get('RssFile_peak', big.get('RssFile', 0)) / 1024:.1f} MiB vs "
                f"{small.get('RssFile_peak', small.get('RssFile', 0)) / 1024:.1f} MiB",
                big["RssAnon_peak"] / small["RssAnon_peak"],
                1.2,
            )
    # 6b. listings streamed: memory of a page whatever the number of records
    listed = {r["size"]: r for r in run.fact_rows("listing_memory")}
    if len(listed) >= 2:
        # Against a size a tenth as large or less (a tiny listing is less than one chunk).
        top = max(listed)
        base = max((s for s in listed if s * 10 <= top), default=min(listed))
        small, big = listed[base], listed[top]
        # Below 10,000 artifacts a listing is less than the pages it streams in: no verdict.
        for what in ("artifacts", "deployments") if base >= 10_000 else ():
            low, high = small[f"{what}_peak"], big[f"{what}_peak"]
            add(
                f"issue 15: every {what[:-1]} listed, streamed (tracemalloc peak), "
                f"N={top:,} over N={base:,}",
                "≤ 1.5x (constant memory)",
                f"{high / 2**20:.2f} MiB for {big[what]:,} vs {low / 2**20:.2f} MiB for "
                f"{small[what]:,}",
                high / low if low else None,
                1.5,
            )
    # 7. invalidate everything
    mine = run.get("invalidate all", size, "projcache")
    add(
        f"issue 15: `invalidate()` of everything ({n})",
        "≤ 1 ms (shown as a fraction of 1 ms)",
        f"{_fmt(mine)} (raw lmdb rewriting every project: "
        f"{_fmt(run.get('invalidate all', size, 'lmdb'))})",
        None if mine is None else mine / 1e-3,
        1.0,
    )


def _growth_row(
    add: Add,
    name: str,
    target: str,
    cases: dict[str, Any],
    case: str,
    factor: float,
    separate: str,
    separate_quotient: Optional[float],
) -> None:
    """One growth verdict: from the alternating rounds when the run has them, else from the
    separate-rounds medians (both shown, with the floor's growth in the same rounds)."""
    mine, floor = cases.get(f"projcache {case}"), cases.get(f"floor {case}")
    if mine is None or floor is None:
        add(name, target, separate, separate_quotient, 1.0)
        return
    add(
        name,
        target + ", both sizes alternating",
        f"alternating, {mine['rounds']} rounds: {_fmt(mine['small_wall'])} → "
        f"{_fmt(mine['big_wall'])} ({mine['growth_wall']:.2f}x; CPU "
        f"{mine['growth_cpu']:.2f}x; the raw floor {floor['growth_wall']:.2f}x); "
        f"separate rounds: {separate}",
        mine["growth_wall"] / factor,
        1.0,
    )
