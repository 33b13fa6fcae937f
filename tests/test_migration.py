"""A cache written by projcache 0.1.0 (schema 2) opens, migrates to v3 and answers as before."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from projcache import ProjectCache, migrate
from projcache.config import Settings
from projcache.errors import SchemaVersionError

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from make_schema2_cache import expected  # noqa: E402


@pytest.fixture
def old_cache(tmp_path: Path) -> Path:
    """A private copy of the schema-2 fixture (opening it migrates it in place)."""
    target = tmp_path / "cache"
    target.mkdir()
    shutil.copyfile(FIXTURES / "schema2" / "data.mdb", target / "data.mdb")
    return target


def test_fixture_is_schema_2() -> None:
    """The checked-in file really is a schema-2 cache with the old dupsort index."""
    import lmdb

    env = lmdb.open(str(FIXTURES / "schema2"), readonly=True, lock=False, max_dbs=20)
    try:
        with env.begin() as txn:
            names = {bytes(k) for k, _v in txn.cursor()}
            meta = env.open_db(b"meta", txn=txn, create=False)
            assert txn.get(b"schema_version", db=meta)[5:] == b"2"
    finally:
        env.close()
    assert {b"search-tokens", b"artifact-terms", b"artifact-facets"} <= names


def test_read_only_open_asks_for_a_migration(old_cache: Path) -> None:
    """Read-only, the old cache is refused with a hint, and left as it was."""
    before = (old_cache / "data.mdb").read_bytes()
    with pytest.raises(SchemaVersionError, match="schema version 2"):
        ProjectCache.open(old_cache, readonly=True)
    assert (old_cache / "data.mdb").read_bytes() == before


def test_migration_keeps_every_record_and_builds_the_v3_index(old_cache: Path) -> None:
    """Records survive, every artifact gets an id and is found, verify --deep is clean."""
    steps: list[tuple[str, int, int]] = []
    settings = Settings(cache_dir=old_cache)
    data = expected()
    with ProjectCache.open(
        settings=settings, progress=lambda step, done, total: steps.append((step, done, total))
    ) as cache:
        assert cache.counts()["artifacts"] == len(data["artifacts"])
        assert cache.counts()["projects"] == len(data["projects"])
        assert cache.counts()["deployments"] == len(data["deployments"])
        for record in data["artifacts"]:
            key = f"{record['collection']}/{record['type']}/{record['name']}"
            found = cache.search(record["name"], limit=1000)
            assert key in [h.key for h in found][: found.total]
            by_type = cache.search(record["name"], type=record["type"], limit=1000)
            assert key in [h.key for h in by_type]
        tagged = [r for r in data["artifacts"] if "pdf" in r["tags"]]
        assert len(list(cache.list_artifacts(tag="pdf"))) == len(tagged)
        report = cache.verify(deep=True)
        assert report.findings == []
        assert report.checked["artifact-ids"] == len(data["artifacts"])
        assert cache._read(lambda txn: cache._repos.meta.get(txn, "schema_version")) == 3
    built = [s for s in steps if s[0].startswith("number the artifacts")]
    assert built[-1][1:] == (len(data["artifacts"]), len(data["artifacts"]))
    # Opening again migrates nothing.
    steps.clear()
    with ProjectCache.open(settings=settings, progress=lambda *a: steps.append(a)) as cache:
        assert cache.counts()["artifacts"] == len(data["artifacts"])
    assert steps == []


def test_migrated_cache_takes_writes(old_cache: Path) -> None:
    """After the migration the cache writes, deletes and searches like a new one."""
    with ProjectCache.open(old_cache) as cache:
        some = next(iter(cache.list_artifacts()))
        cache.delete_artifact(some.key)
        cache.put_artifacts([{"name": "fresh", "type": "skill", "collection": "default"}])
        assert [h.key for h in cache.search("fresh")] == ["default/skill/fresh"]
        assert some.key not in [h.key for h in cache.search(some.name, limit=1000)]
        assert cache.verify(deep=True).findings == []


def test_a_step_is_one_line(monkeypatch: pytest.MonkeyPatch, old_cache: Path) -> None:
    """Adding a step is one entry of MIGRATIONS; it runs in order, in the same transaction."""
    seen: list[str] = []

    def extra(m: migrate.Migration) -> None:
        seen.append(m.step)
        assert m.repos().artifacts.count(m.txn) > 0

    steps = list(migrate.MIGRATIONS)
    monkeypatch.setattr(migrate, "MIGRATIONS", [steps[0], (2, "extra step", extra), *steps[1:]])
    with ProjectCache.open(old_cache):
        pass
    assert seen == ["extra step"]


def test_failed_step_leaves_the_old_cache(monkeypatch: pytest.MonkeyPatch, old_cache: Path) -> None:
    """A step that fails aborts the whole migration: the cache stays schema 2."""

    def broken(_m: migrate.Migration) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(migrate, "MIGRATIONS", [*migrate.MIGRATIONS, (2, "broken", broken)])
    with pytest.raises(RuntimeError, match="boom"):
        ProjectCache.open(old_cache)
    monkeypatch.undo()
    with pytest.raises(SchemaVersionError):
        ProjectCache.open(old_cache, readonly=True)
    with ProjectCache.open(old_cache) as cache:
        assert cache.verify(deep=True).findings == []
