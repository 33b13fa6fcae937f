"""Recovery of the cache (issue scenarios 1-6, 8 and 10).

Sections (each a block of classes under its own banner):

* shared helpers: tree fixtures, snapshots, per-unit invariants;
* crash safety (issue scenario 6): a writer process SIGKILLed at random points
  of large refreshes, many times; the cache must open, verify clean and hold
  what some committed transaction left, per unit, never a mix;
* hostile source files (issue scenario 8): malformed TOML and YAML, binary
  files, non-UTF-8 names, oversized files, symlink loops and unreadable files;
  a refresh never raises, keeps the last good data and reports the file;
* part 2 (scenarios 1-5, 10): verify in layers (file, frame, model, index,
  sources), repair (indexes rebuilt, bad records re-read from source, damaged
  environments moved aside and rebuilt), opening damaged caches (CacheCorruptError,
  auto_repair), permissions (read-only fallback, 0700 directories; as root the
  child drops to user nobody), a full disk (a 2 MiB tmpfs, or an RLIMIT_FSIZE
  simulation where mounting is not allowed), and the exact messages and log
  records a user sees.  Every test there breaks a real cache on purpose.

Figures (kills, hostile files) are printed; run with ``-rP`` (or ``-s``) to see them.
"""

from __future__ import annotations

import dataclasses
import errno
import inspect
import json
import logging
import os
import queue
import random
import re
import shutil
import signal
import stat
import string
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any, Callable, Optional

import lmdb
import lmdb.verify
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from factories import CollectionBuilder, ProjectBuilder, age, toml_document
from projcache import ProjectCache
from projcache import recovery as recovery_module
from projcache.codec import deployment_key, encode, frame, unframe
from projcache.config import Settings, load_settings
from projcache.errors import (
    CacheCorruptError,
    CacheFullError,
    CorruptRecordError,
    StorageError,
)
from projcache.models import RefreshReport, SourceError, VerifyReport
from projcache.sources import content_hash
from projcache.storage import DATABASES
from projcache_cli import app

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11 only
    import tomli as tomllib

# == shared helpers ===================================================================


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The folder holding ``collections/`` and ``projects/`` (apart from the cache)."""
    path = Path(os.path.realpath(tmp_path)) / "tree"
    path.mkdir()
    return path


@pytest.fixture
def tree_settings(cache_settings: Settings, tree: Path) -> Settings:
    """The conftest settings with collection and project roots in ``tree``."""
    return dataclasses.replace(
        cache_settings,
        collection_roots=(str(tree / "collections"),),
        project_roots=(str(tree / "projects"),),
        durability="none",
    )


def _without(record: dict[str, Any], *fields: str) -> dict[str, Any]:
    """``record`` minus ``fields``."""
    return {k: v for k, v in record.items() if k not in fields}


def snapshot(cache: ProjectCache) -> dict[str, Any]:
    """Every record a refresh writes, minus refresh bookkeeping (time, staleness, errors)."""
    return {
        "collections": {
            c.name: _without(c.model_dump(), "refreshed_at", "stale", "errors")
            for c in cache.list_collections()
        },
        "projects": {
            p.id: _without(p.model_dump(), "refreshed_at", "stale", "errors")
            for p in cache.list_projects()
        },
        "artifacts": {a.key: a.model_dump() for a in cache.list_artifacts()},
        "deployments": {
            (d.project_id, d.artifact_key): d.model_dump() for d in cache.list_deployments()
        },
    }


def unit_invariants(cache: ProjectCache) -> list[str]:
    """Problems with what one unit's transaction must keep together (empty when fine).

    Each collection's ``artifact_count`` equals the artifacts under its key
    prefix; each project's local pseudo-collection holds only artifacts that
    the project itself deploys.
    """
    problems = []
    for collection in cache.list_collections():
        held = sum(1 for _ in cache.list_artifacts(collection=collection.name))
        if held != collection.artifact_count:
            problems.append(
                f"collection {collection.name!r}: artifact_count {collection.artifact_count}"
                f" but {held} artifacts under its prefix"
            )
    for project in cache.list_projects():
        local = f"@{project.id}"
        deployed = {d.artifact_key for d in cache.list_deployments(project=project.id)}
        for artifact in cache.list_artifacts(collection=local):
            if artifact.key not in deployed:
                problems.append(f"project {project.name}: local {artifact.key} not deployed there")
    return problems


def assert_clean(cache: ProjectCache) -> None:
    """Assert verify finds nothing and every per-unit invariant holds."""
    findings = [f"{f.kind} {f.db} {f.key}: {f.message}" for f in cache.verify(deep=True).findings]
    assert findings == [], "verify findings:\n" + "\n".join(findings)
    problems = unit_invariants(cache)
    assert problems == [], "\n".join(problems)


def shown(path: Any) -> str:
    """How a path appears in messages: undecodable bytes become U+FFFD."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", "replace")


def snapshot_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Readable differences between two snapshots (record by record)."""
    problems = []
    for section, old in before.items():
        new = after[section]
        for key in sorted(set(old) | set(new), key=repr):
            if old.get(key) == new.get(key):
                continue
            if key not in new:
                problems.append(f"{section}[{key!r}] is gone")
            elif key not in old:
                problems.append(f"{section}[{key!r}] appeared: {new[key]}")
            else:
                fields = sorted(f for f in old[key] if old[key][f] != new[key].get(f))
                changes = ", ".join(f"{f}: {old[key][f]!r} -> {new[key][f]!r}" for f in fields)
                problems.append(f"{section}[{key!r}] changed: {changes}")
    return problems


def safe_refresh(cache: ProjectCache) -> RefreshReport:
    """Refresh; an exception fails the test with an ASCII-only message.

    Exceptions about undecodable names carry lone surrogates, which pytest-xdist
    cannot send from a worker (the whole run would stop with an INTERNALERROR).
    """
    try:
        return cache.refresh()
    except Exception as exc:
        failure = f"refresh raised {type(exc).__name__}: {str(exc)!a}"
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if f"{os.sep}projcache{os.sep}" in f.filename]
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(ours[-3:]))
    # Outside ``except``, so the original (maybe undecodable) exception is not chained.
    raise AssertionError(f"{failure} (in projcache at {where})")


def errors_naming(report: RefreshReport, needle: str) -> list[SourceError]:
    """The errors of ``report`` whose message contains ``needle``."""
    return [e for e in report.errors if needle in e.message]


# == crash safety (issue scenario 6) =====================================================
#
# A child process opens the cache and refreshes; the parent SIGKILLs it after a
# random delay.  Every collection and project is written in one transaction, so
# after any kill each unit holds exactly what one complete read of its files
# gave: the collection's description (a generation number) and every artifact's
# description come from the same generation, and a project's description (its
# revision) matches the set of deployments of that revision.  The parent edits
# the tree only between rounds, so every state a unit may show is known.

REFRESH_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    # What refresh imports lazily, imported now: kill delays then land on its work.
    import projcache.models, projcache.refresh, projcache.search, projcache.sources
    from projcache import ProjectCache, storage
    from projcache.config import Settings

    # Mark each write transaction, so the parent knows whether it killed one.
    original_write = storage.Storage.write

    def write(self, fn):
        print("txn", flush=True)
        result = original_write(self, fn)
        print("committed", flush=True)
        return result

    storage.Storage.write = write
    args = json.loads(sys.argv[1])
    settings = Settings(
        cache_dir=Path(args["cache_dir"]),
        map_size=args["map_size"],
        durability=args["durability"],
        collection_roots=tuple(args["collection_roots"]),
        project_roots=tuple(args["project_roots"]),
    )
    with ProjectCache.open(settings=settings) as cache:
        print("started", flush=True)
        began = time.perf_counter()
        cache.refresh(
            full=args["full"],
            progress=lambda done, total, label: print("unit", done, total, flush=True),
        )
        print("done", time.perf_counter() - began, flush=True)
    """
)
CHILD_TIMEOUT = 120.0


@dataclass
class WriterRun:
    """What one refresh child printed and how it ended."""

    lines: list[str]
    returncode: int
    stderr: str

    @property
    def started(self) -> bool:
        """The child had opened the cache and entered ``refresh``."""
        return "started" in self.lines

    @property
    def done(self) -> bool:
        """The refresh returned."""
        return any(line.startswith("done") for line in self.lines)

    @property
    def units(self) -> int:
        """How many units (collections, projects) were finished before the end."""
        return sum(1 for line in self.lines if line.startswith("unit"))

    @property
    def duration(self) -> float:
        """The refresh's own duration as the child measured it (``done`` lines only)."""
        (line,) = [line for line in self.lines if line.startswith("done")]
        return float(line.split()[1])

    @property
    def in_transaction(self) -> bool:
        """The last line is the start of a write transaction (it never returned)."""
        marks = [line for line in self.lines if line in ("txn", "committed")]
        return bool(marks) and marks[-1] == "txn"

    @property
    def killed(self) -> bool:
        """SIGKILL ended the child."""
        return self.returncode == -signal.SIGKILL

    @property
    def killed_while_writing(self) -> bool:
        """Killed inside ``refresh``: after ``started``, before ``done``."""
        return self.killed and self.started and not self.done


def _pump(stream: Any, lines: queue.Queue[Optional[str]]) -> None:
    """Copy ``stream``'s lines into ``lines``, then ``None`` at end of file."""
    for line in stream:
        lines.put(line.strip())
    lines.put(None)


def run_writer(
    settings: Settings, *, full: bool, kill_after: Optional[float], stderr_path: Path
) -> WriterRun:
    """Run one refresh in a child process; SIGKILL it ``kill_after`` seconds after it starts.

    With ``kill_after=None`` the child must finish cleanly.
    """
    args = {
        "cache_dir": str(settings.cache_dir),
        "map_size": settings.map_size,
        "durability": settings.durability,
        "collection_roots": list(settings.collection_roots),
        "project_roots": list(settings.project_roots),
        "full": full,
    }
    with open(stderr_path, "w", encoding="utf-8") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", REFRESH_CHILD, json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    lines: queue.Queue[Optional[str]] = queue.Queue()
    pump = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
    pump.start()
    seen: list[str] = []
    hung = ""
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT
        while "started" not in seen:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                break  # ended before starting: reported below
            seen.append(line)
        if kill_after is not None and "started" in seen:
            time.sleep(kill_after)
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=CHILD_TIMEOUT)
    except (queue.Empty, subprocess.TimeoutExpired):
        hung = f"the refresh child hung for {CHILD_TIMEOUT:.0f}s"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    pump.join(timeout=CHILD_TIMEOUT)
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            break
        if line is not None:
            seen.append(line)
    assert process.stdout is not None
    process.stdout.close()
    run = WriterRun(seen, process.returncode, stderr_path.read_text(encoding="utf-8"))
    assert not hung, f"{hung}; it printed {seen[-5:]}; stderr:\n{run.stderr}"
    if kill_after is None or not run.killed:
        assert run.returncode == 0 and run.done, (
            f"the refresh child failed (exit {run.returncode}):\n{run.stderr}"
        )
    return run


N_SKILLS, N_COMMANDS, N_AGENTS = 240, 40, 20
N_PROJECTS = 12
_FILLER = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 8


@dataclass
class CrashTree:
    """A collection of a few hundred artifacts and a dozen projects, plus their history.

    ``collection_history[g]`` is what the collection unit holds after reading
    generation ``g`` of the files: its description and every artifact's
    description.  ``project_history[id][r]`` is the set of deployment keys of
    revision ``r`` of a project (its description is ``"rev <r>"``).
    """

    root: Path
    rng: random.Random
    collection: CollectionBuilder
    projects: list[ProjectBuilder] = field(default_factory=list)
    descriptions: dict[tuple[str, str], str] = field(default_factory=dict)
    unmanaged: set[tuple[str, str]] = field(default_factory=set)
    revisions: dict[str, int] = field(default_factory=dict)
    generation: int = 0
    collection_history: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    project_history: dict[str, list[frozenset[str]]] = field(default_factory=dict)
    counter: int = 0

    # -- building and editing --

    def write_artifact(self, type_: str, name: str) -> None:
        """(Re)write one artifact with a description naming the current generation."""
        self.counter += 1
        description = (
            f"The {name} {type_} at generation {self.generation}" + "!" * self.rng.randint(0, 4)
        )
        files = {"notes.md": f"# Notes {self.counter}\n"} if type_ == "skill" else None
        self.collection.add(
            type_,
            name,
            front_matter={"name": name, "description": description},
            body=f"# {name}\n\n{_FILLER}\n\nRevision {self.counter}.\n",
            files=files,
            managed=(type_, name) not in self.unmanaged,
            tags=[type_, f"group-{self.counter % 7}"],
        )
        self.descriptions[(type_, name)] = description

    def deployable(self) -> list[tuple[str, str]]:
        """The skills and commands present in the collection, sorted."""
        return sorted(k for k in self.descriptions if k[0] in ("skill", "command"))

    def redeploy(self, project: ProjectBuilder) -> None:
        """Give ``project`` a new revision: drop some deployments, add others, rewrite its TOML."""
        current = {(t, n) for (_c, t, n) in project.deployed}
        for type_, name in sorted(current):
            if self.rng.random() < 0.4 or (type_, name) not in self.descriptions:
                project.undeploy("default", type_, name)
        present = {(t, n) for (_c, t, n) in project.deployed}
        for type_, name in self.rng.sample(self.deployable(), 20):
            if (type_, name) not in present:
                project.deploy(self.collection, type_, name, version="1.0.0")
        revision = self.revisions.get(project.id, -1) + 1
        self.revisions[project.id] = revision
        project.description = f"rev {revision}"
        project.write()
        keys = frozenset(f"{c}/{t}/{n}" for (c, t, n) in project.deployed)
        self.project_history.setdefault(project.id, []).append(keys)
        assert len(self.project_history[project.id]) == revision + 1

    def record_collection(self) -> None:
        """Write the collection's manifests and remember generation ``self.generation``."""
        self.collection.description = f"generation {self.generation}"
        self.collection.write()
        state = {self.collection.key(t, n): d for (t, n), d in self.descriptions.items()}
        self.collection_history.append((self.collection.description, state))
        assert len(self.collection_history) == self.generation + 1

    @classmethod
    def build(cls, root: Path, seed: int) -> CrashTree:
        """Write generation 0: the collection, and revision 0 of every project."""
        rng = random.Random(seed)
        made = cls(root, rng, CollectionBuilder(root / "collections", "default"))
        names = (
            [("skill", f"skill-{i:03d}") for i in range(N_SKILLS)]
            + [("command", f"cmd-{i:03d}") for i in range(N_COMMANDS)]
            + [("agent", f"agent-{i:03d}") for i in range(N_AGENTS)]
        )
        made.unmanaged = set(rng.sample(names, 15))
        for type_, name in names:
            made.write_artifact(type_, name)
        made.record_collection()
        for i in range(N_PROJECTS):
            project = ProjectBuilder(root / "projects", f"project-{i:02d}")
            made.projects.append(project)
            made.redeploy(project)
        age(root)
        return made

    def edit(self) -> None:
        """Next generation: rewrite a sixth of the artifacts, add and remove a few, redeploy."""
        self.generation += 1
        present = sorted(self.descriptions)
        for type_, name in self.rng.sample(present, len(present) // 6):
            self.write_artifact(type_, name)
        for type_, name in self.rng.sample(present, 3):
            self.collection.remove(type_, name)
            del self.descriptions[(type_, name)]
        for i in range(3):
            self.write_artifact(("skill", "command", "agent")[i], f"new-{self.generation}-{i}")
        self.record_collection()
        for project in self.rng.sample(self.projects, 4):
            self.redeploy(project)

    # -- checking what a killed writer left --

    def check(self, cache: ProjectCache, seen: dict[str, int]) -> None:
        """Assert every unit holds one committed state, no older than the last one ``seen``.

        ``seen`` maps ``"collection"`` and each project id to the generation or
        revision observed last time; it is updated (a committed unit never goes back).
        """
        assert_clean(cache)
        record = cache.get_collection("default")
        artifacts = {a.key: a.description for a in cache.list_artifacts(collection="default")}
        last = seen.get("collection", -1)
        if record is None:
            assert last == -1, "the collection vanished after it had been committed"
            assert artifacts == {}, "artifacts without their collection record"
        else:
            match = re.fullmatch(r"generation (\d+)", record.description)
            assert match, f"collection description {record.description!r}"
            generation = int(match.group(1))
            assert last <= generation <= self.generation, (
                f"collection at generation {generation}; last seen {last}, newest {self.generation}"
            )
            description, expected = self.collection_history[generation]
            assert record.description == description
            missing = sorted(set(expected) - set(artifacts))[:5]
            extra = sorted(set(artifacts) - set(expected))[:5]
            mixed = sorted(k for k in expected if k in artifacts and artifacts[k] != expected[k])
            assert (missing, extra, mixed[:5]) == ([], [], []), (
                f"collection generation {generation} mixed with another: missing {missing}, "
                f"extra {extra}, stale descriptions {len(mixed)}"
            )
            assert record.artifact_count == len(expected)
            seen["collection"] = generation
        for project in self.projects:
            stored = cache.get_project(project.id)
            last = seen.get(project.id, -1)
            if stored is None:
                assert last == -1, f"{project.name} vanished after it had been committed"
                orphans = [d for d in cache.list_deployments() if d.project_id == project.id]
                assert orphans == [], f"deployments of {project.name} without its record"
                continue
            deployments = {d.artifact_key for d in cache.list_deployments(project=project.id)}
            match = re.fullmatch(r"rev (\d+)", stored.description)
            assert match, f"{project.name}: description {stored.description!r}"
            revision = int(match.group(1))
            newest = self.revisions[project.id]
            assert last <= revision <= newest, (
                f"{project.name} at revision {revision}; last seen {last}, newest {newest}"
            )
            expected_keys = self.project_history[project.id][revision]
            assert deployments == expected_keys, (
                f"{project.name}: revision {revision} with deployments of another read: "
                f"missing {sorted(expected_keys - deployments)}, "
                f"extra {sorted(deployments - expected_keys)}"
            )
            seen[project.id] = revision


@dataclass
class KillTally:
    """How the kills of one crash test went."""

    rounds: int = 0
    kills: int = 0
    kills_while_writing: int = 0
    kills_in_transaction: int = 0
    kills_after_a_commit: int = 0
    finished: int = 0

    def add(self, run: WriterRun) -> None:
        """Count one round."""
        self.rounds += 1
        self.kills += run.killed
        self.kills_while_writing += run.killed_while_writing
        self.kills_in_transaction += run.killed_while_writing and run.in_transaction
        self.kills_after_a_commit += run.killed_while_writing and run.units > 0
        self.finished += run.done

    def __str__(self) -> str:
        return (
            f"{self.rounds} rounds: {self.kills} SIGKILLs, {self.kills_while_writing} while the "
            f"child was inside refresh ({self.kills_in_transaction} inside an open write "
            f"transaction, {self.kills_after_a_commit} after at least one unit was committed), "
            f"{self.finished} refreshes finished before the kill"
        )


def crash_rounds(tmp_path: Path, target: int, seed: int) -> KillTally:
    """Kill refresh children until ``target`` kills landed inside refresh; check each time."""
    tree = CrashTree.build(Path(os.path.realpath(tmp_path)) / "tree", seed)
    base = Settings(
        cache_dir=tmp_path / "cache",
        map_size=256 * 1024,
        durability="none",
        collection_roots=(str(tree.root / "collections"),),
        project_roots=(str(tree.root / "projects"),),
    )
    stderr_path = tmp_path / "child-stderr.txt"
    # Measure the two kinds of refresh on a throwaway cache: kills land within them.
    probe = dataclasses.replace(base, cache_dir=tmp_path / "probe")
    typical = {True: run_writer(probe, full=True, kill_after=None, stderr_path=stderr_path)}
    tree.edit()
    typical[False] = run_writer(probe, full=False, kill_after=None, stderr_path=stderr_path)
    durations = {kind: run.duration for kind, run in typical.items()}
    shutil.rmtree(probe.cache_dir)

    tally = KillTally()
    seen: dict[str, int] = {}
    rng = random.Random(seed)
    while tally.kills_while_writing < target and tally.rounds < 3 * target:
        full = tally.rounds % 2 == 0
        if not full:
            tree.edit()
        settings = dataclasses.replace(base, durability=rng.choice(["none", "full"]))
        delay = rng.uniform(0.0, durations[full])
        run = run_writer(settings, full=full, kill_after=delay, stderr_path=stderr_path)
        tally.add(run)
        if run.done:  # finished before the kill: its duration is the newer measure
            durations[full] = run.duration
        with ProjectCache.open(settings=base) as cache:
            tree.check(cache, seen)
    # A last refresh, left to finish, brings every unit to the newest state.
    run_writer(base, full=False, kill_after=None, stderr_path=stderr_path)
    with ProjectCache.open(settings=base) as cache:
        tree.check(cache, seen)
    assert seen["collection"] == tree.generation
    assert all(seen[p.id] == tree.revisions[p.id] for p in tree.projects)
    print(
        f"crash safety (seed {seed}): {tally}; typical refresh full {durations[True]:.3f}s, "
        f"incremental {durations[False]:.3f}s"
    )
    assert tally.kills_while_writing >= target, f"too few kills inside refresh: {tally}"
    return tally


class TestCrashSafety:
    """A refresh SIGKILLed at any point leaves every unit as some committed transaction left it."""

    def test_killed_refreshes_leave_committed_units(
        self, tmp_path: Path, record_property: Callable[[str, object], None]
    ) -> None:
        """Ten kills inside full and incremental refreshes; each time verify is clean, no mix."""
        tally = crash_rounds(tmp_path, target=10, seed=6)
        record_property("kills", tally.kills)
        record_property("kills_while_writing", tally.kills_while_writing)

    @pytest.mark.stress
    def test_many_killed_refreshes_leave_committed_units(
        self, tmp_path: Path, record_property: Callable[[str, object], None]
    ) -> None:
        """Eighty kills inside refreshes, with other random delays and edits."""
        tally = crash_rounds(tmp_path, target=80, seed=60)
        record_property("kills", tally.kills)
        record_property("kills_while_writing", tally.kills_while_writing)


# == hostile source files (issue scenario 8) ============================================
#
# A good tree is refreshed first; then one file is made hostile and the tree is
# refreshed again (twice: the second time the kept fingerprint's stat differs,
# so the file is retried).  A refresh never raises, every record stays as it
# was (the last good data), the bad file is named in ``report.errors`` and in
# its collection's or project's ``errors``, and verify stays clean.

HOSTILE_CAP = 4096  # max_file_size in these tests: a few KiB is "very large"
HOSTILE_ARTIFACT_CAP = 4 * HOSTILE_CAP  # max_artifact_size: what one artifact's files may hold
SECRET = "root:x:0:0:quokka-secret-outside-the-tree"  # content that must never enter the cache


@pytest.fixture
def hostile_settings(tree_settings: Settings) -> Settings:
    """Tree settings with a 4 KiB cap on source files and manifests, 16 KiB on one artifact."""
    return dataclasses.replace(
        tree_settings,
        max_file_size=HOSTILE_CAP,
        max_manifest_size=HOSTILE_CAP,
        max_artifact_size=HOSTILE_ARTIFACT_CAP,
    )


@pytest.fixture
def hostile_cache(hostile_settings: Settings) -> Iterator[ProjectCache]:
    """A fresh read-write cache on the hostile-file settings, closed after the test."""
    with ProjectCache.open(settings=hostile_settings) as opened:
        yield opened


@dataclass
class HostileWorld:
    """A collection ``default``, a SkillMeat project ``webapp`` and a plain project ``plain``."""

    root: Path
    collection: CollectionBuilder
    webapp: ProjectBuilder
    plain: ProjectBuilder

    def target(self, name: str) -> Path:
        """The file a hostile case works on, by its short name (a key below)."""
        claude = self.webapp.claude
        paths = {
            "skill": self.collection.main_file("skill", "pdf"),
            "unmanaged-skill": self.collection.main_file("skill", "notes"),
            "command": self.collection.main_file("command", "lint"),
            "local-skill": self.plain.claude / "skills" / "meeting-notes" / "SKILL.md",
            "collection.toml": self.collection.path / "collection.toml",
            "collection.lock": self.collection.path / "collection.lock",
            "deployed.toml": claude / ".skillmeat-deployed.toml",
            "project.toml": claude / ".skillmeat-project.toml",
            # folders: a skill in the collection, a deployed copy, a project's own skill
            "skill-folder": self.collection.path / "skills" / "pdf",
            "deployed-folder": claude / "skills" / "pdf",
            "local-skill-folder": self.plain.claude / "skills" / "meeting-notes",
        }
        return paths[name]

    def owner(self, cache: ProjectCache, name: str) -> list[SourceError]:
        """The ``errors`` of the collection or project whose unit holds target ``name``."""
        if name in (
            "skill",
            "unmanaged-skill",
            "command",
            "collection.toml",
            "collection.lock",
            "skill-folder",
        ):
            record: Any = cache.get_collection("default")
        elif name in ("local-skill", "local-skill-folder"):
            record = cache.get_project(self.plain.id)
        else:
            record = cache.get_project(self.webapp.id)
        assert record is not None, f"the record owning {name} is gone"
        return list(record.errors)


def build_hostile_world(root: Path) -> HostileWorld:
    """A small tree with every kind of source: skills, a command, an agent, TOML, local ones."""
    collection = CollectionBuilder(root / "collections", "default", description="Team skills")
    collection.skill(
        "pdf",
        front_matter={"name": "pdf", "description": "Extract quokka text.", "tags": ["docs"]},
        files={"reference.md": "# Reference\n"},
        tags=["pdf"],
        resolved_version="v1.0.0",
    )
    collection.skill("notes", managed=False, front_matter={"description": "Loose notes."})
    collection.command("lint", front_matter={"description": "Lint the code."}, tags=["quality"])
    collection.agent("auditor", front_matter={"description": "Audits the code."})
    collection.write()
    webapp = ProjectBuilder(root / "projects", "webapp", description="Web shop")
    webapp.deploy(collection, "skill", "pdf", version="1.0.0")
    webapp.deploy(collection, "command", "lint")
    webapp.local("command", "release", front_matter={"description": "Ship a release."})
    webapp.write()
    plain = ProjectBuilder(root / "projects", "plain", managed=False)
    plain.local(
        "skill",
        "meeting-notes",
        front_matter={"description": "Turn meetings into notes."},
        files={"template.md": "# Template\n"},
    )
    age(root)
    return HostileWorld(root, collection, webapp, plain)


@pytest.fixture
def hostile_world(tree: Path, hostile_cache: ProjectCache) -> HostileWorld:
    """The small tree, refreshed once into ``hostile_cache`` without errors."""
    world = build_hostile_world(tree)
    report = hostile_cache.refresh()
    assert report.errors == []
    assert_clean(hostile_cache)
    return world


def refresh_keeps_last_good(
    cache: ProjectCache, world: HostileWorld, target: str, needle: str
) -> RefreshReport:
    """Refresh twice; assert nothing changed, ``needle`` is reported on report and owner."""
    before = snapshot(cache)
    for attempt in ("first", "second"):
        report = safe_refresh(cache)
        assert_clean(cache)
        diff = snapshot_diff(before, snapshot(cache))
        assert diff == [], f"{attempt} refresh lost the last good data:\n" + "\n".join(diff)
        naming = errors_naming(report, needle)
        assert naming, f"{attempt} refresh did not report {needle}; errors: {report.errors}"
        owner = world.owner(cache, target)
        assert all(e in owner for e in naming), f"not on the {target} owner's errors: {owner}"
    return report


# -- the hostile contents ------------------------------------------------------------------

BILLION_LAUGHS = "\n".join(
    ['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
)
DEEP_BLOCK = "".join(f"{'  ' * i}k{i}:\n" for i in range(40)) + "  " * 40 + "leaf\n"


def front(block: str, body: str = "Body.\n") -> bytes:
    """A Markdown file with ``block`` as its front matter."""
    return f"---\n{block}\n---\n{body}".encode()


YAML_CONTENTS: dict[str, bytes] = {
    "binary-garbage": bytes(range(256)) * 8,
    "utf16": "---\nname: pdf\n---\nBody\n".encode("utf-16"),
    "latin1-body": b"---\nname: pdf\n---\ncaf\xe9\n",
    "nul-in-yaml": front("name: pdf\ndescription: a\x00b"),
    "billion-laughs": front(BILLION_LAUGHS),
    "deep-flow": front("x: " + "[" * 1900 + "]" * 1900),
    "deep-block": front(DEEP_BLOCK),
    "tabs": front("name: pdf\n\tdescription: tabbed"),
    "python-object": front("description: !!python/object/apply:os.mkdir ['{pwned}']"),
    "python-name": front("description: !!python/name:os.system"),
    "unknown-tag": front("description: !vault |\n  abc"),
    "bad-timestamp-tag": front("created: !!timestamp yesterday"),
    "bad-bool-tag": front("draft: !!bool maybe"),
    "empty-int-tag": front("version: !!int"),
    "empty-float-tag": front("score: !!float"),
    "unclosed": b"---\nname: pdf\ndescription: never closed\n",
    "list-front-matter": front("- a\n- b"),
    "scalar-front-matter": front("just text"),
    "unhashable-key": front("? [a, b]\n: c"),
    "duplicate-anchor-bomb": front("a: &a [*a]"),
    # A 2 KiB string aliased 200 times: under 4 KiB on disk, 400 KiB decoded.
    "scalar-alias-bomb": front(f"big: &s {'q' * 2048}\nbomb: [{', '.join(['*s'] * 200)}]"),
    "over-cap": front("name: pdf", "x" * (HOSTILE_CAP + 100)),
}
TOML_CONTENTS: dict[str, bytes] = {
    "invalid-syntax": b"[collection\nname = ",
    "binary-garbage": bytes(range(256)) * 8,
    "utf16": '[project]\nname = "x"\n'.encode("utf-16"),
    "nul-byte": b'[collection]\nname = "a\x00b"\n',
    "deep-arrays": b"x = " + b"[" * 2000 + b"]" * 2000 + b"\n",
    "deep-tables": ("[" + ".".join(["t"] * 40) + "]\nleaf = 1\n").encode(),
    "duplicate-key": b'[project]\nname = "a"\nname = "b"\n',
    "bad-date": b"when = 2026-13-45T99:00:00Z\n",
    "over-cap": b"# " + b"x" * (HOSTILE_CAP + 100) + b"\n",
}
# A table where the file wants another shape: valid TOML, wrong structure.
WRONG_SHAPE = {
    "collection.toml": b"collection = 5\n",
    "collection.lock": b'lock = "entries"\n',
    "deployed.toml": b"deployed = { artifact_name = 1 }\n",
    "project.toml": b"project = [1, 2]\n",
}
# Appended to the good file: one bad entry; the good entries stay as they were.
BAD_ENTRIES = {
    "collection.toml": {
        "nameless": '\n[[artifacts]]\nname = 5\ntype = "skill"\n',
        "bogus-type": '\n[[artifacts]]\nname = "ghost"\ntype = "Bogus Type"\n',
        "path-outside": '\n[[artifacts]]\nname = "evil"\ntype = "skill"\npath = "../../etc"\n',
        "nul-in-path": (
            '\n[[artifacts]]\nname = "nul"\ntype = "skill"\npath = "skills/nu\\u0000l"\n'
        ),
        "duplicate": '\n[[artifacts]]\nname = "lint"\ntype = "command"\n',
    },
    "collection.lock": {
        "entry-not-table": '\n[lock.entries]\n"x::skill" = 5\n',
    },
    "deployed.toml": {
        "bogus-type": '\n[[deployed]]\nartifact_name = "x"\nartifact_type = "Bogus Type"\n',
        "bad-date": (
            '\n[[deployed]]\nartifact_name = "auditor"\nartifact_type = "agent"\n'
            'deployed_at = "yesterday"\n'
        ),
        "path-outside": (
            '\n[[deployed]]\nartifact_name = "auditor"\nartifact_type = "agent"\n'
            'artifact_path = "../../../etc/passwd"\n'
        ),
        "nul-in-path": (
            '\n[[deployed]]\nartifact_name = "auditor"\nartifact_type = "agent"\n'
            'artifact_path = "agents/audi\\u0000tor.md"\n'
        ),
        "key-too-long": f'\n[[deployed]]\nartifact_name = "{"z" * 600}"\nartifact_type = "skill"\n',
        "not-a-table": "\n[[deployed]]\n[deployed.nested]\nx = 1\n",
    },
}


def _unlink(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def make_fifo(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a FIFO (opening it for reading would block)."""
    _unlink(path)
    os.mkfifo(path)


def make_directory(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a directory of the same name (holding a file)."""
    _unlink(path)
    path.mkdir()
    (path / "inside.md").write_text("---\ndescription: inside\n---\n", encoding="utf-8")


def make_self_symlink(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a symlink to itself (ELOOP)."""
    _unlink(path)
    os.symlink(path.name, path)


def make_proc_mem(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a symlink to ``/proc/self/mem``: a regular file whose read fails."""
    if not os.path.exists("/proc/self/mem"):
        pytest.skip("no /proc/self/mem on this system")
    _unlink(path)
    os.symlink("/proc/self/mem", path)


def make_unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rewrite the file (so its stat changes), then ``chmod 000`` it.

    A mode change alone leaves mtime, size and inode as they were, so a refresh
    rightly keeps trusting the cached data; the rewrite makes it read the file.
    As root (who reads anyway) opening it fails with EACCES instead:
    ``fileio.open_source``, the one place source files are opened, is wrapped
    to raise ``PermissionError(EACCES)`` for this path, as the kernel would.
    """
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n")
    if os.geteuid() != 0:
        path.chmod(0)
        return
    from projcache.sources import fileio

    original = fileio.open_source
    denied = os.path.realpath(path)

    def open_source(candidate: str) -> Any:
        if os.path.realpath(candidate) == denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), candidate)
        return original(candidate)

    monkeypatch.setattr(fileio, "open_source", open_source)


FILE_KINDS: dict[str, Callable[[Path, pytest.MonkeyPatch], None]] = {
    "fifo": make_fifo,
    "directory": make_directory,
    "self-symlink": make_self_symlink,
    "proc-self-mem": make_proc_mem,
    "unreadable": make_unreadable,
}


def _outside(path: Path) -> Path:
    """A folder beside ``collections/`` and ``projects/``: outside every source root."""
    for parent in path.parents:
        if parent.name in ("collections", "projects"):
            outside = parent.parent / "outside"
            outside.mkdir(exist_ok=True)
            return outside
    raise AssertionError(f"{path} is not in the tree")


def link_to_outside_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a symlink to a secret file outside the collection/project."""
    secret = _outside(path) / "passwd"
    secret.write_text(f"---\ndescription: {SECRET}\n---\n{SECRET}\n", encoding="utf-8")
    _unlink(path)
    os.symlink(secret, path)


def link_to_etc_passwd(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a symlink to ``/etc/passwd`` (the issue's case)."""
    if not os.path.isfile("/etc/passwd"):
        pytest.skip("no /etc/passwd on this system")
    _unlink(path)
    os.symlink("/etc/passwd", path)


def link_to_relative_outside(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the file with a relative ``../..`` symlink climbing out of the tree."""
    secret = _outside(path) / "relative-secret.md"
    secret.write_text(f"---\ndescription: {SECRET}\n---\n", encoding="utf-8")
    _unlink(path)
    os.symlink(os.path.relpath(secret, path.parent), path)


def link_to_outside_folder(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the folder with a symlink to an outside folder holding a secret SKILL.md."""
    secret = _outside(path) / "skill"
    secret.mkdir(exist_ok=True)
    (secret / "SKILL.md").write_text(f"---\ndescription: {SECRET}\n---\n", encoding="utf-8")
    _unlink(path)
    os.symlink(secret, path, target_is_directory=True)


def link_to_usr_share(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the folder with a symlink to ``/usr/share`` (665 MB read by 0.1.0)."""
    if not os.path.isdir("/usr/share"):
        pytest.skip("no /usr/share on this system")
    _unlink(path)
    os.symlink("/usr/share", path, target_is_directory=True)


def link_to_filesystem_root(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the folder with a symlink to ``/`` (0.1.0 walked into /proc)."""
    _unlink(path)
    os.symlink("/", path, target_is_directory=True)


def link_inside_to_outside(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Add, inside the folder, a file that is a symlink to a secret outside the tree."""
    secret = _outside(path) / "inner-secret.txt"
    secret.write_text(SECRET, encoding="utf-8")
    os.symlink(secret, path / "notes.txt")


def too_many_files(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fill the folder with more entries than one artifact's walk looks at."""
    from projcache.sources.fileio import MAX_TREE_ENTRIES

    spam = path / "spam"
    spam.mkdir()
    for number in range(MAX_TREE_ENTRIES + 1):
        (spam / f"{number}.md").touch()


def too_many_bytes(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put more bytes in the folder than ``max_artifact_size`` (files each under max_file_size)."""
    for number in range(5):
        (path / f"blob{number}.bin").write_bytes(b"\0" * (HOSTILE_CAP - 1))


# Hostile files whose kind is "a link out of the root": each is one more corpus case.
LINK_FILE_KINDS: dict[str, Callable[[Path, pytest.MonkeyPatch], None]] = {
    "outside-file-symlink": link_to_outside_file,
    "etc-passwd-symlink": link_to_etc_passwd,
    "relative-outside-symlink": link_to_relative_outside,
}
FOLDER_KINDS: dict[str, Callable[[Path, pytest.MonkeyPatch], None]] = {
    "outside-folder-symlink": link_to_outside_folder,
    "usr-share-symlink": link_to_usr_share,
    "root-symlink": link_to_filesystem_root,
    "inner-symlink-out": link_inside_to_outside,
    "too-many-files": too_many_files,
    "too-many-bytes": too_many_bytes,
}
FILE_KINDS.update(LINK_FILE_KINDS)
FILE_KINDS.update(FOLDER_KINDS)


@dataclass(frozen=True)
class HostileCase:
    """One hostile file: which target, and how it is made hostile."""

    target: str
    kind: str
    content: Optional[bytes] = None
    append: Optional[str] = None

    @property
    def id(self) -> str:
        """The pytest id: ``<target>-<kind>``."""
        return f"{self.target}-{self.kind}"


YAML_FOR_EVERY_TARGET = (
    "binary-garbage",
    "billion-laughs",
    "scalar-alias-bomb",
    "python-object",
    "over-cap",
)


def _hostile_cases() -> list[HostileCase]:
    cases = [HostileCase("skill", kind, content) for kind, content in YAML_CONTENTS.items()]
    file_kinds = [kind for kind in FILE_KINDS if kind not in FOLDER_KINDS]
    cases += [HostileCase("skill", kind) for kind in file_kinds]
    for target in ("unmanaged-skill", "command", "local-skill"):
        for kind in YAML_FOR_EVERY_TARGET:
            cases.append(HostileCase(target, kind, YAML_CONTENTS[kind]))
        cases += [HostileCase(target, kind) for kind in file_kinds]
    for target in ("skill-folder", "deployed-folder", "local-skill-folder"):
        cases += [HostileCase(target, kind) for kind in FOLDER_KINDS]
    for target in ("collection.toml", "collection.lock", "deployed.toml", "project.toml"):
        cases += [HostileCase(target, kind, content) for kind, content in TOML_CONTENTS.items()]
        cases.append(HostileCase(target, "wrong-shape", WRONG_SHAPE[target]))
        cases += [HostileCase(target, kind) for kind in file_kinds]
        for kind, text in BAD_ENTRIES.get(target, {}).items():
            cases.append(HostileCase(target, f"entry-{kind}", append=text))
    return cases


HOSTILE_CASES = _hostile_cases()


class TestHostileFiles:
    """Hand-made hostile files: never a crash, last good data kept, the file reported."""

    @pytest.mark.parametrize("case", HOSTILE_CASES, ids=lambda case: case.id)
    def test_hostile_file(
        self,
        case: HostileCase,
        hostile_cache: ProjectCache,
        hostile_world: HostileWorld,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A hostile file is reported on report and record; every record keeps its old values.

        Unreadable files: ``chmod 000`` when not root; as root, opening the file
        fails with EACCES (see :func:`make_unreadable`).  FIFO, directory,
        self-symlink (ELOOP) and ``/proc/self/mem`` (EIO on read) are their own cases.
        """
        path = hostile_world.target(case.target)
        pwned = path.parent / "pwned"
        if case.kind in FILE_KINDS:
            FILE_KINDS[case.kind](path, monkeypatch)
        elif case.append is not None:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(case.append)
        else:
            assert case.content is not None
            path.write_bytes(case.content.replace(b"{pwned}", os.fsencode(pwned)))
        report = refresh_keeps_last_good(hostile_cache, hostile_world, case.target, str(path))
        assert not pwned.exists(), "a YAML tag ran code"
        if case.kind in LINK_FILE_KINDS or "symlink" in case.kind:
            assert hostile_cache.search("quokka-secret-outside-the-tree").total == 0
            errors = errors_naming(report, str(path))
            if case.kind not in ("self-symlink", "proc-self-mem"):
                assert any("outside" in e.message for e in errors), errors

    def test_collection_named_like_a_projects_local_collection(
        self, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """``name = "@<project id>"`` in collection.toml must not take over a project's artifacts.

        ``@<id>`` is the pseudo-collection of a project's own artifacts: a
        collection of that name is refused like a name with ``/`` (folder name used).
        """
        toml = hostile_world.target("collection.toml")
        text = toml.read_text(encoding="utf-8")
        taken = f'name = "{hostile_world.plain.local_collection}"'
        toml.write_text(text.replace('name = "default"', taken, 1), encoding="utf-8")
        refresh_keeps_last_good(hostile_cache, hostile_world, "collection.toml", str(toml))


def write_bytes_path(path: bytes, content: bytes) -> None:
    """Create the file at the bytes ``path`` (any name Linux allows) holding ``content``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


# An artifact with an undecodable name: (target whose owner reports it, base, bytes path).
UNDECODABLE_ARTIFACTS = {
    "collection-skill": ("collection.toml", "collection", b"skills/sk\xff\xfeill"),
    "collection-command": ("collection.toml", "collection", b"commands/c\xe9.md"),
    "webapp-local-skill": ("deployed.toml", "webapp", b"skills/lo\x80cal"),
    "plain-local-agent": ("local-skill", "plain", b"agents/ag\xc3\x28ent.md"),
}


class TestHostileNames:
    """File and folder names that are not UTF-8 (bytes names, as Linux allows)."""

    @pytest.fixture(autouse=True)
    def _quiet_logs(self) -> Iterator[None]:
        """Keep projcache's warnings out of the report: they may hold lone surrogates.

        pytest-xdist cannot send such text from a worker, and the whole run would
        stop with an INTERNALERROR instead of failing one test.
        """
        logger = logging.getLogger("projcache")
        level = logger.level
        logger.setLevel(logging.CRITICAL + 1)
        yield
        logger.setLevel(level)

    @pytest.mark.parametrize("where", sorted(UNDECODABLE_ARTIFACTS))
    def test_undecodable_artifact_name_is_reported(
        self, where: str, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """An artifact whose name is not UTF-8 is skipped and reported; the rest is kept."""
        target, base_name, relative = UNDECODABLE_ARTIFACTS[where]
        base = {
            "collection": hostile_world.collection.path,
            "webapp": hostile_world.webapp.claude,
            "plain": hostile_world.plain.claude,
        }[base_name]
        path = os.fsencode(base) + b"/" + relative
        text = b"---\ndescription: undecodable\n---\nBody.\n"
        if relative.startswith(b"skills/"):
            os.makedirs(path, exist_ok=True)
            write_bytes_path(path + b"/SKILL.md", text)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_bytes_path(path, text)
        shown_path = shown(path)
        if shown_path.endswith(".md"):
            shown_path = shown_path[: -len(".md")]  # messages name the artifact, not its file
        refresh_keeps_last_good(hostile_cache, hostile_world, target, shown_path)

    def test_undecodable_file_inside_a_skill_is_hashed(
        self, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """A file with an undecodable name inside a skill is hashed like any other, no error."""
        folder = hostile_world.collection.artifact_path("skill", "pdf")
        before = hostile_cache.get_artifact("default/skill/pdf")
        write_bytes_path(os.fsencode(folder) + b"/data-\xff.bin", b"\x00\x01 binary")
        report = hostile_cache.refresh()
        assert report.errors == []
        assert_clean(hostile_cache)
        after = hostile_cache.get_artifact("default/skill/pdf")
        assert before is not None and after is not None
        assert after.content_hash == content_hash(folder) != before.content_hash
        assert after.model_copy(update={"content_hash": None}) == before.model_copy(
            update={"content_hash": None}
        )

    @pytest.mark.parametrize("kind", ["collection", "project"])
    def test_undecodable_unit_folder(
        self, kind: str, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """A collection or project folder whose name is not UTF-8: no crash, others kept.

        It is either cached or reported (naming the folder); what was cached stays.
        """
        if kind == "collection":
            folder = os.fsencode(hostile_world.root / "collections") + b"/team-\xff"
            os.makedirs(folder + b"/skills/odd")
            write_bytes_path(folder + b"/skills/odd/SKILL.md", b"---\ndescription: Odd.\n---\n")
        else:
            folder = os.fsencode(hostile_world.root / "projects") + b"/shop-\xff"
            os.makedirs(folder + b"/.claude/commands")
            write_bytes_path(folder + b"/.claude/commands/odd.md", b"---\ndescription: Odd.\n---\n")
        before = snapshot(hostile_cache)
        report = safe_refresh(hostile_cache)
        assert_clean(hostile_cache)
        after = snapshot(hostile_cache)
        kept = {s: {k: v for k, v in after[s].items() if k in before[s]} for s in before}
        assert snapshot_diff(before, kept) == []
        added = [k for s in after for k in after[s] if k not in before[s]]
        reported = errors_naming(report, shown(folder))
        assert added or reported, f"{shown(folder)} neither cached nor reported: {report.errors}"


SYMLINK_LOOPS: dict[str, Callable[[HostileWorld], list[tuple[Path, str]]]] = {
    "between-skill-folders": lambda w: [
        (w.collection.artifact_path("skill", "pdf") / "to-notes", "../notes"),
        (w.collection.artifact_path("skill", "notes") / "to-pdf", "../pdf"),
    ],
    "skill-to-its-parent": lambda w: [
        (w.collection.artifact_path("skill", "pdf") / "up", ".."),
    ],
    "skill-to-itself": lambda w: [
        (w.collection.artifact_path("skill", "pdf") / "self", "."),
    ],
    "collections-root-to-itself": lambda w: [
        (w.root / "collections" / "again", "."),
    ],
    "projects-root-to-the-tree": lambda w: [
        (w.root / "projects" / "tree", ".."),
    ],
    "deployed-copy-between-folders": lambda w: [
        (w.webapp.claude / "skills" / "pdf" / "to-claude", "../.."),
    ],
    "claude-skills-to-claude": lambda w: [
        (w.webapp.claude / "skills" / "loop", ".."),
    ],
}


class TestSymlinkLoops:
    """Symlink loops inside and between folders: no hang, no crash, nothing lost."""

    @pytest.mark.parametrize("loop", sorted(SYMLINK_LOOPS))
    def test_symlink_loop(
        self, loop: str, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """Links to folders are never followed into; records stay, any error names the link."""
        links = SYMLINK_LOOPS[loop](hostile_world)
        for link, destination in links:
            os.symlink(destination, link)
        before = snapshot(hostile_cache)
        for _attempt in range(2):
            report = safe_refresh(hostile_cache)
            assert_clean(hostile_cache)
            assert snapshot_diff(before, snapshot(hostile_cache)) == []
            for error in report.errors:
                assert any(str(link) in error.message for link, _ in links), error


# -- generated hostile files (hypothesis) ----------------------------------------------------

GENERATED_EXAMPLES = 100
TOML_TARGETS = ("collection.toml", "collection.lock", "deployed.toml", "project.toml")
NASTY_TEXT = (
    "",
    " ",
    "pdf",
    "lint",
    "notes",
    "auditor",
    "skill",
    "command",
    "agent",
    "hook",
    "mcp",
    "bogus",
    "default",
    "a/b",
    ".",
    "..",
    "../x",
    "/etc/passwd",
    "skills/pdf",
    "skills/p\x00df",
    "commands/lint.md",
    "x" * 300,
    "@",
    "café",
    "名前",
    "\t",
    "line\nbreak",
    "1.0.0",
    "v1.0.0",
    "2026-01-01T00:00:00Z",
    "not a date",
    "\x7f",
    "\u202e",
    "\ufeff",
)
FIELDS = {
    "collection.toml": {
        "[collection]": ("name", "version", "description", "created", "updated"),
        "[[artifacts]]": (
            "name",
            "type",
            "path",
            "origin",
            "upstream",
            "version_spec",
            "resolved_sha",
            "resolved_version",
            "added",
            "last_updated",
            "tags",
            "metadata",
        ),
    },
    "collection.lock": {
        "[lock]": ("version",),
        "entry": ("content_hash", "upstream", "resolved_sha", "resolved_version", "fetched"),
    },
    "deployed.toml": {
        "[[deployed]]": (
            "artifact_name",
            "artifact_type",
            "from_collection",
            "deployed_at",
            "artifact_path",
            "content_hash",
            "collection_sha",
            "local_modifications",
            "version",
            "resolved_version",
            "version_lineage",
        ),
    },
    "project.toml": {"[project]": ("name", "description", "path", "created")},
}


def toml_values() -> st.SearchStrategy[Any]:
    """TOML values of every kind, with texts that mean something to the readers."""
    scalars = st.one_of(
        st.sampled_from(NASTY_TEXT),
        st.text(max_size=12),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.booleans(),
        st.floats(),
        st.datetimes(timezones=st.none() | st.just(timezone.utc)),
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=8,
    )


def table_fields(
    data: st.DataObject, keys: tuple[str, ...], base: dict[str, Any]
) -> dict[str, Any]:
    """``base`` (maybe emptied) with some of ``keys`` set to drawn values."""
    fields = dict(base) if data.draw(st.booleans(), label="keep base") else {}
    fields.update(
        data.draw(st.dictionaries(st.sampled_from(keys), toml_values(), max_size=4), label="fields")
    )
    return fields


def structured_toml(data: st.DataObject, target: str, world: HostileWorld) -> str:
    """A TOML document shaped like ``target``, with drawn values in its fields."""
    fields = FIELDS[target]
    if target == "collection.toml":
        tables = [("[collection]", table_fields(data, fields["[collection]"], {"name": "default"}))]
        for entry in world.collection.entries.values():
            if data.draw(st.booleans(), label="keep entry"):
                tables.append(("[[artifacts]]", table_fields(data, fields["[[artifacts]]"], entry)))
        return toml_document(tables)
    if target == "collection.lock":
        tables = [("[lock]", table_fields(data, fields["[lock]"], {"version": "1.0.0"}))]
        names = st.sampled_from(["pdf::skill", "lint::command", "x::bogus", "::", "a::b::c"])
        keys = st.lists(names | st.text(max_size=8), max_size=4, unique=True)
        for key in data.draw(keys, label="keys"):
            header = "[lock.entries." + json.dumps(key) + "]"
            tables.append((header, table_fields(data, fields["entry"], {})))
        return toml_document(tables)
    if target == "deployed.toml":
        tables = []
        for entry in world.webapp.deployed.values():
            if data.draw(st.booleans(), label="keep entry"):
                tables.append(("[[deployed]]", table_fields(data, fields["[[deployed]]"], entry)))
        for _ in range(data.draw(st.integers(0, 2), label="extra entries")):
            tables.append(("[[deployed]]", table_fields(data, fields["[[deployed]]"], {})))
        return toml_document(tables)
    base = {"name": "webapp", "description": "Web shop"}
    return toml_document([("[project]", table_fields(data, fields["[project]"], base))])


def mutated(data: st.DataObject, good: bytes) -> bytes:
    """``good`` with a few bytes cut out and others put in."""
    result = good
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        start = data.draw(st.integers(0, len(result)), label="at")
        cut = data.draw(st.integers(0, 8), label="cut")
        put = data.draw(st.binary(max_size=6) | st.text(max_size=6).map(str.encode), label="put")
        result = result[:start] + put + result[start + cut :]
    return result


def _depth(value: Any, level: int = 0) -> int:
    """The deepest level of nested tables and arrays (the document itself is level 0)."""
    if isinstance(value, dict):
        return max([level, *(_depth(v, level + 1) for v in value.values())])
    if isinstance(value, list):
        return max([level, *(_depth(v, level + 1) for v in value)])
    return level


def toml_unreadable(content: bytes, target: str) -> bool:
    """Whether ``content`` cannot be read as ``target`` at all, by an independent oracle.

    Too large, not UTF-8, not TOML, nested deeper than 32 levels, or its main
    table or array of the wrong type: the reader must then keep the last good data.
    """
    if len(content) > HOSTILE_CAP:
        return True
    try:
        document = tomllib.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return True
    if _depth(document) > 32:
        return True
    shapes = {
        "collection.toml": (("collection", dict), ("artifacts", list)),
        "collection.lock": (("lock", dict),),
        "deployed.toml": (("deployed", list),),
        "project.toml": (("project", dict),),
    }[target]
    if any(key in document and not isinstance(document[key], kind) for key, kind in shapes):
        return True
    lock = document.get("lock", {})
    return target == "collection.lock" and not isinstance(lock.get("entries", {}), dict)


def restore(cache: ProjectCache, path: Path, good: bytes, baseline: dict[str, Any]) -> None:
    """Put the good file back; after a refresh the cache must be as it was at the start."""
    path.write_bytes(good)
    report = safe_refresh(cache)
    assert report.errors == []
    diff = snapshot_diff(baseline, snapshot(cache))
    assert diff == [], "the good file back, the cache is not as before:\n" + "\n".join(diff)


class TestGeneratedHostileFiles:
    """Hypothesis-generated TOML and front matter: never a crash, never a mix of old and new."""

    @pytest.mark.parametrize("target", TOML_TARGETS)
    def test_generated_toml(
        self, target: str, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """Binary, random text, mutated and wrongly typed TOML; unreadable ones keep old data."""
        path = hostile_world.target(target)
        good = path.read_bytes()
        baseline = snapshot(hostile_cache)
        tried: list[bytes] = []

        @settings(
            max_examples=GENERATED_EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(data=st.data())
        def attempt(data: st.DataObject) -> None:
            restore(hostile_cache, path, good, baseline)
            kind = data.draw(st.sampled_from(["binary", "text", "mutated", "structured", "big"]))
            if kind == "binary":
                content = data.draw(st.binary(max_size=300), label="content")
            elif kind == "text":
                content = data.draw(st.text(max_size=300), label="content").encode()
            elif kind == "mutated":
                content = mutated(data, good)
            elif kind == "structured":
                content = structured_toml(data, target, hostile_world).encode()
            else:
                content = good + b"#" * data.draw(st.integers(0, 2 * HOSTILE_CAP), label="pad")
            tried.append(content)
            path.write_bytes(content)
            report = safe_refresh(hostile_cache)
            assert_clean(hostile_cache)
            for error in report.errors:
                assert str(hostile_world.root) in error.message, error
            if toml_unreadable(content, target):
                diff = snapshot_diff(baseline, snapshot(hostile_cache))
                assert diff == [], "an unreadable file changed records:\n" + "\n".join(diff)
                assert [e for e in report.errors if e.path == str(path)], report.errors
                assert errors_naming(report, str(path)), report.errors
            restore(hostile_cache, path, good, baseline)

        attempt()
        print(f"hostile source files, generated {target}: {len(tried)}")
        assert len(tried) >= GENERATED_EXAMPLES // 2, f"only {len(tried)} generated {target}"

    def test_generated_front_matter(
        self, hostile_cache: ProjectCache, hostile_world: HostileWorld
    ) -> None:
        """Random YAML front matter in SKILL.md: read afresh, or the old data and an error."""
        path = hostile_world.target("skill")
        folder = path.parent
        good = path.read_bytes()
        baseline = snapshot(hostile_cache)
        tried: list[bytes] = []
        snippets = st.sampled_from(
            [
                "!!binary aGVsbG8=",
                "!!set {a, b}",
                "!!omap [a: 1]",
                "!!timestamp 2001-12-14",
                "created: !!timestamp last week",
                "draft: !!bool perhaps",
                "size: !!int",
                "!!float .nan",
                "!!python/tuple [1, 2]",
                "!!python/object:os.system {}",
                "<<: {a: 1}",
                "&a scalar\nb: *a",
                "? complex\n: key",
                "%YAML 1.1",
                "description: [unclosed",
                "description: {a: 1",
                "'quoted: ",
                "tags: &t [a]\nmore: *t",
                "\t- tabbed",
                "- list",
                "null",
                "...",
            ]
        )
        yaml_data = st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=6), inner, max_size=3)
            ),
            max_leaves=10,
        )

        @settings(
            max_examples=GENERATED_EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(data=st.data())
        def attempt(data: st.DataObject) -> None:
            restore(hostile_cache, path, good, baseline)
            kind = data.draw(st.sampled_from(["binary", "text", "snippet", "data", "mutated"]))
            if kind == "binary":
                content = data.draw(st.binary(max_size=300), label="content")
            elif kind == "text":
                block = data.draw(st.text(max_size=200), label="block")
                content = f"---\n{block}\n---\nBody.\n".encode()
            elif kind == "snippet":
                lines = data.draw(st.lists(snippets, min_size=1, max_size=3), label="lines")
                content = front("\n".join(lines))
            elif kind == "data":
                value = data.draw(yaml_data, label="value")
                shared = data.draw(st.booleans(), label="alias it")
                document = {"description": value, "again": value} if shared else {"x": value}
                content = front(yaml.dump(document, allow_unicode=True))
            else:
                content = mutated(data, good)
            tried.append(content)
            before = hostile_cache.get_artifact("default/skill/pdf")
            path.write_bytes(content)
            report = safe_refresh(hostile_cache)
            assert_clean(hostile_cache)
            after = hostile_cache.get_artifact("default/skill/pdf")
            assert after is not None, "the skill vanished"
            if errors_naming(report, str(folder)):
                assert after == before, "an unreadable SKILL.md changed the record"
            else:
                assert after.content_hash == content_hash(folder), "new front matter, old hash"
            restore(hostile_cache, path, good, baseline)

        attempt()
        print(f"hostile source files, generated SKILL.md: {len(tried)}")
        assert len(tried) >= GENERATED_EXAMPLES // 2, f"only {len(tried)} generated SKILL.md"


def test_hostile_catalogue_size() -> None:
    """At least 130 hand-made hostile files, plus 500 generated ones (printed by each test)."""
    hand_made = (
        len(HOSTILE_CASES)
        + 1  # a collection named like a project's local collection
        + len(UNDECODABLE_ARTIFACTS)
        + 1  # an undecodable file inside a skill
        + 2  # undecodable collection and project folders
        + len(SYMLINK_LOOPS)
    )
    generated = GENERATED_EXAMPLES * (len(TOML_TARGETS) + 1)
    print(f"hostile source files: {hand_made} hand-made, up to {generated} generated")
    assert hand_made >= 130, f"only {hand_made} hand-made hostile files"


# ======================================================================
# Part 2
# ======================================================================

# Click < 8.2 (the newest on Python 3.9) mixes stderr into stdout unless told not to.
_P2_SEPARATE = "mix_stderr" in inspect.signature(CliRunner.__init__).parameters
_p2_runner = CliRunner(**({"mix_stderr": False} if _P2_SEPARATE else {}))

_P2_DIRECT = {
    "name": "direct",
    "type": "agent",
    "collection": "manual",
    "description": "Put straight into the cache; no source file.",
}
_P2_DIRECT_KEY = "manual/agent/direct"
_P2_BAD_PGNO = 999_999
_P2_REPAIR_HINT = (
    "Run `projcache verify --repair` (the damaged files are kept aside), "
    "or set PROJCACHE_AUTO_REPAIR=true."
)
_P2_CORRUPT_NAME = re.compile(r"^cache\.corrupt-\d{8}T\d{6}Z(-\d+)?$")

# Which full-disk method ran ("tmpfs" or "rlimit ..."), set by the p2_small_fs fixture.
_P2_FULL_DISK_METHOD: Optional[str] = None


def _p2_others_can_reach(path: str) -> bool:
    """True when a user with no special rights can reach and read ``path``."""
    real = Path(os.path.realpath(path))
    if any(not parent.stat().st_mode & stat.S_IXOTH for parent in real.parents):
        return False
    return bool(real.stat().st_mode & stat.S_IROTH)


def _p2_nobody_can_run_python() -> bool:
    import pydantic

    import projcache

    needed = [sys.executable, os.__file__, lmdb.__file__, pydantic.__file__, projcache.__file__]
    return all(_p2_others_can_reach(path) for path in needed)


# How the permission checks run as an unprivileged user when the tests run as root:
# "user=nobody" starts the interpreter as nobody; when nobody cannot even reach the
# interpreter (here it lives under /root, mode 0700), the child starts as root,
# imports everything it needs, then drops to nobody before touching the cache.
_P2_IS_ROOT = os.geteuid() == 0
if not _P2_IS_ROOT:
    _P2_PRIVILEGE_DROP = "none (not root: permission bits removed with chmod)"
elif _p2_nobody_can_run_python():
    _P2_PRIVILEGE_DROP = "subprocess started as nobody (user=65534)"
else:
    _P2_PRIVILEGE_DROP = "in-script setuid(65534) after imports (interpreter unreachable by nobody)"


@dataclasses.dataclass
class _P2World:
    """A collection ``default`` (pdf, notes, lint), a project ``shop`` deploying pdf, a cache."""

    root: Path
    settings: Settings
    collection: CollectionBuilder
    project: ProjectBuilder

    @property
    def cache_dir(self) -> Path:
        return Path(self.settings.cache_dir)

    def cli_env(self) -> dict[str, Optional[str]]:
        """Environment for a CLI run that finds this world's roots and no user config."""
        return {
            "PROJCACHE_COLLECTIONS": str(self.root / "collections"),
            "PROJCACHE_PROJECT_ROOTS": str(self.root / "projects"),
            "PROJCACHE_CONFIG": None,
            "PROJCACHE_AUTO_REPAIR": None,
            "XDG_CONFIG_HOME": str(self.root / "no-config"),
        }


@dataclasses.dataclass
class _P2Seeded:
    """A closed cache written through the facade: three artifacts, one project, one deployment."""

    settings: Settings
    pid: str

    @property
    def cache_dir(self) -> Path:
        return Path(self.settings.cache_dir)


def _p2_open_raw(cache_dir: Path) -> tuple[lmdb.Environment, dict[str, Any]]:
    env = lmdb.open(str(cache_dir), max_dbs=32)
    with env.begin(write=True) as txn:
        dbs = {
            name: env.open_db(name.encode(), txn=txn, dupsort=dup)
            for name, dup in DATABASES.items()
        }
    return env, dbs


def _p2_tamper(cache_dir: Path, fn: Callable[[Any, dict[str, Any]], None]) -> None:
    """Run ``fn(txn, dbs)`` in one raw py-lmdb write transaction on a closed cache."""
    env, dbs = _p2_open_raw(cache_dir)
    try:
        with env.begin(write=True) as txn:
            fn(txn, dbs)
    finally:
        env.close()


def _p2_rows(cache_dir: Path, db: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of one sub-database, read with raw py-lmdb."""
    env = lmdb.open(str(cache_dir), max_dbs=32, readonly=True, lock=False)
    try:
        handle = env.open_db(db.encode(), create=False, dupsort=DATABASES[db])
        with env.begin() as txn:
            return [(bytes(k), bytes(v)) for k, v in txn.cursor(handle)]
    finally:
        env.close()


def _p2_flip_last_byte(txn: Any, db: Any, key: bytes) -> None:
    value = bytearray(txn.get(key, db=db))
    value[-1] ^= 0x01
    txn.put(key, bytes(value), db=db)


def _p2_nodes(data: bytes, psize: int, pgno: int) -> list[int]:
    """Offsets (in ``data``) of the nodes of page ``pgno``."""
    page = pgno * psize
    lower = struct.unpack_from("=H", data, page + 12)[0]
    return [
        page + struct.unpack_from("=H", data, page + 16 + 2 * index)[0]
        for index in range((lower - 16) // 2)
    ]


def _p2_db_root_page(data: bytes, name: str) -> tuple[int, int]:
    """``(page size, root page number)`` of sub-database ``name`` (LMDB 0.9 layout, 64-bit).

    Reads the newer meta page, then the main DB's root leaf, whose node for
    ``name`` carries the sub-database's ``MDB_db`` record (root at offset 40).
    """
    psize = struct.unpack_from("=I", data, 40)[0]
    metas = [(struct.unpack_from("=Q", data, base + 144)[0], base) for base in (0, psize)]
    _txnid, meta = max(metas)
    main_root = struct.unpack_from("=Q", data, meta + 128)[0]
    assert struct.unpack_from("=H", data, main_root * psize + 10)[0] & 0x02, "main DB not a leaf"
    for node in _p2_nodes(data, psize, main_root):
        ksize = struct.unpack_from("=H", data, node + 6)[0]
        if data[node + 8 : node + 8 + ksize] == name.encode():
            return psize, struct.unpack_from("=Q", data, node + 8 + ksize + 40)[0]
    raise AssertionError(f"no sub-database {name!r} in the main DB")


def _p2_branch_children(data: bytes, psize: int, pgno: int) -> list[int]:
    """Child page numbers of branch page ``pgno`` (a branch node packs it in lo, hi, flags)."""
    assert struct.unpack_from("=H", data, pgno * psize + 10)[0] & 0x01, "not a branch page"
    children = []
    for node in _p2_nodes(data, psize, pgno):
        lo, hi, flags = struct.unpack_from("=HHH", data, node)
        children.append(lo | hi << 16 | flags << 32)
    return children


def _p2_leaf_keys(data: bytes, psize: int, pgno: int) -> list[bytes]:
    """The keys stored on leaf page ``pgno``."""
    assert struct.unpack_from("=H", data, pgno * psize + 10)[0] & 0x02, "not a leaf page"
    keys = []
    for node in _p2_nodes(data, psize, pgno):
        ksize = struct.unpack_from("=H", data, node + 6)[0]
        keys.append(data[node + 8 : node + 8 + ksize])
    return keys


def _p2_break_page_header(cache_dir: Path, db: str) -> int:
    """Make the root leaf of ``db`` store a wrong page number; return the page's number.

    LMDB reads such a page without complaint, but ``lmdb.verify`` reports it:
    structural damage that leaves the environment openable and every record readable.
    """
    path = cache_dir / "data.mdb"
    psize, pgno = _p2_db_root_page(path.read_bytes(), db)
    with path.open("r+b") as handle:
        handle.seek(pgno * psize + 10)
        assert struct.unpack("=H", handle.read(2))[0] & 0x02, f"{db} root is not a leaf"
        handle.seek(pgno * psize)
        handle.write(struct.pack("=Q", _P2_BAD_PGNO))
    return pgno


def _p2_garbage_over_metas(cache_dir: Path) -> bytes:
    """Overwrite the first 8 KiB of data.mdb (both meta pages); return the garbage."""
    garbage = bytes(range(256)) * 32
    with (cache_dir / "data.mdb").open("r+b") as handle:
        handle.write(garbage)
    return garbage


def _p2_corrupt_dirs(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.parent.glob(f"{cache_dir.name}.corrupt-*"))


def _p2_keys(cache: ProjectCache) -> list[str]:
    return [artifact.key for artifact in cache.list_artifacts()]


def _p2_records(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger]


def _p2_capture(caplog: pytest.LogCaptureFixture) -> None:
    # The CLI's root callback raises these loggers to ERROR; set them back for this test.
    for name in ("projcache.verify", "projcache.recovery", "projcache.cache"):
        caplog.set_level(logging.INFO, logger=name)


def _p2_cli(args: list[str], env: Optional[dict[str, Optional[str]]] = None) -> Any:
    """Invoke the CLI in-process, with no config file and no auto-repair from the environment."""
    isolated: dict[str, Optional[str]] = {
        "PROJCACHE_CONFIG": None,
        "PROJCACHE_AUTO_REPAIR": None,
        "XDG_CONFIG_HOME": os.devnull,
    }
    return _p2_runner.invoke(app, args, env={**isolated, **(env or {})})


def _p2_run(argv: list[str]) -> Any:
    """Run a command with no stdin and the user's config ignored; return the finished process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJCACHE_")}
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**env, "XDG_CONFIG_HOME": os.devnull},
        timeout=120,
        check=False,
    )


def _p2_script(args: list[str], *, env: Optional[dict[str, str]] = None, **kwargs: Any) -> Any:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=120,
        check=False,
        **kwargs,
    )


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def p2_seeded(
    cache_settings: Settings,
    make_artifact: Callable[..., dict[str, Any]],
    make_project: Callable[..., dict[str, Any]],
) -> _P2Seeded:
    """A closed cache of three artifacts, one project and one (current) deployment."""
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts(
            [
                make_artifact("pdf", tags=["docs"], content_hash="h"),
                make_artifact("docx", tags=["docs"]),
                make_artifact("review", type="command"),
            ]
        )
        cache.put_projects([make_project("shop")])
        pid = cache.find_project("shop").id
        cache.put_deployments(
            [{"project_id": pid, "artifact_key": "default/skill/pdf", "content_hash": "h"}]
        )
    return _P2Seeded(settings=cache_settings, pid=pid)


@pytest.fixture
def p2_world(tmp_path: Path, cache_settings: Settings) -> _P2World:
    """A real tree refreshed into a closed cache, plus one artifact that has no source."""
    root = Path(os.path.realpath(tmp_path)) / "tree"
    collection = CollectionBuilder(root / "collections", "default")
    collection.skill(
        "pdf",
        front_matter={"name": "pdf", "description": "Extract quokka text from PDF files."},
        tags=["docs"],
    )
    collection.skill("notes")
    collection.command("lint")
    collection.write()
    project = ProjectBuilder(root / "projects", "shop")
    project.deploy(collection, "skill", "pdf")
    project.write()
    settings = dataclasses.replace(
        cache_settings,
        collection_roots=(str(root / "collections"),),
        project_roots=(str(root / "projects"),),
        durability="none",
    )
    with ProjectCache.open(settings=settings) as cache:
        assert cache.refresh().ok
        cache.put_artifacts([_P2_DIRECT])
    return _P2World(root=root, settings=settings, collection=collection, project=project)


_P2_WORLD_KEYS = ["default/command/lint", "default/skill/notes", "default/skill/pdf"]


def _p2_snapshot(settings: Settings) -> dict[str, Any]:
    """Every artifact, collection, project and deployment of a cache, as plain data."""
    with ProjectCache.open(settings=settings, readonly=True) as cache:
        return {
            "artifacts": {a.key: a.model_dump() for a in cache.list_artifacts()},
            "collections": [
                c.model_dump(exclude={"refreshed_at"}) for c in cache.list_collections()
            ],
            "projects": [p.model_dump(exclude={"refreshed_at"}) for p in cache.list_projects()],
            "deployments": [d.model_dump() for d in cache.list_deployments()],
        }


_P2_DERIVED = [
    "search-tokens",
    "search-pending",
    "artifact-ids",
    "artifact-keys",
    "deployments-by-artifact",
    "deployments-by-state",
]


def _p2_view(cache_dir: Path) -> dict[str, Any]:
    """The derived indexes as plain data that does not depend on which id an artifact got:
    deployment indexes as raw rows, the search index as ``{bitmap name: artifact keys}``."""
    from pyroaring import BitMap

    from projcache.postings import decode_bitmap

    keys = {int.from_bytes(k, "big"): v.decode() for k, v in _p2_rows(cache_dir, "artifact-keys")}
    names: dict[bytes, Any] = {}
    deleted = BitMap()
    for key, value in _p2_rows(cache_dir, "search-tokens"):
        names[key[:-2]] = names.get(key[:-2], BitMap()) | decode_bitmap(value)
    for key, value in _p2_rows(cache_dir, "search-pending"):
        if key == b"\xff\x01deleted":
            deleted = decode_bitmap(value)
        elif not key.startswith(b"\xff"):
            names[key] = names.get(key, BitMap()) | decode_bitmap(value)
    view: dict[str, Any] = {
        db: _p2_rows(cache_dir, db) for db in ("deployments-by-artifact", "deployments-by-state")
    }
    view["search"] = {
        name: sorted(keys[d] for d in ids - deleted) for name, ids in names.items() if ids - deleted
    }
    view["ids"] = sorted(v.decode() for k, v in _p2_rows(cache_dir, "artifact-keys"))
    return view


def _p2_pdf_id(cache_dir: Path) -> int:
    """The integer id of ``default/skill/pdf``."""
    return int.from_bytes(dict(_p2_rows(cache_dir, "artifact-ids"))[b"default/skill/pdf"], "big")


_P2_ORPHAN = encode({"project_id": "f" * 16, "artifact_key": "default/skill/pdf"})
_P2_DEP = b"{pid}\x00default/skill/pdf\x00claude_code"
# case -> ([(operation, db, key, value)], [(db, finding key, finding message)]);
# "{pid}" stands for the seeded project's id.
_P2_INDEX_CASES: dict[str, tuple[list[tuple[str, str, bytes, bytes]], list[tuple[str, str, str]]]]
_P2_INDEX_CASES = {
    "search-tokens-dangling": (
        [("bitmap", "search-pending", b"ghost\x00d", b"{pdf}")],
        [("search-tokens", "ghost (field d)", "dangling id {pdf}")],
    ),
    "search-tokens-missing": (
        [("delete", "search-pending", b"pdf\x00n", b"")],
        [("search-tokens", "pdf (field n)", "missing id {pdf}")],
    ),
    "facet-dangling": (
        [("bitmap", "search-pending", b"\x01tag\x00ghost", b"{pdf}")],
        [("search-tokens", "tag=ghost", "dangling id {pdf}")],
    ),
    "facet-missing": (
        [("delete", "search-pending", b"\x01type\x00command", b"")],
        [("search-tokens", "type=command", "missing id 0")],
    ),
    "artifact-ids-dangling": (
        [("put", "artifact-ids", b"default/skill/ghost", b"\x00\x00\x00\x63")],
        [
            ("artifact-ids", "default/skill/ghost", "id 99 maps back to None"),
            ("artifact-ids", "default/skill/ghost", "id 99 of an unknown artifact"),
        ],
    ),
    "deployments-by-artifact-dangling": (
        [("put", "deployments-by-artifact", b"default/skill/docx", b"{pid}\x00claude_code")],
        [("deployments-by-artifact", "default/skill/docx", "dangling entry -> {pid} claude_code")],
    ),
    "deployments-by-artifact-missing": (
        [("delete", "deployments-by-artifact", b"default/skill/pdf", b"{pid}\x00claude_code")],
        [("deployments-by-artifact", "default/skill/pdf", "missing entry -> {pid} claude_code")],
    ),
    "deployments-by-state-dangling": (
        [("put", "deployments-by-state", b"modified", _P2_DEP)],
        [
            (
                "deployments-by-state",
                "modified",
                "dangling entry -> {pid} default/skill/pdf claude_code",
            )
        ],
    ),
    "deployments-by-state-missing": (
        [("delete", "deployments-by-state", b"current", _P2_DEP)],
        [
            (
                "deployments-by-state",
                "current",
                "missing entry -> {pid} default/skill/pdf claude_code",
            )
        ],
    ),
    "deployment-of-a-missing-project": (
        [("put", "deployments", b"f" * 16 + b"\x00default/skill/pdf\x00claude_code", _P2_ORPHAN)],
        [
            (
                "deployments",
                "f" * 16 + "\x00default/skill/pdf\x00claude_code",
                f"project {'f' * 16} does not exist",
            ),
            (
                "deployments-by-artifact",
                "default/skill/pdf",
                f"missing entry -> {'f' * 16} claude_code",
            ),
            (
                "deployments-by-state",
                "current",
                f"missing entry -> {'f' * 16} default/skill/pdf claude_code",
            ),
        ],
    ),
    "wrong-stored-state": (
        [("state", "deployments", _P2_DEP, b"outdated")],
        [
            (
                "deployments",
                "{pid}\x00default/skill/pdf\x00claude_code",
                "state is outdated, rule says current",
            ),
            (
                "deployments-by-state",
                "current",
                "dangling entry -> {pid} default/skill/pdf claude_code",
            ),
            (
                "deployments-by-state",
                "outdated",
                "missing entry -> {pid} default/skill/pdf claude_code",
            ),
        ],
    ),
}


# -- 1. verify in layers -------------------------------------------------------------------


class TestVerifyLayers:
    """Each layer (file, frame, model, index, source) finds its own kind of damage."""

    def test_file_layer_finds_a_damaged_page_in_a_backup_copy(
        self, p2_seeded: _P2Seeded, tmp_path: Path
    ) -> None:
        """A page storing a wrong number in a backup copy is a file finding; records still read."""
        with ProjectCache.open(settings=p2_seeded.settings) as cache:
            copy = cache.backup(tmp_path / "copy")
        pgno = _p2_break_page_header(copy, "search-pending")
        expected = f"main/search-pending DB: page {pgno} stores mp_pgno {_P2_BAD_PGNO}"
        assert lmdb.verify.verify(str(copy)) == [expected]
        before = (copy / "data.mdb").read_bytes()
        copy_settings = dataclasses.replace(p2_seeded.settings, cache_dir=copy)
        with ProjectCache.open(settings=copy_settings) as damaged:
            report = damaged.verify(deep=True)
            assert [f.model_dump() for f in report.findings] == [
                {
                    "kind": "file",
                    "db": "data.mdb",
                    "key": None,
                    "message": expected,
                    "repairable": True,
                }
            ]
            assert not report.ok and report.repaired == 0
            # Records are not walked in-process once the file layer failed (a wild
            # page can crash the walker); they still read through the normal paths.
            assert "artifacts" not in report.checked
            assert _p2_keys(damaged) == [
                "default/command/review",
                *sorted(["default/skill/docx", "default/skill/pdf"]),
            ]
            assert damaged.search("pdf").total == 1
        # Verify (without repair) changed nothing on disk; the original is untouched.
        assert (copy / "data.mdb").read_bytes() == before
        with ProjectCache.open(settings=p2_seeded.settings) as cache:
            assert cache.verify(deep=True).ok

    @pytest.mark.parametrize(
        ("db", "suffix", "damage", "message"),
        [
            pytest.param(
                "artifacts",
                b"default/skill/pdf",
                "crc",
                "artifacts['default/skill/pdf']: CRC32 mismatch",
                id="artifact-crc",
            ),
            pytest.param(
                "artifacts",
                b"default/skill/pdf",
                "format",
                "artifacts['default/skill/pdf']: unknown frame format byte 0x02",
                id="artifact-format-byte",
            ),
            pytest.param(
                "artifacts",
                b"default/skill/pdf",
                "short",
                "artifacts['default/skill/pdf']: frame too short (3 bytes)",
                id="artifact-short",
            ),
            pytest.param("collections", b"default", "crc", None, id="collection-crc"),
            pytest.param("projects", b"", "crc", None, id="project-crc"),
            pytest.param(
                "deployments",
                b"\x00default/skill/pdf\x00claude_code",
                "crc",
                None,
                id="deployment-crc",
            ),
            pytest.param("sources", b"\x00skills/pdf", "crc", None, id="source-crc"),
        ],
    )
    def test_frame_layer_finds_a_flipped_value_and_repair_rereads_it(
        self, p2_world: _P2World, db: str, suffix: bytes, damage: str, message: Optional[str]
    ) -> None:
        """A value failing its frame check is a frame finding; repair re-reads it from source."""
        key = next(k for k, _v in _p2_rows(p2_world.cache_dir, db) if k.endswith(suffix))
        before = _p2_snapshot(p2_world.settings)

        def corrupt(txn: Any, dbs: dict[str, Any]) -> None:
            value = txn.get(key, db=dbs[db])
            if damage == "crc":
                _p2_flip_last_byte(txn, dbs[db], key)
            elif damage == "format":
                txn.put(key, b"\x02" + value[1:], db=dbs[db])
            else:
                txn.put(key, value[:3], db=dbs[db])

        _p2_tamper(p2_world.cache_dir, corrupt)
        with ProjectCache.open(settings=p2_world.settings) as cache:
            report = cache.verify(deep=True)
            expected = [
                ("frame", db, key.decode(), message or f"{db}[{key.decode()!r}]: CRC32 mismatch")
            ]
            if db == "projects":  # its deployment now points at a project that does not read
                pid = key.decode()
                expected.append(
                    (
                        "index",
                        "deployments",
                        f"{pid}\x00default/skill/pdf\x00claude_code",
                        f"project {pid} does not exist",
                    )
                )
            assert [(f.kind, f.db, f.key, f.message) for f in report.findings] == expected
            repaired = cache.verify(repair=True)
            assert repaired.ok and repaired.repaired == len(expected)
            assert cache.verify(deep=True).ok
        assert _p2_snapshot(p2_world.settings) == before

    @pytest.mark.parametrize(
        ("db", "key", "payload", "message"),
        [
            pytest.param(
                "artifacts",
                b"default/skill/pdf",
                b'{"name": 3}',
                "invalid Artifact: field 'name': Input should be a valid string",
                id="artifact-bad-fields",
            ),
            pytest.param(
                "artifacts",
                b"default/skill/pdf",
                b'{"name": "lint", "type": "command", "collection": "default"}',
                "invalid Artifact: record key 'default/command/lint' differs from its key",
                id="artifact-under-another-key",
            ),
            pytest.param(
                "collections",
                b"default",
                b"not json at all",
                "invalid Collection: Invalid JSON: expected ident at line 1 column 2",
                id="collection-not-json",
            ),
        ],
    )
    def test_model_layer_finds_a_valid_frame_holding_an_invalid_record(
        self, p2_world: _P2World, db: str, key: bytes, payload: bytes, message: str
    ) -> None:
        """A well-framed value that does not validate is a model finding; repair re-reads it."""
        before = _p2_snapshot(p2_world.settings)
        _p2_tamper(p2_world.cache_dir, lambda txn, dbs: txn.put(key, frame(payload), db=dbs[db]))
        with ProjectCache.open(settings=p2_world.settings) as cache:
            report = cache.verify(deep=True)
            assert [(f.kind, f.db, f.key, f.message, f.repairable) for f in report.findings] == [
                ("model", db, key.decode(), message, True)
            ]
            assert cache.verify(repair=True).ok
            assert cache.verify(deep=True).ok
        assert _p2_snapshot(p2_world.settings) == before

    @pytest.mark.parametrize("case", list(_P2_INDEX_CASES))
    def test_index_layer_finds_dangling_and_missing_entries(
        self, p2_seeded: _P2Seeded, case: str
    ) -> None:
        """Each derived index and deployment check reports its damage exactly; repair fixes it."""
        from pyroaring import BitMap

        from projcache.postings import encode_bitmap

        operations, expected = _P2_INDEX_CASES[case]
        pid = p2_seeded.pid
        pdf = _p2_pdf_id(p2_seeded.cache_dir)
        intact = _p2_view(p2_seeded.cache_dir)

        def damage(txn: Any, dbs: dict[str, Any]) -> None:
            for operation, db, raw_key, raw_value in operations:
                key, value = (
                    b.replace(b"{pid}", pid.encode()).replace(b"{pdf}", str(pdf).encode())
                    for b in (raw_key, raw_value)
                )
                if operation == "bitmap":
                    txn.put(key, encode_bitmap(BitMap([int(value)])), db=dbs[db])
                elif operation == "put":
                    txn.put(key, value, db=dbs[db])
                elif operation == "delete":
                    assert txn.delete(key, value, db=dbs[db])
                else:  # "state": rewrite the record's state, keeping a valid frame
                    old = unframe(txn.get(key, db=dbs[db]))
                    txn.put(key, frame(old.replace(b'"current"', b'"' + value + b'"')), db=dbs[db])

        _p2_tamper(p2_seeded.cache_dir, damage)
        with ProjectCache.open(settings=p2_seeded.settings) as cache:
            report = cache.verify(deep=True)
            found = sorted((f.kind, f.db, f.key, f.message) for f in report.findings)
            assert found == sorted(
                ("index", db, key.format(pid=pid), message.format(pid=pid, pdf=pdf))
                for db, key, message in expected
            )
            repaired = cache.verify(repair=True)
            assert repaired.ok and repaired.repaired == len(expected)
            assert cache.verify(deep=True).findings == []
            assert [(d.project_id, d.state) for d in cache.list_deployments()] == [(pid, "current")]
        assert _p2_view(p2_seeded.cache_dir) == intact

    def test_sources_option_reports_an_edited_source_file(self, p2_world: _P2World) -> None:
        """verify(sources=True) names the edited artifact's folder; plain verify does not look."""
        folder = p2_world.collection.artifact_path("skill", "pdf")
        (folder / "SKILL.md").write_text("---\nname: pdf\ndescription: Edited.\n---\n# pdf\n")
        with ProjectCache.open(settings=p2_world.settings) as cache:
            assert cache.verify(deep=True).ok
            report = cache.verify(sources=True)
            assert [f.model_dump() for f in report.findings] == [
                {
                    "kind": "source",
                    "db": "sources",
                    "key": str(folder),
                    "message": f"{folder} changed on disk since it was read",
                    "repairable": True,
                }
            ]
            assert report.checked["source files"] == report.checked["sources"] > 0
            repaired = cache.verify(repair=True, sources=True)
            assert repaired.ok and repaired.repaired == 1
            assert cache.get_artifact("default/skill/pdf").description == "Edited."
            assert cache.verify(sources=True).ok

    def test_cli_verify_exit_codes_and_json_shape(self, p2_seeded: _P2Seeded) -> None:
        """`verify` exits 0 clean and 1 with findings; --json carries the whole report."""
        where = ["--cache-dir", str(p2_seeded.cache_dir)]
        clean = _p2_cli([*where, "verify", "--deep"])
        assert clean.exit_code == 0, clean.output
        assert clean.stdout.splitlines() == [
            "checked: artifact-ids 3, artifact-keys 3, artifacts 3, collections 0, "
            "deployments 1, deployments-by-artifact 1, deployments-by-state 1, projects 1, "
            "search-tokens 17, sources 0",
            "ok",
        ]
        assert clean.stderr == ""
        _p2_tamper(
            p2_seeded.cache_dir,
            lambda txn, dbs: _p2_flip_last_byte(txn, dbs["artifacts"], b"default/skill/docx"),
        )
        found = _p2_cli([*where, "verify", "--deep", "--json"])
        assert found.exit_code == 1, found.output
        data = json.loads(found.stdout)
        assert sorted(data) == [
            "checked",
            "findings",
            "lost",
            "lost_complete",
            "moved_to",
            "ok",
            "problems",
            "repaired",
            "salvaged",
        ]
        assert data["ok"] is False and data["repaired"] == 0 and data["moved_to"] is None
        assert data["checked"]["artifacts"] == 3
        assert data["findings"] == [
            {
                "kind": "frame",
                "db": "artifacts",
                "key": "default/skill/docx",
                "message": "artifacts['default/skill/docx']: CRC32 mismatch",
                "repairable": True,
            }
        ]
        assert found.stderr == ""

    def test_cli_verify_sources_lists_the_changed_file(self, p2_world: _P2World) -> None:
        """`verify --sources` prints a source finding for an edited file and exits 1."""
        lint = p2_world.collection.main_file("command", "lint")
        lint.write_text(lint.read_text() + "\nOne more line.\n")
        where = ["--cache-dir", str(p2_world.cache_dir)]
        assert _p2_cli([*where, "verify"], env=p2_world.cli_env()).exit_code == 0
        result = _p2_cli([*where, "verify", "--sources"], env=p2_world.cli_env())
        assert result.exit_code == 1, result.output
        lines = result.stdout.splitlines()
        assert lines[1:] == [
            f"source: sources {lint}: {lint} changed on disk since it was read",
            "1 problem(s) found",
        ]
        assert "source files 8" in lines[0]
        assert result.stderr == ""


# -- 2. repair -------------------------------------------------------------------------------


class TestRepair:
    """Repair rebuilds what is derived, re-reads what has a source, keeps what still reads."""

    def test_repair_rebuilds_every_derived_index_from_the_records(
        self, p2_seeded: _P2Seeded
    ) -> None:
        """With every derived index emptied, repair restores what they say."""
        derived = _P2_DERIVED
        intact = _p2_view(p2_seeded.cache_dir)

        def empty(txn: Any, dbs: dict[str, Any]) -> None:
            for db in derived:
                txn.drop(dbs[db], delete=False)

        _p2_tamper(p2_seeded.cache_dir, empty)
        with ProjectCache.open(settings=p2_seeded.settings) as cache:
            assert cache.search("pdf").total == 0
            report = cache.verify(deep=True)
            # Every artifact lacks its id; every deployment index entry is missing.
            missing = len(intact["ids"]) + sum(
                len(intact[db]) for db in ("deployments-by-artifact", "deployments-by-state")
            )
            assert len(report.findings) == missing
            assert {f.kind for f in report.findings} == {"index"}
            assert {f.db for f in report.findings} == {
                "artifact-ids",
                "deployments-by-artifact",
                "deployments-by-state",
            }
            assert cache.verify(repair=True).repaired == missing
            assert cache.search("pdf").total == 1
        assert _p2_view(p2_seeded.cache_dir) == intact

    def test_repair_drops_bad_records_and_rereads_them_from_source(
        self, p2_world: _P2World, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A frame-broken and a model-broken artifact come back from source, content intact."""
        _p2_capture(caplog)
        before = _p2_snapshot(p2_world.settings)

        def damage(txn: Any, dbs: dict[str, Any]) -> None:
            _p2_flip_last_byte(txn, dbs["artifacts"], b"default/skill/pdf")
            txn.put(b"default/skill/notes", frame(b'{"name": "notes"}'), db=dbs["artifacts"])

        _p2_tamper(p2_world.cache_dir, damage)
        with ProjectCache.open(settings=p2_world.settings) as cache:
            report = cache.verify(repair=True)
            assert [(f.kind, f.key) for f in report.findings] == [
                ("model", "default/skill/notes"),
                ("frame", "default/skill/pdf"),
            ]
            assert report.ok and report.repaired == 2
            pdf = cache.get_artifact("default/skill/pdf")
            assert pdf is not None and pdf.description == "Extract quokka text from PDF files."
            assert cache.search("quokka").total == 1
            assert [d.state for d in cache.list_deployments()] == ["current"]
            assert cache.verify(deep=True).ok
        assert _p2_snapshot(p2_world.settings) == before
        assert (
            logging.WARNING,
            "verify: frame artifacts default/skill/pdf: "
            "artifacts['default/skill/pdf']: CRC32 mismatch",
        ) in _p2_records(caplog, "projcache.verify")
        assert not _p2_corrupt_dirs(p2_world.cache_dir)  # repaired in place, nothing moved

    def test_a_bad_record_without_source_is_dropped_and_reported(self, p2_world: _P2World) -> None:
        """A record with no source cannot come back; the finding names it (never silent)."""
        _p2_tamper(
            p2_world.cache_dir,
            lambda txn, dbs: _p2_flip_last_byte(txn, dbs["artifacts"], _P2_DIRECT_KEY.encode()),
        )
        with ProjectCache.open(settings=p2_world.settings) as cache:
            report = cache.verify(repair=True)
            assert [(f.kind, f.db, f.key) for f in report.findings] == [
                ("frame", "artifacts", _P2_DIRECT_KEY)
            ]
            assert cache.get_artifact(_P2_DIRECT_KEY) is None
            assert _p2_keys(cache) == _P2_WORLD_KEYS

    def test_file_damage_moves_the_cache_aside_and_carries_every_record_over(
        self, p2_world: _P2World, caplog: pytest.LogCaptureFixture
    ) -> None:
        """verify(repair=True) on a file finding: damaged files kept, all records salvaged."""
        _p2_capture(caplog)
        before = _p2_snapshot(p2_world.settings)
        counts = {db: len(_p2_rows(p2_world.cache_dir, db)) for db in recovery_module.RECORD_DBS}
        pgno = _p2_break_page_header(p2_world.cache_dir, "artifact-keys")
        damaged_bytes = (p2_world.cache_dir / "data.mdb").read_bytes()
        with ProjectCache.open(settings=p2_world.settings) as cache:
            report = cache.verify(repair=True)
            assert [(f.kind, f.message) for f in report.findings] == [
                ("file", f"main/artifact-keys DB: page {pgno} stores mp_pgno {_P2_BAD_PGNO}")
            ]
            assert report.ok and report.repaired == 1
            moved = Path(report.moved_to or "")
            assert moved.parent == p2_world.cache_dir.parent
            assert _P2_CORRUPT_NAME.match(moved.name), moved.name
            assert (moved / "data.mdb").read_bytes() == damaged_bytes  # kept as it was
            assert report.salvaged == counts
            assert report.lost == dict.fromkeys(counts, 0)
            # The same handle now works on the rebuilt environment.
            assert cache.get_artifact(_P2_DIRECT_KEY) is not None
            assert cache.verify(deep=True).ok
        assert lmdb.verify.verify(str(p2_world.cache_dir)) == []
        assert _p2_snapshot(p2_world.settings) == before
        kept = sum(counts.values())
        assert _p2_records(caplog, "projcache.recovery") == [
            (logging.WARNING, f"moved the damaged cache {p2_world.cache_dir} aside to {moved}"),
            (
                logging.WARNING,
                f"recovered {p2_world.cache_dir}: moved the damaged cache to {moved}; "
                f"carried over {kept} record(s), lost 0",
            ),
        ]

    def test_partial_damage_keeps_every_record_that_still_reads(
        self, cache_settings: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Records with no source survive a rebuild, except the one whose frame broke: lost 1."""
        _p2_capture(caplog)
        records = [
            {"name": f"rec{i}", "type": "skill", "collection": "direct", "tags": [f"t{i % 3}"]}
            for i in range(12)
        ]
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.put_artifacts(records)
            expected = {a.key: a for a in cache.list_artifacts()}
        victim = b"direct/skill/rec7"
        _p2_tamper(
            cache_settings.cache_dir,
            lambda txn, dbs: _p2_flip_last_byte(txn, dbs["artifacts"], victim),
        )
        _p2_break_page_header(cache_settings.cache_dir, "artifact-ids")
        with ProjectCache.open(settings=cache_settings) as cache:
            report = cache.verify(repair=True)
            # The file layer fails first, so records are left to the salvage child,
            # which finds the broken frame and counts that record as lost.
            assert sorted(f.kind for f in report.findings) == ["file"]
            assert report.salvaged["artifacts"] == 11
            assert report.lost == {
                "collections": 0,
                "projects": 0,
                "artifacts": 1,
                "deployments": 0,
                "sources": 0,
            }
            survivors = {a.key: a for a in cache.list_artifacts()}
            del expected[victim.decode()]
            assert survivors == expected
            assert cache.search("rec3").total == 1
            assert cache.verify(deep=True).ok
        # The lost record is still in the files kept aside (nothing discarded silently).
        moved = Path(report.moved_to or "")
        assert victim in dict(_p2_rows(moved, "artifacts"))
        assert (
            logging.WARNING,
            f"recovery lost 1 artifacts record(s) of {cache_settings.cache_dir}",
        ) in _p2_records(caplog, "projcache.recovery")

    def test_a_destroyed_leaf_loses_only_its_records_and_says_so(
        self, cache_settings: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A destroyed artifacts leaf: other leaves' records survive, its own are reported lost."""
        _p2_capture(caplog)
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.put_artifacts(
                [
                    {
                        "name": f"rec{i:02d}",
                        "type": "skill",
                        "collection": "direct",
                        # random letters: deflated frames must still fill several leaves
                        "description": f"record {i} "
                        + "".join(random.Random(i).choices(string.ascii_letters, k=300)),
                    }
                    for i in range(60)
                ]
            )
            expected = {a.key: a for a in cache.list_artifacts()}
        path = cache_settings.cache_dir / "data.mdb"
        data = path.read_bytes()
        psize, root = _p2_db_root_page(data, "artifacts")
        leaves = _p2_branch_children(data, psize, root)
        assert len(leaves) >= 3, "the artifacts need a branch root over several leaves"
        doomed = _p2_leaf_keys(data, psize, leaves[-1])
        with path.open("r+b") as handle:
            handle.seek(leaves[-1] * psize)
            handle.write(bytes(range(256)) * (psize // 256))
        damaged = path.read_bytes()
        with ProjectCache.open(settings=cache_settings) as cache:
            report = cache.verify(repair=True)
            assert report.findings
            assert {(f.kind, f.db) for f in report.findings} == {("file", "data.mdb")}
            # Records were lost: never "ok" (issue 12 item 9), though every finding was repaired.
            assert not report.ok and report.moved_to is not None
            assert report.repaired == len(report.findings)
            assert report.salvaged["artifacts"] == 60 - len(doomed)
            assert report.lost["artifacts"] == len(doomed)
            for key in doomed:
                del expected[key.decode()]
            assert {a.key: a for a in cache.list_artifacts()} == expected
            assert cache.verify(deep=True).ok
        assert (Path(report.moved_to) / "data.mdb").read_bytes() == damaged
        assert (
            logging.WARNING,
            f"recovery lost {len(doomed)} artifacts record(s) of {cache_settings.cache_dir}",
        ) in _p2_records(caplog, "projcache.recovery")

    def test_verify_of_a_page_with_wild_offsets_reports_instead_of_crashing(
        self, cache_settings: Settings
    ) -> None:
        """Node offsets pointing off the page: `verify` reports it and `--repair` rebuilds.

        Run in child processes: reading such a page through liblmdb can kill the reader.
        """
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.put_artifacts(
                [{"name": f"rec{i}", "type": "skill", "collection": "direct"} for i in range(5)]
            )
        path = cache_settings.cache_dir / "data.mdb"
        psize, pgno = _p2_db_root_page(path.read_bytes(), "artifacts")
        with path.open("r+b") as handle:
            handle.seek(pgno * psize + 16)  # the node offsets, right after the page header
            handle.write(b"\xff\x7f" * 5)
        problems = lmdb.verify.verify(str(cache_settings.cache_dir))
        assert problems[0] == f"main/artifacts DB: leaf page {pgno} node 0 header out of bounds"
        script = str(Path(sys.executable).parent / "projcache")
        where = [script, "--cache-dir", str(cache_settings.cache_dir)]
        found = _p2_run([*where, "verify", "--deep"])
        assert found.returncode == 1, (found.returncode, found.stderr[-2000:])
        assert f"file: data.mdb: {problems[0]}" in found.stdout.splitlines()
        repaired = _p2_run([*where, "verify", "--repair"])
        # Five records were in the damaged file and none came back: not "ok", exit 1.
        assert repaired.returncode == 1, (repaired.returncode, repaired.stderr[-2000:])
        (moved,) = _p2_corrupt_dirs(cache_settings.cache_dir)
        assert f"damaged files kept in {moved}" in repaired.stdout.splitlines()
        assert "carried over 0 record(s), lost 5" in repaired.stdout.splitlines()
        assert "ok" not in repaired.stdout.splitlines()
        with ProjectCache.open(settings=cache_settings) as cache:
            assert cache.verify(deep=True).ok

    def test_cli_verify_repair_rebuilds_an_unopenable_cache(self, p2_world: _P2World) -> None:
        """Garbage over the meta pages: `verify --repair` keeps the files, rebuilds from source."""
        garbage = _p2_garbage_over_metas(p2_world.cache_dir)
        where = ["--cache-dir", str(p2_world.cache_dir)]
        result = _p2_cli([*where, "verify", "--repair", "--json"], env=p2_world.cli_env())
        # Nothing of the file could be read, so what was lost is unknown: never "ok".
        assert result.exit_code == 1, result.output
        data = json.loads(result.stdout)
        (moved,) = _p2_corrupt_dirs(p2_world.cache_dir)
        assert data["ok"] is False and data["repaired"] == 1
        assert data["lost_complete"] is False
        assert data["moved_to"] == str(moved)
        assert (moved / "data.mdb").read_bytes()[: len(garbage)] == garbage
        (finding,) = data["findings"]
        assert finding["kind"] == "file" and finding["db"] == "data.mdb"
        assert finding["message"].startswith(
            f"the environment could not be opened; moved the damaged cache to {moved}; "
            "carried over 0 record(s), "
        )
        assert "(salvage failed: InvalidError: " in finding["message"]
        assert data["salvaged"] == dict.fromkeys(recovery_module.RECORD_DBS, 0)
        with ProjectCache.open(settings=p2_world.settings) as cache:
            # Everything with a source is back; the record without one is gone.
            assert _p2_keys(cache) == _P2_WORLD_KEYS
            assert [d.state for d in cache.list_deployments()] == ["current"]
            assert cache.verify(deep=True).ok

    def test_move_aside_never_reuses_a_name(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two rebuilds within one second keep both damaged copies (a numeric suffix)."""

        class _FrozenClock:
            @staticmethod
            def gmtime() -> Any:
                return None

            @staticmethod
            def strftime(fmt: str, when: Any = None) -> str:
                return "20260101T000000Z"

        monkeypatch.setattr(recovery_module, "time", _FrozenClock)
        cache_dir = tmp_path / "cache"
        moved = []
        for round_ in range(3):
            cache_dir.mkdir()
            (cache_dir / "data.mdb").write_text(f"round {round_}")
            moved.append(recovery_module.move_aside(cache_dir))
        assert [p.name for p in moved] == [
            "cache.corrupt-20260101T000000Z",
            "cache.corrupt-20260101T000000Z-2",
            "cache.corrupt-20260101T000000Z-3",
        ]
        assert [(p / "data.mdb").read_text() for p in moved] == ["round 0", "round 1", "round 2"]


# -- 3. opening a damaged cache ------------------------------------------------------------


class TestOpeningDamaged:
    """Opening never hands out a damaged cache silently; auto_repair rebuilds it."""

    def test_opening_an_unopenable_cache_raises_with_the_repair_hint(
        self, p2_world: _P2World
    ) -> None:
        """Garbage over both meta pages: CacheCorruptError naming the dir, nothing moved."""
        _p2_garbage_over_metas(p2_world.cache_dir)
        damaged = (p2_world.cache_dir / "data.mdb").read_bytes()
        for readonly in (False, True):
            with pytest.raises(CacheCorruptError) as info:
                ProjectCache.open(settings=p2_world.settings, readonly=readonly)
            assert str(info.value).startswith(
                f"the cache in {p2_world.cache_dir} is damaged: "
                "the files are not a valid LMDB environment"
            )
            assert info.value.hint == _P2_REPAIR_HINT
            assert info.value.exit_code == 7
        assert not _p2_corrupt_dirs(p2_world.cache_dir)
        assert (p2_world.cache_dir / "data.mdb").read_bytes() == damaged

    def test_auto_repair_rebuilds_and_goes_on(
        self, p2_world: _P2World, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With auto_repair the open moves the damage aside, rebuilds from source and works."""
        _p2_capture(caplog)
        _p2_garbage_over_metas(p2_world.cache_dir)
        settings = dataclasses.replace(p2_world.settings, auto_repair=True)
        with ProjectCache.open(settings=settings) as cache:
            assert _p2_keys(cache) == _P2_WORLD_KEYS
            assert cache.search("quokka").total == 1
            assert cache.verify(deep=True).ok
        (moved,) = _p2_corrupt_dirs(p2_world.cache_dir)
        assert (moved / "data.mdb").is_file()
        (opened,) = _p2_records(caplog, "projcache.cache")
        assert opened[1].startswith(
            f"the cache in {p2_world.cache_dir} is damaged (the files are not a valid LMDB "
        )
        assert opened[1].endswith("); repairing it")
        recovered = _p2_records(caplog, "projcache.recovery")
        assert recovered[0] == (
            logging.WARNING,
            f"moved the damaged cache {p2_world.cache_dir} aside to {moved}",
        )
        assert "salvage failed: InvalidError" in recovered[-1][1]

    def test_auto_repair_never_moves_files_for_a_readonly_open(self, p2_world: _P2World) -> None:
        """A read-only open with auto_repair still raises and leaves the files where they are."""
        _p2_garbage_over_metas(p2_world.cache_dir)
        settings = dataclasses.replace(p2_world.settings, auto_repair=True)
        with pytest.raises(CacheCorruptError):
            ProjectCache.open(settings=settings, readonly=True)
        assert not _p2_corrupt_dirs(p2_world.cache_dir)

    def test_projcache_auto_repair_variable_turns_auto_repair_on(
        self, p2_world: _P2World, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """PROJCACHE_AUTO_REPAIR=true (the hint's advice) makes a plain open repair the cache."""
        env = {"PROJCACHE_AUTO_REPAIR": "true", "HOME": str(p2_world.root)}
        assert load_settings(env=env).auto_repair is True
        _p2_garbage_over_metas(p2_world.cache_dir)
        for name, value in p2_world.cli_env().items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("PROJCACHE_AUTO_REPAIR", "true")
        with ProjectCache.open(p2_world.cache_dir) as cache:
            assert _p2_keys(cache) == _P2_WORLD_KEYS

    def test_a_broken_record_raises_on_every_read_path(self, p2_world: _P2World) -> None:
        """A record failing its frame raises CorruptRecordError; garbage is never returned."""

        def damage(txn: Any, dbs: dict[str, Any]) -> None:
            _p2_flip_last_byte(txn, dbs["artifacts"], b"default/skill/pdf")
            _p2_flip_last_byte(txn, dbs["projects"], p2_world.project.id.encode())

        _p2_tamper(p2_world.cache_dir, damage)
        with ProjectCache.open(settings=p2_world.settings, readonly=True) as cache:
            with pytest.raises(CorruptRecordError) as info:
                cache.get_artifact("default/skill/pdf")
            assert str(info.value) == "artifacts['default/skill/pdf']: CRC32 mismatch"
            assert info.value.hint == "Run `projcache verify --repair`."
            assert info.value.exit_code == 7
            reads: list[Callable[[], Any]] = [
                lambda: cache.get_artifact_json("default/skill/pdf"),
                lambda: list(cache.list_artifacts()),
                lambda: list(cache.list_artifacts(tag="docs")),
                lambda: cache.search("quokka"),
                lambda: cache.get_project(p2_world.project.id),
                lambda: cache.list_projects(),
            ]
            for read in reads:
                with pytest.raises(CorruptRecordError, match="CRC32 mismatch"):
                    read()
            # Records around the broken ones still read.
            assert cache.get_artifact("default/skill/notes") is not None
            assert cache.search("notes").total == 1


# -- 4. permissions ---------------------------------------------------------------------------

_P2_PERM_SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys
    from pathlib import Path

    import projcache.cache, projcache.direct, projcache.recovery, projcache.refresh
    import projcache.stats, projcache.verify, projcache.quickverify, projcache.roots
    import projcache.cachedir, projcache.streams, projcache.mutations, projcache.search
    import projcache.salvage, projcache.migrate_profiles
    import projcache_cli.root
    from projcache import ProjectCache, models
    from projcache.config import Settings
    from projcache.errors import ProjcacheError

    drop, mode, cache_dir = sys.argv[1] == "drop", sys.argv[2], Path(sys.argv[3])
    # Warm up what is imported or compiled lazily while the interpreter is still
    # reachable (a venv under a 0700 folder is not, once we are nobody): a whole
    # open/write/read cycle on a scratch cache, and the CLI's click commands.
    import tempfile
    import typer.main

    # Words long enough to be stemmed: the stemmer (PyStemmer) is imported on first use.
    warm = {"name": "warming-records", "type": "skill", "collection": "w",
            "description": "stemming searches"}
    models.Artifact.model_validate(warm).model_dump_json()
    with tempfile.TemporaryDirectory() as scratch:
        with ProjectCache.open(scratch) as warm_cache:
            warm_cache.put_artifacts([warm])
            warm_cache.search("warming searches")
            list(warm_cache.list_artifacts())
            warm_cache.stats()
        import contextlib, io

        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            projcache_cli.root.app(
                ["--cache-dir", scratch, "show"], prog_name="projcache", standalone_mode=False
            )
    typer.main.get_command(projcache_cli.root.app)
    if drop:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    if mode == "cli":
        projcache_cli.root.app(sys.argv[4:], prog_name="projcache")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append([record.name, record.levelname, record.getMessage()])

    logging.getLogger("projcache").addHandler(Keep())
    logging.getLogger("projcache").setLevel(logging.INFO)
    out = {"uid": os.geteuid(), "ops": {}, "logs": records}

    def attempt(name, fn):
        try:
            value = fn()
        except ProjcacheError as exc:
            out["ops"][name] = {"error": type(exc).__name__, "message": str(exc),
                                "hint": exc.hint, "exit_code": exc.exit_code}
        except Exception as exc:
            out["ops"][name] = {"error": type(exc).__name__, "message": str(exc),
                                "hint": None, "exit_code": None}
        else:
            out["ops"][name] = {"value": value}

    settings = Settings(cache_dir=cache_dir, map_size=256 * 1024)
    if mode == "create":
        attempt("open", lambda: ProjectCache.open(settings=settings).close())
    else:
        try:
            cache = ProjectCache.open(settings=settings)
        except ProjcacheError as exc:
            out["open"] = {"error": type(exc).__name__, "message": str(exc), "hint": exc.hint}
        else:
            out["open"] = {"readonly": cache.readonly}
            attempt("list", lambda: [a.key for a in cache.list_artifacts()])
            attempt("get", lambda: cache.get_artifact("default/skill/pdf").name)
            attempt("search", lambda: cache.search("pdf").total)
            attempt("verify", lambda: cache.verify(deep=True).ok)
            attempt("put", lambda: cache.put_artifacts(
                [{"name": "new", "type": "skill", "collection": "default"}]))
            attempt("delete", lambda: cache.delete_artifact("default/skill/pdf"))
            attempt("invalidate", lambda: cache.invalidate())
            attempt("clear", lambda: cache.clear())
            attempt("refresh", lambda: cache.refresh(collections=[sys.argv[4]]).ok)
            attempt("repair", lambda: cache.verify(repair=True).ok)
            cache.close()
    print(json.dumps(out))
    """
)


@dataclasses.dataclass
class _P2Shared:
    """A cache owned by root (or locked down with chmod) under a world-traversable folder."""

    base: Path
    cache_dir: Path
    collection: Path

    @property
    def tmp(self) -> Path:
        """A temp folder anyone may write (mode 1777, like /tmp), inside ``base``."""
        return self.base / "tmp"

    def run(self, mode: str, *args: str) -> Any:
        """Run the permission script as the unprivileged user; return the finished process."""
        drop = _P2_IS_ROOT and not _P2_PRIVILEGE_DROP.startswith("subprocess")
        kwargs: dict[str, Any] = {}
        if _P2_IS_ROOT and not drop:
            kwargs = {"user": 65534, "group": 65534, "extra_groups": []}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base),
            "XDG_CONFIG_HOME": str(self.base / "no-config"),
            # The child's own temp folder (verify snapshots through it): the system's /tmp
            # need not be writable by the unprivileged user the child runs as.
            "TMPDIR": str(self.tmp),
        }
        argv = ["-c", _P2_PERM_SCRIPT, "drop" if drop else "keep", mode, *args]
        return _p2_script(argv, env=env, cwd=str(self.base), **kwargs)

    def lib(self, mode: str = "lib", cache_dir: Optional[Path] = None) -> dict[str, Any]:
        done = self.run(mode, str(cache_dir or self.cache_dir), str(self.collection))
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        assert result["uid"] == (65534 if _P2_IS_ROOT else os.geteuid()), _P2_PRIVILEGE_DROP
        return result


@pytest.fixture
def p2_shared() -> Iterator[_P2Shared]:
    """A seeded cache nobody else may write: root-owned 0755/0644 (or chmod 0555/0444)."""
    base = Path(tempfile.mkdtemp(prefix="projcache-p2-perm-"))
    try:
        base.chmod(0o755)
        collection = CollectionBuilder(base, "extra")
        collection.skill("extra")
        collection.write()
        cache_dir = base / "cache"
        with ProjectCache.open(settings=Settings(cache_dir=cache_dir, map_size=256 * 1024)) as c:
            c.put_artifacts([{"name": "pdf", "type": "skill", "collection": "default"}])
            c.put_projects([{"name": "shop", "path": str(base / "shop")}])
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (base / "tmp").mkdir()
        (base / "tmp").chmod(0o1777)
        if not _P2_IS_ROOT:
            for path in cache_dir.iterdir():
                path.chmod(0o444)
            cache_dir.chmod(0o555)
            base.chmod(0o555)
        yield _P2Shared(base=base, cache_dir=cache_dir, collection=collection.path)
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(0o700 if path.is_dir() else 0o600)
        shutil.rmtree(base)


def _p2_denied(path: Path) -> dict[str, Any]:
    return {
        "error": "CachePermissionError",
        "message": f"cannot write the cache in {path}: permission denied (opened read-only)",
        "hint": "Check the permissions of the cache directory, or choose another one.",
        "exit_code": 8,
    }


def _p2_denied_lines(shared: _P2Shared) -> list[str]:
    """The stderr lines of a CLI write to a cache opened read-only for lack of rights."""
    return [
        f"warning: cannot write {shared.cache_dir}; opened it read-only",
        f"error: cannot write the cache in {shared.cache_dir}: permission denied "
        "(opened read-only)",
        "hint: Check the permissions of the cache directory, or choose another one.",
    ]


class TestPermissions:
    """A cache we may not write still serves reads; every write names the directory."""

    def test_new_cache_directories_are_created_0700(self, tmp_path: Path) -> None:
        """The cache directory is created 0700 and its files 0600, whatever the umask."""
        previous = os.umask(0)
        try:
            cache_dir = tmp_path / "deep" / "er" / "cache"
            with ProjectCache.open(settings=Settings(cache_dir=cache_dir)) as cache:
                backup = cache.backup(tmp_path / "backup")
        finally:
            os.umask(previous)
        assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(backup.stat().st_mode) == 0o700
        for name in ("data.mdb", "lock.mdb"):
            assert stat.S_IMODE((cache_dir / name).stat().st_mode) == 0o600

    def test_a_cache_nobody_else_may_write_opens_for_reads(self, p2_shared: _P2Shared) -> None:
        """Another user's cache (dir 0755, files 0644) opens read-only; writes name the dir."""
        result = p2_shared.lib()
        assert result["open"] == {"readonly": True}, (_P2_PRIVILEGE_DROP, result)
        ops = result["ops"]
        assert ops["list"] == {"value": ["default/skill/pdf"]}
        assert ops["get"] == {"value": "pdf"}
        for write in ("put", "delete", "invalidate", "clear"):
            assert ops[write] == _p2_denied(p2_shared.cache_dir), write

    def test_write_denied_cache_with_a_shared_lock_file(self, p2_shared: _P2Shared) -> None:
        """Data file and dir not writable, lock file shared: reads work, writes name the dir."""
        (p2_shared.cache_dir / "lock.mdb").chmod(0o666)
        result = p2_shared.lib()
        assert result["open"] == {"readonly": True}
        ops = result["ops"]
        assert ops["list"] == {"value": ["default/skill/pdf"]}
        assert ops["search"] == {"value": 1}
        assert ops["verify"] == {"value": True}
        for write in ("put", "delete", "invalidate", "clear"):
            assert ops[write] == _p2_denied(p2_shared.cache_dir), write
        assert [
            "projcache.cache",
            "WARNING",
            f"cannot write {p2_shared.cache_dir}; opened it read-only",
        ] in result["logs"]

    def test_the_child_has_a_temp_folder_it_may_write(self, p2_shared: _P2Shared) -> None:
        """Self-contained: the system's /tmp need not be writable by the unprivileged child.

        verify() snapshots through the temp folder; with /tmp not world-writable, the
        child (run as nobody) failed. It gets TMPDIR, a 1777 folder inside ``base``.
        """
        assert stat.S_IMODE(p2_shared.tmp.stat().st_mode) == 0o1777
        assert p2_shared.lib()["ops"]["verify"] == {"value": True}

    def test_refresh_and_repair_of_a_write_denied_cache_raise_permission_error(
        self, p2_shared: _P2Shared
    ) -> None:
        """refresh() and verify(repair=True) are writes too: CachePermissionError naming the dir."""
        (p2_shared.cache_dir / "lock.mdb").chmod(0o666)
        ops = p2_shared.lib()["ops"]
        assert ops["refresh"] == _p2_denied(p2_shared.cache_dir)
        assert ops["repair"] == _p2_denied(p2_shared.cache_dir)

    def test_cannot_create_a_cache_under_a_folder_we_may_not_write(
        self, p2_shared: _P2Shared
    ) -> None:
        """Creating a cache where we may not write raises CachePermissionError naming it."""
        target = p2_shared.base / "new-cache"
        result = p2_shared.lib("create", target)
        assert result["ops"]["open"] == {
            "error": "CachePermissionError",
            "message": f"cannot create cache directory {target}",
            "hint": "Check the permissions of the cache directory, or choose another one.",
            "exit_code": 8,
        }
        assert not target.exists()


# -- 5. full disk -----------------------------------------------------------------------------

_P2_FILL_SCRIPT = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    from pathlib import Path
    from projcache import ProjectCache
    from projcache.config import Settings
    from projcache.errors import ProjcacheError

    method, cache_dir, filler = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    settings = Settings(cache_dir=cache_dir, map_size=256 * 1024, max_map_size=1 << 30)
    out = {}
    with ProjectCache.open(settings=settings) as cache:
        _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        if method == "rlimit":
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            limit = os.path.getsize(cache_dir / "data.mdb") + 512 * 1024
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        batches, error = 0, None
        while batches < 500 and error is None:
            batch = [{"name": f"a{batches}-{j}", "type": "skill", "collection": "fill",
                      "description": "x" * 2000 + f" unique{batches}x{j}"} for j in range(10)]
            try:
                cache.put_artifacts(batch)
                batches += 1
            except ProjcacheError as exc:
                error = exc
        out["batches"] = batches
        out["error"] = None if error is None else {
            "class": type(error).__name__, "bases": [c.__name__ for c in type(error).__mro__],
            "message": str(error), "hint": error.hint, "exit_code": error.exit_code}
        out["read_back"] = len(list(cache.iter_artifacts_json(collection="fill")))
        out["failed_batch_visible"] = cache.search(f"unique{batches}x0").total
        report = cache.verify(deep=True)
        out["verify_when_full"] = [report.ok, [f.message for f in report.findings]]
        if method == "rlimit":
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        else:
            filler.unlink()
        cache.put_artifacts([{"name": "after", "type": "skill", "collection": "fill"}])
        out["after"] = cache.get_artifact("fill/skill/after") is not None
    print(json.dumps(out))
    """
)


@pytest.fixture
def p2_small_fs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """A 2 MiB tmpfs (unmounted afterwards), else a folder for the RLIMIT_FSIZE simulation.

    Which one ran is printed, kept in ``_P2_FULL_DISK_METHOD`` and recorded as the
    test's ``full_disk_method`` property (shown in JUnit XML reports).
    """
    global _P2_FULL_DISK_METHOD
    mount_point = tmp_path / "small-fs"
    mount_point.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            check=False,
        )
        why = done.stderr.strip()
    except OSError as exc:
        done, why = None, str(exc)
    if done is not None and done.returncode == 0:
        _P2_FULL_DISK_METHOD = "tmpfs"
        print(f"full-disk method: {_P2_FULL_DISK_METHOD}")
        request.node.user_properties.append(("full_disk_method", _P2_FULL_DISK_METHOD))
        try:
            yield "tmpfs", mount_point
        finally:
            if subprocess.run(["umount", str(mount_point)], check=False).returncode:
                subprocess.run(["umount", "-l", str(mount_point)], check=False)
    else:
        _P2_FULL_DISK_METHOD = f"rlimit (mount failed: {why})"
        print(f"full-disk method: {_P2_FULL_DISK_METHOD}")
        request.node.user_properties.append(("full_disk_method", _P2_FULL_DISK_METHOD))
        yield "rlimit", mount_point


def _p2_fill_up(mount_point: Path, leave: int) -> Path:
    """Fill the tmpfs with a filler file until ``leave`` bytes are free; return the filler."""
    filler = mount_point / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    size = filler.stat().st_size
    with filler.open("r+b") as handle:
        handle.truncate(max(0, size - leave))
    return filler


def _p2_run_fill(method: str, mount_point: Path) -> tuple[dict[str, Any], Settings]:
    settings = Settings(cache_dir=mount_point / "cache", map_size=256 * 1024, max_map_size=1 << 30)
    with ProjectCache.open(settings=settings) as cache:
        cache.put_artifacts([{"name": "before", "type": "skill", "collection": "fill"}])
    filler = mount_point / "filler"
    if method == "tmpfs":
        filler = _p2_fill_up(mount_point, 768 * 1024)
    done = _p2_script(["-c", _P2_FILL_SCRIPT, method, str(settings.cache_dir), str(filler)])
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result, settings


def _p2_disk_full_lines(method: str, cache_dir: Path) -> tuple[str, str]:
    """The DiskFullError message and hint: ENOSPC on the tmpfs, EFBIG under RLIMIT_FSIZE."""
    if method == "tmpfs":
        return (
            f"no space left on the device holding the cache ({cache_dir})",
            "Free disk space on the cache's filesystem, or move it with PROJCACHE_DIR.",
        )
    return (
        f"a cache file may not grow any further ({cache_dir}): File too large",
        "Raise the file size limit (`ulimit -f`), or move the cache with PROJCACHE_DIR.",
    )


class TestFullDisk:
    """A full filesystem fails one write cleanly; what was committed stays; freeing space heals."""

    def test_a_full_disk_fails_cleanly_and_keeps_the_last_commit(
        self, p2_small_fs: tuple[str, Path]
    ) -> None:
        """Write until the disk is full: the failing batch is absent, the rest reads, verifies."""
        method, mount_point = p2_small_fs
        result, settings = _p2_run_fill(method, mount_point)
        error = result["error"]
        assert error is not None, f"the disk never filled ({_P2_FULL_DISK_METHOD})"
        assert "StorageError" in error["bases"], error
        assert result["batches"] > 0
        # Every committed batch plus "before" reads back; nothing of the failed batch does.
        assert result["read_back"] == result["batches"] * 10 + 1
        assert result["failed_batch_visible"] == 0
        assert result["verify_when_full"] == [True, []]
        assert result["after"] is True
        with ProjectCache.open(settings=settings, readonly=True) as cache:
            assert len(list(cache.iter_artifacts_json())) == result["batches"] * 10 + 2
            assert cache.verify(deep=True).ok

    def test_a_full_disk_is_a_disk_full_error_with_a_hint(
        self, p2_small_fs: tuple[str, Path]
    ) -> None:
        """The error a full disk raises is DiskFullError: clear message, hint, exit code 6."""
        method, mount_point = p2_small_fs
        result, settings = _p2_run_fill(method, mount_point)
        message, hint = _p2_disk_full_lines(method, settings.cache_dir)
        assert result["error"] == {
            "class": "DiskFullError",
            "bases": result["error"]["bases"],
            "message": message,
            "hint": hint,
            "exit_code": 6,
        }, _P2_FULL_DISK_METHOD

    def test_creating_a_cache_on_a_full_disk_is_a_clean_disk_full_error(
        self, p2_small_fs: tuple[str, Path], tmp_path: Path
    ) -> None:
        """A new cache on a full filesystem: exit 6 with error and hint, no SIGBUS (was 135),
        and no half-made lock.mdb/data.mdb left behind (issue 12 item 8)."""
        method, mount_point = p2_small_fs
        collection = CollectionBuilder(tmp_path / "small", "small")
        collection.skill("s", front_matter={"name": "s", "description": "a skill"})
        collection.write()
        cache_dir = mount_point / "new-cache"
        kwargs: dict[str, Any] = {}
        if method == "tmpfs":
            _p2_fill_up(mount_point, 0)
        else:

            def limited() -> None:
                import resource
                import signal

                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

            kwargs["preexec_fn"] = limited
        script = Path(sys.executable).parent / "projcache"
        done = subprocess.run(
            [str(script), "--cache-dir", str(cache_dir), "refresh", "-c", str(collection.path)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "no-config")},
            check=False,
            **kwargs,
        )
        message, hint = _p2_disk_full_lines(method, cache_dir)
        assert (done.returncode, done.stderr.splitlines()) == (
            6,
            [f"error: {message}", f"hint: {hint}"],
        ), (_P2_FULL_DISK_METHOD, done.stderr)
        assert sorted(p.name for p in cache_dir.iterdir()) == []

    def test_cli_refresh_on_a_full_disk_prints_error_and_hint(
        self, p2_small_fs: tuple[str, Path], tmp_path: Path
    ) -> None:
        """`projcache refresh` on a full disk: exit 6, `error:` and `hint:` lines on stderr."""
        method, mount_point = p2_small_fs
        collection = CollectionBuilder(tmp_path / "big", "big")
        for i in range(40):
            collection.skill(
                f"s{i}", front_matter={"name": f"s{i}", "description": f"{i} " + "y" * 8000}
            )
        collection.write()
        cache_dir = mount_point / "cache"
        with ProjectCache.open(settings=Settings(cache_dir=cache_dir)) as cache:
            cache.put_artifacts([{"name": "before", "type": "skill", "collection": "fill"}])
        kwargs: dict[str, Any] = {}
        if method == "tmpfs":
            _p2_fill_up(mount_point, 64 * 1024)
        else:
            limit = (cache_dir / "data.mdb").stat().st_size + 64 * 1024

            def limited() -> None:
                import resource
                import signal

                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

            kwargs["preexec_fn"] = limited
        script = Path(sys.executable).parent / "projcache"
        done = subprocess.run(
            [str(script), "--cache-dir", str(cache_dir), "refresh", "-c", str(collection.path)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "no-config")},
            check=False,
            **kwargs,
        )
        message, hint = _p2_disk_full_lines(method, cache_dir)
        assert (done.returncode, done.stderr.splitlines()) == (
            6,
            [f"error: {message}", f"hint: {hint}"],
        ), _P2_FULL_DISK_METHOD
        assert done.stdout == ""

    def test_the_map_limit_is_a_cache_full_error(self, cache_settings: Settings) -> None:
        """Reaching max_map_size raises CacheFullError with its hint; the committed data stays."""
        settings = dataclasses.replace(cache_settings, map_size=128 * 1024, max_map_size=512 * 1024)
        with ProjectCache.open(settings=settings) as cache:
            batches = 0
            with pytest.raises(CacheFullError) as info:
                while batches < 200:
                    cache.put_artifacts(
                        [
                            {
                                "name": f"m{batches}-{j}",
                                "type": "skill",
                                "collection": "m",
                                "description": "z" * 1500,
                            }
                            for j in range(10)
                        ]
                    )
                    batches += 1
            assert str(info.value) == (
                f"the cache in {settings.cache_dir} reached its maximum map size of "
                f"{512 * 1024} bytes"
            )
            assert info.value.hint == (
                "Raise PROJCACHE_MAX_MAP_SIZE (or max_map_size in the config file), "
                "or run `projcache clear` and refresh."
            )
            assert info.value.exit_code == 6
            assert isinstance(info.value, StorageError)
            assert len(list(cache.iter_artifacts_json())) == batches * 10
            assert cache.verify(deep=True).ok


# -- 10. messages and logs -------------------------------------------------------------------


class TestMessagesAndLogs:
    """The exact lines a CLI user sees, and the log records the library emits."""

    def test_cli_verify_of_an_unopenable_cache(self, p2_world: _P2World) -> None:
        """`verify` on garbage: exit 7, one `error:` line naming the dir, the repair hint."""
        _p2_garbage_over_metas(p2_world.cache_dir)
        result = _p2_cli(["--cache-dir", str(p2_world.cache_dir), "verify"], p2_world.cli_env())
        assert result.exit_code == 7
        assert result.stdout == ""
        d = p2_world.cache_dir
        assert result.stderr.splitlines() == [
            f"error: the cache in {d} is damaged: the files are not a valid LMDB environment: "
            "MDB_INVALID: File is not an LMDB file",
            f"hint: {_P2_REPAIR_HINT}",
        ]

    def test_cli_verify_of_an_unopenable_cache_named_relatively(
        self, p2_world: _P2World, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relative --cache-dir: the message names the absolute directory, unmangled."""
        _p2_garbage_over_metas(p2_world.cache_dir)
        monkeypatch.chdir(p2_world.cache_dir.parent)
        relative = p2_world.cache_dir.name
        result = _p2_cli(["--cache-dir", relative, "verify"], p2_world.cli_env())
        assert result.exit_code == 7
        d = p2_world.cache_dir.resolve()
        assert result.stderr.splitlines()[0] == (
            f"error: the cache in {d} is damaged: the files are not a valid LMDB environment: "
            "MDB_INVALID: File is not an LMDB file"
        )

    def test_cli_get_of_a_broken_record(self, p2_world: _P2World) -> None:
        """`get` of a record failing its frame: exit 7, the record named, the repair hint."""
        _p2_tamper(
            p2_world.cache_dir,
            lambda txn, dbs: _p2_flip_last_byte(txn, dbs["artifacts"], b"default/skill/pdf"),
        )
        where = ["--cache-dir", str(p2_world.cache_dir)]
        result = _p2_cli([*where, "get", "default/skill/pdf"], p2_world.cli_env())
        assert result.exit_code == 7
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            "error: artifacts['default/skill/pdf']: CRC32 mismatch",
            "hint: Run `projcache verify --repair`.",
        ]

    def test_cli_verify_repair_of_file_damage_prints_what_it_kept(self, p2_world: _P2World) -> None:
        """`verify --repair` after page damage prints the finding, where the files went, counts."""
        pgno = _p2_break_page_header(p2_world.cache_dir, "search-pending")
        kept = sum(len(_p2_rows(p2_world.cache_dir, db)) for db in recovery_module.RECORD_DBS)
        where = ["--cache-dir", str(p2_world.cache_dir)]
        result = _p2_cli([*where, "verify", "--repair"], p2_world.cli_env())
        assert result.exit_code == 0, result.output
        (moved,) = _p2_corrupt_dirs(p2_world.cache_dir)
        lines = result.stdout.splitlines()
        assert lines[0] == "checked: the file only (records are not read from a damaged file)"
        assert lines[1:] == [
            f"file: data.mdb: main/search-pending DB: page {pgno} stores mp_pgno {_P2_BAD_PGNO}",
            "repaired 1 finding(s)",
            f"damaged files kept in {moved}",
            f"carried over {kept} record(s), lost 0",
            "ok",
        ]
        assert result.stderr == ""

    def test_installed_cli_logs_recovery_only_with_debug(self, p2_world: _P2World) -> None:
        """The real script keeps stderr clean on repair; --debug shows the recovery warnings."""
        script = Path(sys.executable).parent / "projcache"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROJCACHE_")}
        env.update({k: v for k, v in p2_world.cli_env().items() if v is not None})
        outputs = []
        for debug in ([], ["--debug"]):
            _p2_garbage_over_metas(p2_world.cache_dir)
            args = [str(script), *debug, "--cache-dir", str(p2_world.cache_dir), "verify"]
            done = subprocess.run(
                [*args, "--repair"],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                env=env,
                check=False,
            )
            # Nothing of the file reads, so what was lost is unknown: exit 1, never "ok".
            assert done.returncode == 1, done.stderr
            outputs.append(done.stderr)
        quiet, loud = outputs
        assert quiet == ""
        moved = _p2_corrupt_dirs(p2_world.cache_dir)[-1]
        assert (
            f"WARNING projcache.recovery: moved the damaged cache {p2_world.cache_dir} "
            f"aside to {moved}"
        ) in loud.splitlines()
        assert any(
            line.startswith(f"WARNING projcache.recovery: recovered {p2_world.cache_dir}: ")
            for line in loud.splitlines()
        )

    def test_verify_logs_each_finding_and_repair_logs_dropped_deployments(
        self, p2_seeded: _P2Seeded, caplog: pytest.LogCaptureFixture
    ) -> None:
        """projcache.verify logs one warning per finding and one per deployment repair drops."""
        from pyroaring import BitMap

        _p2_capture(caplog)
        orphan = deployment_key("f" * 16, "default/skill/pdf")

        def damage(txn: Any, dbs: dict[str, Any]) -> None:
            txn.put(b"ghost\x00d", b"\x02" + BitMap([7]).serialize(), db=dbs["search-pending"])
            record = {"project_id": "f" * 16, "artifact_key": "default/skill/pdf"}
            txn.put(orphan, encode(record), db=dbs["deployments"])

        _p2_tamper(p2_seeded.cache_dir, damage)
        with ProjectCache.open(settings=p2_seeded.settings) as cache:
            report = cache.verify(repair=True)
        # The repair runs before the report is logged, so its warning comes first.
        assert _p2_records(caplog, "projcache.verify") == [
            (
                logging.WARNING,
                "repair dropped deployment ffffffffffffffff\x00default/skill/pdf\x00claude_code "
                "of a missing project",
            ),
            *[
                (logging.WARNING, f"verify: {f.kind} {f.db} {f.key}: {f.message}")
                for f in report.findings
            ],
        ]
        assert isinstance(report, VerifyReport) and report.ok

    def test_cli_invalidate_on_a_write_denied_cache(self, p2_shared: _P2Shared) -> None:
        """As another user, `invalidate` prints the read-only warning, the error and the hint."""
        (p2_shared.cache_dir / "lock.mdb").chmod(0o666)
        where = ["--cache-dir", str(p2_shared.cache_dir)]
        done = p2_shared.run("cli", str(p2_shared.cache_dir), *where, "invalidate")
        assert (done.returncode, done.stderr.splitlines()) == (8, _p2_denied_lines(p2_shared))
        assert done.stdout == ""

    def test_cli_refresh_on_a_write_denied_cache(self, p2_shared: _P2Shared) -> None:
        """As another user, `refresh` says permission denied (not "open read-only"), exit 8."""
        (p2_shared.cache_dir / "lock.mdb").chmod(0o666)
        where = ["--cache-dir", str(p2_shared.cache_dir)]
        done = p2_shared.run(
            "cli", str(p2_shared.cache_dir), *where, "refresh", "-c", str(p2_shared.collection)
        )
        assert (done.returncode, done.stderr.splitlines()) == (8, _p2_denied_lines(p2_shared))


# == repair that never lies (issue 12 item 9) ================================================
#
# A cache filled only from folders named on the command line (`refresh --collection DIR
# --project DIR`, the way the docs show), then one byte of a meta page flipped.  The
# configuration knows none of those folders, so a rebuild "from the configured roots"
# re-reads nothing: 0.1.0 said "ok" with 0 of N artifacts.

_NL_SKILLS = 40


@dataclass
class _NeverLies:
    cache_dir: Path
    collection: CollectionBuilder
    project: ProjectBuilder
    settings: Settings

    def cli(self, *args: str) -> Any:
        """Run the CLI in a child process, with no config and no configured roots."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROJCACHE_")}
        env.update(PROJCACHE_COLLECTIONS="", XDG_CONFIG_HOME=os.devnull)
        return subprocess.run(
            [
                str(Path(sys.executable).parent / "projcache"),
                "--cache-dir",
                str(self.cache_dir),
                *args,
            ],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=env,
            timeout=300,
            check=False,
        )

    def counts(self) -> dict[str, int]:
        with ProjectCache.open(settings=self.settings, readonly=True) as cache:
            return cache.counts()

    def flip_meta(self, which: str, offset: int) -> int:
        """Flip one byte of the ``committed`` or ``older`` meta page; return its page number."""
        data = self.cache_dir / "data.mdb"
        head = data.read_bytes()[:8192]
        txnids = [struct.unpack_from("=Q", head, page * 4096 + 144)[0] for page in (0, 1)]
        committed = 0 if txnids[0] > txnids[1] else 1
        page = committed if which == "committed" else 1 - committed
        with data.open("r+b") as handle:
            handle.seek(page * 4096 + offset)
            byte = handle.read(1)[0]
            handle.seek(page * 4096 + offset)
            handle.write(bytes([byte ^ 0xFF]))
        return page


@pytest.fixture
def never_lies(tmp_path: Path) -> _NeverLies:
    """A cache refreshed by the CLI from a collection and a project named on the command line."""
    collection = CollectionBuilder(tmp_path / "src", "big")
    for i in range(_NL_SKILLS):
        collection.skill(f"s{i:02d}", front_matter={"name": f"s{i:02d}", "description": f"n {i}"})
    collection.write()
    project = ProjectBuilder(tmp_path / "src", "shop")
    project.deploy(collection, "skill", "s01")
    project.write()
    cache_dir = tmp_path / "cache"
    settings = Settings(cache_dir=cache_dir, collection_roots=(), project_roots=())
    world = _NeverLies(cache_dir, collection, project, settings)
    done = world.cli(
        "refresh", "--collection", str(collection.path), "--project", str(project.path)
    )
    assert done.returncode == 0, done.stderr
    assert world.counts()["artifacts"] == _NL_SKILLS
    return world


class TestRepairNeverLies:
    """Repair keeps what the file still holds, re-reads every remembered root, and never says
    "ok" with fewer records than before."""

    @pytest.mark.parametrize("which", ["committed", "older"])
    @pytest.mark.parametrize("offset", [16, 40], ids=["magic", "page-size"])
    def test_a_flipped_meta_byte_keeps_every_record(
        self, never_lies: _NeverLies, which: str, offset: int
    ) -> None:
        """The other meta page (or the damaged one, repaired) brings back N of N: exit 0, ok."""
        before = never_lies.counts()
        never_lies.flip_meta(which, offset)
        done = never_lies.cli("verify", "--repair")
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert lines[-1] == "ok"
        (moved,) = _p2_corrupt_dirs(never_lies.cache_dir)
        assert f"damaged files kept in {moved}" in lines
        assert any(line.endswith(", lost 0") for line in lines), lines
        after = never_lies.counts()
        assert {k: after[k] for k in RECORD_COUNTS} == {k: before[k] for k in RECORD_COUNTS}

    def test_a_broken_root_pointer_rebuilds_from_the_remembered_roots(
        self, never_lies: _NeverLies
    ) -> None:
        """The last commit's tree is unreachable: records come from the state one commit
        earlier plus every remembered source folder; since what the last commit held cannot
        be known, repair does not claim "ok" (exit 1) although every record is back."""
        before = never_lies.counts()
        never_lies.flip_meta("committed", 16 + 24 + 48 + 40 + 2)  # the main tree's root page
        done = never_lies.cli("verify", "--repair")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "ok" not in done.stdout.splitlines()
        after = never_lies.counts()
        assert {k: after[k] for k in RECORD_COUNTS} == {k: before[k] for k in RECORD_COUNTS}

    def test_records_that_cannot_come_back_are_counted_and_repair_fails(
        self, never_lies: _NeverLies
    ) -> None:
        """A record with no source, written in the last commit, whose leaf page is then
        destroyed: exit 1, "lost 1", the damaged copy kept (and still holding the record)."""
        with ProjectCache.open(settings=never_lies.settings) as cache:
            cache.put_artifacts([{"name": "orphan", "type": "skill", "collection": "direct"}])
        before = never_lies.counts()
        path = never_lies.cache_dir / "data.mdb"
        data = path.read_bytes()
        psize, root = _p2_db_root_page(data, "artifacts")
        (leaf,) = [
            pgno
            for pgno in _p2_branch_children(data, psize, root)
            if b"direct/skill/orphan" in _p2_leaf_keys(data, psize, pgno)
        ]
        with path.open("r+b") as handle:
            handle.seek(leaf * psize)
            handle.write(bytes(range(256)) * (psize // 256))
        damaged = path.read_bytes()
        done = never_lies.cli("verify", "--repair", "--json")
        assert done.returncode == 1, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert report["ok"] is False
        assert report["lost"]["artifacts"] == 1 and report["lost_complete"] is True
        moved = Path(report["moved_to"])
        assert (moved / "data.mdb").read_bytes() == damaged  # kept as it was, for inspection
        after = never_lies.counts()
        assert after["artifacts"] == before["artifacts"] - 1

    def test_the_cache_remembers_its_roots_in_meta_and_a_side_file(
        self, never_lies: _NeverLies
    ) -> None:
        """source_roots() lists the folders given to refresh; roots.json is 0600 and is read
        without opening the cache (it survives damage to data.mdb)."""
        from projcache.roots import SourceRoots, read_side_file

        expected = SourceRoots(
            collections=(str(never_lies.collection.path),), projects=(str(never_lies.project.path),)
        )
        with ProjectCache.open(settings=never_lies.settings) as cache:
            assert cache.source_roots() == expected
        side = never_lies.cache_dir / "roots.json"
        assert stat.S_IMODE(side.stat().st_mode) == 0o600
        assert json.loads(side.read_text()) == {
            "collections": [str(never_lies.collection.path)],
            "projects": [str(never_lies.project.path)],
        }
        (never_lies.cache_dir / "data.mdb").write_bytes(b"\0" * 8192)  # wreck the cache
        assert read_side_file(never_lies.cache_dir) == expected


RECORD_COUNTS = ("collections", "projects", "artifacts", "deployments")
