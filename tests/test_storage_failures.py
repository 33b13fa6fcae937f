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

    def begin(self, db: Any = None, **kwargs: Any) -> Any:
        self.begins += 1
        if db is not None:  # (the point read names its sub-database positionally)
            kwargs["db"] = db
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


# -- a cache folder someone else can write (issue 12 item 5) ----------------------------------
#
# The hostile cache-folder corpus: each case plants something in (or makes unsafe) a
# folder before projcache opens it.  Every case is refused with UnsafeCacheDirError
# (exit 8) before LMDB opens anything, and the file a link points at is never touched.

_VICTIM_TEXT = "precious: never overwritten by projcache\n"


def _plant(kind: str, folder: Path, victim: Path) -> None:
    """Make ``folder`` hostile in one way (``victim`` is a file of ours an attacker aims at)."""
    import os

    folder.mkdir(mode=0o700)
    if kind == "world-writable folder":
        folder.chmod(0o777)
    elif kind == "group-writable folder":
        folder.chmod(0o770)
    else:
        folder.chmod(0o1777)  # sticky and ours: accepted, so the planted file must be caught
        name, what = kind.split(" ", 1)
        planted = folder / name
        if what == "symlink":
            planted.symlink_to(victim)
        elif what == "dangling symlink":
            planted.symlink_to(folder.parent / f"created-through-{name}")
        elif what == "hard link":
            os.link(victim, planted)
        elif what == "fifo":
            os.mkfifo(planted)
        else:  # pragma: no cover - a typo in the case list
            raise AssertionError(kind)


_HOSTILE_FOLDERS = {
    "lock.mdb symlink": r"refusing .*/lock\.mdb: it is a symbolic link \(to .*victim\.txt\)",
    "lock.mdb dangling symlink": r"refusing .*/lock\.mdb: it is a symbolic link",
    "data.mdb symlink": r"refusing .*/data\.mdb: it is a symbolic link",
    "data.mdb dangling symlink": r"refusing .*/data\.mdb: it is a symbolic link",
    "grow.lock symlink": r"refusing .*/grow\.lock: it is a symbolic link",
    "lock.mdb hard link": r"refusing .*/lock\.mdb: it has 2 hard links",
    "lock.mdb fifo": r"refusing .*/lock\.mdb: it is not a regular file",
    "world-writable folder": r"refusing the cache folder .*: everyone may write it \(mode 0777\)",
    "group-writable folder": r"refusing the cache folder .*: its group may write it \(mode 0770\)",
}


class TestHostileCacheFolder:
    """Nothing in a folder another user can write is opened; a planted link is never followed."""

    @pytest.mark.parametrize("readonly", [False, True], ids=["read-write", "read-only"])
    @pytest.mark.parametrize("kind", sorted(_HOSTILE_FOLDERS))
    def test_refused_before_anything_is_opened(
        self, tmp_path: Path, kind: str, readonly: bool
    ) -> None:
        """UnsafeCacheDirError (exit 8) naming the file or folder; the victim is untouched."""
        from projcache import UnsafeCacheDirError

        victim = tmp_path / "victim.txt"
        victim.write_text(_VICTIM_TEXT)
        folder = tmp_path / "shared"
        _plant(kind, folder, victim)
        # A read-only open needs a data.mdb to get as far as LMDB.
        if readonly and not kind.endswith("folder") and not (folder / "data.mdb").is_symlink():
            (folder / "data.mdb").write_bytes(b"")
        before = sorted(p.name for p in folder.iterdir())
        settings = Settings(cache_dir=folder, map_size=256 * 1024)
        with pytest.raises(UnsafeCacheDirError, match=_HOSTILE_FOLDERS[kind]) as info:
            ProjectCache.open(settings=settings, readonly=readonly)
        assert info.value.exit_code == 8
        assert "only you can write" in info.value.hint
        assert victim.read_text() == _VICTIM_TEXT
        assert sorted(p.name for p in folder.iterdir()) == before
        assert not any(p.name.startswith("created-through-") for p in tmp_path.iterdir())

    def test_the_cli_refuses_a_planted_lock_file_with_exit_8(self, tmp_path: Path) -> None:
        """`projcache refresh` into a sticky shared folder with a planted lock.mdb: exit 8."""
        import subprocess
        import sys

        victim = tmp_path / "victim.txt"
        victim.write_text(_VICTIM_TEXT)
        folder = tmp_path / "shared"
        _plant("lock.mdb symlink", folder, victim)
        collection = tmp_path / "collection"
        collection.mkdir()
        (collection / "collection.toml").write_text('[collection]\nname = "c"\n')
        done = subprocess.run(
            [
                *(sys.executable, "-m", "projcache_cli", "--cache-dir", str(folder)),
                *("refresh", "--collection", str(collection)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 8, done.stderr
        assert done.stderr.splitlines()[0] == (
            f"error: refusing {folder}/lock.mdb: it is a symbolic link (to {victim}); "
            "projcache never opens its files through a link"
        )
        assert victim.read_text() == _VICTIM_TEXT

    def test_a_folder_of_another_user_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A cache folder owned by someone else (not root) is refused, even read-only."""
        import os

        from projcache import UnsafeCacheDirError

        settings = Settings(cache_dir=tmp_path / "theirs", map_size=256 * 1024)
        with ProjectCache.open(settings=settings) as cache:
            cache.put_artifacts([{"name": "a", "type": "skill", "collection": "c"}])
        owner = os.stat(settings.cache_dir).st_uid
        if owner == 0:  # root owns it: hand it to another user (root is always trusted)
            os.chown(settings.cache_dir, 4242, 4242)
            owner = 4242
        else:  # we are that user: pretend to be another one
            monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
        for readonly in (False, True):
            with pytest.raises(UnsafeCacheDirError) as info:
                ProjectCache.open(settings=settings, readonly=readonly)
            assert str(info.value) == (
                f"refusing the cache folder {settings.cache_dir}: "
                f"it belongs to user id {owner}, not to you"
            )

    def test_a_sticky_folder_of_ours_is_accepted_and_files_are_private(
        self, tmp_path: Path
    ) -> None:
        """A sticky, world-writable folder we own works; projcache creates its files 0600."""
        import stat

        folder = tmp_path / "sticky"
        folder.mkdir()
        folder.chmod(0o1777)
        settings = Settings(cache_dir=folder, map_size=256 * 1024)
        with ProjectCache.open(settings=settings) as cache:
            cache.put_artifacts([{"name": "a", "type": "skill", "collection": "c"}])
        for name in ("data.mdb", "lock.mdb"):
            st = (folder / name).lstat()
            assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, name
        with ProjectCache.open(settings=settings, readonly=True) as cache:
            assert cache.get_artifact("c/skill/a") is not None

    def test_the_lock_file_is_allocated_not_sparse(self, tmp_path: Path) -> None:
        """lock.mdb gets its blocks before LMDB maps it (a sparse page on a full disk: SIGBUS)."""
        settings = Settings(cache_dir=tmp_path / "c", map_size=256 * 1024)
        with ProjectCache.open(settings=settings):
            st = (settings.cache_dir / "lock.mdb").stat()
        assert st.st_size >= storage_module.cachedir.lock_file_bytes(storage_module.MAX_READERS)
        assert st.st_blocks * 512 >= st.st_size
