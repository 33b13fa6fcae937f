"""Integrity checks in layers, and repair of what is derived.

(a) **file**: ``lmdb.verify.verify()`` walks every page of a private copy of
    the environment (a consistent snapshot taken with ``env.copy``), as its
    documentation requires: it proves nothing about a file writers still touch.
(b) **frame**: every value's format byte and CRC32.
(c) **model**: every record validates against its model and agrees with its key.
(d) **index**: ``artifact-ids`` and ``artifact-keys`` (with the mappings that wait in
    ``search-pending`` for the next merge, layout 3) are a bijection over the
    artifact records; every id is listed in exactly the bitmaps its record
    implies (terms per field, type, collection, tags, managed, name length:
    :func:`projcache.mutations.index_names`), main bitmaps and tail united,
    deleted ids subtracted; both deployment indexes match the deployments;
    deployments reference existing projects and carry the state the status
    rule gives; a refresh's stat summary (``meta``) bound to its unit's
    fingerprints says what they say (:func:`projcache.sources.statdigest.disagreement`).

``repair`` deletes records failing (b) or (c) (the next refresh re-reads their
sources) and rebuilds every derived index from the surviving records, in one
write transaction.  File-level damage is reported, not repaired here.

Over 400 lines because the index layer (d) checks every derived structure against the
records in the same read transaction and pass; splitting it per structure would read the
records once per structure.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import lmdb.verify
from pydantic import BaseModel, ValidationError

from . import codec, mutations
from .deployment_state import deployment_state
from .errors import CorruptRecordError, ProjcacheError
from .postings import ODD_NAMES
from .repository import Repositories, target_value
from .storage import Storage, Txn
from .vocabulary import DERIVED_DBS, RECORD_DBS

if TYPE_CHECKING:
    from .models import Artifact, Deployment, Finding, VerifyReport

__all__ = ["DERIVED", "run_verify"]

logger = logging.getLogger(__name__)

# The derived indexes (vocabulary.DERIVED_DBS), exported under the name callers know.
DERIVED = DERIVED_DBS


def _text(raw_key: bytes) -> str:
    """A stored key as text for messages (a key that is not UTF-8 shows its escapes)."""
    return raw_key.decode("utf-8", "backslashreplace")


def _check_file(storage: Storage) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="projcache-verify-") as tmp:
        try:
            storage.copy(Path(tmp), compact=False)
        except ProjcacheError as exc:
            return [f"cannot copy the environment to check it: {exc}"]
        try:
            problems = list(lmdb.verify.verify(tmp))  # type: ignore[no-untyped-call]
        except lmdb.verify.VerifyError as exc:
            return [f"cannot verify: {exc}"]
    damage = [p for p in problems if not _PAGE_COUNT_DRIFT.search(p)]
    for problem in problems:
        if problem not in damage:
            logger.info("ignoring LMDB page-count bookkeeping drift: %s", problem)
    return damage


# A dupsort sub-database's branch/leaf page *counters* can drift from the pages
# walked once dup sub-trees are promoted and freed (LMDB ITS#9388); they are
# statistics only, never read by the allocator, and every page is still walked
# and checked.  Seen after killed refreshes (1 run in 4 of the kill test).
_PAGE_COUNT_DRIFT = re.compile(
    r"DB: walked \d+ (branch|leaf) pages \(\d+ with dup sub-trees\), record says \d+$"
)


def _describe(db: str, value: bytes) -> str:
    """Readable form of an index value."""
    return value.decode("utf-8", "replace").replace("\x00", " ")


def _name_text(name: bytes) -> str:
    """A bitmap name for messages: ``term (field x)`` or ``facet=value``."""
    if name.startswith(b"\x01"):
        facet, _, value = name[1:].partition(b"\x00")
        return f"{facet.decode()}={value.decode('utf-8', 'replace')}"
    term, _, code = name.partition(b"\x00")
    return f"{term.decode('utf-8', 'replace')} (field {code.decode('ascii', 'replace')})"


def _key_of(db: str, record: BaseModel) -> Optional[str]:
    """The key a record must be stored under, or ``None`` when it is not derivable."""
    if db == "projects":
        return str(record.id)  # type: ignore[attr-defined]
    if db == "artifacts":
        return str(record.key)  # type: ignore[attr-defined]
    if db == "collections":
        return str(record.name)  # type: ignore[attr-defined]
    if db == "sources":
        return None  # keyed by unit and relative path (see SourceRepository)
    return codec.deployment_key(record.project_id, record.artifact_key, record.profile).decode()  # type: ignore[attr-defined]


class _Checker:
    def __init__(self, storage: Storage, repos: Repositories):
        from . import models

        self.storage = storage
        self.repos = repos
        self.models = models
        self.file_findings: list[Finding] = []
        self.progress: Optional[Callable[[int, int], None]] = None
        self.reset()

    def reset(self) -> None:
        """Forget what a previous (interrupted) pass over the records found."""
        self.findings: list[Finding] = list(self.file_findings)
        self.checked: dict[str, int] = {}
        self.bad: dict[str, set[bytes]] = {}
        self.good: dict[str, dict[str, Any]] = {name: {} for name in RECORD_DBS}

    def add(self, kind: str, db: str, key: Any, message: str, repairable: bool = True) -> None:
        text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        self.findings.append(
            self.models.Finding(kind=kind, db=db, key=text, message=message, repairable=repairable)  # type: ignore[arg-type]
        )

    def records(self, txn: Txn) -> None:
        dbs = self.storage.dbs
        total = sum(int(txn.stat(dbs[db])["entries"]) for db in RECORD_DBS)
        done = 0
        for db, model_name in RECORD_DBS.items():
            model = getattr(self.models, model_name)
            cursor = txn.cursor(dbs[db])
            count = 0
            for raw_key, raw in cursor.iternext():
                count += 1
                if self.progress is not None and (done + count) % 1024 == 0:
                    self.progress(done + count, total)
                try:
                    payload = codec.unframe(raw, what=f"{db}[{_text(raw_key)!r}]")
                except CorruptRecordError as exc:
                    self.add("frame", db, raw_key, str(exc))
                    self.bad.setdefault(db, set()).add(raw_key)
                    continue
                try:
                    record = model.model_validate_json(payload)
                    expected = _key_of(db, record)
                    if expected is not None and expected.encode() != raw_key:
                        raise ValueError(f"record key {expected!r} differs from its key")
                except ValidationError as exc:
                    first = exc.errors()[0]
                    field = ".".join(str(part) for part in first["loc"])
                    where = f"field '{field}': " if field else ""
                    message = f"invalid {model_name}: {where}{first['msg']}"
                    self.add("model", db, raw_key, message)
                    self.bad.setdefault(db, set()).add(raw_key)
                    continue
                except ValueError as exc:
                    self.add("model", db, raw_key, f"invalid {model_name}: {exc}".splitlines()[0])
                    self.bad.setdefault(db, set()).add(raw_key)
                    continue
                self.good[db][raw_key.decode("utf-8", "surrogateescape")] = record
            self.checked[db] = count
            done += count
        for raw_key, raw in txn.cursor(dbs["meta"]).iternext():
            try:
                value = codec.decode(raw, what=f"meta[{_text(raw_key)!r}]")
            except CorruptRecordError as exc:
                self.add("frame", "meta", raw_key, str(exc))
                self.bad.setdefault("meta", set()).add(raw_key)
                continue
            if raw_key.startswith(b"stat-summary:"):  # (projcache.sources.statdigest)
                self.summary(txn, raw_key, value)

    def summary(self, txn: Txn, raw_key: bytes, value: Any) -> None:
        """A stat summary bound to its unit's fingerprints must say what they say."""
        from .sources.statdigest import STAT_SUMMARY, summary_problem

        unit = raw_key[len(STAT_SUMMARY) :].decode("utf-8", "surrogateescape")
        sources = self.repos.sources
        try:
            frames = sources.unit_frames(txn, unit)
            problem = summary_problem(
                value, sources.frames_hash(frames), lambda: sources.raw_fingerprints(unit, frames)
            )
        except (ProjcacheError, ValueError) as exc:  # (a damaged fingerprint: found above)
            problem = f"cannot be checked against its fingerprints: {exc}".splitlines()[0]
        if problem is not None:
            self.add("index", "meta", raw_key, f"stat summary {problem}")
            self.bad.setdefault("meta", set()).add(raw_key)

    def _points_at_bad_record(self, db: str, key: bytes, value: bytes) -> bool:
        if db == "deployments-by-artifact":
            project, _sep, profile = value.partition(codec.SEPARATOR)
            value = project + codec.SEPARATOR + key + codec.SEPARATOR + profile
        return value in self.bad.get("deployments", ())

    def expected_indexes(self) -> dict[str, set[tuple[bytes, bytes]]]:
        deployments: dict[str, Deployment] = self.good["deployments"]
        by_artifact, by_state = set(), set()
        for dkey, dep in deployments.items():
            by_artifact.add((dep.artifact_key.encode(), target_value(dep.project_id, dep.profile)))
            by_state.add((dep.state.encode(), dkey.encode()))
        return {
            "deployments-by-artifact": by_artifact,
            "deployments-by-state": by_state,
        }

    def indexes(self, txn: Txn) -> None:
        dbs = self.storage.dbs
        for db, expected in self.expected_indexes().items():
            actual = {(bytes(k), bytes(v)) for k, v in txn.cursor(dbs[db]).iternext()}
            self.checked[db] = len(actual)
            for key, value in sorted(actual - expected):
                if self._points_at_bad_record(db, key, value):
                    continue  # a consequence of a frame/model finding, not news
                self.add("index", db, key, f"dangling entry -> {_describe(db, value)}")
            for key, value in sorted(expected - actual):
                self.add("index", db, key, f"missing entry -> {_describe(db, value)}")
        try:
            self.bitmaps(txn)
        except CorruptRecordError as exc:
            self.add("frame", "search-tokens", None, str(exc))
        artifacts = self.good["artifacts"]
        projects = self.good["projects"]
        known_collections = {key.split("/", 1)[0] for key in artifacts} | {
            collection.name for collection in self.good.get("collections", {}).values()
        }
        known_collections |= {
            bytes(key).decode("utf-8", "replace").split("/", 1)[0]
            for key in self.bad.get("artifacts", ())
        }
        for dkey, dep in self.good["deployments"].items():
            if dep.project_id not in projects:
                self.add("index", "deployments", dkey, f"project {dep.project_id} does not exist")
            if dep.artifact_key.encode() in self.bad.get("artifacts", ()):
                continue  # its state is decided once the bad artifact is re-read
            collection = dep.artifact_key.split("/", 1)[0]
            known = collection in known_collections
            state = deployment_state(dep, artifacts.get(dep.artifact_key), collection_known=known)
            if state != dep.state:
                self.add("index", "deployments", dkey, f"state is {dep.state}, rule says {state}")

    def bitmaps(self, txn: Txn) -> None:
        """The v3 invariants: key <-> id bijection, each id in exactly its record's bitmaps."""
        from pyroaring import BitMap

        artifacts: dict[str, Artifact] = self.good["artifacts"]
        bad = self.bad.get("artifacts", set())
        ids = self.repos.ids
        by_key = dict(ids.items(txn))
        by_id = dict(ids.reverse_items(txn))
        self.checked["artifact-ids"] = len(by_key)
        self.checked["artifact-keys"] = len(by_id)
        for key, doc in sorted(by_key.items()):
            if by_id.get(doc) != key:
                self.add("index", "artifact-ids", key, f"id {doc} maps back to {by_id.get(doc)!r}")
            if key not in artifacts and key.encode() not in bad:
                self.add("index", "artifact-ids", key, f"id {doc} of an unknown artifact")
        for doc, key in sorted(by_id.items()):
            if by_key.get(key) != doc:
                self.add("index", "artifact-keys", str(doc), f"-> {key!r}, which has no such id")
        expected: dict[bytes, BitMap] = {}
        for key, artifact in artifacts.items():
            known = by_key.get(key)
            if known is None:
                self.add("index", "artifact-ids", key, "artifact has no id")
                continue
            for name in mutations.index_names(artifact):
                expected.setdefault(name, BitMap()).add(known)
        control = self.repos.index.control(txn)
        deleted = control["deleted"]
        live = BitMap(by_id)
        if deleted & live:
            self.add("index", "search-pending", "deleted", "deleted ids still have keys")
        if control["free"] & (live | deleted):
            self.add("index", "search-pending", "free", "free ids are still in use")
        if control["log"] != control["counted"]:
            message = f"counts {control['counted']} log entries, the log has {control['log']}"
            self.add("index", "search-pending", "version", message)
        for term in self.repos.index.mixed_terms(txn):
            self.add("index", "search-tokens", term, "stored both inline and in blocks")
        for term, problem in self.repos.index.any_field_problems(txn):
            self.add("index", "search-tokens", term, problem)
        ignore = BitMap(by_key[k.decode()] for k in bad if k.decode() in by_key)
        # A cache built before layout 2 may list some odd names and not others: its queries
        # do not read the facet, so neither is it checked (a rebuild lists them all).
        odd_listed = self.repos.index.odd_names_listed(txn)
        if not odd_listed:
            expected.pop(ODD_NAMES, None)
        seen = 0
        for name, found in self.repos.index.names_of(txn):
            seen += 1
            if name == ODD_NAMES and not odd_listed:
                continue
            found = found - deleted - ignore
            wanted = expected.pop(name, BitMap())
            for doc in found - wanted:
                self.add("index", "search-tokens", _name_text(name), f"dangling id {doc}")
            for doc in wanted - found:
                self.add("index", "search-tokens", _name_text(name), f"missing id {doc}")
        for name, wanted in sorted(expected.items()):
            for doc in wanted:
                self.add("index", "search-tokens", _name_text(name), f"missing id {doc}")
        self.checked["search-tokens"] = seen


def _repair(txn: Txn, storage: Storage, repos: Repositories, checker: _Checker) -> None:
    for db, keys in checker.bad.items():
        for key in keys:
            txn.delete(key, db=storage.dbs[db])
    repos.index.clear(txn)
    for name in DERIVED:
        txn.drop(storage.dbs[name], delete=False)
    projects = checker.good["projects"]
    for artifact in checker.good["artifacts"].values():
        mutations.index_artifact(txn, repos, artifact)
    repos.index.merge(txn)
    for dkey, dep in checker.good["deployments"].items():
        repos.deployments.delete_for(txn, dep.project_id, dep.artifact_key, dep.profile)
        if dep.project_id in projects:
            mutations.put_deployment(txn, repos, dep)
        else:
            logger.warning("repair dropped deployment %s of a missing project", dkey)


def _iter_findings(report: VerifyReport) -> Iterator[str]:
    for finding in report.findings:
        yield f"{finding.kind} {finding.db} {finding.key}: {finding.message}"


def _check_sources(fingerprints: list[Any]) -> list[tuple[str, str]]:
    """Compare every fingerprint with the file now; return ``(path, what changed)``."""
    from .sources.fileio import scan_tree

    changed = []
    for fingerprint in fingerprints:
        try:
            scan = scan_tree(fingerprint.path)
        except ProjcacheError as exc:
            changed.append((fingerprint.path, f"cannot be read now: {exc}"))
            continue
        if scan is None:
            changed.append((fingerprint.path, "is gone from disk"))
            continue
        signature = scan.signature if scan.is_dir else None
        now = (scan.mtime_ns, scan.size, scan.inode, signature)
        then = (fingerprint.mtime_ns, fingerprint.size, fingerprint.inode, fingerprint.signature)
        if now != then:
            changed.append((fingerprint.path, "changed on disk since it was read"))
    return changed


def run_verify(
    storage: Storage,
    repos: Repositories,
    repair: bool = False,
    sources: bool = False,
    progress: Optional[Callable[[int, int], None]] = None,
) -> VerifyReport:
    """Run every layer of checks; with ``repair``, fix what is repairable in one transaction.

    File-layer findings are not repaired here: the caller rebuilds the whole
    environment for those (see :mod:`projcache.recovery`).  Source findings
    are repaired by the caller's refresh.
    """
    from .models import VerifyReport

    checker = _Checker(storage, repos)
    checker.progress = progress
    for problem in _check_file(storage):
        checker.add("file", "data.mdb", None, problem)
    checker.file_findings = list(checker.findings)

    def scan(txn: Txn) -> None:
        checker.reset()  # storage.read may run this again after a map resize
        checker.records(txn)
        checker.indexes(txn)

    if checker.file_findings:
        # Walking a damaged B-tree in this process can crash it outright (a wild
        # page offset is a SIGBUS, not an exception): leave the records to the
        # salvage child of a repair.
        logger.warning("verify: %s is damaged; records not scanned", storage.path)
    else:
        storage.read(scan)
    if sources and not checker.file_findings:
        for path, what in _check_sources(list(checker.good["sources"].values())):
            checker.add("source", "sources", path, f"{path} {what}")
        checker.checked["source files"] = checker.checked.get("sources", 0)
    repaired = 0
    in_place = [f for f in checker.findings if f.repairable and f.kind not in ("file", "source")]
    if repair and in_place and not checker.file_findings:
        storage.write(lambda txn: _repair(txn, storage, repos, checker))
        repaired = len(in_place)
    report = VerifyReport(checked=checker.checked, findings=checker.findings, repaired=repaired)
    for line in _iter_findings(report):
        logger.warning("verify: %s", line)
    return report
