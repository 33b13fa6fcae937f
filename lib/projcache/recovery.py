"""Rebuild a cache whose files are damaged: move them aside, salvage, rebuild from source.

Used by ``verify(repair=True)`` when the file layer fails and when opening
finds the environment unusable (``auto_repair``).  Nothing is discarded
silently: the damaged directory is kept, renamed with a timestamp, and the
report says how many records were carried over and how many were lost.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import orjson

from . import codec
from .salvage import RECORD_DBS

if TYPE_CHECKING:
    from .cache import ProjectCache
    from .config import Settings
    from .models import RefreshReport, VerifyReport

__all__ = ["RecoveryResult", "move_aside", "rebuild", "repair_unopenable", "verify_cache"]

logger = logging.getLogger(__name__)

_SALVAGE_TIMEOUT = 600.0


@dataclass
class RecoveryResult:
    """What a rebuild did: where the damaged files went, what was kept and lost."""

    moved_to: Path
    salvaged: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # False when the damaged file could not be read to the end: ``lost`` is then a floor.
    complete: bool = True
    refresh: Optional[RefreshReport] = None

    def summary(self) -> str:
        """One line for logs and the CLI."""
        kept = sum(self.salvaged.values())
        lost = f"lost {sum(self.lost.values())}" if self.complete else "lost an unknown number"
        return (
            f"moved the damaged cache to {self.moved_to}; carried over {kept} record(s), "
            f"{lost}" + (f" ({'; '.join(self.problems)})" if self.problems else "")
        )


def move_aside(path: Path) -> Path:
    """Rename the cache directory to ``<name>.corrupt-<UTC timestamp>`` and return the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{suffix}")
    os.rename(path, target)
    return target


def _salvage(aside: Path, result: RecoveryResult) -> list[tuple[str, bytes, bytes]]:
    """Run the salvage reader in a child process; keep every record it printed."""
    env = dict(os.environ)
    # The child must import this very projcache, wherever it was imported from.
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "projcache.salvage", str(aside)],
            capture_output=True,
            timeout=_SALVAGE_TIMEOUT,
            env=env,
            check=False,
        )
        output, code = done.stdout, done.returncode
    except subprocess.TimeoutExpired as exc:
        output, code = exc.stdout or b"", -1
        result.problems.append("the salvage reader timed out")
    records: list[tuple[str, bytes, bytes]] = []
    tally: dict[str, Any] = {}
    for line in output.splitlines():
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line cut short by a crash
        if "done" in item:
            tally = item
        elif "fatal" in item:
            result.problems.append(f"salvage failed: {item['fatal']}")
        elif "error" in item:
            result.problems.append(f"{item['db']}: {item['error']}")
        else:
            records.append((item["db"], bytes.fromhex(item["key"]), bytes.fromhex(item["value"])))
    if not tally:
        result.complete = False
        if code not in (0, -1):
            result.problems.append(f"the salvage reader stopped with status {code}")
    for db in RECORD_DBS:
        kept = sum(1 for name, _k, _v in records if name == db)
        result.salvaged[db] = kept
        expected = max(tally.get("entries", {}).get(db, 0), tally.get("seen", {}).get(db, 0))
        result.lost[db] = max(0, expected - kept)
    return records


def _restore(cache: ProjectCache, records: list[tuple[str, bytes, bytes]]) -> None:
    """Write the salvaged records through the normal mutations (indexes rebuilt with them)."""
    from . import models, mutations

    repos = cache._repos
    by_db: dict[str, list[tuple[bytes, Any]]] = {db: [] for db in RECORD_DBS}
    for db, key, raw in records:
        model = getattr(models, RECORD_DBS[db])
        by_db[db].append((key, model.model_validate_json(codec.unframe(raw))))

    def body(txn: Any) -> None:
        for _key, collection in by_db["collections"]:
            repos.collections.put(txn, collection)
        for _key, project in by_db["projects"]:
            mutations.put_project(txn, repos, project)
        for _key, artifact in by_db["artifacts"]:
            mutations.put_artifact(txn, repos, artifact)
        projects = {project.id for _k, project in by_db["projects"]}
        for _key, deployment in by_db["deployments"]:
            if deployment.project_id in projects:
                mutations.put_deployment(txn, repos, deployment)
        for key, fingerprint in by_db["sources"]:
            repos.sources._store(txn, key, fingerprint)

    cache._write(body)


def rebuild(settings: Settings) -> RecoveryResult:
    """Move the damaged cache in ``settings.cache_dir`` aside and build a fresh one.

    Every record that still reads and validates is carried over, then the
    configured roots and every carried-over collection and project are re-read
    from source (``full``), so what came from files is exact again.  The
    caller must not hold the cache open.
    """
    from .cache import ProjectCache

    path = Path(settings.cache_dir)
    aside = move_aside(path)
    logger.warning("moved the damaged cache %s aside to %s", path, aside)
    result = RecoveryResult(moved_to=aside)
    records = _salvage(aside, result)
    fresh = replace(settings, auto_repair=False)
    with ProjectCache.open(settings=fresh) as cache:
        _restore(cache, records)
        # The configured roots plus every collection and project carried over.
        result.refresh = cache.refresh(full=True)
    for db, count in result.lost.items():
        if count:
            logger.warning("recovery lost %d %s record(s) of %s", count, db, path)
    logger.warning("recovered %s: %s", path, result.summary())
    return result


def _source_folders(cache: ProjectCache) -> tuple[set[str], set[str]]:
    """Folders of every unit with fingerprints: a dropped record's sources are still known."""
    from .errors import CorruptRecordError

    repos = cache._repos

    def body(txn: Any) -> tuple[set[str], set[str]]:
        collections: set[str] = set()
        projects: set[str] = set()
        for key, raw in txn.cursor(repos.sources.db).iternext():
            unit, _sep, relative = bytes(key).partition(codec.SEPARATOR)
            try:
                fingerprint = repos.sources.model.model_validate_json(codec.unframe(raw))
            except (CorruptRecordError, ValueError):
                continue
            text = relative.decode("utf-8", "surrogateescape")
            if text.startswith("#") or not fingerprint.path.endswith(text):
                continue  # a digest-keyed deep path: its unit is found through another file
            base = fingerprint.path[: -len(text)].rstrip(os.sep)
            (collections if unit.startswith(b"c:") else projects).add(base)
        return collections, projects

    found: tuple[set[str], set[str]] = cache._read(body)
    return found


def _refresh_known(cache: ProjectCache, folders: tuple[set[str], set[str]]) -> None:
    """Re-read from source: the configured roots, every cached unit and ``folders``."""
    from .sources import is_collection, is_project

    cache.refresh(full=True)
    collections, projects = folders
    known = {c.path for c in cache.list_collections()} | {p.path for p in cache.list_projects()}
    extra_c = sorted(c for c in collections - known if os.path.isdir(c) and is_collection(c))
    extra_p = sorted(p for p in projects - known if os.path.isdir(p) and is_project(p))
    if extra_c or extra_p:
        cache.refresh(collections=extra_c, projects=extra_p, full=True)


def verify_cache(
    cache: ProjectCache,
    *,
    repair: bool,
    sources: bool,
    progress: Optional[Callable[[int, int], None]] = None,
) -> VerifyReport:
    """Verify ``cache``; with ``repair`` fix every repairable finding, however deep.

    * index findings: derived indexes rebuilt from the records;
    * frame and model findings: the bad records dropped, then their sources
      re-read (a full refresh of the cached collections and projects);
    * source findings (``sources``): an incremental refresh;
    * file findings, or an environment that cannot be read: :func:`rebuild`.
    """
    from .errors import CacheCorruptError
    from .models import Finding, VerifyReport
    from .verify import run_verify

    folders = _source_folders(cache) if repair else (set(), set())
    try:
        report = run_verify(
            cache._storage, cache._repos, repair=repair, sources=sources, progress=progress
        )
    except CacheCorruptError as exc:
        finding = Finding(
            kind="file", db="data.mdb", message=f"the environment cannot be read: {exc}"
        )
        report = VerifyReport(findings=[finding])
    if not repair or not report.findings:
        return report
    if any(f.kind == "file" for f in report.findings):
        result = cache._rebuild()
        return report.model_copy(
            update={
                "repaired": len(report.findings),
                "moved_to": str(result.moved_to),
                "salvaged": result.salvaged,
                "lost": result.lost,
                "lost_complete": result.complete,
                "problems": result.problems,
            }
        )
    dropped = any(f.kind in ("frame", "model") and f.db in RECORD_DBS for f in report.findings)
    source_findings = sum(1 for f in report.findings if f.kind == "source")
    if dropped:
        _refresh_known(cache, folders)
    elif source_findings:
        cache.refresh()
    return report.model_copy(update={"repaired": report.repaired + source_findings})


def repair_unopenable(settings: Settings) -> VerifyReport:
    """Rebuild a cache that cannot even be opened; report it as a repaired file finding."""
    from .models import Finding, VerifyReport

    result = rebuild(settings)
    finding = Finding(
        kind="file",
        db="data.mdb",
        message=f"the environment could not be opened; {result.summary()}",
    )
    return VerifyReport(
        findings=[finding],
        repaired=1,
        moved_to=str(result.moved_to),
        salvaged=result.salvaged,
        lost=result.lost,
        lost_complete=result.complete,
        problems=result.problems,
    )
