"""A cache we may not write (issue scenario 4): reads still work, every write names the folder.

As root, the child drops to user nobody (see ``PRIVILEGE_DROP``); otherwise the
permission bits are removed with chmod.  New cache directories are 0700.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import lmdb
import pytest

from clirun import run_python
from factories import CollectionBuilder
from projcache import ProjectCache
from projcache.config import Settings


def others_can_reach(path: str) -> bool:
    """True when a user with no special rights can reach and read ``path``."""
    real = Path(os.path.realpath(path))
    if any(not parent.stat().st_mode & stat.S_IXOTH for parent in real.parents):
        return False
    return bool(real.stat().st_mode & stat.S_IROTH)


def nobody_can_run_python() -> bool:
    import pydantic

    import projcache

    needed = [sys.executable, os.__file__, lmdb.__file__, pydantic.__file__, projcache.__file__]
    return all(others_can_reach(path) for path in needed)


# How the permission checks run as an unprivileged user when the tests run as root:
# "user=nobody" starts the interpreter as nobody; when nobody cannot even reach the
# interpreter (here it lives under /root, mode 0700), the child starts as root,
# imports everything it needs, then drops to nobody before touching the cache.
IS_ROOT = os.geteuid() == 0
if not IS_ROOT:
    PRIVILEGE_DROP = "none (not root: permission bits removed with chmod)"
elif nobody_can_run_python():
    PRIVILEGE_DROP = "subprocess started as nobody (user=65534)"
else:
    PRIVILEGE_DROP = "in-script setuid(65534) after imports (interpreter unreachable by nobody)"


# -- 4. permissions ---------------------------------------------------------------------------

PERM_SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys
    from pathlib import Path

    import projcache.cache, projcache.direct, projcache.recovery, projcache.refresh
    import projcache.stats, projcache.verify, projcache.quickverify, projcache.roots
    import projcache.cachedir, projcache.streams, projcache.mutations, projcache.search
    import projcache.salvage, projcache.migrate_profiles
    import projcache_cli.root
    from projcache import ProjectCache, models
    from projcache.config import Settings
    from projcache.errors import ProjcacheError

    drop, mode, cache_dir = sys.argv[1] == "drop", sys.argv[2], Path(sys.argv[3])
    # Warm up what is imported or compiled lazily while the interpreter is still
    # reachable (a venv under a 0700 folder is not, once we are nobody): a whole
    # open/write/read cycle on a scratch cache, and the CLI's click commands.
    import tempfile
    import typer.main

    # Words long enough to be stemmed: the stemmer (PyStemmer) is imported on first use.
    warm = {"name": "warming-records", "type": "skill", "collection": "w",
            "description": "stemming searches"}
    models.Artifact.model_validate(warm).model_dump_json()
    with tempfile.TemporaryDirectory() as scratch:
        with ProjectCache.open(scratch) as warm_cache:
            warm_cache.put_artifacts([warm])
            warm_cache.search("warming searches")
            list(warm_cache.list_artifacts())
            warm_cache.stats()
        import contextlib, io

        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            projcache_cli.root.app(
                ["--cache-dir", scratch, "show"], prog_name="projcache", standalone_mode=False
            )
    typer.main.get_command(projcache_cli.root.app)
    if drop:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    if mode == "cli":
        projcache_cli.root.app(sys.argv[4:], prog_name="projcache")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append([record.name, record.levelname, record.getMessage()])

    logging.getLogger("projcache").addHandler(Keep())
    logging.getLogger("projcache").setLevel(logging.INFO)
    out = {"uid": os.geteuid(), "ops": {}, "logs": records}

    def attempt(name, fn):
        try:
            value = fn()
        except ProjcacheError as exc:
            out["ops"][name] = {"error": type(exc).__name__, "message": str(exc),
                                "hint": exc.hint, "exit_code": exc.exit_code}
        except Exception as exc:
            out["ops"][name] = {"error": type(exc).__name__, "message": str(exc),
                                "hint": None, "exit_code": None}
        else:
            out["ops"][name] = {"value": value}

    settings = Settings(cache_dir=cache_dir, map_size=256 * 1024)
    if mode == "create":
        attempt("open", lambda: ProjectCache.open(settings=settings).close())
    else:
        try:
            cache = ProjectCache.open(settings=settings)
        except ProjcacheError as exc:
            out["open"] = {"error": type(exc).__name__, "message": str(exc), "hint": exc.hint}
        else:
            out["open"] = {"readonly": cache.readonly}
            attempt("list", lambda: [a.key for a in cache.list_artifacts()])
            attempt("get", lambda: cache.get_artifact("default/skill/pdf").name)
            attempt("search", lambda: cache.search("pdf").total)
            attempt("verify", lambda: cache.verify(deep=True).ok)
            attempt("put", lambda: cache.put_artifacts(
                [{"name": "new", "type": "skill", "collection": "default"}]))
            attempt("delete", lambda: cache.delete_artifact("default/skill/pdf"))
            attempt("invalidate", lambda: cache.invalidate())
            attempt("clear", lambda: cache.clear())
            attempt("refresh", lambda: cache.refresh(collections=[sys.argv[4]]).ok)
            attempt("repair", lambda: cache.verify(repair=True).ok)
            cache.close()
    print(json.dumps(out))
    """
)


@dataclasses.dataclass
class WriteDenied:
    """A cache owned by root (or locked down with chmod) under a world-traversable folder."""

    base: Path
    cache_dir: Path
    collection: Path

    @property
    def tmp(self) -> Path:
        """A temp folder anyone may write (mode 1777, like /tmp), inside ``base``."""
        return self.base / "tmp"

    def run(self, mode: str, *args: str) -> Any:
        """Run the permission script as the unprivileged user; return the finished process."""
        drop = IS_ROOT and not PRIVILEGE_DROP.startswith("subprocess")
        kwargs: dict[str, Any] = {}
        if IS_ROOT and not drop:
            kwargs = {"user": 65534, "group": 65534, "extra_groups": []}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base),
            "XDG_CONFIG_HOME": str(self.base / "no-config"),
            # The child's own temp folder (verify snapshots through it): the system's /tmp
            # need not be writable by the unprivileged user the child runs as.
            "TMPDIR": str(self.tmp),
        }
        argv = ["-c", PERM_SCRIPT, "drop" if drop else "keep", mode, *args]
        return run_python(argv, env=env, cwd=str(self.base), **kwargs)

    def lib(self, mode: str = "lib", cache_dir: Optional[Path] = None) -> dict[str, Any]:
        done = self.run(mode, str(cache_dir or self.cache_dir), str(self.collection))
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        assert result["uid"] == (65534 if IS_ROOT else os.geteuid()), PRIVILEGE_DROP
        return result


@pytest.fixture
def write_denied() -> Iterator[WriteDenied]:
    """A seeded cache nobody else may write: root-owned 0755/0644 (or chmod 0555/0444)."""
    base = Path(tempfile.mkdtemp(prefix="projcache-p2-perm-"))
    try:
        base.chmod(0o755)
        collection = CollectionBuilder(base, "extra")
        collection.skill("extra")
        collection.write()
        cache_dir = base / "cache"
        with ProjectCache.open(settings=Settings(cache_dir=cache_dir, map_size=256 * 1024)) as c:
            c.put_artifacts([{"name": "pdf", "type": "skill", "collection": "default"}])
            c.put_projects([{"name": "shop", "path": str(base / "shop")}])
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (base / "tmp").mkdir()
        (base / "tmp").chmod(0o1777)
        if not IS_ROOT:
            for path in cache_dir.iterdir():
                path.chmod(0o444)
            cache_dir.chmod(0o555)
            base.chmod(0o555)
        yield WriteDenied(base=base, cache_dir=cache_dir, collection=collection.path)
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(0o700 if path.is_dir() else 0o600)
        shutil.rmtree(base)


def denied(path: Path) -> dict[str, Any]:
    return {
        "error": "CachePermissionError",
        "message": f"cannot write the cache in {path}: permission denied (opened read-only)",
        "hint": "Check the permissions of the cache directory, or choose another one.",
        "exit_code": 8,
    }


def denied_lines(shared: WriteDenied) -> list[str]:
    """The stderr lines of a CLI write to a cache opened read-only for lack of rights."""
    return [
        f"warning: cannot write {shared.cache_dir}; opened it read-only",
        f"error: cannot write the cache in {shared.cache_dir}: permission denied "
        "(opened read-only)",
        "hint: Check the permissions of the cache directory, or choose another one.",
    ]


class TestPermissions:
    """A cache we may not write still serves reads; every write names the directory."""

    def test_new_cache_directories_are_created_0700(self, tmp_path: Path) -> None:
        """The cache directory is created 0700 and its files 0600, whatever the umask."""
        previous = os.umask(0)
        try:
            cache_dir = tmp_path / "deep" / "er" / "cache"
            with ProjectCache.open(settings=Settings(cache_dir=cache_dir)) as cache:
                backup = cache.backup(tmp_path / "backup")
        finally:
            os.umask(previous)
        assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(backup.stat().st_mode) == 0o700
        for name in ("data.mdb", "lock.mdb"):
            assert stat.S_IMODE((cache_dir / name).stat().st_mode) == 0o600

    def test_a_cache_nobody_else_may_write_opens_for_reads(self, write_denied: WriteDenied) -> None:
        """Another user's cache (dir 0755, files 0644) opens read-only; writes name the dir."""
        result = write_denied.lib()
        assert result["open"] == {"readonly": True}, (PRIVILEGE_DROP, result)
        ops = result["ops"]
        assert ops["list"] == {"value": ["default/skill/pdf"]}
        assert ops["get"] == {"value": "pdf"}
        for write in ("put", "delete", "invalidate", "clear"):
            assert ops[write] == denied(write_denied.cache_dir), write

    def test_write_denied_cache_with_a_shared_lock_file(self, write_denied: WriteDenied) -> None:
        """Data file and dir not writable, lock file shared: reads work, writes name the dir."""
        (write_denied.cache_dir / "lock.mdb").chmod(0o666)
        result = write_denied.lib()
        assert result["open"] == {"readonly": True}
        ops = result["ops"]
        assert ops["list"] == {"value": ["default/skill/pdf"]}
        assert ops["search"] == {"value": 1}
        assert ops["verify"] == {"value": True}
        for write in ("put", "delete", "invalidate", "clear"):
            assert ops[write] == denied(write_denied.cache_dir), write
        assert [
            "projcache.cache",
            "WARNING",
            f"cannot write {write_denied.cache_dir}; opened it read-only",
        ] in result["logs"]

    def test_the_child_has_a_temp_folder_it_may_write(self, write_denied: WriteDenied) -> None:
        """Self-contained: the system's /tmp need not be writable by the unprivileged child.

        verify() snapshots through the temp folder; with /tmp not world-writable, the
        child (run as nobody) failed. It gets TMPDIR, a 1777 folder inside ``base``.
        """
        assert stat.S_IMODE(write_denied.tmp.stat().st_mode) == 0o1777
        assert write_denied.lib()["ops"]["verify"] == {"value": True}

    def test_refresh_and_repair_of_a_write_denied_cache_raise_permission_error(
        self, write_denied: WriteDenied
    ) -> None:
        """refresh() and verify(repair=True) are writes too: CachePermissionError naming the dir."""
        (write_denied.cache_dir / "lock.mdb").chmod(0o666)
        ops = write_denied.lib()["ops"]
        assert ops["refresh"] == denied(write_denied.cache_dir)
        assert ops["repair"] == denied(write_denied.cache_dir)

    def test_cannot_create_a_cache_under_a_folder_we_may_not_write(
        self, write_denied: WriteDenied
    ) -> None:
        """Creating a cache where we may not write raises CachePermissionError naming it."""
        target = write_denied.base / "new-cache"
        result = write_denied.lib("create", target)
        assert result["ops"]["open"] == {
            "error": "CachePermissionError",
            "message": f"cannot create cache directory {target}",
            "hint": "Check the permissions of the cache directory, or choose another one.",
            "exit_code": 8,
        }
        assert not target.exists()


class TestPermissionMessages:
    """What the CLI prints when another user writes to a cache it may only read."""

    def test_cli_invalidate_on_a_write_denied_cache(self, write_denied: WriteDenied) -> None:
        """As another user, `invalidate` prints the read-only warning, the error and the hint."""
        (write_denied.cache_dir / "lock.mdb").chmod(0o666)
        where = ["--cache-dir", str(write_denied.cache_dir)]
        done = write_denied.run("cli", str(write_denied.cache_dir), *where, "invalidate")
        assert (done.returncode, done.stderr.splitlines()) == (8, denied_lines(write_denied))
        assert done.stdout == ""

    def test_cli_refresh_on_a_write_denied_cache(self, write_denied: WriteDenied) -> None:
        """As another user, `refresh` says permission denied (not "open read-only"), exit 8."""
        (write_denied.cache_dir / "lock.mdb").chmod(0o666)
        where = ["--cache-dir", str(write_denied.cache_dir)]
        done = write_denied.run(
            "cli",
            str(write_denied.cache_dir),
            *where,
            "refresh",
            "-c",
            str(write_denied.collection),
        )
        assert (done.returncode, done.stderr.splitlines()) == (8, denied_lines(write_denied))
