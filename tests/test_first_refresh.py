"""A first refresh of a big collection: map sized ahead, manifests with their own limit (item 4).

* The refresh grows the map once, ahead of the collection's write
  (:meth:`projcache.storage.Storage.reserve`), instead of aborting and
  replaying the whole write transaction at every doubling.
* A manifest larger than ``max_file_size`` is read when it is within
  ``max_manifest_size`` (a 60,000-entry ``collection.toml`` is ~17 MiB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from factories import CollectionBuilder
from projcache import ProjectCache
from projcache.config import Settings
from projcache.errors import ConfigError
from projcache.storage import Storage


def _collection(root: Path, count: int) -> CollectionBuilder:
    builder = CollectionBuilder(root)
    for i in range(count):
        builder.command(f"cmd-{i}", front_matter={"description": f"command {i} formats text"})
    builder.write()
    return builder


def test_first_refresh_does_not_replay_its_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the smallest map, the collection's write never fills the map (no replay)."""
    builder = _collection(tmp_path / "src", 150)
    grows: list[int] = []
    real_grow = Storage._grow

    def counting_grow(self: Storage, size_before: int) -> None:
        grows.append(size_before)
        real_grow(self, size_before)

    monkeypatch.setattr(Storage, "_grow", counting_grow)
    settings = Settings(cache_dir=tmp_path / "cache", map_size=64 * 1024)
    with ProjectCache.open(settings=settings) as cache:
        report = cache.refresh(collections=[builder.path], projects=[])
        assert report.ok and report.artifacts_written == 150
        assert grows == []  # MapFullError never hit: the map was sized before the write
        assert cache.stats().map_size > 64 * 1024
        assert len(list(cache.iter_artifacts_json())) == 150
        assert cache.verify(deep=True).ok


def test_reserve_grows_geometrically_within_the_limit(tmp_path: Path) -> None:
    """reserve() doubles up to what is needed, never past max_map_size, never shrinks."""
    settings = Settings(cache_dir=tmp_path / "cache", map_size=64 * 1024, max_map_size=1024**2)
    with ProjectCache.open(settings=settings) as cache:
        storage = cache._storage
        storage.reserve(200 * 1024)
        assert storage.info()["map_size"] in (256 * 1024, 512 * 1024)
        storage.reserve(10 * 1024**2)  # past the limit: capped
        assert storage.info()["map_size"] == 1024**2
        storage.reserve(1024)
        assert storage.info()["map_size"] == 1024**2


def _big_manifest(root: Path) -> CollectionBuilder:
    builder = CollectionBuilder(root)
    for i in range(30):
        builder.command(f"c{i}", description="x" * 200)  # long entries: a manifest > 4 KiB
    builder.write()
    assert (builder.path / "collection.toml").stat().st_size > 4096
    return builder


def test_manifest_over_max_file_size_is_read_within_its_own_limit(tmp_path: Path) -> None:
    """max_file_size bounds artifact files; max_manifest_size bounds collection.toml."""
    builder = _big_manifest(tmp_path / "src")
    settings = Settings(cache_dir=tmp_path / "cache", max_file_size=4096)
    with ProjectCache.open(settings=settings) as cache:
        report = cache.refresh(collections=[builder.path], projects=[])
        assert report.errors == []
        record: Any = cache.get_artifact("default/command/c3")
        assert record is not None and record.managed and record.upstream == "acme/skills/c3"


def test_manifest_over_its_limit_is_an_error(tmp_path: Path) -> None:
    """Past max_manifest_size the manifest is not read; the refresh says so."""
    builder = _big_manifest(tmp_path / "src")
    settings = Settings(cache_dir=tmp_path / "cache", max_manifest_size=4096)
    with ProjectCache.open(settings=settings) as cache:
        report = cache.refresh(collections=[builder.path], projects=[])
        assert str(builder.path / "collection.toml") in [e.path for e in report.errors]


def test_max_manifest_size_is_validated(tmp_path: Path) -> None:
    """Below 1 KiB is refused with the setting's name."""
    with pytest.raises(ConfigError, match="max_manifest_size"):
        Settings(cache_dir=tmp_path, max_manifest_size=10)


def _age(root: Path) -> None:
    """Date every file at one time an hour ago: fingerprints of files that old are trusted."""
    import os

    old = 1_700_000_000
    for path in root.rglob("*"):
        os.utime(path, (old, old))


@pytest.fixture
def puts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The relative paths of the fingerprints stored from now on (``put_for`` calls)."""
    from projcache.repository import SourceRepository

    stored: list[str] = []
    real_put = SourceRepository.put_for

    def counting_put(self: SourceRepository, txn: Any, unit: str, relative: str, fp: Any) -> None:
        stored.append(relative)
        real_put(self, txn, unit, relative, fp)

    monkeypatch.setattr(SourceRepository, "put_for", counting_put)
    return stored


def test_full_refresh_rewrites_only_fingerprints_that_differ(
    tmp_path: Path, puts: list[str]
) -> None:
    """``refresh(full=True)`` re-reads every source but stores only the fingerprints that
    changed: an equal one is not written again (it dirtied every page of ``sources``)."""
    builder = _collection(tmp_path / "src", 40)
    _age(builder.path)
    with ProjectCache.open(settings=Settings(cache_dir=tmp_path / "cache")) as cache:
        assert cache.refresh(collections=[builder.path], projects=[]).ok
        assert len(puts) > 40  # the first refresh stores every source's fingerprint
        before = sorted(cache._storage.read(lambda txn: list(txn.cursor(
            cache._storage.dbs["sources"]).iternext())))  # fmt: skip
        puts.clear()
        report = cache.refresh(collections=[builder.path], projects=[], full=True)
        assert report.ok and report.sources_changed > 40  # every source was read again
        assert puts == []
        changed = builder.path / "commands" / "cmd-7.md"
        changed.write_text(changed.read_text() + "\nmore text\n")
        _age(builder.path)
        report = cache.refresh(collections=[builder.path], projects=[], full=True)
        assert report.ok and puts == ["commands/cmd-7.md"]
        after = dict(cache._storage.read(lambda txn: list(txn.cursor(
            cache._storage.dbs["sources"]).iternext())))  # fmt: skip
        assert len(after) == len(before)
        assert sum(after[key] != raw for key, raw in before) == 1
        assert cache.verify(deep=True).ok


def test_full_refresh_rewrites_fingerprints_read_too_soon_to_trust(
    tmp_path: Path, puts: list[str]
) -> None:
    """A stored fingerprint read within the racy window of its file's mtime is not trusted:
    an equal fresh one (read later, so trusted) is written over it, or it never would be."""
    builder = _collection(tmp_path / "src", 5)  # files written just now: racy when read
    with ProjectCache.open(settings=Settings(cache_dir=tmp_path / "cache")) as cache:
        assert cache.refresh(collections=[builder.path], projects=[]).ok
        first = len(puts)
        puts.clear()
        assert cache.refresh(collections=[builder.path], projects=[], full=True).ok
        assert len(puts) == first  # none of them was trusted yet


def test_a_big_collections_write_lists_its_new_ids_per_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresh writes a collection's new and changed artifacts as one batch
    (``mutations.put_artifacts``): past ``MERGE_AT`` their ids are listed per name in one
    call, not one write-log entry per artifact; what is stored is what single puts store."""
    from projcache.postings import MERGE_AT, BitmapIndex

    count = MERGE_AT + 20
    builder = _collection(tmp_path / "src", count)
    calls: dict[str, int] = {"add": 0, "add_many": 0}
    for name in calls:
        real = getattr(BitmapIndex, name)

        def counted(self: BitmapIndex, *args: Any, _name: str = name, _real: Any = real) -> Any:
            calls[_name] += 1
            return _real(self, *args)

        monkeypatch.setattr(BitmapIndex, name, counted)
    with ProjectCache.open(settings=Settings(cache_dir=tmp_path / "cache")) as cache:
        report = cache.refresh(collections=[builder.path], projects=[])
        assert report.ok and report.artifacts_written == count
        assert calls == {"add": 0, "add_many": 1}
        hits = cache.search("formats", limit=5)
        assert hits.total == count
        assert cache.verify(deep=True).ok
