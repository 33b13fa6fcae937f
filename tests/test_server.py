"""The HTTP server (``projcache.server``, ``projcache serve``) over caches built by real refreshes.

Most tests drive the FastAPI application in process with its ``TestClient``
(inside ``with``, so the lifespan starts and stops the refresh worker and the
background refresher) over a cache refreshed from a copy of the shipped
examples: collection ``default`` (with the malformed ``agents/broken-agent.md``),
projects ``webapp`` (``default/skill/code-review`` outdated,
``default/command/review-pr`` modified), ``api-service`` (two deployments
missing) and ``notes`` (unmanaged artifacts only).  Answers are compared with
what the library and the CLI's ``--json`` output say about the same cache.
A few tests run uvicorn for real: in a thread, and ``projcache serve`` in a
subprocess.
"""

from __future__ import annotations

import builtins
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urljoin

import httpx
import orjson
import pytest
from pydantic import BaseModel
from typer.testing import Result

import projcache
from children import wait_for
from clirun import runner
from factories import CollectionBuilder, ProjectBuilder, age, copy_examples
from projcache import ProjectCache
from projcache.config import Settings
from projcache.errors import (
    ArtifactNotFound,
    CacheBusyError,
    CacheCorruptError,
    CacheFullError,
    CachePermissionError,
    ConfigError,
    DiskFullError,
    InvalidRecordError,
    KeyTooLongError,
    NotFoundError,
    ProjcacheError,
    ProjectNotFound,
    ReadOnlyCacheError,
    ServerError,
    SourceFileError,
    StorageError,
)
from projcache.models import RefreshReport
from projcache.server import ServerOptions, check_bind, create_app, serve
from projcache.server.app import API_PREFIX, error_status
from projcache.server.bodies import (
    DEPLOYMENT_FIELDS,
    ArtifactDetail,
    ArtifactPage,
    DeploymentItem,
    DeploymentPage,
    ProjectDetail,
    ProjectPage,
    RefreshJob,
    RefreshRequest,
    SearchPage,
    StatusBody,
)
from projcache.server.jobs import RefreshJobs
from projcache.server.refresher import BackgroundRefresher
from projcache.server.run import is_loopback
from projcache_cli import app as cli_app
from served import spawn_piped

with warnings.catch_warnings():
    # Starlette >= 1.x prefers httpx2 for its TestClient and warns when it finds only httpx
    # (which the `test` extra installs); the client works the same with either.
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from fastapi.testclient import TestClient

API = API_PREFIX
# The server answers only for its own Host (DNS rebinding): the test client says it is it.
BASE_URL = "http://127.0.0.1:8765"
# A POST that changes the cache must be JSON (CSRF), even without a body.
JSON_BODY = {"Content-Type": "application/json"}
EXAMPLES = Path(projcache.__file__).parent / "examples"
PROJECTS = ("webapp", "api-service", "notes")
ARTIFACTS = 14
DEPLOYMENTS = 13
BROKEN = ("collections", "default", "agents", "broken-agent.md")


# -- fixtures and helpers ----------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("isolated_environment")


def refresh_examples(cache: ProjectCache, examples: Path) -> RefreshReport:
    """Refresh the example collection and the three example projects."""
    return cache.refresh(
        collections=[examples / "collections" / "default"],
        projects=[examples / "projects" / name for name in PROJECTS],
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One copy of the examples per module and a (closed) cache refreshed from it."""
    root = tmp_path_factory.mktemp("template")
    examples = copy_examples(root / "examples")
    with ProjectCache.open(settings=Settings(cache_dir=root / "cache")) as cache:
        refresh_examples(cache, examples)
    return examples, root / "cache"


@pytest.fixture
def editable(tmp_path: Path) -> Path:
    """A private copy of the examples that the test may change (``filled`` is then built on it)."""
    return copy_examples(tmp_path / "examples")


@pytest.fixture
def examples(request: pytest.FixtureRequest, template: tuple[Path, Path]) -> Path:
    """The examples ``filled`` is built on: shared (read only) unless the test uses ``editable``."""
    if "editable" in request.fixturenames:
        path: Path = request.getfixturevalue("editable")
        return path
    return template[0]


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """Where the cache of a test lives."""
    return tmp_path / "cache"


@pytest.fixture
def filled(cache_dir: Path, examples: Path, template: tuple[Path, Path]) -> Iterator[ProjectCache]:
    """A read-write cache refreshed from ``examples`` (configured roots: none), closed after.

    Over the shared examples it is a copy of the module's template cache (a
    closed LMDB file copies safely); over ``editable`` it is refreshed anew.
    """
    cache_dir.mkdir(mode=0o700)
    if examples == template[0]:
        shutil.copyfile(template[1] / "data.mdb", cache_dir / "data.mdb")
    with ProjectCache.open(settings=Settings(cache_dir=cache_dir)) as cache:
        if examples != template[0]:
            refresh_examples(cache, examples)
        yield cache


@pytest.fixture
def client(filled: ProjectCache) -> Iterator[TestClient]:
    """A client of the application over ``filled``, its lifespan running."""
    with make_client(create_app(filled)) as test_client:
        yield test_client


def make_client(app: Any, **kwargs: Any) -> TestClient:
    """A test client that sends the Host of a server bound to 127.0.0.1:8765."""
    return TestClient(app, base_url=BASE_URL, **kwargs)


def finished(client: TestClient, job_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """Poll ``GET refresh/{job}`` until the job is done or failed; return its last answer."""
    seen: dict[str, Any] = {}

    def over() -> bool:
        response = client.get(f"{API}/refresh/{job_id}")
        assert response.status_code == 200, response.text
        seen.update(response.json())
        return seen["state"] in ("done", "failed")

    assert wait_for(over, timeout), f"job {job_id} still {seen.get('state')}"
    return seen


def cli(cache_dir: Path, *args: str) -> Result:
    """Invoke the CLI with ``--cache-dir`` before the command."""
    return runner.invoke(cli_app, ["--cache-dir", str(cache_dir), *args])


def cli_json(cache_dir: Path, *args: str) -> Any:
    """The command's stdout parsed as JSON (the command must succeed)."""
    result = cli(cache_dir, *args)
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def ids(cache: ProjectCache) -> dict[str, str]:
    """Project name -> id."""
    return {project.name: project.id for project in cache.list_projects()}


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """The answer is a JSON ErrorBody with ``status`` and ``error``, and holds no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) <= {"error", "message", "hint", "detail"}
    return body


def small_tree(root: Path) -> tuple[Path, Path]:
    """A factory-made collection ``team`` (two artifacts) and a project ``app`` using one."""
    collection = CollectionBuilder(root / "collections", "team")
    collection.skill("alpha", tags=["one"])
    collection.command("beta")
    collection.write()
    project = ProjectBuilder(root / "projects", "app")
    project.deploy(collection, "skill", "alpha")
    project.write()
    age(root)
    return collection.path, project.path


def edit_description(skill_md: Path, text: str, attempt: int = 0) -> None:
    """Replace the ``description:`` line of a SKILL.md (and add a line so the size changes)."""
    lines = [
        f"description: {text}" if line.startswith("description:") else line
        for line in skill_md.read_text(encoding="utf-8").splitlines()
    ]
    skill_md.write_text("\n".join(lines) + f"\n<!-- edit {attempt} -->\n", encoding="utf-8")


# -- status ------------------------------------------------------------------------------------


class TestStatus:
    def test_status_reports_counts_generation_errors_and_the_refresher(
        self, client: TestClient, filled: ProjectCache, examples: Path
    ) -> None:
        """`GET status` says what the cache holds, its generation, source errors, idle refresher."""
        response = client.get(f"{API}/status")
        assert response.status_code == 200
        assert "etag" not in response.headers  # it reports times: never ETagged
        body = response.json()
        StatusBody.model_validate(body)
        assert body["version"] == projcache.__version__
        assert body["cache_dir"] == str(filled.path)
        assert body["counts"] == filled.stats().counts
        assert filled.counts().items() <= body["counts"].items()
        assert body["counts"]["artifacts"] == ARTIFACTS
        assert body["counts"]["deployments"] == DEPLOYMENTS
        assert body["generation"] == filled.generation()
        assert body["stale_projects"] == 0 and body["stale_collections"] == 0
        assert body["ttl_seconds"] == filled.settings.ttl_seconds
        assert body["read_only"] is False
        assert body["errors"] == [
            {
                "kind": "collection",
                "unit": "default",
                "name": "default",
                "path": str(examples.joinpath(*BROKEN)),
                "message": body["errors"][0]["message"],
            }
        ]
        assert "invalid YAML" in body["errors"][0]["message"]
        assert body["refresher"] == {
            "interval_seconds": None,
            "watch": False,
            "runs": 0,
            "failures": 0,
            "last_run": None,
            "last_error": None,
            "job": None,
        }

    def test_status_lists_project_errors(
        self, client: TestClient, filled: ProjectCache, editable: Path
    ) -> None:
        """A project whose deployment file is malformed shows up with kind `project` and its id."""
        webapp = editable / "projects" / "webapp"
        bad = webapp / ".claude" / ".skillmeat-deployed.toml"
        bad.write_text("[[deployed]\nbroken =", encoding="utf-8")
        filled.refresh(projects=[webapp])
        errors = client.get(f"{API}/status").json()["errors"]
        assert [(e["kind"], e["unit"], e["path"]) for e in errors if e["kind"] == "project"] == [
            ("project", ids(filled)["webapp"], str(bad))
        ]


# -- projects ----------------------------------------------------------------------------------


class TestProjects:
    def test_list_adds_deployment_counts_states_and_expiry(
        self, client: TestClient, filled: ProjectCache
    ) -> None:
        """Items are the project records in id order plus `deployments`, `states`, `expires_at`."""
        response = client.get(f"{API}/projects")
        assert response.status_code == 200
        page = response.json()
        parsed = ProjectPage.model_validate(page)
        projects = filled.list_projects()
        assert page["total"] == 3 and page["limit"] == 50 and page["offset"] == 0
        assert [item["id"] for item in page["items"]] == [p.id for p in projects]
        ttl = filled.settings.ttl_seconds
        for item, model, project in zip(page["items"], parsed.items, projects):
            states: dict[str, int] = {}
            for deployment in filled.list_deployments(project.id):
                states[deployment.state] = states.get(deployment.state, 0) + 1
            assert item["states"] == states
            assert item["deployments"] == sum(states.values())
            assert project.refreshed_at is not None
            assert model.expires_at == project.refreshed_at + timedelta(seconds=ttl)
            assert {k: item[k] for k in ("name", "path", "managed", "stale")} == {
                "name": project.name,
                "path": project.path,
                "managed": project.managed,
                "stale": project.stale,
            }
        by_name = {item["name"]: item for item in page["items"]}
        assert by_name["webapp"]["states"] == {"current": 3, "modified": 1, "outdated": 1}
        assert by_name["api-service"]["states"] == {"current": 3, "missing": 2}

    def test_list_agrees_with_cli_list_projects_json(
        self, client: TestClient, filled: ProjectCache, cache_dir: Path
    ) -> None:
        """The fields both have are equal to `projcache list projects --json`."""
        from_cli = cli_json(cache_dir, "list", "projects", "--json")
        items = client.get(f"{API}/projects").json()["items"]
        shared = ("id", "name", "path", "description", "managed", "refreshed_at", "stale")
        shared += ("errors", "deployments")
        assert [{k: i[k] for k in shared} for i in items] == [
            {k: p[k] for k in shared} for p in from_cli
        ]

    @pytest.mark.parametrize(
        ("limit", "offset", "expected"),
        [(1, 0, slice(0, 1)), (1, 1, slice(1, 2)), (2, 2, slice(2, 3)), (5, 3, slice(3, 3))],
    )
    def test_pagination(
        self, client: TestClient, filled: ProjectCache, limit: int, offset: int, expected: slice
    ) -> None:
        """`limit` and `offset` cut the page; `total` still counts every project."""
        page = client.get(f"{API}/projects", params={"limit": limit, "offset": offset}).json()
        assert [i["id"] for i in page["items"]] == [p.id for p in filled.list_projects()][expected]
        assert (page["total"], page["limit"], page["offset"]) == (3, limit, offset)

    @pytest.mark.parametrize(
        ("name", "expected"),
        [("WEB", ["webapp"]), ("a", ["api-service", "webapp"]), ("zzz", [])],
    )
    def test_name_filter_is_a_case_insensitive_substring(
        self, client: TestClient, name: str, expected: list[str]
    ) -> None:
        """`name` keeps projects whose name contains it, ignoring case."""
        page = client.get(f"{API}/projects", params={"name": name}).json()
        assert sorted(i["name"] for i in page["items"]) == expected
        assert page["total"] == len(expected)

    def test_stale_filter(self, client: TestClient, filled: ProjectCache) -> None:
        """`stale=true` keeps the invalidated project, `stale=false` the others."""
        filled.invalidate(project="webapp")
        stale = client.get(f"{API}/projects", params={"stale": "true"}).json()
        fresh = client.get(f"{API}/projects", params={"stale": "false"}).json()
        assert [i["name"] for i in stale["items"]] == ["webapp"]
        assert stale["items"][0]["stale"] is True
        assert sorted(i["name"] for i in fresh["items"]) == ["api-service", "notes"]
        assert (stale["total"], fresh["total"]) == (1, 2)

    def test_errors_filter(self, client: TestClient, filled: ProjectCache, editable: Path) -> None:
        """`errors=true` keeps projects whose last refresh recorded errors, `false` the rest."""
        webapp = editable / "projects" / "webapp"
        (webapp / ".claude" / ".skillmeat-deployed.toml").write_text("[[x", encoding="utf-8")
        filled.refresh(projects=[webapp])
        with_errors = client.get(f"{API}/projects", params={"errors": "true"}).json()
        without = client.get(f"{API}/projects", params={"errors": "false"}).json()
        assert [i["name"] for i in with_errors["items"]] == ["webapp"]
        assert "invalid TOML" in with_errors["items"][0]["errors"][0]["message"]
        assert sorted(i["name"] for i in without["items"]) == ["api-service", "notes"]

    @pytest.mark.parametrize("ref", ["id", "name"])
    def test_one_project_by_id_or_name_with_its_deployments(
        self, client: TestClient, filled: ProjectCache, cache_dir: Path, ref: str
    ) -> None:
        """`GET projects/{ref}` answers the list item plus `deployment_list` (the CLI's items)."""
        project_id = ids(filled)["webapp"]
        value = project_id if ref == "id" else "webapp"
        response = client.get(f"{API}/projects/{value}")
        assert response.status_code == 200
        body = response.json()
        ProjectDetail.model_validate(body)
        listed = client.get(f"{API}/projects", params={"name": "webapp"}).json()["items"][0]
        assert {k: v for k, v in body.items() if k != "deployment_list"} == listed
        assert body["deployment_list"] == cli_json(
            cache_dir, "list", "deployments", "--project", "webapp", "--json"
        )
        assert sorted((d["artifact"], d["state"]) for d in body["deployment_list"]) == [
            (f"@{project_id}/command/deploy-staging", "current"),
            ("default/command/review-pr", "modified"),
            ("default/skill/code-review", "outdated"),
            ("default/skill/frontend-design", "current"),
            ("default/skill/pdf", "current"),
        ]

    def test_a_never_refreshed_project_has_no_expiry_and_is_stale(
        self,
        client: TestClient,
        filled: ProjectCache,
        make_project: Callable[..., dict[str, Any]],
    ) -> None:
        """A project put without `refreshed_at` has `expires_at: null` and counts as stale."""
        filled.put_projects([make_project("bare")])
        item = client.get(f"{API}/projects", params={"name": "bare"}).json()["items"][0]
        assert item["refreshed_at"] is None and item["expires_at"] is None
        assert (item["deployments"], item["states"]) == (0, {})
        stale = client.get(f"{API}/projects", params={"stale": "true"}).json()
        assert [i["name"] for i in stale["items"]] == ["bare"]

    def test_unknown_project_is_404(self, client: TestClient) -> None:
        """An unknown id or name is a 404 ProjectNotFound with a hint."""
        body = assert_error(client.get(f"{API}/projects/nope"), 404, "ProjectNotFound")
        assert "nope" in body["message"] and body["hint"]


# -- artifacts ---------------------------------------------------------------------------------


ARTIFACT_FILTERS = [
    ({}, []),
    ({"type": "skill"}, ["--type", "skill"]),
    ({"collection": "default"}, ["--collection", "default"]),
    ({"tag": "review"}, ["--tag", "review"]),
    (
        {"type": "command", "collection": "default"},
        ["--type", "command", "--collection", "default"],
    ),
    ({"project": "webapp"}, ["--project", "webapp"]),
    ({"state": "outdated"}, ["--state", "outdated"]),
    (
        {"project": "api-service", "state": "missing"},
        ["--project", "api-service", "--state", "missing"],
    ),
    ({"type": "skill", "project": "webapp"}, ["--type", "skill", "--project", "webapp"]),
]


def library_artifact_keys(cache: ProjectCache, params: dict[str, str]) -> list[str]:
    """The keys the library lists for the same filters, in its order."""
    found = cache.list_artifacts(
        params.get("type"),
        params.get("collection"),
        params.get("tag"),
        project=params.get("project"),
        state=params.get("state"),  # type: ignore[arg-type]
    )
    return [a.key for a in found]


def fetch_page(
    client: TestClient, path: str, params: dict[str, str], model: type[BaseModel]
) -> dict[str, Any]:
    """``GET /api/v1/<path>`` answered 200 with a body of ``model``'s shape; the body."""
    response = client.get(f"{API}/{path}", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    model.model_validate(page)
    return page


class TestArtifacts:
    @pytest.mark.parametrize(("params", "options"), ARTIFACT_FILTERS)
    def test_filters_match_the_library_and_the_cli(
        self,
        client: TestClient,
        filled: ProjectCache,
        cache_dir: Path,
        params: dict[str, str],
        options: list[str],
    ) -> None:
        """Each filter gives the library's artifacts, as `list artifacts --json` prints them."""
        page = fetch_page(client, "artifacts", params, ArtifactPage)
        expected = library_artifact_keys(filled, params)
        assert expected, "a filter that matches nothing proves little"
        assert [i["key"] for i in page["items"]] == expected
        assert page["total"] == len(expected)
        assert page["items"] == cli_json(cache_dir, "list", "artifacts", *options, "--json")

    def test_unfiltered_total_is_every_artifact(self, client: TestClient) -> None:
        """Without filters `total` is the record count."""
        assert client.get(f"{API}/artifacts").json()["total"] == ARTIFACTS

    @pytest.mark.parametrize("params", [{}, {"collection": "default"}, {"type": "skill"}])
    @pytest.mark.parametrize(("limit", "offset"), [(3, 0), (3, 2), (1, 3), (50, 12), (5, 100)])
    def test_pagination(
        self,
        client: TestClient,
        filled: ProjectCache,
        params: dict[str, str],
        limit: int,
        offset: int,
    ) -> None:
        """A page is the library's list cut at [offset, offset+limit); `total` counts all."""
        query = {**params, "limit": str(limit), "offset": str(offset)}
        page = client.get(f"{API}/artifacts", params=query).json()
        expected = library_artifact_keys(filled, params)
        assert [i["key"] for i in page["items"]] == expected[offset : offset + limit]
        assert (page["total"], page["limit"], page["offset"]) == (len(expected), limit, offset)

    def test_unknown_collection_is_an_empty_page(self, client: TestClient) -> None:
        """A collection filter naming nothing cached answers an empty page, not an error."""
        page = client.get(f"{API}/artifacts", params={"collection": "nope"}).json()
        assert page["items"] == [] and page["total"] == 0

    def test_unknown_project_filter_is_404(self, client: TestClient) -> None:
        """A project filter naming no cached project is a 404."""
        response = client.get(f"{API}/artifacts", params={"project": "nope"})
        assert_error(response, 404, "ProjectNotFound")

    def test_one_artifact_with_its_deployments(
        self, client: TestClient, cache_dir: Path, filled: ProjectCache
    ) -> None:
        """`GET artifacts/{key}` is `get KEY --json` plus the deployments of that artifact."""
        key = "default/skill/code-review"
        response = client.get(f"{API}/artifacts/{key}")
        assert response.status_code == 200
        body = response.json()
        ArtifactDetail.model_validate(body)
        deployments = body.pop("deployments")
        assert body == cli_json(cache_dir, "get", key, "--json")
        everything = cli_json(cache_dir, "list", "deployments", "--json")
        assert deployments == [d for d in everything if d["artifact"] == key]
        assert [(d["project"], d["state"]) for d in deployments] == [
            (ids(filled)["webapp"], "outdated")
        ]

    def test_an_undeployed_artifact_has_no_deployments(self, client: TestClient) -> None:
        """An artifact deployed nowhere answers `deployments: []`."""
        body = client.get(f"{API}/artifacts/default/command/scratch").json()
        assert body["key"] == "default/command/scratch" and body["deployments"] == []

    @pytest.mark.parametrize("key", ["default/skill/nope", "bad", "a/b", "default/bogus/x"])
    def test_unknown_or_malformed_key_is_404(self, client: TestClient, key: str) -> None:
        """An unknown key, and a key that could name no artifact, are both 404."""
        body = assert_error(client.get(f"{API}/artifacts/{key}"), 404, "ArtifactNotFound")
        assert key in body["message"]


# -- deployments -------------------------------------------------------------------------------


DEPLOYMENT_FILTERS = [
    ({}, []),
    ({"state": "outdated"}, ["--state", "outdated"]),
    ({"state": "missing"}, ["--state", "missing"]),
    ({"state": "modified"}, ["--state", "modified"]),
    ({"project": "webapp"}, ["--project", "webapp"]),
    ({"type": "command"}, ["--type", "command"]),
    (
        {"project": "api-service", "state": "missing"},
        ["--project", "api-service", "--state", "missing"],
    ),
]


class TestDeployments:
    @pytest.mark.parametrize(("params", "options"), DEPLOYMENT_FILTERS)
    def test_items_equal_cli_list_deployments_json(
        self, client: TestClient, cache_dir: Path, params: dict[str, str], options: list[str]
    ) -> None:
        """Each filter answers exactly the items of `projcache list deployments --json`."""
        page = fetch_page(client, "deployments", params, DeploymentPage)
        expected = cli_json(cache_dir, "list", "deployments", *options, "--json")
        assert expected
        assert page["items"] == expected
        assert page["total"] == len(expected)
        if "state" in params:
            assert {i["state"] for i in page["items"]} == {params["state"]}

    def test_states_of_the_examples(self, client: TestClient) -> None:
        """The example deployments are in the states the examples were built to show."""
        outdated = client.get(f"{API}/deployments", params={"state": "outdated"}).json()
        missing = client.get(f"{API}/deployments", params={"state": "missing"}).json()
        assert [i["artifact"] for i in outdated["items"]] == ["default/skill/code-review"]
        assert sorted(i["artifact"] for i in missing["items"]) == [
            "default/command/legacy-lint",
            "default/command/test-plan",
        ]
        assert client.get(f"{API}/deployments").json()["total"] == DEPLOYMENTS

    def test_artifact_filter(self, client: TestClient, cache_dir: Path) -> None:
        """`artifact` keeps the deployments of one key."""
        key = "default/skill/pdf"
        page = client.get(f"{API}/deployments", params={"artifact": key}).json()
        everything = cli_json(cache_dir, "list", "deployments", "--json")
        assert page["items"] == [d for d in everything if d["artifact"] == key]
        assert page["total"] == 1

    def test_pagination(self, client: TestClient, cache_dir: Path) -> None:
        """`limit`/`offset` page through the same order; `total` counts every match."""
        everything = cli_json(cache_dir, "list", "deployments", "--json")
        pages = [
            client.get(f"{API}/deployments", params={"limit": 5, "offset": o}).json()
            for o in (0, 5, 10, 15)
        ]
        assert [len(p["items"]) for p in pages] == [5, 5, 3, 0]
        assert [i for p in pages for i in p["items"]] == everything
        assert {p["total"] for p in pages} == {DEPLOYMENTS}

    def test_unknown_project_is_404(self, client: TestClient) -> None:
        """A project filter naming no cached project is a 404."""
        assert_error(
            client.get(f"{API}/deployments", params={"project": "nope"}), 404, "ProjectNotFound"
        )


# -- search ------------------------------------------------------------------------------------


SEARCHES = [
    ({"q": "review"}, []),
    ({"q": "review", "type": "command"}, ["--type", "command"]),
    ({"q": "re", "collection": "default"}, ["--collection", "default"]),
    ({"q": "review", "tag": "review"}, ["--tag", "review"]),
    ({"q": "review", "project": "webapp"}, ["--project", "webapp"]),
    ({"q": "review", "limit": "1", "offset": "1"}, ["--limit", "1", "--offset", "1"]),
    ({"q": "pdf"}, []),
]


class TestSearch:
    @pytest.mark.parametrize(("params", "options"), SEARCHES)
    def test_hits_equal_the_library_and_cli_search_json(
        self,
        client: TestClient,
        filled: ProjectCache,
        cache_dir: Path,
        params: dict[str, str],
        options: list[str],
    ) -> None:
        """Items are `cache.search`'s hits in order (record + score), as `search --json` prints."""
        page = fetch_page(client, "search", params, SearchPage)
        limit, offset = int(params.get("limit", 20)), int(params.get("offset", 0))
        hits = filled.search(
            params["q"],
            params.get("type"),
            params.get("project"),
            limit,
            offset,
            collection=params.get("collection"),
            tag=params.get("tag"),
        )
        assert hits, "a search that finds nothing proves little"
        assert [(i["key"], i["score"]) for i in page["items"]] == [(h.key, h.score) for h in hits]
        assert (page["query"], page["total"], page["limit"], page["offset"]) == (
            params["q"],
            hits.total,
            limit,
            offset,
        )
        for item, hit in zip(page["items"], hits):
            assert {k: v for k, v in item.items() if k != "score"} == hit.artifact.model_dump(
                mode="json"
            )
        from_cli = cli_json(cache_dir, "search", params["q"], *options, "--json")
        assert page == from_cli  # the same document (views.search_view_json)

    def test_total_counts_beyond_the_page(self, client: TestClient) -> None:
        """`total` counts every match while `limit` cuts the page."""
        page = client.get(f"{API}/search", params={"q": "review", "limit": 1}).json()
        assert len(page["items"]) == 1 and page["total"] == 3

    def test_no_match_is_an_empty_page(self, client: TestClient) -> None:
        """A query matching nothing answers an empty page with total 0."""
        page = client.get(f"{API}/search", params={"q": "zebra"}).json()
        assert page["items"] == [] and page["total"] == 0

    def test_unknown_project_is_404(self, client: TestClient) -> None:
        """A project filter naming no cached project is a 404."""
        response = client.get(f"{API}/search", params={"q": "review", "project": "nope"})
        assert_error(response, 404, "ProjectNotFound")


# -- refresh jobs over HTTP ------------------------------------------------------------------


class TestRefreshEndpoint:
    def test_full_refresh_job_reports_progress_and_its_report(
        self, client: TestClient, examples: Path
    ) -> None:
        """POST refresh: 202, Location of the job; polling it ends `done` with the report."""
        response = client.post(f"{API}/refresh", headers=JSON_BODY)
        assert response.status_code == 202
        job = response.json()
        RefreshJob.model_validate(job)
        assert job["state"] == "queued" and job["report"] is None
        assert job["request"] == {"project": None, "collection": None, "full": False}
        location = response.headers["location"]
        assert location == f"refresh/{job['id']}"
        # Resolved against the request's URL, the relative Location names the job's resource.
        resolved = urljoin(str(response.url), location)
        assert resolved.endswith(f"{API}/refresh/{job['id']}")
        polled = client.get(resolved)
        assert polled.status_code == 200 and polled.json()["id"] == job["id"]
        done = finished(client, job["id"])
        assert done["state"] == "done" and done["error"] is None
        assert done["progress"]["done"] == done["progress"]["total"] == 4
        assert done["started_at"] and done["finished_at"]
        assert done["finished_at"] >= done["started_at"] >= done["created_at"]
        report = done["report"]
        RefreshReport.model_validate(report)
        assert (report["collections_checked"], report["projects_checked"]) == (1, 3)
        assert report["sources_checked"] == 35  # each project also checks .skillmeat/manifest.toml
        assert [e["path"] for e in report["errors"]] == [str(examples.joinpath(*BROKEN))]

    @pytest.mark.parametrize("ref", ["name", "id", "path"])
    def test_refresh_of_one_project(
        self, client: TestClient, filled: ProjectCache, examples: Path, ref: str
    ) -> None:
        """`{"project": ...}` (name, id or path) refreshes that project only."""
        value = {
            "name": "webapp",
            "id": ids(filled)["webapp"],
            "path": str(examples / "projects" / "webapp"),
        }[ref]
        job = client.post(f"{API}/refresh", json={"project": value}).json()
        assert job["request"]["project"] == value
        done = finished(client, job["id"])
        assert (done["report"]["collections_checked"], done["report"]["projects_checked"]) == (0, 1)
        assert done["progress"] == {
            "done": 1,
            "total": 1,
            "current": str(examples / "projects" / "webapp"),
        }

    def test_refresh_of_one_collection(self, client: TestClient) -> None:
        """`{"collection": "default"}` refreshes that collection only."""
        job = client.post(f"{API}/refresh", json={"collection": "default"}).json()
        done = finished(client, job["id"])
        assert (done["report"]["collections_checked"], done["report"]["projects_checked"]) == (1, 0)
        assert done["progress"]["done"] == done["progress"]["total"] == 1

    def test_full_rereads_unchanged_sources(self, client: TestClient) -> None:
        """`full: true` re-reads every source; an incremental refresh only the changed ones."""
        incremental = finished(client, client.post(f"{API}/refresh", json={}).json()["id"])
        full = finished(client, client.post(f"{API}/refresh", json={"full": True}).json()["id"])
        assert full["request"]["full"] is True
        assert incremental["report"]["sources_changed"] <= 1  # the broken file is always re-read
        assert full["report"]["sources_changed"] == 29

    def test_a_refresh_that_changes_data_is_served_with_a_new_etag(
        self, client: TestClient, editable: Path
    ) -> None:
        """An edited SKILL.md lands in the cache; the artifact's old ETag gets a 200 again."""
        url = f"{API}/artifacts/default/skill/pdf"
        before = client.get(url)
        edit_description(editable / "collections/default/skills/pdf/SKILL.md", "Edited by a test.")
        done = finished(
            client, client.post(f"{API}/refresh", json={"collection": "default"}).json()["id"]
        )
        assert done["report"]["artifacts_written"] == 1
        after = client.get(url, headers={"If-None-Match": before.headers["etag"]})
        assert after.status_code == 200
        assert after.json()["description"] == "Edited by a test."
        assert after.headers["etag"] != before.headers["etag"]

    def test_unknown_project_or_collection_is_404_at_once(self, client: TestClient) -> None:
        """A target not in the cache is refused when the job is asked for, not inside it."""
        assert_error(
            client.post(f"{API}/refresh", json={"project": "nope"}), 404, "ProjectNotFound"
        )
        body = assert_error(
            client.post(f"{API}/refresh", json={"collection": "nope"}), 404, "NotFoundError"
        )
        assert "nope" in body["message"] and body["hint"]

    def test_unknown_job_is_404(self, client: TestClient) -> None:
        """Polling a job that does not exist is a 404 with a hint."""
        body = assert_error(client.get(f"{API}/refresh/999-000000"), 404, "NotFoundError")
        assert "999-000000" in body["message"] and "newest 200" in body["hint"]

    @pytest.mark.parametrize(
        "payload", [{"bogus": 1}, {"full": "maybe"}, {"project": 3}, [1, 2], "x" * 5]
    )
    def test_bad_body_is_422(self, client: TestClient, payload: Any) -> None:
        """Unknown fields and wrong types in the body are 422, and start no job."""
        body = assert_error(client.post(f"{API}/refresh", json=payload), 422, "BadRequest")
        assert body["detail"] and all(d["loc"][0] == "body" for d in body["detail"])
        assert client.get(f"{API}/status").json()["refresher"]["job"] is None

    def test_failed_job_records_the_error_body(
        self, client: TestClient, filled: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A refresh raising a ProjcacheError ends `failed` with its error body."""

        def broken(*_args: Any, **_kwargs: Any) -> RefreshReport:
            raise SourceFileError("the folder went away", hint="Look at it.")

        monkeypatch.setattr(filled, "refresh", broken)
        done = finished(client, client.post(f"{API}/refresh", headers=JSON_BODY).json()["id"])
        assert done["state"] == "failed" and done["report"] is None
        assert done["error"] == {
            "error": "SourceFileError",
            "message": "the folder went away",
            "hint": "Look at it.",
            "detail": None,
        }
        assert done["finished_at"] is not None

    def test_a_crashing_job_is_recorded_as_internal_error(
        self, client: TestClient, filled: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An unexpected exception ends a job `failed` (InternalError); the worker lives on."""

        def crash(*_args: Any, **_kwargs: Any) -> RefreshReport:
            raise RuntimeError("boom")

        monkeypatch.setattr(filled, "refresh", crash)
        done = finished(client, client.post(f"{API}/refresh", headers=JSON_BODY).json()["id"])
        assert done["state"] == "failed"
        assert done["error"]["error"] == "InternalError" and "boom" in done["error"]["message"]
        monkeypatch.undo()
        again = finished(client, client.post(f"{API}/refresh", headers=JSON_BODY).json()["id"])
        assert again["state"] == "done"

    def test_status_names_the_running_job(
        self, client: TestClient, filled: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While a job runs, `status.refresher.job` is its id and the job says `running`."""
        gate = threading.Event()
        real = filled.refresh

        def slow(*args: Any, **kwargs: Any) -> RefreshReport:
            assert gate.wait(10)
            return real(*args, **kwargs)

        monkeypatch.setattr(filled, "refresh", slow)
        job_id = client.post(f"{API}/refresh", headers=JSON_BODY).json()["id"]
        try:
            assert wait_for(
                lambda: client.get(f"{API}/status").json()["refresher"]["job"] == job_id
            )
            assert client.get(f"{API}/refresh/{job_id}").json()["state"] == "running"
        finally:
            gate.set()
        assert finished(client, job_id)["state"] == "done"
        assert client.get(f"{API}/status").json()["refresher"]["job"] is None


# -- invalidate --------------------------------------------------------------------------------


class TestInvalidate:
    def test_everything(self, client: TestClient) -> None:
        """Without a body every project and collection is marked stale; status counts them."""
        response = client.post(f"{API}/invalidate", headers=JSON_BODY)
        assert response.status_code == 200
        assert response.json() == {"invalidated": 4}
        status = client.get(f"{API}/status").json()
        assert (status["stale_projects"], status["stale_collections"]) == (3, 1)
        assert client.get(f"{API}/projects", params={"stale": "true"}).json()["total"] == 3

    def test_one_project(self, client: TestClient) -> None:
        """`{"project": "webapp"}` marks that project stale, nothing else."""
        assert client.post(f"{API}/invalidate", json={"project": "webapp"}).json() == {
            "invalidated": 1
        }
        status = client.get(f"{API}/status").json()
        assert (status["stale_projects"], status["stale_collections"]) == (1, 0)
        assert client.get(f"{API}/projects/webapp").json()["stale"] is True

    def test_one_collection(self, client: TestClient) -> None:
        """`{"collection": "default"}` marks that collection stale, nothing else."""
        assert client.post(f"{API}/invalidate", json={"collection": "default"}).json() == {
            "invalidated": 1
        }
        status = client.get(f"{API}/status").json()
        assert (status["stale_projects"], status["stale_collections"]) == (0, 1)

    def test_unknown_targets_are_404(self, client: TestClient) -> None:
        """An unknown project or collection is a 404 and marks nothing."""
        assert_error(
            client.post(f"{API}/invalidate", json={"project": "nope"}), 404, "ProjectNotFound"
        )
        assert_error(
            client.post(f"{API}/invalidate", json={"collection": "nope"}), 404, "NotFoundError"
        )
        assert client.get(f"{API}/status").json()["stale_projects"] == 0

    def test_unknown_field_is_422(self, client: TestClient) -> None:
        """The body allows only `project` and `collection`."""
        assert_error(client.post(f"{API}/invalidate", json={"full": True}), 422, "BadRequest")

    def test_read_only_cache_is_409(self, filled: ProjectCache, cache_dir: Path) -> None:
        """Writes to a read-only cache are 409; a refresh job on it fails with that error."""
        filled.close()
        read_only = ProjectCache.open(cache_dir, readonly=True)
        with read_only, make_client(create_app(read_only)) as client:
            assert client.get(f"{API}/status").json()["read_only"] is True
            body = assert_error(
                client.post(f"{API}/invalidate", headers=JSON_BODY), 409, "ReadOnlyCacheError"
            )
            assert "read-only" in body["message"]
            done = finished(client, client.post(f"{API}/refresh", headers=JSON_BODY).json()["id"])
            assert done["state"] == "failed"
            assert done["error"]["error"] == "ReadOnlyCacheError"


# -- ETags -------------------------------------------------------------------------------------


ETAGGED = [
    "/projects",
    "/projects?stale=false",
    "/projects/webapp",
    "/artifacts",
    "/artifacts?type=skill&limit=2",
    "/artifacts/default/skill/pdf",
    "/deployments?state=outdated",
    "/search?q=review",
]


class TestETags:
    @pytest.mark.parametrize("path", ETAGGED)
    def test_if_none_match_answers_304_without_a_body(self, client: TestClient, path: str) -> None:
        """The ETag sent back (plain, weak, `*`, or in a list) gets 304 with an empty body."""
        first = client.get(API + path)
        assert first.status_code == 200
        etag = first.headers["etag"]
        assert re.fullmatch(r'"[0-9a-f]{8}-\d+(-[0-9a-f]{8})?"', etag)
        assert first.headers["cache-control"] == "no-cache"
        for sent in (etag, f"W/{etag}", "*", f'"other", {etag}'):
            again = client.get(API + path, headers={"If-None-Match": sent})
            assert again.status_code == 304, sent
            assert again.content == b""
            assert again.headers["etag"] == etag
        other = client.get(API + path, headers={"If-None-Match": '"something-else"'})
        assert other.status_code == 200 and other.content == first.content

    @pytest.mark.parametrize("path", ETAGGED)
    def test_a_write_changes_the_etag(
        self, client: TestClient, filled: ProjectCache, path: str
    ) -> None:
        """After a committed write the old ETag no longer matches: 200 with a new ETag."""
        etag = client.get(API + path).headers["etag"]
        filled.invalidate()
        after = client.get(API + path, headers={"If-None-Match": etag})
        assert after.status_code == 200 and after.content
        assert after.headers["etag"] != etag
        assert (
            client.get(API + path, headers={"If-None-Match": after.headers["etag"]}).status_code
            == 304
        )

    def test_invalidate_over_http_changes_the_etag(self, client: TestClient) -> None:
        """POST invalidate is a write like any other."""
        etag = client.get(f"{API}/artifacts").headers["etag"]
        client.post(f"{API}/invalidate", json={"project": "notes"})
        assert client.get(f"{API}/artifacts", headers={"If-None-Match": etag}).status_code == 200

    def test_put_artifacts_changes_the_etag_and_the_list(
        self, client: TestClient, filled: ProjectCache, make_artifact: Callable[..., dict[str, Any]]
    ) -> None:
        """A new artifact written through the library shows up at once, under a new ETag."""
        etag = client.get(f"{API}/artifacts").headers["etag"]
        filled.put_artifacts([make_artifact("fresh", collection="default")])
        after = client.get(f"{API}/artifacts", headers={"If-None-Match": etag})
        assert after.status_code == 200
        assert after.json()["total"] == ARTIFACTS + 1
        assert "default/skill/fresh" in [i["key"] for i in after.json()["items"]]

    def test_etag_is_the_generation_in_status(
        self, client: TestClient, filled: ProjectCache
    ) -> None:
        """Lists other than projects carry the cache's generation, the one `status` reports."""
        generation = client.get(f"{API}/status").json()["generation"]
        assert generation == filled.generation()
        assert client.get(f"{API}/deployments").headers["etag"] == f'"{generation}"'

    def test_reads_do_not_change_the_etag(self, client: TestClient) -> None:
        """Many reads in between, the same ETag still answers 304."""
        etag = client.get(f"{API}/artifacts").headers["etag"]
        for path in ETAGGED:
            client.get(API + path)
        client.get(f"{API}/status")
        assert client.get(f"{API}/artifacts", headers={"If-None-Match": etag}).status_code == 304

    def test_projects_etag_moves_when_a_project_turns_stale_by_age(self, tmp_path: Path) -> None:
        """With a tiny TTL the `stale` filters' ETags change as the clock passes it, no write."""
        collection, project = small_tree(tmp_path / "src")
        ttl = 1.5
        settings = Settings(cache_dir=tmp_path / "ttl-cache", ttl_seconds=ttl)
        with ProjectCache.open(settings=settings) as cache:
            cache.refresh(collections=[collection], projects=[project])
            generation = cache.generation()
            with make_client(create_app(cache)) as client:
                fresh = client.get(f"{API}/projects", params={"stale": "false"})
                stale = client.get(f"{API}/projects", params={"stale": "true"})
                assert (fresh.json()["total"], stale.json()["total"]) == (1, 0)

                def turned() -> bool:
                    answer = client.get(
                        f"{API}/projects",
                        params={"stale": "true"},
                        headers={"If-None-Match": stale.headers["etag"]},
                    )
                    return answer.status_code == 200 and answer.json()["total"] == 1

                assert wait_for(turned, timeout=ttl + 10)
                now_fresh = client.get(
                    f"{API}/projects",
                    params={"stale": "false"},
                    headers={"If-None-Match": fresh.headers["etag"]},
                )
                assert now_fresh.status_code == 200 and now_fresh.json()["total"] == 0
                assert now_fresh.headers["etag"] != fresh.headers["etag"]
                assert cache.generation() == generation  # no write: only the clock moved
                status = client.get(f"{API}/status").json()
                assert status["stale_projects"] == 1 and status["stale_collections"] == 1

    @pytest.mark.parametrize(
        "path", ["/projects/nope", "/artifacts/default/skill/nope", "/artifacts?project=nope"]
    )
    def test_if_none_match_on_a_missing_resource_is_still_404(
        self, client: TestClient, path: str
    ) -> None:
        """A conditional GET of something that does not exist is 404, not 304 (RFC 9110 13.1.2)."""
        etag = client.get(f"{API}/artifacts").headers["etag"]
        for sent in ("*", etag):
            response = client.get(API + path, headers={"If-None-Match": sent})
            assert response.status_code == 404, (sent, response.status_code)


# -- errors ------------------------------------------------------------------------------------


class TestErrors:
    @pytest.mark.parametrize(
        ("path", "where"),
        [
            ("/artifacts?limit=0", "query.limit"),
            ("/artifacts?limit=1001", "query.limit"),
            ("/artifacts?offset=-1", "query.offset"),
            ("/artifacts?type=Bogus", "query.type"),
            ("/artifacts?state=bogus", "query.state"),
            ("/deployments?state=bogus", "query.state"),
            ("/deployments?type=Bogus", "query.type"),
            ("/projects?stale=maybe", "query.stale"),
            ("/projects?limit=x", "query.limit"),
            ("/search?q=", "query.q"),
            ("/search", "query.q"),
            ("/search?q=a&limit=201", "query.limit"),
            ("/search?q=a&type=Bogus", "query.type"),
            ("/search?q=" + "a" * 501, "query.q"),
            ("/artifacts/default/skill/" + "x" * 600, "path.key"),
        ],
    )
    def test_bad_parameters_are_422(self, client: TestClient, path: str, where: str) -> None:
        """Invalid parameters answer 422 BadRequest naming the parameter, with `detail`."""
        body = assert_error(client.get(API + path), 422, "BadRequest")
        assert where in body["message"]
        assert [".".join(map(str, d["loc"])) for d in body["detail"]] == [where]
        assert all("input" not in d for d in body["detail"])  # the request is not echoed

    @pytest.mark.parametrize("path", ["/api/v1/cache/nope", "/api/v2/cache/status", "/nope"])
    def test_unknown_route_is_404(self, client: TestClient, path: str) -> None:
        """A route that does not exist answers a JSON 404."""
        assert_error(client.get(path), 404, "NotFound")

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("DELETE", "/status", "GET"),
            ("POST", "/projects", "GET"),
            ("GET", "/invalidate", "POST"),
            ("PUT", "/refresh", "POST"),
        ],
    )
    def test_wrong_method_is_405(
        self, client: TestClient, method: str, path: str, allowed: str
    ) -> None:
        """A known route with the wrong method is 405 MethodNotAllowed with `Allow`."""
        response = client.request(method, API + path)
        assert_error(response, 405, "MethodNotAllowed")
        assert response.headers["allow"] == allowed

    def test_unexpected_exception_is_500_without_details(
        self,
        filled: ProjectCache,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A bug inside the cache is a bare 500 InternalError; the traceback goes to the log."""

        def broken(**_filters: Any) -> list[Any]:
            raise RuntimeError("secret internal detail")

        monkeypatch.setattr(filled, "project_rows", broken)
        with make_client(create_app(filled), raise_server_exceptions=False) as client:
            response = client.get(f"{API}/projects")
        body = assert_error(response, 500, "InternalError")
        assert body == {"error": "InternalError", "message": "internal server error"}
        assert "secret internal detail" not in response.text
        logged = [r for r in caplog.records if r.name == "projcache.server.app"]
        assert logged and logged[0].exc_info is not None
        assert "secret internal detail" in str(logged[0].exc_info[1])

    @pytest.mark.parametrize(
        "path",
        [
            "/projects/a%00b",
            "/deployments?project=a%00b",
            "/artifacts?project=a%00b",
            "/search?q=x&project=a%00b",
        ],
    )
    def test_nul_byte_in_a_project_reference_is_not_a_500(
        self, filled: ProjectCache, path: str
    ) -> None:
        """A project reference with a NUL byte names no project: 404 (or 422), never 500."""
        with make_client(create_app(filled), raise_server_exceptions=False) as client:
            response = client.get(API + path)
            posted = client.post(f"{API}/invalidate", json={"project": "a\x00b"})
        assert response.status_code in (404, 422), response.text
        assert posted.status_code in (404, 422), posted.text

    @pytest.mark.parametrize(
        "reference", ["~~~", "~no-such-user-here/x", "a/../../" * 3 + "nowhere"]
    )
    def test_a_project_reference_that_is_no_resolvable_path_is_404(
        self, filled: ProjectCache, reference: str
    ) -> None:
        """`~user` of an unknown user (expanduser raises) names no project: 404, never 500."""
        with make_client(create_app(filled), raise_server_exceptions=False) as client:
            for path, params in (
                ("/search", {"q": "pdf"}),
                ("/deployments", {}),
                ("/artifacts", {}),
            ):
                response = client.get(API + path, params={**params, "project": reference})
                assert response.status_code == 404, (path, response.text)
            assert client.get(f"{API}/projects/{reference}").status_code == 404

    @pytest.mark.parametrize(
        ("error", "status"),
        [
            (NotFoundError("x"), 404),
            (ArtifactNotFound("x"), 404),
            (ProjectNotFound("x"), 404),
            (InvalidRecordError("x"), 422),
            (KeyTooLongError("x"), 422),
            (ConfigError("x"), 422),
            (ReadOnlyCacheError("x"), 409),
            (CachePermissionError("x"), 409),
            (CacheBusyError("x"), 503),
            (CacheFullError("x"), 507),
            (DiskFullError("x"), 507),
            (CacheCorruptError("x"), 500),
            (StorageError("x"), 500),
            (SourceFileError("x"), 500),
            (ServerError("x"), 500),
            (ProjcacheError("x"), 500),
        ],
    )
    def test_error_status_table(self, error: ProjcacheError, status: int) -> None:
        """Each library error maps to the status that says what went wrong (500 for the rest)."""
        assert error_status(error) == status

    @pytest.mark.parametrize(
        ("error", "status"),
        [
            (CacheBusyError("all reader slots are busy", hint="Try again."), 503),
            (CacheFullError("the map is full", hint="Raise max_map_size."), 507),
            (CachePermissionError("cannot write", hint="Fix the permissions."), 409),
            (CacheCorruptError("damaged", hint="Run verify."), 500),
        ],
    )
    def test_library_errors_become_error_bodies(
        self,
        filled: ProjectCache,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        error: ProjcacheError,
        status: int,
    ) -> None:
        """A ProjcacheError raised in an endpoint is its status, class name, message and hint."""

        def broken(*_args: Any, **_kwargs: Any) -> Any:
            raise error

        monkeypatch.setattr(filled, "stats", broken)
        with make_client(create_app(filled)) as client:
            response = client.get(f"{API}/status")
        body = assert_error(response, status, type(error).__name__)
        assert body == {"error": type(error).__name__, "message": str(error), "hint": error.hint}
        logged = [r for r in caplog.records if r.getMessage().startswith("request failed")]
        assert bool(logged) == (status >= 500)


# -- API key -----------------------------------------------------------------------------------


class TestApiKey:
    @pytest.fixture
    def keyed(self, filled: ProjectCache) -> Iterator[TestClient]:
        """A client of an application that requires the key `k`."""
        with make_client(create_app(filled, ServerOptions(api_key="k"))) as test_client:
            yield test_client

    @pytest.mark.parametrize(
        "headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"X-API-Key": "K"}]
    )
    @pytest.mark.parametrize("path", ["/status", "/projects", "/artifacts/default/skill/pdf"])
    def test_missing_or_wrong_key_is_401(
        self, keyed: TestClient, headers: dict[str, str], path: str
    ) -> None:
        """Without the right key every API request is 401 with WWW-Authenticate."""
        response = keyed.get(API + path, headers=headers)
        body = assert_error(response, 401, "Unauthorized")
        assert "X-API-Key" in body["message"]
        assert response.headers["www-authenticate"] == "APIKey"

    def test_right_key_is_served(self, keyed: TestClient) -> None:
        """With the key, reads and writes work."""
        headers = {"X-API-Key": "k"}
        assert keyed.get(f"{API}/status", headers=headers).status_code == 200
        assert keyed.get(f"{API}/projects", headers=headers).json()["total"] == 3
        assert keyed.post(f"{API}/invalidate", headers={**headers, **JSON_BODY}).status_code == 200

    def test_writes_without_the_key_do_nothing(
        self, keyed: TestClient, filled: ProjectCache
    ) -> None:
        """A refused POST starts no job and invalidates nothing."""
        generation = filled.generation()
        assert keyed.post(f"{API}/invalidate", headers=JSON_BODY).status_code == 401
        assert keyed.post(f"{API}/refresh", headers=JSON_BODY).status_code == 401
        assert filled.generation() == generation
        status = keyed.get(f"{API}/status", headers={"X-API-Key": "k"}).json()
        assert status["refresher"]["job"] is None and status["stale_projects"] == 0

    @pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/app.css", "/openapi.json"])
    def test_page_static_files_and_schema_need_no_key(self, keyed: TestClient, path: str) -> None:
        """The page, its files and the OpenAPI schema are public; the page asks for the key."""
        assert keyed.get(path).status_code == 200

    def test_no_key_configured_means_open(self, client: TestClient) -> None:
        """Without a configured key any request is answered, whatever header it sends."""
        assert client.get(f"{API}/status").status_code == 200
        assert client.get(f"{API}/status", headers={"X-API-Key": "anything"}).status_code == 200


# -- the web page ------------------------------------------------------------------------------


class TestWebPage:
    def test_index_is_html_that_loads_the_script(self, client: TestClient) -> None:
        """`/` is the shipped HTML page, revalidated on each load."""
        response = client.get("/")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-cache"
        assert '<script src="/static/app.js"' in response.text
        assert '<link rel="stylesheet" href="/static/app.css">' in response.text

    @pytest.mark.parametrize(
        ("name", "content_type"), [("app.js", "text/javascript"), ("app.css", "text/css")]
    )
    def test_static_files(self, client: TestClient, name: str, content_type: str) -> None:
        """The script and style sheet are served from the package with their types."""
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(content_type)
        shipped = Path(projcache.__file__).parent / "server" / "static" / name
        assert response.content == shipped.read_bytes()

    def test_script_talks_to_this_api(self, client: TestClient) -> None:
        """The script calls the API under the prefix the server mounts it on."""
        assert f'const API = "{API}";' in client.get("/static/app.js").text

    def test_unknown_static_file_is_a_json_404(self, client: TestClient) -> None:
        """A missing static file is a JSON 404 like any other."""
        assert_error(client.get("/static/nope.js"), 404, "NotFound")


# -- OpenAPI -----------------------------------------------------------------------------------


OPERATIONS = {
    ("get", "/status"),
    ("get", "/projects"),
    ("get", "/projects/{project}"),
    ("get", "/artifacts"),
    ("get", "/artifacts/{key}"),
    ("get", "/deployments"),
    ("get", "/search"),
    ("post", "/refresh"),
    ("get", "/refresh/{job}"),
    ("post", "/invalidate"),
}
# Every other operation can answer 404 (an unknown id, or a project filter naming nothing).
WITHOUT_404 = {("get", "/status"), ("get", "/projects")}
ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


class TestOpenAPI:
    @pytest.fixture
    def schema(self, client: TestClient) -> dict[str, Any]:
        """The served OpenAPI document."""
        response = client.get("/openapi.json")
        assert response.status_code == 200
        document: dict[str, Any] = response.json()
        return document

    def test_lists_every_endpoint_under_the_prefix(self, schema: dict[str, Any]) -> None:
        """Exactly the ten operations, all under /api/v1/cache/ (the page is not in it)."""
        found = {
            (method, path[len(API) :])
            for path, operations in schema["paths"].items()
            for method in operations
        }
        assert found == OPERATIONS
        assert all(path.startswith(API + "/") for path in schema["paths"])
        assert schema["info"]["title"] == "projcache"
        assert schema["info"]["version"] == projcache.__version__

    def test_errors_are_documented_as_error_bodies(self, schema: dict[str, Any]) -> None:
        """Operations document 422, lookups 404, with the ErrorBody schema (no key: no 401)."""
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                responses = operation["responses"]
                assert responses["422"]["content"] == ERROR_REF, (method, path)
                assert "401" not in responses, (method, path)  # no key: no 401
                if (method, path[len(API) :]) not in WITHOUT_404:
                    assert responses["404"]["content"] == ERROR_REF, (method, path)
        assert "ErrorBody" in schema["components"]["schemas"]
        assert set(schema["components"]["schemas"]["ErrorBody"]["required"]) == {
            "error",
            "message",
        }

    def test_success_answers_are_documented(self, schema: dict[str, Any]) -> None:
        """Lists document their page model and 304; POST refresh documents 202 with a job."""
        paths = schema["paths"]

        def ok(path: str, method: str = "get", status: str = "200") -> str:
            ref: str = paths[API + path][method]["responses"][status]["content"][
                "application/json"
            ]["schema"]["$ref"]
            return ref.rsplit("/", 1)[1]

        assert ok("/projects") == "ProjectPage"
        assert ok("/artifacts") == "ArtifactPage"
        assert ok("/deployments") == "DeploymentPage"
        assert ok("/search") == "SearchPage"
        assert ok("/status") == "StatusBody"
        assert ok("/refresh", "post", "202") == "RefreshJob"
        assert ok("/invalidate", "post") == "InvalidateResult"
        for path in ("/projects", "/artifacts", "/deployments", "/search", "/projects/{project}"):
            assert "304" in paths[API + path]["get"]["responses"]

    def test_the_api_key_header_is_a_security_scheme(self, filled: ProjectCache) -> None:
        """With a key, X-API-Key is the security scheme and 401 is documented; without, neither."""
        with make_client(create_app(filled, ServerOptions())) as open_client:
            assert "securitySchemes" not in open_client.get("/openapi.json").json()["components"]
        with make_client(create_app(filled, ServerOptions(api_key="k"))) as keyed:
            schema = keyed.get("/openapi.json").json()
        for operations in schema["paths"].values():
            for operation in operations.values():
                assert operation["responses"]["401"]["content"] == ERROR_REF
        schemes = schema["components"]["securitySchemes"]
        assert schemes["APIKeyHeader"] == {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "The server's API key.",
        }

    def test_deployment_item_keeps_the_record_fields(self) -> None:
        """DeploymentItem is the stored record's fields plus the five the CLI adds on top."""
        added = {"project", "artifact", "name", "type", "collection"}
        assert set(DeploymentItem.model_fields) == set(DEPLOYMENT_FIELDS) | added


# -- background refresher --------------------------------------------------------------------


class TestBackgroundRefresher:
    def test_ttl_loop_refreshes_an_invalidated_project(self, filled: ProjectCache) -> None:
        """With a short interval an invalidated project is refreshed without being asked."""
        options = ServerOptions(refresh_interval=0.05)
        with make_client(create_app(filled, options)) as client:
            assert client.post(f"{API}/invalidate", json={"project": "webapp"}).json() == {
                "invalidated": 1
            }

            def refreshed() -> bool:
                status = client.get(f"{API}/status").json()
                return status["stale_projects"] == 0 and status["refresher"]["runs"] >= 1

            assert wait_for(refreshed)
            state = client.get(f"{API}/status").json()["refresher"]
            assert state["interval_seconds"] == 0.05 and state["last_run"] is not None
            assert state["failures"] == 0 and state["last_error"] is None
            assert client.get(f"{API}/projects/webapp").json()["stale"] is False
            refresher = client.app.state.refresher  # type: ignore[attr-defined]
        assert all(not thread.is_alive() for thread in refresher._threads)

    def test_refresh_stale_refreshes_only_what_is_stale(self, filled: ProjectCache) -> None:
        """One pass re-reads the invalidated project only and records the run."""
        refresher = BackgroundRefresher(filled, RefreshJobs(filled), interval=None)
        try:
            filled.invalidate(project="notes")
            report = refresher.refresh_stale()
            assert report is not None
            assert (report.collections_checked, report.projects_checked) == (0, 1)
            assert refresher.runs == 1 and refresher.failures == 0
            assert refresher.last_run is not None
            assert filled.find_project("notes").stale is False
            assert refresher.state()["last_run"] == refresher.last_run.isoformat()
        finally:
            refresher._jobs.shutdown()

    def test_a_failed_pass_is_counted_and_the_next_clears_the_error(
        self, filled: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A ProjcacheError is counted with its message; a later success clears `last_error`."""
        jobs = RefreshJobs(filled)
        refresher = BackgroundRefresher(filled, jobs, interval=None)
        try:

            def busy(*_args: Any, **_kwargs: Any) -> RefreshReport:
                raise CacheBusyError("all reader slots are taken")

            monkeypatch.setattr(filled, "refresh", busy)
            assert refresher.refresh_stale() is None
            assert (refresher.runs, refresher.failures) == (0, 1)
            assert refresher.last_error == "all reader slots are taken"
            assert not jobs.refresh_lock.locked()
            monkeypatch.undo()
            assert refresher.refresh_stale() is not None
            assert (refresher.runs, refresher.failures, refresher.last_error) == (1, 1, None)
        finally:
            jobs.shutdown()

    def test_status_reports_failures_of_the_loop(
        self, filled: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The TTL loop's failures show in `status.refresher`; the server keeps answering."""

        def busy(*_args: Any, **_kwargs: Any) -> RefreshReport:
            raise CacheBusyError("busy now")

        monkeypatch.setattr(filled, "refresh", busy)
        with make_client(create_app(filled, ServerOptions(refresh_interval=0.02))) as client:
            assert wait_for(
                lambda: client.get(f"{API}/status").json()["refresher"]["failures"] >= 2
            )
            state = client.get(f"{API}/status").json()["refresher"]
            assert state["last_error"] == "busy now" and state["runs"] == 0
            assert client.get(f"{API}/projects").status_code == 200

    def test_an_unexpected_exception_does_not_stop_the_loop(
        self, filled: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bug in one pass is counted like any failure; the next passes still run."""
        real = filled.refresh
        calls: list[int] = []

        def flaky(*args: Any, **kwargs: Any) -> RefreshReport:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("a bug in one pass")
            return real(*args, **kwargs)

        monkeypatch.setattr(filled, "refresh", flaky)
        refresher = BackgroundRefresher(filled, RefreshJobs(filled), interval=0.02)
        refresher.start()
        try:
            assert wait_for(lambda: refresher.runs >= 1, timeout=3)
            assert refresher.failures == 1
        finally:
            refresher.stop()
            refresher._jobs.shutdown()

    def test_watch_picks_up_an_edited_source(self, filled: ProjectCache, editable: Path) -> None:
        """With `watch`, editing a SKILL.md refreshes it into the cache without a request."""
        skill = editable / "collections" / "default" / "skills" / "pdf" / "SKILL.md"
        url = f"{API}/artifacts/default/skill/pdf"
        with make_client(create_app(filled, ServerOptions(watch=True))) as client:

            def described() -> bool:
                return bool(client.get(url).json()["description"] == "Watched by the server.")

            # The watcher needs a moment to install its inotify watches: edit until it sees one.
            for attempt in range(20):
                edit_description(skill, "Watched by the server.", attempt)
                if wait_for(described, timeout=0.7):
                    break
            assert described()
            state = client.get(f"{API}/status").json()["refresher"]
            assert state["watch"] is True and state["runs"] >= 1
            assert state["interval_seconds"] is None

    def test_watch_on_an_empty_cache_records_why_it_is_idle(self, tmp_path: Path) -> None:
        """Nothing cached to watch: the watcher stops and says so in `status`; requests work."""
        empty = ProjectCache.open(settings=Settings(cache_dir=tmp_path / "empty"))
        with empty, make_client(create_app(empty, ServerOptions(watch=True))) as client:

            def said() -> bool:
                error = client.get(f"{API}/status").json()["refresher"]["last_error"]
                return bool(error and "nothing to watch" in error)

            assert wait_for(said)
            assert client.get(f"{API}/artifacts").json()["total"] == 0


# -- refresh jobs (unit) -----------------------------------------------------------------------


@pytest.fixture
def empty_report(filled: ProjectCache) -> RefreshReport:
    """A real report of a refresh that touched nothing."""
    return filled.refresh(collections=[], projects=[])


class TestRefreshJobs:
    def test_jobs_run_one_at_a_time_in_order_and_share_the_lock(
        self, filled: ProjectCache, empty_report: RefreshReport, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Jobs queue behind each other and the background refresher waits for the same lock."""
        gate = threading.Event()
        guard = threading.Lock()
        active = [0]
        peak = [0]
        calls: list[tuple[Any, ...]] = []

        def fake(
            collections: Any = None, projects: Any = None, full: bool = False, **kwargs: Any
        ) -> RefreshReport:
            with guard:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
                calls.append((collections, projects, full, kwargs.get("stale_only", False)))
            try:
                assert gate.wait(10)
                if kwargs.get("progress"):
                    kwargs["progress"](1, 1, "unit")
                return empty_report
            finally:
                with guard:
                    active[0] -= 1

        monkeypatch.setattr(filled, "refresh", fake)
        jobs = RefreshJobs(filled)
        refresher = BackgroundRefresher(filled, jobs, interval=None)
        try:
            first = jobs.submit(RefreshRequest(project="webapp"))
            second = jobs.submit(RefreshRequest(collection="default", full=True))
            assert wait_for(lambda: jobs.get(first.id).state == "running")
            assert jobs.refresh_lock.locked()
            assert jobs.running() is not None and jobs.running().id == first.id  # type: ignore[union-attr]
            assert jobs.get(second.id).state == "queued"
            background = threading.Thread(target=refresher.refresh_stale)
            background.start()
            background.join(0.2)
            assert background.is_alive()  # waiting for the lock the job holds
            gate.set()
            background.join(10)
            assert wait_for(lambda: jobs.get(second.id).state == "done")
        finally:
            gate.set()
            jobs.shutdown()
        assert peak[0] == 1
        collection = filled.get_collection("default")
        assert collection is not None
        assert calls[0] == ([], [filled.find_project("webapp").path], False, False)
        # The second job and the TTL pass raced for the lock; each ran once, alone.
        assert sorted(calls[1:], key=repr) == sorted(
            [([collection.path], [], True, False), (None, None, False, True)], key=repr
        )
        snapshot = jobs.get(first.id)
        assert snapshot.progress.done == snapshot.progress.total == 1
        assert snapshot.report == empty_report.model_dump(mode="json")

    def test_keep_limit_evicts_the_oldest(
        self, filled: ProjectCache, empty_report: RefreshReport, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Only the newest `keep` jobs are remembered; an evicted one is a NotFoundError."""
        monkeypatch.setattr(filled, "refresh", lambda *a, **k: empty_report)
        jobs = RefreshJobs(filled, keep=2)
        try:
            # Three different requests: identical waiting ones would share one job.
            requests = [
                RefreshRequest(),
                RefreshRequest(full=True),
                RefreshRequest(project="webapp"),
            ]
            submitted = [jobs.submit(request) for request in requests]
            assert len({job.id for job in submitted}) == 3
            for job in submitted[1:]:
                assert wait_for(lambda job=job: jobs.get(job.id).state == "done")
            with pytest.raises(NotFoundError, match=submitted[0].id) as info:
                jobs.get(submitted[0].id)
            assert "newest 2" in info.value.hint
        finally:
            jobs.shutdown()

    def test_keep_limit_never_drops_a_job_that_has_not_finished(
        self, filled: ProjectCache, empty_report: RefreshReport, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Only finished jobs are evicted: a running job stays visible and ends `done`."""
        gate = threading.Event()

        def slow(*_args: Any, **_kwargs: Any) -> RefreshReport:
            assert gate.wait(10)
            return empty_report

        monkeypatch.setattr(filled, "refresh", slow)
        jobs = RefreshJobs(filled, keep=1)
        try:
            running = jobs.submit(RefreshRequest())
            assert wait_for(lambda: jobs.get(running.id).state == "running")
            queued = jobs.submit(RefreshRequest())
            # Two unfinished jobs with keep=1: neither may be dropped; the running one stays.
            assert jobs.get(running.id).state == "running"
            now = jobs.running()
            assert now is not None and now.id == running.id
            gate.set()
            assert wait_for(lambda: jobs.get(queued.id).state == "done")
        finally:
            gate.set()
            jobs.shutdown()

    def test_snapshots_are_copies(
        self, filled: ProjectCache, empty_report: RefreshReport, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """What `submit` and `get` return cannot change the stored job."""
        monkeypatch.setattr(filled, "refresh", lambda *a, **k: empty_report)
        jobs = RefreshJobs(filled)
        try:
            job = jobs.submit(RefreshRequest())
            assert job.state == "queued"
            assert wait_for(lambda: jobs.get(job.id).state == "done")
            snapshot = jobs.get(job.id)
            snapshot.progress.done = 99
            assert jobs.get(job.id).progress.done != 99
            assert job.state == "queued"  # the first snapshot did not move either
        finally:
            jobs.shutdown()

    def test_shutdown_finishes_the_running_job_and_drops_queued_ones(
        self, filled: ProjectCache, empty_report: RefreshReport, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`shutdown` waits for the running job; a queued one never runs."""
        gate = threading.Event()
        calls: list[int] = []

        def fake(*_args: Any, **_kwargs: Any) -> RefreshReport:
            calls.append(1)
            assert gate.wait(10)
            return empty_report

        monkeypatch.setattr(filled, "refresh", fake)
        jobs = RefreshJobs(filled)
        first = jobs.submit(RefreshRequest())
        second = jobs.submit(RefreshRequest(full=True))
        assert wait_for(lambda: jobs.get(first.id).state == "running")
        stopper = threading.Thread(target=jobs.shutdown)
        stopper.start()
        stopper.join(0.2)
        assert stopper.is_alive()  # waiting for the running job
        gate.set()
        stopper.join(10)
        assert not stopper.is_alive()
        assert jobs.get(first.id).state == "done"
        assert jobs.get(second.id).state == "queued"
        assert calls == [1]

    def test_unknown_targets_raise_before_queueing(self, filled: ProjectCache) -> None:
        """An unknown project or collection raises in `submit` and queues nothing."""
        jobs = RefreshJobs(filled)
        try:
            with pytest.raises(ProjectNotFound):
                jobs.submit(RefreshRequest(project="nope"))
            with pytest.raises(NotFoundError, match="no collection 'nope'"):
                jobs.submit(RefreshRequest(collection="nope"))
            assert jobs.running() is None
            with pytest.raises(NotFoundError):
                jobs.get("1-000000")
        finally:
            jobs.shutdown()


# -- run.py: binding and serving ----------------------------------------------------------


def _can_bind(host: str) -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind((host, 0))
    except OSError:
        return False
    return True


# IPv6 loopback where the machine has it (some containers do not): its URL shows brackets.
SERVE_HOSTS = [("127.0.0.1", "127.0.0.1")] + ([("::1", "[::1]")] if _can_bind("::1") else [])


class TestRun:
    @pytest.mark.parametrize(
        ("host", "loopback"),
        [
            ("127.0.0.1", True),
            ("127.1.2.3", True),
            ("::1", True),
            ("[::1]", True),
            ("localhost", True),
            ("0.0.0.0", False),
            ("::", False),
            ("192.168.1.10", False),
            ("example.com", False),
        ],
    )
    def test_is_loopback(self, host: str, loopback: bool) -> None:
        """Loopback addresses and `localhost` count as local; any other address or name does not."""
        assert is_loopback(host) is loopback

    def test_check_bind_refuses_a_public_address_without_a_key(self) -> None:
        """0.0.0.0 without a key is a ServerError (exit 13) whose hint says what to do."""
        with pytest.raises(
            ServerError, match=r"refusing to serve 0\.0\.0\.0 without an API key"
        ) as info:
            check_bind("0.0.0.0", None, insecure=False)
        assert info.value.exit_code == 13
        assert "PROJCACHE_API_KEY" in info.value.hint and "--insecure" in info.value.hint
        with pytest.raises(ServerError):
            check_bind("0.0.0.0", "", insecure=False)  # an empty key is no key

    @pytest.mark.parametrize(
        ("host", "key", "insecure"),
        [
            ("0.0.0.0", "k", False),
            ("0.0.0.0", None, True),
            ("127.0.0.1", None, False),
            ("::1", None, False),
        ],
    )
    def test_check_bind_allows(self, host: str, key: Any, insecure: bool) -> None:
        """A key, `insecure`, or a loopback address make binding allowed."""
        check_bind(host, key, insecure)

    def test_serve_refuses_a_public_address_before_binding(self, filled: ProjectCache) -> None:
        """serve() checks the address first: nothing is bound, on_ready is never called."""
        ready: list[str] = []
        with pytest.raises(ServerError, match="without an API key"):
            serve(filled, "0.0.0.0", 0, on_ready=ready.append)
        assert ready == []

    def test_serve_on_a_port_in_use(self, filled: ProjectCache) -> None:
        """A port another socket listens on is a ServerError saying it is in use."""
        ready: list[str] = []
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(
                ServerError, match=rf"cannot serve on 127.0.0.1:{port}: .*in use"
            ) as info:
                serve(filled, "127.0.0.1", port, on_ready=ready.append)
        assert info.value.exit_code == 13 and ready == []

    def test_serve_on_an_address_not_here(self, filled: ProjectCache) -> None:
        """An address of no local interface cannot be bound: a ServerError with a hint."""
        with pytest.raises(ServerError, match=r"cannot serve on 192\.0\.2\.1:0") as info:
            serve(filled, "192.0.2.1", 0, insecure=True)
        assert "--host" in info.value.hint

    @pytest.mark.parametrize(("host", "shown"), SERVE_HOSTS)
    def test_serve_in_a_thread_answers_and_stops(
        self, filled: ProjectCache, monkeypatch: pytest.MonkeyPatch, host: str, shown: str
    ) -> None:
        """serve() on port 0 reports its URL, answers real HTTP, and returns when told to exit."""
        import uvicorn

        from projcache.server import run as run_module

        servers: list[uvicorn.Server] = []

        class Recording(run_module._Server):
            def __init__(self, config: uvicorn.Config) -> None:
                super().__init__(config)
                servers.append(self)

        monkeypatch.setattr(run_module, "_Server", Recording)
        urls: list[str] = []
        failures: list[BaseException] = []

        def run() -> None:
            try:
                serve(filled, host, 0, ServerOptions(api_key="k"), on_ready=urls.append)
            except BaseException as exc:  # reported below
                failures.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            assert wait_for(lambda: (bool(servers) and servers[0].started) or bool(failures))
            assert not failures
            (url,) = urls
            match = re.fullmatch(rf"http://{re.escape(shown)}:(\d+)/", url)
            assert match and int(match.group(1)) > 0
            with httpx.Client(trust_env=False, timeout=10) as http:
                # (A 401 here would hide the rest of serve() from coverage's tracer; the
                # key's refusals are tested through the TestClient above.)
                status = http.get(url + "api/v1/cache/status", headers={"X-API-Key": "k"})
                page = http.get(url)
            assert status.status_code == 200
            assert status.json()["counts"]["artifacts"] == ARTIFACTS
            assert page.status_code == 200 and "projcache" in page.text
        finally:
            for server in servers:
                server.should_exit = True
            thread.join(15)
        assert not thread.is_alive() and not failures
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            assert probe.connect_ex((host, int(match.group(1)))) != 0  # the socket is closed


# -- the CLI command --------------------------------------------------------------------------


class FakeServe:
    """Stands in for projcache.server.serve: records its arguments and reports a URL."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, cache: ProjectCache, host: str, port: int, options: ServerOptions, **kwargs: Any
    ) -> None:
        self.calls.append(
            {"cache": str(cache.path), "host": host, "port": port, "options": options, **kwargs}
        )
        kwargs["on_ready"](f"http://{host}:{port or 4321}/")


class TestServeCommand:
    def test_help(self) -> None:
        """`serve --help` documents the options."""
        result = runner.invoke(cli_app, ["serve", "--help"])
        assert result.exit_code == 0
        for option in ("--host", "--port", "--watch", "--refresh-interval", "--api-key"):
            assert option in result.stdout
        assert "--insecure" in result.stdout and "PROJCACHE_API_KEY" in result.stdout

    def test_public_address_without_key_exits_13_before_opening_the_cache(
        self, cache_dir: Path
    ) -> None:
        """`serve --host 0.0.0.0` without a key: one error line, a hint, exit 13, no cache made."""
        result = cli(cache_dir, "serve", "--host", "0.0.0.0")
        assert result.exit_code == 13
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert lines[0].startswith("error: refusing to serve 0.0.0.0 without an API key")
        assert lines[1].startswith("hint: ") and len(lines) == 2
        assert not cache_dir.exists()

    def test_options_reach_serve(self, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Options and $PROJCACHE_API_KEY become ServerOptions; the URL is printed on stderr."""
        import projcache.server as server_package

        fake = FakeServe()
        monkeypatch.setattr(server_package, "serve", fake)
        monkeypatch.setenv("PROJCACHE_API_KEY", "from-env")
        result = cli(
            cache_dir,
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--watch",
            "--refresh-interval",
            "0",
            "--access-log",
        )
        assert result.exit_code == 0, result.output
        (call,) = fake.calls
        assert call["options"] == ServerOptions(
            api_key="from-env", refresh_interval=None, watch=True
        )
        assert (call["host"], call["port"], call["insecure"], call["access_log"]) == (
            "0.0.0.0",
            0,
            False,
            True,
        )
        assert result.stderr == f"serving {call['cache']} on http://0.0.0.0:4321/\n"
        assert call["cache"] == os.path.abspath(cache_dir)

    def test_defaults(self, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """By default: loopback, port 8765, a 60 s TTL pass, no watcher, no key."""
        import projcache.server as server_package

        fake = FakeServe()
        monkeypatch.setattr(server_package, "serve", fake)
        result = cli(cache_dir, "serve")
        assert result.exit_code == 0, result.output
        (call,) = fake.calls
        assert (call["host"], call["port"], call["insecure"], call["access_log"]) == (
            "127.0.0.1",
            8765,
            False,
            False,
        )
        assert call["options"] == ServerOptions(api_key=None, refresh_interval=60.0, watch=False)

    def test_insecure_allows_a_public_address(
        self, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`--insecure` lets 0.0.0.0 through without a key."""
        import projcache.server as server_package

        fake = FakeServe()
        monkeypatch.setattr(server_package, "serve", fake)
        result = cli(cache_dir, "serve", "--host", "0.0.0.0", "--insecure", "--api-key", "")
        assert result.exit_code == 0, result.output
        assert fake.calls[0]["insecure"] is True
        assert fake.calls[0]["options"].api_key is None  # an empty key is no key

    def test_port_in_use_exits_13(self, cache_dir: Path) -> None:
        """A taken port: `error: ... in use`, exit 13 (the real serve(), no server started)."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = cli(cache_dir, "serve", "--port", str(port))
        assert result.exit_code == 13
        assert result.stderr.startswith(
            f"error: cannot serve on 127.0.0.1:{port}: the address is in use"
        )

    def test_missing_fastapi_exits_13_with_an_install_hint(
        self, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without the server extra: exit 13 and a hint naming `projcache[server]`, no traceback."""
        for name in list(sys.modules):
            if name == "projcache.server" or name.startswith("projcache.server."):
                monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "fastapi", None)  # type: ignore[arg-type]
        result = cli(cache_dir, "serve")
        assert result.exit_code == 13
        assert result.stderr.splitlines() == [
            "error: the server is not installed (fastapi is missing)",
            "hint: Install it with: pip install 'projcache[server]'",
        ]
        assert "Traceback" not in result.output

    def test_missing_uvicorn_exits_13_with_an_install_hint(
        self, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """FastAPI without uvicorn is the same missing extra: exit 13 and the hint, no traceback."""
        real_import = builtins.__import__

        def no_uvicorn(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "uvicorn" or name.startswith("uvicorn."):
                raise ModuleNotFoundError("No module named 'uvicorn'", name="uvicorn")
            return real_import(name, *args, **kwargs)

        # run.py imports uvicorn when the server package is first imported: forget both.
        for name in [m for m in sys.modules if m.startswith(("projcache.server", "uvicorn"))]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setattr(builtins, "__import__", no_uvicorn)
        result = cli(cache_dir, "serve", "--port", "0")
        assert result.exit_code == 13, (result.exit_code, result.exception)
        assert "projcache[server]" in result.stderr
        assert "Traceback" not in result.output


# -- projcache serve in a subprocess ------------------------------------------------------------


class ServerProcess:
    """`projcache serve --port 0` in a subprocess; stderr is read by a thread, line by line."""

    def __init__(self, cache_dir: Path, home: Path, *options: str) -> None:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("PROJCACHE_") and name != "SKILLMEAT_ENABLE_CACHE"
        }
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), PYTHONUNBUFFERED="1")
        command = [sys.executable, "-m", "projcache_cli", "--cache-dir", str(cache_dir), "serve"]
        self.proc = spawn_piped([*command, "--port", "0", *options], env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def url(self, timeout: float = 20.0) -> str:
        """The URL from the `serving <dir> on <url>` line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                assert self.proc.poll() is None, "".join(self.stderr)
                continue
            match = re.fullmatch(r"serving (\S+) on (http://127\.0\.0\.1:\d+/)\n", line)
            if match:
                return match.group(2)
        raise AssertionError(f"no `serving` line within {timeout}s: {''.join(self.stderr)}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig``, wait for the exit; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


@pytest.fixture
def served(filled: ProjectCache, cache_dir: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """`projcache serve` on the examples cache (closed here first), stopped after the test."""
    filled.close()
    process = ServerProcess(cache_dir, tmp_path / "home")
    try:
        yield process
    finally:
        process.stop(signal.SIGKILL)


class TestServeProcess:
    def test_serves_the_cache_over_http(self, served: ServerProcess, cache_dir: Path) -> None:
        """The printed URL answers the API and the page, with the CLI's data."""
        url = served.url()
        with urllib.request.urlopen(url + "api/v1/cache/status", timeout=10) as response:
            assert response.status == 200
            status = orjson.loads(response.read())
        assert status["cache_dir"] == os.path.abspath(cache_dir)
        assert status["counts"]["artifacts"] == ARTIFACTS
        assert status["refresher"]["interval_seconds"] == 60.0
        with urllib.request.urlopen(
            url + "api/v1/cache/deployments?state=outdated", timeout=10
        ) as response:
            assert [i["artifact"] for i in orjson.loads(response.read())["items"]] == [
                "default/skill/code-review"
            ]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["content-type"].startswith("text/html")
        served.stop(signal.SIGTERM)
        log = "".join(served.stderr)
        assert "Application shutdown complete" in log
        assert "Traceback" not in log

    def test_sigterm_stops_it_cleanly_with_exit_0(self, served: ServerProcess) -> None:
        """SIGTERM is the normal way to stop a service: graceful shutdown, cache closed, exit 0."""
        url = served.url()
        with urllib.request.urlopen(url + "api/v1/cache/status", timeout=10) as response:
            assert response.status == 200
        code = served.stop(signal.SIGTERM)
        assert code == 0, "".join(served.stderr)
        assert "Traceback" not in "".join(served.stderr)


# -- one listing = one snapshot over HTTP (issue 12 item 10) -----------------------------------


class TestListingSnapshot:
    """GET /artifacts?limit=1000 answers from one read snapshot, whatever a writer does."""

    N = 600  # more than two 256-record pages

    def _generation(self, gen: int) -> list[dict[str, Any]]:
        return [
            {"name": f"a{i:04d}", "type": "skill", "collection": "c", "version": f"{gen}.0.0"}
            for i in range(self.N)
        ]

    @pytest.fixture
    def big(self, tmp_path: Path) -> Iterator[ProjectCache]:
        settings = Settings(cache_dir=tmp_path / "big-cache", map_size=64 * 1024**2)
        with ProjectCache.open(settings=settings) as cache:
            cache.put_artifacts(self._generation(1))
            yield cache

    def _versions(self, client: TestClient, **filters: str) -> dict[str, int]:
        response = client.get(f"{API}/artifacts", params={"limit": 1000, **filters})
        assert response.status_code == 200, response.text
        counts: dict[str, int] = {}
        for item in response.json()["items"]:
            counts[item["version"]] = counts.get(item["version"], 0) + 1
        return counts

    def test_a_write_between_pages_is_not_in_the_response(
        self, big: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Deterministic: a write committed after page 1 was read is not in the answer.

        (A filtered listing is streamed 256 records at a time; the unfiltered page is
        read at once, see test_the_total_and_the_page_come_from_one_snapshot.)
        """
        from projcache.repository import ArtifactRepository

        original = ArtifactRepository.scan_payloads
        calls: list[int] = []

        second = self._generation(2)

        def scan(repo: ArtifactRepository, *args: Any, **kwargs: Any) -> Iterator[Any]:
            rows = list(original(repo, *args, **kwargs))
            calls.append(len(rows))
            if len(calls) == 1:
                big.put_artifacts(second)
            return iter(rows)

        monkeypatch.setattr(ArtifactRepository, "scan_payloads", scan)
        with TestClient(create_app(big), base_url="http://127.0.0.1") as client:
            assert self._versions(client, collection="c") == {"1.0.0": self.N}
            assert len(calls) >= 3
            assert self._versions(client, collection="c") == {"2.0.0": self.N}

    def test_the_total_and_the_page_come_from_one_snapshot(
        self, big: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Deterministic: 100 deletes committed right after the total was read change neither."""
        from projcache.repository import ArtifactRepository

        original = ArtifactRepository.count
        deleted: list[str] = []

        def delete_some() -> None:
            for i in range(100):
                deleted.append(f"c/skill/a{i:04d}")
                big.delete_artifact(deleted[-1])

        def count(repo: ArtifactRepository, txn: Any) -> int:
            total = original(repo, txn)
            if not deleted:  # another thread's write, committed while this read is open
                writer = threading.Thread(target=delete_some)
                writer.start()
                writer.join()
            return total

        monkeypatch.setattr(ArtifactRepository, "count", count)
        with TestClient(create_app(big), base_url="http://127.0.0.1") as client:
            body = client.get(f"{API}/artifacts", params={"limit": 1000}).json()
            assert len(deleted) == 100
            assert body["total"] == len(body["items"]) == self.N
            after = client.get(f"{API}/artifacts", params={"limit": 1000}).json()
            assert after["total"] == len(after["items"]) == self.N - 100

    def test_a_concurrent_writer_never_shows_a_mix(self, big: ProjectCache) -> None:
        """A writer replaces all N records per transaction; 2 s of requests: never a mix."""
        stop = threading.Event()
        written: list[int] = []

        def writer() -> None:
            gen = 2
            while not stop.is_set():
                big.put_artifacts(self._generation(gen))
                written.append(gen)
                gen += 1

        thread = threading.Thread(target=writer, daemon=True)
        mixed = responses = 0
        with TestClient(create_app(big), base_url="http://127.0.0.1") as client:
            thread.start()
            try:
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline or responses < 5:
                    counts = self._versions(client)
                    responses += 1
                    mixed += len(counts) > 1 or sum(counts.values()) != self.N
            finally:
                stop.set()
                thread.join(timeout=30)
        assert written, "the writer never committed"
        assert mixed == 0, f"{mixed} of {responses} responses mixed two generations"
