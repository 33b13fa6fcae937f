"""Turn a benchmark run (pytest-benchmark JSON + the suite's facts JSON) into Markdown.

    python bench/report.py --timings T.json --facts F.json --out bench/RESULTS.md \\
        --command "python3 tasks.py bench" [--smoke]

Writes medians and ratios (projcache over each baseline: below 1 means projcache
is faster), the budget table with a pass/miss verdict per budget, and the
machine, versions and commands.  In an existing file only the part between the
``<!-- generated -->`` markers is replaced, so hand-written analysis around it
stays.  The budget table is also printed.  Never fails on a ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- generated: start (bench/report.py rewrites everything down to the end marker) -->"
END = "<!-- generated: end -->"
BUDGET_SIZE = 100_000
REFRESH_SIZE = 10_000
RSS_BASE = 1_000

ENGINE_ORDER = [
    "projcache",
    "projcache-models",
    "lmdb",
    "diskcache",
    "diskcache-sync-full",
    "sqlite",
    "sqlite-prefix",
]
OP_ORDER = [
    "point read",
    "list by type",
    "list by tag",
    "list by project",
    "search rare&rare",
    "search common&rare",
    "search common&common",
    "verify",
    "cold CLI",
    "durable write",
    "batch write (1,000)",
    "invalidate one",
    "invalidate all",
    "refresh unchanged",
    "refresh 1% changed",
    "refresh rebuild (empty cache)",
    "refresh full=True",
]
DURABILITY = [
    ("projcache", "durability `full` (default): LMDB `sync` + `metasync`, fsync on every commit"),
    ("lmdb (floor)", "`sync=True, metasync=True`: the same fsyncs as projcache"),
    (
        "diskcache",
        "its defaults: SQLite WAL with `synchronous=NORMAL` - a commit is not fsynced "
        "(safe against a process crash; a power cut may lose the last commits)",
    ),
    ("diskcache-sync-full", "the same store with `sqlite_synchronous=FULL` (fsync per commit)"),
    ("sqlite", "WAL with `synchronous=FULL` (fsync of the WAL per commit)"),
]


# -- formatting --------------------------------------------------------------------------------


def fmt_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_ratio(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def fmt_bytes(count: Optional[float]) -> str:
    if count is None:
        return "-"
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(count) >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count:.0f} B"


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


# -- data ----------------------------------------------------------------------------------------


class Run:
    """The medians of one run, by operation, size and engine, plus the facts."""

    def __init__(self, timings: dict[str, Any], facts: list[dict[str, Any]]):
        self.raw = timings
        self.facts = facts
        self.median: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
        self.info: dict[tuple[str, int, str], dict[str, Any]] = {}
        for bench in timings.get("benchmarks", []):
            info = bench.get("extra_info") or {}
            if "op" not in info:
                continue
            key = (info["op"], int(info["size"]))
            self.median[key][info["engine"]] = float(bench["stats"]["median"])
            self.info[(info["op"], int(info["size"]), info["engine"])] = {
                **info,
                "rounds": bench["stats"]["rounds"],
                "iqr": bench["stats"]["iqr"],
            }
        self.sizes = sorted({size for _op, size in self.median})

    def get(self, op: str, size: int, engine: str) -> Optional[float]:
        return self.median.get((op, size), {}).get(engine)

    def ratio(self, op: str, size: int, engine: str, baseline: str) -> Optional[float]:
        mine, theirs = self.get(op, size, engine), self.get(op, size, baseline)
        return None if mine is None or not theirs else mine / theirs

    def fact_rows(self, metric: str) -> list[dict[str, Any]]:
        return [row for row in self.facts if row.get("metric") == metric]


def _pick(sizes: list[int], wanted: int) -> Optional[int]:
    """``wanted`` if it was run, else the largest size below it."""
    below = [s for s in sizes if s <= wanted]
    return max(below) if below else None


# -- budgets -----------------------------------------------------------------------------------


def budgets(run: Run) -> list[dict[str, Any]]:
    """Every budget of DESIGN.md / issue 6 with its measured value and verdict."""
    rows: list[dict[str, Any]] = []
    size = _pick(run.sizes, BUDGET_SIZE)
    if size is None:
        return rows

    def add(
        name: str,
        target: str,
        measured: str,
        value: Optional[float],
        limit: float,
        broken: bool = False,
    ) -> None:
        verdict = "n/a" if value is None else ("pass" if value <= limit else "**miss**")
        if broken:
            verdict = "**miss** (result sets differ)"
        rows.append(
            {
                "budget": name,
                "target": target,
                "measured": measured,
                "value": value,
                "verdict": verdict,
            }
        )

    n = f"N={size:,}"
    ratio = run.ratio("point read", size, "projcache", "lmdb")
    add(
        f"point read, `get_artifact_json` + `orjson.loads` ({n})",
        "≤ 2x raw lmdb get + orjson",
        f"{fmt_time(run.get('point read', size, 'projcache'))} vs "
        f"{fmt_time(run.get('point read', size, 'lmdb'))}",
        ratio,
        2.0,
    )
    ratio = run.ratio("point read", size, "projcache-models", "lmdb")
    add(
        f"point read, `get_artifact` (pydantic model) ({n})",
        "≤ 2x raw lmdb get + orjson",
        f"{fmt_time(run.get('point read', size, 'projcache-models'))} vs "
        f"{fmt_time(run.get('point read', size, 'lmdb'))}",
        ratio,
        2.0,
    )
    sets = {(r["size"], r["qclass"]): r for r in run.fact_rows("search_sets")}
    for qclass in ("rare&rare", "common&rare", "common&common"):
        op = f"search {qclass}"
        fts = [run.get(op, size, e) for e in ("sqlite", "sqlite-prefix")]
        best = min((t for t in fts if t is not None), default=None)
        mine = run.get(op, size, "projcache")
        same = sets.get((size, qclass), {}).get("identical")
        total = sets.get((size, qclass), {}).get("total")
        value = None if mine is None or not best else mine / best
        add(
            f"search {qclass} ({total} matches), `search_json`, top 20 + total ({n})",
            "≤ 1x SQLite FTS5 (faster of exact / prefix), identical sets",
            f"{fmt_time(mine)} vs {fmt_time(best)}; sets identical: "
            f"{'yes' if same else 'NO' if same is False else '?'}",
            value,
            1.0,
            broken=same is False,
        )
        models = run.get(op, size, "projcache-models")
        if total is not None and total < 500 and models is not None:
            add(
                f"search {qclass} under 1 ms when < 500 match, `search` (models) ({n})",
                "< 1 ms",
                fmt_time(models),
                models / 1e-3,
                1.0,
            )
    inter = {(r["op"], r["size"]): r for r in run.fact_rows("interleaved")}
    paired_write = inter.get(("durable write", size))
    bench_text = (
        f"pytest-benchmark medians {fmt_time(run.get('durable write', size, 'projcache'))} vs "
        f"{fmt_time(run.get('durable write', size, 'lmdb'))}"
    )
    if paired_write:
        add(
            f"durable single write, `put_artifacts([record])` ({n})",
            "≤ 1.5x raw lmdb, same record + postings, one txn",
            f"interleaved, {paired_write['rounds']} rounds: "
            f"{fmt_time(paired_write['median']['projcache'])} vs "
            f"{fmt_time(paired_write['median']['lmdb'])} (median of per-round ratios); "
            + bench_text,
            paired_write["ratio"]["projcache"],
            1.5,
        )
    else:
        add(
            f"durable single write, `put_artifacts([record])` ({n})",
            "≤ 1.5x raw lmdb, same record + postings, one txn",
            bench_text,
            run.ratio("durable write", size, "projcache", "lmdb"),
            1.5,
        )
    refresh = _pick(run.sizes, REFRESH_SIZE)
    if refresh is not None:
        mine = run.get("refresh unchanged", refresh, "projcache")
        info = run.info.get(("refresh unchanged", refresh, "projcache"), {})
        add(
            f"unchanged refresh, {info.get('sources', '?'):,} sources (N={refresh:,})"
            if isinstance(info.get("sources"), int)
            else f"unchanged refresh (N={refresh:,})",
            "< 0.3 s (shown as a fraction of 0.3 s)",
            f"{fmt_time(mine)} (floor {fmt_time(run.get('refresh unchanged', refresh, 'lmdb'))})",
            None if mine is None else mine / 0.3,
            1.0,
        )
    cli, imports = "cold CLI", "python -c 'import lmdb, orjson'"
    paired_cli = inter.get((cli, size))
    bench_text = (
        f"pytest-benchmark medians {fmt_time(run.get(cli, size, 'projcache get --json'))} vs "
        f"{fmt_time(run.get(cli, size, imports))}"
    )
    if paired_cli:
        medians = paired_cli["median"]
        add(
            f"cold `projcache get --json` ({n})",
            "≤ 2.5x `python -c 'import lmdb, orjson'`",
            f"interleaved, {paired_cli['rounds']} rounds: "
            f"{fmt_time(medians['projcache get --json'])} vs {fmt_time(medians[imports])}; "
            + bench_text,
            paired_cli["ratio"]["projcache get --json"],
            2.5,
        )
        imported, bare = medians["python -c 'import projcache'"], medians["python -c pass"]
    else:
        add(
            f"cold `projcache get --json` ({n})",
            "≤ 2.5x `python -c 'import lmdb, orjson'`",
            bench_text,
            run.ratio(cli, size, "projcache get --json", imports),
            2.5,
        )
        imported = run.get(cli, size, "python -c 'import projcache'")
        bare = run.get(cli, size, "python -c pass")
    if imported is not None and bare is not None:
        add(
            f"`import projcache` (cold process minus `python -c pass`) ({n})",
            "< 50 ms",
            fmt_time(imported - bare),
            (imported - bare) / 0.05,
            1.0,
        )
    rss = {(r["size"], r["engine"]): r for r in run.fact_rows("peak_rss")}
    base = RSS_BASE if RSS_BASE in run.sizes and size > RSS_BASE else min(run.sizes)
    big, small = rss.get((size, "projcache")), rss.get((base, "projcache"))
    if big and small and base != size:
        add(
            f"peak RSS (VmHWM) of reads + searches, N={size:,} over N={base:,}",
            "≤ 1.2x",
            f"{big['VmHWM'] / 1024:.1f} MiB vs {small['VmHWM'] / 1024:.1f} MiB",
            big["VmHWM"] / small["VmHWM"],
            1.2,
        )
        if big.get("RssAnon_peak") and small.get("RssAnon_peak"):
            add(
                f"the same, heap only (largest RssAnon sampled), N={size:,} over N={base:,}",
                "≤ 1.2x (not the budget's measure; shown to split heap from mapped file pages)",
                f"{big['RssAnon_peak'] / 1024:.1f} MiB vs {small['RssAnon_peak'] / 1024:.1f} MiB",
                big["RssAnon_peak"] / small["RssAnon_peak"],
                1.2,
            )
    disk = {r["size"]: r for r in run.fact_rows("disk_bytes")}
    if size in disk:
        row = disk[size]
        add(
            f"bytes on disk ({n}, records + all indexes)",
            "≤ 2x the raw JSON of the records",
            f"{fmt_bytes(row['engines']['projcache'])} vs {fmt_bytes(row['raw_json'])}",
            row["engines"]["projcache"] / row["raw_json"],
            2.0,
        )
    from report_perf import perf_budgets  # issue 15's rows (bench/report_perf.py)

    perf_budgets(run, size, add)
    return rows


# -- sections ------------------------------------------------------------------------------------


def _versions() -> list[str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    import lmdb

    lib = ".".join(str(part) for part in lmdb.version())
    return [
        f"Python {platform.python_version()} ({platform.python_implementation()})",
        f"projcache {version('projcache')} at {_git()}",
        f"py-lmdb {version('lmdb')} (LMDB {lib}), orjson {version('orjson')}, "
        f"pydantic {version('pydantic')}",
        f"diskcache {version('diskcache')}, SQLite {sqlite3.sqlite_version}, "
        f"pytest-benchmark {version('pytest-benchmark')}, typer {version('typer')}, "
        f"click {version('click')}",
    ]


def _git() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "lib", "cli"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown commit"
    return f"commit {commit}" + (" with uncommitted changes in lib/ or cli/" if dirty else "")


def _machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024**2:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    fs = ""
    with contextlib.suppress(OSError):
        fs = subprocess.run(
            ["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", os.environ.get("TMPDIR", "/tmp")],
            capture_output=True,
            text=True,
        ).stdout.strip()
    return [
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}",
        f"scratch filesystem (temp dir): {fs or 'unknown'}",
    ]


def header(run: Run, args: argparse.Namespace) -> list[str]:
    when = run.raw.get("datetime", "")[:19].replace("T", " ")
    lines = [
        f"Run of {when} UTC, {args.elapsed} s in all; sizes: "
        + ", ".join(f"{s:,}" for s in run.sizes)
        + (" (smoke subset: fewer rounds)" if args.smoke else "")
        + ".",
        "",
        f"- Command: `{args.command}`",
        f"- which runs: `{args.pytest_command}`, then `python bench/report.py`",
    ]
    lines += [f"- Machine: {line}" for line in _machine()]
    lines += [f"- Versions: {line}" for line in _versions()]
    lines += [
        "",
        "Times are medians (pytest-benchmark; a round is one call, or a calibrated loop of calls "
        "for the fast cases).  A ratio is projcache's median over the baseline's: below 1x "
        "projcache is faster.  `projcache` is the raw JSON path (`get_artifact_json`, "
        "`iter_artifacts_json`, `list_deployments_json`, `search_json`, each decoded with "
        "orjson); `projcache-models` is the model API (`get_artifact`, `list_artifacts`, "
        "`list_deployments`, `search`).  `lmdb` is raw py-lmdb doing the least equivalent "
        "work (the floor).",
        "",
        "Durability of the writers:",
        "",
    ]
    lines += [f"- {name}: {text}" for name, text in DURABILITY]
    return [*lines, ""]


def budget_section(run: Run) -> list[str]:
    rows = budgets(run)
    out = ["## Budgets", ""]
    if not rows:
        return [*out, "No size large enough was run.", ""]
    out += table(
        ["budget", "target", "measured", "ratio", "verdict"],
        [
            [r["budget"], r["target"], r["measured"], fmt_ratio(r["value"]), r["verdict"]]
            for r in rows
        ],
    )
    return out


def operations_section(run: Run) -> list[str]:
    out = ["## Operations", ""]
    ops = sorted({op for op, _size in run.median}, key=lambda o: ([*OP_ORDER, o]).index(o))
    for op in ops:
        engines = sorted(
            {e for (o, _s), by in run.median.items() if o == op for e in by},
            key=lambda e: ([*ENGINE_ORDER, e]).index(e),
        )
        out += [f"### {op}", ""]
        if op == "cold CLI":
            out += _cli_table(run, engines)
            continue
        mine = [e for e in ("projcache", "projcache-models") if e in engines]
        others = [e for e in engines if e not in mine]
        # projcache over every baseline; the model API over the first (the floor or FTS5).
        ratios = [("projcache", o) for o in others if "projcache" in mine]
        if "projcache-models" in mine and others:
            ratios.append(("projcache-models", others[0]))
        header_row = ["N", *engines, *(f"{m} ÷ {o}" for m, o in ratios)]
        rows = []
        for size in run.sizes:
            if (op, size) not in run.median:
                continue
            cells = [f"{size:,}"] + [fmt_time(run.get(op, size, e)) for e in engines]
            cells += [fmt_ratio(run.ratio(op, size, m, o)) for m, o in ratios]
            rows.append(cells)
        out += table(header_row, rows)
        notes = _op_notes(run, op)
        if notes:
            out += [*notes, ""]
    return out


def _cli_table(run: Run, cases: list[str]) -> list[str]:
    base = "python -c 'import lmdb, orjson'"
    header_row = ["command", *(f"N={s:,}" for s in run.sizes), f"÷ `{base}` (largest N)"]
    rows = []
    largest = max(s for s in run.sizes if ("cold CLI", s) in run.median)
    for case in cases:
        cells = [f"`{case}`"] + [fmt_time(run.get("cold CLI", s, case)) for s in run.sizes]
        cells.append(fmt_ratio(run.ratio("cold CLI", largest, case, base)))
        rows.append(cells)
    return table(header_row, rows)


def _op_notes(run: Run, op: str) -> list[str]:
    notes = []
    if op.startswith("search"):
        parts = []
        for size in run.sizes:
            info = run.info.get((op, size, "projcache"))
            if info:
                parts.append(f"N={size:,}: `{info.get('query')}` ({info.get('total')} matches)")
        if parts:
            notes.append("Queries: " + "; ".join(parts) + ".")
    if op.startswith("refresh"):
        parts = []
        for size in run.sizes:
            info = run.info.get((op, size, "projcache"), {})
            if "sources" in info:
                parts.append(f"N={size:,}: {info['sources']:,} sources")
        if parts:
            notes.append("Sources checked by projcache: " + "; ".join(parts) + ".")
    return notes


def io_section(run: Run) -> list[str]:
    out = [
        "## Bytes written per operation",
        "",
        "From `/proc/self/io` around repeated calls (after the timed rounds): `write_bytes` is "
        "what the process sent towards the disk (page-cache pages it dirtied), `wchar` what it "
        "passed to write calls.  Invalidations are measured from a fresh (not stale) state.",
        "",
    ]
    ops = [
        op
        for op in OP_ORDER
        if any((op, s, e) in run.info for s in run.sizes for e in ENGINE_ORDER)
    ]
    rows = []
    for op in ops:
        for size in run.sizes:
            cells = []
            for engine in ("projcache", "lmdb", "diskcache", "diskcache-sync-full", "sqlite"):
                io = run.info.get((op, size, engine), {}).get("io")
                cells.append(
                    "-"
                    if io is None
                    else f"{fmt_bytes(io['write_bytes'])} / {fmt_bytes(io['wchar'])}"
                )
            if any(c != "-" for c in cells):
                rows.append([op, f"{size:,}", *cells])
    header_row = [
        "operation",
        "N",
        "projcache",
        "lmdb",
        "diskcache",
        "diskcache-sync-full",
        "sqlite",
    ]
    return [*out, "`write_bytes` / `wchar` per call:", "", *table(header_row, rows)]


def disk_section(run: Run) -> list[str]:
    rows = sorted(run.fact_rows("disk_bytes"), key=lambda r: r["size"])
    if not rows:
        return []
    out = [
        "## Bytes on disk",
        "",
        "Right after loading (artifacts, projects, deployments; before the write cases).  "
        "projcache and lmdb: the LMDB data file's allocated blocks; diskcache and sqlite: "
        "their directory after a WAL checkpoint.  Raw JSON: the records' JSON as projcache "
        "stores it, without any index.  `used`: pages in the B-trees (the rest of a file is "
        "free pages left by copy-on-write commits, reused by later writes).",
        "",
    ]
    engines = ["projcache", "lmdb", "diskcache", "sqlite"]
    body = []
    for row in rows:
        raw = row["raw_json"]
        per = row["artifacts"]
        cells = [f"{row['size']:,}", f"{fmt_bytes(raw)} ({raw / per:.0f} B/artifact)"]
        cells += [
            f"{fmt_bytes(row['engines'][e])} ({row['engines'][e] / per:.0f} B/a, "
            f"{row['engines'][e] / raw:.2f}x)"
            for e in engines
        ]
        cells.append(fmt_bytes(row.get("projcache_used")))
        cells.append(fmt_bytes(row.get("lmdb_used")))
        body.append(cells)
    return out + table(["N", "raw JSON", *engines, "projcache used", "lmdb used"], body)


def rss_section(run: Run) -> list[str]:
    rows = sorted(run.fact_rows("peak_rss"), key=lambda r: (r["size"], r["engine"]))
    if not rows:
        return []
    out = [
        "## Peak RSS",
        "",
        "A fresh process per engine and size: 5 x 512 point reads and the three searches "
        "(projcache: `get_artifact`, `get_artifact_json`, `search`, `search_json`; sqlite: "
        "SELECT + FTS5; lmdb: reads only).  `VmHWM` is the peak resident set; file pages "
        "of the memory map count once touched (`RssFile`).",
        "",
    ]
    body = [
        [
            f"{r['size']:,}",
            r["engine"],
            f"{r['VmHWM'] / 1024:.1f} MiB",
            f"{r['VmHWM_after_open'] / 1024:.1f} MiB",
            f"{r.get('RssAnon_peak', 0) / 1024:.1f} MiB",
            f"{r['RssAnon'] / 1024:.1f} MiB",
            f"{r['RssFile'] / 1024:.1f} MiB",
        ]
        for r in rows
    ]
    return out + table(
        [
            "N",
            "engine",
            "peak (VmHWM)",
            "peak after open",
            "peak RssAnon (sampled)",
            "RssAnon at end",
            "RssFile at end",
        ],
        body,
    )


def search_sets_section(run: Run) -> list[str]:
    rows = sorted(run.fact_rows("search_sets"), key=lambda r: (r["size"], r["qclass"]))
    if not rows:
        return []
    out = [
        "## Search result sets",
        "",
        "Every matching key (not only the top 20) of projcache's `search_json` compared with "
        "FTS5's `MATCH` in both forms; query words are chosen from the data so that no indexed "
        "token extends them (projcache matches the last word as a prefix).",
        "",
    ]
    body = [
        [
            f"{r['size']:,}",
            r["qclass"],
            f"`{r['query']}`",
            f"`{r['fts_exact']}` / `{r['fts_prefix']}`",
            str(r["total"]),
            "yes" if r["identical"] else "NO",
        ]
        for r in rows
    ]
    return out + table(["N", "class", "query", "FTS5 MATCH", "matches", "identical"], body)


def interleaved_section(run: Run) -> list[str]:
    rows = sorted(run.fact_rows("interleaved"), key=lambda r: (r["op"], r["size"]))
    if not rows:
        return []
    out = [
        "## Interleaved measurements",
        "",
        "The pairs the write and start-up budgets compare, timed round by round in rotating "
        "order (one call of each engine per round), so that the machine's slow spells (fsync "
        "latency, other processes on the 2 cores) hit every engine alike.  The ratio is the "
        "median over rounds of each engine's time over the baseline's.",
        "",
    ]
    body = []
    for r in rows:
        for name, median in r["median"].items():
            body.append(
                [
                    r["op"],
                    f"{r['size']:,}",
                    f"`{name}`",
                    fmt_time(median),
                    fmt_time(r["min"][name]),
                    fmt_ratio(r["ratio"][name]),
                    f"`{r['baseline']}`",
                    str(r["rounds"]),
                ]
            )
    return out + table(
        ["operation", "N", "engine", "median", "min", "ratio", "baseline", "rounds"], body
    )


def load_section(run: Run) -> list[str]:
    rows = sorted(run.fact_rows("load_seconds"), key=lambda r: r["size"])
    if not rows:
        return []
    out = [
        "## Loading the stores (set-up, one run)",
        "",
        "projcache: `put_artifacts` in batches of 1,000 with durability `none`, then projects "
        "and deployments; the others in large transactions.",
        "",
    ]
    engines = ["projcache", "lmdb", "diskcache", "sqlite"]
    body = [[f"{r['size']:,}", *(fmt_time(r["engines"].get(e)) for e in engines)] for r in rows]
    return out + table(["N", *engines], body)


def render(run: Run, args: argparse.Namespace) -> str:
    lines = [START, ""]
    lines += header(run, args)
    lines += budget_section(run)
    lines += operations_section(run)
    lines += interleaved_section(run)
    lines += search_sets_section(run)
    lines += disk_section(run)
    lines += rss_section(run)
    lines += io_section(run)
    lines += load_section(run)
    lines.append(END)
    return "\n".join(lines) + "\n"


def write(out: Path, generated: str, smoke: bool) -> None:
    title = "# Benchmark results" + (" (smoke run)" if smoke else "")
    if out.exists():
        text = out.read_text(encoding="utf-8")
        if START in text and END in text:
            before, rest = text.split(START, 1)
            after = rest.split(END, 1)[1]
            out.write_text(before + generated.rstrip("\n") + after, encoding="utf-8")
            return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"{title}\n\n{generated}", encoding="utf-8")


def main(argv: list[str]) -> int:
    """Read the run, write the report, print the budget table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timings", type=Path, required=True)
    parser.add_argument("--facts", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--command", default="python3 tasks.py bench")
    parser.add_argument("--pytest-command", default="(not recorded)")
    parser.add_argument("--elapsed", default="?")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    facts = json.loads(args.facts.read_text()) if args.facts.exists() else []
    run = Run(json.loads(args.timings.read_text()), facts)
    write(args.out, render(run, args), args.smoke)
    print("\n".join(budget_section(run)))
    print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
