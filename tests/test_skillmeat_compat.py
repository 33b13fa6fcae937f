"""Agreement with SkillMeat 0.74.0's files (issue 14): deployment profiles, every artifact
type, ``[[mcp_servers]]``, the ``conflict`` and ``unknown-collection`` states, SkillMeat's
field precedence and times, project names, the schema-2 key migration, and the
compatibility page (docs/cache/skillmeat-compatibility.md).

The files written here have the shapes SkillMeat 0.74.0 writes (see
``tests/fixtures/skillmeat-0.74.0/``, copied from a real run); the interop test
(``tests/interop/``) drives the real SkillMeat.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lmdb
import orjson
import pytest
from typer.testing import CliRunner

import projcache
from projcache import ProjectCache, codec
from projcache.codec import ARTIFACT_TYPES, DEPLOYMENT_STATES
from projcache.config import Settings
from projcache.sources import content_hash
from projcache.sources.layout import LAYOUT
from projcache.storage import DATABASES
from projcache_cli import app

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
COMPAT_PAGE = ROOT / "docs" / "cache" / "skillmeat-compatibility.md"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


SKILL_MD = "---\nname: alpha\ndescription: Alpha on disk\nversion: 1.0.0\n---\n# Alpha\nBody.\n"


def deployed_entry(
    name: str,
    type_: str,
    path: str,
    digest: str,
    *,
    profile: str = "claude_code",
    root: str = ".claude",
    collection: str = "default",
    deployed_at: str = "2026-12-06T19:36:56.681604",
) -> str:
    """One ``[[deployed]]`` table as SkillMeat 0.74.0 writes it (Deployment.to_dict)."""
    return (
        f'[[deployed]]\nartifact_name = "{name}"\nartifact_type = "{type_}"\n'
        f'from_collection = "{collection}"\ndeployed_at = "{deployed_at}"\n'
        f'artifact_path = "{path}"\ncontent_hash = "{digest}"\nlocal_modifications = false\n'
        f'merge_base_snapshot = "{digest}"\ndeployment_profile_id = "{profile}"\n'
        f'platform = "{profile}"\nprofile_root_dir = "{root}"\ncollection_sha = "{digest}"\n\n'
    )


class World:
    """A collection and two projects as SkillMeat 0.74.0 leaves them after init/add/deploy."""

    def __init__(self, base: Path):
        self.collection = base / "collections" / "default"
        self.proj1 = base / "work" / "proj1"
        self.proj2 = base / "work" / "proj2"
        c = self.collection
        write(c / "skills" / "alpha" / "SKILL.md", SKILL_MD)
        write(c / "skills" / "alpha" / "ref.md", "ref\n")
        write(c / "commands" / "review.md", "---\ndescription: Review a PR\n---\nReview it.\n")
        write(c / "workflows" / "flow.js", 'console.log("x")\n')
        write(c / "gizmos" / "g1" / "GIZMO.md", "a gizmo from a newer SkillMeat\n")
        write(
            c / "collection.toml",
            '[collection]\nname = "default"\nversion = "1.0.0"\n'
            'created = "2026-12-06T19:36:00.682074"\nupdated = "2026-12-06T19:36:50.698362"\n\n'
            '[[artifacts]]\nname = "alpha"\ntype = "skill"\npath = "skills/alpha"\n'
            'origin = "local"\nadded = "2026-12-06T19:36:10.640707"\n'
            '[artifacts.metadata]\ndescription = "Alpha from the manifest"\nversion = "1.0.0"\n\n'
            '[[artifacts]]\nname = "review"\ntype = "command"\npath = "commands/review.md"\n'
            'origin = "local"\nadded = "2026-12-06T19:36:21.808890"\n'
            '[artifacts.metadata]\ndescription = "Review a PR"\n\n'
            '[[artifacts]]\nname = "flow"\ntype = "orchestration"\npath = "workflows/flow.js"\n'
            'origin = "local"\nadded = "2026-12-06T19:36:44.236564"\n\n'
            '[[artifacts]]\nname = "g1"\ntype = "gizmo"\npath = "gizmos/g1"\n'
            'origin = "local"\nadded = "2026-12-06T19:36:45.0"\n\n'
            '[[mcp_servers]]\nname = "fs"\nrepo = "anthropics/mcp-filesystem"\n'
            'version = "latest"\ndescription = "File system server"\n'
            '[mcp_servers.env_vars]\nROOT = "/very/secret/value"\n',
        )
        self.hashes = {
            "alpha": content_hash(str(c / "skills" / "alpha")),
            "review": content_hash(str(c / "commands" / "review.md")),
            "flow": content_hash(str(c / "workflows" / "flow.js")),
        }
        self.deploy(self.proj1, ".claude", "alpha", "skills/alpha", "skills/alpha")
        self.deploy(self.proj1, ".claude", "review", "commands/review.md", "commands/review.md")
        self.deploy(self.proj1, ".claude", "flow", "workflows/flow.js", "workflows/flow.js")
        self.deploy(self.proj1, ".agents", "alpha", "skills/alpha", "skills/alpha")
        self.deploy(self.proj2, ".agents", "alpha", "skills/alpha", "skills/alpha")
        write(self.proj1 / ".claude" / ".skillmeat-deployed.toml", self._records(".claude"))
        write(self.proj1 / ".agents" / ".skillmeat-deployed.toml", self._records(".agents", 1))
        write(self.proj2 / ".agents" / ".skillmeat-deployed.toml", self._records(".agents", 1))
        write(
            self.proj1 / ".skillmeat" / "manifest.toml",
            '[project]\nname = "Project One"\nuuid = "96c4a68e"\npath = "/x"\n'
            'created_at = "2026-12-06T19:36:05.862906"\n',
        )
        write(
            self.proj1 / ".claude" / ".skillmeat-project.toml",
            '[project]\npath = "/x"\nname = "proj1-in-claude"\n',
        )

    def deploy(self, project: Path, root: str, name: str, source: str, target: str) -> None:
        src, dst = self.collection / source, project / root / target
        if src.is_dir():
            for file in src.rglob("*"):
                if file.is_file():
                    write(dst / file.relative_to(src), file.read_text())
        else:
            write(dst, src.read_text())

    def _records(self, root: str, count: int = 3) -> str:
        profile = "claude_code" if root == ".claude" else "codex"
        rows = [
            ("alpha", "skill", "skills/alpha"),
            ("review", "command", "commands/review.md"),
            ("flow", "orchestration", "workflows/flow.js"),
        ][:count]
        return "".join(
            deployed_entry(n, t, p, self.hashes[n], profile=profile, root=root) for n, t, p in rows
        )

    def refresh(self, cache: ProjectCache) -> Any:
        return cache.refresh(collections=[self.collection], projects=[self.proj1, self.proj2])


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "w")


def states(cache: ProjectCache, **filters: Any) -> dict[tuple[str, str, str], str]:
    """``(project name, artifact key, profile) -> state`` of the listed deployments."""
    names = {p.id: p.name for p in cache.list_projects()}
    return {
        (names[d.project_id], d.artifact_key, d.profile): d.state
        for d in cache.list_deployments(**filters)
    }


# --- 1. deployment profiles ------------------------------------------------------------------


class TestProfiles:
    def test_every_profile_root_is_read_and_keyed_by_profile(
        self, cache: ProjectCache, world: World
    ) -> None:
        """.claude/ and .agents/ are both read; one artifact in two profiles is two deployments;
        a project deployed to codex alone is a project."""
        report = world.refresh(cache)
        assert report.ok, report.errors
        assert states(cache) == {
            ("Project One", "default/skill/alpha", "claude_code"): "current",
            ("Project One", "default/skill/alpha", "codex"): "current",
            ("Project One", "default/command/review", "claude_code"): "current",
            ("Project One", "default/orchestration/flow", "claude_code"): "current",
            ("proj2", "default/skill/alpha", "codex"): "current",
        }
        codex = cache.list_deployments(profile="codex")
        assert {(d.profile_root, d.platform, d.artifact_path) for d in codex} == {
            (".agents", "codex", "skills/alpha")
        }
        assert len(codex) == 2
        assert cache.verify(deep=True).ok

    def test_edited_codex_copy_is_modified_in_its_profile_only(
        self, cache: ProjectCache, world: World
    ) -> None:
        """SkillMeat: ``alpha::skill::codex Locally modified``; the .claude copy stays current."""
        world.refresh(cache)
        write(world.proj1 / ".agents" / "skills" / "alpha" / "SKILL.md", SKILL_MD + "local\n")
        world.refresh(cache)
        found = states(cache, project=str(world.proj1))
        assert found[("Project One", "default/skill/alpha", "codex")] == "modified"
        assert found[("Project One", "default/skill/alpha", "claude_code")] == "current"
        assert [d.profile for d in cache.list_deployments(state="modified")] == ["codex"]

    def test_refresh_accepts_a_codex_only_project_folder(
        self, cache: ProjectCache, world: World
    ) -> None:
        """A folder with only .agents/.skillmeat-deployed.toml is no longer "not a project"."""
        report = cache.refresh(collections=[world.collection], projects=[world.proj2])
        assert report.ok
        assert [p.name for p in cache.list_projects()] == ["proj2"]

    def test_discovery_finds_a_codex_only_project(self, tmp_path: Path, world: World) -> None:
        """Project roots searched by a plain refresh find the codex-only project too."""
        settings = Settings(
            cache_dir=tmp_path / "c",
            collection_roots=(str(world.collection.parent),),
            project_roots=(str(world.proj1.parent),),
        )
        with ProjectCache.open(settings=settings) as cache:
            cache.refresh()
            assert sorted(p.name for p in cache.list_projects()) == ["Project One", "proj2"]

    def test_cli_shows_and_filters_profiles(self, cache_settings: Settings, world: World) -> None:
        with ProjectCache.open(settings=cache_settings) as cache:
            world.refresh(cache)
        runner = CliRunner()
        base = ["--cache-dir", str(cache_settings.cache_dir), "list", "deployments"]
        table = runner.invoke(app, [*base, "--profile", "codex"])
        assert table.exit_code == 0, table.output
        assert "profile" in table.stdout and "codex" in table.stdout
        assert "claude_code" not in table.stdout
        assert "2 deployment(s)" in table.stdout
        rows = json.loads(runner.invoke(app, [*base, "--json"]).stdout)
        assert sorted((r["name"], r["profile"]) for r in rows) == [
            ("alpha", "claude_code"),
            ("alpha", "codex"),
            ("alpha", "codex"),
            ("flow", "claude_code"),
            ("review", "claude_code"),
        ]
        bad = runner.invoke(app, [*base, "--profile", "a/b"])
        assert bad.exit_code == 14  # InvalidArgumentError: a bad --profile filter

    def test_http_api_shows_and_filters_profiles(self, cache: ProjectCache, world: World) -> None:
        pytest.importorskip("fastapi")
        from fastapi.testclient import TestClient

        from projcache.server import create_app

        world.refresh(cache)
        with TestClient(create_app(cache), base_url="http://127.0.0.1:8765") as client:
            answer = client.get("/api/v1/cache/deployments", params={"profile": "codex"})
            assert answer.status_code == 200
            items = answer.json()["items"]
            assert [(i["name"], i["profile"], i["profile_root"]) for i in items] == [
                ("alpha", "codex", ".agents"),
                ("alpha", "codex", ".agents"),
            ]
            everything = client.get("/api/v1/cache/deployments").json()
            assert everything["total"] == 5
            assert client.get("/api/v1/cache/deployments?profile=a%2Fb").status_code == 422

    def test_web_page_lists_every_state_and_layout_type(self) -> None:
        """The page's filters offer every state (codec.DEPLOYMENT_STATES) and layout type."""
        static = Path(projcache.__file__).parent / "server" / "static"
        html = (static / "index.html").read_text()
        options = re.findall(r"<option>([^<]+)</option>", html)
        assert [o for o in options if o in DEPLOYMENT_STATES] == list(DEPLOYMENT_STATES)
        layout_types = list(dict.fromkeys(rule.type for rule in LAYOUT))
        assert [o for o in options if o not in DEPLOYMENT_STATES] == layout_types
        script = (static / "app.js").read_text()
        assert "d.profile" in script  # badges name non-default profiles
        css = (static / "app.css").read_text()
        for state in ("conflict", "unknown-collection"):
            assert f".badge.{state}" in css


# --- 2 and 3. every artifact type, [[mcp_servers]] -------------------------------------------


class TestTypes:
    def test_orchestration_and_a_future_type_never_fail_a_refresh(
        self, cache: ProjectCache, world: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        report = world.refresh(cache)
        assert report.ok, report.errors
        flow = cache.get_artifact("default/orchestration/flow")
        assert flow is not None and flow.content_hash == world.hashes["flow"]
        gizmo = cache.get_artifact("default/gizmo/g1")
        assert gizmo is not None and gizmo.type == "gizmo"
        assert [h.key for h in cache.search("g1", type="gizmo")] == ["default/gizmo/g1"]
        assert [a.key for a in cache.list_artifacts(type="gizmo")] == ["default/gizmo/g1"]
        assert "unknown to projcache" in caplog.text

    def test_every_skillmeat_type_is_a_valid_type(self, cache: ProjectCache) -> None:
        cache.put_artifacts([{"name": "x", "type": t, "collection": "c"} for t in ARTIFACT_TYPES])
        assert {a.type for a in cache.list_artifacts()} == set(ARTIFACT_TYPES)

    def test_layout_finds_orchestration_scripts_and_workflow_folders(self, tmp_path: Path) -> None:
        from projcache.sources.layout import find_by_layout

        write(tmp_path / "workflows" / "flow.ts", "x")
        write(tmp_path / "workflows" / "notes.txt", "not a script")
        write(tmp_path / "workflows" / "pipeline" / "WORKFLOW.yaml", "x")
        write(tmp_path / "workflows" / ".flow.ts.skillmeat-lock", "")
        write(tmp_path / "souls" / "calm.md", "x")
        write(tmp_path / "composites" / "kit" / "PLUGIN.md", "x")
        items, problems = find_by_layout(str(tmp_path))
        assert problems == []
        assert [(i.type, i.name, i.relative) for i in items] == [
            ("workflow", "pipeline", "workflows/pipeline"),
            ("orchestration", "flow", "workflows/flow.ts"),
            ("soul", "calm", "souls/calm.md"),
            ("composite", "kit", "composites/kit"),
        ]

    def test_mcp_servers_are_artifacts_without_secrets(
        self, cache: ProjectCache, world: World
    ) -> None:
        world.refresh(cache)
        fs = cache.get_artifact("default/mcp/fs")
        assert fs is not None
        assert (fs.type, fs.description, fs.upstream, fs.version) == (
            "mcp",
            "File system server",
            "anthropics/mcp-filesystem",
            "latest",
        )
        assert fs.front_matter["env_vars"] == ["ROOT"]
        assert b"/very/secret/value" not in (cache.get_artifact_json("default/mcp/fs") or b"")
        assert [h.key for h in cache.search("file system")] == ["default/mcp/fs"]
        assert [a.key for a in cache.list_artifacts(type="mcp")] == ["default/mcp/fs"]


# --- 4, 5 and 6. states, fields, times, names --------------------------------------------------


class TestStatesAndFields:
    def test_conflict_when_both_sides_changed(self, cache: ProjectCache, world: World) -> None:
        world.refresh(cache)
        write(world.collection / "skills" / "alpha" / "ref.md", "ref v2\n")
        write(world.proj1 / ".claude" / "skills" / "alpha" / "ref.md", "local ref\n")
        world.refresh(cache)
        found = states(cache)
        assert found[("Project One", "default/skill/alpha", "claude_code")] == "conflict"
        assert found[("Project One", "default/skill/alpha", "codex")] == "outdated"
        assert found[("proj2", "default/skill/alpha", "codex")] == "outdated"
        assert [d.artifact_key for d in cache.list_deployments(state="conflict")] == [
            "default/skill/alpha"
        ]
        assert cache.verify(deep=True).ok

    def test_deleted_deployed_file_is_missing(self, cache: ProjectCache, world: World) -> None:
        """SkillMeat says Synced; projcache keeps missing (documented in deployment_state.py)."""
        world.refresh(cache)
        (world.proj1 / ".claude" / "commands" / "review.md").unlink()
        world.refresh(cache)
        assert states(cache, state="missing") == {
            ("Project One", "default/command/review", "claude_code"): "missing"
        }
        import projcache.deployment_state as rule

        assert "Synced" in (rule.__doc__ or "")

    def test_manifest_metadata_beats_the_front_matter(
        self, cache: ProjectCache, world: World
    ) -> None:
        world.refresh(cache)
        alpha = cache.get_artifact("default/skill/alpha")
        assert alpha is not None
        assert alpha.description == "Alpha from the manifest"
        assert alpha.front_matter["description"] == "Alpha on disk"
        assert alpha.added_at == datetime(2026, 12, 6, 19, 36, 10, 640707, tzinfo=timezone.utc)

    @pytest.mark.skipif(not hasattr(time, "tzset"), reason="time.tzset is POSIX-only")
    def test_deployed_at_is_local_time(
        self, cache: ProjectCache, world: World, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9, no daylight saving
        time.tzset()
        try:
            world.refresh(cache)
        finally:
            monkeypatch.undo()
            time.tzset()
        deployment = cache.list_deployments(project=str(world.proj2))[0]
        # Written as 2026-12-06T19:36:56.681604 local (Tokyo) = 10:36:56 UTC.
        assert deployment.deployed_at == datetime(
            2026, 12, 6, 10, 36, 56, 681604, tzinfo=timezone.utc
        )

    def test_project_name_from_the_skillmeat_manifest(
        self, cache: ProjectCache, world: World
    ) -> None:
        world.refresh(cache)
        assert sorted(p.name for p in cache.list_projects()) == ["Project One", "proj2"]

    def test_deployment_from_a_collection_not_given(
        self, cache: ProjectCache, world: World
    ) -> None:
        """from_collection = "team" with only "default" given: unknown-collection, not missing;
        and a collection whose folder goes away leaves its deployments unknown-collection."""
        path = world.proj2 / ".agents" / ".skillmeat-deployed.toml"
        text = path.read_text() + deployed_entry(
            "beta", "skill", "skills/beta", "h", profile="codex", root=".agents", collection="team"
        )
        write(path, text)
        write(world.proj2 / ".agents" / "skills" / "beta" / "SKILL.md", "x")
        world.refresh(cache)
        found = states(cache, project=str(world.proj2))
        assert found[("proj2", "team/skill/beta", "codex")] == "unknown-collection"
        assert cache.verify(deep=True).ok
        import shutil

        shutil.rmtree(world.collection)
        report = cache.refresh()  # no roots configured: the known folders are re-checked
        assert report.collections_removed == 1
        assert set(states(cache).values()) == {"unknown-collection"}
        assert cache.verify(deep=True).ok


# --- the schema-2 -> 3 step ---------------------------------------------------------------------


class TestMigration:
    def test_schema2_cache_of_0_1_0_is_migrated(self, tmp_path: Path) -> None:
        """Opening the 0.1.0 cache (tests/fixtures/schema2) runs every schema 2 -> 3 step:
        each deployment gains the claude_code profile, keeps its state, and verify is clean."""
        from projcache.migrate_profiles import migrate_deployment_keys

        cache_dir = tmp_path / "v2"
        cache_dir.mkdir()
        (cache_dir / "data.mdb").write_bytes((FIXTURES / "schema2" / "data.mdb").read_bytes())
        old = lmdb.open(str(cache_dir), readonly=True, lock=False, max_dbs=32)
        try:
            with old.begin() as txn:
                db = old.open_db(b"deployments", txn=txn, create=False)
                before = {
                    bytes(k): orjson.loads(codec.unframe(bytes(v)))["state"]
                    for k, v in txn.cursor(db).iternext()
                }
        finally:
            old.close()
        assert before and all(k.count(b"\x00") == 1 for k in before)
        with ProjectCache.open(cache_dir) as cache:
            report = cache.verify(deep=True)
            assert report.ok, report.findings
            deployments = cache.list_deployments()
            after = {
                codec.deployment_key(d.project_id, d.artifact_key, d.profile): d.state
                for d in deployments
            }
            assert set(after) == {k + b"\x00claude_code" for k in before}
            # The state is decided again by today's rule: 0.1.0 said "modified" where both
            # copies had changed, which is now "conflict"; nothing else moves.
            for key, state in before.items():
                now = after[key + b"\x00claude_code"]
                assert now == state or (state, now) == ("modified", "conflict"), key
            assert {(d.profile, d.profile_root) for d in deployments} == {
                ("claude_code", ".claude")
            }
            storage = cache._storage  # type: ignore[attr-defined]
            assert storage.write(lambda txn: migrate_deployment_keys(txn, storage.dbs)) == 0

    def test_schema2_fixture_of_main_is_migrated(self, tmp_path: Path) -> None:
        """The step on tests/fixtures/schema2 (written by 0.1.0, search's v3 fixture),
        on the raw environment as a schema migration sees it."""
        from projcache import codec
        from projcache.migrate_profiles import migrate_deployment_keys
        from projcache.models import Deployment

        fixture = FIXTURES / "schema2" / "data.mdb"
        if not fixture.exists():  # pragma: no cover - only before search's fixture landed
            pytest.fail(f"{fixture} is missing")
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "data.mdb").write_bytes(fixture.read_bytes())
        env = lmdb.open(str(tmp_path / "c"), max_dbs=32, map_size=64 * 1024 * 1024)
        try:
            with env.begin(write=True) as txn:
                dbs = {
                    name: env.open_db(name.encode(), txn=txn, dupsort=dupsort)
                    for name, dupsort in DATABASES.items()
                }
                before = {bytes(k) for k, _v in txn.cursor(dbs["deployments"]).iternext()}
                assert before and all(k.count(b"\x00") == 1 for k in before)
                assert migrate_deployment_keys(txn, dbs) == len(before)
            with env.begin() as txn:
                after = {
                    bytes(k): Deployment.model_validate_json(codec.unframe(bytes(v)))
                    for k, v in txn.cursor(dbs["deployments"]).iternext()
                }
                assert set(after) == {k + b"\x00claude_code" for k in before}
                assert {d.profile for d in after.values()} == {"claude_code"}
                by_state = {
                    (bytes(k).decode(), bytes(v))
                    for k, v in txn.cursor(dbs["deployments-by-state"]).iternext()
                }
                assert by_state == {(d.state, k) for k, d in after.items()}
                by_artifact = {
                    (bytes(k).decode(), bytes(v))
                    for k, v in txn.cursor(dbs["deployments-by-artifact"]).iternext()
                }
                assert by_artifact == {
                    (d.artifact_key, d.project_id.encode() + b"\x00claude_code")
                    for d in after.values()
                }
        finally:
            env.close()


# --- the compatibility page ----------------------------------------------------------------------


def _page_fields() -> set[str]:
    """Field names the page's tables list (the last identifier of each row's first cell)."""
    fields = set()
    header = ""
    for line in COMPAT_PAGE.read_text().splitlines():
        if not line.startswith("|"):
            header = ""
            continue
        header = header or line
        match = re.match(r"^\| `([^`]+)` \|", line)
        if match and header.startswith("| field |"):
            fields.add(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", match.group(1))[-1])
    return fields


def _fixture_fields() -> set[str]:
    """Every key of the TOML files SkillMeat 0.74.0 wrote (tests/fixtures/skillmeat-0.74.0)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    keys: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                keys.add(str(key))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for path in (FIXTURES / "skillmeat-0.74.0").rglob("*"):
        if path.is_file():
            walk(tomllib.loads(path.read_text()))
    return keys


def _reader_fields() -> set[str]:
    """Field names the readers take from SkillMeat's files (``entry.get("...")`` and alike)."""
    sources = Path(projcache.__file__).parent / "sources"
    found: set[str] = set()
    for name in ("manifests.py", "artifacts.py"):
        text = (sources / name).read_text()
        found |= set(
            re.findall(r"(?:entry|info|project|server|meta|lock)\.get\(\"([a-z_]+)\"", text)
        )
    return found


class TestCompatibilityPage:
    # Keys of the fixtures that are not fields (tables, TOML keys inside free-form tables).
    NOT_FIELDS = frozenset(
        {"collection", "artifacts", "metadata", "lock", "entries", "deployed", "project",
         "mcp_servers", "env_vars_names", "ROOT", "frontmatter", "alpha::skill",
         "review::command", "helper::agent", "flow::orchestration"}
    )  # fmt: skip

    def test_every_field_read_or_written_is_on_the_page(self) -> None:
        fields = _page_fields()
        needed = (_fixture_fields() | _reader_fields()) - self.NOT_FIELDS
        # Inside [artifacts.metadata.extra]: the front matter SkillMeat copied (row "extra").
        needed -= {"name"} - fields
        missing = sorted(f for f in needed if f not in fields and f not in ("extra",))
        assert not missing, f"fields missing from {COMPAT_PAGE.name}: {missing}"

    def test_every_row_names_a_real_field(self) -> None:
        real = _fixture_fields() | _reader_fields()
        # Fields SkillMeat 0.74.0 writes only in cases the fixture run did not make (its
        # to_dict writes them when set), each checked against its source in the interop test.
        optional = {
            "upstream", "version_spec", "resolved_sha", "resolved_version", "last_updated",
            "tags", "discovered_at", "origin_source", "target_platforms", "import_id", "uuid",
            "title", "author", "license", "status", "installed_at", "fetched",
            "parent_hash", "last_modified_check", "modification_detected_at",
            "artifact_uuid", "branch_name", "tag_definitions", "groups", "created",
        }  # fmt: skip
        unknown = sorted(_page_fields() - real - optional)
        assert not unknown, f"rows naming no field SkillMeat writes or projcache reads: {unknown}"

    def test_every_artifact_type_and_state_is_on_the_page(self) -> None:
        text = COMPAT_PAGE.read_text()
        for rule in LAYOUT:
            assert f"| `{rule.type}` |" in text
        for state in DEPLOYMENT_STATES:
            assert f"`{state}`" in text
