"""Storage under failure: full disk, full reader table, foreign map growth, network filesystems."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any, Callable, Optional

import lmdb
import pytest

from projcache import DiskFullError, ProjectCache, StorageError
from projcache import storage as storage_module
from projcache.config import Settings
from projcache.errors import CacheBusyError

Factory = Callable[..., dict[str, Any]]


class _EnvProxy:
    """Wraps an environment; ``on_begin(kwargs)`` may raise or wrap each new transaction."""

    def __init__(self, env: lmdb.Environment, on_begin: Callable[[dict[str, Any], Any], Any]):
        self._env = env
        self._on_begin = on_begin
        self.begins = 0
        self.reader_checks = 0
        self.adoptions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def begin(self, **kwargs: Any) -> Any:
        self.begins += 1
        return self._on_begin(kwargs, lambda: self._env.begin(**kwargs))

    def reader_check(self) -> int:
        self.reader_checks += 1
        return int(self._env.reader_check())

    def set_mapsize(self, size: int) -> None:
        if size == 0:
            self.adoptions += 1
        self._env.set_mapsize(size)


class _CommitRaises:
    def __init__(self, txn: Any, exc: BaseException):
        self._txn = txn
        self._exc = exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)

    def commit(self) -> None:
        self._txn.abort()
        raise self._exc


def test_disk_full_on_commit_is_a_clear_error_and_commits_nothing(
    cache: ProjectCache, make_artifact: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC at commit raises DiskFullError; earlier data reads back; later writes work."""
    cache.put_artifacts([make_artifact("before")])
    storage = cache._storage
    full = lmdb.DiskError("mdb_txn_commit: No space left on device", errno.ENOSPC)

    def on_begin(kwargs: dict[str, Any], begin: Callable[[], Any]) -> Any:
        txn = begin()
        return _CommitRaises(txn, full) if kwargs.get("write") else txn

    with monkeypatch.context() as patch:
        patch.setattr(storage, "env", _EnvProxy(storage.env, on_begin))
        with pytest.raises(DiskFullError) as info:
            cache.put_artifacts([make_artifact("during")])
    assert "no space left" in str(info.value)
    assert "Free disk space" in info.value.hint
    assert info.value.exit_code == 6
    assert cache.get_artifact("default/skill/during") is None
    assert cache.search("during").total == 0
    assert cache.get_artifact("default/skill/before") is not None
    cache.put_artifacts([make_artifact("after")])
    assert cache.get_artifact("default/skill/after") is not None
    assert cache.verify(deep=True).ok


def test_full_reader_table_runs_reader_check_then_reports_busy(
    cache: ProjectCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every reader slot taken, reads clear stale slots, retry, then raise CacheBusyError."""
    storage = cache._storage

    def on_begin(kwargs: dict[str, Any], begin: Callable[[], Any]) -> Any:
        raise lmdb.ReadersFullError("mdb_txn_begin: MDB_READERS_FULL")

    proxy = _EnvProxy(storage.env, on_begin)
    with monkeypatch.context() as patch:
        patch.setattr(storage, "env", proxy)
        with pytest.raises(CacheBusyError, match="reader slots") as info:
            cache.get_artifact("default/skill/x")
    assert proxy.reader_checks >= 3
    assert info.value.exit_code == 11


@pytest.mark.parametrize(
    ("error", "recovery"),
    [
        (lmdb.ReadersFullError("mdb_txn_begin: MDB_READERS_FULL"), "reader_checks"),
        (lmdb.MapResizedError("mdb_txn_begin: MDB_MAP_RESIZED"), "adoptions"),
        (lmdb.Error("Attempt to operate on closed/deleted/dropped object."), None),
    ],
    ids=["readers-full-then-reader-check", "map-resized-then-adopt", "invalidated-then-retry"],
)
def test_transient_begin_error_is_recovered_and_the_read_retried(
    cache: ProjectCache,
    make_artifact: Factory,
    monkeypatch: pytest.MonkeyPatch,
    error: lmdb.Error,
    recovery: Optional[str],
) -> None:
    """A read whose begin fails once (reader table full, map grown elsewhere) still succeeds."""
    cache.put_artifacts([make_artifact("pdf")])
    storage = cache._storage

    def on_begin(kwargs: dict[str, Any], begin: Callable[[], Any]) -> Any:
        # Like LMDB: the condition lasts until the recovery ran (or one begin, if none).
        unrecovered = proxy.begins == 1 if recovery is None else not getattr(proxy, recovery)
        if unrecovered:
            raise error
        return begin()

    proxy = _EnvProxy(storage.env, on_begin)
    with monkeypatch.context() as patch:
        patch.setattr(storage, "env", proxy)
        assert cache.get_artifact("default/skill/pdf") is not None
        assert cache.search("pdf").total == 1
    if recovery is not None:
        assert getattr(proxy, recovery) == 1


def test_map_resized_elsewhere_before_a_write_is_adopted(
    cache: ProjectCache, make_artifact: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MapResizedError when a write transaction begins is adopted and the write goes through."""
    storage = cache._storage

    def on_begin(kwargs: dict[str, Any], begin: Callable[[], Any]) -> Any:
        if kwargs.get("write") and proxy.adoptions == 0:
            raise lmdb.MapResizedError("mdb_txn_begin: MDB_MAP_RESIZED")
        return begin()

    proxy = _EnvProxy(storage.env, on_begin)
    with monkeypatch.context() as patch:
        patch.setattr(storage, "env", proxy)
        cache.put_artifacts([make_artifact("pdf")])
    assert proxy.adoptions == 1
    assert cache.get_artifact("default/skill/pdf") is not None


def test_other_lmdb_errors_in_a_write_are_translated(
    cache: ProjectCache, make_artifact: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected LMDB error inside a write surfaces as a StorageError naming the cache."""
    storage = cache._storage
    broken = lmdb.CorruptedError("mdb_put: MDB_CORRUPTED: Located page was wrong type")

    def on_begin(kwargs: dict[str, Any], begin: Callable[[], Any]) -> Any:
        txn = begin()
        return _CommitRaises(txn, broken) if kwargs.get("write") else txn

    with monkeypatch.context() as patch:
        patch.setattr(storage, "env", _EnvProxy(storage.env, on_begin))
        with pytest.raises(StorageError, match="corrupted") as info:
            cache.put_artifacts([make_artifact("x")])
    assert str(cache.path) in str(info.value)
    assert "verify --repair" in info.value.hint


def test_network_filesystem_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache directory on NFS is refused with a hint to use a local disk."""
    monkeypatch.setattr(storage_module, "_filesystem_type", lambda path: "nfs4")
    with pytest.raises(StorageError, match="network filesystem") as info:
        ProjectCache.open(settings=Settings(cache_dir=tmp_path / "c"))
    assert "local disk" in info.value.hint


def test_filesystem_type_reads_mountinfo(tmp_path: Path) -> None:
    """The filesystem type of a local directory is found in /proc/self/mountinfo."""
    fstype = storage_module._filesystem_type(tmp_path)
    assert fstype is not None and fstype not in storage_module._NETWORK_FS


def test_stale_reader_slots_cleared_on_open_are_logged(
    cache_settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When reader_check frees slots at open, the number is logged at INFO."""
    real_open = lmdb.open

    class _Env:
        def __init__(self, env: lmdb.Environment):
            self._env = env

        def __getattr__(self, name: str) -> Any:
            return getattr(self._env, name)

        def reader_check(self) -> int:
            return 3

    monkeypatch.setattr(storage_module.lmdb, "open", lambda *a, **k: _Env(real_open(*a, **k)))
    caplog.set_level(logging.INFO, logger="projcache.storage")
    with ProjectCache.open(settings=cache_settings):
        pass
    assert "cleared 3 stale reader slot(s)" in caplog.text
