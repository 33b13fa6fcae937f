"""The whole life of a cache, with real processes and real files (issue 5, item 5).

A SkillMeat collection is written under ``~/.skillmeat/collections`` (``HOME``
is a temporary folder), artifacts are added and deployed into a project the
way SkillMeat does it (copies under ``.claude/`` plus
``.skillmeat-deployed.toml`` with SkillMeat's content hashes, see
``tests/factories.py``), and then the ``projcache`` script and a
``projcache serve`` process are driven side by side: refresh, compare the CLI
with the API, edit a deployed file, update the collection, invalidate,
refresh, restart the server.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import httpx
import pytest

from factories import CollectionBuilder, ProjectBuilder
from served import isolated_env, projcache_command

API = "/api/v1/cache"


# -- processes ------------------------------------------------------------------------------


@dataclass
class Server:
    """A ``projcache serve`` process (from the ``served_cache`` fixture) and a client of its API."""

    served: Any  # conftest's ServedCache: the base URL, with .process and .log_text()
    api: httpx.Client

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig``, wait for the exit; return the exit status."""
        self.api.close()
        process: subprocess.Popen[bytes] = self.served.process
        if process.poll() is None:
            process.send_signal(sig)
            process.wait(timeout=20)
        return process.returncode


@dataclass
class World:
    """A collection, a project deploying from it, a cache, and the tools to drive them."""

    cache_dir: Path
    collection: CollectionBuilder
    project: ProjectBuilder
    env: dict[str, str]

    def cli(self, *args: str, expect: int = 0) -> str:
        """Run ``projcache --cache-dir CACHE ARGS``; check its exit status; return stdout."""
        done = subprocess.run(
            [*projcache_command(), "--cache-dir", str(self.cache_dir), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        assert done.returncode == expect, f"projcache {' '.join(args)}:\n{done.stderr}"
        return done.stdout

    def cli_json(self, *args: str) -> Any:
        """Run a ``--json`` command and parse its output."""
        return json.loads(self.cli(*args, "--json"))

    def refresh(self) -> dict[str, Any]:
        """``projcache refresh --collection C --project P --json``: the report."""
        report: dict[str, Any] = self.cli_json(
            "refresh",
            "--collection",
            str(self.collection.path),
            "--project",
            str(self.project.path),
        )
        assert report["errors"] == []
        return report


@pytest.fixture
def world(tmp_path: Path, e2e_home: Path) -> World:
    """A SkillMeat home: collection ``default`` with three artifacts, an empty project."""
    collection = CollectionBuilder(e2e_home / ".skillmeat" / "collections", "default")
    collection.skill(
        "pdf-extract",
        files={"reference.md": "# Reference\n\nTables and forms.\n"},
        tags=["pdf", "documents"],
        resolved_version="1.0.0",
        metadata={"title": "PDF extract", "author": "acme", "license": "MIT"},
    )
    collection.command(
        "review-pr",
        front_matter={"description": "Review a pull request before merging", "tags": ["git"]},
        tags=["git", "review"],
    )
    collection.agent("release-planner", tags=["planning"], resolved_version="0.3.0")
    collection.write()
    project = ProjectBuilder(tmp_path / "work", "webapp", description="The web app")
    project.write()
    # The environment served_cache gives the server: no PROJCACHE_*, HOME in the test.
    return World(tmp_path / "cache", collection, project, isolated_env(e2e_home))


@pytest.fixture
def serve(world: World, served_cache: Callable[..., Any]) -> Iterator[Callable[[], Server]]:
    """Start a server over the world's cache (``serve()``); all are stopped after the test.

    At the end, no server may have logged an error or a traceback.
    """
    servers: list[Server] = []

    def start() -> Server:
        # No TTL pass: on a loaded machine a test outlives the default 60 s interval, and
        # the restart check below counts refresher runs.
        served = served_cache(world.cache_dir, "--refresh-interval", "0")
        client = httpx.Client(base_url=served.rstrip("/") + API, timeout=30)
        servers.append(Server(served, client))
        return servers[-1]

    yield start
    for server in servers:
        server.api.close()
        log = server.served.log_text()
        assert not re.findall(r"^(?:ERROR|CRITICAL|Traceback).*$", log, re.MULTILINE), log


# -- comparisons --------------------------------------------------------------------------


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def _api_deployments(server: Server, **params: str) -> list[dict[str, Any]]:
    page = _ok(server.api.get("/deployments", params={"limit": 1000, **params}))
    assert page["total"] == len(page["items"])
    items: list[dict[str, Any]] = page["items"]
    return items


def _states(deployments: list[dict[str, Any]]) -> dict[str, str]:
    return {d["name"]: d["state"] for d in deployments}


def _assert_cli_and_api_agree(world: World, server: Server, *, every_query: bool = True) -> None:
    """Deployments, artifacts, one artifact, searches and the projects: the same on both sides.

    Without ``every_query``, only deployments and projects are compared (a CLI call costs
    a fifth of a second).
    """
    assert world.cli_json("list", "deployments") == _api_deployments(server)
    _assert_projects_agree(world, server)
    if not every_query:
        return
    for state in ("current", "outdated", "modified", "missing"):
        cli = world.cli_json("list", "deployments", "--state", state)
        assert cli == _api_deployments(server, state=state)

    artifacts = _ok(server.api.get("/artifacts", params={"limit": 1000}))
    assert world.cli_json("list", "artifacts") == artifacts["items"]
    assert artifacts["total"] == len(artifacts["items"])

    key = world.collection.key("skill", "pdf-extract")
    detail = _ok(server.api.get(f"/artifacts/{key}"))
    where = detail.pop("deployments")
    assert world.cli_json("get", key) == detail
    assert where == [d for d in world.cli_json("list", "deployments") if d["artifact"] == key]

    for query in ("pdf", "review", "plan"):
        cli = world.cli_json("search", query)
        api = _ok(server.api.get("/search", params={"q": query}))
        assert cli == api, query  # the same document (ProjectCache.search_view_json)
        assert api["total"] > 0


def _assert_projects_agree(world: World, server: Server) -> None:
    """``list projects --json`` and ``GET projects``: the same projects, counts and freshness."""
    cli_projects = world.cli_json("list", "projects")
    api_projects = _ok(server.api.get("/projects"))["items"]
    assert len(cli_projects) == len(api_projects) == 1
    shared = {"id", "name", "path", "description", "stale", "is_stale", "errors", "refreshed_at"}
    for cli_item, api_item in zip(cli_projects, api_projects):
        assert {k: cli_item[k] for k in shared} == {k: api_item[k] for k in shared}
        assert cli_item["deployments"] == api_item["deployments"]


def _page_urls(world: World) -> dict[str, str]:
    """What a page load asks for."""
    key = world.collection.key("skill", "pdf-extract")
    return {
        "status": "/status",
        "projects": "/projects",
        "project": f"/projects/{world.project.name}",
        "artifacts": "/artifacts?limit=1000",
        "artifact": f"/artifacts/{key}",
        "deployments": "/deployments?limit=1000",
        "outdated": "/deployments?state=outdated",
        "search": "/search?q=pdf",
    }


def _snapshot(server: Server, world: World) -> dict[str, tuple[Any, Optional[str]]]:
    """Each page-load answer with its ETag."""
    out = {}
    for name, url in _page_urls(world).items():
        response = server.api.get(url)
        out[name] = (_ok(response), response.headers.get("etag"))
    return out


def _wait_for_job(server: Server, job: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"refresh job still {job['state']}: {job}"
        time.sleep(0.05)
        job = _ok(server.api.get(f"/refresh/{job['id']}"))
    return job


# -- the tests ------------------------------------------------------------------------------


def test_lifecycle_cli_and_api_agree(world: World, serve: Callable[[], Server]) -> None:
    """Refresh, modified, outdated, invalidate, refresh, restart: CLI and API agree all along."""
    collection, project = world.collection, world.project

    # A first refresh of the collection alone: three artifacts, nothing deployed.
    first = world.refresh()
    assert first["artifacts_written"] == 3
    assert world.cli_json("list", "deployments") == []

    # Add artifacts, deploy them (and keep one local, unmanaged command), refresh.
    collection.skill(
        "frontend-design", tags=["frontend"], files={"examples/button.md": "A button.\n"}
    )
    collection.command("changelog", tags=["release"], resolved_version="2.1.0")
    collection.write()
    project.deploy(collection, "skill", "pdf-extract", version="1.0.0")
    project.deploy(collection, "command", "review-pr")
    project.deploy(collection, "agent", "release-planner", version="0.3.0")
    project.deploy(collection, "skill", "frontend-design")
    project.local("command", "deploy-notes", front_matter={"description": "Notes on deploys"})
    project.write()
    second = world.refresh()
    assert second["artifacts_written"] >= 2 and second["deployments_written"] == 5
    deployments = world.cli_json("list", "deployments")
    assert {d["state"] for d in deployments} == {"current"}
    assert len(deployments) == 5

    server = serve()
    _assert_cli_and_api_agree(world, server)
    etag = server.api.get("/deployments").headers["etag"]
    assert server.api.get("/deployments", headers={"If-None-Match": etag}).status_code == 304

    # A user edits a deployed copy: modified, on both sides, once refreshed (while serving).
    deployed = project.deployed_path("command", "review-pr")
    deployed.write_text(deployed.read_text("utf-8") + "\nMy own checklist.\n", "utf-8")
    world.refresh()
    assert _states(world.cli_json("list", "deployments"))["review-pr"] == "modified"
    assert _states(_api_deployments(server))["review-pr"] == "modified"
    assert server.api.get("/deployments", headers={"If-None-Match": etag}).status_code == 200
    _assert_cli_and_api_agree(world, server, every_query=False)

    # The collection moves on: new content, new version, new lock hash -> outdated.
    skill_md = collection.main_file("skill", "pdf-extract")
    skill_md.write_text(skill_md.read_text("utf-8") + "\nNow with OCR.\n", "utf-8")
    collection.entries[("skill", "pdf-extract")]["resolved_version"] = "1.1.0"
    collection.write()
    world.refresh()
    expected = {
        "pdf-extract": "outdated",
        "review-pr": "modified",
        "release-planner": "current",
        "frontend-design": "current",
        "deploy-notes": "current",
    }
    assert _states(world.cli_json("list", "deployments")) == expected
    assert _states(_api_deployments(server)) == expected
    outdated = _api_deployments(server, state="outdated")
    assert [d["artifact"] for d in outdated] == ["default/skill/pdf-extract"]
    assert world.cli_json("list", "deployments", "--outdated") == outdated
    lock = (collection.path / "collection.lock").read_text("utf-8")
    artifact = _ok(server.api.get("/artifacts/default/skill/pdf-extract"))
    assert artifact["resolved_version"] == "1.1.0"
    assert artifact["content_hash"] in lock
    _assert_cli_and_api_agree(world, server)

    # Invalidate: stale everywhere, data still readable.
    world.cli("invalidate")
    status = _ok(server.api.get("/status"))
    assert status["stale_projects"] == 1 and status["stale_collections"] == 1
    assert [p["stale"] for p in _ok(server.api.get("/projects"))["items"]] == [True]
    assert [p["is_stale"] for p in _ok(server.api.get("/projects"))["items"]] == [True]
    assert _ok(server.api.get("/projects", params={"stale": True}))["total"] == 1
    assert [p["is_stale"] for p in world.cli_json("list", "projects")] == [True]
    assert _states(_api_deployments(server)) == expected
    _assert_cli_and_api_agree(world, server, every_query=False)

    # Refresh: fresh again, same states.
    world.refresh()
    status = _ok(server.api.get("/status"))
    assert status["stale_projects"] == 0 and status["stale_collections"] == 0
    assert [p["stale"] for p in _ok(server.api.get("/projects"))["items"]] == [False]
    assert _states(_api_deployments(server)) == expected
    _assert_cli_and_api_agree(world, server)

    # Restart on the same cache: the same answers at once, nothing re-read or rebuilt.
    # (Whether the ETags survive too is test_a_clean_stop_keeps_the_etags.)
    before = _snapshot(server, world)
    assert before["status"][0]["refresher"]["runs"] == 0
    assert server.stop() == 0
    server = serve()
    after = _snapshot(server, world)
    bodies = {name: _without_generation(body) for name, (body, _etag) in after.items()}
    assert bodies == {name: _without_generation(body) for name, (body, _etag) in before.items()}
    status = after["status"][0]
    assert status["refresher"]["runs"] == 0
    assert status["newest_refresh"] == before["status"][0]["newest_refresh"]


# What moves with activity, not with content: the ETags' source and the lookup counters
# (saved at a clean stop, so the commit that saves them moves last_txn_id too).
_ACTIVITY = ("generation", "hits", "misses", "hit_rate", "last_txn_id")


def _without_generation(body: Any) -> Any:
    """``body`` without the status's activity fields (``generation``, hit counters)."""
    if isinstance(body, dict) and "generation" in body:
        return {k: v for k, v in body.items() if k not in _ACTIVITY}
    return body


def test_refresh_and_invalidate_through_the_api(world: World, serve: Callable[[], Server]) -> None:
    """POST refresh answers 202 with a job that ends done; POST invalidate marks stale."""
    collection, project = world.collection, world.project
    project.deploy(collection, "skill", "pdf-extract", version="1.0.0")
    project.write()
    world.refresh()
    server = serve()

    # A new artifact on disk, picked up by a refresh of its collection through the API.
    collection.command("lint-docs", tags=["docs"], resolved_version="0.1.0")
    collection.write()
    response = server.api.post("/refresh", json={"collection": "default"})
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"refresh/{job['id']}"
    assert job["state"] in ("queued", "running", "done")
    assert job["request"] == {"project": None, "collection": "default", "full": False}
    job = _wait_for_job(server, job)
    assert job["state"] == "done", job
    assert job["error"] is None and job["finished_at"] is not None
    assert job["report"]["artifacts_written"] >= 1 and job["report"]["errors"] == []
    assert job["progress"]["done"] == job["progress"]["total"] >= 1
    key = collection.key("command", "lint-docs")
    detail = _ok(server.api.get(f"/artifacts/{key}"))
    detail.pop("deployments")
    assert world.cli_json("get", key) == detail
    assert _ok(server.api.get(f"/refresh/{job['id']}")) == job  # kept for late pollers

    # Invalidate one project, then refresh everything (no body): fresh again.
    response = server.api.post("/invalidate", json={"project": project.name})
    assert response.status_code == 200 and response.json() == {"invalidated": 1}
    assert _ok(server.api.get("/status"))["stale_projects"] == 1
    assert world.cli_json("list", "projects")[0]["is_stale"] is True
    job = _wait_for_job(server, server.api.post("/refresh", json={}).json())
    assert job["state"] == "done", job
    assert job["report"]["projects_checked"] == 1 and job["report"]["collections_checked"] >= 1
    status = _ok(server.api.get("/status"))
    assert status["stale_projects"] == 0 and status["stale_collections"] == 0
    assert status["refresher"]["job"] is None

    # Mistakes get JSON errors with the right status.
    missing = server.api.post("/refresh", json={"project": "no-such-project"})
    assert missing.status_code == 404 and missing.json()["error"] == "ProjectNotFound"
    assert server.api.post("/refresh", json={"collection": "nope"}).status_code == 404
    assert server.api.post("/refresh", json={"everything": True}).status_code == 422
    assert server.api.get("/refresh/no-such-job").status_code == 404
    assert server.api.post("/invalidate", json={"project": "nope"}).status_code == 404


def test_sigterm_saves_the_hit_counters(world: World, serve: Callable[[], Server]) -> None:
    """SIGTERM stops the server cleanly (exit 0) after closing the cache: its lookups count."""
    world.refresh()
    server = serve()
    _ok(server.api.get("/artifacts/default/skill/pdf-extract"))
    assert server.stop(signal.SIGTERM) == 0
    assert world.cli_json("show")["hits"] >= 1


def test_a_clean_stop_keeps_the_etags(world: World, serve: Callable[[], Server]) -> None:
    """Stopping the server and starting it again leaves the ETags current."""
    world.refresh()
    server = serve()
    _ok(server.api.get("/artifacts/default/skill/pdf-extract"))
    etag = server.api.get("/artifacts").headers["etag"]
    assert server.stop() == 0
    response = serve().api.get("/artifacts", headers={"If-None-Match": etag})
    assert response.status_code == 304
