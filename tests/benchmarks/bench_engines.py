"""The stores a benchmark compares, loaded with the same records, behind one small interface.

* ``projcache``: :class:`ProjectCache` through its raw JSON path (``get_artifact_json``,
  ``iter_artifacts_json``, ``search_json``...), durability ``full`` (fsync per commit).
* ``projcache-models``: the same cache through the model API (``get_artifact``,
  ``list_artifacts``, ``search``...), which builds pydantic models.
* ``lmdb``: raw py-lmdb doing the minimal equivalent work (the floor): records as
  orjson bytes, postings and facets in dupsort sub-databases, ``sync=True``.
* ``diskcache``: ``diskcache.Cache`` with its defaults (SQLite WAL, ``synchronous=NORMAL``:
  a commit is not fsynced, so a power cut may lose the last commits); values are the
  records' orjson bytes (stored raw, never pickled).
* ``diskcache-sync-full``: the same store switched to ``sqlite_synchronous=FULL`` (fsync
  per commit), for the durable writes.
* ``sqlite``: sqlite3 in WAL mode with ``synchronous=FULL``; an FTS5 table
  (``unicode61 remove_diacritics 2``) for search, ranked ``ORDER BY rank LIMIT 20``
  plus ``count(*)``; ``sqlite-prefix`` runs the same search with the last word as a
  prefix (``"w1" "w2"*``), projcache's own semantics.

Every read returns decoded records (dicts or models), so each engine does the
whole job a caller needs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import lmdb
import orjson
from bench_data import Dataset, Query

LOAD_BATCH = 1000
_RAW_MAP = 1 << 34
_WORD = re.compile(r"[^\W_]+")
_WEIGHTS = (("name", 8), ("tags", 4), ("title", 2), ("description", 1))


def artifact_key(record: dict[str, Any]) -> str:
    return f"{record['collection']}/{record['type']}/{record['name']}"


def dir_bytes(path: Path) -> int:
    """Bytes allocated on disk by every file under ``path`` (sparse files count what they use)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            total += min(st.st_size, st.st_blocks * 512) if st.st_blocks else st.st_size
    return total


def present(value: Optional[bytes]) -> bytes:
    """``value``, which must have been found (a miss here is a bug in the benchmark)."""
    assert value is not None
    return value


def simple_terms(record: dict[str, Any]) -> dict[bytes, int]:
    """The floor's tokenizer: lower-cased letter/digit runs per field, with a field mask."""
    terms: dict[bytes, int] = {}
    for field, weight in _WEIGHTS:
        value = record.get(field) or ""
        text = " ".join(value) if isinstance(value, list) else value
        for word in _WORD.findall(text.lower()):
            token = word.encode()
            terms[token] = terms.get(token, 0) | weight
    return terms


# -- the stores of one size --------------------------------------------------------------


class Stores:
    """Every engine's store for one dataset, loaded once and shared by the cases of a size."""

    def __init__(self, data: Dataset, root: Path):
        from projcache import ProjectCache
        from projcache.config import Settings

        self.data = data
        self.root = root
        self.paths = {name: root / name for name in ("projcache", "lmdb", "diskcache", "sqlite")}
        self.load_seconds: dict[str, float] = {}
        # Load without fsync (durability "none"), then reopen with the default "full".
        started = time.perf_counter()
        fast = Settings(cache_dir=self.paths["projcache"], durability="none")
        with ProjectCache.open(settings=fast) as cache:
            for start in range(0, len(data.artifacts), LOAD_BATCH):
                cache.put_artifacts(data.artifacts[start : start + LOAD_BATCH])
            cache.put_projects(data.projects)
            for start in range(0, len(data.deployments), LOAD_BATCH):
                cache.put_deployments(data.deployments[start : start + LOAD_BATCH])
        self.cache = ProjectCache.open(settings=Settings(cache_dir=self.paths["projcache"]))
        self.load_seconds["projcache"] = time.perf_counter() - started
        started = time.perf_counter()
        self.raw = RawLmdb(self.paths["lmdb"])
        self.raw.load(data)
        self.load_seconds["lmdb"] = time.perf_counter() - started
        started = time.perf_counter()
        self.dc = _open_diskcache(self.paths["diskcache"])
        _load_diskcache(self.dc, data)
        self.load_seconds["diskcache"] = time.perf_counter() - started
        started = time.perf_counter()
        self.sql = SqliteStore(self.paths["sqlite"])
        self.sql.load(data)
        self.load_seconds["sqlite"] = time.perf_counter() - started

    def engine(self, name: str) -> Engine:
        """The adapter called ``name`` over these stores."""
        factory = ENGINES[name]
        return factory(self)

    def disk_bytes(self) -> dict[str, int]:
        """Bytes on disk of each store (the LMDB data file; SQLite after a WAL checkpoint)."""
        self.sql.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.dc._sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return {
            "projcache": _file_bytes(self.paths["projcache"] / "data.mdb"),
            "lmdb": _file_bytes(self.paths["lmdb"] / "data.mdb"),
            "diskcache": dir_bytes(self.paths["diskcache"]),
            "sqlite": dir_bytes(self.paths["sqlite"]),
        }

    def lmdb_used_bytes(self) -> int:
        """Bytes of the pages in the raw floor's trees (its file also holds free pages)."""
        env = self.raw.env
        psize = env.stat()["psize"]
        total = 0
        with env.begin() as txn:
            for db in (
                self.raw.records,
                self.raw.postings,
                self.raw.facets,
                self.raw.projects,
                self.raw.deployments,
            ):
                st = txn.stat(db)
                total += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
        return int(total * psize)

    def close(self) -> None:
        self.cache.close()
        self.raw.env.close()
        self.dc.close()
        self.sql.conn.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _file_bytes(path: Path) -> int:
    st = path.stat()
    return min(st.st_size, st.st_blocks * 512) if st.st_blocks else st.st_size


# -- raw lmdb ------------------------------------------------------------------------------


class RawLmdb:
    """The floor: py-lmdb with the least structure that answers the same questions."""

    def __init__(self, path: Path, *, sync: bool = True):
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(
            str(path), map_size=_RAW_MAP, max_dbs=8, sync=sync, metasync=sync, writemap=False
        )
        self.records = self.env.open_db(b"records")
        self.postings = self.env.open_db(b"postings", dupsort=True)
        self.facets = self.env.open_db(b"facets", dupsort=True)
        self.projects = self.env.open_db(b"projects")
        self.deployments = self.env.open_db(b"deployments")

    def put_artifact(self, txn: Any, record: dict[str, Any], raw: Optional[bytes] = None) -> None:
        """The record and its postings: what the write floor does."""
        key = artifact_key(record).encode()
        txn.put(key, raw or orjson.dumps(record), db=self.records)
        for token, mask in simple_terms(record).items():
            txn.put(token, key + b"\x00" + bytes((mask,)), dupdata=True, db=self.postings)

    def load(self, data: Dataset) -> None:
        pairs = list(zip(data.artifacts, data.artifact_json))
        for start in range(0, len(pairs), 5000):
            with self.env.begin(write=True) as txn:
                for record, raw in pairs[start : start + 5000]:
                    self.put_artifact(txn, record, raw)
                    key = artifact_key(record).encode()
                    txn.put(b"type\x00" + record["type"].encode(), key, db=self.facets)
                    for tag in record["tags"]:
                        txn.put(b"tag\x00" + tag.encode(), key, db=self.facets)
        with self.env.begin(write=True) as txn:
            for project, raw in zip(data.projects, data.project_json):
                txn.put(project["id"].encode(), raw, db=self.projects)
            for deployment, raw in zip(data.deployments, data.deployment_json):
                key = f"{deployment['project_id']}\x00{deployment['artifact_key']}".encode()
                txn.put(key, raw, db=self.deployments)


# -- diskcache -------------------------------------------------------------------------------


def _open_diskcache(path: Path) -> Any:
    import diskcache  # type: ignore[import-untyped]

    return diskcache.Cache(str(path))


def _load_diskcache(dc: Any, data: Dataset) -> None:
    with dc.transact():
        for record, raw in zip(data.artifacts, data.artifact_json):
            dc.set(artifact_key(record), raw)
        for project, raw in zip(data.projects, data.project_json):
            dc.set("project:" + project["id"], raw)
        for deployment, raw in zip(data.deployments, data.deployment_json):
            dc.set(f"deployment:{deployment['project_id']}\x00{deployment['artifact_key']}", raw)


# -- sqlite ----------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE artifacts(id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, type TEXT NOT NULL,
                       collection TEXT NOT NULL, json BLOB NOT NULL);
CREATE INDEX artifacts_by_type ON artifacts(type, key);
CREATE TABLE tags(tag TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY(tag, key)) WITHOUT ROWID;
CREATE TABLE projects(id TEXT PRIMARY KEY, stale INTEGER NOT NULL DEFAULT 0, json BLOB NOT NULL);
CREATE TABLE deployments(project TEXT NOT NULL, artifact TEXT NOT NULL, json BLOB NOT NULL,
                         PRIMARY KEY(project, artifact)) WITHOUT ROWID;
CREATE VIRTUAL TABLE fts USING fts5(key UNINDEXED, name, tags, title, description,
                                    tokenize="unicode61 remove_diacritics 2");
"""


class SqliteStore:
    """sqlite3, WAL, ``synchronous=FULL``; FTS5 rows share the artifact's rowid."""

    def __init__(self, path: Path):
        path.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path / "bench.sqlite"), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(_SCHEMA)
        self.next_id = 1

    def insert_artifact(self, record: dict[str, Any], raw: Optional[bytes] = None) -> None:
        key = artifact_key(record)
        rowid = self.next_id
        self.next_id += 1
        self.conn.execute(
            "INSERT INTO artifacts VALUES (?, ?, ?, ?, ?)",
            (rowid, key, record["type"], record["collection"], raw or orjson.dumps(record)),
        )
        self.conn.executemany("INSERT INTO tags VALUES (?, ?)", [(t, key) for t in record["tags"]])
        self.conn.execute(
            "INSERT INTO fts(rowid, key, name, tags, title, description) VALUES (?, ?, ?, ?, ?, ?)",
            (
                rowid,
                key,
                record["name"],
                " ".join(record["tags"]),
                record.get("title") or "",
                record.get("description") or "",
            ),
        )

    def load(self, data: Dataset) -> None:
        conn = self.conn
        conn.execute("BEGIN")
        for record, raw in zip(data.artifacts, data.artifact_json):
            self.insert_artifact(record, raw)
        conn.executemany(
            "INSERT INTO projects(id, json) VALUES (?, ?)",
            [(p["id"], raw) for p, raw in zip(data.projects, data.project_json)],
        )
        conn.executemany(
            "INSERT INTO deployments VALUES (?, ?, ?)",
            [
                (d["project_id"], d["artifact_key"], raw)
                for d, raw in zip(data.deployments, data.deployment_json)
            ],
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA optimize")


# -- the adapters -----------------------------------------------------------------------------


class Engine:
    """One store seen through one API; operations it has no equivalent for are not defined."""

    name = ""
    durability = ""

    def __init__(self, stores: Stores):
        self.stores = stores

    def read(self, key: str) -> Any:
        raise NotImplementedError

    def list_type(self, type_: str) -> list[Any]:
        raise NotImplementedError

    def list_tag(self, tag: str) -> list[Any]:
        raise NotImplementedError

    def list_project(self, project_id: str) -> list[Any]:
        raise NotImplementedError

    def search(self, query: Query) -> tuple[list[str], int]:
        """The top 20 keys and the total number of matches."""
        raise NotImplementedError

    def search_all(self, query: Query) -> set[str]:
        """Every matching key (for the identity check, not timed)."""
        raise NotImplementedError

    def put_one(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def put_batch(self, records: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def invalidate_one(self, project_id: str) -> None:
        raise NotImplementedError

    def invalidate_all(self) -> None:
        raise NotImplementedError

    def freshen(self, project_ids: list[str]) -> None:
        """Mark projects fresh again (untimed set-up: an invalidation must change something)."""
        raise NotImplementedError

    def verify(self) -> bool:
        raise NotImplementedError

    @contextlib.contextmanager
    def writes(self) -> Iterator[None]:
        """Context for write cases (switches durability where an engine needs it)."""
        yield


class Projcache(Engine):
    name = "projcache"
    durability = "durability=full: LMDB sync + metasync, fsync per commit"

    def read(self, key: str) -> Any:
        return orjson.loads(self.stores.cache.get_artifact_json(key) or b"null")

    def list_type(self, type_: str) -> list[Any]:
        return [orjson.loads(p) for p in self.stores.cache.iter_artifacts_json(type=type_)]

    def list_tag(self, tag: str) -> list[Any]:
        return [orjson.loads(p) for p in self.stores.cache.iter_artifacts_json(tag=tag)]

    def list_project(self, project_id: str) -> list[Any]:
        return [orjson.loads(p) for p in self.stores.cache.list_deployments_json(project_id)]

    def search(self, query: Query) -> tuple[list[str], int]:
        page, total = self.stores.cache.search_json(query.text, limit=20)
        return [key for key, _score, _payload in page], total

    def search_all(self, query: Query) -> set[str]:
        page, total = self.stores.cache.search_json(query.text, limit=10**9)
        assert len(page) >= total  # the exact matches, then partial ones
        return {key for key, _score, _payload in page[:total]}

    def put_one(self, record: dict[str, Any]) -> None:
        self.stores.cache.put_artifacts([record])

    def put_batch(self, records: list[dict[str, Any]]) -> None:
        self.stores.cache.put_artifacts(records)

    def invalidate_one(self, project_id: str) -> None:
        assert self.stores.cache.invalidate(project=project_id) == 1

    def invalidate_all(self) -> None:
        self.stores.cache.invalidate()

    def freshen(self, project_ids: list[str]) -> None:
        wanted = set(project_ids)
        self.stores.cache.put_projects(p for p in self.stores.data.projects if p["id"] in wanted)

    def verify(self) -> bool:
        report = self.stores.cache.verify()
        return bool(report.ok and not report.findings)


class ProjcacheModels(Projcache):
    name = "projcache-models"

    def read(self, key: str) -> Any:
        return self.stores.cache.get_artifact(key)

    def list_type(self, type_: str) -> list[Any]:
        return list(self.stores.cache.list_artifacts(type=type_))

    def list_tag(self, tag: str) -> list[Any]:
        return list(self.stores.cache.list_artifacts(tag=tag))

    def list_project(self, project_id: str) -> list[Any]:
        return self.stores.cache.list_deployments(project_id)

    def search(self, query: Query) -> tuple[list[str], int]:
        hits = self.stores.cache.search(query.text, limit=20)
        return [hit.key for hit in hits], hits.total


class RawLmdbEngine(Engine):
    name = "lmdb"
    durability = "sync=True, metasync=True: fsync per commit (same as projcache)"

    @property
    def raw(self) -> RawLmdb:
        return self.stores.raw

    def read(self, key: str) -> Any:
        raw = self.raw
        with raw.env.begin(db=raw.records) as txn:
            return orjson.loads(present(txn.get(key.encode())))

    def _facet(self, facet: bytes) -> list[Any]:
        raw = self.raw
        with raw.env.begin() as txn:
            cursor = txn.cursor(raw.facets)
            keys = list(cursor.iternext_dup()) if cursor.set_key(facet) else []
            return [orjson.loads(present(txn.get(k, db=raw.records))) for k in keys]

    def list_type(self, type_: str) -> list[Any]:
        return self._facet(b"type\x00" + type_.encode())

    def list_tag(self, tag: str) -> list[Any]:
        return self._facet(b"tag\x00" + tag.encode())

    def list_project(self, project_id: str) -> list[Any]:
        raw = self.raw
        prefix = project_id.encode() + b"\x00"
        out = []
        with raw.env.begin(db=raw.deployments) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    out.append(orjson.loads(value))
        return out

    def put_one(self, record: dict[str, Any]) -> None:
        with self.raw.env.begin(write=True) as txn:
            self.raw.put_artifact(txn, record)

    def put_batch(self, records: list[dict[str, Any]]) -> None:
        with self.raw.env.begin(write=True) as txn:
            for record in records:
                self.raw.put_artifact(txn, record)

    def invalidate_one(self, project_id: str) -> None:
        raw = self.raw
        with raw.env.begin(write=True, db=raw.projects) as txn:
            key = project_id.encode()
            record = orjson.loads(present(txn.get(key)))
            record["stale"] = True
            txn.put(key, orjson.dumps(record))

    def invalidate_all(self) -> None:
        raw = self.raw
        with raw.env.begin(write=True, db=raw.projects) as txn:
            updated = []
            for key, value in txn.cursor():
                record = orjson.loads(value)
                record["stale"] = True
                updated.append((key, orjson.dumps(record)))
            for key, value in updated:
                txn.put(key, value)

    def freshen(self, project_ids: list[str]) -> None:
        raw = self.raw
        with raw.env.begin(write=True, db=raw.projects) as txn:
            for project_id in project_ids:
                key = project_id.encode()
                record = orjson.loads(present(txn.get(key)))
                record["stale"] = False
                txn.put(key, orjson.dumps(record))

    def verify(self) -> bool:
        """Decode every record; check every posting and facet points at a record."""
        raw = self.raw
        with raw.env.begin() as txn:
            keys = set()
            for key, value in txn.cursor(raw.records):
                orjson.loads(value)
                keys.add(key)
            for db in (raw.postings, raw.facets):
                for _token, posting in txn.cursor(db):
                    if posting.rpartition(b"\x00")[0] not in keys and posting not in keys:
                        return False
            for _key, value in txn.cursor(raw.projects):
                orjson.loads(value)
            for _key, value in txn.cursor(raw.deployments):
                orjson.loads(value)
        return True


class Diskcache(Engine):
    name = "diskcache"
    durability = "defaults: SQLite WAL, synchronous=NORMAL (no fsync per commit)"

    def read(self, key: str) -> Any:
        return orjson.loads(present(self.stores.dc.get(key)))

    def put_one(self, record: dict[str, Any]) -> None:
        self.stores.dc.set(artifact_key(record), orjson.dumps(record))

    def put_batch(self, records: list[dict[str, Any]]) -> None:
        dc = self.stores.dc
        with dc.transact():
            for record in records:
                dc.set(artifact_key(record), orjson.dumps(record))

    def invalidate_one(self, project_id: str) -> None:
        dc = self.stores.dc
        with dc.transact():
            key = "project:" + project_id
            record = orjson.loads(present(dc.get(key)))
            record["stale"] = True
            dc.set(key, orjson.dumps(record))

    def invalidate_all(self) -> None:
        dc = self.stores.dc
        with dc.transact():
            for project in self.stores.data.projects:
                key = "project:" + project["id"]
                record = orjson.loads(present(dc.get(key)))
                record["stale"] = True
                dc.set(key, orjson.dumps(record))

    def freshen(self, project_ids: list[str]) -> None:
        dc = self.stores.dc
        with dc.transact():
            for project_id in project_ids:
                key = "project:" + project_id
                record = orjson.loads(present(dc.get(key)))
                record["stale"] = False
                dc.set(key, orjson.dumps(record))

    def verify(self) -> bool:
        return not self.stores.dc.check()


class DiskcacheSyncFull(Diskcache):
    name = "diskcache-sync-full"
    durability = "sqlite_synchronous=FULL (fsync per commit)"

    @contextlib.contextmanager
    def writes(self) -> Iterator[None]:
        dc = self.stores.dc
        dc.reset("sqlite_synchronous", 2)
        try:
            yield
        finally:
            dc.reset("sqlite_synchronous", 1)


class Sqlite(Engine):
    name = "sqlite"
    durability = "WAL, synchronous=FULL (fsync per commit)"
    prefix = False

    @property
    def conn(self) -> sqlite3.Connection:
        return self.stores.sql.conn

    def read(self, key: str) -> Any:
        row = self.conn.execute("SELECT json FROM artifacts WHERE key = ?", (key,)).fetchone()
        return orjson.loads(row[0])

    def list_type(self, type_: str) -> list[Any]:
        rows = self.conn.execute(
            "SELECT json FROM artifacts WHERE type = ? ORDER BY key", (type_,)
        ).fetchall()
        return [orjson.loads(row[0]) for row in rows]

    def list_tag(self, tag: str) -> list[Any]:
        rows = self.conn.execute(
            "SELECT a.json FROM tags t JOIN artifacts a ON a.key = t.key "
            "WHERE t.tag = ? ORDER BY t.key",
            (tag,),
        ).fetchall()
        return [orjson.loads(row[0]) for row in rows]

    def list_project(self, project_id: str) -> list[Any]:
        rows = self.conn.execute(
            "SELECT json FROM deployments WHERE project = ?", (project_id,)
        ).fetchall()
        return [orjson.loads(row[0]) for row in rows]

    def _match(self, query: Query) -> str:
        return query.fts_prefix if self.prefix else query.fts_exact

    def search(self, query: Query) -> tuple[list[str], int]:
        match = self._match(query)
        conn = self.conn
        rows = conn.execute(
            "SELECT key FROM fts WHERE fts MATCH ? ORDER BY rank LIMIT 20", (match,)
        ).fetchall()
        (total,) = conn.execute("SELECT count(*) FROM fts WHERE fts MATCH ?", (match,)).fetchone()
        return [row[0] for row in rows], total

    def search_all(self, query: Query) -> set[str]:
        rows = self.conn.execute("SELECT key FROM fts WHERE fts MATCH ?", (self._match(query),))
        return {row[0] for row in rows}

    def put_one(self, record: dict[str, Any]) -> None:
        self.conn.execute("BEGIN")
        self.stores.sql.insert_artifact(record)
        self.conn.execute("COMMIT")

    def put_batch(self, records: list[dict[str, Any]]) -> None:
        self.conn.execute("BEGIN")
        for record in records:
            self.stores.sql.insert_artifact(record)
        self.conn.execute("COMMIT")

    def invalidate_one(self, project_id: str) -> None:
        self.conn.execute("UPDATE projects SET stale = 1 WHERE id = ?", (project_id,))

    def invalidate_all(self) -> None:
        self.conn.execute("UPDATE projects SET stale = 1")

    def freshen(self, project_ids: list[str]) -> None:
        self.conn.executemany(
            "UPDATE projects SET stale = 0 WHERE id = ?", [(p,) for p in project_ids]
        )

    def verify(self) -> bool:
        (result,) = self.conn.execute("PRAGMA integrity_check").fetchone()
        self.conn.execute("INSERT INTO fts(fts) VALUES ('integrity-check')")
        return bool(result == "ok")


class SqlitePrefix(Sqlite):
    name = "sqlite-prefix"
    prefix = True


ENGINES: dict[str, Callable[[Stores], Engine]] = {
    cls.name: cls
    for cls in (
        Projcache,
        ProjcacheModels,
        RawLmdbEngine,
        Diskcache,
        DiskcacheSyncFull,
        Sqlite,
        SqlitePrefix,
    )
}
