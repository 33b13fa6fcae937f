"""The index side of the store: integer artifact ids and the bitmaps of the v3 search index.

:class:`IdRepository` maps artifact keys to dense integer ids (``artifact-ids`` /
``artifact-keys``); :class:`BitmapIndex` keeps named sets of those ids as roaring
bitmaps (``search-tokens``, the main bitmaps by block of 65,536 ids, and
``search-pending``, the tail of recent writes and the id allocator);
:class:`FacetIndex` answers facet queries over them.  Like the record
repositories (:mod:`projcache.repository`) they work inside a transaction they
are given and know nothing of consistency between sub-databases
(:mod:`projcache.mutations`).  The format is in docs/cache/storage-format.md.

Over 400 lines on purpose: :class:`BitmapIndex`'s main blocks, tail, merge
and id reuse keep one invariant (every id is in exactly the bitmaps its record
implies, whether in a block or in the tail), which is easier to check when it
lives in one class.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any, Optional

from . import codec
from .storage import Txn
from .storage import scan as _scan

__all__ = [
    "CHUNK_BITS",
    "MERGE_AT",
    "BitmapIndex",
    "FacetIndex",
    "IdRepository",
    "decode_bitmap",
    "encode_bitmap",
    "facet_name",
    "term_name",
]

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


_bitmap_type: Any = None  # pyroaring.BitMap, imported on first use (point reads never need it)


def _bitmaps() -> Any:
    global _bitmap_type
    if _bitmap_type is None:
        from pyroaring import BitMap

        _bitmap_type = BitMap
    return _bitmap_type


def decode_bitmap(raw: bytes, *, what: Any = "bitmap") -> Any:
    """Check the format byte and deserialize a bitmap value.

    ``what`` names the value in an error: a string, or a key (bytes) formatted
    only when there is an error (searches decode dozens of values per query).

    Raises:
        CorruptRecordError: unknown format byte or bytes that are no bitmap.
    """
    if raw[:1] == _BITMAP_FORMAT:
        try:
            return _bitmaps().deserialize(raw[1:])
        except (ValueError, OverflowError) as exc:
            problem = f"damaged bitmap ({exc})"
    else:
        problem = "not a bitmap value"
    from .errors import CorruptRecordError

    name = what if isinstance(what, str) else f"bitmap {bytes(what)!r}"
    raise CorruptRecordError(f"{name}: {problem}")


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
        bitmap = _bitmaps()
        cursor = txn.cursor(self.main)
        found = []
        if cursor.set_range(name):
            size = len(name) + 2
            for key, raw in cursor.iternext():
                if len(key) != size or not key.startswith(name):
                    break
                found.append(decode_bitmap(raw, what=key))
        if not found:
            return bitmap()
        return found[0] if len(found) == 1 else bitmap.union(*found)

    def _tail(self, txn: Txn, name: bytes) -> Any:
        cache = self._cache
        if cache is not None and cache.txn is txn and name in cache.values:
            return cache.values[name]
        raw = txn.get(name, db=self.pending)
        return _bitmaps()() if raw is None else decode_bitmap(raw, what=name)

    def get(self, txn: Txn, name: bytes) -> Any:
        """The ids under ``name`` (main and tail; deleted ids not subtracted)."""
        main = self._main(txn, name)
        tail = self._tail(txn, name)
        return main | tail if tail else main

    def block_count(self, txn: Txn) -> int:
        """How many blocks of 65,536 ids the main bitmaps may span (from the allocator)."""
        nxt = self._next(txn)
        return ((nxt - 1) >> CHUNK_BITS) + 1 if nxt else 0

    @staticmethod
    def blocks_of(ids: Iterable[int]) -> list[int]:
        """The blocks holding ``ids``, ascending."""
        return sorted({doc >> CHUNK_BITS for doc in ids})

    def get_dense(self, txn: Txn, name: bytes, blocks: Iterable[int]) -> Any:
        """Like :meth:`get`, reading only the main ``blocks`` (``range(block_count)``: all).

        The block keys are looked up with one ``getmulti`` (in C) rather than
        walked with a cursor in Python: a facet such as ``type`` or a name
        length has a value in each of the 16 blocks of a million ids.
        """
        found, tail = self.dense_parts(txn, name, blocks)
        if tail:
            found.append(tail)
        if not found:
            return _bitmaps()()
        return found[0] if len(found) == 1 else _bitmaps().union(*found)

    def dense_parts(self, txn: Txn, name: bytes, blocks: Iterable[int]) -> tuple[list[Any], Any]:
        """:meth:`get_dense` not united: ``(bitmaps of the main blocks, the tail)``.

        The blocks are disjoint (each holds its own 65,536 ids); the tail may
        repeat ids of a block.
        """
        keys = [name + block.to_bytes(2, "big") for block in blocks]
        found = [decode_bitmap(raw, what=key) for key, raw in txn.cursor(self.main).getmulti(keys)]
        return found, self._tail(txn, name)

    def deleted(self, txn: Txn) -> Any:
        """Ids deleted but still listed in main bitmaps: subtract them from any answer."""
        return self._tail(txn, _DELETED)

    def facet(self, txn: Txn, facet: str, value: str) -> Any:
        """Ids with ``facet == value`` (deleted ids not subtracted)."""
        return self.get(txn, facet_name(facet, value))

    def name_buckets(self, txn: Txn) -> list[int]:
        """The name-length buckets in use, ascending (their bitmaps are read on demand).

        One seek per bucket: after a bucket's first key the cursor jumps past
        its other blocks (a bucket has one key per block of ids).
        """
        prefix = facet_name("len", "")
        found: set[int] = set()
        for db in (self.main, self.pending):
            tail = 0 if db is self.pending else 2
            cursor = txn.cursor(db)
            target = prefix
            while cursor.set_range(target):
                key = cursor.key()
                if not key.startswith(prefix):
                    break
                name = key[: len(key) - tail]
                found.add(int(name[len(prefix) :]))
                target = name + b"\xff\xff\xff"  # past every block key of this bucket
        cache = self._cache
        if cache is not None and cache.txn is txn:
            found.update(int(n[len(prefix) :]) for n in cache.values if n.startswith(prefix))
        return sorted(found)

    def term_fields(self, txn: Txn, term: str) -> dict[bytes, Any]:
        """``{field code: ids}`` of one term (main and tail)."""
        return self._fields(txn, term.encode() + codec.SEPARATOR, 0).get(term, {})

    def prefix_fields(self, txn: Txn, prefix: str, limit: int) -> dict[str, dict[bytes, Any]]:
        """``{term: {field code: ids}}`` of the first ``limit`` distinct terms starting with
        ``prefix``, in byte order (main and tail): one pass over each sub-database."""
        return self._fields(txn, prefix.encode(), limit)

    def term_blocks(self, txn: Txn, term: str) -> dict[bytes, list[Any]]:
        """Like :meth:`term_fields`, each field's blocks and tail not united (a list of bitmaps).

        A query unites a word's bitmaps once per ranking level, in one C call,
        rather than once per field and again per level (at a million ids each
        union of a common term costs 10-20 µs).
        """
        return self._fields(txn, term.encode() + codec.SEPARATOR, 0, united=False).get(term, {})

    def prefix_blocks(self, txn: Txn, prefix: str, limit: int) -> dict[str, dict[bytes, list[Any]]]:
        """Like :meth:`prefix_fields`, each field's blocks and tail not united."""
        return self._fields(txn, prefix.encode(), limit, united=False)

    def _fields(
        self, txn: Txn, prefix: bytes, limit: int, united: bool = True
    ) -> dict[str, dict[bytes, Any]]:
        """The bitmaps of the terms whose names start with ``prefix`` (at most ``limit``
        distinct terms, 0: no limit), read in one range scan per sub-database
        (``united=False``: a list of bitmaps per field, see :meth:`term_blocks`)."""
        bitmap = _bitmaps()
        parts: dict[bytes, dict[bytes, list[Any]]] = {}
        sep = codec.SEPARATOR
        for db, suffix in ((self.main, 3), (self.pending, 1)):
            cursor = txn.cursor(db)
            if not cursor.set_range(prefix):
                continue
            distinct = 0
            last = b""
            for key, raw in cursor.iternext():
                if not key.startswith(prefix):
                    break
                cut = key.find(sep, len(prefix) - 1 if prefix.endswith(sep) else len(prefix))
                if cut < 0 or len(key) != cut + 1 + suffix:
                    continue  # a longer name (or a control key) sharing the prefix
                term = key[:cut]
                if term != last:
                    last = term
                    distinct += 1
                    if limit and distinct > limit:
                        break
                fields = parts.setdefault(term, {})
                fields.setdefault(key[cut + 1 : cut + 2], []).append(decode_bitmap(raw, what=key))
        cache = self._cache
        if cache is not None and cache.txn is txn:  # a write reading its own changes
            for name in cache.values:
                if name.startswith(prefix) and name[-2:-1] == sep and name[-1:] in b"ntdb":
                    term = name[:-2]
                    main = self._main(txn, name)
                    parts.setdefault(term, {})[name[-1:]] = [main | cache.values[name]]
        terms = sorted(parts)[:limit] if limit else sorted(parts)
        if not united:
            return {term.decode(): parts[term] for term in terms}
        return {
            term.decode(): {
                code: (p[0] if len(p) == 1 else bitmap.union(*p)) for code, p in parts[term].items()
            }
            for term in terms
        }

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
        pending = self._load(txn, _PENDING)
        if doc in pending:
            self._touch(txn, _PENDING).remove(doc)
            for name in names:
                self._touch(txn, name).discard(doc)
            self._touch(txn, _FREE).add(doc)
            return
        self._touch(txn, _DELETED).add(doc)
        import orjson

        listed = sorted(n.decode("utf-8", "surrogateescape") for n in names)
        txn.put(_TOMB + doc.to_bytes(4, "big"), orjson.dumps(listed), db=self.pending)

    def relist(self, txn: Txn, doc: int, removed: Iterable[bytes], added: Iterable[bytes]) -> None:
        """Change the names a live id is listed under (an update: the id stays).

        ``added`` go to the tail.  A merged id is then listed partly in the tail,
        which :meth:`merge` folds in like any addition (a later delete's
        tombstone names both, and a merge applies removals after additions).
        A merged id leaves the main block of each of ``removed`` at once: one
        value of at most 8 KiB per name, whatever the size of the cache.
        """
        merged = doc not in self._load(txn, _PENDING)
        dirty = self._writer(txn).dirty
        for name in added:
            self._load(txn, name).add(doc)
            dirty.add(name)
        block = (doc >> CHUNK_BITS).to_bytes(2, "big")
        for name in removed:
            tail = self._load(txn, name)
            if doc in tail:
                tail.discard(doc)
                dirty.add(name)
            if not merged:
                continue
            key = name + block
            stored = txn.get(key, db=self.main)
            if stored is None:
                continue
            ids = decode_bitmap(stored, what=f"search-tokens[{key!r}]")
            if doc in ids:
                ids.discard(doc)
                if ids:
                    txn.put(key, encode_bitmap(ids), db=self.main)
                else:
                    txn.delete(key, db=self.main)

    def flush(self, txn: Txn) -> None:
        """Write the changed tail values, or merge them with the tail into the main bitmaps
        when the tail would grow past :data:`MERGE_AT` entries (a large batch is merged
        straight from memory: its tail values are never written and read back)."""
        cache = self._cache
        if cache is None or cache.txn is not txn:
            return
        self._cache = None
        changed = {name: cache.values[name] for name in cache.dirty}
        if int(txn.stat(self.pending)["entries"]) + len(changed) > MERGE_AT:
            self._merge(txn, changed)
            return
        for name, ids in changed.items():
            if ids:
                txn.put(name, encode_bitmap(ids), db=self.pending)
            else:
                txn.delete(name, db=self.pending)

    def merge(self, txn: Txn) -> int:
        """Fold the tail into the main bitmaps and purge deleted ids; return names touched."""
        cache = self._cache
        changed: dict[bytes, Any] = {}
        if cache is not None and cache.txn is txn:
            changed = {name: cache.values[name] for name in cache.dirty}
        self._cache = None
        return self._merge(txn, changed)

    def _merge(self, txn: Txn, changed: dict[bytes, Any]) -> int:
        """:meth:`merge`, with ``changed`` the tail values this transaction changed in memory
        (they replace the stored ones)."""
        import orjson

        bitmap = _bitmaps()
        additions: dict[bytes, Any] = {}
        removals: dict[bytes, Any] = {}
        tombs: list[bytes] = []
        stored_names: set[bytes] = set()
        deleted = changed.get(_DELETED)
        free = changed.get(_FREE)
        for key, raw in _scan(txn, self.pending):
            key = bytes(key)
            if key.startswith(_TOMB):
                doc = int.from_bytes(key[len(_TOMB) :], "big")
                for name in orjson.loads(raw):
                    removals.setdefault(name.encode("utf-8", "surrogateescape"), bitmap()).add(doc)
                tombs.append(key)
            elif key == _DELETED:
                deleted = decode_bitmap(raw, what=key) if deleted is None else deleted
            elif key == _FREE:
                free = decode_bitmap(raw, what=key) if free is None else free
            elif not key.startswith(_CONTROL):
                stored_names.add(key)
                if key not in changed:
                    additions[key] = decode_bitmap(raw, what=key)
        for name, ids in changed.items():
            if ids and not name.startswith(_CONTROL):
                additions[name] = ids
        touched = 0
        for name in sorted(set(additions) | set(removals)):
            plus = additions.get(name) or bitmap()
            minus = removals.get(name) or bitmap()
            both = plus | minus
            first, last = both.min() >> CHUNK_BITS, both.max() >> CHUNK_BITS
            for block in range(first, last + 1):
                if first == last:
                    add, drop = plus, minus
                else:
                    span = bitmap()
                    span.add_range(block << CHUNK_BITS, (block + 1) << CHUNK_BITS)
                    add, drop = plus & span, minus & span
                    if not add and not drop:
                        continue
                key = name + block.to_bytes(2, "big")
                stored = txn.get(key, db=self.main)
                ids = bitmap() if stored is None else decode_bitmap(stored, what=key)
                ids |= add
                ids -= drop
                if ids:
                    txn.put(key, encode_bitmap(ids), db=self.main)
                else:
                    txn.delete(key, db=self.main)
            touched += 1
        for name in stored_names:
            txn.delete(name, db=self.pending)
        for key in tombs:
            txn.delete(key, db=self.pending)
        free = (free or bitmap()) | (deleted or bitmap())
        txn.delete(_DELETED, db=self.pending)
        txn.delete(_PENDING, db=self.pending)
        if free:
            txn.put(_FREE, encode_bitmap(free), db=self.pending)
        else:
            txn.delete(_FREE, db=self.pending)
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
