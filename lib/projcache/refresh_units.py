"""One unit of a refresh: read a collection or a project folder, then write what changed.

:class:`UnitRefresher` is what :func:`projcache.refresh.run_refresh` calls per
folder.  A collection first goes through the short path
(:func:`~projcache.sources.unchanged_collection`: stats and stored bytes only);
otherwise the folder is read (:mod:`projcache.sources`) and, when anything
differs, its records, index entries and fingerprints change in one write
transaction (:mod:`projcache.refresh_writes`).  Unchanged units are only
collected here; :meth:`UnitRefresher.touch` moves their ``refreshed_at`` at the end.

Batching: the writes of several changed units (and the final ``touch``) share one
write transaction, one durable commit, while their estimated size stays under
:data:`BATCH_BYTES`; a bigger unit (a first refresh of a big collection) is
committed alone, as before.  Only a unit whose write nothing read later depends
on waits in the batch: a collection refreshed in place (same folder, same name,
no other folder's claim), a new collection (a folder not cached before, under a
name no record holds) or a project; a later folder claiming the name of a new
collection that waits commits the batch before it looks the name up.  Any other
write (a collection renamed, gone, or taking over a name) is committed at once
with what waits, so every later read of the refresh sees it as before.  A first
refresh of many small collections thus commits once per :data:`BATCH_BYTES`,
not once per collection (each commit also merges the search index: fewer of
them rewrite its blocks fewer times).  A unit's write
is still all-or-nothing; a crash loses at most the uncommitted batch, and the
next refresh re-reads it (its fingerprints are written in the same transaction).

Stat summaries (:mod:`projcache.sources.statdigest`): a collection whose walk
has the digest of the summary stored against its unchanged fingerprints is
settled by that walk alone; the survey leaves a new summary when it finds
nothing changed, and a changed collection's write stores one when it can.
Whether the fingerprints are unchanged is told by their hash, which a handle
remembers past its touch (:meth:`UnitRefresher.touch`) for the next refresh
that reads the very snapshot the touch committed: then they are not read at all.

Over 400 lines on purpose: a collection's way through a refresh (summary,
survey, read, batched write) reads top to bottom in :meth:`UnitRefresher.collection`
and its helpers, which share the unit's snapshot rules.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

from . import codec, mutations
from .errors import ProjcacheError
from .refresh_writes import (
    STAT_SUMMARY,
    Tally,
    apply_project,
    remove_collection,
    remove_project,
    sync_artifacts,
    sync_sources,
)
from .sources import (
    Stored,
    is_collection,
    is_project,
    read_collection,
    read_project,
    survey_collection,
)
from .sources.collection import StoredFrontMatter, survey_changed, walk_collection
from .sources.fileio import SourceRoot
from .sources.statdigest import StatSummary, summary_after_read
from .sources.tracker import SourceTracker

if TYPE_CHECKING:
    from .models import Collection, KnownFingerprint, Project
    from .refresh import RefreshContext
    from .repository import Repositories
    from .storage import Txn

__all__ = ["BATCH_BYTES", "ReaderLimits", "UnitRefresher", "collection_unit", "project_unit"]

# The refresh logs under one name, "projcache.refresh", whichever of its modules speaks:
# what users (and the CLI, which prints these records itself) configure for it keeps working.
logger = logging.getLogger("projcache.refresh")

# Upper estimates of what one artifact (record, terms, postings, facets) and one source
# fingerprint take in the file, for sizing the map ahead of a big write; measured at
# ~3.1 KiB per artifact all told at 100,000 (bench/RESULTS.md).  Over-estimating only
# reserves address space.
_BYTES_PER_ARTIFACT = 8 * 1024
_BYTES_PER_SOURCE = 1024

# The bound on one batch of unit writes (the estimates above): ~2,000 artifacts rewritten.
# It bounds how long the writer lock is held and how much a crash makes the next refresh
# redo; a unit bigger than this is written in its own transaction.
BATCH_BYTES = 16 * 1024**2


class _Peeked(NamedTuple):
    """What :meth:`UnitRefresher._peek` read of a collection unit, all from one snapshot."""

    record: dict[str, Any]  # its stat summary's ``meta`` value
    hashed: str  # the frames_hash of its fingerprints
    frames: Optional[list[tuple[bytes, bytes]]]  # those fingerprints (None: hash known)
    snapshot: int  # the read transaction's id


class ReaderLimits(NamedTuple):
    """What every source reader of a refresh is given, collections and projects alike.

    One value made once from the settings, so the two readers cannot drift apart.
    """

    cap: int  # max_file_size: one source file
    manifest_cap: int  # max_manifest_size: collection.toml, .skillmeat-deployed.toml, ...
    max_bytes: int  # max_artifact_size: all files of one artifact
    stored_front_matter: StoredFrontMatter  # the front matter of a stored artifact record


def collection_unit(path: str) -> str:
    """The ``sources`` unit of the collection folder at ``path``."""
    return "c:" + codec.project_id_for_path(path)


def project_unit(project_id: str) -> str:
    """The ``sources`` unit of a project."""
    return "p:" + project_id


class UnitRefresher:
    """Refreshes units one by one, tallying into :attr:`tally` (the report's counts)."""

    def __init__(self, ctx: RefreshContext, full: bool):
        from .models import utcnow

        self.ctx = ctx
        self.full = full
        self.now = utcnow()
        self.tally = Tally()
        self.touched_collections: list[Collection] = []
        self.touched_projects: list[Project] = []
        # Unit writes waiting for one shared transaction (see the module's docstring).
        self._pending: list[Callable[[Txn, Tally], None]] = []
        self._pending_bytes = 0
        # The names of the new collections whose writes wait in the batch.
        self._pending_names: set[str] = set()
        # Stat summaries of collections the survey found unchanged, stored by the touch.
        self._summaries: dict[str, dict[str, object]] = {}
        # Collections found unchanged: unit -> (the snapshot their fingerprints were read
        # in, those fingerprints' hash), remembered after the touch (see touch).
        self._settled: dict[str, tuple[int, str]] = {}
        settings = ctx.settings
        self.limits = ReaderLimits(
            cap=settings.max_file_size,
            manifest_cap=settings.max_manifest_size,
            max_bytes=settings.max_artifact_size,
            stored_front_matter=self._stored_front_matter,
        )

    @property
    def repos(self) -> Repositories:
        """The cache's repositories (looked up afresh: a map resize may replace them)."""
        return self.ctx.repos()

    def usable(self, paths: list[str], what: str) -> list[str]:
        """Drop (and report) folders whose path is not valid UTF-8: records hold text."""
        from .models import SourceError
        from .sources.tracker import printable

        kept = []
        for path in paths:
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                shown = printable(path)
                message = f"{shown}: the {what} folder's path is not valid UTF-8; not cached"
                logger.warning("%s", message)
                self.tally.errors.append(SourceError(path=shown, message=message))
                continue
            kept.append(path)
        return kept

    def _fingerprints(self, unit: str) -> dict[str, KnownFingerprint]:
        found: dict[str, KnownFingerprint] = self.ctx.read(
            lambda txn: dict(self.repos.sources.scan_unit_raw(txn, unit))
        )
        return found

    def _summary_record(self, txn: Txn, unit: str) -> Optional[dict[str, Any]]:
        """``unit``'s stat summary as stored (``None``: none, not an object, damaged)."""
        try:
            record = self.repos.meta.get(txn, STAT_SUMMARY + unit)
        except ProjcacheError:
            return None  # a damaged summary is only not used: the survey decides
        return record if isinstance(record, dict) else None

    def _peek(self, unit: str) -> Optional[_Peeked]:
        """``unit``'s stat summary, the hash of its fingerprints and their snapshot's id.

        When this process knows the hash at this very snapshot
        (:meth:`SourceRepository.known_hash`: its last refresh found the unit
        unchanged and nothing was committed since), the fingerprints are not read
        at all; otherwise they are listed and hashed, and handed back too.
        ``None`` when there is no usable summary (nothing more is read then).
        """
        sources = self.repos.sources

        def body(txn: Txn) -> Optional[_Peeked]:
            record = self._summary_record(txn, unit)
            if record is None:
                return None
            snapshot = txn.id()
            known = sources.known_hash(unit, snapshot)
            if known is not None:
                return _Peeked(record, known, None, snapshot)
            frames = sources.unit_frames(txn, unit)
            return _Peeked(record, sources.frames_hash(frames), frames, snapshot)

        found: Optional[_Peeked] = self.ctx.read(body)
        return found

    def _stored(self, unit: str) -> tuple[list[tuple[bytes, bytes]], int]:
        """The unit's fingerprints as stored (``(key, frame)``) and their snapshot's id."""
        repos = self.repos

        def body(txn: Txn) -> tuple[list[tuple[bytes, bytes]], int]:
            return repos.sources.unit_frames(txn, unit), txn.id()

        found: tuple[list[tuple[bytes, bytes]], int] = self.ctx.read(body)
        return found

    def _stored_keys(self, old: Optional[Collection], snapshot: int) -> Optional[Stored]:
        """The keys of ``old``'s artifacts as of the fingerprints' snapshot (``None``: unknown).

        Read only for a collection that changed (most do not); the keys must describe
        the state the fingerprints do, so when another process committed since that
        snapshot, no stored artifact is vouched for (``None``: every one is built).
        """
        if old is None or self.full:
            return None
        repos = self.repos

        def body(txn: Txn) -> Optional[Stored]:
            if txn.id() != snapshot:
                return None
            return Stored(
                old.name, frozenset(repos.artifacts.scan_keys(txn, prefix=old.name + "/"))
            )

        found: Optional[Stored] = self.ctx.read(body)
        return found

    def _stored_front_matter(self, key: str) -> Optional[dict[str, Any]]:
        """The front matter of the artifact record stored under ``key`` (``None``: no record).

        Fingerprints do not keep it (it is stored once, in the record), so an
        artifact rebuilt from unchanged files takes it from here.
        """
        import orjson

        payload = self.ctx.read(lambda txn: self.repos.artifacts.get_payload(txn, key))
        if payload is None:
            return None
        front = orjson.loads(payload).get("front_matter")
        return front if isinstance(front, dict) else {}

    # -- collections ---------------------------------------------------------------

    def collection(self, path: str, known: dict[str, Collection]) -> None:
        """Refresh the collection folder at ``path`` (``known``: stored records by path)."""
        from .models import Collection, validate

        unit = collection_unit(path)
        old = known.get(path)
        self.tally.add(collections_checked=1)
        if not os.path.isdir(path) or not is_collection(path):
            if old is not None:
                gone = old
                self._write_counted(
                    lambda txn, tally: remove_collection(txn, self.repos, gone, unit, tally),
                    now=True,  # its name may be taken by a later folder of this refresh
                )
                logger.info("collection %s at %s is gone; removed it", old.name, path)
            return
        surveyed = old is not None and not self.full and not old.errors
        fingerprints = None  # (their hash, when worked out)
        summary = walk = None
        frames: Optional[list[tuple[bytes, bytes]]] = None
        peeked = self._peek(unit) if surveyed else None
        if peeked is not None and old is not None:
            fingerprints, frames, snapshot = peeked.hashed, peeked.frames, peeked.snapshot
            summary = StatSummary.from_json(peeked.record, fingerprints)
            if summary is not None:
                root = SourceRoot(path, max_bytes=self.limits.max_bytes)
                walk = walk_collection(path, root, summary.elsewhere, summary.listings)
                if walk.digest == summary.digest:
                    # The walk is the one the survey found unchanged, against the same
                    # fingerprints: its records stay; only refreshed_at moves.
                    self.tally.add(sources_checked=summary.checked)
                    self.touched_collections.append(
                        old.model_copy(update={"refreshed_at": self.now, "stale": False})
                    )
                    if walk.relisted:  # (the folders' listings, kept for the next walk)
                        kept = summary._replace(listings=walk.listings)
                        self._summaries[STAT_SUMMARY + unit] = kept.to_json(fingerprints)
                    self._settled[unit] = (snapshot, fingerprints)
                    return
        if frames is None:
            # No summary to go by, or its hash was known without the frames: read them.
            frames, now = self._stored(unit)
            if peeked is not None and now != snapshot:
                # Committed since the peek (another process): the summary and the walk may
                # describe other fingerprints than these; the survey decides (rare).
                summary = walk = fingerprints = None
            snapshot = now
        previous = self.repos.sources.raw_fingerprints(unit, frames)
        checker = SourceTracker(path, previous, self.full, max_bytes=self.limits.max_bytes)
        changed = None
        if surveyed and old is not None:
            if summary is not None and walk is not None:
                # A few sources differ from the summary: only they are looked at.
                changed = survey_changed(checker, summary, walk)
            if changed is None:
                changed = survey_collection(checker)
            if changed is not None and not changed:
                # Nothing it is read from changed: its records stay; only refreshed_at moves.
                self.tally.add(sources_checked=checker.checked)
                self.touched_collections.append(
                    old.model_copy(update={"refreshed_at": self.now, "stale": False})
                )
                if checker.survey is not None:
                    if fingerprints is None:
                        fingerprints = self.repos.sources.frames_hash(frames)
                    listings = {} if walk is None else walk.complete_listings()
                    self._summaries[STAT_SUMMARY + unit] = checker.survey.summary(listings).to_json(
                        fingerprints
                    )
                    self._settled[unit] = (snapshot, fingerprints)
                return
        stored = self._stored_keys(old, snapshot)
        read = read_collection(
            path,
            previous,
            tracker=checker,
            full=self.full,
            stored=stored,
            changed=changed,
            **self.limits._asdict(),
        )
        tracker = read.tracker
        assert tracker is not None
        self.tally.add(sources_checked=tracker.checked, sources_changed=tracker.changed)
        if read.name in self._pending_names:
            self.flush()  # a new collection of this name waits: the lookup must see it
        owner = self.ctx.read(lambda txn: self.repos.collections.get(txn, read.name))
        if owner is not None and owner.path != path and os.path.isdir(owner.path):
            message = (
                f"{path}: collection name {read.name!r} is already used by {owner.path}; "
                "not cached (rename one of them in its collection.toml)"
            )
            logger.warning("%s", message)
            tracker.error(path, message)
            self.tally.errors.extend(tracker.errors)
            return
        self.tally.errors.extend(tracker.errors)
        record = validate(Collection, {**read.fields, "refreshed_at": self.now, "stale": False})
        if (
            tracker.unchanged
            and old is not None
            and old.name == read.name
            and old.errors == record.errors
            and not self.full
        ):
            self.touched_collections.append(record)
            return

        def body(txn: Txn, tally: Tally) -> None:
            repos = self.repos
            # The keys read at the fingerprints' snapshot are the ones this transaction sees
            # when nothing was committed since (a write transaction's id is the last
            # committed one's plus one) and the name is the same; other units of the batch
            # never touch this collection's keys (only in-place writes wait in a batch).
            current = (
                stored.keys
                if stored is not None
                and old is not None
                and old.name == read.name
                and txn.id() == snapshot + 1
                else None
            )
            if old is not None and old.name != read.name:
                remove_collection(txn, repos, old, None, tally)
            if owner is not None and owner.path != path:
                # The name moved here from a folder that is gone: its records go.
                remove_collection(txn, repos, owner, collection_unit(owner.path), tally)
            sync_artifacts(txn, repos, read.name, read.artifacts, tally, read, current)
            new_name = repos.collections.get_payload(txn, read.name) is None
            repos.collections.put(txn, record)
            if new_name:
                # Deployments of its artifacts that are not there are "missing" now.
                mutations.restate_collection(txn, repos, read.name)
            sync_sources(txn, repos, unit, previous, tracker.current)
            tally.add(collections_written=1)
            # The summary of what was just written, if nothing else was committed since the
            # fingerprints were read (it vouches for exactly these); else none.
            if after is not None and txn.id() == snapshot + 1:
                now_hash = repos.sources.unit_hash(txn, unit)
                repos.meta.put(txn, STAT_SUMMARY + unit, after.to_json(now_hash))
            else:
                repos.meta.delete(txn, STAT_SUMMARY + unit)

        in_place = (
            old is not None and old.name == read.name and (owner is None or owner.path == path)
        )
        after = summary_after_read(tracker) if in_place and not record.errors else None
        if after is not None and walk is not None:
            after = after._replace(listings=walk.complete_listings())
        new = old is None and owner is None
        self._write_counted(
            body,
            len(read.artifacts) * _BYTES_PER_ARTIFACT + len(tracker.current) * _BYTES_PER_SOURCE,
            now=not (in_place or new),
        )
        if new and self._pending:  # (not committed already: it waits in the batch)
            self._pending_names.add(read.name)

    # -- projects ------------------------------------------------------------------

    def project(self, path: str, known: dict[str, Project]) -> None:
        """Refresh the project folder at ``path`` (``known``: stored records by id)."""
        from .models import Project, validate

        project_id = codec.project_id_for_path(path)
        unit = project_unit(project_id)
        old = known.get(project_id)
        self.tally.add(projects_checked=1)
        if not is_project(path):
            if old is not None:
                self._write_counted(
                    lambda txn, tally: remove_project(txn, self.repos, project_id, unit, tally),
                    _BYTES_PER_SOURCE,
                )
                logger.info("project %s at %s is gone; removed it", old.name, path)
            return
        previous = self._fingerprints(unit)
        read = read_project(path, previous, full=self.full, **self.limits._asdict())
        tracker = read.tracker
        assert tracker is not None
        self.tally.add(sources_checked=tracker.checked, sources_changed=tracker.changed)
        self.tally.errors.extend(tracker.errors)
        record = validate(Project, {**read.fields, "refreshed_at": self.now, "stale": False})
        if tracker.unchanged and old is not None and old.errors == record.errors and not self.full:
            self.touched_projects.append(record)
            return

        def body(txn: Txn, tally: Tally) -> None:
            apply_project(txn, self.repos, read, record, tally)
            sync_sources(txn, self.repos, unit, previous, tracker.current)

        # A project's write touches only its own records; deployment states are read
        # inside the transaction, after the batch's collections were written.
        self._write_counted(
            body,
            len(read.artifacts) * _BYTES_PER_ARTIFACT
            + (len(read.deployments) + len(tracker.current)) * _BYTES_PER_SOURCE,
        )

    # -- bookkeeping -----------------------------------------------------------------

    def _write_counted(
        self, body: Callable[[Txn, Tally], None], size: int = 0, *, now: bool = False
    ) -> None:
        """Queue ``body`` (about ``size`` bytes) for the batch; commit now with ``now``.

        Adding ``body`` first commits what waits when the batch would pass
        :data:`BATCH_BYTES`; a ``body`` over the bound alone is committed alone.
        """
        if self._pending and self._pending_bytes + size > BATCH_BYTES:
            self.flush()
        self._pending.append(body)
        self._pending_bytes += size
        if now or self._pending_bytes > BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Commit the waiting unit writes in one write transaction; add their counts after.

        The map is sized for the whole batch first, so a first refresh of a large
        collection is not replayed at every doubling (linear, not superlinear).  A
        transaction may be replayed (map growth), so each attempt counts afresh.
        """
        if not self._pending:
            return
        bodies, size = self._pending, self._pending_bytes
        self._pending, self._pending_bytes = [], 0
        self._pending_names.clear()
        self.ctx.reserve(size)
        attempt: list[Tally] = []

        def run(txn: Txn) -> None:
            attempt.clear()
            for body in bodies:
                attempt.append(Tally())
                body(txn, attempt[-1])

        self.ctx.write(run)
        for tally in attempt:
            self.tally.merge_writes(tally)

    def touch(self) -> None:
        """Move ``refreshed_at`` of every unchanged unit, and commit the batch with it.

        The touch joins the last batch: one transaction for both.
        """
        committed: list[int] = []
        if self.touched_collections or self.touched_projects:
            collections, projects = self.touched_collections, self.touched_projects
            summaries = self._summaries

            def body(txn: Txn, _tally: Tally) -> None:
                committed.append(txn.id())  # (a replayed transaction appends again)
                repos = self.repos
                for collection in collections:
                    repos.collections.put(txn, collection)
                for project in projects:
                    mutations.put_project(txn, repos, project)
                for key, summary in summaries.items():
                    repos.meta.put(txn, key, summary)

            self._write_counted(body, (len(collections) + len(projects)) * _BYTES_PER_SOURCE)
        self.flush()
        if committed:
            # The touch committed.  A unit found unchanged in the snapshot just before it
            # (nothing committed between) has, right after it, the fingerprints it was
            # found with: nothing in that transaction writes them (a collection is either
            # settled or written; other units' writes touch their own fingerprints).  The
            # next refresh in this process that reads that snapshot need not hash them.
            sources = self.repos.sources
            for unit, (snapshot, hashed) in self._settled.items():
                if snapshot + 1 == committed[-1]:
                    sources.remember_hash(unit, committed[-1], hashed)
