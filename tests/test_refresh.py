"""Refresh from real SkillMeat trees: what is cached, what is re-read, errors, atomicity."""

from __future__ import annotations

import dataclasses
import gc
import os
import re
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from damage import assert_clean
from factories import (
    CollectionBuilder,
    ProjectBuilder,
    age,
    artifact_relative,
    examples,
    set_mtime,
    with_roots,
    write_artifact,
)
from projcache import ProjectCache, refresh_units
from projcache.config import Settings
from projcache.errors import ReadOnlyCacheError, SourceFileError
from projcache.models import RefreshReport
from projcache.sources import collection as collection_module
from projcache.sources import content_hash, fileio

BROKEN_FRONT_MATTER = "---\nname: broken\ntags: [unclosed\n---\n# Broken\n\nBody v0.\n"


# -- fixtures and helpers ------------------------------------------------------------


class OpenCounter:
    """Wraps ``fileio.open_source`` and records every path it opens."""

    def __init__(self, original: Callable[[str], Any]) -> None:
        self.original = original
        self.paths: list[str] = []

    def __call__(self, path: str) -> Any:
        self.paths.append(path)
        return self.original(path)

    def reset(self) -> None:
        """Forget the paths opened so far."""
        self.paths.clear()


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> OpenCounter:
    """Count the source files a refresh opens (every read goes through ``open_source``)."""
    counter = OpenCounter(fileio.open_source)
    monkeypatch.setattr(fileio, "open_source", counter)
    return counter


@pytest.fixture
def cache_settings(cache_settings: Settings, tree: Path) -> Settings:
    """The conftest settings, with collection and project roots in ``tree``."""
    return with_roots(cache_settings, tree)


@dataclass
class World:
    """A collection ``default`` and two projects: ``webapp`` (SkillMeat) and ``plain``."""

    root: Path
    collection: CollectionBuilder
    webapp: ProjectBuilder
    plain: ProjectBuilder


def build_world(root: Path) -> World:
    """Build the standard tree: every deployment state, tags, fallbacks, an unmanaged project."""
    collection = CollectionBuilder(root / "collections", "default", description="Team skills")
    collection.skill(
        "pdf",
        front_matter={
            "name": "pdf",
            "title": "PDF toolkit",
            "description": "Extract quokka text from PDF files.",
            "tags": ["pdf", "documents"],
            "version": "2.0.1",
        },
        files={"reference.md": "# Reference\n", "scripts/extract.py": "print('hi')\n"},
        tags=["pdf", "files"],
        metadata={"tags": ["docs"]},
        resolved_version="v2.0.1",
    )
    collection.skill(
        "notes",
        front_matter={"name": "notes"},
        body="# Notes\n\nTurn zebrafish transcripts\ninto minutes.\n\nSecond paragraph.\n",
    )
    collection.command(
        "commit", front_matter={"name": "commit"}, metadata={"description": "Write a commit."}
    )
    collection.command("lint", tags=["quality"])
    collection.agent("auditor", tags=["security"])
    collection.skill("semver", resolved_version="v1.0.0")
    collection.skill("semver-old", resolved_version="v1.0.0")
    collection.command("scratch", managed=False)
    collection.write()

    webapp = ProjectBuilder(root / "projects", "webapp", description="Web shop")
    webapp.deploy(collection, "skill", "pdf", version="2.0.1")
    webapp.deploy(collection, "command", "commit")
    webapp.deploy(collection, "command", "lint")
    webapp.deploy(collection, "agent", "auditor")
    webapp.deploy(collection, "skill", "semver", version="1.0.0")
    webapp.deploy(collection, "skill", "semver-old", version="0.9.0")
    webapp.deploy(collection, "command", "ghost", copy=False)
    webapp.write()
    # After deployment: the collection moves on, and the user edits one copy.
    collection.command(
        "commit",
        front_matter={"name": "commit"},
        body="# commit\n\nA newer commit command.\n",
        metadata={"description": "Write a commit."},
    )
    collection.skill("semver", resolved_version="v1.0.0", body="# semver\n\nRewritten.\n")
    collection.write()
    with open(webapp.deployed_path("agent", "auditor"), "a", encoding="utf-8") as handle:
        handle.write("A local tweak.\n")

    plain = ProjectBuilder(root / "projects", "plain", managed=False)
    plain.local("skill", "meeting-notes", files={"template.md": "# Template\n"})
    plain.local("command", "summarize", front_matter={"description": "Summarise a file."})
    return World(root, collection, webapp, plain)


@pytest.fixture
def world(tree: Path) -> World:
    """The standard tree, aged so that an unchanged source is trusted by the next refresh."""
    built = build_world(tree)
    age(tree)
    return built


def states(cache: ProjectCache, project: ProjectBuilder) -> dict[str, str]:
    """Map artifact key -> deployment state for one project."""
    return {d.artifact_key: d.state for d in cache.list_deployments(project=project.id)}


def append(path: Path, text: str) -> None:
    """Append ``text`` to a file (its size changes, so its stat does)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def messages(report: RefreshReport) -> list[str]:
    """The error messages of a refresh report."""
    return [error.message for error in report.errors]


# -- the first refresh --------------------------------------------------------------


class TestFirstRefresh:
    """What a first refresh of a real tree puts into the cache."""

    def test_caches_the_collection(self, cache: ProjectCache, world: World) -> None:
        """The collection record carries its manifest fields and artifact count."""
        report = cache.refresh()
        assert report.errors == []
        (collection,) = cache.list_collections()
        assert collection.name == "default"
        assert collection.path == str(world.collection.path)
        assert collection.version == "1.0.0"
        assert collection.description == "Team skills"
        assert collection.managed is True
        assert collection.artifact_count == 8
        assert collection.errors == []
        assert report.collections_written == 1

    def test_managed_flag_follows_the_manifest(self, cache: ProjectCache, world: World) -> None:
        """Artifacts listed in collection.toml are managed; one found by layout alone is not."""
        cache.refresh()
        managed = {a.name: a.managed for a in cache.list_artifacts(collection="default")}
        assert managed == {
            "auditor": True,
            "commit": True,
            "lint": True,
            "scratch": False,
            "notes": True,
            "pdf": True,
            "semver": True,
            "semver-old": True,
        }

    def test_tags_are_merged_in_order(self, cache: ProjectCache, world: World) -> None:
        """Tags of the manifest entry, its metadata and the front matter merge without repeats."""
        cache.refresh()
        pdf = cache.get_artifact("default/skill/pdf")
        assert pdf is not None
        assert pdf.tags == ["pdf", "files", "docs", "documents"]
        assert pdf.title == "PDF toolkit"
        assert pdf.version == "2.0.1"
        assert pdf.resolved_version == "v2.0.1"
        assert pdf.content_hash == content_hash(world.collection.artifact_path("skill", "pdf"))

    def test_description_falls_back(self, cache: ProjectCache, world: World) -> None:
        """Without a front-matter description: metadata's, else the body's first paragraph."""
        cache.refresh()
        notes = cache.get_artifact("default/skill/notes")
        commit = cache.get_artifact("default/command/commit")
        assert notes is not None and commit is not None
        assert notes.description == "Turn zebrafish transcripts into minutes."
        assert commit.description == "Write a commit."

    def test_caches_projects(self, cache: ProjectCache, world: World) -> None:
        """A SkillMeat project keeps its TOML name and description; a plain one its folder name."""
        report = cache.refresh()
        projects = {p.id: p for p in cache.list_projects()}
        assert set(projects) == {world.webapp.id, world.plain.id}
        webapp, plain = projects[world.webapp.id], projects[world.plain.id]
        assert (webapp.name, webapp.description, webapp.managed) == ("webapp", "Web shop", True)
        assert (plain.name, plain.managed, plain.path) == ("plain", False, str(world.plain.path))
        assert report.projects_written == 2

    def test_deployment_states(self, cache: ProjectCache, world: World) -> None:
        """Each deployment gets current, outdated, modified or missing from files and versions."""
        cache.refresh()
        assert states(cache, world.webapp) == {
            "default/agent/auditor": "modified",
            "default/command/commit": "outdated",
            "default/command/ghost": "missing",
            "default/command/lint": "current",
            "default/skill/pdf": "current",
            "default/skill/semver": "current",
            "default/skill/semver-old": "outdated",
        }

    def test_semver_prefix_v_is_ignored(self, cache: ProjectCache, world: World) -> None:
        """``v1.0.0`` in the collection equals ``1.0.0`` deployed, though the hashes differ."""
        cache.refresh()
        artifact = cache.get_artifact("default/skill/semver")
        (deployment,) = [
            d
            for d in cache.list_deployments(project=world.webapp.id)
            if d.artifact_key == "default/skill/semver"
        ]
        assert artifact is not None
        assert artifact.content_hash != deployment.content_hash
        assert (artifact.resolved_version, deployment.version) == ("v1.0.0", "1.0.0")
        assert deployment.state == "current"

    def test_plain_claude_folder(self, cache: ProjectCache, world: World) -> None:
        """A .claude/ without SkillMeat files: artifacts by layout, unmanaged, in ``@<id>``."""
        cache.refresh()
        local = world.plain.local_collection
        artifacts = {a.key: a for a in cache.list_artifacts(collection=local)}
        assert set(artifacts) == {f"{local}/command/summarize", f"{local}/skill/meeting-notes"}
        assert all(not a.managed for a in artifacts.values())
        assert artifacts[f"{local}/command/summarize"].description == "Summarise a file."
        assert states(cache, world.plain) == dict.fromkeys(artifacts, "current")
        assert [h.key for h in cache.search("summarise")] == [f"{local}/command/summarize"]


class TestTally:
    """The refresh's counts are kept by the report's own field names (no copy of the fields)."""

    def test_every_count_of_the_report_is_tallied(self) -> None:
        """A fresh tally builds the default report; each int field can be counted."""
        from projcache.models import utcnow
        from projcache.refresh_writes import Tally

        now = utcnow()
        tally = Tally()
        assert tally.report(now, 0.0) == RefreshReport(started_at=now)
        counted = {
            name for name, info in RefreshReport.model_fields.items() if info.annotation is int
        }
        assert set(tally.counts) == counted
        tally.add(**dict.fromkeys(counted, 2))
        report = tally.report(now, 1.5)
        assert all(getattr(report, name) == 2 for name in counted)
        with pytest.raises(KeyError):
            tally.add(artifacts_writen=1)

    def test_only_writes_of_an_attempt_are_merged(self) -> None:
        """A committed write attempt adds its written/removed counts, nothing else."""
        from projcache.refresh_writes import Tally

        total, attempt = Tally(), Tally()
        attempt.add(artifacts_written=3, deployments_removed=1, sources_checked=7)
        total.merge_writes(attempt)
        assert (total["artifacts_written"], total["deployments_removed"]) == (3, 1)
        assert total["sources_checked"] == 0


def test_both_readers_get_one_set_of_limits(
    cache_settings: Settings, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collections and projects are read with the same limits, taken from the settings once."""
    seen: dict[str, dict[str, Any]] = {}
    names = refresh_units.ReaderLimits._fields

    def spy(kind: str, reader: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen[kind] = {name: kwargs[name] for name in names}
            return reader(*args, **kwargs)

        return call

    monkeypatch.setattr(
        refresh_units, "read_collection", spy("collection", refresh_units.read_collection)
    )
    monkeypatch.setattr(refresh_units, "read_project", spy("project", refresh_units.read_project))
    settings = dataclasses.replace(
        cache_settings, max_file_size=5000, max_manifest_size=6000, max_artifact_size=7000
    )
    with ProjectCache.open(settings=settings) as cache:
        cache.refresh()
    assert seen["collection"] == seen["project"]
    limits = seen["project"]
    assert (limits["cap"], limits["manifest_cap"], limits["max_bytes"]) == (5000, 6000, 7000)
    assert callable(limits["stored_front_matter"])


# -- a collection in which only some sources changed ---------------------------------


class TestChangedCollection:
    """Only sources changed: the layout's folders are not listed again; records as a rebuild's."""

    @pytest.fixture
    def team(self, tree: Path) -> CollectionBuilder:
        """A collection whose every artifact is listed in collection.toml, one path twice."""
        team = CollectionBuilder(tree / "collections", "team")
        team.skill("pdf", files={"reference.md": "# Reference\n"}, tags=["pdf"])
        team.skill("notes", body="# Notes\n\nMinutes.\n")
        team.command("lint", tags=["quality"])
        team.command("commit")
        team.agent("auditor")
        # The same file listed twice, under two names: both are built from it.
        team.entries[("command", "lint-alias")] = {
            **team.entries[("command", "lint")],
            "name": "lint-alias",
        }
        team.write()
        age(tree)
        return team

    @pytest.fixture
    def listings(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """The folders ``find_by_layout`` lists during the test."""
        calls: list[str] = []
        original = collection_module.find_by_layout

        def counting(base: str, *args: Any, **kwargs: Any) -> Any:
            calls.append(base)
            return original(base, *args, **kwargs)

        monkeypatch.setattr(collection_module, "find_by_layout", counting)
        return calls

    def rebuilt(self, cache_settings: Settings, tmp_path: Path) -> dict[str, Any]:
        """What a cache built from nothing out of the same tree holds."""
        fresh = dataclasses.replace(cache_settings, cache_dir=tmp_path / "rebuilt")
        with ProjectCache.open(settings=fresh) as other:
            other.refresh()
            return snapshot(other, set())

    def test_edits_read_only_the_changed_entries(
        self,
        cache: ProjectCache,
        cache_settings: Settings,
        team: CollectionBuilder,
        listings: list[str],
        opens: OpenCounter,
        tmp_path: Path,
    ) -> None:
        """Two edited artifacts: only their files are opened, no layout folder is listed."""
        cache.refresh()
        listings.clear()
        opens.reset()
        lint = team.artifact_path("command", "lint")
        append(lint, "One more line.\n")
        append(team.artifact_path("skill", "pdf") / "reference.md", "More.\n")
        report = cache.refresh()
        assert listings == []
        assert report.errors == []
        assert (report.sources_changed, report.artifacts_written) == (2, 3)
        assert {os.path.dirname(p) for p in opens.paths} == {
            str(lint.parent),
            str(team.artifact_path("skill", "pdf")),
        }
        for name in ("lint", "lint-alias"):
            artifact = cache.get_artifact(f"team/command/{name}")
            assert artifact is not None and artifact.content_hash == content_hash(lint)
        assert_same(snapshot(cache, set()), self.rebuilt(cache_settings, tmp_path))

    def test_unchanged_entries_get_no_reader(
        self,
        cache: ProjectCache,
        cache_settings: Settings,
        team: CollectionBuilder,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        """One edited artifact: a reader is made for it alone, the others are kept as stored.

        A collection of thousands of artifacts of which 1% changed must not cost a
        reader (and a second look) per artifact (issue 15 item 3).
        """
        cache.refresh()
        made: list[str] = []
        original = collection_module.artifact_reader

        def counting(base: str, relative: str, cap: int) -> Any:
            made.append(relative)
            return original(base, relative, cap)

        monkeypatch.setattr(collection_module, "artifact_reader", counting)
        append(team.artifact_path("skill", "pdf") / "reference.md", "More.\n")
        report = cache.refresh()
        assert report.errors == []
        assert (report.sources_changed, report.artifacts_written) == (1, 1)
        # (commands/lint.md is listed twice: its second artifact takes the general path,
        # which returns what the first one reused)
        assert sorted(made) == ["commands/lint.md", "skills/pdf"]
        unchanged = cache.refresh()
        assert unchanged.sources_checked == report.sources_checked
        assert_same(snapshot(cache, set()), self.rebuilt(cache_settings, tmp_path))

    @pytest.mark.parametrize("change", ["no SKILL.md", "file to folder", "gone", "new"])
    def test_a_change_the_layout_sees_reads_it_in_full(
        self,
        cache: ProjectCache,
        cache_settings: Settings,
        team: CollectionBuilder,
        listings: list[str],
        tmp_path: Path,
        change: str,
    ) -> None:
        """A change the layout judges differently lists the folders; the result is a rebuild's."""
        cache.refresh()
        listings.clear()
        if change == "no SKILL.md":
            (team.artifact_path("skill", "notes") / "SKILL.md").unlink()
        elif change == "file to folder":
            lint = team.artifact_path("command", "lint")
            lint.unlink()
            lint.mkdir()
            (lint / "x.md").write_text("# x\n", encoding="utf-8")
        elif change == "gone":
            shutil.rmtree(team.artifact_path("skill", "notes"))
        else:
            write_artifact(team.path, "command", "stray")
        report = cache.refresh()
        assert listings == [str(team.path)]
        assert (report.errors == []) is (change == "new")
        # (a file that fails to read keeps its last good record; a rebuild has none)
        failing = {"team/command/lint", "team/command/lint-alias"} if "folder" in change else set()
        assert_same(snapshot(cache, failing), self.rebuilt(cache_settings, tmp_path))


# -- the unchanged collection's short path -------------------------------------------


class TestBatchedWrites:
    """Changed units (and the touch) share one write transaction while it stays small."""

    @pytest.fixture
    def two(self, tree: Path) -> tuple[CollectionBuilder, CollectionBuilder]:
        """Collections ``alpha`` and ``beta`` and a project deploying from ``alpha``."""
        built = []
        for name in ("alpha", "beta"):
            collection = CollectionBuilder(tree / "collections", name)
            collection.command("lint", metadata={"description": f"{name} lint v0"})
            collection.skill("pdf", files={"reference.md": "# Reference\n"})
            collection.write()
            built.append(collection)
        project = ProjectBuilder(tree / "projects", "shop")
        project.deploy(built[0], "command", "lint")
        project.write()
        age(tree)
        return built[0], built[1]

    @pytest.fixture
    def commits(self, monkeypatch: pytest.MonkeyPatch) -> list[int]:
        """One entry per ``Storage.write`` that committed during the test."""
        from projcache import storage

        done: list[int] = []
        original = storage.Storage.write

        def counting(self: Any, fn: Callable[[Any], Any]) -> Any:
            result = original(self, fn)
            done.append(1)
            return result

        monkeypatch.setattr(storage.Storage, "write", counting)
        return done

    @staticmethod
    def edit(collection: CollectionBuilder, text: str) -> None:
        append(collection.artifact_path("command", "lint"), f"{text}\n")
        append(collection.artifact_path("skill", "pdf") / "reference.md", f"{text}\n")

    def test_changed_units_and_the_touch_commit_once(
        self,
        tree_settings: Settings,
        tmp_path: Path,
        two: tuple[CollectionBuilder, CollectionBuilder],
        commits: list[int],
    ) -> None:
        """Edits in two collections, one unchanged project: one commit, as a rebuild's records."""
        with ProjectCache.open(settings=tree_settings) as cache:
            cache.refresh()
            for collection in two:
                self.edit(collection, "edited")
            commits.clear()
            report = cache.refresh()
            assert report.errors == []
            assert (report.sources_changed, report.artifacts_written) == (4, 4)
            assert (report.collections_written, report.projects_checked) == (2, 1)
            assert len(commits) == 1
            incremental = snapshot(cache, set())
        fresh = dataclasses.replace(tree_settings, cache_dir=tmp_path / "rebuilt")
        with ProjectCache.open(settings=fresh) as other:
            other.refresh()
            assert_same(incremental, snapshot(other, set()))

    def test_a_unit_over_the_bound_commits_alone(
        self,
        tree_settings: Settings,
        two: tuple[CollectionBuilder, CollectionBuilder],
        commits: list[int],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """With a bound smaller than any unit each changed unit, and the touch, commits alone."""
        with ProjectCache.open(settings=tree_settings) as cache:
            cache.refresh()
            for collection in two:
                self.edit(collection, "edited")
            monkeypatch.setattr(refresh_units, "BATCH_BYTES", 1)
            commits.clear()
            report = cache.refresh()
            assert report.artifacts_written == 4
            assert len(commits) == 3
            assert cache.get_artifact("beta/command/lint") is not None

    def test_a_failed_batch_leaves_every_unit_as_before(
        self,
        tree_settings: Settings,
        two: tuple[CollectionBuilder, CollectionBuilder],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The batch's transaction fails at its second unit: neither unit changed; the next
        refresh re-reads both (their fingerprints were in the same transaction)."""
        with ProjectCache.open(settings=tree_settings) as cache:
            cache.refresh()
            before = snapshot(cache, set())
            for collection in two:
                self.edit(collection, "edited")
            original = refresh_units.sync_artifacts
            calls: list[str] = []

            def failing(txn: Any, repos: Any, name: str, *args: Any) -> None:
                calls.append(name)
                if len(calls) == 2:
                    raise OSError("the disk went away")
                original(txn, repos, name, *args)

            monkeypatch.setattr(refresh_units, "sync_artifacts", failing)
            with pytest.raises(OSError, match="went away"):
                cache.refresh()
            assert calls == ["alpha", "beta"]
            assert snapshot(cache, set()) == before
            assert_clean(cache)
            monkeypatch.setattr(refresh_units, "sync_artifacts", original)
            report = cache.refresh()
            assert (report.sources_changed, report.artifacts_written) == (4, 4)

    def test_a_first_refresh_of_small_collections_commits_once(
        self,
        tree_settings: Settings,
        two: tuple[CollectionBuilder, CollectionBuilder],
        commits: list[int],
    ) -> None:
        """New collections wait in the batch: a first refresh of two small collections and a
        project is one commit, not one per collection, and stores what a refresh per unit
        stores."""
        with ProjectCache.open(settings=tree_settings) as cache:
            commits.clear()
            report = cache.refresh()
            assert report.errors == []
            assert (report.collections_written, report.artifacts_written) == (2, 4)
            assert len(commits) == 1
            batched = snapshot(cache, set())
            assert [d.state for d in cache.list_deployments()] == ["current"]
        alone = dataclasses.replace(tree_settings, cache_dir=tree_settings.cache_dir / "alone")
        with ProjectCache.open(settings=alone) as other:
            for folder in sorted(Path(tree_settings.collection_roots[0]).iterdir()):
                other.refresh(collections=[folder], projects=[])
            other.refresh()
            assert_same(batched, snapshot(other, set()))

    def test_a_unit_whose_read_fails_leaves_the_units_read_before_committed(
        self,
        tree_settings: Settings,
        two: tuple[CollectionBuilder, CollectionBuilder],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """``alpha``'s changes wait in the batch when reading ``beta`` raises: they are
        committed before the error propagates (a unit stays whole), ``beta`` is as before."""
        with ProjectCache.open(settings=tree_settings) as cache:
            cache.refresh()
            lint_before = cache.get_artifact("beta/command/lint")
            alpha_before = cache.get_artifact("alpha/command/lint")
            assert lint_before is not None and alpha_before is not None
            for collection in two:
                self.edit(collection, "edited")
            original = refresh_units.read_collection

            def failing(path: str, *args: Any, **kwargs: Any) -> Any:
                if os.path.basename(path) == "beta":
                    raise OSError("the folder went away")
                return original(path, *args, **kwargs)

            monkeypatch.setattr(refresh_units, "read_collection", failing)
            with pytest.raises(OSError, match="went away"):
                cache.refresh()
            assert cache.get_artifact("beta/command/lint") == lint_before
            alpha_lint = cache.get_artifact("alpha/command/lint")
            assert alpha_lint is not None and alpha_lint.content_hash != alpha_before.content_hash
            monkeypatch.setattr(refresh_units, "read_collection", original)
            report = cache.refresh()
            # alpha's two changed artifacts were committed: only beta's are written now.
            assert report.artifacts_written == 2
            assert cache.get_artifact("alpha/command/lint") == alpha_lint
            assert_clean(cache)

    def test_a_new_collections_name_waiting_in_the_batch_is_still_refused(
        self, tree_settings: Settings, tree: Path
    ) -> None:
        """Two new folders claim one name in a first refresh: the first one read keeps it even
        while its write waits in the batch; the other is refused and not cached."""
        for folder in ("aaa", "bbb"):
            twin = CollectionBuilder(tree / "collections", "same", folder=folder)
            twin.command(f"only-{folder}")
            twin.write()
        age(tree)
        with ProjectCache.open(settings=tree_settings) as cache:
            report = cache.refresh()
            assert [c.path for c in cache.list_collections()] == [str(tree / "collections" / "aaa")]
            assert cache.get_artifact("same/command/only-aaa") is not None
            assert cache.get_artifact("same/command/only-bbb") is None
            assert any("already used by" in message for message in messages(report))

    def test_collections_are_read_in_the_order_of_their_keys(
        self, tree_settings: Settings, tree: Path
    ) -> None:
        """``default-2`` and ``default-10`` (keys ``default-2/...``) are read and written before
        ``default`` (keys ``default/...``), so a first refresh appends to the B-trees."""
        for folder in ("default", "default-10", "default-2"):
            built = CollectionBuilder(tree / "collections", folder)
            built.command("lint")
            built.write()
        age(tree)
        seen: list[str] = []

        def progress(_done: int, _total: int, label: str) -> None:
            if not seen or seen[-1] != label:
                seen.append(label)

        with ProjectCache.open(settings=tree_settings) as cache:
            cache.refresh(progress=progress)
        folders = [os.path.basename(label) for label in seen if "collections" in label]
        assert folders == ["default-10", "default-2", "default"]

    def test_a_name_taken_earlier_in_the_refresh_is_still_refused(
        self, tree_settings: Settings, two: tuple[CollectionBuilder, CollectionBuilder]
    ) -> None:
        """A collection renamed to a name a new folder of the same refresh also claims: the
        rename is committed before the later folder looks the name up, so that one is refused."""
        alpha, _beta = two
        with ProjectCache.open(settings=tree_settings) as cache:
            cache.refresh()
            alpha.name = "gamma"
            alpha.write()
            late = CollectionBuilder(tree_settings.collection_roots[0], "gamma", folder="zeta")
            late.command("other")
            late.write()
            report = cache.refresh()
            assert [c.name for c in cache.list_collections()] == ["beta", "gamma"]
            assert any("already used by" in message for message in messages(report))


class TestUnchangedCollection:
    """An unchanged collection is judged from stats and stored bytes; the report is the same."""

    @pytest.fixture
    def decoded(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """The path of every stored fingerprint a refresh decodes."""
        from projcache import models

        paths: list[str] = []
        original = models.fingerprint_from_json

        def counting(payload: bytes) -> Any:
            found = original(payload)
            paths.append(found.path)
            return found

        monkeypatch.setattr(models, "fingerprint_from_json", counting)
        return paths

    def test_no_fingerprint_of_an_unchanged_collection_is_decoded(
        self, cache: ProjectCache, world: World, decoded: list[str]
    ) -> None:
        """Every source of the collection is compared as stored bytes; the report is unchanged."""
        first = cache.refresh()
        before = cache.get_collection("default")
        decoded.clear()
        report = cache.refresh()
        collection = str(world.collection.path)
        assert [p for p in decoded if p.startswith(collection)] == []
        assert report.sources_checked == first.sources_checked
        assert (report.sources_changed, report.errors, report.artifacts_written) == (0, [], 0)
        after = cache.get_collection("default")
        assert before is not None and after is not None
        assert after.model_dump(exclude={"refreshed_at"}) == before.model_dump(
            exclude={"refreshed_at"}
        )
        assert after.refreshed_at > before.refreshed_at

    def test_fingerprints_are_stored_in_plain_frames(
        self, cache: ProjectCache, world: World
    ) -> None:
        """Every fingerprint frame is plain (never deflated), however long its JSON.

        Each refresh reads all of them; inflating each one cost an unchanged refresh
        of 100,000 sources ~15%.  Artifacts with a body still keep it deflated
        (record frames).
        """
        from projcache import codec

        cache.refresh()
        frames = cache._read(
            lambda txn: [bytes(v) for _k, v in txn.cursor(db=cache._storage.dbs["sources"])]
        )
        lengths = [len(codec.unframe(raw)) for raw in frames]
        assert max(lengths) >= codec.COMPRESS_AT  # (facts with a body are that long)
        assert {raw[0] for raw in frames} == {codec.FORMAT_VERSION}
        records = cache._read(
            lambda txn: [bytes(v) for _k, v in txn.cursor(db=cache._storage.dbs["artifacts"])]
        )
        assert codec.RECORD_FORMAT in {raw[0] for raw in records}

    def test_a_drifted_fingerprint_layout_is_decoded_and_reported(
        self,
        cache: ProjectCache,
        world: World,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Fingerprints written in another layout: compared decoded (same verdicts), and said.

        The byte comparison reads the layout ``Fingerprint`` writes today; if that ever
        drifts (here: keys sorted), it must not go on silently deciding nothing.
        """
        import orjson

        from projcache.models import Fingerprint
        from projcache.sources import tracker as tracker_module

        def drifted(self: Fingerprint, **_kwargs: Any) -> str:
            dumped = self.model_dump(mode="json")
            return orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS).decode()

        monkeypatch.setattr(Fingerprint, "model_dump_json", drifted)
        monkeypatch.setattr(tracker_module, "_layout_checked", None, raising=False)
        first = cache.refresh()
        lint = world.collection.artifact_path("command", "lint")
        append(lint, "One more line.\n")
        old = time.time_ns() - 3600 * 10**9  # (not "racy": trusted by the third refresh)
        os.utime(lint, ns=(old, old))
        second = cache.refresh()
        third = cache.refresh()
        assert first.errors == second.errors == third.errors == []
        assert (second.sources_changed, third.sources_changed) == (1, 0)
        assert second.sources_checked == third.sources_checked == first.sources_checked
        assert any("no longer have the layout" in r.getMessage() for r in caplog.records)

    def test_an_edit_after_the_short_path_is_still_seen(
        self, cache: ProjectCache, world: World
    ) -> None:
        """A file edited inside a skill folder makes the collection read in full."""
        cache.refresh()
        cache.refresh()
        append(world.collection.artifact_path("skill", "pdf") / "reference.md", "More.\n")
        report = cache.refresh()
        assert report.sources_changed == 1

    def test_records_are_logged_as_projcache_refresh(
        self, cache: ProjectCache, world: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Every module of the refresh logs as ``projcache.refresh`` (what the CLI quiets)."""
        cache.refresh()
        shutil.rmtree(world.collection.path)
        with caplog.at_level("INFO", logger="projcache.refresh"):
            cache.refresh()
        gone = [r for r in caplog.records if "is gone; removed it" in r.getMessage()]
        assert [r.name for r in gone] == ["projcache.refresh"]

    def test_a_stray_file_in_a_layout_folder(self, cache: ProjectCache, world: World) -> None:
        """A file no layout rule takes (not a source) leaves the result as a full read's."""
        (world.collection.path / "skills" / "README.txt").write_text("hi\n", encoding="utf-8")
        age(world.root)
        first = cache.refresh()
        report = cache.refresh()
        assert (report.sources_checked, report.sources_changed) == (first.sources_checked, 0)
        assert report.errors == first.errors

    def test_a_layout_folder_turned_into_a_link_out_is_refused(
        self, cache: ProjectCache, world: World, tree: Path, opens: OpenCounter
    ) -> None:
        """``skills/`` replaced by a link out of the collection: nothing beyond it is read."""
        cache.refresh()
        outside = tree / "outside"
        shutil.copytree(world.collection.path / "skills", outside)
        shutil.rmtree(world.collection.path / "skills")
        (world.collection.path / "skills").symlink_to(outside, target_is_directory=True)
        age(world.root)
        opens.reset()
        report = cache.refresh()
        assert not any(path.startswith(str(outside)) for path in opens.paths)
        assert any("a link to" in e.message for e in report.errors), report.errors


# -- incremental refresh ------------------------------------------------------------


class TestIncremental:
    """A refresh re-reads exactly the sources whose stat changed."""

    def test_unchanged_tree_opens_nothing(
        self, cache: ProjectCache, world: World, opens: OpenCounter
    ) -> None:
        """The second refresh of an aged, unchanged tree opens no source file at all."""
        cache.refresh()
        assert opens.paths
        opens.reset()
        report = cache.refresh()
        assert opens.paths == []
        assert report.sources_changed == 0
        assert report.sources_checked > 0
        assert report.errors == []
        assert (report.artifacts_written, report.deployments_written) == (0, 0)

    def test_editing_one_artifact_rereads_only_it(
        self, cache: ProjectCache, world: World, opens: OpenCounter
    ) -> None:
        """Editing one command opens only that file, and its deployment becomes outdated."""
        cache.refresh()
        opens.reset()
        lint = world.collection.artifact_path("command", "lint")
        append(lint, "One more line.\n")
        report = cache.refresh()
        assert set(opens.paths) == {str(lint)}
        assert report.sources_changed == 1
        assert report.artifacts_written == 1
        artifact = cache.get_artifact("default/command/lint")
        assert artifact is not None and artifact.content_hash == content_hash(lint)
        assert states(cache, world.webapp)["default/command/lint"] == "outdated"

    def test_editing_a_skill_file_rehashes_its_folder(
        self, cache: ProjectCache, world: World, opens: OpenCounter
    ) -> None:
        """Editing a file inside a skill re-reads that skill's folder and nothing else."""
        cache.refresh()
        opens.reset()
        folder = world.collection.artifact_path("skill", "pdf")
        append(folder / "reference.md", "More reference.\n")
        report = cache.refresh()
        assert opens.paths
        assert all(path.startswith(str(folder) + os.sep) for path in opens.paths)
        assert report.sources_changed == 1
        artifact = cache.get_artifact("default/skill/pdf")
        assert artifact is not None and artifact.content_hash == content_hash(folder)

    def test_editing_a_deployed_copy_marks_it_modified(
        self, cache: ProjectCache, world: World, opens: OpenCounter
    ) -> None:
        """Editing the project's copy re-hashes only that copy; the deployment is modified."""
        cache.refresh()
        opens.reset()
        copy = world.webapp.deployed_path("command", "lint")
        append(copy, "Local change.\n")
        cache.refresh()
        assert set(opens.paths) == {str(copy)}
        assert states(cache, world.webapp)["default/command/lint"] == "modified"

    def test_deleting_an_artifact_folder(self, cache: ProjectCache, world: World) -> None:
        """A deleted skill leaves the cache and the search index; its deployment goes missing."""
        cache.refresh()
        assert [h.key for h in cache.search("quokka")] == ["default/skill/pdf"]
        world.collection.remove("skill", "pdf")
        world.collection.write()
        report = cache.refresh()
        assert report.errors == []
        assert report.artifacts_removed == 1
        assert cache.get_artifact("default/skill/pdf") is None
        assert cache.search("quokka").total == 0
        assert list(cache.search("quokka")) == []
        assert list(cache.list_artifacts(tag="documents")) == []
        assert states(cache, world.webapp)["default/skill/pdf"] == "missing"
        collection = cache.get_collection("default")
        assert collection is not None and collection.artifact_count == 7

    def test_deleting_a_listed_file_is_an_error(self, cache: ProjectCache, world: World) -> None:
        """A command still listed in collection.toml but gone: removed, and reported."""
        cache.refresh()
        world.collection.remove("command", "lint", keep_entry=True)
        report = cache.refresh()
        assert cache.get_artifact("default/command/lint") is None
        assert states(cache, world.webapp)["default/command/lint"] == "missing"
        assert any("'lint'" in m and "does not exist" in m for m in messages(report))
        collection = cache.get_collection("default")
        assert collection is not None
        assert [e.message for e in collection.errors] == messages(report)

    def test_deleting_a_project_folder(self, cache: ProjectCache, world: World) -> None:
        """A project folder that is gone takes its record, deployments and local artifacts."""
        cache.refresh()
        shutil.rmtree(world.plain.path)
        report = cache.refresh()
        assert report.projects_removed == 1
        assert cache.get_project(world.plain.id) is None
        assert all(d.project_id != world.plain.id for d in cache.list_deployments())
        assert list(cache.list_artifacts(collection=world.plain.local_collection)) == []
        assert cache.search("summarise").total == 0
        assert {p.id for p in cache.list_projects()} == {world.webapp.id}

    def test_renaming_a_file(self, cache: ProjectCache, world: World) -> None:
        """A renamed command file shows up under its new name and is gone under the old one."""
        cache.refresh()
        commands = world.collection.path / "commands"
        os.rename(commands / "scratch.md", commands / "scribble.md")
        report = cache.refresh()
        assert report.errors == []
        assert cache.get_artifact("default/command/scratch") is None
        renamed = cache.get_artifact("default/command/scribble")
        assert renamed is not None and renamed.managed is False

    def test_same_tick_edit_of_a_fresh_file_is_not_missed(
        self, cache: ProjectCache, world: World
    ) -> None:
        """A same-size edit that leaves the stat as it was is caught if the file was fresh.

        This simulates a coarse clock: the edit lands in the tick of the first
        write, so mtime, size and inode all stay the same.  Only the racy rule
        (do not trust a fingerprint whose mtime is close to its read) saves it.
        """
        lint = world.collection.artifact_path("command", "lint")
        lint.write_text("---\ndescription: First take.\n---\nBody.\n", encoding="utf-8")
        written = os.stat(lint)
        cache.refresh()
        lint.write_text("---\ndescription: Other take.\n---\nBody.\n", encoding="utf-8")
        set_mtime(lint, written.st_mtime_ns)
        after = os.stat(lint)
        assert (after.st_mtime_ns, after.st_size, after.st_ino) == (
            written.st_mtime_ns,
            written.st_size,
            written.st_ino,
        )
        cache.refresh()
        artifact = cache.get_artifact("default/command/lint")
        assert artifact is not None
        assert artifact.description == "Other take."
        assert artifact.content_hash == content_hash(lint)

    def test_renaming_a_file_inside_a_skill(self, cache: ProjectCache, world: World) -> None:
        """Renaming a file inside a skill changes the skill's content hash (paths are hashed)."""
        cache.refresh()
        folder = world.collection.artifact_path("skill", "pdf")
        before = cache.get_artifact("default/skill/pdf")
        os.rename(folder / "reference.md", folder / "reference-1.md")
        cache.refresh()
        after = cache.get_artifact("default/skill/pdf")
        assert before is not None and after is not None
        assert after.content_hash == content_hash(folder) != before.content_hash

    def test_a_new_artifact_appears(self, cache: ProjectCache, world: World) -> None:
        """An artifact added on disk is cached and searchable after the next refresh."""
        cache.refresh()
        world.collection.agent(
            "reviewer", front_matter={"description": "Reviews axolotl code."}, tags=["review"]
        )
        world.collection.write()
        report = cache.refresh()
        assert report.artifacts_written == 1
        reviewer = cache.get_artifact("default/agent/reviewer")
        assert reviewer is not None and reviewer.managed and reviewer.tags == ["review"]
        assert [h.key for h in cache.search("axolotl")] == ["default/agent/reviewer"]

    def test_undeployed_copy_left_behind_becomes_a_local_artifact(
        self, cache: ProjectCache, world: World
    ) -> None:
        """A copy kept after its deployment entry is dropped is read like any local artifact."""
        cache.refresh()
        world.webapp.undeploy("default", "skill", "pdf", remove_files=False)
        world.webapp.write()
        cache.refresh()
        key = f"{world.webapp.local_collection}/skill/pdf"
        local = cache.get_artifact(key)
        assert local is not None and local.managed is False
        assert local.description == "Extract quokka text from PDF files."
        assert local.title == "PDF toolkit"
        assert local.updated_at is not None


# -- malformed files ----------------------------------------------------------------


class TestKeptArtifacts:
    """Artifacts whose inputs are unchanged keep their stored record instead of being rebuilt."""

    @pytest.fixture
    def builds(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """Record the name of every collection artifact a refresh builds."""
        built: list[str] = []
        original = collection_module.build_artifact

        def counting(**kwargs: Any) -> dict[str, Any]:
            built.append(kwargs["name"])
            return original(**kwargs)

        monkeypatch.setattr(collection_module, "build_artifact", counting)
        return built

    def test_unchanged_refresh_builds_nothing(
        self, cache: ProjectCache, world: World, builds: list[str]
    ) -> None:
        """An unchanged refresh builds no artifact; an edit builds only the edited one."""
        cache.refresh()
        builds.clear()
        cache.refresh()
        assert builds == []
        before = cache.get_collection("default")
        append(world.collection.artifact_path("command", "lint"), "One more line.\n")
        cache.refresh()
        assert builds == ["lint"]
        after = cache.get_collection("default")
        assert before is not None and after is not None
        assert after.artifact_count == before.artifact_count

    def test_lock_change_rebuilds_every_artifact(
        self, cache: ProjectCache, world: World, builds: list[str]
    ) -> None:
        """A new collection.lock reaches artifacts whose own files did not change."""
        cache.refresh()
        builds.clear()
        world.collection.entries[("skill", "pdf")]["resolved_sha"] = "abc123"
        (world.collection.path / "collection.lock").write_text(world.collection.lock_text())
        cache.refresh()
        pdf = cache.get_artifact("default/skill/pdf")
        assert pdf is not None and pdf.resolved_sha == "abc123"
        assert "notes" in builds

    def test_manifest_change_rebuilds_every_artifact(
        self, cache: ProjectCache, world: World
    ) -> None:
        """New ``[artifacts.metadata]`` in collection.toml reaches an unchanged artifact."""
        cache.refresh()
        world.collection.entries[("command", "commit")]["metadata"] = {"title": "Committer"}
        world.collection.write(lock=False)
        cache.refresh()
        commit = cache.get_artifact("default/command/commit")
        assert commit is not None and commit.title == "Committer"

    def test_artifact_deleted_from_the_cache_comes_back(
        self, cache: ProjectCache, world: World
    ) -> None:
        """An artifact deleted through the API is not kept: the next write puts it back."""
        cache.refresh()
        before = cache.get_artifact("default/command/lint")
        counted = cache.get_collection("default")
        cache.delete_artifact("default/command/lint")
        report = cache.refresh()
        assert report.errors == []
        collection = cache.get_collection("default")
        assert collection is not None and counted is not None
        assert collection.artifact_count == counted.artifact_count
        append(world.collection.artifact_path("agent", "auditor"), "More.\n")
        cache.refresh()
        assert cache.get_artifact("default/command/lint") == before

    @pytest.mark.parametrize("key", ["default/command/lint", "default/skill/pdf"])
    @pytest.mark.parametrize("after", ["_stored", "_stored_keys"])
    def test_kept_artifact_removed_meanwhile_is_rebuilt(
        self,
        cache: ProjectCache,
        world: World,
        monkeypatch: pytest.MonkeyPatch,
        after: str,
        key: str,
    ) -> None:
        """A kept artifact that vanishes between looking and writing is built after all.

        Removed after the fingerprints were read (the keys are then read from a later
        snapshot: none is vouched for) or after the keys were (the write builds it,
        with its collection.lock entry: ``pdf``'s ``resolved_sha`` is only there).
        """
        lock = world.collection.path / "collection.lock"
        text = lock.read_text(encoding="utf-8")
        header = '[lock.entries."pdf::skill"]\n'
        lock.write_text(text.replace(header, header + 'resolved_sha = "0123abcd"\n'), "utf-8")
        age(world.root)
        cache.refresh()
        before = cache.get_artifact(key)
        assert before is not None
        assert (before.resolved_sha == "0123abcd") == key.endswith("pdf")
        append(world.collection.artifact_path("agent", "auditor"), "More.\n")
        original = getattr(refresh_units.UnitRefresher, after)
        unit = refresh_units.collection_unit(str(world.collection.path))

        def racing(self: Any, *args: Any) -> Any:
            found = original(self, *args)
            if args[0] == unit or (after == "_stored_keys" and args[0] is not None):
                cache.delete_artifact(key)  # "another process"
            return found

        monkeypatch.setattr(refresh_units.UnitRefresher, after, racing)
        report = cache.refresh()
        assert report.errors == []
        assert cache.get_artifact(key) == before

    @pytest.mark.parametrize("enabled", [True, False])
    def test_garbage_collector_state_is_restored(
        self, cache: ProjectCache, world: World, enabled: bool
    ) -> None:
        """A refresh pauses the cyclic GC and leaves it as it found it."""
        seen: list[bool] = []
        (gc.enable if enabled else gc.disable)()
        try:
            cache.refresh(progress=lambda done, total, label: seen.append(gc.isenabled()))
            assert gc.isenabled() is enabled
        finally:
            gc.enable()
        assert seen and not any(seen)


class TestMalformedFiles:
    """A bad file is reported, its last good data kept, and the error cleared once fixed."""

    def test_malformed_skill_front_matter(self, cache: ProjectCache, world: World) -> None:
        """Broken YAML in SKILL.md: reported on the collection, the skill keeps its old data."""
        cache.refresh()
        main = world.collection.main_file("skill", "notes")
        good = main.read_text(encoding="utf-8")
        main.write_text(BROKEN_FRONT_MATTER, encoding="utf-8")
        report = cache.refresh()
        assert len(report.errors) == 1
        assert report.errors[0].path == str(main)
        assert "invalid YAML front matter" in report.errors[0].message
        collection = cache.get_collection("default")
        assert collection is not None and collection.errors == report.errors
        notes = cache.get_artifact("default/skill/notes")
        assert notes is not None
        assert notes.description == "Turn zebrafish transcripts into minutes."

        main.write_text(good.replace("zebrafish", "octopus"), encoding="utf-8")
        report = cache.refresh()
        assert report.errors == []
        collection = cache.get_collection("default")
        assert collection is not None and collection.errors == []
        notes = cache.get_artifact("default/skill/notes")
        assert notes is not None and "octopus" in notes.description

    def test_malformed_collection_toml(self, cache: ProjectCache, world: World) -> None:
        """Broken collection.toml: reported, the manifest's last good data still applies."""
        cache.refresh()
        toml = world.collection.path / "collection.toml"
        good = toml.read_text(encoding="utf-8")
        toml.write_text("[collection\nname = ", encoding="utf-8")
        report = cache.refresh()
        assert [e.path for e in report.errors] == [str(toml)]
        assert "invalid TOML" in report.errors[0].message
        collection = cache.get_collection("default")
        assert collection is not None
        assert collection.errors == report.errors
        assert (collection.version, collection.description) == ("1.0.0", "Team skills")
        pdf = cache.get_artifact("default/skill/pdf")
        assert pdf is not None and pdf.managed and pdf.tags == ["pdf", "files", "docs", "documents"]

        toml.write_text(good, encoding="utf-8")
        report = cache.refresh()
        assert report.errors == []
        collection = cache.get_collection("default")
        assert collection is not None and collection.errors == []

    def test_malformed_deployed_toml(self, cache: ProjectCache, world: World) -> None:
        """Broken .skillmeat-deployed.toml: reported on the project, deployments kept."""
        cache.refresh()
        before = states(cache, world.webapp)
        deployed = world.webapp.claude / ".skillmeat-deployed.toml"
        good = deployed.read_text(encoding="utf-8")
        deployed.write_text("[[deployed]\nartifact_name = 1", encoding="utf-8")
        report = cache.refresh()
        assert [e.path for e in report.errors] == [str(deployed)]
        project = cache.get_project(world.webapp.id)
        assert project is not None and project.errors == report.errors
        assert states(cache, world.webapp) == before

        deployed.write_text(good, encoding="utf-8")
        report = cache.refresh()
        assert report.errors == []
        project = cache.get_project(world.webapp.id)
        assert project is not None and project.errors == []
        assert states(cache, world.webapp) == before


# -- full, stale_only, and bad arguments -----------------------------------------------


class TestModes:
    """``full``, ``stale_only`` and the errors ``refresh`` raises."""

    def test_full_rereads_everything(
        self, cache: ProjectCache, world: World, opens: OpenCounter
    ) -> None:
        """``full=True`` re-reads every source, opening what the first refresh opened."""
        first = cache.refresh()
        first_opens = sorted(opens.paths)
        opens.reset()
        report = cache.refresh(full=True)
        assert sorted(opens.paths) == first_opens
        assert report.sources_checked == first.sources_checked
        # Only sources that are absent (the plain project's TOML files, the ghost's copy,
        # each project's .skillmeat/manifest.toml) are checked without being read.
        assert report.sources_changed == first.sources_changed == report.sources_checked - 5

    def test_stale_only_refreshes_invalidated_units(
        self, cache: ProjectCache, world: World, opens: OpenCounter
    ) -> None:
        """After ``invalidate(project=...)`` only that project is checked by ``stale_only``."""
        cache.refresh()
        append(world.webapp.deployed_path("command", "lint"), "Edited.\n")
        append(world.plain.claude / "commands" / "summarize.md", "Edited.\n")
        assert cache.invalidate(project=world.webapp.id) == 1
        opens.reset()
        report = cache.refresh(stale_only=True)
        assert (report.collections_checked, report.projects_checked) == (0, 1)
        assert set(opens.paths) == {str(world.webapp.deployed_path("command", "lint"))}
        assert states(cache, world.webapp)["default/command/lint"] == "modified"
        webapp, plain = cache.get_project(world.webapp.id), cache.get_project(world.plain.id)
        assert webapp is not None and plain is not None
        assert webapp.stale is False and plain.refreshed_at is not None
        assert plain.refreshed_at < webapp.refreshed_at  # type: ignore[operator]

        # The edit in the project not invalidated waits for a plain refresh.
        summarize = world.plain.claude / "commands" / "summarize.md"
        key = f"{world.plain.local_collection}/command/summarize"
        before = cache.get_artifact(key)
        assert before is not None and before.content_hash != content_hash(summarize)
        report = cache.refresh()
        assert report.projects_checked == 2
        assert str(summarize) in opens.paths
        after = cache.get_artifact(key)
        assert after is not None and after.content_hash == content_hash(summarize)

    def test_stale_only_skips_fresh_units(self, cache: ProjectCache, world: World) -> None:
        """Within the TTL nothing is checked by ``stale_only``."""
        cache.refresh()
        report = cache.refresh(stale_only=True)
        assert (report.collections_checked, report.projects_checked) == (0, 0)

    def test_stale_only_refreshes_units_past_the_ttl(
        self, cache_settings: Settings, world: World, tmp_path: Path
    ) -> None:
        """Past the TTL every collection and project counts as stale."""
        short = dataclasses.replace(cache_settings, ttl_seconds=0.001)
        with ProjectCache.open(tmp_path / "short-ttl", settings=short) as cache:
            cache.refresh()
            time.sleep(0.01)
            report = cache.refresh(stale_only=True)
        assert (report.collections_checked, report.projects_checked) == (1, 2)

    def test_not_a_project_folder(self, cache: ProjectCache, tmp_path: Path) -> None:
        """Naming a folder without .claude/, or no folder at all, raises SourceFileError."""
        (tmp_path / "empty").mkdir()
        with pytest.raises(SourceFileError, match="not a project folder"):
            cache.refresh(projects=[tmp_path / "empty"])
        with pytest.raises(SourceFileError, match="no such directory"):
            cache.refresh(projects=[tmp_path / "nowhere"])

    def test_readonly_cache(self, cache: ProjectCache, cache_settings: Settings) -> None:
        """A cache opened read-only refuses to refresh."""
        with (
            ProjectCache.open(settings=cache_settings, readonly=True) as readonly,
            pytest.raises(ReadOnlyCacheError),
        ):
            readonly.refresh()


# -- one transaction per unit ----------------------------------------------------------


def test_reader_sees_all_or_none_of_a_project_change(cache: ProjectCache, tree: Path) -> None:
    """A reader polling one project's deployments sees 0 or 20, never a part of a refresh."""
    collection = CollectionBuilder(tree / "collections", "default")
    names = [f"cmd-{i:02d}" for i in range(20)]
    for name in names:
        collection.command(name)
    collection.write()
    project = ProjectBuilder(tree / "projects", "busy")
    project.write()
    cache.refresh()
    seen: set[int] = set()
    errors: list[str] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                seen.add(len(cache.list_deployments(project=project.id)))
        except BaseException:
            errors.append(traceback.format_exc())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for round_ in range(12):
            for name in names:
                if round_ % 2 == 0:
                    project.deploy(collection, "command", name)
                else:
                    project.undeploy("default", "command", name)
            project.write()
            report = cache.refresh(projects=[project.path])
            assert report.deployments_written + report.deployments_removed == 20
    finally:
        done.set()
        thread.join(timeout=30)
    assert errors == []
    assert seen and seen <= {0, 20}


# -- incremental equals a full rebuild -------------------------------------------------

TYPES = ("skill", "command", "agent")
NAMES = ("alpha", "beta", "gamma", "delta")
_VERSION = re.compile(r"v(\d)\.")


def _body(name: str) -> str:
    """A Markdown body with a ``v<digit>.`` marker that same-size edits count up."""
    return f"# {name}\n\nThe {name} body v0.\n"


def _present(base: Path) -> list[tuple[str, str]]:
    """``(type, name)`` of the artifacts under ``base`` by layout (what the machine edits)."""
    found = []
    for type_ in TYPES:
        for name in NAMES:
            path = base / artifact_relative(type_, name)
            if path.exists():
                found.append((type_, name))
    return found


def _main(base: Path, type_: str, name: str) -> Path:
    """The file holding the artifact's front matter."""
    path = base / artifact_relative(type_, name)
    return path / "SKILL.md" if type_ == "skill" else path


def _bump_version(path: Path) -> None:
    """Edit a file without changing its size: the last ``v<digit>.`` counts up by one."""
    text = path.read_text(encoding="utf-8")
    matches = list(_VERSION.finditer(text))
    if not matches:
        path.write_text(text + "v0.\n", encoding="utf-8")
        return
    last = matches[-1]
    digit = (int(last.group(1)) + 1) % 10
    path.write_text(text[: last.start(1)] + str(digit) + text[last.end(1) :], encoding="utf-8")


def _without(record: dict[str, Any], *fields: str) -> dict[str, Any]:
    """``record`` minus ``fields``."""
    return {k: v for k, v in record.items() if k not in fields}


def snapshot(cache: ProjectCache, skip: set[str]) -> dict[str, Any]:
    """Everything a refresh writes, comparable across caches; artifacts in ``skip`` left out.

    For a collection or project in error only its errors are kept: by design the
    incremental cache holds the last good data of a bad file, a rebuild has none.
    """
    collections = {}
    for collection in cache.list_collections():
        record = _without(collection.model_dump(), "refreshed_at", "stale")
        collections[collection.name] = {"errors": record["errors"]} if collection.errors else record
    projects = {}
    for project in cache.list_projects():
        record = _without(project.model_dump(), "refreshed_at", "stale")
        projects[project.id] = {"errors": record["errors"]} if project.errors else record
    artifacts = {a.key: a.model_dump() for a in cache.list_artifacts() if a.key not in skip}
    deployments = {
        (d.project_id, d.artifact_key): d.model_dump()
        for d in cache.list_deployments()
        if d.artifact_key not in skip
    }
    search = {
        word: sorted(h.key for h in cache.search(word, limit=1000) if h.key not in skip)
        for word in NAMES
    }
    return {
        "collections": collections,
        "projects": projects,
        "artifacts": artifacts,
        "deployments": deployments,
        "search": search,
    }


def assert_same(incremental: dict[str, Any], rebuilt: dict[str, Any]) -> None:
    """Assert two snapshots are equal, naming just the records and fields that differ."""
    problems = []
    for section, expected in rebuilt.items():
        actual = incremental[section]
        for key in sorted(set(actual) | set(expected), key=repr):
            mine, theirs = actual.get(key), expected.get(key)
            if mine == theirs:
                continue
            if isinstance(mine, dict) and isinstance(theirs, dict):
                fields = sorted(set(mine) | set(theirs))
                mine = {f: mine.get(f) for f in fields if mine.get(f) != theirs.get(f)}
                theirs = {f: theirs.get(f) for f in mine}
            problems.append(f"{section}[{key!r}]: incremental {mine!r} != rebuild {theirs!r}")
    assert not problems, "\n".join(problems)


class RefreshMachine(RuleBasedStateMachine):
    """Random edits of a real tree; after each refresh the cache equals a full rebuild.

    Each edit either keeps the file's real (fresh) mtime, leaving detection to
    the racy-timestamp rule, or back-dates it to a distinct, increasing time
    in the past, so the fingerprints of untouched files stay trusted and the
    refresh is truly incremental.
    """

    base: Path

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(dir=self.base))
        self.cache_settings = Settings(
            cache_dir=self.root / "cache",
            map_size=256 * 1024,
            durability="none",
            collection_roots=(str(self.root / "collections"),),
            project_roots=(str(self.root / "projects"),),
        )
        self.cache: Optional[ProjectCache] = None
        self.rebuilds = 0
        self.clock = 0
        self.corrupt: set[str] = set()  # artifact keys whose main file is broken now

    # -- helpers --

    @property
    def c(self) -> ProjectCache:
        """The incremental cache (open from ``build`` to ``teardown``)."""
        assert self.cache is not None
        return self.cache

    def stamp(self, paths: list[Path], backdate: bool) -> None:
        """Back-date ``paths`` (and files under them) to the next tick of the machine's clock."""
        if not backdate:
            return
        self.clock += 1_000_000_000
        for path in paths:
            if path.is_dir():
                for dirpath, _dirs, files in os.walk(path):
                    for name in files:
                        set_mtime(os.path.join(dirpath, name), self.clock)
            elif path.exists():
                set_mtime(path, self.clock)

    def key_of(self, base: Path, type_: str, name: str) -> str:
        """The cache key of the artifact ``type_``/``name`` found under ``base``."""
        if base == self.collection.path:
            return self.collection.key(type_, name)
        project = self.app if base == self.app.claude else self.plain
        return f"{project.local_collection}/{type_}/{name}"

    def bases(self) -> list[Path]:
        """Folders whose artifacts are read with front matter: collection, plain project."""
        bases = [self.collection.path]
        if self.plain.path.exists():
            bases.append(self.plain.claude)
        return bases

    def targets(self) -> list[tuple[Path, str, str]]:
        """Every artifact the machine may edit: in the collection, copies, local ones."""
        found = [
            (base, t, n) for base in (*self.bases(), self.app.claude) for t, n in _present(base)
        ]
        return found

    # -- setup --

    @initialize()
    def build(self) -> None:
        """A collection with three artifacts, a project deploying one, a plain project."""
        self.collection = CollectionBuilder(self.root / "collections", "default")
        self.collection.skill("alpha", body=_body("alpha"), files={"ref.md": "# ref\n"})
        self.collection.command("beta", body=_body("beta"), tags=["b"])
        self.collection.agent("gamma", body=_body("gamma"), managed=False)
        self.collection.write()
        self.app = ProjectBuilder(self.root / "projects", "app")
        self.app.deploy(self.collection, "skill", "alpha", version="1.0.0")
        self.app.write()
        self.plain = ProjectBuilder(self.root / "projects", "plain", managed=False)
        self.plain.local("skill", "delta", body=_body("delta"))
        self.clock = age(self.root)
        self.cache = ProjectCache.open(settings=self.cache_settings)
        self.c.refresh()

    def teardown(self) -> None:
        """Close the cache and remove the tree."""
        if self.cache is not None:
            self.cache.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- edits (each may be followed by a refresh and the check) --

    @rule(
        type_=st.sampled_from(TYPES),
        name=st.sampled_from(NAMES),
        managed=st.booleans(),
        in_plain=st.booleans(),
        backdate=st.booleans(),
        then_refresh=st.booleans(),
    )
    def add_artifact(
        self,
        type_: str,
        name: str,
        managed: bool,
        in_plain: bool,
        backdate: bool,
        then_refresh: bool,
    ) -> None:
        """Add an artifact to the collection (listed or not) or to the plain project."""
        if in_plain and self.plain.path.exists():
            if (type_, name) in _present(self.plain.claude):
                return
            path = self.plain.local(type_, name, body=_body(name))
            self.stamp([path], backdate)
        else:
            if (type_, name) in _present(self.collection.path):
                return
            path = self.collection.add(type_, name, body=_body(name), managed=managed, tags=[name])
            self.collection.write()
            self.stamp([path, self.collection.path / "collection.toml"], backdate)
        self.settle(then_refresh)

    @rule(
        data=st.data(), same_size=st.booleans(), backdate=st.booleans(), then_refresh=st.booleans()
    )
    def modify(
        self, data: st.DataObject, same_size: bool, backdate: bool, then_refresh: bool
    ) -> None:
        """Change the main file of an artifact (collection, deployed copy or local)."""
        targets = self.targets()
        if not targets:
            return
        base, type_, name = data.draw(st.sampled_from(targets))
        main = _main(base, type_, name)
        if same_size:
            _bump_version(main)
        else:
            with open(main, "a", encoding="utf-8") as handle:
                handle.write("More words.\n")
        self.stamp([main], backdate)
        self.settle(then_refresh)

    @rule(data=st.data(), keep_entry=st.booleans(), then_refresh=st.booleans())
    def delete(self, data: st.DataObject, keep_entry: bool, then_refresh: bool) -> None:
        """Delete an artifact of the collection or the plain project."""
        targets = [(b, t, n) for b in self.bases() for t, n in _present(b)]
        if not targets:
            return
        base, type_, name = data.draw(st.sampled_from(targets))
        self.corrupt.discard(self.key_of(base, type_, name))
        if base == self.collection.path:
            managed = (type_, name) in self.collection.entries
            self.collection.remove(type_, name, keep_entry=keep_entry)
            if managed and not keep_entry:
                self.collection.write()
        else:
            path = base / artifact_relative(type_, name)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        self.settle(then_refresh)

    @rule(data=st.data(), backdate=st.booleans(), then_refresh=st.booleans())
    def rename(self, data: st.DataObject, backdate: bool, then_refresh: bool) -> None:
        """Rename a command or agent file to a free name, or a file inside a skill."""
        targets = [(b, t, n) for b in self.bases() for t, n in _present(b)]
        if not targets:
            return
        base, type_, name = data.draw(st.sampled_from(targets))
        path = base / artifact_relative(type_, name)
        if type_ == "skill":
            extras = sorted(p for p in path.iterdir() if p.name != "SKILL.md")
            if extras:
                os.rename(extras[0], path / f"x-{extras[0].name}")
            else:
                (path / "extra.md").write_text("extra\n", encoding="utf-8")
                self.stamp([path / "extra.md"], backdate)
        else:
            free = [n for n in NAMES if (type_, n) not in _present(base)]
            if not free:
                return
            new = data.draw(st.sampled_from(free))
            os.rename(path, base / artifact_relative(type_, new))
        self.settle(then_refresh)

    @rule(data=st.data(), backdate=st.booleans(), then_refresh=st.booleans())
    def corrupt_front_matter(self, data: st.DataObject, backdate: bool, then_refresh: bool) -> None:
        """Break the YAML front matter of one SKILL.md (collection or plain project)."""
        targets = [(b, n) for b in self.bases() for t, n in _present(b) if t == "skill"]
        if not targets:
            return
        base, name = data.draw(st.sampled_from(targets))
        main = _main(base, "skill", name)
        main.write_text(BROKEN_FRONT_MATTER, encoding="utf-8")
        self.corrupt.add(self.key_of(base, "skill", name))
        self.stamp([main], backdate)
        self.settle(then_refresh)

    @precondition(lambda self: bool(self.corrupt))
    @rule(data=st.data(), backdate=st.booleans(), then_refresh=st.booleans())
    def fix_front_matter(self, data: st.DataObject, backdate: bool, then_refresh: bool) -> None:
        """Give a broken SKILL.md valid front matter again."""
        key = data.draw(st.sampled_from(sorted(self.corrupt)))
        name = key.rsplit("/", 1)[1]
        base = self.collection.path if key.startswith("default/") else self.plain.claude
        main = _main(base, "skill", name)
        main.write_text(f"---\nname: {name}\ndescription: Fixed.\n---\n{_body(name)}", "utf-8")
        self.corrupt.discard(key)
        self.stamp([main], backdate)
        self.settle(then_refresh)

    @rule(
        data=st.data(),
        version=st.sampled_from([None, "1.0.0", "v2.0.0"]),
        backdate=st.booleans(),
        then_refresh=st.booleans(),
    )
    def deploy(
        self, data: st.DataObject, version: Optional[str], backdate: bool, then_refresh: bool
    ) -> None:
        """Deploy an artifact of the collection into the app project."""
        candidates = [
            (t, n)
            for t, n in _present(self.collection.path)
            if ("default", t, n) not in self.app.deployed
            and not (self.app.claude / artifact_relative(t, n)).exists()
        ]
        if not candidates:
            return
        type_, name = data.draw(st.sampled_from(candidates))
        copy = self.app.deploy(self.collection, type_, name, version=version)
        self.app.write()
        self.stamp([copy, self.app.claude / ".skillmeat-deployed.toml"], backdate)
        self.settle(then_refresh)

    @precondition(lambda self: bool(self.app.deployed))
    @rule(
        data=st.data(),
        mode=st.sampled_from(["all", "entry", "files"]),
        backdate=st.booleans(),
        then_refresh=st.booleans(),
    )
    def undeploy(self, data: st.DataObject, mode: str, backdate: bool, then_refresh: bool) -> None:
        """Remove a deployment's entry, its files (it goes missing), or both."""
        collection, type_, name = data.draw(st.sampled_from(sorted(self.app.deployed)))
        if mode == "files":
            path = self.app.deployed_path(type_, name)
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        else:
            self.app.undeploy(collection, type_, name, remove_files=mode == "all")
            self.app.write()
            self.stamp([self.app.claude / ".skillmeat-deployed.toml"], backdate)
        self.settle(then_refresh)

    @rule(then_refresh=st.booleans())
    def toggle_plain_project(self, then_refresh: bool) -> None:
        """Delete the plain project folder, or bring it back with one local command."""
        if self.plain.path.exists():
            shutil.rmtree(self.plain.path)
            self.corrupt = {k for k in self.corrupt if not k.startswith("@")}
        else:
            self.plain = ProjectBuilder(self.root / "projects", "plain", managed=False)
            self.plain.local("command", "beta", body=_body("beta"))
        self.settle(then_refresh)

    # -- the check --

    def settle(self, then_refresh: bool) -> None:
        """Refresh and check now, or leave the edit to pile up with the next ones."""
        if then_refresh:
            self.refresh()

    @rule()
    def refresh(self) -> None:
        """Refresh incrementally, then compare with a full rebuild of the same tree."""
        self.c.refresh()
        self.rebuilds += 1
        other = dataclasses.replace(
            self.cache_settings, cache_dir=self.root / f"rebuild-{self.rebuilds}"
        )
        with ProjectCache.open(settings=other) as rebuilt:
            rebuilt.refresh(full=True)
            expected = snapshot(rebuilt, self.corrupt)
        assert_same(snapshot(self.c, self.corrupt), expected)


@pytest.mark.generated
def test_incremental_refresh_equals_full_rebuild(tmp_path: Path) -> None:
    """After any sequence of edits, an incremental refresh leaves what a full rebuild builds."""

    class Machine(RefreshMachine):
        base = tmp_path

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=examples(25),
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
