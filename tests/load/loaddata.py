"""Deterministic SkillMeat source trees for the load test: collections and deployed projects.

``build_sources(root, artifacts=10_000)`` writes, from a fixed seed, three
collections (``collection.toml``, ``collection.lock``, ``commands/*.md``,
``agents/*.md`` and ``skills/<name>/SKILL.md``) and a dozen projects whose
``.claude/`` holds deployed copies and ``.skillmeat-deployed.toml``.  Each
project has a share of each deployment state: copies edited after deployment
(``modified``), copies of an older version (``outdated``), entries whose files
were never copied (``missing``), the rest ``current``, plus a few local
artifacts SkillMeat does not manage.  ``projcache refresh`` then reads it all;
it is plain files, so the cache is built the way a user's is.

Names, tags and descriptions come from a small vocabulary with a skewed
frequency (a few words are everywhere, most are rare), so searches of one or
two words range from a handful of hits to thousands.

Run as a script to build a tree by hand: ``python tests/load/loaddata.py DIR [N]``.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from projcache.sources import content_hash

__all__ = ["Dataset", "build_sources"]

SEED = 20261126
STAMP = "2026-09-01T10:00:00Z"
FOLDERS = {"skill": "skills", "command": "commands", "agent": "agents"}
TYPES = ("skill", "command", "agent")
TYPE_WEIGHTS = (40, 40, 20)
COLLECTIONS = ("default", "team", "community")
COLLECTION_WEIGHTS = (60, 30, 10)


def _vocabulary(text: str) -> list[str]:
    """The words of ``text``, in order (the lists below read better as running text)."""
    return text.split()


VERBS = _vocabulary(
    """extract review deploy draft audit write generate convert summarize format migrate
validate refactor search index translate debug profile scaffold lint document merge split parse
render schedule monitor triage label release publish backup sync plan estimate compare clean
annotate archive"""
)
OBJECTS = _vocabulary(
    """pdf spreadsheets tables charts forms documents code changes commits changelogs schemas
migrations dashboards logs metrics alerts containers clusters pipelines workflows issues tickets
invoices contracts slides diagrams images screenshots transcripts meetings notes emails queries
endpoints services modules packages dependencies configs secrets certificates notebooks datasets
prompts embeddings translations components styles layouts routes sessions caches backups
releases branches reports budgets roadmaps incidents runbooks"""
)
TOOLS = _vocabulary(
    """python rust golang typescript react vue django flask fastapi rails postgres sqlite redis
kafka terraform kubernetes docker helm ansible aws gcp azure graphql grpc openapi jira slack
notion figma stripe github gitlab jenkins sentry grafana prometheus datadog snowflake bigquery
airflow pandas numpy pytorch jupyter excel markdown latex html css tailwind vite eslint pytest
jest playwright nginx linux bash vim vscode swift kotlin java scala elixir ruby php lua dart
flutter unity blender ffmpeg opencv spark mongodb dynamodb firebase vercel cloudflare okta
vault pulumi bazel gradle cmake wasm"""
)
CODES = _vocabulary(
    """aurora basalt cobalt dahlia ember fjord garnet heron indigo juniper kestrel lichen
marlin nebula obsidian peregrine quartz rowan sierra tundra umber vesper willow xenon yarrow
zephyr"""
)
CATEGORIES = _vocabulary(
    """documents data devops frontend backend testing security writing planning
observability"""
)


@dataclass
class Dataset:
    """What :func:`build_sources` wrote: folders to refresh and what a client may ask for."""

    collections: list[Path]
    projects: list[Path]
    artifacts: int
    deployments: int
    states: dict[str, int] = field(default_factory=dict)


def _skewed(rng: random.Random, words: list[str]) -> str:
    """A word with a Zipf-like skew: the first words of the list are by far the most common."""
    index = min(int(rng.paretovariate(1.1)) - 1, len(words) - 1)
    return words[index]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string for the text we write


def _table(header: str, fields: dict[str, Any]) -> str:
    lines = [header]
    lines += [f"{k} = {_toml(v)}" for k, v in fields.items() if v is not None]
    return "\n".join(lines) + "\n\n"


def _markdown(name: str, description: str, tags: list[str], body: str) -> str:
    return (
        f"---\nname: {name}\ndescription: {json.dumps(description)}\n"
        f"tags: [{', '.join(tags)}]\n---\n# {name}\n\n{body}\n"
    )


@dataclass
class _Artifact:
    collection: str
    type: str
    name: str
    description: str
    tags: list[str]
    version: str

    @property
    def relative(self) -> str:
        folder = FOLDERS[self.type]
        return f"{folder}/{self.name}" if self.type == "skill" else f"{folder}/{self.name}.md"

    def text(self, revision: str = "") -> str:
        body = f"Use this to {self.description.lower()}.{revision}"
        return _markdown(self.name, self.description, self.tags, body)


def _write(base: Path, artifact: _Artifact, revision: str = "") -> Path:
    """Write the artifact's files under ``base``; return its file or folder."""
    target = base / artifact.relative
    if artifact.type == "skill":
        target.mkdir(parents=True, exist_ok=True)
        (target / "SKILL.md").write_text(artifact.text(revision), encoding="utf-8")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(artifact.text(revision), encoding="utf-8")
    return target


def _make_artifacts(rng: random.Random, count: int) -> list[_Artifact]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for _ in range(count):
        collection = rng.choices(COLLECTIONS, COLLECTION_WEIGHTS)[0]
        type_ = rng.choices(TYPES, TYPE_WEIGHTS)[0]
        verb, obj, tool = _skewed(rng, VERBS), _skewed(rng, OBJECTS), rng.choice(TOOLS)
        base = f"{tool}-{verb}-{obj}"
        name, n = base, 1
        while (collection, type_, name) in seen:
            n += 1
            name = f"{base}-{n}"
        seen.add((collection, type_, name))
        clause = rng.choice(
            ["", f" for the {rng.choice(CODES)} team", " before each release", " step by step"]
        )
        description = f"{verb.capitalize()} {obj} with {tool}{clause}"
        tags = sorted({tool, rng.choice(CATEGORIES)})
        version = f"1.{rng.randrange(10)}.{rng.randrange(10)}"
        out.append(_Artifact(collection, type_, name, description, tags, version))
    return out


def _write_collection(root: Path, name: str, artifacts: list[_Artifact]) -> Path:
    path = root / "collections" / name
    path.mkdir(parents=True, exist_ok=True)
    toml = [_table("[collection]", {"name": name, "version": "1.0.0", "created": STAMP})]
    lock = [_table("[lock]", {"version": "1.0.0"})]
    for artifact in artifacts:
        target = _write(path, artifact)
        toml.append(
            _table(
                "[[artifacts]]",
                {
                    "name": artifact.name,
                    "type": artifact.type,
                    "path": artifact.relative,
                    "origin": "github",
                    "upstream": f"acme/{name}/{artifact.name}",
                    "version_spec": "latest",
                    "resolved_version": artifact.version,
                    "added": STAMP,
                    "last_updated": STAMP,
                    "tags": artifact.tags,
                },
            )
        )
        lock.append(
            _table(
                "[lock.entries." + json.dumps(f"{artifact.name}::{artifact.type}") + "]",
                {"content_hash": content_hash(target), "fetched": STAMP},
            )
        )
    (path / "collection.toml").write_text("".join(toml), encoding="utf-8")
    (path / "collection.lock").write_text("".join(lock), encoding="utf-8")
    return path


def _write_project(
    root: Path, index: int, rng: random.Random, pool: list[_Artifact], per_project: int
) -> tuple[Path, dict[str, int]]:
    name = f"{rng.choice(CODES)}-{rng.choice(OBJECTS)}-{index}"
    path = root / "projects" / name
    claude = path / ".claude"
    claude.mkdir(parents=True, exist_ok=True)
    states = {"current": 0, "outdated": 0, "modified": 0, "missing": 0}
    entries = []
    used: set[str] = set()
    for artifact in rng.sample(pool, per_project * 2):
        if len(used) == per_project:
            break
        if artifact.relative in used:  # same type and name from two collections: one folder
            continue
        used.add(artifact.relative)
        roll = rng.random()
        state = (
            "missing"
            if roll < 0.03
            else "modified"
            if roll < 0.10
            else "outdated"
            if roll < 0.20
            else "current"
        )
        target = claude / artifact.relative
        deployed_hash = "0" * 64
        if state == "outdated":  # an older revision was deployed, the collection moved on
            deployed_hash = content_hash(_write(claude, artifact, "\n\nOlder revision."))
        elif state != "missing":
            deployed_hash = content_hash(_write(claude, artifact))
            if state == "modified":
                main = target / "SKILL.md" if artifact.type == "skill" else target
                main.write_text(main.read_text("utf-8") + "\nA local edit.\n", encoding="utf-8")
        states[state] += 1
        entries.append(
            _table(
                "[[deployed]]",
                {
                    "artifact_name": artifact.name,
                    "artifact_type": artifact.type,
                    "from_collection": artifact.collection,
                    "deployed_at": "2026-10-01T12:00:00+00:00",
                    "artifact_path": artifact.relative,
                    "content_hash": deployed_hash,
                    "local_modifications": False,
                    "version_lineage": [deployed_hash],
                },
            )
        )
    for n in range(3):  # local artifacts: found by layout, not managed by SkillMeat
        local = _Artifact(f"@{name}", "command", f"local-{n}", "A local helper", [], "0.1.0")
        _write(claude, local)
        states["current"] += 1
    (claude / ".skillmeat-project.toml").write_text(
        _table("[project]", {"name": name, "description": f"The {name} project"}),
        encoding="utf-8",
    )
    (claude / ".skillmeat-deployed.toml").write_text("".join(entries), encoding="utf-8")
    return path, states


def build_sources(
    root: Path, artifacts: int = 10_000, projects: int = 12, per_project: int = 120
) -> Dataset:
    """Write collections holding ``artifacts`` artifacts and ``projects`` projects under ``root``.

    Each project deploys ``per_project`` artifacts (plus 3 local ones).
    Deterministic: the same arguments write the same bytes.
    """
    rng = random.Random(SEED)
    made = _make_artifacts(rng, artifacts)
    collections = [
        _write_collection(root, name, [a for a in made if a.collection == name])
        for name in COLLECTIONS
    ]
    totals = {"current": 0, "outdated": 0, "modified": 0, "missing": 0}
    project_paths = []
    for index in range(projects):
        path, states = _write_project(root, index, rng, made, per_project)
        project_paths.append(path)
        for state, n in states.items():
            totals[state] += n
    local = 3 * projects
    return Dataset(
        collections=collections,
        projects=project_paths,
        artifacts=artifacts + local,
        deployments=projects * per_project + local,
        states=totals,
    )


if __name__ == "__main__":
    target = Path(sys.argv[1])
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    dataset = build_sources(target, size)
    print(json.dumps({"artifacts": dataset.artifacts, "states": dataset.states}))
