"""Invalidating everything costs one write, not one per unit (issue 15, item 7).

``invalidate()`` records one ``meta`` key (:class:`projcache.repository.UnitStaleness`)
instead of rewriting every project and collection; reads show every unit
stale while it is pending, and the first write of a unit turns it into
per-record flags.  The observable behaviour is the one of rewriting every
record: these tests check both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from projcache import ProjectCache

Factory = Callable[..., dict[str, Any]]


def _raw_units(cache: ProjectCache) -> dict[str, dict[bytes, bytes]]:
    storage = cache._storage
    out: dict[str, dict[bytes, bytes]] = {}
    with storage.env.begin() as txn:
        for name in ("projects", "collections"):
            out[name] = dict(txn.cursor(storage.dbs[name]))
    return out


def _seed(cache: ProjectCache, make_project: Factory, tmp_path: Path) -> None:
    cache.put_projects(
        [make_project(f"p{i}", refreshed_at="2026-01-01T00:00:00+00:00") for i in range(5)]
    )
    folder = tmp_path / "coll"
    (folder / "skills" / "a").mkdir(parents=True)
    (folder / "skills" / "a" / "SKILL.md").write_text("---\nname: a\n---\nBody\n")
    (folder / "collection.toml").write_text('[collection]\nname = "coll"\n')
    cache.refresh(collections=[folder], projects=[])


def test_invalidate_all_rewrites_no_unit_record(
    cache: ProjectCache, make_project: Factory, tmp_path: Path
) -> None:
    """Every project and collection reads as stale, yet not one record was rewritten."""
    _seed(cache, make_project, tmp_path)
    before = _raw_units(cache)
    assert len(before["projects"]) == 5 and len(before["collections"]) == 1
    assert cache.invalidate() == 6
    assert _raw_units(cache) == before  # O(units) rewrites would have changed these bytes
    assert all(p.stale for p in cache.list_projects())
    assert all(c.stale for c in cache.list_collections())
    assert cache.find_project("p3").stale is True
    coll = cache.get_collection("coll")
    assert coll is not None and coll.stale and coll.is_stale(10**9)
    assert cache.stats().stale_projects == 5


def test_first_unit_write_settles_the_mark(
    cache: ProjectCache, make_project: Factory, tmp_path: Path
) -> None:
    """A unit written after invalidate-all is fresh; the others stay stale, in their records."""
    _seed(cache, make_project, tmp_path)
    cache.invalidate()
    cache.put_projects([make_project("new", refreshed_at="2026-01-02T00:00:00+00:00")])
    assert cache.find_project("new").stale is False
    assert all(p.stale for p in cache.list_projects() if p.name != "new")
    # The mark is gone: the stale flags now live in the records themselves.
    assert b"units_stale" not in _meta_keys(cache)
    raw = _raw_units(cache)["projects"]
    assert sum(b'"stale":true' in v for v in raw.values()) == 5


def _meta_keys(cache: ProjectCache) -> list[bytes]:
    storage = cache._storage
    with storage.env.begin(db=storage.dbs["meta"]) as txn:
        return [bytes(k) for k, _v in txn.cursor()]


def test_stale_only_refresh_after_invalidate_all(
    cache: ProjectCache, make_project: Factory, tmp_path: Path
) -> None:
    """``refresh(stale_only=True)`` re-reads the collection after invalidate-all."""
    _seed(cache, make_project, tmp_path)
    assert cache.refresh(stale_only=True).collections_checked == 0
    cache.invalidate()
    report = cache.refresh(collections=[tmp_path / "coll"], projects=[], stale_only=True)
    assert report.collections_checked == 1
    coll = cache.get_collection("coll")
    assert coll is not None and coll.stale is False


def test_clear_then_new_units_are_not_stale(cache: ProjectCache, make_project: Factory) -> None:
    """A pending mark never covers units created after a clear."""
    cache.put_projects([make_project("a")])
    cache.invalidate()
    cache.clear()
    cache.put_projects([make_project("b", refreshed_at="2026-01-01T00:00:00+00:00")])
    assert cache.find_project("b").stale is False


def test_invalidate_all_on_empty_cache_writes_nothing(cache: ProjectCache) -> None:
    """Nothing to mark: 0, and no meta key."""
    assert cache.invalidate() == 0
    assert b"units_stale" not in _meta_keys(cache)
