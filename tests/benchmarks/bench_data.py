"""Deterministic benchmark data: artifact records, projects, deployments, queries, source trees.

Everything comes from a fixed seed, so two runs (and every engine in one run)
see exactly the same records.  The vocabulary imitates the shipped examples
(``lib/projcache/examples``): kebab-case names such as ``pdf-extract``, one-line
descriptions ("Extract text and tables from PDF files ..."), short tags.  Word
frequencies are skewed (a few verbs and nouns are everywhere, real tool names
are in between, a long tail of product code names is rare), which is what makes
the three search classes (rare & rare, common & rare, common & common) exist.

The text is written so that projcache's tokenizer and SQLite FTS5's
``unicode61 remove_diacritics 2`` agree on every word a query can use: no
camelCase (projcache splits it, FTS5 does not), lower-case tool names, and a few
Latin words with diacritics (both fold ``résumé`` to ``resume``).  Query words
are additionally chosen so that no indexed token extends them, so projcache's
prefix match of the last word and FTS5's exact match find the same artifacts.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

SEED = 20260601
TYPES = ("skill", "command", "agent")
TYPE_WEIGHTS = (45, 35, 20)
COLLECTIONS = ("default", "team", "community")
COLLECTION_WEIGHTS = (60, 30, 10)
# A collection holds at most this many artifacts; beyond it, ``default-2``, ``default-3``...
# (60,000 entries would make one collection.toml larger than the 16 MiB source-file limit).
COLLECTION_SHARD = 5000
FOLDERS = {"skill": "skills", "command": "commands", "agent": "agents"}


def _words(text: str) -> list[str]:
    """The whitespace-separated words of ``text`` (keeps the vocabulary lists compact)."""
    return text.split()


VERBS = _words(
    """
extract review deploy draft audit write generate convert summarize analyse format migrate
validate refactor search index translate debug profile scaffold lint document merge split
fill parse render schedule monitor triage label release publish backup sync plan estimate
compare clean annotate archive import export
"""
)

OBJECTS = _words(
    """
pdf spreadsheets tables charts forms documents code changes commits changelogs schemas
migrations dashboards logs metrics alerts containers clusters pipelines workflows issues
tickets invoices contracts slides diagrams images screenshots transcripts meetings notes
emails queries endpoints services modules packages dependencies configs secrets certificates
notebooks datasets prompts embeddings translations fonts components styles layouts routes
sessions caches backups releases branches reports budgets roadmaps incidents runbooks
"""
)

TOOLS = _words(
    """
python rust golang typescript javascript react vue svelte django flask fastapi rails
postgres sqlite mysql redis kafka rabbitmq terraform kubernetes docker helm ansible aws gcp
azure lambda graphql grpc openapi jira slack notion figma stripe github gitlab jenkins
circleci sentry grafana prometheus datadog elasticsearch snowflake bigquery airflow dbt
pandas numpy pytorch tensorflow jupyter excel word powerpoint markdown latex html css
tailwind webpack vite eslint prettier pytest jest playwright cypress selenium nginx linux
bash zsh powershell vim emacs vscode xcode android ios swift kotlin java scala haskell
elixir erlang clojure ruby php perl lua dart flutter unity godot blender ffmpeg opencv spark
hadoop mongodb cassandra dynamodb firebase supabase vercel netlify heroku cloudflare okta
auth0 oauth saml ldap vault consul nomad pulumi bazel gradle maven cmake llvm wasm
"""
)

ROLES = _words(
    """
toolkit assistant helper reviewer analyst writer checker planner runner generator auditor
converter formatter tracker guide
"""
)

# Clauses appended to descriptions; {code} is a product code name (the rare words).
CLAUSES = (
    "for the {code} team",
    "as used by {code}",
    "(part of the {code} suite)",
    "before each release",
    "after every merge",
    "step by step",
    "with a short checklist",
    "on request",
    "in the background",
    "and explains each finding",
    "without leaving the editor",
)

# Sentence shapes; verbs and objects are Zipf-drawn, tools less skewed.
TEMPLATES = (
    "{Verb} {obj} and {obj2} in {tool} projects",
    "{Verb} {obj} with {tool}",
    "{Verb} the {obj} of a {tool} service",
    "Helps you {verb} {obj} for {tool} and {tool2}",
    "{Verb} {obj}, {verb2} {obj2} and keep {obj3} tidy",
    "A {role} that can {verb} {obj} from {tool}",
    "{Verb} {obj} across {tool} repositories",
)

# Latin words with diacritics: both tokenizers fold them (résumé -> resume).
ACCENTED = _words(
    """
résumé café naïve façade über jalapeño señor crème déjà coöperate
"""
)

TAGS = _words(
    """
pdf documents spreadsheets excel data review quality git github testing security deploy
frontend css design documentation writing notes meetings python devops cloud database api
automation ci monitoring performance refactoring migration analytics ml ai llm prompts
search productivity planning release docs accessibility i18n compliance privacy billing
mobile backend infra observability incident onboarding research
"""
)

_SYLLABLES = _words(
    """
ka lo mi ra ven tor sa li qua zen dor fi nu pel rin ta vo bre cal dex gri hol jun kim lar
mor nix ost pra quin rul sev tam urk vex wil yor zan
"""
)

_ORGS = _words(
    """
anthropics acme openworks devtools-co datacraft northwind initech globex
"""
)


def _code_names(count: int, rng: random.Random) -> list[str]:
    """``count`` distinct invented product code names (``velkora``, ``tamrin``)."""
    names: set[str] = set()
    while len(names) < count:
        parts = rng.randint(2, 3)
        names.add("".join(rng.choice(_SYLLABLES) for _ in range(parts)))
    return sorted(names)


class _Zipf:
    """Draw words with probability proportional to ``1 / (rank + offset) ** s``."""

    def __init__(self, words: Sequence[str], s: float = 1.0, offset: float = 1.0):
        self.words = list(words)
        weights = [1.0 / (rank + offset) ** s for rank in range(len(self.words))]
        self.cumulative = list(itertools.accumulate(weights))

    def draw(self, rng: random.Random) -> str:
        point = rng.random() * self.cumulative[-1]
        return self.words[bisect.bisect_right(self.cumulative, point)]


@dataclass
class Vocabulary:
    """The word lists, shuffled once by the seed so ranks do not follow the lists above."""

    rng: random.Random
    verbs: _Zipf = field(init=False)
    objects: _Zipf = field(init=False)
    tools: _Zipf = field(init=False)
    tags: _Zipf = field(init=False)
    code_names: _Zipf = field(init=False)

    def __post_init__(self) -> None:
        def shuffled(words: Sequence[str]) -> list[str]:
            copy = list(words)
            self.rng.shuffle(copy)
            return copy

        self.verbs = _Zipf(shuffled(VERBS), s=1.0)
        self.objects = _Zipf(shuffled(OBJECTS), s=0.9)
        self.tools = _Zipf(shuffled(TOOLS), s=1.1, offset=3.0)
        self.tags = _Zipf(shuffled(TAGS), s=1.0)
        self.code_names = _Zipf(_code_names(6000, self.rng), s=0.6, offset=10.0)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _description(vocab: Vocabulary, rng: random.Random, verb: str, obj: str, tool: str) -> str:
    words = {
        "verb": verb,
        "Verb": verb.capitalize(),
        "obj": obj,
        "tool": tool,
        "verb2": vocab.verbs.draw(rng),
        "obj2": vocab.objects.draw(rng),
        "obj3": vocab.objects.draw(rng),
        "tool2": vocab.tools.draw(rng),
        "role": rng.choice(ROLES),
    }
    sentence = rng.choice(TEMPLATES).format(**words)
    if rng.random() < 0.8:
        sentence += " " + rng.choice(CLAUSES).format(code=vocab.code_names.draw(rng))
    sentence += "."
    if rng.random() < 0.4:
        shape = rng.choice(TEMPLATES[:3])
        more = {**words, "verb": vocab.verbs.draw(rng), "obj": vocab.objects.draw(rng)}
        more["Verb"] = more["verb"].capitalize()
        more["tool"] = vocab.code_names.draw(rng)
        sentence += " " + shape.format(**more) + "."
    if rng.random() < 0.03:
        sentence += f" Handles {rng.choice(ACCENTED)} input."
    return sentence


def generate_artifacts(count: int, seed: int = SEED) -> list[dict[str, Any]]:
    """``count`` artifact records (dicts for ``ProjectCache.put_artifacts``), same for a seed.

    Names are unique across collections and types, so every artifact can be
    deployed into one ``.claude/`` folder without clashing.

    Written for speed (1,000,000 records in about a minute) without changing a
    record: the random draws are the same calls in the same order as the plain
    version pinned by tests/test_bench_data.py.  A name's suffix search resumes
    where the last one of the same base stopped (names are only ever added, so
    the suffixes below it are still taken): that loop was quadratic in the
    number of artifacts sharing a popular base (2,443 s for 1,000,000 records).
    """
    rng = random.Random(seed)
    vocab = Vocabulary(random.Random(seed + 1))
    rand = rng.random
    choice = rng.choice
    randint = rng.randint

    def drawer(zipf: _Zipf) -> Any:
        # _Zipf.draw with its lookups bound once: the same float arithmetic, so the same word.
        words, cumulative, top = zipf.words, zipf.cumulative, zipf.cumulative[-1]
        return lambda: words[bisect.bisect_right(cumulative, rand() * top)]

    draw_verb, draw_obj = drawer(vocab.verbs), drawer(vocab.objects)
    draw_tool, draw_tag = drawer(vocab.tools), drawer(vocab.tags)
    draw_code = drawer(vocab.code_names)
    # rng.choices(population, weights)[0], inlined: cumulative weights, total as a float,
    # bisect over all but the last slot (random.py does exactly this).
    type_cum = list(itertools.accumulate(TYPE_WEIGHTS))
    type_total = type_cum[-1] + 0.0
    coll_cum = list(itertools.accumulate(COLLECTION_WEIGHTS))
    coll_total = coll_cum[-1] + 0.0
    bisect_right = bisect.bisect_right
    taken: set[str] = set()
    next_suffix: dict[str, int] = {}
    filled: dict[str, int] = {}
    records = []
    for index in range(count):
        type_ = TYPES[bisect_right(type_cum, rand() * type_total, 0, len(TYPES) - 1)]
        base_collection = COLLECTIONS[
            bisect_right(coll_cum, rand() * coll_total, 0, len(COLLECTIONS) - 1)
        ]
        done = filled.get(base_collection, 0)
        shard = done // COLLECTION_SHARD
        filled[base_collection] = done + 1
        collection = base_collection if shard == 0 else f"{base_collection}-{shard + 1}"
        verb, obj, tool = draw_verb(), draw_obj(), draw_tool()
        shape = rand()
        if shape < 0.4:
            base = f"{obj}-{verb}"
        elif shape < 0.8:
            base = f"{tool}-{obj}-{verb}"
        else:
            base = f"{draw_code()}-{obj}"
        suffix = next_suffix.get(base, 1)
        name = base if suffix == 1 else f"{base}-{suffix}"
        while name in taken:
            suffix += 1
            name = f"{base}-{suffix}"
        next_suffix[base] = suffix + 1
        taken.add(name)
        role = choice(ROLES)
        title = f"{tool.capitalize()} {obj} {role}"
        if rand() < 0.2:
            title = f"{draw_code().capitalize()} {role}"
        tags = sorted({draw_tag() for _ in range(randint(1, 4))})
        major, minor, patch = randint(0, 3), randint(0, 12), randint(0, 20)
        org = choice(_ORGS)
        folder = FOLDERS[type_]
        path = f"{folder}/{name}" if type_ == "skill" else f"{folder}/{name}.md"
        record: dict[str, Any] = {
            "name": name,
            "type": type_,
            "collection": collection,
            "path": f"/home/dev/.skillmeat/collections/{collection}/{path}",
            "title": title,
            "description": _description(vocab, rng, verb, obj, tool),
            "tags": tags,
            "version": f"{major}.{minor}.{patch}",
            "origin": "github",
            "upstream": f"{org}/claude-{folder}/{name}",
            "resolved_sha": _sha(f"{name}{index}")[:12],
            "resolved_version": f"v{major}.{minor}.{patch}",
            "content_hash": _sha(f"content {name} {index}"),
            "updated_at": f"2026-{randint(1, 12):02d}-{randint(1, 28):02d}T09:30:00Z",
        }
        if type_ == "agent":
            record["front_matter"] = {"model": choice(["sonnet", "opus", "haiku"])}
        records.append(record)
    return records


def scratch_artifacts(
    count: int, avoid: set[str], seed: int = SEED + 7, start: int = 0
) -> Iterator[dict[str, Any]]:
    """Fresh records for write benchmarks, holding none of the tokens in ``avoid``.

    They go to collection ``scratch`` as type ``mcp`` with tag ``scratch``, so
    writing them changes no listing, facet or search result the read cases check.
    """
    produced = 0
    for index, record in enumerate(generate_artifacts(count * 3 + 50, seed)):
        fresh = {
            **record,
            "name": f"scratch-{start + index}",
            "type": "mcp",
            "collection": "scratch",
            "tags": ["scratch"],
        }
        fresh.pop("front_matter", None)
        if avoid.isdisjoint(artifact_terms(fresh)):
            yield fresh
            produced += 1
            if produced == count:
                return
    raise RuntimeError(f"could not draw {count} scratch records avoiding {len(avoid)} words")


@dataclass
class Dataset:
    """One size's records with their stored JSON, projects, deployments and queries."""

    size: int
    artifacts: list[dict[str, Any]]
    artifact_json: list[bytes]
    projects: list[dict[str, Any]]
    project_json: list[bytes]
    deployments: list[dict[str, Any]]
    deployment_json: list[bytes]
    queries: dict[str, Query]
    read_keys: list[str]
    list_type: str
    list_tag: str
    list_project: str
    counts: dict[str, int]

    @property
    def raw_json_bytes(self) -> int:
        """Bytes of every record as JSON: what the cache holds, before any index."""
        return sum(map(len, self.artifact_json + self.project_json + self.deployment_json))

    def key(self, index: int) -> str:
        record = self.artifacts[index]
        return f"{record['collection']}/{record['type']}/{record['name']}"


@dataclass(frozen=True)
class Query:
    """A two-word search of one class, with the artifact keys it must find."""

    label: str
    words: tuple[str, str]
    keys: frozenset[str]

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def fts_exact(self) -> str:
        return " ".join(f'"{w}"' for w in self.words)

    @property
    def fts_prefix(self) -> str:
        return f'"{self.words[0]}" "{self.words[1]}"*'


def generate_projects(
    artifacts: list[dict[str, Any]], seed: int = SEED
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Projects (one per 100 artifacts) each deploying up to 20 artifacts; 1 in 5 outdated."""
    from projcache.codec import project_id_for_path

    rng = random.Random(seed + 2)
    count = max(1, len(artifacts) // 100)
    per_project = min(20, len(artifacts))
    projects, deployments = [], []
    for index in range(count):
        name = f"app-{index:05d}"
        path = f"/srv/projects/{name}"
        project = {"name": name, "path": path, "description": f"Service {index}"}
        project_id = project_id_for_path(path)
        project["id"] = project_id
        projects.append(project)
        for artifact in rng.sample(artifacts, per_project):
            outdated = rng.random() < 0.2
            folder = FOLDERS[artifact["type"]]
            name_ = artifact["name"]
            deployments.append(
                {
                    "project_id": project_id,
                    "artifact_key": f"{artifact['collection']}/{artifact['type']}/{name_}",
                    "deployed_at": "2026-11-01T12:00:00Z",
                    "artifact_path": (
                        f"{folder}/{name_}"
                        if artifact["type"] == "skill"
                        else f"{folder}/{name_}.md"
                    ),
                    "content_hash": _sha("old") if outdated else artifact["content_hash"],
                    "version": artifact["version"],
                }
            )
    return projects, deployments


# -- queries -----------------------------------------------------------------------------

_SIMPLE = re.compile(r"[a-z]{3,}")


def artifact_terms(record: dict[str, Any]) -> set[str]:
    """Every term projcache indexes for ``record`` (tokens and their stems, any field)."""
    from projcache.terms import field_terms

    return set().union(*field_terms(record).values())


def _postings(artifacts: list[dict[str, Any]]) -> dict[str, set[int]]:
    postings: dict[str, set[int]] = {}
    for index, record in enumerate(artifacts):
        for token in artifact_terms(record):
            postings.setdefault(token, set()).add(index)
    return postings


def _stem_safe(postings: dict[str, set[int]]) -> set[str]:
    """Terms a stemming engine and an exact one match alike: no other term shares their stem."""
    from projcache.terms import stem

    groups: dict[str, set[str]] = {}
    for term in postings:
        groups.setdefault(stem(term), set()).add(term)
    return {t for t in postings if groups.get(stem(t)) == {t} and groups.get(t, {t}) == {t}}


def choose_queries(artifacts: list[dict[str, Any]]) -> dict[str, Query]:
    """Pick one two-word query per class from the data itself (deterministically).

    Query words are plain lower-case words that no other indexed token
    extends, so projcache (last word as a prefix) and FTS5 (exact words)
    must return the same set.  *common* words are the most frequent such
    words; *rare* ones occur in at most 0.05% of the artifacts (at least once).
    """
    postings = _postings(artifacts)
    ordered = sorted(postings)
    safe = _stem_safe(postings)
    usable = set()
    for i, token in enumerate(ordered):
        extended = i + 1 < len(ordered) and ordered[i + 1].startswith(token)
        if _SIMPLE.fullmatch(token) and not extended and token in safe:
            usable.add(token)
    by_df = sorted(usable, key=lambda t: (-len(postings[t]), t))
    common = by_df[:12]
    limit = max(1, len(artifacts) // 2000)
    rare = {t for t in usable if len(postings[t]) <= limit and t not in common}

    def keys(a: str, b: str) -> frozenset[str]:
        hits = postings[a] & postings[b]
        return frozenset(
            f"{artifacts[i]['collection']}/{artifacts[i]['type']}/{artifacts[i]['name']}"
            for i in hits
        )

    rare_pair: Optional[tuple[str, str]] = None
    common_rare: Optional[tuple[str, str]] = None
    for record in artifacts:
        terms = artifact_terms(record)
        rare_here = sorted(t for t in terms if t in rare)
        if rare_pair is None and len(rare_here) >= 2:
            rare_pair = (rare_here[0], rare_here[1])
        common_here = [t for t in common if t in terms]
        if common_rare is None and rare_here and common_here:
            common_rare = (common_here[0], rare_here[0])
        if rare_pair and common_rare:
            break
    if rare_pair is None:  # tiny data: two rare words, possibly matching nothing together
        pool = sorted(rare) or by_df[-2:]
        rare_pair = (pool[0], pool[-1])
    if common_rare is None:
        common_rare = (common[0], sorted(rare)[0] if rare else by_df[-1])
    common_pair = (common[0], common[1])
    for a, b in itertools.combinations(common, 2):
        if postings[a] & postings[b]:
            common_pair = (a, b)
            break
    return {
        label: Query(label, pair, keys(*pair))
        for label, pair in (
            ("rare&rare", rare_pair),
            ("common&rare", common_rare),
            ("common&common", common_pair),
        )
    }


def build_dataset(size: int, seed: int = SEED) -> Dataset:
    """Generate everything one size needs; records are validated by projcache's models."""
    from projcache.models import Artifact, Deployment, Project

    artifacts = generate_artifacts(size, seed)
    projects, deployments = generate_projects(artifacts, seed)
    artifact_json = [Artifact.model_validate(r).model_dump_json().encode() for r in artifacts]
    project_json = [Project.model_validate(p).model_dump_json().encode() for p in projects]
    deployment_json = [Deployment.model_validate(d).model_dump_json().encode() for d in deployments]
    rng = random.Random(seed + 3)
    read_keys = [
        f"{r['collection']}/{r['type']}/{r['name']}" for r in rng.choices(artifacts, k=512)
    ]
    tag_counts: dict[str, int] = {}
    for record in artifacts:
        for tag in record["tags"]:
            tag_counts[tag] = tag_counts.get(tag, 0) + 1
    # A mid-frequency tag: the one ranked a quarter of the way down.
    ranked = sorted(tag_counts, key=lambda t: (-tag_counts[t], t))
    tag = ranked[len(ranked) // 4]
    counts = {
        "type:skill": sum(1 for r in artifacts if r["type"] == "skill"),
        f"tag:{tag}": tag_counts[tag],
        "project": sum(1 for d in deployments if d["project_id"] == projects[0]["id"]),
    }
    return Dataset(
        size=size,
        artifacts=artifacts,
        artifact_json=artifact_json,
        projects=projects,
        project_json=project_json,
        deployments=deployments,
        deployment_json=deployment_json,
        queries=choose_queries(artifacts),
        read_keys=read_keys,
        list_type="skill",
        list_tag=tag,
        list_project=projects[0]["id"],
        counts=counts,
    )


# -- source trees (SkillMeat layout) -------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string


def _table(header: str, fields: dict[str, Any]) -> str:
    lines = [header] + [f"{k} = {_toml(v)}" for k, v in fields.items() if v is not None]
    return "\n".join(lines) + "\n\n"


def artifact_text(record: dict[str, Any], revision: int = 0) -> str:
    """The Markdown file describing an artifact: YAML front matter (JSON scalars) and a body."""
    front = [
        f"name: {json.dumps(record['name'])}",
        f"title: {json.dumps(record['title'], ensure_ascii=False)}",
        f"description: {json.dumps(record['description'], ensure_ascii=False)}",
        f"tags: {json.dumps(record['tags'])}",
        f"version: {json.dumps(record['version'])}",
    ]
    body = (
        f"# {record['title']}\n\n{record['description']}\n\n"
        "## Steps\n1. Read the inputs.\n2. Do the work.\n3. Report what changed.\n"
    )
    if revision:
        body += f"\nRevision {revision}.\n"
    return "---\n" + "\n".join(front) + "\n---\n" + body


@dataclass
class SourceTree:
    """Collections and projects written to disk, and how to change 1% of them."""

    root: Path
    collections: list[Path]
    projects: list[Path]
    main_files: list[Path]  # one per artifact, in record order
    records: list[dict[str, Any]]
    revision: int = 0
    cursor: int = 0

    def change(self, count: int) -> list[Path]:
        """Rewrite the main file of the next ``count`` artifacts (new bytes, a fresh old mtime).

        The mtime is set in the past (but later than the tree's), so the change
        is visible to ``stat`` and is not "racy" (too recent to trust).
        """
        self.revision += 1
        when = time.time_ns() - 1800 * 10**9 + self.revision * 10**6
        changed = []
        for _ in range(count):
            index = self.cursor % len(self.main_files)
            self.cursor += 1
            path = self.main_files[index]
            path.write_text(artifact_text(self.records[index], self.revision), encoding="utf-8")
            os.utime(path, ns=(when, when))
            changed.append(path)
        return changed


def write_source_tree(root: Path, records: list[dict[str, Any]], projects: int) -> SourceTree:
    """Write ``records`` as SkillMeat collections under ``root``, plus ``projects`` projects.

    Skills are folders (``SKILL.md``, every other one with a ``reference.md``);
    commands and agents are one ``.md`` file.  Each collection has its
    ``collection.toml`` and ``collection.lock`` (SkillMeat's content hashes);
    each project deploys up to 20 artifacts (copies plus ``.skillmeat-*.toml``).
    Everything is aged an hour so that the first refresh's fingerprints are trusted.
    """
    from projcache.sources import content_hash

    root.mkdir(parents=True, exist_ok=True)
    collections = root / "collections"
    main_files: list[Path] = []
    by_collection: dict[str, list[tuple[dict[str, Any], Path]]] = {}
    for index, record in enumerate(records):
        coll = collections / record["collection"]
        folder = coll / FOLDERS[record["type"]]
        if record["type"] == "skill":
            target = folder / record["name"]
            target.mkdir(parents=True, exist_ok=True)
            main = target / "SKILL.md"
            if index % 2 == 0:
                (target / "reference.md").write_text(
                    f"# Reference for {record['name']}\n\nDetails.\n", encoding="utf-8"
                )
        else:
            folder.mkdir(parents=True, exist_ok=True)
            target = main = folder / f"{record['name']}.md"
        main.write_text(artifact_text(record), encoding="utf-8")
        main_files.append(main)
        by_collection.setdefault(record["collection"], []).append((record, target))
    collection_paths = []
    hashes: dict[str, str] = {}
    for name, items in sorted(by_collection.items()):
        coll = collections / name
        toml = [_table("[collection]", {"name": name, "version": "1.0.0"})]
        lock = [_table("[lock]", {"version": "1.0.0"})]
        for record, target in items:
            relative = os.path.relpath(target, coll)
            digest = content_hash(target)
            hashes[record["name"]] = digest
            toml.append(
                _table(
                    "[[artifacts]]",
                    {
                        "name": record["name"],
                        "type": record["type"],
                        "path": relative,
                        "origin": "github",
                        "upstream": record["upstream"],
                        "version_spec": "latest",
                        "resolved_sha": record["resolved_sha"],
                        "resolved_version": record["resolved_version"],
                        "tags": record["tags"],
                    },
                )
            )
            entry = json.dumps(f"{record['name']}::{record['type']}")
            lock.append(
                _table(
                    f"[lock.entries.{entry}]",
                    {
                        "content_hash": digest,
                        "upstream": record["upstream"],
                        "resolved_sha": record["resolved_sha"],
                        "resolved_version": record["resolved_version"],
                    },
                )
            )
        (coll / "collection.toml").write_text("".join(toml), encoding="utf-8")
        (coll / "collection.lock").write_text("".join(lock), encoding="utf-8")
        collection_paths.append(coll)
    rng = random.Random(SEED + 4)
    project_paths = []
    for number in range(projects):
        project = root / "projects" / f"app-{number:04d}"
        claude = project / ".claude"
        claude.mkdir(parents=True, exist_ok=True)
        deployed = []
        for index in rng.sample(range(len(records)), min(20, len(records))):
            record = records[index]
            source = main_files[index].parent if record["type"] == "skill" else main_files[index]
            relative = os.path.relpath(source, collections / record["collection"])
            target = claude / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copyfile(source, target)
            digest = hashes[record["name"]]
            deployed.append(
                _table(
                    "[[deployed]]",
                    {
                        "artifact_name": record["name"],
                        "artifact_type": record["type"],
                        "from_collection": record["collection"],
                        "deployed_at": "2026-11-01T12:00:00+00:00",
                        "artifact_path": relative,
                        "content_hash": digest,
                        "local_modifications": False,
                        "version": record["version"],
                        "version_lineage": [digest],
                    },
                )
            )
        (claude / ".skillmeat-project.toml").write_text(
            _table("[project]", {"name": project.name, "description": "A benchmark project"}),
            encoding="utf-8",
        )
        (claude / ".skillmeat-deployed.toml").write_text("".join(deployed), encoding="utf-8")
        project_paths.append(project)
    age(root)
    return SourceTree(root, collection_paths, project_paths, main_files, records)


def age(root: Path, seconds: float = 3600.0) -> None:
    """Move every mtime under ``root`` ``seconds`` into the past (see tests/factories.age)."""
    when = time.time_ns() - int(seconds * 1e9)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*filenames, *dirnames):
            os.utime(os.path.join(dirpath, name), ns=(when, when), follow_symlinks=False)
    os.utime(root, ns=(when, when))
