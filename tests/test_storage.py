"""The storage layer: opening, sharing, read-only use, growth, schema checks and durability."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import lmdb
import pytest

from projcache import ProjectCache, codec, mutations
from projcache.config import Settings
from projcache.errors import (
    CacheAlreadyOpenError,
    CacheClosedError,
    CacheFullError,
    CacheNotFoundError,
    InvalidRecordError,
    ReadOnlyCacheError,
    SchemaVersionError,
)
from projcache.migrate import SCHEMA_VERSION
from projcache.storage import Storage, Txn

TINY_MAP = 64 * 1024


def _artifacts(prefix: str, count: int) -> list[dict[str, Any]]:
    """Return ``count`` small artifact dicts named ``<prefix>-<i>`` in the default collection."""
    return [
        {
            "name": f"{prefix}-{i}",
            "type": "skill",
            "collection": "default",
            "description": f"{prefix} number {i} of a generated batch",
        }
        for i in range(count)
    ]


def _keys(prefix: str, count: int) -> list[str]:
    """Return the keys of ``_artifacts(prefix, count)``."""
    return [f"default/skill/{prefix}-{i}" for i in range(count)]


def _write_raw_meta(path: Path, key: str, value: Any) -> None:
    """Overwrite one ``meta`` entry with raw lmdb (the cache must be closed in this process)."""
    env = lmdb.open(str(path), max_dbs=16)
    try:
        meta = env.open_db(b"meta", create=False)
        with env.begin(write=True) as txn:
            txn.put(key.encode(), codec.encode(value), db=meta)
    finally:
        env.close()


def _read_raw_meta(path: Path, key: str) -> Any:
    """Read one decoded ``meta`` entry with raw lmdb (the cache must be closed in this process)."""
    env = lmdb.open(str(path), max_dbs=16, readonly=True)
    try:
        meta = env.open_db(b"meta", create=False)
        with env.begin() as txn:
            raw = txn.get(key.encode(), db=meta)
    finally:
        env.close()
    return None if raw is None else codec.decode(raw)


def _meta(cache: ProjectCache, key: str) -> Any:
    """Read one ``meta`` entry through the open cache's storage."""
    meta = cache._repos.meta
    return cache._storage.read(lambda txn: meta.get(txn, key))


@pytest.fixture
def tiny_settings(tmp_path: Path) -> Settings:
    """Settings for a fresh cache whose map starts at the 64 KiB minimum."""
    return Settings(cache_dir=tmp_path / "cache", map_size=TINY_MAP)


@pytest.fixture
def tiny_cache(tiny_settings: Settings) -> Iterator[ProjectCache]:
    """A fresh read-write cache with a 64 KiB initial map, closed after the test."""
    with ProjectCache.open(settings=tiny_settings) as opened:
        yield opened


@pytest.fixture
def existing_settings(cache_settings: Settings) -> Settings:
    """Settings of a cache that was created (and closed) before the test."""
    ProjectCache.open(settings=cache_settings).close()
    return cache_settings


class TestOpen:
    """Opening creates the environment and shares it within a process."""

    def test_creates_private_directory_and_data_file(self, tmp_path: Path) -> None:
        """Opening a missing directory creates it (and its parents) with mode 0700 and data.mdb."""
        target = tmp_path / "deep" / "er" / "cache"
        with ProjectCache.open(settings=Settings(cache_dir=target)) as cache:
            assert cache.path == target
            assert stat.S_IMODE(target.stat().st_mode) == 0o700
            assert (target / "data.mdb").is_file()
            assert stat.S_IMODE((target / "data.mdb").stat().st_mode) & 0o077 == 0

    def test_same_directory_twice_shares_one_storage(self, cache_settings: Settings) -> None:
        """Two opens of one directory share a Storage; closing one leaves the other working."""
        first = ProjectCache.open(settings=cache_settings)
        second = ProjectCache.open(settings=cache_settings)
        storage = first._storage
        try:
            assert second._storage is storage
            first.put_artifacts(_artifacts("one", 1))
            second.put_artifacts(_artifacts("two", 1))
            assert second.get_artifact("default/skill/one-0") is not None
            assert first.get_artifact("default/skill/two-0") is not None

            first.close()
            assert not storage.closed
            second.put_artifacts(_artifacts("three", 1))
            assert second.get_artifact("default/skill/one-0") is not None
            assert second.stats().counts["artifacts"] == 3
        finally:
            first.close()
            second.close()
        assert storage.closed
        with pytest.raises(CacheClosedError):
            storage.info()

    def test_same_directory_through_another_spelling_is_shared(
        self, cache_settings: Settings
    ) -> None:
        """A relative or ``..``-laden path to the same directory still shares the Storage."""
        detour = cache_settings.cache_dir.parent / "elsewhere" / ".." / "cache"
        with ProjectCache.open(settings=cache_settings) as first:
            first.put_artifacts(_artifacts("x", 1))
            with ProjectCache.open(detour, settings=cache_settings) as second:
                assert second._storage is first._storage

    def test_readonly_open_while_writer_is_open_is_shared(self, cache_settings: Settings) -> None:
        """A read-only open of a directory a writer holds shares the writer's Storage."""
        with ProjectCache.open(settings=cache_settings) as writer:
            writer.put_artifacts(_artifacts("w", 2))
            with ProjectCache.open(readonly=True, settings=cache_settings) as reader:
                assert reader._storage is writer._storage
                assert reader.get_artifact("default/skill/w-1") is not None
                writer.put_artifacts(_artifacts("later", 1))
                assert reader.get_artifact("default/skill/later-0") is not None
            assert writer.get_artifact("default/skill/w-0") is not None

    def test_readonly_handle_sharing_a_writer_refuses_writes(
        self, cache_settings: Settings
    ) -> None:
        """A handle opened read-only stays read-only even when it shares a writer's environment."""
        with ProjectCache.open(settings=cache_settings) as writer:
            with ProjectCache.open(readonly=True, settings=cache_settings) as reader:
                assert not writer.readonly
                assert reader.readonly
                with pytest.raises(ReadOnlyCacheError):
                    reader.put_artifacts(_artifacts("sneaky", 1))
            assert writer.get_artifact("default/skill/sneaky-0") is None

    def test_writer_open_while_readonly_is_open_raises(self, existing_settings: Settings) -> None:
        """A read-write open while only a read-only one is open raises CacheAlreadyOpenError."""
        with ProjectCache.open(readonly=True, settings=existing_settings) as reader:
            with pytest.raises(CacheAlreadyOpenError) as info:
                ProjectCache.open(settings=existing_settings)
            assert info.value.hint
            assert reader.stats().counts["artifacts"] == 0
        # Once the reader is gone a writer may open.
        with ProjectCache.open(settings=existing_settings) as writer:
            assert not writer.readonly

    def test_readonly_open_of_missing_directory_raises(self, tmp_path: Path) -> None:
        """A read-only open of a directory without a cache raises and creates nothing."""
        target = tmp_path / "nothing-here"
        with pytest.raises(CacheNotFoundError):
            ProjectCache.open(readonly=True, settings=Settings(cache_dir=target))
        assert not target.exists()

    def test_readonly_open_of_empty_directory_raises(self, tmp_path: Path) -> None:
        """A read-only open of an existing directory without data.mdb raises CacheNotFoundError."""
        (tmp_path / "empty").mkdir()
        with pytest.raises(CacheNotFoundError):
            ProjectCache.open(readonly=True, settings=Settings(cache_dir=tmp_path / "empty"))
        assert not (tmp_path / "empty" / "data.mdb").exists()


class TestReadOnly:
    """A cache opened read-only reads but never writes."""

    def test_writes_raise(
        self, existing_settings: Settings, make_project: Callable[..., Any]
    ) -> None:
        """Every mutation on a read-only cache raises ReadOnlyCacheError."""
        with ProjectCache.open(readonly=True, settings=existing_settings) as cache:
            assert cache.readonly
            with pytest.raises(ReadOnlyCacheError):
                cache.put_artifacts(_artifacts("a", 1))
            with pytest.raises(ReadOnlyCacheError):
                cache.put_projects([make_project("demo")])
            with pytest.raises(ReadOnlyCacheError):
                cache.delete_artifact("default/skill/a-0")
            with pytest.raises(ReadOnlyCacheError):
                cache.clear()
            with pytest.raises(ReadOnlyCacheError):
                cache._storage.write(lambda txn: None)

    def test_reads_work_and_close_saves_nothing(self, cache_settings: Settings) -> None:
        """A read-only cache reads what a writer committed; its close does not write counters."""
        with ProjectCache.open(settings=cache_settings) as writer:
            writer.put_artifacts(_artifacts("r", 3))
        with ProjectCache.open(readonly=True, settings=cache_settings) as reader:
            assert reader.get_artifact("default/skill/r-2") is not None
            assert reader.get_artifact("default/skill/missing") is None
            txn_id = reader.stats().last_txn_id
        with ProjectCache.open(readonly=True, settings=cache_settings) as again:
            assert again.stats().last_txn_id == txn_id


class TestClose:
    """``close()`` is idempotent and a closed cache refuses use."""

    def test_close_is_idempotent(self, cache: ProjectCache) -> None:
        """Closing twice (and again via the fixture's context manager) is harmless."""
        storage = cache._storage
        cache.close()
        cache.close()
        assert cache.closed
        assert storage.closed

    def test_use_after_close_raises(self, cache: ProjectCache) -> None:
        """Reads, writes, listings and stats on a closed cache raise CacheClosedError."""
        cache.put_artifacts(_artifacts("c", 1))
        cache.close()
        with pytest.raises(CacheClosedError):
            cache.get_artifact("default/skill/c-0")
        with pytest.raises(CacheClosedError):
            cache.put_artifacts(_artifacts("d", 1))
        with pytest.raises(CacheClosedError):
            next(cache.list_artifacts())
        with pytest.raises(CacheClosedError):
            cache.search("c")
        with pytest.raises(CacheClosedError):
            cache.stats()
        with pytest.raises(CacheClosedError):
            cache.delete_artifact("default/skill/c-0")

    def test_closed_handle_raises_while_another_keeps_environment_open(
        self, cache_settings: Settings
    ) -> None:
        """A closed handle raises CacheClosedError even though a sibling keeps the env open."""
        with ProjectCache.open(settings=cache_settings) as keeper:
            closed = ProjectCache.open(settings=cache_settings)
            closed.close()
            with pytest.raises(CacheClosedError):
                closed.get_artifact("default/skill/x")
            with pytest.raises(CacheClosedError):
                closed.put_artifacts(_artifacts("x", 1))
            with pytest.raises(CacheClosedError):
                closed.stats()
            assert keeper.stats().counts["artifacts"] == 0

    def test_close_saves_hit_and_miss_counters(self, cache_settings: Settings) -> None:
        """Unsaved hit/miss counters are written by close and read back on the next open."""
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.put_artifacts(_artifacts("h", 1))
            cache.get_artifact("default/skill/h-0")
            cache.get_artifact("default/skill/absent")
        with ProjectCache.open(readonly=True, settings=cache_settings) as cache:
            stats = cache.stats()
            assert (stats.hits, stats.misses) == (1, 1)


class TestGrowth:
    """The map grows on demand, up to ``max_map_size``, without losing or half-writing data."""

    def test_batches_grow_the_map_transparently(self, tiny_cache: ProjectCache) -> None:
        """Writing batches into a 64 KiB map grows it and every record reads back."""
        before = tiny_cache.stats().map_size
        assert before == TINY_MAP
        for batch in range(20):
            assert tiny_cache.put_artifacts(_artifacts(f"g{batch}", 100)) == 100
        stats = tiny_cache.stats()
        assert stats.map_size > before
        assert stats.counts["artifacts"] == 2000
        for batch in range(20):
            for key in _keys(f"g{batch}", 100):
                assert tiny_cache.get_artifact_json(key) is not None, key
        assert len(list(tiny_cache.list_artifacts())) == 2000

    def test_one_large_transaction_grows_the_map(self, tiny_cache: ProjectCache) -> None:
        """A single transaction far larger than the map is replayed until it fits, once."""
        assert tiny_cache.put_artifacts(_artifacts("big", 3000)) == 3000
        stats = tiny_cache.stats()
        assert stats.map_size >= 4 * TINY_MAP
        assert stats.counts["artifacts"] == 3000
        assert tiny_cache.search("big", limit=1).total == 3000

    def test_reopen_with_small_map_size_keeps_data_and_grows_again(
        self, tiny_settings: Settings
    ) -> None:
        """Reopening a grown cache with a 64 KiB map_size maps all its data and grows on demand."""
        with ProjectCache.open(settings=tiny_settings) as cache:
            cache.put_artifacts(_artifacts("keep", 1000))
        with ProjectCache.open(settings=tiny_settings) as cache:
            stats = cache.stats()
            assert stats.map_size >= stats.used_bytes > TINY_MAP
            assert cache.get_artifact("default/skill/keep-999") is not None
            cache.put_artifacts(_artifacts("more", 2000))
            stats = cache.stats()
            assert stats.map_size >= stats.used_bytes
            assert stats.counts["artifacts"] == 3000

    def test_max_map_size_raises_cache_full_and_keeps_data(self, tmp_path: Path) -> None:
        """Hitting max_map_size raises CacheFullError with a hint; committed data survives."""
        settings = Settings(
            cache_dir=tmp_path / "cache", map_size=TINY_MAP, max_map_size=8 * TINY_MAP
        )
        with ProjectCache.open(settings=settings) as cache:
            cache.put_artifacts(_artifacts("kept", 50))
            with pytest.raises(CacheFullError) as info:
                cache.put_artifacts(_artifacts("toomuch", 5000))
            assert "MAX_MAP_SIZE" in info.value.hint
            assert info.value.exit_code == 6

            stats = cache.stats()
            assert stats.map_size <= settings.max_map_size
            assert stats.counts["artifacts"] == 50
            assert cache.get_artifact("default/skill/toomuch-0") is None
            assert cache.search("toomuch").total == 0
            for key in _keys("kept", 50):
                assert cache.get_artifact(key) is not None, key

            assert cache.put_artifacts(_artifacts("small", 1)) == 1
            assert cache.get_artifact("default/skill/small-0") is not None
        with ProjectCache.open(readonly=True, settings=settings) as cache:
            assert cache.stats().counts["artifacts"] == 51
            assert cache.search("small").total == 1

    def test_map_full_from_commit_grows_and_replays(
        self, tiny_cache: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """MapFullError raised by commit (not by a put) aborts, grows the map and replays once."""
        storage = tiny_cache._storage
        calls: list[int] = []

        def body(txn: Txn) -> str:
            calls.append(1)
            txn.put(b"probe", codec.encode(len(calls)), db=storage.dbs["meta"])
            return "done"

        with monkeypatch.context() as patch:
            proxy = _CommitFailsOnce(storage.env)
            patch.setattr(storage, "env", proxy)
            assert storage.write(body) == "done"
        assert proxy.failed_commits == 1
        assert len(calls) == 2
        assert storage.info()["map_size"] == 2 * TINY_MAP
        assert _meta(tiny_cache, "probe") == 2

    def test_map_full_from_commit_through_the_facade(
        self, tiny_cache: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A put_artifacts whose commit fails with MapFullError is committed exactly once."""
        storage = tiny_cache._storage
        with monkeypatch.context() as patch:
            patch.setattr(storage, "env", _CommitFailsOnce(storage.env))
            assert tiny_cache.put_artifacts(_artifacts("commit", 10)) == 10
        assert tiny_cache.stats().counts["artifacts"] == 10
        assert tiny_cache.search("commit").total == 10
        assert tiny_cache.get_artifact("default/skill/commit-9") is not None


class _CommitFailsOnce:
    """An environment stand-in whose first write transaction fails in ``commit`` with MapFullError.

    LMDB can report MDB_MAP_FULL from ``mdb_txn_commit`` (saving the freelist
    needs pages) after every put succeeded; that is hard to provoke on purpose,
    so the real transaction is aborted and the error raised as LMDB would.
    """

    def __init__(self, env: lmdb.Environment):
        self._env = env
        self.failed_commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def begin(self, **kwargs: Any) -> Any:
        txn = self._env.begin(**kwargs)
        if kwargs.get("write") and not self.failed_commits:
            return _FailingCommit(txn, self)
        return txn


class _FailingCommit:
    """A write transaction wrapper whose ``commit`` aborts and raises MapFullError."""

    def __init__(self, txn: lmdb.Transaction, owner: _CommitFailsOnce):
        self._txn = txn
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)

    def commit(self) -> None:
        self._txn.abort()
        self._owner.failed_commits += 1
        raise lmdb.MapFullError("mdb_txn_commit: MDB_MAP_FULL: Environment mapsize limit reached")


class TestAtomicWrites:
    """A write either commits everything it did or nothing."""

    def test_failing_write_function_commits_nothing(self, cache: ProjectCache) -> None:
        """An exception inside the write callable propagates unchanged and nothing is committed."""
        storage = cache._storage
        meta = storage.dbs["meta"]
        last_txn = storage.info()["last_txnid"]

        def body(txn: Txn) -> None:
            txn.put(b"half", codec.encode(1), db=meta)
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            storage.write(body)
        assert storage.info()["last_txnid"] == last_txn
        assert _meta(cache, "half") is None
        # The writer lock was released: the next write goes through.
        storage.write(lambda txn: txn.put(b"whole", codec.encode(2), db=meta))
        assert _meta(cache, "whole") == 2

    def test_failure_midway_through_a_batch_commits_nothing(
        self, cache: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A batch whose third record fails to store leaves none of the batch behind."""
        real_put = mutations.put_artifact
        stored: list[str] = []

        def flaky_put(txn: Txn, repos: Any, artifact: Any, *names: Any, **options: Any) -> None:
            if len(stored) == 2:
                raise OSError("simulated I/O failure")
            real_put(txn, repos, artifact, *names, **options)
            stored.append(artifact.key)

        monkeypatch.setattr(mutations, "put_artifact", flaky_put)
        with pytest.raises(OSError, match="simulated"):
            cache.put_artifacts(_artifacts("half", 5))
        monkeypatch.undo()
        assert stored == ["default/skill/half-0", "default/skill/half-1"]
        assert cache.get_artifact("default/skill/half-0") is None
        assert cache.stats().counts == {
            "collections": 0,
            "projects": 0,
            "artifacts": 0,
            "deployments": 0,
            "sources": 0,
            "postings": 0,
        }

    def test_invalid_record_in_batch_writes_nothing(self, cache: ProjectCache) -> None:
        """A batch with one invalid record raises InvalidRecordError before anything is written."""
        batch = [*_artifacts("ok", 3), {"name": "bad", "type": "Non Sense", "collection": "c"}]
        with pytest.raises(InvalidRecordError):
            cache.put_artifacts(batch)
        assert cache.stats().counts["artifacts"] == 0


class TestSchema:
    """The schema version in ``meta`` is checked and migrated on open."""

    def test_new_cache_records_current_version(self, cache: ProjectCache) -> None:
        """A fresh cache records the current schema version and its creation time."""
        assert _meta(cache, "schema_version") == SCHEMA_VERSION
        assert _meta(cache, "created_at")
        assert cache.stats().schema_version == SCHEMA_VERSION

    @pytest.mark.parametrize("readonly", [False, True])
    def test_newer_version_raises_and_is_left_alone(
        self, existing_settings: Settings, readonly: bool
    ) -> None:
        """A cache whose schema_version is from the future raises SchemaVersionError untouched."""
        path = existing_settings.cache_dir
        _write_raw_meta(path, "schema_version", 999)
        with pytest.raises(SchemaVersionError) as info:
            ProjectCache.open(readonly=readonly, settings=existing_settings)
        assert info.value.exit_code == 9
        assert _read_raw_meta(path, "schema_version") == 999

    def test_older_version_without_migration_is_emptied(self, cache_settings: Settings) -> None:
        """An old schema with no migration is emptied and flagged needs_rebuild on open."""
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.put_artifacts(_artifacts("old", 20))
        _write_raw_meta(cache_settings.cache_dir, "schema_version", 0)
        with ProjectCache.open(settings=cache_settings) as cache:
            assert _meta(cache, "schema_version") == SCHEMA_VERSION
            assert _meta(cache, "needs_rebuild") is True
            assert _meta(cache, "created_at")
            stats = cache.stats()
            assert stats.counts["artifacts"] == 0
            assert stats.counts["postings"] == 0
            assert cache.get_artifact("default/skill/old-0") is None
            assert cache.search("old").total == 0

    def test_older_version_readonly_raises(self, existing_settings: Settings) -> None:
        """A read-only open cannot migrate: an old schema raises SchemaVersionError with a hint."""
        _write_raw_meta(existing_settings.cache_dir, "schema_version", 0)
        with pytest.raises(SchemaVersionError) as info:
            ProjectCache.open(readonly=True, settings=existing_settings)
        assert "read-write" in info.value.hint
        assert _read_raw_meta(existing_settings.cache_dir, "schema_version") == 0


class TestDurability:
    """Each durability mode opens and maps to LMDB's sync flags."""

    @pytest.mark.parametrize(
        ("mode", "sync", "metasync"),
        [("full", True, True), ("no-metasync", True, False), ("none", False, False)],
    )
    def test_mode_maps_to_env_flags(
        self, tmp_path: Path, mode: str, sync: bool, metasync: bool
    ) -> None:
        """The durability mode sets ``sync``/``metasync``; writemap stays off in every mode."""
        settings = Settings(cache_dir=tmp_path / "cache", durability=mode)
        with ProjectCache.open(settings=settings) as cache:
            flags = cache._storage.env.flags()
            assert (flags["sync"], flags["metasync"]) == (sync, metasync)
            assert flags["writemap"] is False
            cache.put_artifacts(_artifacts(mode.replace("-", ""), 2))
        with ProjectCache.open(readonly=True, settings=settings) as cache:
            assert cache.stats().counts["artifacts"] == 2


def test_storage_acquire_and_release_count_references(cache_settings: Settings) -> None:
    """Each acquire needs its own release; the environment closes with the last one."""
    first = Storage.acquire(cache_settings.cache_dir, cache_settings, readonly=False)
    second = Storage.acquire(cache_settings.cache_dir, cache_settings, readonly=False)
    assert first is second
    first.release()
    assert not first.closed
    assert first.page_size() > 0
    second.release()
    assert first.closed
    first.release()  # one too many: harmless
    assert first.closed
