"""Peak RSS of point reads and searches, measured in a fresh process (run by the suite).

    python bench/rss_probe.py '{"engine": "projcache", "path": "...", "keys": [...],
                                "queries": ["w1 w2", ...], "fts": ["\\"w1\\" \\"w2\\"", ...]}'

Prints one JSON object: ``VmHWM`` (peak resident set, KiB) and, at the end,
``VmRSS``, ``RssAnon`` and ``RssFile`` (memory-mapped file pages count as
resident once touched), the peak right after the imports and the open,
``RssAnon_peak``: the largest anonymous (heap) RSS sampled between operations, and
``RssFile_peak``: the largest file-backed RSS sampled while the store is open (the
touched pages of the memory map; ``RssFile`` at the end is taken after the close,
when only the mapped libraries are left).
Engines: ``projcache`` (get_artifact, get_artifact_json, search, search_json),
``lmdb`` (raw get + orjson, no search), ``sqlite`` (SELECT + orjson, FTS5 top 20
plus count).
"""

from __future__ import annotations

import json
import sys
from typing import Any

ROUNDS = 5
PEAK_ANON = [0]  # the largest RssAnon sampled (KiB): the heap, without mapped file pages
PEAK_FILE = [0]  # the largest RssFile sampled (KiB): mapped pages (data file and libraries)


def status() -> dict[str, int]:
    """The memory lines of /proc/self/status, in KiB (also updates the sampled anon peak)."""
    out = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[name] = int(value.split()[0])
    PEAK_ANON[0] = max(PEAK_ANON[0], out.get("RssAnon", 0))
    PEAK_FILE[0] = max(PEAK_FILE[0], out.get("RssFile", 0))
    return out


def run_projcache(config: dict[str, Any]) -> dict[str, int]:
    import orjson

    from projcache import ProjectCache

    with ProjectCache.open(config["path"], readonly=True) as cache:
        opened = status()
        for _ in range(ROUNDS):
            for number, key in enumerate(config["keys"]):
                assert cache.get_artifact(key) is not None
                orjson.loads(cache.get_artifact_json(key) or b"")
                if number % 32 == 0:
                    status()
            for query in config["queries"]:
                cache.search(query, limit=20)
                status()
                cache.search_json(query, limit=20)
                status()
    return opened


def run_lmdb(config: dict[str, Any]) -> dict[str, int]:
    import lmdb
    import orjson

    env = lmdb.open(config["path"], readonly=True, max_dbs=8)
    records = env.open_db(b"records", create=False)
    opened = status()
    for _ in range(ROUNDS):
        for number, key in enumerate(config["keys"]):
            with env.begin(db=records) as txn:
                orjson.loads(txn.get(key.encode()) or b"")
            if number % 32 == 0:
                status()
    env.close()
    return opened


def run_sqlite(config: dict[str, Any]) -> dict[str, int]:
    import sqlite3

    import orjson

    conn = sqlite3.connect(config["path"])
    opened = status()
    for _ in range(ROUNDS):
        for number, key in enumerate(config["keys"]):
            (raw,) = conn.execute("SELECT json FROM artifacts WHERE key = ?", (key,)).fetchone()
            orjson.loads(raw)
            if number % 32 == 0:
                status()
        for match in config["fts"]:
            conn.execute(
                "SELECT key FROM fts WHERE fts MATCH ? ORDER BY rank LIMIT 20", (match,)
            ).fetchall()
            conn.execute("SELECT count(*) FROM fts WHERE fts MATCH ?", (match,)).fetchone()
            status()
    conn.close()
    return opened


def main() -> None:
    """Run the engine's reads and searches, then print the memory figures."""
    config = json.loads(sys.argv[1])
    runner = {"projcache": run_projcache, "lmdb": run_lmdb, "sqlite": run_sqlite}
    opened = runner[config["engine"]](config)
    result: dict[str, Any] = status()
    result["VmHWM_after_open"] = opened["VmHWM"]
    result["RssAnon_peak"] = PEAK_ANON[0]
    result["RssFile_peak"] = PEAK_FILE[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
