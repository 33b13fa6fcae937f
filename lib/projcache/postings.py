"""The index side of the store: integer artifact ids and the bitmaps of the v3 search index.

:class:`IdRepository` maps artifact keys to dense integer ids (``artifact-ids`` /
``artifact-keys``); :class:`BitmapIndex` keeps named sets of those ids as roaring
bitmaps (``search-tokens``, the main bitmaps by block of 65,536 ids, and
``search-pending``, the tail of recent writes and the id allocator);
:class:`FacetIndex` pairs them with the id map for facet listings.  Like the record
repositories (:mod:`projcache.repository`) they work inside a transaction they
are given and know nothing of consistency between sub-databases
(:mod:`projcache.mutations`).  The format is in docs/cache/storage-format.md.

Over 400 lines on purpose: :class:`BitmapIndex`'s main blocks, tail, merge
and id reuse keep one invariant (every id is in exactly the bitmaps its record
implies, whether in a block or in the tail), which is easier to check when it
lives in one class.
"""

from __future__ import annotations

import bisect
import functools
import os
import struct
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Iterator
from operator import itemgetter

from . import codec
from .storage import Txn, before_commit
from .storage import scan as _scan

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Union

__all__ = [
    "ANY_FIELD",
    "CARRY_PAIRS",
    "CARRY_RATIO",
    "CHUNK_BITS",
    "MERGE_AT",
    "ODD_NAMES",
    "SMALL_POSTINGS",
    "WIDE_BITS",
    "BitmapIndex",
    "FacetIndex",
    "IdRepository",
    "TermPostings",
    "chunk_bits",
    "decode_bitmap",
    "decode_small",
    "encode_bitmap",
    "encode_small",
    "facet_name",
    "first_high",
    "small_ids",
    "small_parts",
    "term_name",
]

_BITMAP_FORMAT = b"\x02"
# The all-fields code: a term kept in blocks also has, per block, the union of its fields
# (key term + NUL + "*" + block), written by the merge: a word's exact total reads one
# value per block instead of one per field and block.  "*" is no field code.
ANY_FIELD = b"*"
_FIELD_CODES = (b"b", b"d", b"n", b"t")
# Facets a query reads whole (the tie-break's name lengths and managed, the type filter):
# stored in chunks of 2**(CHUNK_BITS + WIDE_BITS) ids (262,144), four blocks per value, so
# that a tie-break at a million ids reads 4 values per name length instead of 16.  A merge
# rewrites at most that chunk of each (the name lengths: ~110 KiB per 65,536 ids of
# chunk): bounded, whatever N is.
WIDE_BITS = 2
_WIDE_FACETS = (b"\x01len\x00", b"\x01managed\x00", b"\x01type\x00")
_ANY_SUFFIX = codec.SEPARATOR + ANY_FIELD
# The code byte after ANY_FIELD: past a term's all-fields keys.
_AFTER_ANY = bytes([ANY_FIELD[0] + 1])
_SMALL_FORMAT = b"\x05"  # a small term's postings, every field in one value (encode_small)
# A term listing at most this many (id, field) pairs is stored inline, in one value of at most
# 1 + 4 * 3 + 4 * 448 = 1,805 bytes: it still shares a leaf page (LMDB puts a value past
# ~2,000 bytes on overflow pages of its own).  A rare word at 1,000,000 artifacts lists
# ~200-250 pairs; kept in blocks it cost a search one value per field and 65,536-id block
# (16 blocks) instead of one lookup.
SMALL_POSTINGS = 448
CHUNK_BITS = 16  # ids per stored bitmap value: 65,536 (one roaring container)
_CONTROL = b"\xff"
_LOG = b"\xfe"  # + 8-byte sequence number: one write-log entry (see _pack_entry)
_FREE = _CONTROL + b"\x03free"  # ids that left every index: reused first
_NEXT = _CONTROL + b"\x05next"  # the next never-used id (4 bytes big-endian)
_VERSION = _CONTROL + b"\x06version"  # next log sequence number + 8 random bytes
_LAYOUT = _CONTROL + b"\x07layout"  # the index layout a cache was built in (see postings())
# 1: every block of a term in blocks has its all-fields value; 2: and every artifact whose
# name is not plain (terms.plain_name) is listed under ODD_NAMES (see odd_names_listed()).
# 3: a write's id mappings wait in search-pending until the next merge (IdRepository).
_LAYOUT_NOW = b"\x03"
_ALL_FIELDS_LAYOUTS = (b"\x01", b"\x02", b"\x03")
_FOLD_AT = 4096  # a transaction's entries kept as a list up to this many (see _WriteCache)
MERGE_AT = 256  # write-log entries (artifact writes) that trigger a merge into the main bitmaps
# A merge triggered by writes folds a name's log changes into its stored values only when
# that is cheap per change.  A value of at least _OWN_PAGES bytes lives on overflow pages of
# its own and is rewritten whole for one added id (a common term's block: up to 8 KiB); when
# the values a name's changes would rewrite hold more than CARRY_RATIO bytes per changed id,
# the changes stay in the log ("carried") until enough gather, at most CARRY_PAIRS (name, id)
# changes in all.  Small values share leaf pages and are always folded.  Without this a merge
# rewrote every common term's newest block every MERGE_AT writes, a cost that grew with N.
_OWN_PAGES = 2000
CARRY_RATIO = 128
CARRY_PAIRS = 8192


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


def first_high(raw: bytes) -> Optional[int]:
    """The high 16 bits of the smallest id in a value of :func:`encode_bitmap`, read from the
    header of roaring's portable format (cookie, then each container's 16-bit key in
    order) without decoding; None when the header is not one of the two expected."""
    if len(raw) < 9 or raw[:1] != _BITMAP_FORMAT:
        return None
    cookie = int.from_bytes(raw[1:5], "little")
    if cookie & 0xFFFF == 12347:  # SERIAL_COOKIE: container count - 1, run flags, keys
        at = 5 + ((cookie >> 16) + 1 + 7) // 8
    elif cookie == 12346 and int.from_bytes(raw[5:9], "little"):  # SERIAL_COOKIE_NO_RUN...
        at = 9
    else:
        return None
    return int.from_bytes(raw[at : at + 2], "little") if len(raw) >= at + 2 else None


def _in_chunk(key: bytes, raw: bytes, bits: int) -> bool:
    """Whether bitmap value ``raw`` under ``key`` (name + chunk number) starts in that chunk
    of ``2**bits`` ids (empty values count as in it)."""
    high = first_high(raw)  # (a container holds 2**16 ids, whatever CHUNK_BITS is)
    if high is not None and bits >= 16:
        return high >> (bits - 16) == int.from_bytes(key[-2:], "big")
    ids = decode_bitmap(raw, what=key)
    return not ids or ids.min() >> bits == int.from_bytes(key[-2:], "big")


def encode_small(fields: dict[bytes, Any]) -> bytes:
    """Frame a small term's postings, all fields in one value: byte 0x05, then per field its
    code (1 byte), its number of ids (2 bytes) and the ids (4 bytes each, big-endian)."""
    parts = [_SMALL_FORMAT]
    for code in sorted(fields):
        ids = fields[code]
        if ids:
            parts.append(code + len(ids).to_bytes(2, "big"))
            parts.append(struct.pack(f">{len(ids)}I", *ids))
    return b"".join(parts)


@functools.cache
def _ids_struct(count: int) -> struct.Struct:
    """The layout of ``count`` 4-byte big-endian ids (compiled once per count)."""
    return struct.Struct(f">{count}I")


def decode_small(raw: bytes, *, what: Any = "postings") -> dict[bytes, Any]:
    """``{field code: ids}`` of a value written by :func:`encode_small`.

    Raises:
        CorruptRecordError: not such a value, or cut short.
    """
    bitmap = _bitmaps()
    return {code: bitmap(ids) for code, ids in small_ids(raw, what=what).items()}


_STRUCTS: dict[int, struct.Struct] = {}  # count -> the layout of that many ids


def small_parts(
    raw: bytes, levels: dict[int, int], parts: dict[int, list[Any]], *, what: Any = "postings"
) -> None:
    """Append each field's ids of a :func:`encode_small` value to ``parts[levels[its code
    byte]]``, skipping codes ``levels`` lacks: :func:`small_ids` without the dict per value
    (a query of rare words decodes a few such values per word).

    Raises:
        CorruptRecordError: not such a value, or cut short.
    """
    at, end = 1, len(raw)
    if raw[:1] == _SMALL_FORMAT:
        structs = _STRUCTS
        while at + 3 <= end:
            count = raw[at + 1] << 8 | raw[at + 2]
            stop = at + 3 + 4 * count
            if stop > end:
                break
            level = levels.get(raw[at])
            if level is not None:
                layout = structs.get(count)
                if layout is None:
                    layout = structs[count] = _ids_struct(count)
                ids = layout.unpack_from(raw, at + 3)
                listed = parts.get(level)
                if listed is None:
                    parts[level] = [ids]
                else:
                    listed.append(ids)
            at = stop
        if at == end:
            return
    from .errors import CorruptRecordError

    name = what if isinstance(what, str) else f"postings {bytes(what)!r}"
    raise CorruptRecordError(f"{name}: not a small-postings value")


def small_ids(raw: bytes, *, what: Any = "postings") -> dict[bytes, tuple[int, ...]]:
    """:func:`decode_small` as tuples of ids, ascending (no bitmap built: a query asks a rare
    word's few ids whether they hold a document, cheaper with ``in`` on a tuple).

    Raises:
        CorruptRecordError: not such a value, or cut short.
    """
    fields: dict[bytes, tuple[int, ...]] = {}
    at, end = 1, len(raw)
    if raw[:1] == _SMALL_FORMAT:
        while at + 3 <= end:
            count = raw[at + 1] << 8 | raw[at + 2]
            stop = at + 3 + 4 * count
            if stop > end:
                break
            fields[raw[at : at + 1]] = _ids_struct(count).unpack_from(raw, at + 3)
            at = stop
        if at == end:
            return fields
    from .errors import CorruptRecordError

    name = what if isinstance(what, str) else f"postings {bytes(what)!r}"
    raise CorruptRecordError(f"{name}: not a small-postings value")


def facet_name(facet: str, value: str) -> bytes:
    """The bitmap name of ``facet == value`` (facets: type, collection, tag, managed, len)."""
    name = b"\x01" + facet.encode() + codec.SEPARATOR + value.encode("utf-8", "surrogatepass")
    if len(name) > codec.MAX_KEY_BYTES - 2:  # room for the chunk suffix
        import hashlib  # here: rare, and loading OpenSSL shows in a cold CLI call

        name = b"\x01" + facet.encode() + b"\x00#" + hashlib.sha256(name).hexdigest().encode()
    return name


def chunk_bits(name: bytes) -> int:
    """log2 of the ids per stored value of bitmap ``name`` (wide facets: see WIDE_BITS)."""
    return CHUNK_BITS + WIDE_BITS if name.startswith(_WIDE_FACETS) else CHUNK_BITS


def term_name(term: str, code: bytes) -> bytes:
    """The bitmap name of ``term`` in field ``code`` (``n``, ``t``, ``d`` or ``b``)."""
    return term.encode() + codec.SEPARATOR + code


# The artifacts whose names are not plain (:func:`projcache.terms.plain_name`: non-ASCII, or
# split at a camelCase boundary): the only ones whose name may be shorter than its matched
# tokens together, so the tie-break ranks them from their keys and skips, for the others,
# the name lengths a group's words rule out.  Listed in a cache of layout 2 and later.
ODD_NAMES = facet_name("name", "odd")


_Pair = tuple[bytes, bytes]


class IdRepository:
    """``artifact-ids`` (artifact key -> 4-byte id) and ``artifact-keys`` (id -> key).

    In an index of layout 3 a single write does not touch either: the mappings it makes
    or ends since the last merge wait in ``search-pending`` beside the write log, which
    that write dirties anyway (:data:`_PENDING_KEY` + key -> id, or empty for a key whose
    id was deleted; :data:`_PENDING_ID` + id -> key), and the next merge moves them
    (:meth:`settle`).  Two B-trees fewer per commit (each costs its root-to-leaf path, 3
    pages at 100,000, for two more ``search-pending`` leaves): 18 -> 14 LMDB pages for a
    new artifact, 18 -> 13 for a delete.  Every read overlays them, so what is mapped is
    the same either way."""

    def __init__(self, by_key: Any, by_id: Any, pending: Any = None):
        self.by_key = by_key
        self.by_id = by_id
        self.pending = pending

    @staticmethod
    def pack(doc: int) -> bytes:
        """The 4-byte big-endian key of id ``doc`` (sorts like the number)."""
        return doc.to_bytes(4, "big")

    def id_of(self, txn: Txn, key: str) -> Optional[int]:
        """The id of artifact ``key``, or ``None``."""
        raw_key = key.encode()
        raw = None
        if self.pending is not None:
            raw = txn.get(_PENDING_KEY + raw_key, db=self.pending)
        if raw is None:
            raw = txn.get(raw_key, db=self.by_key)
        return int.from_bytes(raw, "big") if raw else None

    def key_of(self, txn: Txn, doc: int) -> Optional[str]:
        """The key of id ``doc``, or ``None`` (an id deleted since the last merge may still
        give its old key: callers take ids from the bitmaps, which no longer list it)."""
        packed = doc.to_bytes(4, "big")
        raw = txn.get(packed, db=self.by_id)
        if raw is None and self.pending is not None:
            raw = txn.get(_PENDING_ID + packed, db=self.pending)
        return None if raw is None else bytes(raw).decode("utf-8")

    def _found(self, txn: Txn, docs: Iterable[int]) -> list[tuple[bytes, bytes]]:
        """``(packed id, UTF-8 key)`` of the ids in ``docs`` that have a key, read with one
        ``getmulti`` (in C: a page of hits costs one call, not one lookup each; one id, one
        lookup), then the ids mapped since the last merge from ``search-pending``."""
        packed = list(map(_PACK_ID, docs))
        if len(packed) == 1:
            key = txn.get(packed[0], db=self.by_id)
            found = [] if key is None else [(packed[0], key)]
        else:
            found = txn.cursor(self.by_id).getmulti(packed)
        if len(found) == len(packed) or self.pending is None:
            return found
        known = dict(found)
        out = []
        for doc in packed:
            key = known.get(doc)
            if key is None:
                key = txn.get(_PENDING_ID + doc, db=self.pending)
            if key is not None:
                out.append((doc, key))
        return out

    def key_map(self, txn: Txn, docs: Iterable[int]) -> dict[int, str]:
        """The keys of ``docs`` by id (an id without a key is left out).

        When every id has its key (the rule: a bitmap lists live ids) the pairs come back in
        the order of ``docs`` and are zipped with them, decoded by ``map`` (in C: a page of
        hits' keys cost ~7,500 instructions each when each id was unpacked in Python)."""
        docs = docs if isinstance(docs, list) else list(docs)
        found = self._found(txn, docs)
        if len(found) == len(docs):
            return dict(zip(docs, map(_DECODE, map(_VALUE, found))))
        return {int.from_bytes(doc, "big"): bytes(key).decode("utf-8") for doc, key in found}

    def keys_of(self, txn: Txn, docs: Iterable[int]) -> list[bytes]:
        """The UTF-8 keys of ids ``docs`` (live ids, as a bitmap lists them), in their order."""
        return [key for _doc, key in self._found(txn, docs)]

    def _defers(self, txn: Txn) -> bool:
        """Whether this index keeps a write's mappings in ``search-pending`` (layout 3 on)."""
        if self.pending is None:
            return False
        layout = txn.get(_LAYOUT, db=self.pending)
        return layout is not None and layout >= _DEFERRED_IDS_LAYOUT

    def put(self, txn: Txn, key: str, doc: int) -> None:
        """Record that ``key`` has id ``doc`` (both directions)."""
        packed = doc.to_bytes(4, "big")
        raw_key = key.encode()
        if self._defers(txn):
            txn.put(_PENDING_KEY + raw_key, packed, db=self.pending)
            txn.put(_PENDING_ID + packed, raw_key, db=self.pending)
            return
        txn.put(raw_key, packed, db=self.by_key)
        txn.put(packed, raw_key, db=self.by_id)

    def put_settled(self, txn: Txn, key: str, doc: int) -> None:
        """:meth:`put` straight into both maps, whatever the layout: for a transaction that
        merges anyway and called :meth:`settle` first (no mapping waits, so none overlays
        these).  A batch of 1,000 new artifacts wrote 2,000 waiting mappings that its own
        merge read back, moved and deleted."""
        packed = doc.to_bytes(4, "big")
        raw_key = key.encode()
        txn.put(raw_key, packed, db=self.by_key)
        txn.put(packed, raw_key, db=self.by_id)

    def delete(self, txn: Txn, key: str, doc: int) -> None:
        """Forget ``key`` <-> ``doc``."""
        packed = doc.to_bytes(4, "big")
        raw_key = key.encode()
        if self._defers(txn):
            # The stored pair (if any) goes at the merge; the id is not reused before it.
            txn.put(_PENDING_KEY + raw_key, b"", db=self.pending)
            txn.delete(_PENDING_ID + packed, db=self.pending)
            return
        txn.delete(raw_key, db=self.by_key)
        txn.delete(packed, db=self.by_id)

    def _pending_pairs(self, txn: Txn) -> tuple[list[_Pair], list[_Pair]]:
        """The waiting ``(key, id or b"")`` and ``(id, key)`` pairs, prefixes cut off."""
        if self.pending is None:
            return [], []
        cut = len(_PENDING_KEY)
        by_key = [(k[cut:], v) for k, v in _scan(txn, self.pending, _PENDING_KEY)]
        by_id = [(k[cut:], v) for k, v in _scan(txn, self.pending, _PENDING_ID)]
        return by_key, by_id

    def settle(self, txn: Txn) -> int:
        """Move the waiting mappings into ``artifact-ids`` / ``artifact-keys`` (a merge);
        return how many there were."""
        by_key, by_id = self._pending_pairs(txn)
        for key, value in by_key:
            old = txn.get(key, db=self.by_key)
            if old is not None and old != value and txn.get(old, db=self.by_id) == key:
                txn.delete(old, db=self.by_id)
            if value:
                txn.put(key, value, db=self.by_key)
            elif old is not None:
                txn.delete(key, db=self.by_key)
        for packed, key in by_id:
            txn.put(packed, key, db=self.by_id)
        for prefix, pairs in ((_PENDING_KEY, by_key), (_PENDING_ID, by_id)):
            for key, _value in pairs:
                txn.delete(prefix + key, db=self.pending)
        return len(by_key)

    def _overlaid(self, txn: Txn) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
        """Both maps as :meth:`settle` would leave them (verify)."""
        keys = dict(_scan(txn, self.by_key))
        ids = dict(_scan(txn, self.by_id))
        by_key, by_id = self._pending_pairs(txn)
        for key, value in by_key:
            old = keys.get(key)
            if old is not None and old != value and ids.get(old) == key:
                del ids[old]
            if value:
                keys[key] = value
            else:
                keys.pop(key, None)
        ids.update(by_id)
        return keys, ids

    def counts(self, txn: Txn) -> tuple[int, int]:
        """How many keys and ids are mapped (quick verify: the stored counts, corrected by
        a point read per waiting mapping)."""
        keys = int(txn.stat(self.by_key)["entries"])
        ids = int(txn.stat(self.by_id)["entries"])
        by_key, by_id = self._pending_pairs(txn)
        for key, value in by_key:
            old = txn.get(key, db=self.by_key)
            if old is not None and old != value and txn.get(old, db=self.by_id) == key:
                ids -= 1
            if value and old is None:
                keys += 1
            elif not value and old is not None:
                keys -= 1
        ids += sum(txn.get(packed, db=self.by_id) is None for packed, _key in by_id)
        return keys, ids

    def items(self, txn: Txn) -> Iterator[tuple[str, int]]:
        """Yield ``(key, id)`` of every mapped key (verify)."""
        for key, raw in self._overlaid(txn)[0].items():
            yield key.decode("utf-8", "replace"), int.from_bytes(raw, "big")

    def reverse_items(self, txn: Txn) -> Iterator[tuple[int, str]]:
        """Yield ``(id, key)`` of every mapped id (verify)."""
        for raw, key in self._overlaid(txn)[1].items():
            yield int.from_bytes(raw, "big"), key.decode("utf-8", "replace")


_PACK_ID = struct.Struct(">I").pack


def _inline_value(cursor: Any, key: bytes) -> tuple[Optional[bytes], bool]:
    """A term's inline value (``key`` = term + NUL) found by one cursor lookup, or ``None``,
    and whether the term is stored in blocks instead (its keys follow ``key``)."""
    if cursor.set_range(key):
        found = cursor.key()
        if found == key:
            return cursor.value(), False
        if found.startswith(key):
            return None, True
    return None, False


_VALUE = itemgetter(1)  # a (key, value) pair's value
_DECODE = bytes.decode  # UTF-8 (read transactions hand out bytes: storage's buffers=False)
# search-pending keys of the mappings that wait for the next merge (see IdRepository).
# Below the log (0xfe) and the control values (0xff), so the log's scans never meet them.
_PENDING_ID = b"\xfc"  # + 4-byte id -> artifact key
_PENDING_KEY = b"\xfd"  # + artifact key -> 4-byte id, or b"" (its id was deleted)
_DEFERRED_IDS_LAYOUT = b"\x03"


# One write-log entry: (op, id, names added, names removed); ops below.
_Entry = tuple[bytes, int, list[bytes], list[bytes]]
_ADD = b"a"  # a new id, listed under its names
_UPDATE = b"u"  # a live id gains and loses names
_DELETE = b"d"  # an id leaves all its names (freed by the merge that purges it)
# An add's or a delete's entry with its names already joined by 0xff (as a log value holds
# them): (op, id, joined names).  A single write or delete names its id ~70 times; made
# straight as one bytes (mutations.packed_index_names), they are not a list of ~70 bytes
# split out of joined terms and joined again here (see _WriteCache.listed).
_PackedEntry = tuple[bytes, int, bytes]


def _pack_entry(op: bytes, doc: int, added: list[bytes], removed: list[bytes]) -> bytes:
    """A log value: op, 4-byte id, the added names, 0xfe, the removed names.

    Names are UTF-8 (or surrogatepass, or hex digests): bytes 0xfe and 0xff never occur
    in them, so they separate the names without escaping."""
    return op + doc.to_bytes(4, "big") + b"\xff".join(added) + b"\xfe" + b"\xff".join(removed)


def _listed(entry: Union[_Entry, _PackedEntry]) -> _Entry:
    """``entry`` with its names as lists (a packed entry's split)."""
    if len(entry) == 4:
        return entry
    op, doc, packed = entry
    names = packed.split(b"\xff") if packed else []
    return (op, doc, names, []) if op == _ADD else (op, doc, [], names)


def _unpack_entry(raw: bytes, what: bytes) -> _Entry:
    """Read a log value (see :func:`_pack_entry`).

    Raises:
        CorruptRecordError: the value is no log entry.
    """
    op = raw[:1]
    plus, sep, minus = raw[5:].partition(b"\xfe")
    if op not in (_ADD, _UPDATE, _DELETE) or not sep or len(raw) < 5:
        from .errors import CorruptRecordError

        raise CorruptRecordError(f"search-pending[{what!r}]: not a write-log entry")
    return (
        op,
        int.from_bytes(raw[1:5], "big"),
        plus.split(b"\xff") if plus else [],
        minus.split(b"\xff") if minus else [],
    )


class _Tail:
    """The write log applied in order: per name the ids it gained and lost since the
    last merge, the ids deleted and the ids added (new) since then."""

    def __init__(self) -> None:
        bitmap = _bitmaps()
        self.adds: dict[bytes, Any] = {}
        self.removes: dict[bytes, Any] = {}
        self.deleted = bitmap()
        self.added = bitmap()
        self.entries = 0
        self._sorted: Optional[list[bytes]] = None

    def apply(self, entry: _Entry) -> None:
        """Apply one log entry after the ones already applied."""
        op, doc, added, removed = entry
        bitmap = _bitmaps()
        adds, removes = self.adds, self.removes
        self.entries += 1
        self._sorted = None
        if op == _ADD:
            self.added.add(doc)
            self.deleted.discard(doc)
        elif op == _DELETE:
            self.deleted.add(doc)
        for name in added:
            gone = removes.get(name)
            if gone is not None:
                gone.discard(doc)
            ids = adds.get(name)
            if ids is None:
                adds[name] = bitmap([doc])
            else:
                ids.add(doc)
        for name in removed:
            ids = adds.get(name)
            if ids is not None:
                ids.discard(doc)
            gone = removes.get(name)
            if gone is None:
                removes[name] = bitmap([doc])
            else:
                gone.add(doc)

    def apply_all(self, entries: Iterable[_Entry]) -> None:
        """Apply many entries in order, faster than one by one: the additions of new ids
        are gathered in lists first.  That is the same as applying in order because a new
        id's addition is its first entry in the log (ids are reused only after a merge) and
        entries of different ids touch different bits."""
        later: list[_Entry] = []
        gathered: defaultdict[bytes, list[int]] = defaultdict(list)  # (2x a dict.get loop)
        new: list[int] = []
        for entry in entries:
            op, doc, added, _removed = entry
            if op != _ADD:
                later.append(entry)
                continue
            new.append(doc)
            for name in added:
                gathered[name].append(doc)
        self.add_new(new, gathered)
        for entry in later:
            self.apply(entry)

    def add_new(self, docs: list[int], names: dict[bytes, Any]) -> None:
        """Apply the additions of new ids ``docs``, listed under ``names`` (name -> ids, a
        list or a bitmap given away): the same as their log entries in any order (a new id's
        addition is its first entry)."""
        bitmap = _bitmaps()
        if docs:
            fresh = bitmap(docs)
            self.entries += len(docs)
            self.added |= fresh
            self.deleted -= fresh
        self._sorted = None
        adds = self.adds
        removes = self.removes
        for name, ids_of in names.items():
            new = ids_of if type(ids_of) is bitmap else bitmap(ids_of)
            ids = adds.get(name)
            if ids is None:
                adds[name] = new
            else:
                ids |= new
            gone = removes.get(name)
            if gone is not None:
                gone.difference_update(new)

    def compose(self, later: _Tail) -> None:
        """Apply ``later`` (the log after this one) on top of this one."""
        adds, removes = self.adds, self.removes
        for name, ids in later.removes.items():
            plus = adds.get(name)
            if plus is not None:
                plus.difference_update(ids)
            gone = removes.get(name)
            if gone is None:
                removes[name] = ids.copy()
            else:
                gone |= ids
        for name, ids in later.adds.items():
            gone = removes.get(name)
            if gone is not None:
                gone.difference_update(ids)
            plus = adds.get(name)
            if plus is None:
                adds[name] = ids.copy()
            else:
                plus |= ids
        self.deleted |= later.deleted
        self.added |= later.added
        self.entries += later.entries
        self._sorted = None

    def names(self) -> list[bytes]:
        """Every name the log touches, in byte order."""
        if self._sorted is None:
            self._sorted = sorted(set(self.adds) | set(self.removes))
        return self._sorted

    def with_prefix(self, prefix: bytes) -> list[bytes]:
        """The names starting with ``prefix``, in byte order."""
        names = self.names()
        i = bisect.bisect_left(names, prefix)
        found = []
        while i < len(names) and names[i].startswith(prefix):
            found.append(names[i])
            i += 1
        return found

    def over(self, name: bytes, main: Any) -> Any:
        """``main`` (the merged ids of ``name``) as the log leaves it (a new bitmap)."""
        gone = self.removes.get(name)
        if gone:
            main = main - gone
        plus = self.adds.get(name)
        if plus:
            return main | plus
        return main  # callers pass a bitmap of their own


class _WriteCache:
    """What one write transaction appends to the write log (written at commit)."""

    def __init__(self, txn: Txn):
        self.txn = txn
        self.entries: list[Union[_Entry, _PackedEntry]] = []
        self.packed = False  # whether entries holds a _PackedEntry (see listed)
        self.free: Any = None  # the free ids, once loaded
        self.free_changed = False
        self.tail: Optional[_Tail] = None  # the log with these entries, if read in the txn
        # Entries of a long transaction (a migration, a rebuild) folded into bitmaps per name
        # every _FOLD_AT entries, so that its memory does not grow with ~70 names per write.
        self.bulk: Optional[_Tail] = None

    def listed(self) -> list[_Entry]:
        """The entries, each with its names as lists (packed ones split, once)."""
        if self.packed:
            self.entries = list(map(_listed, self.entries))
            self.packed = False
        return self.entries  # type: ignore[return-value]  # (none packed)

    def count(self) -> int:
        """How many log entries this transaction made."""
        return len(self.entries) + (self.bulk.entries if self.bulk is not None else 0)


class TermPostings:
    """One term's postings as a query reads them: every id (all fields) now, fields on demand.

    ``any`` is a list of bitmaps whose union is every id holding the term in any field
    (the write log applied).  ``fields`` maps a field code to what is known of it: its
    decoded bitmaps (a small term), and/or the keys of its blocks, read by
    :meth:`BitmapIndex.field_parts` only when a ranking level needs them.
    """

    __slots__ = ("any", "blocks", "fields", "keys", "listed", "name", "small", "tail")

    def __init__(self, name: bytes):
        self.name = name  # term + NUL
        self.any: list[Any] = []
        self.fields: dict[bytes, list[Any]] = {}  # code -> decoded bitmaps
        self.keys: dict[bytes, list[bytes]] = {}  # code -> block keys not read yet
        self.blocks: dict[bytes, Any] = {}  # block key -> its bitmap, read for one id
        self.small: dict[bytes, tuple[int, ...]] = {}  # a small term's ids per field
        self.listed = True  # ``keys`` lists every block key (else a field's keys are unread)
        self.tail: Optional[_Tail] = None  # the write log as the read saw it


class BitmapIndex:
    """Named sets of artifact ids as compressed (roaring) bitmaps: the v3 search index.

    ``search-tokens`` holds the *main* bitmaps, one LMDB value per name per
    block of 65,536 ids (key = name + 2-byte block number).  ``search-pending``
    holds the *write log*: one value per write of an artifact since the last
    merge (its id and the names it gained and lost), appended under increasing
    sequence numbers, plus the id allocator.  A single write appends one value
    (one page, whatever N is and however many terms the artifact has); when the
    log holds more than :data:`MERGE_AT` entries it is merged into the main
    bitmaps in the same transaction.  Readers see the main bitmaps with the log
    applied (:class:`_Tail`, built once per log version and kept by the
    instance); a deleted id leaves every name in the log at once.  An id is
    reused only after a merge removed it from every main bitmap.

    Names: a term in a field (:func:`term_name`) or a facet (:func:`facet_name`).
    """

    def __init__(self, main: Any, pending: Any, ids: Optional[IdRepository] = None):
        self.main = main
        self.pending = pending
        self.ids = ids  # its waiting mappings move at every merge (IdRepository.settle)
        self._cache: Optional[_WriteCache] = None
        self._seen: Optional[tuple[bytes, _Tail]] = None  # (log version, its tail)

    # -- reading -----------------------------------------------------------

    def _values(self, txn: Txn, name: bytes) -> list[tuple[bytes, bytes]]:
        """The stored ``(key, value)`` of each block or chunk of ``name``, in key order (one
        cursor walk; not decoded)."""
        cursor = txn.cursor(self.main)
        found = []
        if cursor.set_range(name):
            size = len(name) + 2
            for key, raw in cursor.iternext():
                if len(key) != size or not key.startswith(name):
                    break
                found.append((key, raw))
        return found

    def _main(self, txn: Txn, name: bytes) -> Any:
        bitmap = _bitmaps()
        found = [decode_bitmap(raw, what=key) for key, raw in self._values(txn, name)]
        if not found:
            if name[:1] != b"\x01" and name[-2:-1] == codec.SEPARATOR:  # a term: inline?
                small = txn.get(name[:-1], db=self.main)
                if small is not None:
                    return decode_small(small, what=name[:-1]).get(name[-1:], bitmap())
            return bitmap()
        return found[0] if len(found) == 1 else bitmap.union(*found)

    def _stored_tail(self, txn: Txn) -> _Tail:
        """The stored log applied (cached per log version: one lookup when unchanged)."""
        version = txn.get(_VERSION, db=self.pending)
        seen = self._seen
        if seen is not None and version is not None and seen[0] == version:
            return seen[1]
        tail = _Tail()
        cursor = txn.cursor(self.pending)
        if version is not None and cursor.set_range(_LOG):
            stored = []
            for key, raw in cursor.iternext():
                if not key.startswith(_LOG):
                    break
                stored.append(_unpack_entry(raw, key))
            tail.apply_all(stored)
        if version is not None:
            self._seen = (version, tail)
        return tail

    def _tail(self, txn: Txn) -> _Tail:
        """The log as this transaction sees it (its own appended entries included)."""
        cache = self._cache
        if cache is None or cache.txn is not txn or not cache.count():
            return self._stored_tail(txn)
        count = self._stored_count(txn)
        if cache.tail is None or cache.tail.entries != count + cache.count():
            cache.tail = self._applied(txn, cache.bulk, cache.listed())[0]
        return cache.tail

    def _applied(
        self, txn: Txn, bulk: Optional[_Tail], entries: list[_Entry], *, take: bool = False
    ) -> tuple[_Tail, list[bytes]]:
        """The stored log, then ``bulk``, then ``entries`` applied; and the stored log's keys.

        ``take``: the caller gives ``bulk`` away (a merge), so when no log is stored it is
        the result itself, ``entries`` applied to it, not copied name by name (a batch of
        1,000 copied ~4,000 bitmaps)."""
        tail = _Tail()
        keys = []
        stored = []
        for key, raw in _scan(txn, self.pending, _LOG):
            stored.append(_unpack_entry(raw, key))
            keys.append(bytes(key))
        if take and bulk is not None and not stored:
            tail = bulk
        else:
            tail.apply_all(stored)
            if bulk is not None:
                tail.compose(bulk)
        tail.apply_all(entries)
        return tail, keys

    def _stored_count(self, txn: Txn) -> int:
        """The number of stored log entries (recorded in the version value)."""
        version = txn.get(_VERSION, db=self.pending)
        return 0 if version is None else int.from_bytes(version[8:12], "big")

    @staticmethod
    def _carried_count(version: Optional[bytes]) -> int:
        """How many of the stored log entries the last merge carried (see CARRY_RATIO): they
        do not count towards MERGE_AT.  Recorded after the version's random tag (a version
        written before carrying existed has none: 0)."""
        return 0 if version is None or len(version) < 24 else int.from_bytes(version[20:24], "big")

    def get(self, txn: Txn, name: bytes) -> Any:
        """The ids under ``name`` (merged bitmaps with the log applied)."""
        return self._tail(txn).over(name, self._main(txn, name))

    def block_count(self, txn: Txn) -> int:
        """How many blocks of 65,536 ids the main bitmaps may span (from the allocator)."""
        nxt = self._next(txn)
        return ((nxt - 1) >> CHUNK_BITS) + 1 if nxt else 0

    @staticmethod
    def block_bits() -> int:
        """log2 of the ids per block (``doc >> block_bits()`` is the block of id ``doc``)."""
        return CHUNK_BITS

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
        found = self.dense_parts(txn, name, blocks)
        if not found:
            return _bitmaps()()
        return found[0] if len(found) == 1 else _bitmaps().union(*found)

    def dense_parts(self, txn: Txn, name: bytes, blocks: Iterable[int]) -> list[Any]:
        """:meth:`get_dense` not united: the bitmaps of the main ``blocks``, disjoint.

        When the write log touches ``name`` they come back united with the log
        applied, as one bitmap (the log may remove ids as well as add them; ids it
        adds outside ``blocks`` may come along: callers only test membership).
        """
        if name.startswith(_WIDE_FACETS):  # a few values: all of them, whatever their chunking
            found = self._stored_parts(txn, name)
        else:
            keys = [name + block.to_bytes(2, "big") for block in blocks]
            values = txn.cursor(self.main).getmulti(keys)
            found = [decode_bitmap(raw, what=key) for key, raw in values]
        tail = self._tail(txn)
        if name in tail.adds or name in tail.removes:
            bitmap = _bitmaps()
            base = bitmap() if not found else found[0] if len(found) == 1 else bitmap.union(*found)
            found = [tail.over(name, base)]
        return found

    def stored_values(self, txn: Txn, name: bytes) -> Optional[list[tuple[bytes, bytes]]]:
        """The stored ``(key, value)`` pairs of ``name`` in key order, not decoded (decode
        each with :func:`decode_bitmap` when needed), or ``None`` when the write log touches
        ``name`` (then :meth:`dense_parts` answers).  For a wide facet a query may not need
        whole: the tie-break stops at the chunk of a name length that fills its page."""
        tail = self._tail(txn)
        if name in tail.adds or name in tail.removes:
            return None
        return self._values(txn, name)

    def _stored_parts(self, txn: Txn, name: bytes) -> list[Any]:
        """Every main value of ``name`` (a blocked name), decoded, in key order."""
        return [decode_bitmap(raw, what=key) for key, raw in self._values(txn, name)]

    def deleted(self, txn: Txn) -> Any:
        """Ids deleted since the last merge (already gone from every name's answer)."""
        return self._tail(txn).deleted.copy()  # the applied log is kept: hand out a copy

    def deleted_view(self, txn: Txn) -> Any:
        """:meth:`deleted` without the copy, for a query that only reads it: the bitmap is the
        applied log's own (kept across transactions until the log changes), so it must not
        be changed."""
        return self._tail(txn).deleted

    def odd_names_listed(self, txn: Txn) -> bool:
        """Whether :data:`ODD_NAMES` lists every artifact whose name is not plain: the index
        was built (or rebuilt) in layout 2 or later.  An earlier cache's writes may have left
        some out, so a query must not count on it there."""
        return txn.get(_LAYOUT, db=self.pending) in (b"\x02", b"\x03")

    def facet(self, txn: Txn, facet: str, value: str) -> Any:
        """Ids with ``facet == value``."""
        return self.get(txn, facet_name(facet, value))

    def name_buckets(self, txn: Txn, floor: int = 1) -> list[int]:
        """The name-length buckets in use from ``floor`` up, ascending (their bitmaps are
        read on demand)."""
        return list(self.iter_name_buckets(txn, floor))

    def iter_name_buckets(self, txn: Txn, floor: int = 1) -> Iterator[int]:
        """:meth:`name_buckets` one at a time: the next bucket is looked for only when asked
        (a tie-break that fills its page from the first few lengths does not seek past the
        dozens of longer ones, one cursor seek each).

        One seek per bucket: after a bucket's first key the cursor jumps past
        its other blocks (a bucket has one key per block of ids).
        """
        prefix = facet_name("len", "")
        tail = self._tail(txn)
        logged = sorted(
            bucket
            for bucket in {
                int(n[len(prefix) :]) for n in tail.with_prefix(prefix) if n in tail.adds
            }
            if bucket >= floor
        )
        cursor = txn.cursor(self.main)
        target = facet_name("len", f"{floor:02d}") if floor > 1 else prefix
        last = 0
        while cursor.set_range(target):
            key = cursor.key()
            if not key.startswith(prefix):
                break
            name = key[: len(key) - 2]
            bucket = int(name[len(prefix) :])
            # Past every block key of this bucket (buckets are two digits: 01 .. 64).
            target = name + b"\xff\xff\xff"
            while logged and logged[0] < bucket:  # a length only the write log has so far
                last = logged.pop(0)
                yield last
            if logged and logged[0] == bucket:
                logged.pop(0)
            if bucket >= floor and bucket > last:
                last = bucket
                yield bucket
        for bucket in logged:
            if bucket > last:
                yield bucket

    def postings(
        self,
        txn: Txn,
        prefix: bytes,
        limit: int,
        covered: Optional[Callable[[bytes, Container[bytes]], bool]] = None,
    ) -> dict[str, TermPostings]:
        """The terms whose names start with ``prefix`` (``term + NUL``: that one term), at most
        ``limit`` distinct ones in byte order (0: no limit), as :class:`TermPostings`.

        ``covered(term, earlier)``: whether every id ``term`` lists in a field is listed in the
        same field by terms of this scan (``earlier``: the terms met before it, in byte order,
        or later ones the caller's rule vouches for): such a term is left out unread.  When
        the limit might then let a term in that the full answer leaves out, the scan is made
        again without ``covered``.

        One scan of the keys; only the all-fields blocks (:data:`ANY_FIELD`) and small
        terms' values are read: a field's blocks are read when a ranking level needs them
        (:meth:`field_parts`).  A block without its all-fields value (a cache written
        before it existed) counts its fields' blocks instead.  Terms left without ids by
        the write log are left out.
        """
        sep = codec.SEPARATOR
        start = len(prefix) - 1 if prefix.endswith(sep) else len(prefix)
        found: dict[bytes, TermPostings] = {}
        # Written in this layout (see _LAYOUT): every block of a term in blocks has its
        # all-fields value, so a field's block keys need not be listed: the scan jumps from
        # a field's first key to the next field.
        trusted = txn.get(_LAYOUT, db=self.pending) in _ALL_FIELDS_LAYOUTS
        cursor = txn.cursor(self.main)
        multi: Any = None  # a second cursor for the all-fields blocks, made when needed
        in_use: Optional[int] = None  # block_count, read when needed
        more = cursor.set_range(prefix)
        distinct = 0
        last = b""
        skipped: set[bytes] = set()
        term: Optional[TermPostings] = None
        while more:
            key = cursor.key()
            if not key.startswith(prefix):
                break
            cut = key.find(sep, start)
            size = len(key) - cut
            if cut < 0 or (size != 4 and size != 1):
                more = cursor.next()
                continue  # a longer name (or a control key) sharing the prefix
            if key[:cut] != last:
                last = key[:cut]
                distinct += 1
                if limit and distinct > limit:
                    break
                if covered is not None and covered(last, found):
                    skipped.add(last)  # past every key of this term, none read
                    more = cursor.set_range(last + sep + b"\xff\xff\xff\xff")
                    continue
                term = found[last] = TermPostings(last + sep)
                term.listed = not trusted
            assert term is not None
            if size == 1:  # a small term: every field in this one value, one bitmap
                small = term.small = small_ids(cursor.value(), what=key)
                every = [doc for ids in small.values() for doc in ids]
                term.any.append(_bitmaps()(every))
            elif trusted:
                code = key[cut + 1 : cut + 2]
                if code == ANY_FIELD:
                    # Every all-fields block of the term in one getmulti (in C), then past
                    # them: a term in blocks has one in each of up to 16 blocks at 1,000,000.
                    if in_use is None:
                        in_use = self.block_count(txn)
                    base = key[:-2]
                    wanted_keys = [key] + [
                        base + block.to_bytes(2, "big")
                        for block in range(int.from_bytes(key[-2:], "big") + 1, in_use)
                    ]
                    if multi is None:
                        multi = txn.cursor(self.main)
                    for got, raw in multi.getmulti(wanted_keys):
                        term.any.append(decode_bitmap(raw, what=got))
                    more = cursor.set_range(base[:-1] + _AFTER_ANY)
                    continue
                else:
                    term.keys[code] = []
                    more = cursor.set_range(key[: cut + 1] + bytes([key[cut + 1] + 1]))
                    continue
            else:
                term.keys.setdefault(key[cut + 1 : cut + 2], []).append(key)
            more = cursor.next()
        wanted: list[bytes] = []
        for term in found.values() if not trusted else ():
            stars = term.keys.pop(ANY_FIELD, None)
            if not term.keys:
                continue
            blocks = {key[-2:] for keys in term.keys.values() for key in keys}
            if stars is not None:
                wanted.extend(stars)
                if len(stars) == len(blocks):  # (the merge writes one per block in use)
                    continue
                blocks.difference_update(key[-2:] for key in stars)
            for keys in term.keys.values():  # blocks without their all-fields value
                wanted.extend(key for key in keys if key[-2:] in blocks)
        if wanted:
            values = txn.cursor(self.main).getmulti(wanted)
            for key, raw in values:
                cut = key.find(sep, start)
                found[key[:cut]].any.append(decode_bitmap(raw, what=key))
        tail = self._tail(txn)
        if tail.entries:
            self._apply_tail(txn, tail, prefix, start, found)
        if skipped:
            for name in skipped:  # (the log may touch a left-out term: still covered)
                found.pop(name, None)
            if limit and len(found) + len(skipped) >= limit:
                # The limit may cut the terms (in byte order, counting the left-out ones), or
                # have stopped the scan before a later term that covers one: redo the scan
                # whole (only a prefix of hundreds of terms gets here).
                return self.postings(txn, prefix, limit)
        for term in found.values():
            term.tail = tail
        result: dict[str, TermPostings] = {}
        for name in sorted(found):
            term = found[name]
            if term.any:
                result[name.decode()] = term
                if limit and len(result) >= limit:
                    break
        return result

    def small_values(
        self, txn: Txn, prefix: bytes, limit: int
    ) -> Optional[list[tuple[bytes, bytes]]]:
        """:meth:`postings` when every term it finds is small and the write log touches
        none of them: ``(term + NUL, its stored value)`` in byte order (decode the value with
        :func:`small_ids`), nothing built; ``None`` otherwise (then :meth:`postings` answers).

        A query of rare words reads its terms this way: no :class:`TermPostings` and no
        bitmap per term (a term without ids is listed: it adds nothing to a query)."""
        sep = codec.SEPARATOR
        start = len(prefix) - 1 if prefix.endswith(sep) else len(prefix)
        tail = self._tail(txn)
        if tail.entries and tail.with_prefix(prefix):
            return None
        found: list[tuple[bytes, bytes]] = []
        cursor = txn.cursor(self.main)
        if not cursor.set_range(prefix):
            return found
        last = b""
        for key, value in cursor.iternext():
            if not key.startswith(prefix):
                break
            cut = key.find(sep, start)
            size = len(key) - cut
            if cut < 0 or (size != 4 and size != 1):
                continue  # a longer name (or a control key) sharing the prefix
            if size != 1 or key[:cut] == last:
                return None  # a term in blocks
            last = key[:cut]
            if limit and len(found) >= limit:
                break
            found.append((key, value))
        return found

    def term_blocks(
        self, txn: Txn, name: bytes, blocks: list[int]
    ) -> Optional[tuple[Optional[bytes], list[tuple[bytes, bytes]]]]:
        """One term's stored values for a few ids: its inline small value (or ``None``) and
        the ``(key, value)`` of each field's block among ``blocks`` that exists (the key ends
        in the field code and the 2-byte block; the all-fields values left out), read with
        one ``getmulti``; ``None`` when the write log touches the term (then
        :meth:`postings` answers).  ``name`` is the term + NUL.  A common word asked about
        the few ids a rare word gives reads only their blocks: no all-fields value, no
        :class:`TermPostings`."""
        tail = self._tail(txn)
        if tail.entries and tail.with_prefix(name):
            return None
        small = txn.get(name, db=self.main)
        keys = [name + code + block.to_bytes(2, "big") for code in _FIELD_CODES for block in blocks]
        return small, txn.cursor(self.main).getmulti(keys)

    def _apply_tail(
        self, txn: Txn, tail: _Tail, prefix: bytes, start: int, found: dict[bytes, TermPostings]
    ) -> None:
        """The write log on top of :meth:`postings`' terms (``any`` united, fields marked)."""
        bitmap = _bitmaps()
        sep = codec.SEPARATOR
        touched: dict[bytes, list[bytes]] = {}
        for name in tail.with_prefix(prefix):
            cut = name.find(sep, start)
            if cut < 0 or len(name) != cut + 2:
                continue
            touched.setdefault(name[:cut], []).append(name)
        for key, names in touched.items():
            term = found.get(key)
            if term is None:
                term = found[key] = TermPostings(key + sep)
            base = (
                bitmap()
                if not term.any
                else term.any[0].copy()
                if len(term.any) == 1
                else bitmap.union(*term.any)
            )
            plus = bitmap()
            minus = bitmap()
            for name in names:
                code = name[-1:]
                fields = term.fields.get(code)
                if fields is None and code in term.small:
                    fields = [bitmap(term.small[code])]
                if fields is not None:  # a small term's field: apply the log now
                    united = fields[0] if len(fields) == 1 else bitmap.union(*fields)
                    term.fields[code] = [tail.over(name, united)]
                elif code not in term.keys:
                    term.keys[code] = []  # a field the log alone gives the term
                gone = tail.removes.get(name)
                if gone:
                    minus |= gone
                more = tail.adds.get(name)
                if more:
                    plus |= more
            doubt = (minus & base) - plus - tail.deleted  # deleted ids leave every field
            base -= minus
            for doc in doubt:  # an update may keep the term in a field the log left alone
                if self._still_listed(txn, tail, term, doc):
                    base.add(doc)
            base |= plus
            term.any = [base] if base else []

    def _still_listed(self, txn: Txn, tail: _Tail, term: TermPostings, doc: int) -> bool:
        """Whether a field of ``term`` the log did not take ``doc`` out of still lists it."""
        block = (doc >> CHUNK_BITS).to_bytes(2, "big")
        for code in _FIELD_CODES:
            name = term.name + code
            gone = tail.removes.get(name)
            if gone is not None and doc in gone:
                continue
            fields = term.fields.get(code)
            if fields is not None:
                if any(doc in ids for ids in fields):
                    return True
                continue
            if code in term.small:
                if doc in term.small[code]:
                    return True
                continue
            raw = txn.get(name + block, db=self.main)
            if raw is not None and doc in decode_bitmap(raw, what=name + block):
                return True
        return False

    def field_parts(self, txn: Txn, term: TermPostings, code: bytes) -> list[Any]:
        """The bitmaps of ``term`` in field ``code`` (read now, the log applied; kept)."""
        fields = term.fields.get(code)
        if fields is not None:
            return fields
        small = term.small.get(code)
        if small is not None:  # (the log's changes to a small term are applied already)
            fields = term.fields[code] = [_bitmaps()(small)]
            return fields
        keys = term.keys.get(code)
        name = term.name + code
        parts = []
        if keys:
            values = txn.cursor(self.main).getmulti(keys)
            parts = [decode_bitmap(raw, what=key) for key, raw in values]
        elif not term.listed:
            parts = self._stored_parts(txn, name)
        tail = term.tail or self._tail(txn)
        if name in tail.adds or name in tail.removes:
            bitmap = _bitmaps()
            base = bitmap() if not parts else parts[0] if len(parts) == 1 else bitmap.union(*parts)
            parts = [tail.over(name, base)]
        parts = [ids for ids in parts if ids]
        term.fields[code] = parts
        return parts

    def field_has(
        self, txn: Txn, term: TermPostings, code: bytes, doc: int, by_block: bool = True
    ) -> bool:
        """Whether ``term`` lists ``doc`` in field ``code`` (the log applied), reading at
        most the one block of ``doc`` (a few hits of a common word need not read it all;
        ``by_block=False``: the field's blocks are read whole, once)."""
        fields = term.fields.get(code)
        if fields is not None:
            return any(doc in ids for ids in fields)
        small = term.small.get(code)
        if small is not None:
            return doc in small
        if not by_block:
            return any(doc in ids for ids in self.field_parts(txn, term, code))
        name = term.name + code
        tail = term.tail or self._tail(txn)
        gone = tail.removes.get(name)
        if gone is not None and doc in gone:
            return False
        plus = tail.adds.get(name)
        if plus is not None and doc in plus:
            return True
        key = name + (doc >> CHUNK_BITS).to_bytes(2, "big")
        ids = term.blocks.get(key)
        if ids is None:
            if term.listed and key not in term.keys.get(code, ()):
                return False
            raw = txn.get(key, db=self.main)
            ids = term.blocks[key] = _bitmaps()() if raw is None else decode_bitmap(raw, what=key)
        return doc in ids

    def field_codes(self, term: TermPostings) -> list[bytes]:
        """The field codes ``term`` may have ids in (a field the log emptied may be listed)."""
        return [
            code
            for code in _FIELD_CODES
            if code in term.fields or code in term.keys or code in term.small
        ]

    def names_of(self, txn: Txn) -> Iterator[tuple[bytes, Any]]:
        """Yield ``(name, ids)`` for every name, merged bitmaps with the log applied (verify)."""
        merged: dict[bytes, Any] = {}
        for key, raw in _scan(txn, self.main):
            key = bytes(key)
            if key[:1] != b"\x01" and key.find(codec.SEPARATOR) == len(key) - 1:
                for code, ids in decode_small(raw, what=f"search-tokens[{key!r}]").items():
                    name = key + code
                    merged[name] = merged[name] | ids if name in merged else ids
                continue
            name = key[:-2]
            if name[-2:] == _ANY_SUFFIX and name[:1] != b"\x01":
                continue  # all-fields blocks: see any_field_problems
            ids = decode_bitmap(raw, what=f"search-tokens[{key!r}]")
            merged[name] = merged[name] | ids if name in merged else ids
        tail = self._tail(txn)
        for name in tail.names():
            merged[name] = tail.over(name, merged.get(name, _bitmaps()()))
        for name in sorted(merged):
            yield name, merged[name]

    def any_field_problems(self, txn: Txn) -> list[tuple[str, str]]:
        """``(term, problem)`` for every block of a term in blocks whose all-fields value is
        missing or is not the union of the term's field blocks there (verify)."""
        sep = codec.SEPARATOR
        unions: dict[bytes, Any] = {}  # term + NUL + block -> union of its fields
        stars: dict[bytes, Any] = {}
        for key, raw in _scan(txn, self.main):
            key = bytes(key)
            cut = key.find(sep)
            if key[:1] == b"\x01" or cut < 0 or len(key) != cut + 4:
                continue
            ids = decode_bitmap(raw, what=f"search-tokens[{key!r}]")
            where = key[: cut + 1] + key[-2:]
            if key[cut + 1 : cut + 2] == ANY_FIELD:
                stars[where] = ids
            else:
                unions[where] = unions[where] | ids if where in unions else ids
        problems = []
        for where in sorted(set(unions) | set(stars)):
            term = where[:-3].decode("utf-8", "replace")
            block = int.from_bytes(where[-2:], "big")
            star, union = stars.get(where), unions.get(where)
            if star is None:
                problems.append((term, f"block {block} has no all-fields bitmap"))
            elif union is None or star != union:
                message = f"block {block}: all-fields bitmap is not its fields' union"
                problems.append((term, message))
        return problems

    def any_field_missing(self, txn: Txn) -> list[tuple[str, int]]:
        """``(term, block)`` of every block of a term in blocks without its all-fields value:
        a scan of the keys alone (the quick verify; the deep one also compares the ids)."""
        sep = codec.SEPARATOR
        missing = []
        starred: set[bytes] = set()
        for key in txn.cursor(self.main).iternext(keys=True, values=False):
            cut = key.find(sep)
            if key[:1] == b"\x01" or cut < 0 or len(key) != cut + 4:
                continue
            where = key[: cut + 1] + key[-2:]
            if key[cut + 1 : cut + 2] == ANY_FIELD:  # sorts before the field codes
                starred.add(where)
            elif where not in starred:
                starred.add(where)  # reported once
                term = key[:cut].decode("utf-8", "replace")
                missing.append((term, int.from_bytes(key[-2:], "big")))
        return missing

    def mixed_terms(self, txn: Txn) -> list[str]:
        """Terms stored both inline (small) and in blocks: never written so (verify)."""
        sep = codec.SEPARATOR
        inline: set[bytes] = set()
        blocked: set[bytes] = set()
        cursor = txn.cursor(self.main)
        for key in cursor.iternext(keys=True, values=False):
            if key[:1] == b"\x01":
                continue
            cut = key.find(sep)
            (inline if cut == len(key) - 1 else blocked).add(key[:cut])
        return sorted(t.decode("utf-8", "replace") for t in inline & blocked)

    def control(self, txn: Txn) -> dict[str, Any]:
        """The allocator state: deleted, pending (new since the merge) and free ids, the next
        id, and the log's length (verify)."""
        tail = self._tail(txn)
        raw = txn.get(_FREE, db=self.pending)
        cache = self._cache
        mine = cache if cache is not None and cache.txn is txn else None
        if mine is not None and mine.free is not None:
            free = mine.free
        else:
            free = _bitmaps()() if raw is None else decode_bitmap(raw, what=_FREE)
        return {
            "deleted": tail.deleted,
            "pending": tail.added,
            "free": free,
            "next": self._next(txn),
            "log": tail.entries,
            "counted": self._stored_count(txn) + (mine.count() if mine else 0),
        }

    # -- writing -----------------------------------------------------------

    def _writer(self, txn: Txn) -> _WriteCache:
        cache = self._cache
        if cache is None or cache.txn is not txn:
            cache = self._cache = _WriteCache(txn)
            before_commit(txn, lambda: self.flush(txn))
        return cache

    def _next(self, txn: Txn) -> int:
        raw = txn.get(_NEXT, db=self.pending)
        return 0 if raw is None else int.from_bytes(raw, "big")

    def allocate(self, txn: Txn) -> int:
        """A free id: the smallest reusable one, else a never-used one."""
        cache = self._writer(txn)
        if cache.free is None:
            raw = txn.get(_FREE, db=self.pending)
            cache.free = _bitmaps()() if raw is None else decode_bitmap(raw, what=_FREE)
        if cache.free:
            doc = int(cache.free.min())
            cache.free.remove(doc)
            cache.free_changed = True
            return doc
        doc = self._next(txn)
        if not doc and not txn.get(_LAYOUT, db=self.pending):  # an empty index starts anew
            txn.put(_LAYOUT, _LAYOUT_NOW, db=self.pending)
        txn.put(_NEXT, (doc + 1).to_bytes(4, "big"), db=self.pending)
        return doc

    def _append(self, txn: Txn, entry: Union[_Entry, _PackedEntry]) -> None:
        cache = self._writer(txn)
        cache.entries.append(entry)
        if len(entry) == 3:
            cache.packed = True
        if cache.tail is not None:
            cache.tail.apply(_listed(entry))
        if len(cache.entries) >= max(_FOLD_AT, MERGE_AT + 1):  # flush will merge
            if cache.bulk is None:
                cache.bulk = _Tail()
            cache.bulk.apply_all(cache.listed())
            cache.entries = []

    def add_packed(self, txn: Txn, doc: int, names: bytes) -> None:
        """:meth:`add` of the names joined by 0xff (one bytes, as the log value holds them)."""
        self._append(txn, (_ADD, doc, names))

    def remove_packed(self, txn: Txn, doc: int, names: bytes) -> None:
        """:meth:`remove` of the names joined by 0xff (one bytes, as the log value holds them)."""
        self._append(txn, (_DELETE, doc, names))

    def add(self, txn: Txn, doc: int, names: Iterable[bytes]) -> None:
        """List a new id under every one of ``names`` (one log entry; a list is kept as it is,
        not copied: the caller gives it away)."""
        self._append(txn, (_ADD, doc, names if isinstance(names, list) else list(names), []))

    def add_many(self, txn: Txn, docs: list[int], names: dict[bytes, Any]) -> None:
        """List new ids ``docs`` under ``names`` (name -> its ids among them, a list or a
        bitmap given away): what an :meth:`add` per id does, gathered per name by the
        caller.  Kept with the
        transaction's folded entries, so the flush merges it (a batch that large merges
        anyway; entries appended later apply after it)."""
        cache = self._writer(txn)
        if cache.bulk is None:
            cache.bulk = _Tail()
        cache.bulk.add_new(docs, names)
        cache.tail = None  # (rebuilt when read in this transaction)

    def remove(self, txn: Txn, doc: int, names: Iterable[bytes]) -> None:
        """Unlist id ``doc`` from ``names`` (all the names it is listed under): one log
        entry; the id is free again after the next merge."""
        self._append(txn, (_DELETE, doc, [], list(names)))

    def relist(self, txn: Txn, doc: int, removed: Iterable[bytes], added: Iterable[bytes]) -> None:
        """Change the names a live id is listed under (an update: the id stays): one log
        entry, whatever the size of the cache."""
        self._append(txn, (_UPDATE, doc, list(added), list(removed)))

    def flush(self, txn: Txn) -> None:
        """Append this transaction's log entries, or merge the log into the main bitmaps
        when it would grow past :data:`MERGE_AT` entries (a large batch is merged straight
        from memory: its entries are never written and read back)."""
        cache = self._cache
        if cache is None or cache.txn is not txn:
            return
        self._cache = None
        if cache.free_changed:
            self._put_free(txn, cache.free)
        if not cache.count():
            return
        version = txn.get(_VERSION, db=self.pending)
        seq = 0 if version is None else int.from_bytes(version[:8], "big")
        stored = 0 if version is None else int.from_bytes(version[8:12], "big")
        carried = self._carried_count(version)
        if cache.bulk is not None or stored - carried + len(cache.entries) > MERGE_AT:
            # A batch's own merge folds everything: its changes per name are many, and
            # choosing what to carry would cost it CPU for little.
            full = cache.bulk is not None or len(cache.entries) > MERGE_AT
            self._merge(txn, cache.bulk, cache.listed(), seq, full=full)
            return
        for entry in cache.entries:
            if len(entry) == 3:  # a packed add or delete: its names are joined already
                op, doc, names = entry
                value = (
                    op
                    + doc.to_bytes(4, "big")
                    + (names + b"\xfe" if op == _ADD else b"\xfe" + names)
                )
            else:
                value = _pack_entry(*entry)
            txn.put(_LOG + seq.to_bytes(8, "big"), value, db=self.pending)
            seq += 1
        self._put_version(txn, seq, stored + len(cache.entries), carried)

    def _put_version(self, txn: Txn, seq: int, count: int, carried: int = 0) -> None:
        """Record the next sequence number, the number of log entries, a fresh random tag
        (readers key their applied log on the value: a new one after every change) and how
        many of the entries a merge carried."""
        value = seq.to_bytes(8, "big") + count.to_bytes(4, "big") + os.urandom(8)
        if carried:
            value += carried.to_bytes(4, "big")
        txn.put(_VERSION, value, db=self.pending)

    def _put_free(self, txn: Txn, free: Any) -> None:
        if free:
            txn.put(_FREE, encode_bitmap(free), db=self.pending)
        else:
            txn.delete(_FREE, db=self.pending)

    def merge(self, txn: Txn) -> int:
        """Fold the log into the main bitmaps and free deleted ids; return names touched."""
        cache = self._cache
        entries: list[_Entry] = []
        bulk = None
        if cache is not None and cache.txn is txn:
            entries, bulk = cache.listed(), cache.bulk
            if cache.free_changed:
                self._put_free(txn, cache.free)
        self._cache = None
        version = txn.get(_VERSION, db=self.pending)
        seq = 0 if version is None else int.from_bytes(version[:8], "big")
        return self._merge(txn, bulk, entries, seq, full=True)

    def _merge(
        self, txn: Txn, bulk: Optional[_Tail], entries: list[_Entry], seq: int, *, full: bool
    ) -> int:
        """:meth:`merge`, with ``bulk`` and ``entries`` this transaction's log (in memory);
        unless ``full``, the changes not worth a rewrite yet are carried (:meth:`_carry`)."""
        bitmap = _bitmaps()
        tail, logged = self._applied(txn, bulk, entries, take=True)
        if self.ids is not None:
            self.ids.settle(txn)
        touched = 0
        groups: dict[bytes, list[bytes]] = {}  # term + NUL (its fields together) or a name
        for name in tail.names():
            if name[:1] != b"\x01" and name[-2:-1] == codec.SEPARATOR:
                groups.setdefault(name[:-1], []).append(name)
            else:
                groups[name] = [name]
        carry = set() if full else self._carry(txn, tail, groups)
        terms: dict[bytes, list[bytes]] = {}
        blocked: list[bytes] = []
        for key, names in groups.items():
            if key in carry:
                continue
            if key[-1:] == codec.SEPARATOR and key[:1] != b"\x01":
                terms[key] = names
            else:
                blocked.extend(names)
        touched += self._merge_smalls(txn, tail, terms, blocked)
        touched += self._fold_blocks(txn, tail, blocked)
        for key in logged:
            txn.delete(key, db=self.pending)
        residual = self._residual(tail, [name for key in carry for name in groups[key]])
        for entry in residual:
            txn.put(_LOG + seq.to_bytes(8, "big"), _pack_entry(*entry), db=self.pending)
            seq += 1
        # A deleted id whose changes are carried is freed by the merge that folds the last
        # of them (ids are reused only once no stored value lists them).
        purged = tail.deleted - bitmap(entry[1] for entry in residual if entry[0] == _DELETE)
        if purged:
            known = txn.get(_FREE, db=self.pending)
            free = bitmap() if known is None else decode_bitmap(known, what=_FREE)
            self._put_free(txn, free | purged)
        self._put_version(txn, seq + 1, len(residual), len(residual))
        return touched

    def _fold_blocks(self, txn: Txn, tail: _Tail, blocked: list[bytes]) -> int:
        """Fold the log's changes of ``blocked`` (names stored in blocks, or new facets) into
        their block values, then rewrite the all-fields value of every term block changed;
        return the names touched.  Every value is read in one ``getmulti`` and written in
        one ``putmulti`` (a batch of 1,000 rewrites some 4,000 values: one Python call
        each was a third of its merge), and read once: a term's all-fields value is its
        stored value | what its fields gained when they lost nothing, else the union of the
        field values just written and those not rewritten."""
        bitmap = _bitmaps()
        adds, removes, main, sep = tail.adds, tail.removes, self.main, codec.SEPARATOR
        empty = bitmap()
        touched = 0
        tasks: list[tuple[bytes, Any, Any, bool]] = []  # (key, ids added, ids removed, term)
        for name in blocked:
            plus = adds.get(name) or empty
            minus = removes.get(name) or empty
            if not minus:  # most names of a batch only gain ids
                if not plus:
                    continue
                both = plus
            else:
                both = plus | minus if plus else minus
            bits = chunk_bits(name)
            touched += 1
            if bits != CHUNK_BITS and self._rechunk(txn, name, bits, plus, minus):
                continue
            first, last = both.min() >> bits, both.max() >> bits
            term = name[:1] != b"\x01" and name[-2:-1] == sep
            if first == last:
                tasks.append((name + first.to_bytes(2, "big"), plus, minus, term))
                continue
            for block in range(first, last + 1):
                span = bitmap()
                span.add_range(block << bits, (block + 1) << bits)
                add, drop = plus & span, minus & span
                if add or drop:
                    tasks.append((name + block.to_bytes(2, "big"), add, drop, term))
        cursor = txn.cursor(main)
        stored_values = dict(cursor.getmulti(sorted(task[0] for task in tasks)))
        deserialize = bitmap.deserialize
        puts: list[tuple[bytes, bytes]] = []
        gained: dict[bytes, Any] = {}  # term + NUL + block -> ids its fields gained
        lost: set[bytes] = set()  # ... whose fields lost ids
        fresh: dict[bytes, Any] = {}  # field values written, by key
        for key, add, drop, term in tasks:
            stored = stored_values.get(key)
            if stored is None:
                ids = add.copy()  # (a log never both adds and removes an id)
            else:
                ids = deserialize(stored[1:]) if stored[:1] == _BITMAP_FORMAT else None
                if ids is None:
                    ids = decode_bitmap(stored, what=key)  # raises: not a bitmap
                if not (drop and ids.intersect(drop)) and add <= ids:
                    continue  # e.g. an id added and deleted within the log
                if drop:
                    ids -= drop
                ids |= add
            if ids:
                puts.append((key, _BITMAP_FORMAT + bytes(ids.serialize())))
            elif stored is not None:
                txn.delete(key, db=main)
            if term:
                where = key[:-3] + key[-2:]  # term + NUL + block
                fresh[key] = ids
                if drop:
                    lost.add(where)
                    gained.pop(where, None)
                elif where not in lost:
                    if where in gained:
                        gained[where] |= add
                    else:
                        gained[where] = add.copy()
        if puts:
            puts.sort()  # (key order: each leaf is reached once)
            cursor.putmulti(puts)
        self._put_any_fields(txn, sorted(gained.keys() | lost), gained, fresh)
        return touched

    def _put_any_fields(
        self, txn: Txn, wheres: list[bytes], gained: dict[bytes, Any], fresh: dict[bytes, Any]
    ) -> None:
        """Write the all-fields values of ``wheres`` (term + NUL + block, in key order): from
        the stored value and ``gained`` when the fields only gained, else from the fields
        (``fresh``: those just written)."""
        cursor = txn.cursor(self.main)
        star = ANY_FIELD
        keys = [where[:-2] + star + where[-2:] for where in wheres if where in gained]
        stored_values = dict(cursor.getmulti(keys))
        deserialize = _bitmaps().deserialize
        puts: list[tuple[bytes, bytes]] = []
        for where in wheres:
            plus = gained.get(where)
            if plus is None:
                self._put_any_field(txn, where, fresh=fresh)
                continue
            key = where[:-2] + star + where[-2:]
            raw = stored_values.get(key)
            if raw is None:  # no all-fields value yet (a new block): from the fields
                self._put_any_field(txn, where, fresh=fresh)
                continue
            every = deserialize(raw[1:]) if raw[:1] == _BITMAP_FORMAT else None
            if every is None:
                every = decode_bitmap(raw, what=key)  # raises: not a bitmap
            if not plus <= every:
                every |= plus
                puts.append((key, _BITMAP_FORMAT + bytes(every.serialize())))
        if puts:
            cursor.putmulti(puts)

    def _carry(self, txn: Txn, tail: _Tail, groups: dict[bytes, list[bytes]]) -> set[bytes]:
        """The groups (a term's fields, or one facet) whose log changes a merge leaves in the
        log: those whose stored values of their own pages (at least :data:`_OWN_PAGES` bytes,
        in the blocks the changes fall in, with a term's all-fields values) would be
        rewritten for more than :data:`CARRY_RATIO` bytes per changed id; at most
        :data:`CARRY_PAIRS` changes, the dearest per change first."""
        sep = codec.SEPARATOR
        counted: list[tuple[bytes, int, list[bytes]]] = []
        every_key: list[bytes] = []
        for key, names in groups.items():
            pairs = 0
            wanted: set[bytes] = set()
            term = key[:1] != b"\x01" and key[-1:] == sep
            for name in names:
                plus = tail.adds.get(name)
                minus = tail.removes.get(name)
                changed = len(plus or ()) + len(minus or ())
                if not changed:
                    continue
                pairs += changed
                bits = chunk_bits(name)
                every: Any = plus | minus if plus and minus else plus or minus
                first, last = every.min() >> bits, every.max() >> bits
                for block in (first,) if first == last else {doc >> bits for doc in every}:
                    suffix = block.to_bytes(2, "big")
                    wanted.add(name + suffix)
                    if term:
                        wanted.add(key + ANY_FIELD + suffix)
            if pairs:
                keys = sorted(wanted)
                counted.append((key, pairs, keys))
                every_key.extend(keys)
        # One lookup of every key in C; only the sizes matter.
        sizes = {bytes(k): len(raw) for k, raw in txn.cursor(self.main).getmulti(sorted(every_key))}
        found: list[tuple[float, int, bytes]] = []
        for key, pairs, keys in counted:
            size = 0
            for wanted_key in keys:
                length = sizes.get(wanted_key, 0)
                if length >= _OWN_PAGES:
                    size += length
            if size > CARRY_RATIO * pairs:
                found.append((size / pairs, pairs, key))
        found.sort(reverse=True)
        carry: set[bytes] = set()
        total = 0
        for _ratio, pairs, key in found:
            if total + pairs > CARRY_PAIRS:
                continue
            total += pairs
            carry.add(key)
        return carry

    @staticmethod
    def _residual(tail: _Tail, names: list[bytes]) -> list[_Entry]:
        """Log entries that give ``names`` the changes ``tail`` gives them (the carried part
        of a merged log), one per id (a new id that also lost names: two), in id order."""
        plus: dict[int, list[bytes]] = {}
        minus: dict[int, list[bytes]] = {}
        for name in names:
            for doc in tail.adds.get(name) or ():
                plus.setdefault(doc, []).append(name)
            for doc in tail.removes.get(name) or ():
                minus.setdefault(doc, []).append(name)
        entries: list[_Entry] = []
        later: list[_Entry] = []
        for doc in sorted(set(plus) | set(minus)):
            added, removed = plus.get(doc, []), minus.get(doc, [])
            if doc in tail.deleted:
                entries.append((_DELETE, doc, added, removed))
            elif doc in tail.added:  # (apply_all reads an addition's added names only)
                entries.append((_ADD, doc, added, []))
                if removed:
                    later.append((_UPDATE, doc, [], removed))
            else:
                entries.append((_UPDATE, doc, added, removed))
        return entries + later

    def _rechunk(self, txn: Txn, name: bytes, bits: int, plus: Any, minus: Any) -> bool:
        """Merge a wide facet stored in other chunks (by a projcache before WIDE_BITS): read
        all its values, apply the log, write it in chunks of ``2**bits`` ids.  Return False
        (nothing done) when every value is already a chunk of that size."""
        cursor = txn.cursor(self.main)
        found: list[tuple[bytes, bytes]] = []
        if cursor.set_range(name):
            size = len(name) + 2
            for key, raw in cursor.iternext():
                if len(key) != size or not key.startswith(name):
                    break
                found.append((bytes(key), bytes(raw)))
        # Told from each value's header, not decoded: every merge asks this of every wide
        # facet it changes (at 1M, 4 chunks per name length, the biggest ~32 KiB each).
        if all(_in_chunk(key, raw, bits) for key, raw in found):
            return False
        stored = [(key, decode_bitmap(raw, what=key)) for key, raw in found]
        bitmap = _bitmaps()
        every = bitmap.union(bitmap(), *(ids for _key, ids in stored)) - minus | plus
        for key, _ids in stored:
            txn.delete(key, db=self.main)
        for chunk in sorted({doc >> bits for doc in every}):
            span = bitmap()
            span.add_range(chunk << bits, (chunk + 1) << bits)
            txn.put(name + chunk.to_bytes(2, "big"), encode_bitmap(every & span), db=self.main)
        return True

    def _merge_smalls(
        self, txn: Txn, tail: _Tail, terms: dict[bytes, list[bytes]], blocked: list[bytes]
    ) -> int:
        """:meth:`_merge_small` of every term of ``terms`` (term + NUL -> its names, in key
        order); the names of terms in blocks are appended to ``blocked``; return the names
        merged.  A term stored inline (or new) that stays small is merged on its ids as
        tuples, without a bitmap, on one cursor (a batch of 1,000 merges ~2,000 small terms:
        a cursor and a dict of bitmaps each cost it ~15 ms); one that grows past
        :data:`SMALL_POSTINGS`, or loses ids, goes through :meth:`_merge_small`."""
        main = self.main
        cursor = txn.cursor(main)
        put = txn.put
        adds, removes = tail.adds, tail.removes
        structs = _STRUCTS
        touched = 0
        for key, names in terms.items():
            raw, in_blocks = _inline_value(cursor, key)
            if in_blocks:
                blocked.extend(names)
                continue
            fields: dict[bytes, tuple[int, ...]] = {} if raw is None else small_ids(raw, what=key)
            size = 0
            for name in names:
                plus = adds.get(name)
                if removes.get(name) or not plus:
                    break  # (a term that loses ids: the general way)
                code = name[-1:]
                ids = fields.get(code)
                if not ids:
                    ids = tuple(plus)
                elif plus.min() > ids[-1]:
                    ids += tuple(plus)
                else:
                    ids = tuple(sorted(set(ids).union(plus)))
                fields[code] = ids
            else:
                size = sum(map(len, fields.values()))
            if not size or size > SMALL_POSTINGS:
                if self._merge_small(txn, tail, key, names):
                    touched += len(names)
                else:  # (not reached: the value read above is not in blocks)
                    blocked.extend(names)
                continue
            parts = [_SMALL_FORMAT]
            for code in sorted(fields):  # encode_small()
                ids = fields[code]
                count = len(ids)
                if not count:
                    continue
                layout = structs.get(count)
                if layout is None:
                    layout = structs[count] = _ids_struct(count)
                parts.append(code + count.to_bytes(2, "big"))
                parts.append(layout.pack(*ids))
            # Put now, in key order among the terms that grow into blocks: put later, between
            # keys written meanwhile, they would split pages mid-way (a first batch of 3,000
            # took 327 leaves instead of 51).
            put(key, b"".join(parts), db=main)
            touched += len(names)
        return touched

    def _merge_small(self, txn: Txn, tail: _Tail, key: bytes, names: list[bytes]) -> bool:
        """Merge the log's changes of one term (``key`` = term + NUL) if the term is small
        (stored inline) or new; return False when its fields are in blocks (the caller merges
        them name by name).  A small term that grows past :data:`SMALL_POSTINGS` moves to
        blocks here."""
        cursor = txn.cursor(self.main)  # one lookup: the inline value, a block, or nothing
        raw, in_blocks = _inline_value(cursor, key)
        if in_blocks:
            return False
        fields: dict[bytes, Any] = {} if raw is None else decode_small(raw, what=key)
        bitmap = _bitmaps()
        for name in names:
            code = name[-1:]
            ids = fields.get(code) or bitmap()
            gone = tail.removes.get(name)
            if gone:
                ids = ids - gone
            plus = tail.adds.get(name)
            if plus:
                ids = ids | plus
            fields[code] = ids
        size = sum(len(ids) for ids in fields.values())
        if size <= SMALL_POSTINGS:
            if size:
                txn.put(key, encode_small(fields), db=self.main)
            elif raw is not None:
                txn.delete(key, db=self.main)
            return True
        if raw is not None:
            txn.delete(key, db=self.main)
        every = bitmap.union(*fields.values())
        for code, ids in [*fields.items(), (ANY_FIELD, every)]:  # to blocks (a growing term)
            for block in sorted({doc >> CHUNK_BITS for doc in ids}):
                span = bitmap()
                span.add_range(block << CHUNK_BITS, (block + 1) << CHUNK_BITS)
                txn.put(
                    key + code + block.to_bytes(2, "big"), encode_bitmap(ids & span), db=self.main
                )
        return True

    def _put_any_field(
        self, txn: Txn, where: bytes, fresh: Optional[dict[bytes, Any]] = None
    ) -> None:
        """Write the all-fields value of ``where`` (term + NUL + block) from its fields
        (``fresh``: field values just written, by key, not read again)."""
        key = where[:-2] + ANY_FIELD + where[-2:]
        parts = []
        for code in _FIELD_CODES:
            field_key = where[:-2] + code + where[-2:]
            ids = None if fresh is None else fresh.get(field_key)
            if ids is not None:
                if ids:
                    parts.append(ids)
                continue
            raw = txn.get(field_key, db=self.main)
            if raw is not None:
                parts.append(decode_bitmap(raw, what=field_key))
        if parts:
            every = parts[0] if len(parts) == 1 else _bitmaps().union(*parts)
            txn.put(key, encode_bitmap(every), db=self.main)
        else:
            txn.delete(key, db=self.main)

    def clear(self, txn: Txn) -> None:
        """Empty both sub-databases (a rebuild follows)."""
        self._cache = None
        txn.drop(self.main, delete=False)
        txn.drop(self.pending, delete=False)
        self._put_version(txn, 0, 0)
        txn.put(_LAYOUT, _LAYOUT_NOW, db=self.pending)


class FacetIndex:
    """The bitmap index and the id map that facet listings (``type``, ``collection``, ``tag``)
    read together (:mod:`projcache.streams` lists them from the sorted keys)."""

    def __init__(self, index: BitmapIndex, ids: IdRepository):
        self.index = index
        self.ids = ids
