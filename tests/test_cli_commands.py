"""Every CLI command on a cache that `projcache refresh` built from a copy of the shipped examples.

The examples hold collection ``default`` and projects ``webapp`` (deployment
``default/skill/code-review`` outdated, ``default/command/review-pr`` modified),
``api-service`` (two deployments missing) and ``notes`` (a plain ``.claude/``
folder whose artifacts are unmanaged, in collection ``@<project id>``).  The
collection holds ``agents/broken-agent.md`` with malformed front matter on
purpose, so every refresh that reads the collection exits 1.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import typer
from typer.testing import Result

import projcache
from clirun import runner
from factories import copy_examples
from projcache import ProjectCache
from projcache_cli import app, maintenance_cmd
from served import spawn_piped

EXAMPLES = Path(projcache.__file__).parent / "examples"
PROJECTS = ("webapp", "api-service", "notes")
# The artifacts and deployments the examples yield (README's demo shows the same counts).
ARTIFACTS = 14
DEPLOYMENTS = 13
COMMANDS = (
    "refresh",
    "show",
    "stats",
    "list artifacts",
    "list projects",
    "list deployments",
    "get",
    "search",
    "invalidate",
    "clear",
    "backup",
    "verify",
)


# -- fixtures and helpers ----------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("isolated_environment")


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A private copy of the shipped examples, every file dated an hour ago."""
    return copy_examples(tmp_path / "examples")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """Where the CLI keeps the cache of a test (not created yet)."""
    return tmp_path / "projcache"


def refresh_args(examples: Path) -> list[str]:
    """``refresh`` naming the example collection and the three example projects."""
    args = ["refresh", "--collection", str(examples / "collections" / "default")]
    for name in PROJECTS:
        args += ["--project", str(examples / "projects" / name)]
    return args


def cli(cache_dir: Path, *args: str, **kwargs: Any) -> Result:
    """Invoke the app with ``--cache-dir`` before the command, as the docs require."""
    return runner.invoke(app, ["--cache-dir", str(cache_dir), *args], **kwargs)


def as_json(result: Result) -> Any:
    """The command's stdout parsed as JSON."""
    return json.loads(result.stdout)


def broken_file(examples: Path) -> str:
    """The path of the malformed agent, as refresh reports it."""
    return str(examples / "collections" / "default" / "agents" / "broken-agent.md")


@pytest.fixture
def refreshed(examples: Path, cache_dir: Path) -> Path:
    """A cache refreshed from the examples through the CLI; returns its directory."""
    result = cli(cache_dir, *refresh_args(examples))
    assert result.exit_code == 1, result.output
    return cache_dir


@pytest.fixture
def project_ids(refreshed: Path) -> dict[str, str]:
    """Project name -> project id, as `list projects --json` reports them."""
    result = cli(refreshed, "list", "projects", "--json")
    assert result.exit_code == 0, result.output
    return {project["name"]: project["id"] for project in as_json(result)}


def stored_artifact(cache_dir: Path, key: str) -> dict[str, Any]:
    """The artifact record as the library returns it (the CLI must print exactly this)."""
    with ProjectCache.open(cache_dir, readonly=True) as cache:
        payload = cache.get_artifact_json(key)
    assert payload is not None
    record: dict[str, Any] = json.loads(payload)
    return record


def stored_keys(cache_dir: Path) -> list[str]:
    """Every artifact key in the cache, in the library's (key) order."""
    with ProjectCache.open(cache_dir, readonly=True) as cache:
        return [artifact.key for artifact in cache.list_artifacts()]


def counts(cache_dir: Path) -> dict[str, int]:
    """The record counts `show --json` reports."""
    result = cli(cache_dir, "show", "--json")
    assert result.exit_code == 0, result.output
    found: dict[str, int] = as_json(result)["counts"]
    return found


def error_lines(result: Result) -> list[str]:
    """The lines the command wrote to stderr."""
    return result.stderr.strip().splitlines()


def clean_env(home: Path) -> dict[str, str]:
    """The environment for a subprocess: no PROJCACHE_* variable, a private HOME."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PROJCACHE_") and name != "SKILLMEAT_ENABLE_CACHE"
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        PYTHONUNBUFFERED="1",
    )
    return env


def installed_script() -> str:
    """The `projcache` console script installed next to this interpreter."""
    script = shutil.which("projcache", path=os.path.dirname(sys.executable))
    assert script is not None, f"no projcache script next to {sys.executable}"
    return script


# -- refresh ---------------------------------------------------------------------------------


class TestRefresh:
    def test_first_refresh_reports_the_broken_file_and_exits_one(
        self, examples: Path, cache_dir: Path
    ) -> None:
        """A refresh with a malformed source exits 1, summary on stdout, `error:` on stderr."""
        result = cli(cache_dir, *refresh_args(examples))
        assert result.exit_code == 1
        assert result.stdout.startswith(
            "refreshed 1 collection(s), 3 project(s): 35 sources checked, 29 re-read; "
            f"artifacts {ARTIFACTS} added, 0 updated, 0 removed; "
            f"deployments {DEPLOYMENTS} added, 0 updated, 0 removed in "
        )
        assert len(result.stdout.splitlines()) == 1
        lines = error_lines(result)
        assert len(lines) == 1
        assert lines[0].startswith(f"error: {broken_file(examples)}: invalid YAML front matter")
        assert "Traceback" not in result.stderr

    def test_json_report_shape(self, examples: Path, cache_dir: Path) -> None:
        """--json prints the RefreshReport plus ok; errors name the broken file."""
        result = cli(cache_dir, *refresh_args(examples), "--json")
        assert result.exit_code == 1
        assert result.stderr == ""
        report = as_json(result)
        assert report["ok"] is False
        assert [error["path"] for error in report["errors"]] == [broken_file(examples)]
        assert report["errors"][0]["message"].startswith(broken_file(examples))
        assert {
            name: report[name]
            for name in (
                "collections_checked",
                "projects_checked",
                "collections_written",
                "projects_written",
                "artifacts_written",
                "artifacts_removed",
                "deployments_written",
                "deployments_removed",
            )
        } == {
            "collections_checked": 1,
            "projects_checked": 3,
            "collections_written": 1,
            "projects_written": 3,
            "artifacts_written": ARTIFACTS,
            "artifacts_removed": 0,
            "deployments_written": DEPLOYMENTS,
            "deployments_removed": 0,
        }
        assert report["sources_checked"] >= report["sources_changed"] > 0
        assert isinstance(report["duration_seconds"], float)
        assert isinstance(report["started_at"], str)

    @pytest.mark.parametrize("named", [False, True], ids=["cached", "named"])
    def test_second_refresh_rereads_only_the_broken_file(
        self, examples: Path, refreshed: Path, named: bool
    ) -> None:
        """Nothing changed on disk: only the failing source is read again, nothing is written."""
        args = refresh_args(examples) if named else ["refresh"]  # without: everything cached
        result = cli(refreshed, *args, "--json")
        assert result.exit_code == 1
        report = as_json(result)
        assert report["sources_changed"] == 1
        assert report["collections_checked"] == 1
        assert report["projects_checked"] == 3
        assert report["artifacts_written"] == report["deployments_written"] == 0
        assert report["projects_written"] == 0
        assert [error["path"] for error in report["errors"]] == [broken_file(examples)]

    def test_full_rereads_everything(self, refreshed: Path) -> None:
        """--full re-reads every source, as the first refresh did, and still writes nothing new."""
        result = cli(refreshed, "refresh", "--json", "--full")
        assert result.exit_code == 1
        report = as_json(result)
        assert report["sources_changed"] == 29
        assert report["artifacts_written"] == report["deployments_written"] == 0
        assert report["ok"] is False

    def test_fixing_the_broken_file_makes_refresh_succeed(
        self, examples: Path, refreshed: Path
    ) -> None:
        """Once the malformed file is fixed, refresh exits 0 and the error is gone from show."""
        Path(broken_file(examples)).write_text(
            "---\nname: broken-agent\ndescription: Fixed now.\n---\nBody.\n", encoding="utf-8"
        )
        result = cli(refreshed, "refresh")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        # The fixed agent was not cached before: added, not "written".
        assert "artifacts 1 added, 0 updated, 0 removed" in result.stdout
        assert as_json(cli(refreshed, "show", "--json"))["errors"] == []
        assert stored_artifact(refreshed, "default/agent/broken-agent")["description"] == (
            "Fixed now."
        )

    @pytest.mark.parametrize("option", ["--project", "--collection"])
    def test_folder_of_the_wrong_kind_exits_12_with_hint(
        self, tmp_path: Path, cache_dir: Path, option: str
    ) -> None:
        """A folder that is not a project (or collection) is exit 12, error + hint, no traceback."""
        plain = tmp_path / "plain"
        plain.mkdir()
        result = cli(cache_dir, "refresh", option, str(plain))
        assert result.exit_code == 12
        assert result.stdout == ""
        what = option.lstrip("-")
        lines = error_lines(result)
        assert lines[0] == f"error: {plain} is not a {what} folder"
        assert lines[1].startswith("hint: A ")
        assert len(lines) == 2
        assert "Traceback" not in result.stderr

    def test_missing_folder_exits_12(self, tmp_path: Path, cache_dir: Path) -> None:
        """A --project that does not exist is exit 12 naming it."""
        result = cli(cache_dir, "refresh", "--project", str(tmp_path / "nowhere"))
        assert result.exit_code == 12
        assert error_lines(result)[0] == f"error: {tmp_path / 'nowhere'}: no such directory"
        assert error_lines(result)[1].startswith("hint: ")

    def test_stale_rereads_only_the_invalidated_project(
        self, refreshed: Path, project_ids: dict[str, str]
    ) -> None:
        """After `invalidate --project webapp`, `refresh --stale` checks webapp alone."""
        marked = cli(refreshed, "invalidate", "--project", "webapp")
        assert marked.exit_code == 0, marked.output
        result = cli(refreshed, "refresh", "--stale", "--json")
        assert result.exit_code == 0, result.output  # the broken collection is not checked
        report = as_json(result)
        assert report["projects_checked"] == 1
        assert report["collections_checked"] == 0
        assert report["errors"] == []
        projects = {p["name"]: p for p in as_json(cli(refreshed, "list", "projects", "--json"))}
        assert projects["webapp"]["is_stale"] is False
        assert projects["webapp"]["id"] == project_ids["webapp"]

    def test_stale_with_nothing_stale_checks_nothing(self, refreshed: Path) -> None:
        """`refresh --stale` right after a refresh checks no collection and no project."""
        report = as_json(cli(refreshed, "refresh", "--stale", "--json"))
        assert report["projects_checked"] == report["collections_checked"] == 0


# -- show / stats --------------------------------------------------------------------------------


class TestShow:
    @pytest.mark.parametrize("command", ["show", "stats"])
    def test_human_output(self, examples: Path, refreshed: Path, command: str) -> None:
        """show/stats print location, counts, hit rate and the recorded error, on stdout."""
        result = cli(refreshed, command)
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        lines = result.stdout.splitlines()
        assert lines[0] == f"cache:        {refreshed}"
        for expected in (
            "collections:  1 (0 stale)",
            "projects:     3 (0 stale)",
            f"artifacts:    {ARTIFACTS}",
            f"deployments:  {DEPLOYMENTS}",
            "errors:       1",
        ):
            assert expected in lines
        assert any(line.startswith("hit rate:     ") for line in lines)
        assert lines[-1].startswith(f"  collection default: {broken_file(examples)}: invalid YAML")

    @pytest.mark.parametrize("command", ["show", "stats"])
    def test_json(self, examples: Path, refreshed: Path, command: str) -> None:
        """--json: counts, errors naming the broken file, and a hit_rate key."""
        result = cli(refreshed, command, "--json")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        data = as_json(result)
        assert data["cache_dir"] == str(refreshed)
        assert {k: data["counts"][k] for k in ("collections", "projects")} == {
            "collections": 1,
            "projects": 3,
        }
        assert data["counts"]["artifacts"] == ARTIFACTS
        assert data["counts"]["deployments"] == DEPLOYMENTS
        assert "hit_rate" in data
        assert data["stale_projects"] == data["stale_collections"] == 0
        assert [(e["kind"], e["name"], e["path"]) for e in data["errors"]] == [
            ("collection", "default", broken_file(examples))
        ]

    def test_show_and_stats_print_the_same(self, refreshed: Path) -> None:
        """stats is an alias of show."""
        show = as_json(cli(refreshed, "show", "--json"))
        stats = as_json(cli(refreshed, "stats", "--json"))
        assert show["counts"] == stats["counts"]
        assert show["errors"] == stats["errors"]


# -- list ------------------------------------------------------------------------------------


class TestListArtifacts:
    def test_json_lists_every_stored_artifact(self, refreshed: Path) -> None:
        """--json prints an array of the stored artifact records, in key order."""
        result = cli(refreshed, "list", "artifacts", "--json")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        records = as_json(result)
        assert isinstance(records, list)
        assert len(records) == ARTIFACTS
        assert [r["key"] for r in records] == stored_keys(refreshed)
        for record in records:
            assert {"key", "name", "type", "collection", "description", "managed"} <= set(record)
            assert record["key"] == f"{record['collection']}/{record['type']}/{record['name']}"
        assert records[0] == stored_artifact(refreshed, records[0]["key"])

    def test_human_table(self, refreshed: Path, project_ids: dict[str, str]) -> None:
        """The table has one row per artifact, local ones flagged, and a count line."""
        result = cli(refreshed, "list", "artifacts")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[-1] == f"{ARTIFACTS} artifact(s)"
        meeting = [line for line in lines if "skill/meeting-notes" in line]
        assert len(meeting) == 1
        # A project-only artifact shows its project's name, not the id in its key.
        assert meeting[0].startswith("notes \u203a skill/meeting-notes")
        assert project_ids["notes"] not in result.stdout
        assert "│ local" in meeting[0]
        pdf = next(line for line in lines if line.startswith("default/skill/pdf "))
        assert "2.0.1" in pdf
        assert "│ local" not in pdf

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (
                ["--type", "skill", "--collection", "default"],
                [
                    "default/skill/code-review",
                    "default/skill/frontend-design",
                    "default/skill/pdf",
                    "default/skill/xlsx",
                ],
            ),
            (
                ["--tag", "review"],
                [
                    "default/agent/security-auditor",
                    "default/command/review-pr",
                    "default/skill/code-review",
                ],
            ),
            (["--outdated"], ["default/skill/code-review"]),
            (["--state", "outdated"], ["default/skill/code-review"]),
            (["--state", "modified"], ["default/command/review-pr"]),
            # legacy-lint is missing from the collection: no artifact to list.
            (["--state", "missing"], ["default/command/test-plan"]),
            (["--collection", "nothing"], []),
        ],
    )
    def test_filters(self, refreshed: Path, args: list[str], expected: list[str]) -> None:
        """--type, --collection, --tag, --state and --outdated select the right artifacts."""
        result = cli(refreshed, "list", "artifacts", *args, "--json")
        assert result.exit_code == 0, result.output
        assert [r["key"] for r in as_json(result)] == expected

    @pytest.mark.parametrize("ref", ["name", "id", "path"])
    def test_project_filter(
        self, examples: Path, refreshed: Path, project_ids: dict[str, str], ref: str
    ) -> None:
        """--project (by name, id or path) keeps the artifacts deployed in that project."""
        value = {
            "name": "webapp",
            "id": project_ids["webapp"],
            "path": str(examples / "projects" / "webapp"),
        }[ref]
        result = cli(refreshed, "list", "artifacts", "--project", value, "--json")
        assert result.exit_code == 0, result.output
        assert [r["key"] for r in as_json(result)] == [
            f"@{project_ids['webapp']}/command/deploy-staging",
            "default/command/review-pr",
            "default/skill/code-review",
            "default/skill/frontend-design",
            "default/skill/pdf",
        ]

    def test_project_and_state_combine(self, refreshed: Path) -> None:
        """--project and --state together: api-service has no outdated deployment."""
        result = cli(
            refreshed, "list", "artifacts", "--project", "api-service", "--outdated", "--json"
        )
        assert result.exit_code == 0, result.output
        assert as_json(result) == []

    def test_local_artifacts_of_a_plain_project_are_unmanaged(
        self, refreshed: Path, project_ids: dict[str, str]
    ) -> None:
        """notes' artifacts live in collection @<project id> and are unmanaged."""
        collection = f"@{project_ids['notes']}"
        result = cli(refreshed, "list", "artifacts", "--collection", collection, "--json")
        assert result.exit_code == 0, result.output
        records = as_json(result)
        assert [r["key"] for r in records] == [
            f"{collection}/agent/researcher",
            f"{collection}/command/summarize",
            f"{collection}/skill/meeting-notes",
        ]
        assert all(r["managed"] is False and r["collection"] == collection for r in records)

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (["--type", "Bogus"], 14, "error: type must be a type name like one of "),
            (["--state", "bogus"], 14, "error: state must be one of "),
            (["--project", "nope"], 4, "error: no project 'nope' in the cache"),
        ],
    )
    def test_bad_filters(self, refreshed: Path, args: list[str], code: int, message: str) -> None:
        """A bad type or state is a usage error (2); an unknown project is not found (4)."""
        result = cli(refreshed, "list", "artifacts", *args)
        assert result.exit_code == code
        assert result.stdout == ""
        assert error_lines(result)[0].startswith(message)


class TestListProjects:
    def test_json(self, examples: Path, refreshed: Path) -> None:
        """--json: every project with errors, is_stale and its number of deployments."""
        result = cli(refreshed, "list", "projects", "--json")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        projects = {p["name"]: p for p in as_json(result)}
        assert set(projects) == set(PROJECTS)
        assert {name: p["deployments"] for name, p in projects.items()} == {
            "webapp": 5,
            "api-service": 5,
            "notes": 3,
        }
        for name, project in projects.items():
            assert project["errors"] == []
            assert project["is_stale"] is False
            assert project["stale"] is False
            assert project["path"] == str(examples / "projects" / name)
            assert project["expires_at"] > project["refreshed_at"]
            assert sum(project["states"].values()) == project["deployments"]
        assert projects["notes"]["managed"] is False
        assert projects["webapp"]["managed"] is True

    def test_human_table(self, refreshed: Path, project_ids: dict[str, str]) -> None:
        """The table names each project with its id; no errors means nothing on stderr."""
        result = cli(refreshed, "list", "projects")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        lines = result.stdout.splitlines()
        assert lines[-1] == "3 project(s)"
        for name, project_id in project_ids.items():
            assert any(line.startswith(f"{name} ") and project_id in line for line in lines)

    def test_invalidated_project_is_stale(self, refreshed: Path) -> None:
        """After `invalidate --project webapp` only webapp is stale."""
        assert cli(refreshed, "invalidate", "--project", "webapp").exit_code == 0
        projects = {p["name"]: p for p in as_json(cli(refreshed, "list", "projects", "--json"))}
        assert {name: p["is_stale"] for name, p in projects.items()} == {
            "webapp": True,
            "api-service": False,
            "notes": False,
        }


class TestListDeployments:
    def test_json_shape(self, refreshed: Path, project_ids: dict[str, str]) -> None:
        """Each object has string fields project, artifact, name, type and state at the top."""
        result = cli(refreshed, "list", "deployments", "--json")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        records = as_json(result)
        assert len(records) == DEPLOYMENTS
        for record in records:
            for field in ("project", "artifact", "name", "type", "state"):
                assert isinstance(record[field], str), (field, record)
            assert record["project"] == record["project_id"]
            assert record["artifact"] == record["artifact_key"]
            collection, type_, name = record["artifact"].split("/")
            assert (record["collection"], record["type"], record["name"]) == (
                collection,
                type_,
                name,
            )
        assert {r["project"] for r in records} == set(project_ids.values())

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["--outdated"], {("webapp", "default/skill/code-review")}),
            (["--state", "outdated"], {("webapp", "default/skill/code-review")}),
            (["--state", "modified"], {("webapp", "default/command/review-pr")}),
            (
                ["--state", "missing"],
                {
                    ("api-service", "default/command/legacy-lint"),
                    ("api-service", "default/command/test-plan"),
                },
            ),
            (
                ["--project", "api-service", "--state", "missing", "--type", "command"],
                {
                    ("api-service", "default/command/legacy-lint"),
                    ("api-service", "default/command/test-plan"),
                },
            ),
            (
                ["--project", "api-service", "--type", "agent"],
                {("api-service", "default/agent/security-auditor")},
            ),
        ],
    )
    def test_filters(
        self,
        refreshed: Path,
        project_ids: dict[str, str],
        args: list[str],
        expected: set[tuple[str, str]],
    ) -> None:
        """--state, --outdated, --project and --type select the expected deployments."""
        names = {project_id: name for name, project_id in project_ids.items()}
        result = cli(refreshed, "list", "deployments", *args, "--json")
        assert result.exit_code == 0, result.output
        assert {(names[r["project"]], r["artifact"]) for r in as_json(result)} == expected

    def test_type_filter(self, refreshed: Path) -> None:
        """--type skill keeps the five deployed skills."""
        result = cli(refreshed, "list", "deployments", "--type", "skill", "--json")
        assert result.exit_code == 0, result.output
        records = as_json(result)
        assert len(records) == 5
        assert {r["type"] for r in records} == {"skill"}

    @pytest.mark.parametrize("ref", ["name", "id", "path", "relative path"])
    def test_project_by_name_id_or_path(
        self,
        examples: Path,
        refreshed: Path,
        project_ids: dict[str, str],
        monkeypatch: pytest.MonkeyPatch,
        ref: str,
    ) -> None:
        """--project accepts the project's name, id, absolute or relative path."""
        monkeypatch.chdir(examples)
        value = {
            "name": "api-service",
            "id": project_ids["api-service"],
            "path": str(examples / "projects" / "api-service"),
            "relative path": os.path.join("projects", "api-service"),
        }[ref]
        result = cli(refreshed, "list", "deployments", "--project", value, "--json")
        assert result.exit_code == 0, result.output
        records = as_json(result)
        assert {r["project"] for r in records} == {project_ids["api-service"]}
        assert len(records) == 5

    def test_human_table(self, refreshed: Path) -> None:
        """The table names the project and the deployed version; a count line closes it."""
        result = cli(refreshed, "list", "deployments", "--outdated")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        lines = result.stdout.splitlines()
        assert lines[-1] == "1 deployment(s)"
        row = lines[-2].split()
        assert row[0] == "webapp"
        assert "default/skill/code-review" in row
        assert "outdated" in row
        assert "1.1.0" in row

    @pytest.mark.parametrize(
        ("args", "code"),
        [
            (["--state", "bogus"], 14),
            (["--type", "Bogus!"], 14),
            (["--project", "nope"], 4),
        ],
    )
    def test_bad_arguments(self, refreshed: Path, args: list[str], code: int) -> None:
        """A bad state or type exits 14 (InvalidArgumentError), an unknown project 4."""
        result = cli(refreshed, "list", "deployments", *args)
        assert result.exit_code == code
        assert result.stdout == ""
        assert error_lines(result)[0].startswith("error: ")
        assert "Traceback" not in result.stderr


# -- get / search ----------------------------------------------------------------------------


class TestGet:
    def test_json_is_the_stored_record(self, refreshed: Path) -> None:
        """get --json prints exactly the stored record, one line."""
        result = cli(refreshed, "get", "default/skill/pdf", "--json")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        assert len(result.stdout.splitlines()) == 1
        assert as_json(result) == stored_artifact(refreshed, "default/skill/pdf")

    def test_human(self, refreshed: Path) -> None:
        """get prints labelled fields of the artifact."""
        result = cli(refreshed, "get", "default/skill/pdf")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        lines = result.stdout.splitlines()
        assert lines[0] == "key:              default/skill/pdf"
        assert "type:             skill" in lines
        assert "version:          2.0.1" in lines
        assert "tags:             pdf, documents" in lines
        assert "managed:          yes" in lines
        assert lines[-1].startswith("deployed:         webapp (current)")

    def test_local_artifact_is_unmanaged(
        self, refreshed: Path, project_ids: dict[str, str]
    ) -> None:
        """A local artifact of the plain `notes` project shows managed: no."""
        key = f"@{project_ids['notes']}/skill/meeting-notes"
        result = cli(refreshed, "get", key)
        assert result.exit_code == 0, result.output
        assert "managed:          no" in result.stdout.splitlines()
        assert as_json(cli(refreshed, "get", key, "--json"))["managed"] is False

    def test_unknown_key_exits_4_with_hint(self, refreshed: Path) -> None:
        """An unknown, well-formed key is exit 4 with error and hint."""
        result = cli(refreshed, "get", "default/skill/nope", "--json")
        assert result.exit_code == 4
        assert result.stdout == ""
        lines = error_lines(result)
        assert lines == [
            "error: no artifact 'default/skill/nope' in the cache",
            "hint: Run `projcache list artifacts` to see the keys, or refresh the cache.",
        ]

    @pytest.mark.parametrize("key", ["Bad/key", "default/Bogus/pdf", "a/b/c/d", "default//pdf"])
    def test_malformed_key_exits_14(self, refreshed: Path, key: str) -> None:
        """A key that is not <collection>/<type>/<name> (nor <type>/<name>) is a bad argument."""
        result = cli(refreshed, "get", key)
        assert result.exit_code == 14
        assert result.stdout == ""
        assert error_lines(result)[0].startswith("error: ")
        assert "Traceback" not in result.stderr


class TestSearch:
    def test_json_shape(self, refreshed: Path) -> None:
        """--json: {items, query, total, partial, limit, offset}; an item is record + score."""
        result = cli(refreshed, "search", "pdf", "--json")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        data = as_json(result)
        assert set(data) == {"query", "total", "partial", "limit", "offset", "items"}
        assert data["partial"] == 0
        assert (data["query"], data["total"], data["limit"], data["offset"]) == ("pdf", 1, 20, 0)
        [hit] = data["items"]
        assert (hit["key"], hit["name"], hit["type"]) == ("default/skill/pdf", "pdf", "skill")
        assert isinstance(hit["score"], float)
        assert hit["score"] > 0
        record = dict(hit)
        del record["score"]
        assert record == stored_artifact(refreshed, "default/skill/pdf")

    def test_type_filter(self, refreshed: Path) -> None:
        """--type keeps hits of that type only."""
        everything = as_json(cli(refreshed, "search", "review", "--json"))
        assert everything["total"] == 3
        result = cli(refreshed, "search", "review", "--type", "skill", "--json")
        assert result.exit_code == 0, result.output
        data = as_json(result)
        assert [hit["key"] for hit in data["items"]] == ["default/skill/code-review"]
        assert data["total"] == 1

    @pytest.mark.parametrize("project", ["webapp", "api-service"])
    def test_project_filter(self, refreshed: Path, project: str) -> None:
        """--project keeps hits deployed in that project."""
        result = cli(refreshed, "search", "review", "--project", project, "--json")
        assert result.exit_code == 0, result.output
        expected = {
            "webapp": {"default/skill/code-review", "default/command/review-pr"},
            "api-service": {"default/agent/security-auditor"},
        }[project]
        assert {hit["key"] for hit in as_json(result)["items"]} == expected

    def test_limit_and_offset_page_through_the_total(self, refreshed: Path) -> None:
        """--limit caps the hits, total counts all matches, --offset skips."""
        everything = as_json(cli(refreshed, "search", "review", "--json"))
        keys = [hit["key"] for hit in everything["items"]]
        first = as_json(cli(refreshed, "search", "review", "--limit", "1", "--json"))
        assert first["total"] == 3
        assert [hit["key"] for hit in first["items"]] == keys[:1]
        second = as_json(
            cli(refreshed, "search", "review", "--limit", "1", "--offset", "1", "--json")
        )
        assert (second["offset"], second["total"]) == (1, 3)
        assert [hit["key"] for hit in second["items"]] == keys[1:2]

    def test_human(self, refreshed: Path) -> None:
        """Without --json: a table and 'N of M match(es)'; no match is not an error."""
        result = cli(refreshed, "search", "review", "--limit", "2")
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[-1] == "2 of 3 match(es)"
        none = cli(refreshed, "search", "zzzzzz")
        assert none.exit_code == 0
        assert none.stdout == "no artifacts match 'zzzzzz'\n"

    @pytest.mark.parametrize("args", [["--offset", "5"], ["--limit", "0"]])
    def test_empty_page_does_not_claim_that_nothing_matches(
        self, refreshed: Path, args: list[str]
    ) -> None:
        """A page past the last hit (or of size 0) still reports the 3 matches, not 'no match'."""
        result = cli(refreshed, "search", "review", *args)
        assert result.exit_code == 0, result.output
        assert "no artifacts match" not in result.stdout
        assert "of 3 match(es)" in result.stdout

    @pytest.mark.parametrize("query", ["", "   "])
    def test_empty_query_exits_2(self, refreshed: Path, query: str) -> None:
        """An empty query is a usage error."""
        result = cli(refreshed, "search", query, "--json")
        assert result.exit_code == 2
        assert result.stdout == ""
        assert error_lines(result) == ["error: the query is empty"]

    def test_bad_type_and_unknown_project(self, refreshed: Path) -> None:
        """A bad --type is exit 14 (InvalidArgumentError), an unknown --project exit 4."""
        assert cli(refreshed, "search", "pdf", "--type", "Bogus!").exit_code == 14
        unknown = cli(refreshed, "search", "pdf", "--project", "nope")
        assert unknown.exit_code == 4
        assert error_lines(unknown)[0] == "error: no project 'nope' in the cache"


# -- maintenance -------------------------------------------------------------------------------


class TestInvalidate:
    def test_everything(self, refreshed: Path) -> None:
        """Without options every project and collection is marked stale; data stays readable."""
        result = cli(refreshed, "invalidate", "--json")
        assert result.exit_code == 0, result.output
        assert as_json(result) == {"invalidated": 4}
        data = as_json(cli(refreshed, "show", "--json"))
        assert (data["stale_projects"], data["stale_collections"]) == (3, 1)
        assert data["counts"]["artifacts"] == ARTIFACTS

    def test_one_project_human(self, refreshed: Path) -> None:
        """--project marks one project and says how to re-read it."""
        result = cli(refreshed, "invalidate", "--project", "webapp")
        assert result.exit_code == 0, result.output
        assert result.stdout == "marked 1 stale; `projcache refresh --stale` re-reads them\n"
        assert result.stderr == ""

    def test_one_collection(self, refreshed: Path) -> None:
        """--collection marks that collection only."""
        result = cli(refreshed, "invalidate", "--collection", "default", "--json")
        assert result.exit_code == 0, result.output
        assert as_json(result) == {"invalidated": 1}
        data = as_json(cli(refreshed, "show", "--json"))
        assert (data["stale_projects"], data["stale_collections"]) == (0, 1)

    @pytest.mark.parametrize(
        ("option", "message"),
        [
            ("--collection", "error: no collection 'nope' in the cache"),
            ("--project", "error: no project 'nope' in the cache"),
        ],
    )
    def test_unknown_exits_4(self, refreshed: Path, option: str, message: str) -> None:
        """An unknown collection or project is exit 4 with error and hint; nothing is marked."""
        result = cli(refreshed, "invalidate", option, "nope")
        assert result.exit_code == 4
        assert result.stdout == ""
        lines = error_lines(result)
        assert lines[0] == message
        assert lines[1].startswith("hint: Run `projcache ")
        data = as_json(cli(refreshed, "show", "--json"))
        assert (data["stale_projects"], data["stale_collections"]) == (0, 0)


class TestClear:
    def test_without_yes_off_a_terminal_refuses(self, refreshed: Path) -> None:
        """Without --yes and no terminal: exit 2, nothing removed."""
        result = cli(refreshed, "clear")
        assert result.exit_code == 2
        assert result.stdout == ""
        assert error_lines(result) == ["error: clear needs --yes when not run from a terminal"]
        assert counts(refreshed)["artifacts"] == ARTIFACTS

    def test_yes_empties_the_cache(self, refreshed: Path) -> None:
        """clear --yes removes every record."""
        result = cli(refreshed, "clear", "--yes")
        assert result.exit_code == 0, result.output
        assert result.stdout == f"cleared {refreshed.resolve()}\n"
        assert result.stderr == ""
        found = counts(refreshed)
        assert {k: found[k] for k in ("collections", "projects", "artifacts", "deployments")} == {
            "collections": 0,
            "projects": 0,
            "artifacts": 0,
            "deployments": 0,
        }
        assert as_json(cli(refreshed, "list", "artifacts", "--json")) == []
        assert cli(refreshed, "get", "default/skill/pdf").exit_code == 4

    @pytest.mark.parametrize(("answer", "code", "left"), [("n\n", 2, ARTIFACTS), ("y\n", 0, 0)])
    def test_on_a_terminal_it_asks(
        self,
        refreshed: Path,
        monkeypatch: pytest.MonkeyPatch,
        answer: str,
        code: int,
        left: int,
    ) -> None:
        """On a terminal clear asks first; 'n' cancels (exit 2), 'y' clears."""
        monkeypatch.setattr(maintenance_cmd, "is_terminal", lambda stream=None: True)
        result = cli(refreshed, "clear", input=answer)
        assert result.exit_code == code, result.output
        assert "Remove every record from the cache?" in result.stdout
        assert counts(refreshed)["artifacts"] == left


class TestBackup:
    def test_copy_opens_with_the_same_artifacts(self, refreshed: Path, tmp_path: Path) -> None:
        """backup DEST writes a cache that ProjectCache opens, holding the same artifacts."""
        dest = tmp_path / "backup"
        result = cli(refreshed, "backup", str(dest))
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        assert result.stdout.startswith(f"backed up to {dest} (")
        assert stored_keys(dest) == stored_keys(refreshed)
        assert len(stored_keys(dest)) == ARTIFACTS
        assert stored_artifact(dest, "default/skill/pdf") == stored_artifact(
            refreshed, "default/skill/pdf"
        )
        with ProjectCache.open(dest, readonly=True) as copy:
            assert {p.name for p in copy.list_projects()} == set(PROJECTS)

    def test_json(self, refreshed: Path, tmp_path: Path) -> None:
        """backup --json names the copy and its size."""
        dest = tmp_path / "backup"
        result = cli(refreshed, "backup", str(dest), "--no-compact", "--json")
        assert result.exit_code == 0, result.output
        data = as_json(result)
        assert data == {"backup": str(dest), "bytes": (dest / "data.mdb").stat().st_size}
        assert data["bytes"] > 0

    def test_into_a_directory_holding_a_cache_exits_14(
        self, refreshed: Path, tmp_path: Path
    ) -> None:
        """A destination that is not empty (a cache in it) is refused (exit 14) and left alone."""
        dest = tmp_path / "backup"
        assert cli(refreshed, "backup", str(dest)).exit_code == 0
        before = (dest / "data.mdb").read_bytes()
        for target in (dest, refreshed):
            result = cli(refreshed, "backup", str(target))
            assert result.exit_code == 14
            assert result.stdout == ""
            assert error_lines(result)[0] == (
                f"error: {target} is not empty; backup writes into an empty or new folder"
            )
        assert (dest / "data.mdb").read_bytes() == before


class TestVerify:
    def test_refreshed_cache_is_clean(self, refreshed: Path) -> None:
        """verify on a cache built by refresh finds nothing and exits 0."""
        result = cli(refreshed, "verify")
        assert result.exit_code == 0, result.stdout
        assert result.stdout.strip().endswith("ok")
        report = as_json(cli(refreshed, "verify", "--json"))
        assert report["ok"] is True
        assert report["findings"] == []

    def test_repair_keeps_the_fingerprints(self, examples: Path, refreshed: Path) -> None:
        """verify --repair on a healthy cache deletes nothing: refresh stays incremental."""
        repaired = cli(refreshed, "verify", "--repair", "--json")
        assert repaired.exit_code == 0, repaired.stdout
        report = as_json(cli(refreshed, "refresh", "--json"))
        assert report["sources_changed"] == 1


# -- errors ------------------------------------------------------------------------------------


class TestNoCache:
    @pytest.mark.parametrize(
        "args",
        [
            ["show"],
            ["stats", "--json"],
            ["list", "artifacts"],
            ["list", "projects", "--json"],
            ["list", "deployments"],
            ["get", "default/skill/pdf", "--json"],
            ["search", "pdf"],
            ["verify"],
            ["backup", "DEST"],
        ],
        ids=lambda args: " ".join(args),
    )
    def test_read_commands_exit_5_with_hint(self, tmp_path: Path, args: list[str]) -> None:
        """A read command on a directory without a cache: exit 5, error + hint, nothing made."""
        missing = tmp_path / "none"
        args = [str(tmp_path / "dest") if a == "DEST" else a for a in args]
        result = cli(missing, *args)
        assert result.exit_code == 5
        assert result.stdout == ""
        assert error_lines(result) == [
            f"error: no cache in {missing}",
            "hint: Run `projcache refresh` to create the cache, or check --cache-dir.",
        ]
        assert not missing.exists()
        assert not (tmp_path / "dest").exists()


class TestDebug:
    COMMAND = (sys.executable, "-m", "projcache_cli", "--cache-dir")

    def _run(self, tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
        # A subprocess: in-process, pytest's log handlers swallow what --debug logs.
        return subprocess.run(
            [*self.COMMAND, str(tmp_path / "none"), *options, "get", "default/skill/pdf"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=clean_env(tmp_path / "home"),
            timeout=60,
        )

    def test_debug_prints_the_traceback(self, tmp_path: Path) -> None:
        """--debug logs the failure with its traceback, then the usual error and hint."""
        result = self._run(tmp_path, "--debug")
        assert result.returncode == 5
        assert result.stdout == ""
        assert "Traceback (most recent call last)" in result.stderr
        assert "CacheNotFoundError: no cache in" in result.stderr
        assert result.stderr.strip().splitlines()[-2] == f"error: no cache in {tmp_path / 'none'}"

    def test_without_debug_no_traceback(self, tmp_path: Path) -> None:
        """Without --debug the error is two lines and no traceback."""
        result = self._run(tmp_path)
        assert result.returncode == 5
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 2

    def test_debug_in_process_logs_the_exception(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """In process, --debug hands the exception with its traceback to logging."""
        result = runner.invoke(
            app, ["--cache-dir", str(tmp_path / "none"), "--debug", "list", "projects"]
        )
        assert result.exit_code == 5
        failed = [r for r in caplog.records if r.name == "projcache_cli.errors"]
        assert failed
        assert failed[0].exc_info is not None


# -- embedding, scripts, help --------------------------------------------------------------------


class TestMount:
    @pytest.fixture
    def host(self) -> typer.Typer:
        """A host CLI with a command of its own and the projcache app mounted as `cache`."""
        host = typer.Typer()

        @host.command()
        def hello() -> None:
            """A command of the host itself."""
            typer.echo("hello")

        host.add_typer(app, name="cache")
        return host

    def test_commands_work_under_the_host(self, host: typer.Typer, refreshed: Path) -> None:
        """`host cache --cache-dir X show`, `verify` and `clear --yes` behave as on their own."""
        shown = runner.invoke(host, ["cache", "--cache-dir", str(refreshed), "show", "--json"])
        assert shown.exit_code == 0, shown.output
        assert as_json(shown)["counts"]["artifacts"] == ARTIFACTS
        # The environment variable works as well as the option when mounted.
        env = {"PROJCACHE_DIR": str(refreshed)}
        verified = runner.invoke(host, ["cache", "verify"], env=env)
        assert verified.exit_code == 0, verified.output
        assert verified.stdout.strip().endswith("ok")
        cleared = runner.invoke(host, ["cache", "clear", "--yes"], env=env)
        assert cleared.exit_code == 0, cleared.output
        assert cleared.stdout == f"cleared {refreshed.resolve()}\n"
        assert counts(refreshed)["artifacts"] == 0
        assert runner.invoke(host, ["hello"]).stdout == "hello\n"

    def test_errors_keep_their_exit_codes(self, host: typer.Typer, tmp_path: Path) -> None:
        """A projcache error under the host still exits with its code and prints error + hint."""
        result = runner.invoke(host, ["cache", "--cache-dir", str(tmp_path / "none"), "show"])
        assert result.exit_code == 5
        assert error_lines(result)[0] == f"error: no cache in {tmp_path / 'none'}"


class TestInstalledScript:
    def test_version_and_get_json(self, refreshed: Path, tmp_path: Path) -> None:
        """The console script prints the version and the stored record of `get --json`."""
        script = installed_script()
        env = clean_env(tmp_path / "home")
        version = subprocess.run(
            [script, "--version"], capture_output=True, text=True, env=env, timeout=60
        )
        assert version.returncode == 0, version.stderr
        assert version.stdout == f"projcache {projcache.__version__}\n"
        got = subprocess.run(
            [script, "--cache-dir", str(refreshed), "get", "--json", "default/skill/pdf"],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert got.returncode == 0, got.stderr
        assert got.stderr == ""
        assert json.loads(got.stdout) == stored_artifact(refreshed, "default/skill/pdf")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    """`COMMAND --help` exits 0 with usage and a description."""
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    assert len(result.stdout.strip().splitlines()) > 3


# -- refresh --watch -----------------------------------------------------------------------------

# Run the app with Python's SIGINT handler installed: a child started from a shell
# background job (as some CI runners do) inherits SIGINT as ignored, and then
# Ctrl-C would never reach `refresh --watch`.
_LAUNCH = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from projcache_cli import main; sys.argv[0] = 'projcache'; main()"
)


class Watch:
    """A `refresh --watch` subprocess whose stdout and stderr lines are read by two threads."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = spawn_piped(args, env)
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        self.threads = [
            threading.Thread(target=self._pump, args=(stream, into), daemon=True)
            for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _pump(stream: IO[str], into: queue.Queue[str]) -> None:
        for line in stream:
            into.put(line)

    @staticmethod
    def next_line(lines: queue.Queue[str], deadline: float) -> str:
        """The next line, waiting at most until ``deadline`` (queue.Empty after)."""
        return lines.get(timeout=max(0.01, deadline - time.monotonic()))

    def finish(self) -> None:
        """Kill the process if it still runs, reap it, read what is left, close the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for thread in self.threads:
            thread.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def watcher(examples: Path, cache_dir: Path, tmp_path: Path) -> Iterator[Watch]:
    """`refresh --watch --json` on the examples in a subprocess; always reaped."""
    command = [sys.executable, "-c", _LAUNCH, "--cache-dir", str(cache_dir)]
    watch = Watch(
        [*command, *refresh_args(examples), "--watch", "--json"], clean_env(tmp_path / "home")
    )
    try:
        yield watch
    finally:
        watch.finish()


def test_watch_refreshes_on_change_until_interrupted(
    watcher: Watch, examples: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """--watch re-reads a changed SKILL.md (another process sees it) and exits 0 on Ctrl-C."""
    deadline = time.monotonic() + 30
    first = json.loads(watcher.next_line(watcher.out, deadline))
    assert first["ok"] is False
    assert first["artifacts_written"] == ARTIFACTS
    # With --json the errors are in the report, not on stderr.
    assert watcher.next_line(watcher.err, deadline) == (
        "watching for changes; press Ctrl-C to stop\n"
    )

    skill = examples / "collections" / "default" / "skills" / "pdf" / "SKILL.md"
    text = skill.read_text(encoding="utf-8")
    old = "Extract text and tables from PDF files, fill PDF forms, merge and split documents."
    assert old in text
    new = "Now rewritten by the watch test."
    get = [installed_script(), "--cache-dir", str(cache_dir), "get", "--json", "default/skill/pdf"]
    env = clean_env(tmp_path / "home")
    staged = tmp_path / "SKILL.md"
    description = None
    written_at = 0.0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # "watching" is printed before watchfiles is armed: write again until a refresh sees it.
        if time.monotonic() - written_at > 1.0:
            # Atomically (write aside, then rename), so no refresh reads a half-written file.
            staged.write_text(text.replace(old, new), encoding="utf-8")
            os.replace(staged, skill)
            written_at = time.monotonic()
        got = subprocess.run(
            get, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=30
        )
        assert got.returncode == 0, got.stderr
        description = json.loads(got.stdout)["description"]
        if description == new:
            break
        time.sleep(0.1)
    assert description == new
    report = json.loads(watcher.next_line(watcher.out, time.monotonic() + 10))
    assert (report["collections_checked"], report["projects_checked"]) == (1, 0)

    watcher.proc.send_signal(signal.SIGINT)
    assert watcher.proc.wait(timeout=15) == 0
    watcher.finish()
    rest = []
    while not watcher.err.empty():
        rest.append(watcher.err.get())
    assert rest == ["stopped\n"]
