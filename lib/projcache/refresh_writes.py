"""The write side of a refresh: what one unit's transaction stores and removes, and its tally.

Each function runs inside a write transaction (:mod:`projcache.refresh_units`
opens it) and counts what it wrote or removed in a :class:`Tally`, whose
names are :class:`~projcache.models.RefreshReport`'s own fields (the report
is built from it, so there is no second list of counters to keep in step).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, Optional

from . import codec, mutations
from .errors import InvalidRecordError
from .sources import CollectionRead, ProjectRead, local_collection
from .sources.statdigest import STAT_SUMMARY as _STAT_SUMMARY
from .sources.tracker import RACY_WINDOW_NS

if TYPE_CHECKING:
    from datetime import datetime

    from .models import (
        Collection,
        Fingerprint,
        KnownFingerprint,
        Project,
        RawFingerprint,
        RefreshReport,
        SourceError,
    )
    from .repository import Repositories
    from .storage import Txn

__all__ = [
    "STAT_SUMMARY",
    "Tally",
    "apply_project",
    "remove_collection",
    "remove_project",
    "sync_artifacts",
    "sync_sources",
]

# The refresh logs under one name, "projcache.refresh", whichever of its modules speaks:
# what users (and the CLI, which prints these records itself) configure for it keeps working.
logger = logging.getLogger("projcache.refresh")

# (re-exported: the refresh's writes drop a unit's stat summary with it)
STAT_SUMMARY = _STAT_SUMMARY


def _counted_fields() -> tuple[str, ...]:
    from .models import RefreshReport

    return tuple(
        name for name, info in RefreshReport.model_fields.items() if info.annotation in (int, "int")
    )


class Tally:
    """The counts and errors of a refresh (or of one attempt at a unit's write), by report field.

    ``add(artifacts_written=1)`` counts; a name that is not an ``int`` field of
    :class:`~projcache.models.RefreshReport` raises ``KeyError``.  :meth:`report`
    builds the report.
    """

    __slots__ = ("counts", "errors")

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(_counted_fields(), 0)
        self.errors: list[SourceError] = []

    def add(self, **counts: int) -> None:
        """Add to the named counts."""
        for name, value in counts.items():
            self.counts[name] += value  # (KeyError: not a count of the report)

    def __getitem__(self, name: str) -> int:
        return self.counts[name]

    def merge_writes(self, other: Tally) -> None:
        """Add ``other``'s ``*_written`` and ``*_removed`` counts (a committed attempt's)."""
        for name, value in other.counts.items():
            if name.endswith(("_written", "_removed")):
                self.counts[name] += value

    def report(self, started_at: datetime, duration_seconds: float) -> RefreshReport:
        """The :class:`~projcache.models.RefreshReport` of these counts and errors."""
        from .models import RefreshReport

        return RefreshReport(
            started_at=started_at,
            duration_seconds=duration_seconds,
            errors=self.errors,
            **self.counts,
        )


def sync_artifacts(
    txn: Txn,
    repos: Repositories,
    collection: str,
    desired: dict[str, Any],
    tally: Tally,
    read: Optional[CollectionRead] = None,
    stored: Optional[AbstractSet[str]] = None,
) -> None:
    """Store ``desired`` and drop the collection's other artifacts, except ``read.kept``.

    Kept artifacts are left as stored (they are what building them would
    give); one that has vanished since it was looked up (another process)
    is built after all.  ``stored``: the collection's keys as ``txn`` sees them,
    when the caller knows them already (they are not scanned again).
    """
    existing = (
        set(repos.artifacts.scan_keys(txn, prefix=collection + "/")) if stored is None else stored
    )
    keep = read.kept if read is not None else {}
    if read is not None and not keep.keys() <= existing:
        desired = dict(desired)
        for key in keep.keys() - existing:
            try:
                desired[key] = read.build(keep[key])
            except InvalidRecordError as exc:
                logger.warning("%s: %s", key, exc)
    changed = [
        artifact
        for key, artifact in desired.items()
        if repos.artifacts.get_whole_payload(txn, key) != artifact.model_dump_json().encode()
    ]
    if changed:
        # One batch (what a put of each in turn does): words stemmed once per batch, the
        # collection looked up once, and past MERGE_AT new ids listed per name in one go.
        mutations.put_artifacts(txn, repos, changed, mutations.index_fields_many(changed))
        tally.add(artifacts_written=len(changed))
    for key in sorted(existing - desired.keys() - keep.keys()):
        mutations.delete_artifact(txn, repos, key)
        tally.add(artifacts_removed=1)


def sync_sources(
    txn: Txn,
    repos: Repositories,
    unit: str,
    previous: dict[str, KnownFingerprint],
    current: dict[str, KnownFingerprint],
) -> None:
    """Store the unit's fresh fingerprints and forget the sources no longer read.

    A fresh fingerprint equal to the stored one but for ``read_at`` is not written
    again when the stored one is trusted (:func:`_same_but_read_at`):
    ``refresh(full=True)`` re-reads every source, and rewriting 100,000 equal
    values dirtied every page of ``sources`` (and their commit).
    """
    from .models import Fingerprint, RawFingerprint

    sources = repos.sources
    for relative, fingerprint in current.items():
        # Only a fresh read (always a Fingerprint model) differs from the previous one.
        old = previous.get(relative)
        if old is fingerprint or not isinstance(fingerprint, Fingerprint):
            continue
        if isinstance(old, RawFingerprint) and _same_but_read_at(old, fingerprint):
            continue
        sources.put_for(txn, unit, relative, fingerprint)
    for relative in set(previous) - set(current):
        sources.delete_for(txn, unit, relative)


_READ_AT = b',"read_at":'
_DATA = b',"data":'
# As the stat summaries' margin (statdigest): read_at is stored to the microsecond.
_TRUST_MARGIN_NS = 1_000_000


def _same_but_read_at(old: RawFingerprint, new: Fingerprint) -> bool:
    """Tell that ``new`` would store what ``old`` holds but for its ``read_at``, and that
    ``old`` is trusted by its own ``read_at`` (past the racy window): keeping it is then
    what storing ``new`` gives every later refresh (the same stat, data and trust).

    Byte-wise on the JSON: the first ``,"read_at":`` is the field (a ``"`` inside a
    string is escaped), and its value (a time or ``null``) holds no ``,``.
    """
    payload, fresh = old.payload, new.model_dump_json().encode()
    start, fresh_start = payload.find(_READ_AT), fresh.find(_READ_AT)
    if start < 0 or payload[:start] != fresh[:fresh_start]:
        return False
    end, fresh_end = payload.find(_DATA, start), fresh.find(_DATA, fresh_start)
    if end < 0 or payload[end:] != fresh[fresh_end:]:
        return False
    read_ns = _stamp_ns(bytes(payload[start + len(_READ_AT) : end]))
    return read_ns is not None and new.mtime_ns + RACY_WINDOW_NS + _TRUST_MARGIN_NS < read_ns


@functools.lru_cache(maxsize=64)
def _stamp_ns(stamp: bytes) -> Optional[int]:
    """A stored ``read_at`` JSON value as nanoseconds (``None``: null or not a time).

    Cached: the sources of a unit were mostly read in one refresh, at one time."""
    from .model_reads import parse_utc

    if not (len(stamp) > 2 and stamp[:1] == b'"' and stamp[-1:] == b'"'):
        return None
    try:
        return int(parse_utc(stamp[1:-1].decode()).timestamp() * 1e9)
    except (ValueError, UnicodeDecodeError):
        return None


def remove_collection(
    txn: Txn, repos: Repositories, old: Collection, unit: Optional[str], tally: Tally
) -> None:
    """Remove a collection's record and artifacts (and, with ``unit``, its fingerprints)."""
    keys = list(repos.artifacts.scan_keys(txn, prefix=old.name + "/"))
    repos.collections.delete(txn, old.name)
    for key in keys:
        mutations.delete_artifact(txn, repos, key)
    # Its deployments now come from a collection the cache does not know:
    # "unknown-collection", not "missing".
    mutations.restate_collection(txn, repos, old.name)
    tally.add(artifacts_removed=len(keys), collections_removed=1)
    if unit is not None:
        repos.sources.delete_unit(txn, unit)
        repos.meta.delete(txn, STAT_SUMMARY + unit)


def apply_project(
    txn: Txn, repos: Repositories, read: ProjectRead, record: Project, tally: Tally
) -> None:
    """Store a project's record, local artifacts and deployments; drop those no longer there."""
    mutations.put_project(txn, repos, record)
    tally.add(projects_written=1)
    sync_artifacts(txn, repos, local_collection(read.id), read.artifacts, tally)
    existing = {
        codec.parse_deployment_key(key)[1:]
        for key, _p in repos.deployments.scan_project(txn, read.id)
    }
    for (key, profile), deployment in read.deployments.items():
        stored = deployment.model_copy(update={"state": mutations.state_of(txn, repos, deployment)})
        current = repos.deployments.get_for(txn, read.id, key, profile)
        if current != stored:
            mutations.put_deployment(txn, repos, stored)
            tally.add(deployments_written=1)
    for key, profile in sorted(existing - set(read.deployments)):
        mutations.delete_deployment(txn, repos, read.id, key, profile)
        tally.add(deployments_removed=1)


def remove_project(txn: Txn, repos: Repositories, project_id: str, unit: str, tally: Tally) -> None:
    """Remove a project: its record, deployments, local artifacts and fingerprints."""
    removed = sum(1 for _ in repos.deployments.scan_project(txn, project_id))
    mutations.delete_project(txn, repos, project_id)
    keys = list(repos.artifacts.scan_keys(txn, prefix=local_collection(project_id) + "/"))
    for key in keys:
        mutations.delete_artifact(txn, repos, key)
    repos.sources.delete_unit(txn, unit)
    tally.add(deployments_removed=removed, artifacts_removed=len(keys), projects_removed=1)
