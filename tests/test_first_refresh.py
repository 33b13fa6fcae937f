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
