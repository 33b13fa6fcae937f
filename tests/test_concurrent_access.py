"""Many processes on one cache at once (issue scenario 7) and graceful degradation (9).

Atomic batches, refresh under readers, dead readers, growth, extreme load; then
part 2: source-direct mode, where a disabled or unusable cache is answered
straight from the source files with one warning, compared with a real cache.

Each section starts with a ``# == <title>`` comment and holds its module-level
children, then one ``class Test...``.  Children are plain functions so the
"spawn" start method can import them; :func:`_run_reporting` runs one and
sends ``(name, "ok", value)`` or ``(name, "error", traceback)`` through a
queue, so a failure in a child fails the test with the child's own traceback
(as in ``test_processes.py``).  A child that should signal before it returns
calls the ``ready`` callable it gets as its first argument.

Every test builds its cache in its own ``tmp_path`` and shares nothing else, so
the module runs under ``pytest -n auto``.  Long variants carry ``stress``.

Keeping a small reader table: LMDB sizes the reader table of ``lock.mdb``
when the first process opens the environment, and later processes adopt that
size whatever ``max_readers`` they ask for.  :func:`_small_reader_table`
removes ``lock.mdb`` (safe while no process has the environment open) and has
a child open it first with ``max_readers=SLOTS``; while anyone keeps the
environment open, every projcache open gets ``SLOTS`` slots instead of 1024.
The keeper is a separate process because py-lmdb refuses a second open of the
same environment in one process, and a fork child would inherit it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import queue
import random
import signal
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Iterator
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Optional

import lmdb
import pytest

from damage import collect_messages
from factories import CollectionBuilder, ProjectBuilder, toml_document
from projcache import ProjectCache
from projcache import storage as storage_module
from projcache.codec import project_id_for_path
from projcache.config import Settings
from projcache.errors import CacheBusyError

TINY_MAP = 64 * 1024
JOIN_TIMEOUT = 120.0
START_METHODS = ["spawn", "fork"]
SLOTS = 8  # reader slots of a small reader table (see the module docstring)


# == Shared helpers ============================================================================


def _settings(path: str, **overrides: Any) -> Settings:
    """Settings for the cache in ``path``, starting from a 64 KiB map (so writes grow it)."""
    return Settings(cache_dir=Path(path), **{"map_size": TINY_MAP, **overrides})


@contextlib.contextmanager
def _fork_allowed() -> Iterator[None]:
    """Silence only CPython 3.12+'s warning about fork() in a multi-threaded process.

    pytest-xdist workers run helper threads; the children started here open
    their own cache and never touch locks those threads might hold.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r".*multi-threaded, use of fork\(\) may lead to deadlocks",
            category=DeprecationWarning,
        )
        yield


def _run_reporting(
    reports: Any, name: str, target: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    """Run ``target(ready, *args)`` in a child and report its result or traceback."""

    def ready(value: Any = None) -> None:
        reports.put((name, "ready", value))

    try:
        value = target(ready, *args)
    except BaseException:
        reports.put((name, "error", traceback.format_exc()))
    else:
        reports.put((name, "ok", value))


class _Children:
    """The child processes of one test; on exit ``stop`` is set and every child is reaped.

    A child that is still alive after the join timeout is killed, so a hung
    child fails its test instead of hanging the run.
    """

    def __init__(self, method: str) -> None:
        self.ctx: BaseContext = multiprocessing.get_context(method)
        self.stop = self.ctx.Event()
        # For children that get SIGKILLed: a flag polled without any lock.  A child
        # killed while waiting on an Event would hang every later set() (a
        # multiprocessing Condition waits for each sleeper to wake).
        self.release = self.ctx.RawValue("b", 0)  # type: ignore[attr-defined]
        self._reports = self.ctx.Queue()
        self._pending: list[tuple[str, str, Any]] = []
        self.processes: dict[str, BaseProcess] = {}
        self.killed: set[str] = set()

    def __enter__(self) -> _Children:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release.value = 1
        self.stop.set()
        timeout = JOIN_TIMEOUT if exc is None else 10.0
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            # Drain reports so that no child blocks flushing its queue at exit.
            self._drain()
            process.join(timeout=max(0.1, deadline - time.monotonic()))
        hung = []
        for name, process in self.processes.items():
            if process.is_alive():
                hung.append(name)
                process.kill()
                process.join()
        self._drain()
        self._reports.close()
        self._reports.join_thread()
        if exc is None:
            assert not hung, f"children still running after {timeout} s: {hung}"
            exits = {
                name: process.exitcode
                for name, process in self.processes.items()
                if name not in self.killed
            }
            assert set(exits.values()) <= {0}, f"children exited abnormally: {exits}"

    def _drain(self) -> None:
        with contextlib.suppress(queue.Empty, OSError, ValueError):
            while True:
                self._pending.append(self._reports.get_nowait())

    def start(self, name: str, target: Callable[..., Any], *args: Any) -> BaseProcess:
        """Start ``target(ready, *args)`` in a child named ``name``."""
        assert name not in self.processes, name
        process = self.ctx.Process(  # type: ignore[attr-defined]
            target=_run_reporting, args=(self._reports, name, target, args), name=name
        )
        with _fork_allowed():
            process.start()
        self.processes[name] = process
        return process

    def wait_for(self, kind: str, names: Any, timeout: float = JOIN_TIMEOUT) -> dict[str, Any]:
        """Return what each child in ``names`` reported as ``kind`` ("ready" or "ok").

        Fails the test at once when any child reports an error, or when a
        child we wait for dies without reporting.
        """
        missing = set(names)
        found: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while missing:
            for message in list(self._pending):
                name, got, value = message
                if got == "error":
                    pytest.fail(f"child {name} failed:\n{value}")
                if got == kind and name in missing:
                    self._pending.remove(message)
                    found[name] = value
                    missing.discard(name)
            if not missing:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"timed out waiting for {kind!r} from {sorted(missing)}")
            try:
                self._pending.append(self._reports.get(timeout=min(1.0, remaining)))
                continue
            except queue.Empty:
                pass
            dead = [n for n in missing if not self.processes[n].is_alive()]
            if dead:
                with contextlib.suppress(queue.Empty):  # a last report may still be in flight
                    self._pending.append(self._reports.get(timeout=1.0))
                    continue
                codes = {n: self.processes[n].exitcode for n in dead}
                pytest.fail(f"children died without reporting {kind!r}: {codes}")
        return found

    def kill(self, name: str) -> int:
        """SIGKILL a child, reap it, and return its exit code."""
        process = self.processes[name]
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        process.join(timeout=JOIN_TIMEOUT)
        self.killed.add(name)
        assert process.exitcode is not None
        return process.exitcode


def _reader_rows(env: lmdb.Environment) -> list[int]:
    """Return the pid of every taken slot in LMDB's reader table (one entry per slot)."""
    rows = []
    for line in env.readers().splitlines():
        fields = line.split()
        if fields and fields[0].isdigit():
            rows.append(int(fields[0]))
    return rows


def _open_retrying(path: str, readonly: bool, busy: Counter[str]) -> ProjectCache:
    """Open the cache, retrying while the reader table is full (each retry counted in ``busy``)."""
    deadline = time.monotonic() + JOIN_TIMEOUT
    while True:
        try:
            return ProjectCache.open(readonly=readonly, settings=_settings(path))
        except CacheBusyError:
            busy["open"] += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _keep_reader_table(ready: Callable[[Any], None], path: str, slots: int, release: Any) -> int:
    """Open the environment first, with ``slots`` reader slots, until ``release`` is set."""
    env = lmdb.open(path, readonly=True, max_readers=slots, max_dbs=0)
    try:
        ready(env.max_readers())
        if not release.wait(JOIN_TIMEOUT):
            raise TimeoutError("never released")
        return int(env.max_readers())
    finally:
        env.close()


@contextlib.contextmanager
def _small_reader_table(children: _Children, path: str, slots: int) -> Iterator[ProjectCache]:
    """Yield the parent's open cache whose reader table has ``slots`` slots (see module doc).

    The cache in ``path`` must exist and be closed everywhere.  The parent's
    open keeps the small table alive once the keeper child has gone.
    """
    os.unlink(os.path.join(path, "lock.mdb"))  # nobody has the environment open now
    release = children.ctx.Event()
    children.start("keeper", _keep_reader_table, path, slots, release)
    assert children.wait_for("ready", ["keeper"])["keeper"] == slots
    try:
        with ProjectCache.open(settings=_settings(path)) as cache:
            release.set()
            assert children.wait_for("ok", ["keeper"])["keeper"] == slots
            assert cache._storage.env.max_readers() == slots
            yield cache
    finally:
        release.set()


# == Concurrent writers and readers: atomic batches (issue scenario 7) =========================
#
# Writer ``n``'s batch ``i`` is three calls, each one transaction:
#
# 1. ``put_artifacts``: ``per_batch`` skills ``w{n}/skill/b{i}-{j}`` and a marker command
#    ``w{n}/command/b{i}``, all carrying the word ``w{n}b{i}x``;
# 2. ``put_projects``: a project ``w{n}-b{i}`` whose description names ``per_batch``;
# 3. ``put_deployments``: the deployments of project ``w{n}-deployments`` are replaced by
#    ``i + 1`` records ``w{n}/agent/d{j}``, each with version ``g{i}/{i + 1}``.
#
# A reader that sees any of it checks, in one read transaction, that the whole
# batch is there: a search for ``w{n}b{i}x`` finds 0 or ``per_batch + 1`` hits, the
# deployments of ``w{n}-deployments`` all carry one version whose count is their
# number, and ``stats()`` counts a multiple of ``per_batch + 1`` artifacts.  Across
# transactions, commit order gives more: a marker or project seen means its whole
# batch is seen by every later read.


@dataclasses.dataclass(frozen=True)
class Load:
    """How many children do how much: picklable, so children get it as an argument."""

    writers: int
    readers: int
    batches: int
    per_batch: int
    threads: int = 1  # reader threads per reader process (load section)
    seconds: float = 0.0  # readers go on at least this long after the start (load section)


def _token(n: int, i: int) -> str:
    return f"w{n}b{i}x"


def _skill_description(n: int, i: int, j: int, per_batch: int) -> str:
    return f"{_token(n, i)} item {j} of {per_batch} from writer {n}"


def _batch_artifacts(n: int, i: int, per_batch: int) -> list[dict[str, Any]]:
    """The artifacts of writer ``n``'s batch ``i``: ``per_batch`` skills and one marker."""
    skills = [
        {
            "name": f"b{i}-{j}",
            "type": "skill",
            "collection": f"w{n}",
            "description": _skill_description(n, i, j, per_batch),
            "tags": [f"w{n}"],
        }
        for j in range(per_batch)
    ]
    marker = {
        "name": f"b{i}",
        "type": "command",
        "collection": f"w{n}",
        "description": f"{_token(n, i)} marker of {per_batch} skills",
    }
    return [marker, *skills]


def _batch_project(root: str, n: int, i: int, per_batch: int) -> dict[str, Any]:
    return {
        "name": f"w{n}-b{i}",
        "path": f"{root}/w{n}/b{i}",
        "description": f"batch {i} of writer {n}: {per_batch} skills",
    }


def _deployment_project(root: str, n: int) -> dict[str, Any]:
    return {"name": f"w{n}-deployments", "path": f"{root}/w{n}/deployments"}


def _batch_deployments(project_id: str, n: int, i: int) -> list[dict[str, Any]]:
    """Batch ``i``'s deployments: ``i + 1`` records replacing all earlier ones (keys grow)."""
    count = i + 1
    return [
        {"project_id": project_id, "artifact_key": f"w{n}/agent/d{j}", "version": f"g{i}/{count}"}
        for j in range(count)
    ]


def _batch_writer(
    ready: Callable[[Any], None], path: str, root: str, n: int, load: Load, progress: Any, go: Any
) -> dict[str, Any]:
    """Write ``load.batches`` batches; publish each committed batch in ``progress[n]``."""
    with ProjectCache.open(settings=_settings(path)) as cache:
        deployment_project = project_id_for_path(_deployment_project(root, n)["path"])
        ready(None)
        if not go.wait(JOIN_TIMEOUT):
            raise TimeoutError("never told to start")
        committed = []
        for i in range(load.batches):
            written = cache.put_artifacts(_batch_artifacts(n, i, load.per_batch))
            assert written == load.per_batch + 1
            cache.put_projects([_batch_project(root, n, i, load.per_batch)])
            cache.put_deployments(_batch_deployments(deployment_project, n, i))
            committed.append(i)
            progress[n] = i + 1
        return {"committed": committed, "map_size": cache.stats().map_size}


def _check_batch_search(cache: ProjectCache, n: int, i: int, per_batch: int) -> int:
    """Search batch ``i`` of writer ``n`` in one transaction: none of it or all of it."""
    hits = cache.search(_token(n, i), limit=per_batch + 2)
    if hits.total not in (0, per_batch + 1) or len(hits) != hits.total:
        raise AssertionError(f"search saw {hits.total} of batch {i} of writer {n}: torn batch")
    expected = {artifact["name"] for artifact in _batch_artifacts(n, i, per_batch)}
    if hits.total and {hit.name for hit in hits} != expected:
        raise AssertionError(f"batch {i} of writer {n}: hits {sorted(h.name for h in hits)}")
    for hit in hits:
        if hit.type == "skill":
            j = int(hit.name.split("-")[1])
            if hit.artifact.description != _skill_description(n, i, j, per_batch):
                raise AssertionError(f"torn record {hit.key}: {hit.artifact.description!r}")
    return hits.total


def _check_writer_view(
    cache: ProjectCache,
    root: str,
    n: int,
    floor: int,
    projects: set[int],
    load: Load,
    rng: random.Random,
) -> None:
    """Check what a reader sees of writer ``n``, who had committed ``floor`` batches before."""
    k = load.per_batch
    # Listing (pages of read transactions): every record validates and is intact;
    # markers sort before skills, so a marker seen means its skills are all there.
    markers: set[int] = set()
    skills: Counter[int] = Counter()
    for artifact in cache.list_artifacts(collection=f"w{n}"):
        if artifact.type == "command":
            i = int(artifact.name[1:])
            if artifact.description != f"{_token(n, i)} marker of {k} skills":
                raise AssertionError(f"torn marker {artifact.key}: {artifact.description!r}")
            markers.add(i)
        else:
            i, j = (int(part) for part in artifact.name[1:].split("-"))
            if artifact.description != _skill_description(n, i, j, k) or artifact.tags != [f"w{n}"]:
                raise AssertionError(f"torn record {artifact.key}: {artifact!r}")
            skills[i] += 1
    if not set(range(floor)) <= markers:
        raise AssertionError(f"writer {n} committed {floor} batches; markers seen {markers}")
    for i in markers:
        if skills[i] != k:
            raise AssertionError(f"writer {n} batch {i}: marker seen with {skills[i]} of {k}")
    # A project is committed after its batch's artifacts: the batch must be whole.
    if not set(range(floor)) <= projects:
        raise AssertionError(f"writer {n} committed {floor} batches; projects seen {projects}")
    newest = max(projects, default=None)
    if newest is not None and _check_batch_search(cache, n, newest, k) != k + 1:
        raise AssertionError(f"writer {n}: project of batch {newest} seen before its artifacts")
    # One read transaction: any batch, committed or not, is all there or absent.
    _check_batch_search(cache, n, rng.randrange(load.batches), k)
    # Deployments of one project: one version, whose count is their number.
    deployments = cache.list_deployments(project=project_id_for_path(f"{root}/w{n}/deployments"))
    versions = {d.version for d in deployments}
    if deployments:
        if len(versions) != 1 or None in versions:
            raise AssertionError(f"writer {n}: deployments from several batches {versions}")
        version = str(next(iter(versions)))
        batch, count = (int(part) for part in version[1:].split("/"))
        if count != len(deployments) or batch + 1 < floor:
            raise AssertionError(f"writer {n}: {len(deployments)} deployments of {version}")
    elif floor:
        raise AssertionError(f"writer {n} committed {floor} batches; no deployments seen")
    if floor:
        key = f"w{n}/skill/b{floor - 1}-{(floor * 7) % k}"
        artifact = cache.get_artifact(key)
        if artifact is None or artifact.collection != f"w{n}":
            raise AssertionError(f"committed {key} not readable: {artifact!r}")


def _batch_reader(
    ready: Callable[[Any], None], path: str, root: str, load: Load, progress: Any, stop: Any
) -> dict[str, Any]:
    """Check every writer's view in rounds until ``stop``; the last round sees every commit."""
    with ProjectCache.open(readonly=True, settings=_settings(path)) as cache:
        ready(None)
        rng = random.Random(os.getpid())
        rounds = during = 0
        map_sizes = set()
        while True:
            finished = stop.is_set()  # checked first, so the last round follows every commit
            floors = [progress[n] for n in range(load.writers)]
            during += 0 < sum(floors) < load.writers * load.batches
            stats = cache.stats()
            if stats.counts["artifacts"] % (load.per_batch + 1):
                raise AssertionError(f"stats counts {stats.counts['artifacts']} artifacts")
            map_sizes.add(stats.map_size)
            seen: dict[int, set[int]] = {n: set() for n in range(load.writers)}
            for project in cache.list_projects():
                writer, _, batch = project.name.partition("-b")
                if batch:
                    n, i = int(writer[1:]), int(batch)
                    expected = _batch_project(root, n, i, load.per_batch)["description"]
                    if project.description != expected:
                        raise AssertionError(f"torn project {project!r}")
                    seen[n].add(i)
            for n in range(load.writers):
                _check_writer_view(cache, root, n, floors[n], seen[n], load, rng)
            rounds += 1
            if finished:
                break
        return {"rounds": rounds, "during": during, "map_sizes": sorted(map_sizes)}


def _assert_every_batch_committed(cache: ProjectCache, root: str, load: Load) -> None:
    """Every batch of every writer is in the cache, whole and intact."""
    k = load.per_batch
    stats = cache.stats()
    assert stats.counts["artifacts"] == load.writers * load.batches * (k + 1)
    assert stats.counts["projects"] == load.writers * (load.batches + 1)
    assert stats.counts["deployments"] == load.writers * load.batches
    for n in range(load.writers):
        expected = {
            f"w{n}/{a['type']}/{a['name']}"
            for i in range(load.batches)
            for a in _batch_artifacts(n, i, k)
        }
        assert {a.key for a in cache.list_artifacts(collection=f"w{n}")} == expected
        for i in range(load.batches):
            assert _check_batch_search(cache, n, i, k) == k + 1
            project = cache.get_project(project_id_for_path(f"{root}/w{n}/b{i}"))
            assert project is not None
            assert project.description == _batch_project(root, n, i, k)["description"]
        deployments = cache.list_deployments(project=f"{root}/w{n}/deployments")
        assert {d.version for d in deployments} == {f"g{load.batches - 1}/{load.batches}"}
        assert len(deployments) == load.batches
    assert cache.verify(deep=True).ok


def _run_batches(tmp_path: Path, method: str, load: Load) -> None:
    path = str(tmp_path / "cache")
    root = str(tmp_path / "projects")
    with ProjectCache.open(settings=_settings(path)) as cache:
        cache.put_projects([_deployment_project(root, n) for n in range(load.writers)])
    with _Children(method) as children:
        progress = children.ctx.Array("i", load.writers)
        go = children.ctx.Event()
        readers = [f"reader{r}" for r in range(load.readers)]
        writers = [f"writer{n}" for n in range(load.writers)]
        for name in readers:
            children.start(name, _batch_reader, path, root, load, progress, children.stop)
        for n, name in enumerate(writers):
            children.start(name, _batch_writer, path, root, n, load, progress, go)
        children.wait_for("ready", readers + writers)
        go.set()
        written = children.wait_for("ok", writers, timeout=4 * JOIN_TIMEOUT)
        children.stop.set()
        read = children.wait_for("ok", readers)

    for name in writers:
        assert written[name]["committed"] == list(range(load.batches))
    during = sum(report["during"] for report in read.values())
    assert during >= 1  # some rounds really ran while the writers were writing
    with ProjectCache.open(readonly=True, settings=_settings(path)) as cache:
        _assert_every_batch_committed(cache, root, load)
        final_map = cache.stats().map_size
    assert final_map > TINY_MAP
    rounds = sum(report["rounds"] for report in read.values())
    print(
        f"{method}: {load.writers} writers x {load.batches} batches x 3 transactions, "
        f"{load.readers} readers x {rounds} rounds ({during} during the writes); "
        f"map {TINY_MAP} -> {final_map}"
    )


class TestConcurrentBatches:
    """Writers and readers in several processes: commits are whole, visible and durable."""

    @pytest.mark.parametrize("method", START_METHODS)
    def test_readers_never_see_half_a_batch(self, tmp_path: Path, method: str) -> None:
        """3 writers x 12 batches against 2 readers: nothing torn, every commit present after."""
        _run_batches(tmp_path, method, Load(writers=3, readers=2, batches=12, per_batch=6))

    @pytest.mark.stress
    @pytest.mark.parametrize("method", START_METHODS)
    def test_readers_never_see_half_a_batch_stress(self, tmp_path: Path, method: str) -> None:
        """6 writers x 40 batches of 17 artifacts against 4 readers: nothing torn or lost."""
        _run_batches(tmp_path, method, Load(writers=6, readers=4, batches=40, per_batch=16))


# == Refresh under readers: a project's deployments flip between two versions ==================
#
# One process rewrites a project's SkillMeat files and refreshes it, over and
# over; its ``.skillmeat-deployed.toml`` alternates between FLIP_COUNTS
# deployments and its description names the generation.  A refresh writes the
# project record and its deployments in one transaction, so readers only ever
# count one of FLIP_COUNTS, and when the generation did not change around a
# count, the count is that generation's.

FLIP_COUNTS = (10, 30)


def _flip_texts(tree: Path) -> dict[int, str]:
    """The two texts of ``.skillmeat-deployed.toml``: FLIP_COUNTS deployments (files absent)."""
    collection = CollectionBuilder(tree / "collections", "default")
    project = ProjectBuilder(tree / "projects", "flip")
    texts = {}
    for j in range(max(FLIP_COUNTS)):
        collection.skill(f"s{j:02d}")
        project.deploy(collection, "skill", f"s{j:02d}", copy=False)
    texts[max(FLIP_COUNTS)] = project.deployed_text()
    for j in range(min(FLIP_COUNTS), max(FLIP_COUNTS)):
        project.undeploy("default", "skill", f"s{j:02d}", remove_files=False)
    texts[min(FLIP_COUNTS)] = project.deployed_text()
    return texts


def _flip_description(generation: int, count: int) -> str:
    return f"generation {generation} has {count} deployments"


def _write_flip(project_path: str, generation: int, texts: dict[int, str]) -> int:
    """Write generation ``generation`` of the project's files (each replaced atomically)."""
    count = FLIP_COUNTS[generation % 2]
    claude = Path(project_path) / ".claude"
    project_toml = toml_document(
        [("[project]", {"name": "flip", "description": _flip_description(generation, count)})]
    )
    for name, text in (
        (".skillmeat-project.toml", project_toml),
        (".skillmeat-deployed.toml", texts[count]),
    ):
        scratch = claude / f"{name}.new"
        scratch.write_text(text, encoding="utf-8")
        os.replace(scratch, claude / name)
    return count


def _refresh_flipper(
    ready: Callable[[Any], None],
    path: str,
    project_path: str,
    texts: dict[int, str],
    generations: int,
    go: Any,
) -> dict[str, Any]:
    """Rewrite and refresh the project ``generations`` times, alternating its deployments."""
    with ProjectCache.open(settings=_settings(path)) as cache:
        ready(None)
        if not go.wait(JOIN_TIMEOUT):
            raise TimeoutError("never told to start")
        counts = []
        for generation in range(1, generations + 1):
            counts.append(_write_flip(project_path, generation, texts))
            report = cache.refresh(projects=[project_path])
            if report.errors or report.projects_written != 1:
                raise AssertionError(f"generation {generation}: {report!r}")
        return {"counts": counts}


def _deployment_count_reader(
    ready: Callable[[Any], None], path: str, project_path: str, stop: Any
) -> dict[str, Any]:
    """Count the project's deployments in rounds until ``stop``; report what was seen."""
    project_id = project_id_for_path(project_path)
    seen: Counter[int] = Counter()
    same_generation = 0
    with ProjectCache.open(readonly=True, settings=_settings(path)) as cache:
        ready(None)
        while not stop.is_set():
            before = cache.get_project(project_id)
            deployments = cache.list_deployments(project=project_path)
            # No collection is cached: every deployment is "unknown-collection".
            missing = cache.list_deployments(project=project_path, state="unknown-collection")
            after = cache.get_project(project_id)
            assert before is not None and after is not None
            counted = len(deployments)
            if counted not in FLIP_COUNTS or len(missing) not in FLIP_COUNTS:
                raise AssertionError(f"{counted} deployments ({len(missing)} missing): torn")
            names = sorted(d.name for d in deployments)
            if names != [f"s{j:02d}" for j in range(counted)]:
                raise AssertionError(f"unexpected deployments {names}")
            if before.description == after.description:
                # No refresh committed in between: the count is the one written with it.
                expected = int(before.description.split()[3])
                if (counted, len(missing)) != (expected, expected):
                    raise AssertionError(
                        f"{before.description!r} but {counted} deployments, {len(missing)} missing"
                    )
                same_generation += 1
            seen[counted] += 1
    return {"seen": dict(seen), "same_generation": same_generation}


def _run_flips(tmp_path: Path, method: str, readers: int, generations: int) -> None:
    path = str(tmp_path / "cache")
    tree = Path(os.path.realpath(tmp_path)) / "tree"
    texts = _flip_texts(tree)
    project_path = str(tree / "projects" / "flip")
    _write_flip(project_path, 0, texts)
    with ProjectCache.open(settings=_settings(path)) as cache:
        cache.refresh(projects=[project_path])
        assert len(cache.list_deployments(project=project_path)) == FLIP_COUNTS[0]
    with _Children(method) as children:
        go = children.ctx.Event()
        names = [f"reader{r}" for r in range(readers)]
        for name in names:
            children.start(name, _deployment_count_reader, path, project_path, children.stop)
        children.start("flipper", _refresh_flipper, path, project_path, texts, generations, go)
        children.wait_for("ready", [*names, "flipper"])
        go.set()
        flipped = children.wait_for("ok", ["flipper"], timeout=4 * JOIN_TIMEOUT)["flipper"]
        children.stop.set()
        read = children.wait_for("ok", names)

    assert flipped["counts"] == [FLIP_COUNTS[g % 2] for g in range(1, generations + 1)]
    seen: Counter[int] = Counter()
    for report in read.values():
        seen.update(report["seen"])
    assert set(seen) == set(FLIP_COUNTS), seen  # readers really saw both versions
    with ProjectCache.open(readonly=True, settings=_settings(path)) as cache:
        assert len(cache.list_deployments(project=project_path)) == FLIP_COUNTS[generations % 2]
        project = cache.find_project(project_path)
        assert project.description == _flip_description(generations, FLIP_COUNTS[generations % 2])
        assert cache.verify(deep=True).ok
    same = sum(report["same_generation"] for report in read.values())
    print(
        f"{method}: {generations} refreshes, {readers} readers x {sum(seen.values())} counts "
        f"{dict(seen)}, {same} within one generation"
    )


class TestRefreshUnderReaders:
    """A refresh publishes a project and its deployments together, to every process."""

    @pytest.mark.parametrize("method", START_METHODS)
    def test_deployment_count_is_always_one_version(self, tmp_path: Path, method: str) -> None:
        """40 refreshes flipping 10/30 deployments; 2 readers only ever count 10 or 30."""
        _run_flips(tmp_path, method, readers=2, generations=40)

    @pytest.mark.stress
    @pytest.mark.parametrize("method", START_METHODS)
    def test_deployment_count_is_always_one_version_stress(
        self, tmp_path: Path, method: str
    ) -> None:
        """300 refreshes flipping 10/30 deployments under 4 readers."""
        _run_flips(tmp_path, method, readers=4, generations=300)


# == Killed readers: their reader slots are reclaimed ==========================================
#
# Runs on a reader table of SLOTS slots (see the module docstring), so that
# filling it with live and then dead readers takes a handful of processes.
# Holders are SIGKILLed inside a read transaction, so their slots stay taken
# until some process runs reader_check: on open, or on ReadersFullError in a read.


def _hold_read_slot(ready: Callable[[Any], None], path: str, held: Any, release: Any) -> None:
    """Open the cache and sit inside a read transaction (one reader slot) until released.

    The parent SIGKILLs this process, so it signals with ``held.set()`` (which
    returns before the kill) rather than a queue message (a process killed while
    its queue is flushing leaves the queue's lock taken), and it polls the
    lock-free flag ``release`` rather than waiting on an Event (a killed waiter
    would hang every later ``set()``).
    """
    with ProjectCache.open(readonly=True, settings=_settings(path)) as cache:

        def hold(txn: Any) -> None:
            held.set()
            deadline = time.monotonic() + JOIN_TIMEOUT
            while not release.value and time.monotonic() < deadline:
                time.sleep(0.02)

        cache._storage.read(hold)


def _late_reader(ready: Callable[[Any], None], path: str, key: str, go: Any) -> dict[str, Any]:
    """Open the cache while slots are free; on ``go`` read once (the table is full of dead)."""
    with ProjectCache.open(readonly=True, settings=_settings(path)) as cache:
        assert cache.get_artifact(key) is not None
        ready(os.getpid())
        if not go.wait(JOIN_TIMEOUT):
            raise TimeoutError("never told to read")
        env = cache._storage.env
        before = _reader_rows(env)
        artifact = cache.get_artifact(key)
        after = _reader_rows(env)
        return {"before": before, "found": artifact is not None, "after": after}


def _busy_reader(ready: Callable[[Any], None], path: str, key: str) -> dict[str, Any]:
    """Try to open and read while every slot is held by a live reader; report the error."""
    try:
        with ProjectCache.open(readonly=True, settings=_settings(path)) as cache:
            cache.get_artifact(key)
    except CacheBusyError as exc:
        return {"error": type(exc).__name__, "exit_code": exc.exit_code, "hint": exc.hint}
    return {"error": None}


def _open_and_log(ready: Callable[[Any], None], path: str, key: str) -> dict[str, Any]:
    """Open the cache (running reader_check) and report the storage log and a read."""
    messages = collect_messages("projcache.storage")
    with ProjectCache.open(readonly=True, settings=_settings(path)) as cache:
        found = cache.get_artifact(key) is not None
        return {"messages": messages, "found": found, "rows": _reader_rows(cache._storage.env)}


@dataclasses.dataclass
class _Holders:
    """Children each holding one reader slot; ``release.value = 1`` lets them finish."""

    pids: dict[str, int]
    release: Any


def _hold_slots(children: _Children, path: str, prefix: str, count: int) -> _Holders:
    """Start ``count`` children each holding a read transaction; return once all hold one."""
    release = children.ctx.RawValue("b", 0)  # type: ignore[attr-defined]
    events = {}
    for s in range(count):
        name = f"{prefix}{s}"
        events[name] = children.ctx.Event()
        children.start(name, _hold_read_slot, path, events[name], release)
    deadline = time.monotonic() + JOIN_TIMEOUT
    for name, event in events.items():
        if not event.wait(max(0.1, deadline - time.monotonic())):
            children.wait_for("ok", [name], timeout=0.1)  # fails with its traceback if it died
            pytest.fail(f"{name} never held its read transaction")
    return _Holders({name: int(children.processes[name].pid or 0) for name in events}, release)


def _kill_holders(children: _Children, holders: _Holders, env: lmdb.Environment) -> None:
    """SIGKILL every holder inside its transaction; their slots stay taken."""
    assert sorted(_reader_rows(env)) == sorted(holders.pids.values())
    for name in holders.pids:
        assert children.kill(name) == -signal.SIGKILL
    assert sorted(_reader_rows(env)) == sorted(holders.pids.values())  # nothing freed them


def _seeded_cache(path: str) -> str:
    """Create the cache in ``path`` with one artifact, closed; return the artifact's key."""
    with ProjectCache.open(settings=_settings(path)) as cache:
        cache.put_artifacts([{"name": "kept", "type": "skill", "collection": "default"}])
    return "default/skill/kept"


class TestKilledReaders:
    """Slots of SIGKILLed readers are reclaimed: by a read finding the table full, and on open."""

    @pytest.mark.parametrize("method", START_METHODS)
    def test_a_read_reclaims_a_table_full_of_killed_readers(
        self, tmp_path: Path, method: str
    ) -> None:
        """Live readers in every slot: CacheBusyError; all killed: an open process reads on.

        The late reader opened before the table filled up; its read meets
        ReadersFullError, runs reader_check, which frees all SLOTS slots, and succeeds.
        """
        path = str(tmp_path / "cache")
        key = _seeded_cache(path)
        with _Children(method) as children, _small_reader_table(children, path, SLOTS) as cache:
            env = cache._storage.env
            go = children.ctx.Event()
            children.start("late", _late_reader, path, key, go)
            children.wait_for("ready", ["late"])
            assert _reader_rows(env) == []

            holders = _hold_slots(children, path, "holder", SLOTS)
            children.start("busy", _busy_reader, path, key)
            busy = children.wait_for("ok", ["busy"])["busy"]
            assert busy["error"] == "CacheBusyError" and busy["exit_code"] == 11
            assert busy["hint"].endswith("retry.")
            _kill_holders(children, holders, env)

            go.set()
            late = children.wait_for("ok", ["late"])["late"]
            assert sorted(late["before"]) == sorted(holders.pids.values())
            assert late["found"] is True
            assert late["after"] == []
            assert _reader_rows(env) == []
            assert env.reader_check() == 0
            assert cache.get_artifact(key) is not None
        print(f"{method}: {SLOTS} readers killed in a {SLOTS}-slot table, {SLOTS} reclaimed")

    @pytest.mark.parametrize("method", START_METHODS)
    def test_open_reclaims_slots_of_killed_readers(self, tmp_path: Path, method: str) -> None:
        """SLOTS - 1 readers killed leave one free slot; the next open clears the rest.

        Afterwards SLOTS new readers hold transactions at once: more than the one
        slot that was free before, so every stale slot was reclaimed.
        """
        path = str(tmp_path / "cache")
        key = _seeded_cache(path)
        with _Children(method) as children, _small_reader_table(children, path, SLOTS) as cache:
            env = cache._storage.env
            dead = _hold_slots(children, path, "dead", SLOTS - 1)
            _kill_holders(children, dead, env)

            children.start("opener", _open_and_log, path, key)
            opened = children.wait_for("ok", ["opener"])["opener"]
            assert f"cleared {SLOTS - 1} stale reader slot(s)" in " ".join(opened["messages"])
            assert opened["found"] is True
            assert set(opened["rows"]).isdisjoint(dead.pids.values())
            assert _reader_rows(env) == []

            live = _hold_slots(children, path, "live", SLOTS)
            assert sorted(_reader_rows(env)) == sorted(live.pids.values())
            live.release.value = 1
            children.wait_for("ok", list(live.pids))
            assert _reader_rows(env) == []
            assert env.reader_check() == 0
            assert cache.verify(deep=True).ok
        print(f"{method}: {SLOTS - 1} readers killed, {SLOTS - 1} slots reclaimed on open")

    def test_an_opener_waits_until_a_reading_process_frees_dead_slots(self, tmp_path: Path) -> None:
        """Every slot held by a killed reader: a new process's open waits, and succeeds as
        soon as a process that has the cache open reads (its read clears the dead slots).

        py-lmdb's Environment begins a read transaction inside its constructor,
        so the opener itself cannot run reader_check before it has a slot.
        """
        path = str(tmp_path / "cache")
        key = _seeded_cache(path)
        with _Children("spawn") as children, _small_reader_table(children, path, SLOTS) as cache:
            env = cache._storage.env
            dead = _hold_slots(children, path, "dead", SLOTS)
            _kill_holders(children, dead, env)

            children.start("opener", _open_and_log, path, key)
            time.sleep(0.3)  # the opener is now waiting for a slot
            # This process's read finds the table full, clears the dead slots, reads.
            assert cache.get_artifact(key) is not None
            opened = children.wait_for("ok", ["opener"])["opener"]
            assert opened["found"] is True
            assert _reader_rows(env) == []

    def test_an_opener_gives_up_with_a_clear_error_when_no_one_frees_slots(
        self, tmp_path: Path
    ) -> None:
        """Dead readers fill the table and nobody reads: the open fails after a bounded wait
        with CacheBusyError and a hint saying how the slots get freed."""
        path = str(tmp_path / "cache")
        key = _seeded_cache(path)
        with _Children("spawn") as children, _small_reader_table(children, path, SLOTS) as cache:
            env = cache._storage.env
            dead = _hold_slots(children, path, "dead", SLOTS)
            _kill_holders(children, dead, env)
            started = time.monotonic()
            # A spawned child stands for the new CLI process.
            children.start("busy", _busy_reader, path, key)
            busy = children.wait_for("ok", ["busy"])["busy"]
            assert time.monotonic() - started < 30
            assert busy["error"] == "CacheBusyError" and busy["exit_code"] == 11
            assert "freed when a process that has the cache open reads" in busy["hint"]


# == Map growth while other processes read and write ===========================================
#
# One process writes big batches into a 64 KiB map, so it grows many times;
# small writers and readers in other processes go on meanwhile and must adopt
# every new size transparently.

GROW_SIZE = 250


def _grow_records(i: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"g{i}-{j}",
            "type": "skill",
            "collection": "grow",
            "description": f"grow{i}x item {j} " + "padding words to fill pages " * 6,
        }
        for j in range(GROW_SIZE)
    ]


def _grower(
    ready: Callable[[Any], None], path: str, batches: int, progress: Any, go: Any
) -> dict[str, Any]:
    """Write ``batches`` big batches, publishing the count committed in ``progress[0]``."""
    with ProjectCache.open(settings=_settings(path)) as cache:
        sizes = [cache.stats().map_size]  # before anyone writes
        ready(None)
        if not go.wait(JOIN_TIMEOUT):
            raise TimeoutError("never told to start")
        for i in range(batches):
            cache.put_artifacts(_grow_records(i))
            progress[0] = i + 1
            sizes.append(cache.stats().map_size)
        return {"map_sizes": sizes}


def _small_writer(
    ready: Callable[[Any], None], path: str, n: int, progress: Any, go: Any, stop: Any
) -> dict[str, Any]:
    """Write batches of 3 small records until ``stop`` (at least 5); publish in ``progress[n]``."""
    with ProjectCache.open(settings=_settings(path)) as cache:
        ready(None)
        if not go.wait(JOIN_TIMEOUT):
            raise TimeoutError("never told to start")
        i = 0
        while i < 5 or not stop.is_set():
            cache.put_artifacts(
                {"name": f"s{i}-{j}", "type": "agent", "collection": f"small{n}"} for j in range(3)
            )
            i += 1
            progress[n] = i
        return {"batches": i}


def _growth_reader(
    ready: Callable[[Any], None], path: str, writers: int, progress: Any, stop: Any
) -> dict[str, Any]:
    """Read what every writer committed, in rounds until ``stop``; report the map sizes seen."""
    with ProjectCache.open(readonly=True, settings=_settings(path)) as cache:
        # Measured before signalling ready: the growth may start right after.
        sizes = {cache.stats().map_size}
        ready(None)
        rounds = 0
        while True:
            finished = stop.is_set()
            floors = [progress[n] for n in range(writers + 1)]
            if floors[0]:
                i = rounds % floors[0]
                total = cache.search(f"grow{i}x", limit=1).total
                if total != GROW_SIZE:
                    raise AssertionError(f"search found {total} of big batch {i}")
                key = f"grow/skill/g{i}-{(rounds * 31) % GROW_SIZE}"
                if cache.get_artifact(key) is None:
                    raise AssertionError(f"committed {key} missing")
            for n in range(1, writers + 1):
                if floors[n]:
                    listed = list(cache.iter_artifacts_json(collection=f"small{n}"))
                    if len(listed) < 3 * floors[n] or len(listed) % 3:
                        raise AssertionError(f"small{n}: {len(listed)} of {floors[n]} batches")
            sizes.add(cache.stats().map_size)
            rounds += 1
            if finished:
                break
        return {"rounds": rounds, "map_sizes": sorted(sizes)}


def _run_growth(tmp_path: Path, method: str, batches: int, writers: int, readers: int) -> None:
    path = str(tmp_path / "cache")
    ProjectCache.open(settings=_settings(path)).close()
    with _Children(method) as children:
        progress = children.ctx.Array("i", writers + 1)
        go = children.ctx.Event()
        stop = children.stop
        reader_names = [f"reader{r}" for r in range(readers)]
        writer_names = [f"small{n}" for n in range(1, writers + 1)]
        for name in reader_names:
            children.start(name, _growth_reader, path, writers, progress, stop)
        for n, name in enumerate(writer_names, start=1):
            children.start(name, _small_writer, path, n, progress, go, stop)
        children.start("grower", _grower, path, batches, progress, go)
        children.wait_for("ready", [*reader_names, *writer_names, "grower"])
        go.set()
        grown = children.wait_for("ok", ["grower"], timeout=4 * JOIN_TIMEOUT)["grower"]
        stop.set()
        small = children.wait_for("ok", writer_names)
        read = children.wait_for("ok", reader_names)

    sizes = grown["map_sizes"]
    assert sizes[0] == TINY_MAP and sizes[-1] > TINY_MAP
    assert sizes == sorted(sizes)
    for report in read.values():
        assert report["map_sizes"][0] == TINY_MAP  # opened before the growth
        assert report["map_sizes"][-1] > TINY_MAP  # and followed it
    with ProjectCache.open(readonly=True, settings=_settings(path)) as cache:
        for i in range(batches):
            assert cache.search(f"grow{i}x", limit=0).total == GROW_SIZE
        for n, name in enumerate(writer_names, start=1):
            expected = {
                f"small{n}/agent/s{i}-{j}" for i in range(small[name]["batches"]) for j in range(3)
            }
            assert {a.key for a in cache.list_artifacts(collection=f"small{n}")} == expected
        stats = cache.stats()
        assert stats.counts["artifacts"] == batches * GROW_SIZE + 3 * sum(
            report["batches"] for report in small.values()
        )
        # Not necessarily the grower's last size: the meta page records the map size
        # of whoever committed last, which LMDB lets be any size holding the data.
        assert stats.map_size >= stats.used_bytes > TINY_MAP
        assert cache.verify(deep=True).ok
    print(
        f"{method}: map {TINY_MAP} -> {sizes[-1]} ({len(set(sizes)) - 1} growths) under "
        f"{writers} small writers x {[r['batches'] for r in small.values()]} batches and "
        f"{readers} readers x {[r['rounds'] for r in read.values()]} rounds"
    )


class TestGrowthUnderLoad:
    """The map grows in one process while others read and write; nobody notices."""

    @pytest.mark.parametrize("method", START_METHODS)
    def test_growth_by_one_writer_under_readers_and_writers(
        self, tmp_path: Path, method: str
    ) -> None:
        """12 batches of 250 records grow a 64 KiB map; 2 small writers and 2 readers go on."""
        _run_growth(tmp_path, method, batches=12, writers=2, readers=2)

    @pytest.mark.stress
    def test_growth_by_one_writer_under_readers_and_writers_stress(self, tmp_path: Path) -> None:
        """60 big batches under 3 small writers and 4 readers."""
        _run_growth(tmp_path, "spawn", batches=60, writers=3, readers=4)


# == Extreme load: more readers than slots, writers queueing (part of issue scenario 9) ========
#
# Reader processes run many threads each, every read a short transaction; on a
# small reader table they outnumber the slots, so some reads fail -- always as
# CacheBusyError -- and none returns anything torn.  Writers queue on LMDB's
# writer lock.  Afterwards verify() finds nothing wrong.


def _load_read(cache: ProjectCache, rng: random.Random, load: Load, progress: Any) -> None:
    """One random read against writer batches; raises AssertionError on anything torn."""
    n = rng.randrange(load.writers)
    floor = progress[n]
    choice = rng.randrange(4)
    if choice == 0 and floor:
        i, j = rng.randrange(floor), rng.randrange(load.per_batch)
        artifact = cache.get_artifact(f"w{n}/skill/b{i}-{j}")
        if artifact is None or artifact.description != _skill_description(n, i, j, load.per_batch):
            raise AssertionError(f"w{n}/skill/b{i}-{j}: {artifact!r}")
    elif choice == 1:
        _check_batch_search(cache, n, rng.randrange(load.batches), load.per_batch)
    elif choice == 2:
        count = 0
        for artifact in cache.list_artifacts(type="command", collection=f"w{n}"):
            count += 1
            if not artifact.description.endswith(f"marker of {load.per_batch} skills"):
                raise AssertionError(f"torn marker {artifact!r}")
        if count < floor:
            raise AssertionError(f"writer {n} committed {floor} batches, {count} markers listed")
    else:
        artifacts = cache.stats().counts["artifacts"]
        if artifacts % (load.per_batch + 1):
            raise AssertionError(f"stats counts {artifacts} artifacts: torn batch")


def _load_reader(
    ready: Callable[[Any], None], path: str, load: Load, progress: Any, stop: Any
) -> dict[str, Any]:
    """Hammer reads from ``load.threads`` threads until ``stop``; count successes and busy."""
    busy: Counter[str] = Counter()
    cache = _open_retrying(path, True, busy)
    with cache:
        tallies = [Counter[str]() for _ in range(load.threads)]
        failures: list[str] = []

        def hammer(t: int) -> None:
            rng = random.Random(os.getpid() * 1000 + t)
            tally = tallies[t]
            try:
                while not stop.is_set() or not tally["ok"]:
                    try:
                        _load_read(cache, rng, load, progress)
                        tally["ok"] += 1
                    except CacheBusyError as exc:
                        if exc.exit_code != 11 or "reader slots" not in str(exc):
                            raise
                        tally["busy"] += 1
            except BaseException:
                failures.append(traceback.format_exc())

        threads = [threading.Thread(target=hammer, args=(t,)) for t in range(load.threads)]
        for thread in threads:
            thread.start()
        ready(None)
        for thread in threads:
            thread.join()
        if failures:
            raise AssertionError(f"{len(failures)} reader thread(s) failed:\n{failures[0]}")
        total = sum(tallies, Counter[str]())
        return {"ok": total["ok"], "busy": total["busy"] + busy["open"]}


def _load_writer(
    ready: Callable[[Any], None], path: str, n: int, load: Load, progress: Any, go: Any
) -> dict[str, Any]:
    """Write ``load.batches`` batches of artifacts (one transaction each), queueing with others."""
    busy: Counter[str] = Counter()
    with _open_retrying(path, False, busy) as cache:
        ready(None)
        if not go.wait(JOIN_TIMEOUT):
            raise TimeoutError("never told to start")
        for i in range(load.batches):
            cache.put_artifacts(_batch_artifacts(n, i, load.per_batch))
            progress[n] = i + 1
        return {"committed": load.batches, "busy": busy["open"]}


def _run_load(tmp_path: Path, method: str, load: Load, slots: Optional[int]) -> None:
    path = str(tmp_path / "cache")
    ProjectCache.open(settings=_settings(path)).close()
    with contextlib.ExitStack() as stack:
        children = stack.enter_context(_Children(method))
        if slots is not None:
            stack.enter_context(_small_reader_table(children, path, slots))
        progress = children.ctx.Array("i", load.writers)
        go = children.ctx.Event()
        readers = [f"reader{r}" for r in range(load.readers)]
        writers = [f"writer{n}" for n in range(load.writers)]
        for name in readers:
            children.start(name, _load_reader, path, load, progress, children.stop)
        for n, name in enumerate(writers):
            children.start(name, _load_writer, path, n, load, progress, go)
        children.wait_for("ready", readers + writers)
        started = time.monotonic()
        go.set()
        written = children.wait_for("ok", writers, timeout=4 * JOIN_TIMEOUT)
        time.sleep(max(0.0, started + load.seconds - time.monotonic()))
        children.stop.set()
        read = children.wait_for("ok", readers)
        elapsed = time.monotonic() - started

    ok = sum(report["ok"] for report in read.values())
    busy = sum(report["busy"] for report in read.values())
    busy += sum(report["busy"] for report in written.values())
    assert all(report["ok"] >= load.threads for report in read.values())
    if slots is None:
        assert busy == 0  # far fewer readers than 1024 slots: nobody may be turned away
    with ProjectCache.open(readonly=True, settings=_settings(path)) as cache:
        stats = cache.stats()
        assert stats.counts["artifacts"] == load.writers * load.batches * (load.per_batch + 1)
        for n in range(load.writers):
            for i in range(load.batches):
                assert _check_batch_search(cache, n, i, load.per_batch) == load.per_batch + 1
        assert stats.map_size > TINY_MAP
        report = cache.verify(deep=True)
        assert report.ok, report.findings
    print(
        f"{method}, {slots or storage_module.MAX_READERS} slots: "
        f"{load.readers} processes x {load.threads} threads: {ok} reads ok, {busy} CacheBusyError; "
        f"{load.writers} writers x {load.batches} transactions; {elapsed:.1f} s"
    )


class TestExtremeLoad:
    """Readers outnumbering the slots get CacheBusyError or a whole answer, never a torn one."""

    def test_more_reader_threads_than_slots(self, tmp_path: Path) -> None:
        """18 threads in 3 processes on 8 slots, 2 writers committing: ok or CacheBusyError."""
        load = Load(writers=2, readers=3, batches=10, per_batch=4, threads=6, seconds=2.0)
        _run_load(tmp_path, "spawn", load, slots=SLOTS)

    @pytest.mark.stress
    @pytest.mark.parametrize("slots", [None, SLOTS], ids=["1024-slots", "8-slots"])
    def test_64_reader_threads_and_4_writers_stress(
        self, tmp_path: Path, slots: Optional[int]
    ) -> None:
        """8 processes x 8 threads hammer reads for 15 s while 4 writers queue 150 commits each."""
        load = Load(writers=4, readers=8, batches=150, per_batch=8, threads=8, seconds=15.0)
        _run_load(tmp_path, "fork", load, slots=slots)
