"""The ProjectCache facade: records, listings, deployment states, maintenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import orjson
import pytest

from projcache import (
    ArtifactNotFound,
    CacheDisabledError,
    InvalidArgumentError,
    InvalidRecordError,
    KeyTooLongError,
    ProjectCache,
    ProjectNotFound,
)
from projcache.config import Settings
from projcache.errors import CacheClosedError
from projcache.migrate import SCHEMA_VERSION

Factory = Callable[..., dict[str, Any]]


class TestArtifacts:
    def test_put_then_get_round_trips_every_field(
        self, cache: ProjectCache, make_artifact: Factory
    ) -> None:
        """An artifact written with every field reads back equal."""
        record = make_artifact(
            "pdf",
            title="PDF",
            tags=["pdf", "docs"],
            version="1.0.0",
            origin="github",
            upstream="https://example.invalid/pdf",
            resolved_sha="abc",
            resolved_version="v1.0.0",
            front_matter={"model": "opus", "allowed-tools": ["Read"]},
            managed=False,
            updated_at="2026-01-02T03:04:05+00:00",
        )
        assert cache.put_artifacts([record]) == 1
        artifact = cache.get_artifact("default/skill/pdf")
        assert artifact is not None
        assert artifact.key == "default/skill/pdf"
        assert artifact.front_matter == {"model": "opus", "allowed-tools": ["Read"]}
        assert artifact.managed is False
        assert artifact.updated_at is not None and artifact.updated_at.year == 2026

    def test_get_artifact_json_returns_the_stored_json(
        self, cache: ProjectCache, make_artifact: Factory
    ) -> None:
        """The raw path returns JSON bytes that decode to the record, without building a model."""
        cache.put_artifacts([make_artifact("pdf", tags=["a"])])
        payload = cache.get_artifact_json("default/skill/pdf")
        assert payload is not None
        assert orjson.loads(payload)["tags"] == ["a"]
        assert cache.get_artifact_json("default/skill/nope") is None

    def test_missing_artifact_is_none_and_counts_a_miss(self, cache: ProjectCache) -> None:
        """A lookup of an absent key returns None and is counted as a miss."""
        assert cache.get_artifact("default/skill/absent") is None
        stats = cache.stats()
        assert (stats.hits, stats.misses) == (0, 1)

    def test_hit_and_miss_counters_persist_across_opens(
        self, cache_settings: Settings, make_artifact: Factory
    ) -> None:
        """Counters are saved on close and added to on the next open."""
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.put_artifacts([make_artifact("pdf")])
            cache.get_artifact("default/skill/pdf")
            cache.get_artifact("default/skill/none")
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.get_artifact("default/skill/pdf")
            stats = cache.stats()
        assert (stats.hits, stats.misses) == (2, 1)
        assert stats.hit_rate == pytest.approx(2 / 3)

    def test_malformed_key_is_rejected(self, cache: ProjectCache) -> None:
        """A key without three parts or with a bad type is a bad argument, not a bad record."""
        with pytest.raises(InvalidArgumentError, match="<collection>/<type>/<name>"):
            cache.get_artifact("pdf")
        with pytest.raises(InvalidArgumentError, match="type"):
            cache.get_artifact("default/Widget/pdf")
        with pytest.raises(InvalidArgumentError, match="<collection>/<type>/<name>"):
            cache.delete_artifact("pdf")
        with pytest.raises(InvalidArgumentError, match="must not be empty"):
            cache.get_artifact("")

    @pytest.mark.parametrize(
        ("key", "error", "match"),
        [
            ("default/skill/p\x00df", InvalidArgumentError, "NUL"),
            ("default/skill/\udcff", InvalidArgumentError, "not valid Unicode"),
            ("default/skill/" + "x" * 600, KeyTooLongError, "511"),
        ],
    )
    def test_a_key_that_cannot_be_stored_is_refused_by_the_point_reads(
        self, cache: ProjectCache, make_artifact: Factory, key: str, error: type, match: str
    ) -> None:
        """A NUL byte, a lone surrogate or an overlong key is a bad argument on the hot read
        path too (which checks the encoded key cheaply and validates only what fails)."""
        cache.put_artifacts([make_artifact("pdf")])
        for read in (cache.get_artifact_json, cache.get_artifact):
            with pytest.raises(error, match=match):
                read(key)
        assert cache.get_artifact_json("default/skill/pdf") is not None

    def test_invalid_record_names_the_field_and_writes_nothing(
        self, cache: ProjectCache, make_artifact: Factory
    ) -> None:
        """One invalid record in a batch aborts the whole batch, naming the field."""
        with pytest.raises(InvalidRecordError, match="field 'type'"):
            cache.put_artifacts([make_artifact("ok"), make_artifact("bad", type="Widget")])
        assert cache.get_artifact("default/skill/ok") is None

    def test_overlong_name_raises_key_too_long(
        self, cache: ProjectCache, make_artifact: Factory
    ) -> None:
        """A name that would exceed the 511-byte key limit is refused with a clear error."""
        with pytest.raises(KeyTooLongError, match="511"):
            cache.put_artifacts([make_artifact("x" * 600)])

    def test_delete_artifact_removes_record_and_search_entries(
        self, cache: ProjectCache, make_artifact: Factory
    ) -> None:
        """After delete the artifact is neither readable nor found by search or listing."""
        cache.put_artifacts([make_artifact("pdf", tags=["docs"])])
        cache.delete_artifact("default/skill/pdf")
        assert cache.get_artifact("default/skill/pdf") is None
        assert cache.search("pdf").total == 0
        assert list(cache.list_artifacts(tag="docs")) == []
        with pytest.raises(ArtifactNotFound):
            cache.delete_artifact("default/skill/pdf")

    def test_replacing_an_artifact_updates_its_facets(
        self, cache: ProjectCache, make_artifact: Factory
    ) -> None:
        """Re-putting an artifact with other tags moves it between tag listings."""
        cache.put_artifacts([make_artifact("pdf", tags=["old"])])
        cache.put_artifacts([make_artifact("pdf", tags=["new"])])
        assert [a.key for a in cache.list_artifacts(tag="new")] == ["default/skill/pdf"]
        assert list(cache.list_artifacts(tag="old")) == []
        assert cache.verify(deep=True).ok


class TestListing:
    @pytest.fixture
    def filled(self, cache: ProjectCache, make_artifact: Factory) -> ProjectCache:
        """A cache with artifacts across two collections, three types and some tags."""
        records = [
            make_artifact(f"s{i}", tags=["even"] if i % 2 == 0 else ["odd"]) for i in range(600)
        ]
        records += [make_artifact("c1", type="command", tags=["even"])]
        records += [make_artifact("a1", type="agent", collection="team")]
        cache.put_artifacts(records)
        return cache

    def test_list_all_pages_through_everything_in_key_order(self, filled: ProjectCache) -> None:
        """Listing without filters yields every artifact once, sorted by key (several pages)."""
        keys = [a.key for a in filled.list_artifacts()]
        assert len(keys) == 602
        assert keys == sorted(keys)

    def test_filters_use_type_collection_and_tag(self, filled: ProjectCache) -> None:
        """Each filter, and combinations, return exactly the matching artifacts."""
        assert [a.key for a in filled.list_artifacts(type="command")] == ["default/command/c1"]
        assert [a.key for a in filled.list_artifacts(collection="team")] == ["team/agent/a1"]
        assert len(list(filled.list_artifacts(tag="even"))) == 301
        assert len(list(filled.list_artifacts(tag="even", type="skill"))) == 300
        assert list(filled.list_artifacts(tag="even", collection="team")) == []

    def test_unknown_type_filter_is_an_error(self, filled: ProjectCache) -> None:
        """A type outside the five artifact types is a usage error, not an empty list."""
        with pytest.raises(InvalidArgumentError, match="type must be a type name like one of"):
            list(filled.list_artifacts(type="Widget"))


class TestProjectsAndDeployments:
    def test_find_project_by_id_name_or_path(
        self, cache: ProjectCache, make_project: Factory
    ) -> None:
        """A project is found by its id, its name and its path; unknown refs raise."""
        record = make_project("shop")
        cache.put_projects([record])
        project = cache.find_project("shop")
        assert cache.find_project(project.id) == project
        assert cache.find_project(record["path"]) == project
        assert cache.get_project(project.id) == project
        with pytest.raises(ProjectNotFound):
            cache.find_project("nope")

    def test_ambiguous_project_name_raises(
        self, cache: ProjectCache, make_project: Factory, tmp_path: Path
    ) -> None:
        """Two projects with one name cannot be found by that name."""
        cache.put_projects([make_project("app"), {"name": "app", "path": str(tmp_path / "b")}])
        with pytest.raises(ProjectNotFound, match="2 projects"):
            cache.find_project("app")

    def test_deployment_states_follow_the_artifact(
        self, cache: ProjectCache, make_artifact: Factory, make_project: Factory
    ) -> None:
        """States move current -> outdated -> missing as the collection changes."""
        cache.put_artifacts([make_artifact("pdf", content_hash="h1")])
        cache.put_projects([make_project("shop")])
        pid = cache.find_project("shop").id
        cache.put_deployments(
            [{"project_id": pid, "artifact_key": "default/skill/pdf", "content_hash": "h1"}]
        )
        assert [d.state for d in cache.list_deployments()] == ["current"]
        cache.put_artifacts([make_artifact("pdf", content_hash="h2")])
        assert [d.artifact_key for d in cache.list_deployments(state="outdated")] == [
            "default/skill/pdf"
        ]
        cache.put_artifacts([make_artifact("xlsx")])  # the collection stays known
        cache.delete_artifact("default/skill/pdf")
        assert [d.state for d in cache.list_deployments(project="shop")] == ["missing"]
        assert cache.list_deployments(state="outdated") == []
        assert cache.verify(deep=True).ok
        # Nothing of "default" left: its deployments come from a collection the cache
        # does not know, which is not a removal.
        cache.delete_artifact("default/skill/xlsx")
        assert [d.state for d in cache.list_deployments(project="shop")] == ["unknown-collection"]
        assert cache.verify(deep=True).ok

    def test_deployments_of_one_artifact_through_its_index(
        self, cache: ProjectCache, make_artifact: Factory, make_project: Factory, tmp_path: Path
    ) -> None:
        """The artifact filter combines with the project and state filters."""
        cache.put_artifacts([make_artifact("pdf", content_hash="h1"), make_artifact("docx")])
        cache.put_projects([make_project("shop"), {"name": "blog", "path": str(tmp_path / "b")}])
        shop, blog = cache.find_project("shop").id, cache.find_project("blog").id
        cache.put_deployments(
            [
                {"project_id": shop, "artifact_key": "default/skill/pdf", "content_hash": "h1"},
                {"project_id": blog, "artifact_key": "default/skill/pdf", "content_hash": "h0"},
                {"project_id": shop, "artifact_key": "default/skill/docx"},
            ]
        )

        def found(**filters: Any) -> list[tuple[str, str]]:
            return sorted(
                (d.project_id, d.state)
                for d in cache.list_deployments(artifact="default/skill/pdf", **filters)
            )

        assert found() == sorted([(shop, "current"), (blog, "outdated")])
        assert found(project="blog") == [(blog, "outdated")]
        assert found(state="current") == [(shop, "current")]
        assert found(project="blog", state="current") == []
        assert cache.list_deployments_json(artifact="default/skill/nope") == []

    def test_modified_and_missing_files(
        self, cache: ProjectCache, make_artifact: Factory, make_project: Factory
    ) -> None:
        """Local edits make a deployment modified; deleted files make it missing."""
        cache.put_artifacts([make_artifact("a", content_hash="h"), make_artifact("b")])
        cache.put_projects([make_project("shop")])
        pid = cache.find_project("shop").id
        cache.put_deployments(
            [
                {
                    "project_id": pid,
                    "artifact_key": "default/skill/a",
                    "content_hash": "h",
                    "local_hash": "edited",
                },
                {
                    "project_id": pid,
                    "artifact_key": "default/skill/b",
                    "content_hash": "h",
                    "files_present": False,
                },
            ]
        )
        states = {d.name: d.state for d in cache.list_deployments(project=pid)}
        assert states == {"a": "modified", "b": "missing"}

    def test_deployment_of_unknown_project_is_refused(self, cache: ProjectCache) -> None:
        """A deployment must reference a project already in the cache."""
        with pytest.raises(InvalidRecordError, match="project_id"):
            cache.put_deployments([{"project_id": "0" * 16, "artifact_key": "default/skill/a"}])

    def test_delete_project_removes_its_deployments(
        self, cache: ProjectCache, make_artifact: Factory, make_project: Factory
    ) -> None:
        """Deleting a project deletes its deployments and their index entries."""
        cache.put_artifacts([make_artifact("a")])
        cache.put_projects([make_project("shop"), make_project("blog")])
        ids = [cache.find_project(n).id for n in ("shop", "blog")]
        cache.put_deployments([{"project_id": i, "artifact_key": "default/skill/a"} for i in ids])
        cache.delete_project(ids[0])
        assert [d.project_id for d in cache.list_deployments()] == [ids[1]]
        assert cache.verify(deep=True).ok
        with pytest.raises(ProjectNotFound):
            cache.delete_project(ids[0])
        assert cache.delete_deployment(ids[1], "default/skill/a") is True
        assert cache.delete_deployment(ids[1], "default/skill/a") is False

    def test_unknown_state_filter_is_an_error(self, cache: ProjectCache) -> None:
        """Only the four documented states are accepted as filters."""
        with pytest.raises(InvalidArgumentError, match="state must be one of"):
            cache.list_deployments(state="stale")  # type: ignore[arg-type]


class TestMaintenance:
    def test_invalidate_marks_projects_stale_and_keeps_data(
        self, cache: ProjectCache, make_project: Factory
    ) -> None:
        """Invalidate flags projects stale without removing them; one or all."""
        cache.put_projects(
            [make_project("a", refreshed_at="2026-01-01T00:00:00+00:00"), make_project("b")]
        )
        assert cache.invalidate("a") == 1
        assert cache.find_project("a").stale is True
        assert cache.find_project("b").stale is False
        assert cache.invalidate() == 2
        assert all(p.stale for p in cache.list_projects())
        assert cache.stats().stale_projects == 2

    def test_clear_empties_everything_but_keeps_schema(
        self, cache: ProjectCache, make_artifact: Factory, make_project: Factory
    ) -> None:
        """Clear removes records and indexes in one go; the cache stays usable."""
        cache.put_artifacts([make_artifact("a")])
        cache.put_projects([make_project("p")])
        cache.clear()
        stats = cache.stats()
        assert stats.counts == {
            "collections": 0,
            "projects": 0,
            "artifacts": 0,
            "deployments": 0,
            "sources": 0,
            "postings": 0,
        }
        assert stats.schema_version == SCHEMA_VERSION
        assert cache.search("a").total == 0
        cache.put_artifacts([make_artifact("b")])
        assert cache.get_artifact("default/skill/b") is not None

    def test_stats_reports_sizes_and_freshness(
        self, cache: ProjectCache, make_artifact: Factory, make_project: Factory
    ) -> None:
        """Stats carries counts, byte sizes, the last transaction id and refresh times."""
        cache.put_artifacts([make_artifact("a")])
        cache.put_projects([make_project("p", refreshed_at="2026-03-01T00:00:00+00:00")])
        stats = cache.stats()
        assert stats.counts["artifacts"] == 1
        assert stats.used_bytes > 0 and stats.file_bytes > 0
        assert stats.map_size >= 256 * 1024
        assert stats.last_txn_id >= 2
        assert stats.oldest_refresh == stats.newest_refresh
        assert stats.created_at is not None

    def test_backup_is_an_openable_copy(
        self, cache: ProjectCache, make_artifact: Factory, tmp_path: Path
    ) -> None:
        """A backup opens as a cache with the same records; a second backup there is refused."""
        cache.put_artifacts([make_artifact("a")])
        dest = cache.backup(tmp_path / "backup")
        with ProjectCache.open(dest, readonly=True) as copy:
            assert copy.get_artifact("default/skill/a") is not None
        with pytest.raises(InvalidArgumentError, match="already holds a cache"):
            cache.backup(dest)

    @pytest.mark.parametrize("compact", [True, False])
    def test_backup_is_private_whatever_the_umask(
        self, cache: ProjectCache, make_artifact: Factory, tmp_path: Path, compact: bool
    ) -> None:
        """Backup files are 0600 and its folders (also created parents) 0700, even with umask 0."""
        import os
        import stat

        cache.put_artifacts([make_artifact("a")])
        previous = os.umask(0)
        try:
            dest = cache.backup(tmp_path / "new" / "backup", compact=compact)
        finally:
            os.umask(previous)
        assert stat.S_IMODE(dest.stat().st_mode) == 0o700
        assert stat.S_IMODE(dest.parent.stat().st_mode) == 0o700
        assert [p.name for p in dest.iterdir()] == ["data.mdb"]
        assert stat.S_IMODE((dest / "data.mdb").stat().st_mode) == 0o600
        with ProjectCache.open(dest, readonly=True) as copy:
            assert copy.get_artifact("default/skill/a") is not None

    def test_backup_never_writes_through_a_planted_symlink(
        self, cache: ProjectCache, make_artifact: Factory, tmp_path: Path
    ) -> None:
        """A data.mdb symlink in the destination is refused, even dangling; nothing is written."""
        cache.put_artifacts([make_artifact("a")])
        victim = tmp_path / "victim.txt"
        victim.write_text("precious")
        elsewhere = tmp_path / "elsewhere.mdb"  # a dangling link: would be created through it
        for n, target in enumerate((victim, elsewhere)):
            dest = tmp_path / f"dest{n}"
            dest.mkdir()
            (dest / "data.mdb").symlink_to(target)
            with pytest.raises(InvalidArgumentError, match="already holds a cache"):
                cache.backup(dest)
        assert victim.read_text() == "precious"
        assert not elsewhere.exists()

    def test_use_after_close_raises(self, cache_settings: Settings) -> None:
        """A closed cache refuses reads and writes; close() twice is fine."""
        cache = ProjectCache.open(settings=cache_settings)
        cache.close()
        cache.close()
        assert cache.closed
        with pytest.raises(CacheClosedError):
            cache.get_artifact("default/skill/a")
        with pytest.raises(CacheClosedError):
            cache.clear()

    def test_disabled_cache_refuses_to_open(self, tmp_path: Path) -> None:
        """With the feature flag off, opening raises CacheDisabledError with a hint."""
        settings = Settings(cache_dir=tmp_path / "c", enabled=False)
        with pytest.raises(CacheDisabledError) as info:
            ProjectCache.open(settings=settings)
        assert "PROJCACHE_ENABLED" in info.value.hint

    def test_open_with_path_and_env(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """open(path) uses that directory; open() uses PROJCACHE_DIR."""
        monkeypatch.setenv("PROJCACHE_DIR", str(tmp_path / "env"))
        monkeypatch.delenv("PROJCACHE_CONFIG", raising=False)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "noconfig"))
        with ProjectCache.open() as cache:
            assert cache.path == tmp_path / "env"
        with ProjectCache.open(tmp_path / "explicit") as cache:
            assert cache.path == tmp_path / "explicit"
            assert not cache.readonly


class TestSecondOpen:
    """A second handle on a directory open in this process reports what really applies."""

    def test_environment_settings_are_the_first_openers(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Durability and map sizes come from the shared environment, with a warning."""
        first = Settings(
            cache_dir=tmp_path / "c", durability="full", max_map_size=1024**3, map_size=2 * 1024**2
        )
        asked = Settings(
            cache_dir=tmp_path / "c", durability="none", max_map_size=16 * 1024**2, map_size=1024**2
        )
        with ProjectCache.open(settings=first) as one:
            with (
                caplog.at_level("WARNING", logger="projcache.cache"),
                ProjectCache.open(settings=asked) as two,
            ):
                assert two.settings.durability == "full"
                assert two.settings.max_map_size == 1024**3
                assert two.settings.map_size == 2 * 1024**2
                assert two.stats().max_map_size == one.stats().max_map_size == 1024**3
            assert any("already open in this process" in r.getMessage() for r in caplog.records)
            assert "durability='full'" in caplog.text
            assert one.settings == first

    def test_same_settings_share_silently(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A second open with the same settings keeps them and says nothing."""
        settings = Settings(cache_dir=tmp_path / "c")
        with (
            ProjectCache.open(settings=settings),
            caplog.at_level("WARNING"),
            ProjectCache.open(settings=settings) as two,
        ):
            assert two.settings == settings
        assert "already open" not in caplog.text

    def test_each_handle_judges_staleness_with_its_own_ttl(self, tmp_path: Path) -> None:
        """The TTL belongs to the handle: stats() counts stale projects by the asker's TTL."""
        import dataclasses
        from datetime import timedelta

        from projcache.models import utcnow

        long = Settings(cache_dir=tmp_path / "c", ttl_seconds=6 * 3600.0)
        short = dataclasses.replace(long, ttl_seconds=60.0)
        with ProjectCache.open(settings=long) as one, ProjectCache.open(settings=short) as two:
            one.put_projects(
                [
                    {
                        "path": str(tmp_path / "p"),
                        "name": "p",
                        "refreshed_at": utcnow() - timedelta(hours=1),
                    }
                ]
            )
            assert one.stats().stale_projects == 0
            assert two.stats().stale_projects == 1
            assert two.settings.ttl_seconds == 60.0


class TestSourceDirectNames:
    """``direct_reason`` and ``is_direct`` say what ``.direct`` (now deprecated) mixed up."""

    def test_a_real_cache_is_not_direct(self, cache: ProjectCache) -> None:
        """A cache that opened normally: no reason, not direct."""
        assert cache.direct_reason is None
        assert cache.is_direct is False

    def test_a_disabled_cache_answers_from_source_and_says_why(
        self, cache_settings: Settings
    ) -> None:
        """With the cache off, ``fallback`` gives a direct handle naming the reason."""
        import dataclasses

        settings = dataclasses.replace(cache_settings, enabled=False)
        with ProjectCache.open(settings=settings, fallback=True) as cache:
            assert cache.is_direct is True
            assert cache.direct_reason == "the cache is disabled by configuration"

    def test_direct_is_a_deprecated_alias_of_direct_reason(self, cache_settings: Settings) -> None:
        """Reading ``.direct`` warns (DeprecationWarning) and still gives the reason."""
        import dataclasses

        settings = dataclasses.replace(cache_settings, enabled=False)
        cache = ProjectCache.open(settings=settings, fallback=True)
        try:
            with pytest.warns(DeprecationWarning, match="direct_reason"):
                assert cache.direct == cache.direct_reason
        finally:
            cache.close()


class TestRepairUnopenable:
    """``ProjectCache.repair_unopenable`` rebuilds a cache that cannot be opened."""

    def test_a_cache_with_garbage_for_a_data_file_is_rebuilt(
        self, cache_settings: Settings, make_artifact: Factory
    ) -> None:
        """The damaged folder is moved aside and a fresh, openable cache takes its place."""
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.put_artifacts([make_artifact("pdf")])
        data = Path(cache_settings.cache_dir) / "data.mdb"
        data.write_bytes(b"\x00garbage" * 4096)
        report = ProjectCache.repair_unopenable(settings=cache_settings)
        assert report.repaired == 1
        assert [f.kind for f in report.findings] == ["file"]
        assert report.moved_to is not None and Path(report.moved_to).is_dir()
        assert (Path(report.moved_to) / "data.mdb").read_bytes().startswith(b"\x00garbage")
        with ProjectCache.open(settings=cache_settings, readonly=True) as cache:
            assert cache.verify().ok
