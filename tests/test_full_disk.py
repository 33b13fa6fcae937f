"""A full disk (issue scenario 5): a 2 MiB tmpfs, or an RLIMIT_FSIZE simulation where mounting
is not allowed; writes fail cleanly with ``DiskFullError`` and the last commit stays.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from clirun import run_python
from factories import CollectionBuilder
from projcache import ProjectCache
from projcache.config import Settings
from projcache.errors import (
    CacheFullError,
    StorageError,
)

# Which full-disk method ran ("tmpfs" or "rlimit ..."), set by the small_fs fixture.
FULL_DISK_METHOD: Optional[str] = None


# -- 5. full disk -----------------------------------------------------------------------------

FILL_SCRIPT = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    from pathlib import Path
    from projcache import ProjectCache
    from projcache.config import Settings
    from projcache.errors import ProjcacheError

    method, cache_dir, filler = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    settings = Settings(cache_dir=cache_dir, map_size=256 * 1024, max_map_size=1 << 30)
    out = {}
    with ProjectCache.open(settings=settings) as cache:
        _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        if method == "rlimit":
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            limit = os.path.getsize(cache_dir / "data.mdb") + 512 * 1024
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        batches, error = 0, None
        while batches < 500 and error is None:
            batch = [{"name": f"a{batches}-{j}", "type": "skill", "collection": "fill",
                      "description": "x" * 2000 + f" unique{batches}x{j}"} for j in range(10)]
            try:
                cache.put_artifacts(batch)
                batches += 1
            except ProjcacheError as exc:
                error = exc
        out["batches"] = batches
        out["error"] = None if error is None else {
            "class": type(error).__name__, "bases": [c.__name__ for c in type(error).__mro__],
            "message": str(error), "hint": error.hint, "exit_code": error.exit_code}
        out["read_back"] = len(list(cache.iter_artifacts_json(collection="fill")))
        out["failed_batch_visible"] = cache.search(f"unique{batches}x0").total
        report = cache.verify(deep=True)
        out["verify_when_full"] = [report.ok, [f.message for f in report.findings]]
        if method == "rlimit":
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        else:
            filler.unlink()
        cache.put_artifacts([{"name": "after", "type": "skill", "collection": "fill"}])
        out["after"] = cache.get_artifact("fill/skill/after") is not None
    print(json.dumps(out))
    """
)


@pytest.fixture
def small_fs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """A 2 MiB tmpfs (unmounted afterwards), else a folder for the RLIMIT_FSIZE simulation.

    Which one ran is printed, kept in ``FULL_DISK_METHOD`` and recorded as the
    test's ``full_disk_method`` property (shown in JUnit XML reports).
    """
    global FULL_DISK_METHOD
    mount_point = tmp_path / "small-fs"
    mount_point.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            check=False,
        )
        why = done.stderr.strip()
    except OSError as exc:
        done, why = None, str(exc)
    if done is not None and done.returncode == 0:
        FULL_DISK_METHOD = "tmpfs"
        print(f"full-disk method: {FULL_DISK_METHOD}")
        request.node.user_properties.append(("full_disk_method", FULL_DISK_METHOD))
        try:
            yield "tmpfs", mount_point
        finally:
            if subprocess.run(["umount", str(mount_point)], check=False).returncode:
                subprocess.run(["umount", "-l", str(mount_point)], check=False)
    else:
        FULL_DISK_METHOD = f"rlimit (mount failed: {why})"
        print(f"full-disk method: {FULL_DISK_METHOD}")
        request.node.user_properties.append(("full_disk_method", FULL_DISK_METHOD))
        yield "rlimit", mount_point


def fill_up(mount_point: Path, leave: int) -> Path:
    """Fill the tmpfs with a filler file until ``leave`` bytes are free; return the filler."""
    filler = mount_point / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    size = filler.stat().st_size
    with filler.open("r+b") as handle:
        handle.truncate(max(0, size - leave))
    return filler


def run_fill(method: str, mount_point: Path) -> tuple[dict[str, Any], Settings]:
    settings = Settings(cache_dir=mount_point / "cache", map_size=256 * 1024, max_map_size=1 << 30)
    with ProjectCache.open(settings=settings) as cache:
        cache.put_artifacts([{"name": "before", "type": "skill", "collection": "fill"}])
    filler = mount_point / "filler"
    if method == "tmpfs":
        filler = fill_up(mount_point, 768 * 1024)
    done = run_python(["-c", FILL_SCRIPT, method, str(settings.cache_dir), str(filler)])
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result, settings


def disk_full_lines(method: str, cache_dir: Path) -> tuple[str, str]:
    """The DiskFullError message and hint: ENOSPC on the tmpfs, EFBIG under RLIMIT_FSIZE."""
    if method == "tmpfs":
        return (
            f"no space left on the device holding the cache ({cache_dir})",
            "Free disk space on the cache's filesystem, or move it with PROJCACHE_DIR.",
        )
    return (
        f"a cache file may not grow any further ({cache_dir}): File too large",
        "Raise the file size limit (`ulimit -f`), or move the cache with PROJCACHE_DIR.",
    )


def disk_full_stderr(method: str, cache_dir: Path) -> list[str]:
    """The CLI's stderr lines for a full disk under ``cache_dir``."""
    message, hint = disk_full_lines(method, cache_dir)
    return [f"error: {message}", f"hint: {hint}"]


def cli_refresh(
    cache_dir: Path, collection: Path, file_size_limit: Optional[int]
) -> subprocess.CompletedProcess[str]:
    """Run ``projcache refresh -c COLLECTION`` in a child; ``file_size_limit`` sets RLIMIT_FSIZE."""
    kwargs: dict[str, Any] = {}
    if file_size_limit is not None:
        limit = file_size_limit

        def limited() -> None:
            import resource
            import signal

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        kwargs["preexec_fn"] = limited
    script = Path(sys.executable).parent / "projcache"
    return subprocess.run(
        [str(script), "--cache-dir", str(cache_dir), "refresh", "-c", str(collection)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "XDG_CONFIG_HOME": str(cache_dir.parent / "no-config")},
        check=False,
        **kwargs,
    )


class TestFullDisk:
    """A full filesystem fails one write cleanly; what was committed stays; freeing space heals."""

    def test_a_full_disk_fails_cleanly_and_keeps_the_last_commit(
        self, small_fs: tuple[str, Path]
    ) -> None:
        """Write until the disk is full: the failing batch is absent, the rest reads, verifies."""
        method, mount_point = small_fs
        result, settings = run_fill(method, mount_point)
        error = result["error"]
        assert error is not None, f"the disk never filled ({FULL_DISK_METHOD})"
        assert "StorageError" in error["bases"], error
        assert result["batches"] > 0
        # Every committed batch plus "before" reads back; nothing of the failed batch does.
        assert result["read_back"] == result["batches"] * 10 + 1
        assert result["failed_batch_visible"] == 0
        assert result["verify_when_full"] == [True, []]
        assert result["after"] is True
        with ProjectCache.open(settings=settings, readonly=True) as cache:
            assert len(list(cache.iter_artifacts_json())) == result["batches"] * 10 + 2
            assert cache.verify(deep=True).ok

    def test_a_full_disk_is_a_disk_full_error_with_a_hint(self, small_fs: tuple[str, Path]) -> None:
        """The error a full disk raises is DiskFullError: clear message, hint, exit code 6."""
        method, mount_point = small_fs
        result, settings = run_fill(method, mount_point)
        message, hint = disk_full_lines(method, settings.cache_dir)
        assert result["error"] == {
            "class": "DiskFullError",
            "bases": result["error"]["bases"],
            "message": message,
            "hint": hint,
            "exit_code": 6,
        }, FULL_DISK_METHOD

    def test_creating_a_cache_on_a_full_disk_is_a_clean_disk_full_error(
        self, small_fs: tuple[str, Path], tmp_path: Path
    ) -> None:
        """A new cache on a full filesystem: exit 6 with error and hint, no SIGBUS (was 135),
        and no half-made lock.mdb/data.mdb left behind (issue 12 item 8)."""
        method, mount_point = small_fs
        collection = CollectionBuilder(tmp_path / "small", "small")
        collection.skill("s", front_matter={"name": "s", "description": "a skill"})
        collection.write()
        cache_dir = mount_point / "new-cache"
        if method == "tmpfs":
            fill_up(mount_point, 0)
        done = cli_refresh(cache_dir, collection.path, None if method == "tmpfs" else 4096)
        assert (done.returncode, done.stderr.splitlines()) == (
            6,
            disk_full_stderr(method, cache_dir),
        ), (FULL_DISK_METHOD, done.stderr)
        assert sorted(p.name for p in cache_dir.iterdir()) == []

    def test_cli_refresh_on_a_full_disk_prints_error_and_hint(
        self, small_fs: tuple[str, Path], tmp_path: Path
    ) -> None:
        """`projcache refresh` on a full disk: exit 6, `error:` and `hint:` lines on stderr."""
        method, mount_point = small_fs
        collection = CollectionBuilder(tmp_path / "big", "big")
        for i in range(40):
            collection.skill(
                f"s{i}", front_matter={"name": f"s{i}", "description": f"{i} " + "y" * 8000}
            )
        collection.write()
        cache_dir = mount_point / "cache"
        with ProjectCache.open(settings=Settings(cache_dir=cache_dir)) as cache:
            cache.put_artifacts([{"name": "before", "type": "skill", "collection": "fill"}])
        limit: Optional[int] = None
        if method == "tmpfs":
            fill_up(mount_point, 64 * 1024)
        else:
            limit = (cache_dir / "data.mdb").stat().st_size + 64 * 1024
        done = cli_refresh(cache_dir, collection.path, limit)
        assert (done.returncode, done.stderr.splitlines()) == (
            6,
            disk_full_stderr(method, cache_dir),
        ), FULL_DISK_METHOD
        assert done.stdout == ""

    def test_the_map_limit_is_a_cache_full_error(self, cache_settings: Settings) -> None:
        """Reaching max_map_size raises CacheFullError with its hint; the committed data stays."""
        settings = dataclasses.replace(cache_settings, map_size=128 * 1024, max_map_size=512 * 1024)
        with ProjectCache.open(settings=settings) as cache:
            batches = 0
            with pytest.raises(CacheFullError) as info:
                while batches < 200:
                    cache.put_artifacts(
                        [
                            {
                                "name": f"m{batches}-{j}",
                                "type": "skill",
                                "collection": "m",
                                "description": "z" * 1500,
                            }
                            for j in range(10)
                        ]
                    )
                    batches += 1
            assert str(info.value) == (
                f"the cache in {settings.cache_dir} reached its maximum map size of "
                f"{512 * 1024} bytes"
            )
            assert info.value.hint == (
                "Raise PROJCACHE_MAX_MAP_SIZE (or max_map_size in the config file), "
                "or run `projcache clear` and refresh."
            )
            assert info.value.exit_code == 6
            assert isinstance(info.value, StorageError)
            assert len(list(cache.iter_artifacts_json())) == batches * 10
            assert cache.verify(deep=True).ok
