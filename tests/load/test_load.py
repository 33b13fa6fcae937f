"""Locust, headless, against ``projcache serve`` on a cache of 10,000 artifacts.

The cache is built the way a user's is: SkillMeat source folders on disk
(:mod:`loaddata`), then ``projcache refresh``.  A real server runs on
127.0.0.1 (port 0) in its own process and Locust runs in another, for
``$PROJCACHE_LOAD_SECONDS`` (default 30) with 20 users.  Any failed request
(error status or a body that does not match the documented shapes, see
``locustfile.py``) fails the test.  Requests/s and p50/p95/p99, overall and
per endpoint, go to ``bench/results/runs/locust-<UTC time>.json`` and
``bench/results/runs/locust-latest.md``: a git-ignored folder, so a test run leaves the clone
clean (another folder: ``$PROJCACHE_LOAD_RESULTS``; results are committed on purpose, by
copying a run into ``bench/results/``).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import httpx
import pytest
from loaddata import Dataset, build_sources

from served import ServerProcess, isolated_env, projcache_command

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None, reason="locust is not installed (Python >= 3.10)"
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# Run outputs, ignored by git (.gitignore): the tracked bench/results/ changes only on purpose.
RUNS = ROOT / "bench" / "results" / "runs"
USERS = 20
SPAWN_RATE = 10
ARTIFACTS = 10_000
API = "/api/v1/cache"


@pytest.fixture(scope="module")
def load_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset, Path]:
    """A cache refreshed from 10,000 generated artifacts: (cache dir, dataset, home)."""
    root = tmp_path_factory.mktemp("load")
    home = root / "home"
    home.mkdir()
    dataset = build_sources(root / "src", ARTIFACTS)
    cache_dir = root / "cache"
    command = [*projcache_command(), "--cache-dir", str(cache_dir), "refresh"]
    for collection in dataset.collections:
        command += ["--collection", str(collection)]
    for project in dataset.projects:
        command += ["--project", str(project)]
    # Building is not what is measured: skip the fsyncs (the server runs durable).
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=isolated_env(home, {"PROJCACHE_DURABILITY": "none"}),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return cache_dir, dataset, home


@pytest.fixture
def server(load_cache: tuple[Path, Dataset, Path]) -> Iterator[ServerProcess]:
    """The server over the load cache, stopped after the test."""
    cache_dir, _dataset, home = load_cache
    served = ServerProcess(cache_dir, isolated_env(home))
    yield served
    served.stop()


def _read_stats(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _figures(row: dict[str, str]) -> dict[str, Any]:
    def number(column: str) -> Optional[float]:
        value = row.get(column, "")
        return None if value in ("", "N/A") else float(value)

    return {
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "requests_per_s": round(float(row["Requests/s"]), 2),
        "avg_ms": round(float(row["Average Response Time"]), 2),
        "p50_ms": number("50%"),
        "p95_ms": number("95%"),
        "p99_ms": number("99%"),
        "max_ms": round(float(row["Max Response Time"]), 2),
    }


def _markdown(result: dict[str, Any]) -> str:
    overall = result["overall"]
    lines = [
        f"# Locust run, {result['started_at']}",
        "",
        f"`{result['command']}`",
        "",
        f"{result['users']} users for {result['seconds']} s against `projcache serve` on a cache "
        f"of {result['artifacts']} artifacts and {result['deployments']} deployments; "
        f"Python {result['python']}, {result['cpus']} CPUs.",
        "",
        f"**{overall['requests_per_s']} requests/s**, p50 {overall['p50_ms']} ms, "
        f"p95 {overall['p95_ms']} ms, p99 {overall['p99_ms']} ms, "
        f"{overall['failures']} failures in {overall['requests']} requests.",
        "",
        "| Endpoint | Requests | Failures | req/s | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [*result["endpoints"], {"name": "**all**", **overall}]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['requests']} | {row['failures']} | {row['requests_per_s']} "
            f"| {row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} | {row['max_ms']} |"
        )
    return "\n".join(lines) + "\n"


def _write_results(result: dict[str, Any]) -> Path:
    folder = Path(os.environ.get("PROJCACHE_LOAD_RESULTS") or RUNS)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = result["started_at"].replace(":", "").replace("-", "")
    path = folder / f"locust-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (folder / "locust-latest.md").write_text(_markdown(result), encoding="utf-8")
    return path


def test_locust_finds_no_failure(
    server: ServerProcess, load_cache: tuple[Path, Dataset, Path], tmp_path: Path
) -> None:
    """20 Locust users get only well-formed answers from a 10,000-artifact cache; figures saved."""
    _cache_dir, dataset, home = load_cache
    seconds = int(os.environ.get("PROJCACHE_LOAD_SECONDS", "30"))
    prefix = tmp_path / "locust"
    command = [
        "locust",
        "-f",
        str(HERE / "locustfile.py"),
        "--headless",
        "-u",
        str(USERS),
        "-r",
        str(SPAWN_RATE),
        "-t",
        f"{seconds}s",
        "--stop-timeout",
        "10",
        "--host",
        server.url,
        "--csv",
        str(prefix),
        "--only-summary",
        "--exit-code-on-error",
        "1",
    ]
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = subprocess.run(
        [sys.executable, "-m", *command],
        capture_output=True,
        text=True,
        env=isolated_env(home),
        cwd=ROOT,
        timeout=seconds + 120,
    )
    output = run.stdout + run.stderr
    stats = _read_stats(Path(f"{prefix}_stats.csv"))
    failures = _read_stats(Path(f"{prefix}_failures.csv"))
    exceptions = _read_stats(Path(f"{prefix}_exceptions.csv"))
    assert not failures, json.dumps(failures, indent=1)
    assert not exceptions, json.dumps(exceptions, indent=1)
    assert run.returncode == 0, output[-4000:]

    by_name = {row["Name"]: row for row in stats}
    overall = _figures(by_name.pop("Aggregated"))
    endpoints = [{"name": name, **_figures(row)} for name, row in sorted(by_name.items())]
    assert overall["failures"] == 0
    assert all(e["failures"] == 0 for e in endpoints)
    for name in ("/status", "/projects", "/artifacts", "/artifacts/[key]", "/search"):
        assert int(by_name[name]["Request Count"]) > 0, f"no {name} request was made"
    assert overall["requests"] >= 10 * seconds, "the load generator barely ran"

    # The server survived and still serves what was built: nothing lost, nothing logged.
    body = httpx.get(f"{server.url}{API}/status", timeout=30).json()
    assert body["counts"]["artifacts"] == dataset.artifacts
    states: dict[str, int] = {}
    for state in dataset.states:
        page = httpx.get(
            f"{server.url}{API}/deployments", params={"state": state, "limit": 1}, timeout=30
        )
        states[state] = page.json()["total"]
    assert states == dataset.states
    problems = re.findall(r"^(?:ERROR|CRITICAL|Traceback).*$", server.log, re.MULTILINE)
    assert not problems, server.log[-4000:]

    result = {
        "started_at": started,
        "command": " ".join(command)
        .replace(server.url, "http://127.0.0.1:PORT")
        .replace(str(prefix), "PREFIX")
        .replace(str(ROOT) + os.sep, ""),
        "users": USERS,
        "spawn_rate": SPAWN_RATE,
        "seconds": seconds,
        "artifacts": dataset.artifacts,
        "deployments": dataset.deployments,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "overall": overall,
        "endpoints": endpoints,
    }
    path = _write_results(result)
    print(
        f"\nlocust: {overall['requests_per_s']} req/s, p50/p95/p99 {overall['p50_ms']}/"
        f"{overall['p95_ms']}/{overall['p99_ms']} ms; written to {path}"
    )
