"""The search-engine section of bench/RESULTS.md, from bench/results/search-<N>.json.

    python bench/search_report.py                  # rewrite the section and the two plots
    python bench/search_report.py --out other.md

Draws log-log plots (matplotlib, the bench extra) of search latency per query class and of
bytes on disk against N, projcache beside SQLite FTS5 and Tantivy, and writes the budget table
of issue 13 between the ``<!-- search: start -->`` and ``<!-- search: end -->`` markers
(appended when the markers are missing).
"""

# ruff: noqa: RUF001  (the report is Markdown for people: its signs are meant)
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
START = "<!-- search: start (bench/search_report.py rewrites down to the end marker) -->"
END = "<!-- search: end -->"
ENGINES = ("projcache", "sqlite-fts5", "tantivy")
CLASSES = ("rare&rare", "common&rare", "common&common", "prefix", "3 words", "type filter")


def load(results: Path) -> list[dict[str, Any]]:
    """Every search-<N>.json, by size."""
    runs = [json.loads(p.read_text()) for p in results.glob("search-*.json")]
    return sorted(runs, key=lambda r: r["size"])


def plots(runs: list[dict[str, Any]], results: Path) -> list[str]:
    """Draw the two log-log plots; return their file names (relative to bench/)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["size"] for r in runs]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True)
    for ax, label in zip(axes.flat, CLASSES):
        for engine in ENGINES:
            ys = [r["engines"].get(engine, {}).get("search_us", {}).get(label) for r in runs]
            if any(y is not None for y in ys):
                ax.plot(sizes, ys, marker="o", label=engine)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(label)
        ax.set_xlabel("artifacts")
        ax.set_ylabel("µs (median, top 20 + total)")
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend()
    fig.tight_layout()
    latency = results / "search-latency.png"
    fig.savefig(latency, dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, [r["raw_json_bytes"] for r in runs], marker="o", label="raw JSON")
    for engine in ENGINES:
        ys = [r["engines"].get(engine, {}).get("bytes") for r in runs]
        if any(y is not None for y in ys):
            ax.plot(sizes, ys, marker="o", label=engine)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("artifacts")
    ax.set_ylabel("bytes on disk")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    disk = results / "search-bytes.png"
    fig.savefig(disk, dpi=90)
    plt.close(fig)
    return [f"results/{latency.name}", f"results/{disk.name}"]


def verdict(ratio: float, limit: float) -> str:
    """``ok`` or ``over`` against a budget."""
    return "ok" if ratio <= limit else "**over**"


def relevance() -> list[str]:
    """The judged query set (tests/relevance.py): success@1 and MRR@5, projcache and FTS5."""
    import tempfile

    sys.path.insert(0, str(HERE.parent / "tests"))
    sys.path.insert(0, str(HERE.parent / "lib"))
    from relevance import JUDGED, judge_examples

    with tempfile.TemporaryDirectory() as tmp:
        scores = judge_examples(Path(tmp) / "cache")
    lines = [
        f"Relevance on the judged query set ({len(JUDGED)} queries as users type them against",
        "the bundled examples, tests/relevance.py; budget: success@1 >= 0.9 and >= FTS5):",
        "",
        "| engine | success@1 | MRR@5 | misses at rank 1 |",
        "|---|---|---|---|",
    ]
    for name, score in scores.items():
        misses = ", ".join(f"`{q}`" for q, _w, _r in score["misses"]) or "none"
        lines.append(f"| {name} | {score['success@1']:.2f} | {score['mrr@5']:.2f} | {misses} |")
    return [*lines, ""]


def section(runs: list[dict[str, Any]], images: list[str]) -> list[str]:
    """The Markdown lines of the section."""
    lines = [
        START,
        "",
        "## Search engine v3 (issue 13)",
        "",
        "`python bench/search_bench.py --sizes N` (also run by `python3 tasks.py bench`, with",
        "1,000,000 under `--million`): the same records with bodies in projcache v3, SQLite FTS5",
        "(porter, WAL, `synchronous=FULL`) and Tantivy (`en_stem`), one engine after the other in",
        "one process; medians. The machine has 2 cores shared by seven engineers working at the",
        "same time: absolute numbers are noisy, ratios within one run less so.",
        "",
        "*projcache µs* is like for like with the baselines (`fill=False`: exact matches only);",
        "*with partial fill* is projcache's default, which also ranks the artifacts matching",
        "some of the words when the exact ones leave the page short. Every engine's `total`",
        "is checked equal per class (tests/benchmarks/test_search_engines.py does the same at",
        "small sizes). The FTS5 engine ranks by bm25 with the last word as a prefix (its",
        "`count(*)` and `ORDER BY rank` are what cost it on common words); Tantivy uses its",
        "query parser, and a regex on each field for the prefix class (it has no term prefix).",
        "",
    ]
    try:
        lines += relevance()
    except Exception as exc:  # the report must not fail on it; say why instead
        lines += [f"(relevance not measured: {exc})", ""]
    for run in runs:
        eng = run["engines"]
        ours = eng.get("projcache")
        if ours is None:
            continue
        fts = eng.get("sqlite-fts5", {})
        tan = eng.get("tantivy", {})
        size = run["size"]
        lines += [f"### N = {size:,}", ""]
        lines += [
            "| query class | query | total | projcache µs | with partial fill µs | FTS5 µs | "
            "Tantivy µs | ÷ FTS5 (≤ 0.5) | ÷ Tantivy (≤ 1) | < 1 ms at 1M |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label in CLASSES:
            us = ours["search_us"].get(label)
            if us is None:
                continue
            f = fts.get("search_us", {}).get(label)
            t = tan.get("search_us", {}).get(label)
            q = run["queries"][label]
            query = q["q"] + (f" (type={q['type']})" if q.get("type") else "")
            rf = f"{us / f:.3g} {verdict(us / f, 0.5)}" if f else "–"
            rt = f"{us / t:.3g} {verdict(us / t, 1.0)}" if t else "–"
            ms = verdict(us, 1000.0) if size >= 1_000_000 else "–"
            filled = ours.get("search_filled_us", {}).get(label)
            cells = [
                label,
                f"`{query}`",
                f"{ours['totals'][label]:,}",
                f"{us:,.0f}",
                f"{filled:,.0f}" if filled else "–",
                f"{f:,.0f}" if f else "–",
                f"{t:,.0f}" if t else "–",
                rf,
                rt,
                ms,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        raw = run["raw_json_bytes"]
        lines += [
            "| case | projcache | FTS5 | Tantivy | budget | ratio |",
            "|---|---|---|---|---|---|",
            f"| bytes on disk (raw JSON {raw / 2**20:,.1f} MiB) | "
            f"{ours['bytes'] / 2**20:,.1f} MiB"
            f" | {fts.get('bytes', 0) / 2**20:,.1f} MiB | {tan.get('bytes', 0) / 2**20:,.1f} MiB"
            f" | ≤ 1.5× raw JSON | {ours['bytes'] / raw:.2f}× "
            f"{verdict(ours['bytes'] / raw, 1.5)} |",
        ]
        for case, what, unit, limit in (
            ("write_us", "durable single write", "µs", 1.5),
            ("update_us", "durable update", "µs", 1.5),
            ("delete_us", "durable delete", "µs", 1.5),
            ("batch1000_ms", "batch of 1,000 (one transaction)", "ms", 1.0),
            ("read_us", "point read (decoded record)", "µs", None),
        ):
            mine, theirs = ours.get(case), fts.get(case)
            if mine is None or not theirs:
                continue
            ratio = mine / theirs
            budget = f"≤ {limit}× FTS5" if limit else "–"
            mark = verdict(ratio, limit) if limit else ""
            lines.append(
                f"| {what} | {mine:,.0f} {unit} | {theirs:,.0f} {unit} | "
                f"{tan.get(case, 0):,.0f} {unit} | {budget} | {ratio:.2f}× {mark} |"
            )
        lines.append(
            f"| bytes sent to disk per single write (mean, merges included) | "
            f"{ours.get('write_bytes', 0) / 1024:,.0f} KiB | "
            f"{fts.get('write_bytes', 0) / 1024:,.0f} KiB | "
            f"{tan.get('write_bytes', 0) / 1024:,.0f} KiB | must not grow with N | |"
        )
        lines.append(
            f"| build (durability none, batches of 10,000) | {ours['build_s']:,.1f} s | "
            f"{fts.get('build_s', 0):,.1f} s | {tan.get('build_s', 0):,.1f} s | | |"
        )
        lines.append("")
    for image in images:
        lines += [f"![{Path(image).stem}]({image})", ""]
    lines.append(END)
    return lines


def update(out: Path, results: Path = HERE / "results") -> bool:
    """Rewrite the section in ``out`` (False when there are no results)."""
    runs = load(results)
    if not runs:
        return False
    try:
        images = plots(runs, results)
    except ImportError:  # matplotlib is in the bench extra only
        images = []
    generated = "\n".join(section(runs, images)) + "\n"
    text = out.read_text(encoding="utf-8") if out.exists() else "# Benchmark results\n\n"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        text = before + generated.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + generated
    out.write_text(text, encoding="utf-8")
    return True


def main(argv: list[str]) -> int:
    """Write the section; exit 1 when there are no results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if not update(args.out, args.results):
        print(f"no search-*.json in {args.results}", file=sys.stderr)
        return 1
    print(f"search section written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
