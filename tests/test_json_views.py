"""The CLI's ``--json`` and the HTTP API answer the same question with the same JSON (issue 16).

Each question is asked both ways on one cache: the console script's entry point
(:func:`projcache_cli.fastpath.main`: the fast path when it can, else the Typer
app) and the API through a TestClient.  A list is compared row for row (the CLI
prints every row, the API a page of them); a page (search) and a document
(show, status) whole.  Also: the facade answers ``list projects`` without one
deployments query per project.
"""

from __future__ import annotations

import inspect
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import projcache
import projcache.errors
from projcache import ProjectCache
from projcache.config import Settings
from projcache.server import create_app
from projcache.server.app import API_PREFIX
from projcache_cli import app as cli_app
from projcache_cli import fastpath

EXAMPLES = Path(projcache.__file__).parent / "examples"
PROJECTS = ("webapp", "api-service", "notes")
_SEPARATE = "mix_stderr" in inspect.signature(CliRunner.__init__).parameters
runner = CliRunner(**({"mix_stderr": False} if _SEPARATE else {}))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache refreshed from a copy of the shipped examples (one broken agent file)."""
    root = tmp_path_factory.mktemp("views")
    examples = root / "examples"
    shutil.copytree(EXAMPLES, examples, symlinks=True)
    path = root / "cache"
    with ProjectCache.open(settings=Settings(cache_dir=path)) as cache:
        cache.refresh(
            collections=[examples / "collections" / "default"],
            projects=[examples / "projects" / name for name in PROJECTS],
        )
    return path


@pytest.fixture
def api(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """A client of the API over a read-only handle (as the CLI's) of ``cache_dir``."""
    for name in list(os.environ):
        if name.startswith("PROJCACHE_"):
            monkeypatch.delenv(name)
    settings = Settings(cache_dir=cache_dir)
    with ProjectCache.open(settings=settings, readonly=True) as cache:  # noqa: SIM117 - py3.9
        with TestClient(create_app(cache), base_url="http://127.0.0.1:8765") as client:
            yield client


def ask_cli(cache_dir: Path, capsysbinary: Any, *args: str) -> Any:
    """What the console script prints for ``args`` (``--json`` added), parsed."""
    argv = ["projcache", "--cache-dir", str(cache_dir), *args, "--json"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exited:
            fastpath.main()
    out = capsysbinary.readouterr()
    assert exited.value.code in (0, None), out.err
    return orjson.loads(out.out)


def ask_api(client: TestClient, path: str, **params: Any) -> Any:
    """The API's answer to ``GET path``, parsed (it must be 200)."""
    response = client.get(f"{API_PREFIX}{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def typer_json(cache_dir: Path, *args: str) -> Any:
    """What the Typer app alone prints for ``args`` (``--json`` added), parsed."""
    result = runner.invoke(cli_app, ["--cache-dir", str(cache_dir), *args, "--json"])
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


LISTS = [
    (["list", "artifacts"], "/artifacts", {}),
    (["list", "artifacts", "--type", "skill"], "/artifacts", {"type": "skill"}),
    (["list", "artifacts", "--tag", "review"], "/artifacts", {"tag": "review"}),
    (["list", "artifacts", "--project", "webapp"], "/artifacts", {"project": "webapp"}),
    (["list", "artifacts", "--state", "outdated"], "/artifacts", {"state": "outdated"}),
    (["list", "projects"], "/projects", {}),
    (["list", "deployments"], "/deployments", {}),
    (["list", "deployments", "-p", "api-service"], "/deployments", {"project": "api-service"}),
    (["list", "deployments", "--state", "missing"], "/deployments", {"state": "missing"}),
    (["list", "deployments", "--type", "skill"], "/deployments", {"type": "skill"}),
    (
        ["list", "deployments", "--type", "command", "--state", "current"],
        "/deployments",
        {"type": "command", "state": "current"},
    ),
]


@pytest.mark.parametrize(("argv", "path", "params"), LISTS)
def test_a_list_is_the_same_rows(
    cache_dir: Path,
    api: TestClient,
    capsysbinary: Any,
    argv: list[str],
    path: str,
    params: dict[str, str],
) -> None:
    """``list X --json`` prints exactly the rows the API pages through, in the same order."""
    rows = ask_cli(cache_dir, capsysbinary, *argv)
    page = ask_api(api, path, **params, limit=1000)
    assert rows, "an empty list proves little"
    assert rows == page["items"]
    assert page["total"] == len(rows)
    assert typer_json(cache_dir, *argv) == rows


SEARCHES = [
    (["pdf"], {"q": "pdf"}),
    (["review code"], {"q": "review code"}),
    (["re", "--type", "skill", "--limit", "2"], {"q": "re", "type": "skill", "limit": 2}),
    (["review", "--project", "webapp"], {"q": "review", "project": "webapp"}),
    (["review", "--offset", "1"], {"q": "review", "offset": 1}),
]


@pytest.mark.parametrize(("argv", "params"), SEARCHES)
def test_search_is_the_same_page(
    cache_dir: Path,
    api: TestClient,
    capsysbinary: Any,
    argv: list[str],
    params: dict[str, Any],
) -> None:
    """``search --json`` prints the API's search page, field for field."""
    from_cli = ask_cli(cache_dir, capsysbinary, "search", *argv)
    from_api = ask_api(api, "/search", **params)
    assert from_cli == from_api
    assert set(from_cli) == {"items", "query", "total", "partial", "limit", "offset"}
    assert from_cli["total"] > 0
    assert typer_json(cache_dir, "search", *argv) == from_cli


def test_show_is_the_status_document(cache_dir: Path, api: TestClient, capsysbinary: Any) -> None:
    """``show --json`` prints ``GET /status`` without the server's own ``refresher``."""
    from_api = ask_api(api, "/status")
    assert from_api.pop("refresher")["runs"] == 0
    from_cli = ask_cli(cache_dir, capsysbinary, "show")
    assert from_cli == from_api
    assert from_cli["errors"][0]["kind"] == "collection"
    assert set(from_cli["errors"][0]) == {"kind", "unit", "name", "path", "message"}
    assert typer_json(cache_dir, "show") == from_cli


def test_one_artifact(cache_dir: Path, api: TestClient, capsysbinary: Any) -> None:
    """``get KEY --json`` is the API's artifact detail without ``deployments``, which are the
    deployment rows of that artifact."""
    detail = ask_api(api, "/artifacts/default/skill/pdf")
    deployments = detail.pop("deployments")
    assert ask_cli(cache_dir, capsysbinary, "get", "default/skill/pdf") == detail
    rows = ask_cli(cache_dir, capsysbinary, "list", "deployments")
    assert deployments == [r for r in rows if r["artifact"] == "default/skill/pdf"]
    assert deployments


class TestNoQueryPerProject:
    """Project rows read the deployment counts in one pass (no N+1)."""

    def test_list_projects_asks_no_deployments_query(
        self, cache_dir: Path, api: TestClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Neither ``list projects`` nor ``GET /projects`` lists deployments per project."""
        calls: list[Any] = []
        original = ProjectCache.list_deployments_json

        def counted(self: ProjectCache, *args: Any, **kwargs: Any) -> list[bytes]:
            calls.append(args)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(ProjectCache, "list_deployments_json", counted)
        rows = typer_json(cache_dir, "list", "projects")
        ask_api(api, "/projects")
        assert len(rows) == len(PROJECTS)
        assert calls == []

    def test_counts_match_the_deployments(self, cache_dir: Path) -> None:
        """``deployment_counts`` agrees with the deployments, per project and state."""
        with ProjectCache.open(settings=Settings(cache_dir=cache_dir), readonly=True) as cache:
            expected: dict[str, dict[str, int]] = {}
            for deployment in cache.list_deployments():
                states = expected.setdefault(deployment.project_id, {})
                states[deployment.state] = states.get(deployment.state, 0) + 1
            assert cache.deployment_counts() == expected
            rows = {row["id"]: row for row in cache.project_rows()}
            for project_id, states in expected.items():
                assert rows[project_id]["states"] == states
                assert rows[project_id]["deployments"] == sum(states.values())


def test_type_filter_reads_the_key(cache_dir: Path) -> None:
    """``list_deployments(type=)`` keeps exactly the deployments of artifacts of that type."""
    with ProjectCache.open(settings=Settings(cache_dir=cache_dir), readonly=True) as cache:
        everything = cache.list_deployments()
        for type_ in ("skill", "command", "agent"):
            kept = cache.list_deployments(type=type_)
            assert kept == [d for d in everything if d.artifact_key.split("/")[1] == type_]
        assert cache.list_deployments(type="skill", artifact="default/command/x") == []
        with pytest.raises(projcache.errors.InvalidArgumentError, match="type must be"):
            cache.list_deployments(type="Bad Type!")


def test_deployment_rows_resume_in_a_transaction_begun_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows streamed across a re-begun read transaction (a map growth) resume where they were."""
    with ProjectCache.open(settings=Settings(cache_dir=tmp_path / "c")) as cache:
        cache.put_projects([{"name": "p", "path": str(tmp_path / "p")}])
        [project] = cache.list_projects()
        cache.put_deployments(
            [
                {"project_id": project.id, "artifact_key": f"c/skill/n{i:04}", "content_hash": "0"}
                for i in range(700)
            ]
        )
        whole = orjson.dumps(cache.deployment_rows())
        assert b"[" + b",".join(cache.iter_deployment_rows_json()) + b"]" == whole
        storage: Any = cache._storage
        begun: list[int] = []

        def stream(step: Any, state: Any) -> Iterator[bytes]:
            # What Storage.stream does after a map growth: a new transaction (same snapshot,
            # nothing was written) for the next chunk.
            while state is not None:
                with storage.env.begin() as txn:
                    begun.append(1)
                    items, state = step(txn, state)
                yield from items

        monkeypatch.setattr(storage, "stream", stream)
        again = b"[" + b",".join(cache.iter_deployment_rows_json()) + b"]"
    assert len(begun) == 3  # 700 rows: chunks of 256, 256, 188
    assert again == whole
