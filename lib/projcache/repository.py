"""Thin typed repositories of the records, one per sub-database, inside a transaction given.

Repositories know key encodings and value frames, nothing about consistency
between sub-databases: that is :mod:`projcache.mutations`' job.  Every read
checks the frame (:func:`projcache.codec.unframe`) before decoding.

Over 400 lines on purpose: one small repository per sub-database (eight of them,
each a few dozen lines) kept side by side, because their key encodings must
agree with each other and with docs/cache/storage-format.md, and that is
checked by reading them together.
"""

from __future__ import annotations

from collections.abc import Iterator

from . import codec
from .errors import CorruptRecordError
from .postings import BitmapIndex, FacetIndex, IdRepository
from .storage import Txn
from .storage import scan as _scan

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Generic, Optional, TypeVar

    from pydantic import BaseModel

    from .models import (
        Artifact,
        Collection,
        Deployment,
        Fingerprint,
        KnownFingerprint,
        Project,
    )

__all__ = [
    "ArtifactRepository",
    "CollectionRepository",
    "DeploymentIndex",
    "DeploymentRepository",
    "MetaRepository",
    "ProjectRepository",
    "Repositories",
    "SourceRepository",
    "UnitStaleness",
    "artifact_frame",
]

if TYPE_CHECKING:
    M = TypeVar("M", bound="BaseModel")

    class _Typed(Generic[M]):
        """Generic over the record's model, for the type checker."""

else:
    M = None  # (a stand-in: ``_Typed[...]`` ignores what it is given)

    class _Typed:
        """Stands in for ``Generic`` at run time: ``typing`` stays out of a cold CLI call."""

        def __class_getitem__(cls, _item: object) -> type:
            return cls


class _RecordRepository(_Typed[M]):
    """Records of one model in one sub-database, keyed by a UTF-8 string."""

    db_name = ""
    model_name = ""

    def __init__(self, db: Any):
        self.db = db
        self._model: Optional[type[M]] = None
        self._loader: Optional[Callable[[bytes], M]] = None
        self._key_what = f"{self.db_name} key"  # (formatted once, not per key)

    @property
    def model(self) -> type[M]:
        """The pydantic model of the records (imported on first use: pydantic is heavy)."""
        if self._model is None:
            from . import models

            self._model = getattr(models, self.model_name)
        assert self._model is not None
        return self._model

    def _key(self, key: str) -> bytes:
        return codec.encode_key(key, what=self._key_what)

    def load(self, payload: bytes) -> M:
        """Build the model from a stored record's JSON (frame already checked).

        Records were validated when written, so this does not validate again
        (see :func:`projcache.models.from_stored_json`); verify still does.
        """
        loader = self._loader
        if loader is None:
            from .model_reads import stored_json_loader

            loader = self._loader = stored_json_loader(self.model)
        return loader(payload)

    def get_payload(self, txn: Txn, key: str) -> Optional[bytes]:
        """Return the record's JSON bytes (frame checked), or ``None``."""
        raw = txn.get(self._key(key), db=self.db)
        if raw is None:
            return None
        payload = codec.checked_payload(raw)
        return (
            payload if payload is not None else codec.unframe(raw, what=f"{self.db_name}[{key!r}]")
        )

    def get(self, txn: Txn, key: str) -> Optional[M]:
        """Return the record as a model, or ``None``."""
        payload = self.get_payload(txn, key)
        return None if payload is None else self.load(payload)

    def put_model(self, txn: Txn, key: str, record: M) -> None:
        """Store ``record`` under ``key`` (overwrites)."""
        self._store(txn, self._key(key), record)

    def _store(self, txn: Txn, raw_key: bytes, record: M) -> None:
        txn.put(raw_key, codec.frame(record.model_dump_json().encode()), db=self.db)

    def _load(self, txn: Txn, raw_key: bytes) -> Optional[M]:
        raw = txn.get(raw_key, db=self.db)
        if raw is None:
            return None
        payload = codec.unframe(raw, what=f"{self.db_name}[{raw_key!r}]")
        return self.load(payload)

    def delete(self, txn: Txn, key: str) -> bool:
        """Remove the record; return whether it existed."""
        return bool(txn.delete(self._key(key), db=self.db))

    def scan_payloads(
        self, txn: Txn, prefix: str = "", start: str = "", limit: Optional[int] = None
    ) -> Iterator[tuple[str, bytes]]:
        """Yield ``(key, JSON bytes)`` in key order, optionally by prefix, from ``start``."""
        for count, (key, raw) in enumerate(_scan(txn, self.db, prefix.encode(), start.encode())):
            if limit is not None and count >= limit:
                return
            text = key.decode("utf-8")
            payload = codec.checked_payload(raw)
            if payload is None:  # the error names the record; formatted only then
                payload = codec.unframe(raw, what=f"{self.db_name}[{text!r}]")
            yield text, payload

    def scan_keys(self, txn: Txn, prefix: str = "") -> Iterator[str]:
        """Yield the keys starting with ``prefix`` in key order (values are not read)."""
        cursor = txn.cursor(self.db)
        raw_prefix = prefix.encode()
        if not (cursor.set_range(raw_prefix) if raw_prefix else cursor.first()):
            return
        for key in cursor.iternext(keys=True, values=False):
            if not key.startswith(raw_prefix):
                return
            yield key.decode("utf-8")

    def count(self, txn: Txn) -> int:
        """Number of records (O(1): from LMDB's page statistics)."""
        return int(txn.stat(self.db)["entries"])


class ArtifactRepository(_RecordRepository["Artifact"]):
    """``artifacts``: artifact key -> Artifact.

    The Markdown body (kept for search) is stored apart in the record's frame
    (:func:`projcache.codec.record_frame`): :meth:`get_payload`,
    :meth:`scan_payloads` and :meth:`load` give the record with ``"body":""``
    without inflating anything, while :meth:`get` and :meth:`get_whole_payload`
    give it whole, for the writes that re-index it.
    """

    db_name = "artifacts"
    model_name = "Artifact"

    def put(self, txn: Txn, artifact: Artifact) -> None:
        """Store the artifact record only (indexes are the caller's job)."""
        self.put_model(txn, artifact.key, artifact)

    def _store(self, txn: Txn, raw_key: bytes, record: Artifact) -> None:
        _put_appending(txn, self.db, raw_key, artifact_frame(record))

    def get_whole_payload(self, txn: Txn, key: str) -> Optional[bytes]:
        """Return the record's whole JSON, its body included, or ``None`` (inflates the body)."""
        raw = txn.get(self._key(key), db=self.db)
        if raw is None:
            return None
        try:  # (the record is named only when its frame fails: formatting it cost ~0.5 us)
            return codec.unframe(raw)
        except CorruptRecordError:
            return codec.unframe(raw, what=f"artifacts[{key!r}]")

    def get(self, txn: Txn, key: str) -> Optional[Artifact]:
        """Return the record as a model with its body (what a re-index needs), or ``None``."""
        payload = self.get_whole_payload(txn, key)
        return None if payload is None else self.load(payload)


_BODY_VALUE = b'"body":""'
_BODY_KEY = b'"body":'


def _put_appending(txn: Txn, db: Any, key: bytes, value: bytes) -> None:
    """``txn.put``, appending when ``key`` is past the sub-database's last key.

    Records of about a kilobyte fit three or four to a page.  Written in key
    order with plain puts, LMDB splits each full page keeping all but its last
    record, so a first refresh (each collection in key order) left pages two
    thirds full; appended (``MDB_APPEND``), the page before stays full.  LMDB
    refuses any other key (``False``, nothing written): then a plain put.
    """
    if not txn.put(key, value, db=db, append=True):
        txn.put(key, value, db=db)


# pydantic_core.to_json, imported by the first artifact_frame() (an import statement in
# every call cost a single write ~1 us).
_to_json: Optional[Callable[[Any], bytes]] = None


def artifact_frame(artifact: Artifact) -> bytes:
    """The stored frame of an artifact: its record, the body deflated apart when it has one.

    The whole record a read of the frame puts back (:func:`projcache.codec.unframe`)
    is byte for byte ``artifact.model_dump_json()``: the body's JSON is cut from
    that dump, not encoded again.
    """
    # model_dump_json().encode() without its Python wrapper (fifteen keyword arguments)
    # and the decode and encode of the whole record around the bytes it has.
    whole: bytes = artifact.__pydantic_serializer__.to_json(artifact)
    if not artifact.body:
        at = whole.rfind(_BODY_VALUE) + len(_BODY_VALUE) - 2
        return codec.record_frame(whole, at, b'""')
    # The body's JSON, encoded by the serializer that dumped it, is found at the last
    # ``"body":`` (only ``added_at`` follows it): one dump per record instead of two (a
    # batch of 1,000 spent ~25 ms dumping a copy without its body).
    global _to_json
    if _to_json is None:  # (writes only: reads never import pydantic here)
        from pydantic_core import to_json

        _to_json = to_json
    body = _to_json(artifact.body)
    at = whole.rfind(_BODY_KEY + body) + len(_BODY_KEY)
    if at >= len(_BODY_KEY):
        end = at + len(body)
        return codec.record_frame(whole[:at] + b'""' + whole[end:], at, body)
    plain = artifact.model_copy(update={"body": ""}).model_dump_json().encode()
    # The last one: ``body`` comes after every field that can hold a nested object
    # (tests/test_codec.py checks the field order this relies on).
    at = plain.rfind(_BODY_VALUE) + len(_BODY_VALUE) - 2
    tail = plain[at + 2 :]
    body = whole[at : len(whole) - len(tail)]
    if whole[:at] != plain[:at] or not whole.endswith(tail) or len(body) < 2:
        return codec.frame(whole)  # not the shape expected: stored whole, still correct
    return codec.record_frame(plain, at, body)


class UnitStaleness:
    """ "Every unit is stale", recorded as one ``meta`` key instead of a flag per record.

    Invalidating everything writes ``meta["units_stale"]`` (O(1)); reads of
    projects and collections show ``stale=True`` while it is there.  The first
    write of a unit after it turns the mark into per-record flags (O(units),
    once) and drops it, so a unit written later is never covered by an older
    mark.  Absent key (every cache before 0.2): nothing pending.
    """

    KEY = "units_stale"

    def __init__(self, meta: MetaRepository):
        self.meta = meta
        self.units: list[_UnitRepository[Any]] = []

    def pending(self, txn: Txn) -> bool:
        """Tell whether an invalidate-all is waiting to be applied to the records."""
        return txn.get(self.KEY.encode(), db=self.meta.db) is not None

    def mark(self, txn: Txn) -> None:
        """Mark every unit stale (one write)."""
        self.meta.put(txn, self.KEY, True)

    def settle(self, txn: Txn) -> None:
        """Write the pending mark into every unit record, then drop it."""
        if not txn.delete(self.KEY.encode(), db=self.meta.db):
            return
        for repo in self.units:
            for key, payload in list(repo.scan_payloads(txn)):
                record = repo.load(payload)
                if not record.stale:
                    repo.put_model(txn, key, record.model_copy(update={"stale": True}))


class _UnitRepository(_RecordRepository[M]):
    """Projects and collections: records whose ``stale`` flag may be set by a pending mark."""

    def __init__(self, db: Any, staleness: UnitStaleness):
        super().__init__(db)
        self.staleness = staleness
        staleness.units.append(self)

    def _marked(self, record: M) -> M:
        if getattr(record, "stale", True):
            return record
        return record.model_copy(update={"stale": True})

    def get(self, txn: Txn, key: str) -> Optional[M]:
        """Return the record as a model (stale while an invalidate-all is pending), or ``None``."""
        record = super().get(txn, key)
        if record is not None and self.staleness.pending(txn):
            return self._marked(record)
        return record

    def scan(self, txn: Txn) -> Iterator[M]:
        """Yield every record as a model in key order, as :meth:`get` shows it."""
        pending = self.staleness.pending(txn)
        for _key, payload in self.scan_payloads(txn):
            record = self.load(payload)
            yield self._marked(record) if pending else record

    def put_model(self, txn: Txn, key: str, record: M) -> None:
        """Store ``record`` under ``key`` (overwrites), after settling a pending mark."""
        if self.staleness.pending(txn):
            self.staleness.settle(txn)
        super().put_model(txn, key, record)


class ProjectRepository(_UnitRepository["Project"]):
    """``projects``: project id -> Project."""

    db_name = "projects"
    model_name = "Project"

    def put(self, txn: Txn, project: Project) -> None:
        """Store the project record."""
        self.put_model(txn, project.id, project)


class CollectionRepository(_UnitRepository["Collection"]):
    """``collections``: collection name -> Collection."""

    db_name = "collections"
    model_name = "Collection"

    def put(self, txn: Txn, collection: Collection) -> None:
        """Store the collection record."""
        self.put_model(txn, collection.name, collection)


class SourceRepository(_RecordRepository["Fingerprint"]):
    """``sources``: ``<unit> NUL <path relative to the unit>`` -> Fingerprint.

    A unit is a collection (``c:<name>``) or a project (``p:<id>``); keying by
    unit makes "every source of this unit" one prefix scan, even when one
    project's folder lies inside another's.
    """

    db_name = "sources"
    model_name = "Fingerprint"

    def __init__(self, db: Any):
        super().__init__(db)
        # unit -> (id of a committed transaction, frames_hash of the unit's fingerprints
        # right after it): what this process saw, for a later read of that very snapshot.
        self._known_hashes: dict[str, tuple[int, str]] = {}

    def known_hash(self, unit: str, snapshot: int) -> Optional[str]:
        """:meth:`frames_hash` of ``unit``'s fingerprints in the snapshot ``snapshot``, if known.

        Known when :meth:`remember_hash` was told it for that transaction id: a read
        transaction whose ``txn.id()`` is that id sees the state right after that
        commit, since every later commit (by any process) takes a higher id; a
        compaction, which runs only while nobody has the file open, carries the id
        over (the cache's ``generation`` relies on the same).  ``None``: not known;
        hash the frames.
        """
        known = self._known_hashes.get(unit)
        return known[1] if known is not None and known[0] == snapshot else None

    def remember_hash(self, unit: str, committed: int, hashed: str) -> None:
        """Record that ``unit``'s fingerprints hash to ``hashed`` right after commit ``committed``.

        Only for a transaction that committed and left the unit's fingerprints as
        hashed (the refresh's touch, which writes none, following the snapshot they
        were hashed in with no commit between).  Kept in this object only: a
        process that opens the cache anew, or a map resize, starts without.
        """
        self._known_hashes[unit] = (committed, hashed)

    @staticmethod
    def unit_prefix(unit: str) -> bytes:
        """The key prefix shared by every source of ``unit``."""
        return codec.encode_key(unit, what="source unit") + codec.SEPARATOR

    def scan_unit(self, txn: Txn, unit: str) -> Iterator[tuple[str, KnownFingerprint]]:
        """Yield ``(relative path, fingerprint)`` for every source of ``unit``.

        Frames are checked; well-formed payloads come back as the lighter
        :class:`~projcache.models.StoredFingerprint` (see
        :func:`~projcache.models.fingerprint_from_json`), others as validated models.
        """
        from .models import fingerprint_from_json

        prefix = self.unit_prefix(unit)
        start = len(prefix)
        for key, raw in _scan(txn, self.db, prefix):
            payload = codec.unframe(raw, what=f"sources[{key!r}]")
            yield key[start:].decode("utf-8", "surrogateescape"), fingerprint_from_json(payload)

    def scan_unit_raw(self, txn: Txn, unit: str) -> Iterator[tuple[str, KnownFingerprint]]:
        """As :meth:`scan_unit`, but each payload (frame checked) is decoded only when used.

        Raises:
            CorruptRecordError: a frame fails its check (naming the record).
        """
        return iter(self.raw_fingerprints(unit, self.unit_frames(txn, unit)).items())

    def unit_frames(self, txn: Txn, unit: str) -> list[tuple[bytes, bytes]]:
        """Every stored fingerprint of ``unit`` as stored: ``(key, frame)``, nothing checked."""
        return list(_scan(txn, self.db, self.unit_prefix(unit)))

    def raw_fingerprints(
        self, unit: str, frames: list[tuple[bytes, bytes]]
    ) -> dict[str, KnownFingerprint]:
        """``unit``'s :meth:`unit_frames` by relative path, each frame checked, none decoded.

        Raises:
            CorruptRecordError: a frame fails its check (naming the record).
        """
        from .models import RawFingerprint

        start = len(self.unit_prefix(unit))
        check = codec.checked_payload
        found: dict[str, KnownFingerprint] = {}
        for key, raw in frames:
            payload = check(raw)
            if payload is None:
                payload = codec.unframe(raw, what=f"sources[{key!r}]")
            found[key[start:].decode("utf-8", "surrogateescape")] = RawFingerprint(payload)
        return found

    @staticmethod
    def frames_hash(frames: list[tuple[bytes, bytes]]) -> str:
        """A digest of :meth:`unit_frames`: their keys and frame heads (format byte, CRC32).

        A refresh's stat summary is used only against the fingerprints it was
        made from: the same keys, each frame's payload with the same CRC32.
        Every write of a unit's fingerprints by a refresh replaces or drops its
        summary in the same transaction, so this only has to tell apart what
        other writers (repair, migration, an older library) leave; hashing the
        5-byte heads instead of whole frames keeps it ~0.15 µs a source.  A
        payload damaged behind an intact head is not noticed here (a summary
        settles its collection without reading it); ``verify`` checks every CRC.
        """
        import hashlib

        joined = b"".join([key + raw[:5] for key, raw in frames])
        return hashlib.blake2b(joined, digest_size=16).hexdigest()

    def unit_hash(self, txn: Txn, unit: str) -> str:
        """:meth:`frames_hash` of ``unit``'s :meth:`unit_frames`, without keeping the frames.

        For a caller that needs only the hash (a changed collection's write binding
        its new summary): one cursor pass hashing each key and frame head as it
        goes, no list of every frame built.  At 100,000 sources (~1.3 KB a frame)
        about 60% of :meth:`unit_frames` plus :meth:`frames_hash` (bench/RESULTS.md,
        walk9).
        """
        import hashlib

        digest = hashlib.blake2b(digest_size=16)
        update = digest.update
        for key, raw in _scan(txn, self.db, self.unit_prefix(unit)):  # (unit_frames' scan)
            update(key)
            update(raw[:5])
        return digest.hexdigest()

    def source_key(self, unit: str, relative: str) -> bytes:
        """Encode the key of one source of ``unit``."""
        raw = self.unit_prefix(unit) + relative.encode("utf-8", "surrogateescape")
        if len(raw) > codec.MAX_KEY_BYTES:
            # Deep paths past LMDB's key limit are keyed by their digest instead.
            import hashlib  # rare: not loaded for the read paths

            raw = self.unit_prefix(unit) + b"#" + hashlib.sha256(raw).hexdigest().encode()
        return raw

    def _store(self, txn: Txn, raw_key: bytes, record: Fingerprint) -> None:
        # Plain frames: every refresh reads every fingerprint of every unit and
        # compares most of them as bytes; inflating each cost an unchanged refresh of
        # 100,000 sources about 15% (deflated, they took ~45% of their JSON).
        _put_appending(
            txn, self.db, raw_key, codec.frame(record.model_dump_json().encode(), deflate=False)
        )

    def put_for(self, txn: Txn, unit: str, relative: str, fingerprint: Fingerprint) -> None:
        """Store the fingerprint of one source of ``unit``."""
        self._store(txn, self.source_key(unit, relative), fingerprint)

    def put_raw(self, txn: Txn, raw_key: bytes, fingerprint: Fingerprint) -> None:
        """Store a fingerprint under a key as stored (a rebuild carries salvaged ones over)."""
        self._store(txn, raw_key, fingerprint)

    def delete_for(self, txn: Txn, unit: str, relative: str) -> bool:
        """Forget one source of ``unit``; return whether it was known."""
        return bool(txn.delete(self.source_key(unit, relative), db=self.db))

    def delete_unit(self, txn: Txn, unit: str) -> int:
        """Forget every source of ``unit``; return how many were removed."""
        keys = [key for key, _raw in _scan(txn, self.db, self.unit_prefix(unit))]
        for key in keys:
            txn.delete(key, db=self.db)
        return len(keys)


class DeploymentRepository(_RecordRepository["Deployment"]):
    """``deployments``: ``<project id> NUL <artifact key> NUL <profile>`` -> Deployment."""

    db_name = "deployments"
    model_name = "Deployment"

    def get_for(
        self, txn: Txn, project_id: str, artifact: str, profile: str = codec.DEFAULT_PROFILE
    ) -> Optional[Deployment]:
        """Return the deployment of ``artifact`` to ``profile`` in ``project_id``, or ``None``."""
        return self._load(txn, codec.deployment_key(project_id, artifact, profile))

    def put(self, txn: Txn, deployment: Deployment) -> None:
        """Store the deployment record."""
        self._store(
            txn,
            codec.deployment_key(
                deployment.project_id, deployment.artifact_key, deployment.profile
            ),
            deployment,
        )

    def delete_for(
        self, txn: Txn, project_id: str, artifact: str, profile: str = codec.DEFAULT_PROFILE
    ) -> bool:
        """Remove one deployment record; return whether it existed."""
        return bool(txn.delete(codec.deployment_key(project_id, artifact, profile), db=self.db))

    def exists(
        self, txn: Txn, project_id: str, artifact: str, profile: str = codec.DEFAULT_PROFILE
    ) -> bool:
        """Tell whether ``artifact`` is deployed to ``profile`` in ``project_id`` (one lookup)."""
        key = codec.deployment_key(project_id, artifact, profile)
        return txn.get(key, db=self.db) is not None

    def scan_project(self, txn: Txn, project_id: Optional[str]) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(raw key, JSON bytes)`` of one project's deployments (a prefix scan), or all."""
        prefix = codec.deployment_prefix(project_id) if project_id else b""
        for key, raw in _scan(txn, self.db, prefix):
            payload = codec.checked_payload(raw)
            yield (
                key,
                payload
                if payload is not None
                else codec.unframe(raw, what=f"deployments[{key!r}]"),
            )


class MetaRepository:
    """``meta``: small JSON values (schema version, creation time, counters)."""

    def __init__(self, db: Any):
        self.db = db

    def get(self, txn: Txn, key: str, default: Any = None) -> Any:
        """Return the decoded value of ``key`` or ``default``."""
        raw = txn.get(key.encode(), db=self.db)
        return default if raw is None else codec.decode(raw, what=f"meta[{key!r}]")

    def put(self, txn: Txn, key: str, value: Any) -> None:
        """Store ``value`` (any JSON value) under ``key``."""
        txn.put(key.encode(), codec.encode(value), db=self.db)

    def delete(self, txn: Txn, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        return bool(txn.delete(key.encode(), db=self.db))

    def add(self, txn: Txn, key: str, delta: int) -> int:
        """Add ``delta`` to an integer counter and return the new value."""
        value = int(self.get(txn, key, 0)) + delta
        self.put(txn, key, value)
        return value


class _DupIndex:
    """A dupsort sub-database: key -> many sorted values."""

    def __init__(self, db: Any):
        self.db = db

    def add(self, txn: Txn, key: bytes, value: bytes) -> None:
        """Add one ``(key, value)`` pair (idempotent)."""
        txn.put(key, value, dupdata=True, db=self.db)

    def remove(self, txn: Txn, key: bytes, value: bytes) -> bool:
        """Remove one ``(key, value)`` pair; return whether it existed."""
        return bool(txn.delete(key, value, db=self.db))

    def values(self, txn: Txn, key: bytes) -> Iterator[bytes]:
        """Yield the values of ``key`` in sorted order."""
        cursor = txn.cursor(self.db)
        if cursor.set_key(key):
            yield from cursor.iternext_dup()

    def count(self, txn: Txn, key: bytes) -> int:
        """Number of values of ``key`` (O(1) in LMDB)."""
        cursor = txn.cursor(self.db)
        return int(cursor.count()) if cursor.set_key(key) else 0

    def contains(self, txn: Txn, key: bytes, value: bytes) -> bool:
        """Tell whether the pair exists (one B-tree lookup)."""
        return bool(txn.cursor(self.db).set_key_dup(key, value))

    def items(self, txn: Txn) -> Iterator[tuple[bytes, bytes]]:
        """Yield every pair (used by verify)."""
        cursor = txn.cursor(self.db)
        if cursor.first():
            yield from cursor.iternext(keys=True, values=True)

    def keys_with_prefix(self, txn: Txn, prefix: bytes) -> Iterator[tuple[bytes, int]]:
        """Yield ``(key, number of values)`` for distinct keys starting with ``prefix``."""
        cursor = txn.cursor(self.db)
        if not cursor.set_range(prefix):
            return
        while True:
            key = cursor.key()
            if not key.startswith(prefix):
                return
            yield key, int(cursor.count())
            if not cursor.next_nodup():
                return


def target_value(project_id: str, profile: str) -> bytes:
    """A ``deployments-by-artifact`` value: ``<project id> NUL <profile>``."""
    return project_id.encode() + codec.SEPARATOR + profile.encode()


class DeploymentIndex:
    """``deployments-by-artifact`` (artifact key -> ``<project id> NUL <profile>``) and
    ``deployments-by-state`` (state -> deployment keys)."""

    def __init__(self, by_artifact: Any, by_state: Any):
        self.by_artifact = _DupIndex(by_artifact)
        self.by_state = _DupIndex(by_state)

    def add(self, txn: Txn, project_id: str, artifact: str, state: str, profile: str) -> None:
        """Index one deployment."""
        self.by_artifact.add(txn, artifact.encode(), target_value(project_id, profile))
        self.by_state.add(txn, state.encode(), codec.deployment_key(project_id, artifact, profile))

    def remove(self, txn: Txn, project_id: str, artifact: str, state: str, profile: str) -> None:
        """Remove one deployment from both indexes."""
        self.by_artifact.remove(txn, artifact.encode(), target_value(project_id, profile))
        key = codec.deployment_key(project_id, artifact, profile)
        self.by_state.remove(txn, state.encode(), key)

    def targets_of(self, txn: Txn, artifact: str) -> list[tuple[str, str]]:
        """``(project id, profile)`` of every deployment of ``artifact``."""
        found = []
        for raw in self.by_artifact.values(txn, artifact.encode()):
            project, _sep, profile = raw.partition(codec.SEPARATOR)
            found.append((project.decode(), profile.decode()))
        return found

    def projects_of(self, txn: Txn, artifact: str) -> list[str]:
        """Ids of the projects where ``artifact`` is deployed (to any profile)."""
        return sorted({project for project, _profile in self.targets_of(txn, artifact)})

    def keys_in_state(self, txn: Txn, state: str) -> Iterator[bytes]:
        """Yield the deployment keys currently in ``state``."""
        yield from self.by_state.values(txn, state.encode())


class Repositories:
    """All repositories of one open environment, built once per :class:`Storage`."""

    def __init__(self, dbs: dict[str, Any]):
        self.meta = MetaRepository(dbs["meta"])
        self.staleness = UnitStaleness(self.meta)
        self.projects = ProjectRepository(dbs["projects"], self.staleness)
        self.artifacts = ArtifactRepository(dbs["artifacts"])
        self.deployments = DeploymentRepository(dbs["deployments"])
        self.sources = SourceRepository(dbs["sources"])
        self.collections = CollectionRepository(dbs["collections"], self.staleness)
        self.ids = IdRepository(dbs["artifact-ids"], dbs["artifact-keys"], dbs["search-pending"])
        self.index = BitmapIndex(dbs["search-tokens"], dbs["search-pending"], self.ids)
        self.facets = FacetIndex(self.index, self.ids)
        self.deployment_index = DeploymentIndex(
            dbs["deployments-by-artifact"], dbs["deployments-by-state"]
        )
