"""HTTP listings answer in memory of a page, whatever the listing's length (issue 15, item 6).

``GET /artifacts`` with a filter and ``GET /deployments`` count every match
for ``total``; they used to hold every match (and, for deployments, a dict per
row) to do so.  Here the peak of Python allocations (tracemalloc) during one
request over 20,000 matches must stay close to that over 2,000 matches, and
the bytes sent must be what the old all-in-memory answer sent.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from projcache import ProjectCache
from projcache.config import Settings
from projcache.server import create_app
from projcache.views import deployment_view, page_json

BASE_URL = "http://127.0.0.1:8765"
SIZES = (2_000, 20_000)


def _fill(path: Path, count: int) -> None:
    with ProjectCache.open(settings=Settings(cache_dir=path, durability="none")) as cache:
        for start in range(0, count, 1000):
            cache.put_artifacts(
                [
                    {
                        "name": f"tool-{i:06}",
                        "type": "skill",
                        "collection": "c",
                        "tags": ["t"],
                        "description": f"Tool number {i} of the listing",
                    }
                    for i in range(start, min(count, start + 1000))
                ]
            )
        cache.put_projects([{"name": "p", "path": str(path.parent / "p")}])
        [project] = cache.list_projects()
        for start in range(0, count, 1000):
            cache.put_deployments(
                [
                    {
                        "project_id": project.id,
                        "artifact_key": f"c/skill/tool-{i:06}",
                        "content_hash": f"{i:064x}",
                    }
                    for i in range(start, min(count, start + 1000))
                ]
            )


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, ProjectCache]]:
    """A cache of 2,000 and one of 20,000 artifacts, each deployed once in project ``p``."""
    opened = {}
    for count in SIZES:
        path = tmp_path_factory.mktemp(f"listing{count}") / "cache"
        _fill(path, count)
        opened[count] = ProjectCache.open(settings=Settings(cache_dir=path), readonly=True)
    yield opened
    for cache in opened.values():
        cache.close()


def _peak(cache: ProjectCache, url: str) -> tuple[int, Any]:
    """The tracemalloc peak (bytes) of one GET, and its response."""
    with TestClient(create_app(cache), base_url=BASE_URL) as client:
        client.get(url)  # warm: first-call imports and caches are not the listing's
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            response = client.get(url)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return peak, response


def _bounded(peaks: dict[int, int]) -> None:
    small, large = peaks[SIZES[0]], peaks[SIZES[1]]
    # All in memory, 18,000 more records cost megabytes; a page in memory costs the same.
    assert large < small * 1.5 + 256 * 1024, peaks


@pytest.mark.parametrize(
    ("query", "bounded"),
    [
        ("collection=c", True),
        ("tag=t", True),
        ("type=skill&limit=7&offset=1990", True),
        # A project's artifacts are walked from its deployments (in artifact key order),
        # with no set of the keys deployed there.
        ("project=p", True),
        ("project=p&type=skill&tag=t&collection=c", True),
        ("project=p&state=current&limit=7&offset=1990", True),
    ],
)
def test_filtered_artifact_listing_memory_is_a_page(
    caches: dict[int, ProjectCache], query: str, bounded: bool
) -> None:
    """``GET /artifacts?<filter>``: same bytes as the whole listing sliced, memory of a page."""
    peaks = {}
    for count, cache in caches.items():
        peak, response = _peak(cache, f"/api/v1/cache/artifacts?{query}")
        assert response.status_code == 200
        params = dict(part.split("=") for part in query.split("&"))
        limit, offset = int(params.get("limit", 50)), int(params.get("offset", 0))
        # Every record matches every filter here: the whole listing by key (no facet read).
        every = list(cache.iter_artifacts_json())
        assert len(every) == count
        expected = page_json(
            every[offset : offset + limit], total=count, limit=limit, offset=offset
        )
        assert response.content == expected
        assert response.headers["content-type"] == "application/json"
        assert response.headers["etag"] == f'"{cache.generation()}"'
        peaks[count] = peak
    if bounded:
        _bounded(peaks)


@pytest.mark.parametrize("query", ["project=p", "", "state=current&limit=3&offset=5"])
def test_deployment_listing_memory_is_a_page(caches: dict[int, ProjectCache], query: str) -> None:
    """``GET /deployments``: same bytes as every row sliced, memory of a page."""
    peaks = {}
    for count, cache in caches.items():
        peak, response = _peak(cache, f"/api/v1/cache/deployments?{query}")
        assert response.status_code == 200
        params = dict(part.split("=") for part in query.split("&") if part)
        limit, offset = int(params.get("limit", 50)), int(params.get("offset", 0))
        rows = [deployment_view(p) for p in cache.list_deployments_json(state=params.get("state"))]
        expected = orjson.dumps(
            {
                "items": rows[offset : offset + limit],
                "total": len(rows),
                "limit": limit,
                "offset": offset,
            }
        )
        assert response.content == expected
        assert orjson.loads(response.content)["total"] == count
        peaks[count] = peak
    _bounded(peaks)


def test_listing_errors_before_the_first_byte_are_error_responses(
    caches: dict[int, ProjectCache],
) -> None:
    """A bad filter or an unknown project is still a JSON error with its status."""
    with TestClient(create_app(caches[SIZES[0]]), base_url=BASE_URL) as client:
        unknown = client.get("/api/v1/cache/deployments?project=nowhere")
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == "application/json"
        assert "nowhere" in unknown.text
        bad = client.get("/api/v1/cache/artifacts?state=bogus")
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/json"
        assert client.get("/api/v1/cache/artifacts?project=nowhere").status_code == 404


def test_large_facet_listing_walks_keys_like_the_sorted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``SORTED_KEYS`` (and the walk ratio) a type/tag listing walks the keys: same records,
    same order."""
    from projcache import streams

    with ProjectCache.open(settings=Settings(cache_dir=tmp_path / "c")) as cache:
        cache.put_artifacts(
            [
                {
                    "name": f"n{i:03}",
                    "type": ("skill", "command")[i % 2],
                    "collection": ("a", "b", "c")[i % 3],
                    "tags": ["x"] if i % 5 else ["x", "y"],
                }
                for i in range(600)  # more than two pages
            ]
        )
        cache.delete_artifact("a/skill/n000")
        cache.delete_artifact("b/command/n001")
        every = [orjson.loads(p) for p in cache.iter_artifacts_json()]
        cases = [
            {"type": "skill"},
            {"tag": "x"},
            {"tag": "y", "collection": "b"},
            {"tag": "x", "type": "command", "collection": "c"},
            {"type": "command", "collection": "a"},
        ]
        for filters in cases:
            expected = [
                r["key"]
                for r in every
                if r["type"] == filters.get("type", r["type"])
                and r["collection"] == filters.get("collection", r["collection"])
                and ("tag" not in filters or filters["tag"] in r["tags"])
            ]
            sorted_way = [orjson.loads(p)["key"] for p in cache.iter_artifacts_json(**filters)]
            monkeypatch.setattr(streams, "SORTED_KEYS", 3)
            monkeypatch.setattr(streams, "WALK_RATIO", 10**6)  # walk whatever the share
            walked = [orjson.loads(p)["key"] for p in cache.iter_artifacts_json(**filters)]
            monkeypatch.setattr(streams, "SORTED_KEYS", 4096)
            monkeypatch.setattr(streams, "WALK_RATIO", 4)
            assert sorted_way == expected, filters
            assert walked == expected, filters


def test_cli_deployment_listing_streams_in_memory_of_a_chunk(
    caches: dict[int, ProjectCache],
) -> None:
    """``list deployments --json`` (both CLI paths) writes 20,000 rows in the memory of 2,000."""
    from projcache_cli import fastpath

    values = {"project": None, "state_": None, "outdated": False, "type_": None, "profile": None}
    peaks = {}
    for count, cache in caches.items():
        sizes: list[int] = []
        write = lambda data, sizes=sizes: sizes.append(len(data))  # noqa: E731
        fastpath.stream_deployments(cache, values, write)
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            fastpath.stream_deployments(cache, values, write)
            _current, peaks[count] = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        whole = orjson.dumps([deployment_view(p) for p in cache.list_deployments_json()])
        assert sum(sizes) == 2 * (len(whole) + 1)
    _bounded(peaks)


@pytest.fixture
def mixed(tmp_path: Path) -> Iterator[ProjectCache]:
    """Artifacts in two collections and types, deployed to one or two profiles, in several
    states, some deployments of artifacts the cache does not hold."""
    with ProjectCache.open(settings=Settings(cache_dir=tmp_path / "cache")) as cache:
        cache.put_artifacts(
            [
                {
                    "name": f"a{i:02}",
                    "type": ("skill", "command", "agent")[i % 3],
                    "collection": ("c", "d")[i % 2],
                    "tags": ["t"] if i % 4 else ["u"],
                    "content_hash": "h" if i % 5 else "other",
                }
                for i in range(40)
            ]
        )
        cache.put_projects([{"name": n, "path": str(tmp_path / n)} for n in ("p", "q", "empty")])
        ids = {p.name: p.id for p in cache.list_projects()}
        deployments = []
        for i in range(0, 44, 2):
            key = f"{('c', 'd')[i % 2]}/{('skill', 'command', 'agent')[i % 3]}/a{i:02}"
            for profile in ("claude_code", "codex")[: 1 + i % 2 + (i % 6 == 0)]:
                deployments.append(
                    {
                        "project_id": ids["p"],
                        "artifact_key": key,
                        "profile": profile,
                        "content_hash": "h",
                        "local_hash": "h" if profile == "codex" or i % 3 else "x",
                    }
                )
        deployments.append({"project_id": ids["q"], "artifact_key": "c/skill/a00"})
        cache.put_deployments(deployments)
        yield cache


@pytest.mark.parametrize("project", ["p", "q", "empty"])
@pytest.mark.parametrize("state", [None, "current", "modified", "outdated", "missing"])
@pytest.mark.parametrize(
    "filters",
    [{}, {"type": "skill"}, {"collection": "d"}, {"tag": "t"}, {"type": "agent", "tag": "u"}],
)
def test_a_project_listing_is_the_artifacts_deployed_there(
    mixed: ProjectCache, project: str, state: Any, filters: dict[str, str]
) -> None:
    """``project=`` keeps each matching artifact with a deployment there (in ``state``) once,
    in key order: what filtering every artifact by the project's deployments gives."""
    deployed = {
        d.artifact_key for d in mixed.list_deployments(project) if state is None or d.state == state
    }
    expected = [
        orjson.dumps(a.model_dump(mode="json"))
        for a in mixed.list_artifacts(**filters)
        if a.key in deployed
    ]
    found = list(mixed.iter_artifacts_json(**filters, project=project, state=state))
    assert [orjson.loads(p) for p in found] == [orjson.loads(p) for p in expected]
    assert [a.key for a in mixed.list_artifacts(**filters, project=project, state=state)] == [
        orjson.loads(p)["key"] for p in expected
    ]
