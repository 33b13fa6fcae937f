"""Schemathesis against the OpenAPI schema a live ``projcache serve`` publishes (issue 5, item 6).

Every operation (the POST ones included: they run on a throwaway cache) gets
generated requests, valid and invalid, and every answer must pass four
checks: no 5xx (``not_a_server_error``), a status code the schema lists for
the operation, the content type it lists, and a body that matches the
response schema it declares.  Bounded and deterministic: a fixed seed,
``derandomize``, at most ``MAX_EXAMPLES`` generated cases per operation and
phase, no example database.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from factories import CollectionBuilder, ProjectBuilder
from served import ServerProcess, isolated_env, projcache_command

MAX_EXAMPLES = 30
SEED = 20261126
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server over a small refreshed cache: a collection, a project, one of each state."""
    root = tmp_path_factory.mktemp("fuzz")
    home = root / "home"
    collection = CollectionBuilder(home / ".skillmeat" / "collections", "default")
    collection.skill("pdf-extract", tags=["pdf"], resolved_version="1.0.0")
    collection.command("review-pr", tags=["git", "review"])
    collection.agent("planner", tags=["planning"])
    collection.write()
    project = ProjectBuilder(root / "work", "webapp")
    project.deploy(collection, "skill", "pdf-extract", version="0.9.0")
    project.deploy(collection, "command", "review-pr")
    project.deploy(collection, "agent", "planner", copy=False)
    project.write()
    env = isolated_env(home)
    cache_dir = root / "cache"
    done = subprocess.run(
        [
            *projcache_command(),
            *("--cache-dir", str(cache_dir), "refresh"),
            *("--collection", str(collection.path), "--project", str(project.path)),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    server = ServerProcess(cache_dir, env)
    yield server
    server.stop()
    log = "".join(server.lines)
    crashes = re.findall(r"^(?:ERROR|CRITICAL|Traceback).*$", log, re.MULTILINE)
    assert not crashes, log[-4000:]


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: ServerProcess) -> Any:
    """The schema the server publishes."""
    config = schemathesis.Config.from_dict({"seed": SEED})
    return schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json", config=config)


@pytest.fixture(scope="module")
def job_id(fuzzed_server: ServerProcess) -> str:
    """The id of a refresh job the server knows (it ran before the fuzzing)."""
    response = httpx.post(f"{fuzzed_server.url}/api/v1/cache/refresh", json={}, timeout=30)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


# Every operation of the API, with values that name real records: fuzzing with them
# reaches past the 404s (missing ones are generated).  "JOB" is replaced by a real job id.
# (schemathesis.pytest.from_fixture would find the operations itself, but its lazy
# loader reads Node._nodeid, which pytest 9.2 no longer has.)
OPERATIONS: dict[str, dict[str, dict[str, str]]] = {
    "GET /api/v1/cache/status": {},
    "GET /api/v1/cache/projects": {"query": {"name": "web"}},
    "GET /api/v1/cache/projects/{project}": {"path": {"project": "webapp"}},
    "GET /api/v1/cache/artifacts": {"query": {"project": "webapp"}},
    "GET /api/v1/cache/artifacts/{key}": {"path": {"key": "default/skill/pdf-extract"}},
    "GET /api/v1/cache/deployments": {"query": {"project": "webapp"}},
    "GET /api/v1/cache/search": {"query": {"q": "pdf"}},
    "POST /api/v1/cache/refresh": {},
    "GET /api/v1/cache/refresh/{job}": {"path": {"job": "JOB"}},
    "POST /api/v1/cache/invalidate": {},
}
CASES = [
    pytest.param(label, mode, id=f"{label}-{mode}")
    for label, known in OPERATIONS.items()
    for mode in ("positive", "negative", "known ids")
    if mode != "known ids" or known
    # GET status takes no parameters at all (without a key): nothing can be made invalid.
    if mode != "negative" or label != "GET /api/v1/cache/status"
]


def test_every_operation_is_fuzzed(api_schema: Any) -> None:
    """The schema lists exactly the operations fuzzed below (a new one must be added)."""
    labels = {
        f"{result.ok().method.upper()} {result.ok().path}"
        for result in api_schema.get_all_operations()
    }
    assert labels == set(OPERATIONS)


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_answers_conform_to_the_schema(api_schema: Any, job_id: str, label: str, mode: str) -> None:
    """Generated requests get no 5xx, and the status, type and body the schema declares."""
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]
    known = OPERATIONS[label] if mode == "known ids" else {}
    path_parameters = {k: job_id if v == "JOB" else v for k, v in known.get("path", {}).items()}
    strategy = operation.as_strategy(
        generation_mode=GenerationMode.NEGATIVE if mode == "negative" else GenerationMode.POSITIVE,
        path_parameters=path_parameters or None,
        query=known.get("query"),
    )

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def fuzz(case: Any) -> None:
        response = case.call()
        case.validate_response(response, checks=CHECKS)

    fuzz()


@pytest.mark.parametrize("path", ["/api/v1/cache/refresh", "/api/v1/cache/invalidate"])
def test_a_body_that_is_not_utf8_gets_a_documented_error(
    api_schema: Any, fuzzed_server: ServerProcess, path: str
) -> None:
    """A body of bytes that are not UTF-8 gets a status the schema lists, and an ErrorBody."""
    response = httpx.post(
        fuzzed_server.url + path,
        content=b'{"project": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    documented = set(api_schema.raw_schema["paths"][path]["post"]["responses"])
    assert str(response.status_code) in documented, (response.status_code, sorted(documented))
    assert set(response.json()) >= {"error", "message"}


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/api/v1/cache/projects/{long}", {}),
        ("GET", "/api/v1/cache/deployments", {"project": "{long}"}),
        ("GET", "/api/v1/cache/artifacts", {"project": "{long}"}),
        ("GET", "/api/v1/cache/search", {"q": "pdf", "project": "{long}"}),
    ],
)
def test_a_long_unknown_project_is_not_found(
    fuzzed_server: ServerProcess, method: str, path: str, params: dict[str, str]
) -> None:
    """A project reference the schema allows (a path up to 4096 chars) that matches nothing: 404."""
    long = "/tmp/" + "x" * 600  # a plausible absolute path, longer than an LMDB key
    response = httpx.request(
        method,
        fuzzed_server.url + path.format(long="x" * 600),  # a name: a path cannot be in a URL path
        params={k: v.format(long=long) for k, v in params.items()},
        timeout=30,
    )
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "ProjectNotFound"
