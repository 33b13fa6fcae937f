"""Locust load test of ``projcache serve``: a realistic mix of reads, searches and refreshes.

Run against a running server (``tests/load/test_load.py`` does this on a
cache of 10,000 artifacts)::

    locust -f tests/load/locustfile.py --headless -u 20 -r 10 -t 30s --host http://127.0.0.1:8765

Before the users start, the file asks the server (outside the statistics)
what it holds: projects, a sample of artifact keys, deployed keys and the
words of their names and descriptions, from which the searches are drawn.
Every response is checked against the shapes the API documents (status
code, keys, item fields, filters applied, totals consistent with the page),
so a wrong answer counts as a failure, not only an error status.  Set
``PROJCACHE_API_KEY`` when the server wants one.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, ClassVar, Optional
from urllib.parse import quote

import requests
from locust import HttpUser, between, events, task

API = "/api/v1/cache"
SEED = 20261126
TYPES = ("skill", "command", "agent")
STATES = ("current", "outdated", "modified", "missing")


def _fields(text: str) -> frozenset[str]:
    """The names in ``text`` (whitespace-separated)."""
    return frozenset(text.split())


# Words the search ignores (projcache's stop words) or that match nearly everything.
STOP = _fields(
    """a an and are as at be but by for from has have if in into is it its of on or that the
    their then there these this to was were will with use each step before team"""
)

STATUS_KEYS = _fields(
    """version cache_dir schema_version generation counts stale_projects stale_collections
    ttl_seconds newest_refresh oldest_refresh file_bytes used_bytes map_size errors
    refresher read_only"""
)
PROJECT_KEYS = _fields(
    """id name path description managed refreshed_at stale errors deployments states
    is_stale expires_at"""
)
ARTIFACT_KEYS = _fields(
    """key name type collection path title description tags version origin upstream
    resolved_sha resolved_version content_hash front_matter managed updated_at"""
)
DEPLOYMENT_KEYS = _fields(
    """project artifact name type collection project_id artifact_key deployed_at
    artifact_path content_hash local_hash files_present version state"""
)
JOB_KEYS = _fields("""id state request created_at started_at finished_at progress report error""")


class BadResponse(Exception):
    """A response that does not match what the API documents."""


def expect(condition: bool, message: str) -> None:
    """Raise :class:`BadResponse` with ``message`` unless ``condition``."""
    if not condition:
        raise BadResponse(message)


# -- what the server holds (filled once per run, before the users start) ---------------------


class Catalog:
    """Projects, artifact keys and search words of the cache under test."""

    projects: ClassVar[list[dict[str, Any]]] = []
    keys: ClassVar[list[str]] = []
    deployed_keys: ClassVar[list[str]] = []
    collections: ClassVar[list[str]] = []
    tags: ClassVar[list[str]] = []
    common_words: ClassVar[list[str]] = []
    rare_words: ClassVar[list[str]] = []


def _headers() -> dict[str, str]:
    key = os.environ.get("PROJCACHE_API_KEY")
    return {"X-API-Key": key} if key else {}


@events.test_start.add_listener
def load_catalog(environment: Any, **_kwargs: Any) -> None:
    """Learn what the server holds, so that requests name real projects, keys and words."""
    host = (environment.host or "").rstrip("/")
    if not host:
        raise RuntimeError("pass the server's base URL with --host")
    random.seed(SEED)  # the same catalog and a like mix of requests on every run
    session = requests.Session()
    session.headers.update(_headers())

    def get(path: str, **params: Any) -> Any:
        response = session.get(f"{host}{API}{path}", params=params, timeout=60)
        response.raise_for_status()
        return response.json()

    Catalog.projects = get("/projects", limit=1000)["items"]
    total = get("/artifacts", limit=1)["total"]
    artifacts: list[dict[str, Any]] = []
    for offset in sorted({0, *(random.randrange(max(total, 1)) for _ in range(4))}):
        artifacts += get("/artifacts", limit=500, offset=offset)["items"]
    Catalog.keys = sorted({a["key"] for a in artifacts})
    Catalog.collections = sorted({a["collection"] for a in artifacts if a["managed"]})
    Catalog.tags = sorted({t for a in artifacts for t in a["tags"]})
    Catalog.deployed_keys = sorted(
        {d["artifact"] for d in get("/deployments", limit=1000)["items"]}
    )
    words: Counter[str] = Counter()
    for artifact in artifacts:
        text = f"{artifact['name']} {artifact['description']}".lower()
        words.update(w for w in re.findall(r"[a-z][a-z0-9]+", text) if w not in STOP)
    ranked = [w for w, _n in words.most_common() if len(w) >= 3]
    Catalog.common_words = ranked[:30]
    Catalog.rare_words = ranked[30:] or ranked
    if not (Catalog.keys and Catalog.common_words):
        raise RuntimeError(f"the cache at {host} is empty: refresh it before the load test")


# -- checks of the documented shapes ---------------------------------------------------------


def check_keys(item: dict[str, Any], required: Iterable[str], what: str) -> None:
    """``item`` has at least the ``required`` keys."""
    missing = set(required) - item.keys()
    expect(not missing, f"{what} lacks {sorted(missing)}")


def check_page(body: Any, limit: int, offset: int) -> list[dict[str, Any]]:
    """A page envelope: items, total, limit and offset echoed, page size consistent."""
    expect(isinstance(body, dict), "the body is not an object")
    check_keys(body, {"items", "total", "limit", "offset"}, "page")
    items, total = body["items"], body["total"]
    expect(isinstance(items, list) and isinstance(total, int), "items/total of the wrong type")
    expect(body["limit"] == limit and body["offset"] == offset, "limit/offset not echoed")
    expect(
        len(items) == max(0, min(limit, total - offset)),
        f"{len(items)} items on a page of {limit} at {offset} of {total}",
    )
    return items


def check_artifact(item: dict[str, Any]) -> None:
    """An artifact record: its fields, and a key made of collection, type and name."""
    check_keys(item, ARTIFACT_KEYS, "artifact")
    expect(
        item["key"] == f"{item['collection']}/{item['type']}/{item['name']}",
        f"key {item['key']!r} disagrees with its collection/type/name",
    )
    expect(isinstance(item["tags"], list), "tags is not a list")


def check_deployment(item: dict[str, Any]) -> None:
    """A deployment view: its fields and a valid state."""
    check_keys(item, DEPLOYMENT_KEYS, "deployment")
    expect(item["state"] in STATES, f"unknown state {item['state']!r}")
    expect(item["artifact"] == item["artifact_key"], "artifact and artifact_key differ")
    expect(item["project"] == item["project_id"], "project and project_id differ")
    expect(item["artifact"].split("/")[1] == item["type"], "type disagrees with the key")


def check_project(item: dict[str, Any]) -> None:
    """A project item: its fields; its state counts add up to its deployments."""
    check_keys(item, PROJECT_KEYS, "project")
    expect(
        sum(item["states"].values()) == item["deployments"],
        f"states {item['states']} do not add up to {item['deployments']} deployments",
    )


def check_job(job: dict[str, Any]) -> None:
    """A refresh job: its fields and a known state."""
    check_keys(job, JOB_KEYS, "refresh job")
    expect(job["state"] in ("queued", "running", "done", "failed"), f"job state {job['state']}")
    progress = job["progress"]
    expect(0 <= progress["done"] <= max(progress["total"], progress["done"]), "bad progress")


# -- the users ----------------------------------------------------------------------------------


class CacheUser(HttpUser):
    """Someone on the web page (lists, details, search as you type) or a script on the API.

    Task weights add up to 100: reads dominate, a refresh is 1 in 100.
    """

    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.client.headers.update(_headers())
        self.etags: dict[str, str] = {}

    # -- helpers

    def _get(
        self,
        url: str,
        name: str,
        params: Optional[dict[str, Any]] = None,
        check: Any = None,
        remember: bool = False,
    ) -> Any:
        """GET ``url``: status 200, JSON, then ``check(body)``; a mismatch fails the request."""
        with self.client.get(url, params=params, name=name, catch_response=True) as response:
            try:
                expect(response.status_code == 200, f"status {response.status_code}")
                expect(
                    response.headers.get("content-type", "").startswith("application/json"),
                    "not JSON",
                )
                body = response.json()
                if check is not None:
                    check(body)
            except (BadResponse, ValueError, KeyError, TypeError) as exc:
                response.failure(f"{type(exc).__name__}: {exc}: {response.text[:300]}")
                return None
            etag = response.headers.get("etag")
            if remember and etag:
                self.etags[url] = etag
            response.success()
            return body

    def _project(self) -> dict[str, Any]:
        return random.choice(Catalog.projects)

    # -- tasks

    @task(6)
    def status(self) -> None:
        """The page's header: counts, freshness, refresher state."""

        def check(body: dict[str, Any]) -> None:
            check_keys(body, STATUS_KEYS, "status")
            counts = body["counts"]
            expect(counts["artifacts"] >= len(Catalog.keys), "fewer artifacts than sampled")
            expect(counts["projects"] >= len(Catalog.projects), "fewer projects than listed")
            expect(isinstance(body["generation"], str) and body["generation"], "no generation")

        self._get(f"{API}/status", "/status", check=check)

    @task(9)
    def projects(self) -> None:
        """The project list, sometimes filtered by name or freshness."""
        params: dict[str, Any] = {"limit": random.choice((10, 50))}
        roll = random.random()
        if roll < 0.2:
            params["name"] = self._project()["name"][:4]
        elif roll < 0.3:
            params["stale"] = "false"

        def check(body: dict[str, Any]) -> None:
            items = check_page(body, params["limit"], 0)
            for item in items:
                check_project(item)
                if "name" in params:
                    expect(params["name"].lower() in item["name"].lower(), "name filter ignored")
                if "stale" in params:
                    expect(item["is_stale"] is False, "stale filter ignored")

        self._get(f"{API}/projects", "/projects", params, check=check)

    @task(8)
    def project_detail(self) -> None:
        """One project with all its deployments, by id or by name."""
        project = self._project()
        ref = project["id"] if random.random() < 0.5 else project["name"]

        def check(body: dict[str, Any]) -> None:
            check_project(body)
            expect(body["id"] == project["id"], "another project answered")
            deployments = body["deployment_list"]
            expect(len(deployments) == body["deployments"], "deployment_list length")
            for item in deployments:
                check_deployment(item)
                expect(item["project_id"] == project["id"], "a deployment of another project")
            expect(
                Counter(d["state"] for d in deployments) == Counter(body["states"]),
                "states disagree with deployment_list",
            )

        self._get(f"{API}/projects/{quote(ref, safe='')}", "/projects/[project]", check=check)

    @task(14)
    def artifacts(self) -> None:
        """An artifact page, filtered by type, collection, tag, project or state, or not at all."""
        limit = random.choice((20, 50, 100))
        params: dict[str, Any] = {"limit": limit, "offset": random.choice((0, 0, 0, limit))}
        choice = random.randrange(6)
        if choice == 1:
            params["type"] = random.choice(TYPES)
        elif choice == 2:
            params["collection"] = random.choice(Catalog.collections)
        elif choice == 3:
            params["tag"] = random.choice(Catalog.tags)
        elif choice == 4:
            params["project"] = self._project()["id"]
        elif choice == 5:
            params["state"] = random.choice(("outdated", "modified"))
            params["offset"] = 0

        def check(body: dict[str, Any]) -> None:
            for item in check_page(body, limit, params["offset"]):
                check_artifact(item)
                for field in ("type", "collection"):
                    if field in params:
                        expect(item[field] == params[field], f"{field} filter ignored")
                if "tag" in params:
                    expect(params["tag"] in item["tags"], "tag filter ignored")

        self._get(f"{API}/artifacts", "/artifacts", params, check=check)

    @task(12)
    def artifact_detail(self) -> None:
        """One artifact and where it is deployed (half of the time a deployed one)."""
        pool = Catalog.deployed_keys if random.random() < 0.5 else Catalog.keys
        key = random.choice(pool)

        def check(body: dict[str, Any]) -> None:
            check_artifact(body)
            expect(body["key"] == key, "another artifact answered")
            for item in body["deployments"]:
                check_deployment(item)
                expect(item["artifact"] == key, "a deployment of another artifact")

        self._get(f"{API}/artifacts/{key}", "/artifacts/[key]", check=check)

    @task(2)
    def unknown_artifact(self) -> None:
        """A key that is not cached: 404 with an error body, not a crash."""
        key = f"default/skill/no-such-artifact-{random.randrange(10**6)}"
        url = f"{API}/artifacts/{key}"
        with self.client.get(url, name="/artifacts/[unknown]", catch_response=True) as response:
            if response.status_code != 404:
                response.failure(f"status {response.status_code}, expected 404")
            elif response.json().get("error") != "ArtifactNotFound":
                response.failure(f"error body {response.text[:200]}")
            else:
                response.success()

    @task(10)
    def deployments(self) -> None:
        """What needs attention: outdated (or modified) deployments, everywhere or in a project."""
        params: dict[str, Any] = {"state": random.choice(("outdated", "outdated", "modified"))}
        params["limit"] = 100
        if random.random() < 0.5:
            params["project"] = self._project()["id"]

        def check(body: dict[str, Any]) -> None:
            for item in check_page(body, 100, 0):
                check_deployment(item)
                expect(item["state"] == params["state"], "state filter ignored")
                if "project" in params:
                    expect(item["project_id"] == params["project"], "project filter ignored")

        self._get(f"{API}/deployments", "/deployments", params, check=check)

    def _query(self) -> str:
        words = [
            random.choice(Catalog.common_words if random.random() < 0.5 else Catalog.rare_words)
        ]
        if random.random() < 0.4:
            words.append(random.choice(Catalog.common_words))
        if random.random() < 0.3:  # search as you type: the last word is still a prefix
            words[-1] = words[-1][: max(3, len(words[-1]) // 2)]
        return " ".join(words)

    @task(24)
    def search(self) -> None:
        """One or two words, sometimes filtered, sometimes the next page."""
        query = self._query()
        limit = 20
        params: dict[str, Any] = {"q": query, "limit": limit, "offset": 0}
        roll = random.random()
        if roll < 0.15:
            params["type"] = random.choice(TYPES)
        elif roll < 0.25:
            params["collection"] = random.choice(Catalog.collections)
        elif roll < 0.30:
            params["project"] = self._project()["id"]
        if random.random() < 0.2:
            params["offset"] = random.choice((20, 40))
        words = query.split()

        def check(body: dict[str, Any]) -> None:
            from projcache.terms import field_terms, stem

            expect(body.get("query") == query, "query not echoed")
            # Exact matches (``total`` of them) come first; the last ``partial`` items of a
            # page they leave short match only some of the words.
            partial = body.get("partial", 0)
            expect(isinstance(partial, int) and partial >= 0, "partial missing")
            whole = {**body, "items": body["items"][: len(body["items"]) - partial]}
            items = check_page(whole, limit, params["offset"])
            expect(len(body["items"]) <= limit, "more items than the limit")
            scores = [item["score"] for item in items]
            expect(scores == sorted(scores, reverse=True), "hits not ordered by score")
            for item in body["items"]:
                check_artifact(item)
            for item in items:
                text = " ".join(
                    [
                        item["name"],
                        " ".join(item["tags"]),
                        item["title"] or "",
                        item["description"],
                        item.get("body") or "",
                    ]
                ).lower()
                terms = set().union(*field_terms(item).values())  # tokens and their stems
                for word in words:
                    found = (
                        word in text
                        or stem(word) in terms
                        or any(term.startswith(word) for term in terms)
                    )
                    expect(found, f"hit {item['key']} lacks {word!r}")
                for field in ("type", "collection"):
                    if field in params:
                        expect(item[field] == params[field], f"{field} filter ignored")

        self._get(f"{API}/search", "/search", params, check=check)

    @task(14)
    def conditional(self) -> None:
        """A page reload: If-None-Match with the last ETag gets 304 while nothing changed."""
        url = random.choice(
            (
                f"{API}/projects?limit=50",
                f"{API}/artifacts?limit=50",
                f"{API}/deployments?state=outdated&limit=100",
                f"{API}/search?q={random.choice(Catalog.common_words)}",
            )
        )
        name = "conditional " + url.split("?")[0][len(API) :]
        etag = self.etags.get(url)
        if etag is None:
            self._get(url, name, remember=True)
            return
        headers = {"If-None-Match": etag}
        with self.client.get(url, headers=headers, name=name, catch_response=True) as response:
            # Reported apart, so the statistics show how many reloads cost nothing.
            response.request_meta["name"] = f"{name} ({response.status_code})"
            if response.status_code == 304:
                if response.content or response.headers.get("etag") != etag:
                    response.failure("a 304 with a body or another ETag")
                else:
                    response.success()
            elif response.status_code == 200:
                new = response.headers.get("etag")
                if not new or new == etag:  # 200 is right only when the cache changed
                    response.failure(f"200 for the current ETag {etag}")
                else:
                    self.etags[url] = new
                    response.success()
            else:
                response.failure(f"status {response.status_code}")

    @task(1)
    def refresh(self) -> None:
        """Someone presses Refresh (mostly for one project), then polls the job until it ends."""
        project = self._project()
        body: dict[str, Any] = {"project": project["id"]} if random.random() < 0.7 else {}
        with self.client.post(
            f"{API}/refresh", json=body, name="/refresh", catch_response=True
        ) as response:
            if response.status_code == 429:
                # Too many different jobs waiting (the queue is bounded): a documented answer.
                try:
                    expect(response.json()["error"] == "TooManyJobs", "429 without TooManyJobs")
                    expect(int(response.headers["Retry-After"]) >= 1, "429 without Retry-After")
                    response.success()
                except (BadResponse, ValueError, KeyError) as exc:
                    response.failure(f"{exc}: {response.text[:200]}")
                return
            try:
                expect(response.status_code == 202, f"status {response.status_code}")
                job = response.json()
                check_job(job)
                # An equal waiting job may answer: it was asked for the same project.
                expect(job["request"]["project"] == body.get("project"), "request not echoed")
            except (BadResponse, ValueError, KeyError) as exc:
                response.failure(f"{exc}: {response.text[:200]}")
                return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.2)
            with self.client.get(
                f"{API}/refresh/{job['id']}", name="/refresh/[job]", catch_response=True
            ) as response:
                try:
                    expect(response.status_code == 200, f"status {response.status_code}")
                    job = response.json()
                    check_job(job)
                    expect(job["state"] != "failed", f"the job failed: {job['error']}")
                except (BadResponse, ValueError, KeyError) as exc:
                    response.failure(f"{exc}: {response.text[:200]}")
                    return
                if job["state"] == "done":
                    expect_report = job["report"] is not None and job["finished_at"] is not None
                    if not expect_report:
                        response.failure("a finished job without its report")
                    return
        self.environment.events.request.fire(
            request_type="POLL",
            name="/refresh/[job] timeout",
            response_time=60_000,
            response_length=0,
            exception=BadResponse(f"job {job['id']} did not finish in 60 s"),
            context={},
        )
