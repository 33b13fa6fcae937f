"""Crash safety (issue scenario 6): a refresh SIGKILLed at random points leaves committed units.

Figures (kills) are printed; run with ``-rP`` (or ``-s``) to see them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from damage import (
    assert_clean,
)
from factories import CollectionBuilder, ProjectBuilder, age
from projcache import ProjectCache
from projcache.config import Settings

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


def crash_rounds(
    tmp_path: Path, target: int, seed: int, record_property: Callable[[str, object], None]
) -> KillTally:
    """Kill refresh children until ``target`` kills landed inside refresh; check each time.

    The kill counts go to the test's report (``record_property``).
    """
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
    record_property("kills", tally.kills)
    record_property("kills_while_writing", tally.kills_while_writing)
    assert tally.kills_while_writing >= target, f"too few kills inside refresh: {tally}"
    return tally


class TestCrashSafety:
    """A refresh SIGKILLed at any point leaves every unit as some committed transaction left it."""

    def test_killed_refreshes_leave_committed_units(
        self, tmp_path: Path, record_property: Callable[[str, object], None]
    ) -> None:
        """Five kills inside full and incremental refreshes; each time verify is clean, no mix.

        The default run's sample; the stress step's variant below kills eighty times.
        """
        crash_rounds(tmp_path, target=5, seed=6, record_property=record_property)

    @pytest.mark.stress
    def test_many_killed_refreshes_leave_committed_units(
        self, tmp_path: Path, record_property: Callable[[str, object], None]
    ) -> None:
        """Eighty kills inside refreshes, with other random delays and edits."""
        crash_rounds(tmp_path, target=80, seed=60, record_property=record_property)
