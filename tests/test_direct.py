"""Source-direct mode: a disabled or unusable cache is answered straight from the source
files with one warning, and every answer equals that of a real cache refreshed from them.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
from typer.testing import Result

from clirun import runner
from factories import CollectionBuilder, ProjectBuilder, age
from projcache import ProjectCache
from projcache.config import Settings, load_settings
from projcache.errors import CacheCorruptError, CacheDisabledError, StorageError
from projcache_cli import app

SUFFIX = "; answering straight from the source files (slower)"
DISABLED = "the cache is disabled by configuration"
STATES = ("current", "outdated", "modified", "missing")
PROJECTS = ("webapp", "api", "plain")
LIST = ("list", "deployments", "--json")
# (query, keyword arguments of ProjectCache.search)
SEARCHES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("pdf", {}),
    ("review", {}),
    ("te", {}),
    ("s", {}),
    ("s", {"limit": 4, "offset": 3}),
    ("s", {"limit": 0}),
    ("s", {"type": "skill"}),
    ("s", {"project": "webapp"}),
    ("s", {"tag": "quality"}),
    ("skill", {"collection": "default", "limit": 50}),
    ("command", {}),
    ("notes", {}),
    ("zzz-no-such-word", {}),
)


# -- the source tree -----------------------------------------------------------------------


def build_tree(root: Path) -> Path:
    """Build a collection of 20 artifacts and three projects with deployments in every state.

    ``webapp`` and ``api`` are SkillMeat projects (current, outdated, modified and
    missing deployments); ``plain`` is a bare ``.claude/`` with two local artifacts.
    Every mtime is aged, so a refresh trusts what it read.  Returns ``root``.
    """
    collection = CollectionBuilder(root / "collections", "default", description="Team skills")
    collection.skill(
        "pdf",
        front_matter={
            "name": "pdf",
            "title": "PDF toolkit",
            "description": "Extract the text of PDF files.",
            "tags": ["pdf", "documents"],
            "version": "2.0.1",
        },
        files={"reference.md": "# Reference\n", "scripts/extract.py": "print('hi')\n"},
        tags=["pdf", "files"],
        resolved_version="v2.0.1",
    )
    collection.skill("notes", front_matter={"name": "notes"}, body="# Notes\n\nTake notes.\n")
    collection.skill("semver", resolved_version="v1.0.0")
    collection.skill("semver-old", resolved_version="v1.0.0")
    collection.skill("code-review", tags=["review", "quality"])
    collection.skill("test-runner", tags=["testing", "quality"])
    for name in ("docx", "xlsx", "changelog", "api-design"):
        collection.skill(name, tags=["documents"] if name in ("docx", "xlsx") else [])
    collection.command("commit", metadata={"description": "Write the commit message."})
    collection.command("lint", tags=["quality"])
    collection.command("review-pr", tags=["review"])
    collection.command("deploy")
    collection.command("format", tags=["quality"])
    for name in ("auditor", "planner", "tester", "writer"):
        collection.agent(name, tags=["security"] if name == "auditor" else [])
    collection.command("scratch", managed=False)
    collection.write()

    webapp = ProjectBuilder(root / "projects", "webapp", description="Web shop")
    for type_, name in (("skill", "pdf"), ("command", "commit"), ("agent", "auditor")):
        webapp.deploy(collection, type_, name)
    webapp.deploy(collection, "skill", "semver", version="1.0.0")
    webapp.deploy(collection, "skill", "semver-old", version="0.9.0")
    webapp.deploy(collection, "skill", "code-review")
    webapp.deploy(collection, "command", "ghost", copy=False)
    webapp.write()

    api = ProjectBuilder(root / "projects", "api", description="Public API")
    for type_, name in (("skill", "test-runner"), ("command", "review-pr"), ("skill", "docx")):
        api.deploy(collection, type_, name)
    api.deploy(collection, "agent", "planner")
    api.deploy(collection, "command", "deploy")
    api.write()

    # After deployment: the collection moves on, a copy is edited, another deleted, and an
    # artifact leaves the collection.
    collection.command("commit", body="# commit\n\nA newer commit command.\n")
    collection.command("review-pr", tags=["review"], body="# review-pr\n\nReworked.\n")
    collection.remove("command", "deploy")
    collection.write()
    with open(webapp.deployed_path("agent", "auditor"), "a", encoding="utf-8") as handle:
        handle.write("A local tweak.\n")
    os.remove(api.deployed_path("agent", "planner"))

    plain = ProjectBuilder(root / "projects", "plain", managed=False)
    plain.local("skill", "meeting-notes", files={"template.md": "# Template\n"})
    plain.local("command", "summarize", front_matter={"description": "Summarise the file."})
    age(root)
    return root


@pytest.fixture
def tree(tree: Path) -> Path:
    """The conftest ``tree`` filled with the source tree of :func:`build_tree`."""
    return build_tree(tree)


def settings_env(tmp_path: Path, tree: Path, **variables: str) -> dict[str, str]:
    """An environment for ``load_settings``: a private HOME, the tree's roots, ``variables``."""
    home = tmp_path / "home"
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "PROJCACHE_COLLECTIONS": str(tree / "collections"),
        "PROJCACHE_PROJECT_ROOTS": str(tree / "projects"),
        **variables,
    }


# -- snapshots: every query, answered by one handle ----------------------------------------


def dump_without(records: list[Any], *fields: str) -> list[dict[str, Any]]:
    return [record.model_dump(exclude=set(fields)) for record in records]


def snapshot(cache: ProjectCache) -> dict[str, Any]:
    """Everything a reader can ask, in a comparable form (refresh times left out)."""
    artifacts = list(cache.list_artifacts())
    keys = [artifact.key for artifact in artifacts]
    local = sorted({a.collection for a in artifacts if a.collection.startswith("@")})
    snap: dict[str, Any] = {
        "artifacts": [a.model_dump() for a in artifacts],
        "artifacts_json": list(cache.iter_artifacts_json()),
        "projects": dump_without(cache.list_projects(), "refreshed_at", "stale"),
        "collections": dump_without(cache.list_collections(), "refreshed_at", "stale"),
        "deployments": [d.model_dump() for d in cache.list_deployments()],
        "get": {key: cache.get_artifact(key).model_dump() for key in keys},  # type: ignore[union-attr]
        "get_json": {key: cache.get_artifact_json(key) for key in keys},
        "get_missing": cache.get_artifact("default/skill/no-such-skill"),
    }
    for type_ in ("skill", "command", "agent"):
        snap[f"artifacts type={type_}"] = [a.key for a in cache.list_artifacts(type=type_)]
    for tag in ("quality", "documents", "review"):
        snap[f"artifacts tag={tag}"] = [a.key for a in cache.list_artifacts(tag=tag)]
    for collection in ["default", *local]:
        snap[f"artifacts collection={collection}"] = [
            a.key for a in cache.list_artifacts(collection=collection)
        ]
    for state in STATES:
        snap[f"deployments state={state}"] = [
            d.model_dump()
            for d in cache.list_deployments(state=state)  # type: ignore[arg-type]
        ]
    for name in PROJECTS:
        snap[f"deployments project={name}"] = [
            d.model_dump() for d in cache.list_deployments(project=name)
        ]
    for query, options in SEARCHES:
        results = cache.search(query, **options)
        snap[f"search {query!r} {options}"] = {
            "keys": [hit.key for hit in results],
            "hits": [hit.model_dump() for hit in results],
            "total": results.total,
        }
    return snap


@pytest.fixture
def reference(tree_settings: Settings, tmp_path: Path) -> dict[str, Any]:
    """The snapshot of a real cache refreshed from the tree (then closed)."""
    settings = dataclasses.replace(tree_settings, cache_dir=tmp_path / "reference")
    with ProjectCache.open(settings=settings) as cache:
        report = cache.refresh()
        assert report.errors == []
        assert cache.direct_reason is None
        return snapshot(cache)


def check_reference(snap: dict[str, Any]) -> None:
    """The tree yields 21 artifacts, 3 projects and every deployment state (no vacuous match)."""
    assert len(snap["artifacts"]) == 21
    assert [p["name"] for p in sorted(snap["projects"], key=lambda p: p["name"])] == sorted(
        PROJECTS
    )
    for state in STATES:
        assert snap[f"deployments state={state}"], state
    assert snap["search 's' {}"]["total"] > 10


# -- ways to make the cache unusable --------------------------------------------------------


def disabled(settings: Settings, tmp_path: Path, monkeypatch: Any) -> Settings:
    return dataclasses.replace(settings, enabled=False)


def skillmeat_off(settings: Settings, tmp_path: Path, monkeypatch: Any) -> Settings:
    tree = Path(settings.collection_roots[0]).parent
    env = settings_env(
        tmp_path, tree, PROJCACHE_DIR=str(settings.cache_dir), SKILLMEAT_ENABLE_CACHE="false"
    )
    return load_settings(env)


def garbage(settings: Settings, tmp_path: Path, monkeypatch: Any) -> Settings:
    settings.cache_dir.mkdir(parents=True)
    (settings.cache_dir / "data.mdb").write_bytes(b"not an LMDB file\n" * 4096)
    return settings


def path_is_file(settings: Settings, tmp_path: Path, monkeypatch: Any) -> Settings:
    settings.cache_dir.write_text("a regular file where the cache should be\n", encoding="utf-8")
    return settings


def parent_is_file(settings: Settings, tmp_path: Path, monkeypatch: Any) -> Settings:
    parent = tmp_path / "a-file"
    parent.write_text("x\n", encoding="utf-8")
    return dataclasses.replace(settings, cache_dir=parent / "cache")


def data_is_dir(settings: Settings, tmp_path: Path, monkeypatch: Any) -> Settings:
    (settings.cache_dir / "data.mdb").mkdir(parents=True)
    return settings


def mkdir_denied(settings: Settings, tmp_path: Path, monkeypatch: Any) -> Settings:
    # chmod does not stop root, so the EACCES a non-root user gets from mkdir in an
    # unwritable parent is produced for the cache directory alone.
    target = Path(os.path.abspath(settings.cache_dir))
    original = Path.mkdir

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if Path(os.path.abspath(self)) == target:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    return settings


UNUSABLE: dict[str, Callable[[Settings, Path, Any], Settings]] = {
    "PROJCACHE_ENABLED=false": disabled,
    "SKILLMEAT_ENABLE_CACHE=false": skillmeat_off,
    "garbage in data.mdb": garbage,
    "cache path is a regular file": path_is_file,
    "cache path under a regular file": parent_is_file,
    "data.mdb is a directory": data_is_dir,
    "new cache directory not creatable (EACCES)": mkdir_denied,
}


def warning_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- the library -----------------------------------------------------------------------------


class TestSourceDirectMode:
    """``ProjectCache.open(fallback=True)`` on an unusable cache answers from the sources."""

    @pytest.fixture
    def direct_settings(
        self,
        request: pytest.FixtureRequest,
        tree_settings: Settings,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> Settings:
        """Settings whose cache cannot be used, in the way the test's parameter names."""
        make = UNUSABLE[request.param]
        return make(
            dataclasses.replace(tree_settings, cache_dir=tmp_path / "cache"), tmp_path, monkeypatch
        )

    @pytest.mark.parametrize("direct_settings", list(UNUSABLE), indirect=True)
    def test_answers_equal_a_refreshed_cache(
        self,
        direct_settings: Settings,
        reference: dict[str, Any],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Every listing, lookup and search of the direct handle equals the real cache's."""
        check_reference(reference)
        caplog.set_level(logging.WARNING, logger="projcache.direct")
        with ProjectCache.open(settings=direct_settings, fallback=True) as cache:
            assert cache.direct_reason is not None
            snap = snapshot(cache)
        assert snap == reference
        assert [r.name for r in warning_records(caplog)] == ["projcache.direct"]

    @pytest.mark.parametrize("direct_settings", list(UNUSABLE), indirect=True)
    def test_logs_exactly_one_warning(
        self, direct_settings: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Open, query and close log one WARNING, from ``projcache.direct``, naming the reason."""
        caplog.set_level(logging.WARNING, logger="projcache.direct")
        with ProjectCache.open(settings=direct_settings, fallback=True) as cache:
            reason = cache.direct_reason
            list(cache.list_artifacts())
            cache.search("s")
            cache.get_artifact("default/skill/pdf")
        (record,) = warning_records(caplog)
        assert record.name == "projcache.direct"
        assert record.getMessage() == f"{reason}{SUFFIX}"

    @pytest.mark.parametrize("direct_settings", list(UNUSABLE), indirect=True)
    def test_leaves_the_configured_cache_as_it_was(
        self, direct_settings: Settings, tmp_path: Path
    ) -> None:
        """The direct handle reads and writes only its scratch directory, never the cache's."""
        cache_dir = Path(direct_settings.cache_dir)

        def state() -> dict[str, Any]:
            if not cache_dir.exists():
                return {}
            if cache_dir.is_file():
                return {".": cache_dir.read_bytes()}
            return {
                str(p.relative_to(cache_dir)): p.read_bytes() if p.is_file() else None
                for p in sorted(cache_dir.rglob("*"))
            }

        before = state()
        # The nearest folder (the cache's parent may itself be a regular file).
        folder = next(p for p in cache_dir.parents if p.is_dir())
        siblings = sorted(p.name for p in folder.iterdir())
        with ProjectCache.open(settings=direct_settings, fallback=True) as cache:
            assert cache._scratch is not None
            assert Path(cache.path) == Path(os.path.abspath(cache._scratch))
        after = state()
        # LMDB may leave a lock.mdb next to a data.mdb it refused; data.mdb itself is untouched.
        after.pop("lock.mdb", None)
        assert after == before
        assert sorted(p.name for p in folder.iterdir()) == siblings

    @pytest.mark.parametrize(
        ("make", "reason"),
        [
            (disabled, DISABLED),
            (skillmeat_off, DISABLED),
            (garbage, "the cache in {dir} is damaged"),
            (path_is_file, "the cache in {dir} cannot be used (cannot create cache directory"),
        ],
        ids=["disabled", "skillmeat", "garbage", "file"],
    )
    def test_direct_names_the_reason(
        self,
        tree_settings: Settings,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        make: Callable[[Settings, Path, Any], Settings],
        reason: str,
    ) -> None:
        """``cache.direct_reason`` is a string saying why the handle reads from source."""
        settings = make(
            dataclasses.replace(tree_settings, cache_dir=tmp_path / "cache"), tmp_path, monkeypatch
        )
        with ProjectCache.open(settings=settings, fallback=True) as cache:
            assert cache.is_direct
            assert isinstance(cache.direct_reason, str)
            assert cache.direct_reason.startswith(reason.format(dir=settings.cache_dir))

    def test_direct_is_none_for_a_real_cache(self, tree_settings: Settings) -> None:
        """A cache that opens normally is no direct handle and has no scratch directory."""
        with ProjectCache.open(settings=tree_settings, fallback=True) as cache:
            assert cache.direct_reason is None
            assert not cache.is_direct
            assert cache._scratch is None
            assert Path(cache.path) == Path(os.path.abspath(tree_settings.cache_dir))

    def test_scratch_directory_is_removed_on_close(self, tree_settings: Settings) -> None:
        """The throwaway store lives in a temporary directory that close() removes (idempotent)."""
        settings = dataclasses.replace(tree_settings, enabled=False)
        cache = ProjectCache.open(settings=settings, fallback=True)
        scratch = cache._scratch
        assert scratch is not None
        assert scratch.name.startswith("projcache-direct-")
        assert (scratch / "data.mdb").is_file()
        assert Path(cache.path) == Path(os.path.abspath(scratch))
        cache.close()
        assert not scratch.exists()
        cache.close()
        assert cache.closed

    def test_scratch_directory_is_removed_when_reading_sources_fails(
        self, tree_settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An error while the sources are read on open propagates and leaves no scratch behind."""
        made: list[str] = []
        original = tempfile.mkdtemp

        def mkdtemp(*args: Any, **kwargs: Any) -> str:
            made.append(original(*args, **kwargs))
            return made[-1]

        def refresh(self: ProjectCache, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("sources unreadable")

        monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
        monkeypatch.setattr(ProjectCache, "refresh", refresh)
        settings = dataclasses.replace(tree_settings, enabled=False)
        with pytest.raises(RuntimeError, match="sources unreadable"):
            ProjectCache.open(settings=settings, fallback=True)
        assert len(made) == 1
        assert not Path(made[0]).exists()

    def test_two_direct_handles_are_independent(self, tree_settings: Settings) -> None:
        """Two direct handles at once own separate scratch stores; closing one spares the other."""
        settings = dataclasses.replace(tree_settings, enabled=False)
        first = ProjectCache.open(settings=settings, fallback=True)
        with ProjectCache.open(settings=settings, fallback=True) as second:
            assert first._scratch != second._scratch
            first.close()
            assert first._scratch is not None and not first._scratch.exists()
            assert len(list(second.list_artifacts())) == 21
            assert second.get_artifact("default/skill/pdf") is not None

    def test_every_open_reads_the_sources_afresh(self, tree_settings: Settings, tree: Path) -> None:
        """A source changed after one direct open shows in the next open, not in the first."""
        settings = dataclasses.replace(tree_settings, enabled=False)
        with ProjectCache.open(settings=settings, fallback=True) as before:
            collection = CollectionBuilder(tree / "collections", "default")
            collection.skill("brand-new", front_matter={"name": "brand-new"})
            with ProjectCache.open(settings=settings, fallback=True) as after:
                assert after.get_artifact("default/skill/brand-new") is not None
                assert after.search("brand").total == 1
            assert before.get_artifact("default/skill/brand-new") is None

    def test_disabled_cache_raises_without_fallback(self, tree_settings: Settings) -> None:
        """Without ``fallback`` a disabled cache raises CacheDisabledError and creates nothing."""
        settings = dataclasses.replace(tree_settings, enabled=False)
        with pytest.raises(CacheDisabledError, match=DISABLED) as info:
            ProjectCache.open(settings=settings)
        assert info.value.exit_code == 3
        assert "PROJCACHE_ENABLED" in info.value.hint
        assert not Path(settings.cache_dir).exists()

    def test_skillmeat_flag_raises_without_fallback(self, tree: Path, tmp_path: Path) -> None:
        """``SKILLMEAT_ENABLE_CACHE=false`` read from the environment disables the cache too."""
        env = settings_env(tmp_path, tree, PROJCACHE_DIR=str(tmp_path / "cache"))
        env["SKILLMEAT_ENABLE_CACHE"] = "false"
        with pytest.raises(CacheDisabledError):
            ProjectCache.open(settings=load_settings(env))
        with pytest.raises(CacheDisabledError):
            ProjectCache.open(settings=load_settings(env), readonly=True)

    def test_damaged_cache_raises_without_fallback(
        self, tree_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without ``fallback`` garbage in data.mdb raises CacheCorruptError, read-only or not."""
        settings = garbage(
            dataclasses.replace(tree_settings, cache_dir=tmp_path / "cache"), tmp_path, monkeypatch
        )
        for readonly in (False, True):
            with pytest.raises(CacheCorruptError, match="is damaged") as info:
                ProjectCache.open(settings=settings, readonly=readonly)
            assert info.value.exit_code == 7
            assert "verify --repair" in info.value.hint

    def test_unusable_path_raises_without_fallback(
        self, tree_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without ``fallback`` a cache path that is a regular file raises a StorageError."""
        settings = path_is_file(
            dataclasses.replace(tree_settings, cache_dir=tmp_path / "cache"), tmp_path, monkeypatch
        )
        with pytest.raises(StorageError, match="cannot create cache directory"):
            ProjectCache.open(settings=settings)

    @pytest.mark.parametrize(
        "direct_settings",
        [
            "PROJCACHE_ENABLED=false",
            "SKILLMEAT_ENABLE_CACHE=false",
            "garbage in data.mdb",
            "data.mdb is a directory",
            "cache path is a regular file",
        ],
        indirect=True,
    )
    def test_readonly_fallback_answers_from_source(
        self,
        direct_settings: Settings,
        reference: dict[str, Any],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A read-only open with ``fallback`` (what CLI reads do) answers from the sources too."""
        caplog.set_level(logging.WARNING, logger="projcache.direct")
        with ProjectCache.open(settings=direct_settings, readonly=True, fallback=True) as cache:
            assert cache.direct_reason is not None
            assert [a.model_dump() for a in cache.list_artifacts()] == reference["artifacts"]
            assert [d.model_dump() for d in cache.list_deployments()] == reference["deployments"]
        assert [r.name for r in warning_records(caplog)] == ["projcache.direct"]

    def test_auto_repair_from_the_environment_wins_over_fallback(
        self, tree: Path, tmp_path: Path
    ) -> None:
        """With PROJCACHE_AUTO_REPAIR=true a damaged cache is repaired on open, not read around."""
        cache_dir = tmp_path / "cache"
        cache_dir.mkdir()
        (cache_dir / "data.mdb").write_bytes(b"not an LMDB file\n" * 4096)
        env = settings_env(
            tmp_path, tree, PROJCACHE_DIR=str(cache_dir), PROJCACHE_AUTO_REPAIR="true"
        )
        settings = load_settings(env)
        assert settings.auto_repair is True
        with ProjectCache.open(settings=settings, fallback=True) as cache:
            assert cache.direct_reason is None
            assert Path(cache.path) == cache_dir
            assert len(list(cache.list_artifacts())) == 21


# -- the CLI ---------------------------------------------------------------------------------


def cli(cache_dir: Path, *args: str) -> Result:
    """Invoke the app with ``--cache-dir`` before the command."""
    return runner.invoke(app, ["--cache-dir", str(cache_dir), *args])


def lines_of(text: str) -> list[str]:
    return text.strip().splitlines()


def comparable(args: tuple[str, ...], stdout: str) -> Any:
    """The part of a command's output that must not differ between a cache and the sources."""
    if "--json" not in args:
        return stdout
    data = json.loads(stdout)
    if args[:2] == ("list", "projects"):
        for project in data:
            for field in ("refreshed_at", "age_seconds"):
                project.pop(field)
    if args[0] == "show":
        keep = ("counts", "errors", "schema_version", "stale_projects", "stale_collections")
        data = {field: data[field] for field in keep}
    return data


READS: tuple[tuple[str, ...], ...] = (
    ("list", "deployments", "--json"),
    ("list", "deployments"),
    ("list", "deployments", "--outdated", "--json"),
    ("list", "deployments", "--project", "api", "--json"),
    ("list", "artifacts", "--json"),
    ("list", "artifacts"),
    ("list", "artifacts", "--state", "modified", "--json"),
    ("list", "projects", "--json"),
    ("get", "default/skill/pdf", "--json"),
    ("get", "default/command/commit"),
    ("search", "s", "--json"),
    ("search", "s", "--limit", "3", "--offset", "2", "--json"),
    ("search", "review"),
    ("show", "--json"),
)


class TestSourceDirectCli:
    """CLI read commands on an unusable cache print the same answers, after one ``warning:``."""

    @pytest.fixture(autouse=True)
    def _isolated(
        self,
        isolated_environment: None,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        tree: Path,
    ) -> None:
        """No PROJCACHE_* setting of the user leaks in; the roots point at the tree."""
        for name, value in settings_env(tmp_path, tree).items():
            monkeypatch.setenv(name, value)

    @pytest.fixture
    def refreshed(self, tmp_path: Path) -> Path:
        """A real cache refreshed through the CLI from the configured roots."""
        cache_dir = tmp_path / "reference"
        result = cli(cache_dir, "refresh")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        return cache_dir

    @pytest.mark.parametrize("args", READS, ids=" ".join)
    def test_disabled_answers_like_the_cache(
        self,
        refreshed: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        args: tuple[str, ...],
    ) -> None:
        """With PROJCACHE_ENABLED=false: exit 0, the cache's output, one `warning:` line."""
        expected = cli(refreshed, *args)
        assert expected.exit_code == 0, expected.output
        assert expected.stderr == ""
        monkeypatch.setenv("PROJCACHE_ENABLED", "false")
        nowhere = tmp_path / "never-created"
        result = cli(nowhere, *args)
        assert result.exit_code == 0, result.output
        assert comparable(args, result.stdout) == comparable(args, expected.stdout)
        assert lines_of(result.stderr) == [f"warning: {DISABLED}{SUFFIX}"]
        assert not nowhere.exists()

    def test_disabled_list_deployments_json_covers_every_state(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The source-direct `list deployments --json` holds every state of the tree."""
        monkeypatch.setenv("PROJCACHE_ENABLED", "false")
        result = cli(tmp_path / "none", "list", "deployments", "--json")
        assert result.exit_code == 0, result.output
        records = json.loads(result.stdout)
        assert {r["state"] for r in records} == set(STATES)
        assert all({"project", "artifact", "name", "type", "state"} <= set(r) for r in records)

    def test_skillmeat_flag_answers_like_the_cache(
        self, refreshed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With SKILLMEAT_ENABLE_CACHE=false: the cache's output, one `warning:` line."""
        args = ("list", "deployments", "--json")
        expected = cli(refreshed, *args)
        monkeypatch.setenv("SKILLMEAT_ENABLE_CACHE", "false")
        result = cli(refreshed, *args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == json.loads(expected.stdout)
        assert lines_of(result.stderr) == [f"warning: {DISABLED}{SUFFIX}"]

    @pytest.mark.parametrize(
        "damage",
        ["garbage in data.mdb", "data.mdb is a directory", "cache path is a regular file"],
    )
    def test_unusable_cache_answers_like_the_cache(
        self,
        refreshed: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        damage: str,
    ) -> None:
        """On a cache that cannot be opened, read commands answer from source after one warning.

        The answer is degraded: exit 20 (issue 17), a hint line after the warning, and
        `degraded`/`degraded_reason` added to an object-shaped JSON (search).
        """
        cache_dir = tmp_path / "broken"
        base = Settings(cache_dir=cache_dir)
        UNUSABLE[damage](base, tmp_path, monkeypatch)
        for args in (("list", "deployments", "--json"), ("search", "s", "--json")):
            expected = cli(refreshed, *args)
            result = cli(cache_dir, *args)
            assert result.exit_code == 20, result.output
            answer = json.loads(result.stdout)
            if isinstance(answer, dict):
                assert answer.pop("degraded") is True
                assert str(cache_dir) in answer.pop("degraded_reason")
            assert answer == json.loads(expected.stdout)
            line, hint = lines_of(result.stderr)
            assert line.startswith(f"warning: the cache in {cache_dir} ")
            assert line.endswith(SUFFIX)
            assert hint.startswith("hint: ")

    def test_missing_key_exits_4_after_the_warning(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`get` of an unknown key from source exits 4: the warning, then error and hint."""
        monkeypatch.setenv("PROJCACHE_ENABLED", "false")
        result = cli(tmp_path / "none", "get", "default/skill/no-such-skill")
        assert result.exit_code == 4
        assert result.stdout == ""
        lines = lines_of(result.stderr)
        assert lines[0] == f"warning: {DISABLED}{SUFFIX}"
        assert lines[1] == "error: no artifact 'default/skill/no-such-skill' in the cache"
        assert [line for line in lines if line.startswith("warning:")] == [lines[0]]

    @pytest.mark.parametrize(
        "args",
        [("refresh",), ("clear", "--yes"), ("invalidate",), ("verify",), ("backup", "DEST")],
        ids=" ".join,
    )
    def test_commands_needing_the_cache_exit_3_when_disabled(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
    ) -> None:
        """Write and maintenance commands never fall back: exit 3 with `error:` and hint."""
        monkeypatch.setenv("PROJCACHE_ENABLED", "false")
        cache_dir = tmp_path / "cache"
        args = tuple(str(tmp_path / "dest") if a == "DEST" else a for a in args)
        result = cli(cache_dir, *args)
        assert result.exit_code == CacheDisabledError.exit_code == 3
        assert result.stdout == ""
        assert lines_of(result.stderr) == [
            f"error: {DISABLED}",
            f"hint: {CacheDisabledError.default_hint}",
        ]
        assert not cache_dir.exists()
        assert not (tmp_path / "dest").exists()

    @pytest.mark.parametrize("damage", ["PROJCACHE_ENABLED=false", "garbage in data.mdb"])
    def test_installed_cli_prints_one_warning_line(
        self, tmp_path: Path, tree: Path, damage: str
    ) -> None:
        """In a real process (logging configured) stderr holds one warning (and a hint)."""
        cache_dir = tmp_path / "cache"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PROJCACHE_") and k != "SKILLMEAT_ENABLE_CACHE"
        }
        env.update(settings_env(tmp_path, tree), PYTHONUNBUFFERED="1")
        if damage == "PROJCACHE_ENABLED=false":
            env["PROJCACHE_ENABLED"] = "false"
        else:
            garbage(Settings(cache_dir=cache_dir), tmp_path, None)
        result = subprocess.run(
            [sys.executable, "-m", "projcache_cli", "--cache-dir", str(cache_dir), *LIST],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=env,
            timeout=60,
        )
        # Switched off on purpose: a plain answer; a damaged cache: degraded (exit 20 + hint).
        disabled = damage == "PROJCACHE_ENABLED=false"
        assert result.returncode == (0 if disabled else 20), result.stderr
        assert len(json.loads(result.stdout)) == 14
        line, *hint = lines_of(result.stderr)
        assert line.startswith("warning: ")
        assert line.endswith(SUFFIX)
        assert len(hint) == (0 if disabled else 1)
