"""Thin typed repositories, one per sub-database; each works inside a transaction it is given.

Repositories know key encodings and value frames, nothing about consistency
between sub-databases: that is :mod:`projcache.mutations`' job.  Every read
checks the frame (:func:`projcache.codec.unframe`) before decoding.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Callable, Generic, Optional, TypeVar

from . import codec
from .storage import Txn

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .models import (
        Artifact,
        Collection,
        Deployment,
        Fingerprint,
        KnownFingerprint,
        Project,
        RawFingerprint,
    )

__all__ = [
    "ArtifactRepository",
    "BitmapIndex",
    "CollectionRepository",
    "DeploymentIndex",
    "DeploymentRepository",
    "FacetIndex",
    "IdRepository",
    "MetaRepository",
    "ProjectRepository",
    "Repositories",
    "SourceRepository",
    "UnitStaleness",
]

M = TypeVar("M", bound="BaseModel")


def _scan(
    txn: Txn, db: Any, prefix: bytes = b"", start: bytes = b""
) -> Iterator[tuple[bytes, bytes]]:
    """Yield ``(key, value)`` for keys starting with ``prefix``, from ``start`` on."""
    cursor = txn.cursor(db)
    first = max(prefix, start)
    if not (cursor.set_range(first) if first else cursor.first()):
        return
    for key, value in cursor.iternext():
        if prefix and not key.startswith(prefix):
            return
        yield key, value


class _RecordRepository(Generic[M]):
    """Records of one model in one sub-database, keyed by a UTF-8 string."""

    db_name = ""
    model_name = ""

    def __init__(self, db: Any):
        self.db = db
        self._model: Optional[type[M]] = None
        self._loader: Optional[Callable[[bytes], M]] = None

    @property
    def model(self) -> type[M]:
        """The pydantic model of the records (imported on first use: pydantic is heavy)."""
        if self._model is None:
            from . import models

            self._model = getattr(models, self.model_name)
        assert self._model is not None
        return self._model

    def _key(self, key: str) -> bytes:
        return codec.encode_key(key, what=f"{self.db_name} key")

    def load(self, payload: bytes) -> M:
        """Build the model from a stored record's JSON (frame already checked).

        Records were validated when written, so this does not validate again
        (see :func:`projcache.models.from_stored_json`); verify still does.
        """
        loader = self._loader
        if loader is None:
            from .models import from_stored_json

            loader = self._loader = functools.partial(from_stored_json, self.model)
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
    """``artifacts``: artifact key -> Artifact."""

    db_name = "artifacts"
    model_name = "Artifact"

    def put(self, txn: Txn, artifact: Artifact) -> None:
        """Store the artifact record only (indexes are the caller's job)."""
        self.put_model(txn, artifact.key, artifact)


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

    def scan_unit_raw(self, txn: Txn, unit: str) -> Iterator[tuple[str, RawFingerprint]]:
        """As :meth:`scan_unit`, but each payload (frame checked) is decoded only when used.

        Raises:
            CorruptRecordError: a frame fails its check (naming the record).
        """
        from .models import RawFingerprint

        prefix = self.unit_prefix(unit)
        start = len(prefix)
        check = codec.checked_payload
        for key, raw in _scan(txn, self.db, prefix):
            payload = check(raw)
            if payload is None:
                payload = codec.unframe(raw, what=f"sources[{key!r}]")
            yield key[start:].decode("utf-8", "surrogateescape"), RawFingerprint(payload)

    def source_key(self, unit: str, relative: str) -> bytes:
        """Encode the key of one source of ``unit``."""
        raw = self.unit_prefix(unit) + relative.encode("utf-8", "surrogateescape")
        if len(raw) > codec.MAX_KEY_BYTES:
            # Deep paths past LMDB's key limit are keyed by their digest instead.
            import hashlib  # rare: not loaded for the read paths

            raw = self.unit_prefix(unit) + b"#" + hashlib.sha256(raw).hexdigest().encode()
        return raw

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


_BITMAP_FORMAT = b"\x02"
CHUNK_BITS = 16  # ids per stored bitmap value: 65,536 (one roaring container)
_CONTROL = b"\xff"
_DELETED = _CONTROL + b"\x01deleted"  # ids removed from the records, still in main bitmaps
_PENDING = _CONTROL + b"\x02pending"  # ids whose postings are all in the pending tail
_FREE = _CONTROL + b"\x03free"  # ids that left every index: reused first
_TOMB = _CONTROL + b"\x04"  # + id: the names a deleted id is still listed under
_NEXT = _CONTROL + b"\x05next"  # the next never-used id (4 bytes big-endian)
MERGE_AT = 4096  # pending entries that trigger a merge into the main bitmaps


def encode_bitmap(ids: Any) -> bytes:
    """Frame a roaring bitmap: format byte 0x02 + portable serialization (no CRC: see ADR 0010)."""
    return _BITMAP_FORMAT + bytes(ids.serialize())


def decode_bitmap(raw: bytes, *, what: str = "bitmap") -> Any:
    """Check the format byte and deserialize a bitmap value.

    Raises:
        CorruptRecordError: unknown format byte or bytes that are no bitmap.
    """
    from pyroaring import BitMap

    from .errors import CorruptRecordError

    if not raw or raw[:1] != _BITMAP_FORMAT:
        raise CorruptRecordError(f"{what}: not a bitmap value")
    try:
        return BitMap.deserialize(raw[1:])
    except (ValueError, OverflowError) as exc:
        raise CorruptRecordError(f"{what}: damaged bitmap ({exc})") from exc


def facet_name(facet: str, value: str) -> bytes:
    """The bitmap name of ``facet == value`` (facets: type, collection, tag, managed, len)."""
    name = b"\x01" + facet.encode() + codec.SEPARATOR + value.encode("utf-8", "surrogatepass")
    if len(name) > codec.MAX_KEY_BYTES - 2:  # room for the chunk suffix
        name = b"\x01" + facet.encode() + b"\x00#" + hashlib.sha256(name).hexdigest().encode()
    return name


def term_name(term: str, code: bytes) -> bytes:
    """The bitmap name of ``term`` in field ``code`` (``n``, ``t``, ``d`` or ``b``)."""
    return term.encode() + codec.SEPARATOR + code


class IdRepository:
    """``artifact-ids`` (artifact key -> 4-byte id) and ``artifact-keys`` (id -> key)."""

    def __init__(self, by_key: Any, by_id: Any):
        self.by_key = by_key
        self.by_id = by_id

    @staticmethod
    def pack(doc: int) -> bytes:
        """The 4-byte big-endian key of id ``doc`` (sorts like the number)."""
        return doc.to_bytes(4, "big")

    def id_of(self, txn: Txn, key: str) -> Optional[int]:
        """The id of artifact ``key``, or ``None``."""
        raw = txn.get(key.encode(), db=self.by_key)
        return None if raw is None else int.from_bytes(raw, "big")

    def key_of(self, txn: Txn, doc: int) -> Optional[str]:
        """The key of id ``doc``, or ``None``."""
        raw = txn.get(doc.to_bytes(4, "big"), db=self.by_id)
        return None if raw is None else bytes(raw).decode("utf-8")

    def put(self, txn: Txn, key: str, doc: int) -> None:
        """Record that ``key`` has id ``doc`` (both directions)."""
        packed = doc.to_bytes(4, "big")
        txn.put(key.encode(), packed, db=self.by_key)
        txn.put(packed, key.encode(), db=self.by_id)

    def delete(self, txn: Txn, key: str, doc: int) -> None:
        """Forget ``key`` <-> ``doc``."""
        txn.delete(key.encode(), db=self.by_key)
        txn.delete(doc.to_bytes(4, "big"), db=self.by_id)

    def items(self, txn: Txn) -> Iterator[tuple[str, int]]:
        """Yield ``(key, id)`` from ``artifact-ids`` (verify)."""
        for key, raw in _scan(txn, self.by_key):
            yield key.decode("utf-8", "replace"), int.from_bytes(raw, "big")

    def reverse_items(self, txn: Txn) -> Iterator[tuple[int, str]]:
        """Yield ``(id, key)`` from ``artifact-keys`` (verify)."""
        for raw, key in _scan(txn, self.by_id):
            yield int.from_bytes(raw, "big"), key.decode("utf-8", "replace")


class _WriteCache:
    """The pending-tail values one write transaction has read or changed (written at commit)."""

    def __init__(self, txn: Txn):
        self.txn = txn
        self.values: dict[bytes, Any] = {}
        self.dirty: set[bytes] = set()


class BitmapIndex:
    """Named sets of artifact ids as compressed (roaring) bitmaps: the v3 search index.

    ``search-tokens`` holds the *main* bitmaps, one LMDB value per name per
    block of 65,536 ids (key = name + 2-byte block number), so a write rewrites
    at most one block of a name.  ``search-pending`` holds the *tail*: recent
    additions per name, the set of deleted ids not yet purged from the main
    bitmaps, and the id allocator.  A single write touches only the small tail
    (a few pages, whatever N is); when the tail has more than :data:`MERGE_AT`
    entries it is merged into the main bitmaps in the same transaction.
    Readers see ``main | tail - deleted`` (the caller subtracts
    :meth:`deleted` once from its candidates).  An id is reused only after a
    merge removed it from every main bitmap.

    Names: a term in a field (:func:`term_name`) or a facet (:func:`facet_name`).
    """

    def __init__(self, main: Any, pending: Any):
        self.main = main
        self.pending = pending
        self._cache: Optional[_WriteCache] = None

    # -- reading -----------------------------------------------------------

    def _main(self, txn: Txn, name: bytes) -> Any:
        from pyroaring import BitMap

        cursor = txn.cursor(self.main)
        found = []
        if cursor.set_range(name):
            size = len(name) + 2
            for key, raw in cursor.iternext():
                if len(key) != size or not key.startswith(name):
                    break
                found.append(decode_bitmap(raw, what=f"search-tokens[{key!r}]"))
        if not found:
            return BitMap()
        return found[0] if len(found) == 1 else BitMap.union(*found)

    def _tail(self, txn: Txn, name: bytes) -> Any:
        from pyroaring import BitMap

        cache = self._cache
        if cache is not None and cache.txn is txn and name in cache.values:
            return cache.values[name]
        raw = txn.get(name, db=self.pending)
        return BitMap() if raw is None else decode_bitmap(raw, what=f"search-pending[{name!r}]")

    def get(self, txn: Txn, name: bytes) -> Any:
        """The ids under ``name`` (main and tail; deleted ids not subtracted)."""
        main = self._main(txn, name)
        tail = self._tail(txn, name)
        return main | tail if tail else main

    def deleted(self, txn: Txn) -> Any:
        """Ids deleted but still listed in main bitmaps: subtract them from any answer."""
        return self._tail(txn, _DELETED)

    def facet(self, txn: Txn, facet: str, value: str) -> Any:
        """Ids with ``facet == value`` (deleted ids not subtracted)."""
        return self.get(txn, facet_name(facet, value))

    def name_buckets(self, txn: Txn) -> list[int]:
        """The name-length buckets in use, ascending (their bitmaps are read on demand)."""
        prefix = facet_name("len", "")
        found: set[int] = set()
        for db in (self.main, self.pending):
            tail = 0 if db is self.pending else 2
            cursor = txn.cursor(db)
            if not cursor.set_range(prefix):
                continue
            for key in cursor.iternext(keys=True, values=False):
                if not key.startswith(prefix):
                    break
                found.add(int(key[len(prefix) : len(key) - tail]))
        cache = self._cache
        if cache is not None and cache.txn is txn:
            found.update(int(n[len(prefix) :]) for n in cache.values if n.startswith(prefix))
        return sorted(found)

    def term_fields(self, txn: Txn, term: str) -> dict[bytes, Any]:
        """``{field code: ids}`` of one term (main and tail)."""
        from pyroaring import BitMap

        prefix = term.encode() + codec.SEPARATOR
        parts: dict[bytes, list[Any]] = {}
        for db in (self.main, self.pending):
            size = len(prefix) + (3 if db is self.main else 1)
            for key, raw in _scan(txn, db, prefix):
                if len(key) != size:
                    continue
                parts.setdefault(key[len(prefix) : len(prefix) + 1], []).append(
                    decode_bitmap(raw, what=f"{key!r}")
                )
        cache = self._cache
        if cache is not None and cache.txn is txn:  # a write reading its own changes
            for code in (b"n", b"t", b"d", b"b"):
                name = prefix + code
                if name in cache.values:
                    main = self._main(txn, name)
                    parts[code] = [main | cache.values[name]]
        return {code: (p[0] if len(p) == 1 else BitMap.union(*p)) for code, p in parts.items()}

    def terms_with_prefix(self, txn: Txn, prefix: str, limit: int) -> list[str]:
        """The first ``limit`` distinct terms starting with ``prefix``, in byte order."""
        raw_prefix = prefix.encode()
        found: set[bytes] = set()
        for db in (self.main, self.pending):
            cursor = txn.cursor(db)
            if not cursor.set_range(raw_prefix):
                continue
            distinct = 0
            last = b""
            for key in cursor.iternext(keys=True, values=False):
                if not key.startswith(raw_prefix):
                    break
                term = key.split(codec.SEPARATOR, 1)[0]
                if term != last:
                    last = term
                    distinct += 1
                    if distinct > limit:
                        break
                    found.add(term)
        return [t.decode() for t in sorted(found)[:limit]]

    def names_of(self, txn: Txn) -> Iterator[tuple[bytes, Any]]:
        """Yield ``(name, ids)`` for every name, main and tail united (verify)."""
        from pyroaring import BitMap

        merged: dict[bytes, Any] = {}
        for key, raw in _scan(txn, self.main):
            name = bytes(key[:-2])
            ids = decode_bitmap(raw, what=f"search-tokens[{key!r}]")
            merged[name] = merged[name] | ids if name in merged else ids
        for key, raw in _scan(txn, self.pending):
            if key.startswith(_CONTROL):
                continue
            ids = decode_bitmap(raw, what=f"search-pending[{key!r}]")
            name = bytes(key)
            merged[name] = merged[name] | ids if name in merged else ids
        for name in sorted(merged):
            yield name, merged[name] if merged[name] is not None else BitMap()

    def control(self, txn: Txn) -> dict[str, Any]:
        """The allocator state: deleted, pending and free ids, next id (verify)."""
        return {
            "deleted": self._tail(txn, _DELETED),
            "pending": self._tail(txn, _PENDING),
            "free": self._tail(txn, _FREE),
            "next": self._next(txn),
        }

    # -- writing -----------------------------------------------------------

    def _writer(self, txn: Txn) -> _WriteCache:
        cache = self._cache
        if cache is None or cache.txn is not txn:
            cache = self._cache = _WriteCache(txn)
            from .storage import before_commit

            before_commit(txn, lambda: self.flush(txn))
        return cache

    def _load(self, txn: Txn, name: bytes) -> Any:
        cache = self._writer(txn)
        if name not in cache.values:
            cache.values[name] = self._tail(txn, name)
        return cache.values[name]

    def _touch(self, txn: Txn, name: bytes) -> Any:
        ids = self._load(txn, name)
        self._writer(txn).dirty.add(name)
        return ids

    def _next(self, txn: Txn) -> int:
        raw = txn.get(_NEXT, db=self.pending)
        return 0 if raw is None else int.from_bytes(raw, "big")

    def allocate(self, txn: Txn) -> int:
        """A free id: the smallest reusable one, else a never-used one."""
        free = self._touch(txn, _FREE)
        if free:
            doc = int(free.min())
            free.remove(doc)
            return doc
        doc = self._next(txn)
        txn.put(_NEXT, (doc + 1).to_bytes(4, "big"), db=self.pending)
        return doc

    def add(self, txn: Txn, doc: int, names: Iterable[bytes]) -> None:
        """List a new id under every one of ``names`` (in the tail)."""
        cache = self._writer(txn)
        values = cache.values
        names = list(names)
        for name in names:
            ids = values.get(name)
            if ids is None:
                ids = values[name] = self._tail(txn, name)
            ids.add(doc)
        cache.dirty.update(names)
        self._touch(txn, _PENDING).add(doc)

    def remove(self, txn: Txn, doc: int, names: Iterable[bytes]) -> None:
        """Unlist id ``doc`` from ``names`` (all the names it is listed under).

        A pending id leaves the tail at once and is free again; a merged id is
        marked deleted and freed by the next merge.
        """
        pending = self._touch(txn, _PENDING)
        if doc in pending:
            pending.remove(doc)
            for name in names:
                self._touch(txn, name).discard(doc)
            self._touch(txn, _FREE).add(doc)
            return
        self._touch(txn, _DELETED).add(doc)
        import orjson

        listed = sorted(n.decode("utf-8", "surrogateescape") for n in names)
        txn.put(_TOMB + doc.to_bytes(4, "big"), orjson.dumps(listed), db=self.pending)

    def flush(self, txn: Txn) -> None:
        """Write the changed tail values; merge the tail when it has grown too large."""
        cache = self._cache
        if cache is None or cache.txn is not txn:
            return
        for name in cache.dirty:
            ids = cache.values[name]
            if ids:
                txn.put(name, encode_bitmap(ids), db=self.pending)
            else:
                txn.delete(name, db=self.pending)
        self._cache = None
        if int(txn.stat(self.pending)["entries"]) > MERGE_AT:
            self.merge(txn)

    def merge(self, txn: Txn) -> int:
        """Fold the tail into the main bitmaps and purge deleted ids; return names touched."""
        import orjson
        from pyroaring import BitMap

        self.flush(txn) if self._cache is not None and self._cache.txn is txn else None
        additions: dict[bytes, Any] = {}
        removals: dict[bytes, Any] = {}
        deleted = BitMap()
        tombs: list[bytes] = []
        for key, raw in _scan(txn, self.pending):
            key = bytes(key)
            if key.startswith(_TOMB):
                doc = int.from_bytes(key[len(_TOMB) :], "big")
                for name in orjson.loads(raw):
                    removals.setdefault(name.encode("utf-8", "surrogateescape"), BitMap()).add(doc)
                tombs.append(key)
            elif key == _DELETED:
                deleted = decode_bitmap(raw)
            elif not key.startswith(_CONTROL):
                additions[key] = decode_bitmap(raw)
        touched = 0
        for name in sorted(set(additions) | set(removals)):
            plus = additions.get(name, BitMap())
            minus = removals.get(name, BitMap())
            both = plus | minus
            first, last = both.min() >> CHUNK_BITS, both.max() >> CHUNK_BITS
            for block in range(first, last + 1):
                if first == last:
                    add, drop = plus, minus
                else:
                    span = BitMap()
                    span.add_range(block << CHUNK_BITS, (block + 1) << CHUNK_BITS)
                    add, drop = plus & span, minus & span
                    if not add and not drop:
                        continue
                key = name + block.to_bytes(2, "big")
                stored = txn.get(key, db=self.main)
                ids = BitMap() if stored is None else decode_bitmap(stored)
                ids |= add
                ids -= drop
                if ids:
                    txn.put(key, encode_bitmap(ids), db=self.main)
                else:
                    txn.delete(key, db=self.main)
            txn.delete(name, db=self.pending)
            touched += 1
        for key in tombs:
            txn.delete(key, db=self.pending)
        free = self._tail(txn, _FREE) | deleted
        txn.delete(_DELETED, db=self.pending)
        txn.delete(_PENDING, db=self.pending)
        if free:
            txn.put(_FREE, encode_bitmap(free), db=self.pending)
        return touched

    def clear(self, txn: Txn) -> None:
        """Empty both sub-databases (a rebuild follows)."""
        self._cache = None
        txn.drop(self.main, delete=False)
        txn.drop(self.pending, delete=False)


class FacetIndex:
    """Facet queries over :class:`BitmapIndex` (``type``, ``collection``, ``tag``)."""

    def __init__(self, index: BitmapIndex, ids: IdRepository):
        self.index = index
        self.ids = ids

    def artifact_keys(self, txn: Txn, facet: str, value: str) -> Iterator[str]:
        """Yield the keys of artifacts having ``facet == value``, in key order."""
        docs = self.index.facet(txn, facet, value) - self.index.deleted(txn)
        keys = [self.ids.key_of(txn, doc) for doc in docs]
        yield from sorted(k for k in keys if k is not None)

    def size(self, txn: Txn, facet: str, value: str) -> int:
        """Number of artifacts having ``facet == value``."""
        return len(self.index.facet(txn, facet, value) - self.index.deleted(txn))


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
        self.ids = IdRepository(dbs["artifact-ids"], dbs["artifact-keys"])
        self.index = BitmapIndex(dbs["search-tokens"], dbs["search-pending"])
        self.facets = FacetIndex(self.index, self.ids)
        self.deployment_index = DeploymentIndex(
            dbs["deployments-by-artifact"], dbs["deployments-by-state"]
        )
