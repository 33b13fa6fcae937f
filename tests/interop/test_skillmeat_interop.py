"""projcache against the real SkillMeat 0.74.0 (``python3 tasks.py interop``).

SkillMeat runs from its own virtualenv (``$PROJCACHE_SKILLMEAT_PYTHON``, set by ``tasks.py
interop``, which installs ``skillmeat==0.74.0`` there) under a temporary ``HOME``. The test
drives its CLI as a user would: init a collection and a project; add skills from local folders,
a command, an agent, an orchestration script and an MCP server; deploy to the ``claude_code``
and ``codex`` profiles of two projects (one of them codex only); then edit, re-add and delete
to make every drift. It refreshes projcache over the same folders and compares, row by row:

* artifacts with ``skillmeat list --format json`` (name, type, description, version) and the
  MCP servers with SkillMeat's own ``Collection.from_dict``;
* deployments with SkillMeat's ``DeploymentTracker.read_deployments`` (every profile root);
* content hashes with SkillMeat's ``compute_content_hash``, on every collection artifact and
  every deployed copy;
* states with ``skillmeat sync-check --format json`` (skills in ``.claude/``, the only ones it
  checks) and ``skillmeat status`` (local modification of every deployment, every profile).

Documented exceptions (docs/cache/skillmeat-compatibility.md) are counted apart, never as
agreement: a deleted deployed copy (SkillMeat: *Synced*, projcache: ``missing``), and
``sync-check``'s own limits (it reads skills only and looks in ``.claude/`` whatever the
profile). Anything else that differs fails the test. The agreement table is printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from projcache import ProjectCache

pytestmark = pytest.mark.interop

PROBE = Path(__file__).with_name("skillmeat_probe.py")


def _python() -> str:
    python = os.environ.get("PROJCACHE_SKILLMEAT_PYTHON")
    if not python or not Path(python).exists():
        pytest.fail(
            "PROJCACHE_SKILLMEAT_PYTHON must name the Python of a venv with skillmeat==0.74.0; "
            "run `python3 tasks.py interop`, which makes one"
        )
    return python


class SkillMeat:
    """SkillMeat's CLI under a temporary HOME."""

    def __init__(self, python: str, home: Path):
        self.python = python
        self.exe = str(Path(python).parent / "skillmeat")
        self.env = {
            **os.environ,
            "HOME": str(home),
            "NO_COLOR": "1",
            "TERM": "dumb",
            "COLUMNS": "200",
            "PYTHONIOENCODING": "utf-8",
        }
        self.env.pop("PROJCACHE_DIR", None)

    def run(self, *args: str, cwd: Path | None = None, ok: tuple[int, ...] = (0,)) -> str:
        result = subprocess.run(
            [self.exe, *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode not in ok:
            raise AssertionError(
                f"skillmeat {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def version(self) -> str:
        return self.run("--version").strip()

    def probe(self, request: dict[str, Any]) -> dict[str, Any]:
        result = subprocess.run(
            [self.python, str(PROBE)],
            input=json.dumps(request),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def skill(folder: Path, name: str, description: str, version: str = "1.0.0") -> Path:
    write(
        folder / "SKILL.md",
        f"---\nname: {name}\ndescription: {description}\nversion: {version}\n---\n"
        f"# {name}\n\nThe {name} skill.\n",
    )
    write(folder / "reference.md", f"Reference of {name}.\n")
    return folder


def parse_status(text: str) -> dict[str, str]:
    """``skillmeat status``: ``name::type[::profile]`` -> section (``Locally modified``, ...)."""
    found: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        header = re.match(r"^([A-Z][A-Za-z ]+) \(\d+\):$", line.strip())
        if header:
            section = header.group(1)
        elif line.startswith("  ") and "::" in line and section:
            found[line.strip()] = section
    return found


class Table:
    """The agreement table: per check, rows compared, agreeing, documented exceptions."""

    def __init__(self) -> None:
        self.rows: Counter[tuple[str, str]] = Counter()
        self.disagreements: list[str] = []
        self.exceptions: list[str] = []

    def agree(self, check: str, same: bool, what: str, exception: str | None = None) -> None:
        if same:
            self.rows[(check, "agree")] += 1
        elif exception is not None:
            self.rows[(check, "exception")] += 1
            self.exceptions.append(f"{check}: {what} ({exception})")
        else:
            self.rows[(check, "disagree")] += 1
            self.disagreements.append(f"{check}: {what}")

    def render(self) -> str:
        checks = sorted({check for check, _kind in self.rows})
        lines = [
            f"{'check':<34} {'rows':>5} {'agree':>6} {'documented':>10} {'disagree':>8}",
        ]
        for check in checks:
            agree, exc, bad = (self.rows[(check, k)] for k in ("agree", "exception", "disagree"))
            lines.append(f"{check:<34} {agree + exc + bad:>5} {agree:>6} {exc:>10} {bad:>8}")
        lines += [f"  documented: {e}" for e in self.exceptions]
        lines += [f"  DISAGREES: {d}" for d in self.disagreements]
        return "\n".join(lines)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """SkillMeat's collection and two projects after every kind of drift."""
    base = tmp_path_factory.mktemp("interop")
    sm = SkillMeat(_python(), base / "home")
    (base / "home").mkdir()
    assert "0.74.0" in sm.version(), sm.version()
    src, p1, p2 = base / "src", base / "work" / "p1", base / "work" / "p2"
    p1.mkdir(parents=True)
    p2.mkdir(parents=True)
    for name, text in {
        "alpha": "Alpha reads PDF files",
        "beta": "Beta writes tables",
        "gamma": "Gamma reviews code",
        "delta": "Delta plans tests",
    }.items():
        skill(src / name, name, text)
    write(src / "review.md", "---\ndescription: Review a pull request\n---\nReview it.\n")
    write(src / "helper.md", "---\nname: helper\ndescription: A helper agent\n---\nHelp.\n")
    write(src / "flow.js", 'console.log("flow");\n')

    sm.run("init", "--name", "default", "--no-input")
    sm.run("init", "--no-input", cwd=p1)
    for name in ("alpha", "beta", "gamma", "delta"):
        sm.run("add", "skill", str(src / name), "-y")
    sm.run("add", "command", str(src / "review.md"), "-y")
    sm.run("add", "agent", str(src / "helper.md"), "-y")
    sm.run("add", "orchestration", str(src / "flow.js"), "-y")
    sm.run("mcp", "add", "fs", "anthropics/mcp-filesystem", "--env", "ROOT=/secret",
           "-d", "File system server")  # fmt: skip
    sm.run("deploy", "alpha", "beta", "gamma", "delta", "review", "helper", "--project",
           str(p1), "-o")  # fmt: skip
    sm.run("deploy", "flow", "-t", "orchestration", "--project", str(p1), "-o")
    sm.run("deploy", "alpha", "helper", "--project", str(p1), "--profile", "codex", "-o")
    sm.run("deploy", "alpha", "--project", str(p2), "--profile", "codex", "-o")

    collection = base / "home" / ".skillmeat" / "collections" / "default"
    # modified: a local edit of beta's .claude copy, and of alpha's codex copy
    write(p1 / ".claude" / "skills" / "beta" / "reference.md", "edited here\n")
    write(p1 / ".agents" / "skills" / "alpha" / "reference.md", "edited in codex\n")
    # outdated: gamma changes at its source and is re-added to the collection
    write(src / "gamma" / "reference.md", "Gamma v2.\n")
    sm.run("add", "skill", str(src / "gamma"), "-y", "--force")
    # conflict: delta changes in the collection and in the project
    write(src / "delta" / "reference.md", "Delta v2.\n")
    sm.run("add", "skill", str(src / "delta"), "-y", "--force")
    write(p1 / ".claude" / "skills" / "delta" / "reference.md", "delta edited here\n")
    # deleted deployed copy (item 5) and an edited command in the collection (outdated)
    (p1 / ".claude" / "commands" / "review.md").unlink()
    with open(collection / "agents" / "helper.md", "a", encoding="utf-8") as handle:
        handle.write("More help.\n")

    answers = {
        "list": json.loads(sm.run("list", "--format", "json")),
        "sync_check": {
            str(p): json.loads(sm.run("sync-check", str(p), "--format", "json", ok=(0, 1)))
            for p in (p1, p2)
        },
        "status": {
            (str(p), profile): parse_status(
                sm.run("status", "--project", str(p), "--profile", profile)
            )
            for p, profile in ((p1, "claude_code"), (p1, "codex"), (p2, "codex"))
        },
    }
    cache_dir = base / "cache"
    with ProjectCache.open(cache_dir) as cache:
        report = cache.refresh(collections=[collection], projects=[p1, p2])
        names = {p.id: p.path for p in cache.list_projects()}
        ours = {
            "report": report,
            "artifacts": {a.key: a for a in cache.list_artifacts(collection="default")},
            "deployments": [(names[d.project_id], d) for d in cache.list_deployments()],
            "projects": {p.path: p.name for p in cache.list_projects()},
        }
    paths = [a.path for a in ours["artifacts"].values() if a.type != "mcp"]
    paths += [str(Path(path) / d.profile_root / d.artifact_path) for path, d in ours["deployments"]]
    answers["probe"] = sm.probe(
        {
            "paths": paths,
            "projects": [str(p1), str(p2)],
            "collection_toml": str(collection / "collection.toml"),
        }
    )
    yield {"ours": ours, "theirs": answers, "p1": str(p1), "p2": str(p2)}
    shutil.rmtree(base, ignore_errors=True)


def test_projcache_agrees_with_skillmeat(world: dict[str, Any]) -> None:
    ours, theirs = world["ours"], world["theirs"]
    table = Table()
    assert ours["report"].ok, ours["report"].errors

    # -- artifacts: skillmeat list --format json ----------------------------------------------
    listed = {(row["type"], row["name"]): row for row in theirs["list"]}
    mine = {(a.type, a.name): a for a in ours["artifacts"].values() if a.type != "mcp"}
    table.agree("artifacts (list)", set(listed) == set(mine), f"{set(listed) ^ set(mine)}")
    for key in sorted(set(listed) & set(mine)):
        row, artifact = listed[key], mine[key]
        shown = (row.get("description") or "", row.get("version"))
        table.agree(
            "artifact fields (list)",
            shown == (artifact.description or "", artifact.version)
            or (not row.get("description") and row.get("version") == artifact.version),
            f"{key}: skillmeat {shown}, projcache {(artifact.description, artifact.version)}",
        )

    # -- MCP servers: Collection.from_dict ------------------------------------------------------
    servers = {s["name"]: s for s in theirs["probe"]["mcp"]}
    mcps = {a.name: a for a in ours["artifacts"].values() if a.type == "mcp"}
    table.agree("mcp servers", set(servers) == set(mcps), f"{set(servers) ^ set(mcps)}")
    for name in sorted(set(servers) & set(mcps)):
        server, artifact = servers[name], mcps[name]
        table.agree(
            "mcp fields",
            (server["repo"], server.get("description"), sorted(server.get("env_vars", {})))
            == (artifact.upstream, artifact.description, artifact.front_matter.get("env_vars")),
            f"{name}: {server} vs {artifact}",
        )
        assert "/secret" not in artifact.model_dump_json()

    # -- deployments: DeploymentTracker.read_deployments -----------------------------------------
    tracked = {
        (project, d["collection"], d["type"], d["name"], d["profile"]): d
        for project, rows in theirs["probe"]["deployments"].items()
        for d in rows
    }
    deployed = {
        (project, *d.artifact_key.split("/"), d.profile): d for project, d in ours["deployments"]
    }
    table.agree(
        "deployments (tracker)", set(tracked) == set(deployed), f"{set(tracked) ^ set(deployed)}"
    )
    for key in sorted(set(tracked) & set(deployed)):
        record, deployment = tracked[key], deployed[key]
        table.agree(
            "deployment fields",
            (record["root"], record["path"], record["content_hash"])
            == (deployment.profile_root, deployment.artifact_path, deployment.content_hash),
            f"{key}: {record} vs {deployment}",
        )

    # -- hashes: compute_content_hash --------------------------------------------------------------
    hashes = theirs["probe"]["hashes"]
    for artifact in ours["artifacts"].values():
        if artifact.type != "mcp":
            table.agree(
                "content hash (collection)",
                hashes.get(artifact.path) == artifact.content_hash,
                f"{artifact.key}",
            )
    for project, d in ours["deployments"]:
        path = str(Path(project) / d.profile_root / d.artifact_path)
        if path in hashes:
            table.agree("content hash (deployed copy)", hashes[path] == d.local_hash, path)

    # -- states: sync-check (skills in .claude/) and status (every profile) ------------------------
    drift_to_state = {"modified": "modified", "outdated": "outdated", "conflict": "conflict"}
    for project, d in ours["deployments"]:
        _c, type_, name = d.artifact_key.split("/")
        drifts = [
            a["drift_type"]
            for a in theirs["sync_check"][project]["artifacts"]
            if (a["name"], a["type"]) == (name, type_)
        ]
        where = f"{Path(project).name} {d.artifact_key} ({d.profile})"
        what = f"{where}: projcache {d.state}, sync-check {drifts or 'no drift'}"
        if type_ != "skill":
            table.agree("state (sync-check)", False, what, "sync-check reads skills only")
            continue
        if d.profile != "claude_code":
            table.agree("state (sync-check)", False, what, "sync-check looks in .claude/ only")
            continue
        expected = drift_to_state.get(drifts[0], drifts[0]) if drifts else "current"
        table.agree("state (sync-check)", d.state == expected, what)
    for project, d in ours["deployments"]:
        _c, type_, name = d.artifact_key.split("/")
        listing = theirs["status"].get((project, d.profile), {})
        section = listing.get(f"{name}::{type_}") or listing.get(f"{name}::{type_}::{d.profile}")
        locally_modified = d.state in ("modified", "conflict")
        where = f"{Path(project).name} {d.artifact_key} ({d.profile})"
        what = f"{where}: projcache {d.state}, status {section}"
        if d.state == "missing" and section == "Synced":
            table.agree("state (status)", False, what, "deleted deployed copy: item 5, missing")
            continue
        table.agree(
            "state (status)",
            section == ("Locally modified" if locally_modified else "Synced"),
            what,
        )
    # Every drift was made and seen.
    assert {d.state for _p, d in ours["deployments"]} >= {
        "current", "modified", "outdated", "conflict", "missing"
    }  # fmt: skip
    rendered = table.render()
    print("\nprojcache vs SkillMeat 0.74.0: agreement\n" + rendered, file=sys.stderr)
    sys.stderr.flush()
    assert not table.disagreements, rendered
