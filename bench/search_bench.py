"""The search-engine budgets of issue 13: projcache v3 beside SQLite FTS5 and Tantivy.

    python bench/search_bench.py --sizes 10000,100000      # JSON to bench/results/search-N.json
    python bench/search_bench.py --sizes 1000000           # the million (build ~ minutes)
    python bench/search_bench.py --sizes 1000000 --search-only --store /tmp/s1m
        # search cases only, on stores built once under /tmp/s1m/<N>/ and reused by later runs

For each size, the same records (tests/benchmarks/bench_data.py's generator plus a
Markdown-like body per artifact) are loaded into

* projcache (format v3; built with durability ``none`` in batches of 10,000, then
  reopened with durability ``full`` for the writes),
* SQLite FTS5 (``porter unicode61 remove_diacritics 2``; WAL, ``synchronous=FULL``;
  the record JSON in a table, the five text fields in the FTS table),
* Tantivy (``en_stem`` text fields, the record JSON stored),

and measured in one process, one engine after the other per case: search (top 20 +
exact total) per query class, point read, durable single write / update / delete,
a batch of 1,000, bytes on disk.  Timings are medians of repeated calls.  The
machine is shared (2 cores, seven engineers): compare ratios within one run.
"""

# ruff: noqa: B023  (timed closures run inside the loop iteration that defines them)
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
sys.path.insert(0, str(ROOT / "lib"))

from bench_data import generate_artifacts  # noqa: E402

BATCH = 10_000


def with_bodies(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each record a body: a heading and other records' descriptions (deterministic)."""
    count = len(records)
    for i, record in enumerate(records):
        parts = [f"# {record['title']}", record["description"]]
        for step in (7919, 104729, 1299709):
            parts.append(records[(i * step + 1) % count]["description"])
        record["body"] = "\n\n".join(parts)
    return records


def artifact_key(record: dict[str, Any]) -> str:
    """``collection/type/name``."""
    return f"{record['collection']}/{record['type']}/{record['name']}"


def dir_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path``."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            total += min(st.st_size, st.st_blocks * 512) if st.st_blocks else st.st_size
    return total


def written_bytes() -> int:
    """Bytes this process has caused to be sent to the storage layer (/proc/self/io)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def median_us(fn: Callable[[], Any], budget: float = 0.4, most: int = 300) -> float:
    """Median wall time of ``fn`` in microseconds (at least 5 calls, about ``budget`` s)."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < most and (len(times) < 5 or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


# -- query choice -------------------------------------------------------------------------


def choose_queries(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One query per class, picked from the data (deterministically)."""
    from projcache.terms import field_terms, stem

    df: dict[str, int] = {}
    for record in records:
        for term in set().union(*field_terms(record).values()):
            df[term] = df.get(term, 0) + 1
    plain = sorted(
        (t for t in df if t.isascii() and t.isalpha() and len(t) > 3 and stem(t) == t),
        key=lambda t: (-df[t], t),
    )
    common = plain[:10]
    n = len(records)
    rare = [t for t in plain if df[t] <= max(2, n // 5000)]
    mid = [t for t in plain if n // 200 <= df[t] <= n // 20] or plain[10:20]
    rare_set = set(rare)
    # projcache and FTS5 match a query's last word as a prefix too, Tantivy (no term prefix
    # outside the prefix class) exactly: a last word that begins another term would give
    # them different totals (10,000 records once picked "import misa", "misamor" extends it).
    ordered = sorted(df)
    extended = {a for a, b in zip(ordered, ordered[1:]) if b.startswith(a)}
    pair: Optional[tuple[str, str]] = None
    common_rare: Optional[str] = None
    for record in records:  # two rare words of one artifact: a query with an answer
        here = sorted(set().union(*field_terms(record).values()) & rare_set)
        lasts = [t for t in here if t not in extended]
        if pair is None and len(here) >= 2 and here[1] not in extended:
            pair = (here[0], here[1])
        terms = set().union(*field_terms(record).values())
        if common_rare is None and lasts and common[0] in terms:
            common_rare = lasts[0]
        if pair and common_rare:
            break
    pair = pair or (rare[0], rare[-1])
    common_rare = common_rare or rare[-1]
    return {
        "rare&rare": {"q": f"{pair[0]} {pair[1]}"},
        "common&rare": {"q": f"{common[0]} {common_rare}"},
        "common&common": {"q": f"{common[0]} {common[1]}"},
        "prefix": {"q": f"{common[2]} {mid[0][:4]}", "prefix": True},
        "3 words": {"q": f"{common[0]} {common[1]} {common[3]}"},
        "type filter": {"q": f"{common[0]} {common[1]}", "type": "skill"},
    }


# -- engines ------------------------------------------------------------------------------


class ProjcacheEngine:
    """projcache v3 through its JSON path."""

    name = "projcache"

    def __init__(self, root: Path):
        self.path = root / "projcache"
        self.cache: Any = None

    def build(self, records: list[dict[str, Any]]) -> float:
        from projcache import ProjectCache
        from projcache.config import Settings

        settings = Settings(cache_dir=self.path, durability="none", map_size=1 << 34)
        start = time.perf_counter()
        with ProjectCache.open(settings=settings) as cache:
            for i in range(0, len(records), BATCH):
                cache.put_artifacts(records[i : i + BATCH])
        took = time.perf_counter() - start
        self.open()
        return took

    def open(self) -> None:
        from projcache import ProjectCache
        from projcache.config import Settings

        settings = Settings(cache_dir=self.path, durability="full", map_size=1 << 34)
        self.cache = ProjectCache.open(settings=settings)

    def bytes(self) -> int:
        info = self.cache._storage.env.info()
        stat = self.cache._storage.env.stat()
        return int((info["last_pgno"] + 1) * stat["psize"])

    fill = False  # like for like: FTS5 and Tantivy return exact matches only

    def search(self, q: str, type_: Optional[str]) -> tuple[list[str], int]:
        page, total = self.cache.search_json(q, type=type_, limit=20, fill=self.fill)
        return [k for k, _s, _p in page[:total]], total

    def read(self, key: str) -> Any:
        return orjson.loads(self.cache.get_artifact_json(key) or b"null")

    def put(self, records: list[dict[str, Any]]) -> None:
        self.cache.put_artifacts(records)

    def delete(self, key: str) -> None:
        self.cache.delete_artifact(key)

    def close(self) -> None:
        self.cache.close()


class Fts5Engine:
    """SQLite: records as JSON plus an FTS5 table (porter), WAL, synchronous=FULL."""

    name = "sqlite-fts5"

    def __init__(self, root: Path):
        self.path = root / "fts5.db"
        self.db: Any = None

    def build(self, records: list[dict[str, Any]]) -> float:
        start = time.perf_counter()
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE artifacts (key TEXT PRIMARY KEY, type TEXT, json BLOB)")
        db.execute(
            "CREATE VIRTUAL TABLE fts USING fts5(name, title, tags, description, body, "
            "tokenize='porter unicode61 remove_diacritics 2')"
        )
        for i in range(0, len(records), BATCH):
            db.execute("BEGIN")
            self._insert(db, records[i : i + BATCH])
            db.execute("COMMIT")
        db.close()
        took = time.perf_counter() - start
        self.open()
        return took

    @staticmethod
    def _insert(db: Any, records: list[dict[str, Any]]) -> None:
        for r in records:
            cur = db.execute(
                "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?)",
                (artifact_key(r), r["type"], orjson.dumps(r)),
            )
            rowid = cur.lastrowid
            db.execute("DELETE FROM fts WHERE rowid = ?", (rowid,))
            db.execute(
                "INSERT INTO fts(rowid, name, title, tags, description, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    rowid,
                    r["name"].replace("-", " "),
                    r.get("title") or "",
                    " ".join(r.get("tags") or ()),
                    r.get("description") or "",
                    r.get("body") or "",
                ),
            )

    def open(self) -> None:
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")

    def bytes(self) -> int:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return dir_bytes(self.path.parent) - dir_bytes(self.path.parent / "projcache") - (
            dir_bytes(self.path.parent / "tantivy") if (self.path.parent / "tantivy").exists()
            else 0
        )  # fmt: skip

    @staticmethod
    def match(q: str) -> str:
        words = q.split()
        return " ".join(f'"{w}"' for w in words[:-1]) + f' "{words[-1]}"*'

    def search(self, q: str, type_: Optional[str]) -> tuple[list[str], int]:
        m = self.match(q)
        if type_ is None:
            rows = self.db.execute(
                "SELECT a.key FROM fts JOIN artifacts a ON a.rowid = fts.rowid "
                "WHERE fts MATCH ? ORDER BY rank LIMIT 20",
                (m,),
            ).fetchall()
            total = self.db.execute("SELECT count(*) FROM fts WHERE fts MATCH ?", (m,)).fetchone()
        else:
            rows = self.db.execute(
                "SELECT a.key FROM fts JOIN artifacts a ON a.rowid = fts.rowid "
                "WHERE fts MATCH ? AND a.type = ? ORDER BY rank LIMIT 20",
                (m, type_),
            ).fetchall()
            total = self.db.execute(
                "SELECT count(*) FROM fts JOIN artifacts a ON a.rowid = fts.rowid "
                "WHERE fts MATCH ? AND a.type = ?",
                (m, type_),
            ).fetchone()
        return [r[0] for r in rows], int(total[0])

    def read(self, key: str) -> Any:
        row = self.db.execute("SELECT json FROM artifacts WHERE key = ?", (key,)).fetchone()
        return orjson.loads(row[0])

    def put(self, records: list[dict[str, Any]]) -> None:
        self.db.execute("BEGIN")
        self._insert(self.db, records)
        self.db.execute("COMMIT")

    def delete(self, key: str) -> None:
        self.db.execute("BEGIN")
        row = self.db.execute("SELECT rowid FROM artifacts WHERE key = ?", (key,)).fetchone()
        if row:
            self.db.execute("DELETE FROM fts WHERE rowid = ?", (row[0],))
            self.db.execute("DELETE FROM artifacts WHERE rowid = ?", (row[0],))
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class TantivyEngine:
    """Tantivy (Python bindings): en_stem text fields, the record JSON stored."""

    name = "tantivy"
    prefix = False  # set per query class (its query parser has no term prefix)

    def __init__(self, root: Path):
        self.path = root / "tantivy"
        self.index: Any = None
        self.writer: Any = None

    def _schema(self) -> Any:
        import tantivy

        b = tantivy.SchemaBuilder()
        b.add_text_field("key", stored=True, tokenizer_name="raw")
        b.add_text_field("type", stored=False, tokenizer_name="raw")
        for field in ("name", "title", "tags", "description", "body"):
            b.add_text_field(field, stored=False, tokenizer_name="en_stem")
        b.add_bytes_field("json", stored=True)
        return b.build()

    def build(self, records: list[dict[str, Any]]) -> float:
        import tantivy

        self.path.mkdir()
        start = time.perf_counter()
        self.index = tantivy.Index(self._schema(), path=str(self.path))
        writer = self.index.writer(heap_size=256_000_000, num_threads=1)
        for i in range(0, len(records), BATCH):
            for r in records[i : i + BATCH]:
                writer.add_document(self._doc(r))
            writer.commit()
        writer.wait_merging_threads()
        took = time.perf_counter() - start
        self.open()
        return took

    @staticmethod
    def _doc(r: dict[str, Any]) -> Any:
        import tantivy

        return tantivy.Document(
            key=artifact_key(r),
            type=r["type"],
            name=r["name"].replace("-", " "),
            title=r.get("title") or "",
            tags=" ".join(r.get("tags") or ()),
            description=r.get("description") or "",
            body=r.get("body") or "",
            json=orjson.dumps(r),
        )

    def open(self) -> None:
        import tantivy

        self.schema = self._schema()
        self.index = tantivy.Index(self.schema, path=str(self.path))
        self.index.reload()
        self.writer = None

    def bytes(self) -> int:
        return dir_bytes(self.path)

    def search(self, q: str, type_: Optional[str]) -> tuple[list[str], int]:
        import tantivy

        words = q.split()
        fields = ["name", "title", "tags", "description", "body"]
        text = " ".join(f"+{w}" for w in words[:-1])
        if type_ is not None:
            text += f" +type:{type_}"
        if not self.prefix:  # the classes whose last word no other term extends
            text += f" +{words[-1]}"
            parts = []
        else:  # the last word as a prefix (as projcache and FTS5 do): a regex per field
            last = tantivy.Query.boolean_query(
                [
                    (
                        tantivy.Occur.Should,
                        tantivy.Query.regex_query(self.schema, f, f"{words[-1]}.*"),
                    )
                    for f in fields
                ]
            )
            parts = [(tantivy.Occur.Must, last)]
        if text.strip():
            parts.append((tantivy.Occur.Must, self.index.parse_query(text, fields)))
        query = tantivy.Query.boolean_query(parts)
        searcher = self.index.searcher()
        result = searcher.search(query, 20, count=True)
        keys = [searcher.doc(addr)["key"][0] for _score, addr in result.hits]
        return keys, int(result.count)

    def read(self, key: str) -> Any:
        searcher = self.index.searcher()
        query = self.index.parse_query(f'key:"{key}"', ["key"])
        [(_s, addr)] = searcher.search(query, 1).hits
        return orjson.loads(searcher.doc(addr)["json"][0])

    def _writer(self) -> Any:
        if self.writer is None:
            self.writer = self.index.writer(heap_size=50_000_000, num_threads=1)
        return self.writer

    def put(self, records: list[dict[str, Any]]) -> None:
        writer = self._writer()
        for r in records:
            writer.delete_documents_by_term("key", artifact_key(r))
            writer.add_document(self._doc(r))
        writer.commit()

    def delete(self, key: str) -> None:
        writer = self._writer()
        writer.delete_documents_by_term("key", key)
        writer.commit()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.wait_merging_threads()


ENGINES = (ProjcacheEngine, Fts5Engine, TantivyEngine)


def new_records(size: int, count: int, salt: str) -> list[dict[str, Any]]:
    """``count`` fresh records like the data set's (new names)."""
    fresh = with_bodies(generate_artifacts(count, seed=9000 + len(salt)))
    for i, r in enumerate(fresh):
        r["name"] = f"{salt}-{size}-{i}-{r['name']}"[:120]
    return fresh


def run_size(
    size: int, root: Path, engines: list[str], search_only: bool = False
) -> dict[str, Any]:
    """Build every engine at ``size`` and measure every case; return the results.

    An engine whose store already exists under ``root`` is opened, not rebuilt
    (``--store``); with ``search_only`` the write cases are skipped, so the
    stores stay as built and a later run measures the same data.  The records'
    raw size and the chosen queries are kept in ``root/meta.json`` beside the
    stores: a run whose stores all exist does not generate the records at all.
    """
    meta_path = root / "meta.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    classes = [cls for cls in ENGINES if cls.name in engines]
    need_build = any(not cls(root).path.exists() for cls in classes)
    records: list[dict[str, Any]] = []
    gen_s: Optional[float] = None
    if need_build or not meta or not search_only:
        t0 = time.perf_counter()
        records = with_bodies(generate_artifacts(size))
        gen_s = time.perf_counter() - t0
        print(f"  {size:>9,} generated in {gen_s:.1f}s", file=sys.stderr, flush=True)
    if not meta:
        meta = {
            "raw_json_bytes": sum(len(orjson.dumps(r)) for r in records),
            "queries": choose_queries(records),
        }
        root.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    queries: dict[str, dict[str, Any]] = meta["queries"]
    out: dict[str, Any] = {
        "size": size,
        "raw_json_bytes": meta["raw_json_bytes"],
        "generate_s": gen_s,
        "queries": queries,
        "engines": {},
    }
    for cls in classes:
        engine = cls(root)
        result: dict[str, Any] = {}
        gc.collect()
        if engine.path.exists():
            engine.open()
            result["build_s"] = None  # built by an earlier run (--store)
        else:
            result["build_s"] = engine.build(records)
            # A build without fsync (durability none) leaves its pages to the kernel's
            # write-back, which would otherwise run during the timings below.
            os.sync()
        result["bytes"] = engine.bytes()
        result["search_us"] = {}
        result["totals"] = {}
        for label, spec in queries.items():
            if isinstance(engine, TantivyEngine):
                engine.prefix = bool(spec.get("prefix"))
            _page, total = engine.search(spec["q"], spec.get("type"))
            result["totals"][label] = total
            result["search_us"][label] = median_us(
                lambda s=spec: engine.search(s["q"], s.get("type"))
            )
        if isinstance(engine, ProjcacheEngine):  # the default: partial matches fill the page
            engine.fill = True
            result["search_filled_us"] = {
                label: median_us(lambda s=spec: engine.search(s["q"], s.get("type")))
                for label, spec in queries.items()
            }
            engine.fill = False
        if not search_only:
            measure_writes(engine, records, result)
        engine.close()
        out["engines"][cls.name] = result
        build = "reused" if result["build_s"] is None else f"{result['build_s']:.1f}s"
        print(f"  {size:>9,} {cls.name:<12} build {build} "
              f"bytes {result['bytes'] / 2**20:.1f} MiB", file=sys.stderr, flush=True)  # fmt: skip
    return out


def measure_writes(engine: Any, records: list[dict[str, Any]], result: dict[str, Any]) -> None:
    """Point read, durable single write / update / delete, a batch of 1,000 (into ``result``)."""
    size = len(records)
    keys = [artifact_key(records[(i * 7919) % size]) for i in range(64)]
    cycle = iter(range(10**9))
    result["read_us"] = median_us(lambda: engine.read(keys[next(cycle) % len(keys)]))
    # 300 writes: more than MERGE_AT (256) log entries, so a merge counts in the mean bytes
    rounds = 5 if isinstance(engine, TantivyEngine) else 300
    fresh = new_records(size, rounds, "w")
    before = written_bytes()
    times = []
    for r in fresh:
        s = time.perf_counter()
        engine.put([r])
        times.append(time.perf_counter() - s)
    result["write_us"] = statistics.median(times) * 1e6
    result["write_bytes"] = (written_bytes() - before) / len(fresh)
    times = []
    for r in fresh:
        changed = {**r, "description": r["description"] + " updated"}
        s = time.perf_counter()
        engine.put([changed])
        times.append(time.perf_counter() - s)
    result["update_us"] = statistics.median(times) * 1e6
    times = []
    for r in fresh:
        s = time.perf_counter()
        engine.delete(artifact_key(r))
        times.append(time.perf_counter() - s)
    result["delete_us"] = statistics.median(times) * 1e6
    batch = new_records(size, 1000, "b")
    s = time.perf_counter()
    engine.put(batch)
    result["batch1000_ms"] = (time.perf_counter() - s) * 1000


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    """The budget ratios of one size (projcache / baseline)."""
    eng = result["engines"]
    ours = eng.get("projcache")
    fts = eng.get("sqlite-fts5")
    tan = eng.get("tantivy")
    out: dict[str, Any] = {"search_vs_fts5": {}, "search_vs_tantivy": {}}
    if ours is None:
        return out
    for label, us in ours["search_us"].items():
        if fts:
            out["search_vs_fts5"][label] = us / fts["search_us"][label]
        if tan:
            out["search_vs_tantivy"][label] = us / tan["search_us"][label]
    out["bytes_vs_raw_json"] = ours["bytes"] / result["raw_json_bytes"]
    if fts:
        for case in ("write_us", "update_us", "delete_us", "batch1000_ms", "read_us"):
            if case in ours and case in fts:  # not with --search-only
                out[f"{case}_vs_fts5"] = ours[case] / fts[case]
    return out


def main(argv: list[str]) -> int:
    """Run the sizes given; write bench/results/search-<N>.json per size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--engines", default="projcache,sqlite-fts5,tantivy")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--keep", action="store_true", help="keep the built stores (their folder is printed)"
    )
    parser.add_argument(
        "--store",
        type=Path,
        help="build the stores under STORE/<N>/ once and reuse them in later runs (kept)",
    )
    parser.add_argument(
        "--search-only", action="store_true", help="only the search cases (stores stay as built)"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for size in [int(s) for s in args.sizes.split(",") if s]:
        if args.store is not None:
            root = args.store / str(size)
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(tempfile.mkdtemp(prefix=f"projcache-search-{size}-"))
        try:
            result = run_size(size, root, args.engines.split(","), args.search_only)
        finally:
            if args.keep or args.store is not None:
                print(f"kept the stores of {size:,} in {root}", file=sys.stderr)
            else:
                shutil.rmtree(root, ignore_errors=True)
        result["ratios"] = ratios(result)
        path = args.out / f"search-{size}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["ratios"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
