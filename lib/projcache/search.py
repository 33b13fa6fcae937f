"""Full-text search: query execution and ranking over the v3 bitmap index.

The words and terms (tokenizer, stemmer, the terms of an artifact) are in
:mod:`projcache.terms`, which the write path imports without this module.

Index (format v3, see docs/cache/storage-format.md): every artifact has a dense
integer id; each *term* of each *field* maps to a compressed bitmap of the ids
holding it (:class:`~projcache.postings.BitmapIndex`).  Fields: ``n`` name,
``t`` title and tags, ``d`` description, ``b`` the Markdown body.  A token is
indexed as itself and as its English stem, so ``spreadsheets`` is found by
``spreadsheet`` and the other way round.

The ranking rule (what the brute-force oracle in tests/test_search.py pins):

* the query is split with :func:`query_words`; stop words are dropped except
  the last word; at most :data:`MAX_QUERY_WORDS` distinct words count;
* a word matches an artifact *exactly* (the word is one of its terms), by
  *stem* (its stem is one of its terms) or, for the last word only, by
  *prefix* (a term starts with it; the first :data:`MAX_PREFIX_TERMS` terms in
  byte order);
* each matched word scores the best level it reaches (:data:`LEVELS`): name
  exact 9 / stem 8 / prefix 7, title or tags 6 / 5 / 4, description 2, body 1;
* results that match every word come first (``total`` counts them); when they
  do not fill the page, results matching fewer words follow (``partial``),
  most words matched first;
* within the same number of matched words: higher score first, then managed
  before unmanaged, shorter name first, then lower id first (the artifact first
  written earlier: an update keeps its id).

Execution never scores every hit: a small candidate set is scored hit by hit;
a large one is walked from the highest score down by intersecting per-level
bitmaps, and the tie-breaks are bitmaps too (managed, name length).  At a
million ids one operation on a common word's bitmap costs tens of
microseconds, so a word's levels are united only when the walk reaches them,
a small set of matches first cuts every bitmap down to itself, name-length
buckets are counted before any is intersected, and a small group's ties are
broken from its keys.  A query whose every term is small (its ids inline, at most
:data:`~projcache.postings.SMALL_POSTINGS`) skips all that: the page is sorted straight
from the terms' ids (:func:`_all_small`; two rare words, one hit: 0.6x the general path).
The partial fill ranks each tier split by the words its ids match, and walks a part only when
its best possible score reaches the page (:meth:`_Ranker.take_parts`).

Over 400 lines on purpose: the rule above and the code that executes it (the
ranker's levels and its tie-break bitmaps, the partial fill) are read and
changed together with the brute-force oracle that pins them; the tokenizer and
the terms of an artifact already live in :mod:`projcache.terms`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import namedtuple
from collections.abc import Callable, Collection, Container, Iterable, Iterator
from itertools import chain, repeat
from operator import add, itemgetter, neg

from pyroaring import BitMap

from .codec import SEPARATOR
from .postings import ODD_NAMES, TermPostings, decode_bitmap, facet_name, small_parts
from .terms import MAX_NAME_BUCKET, STOP_WORDS, name_bucket, query_words, stem

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple, Optional, Union

    from .repository import Repositories
    from .storage import Txn

__all__ = [
    "FIELDS",
    "LEVELS",
    "MAX_PREFIX_TERMS",
    "MAX_QUERY_WORDS",
    "QueryFilters",
    "QueryResult",
    "run_query",
]

MAX_QUERY_WORDS = 16
MAX_PREFIX_TERMS = 256
# Sets at most this large are ranked hit by hit; larger ones by bitmap tiers.
_SMALL = 48
# Ties among at most this many ids are broken from their keys (one lookup each, about a
# microsecond) rather than by walking the name-length bitmaps (at a million ids each costs
# 16 block reads, and a small group's ids may be spread over dozens of lengths).
_SMALL_GROUP = 256
# Exact matches at most this many (and more than _SMALL) are ranked with the words cut
# down to them (a cut costs a few microseconds per block bitmap of each word).
_RESTRICT = 512
# A small query's (candidate, word) pairs up to this many are scored by searching the word's
# id lists per candidate; more build a dict of each word's best level per id.
_SCAN_CELLS = 16

# A tie-break group part of at most this many ids is tested for disjointness with each
# name-length chunk before it is cut (at a million ids a chunk holds ~10,000-27,000).
_DISJOINT_TEST = 16384

# Queries of at most this many words rank a partial tier split by the words its ids match
# (up to 2 ** this many parts); longer ones rank each tier whole.
_MASK_WORDS = 4

# Up to this many blocks of ids a few hits are scored from their words' whole levels.
_FEW_BLOCKS = 4
# Field codes, strongest first: name, title + tags, description, body.
FIELDS = (b"n", b"t", b"d", b"b")
# (field, kind) -> level; kind 0 exact, 1 stem, 2 prefix.  Description and body
# do not tell the kinds apart: a word there is weak evidence however it matched.
LEVELS: dict[tuple[bytes, int], int] = {
    (b"n", 0): 9,
    (b"n", 1): 8,
    (b"n", 2): 7,
    (b"t", 0): 6,
    (b"t", 1): 5,
    (b"t", 2): 4,
    (b"d", 0): 2,
    (b"d", 1): 2,
    (b"d", 2): 2,
    (b"b", 0): 1,
    (b"b", 1): 1,
    (b"b", 2): 1,
}


if TYPE_CHECKING:

    class QueryFilters(NamedTuple):
        """Optional filters of a search; ``project`` is a project id."""

        type: Optional[str] = None
        collection: Optional[str] = None
        tag: Optional[str] = None
        project: Optional[str] = None

else:
    # A named tuple rather than a frozen dataclass (the same value semantics without the
    # dataclass compile at import), made by ``collections`` (``typing`` stays out of a cold
    # ``projcache search``, which imports this module).
    QueryFilters = namedtuple(
        "QueryFilters", "type collection tag project", defaults=(None, None, None, None)
    )
    QueryFilters.__doc__ = "Optional filters of a search; ``project`` is a project id."


class QueryResult:
    """One page of a search: ``(artifact key, score)`` pairs, exact total, partial hits on the page.

    ``page`` holds the exact matches first, then (when they run out) partial
    ones; ``partial`` says how many of the page's hits are partial, and
    ``partial_total`` how many partial matches exist in all (0 when the exact
    matches fill the page: it is only counted when needed).  A plain class (not a
    dataclass) for the import time of a cold search.
    """

    __slots__ = ("page", "partial", "partial_total", "total")

    def __init__(
        self,
        page: Optional[list[tuple[str, float]]] = None,
        total: int = 0,
        partial: int = 0,
        partial_total: int = 0,
    ):
        self.page: list[tuple[str, float]] = [] if page is None else page
        self.total = total
        self.partial = partial
        self.partial_total = partial_total

    def _fields(self) -> tuple[list[tuple[str, float]], int, int, int]:
        return self.page, self.total, self.partial, self.partial_total

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QueryResult):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return (
            f"QueryResult(page={self.page!r}, total={self.total!r}, "
            f"partial={self.partial!r}, partial_total={self.partial_total!r})"
        )


class _Word:
    """One query word: the bitmaps it reaches per level; its disjoint level sets, lazily.

    At a million artifacts one operation on a common word's bitmap (16 blocks
    of 65,536 ids) costs 10-40 µs, so nothing is computed before it is needed:
    ``any`` (every id the word matches) is one multi-way union of the terms'
    all-fields bitmaps, a level's field bitmaps are read from the store only
    when the ranker reaches the level, and the set of ids whose *best* level
    is a given one is only computed then, which the top tiers of a page
    usually never do for the description and body levels.
    """

    def __init__(
        self,
        text: str,
        by_level: dict[int, list[BitMap]],
        refs: Optional[dict[int, list[tuple[TermPostings, bytes]]]] = None,
        any_parts: Optional[list[BitMap]] = None,
        load: Optional[Callable[[TermPostings, bytes], list[BitMap]]] = None,
        has: Optional[Callable[[TermPostings, bytes, int], bool]] = None,
        by_block: bool = False,
    ):
        self.text = text
        numbers = set(by_level) | set(refs or ())
        self.level_numbers = sorted(numbers, reverse=True)
        self._loaded: list[Optional[list[BitMap]]] = [by_level.get(n) for n in self.level_numbers]
        self._refs = [(refs or {}).get(n, []) for n in self.level_numbers]
        self._load = load
        self._has = has
        self._by_block = by_block
        self._sets: dict[int, Optional[frozenset[int]]] = {}
        self._any_parts = any_parts
        self._unions: dict[int, BitMap] = {}
        self._reached: list[BitMap] = []  # [i]: ids reaching level i or a higher one
        self._best: dict[int, BitMap] = {}
        self._any: Optional[BitMap] = None

    def _few(self, i: int) -> Optional[frozenset[int]]:
        """The ids of level ``i`` as a set when its terms are all small (their ids are
        tuples: no bitmap is built for a few membership tests), else ``None``."""
        if i not in self._sets:
            refs = self._refs[i]
            few = None
            if all(code in term.small and code not in term.fields for term, code in refs):
                few = frozenset().union(*[term.small[code] for term, code in refs])
            self._sets[i] = few
        return self._sets[i]

    def parts(self, i: int) -> list[BitMap]:
        """The bitmaps of level ``i`` (read from the store the first time)."""
        found = self._loaded[i]
        if found is None:
            found = []
            assert self._load is not None
            for term, code in self._refs[i]:
                found.extend(self._load(term, code))
            self._loaded[i] = found
        return found

    def _union(self, i: int) -> BitMap:
        found = self._unions.get(i)
        if found is None:
            parts = self.parts(i)
            found = BitMap() if not parts else parts[0] if len(parts) == 1 else BitMap.union(*parts)
            self._unions[i] = found
        return found

    def _reached_at(self, i: int) -> BitMap:
        while len(self._reached) <= i:
            j = len(self._reached)
            here = self._union(j)
            self._reached.append(self._reached[j - 1] | here if j else here)
        return self._reached[i]

    def best(self, i: int) -> BitMap:
        """The ids whose best level is ``level_numbers[i]`` (disjoint for different ``i``)."""
        found = self._best.get(i)
        if found is None:
            if self._any_parts is not None and i == len(self.level_numbers) - 1:
                # The lowest level: every id of the word that reaches no higher one.  Its
                # field bitmaps (a common word's body: 16 big blocks at a million ids) are
                # never read.
                found = self.any - self._reached_at(i - 1) if i else self.any
            else:
                here = self._union(i)
                found = here - self._reached_at(i - 1) if i else here
            self._best[i] = found
        return found

    @property
    def any(self) -> BitMap:
        """Every id the word matches (at any level)."""
        if self._any is None:
            parts = self._any_parts
            if parts is None:
                parts = [ids for i in range(len(self.level_numbers)) for ids in self.parts(i)]
            if not parts:
                self._any = BitMap()
            else:
                self._any = parts[0] if len(parts) == 1 else BitMap.union(*parts)
        return self._any

    def restricted(self, within: BitMap) -> _Word:
        """This word seen only inside ``within`` (a small set of ids the word matches: each
        of its bitmaps is cut down to it, so no level of a common word is ever united whole;
        the lowest level is what the others leave of ``within``, its bitmaps never read)."""
        levels: dict[int, list[BitMap]] = {}
        last = len(self.level_numbers) - 1
        placed: list[BitMap] = []
        for i, level in enumerate(self.level_numbers):
            if i == last and self._any_parts is not None:
                rest = within - BitMap.union(*placed) if placed else within
                kept = [rest] if rest else []
            else:
                kept = [cut for cut in (within & ids for ids in self.parts(i)) if cut]
                placed.extend(kept)
            if kept:
                levels[level] = kept
        return _Word(self.text, levels)

    def level_of(self, doc: int) -> int:
        """The level this word reaches in document ``doc`` (0 when it does not match).

        A level not read yet is not read whole: when its terms are all small their ids
        answer as a set; in an index of more than :data:`_FEW_BLOCKS` blocks it is asked
        block by block (``has``), so a few hits of a common word read the blocks they are
        in, not the word's every block."""
        for i, level in enumerate(self.level_numbers):
            parts = self._loaded[i]
            if parts is None:
                few = self._few(i)
                if few is not None:  # the level's terms are all small: a set of their ids
                    if doc in few:
                        return level
                    continue
                if self._has is not None and self._by_block:
                    has = self._has
                    if any(has(term, code, doc) for term, code in self._refs[i]):
                        return level
                    continue
            parts = self.parts(i)
            if len(parts) > 4:  # a common word's blocks: unite them once for all the hits
                if doc in self._union(i):
                    return level
            else:
                for ids in parts:
                    if doc in ids:
                        return level
        return 0


if TYPE_CHECKING:
    _WordTerms = tuple[list[Optional[TermPostings]], list[TermPostings]]


def _read_terms(
    txn: Txn,
    repos: Repositories,
    text: str,
    prefix: bool,
    cache: dict[str, Optional[TermPostings]],
) -> _WordTerms:
    """Read one query word's terms: ``([exact, stem or None], the terms it begins)``."""
    index = repos.index

    def term_of(term: str) -> Optional[TermPostings]:
        if term not in cache:
            cache[term] = index.postings(txn, term.encode() + SEPARATOR, 0).get(term)
        return cache[term]

    prefixed: list[TermPostings] = []
    if prefix:  # one scan reads the word's own term and those it begins
        own = {text.encode(), stem(text).encode()}  # read whatever the rule says (term_of)

        def covered(term: bytes, earlier: Container[bytes]) -> bool:
            return term not in own and _plural_covered(term, earlier)

        scan = index.postings(txn, text.encode(), MAX_PREFIX_TERMS, covered)
        for term, postings in scan.items():
            prefixed.append(cache.setdefault(term, postings) or postings)
        cache.setdefault(text, None)
    kinds: list[Optional[TermPostings]] = [term_of(text)]
    stemmed = stem(text)
    kinds.append(term_of(stemmed) if stemmed != text else None)
    return kinds, prefixed


def _plural_covered(term: bytes, earlier: Container[bytes]) -> bool:
    """Whether a prefix term adds no id to the terms read before it: ``term`` is its stem
    plus ``s`` (``projects``: ``project``) and that stem was read.

    An artifact lists ``term`` in a field because a token of the field is ``term`` (then its
    stem is listed there too) or stems to it.  A Snowball stem ending in ``s`` whose own stem
    drops just that ``s`` comes only from words that begin with it (``projectsing``: a
    suffix cut off, never replaced), so that token also begins the query's prefix and is read
    in the same scan, at the same prefix level (``postings`` redoes the scan whole when its
    limit may have left that token out).  tests/test_search.py checks the rule on generated
    words (``test_a_stem_ending_in_s_comes_from_words_that_begin_with_it``)."""
    if not term.endswith(b"s") or len(term) < 4:
        return False
    base = term[:-1]
    if base not in earlier:
        return False
    text = term.decode()
    return stem(text) == text[:-1]


def _read_word(txn: Txn, repos: Repositories, text: str, terms: _WordTerms) -> _Word:
    """One query word from its terms: their all-fields bitmaps now, and which field of which
    term gives each level (see :class:`_Word`; the fields are read when a level is needed)."""
    index = repos.index
    kinds, prefixed = terms
    refs: dict[int, list[tuple[TermPostings, bytes]]] = {}
    any_parts: list[BitMap] = []
    # The word's own term (or its stem) is also one of the terms it begins: read once (the
    # cache gives the same object), and listed once in ``any`` and per level, else every
    # union of a common word's bitmaps would take its 16 blocks twice.
    own = {id(found) for found in kinds if found is not None}
    for found in kinds:
        if found is not None:
            any_parts.extend(found.any)
    for found in prefixed:
        if id(found) not in own:
            any_parts.extend(found.any)
    codes = {id(found): index.field_codes(found) for found in (*kinds, *prefixed) if found}
    for code in FIELDS:
        for kind, found in enumerate(kinds):
            if found is not None and code in codes[id(found)]:
                refs.setdefault(LEVELS[(code, kind)], []).append((found, code))
        level = LEVELS[(code, 2)]
        for found in prefixed:
            if code in codes[id(found)]:
                listed = refs.setdefault(level, [])
                if id(found) not in own or (found, code) not in listed:
                    listed.append((found, code))
    # Asking a few hits block by block pays once the index spans more than a few blocks.
    by_block = index.block_count(txn) > _FEW_BLOCKS
    return _Word(
        text,
        {},
        refs,
        any_parts,
        lambda term, code: index.field_parts(txn, term, code),
        lambda term, code, doc: index.field_has(txn, term, code, doc, by_block),
        by_block,
    )


def _query_terms(query: str) -> list[tuple[str, bool]]:
    """``(word, is the prefix word)`` for the distinct words that count, in query order."""
    words = query_words(query)
    if not words:
        return []
    last = words[-1]
    out: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for word in words[:-1]:
        if word in STOP_WORDS or word in seen or word == last:
            continue
        seen.add(word)
        out.append((word, False))
    out = out[: MAX_QUERY_WORDS - 1]
    out.append((last, True))
    return out


def _filter_ids(txn: Txn, repos: Repositories, filters: QueryFilters) -> Optional[BitMap]:
    """The ids allowed by the filters (``None``: no filter)."""
    if filters == _NO_FILTERS:  # (no lookup of the block count for nothing)
        return None
    index = repos.index
    allowed: Optional[BitMap] = None

    def narrow(ids: BitMap) -> None:
        nonlocal allowed
        allowed = ids if allowed is None else allowed & ids

    blocks = range(index.block_count(txn))
    if filters.type is not None:
        narrow(index.get_dense(txn, facet_name("type", filters.type), blocks))
    if filters.collection is not None:
        narrow(index.get_dense(txn, facet_name("collection", filters.collection), blocks))
    if filters.tag is not None:
        narrow(index.get_dense(txn, facet_name("tag", filters.tag), blocks))
    if filters.project is not None:
        from . import codec

        deployed = BitMap()
        for key, _payload in repos.deployments.scan_project(txn, filters.project):
            doc = repos.ids.id_of(txn, codec.parse_deployment_key(key)[1])
            if doc is not None:
                deployed.add(doc)
        narrow(deployed)
    return allowed


_NO_FILTERS = QueryFilters()

# The levels of a word matched in the name: exact, stem, prefix.
_NAME_EXACT, _NAME_STEM, _NAME_PREFIX = (LEVELS[(b"n", kind)] for kind in range(3))


class _Ranker:
    """Orders a set of ids by (score, managed, shorter name, id) for one query."""

    def __init__(self, txn: Txn, repos: Repositories, words: list[_Word]):
        self.txn = txn
        self.repos = repos
        self.words = words
        self._managed: Optional[BitMap] = None
        self._odd: Optional[BitMap] = None  # ODD_NAMES (None: not read, or not listed)
        self._odd_read = False
        # The buckets in use from _buckets_from up, as far as listed so far (the rest come from
        # _bucket_iter, one cursor seek each, only when the walk reaches them).
        self._buckets: Optional[list[int]] = None
        self._bucket_iter: Optional[Iterator[int]] = None
        self._buckets_from = 1
        # Per name length: its parts, each decoded when first reached (a stored value is kept
        # as ``(key, value)`` until then).
        self._bucket_ids: dict[int, list[Union[BitMap, tuple[bytes, bytes]]]] = {}
        # Per word: (its first character, the fewest characters of a name token matching it
        # at the name's exact, stem and prefix levels) for the name-length floor of a group.
        self._floors: list[tuple[str, dict[int, int]]] = [
            (
                word.text[:1],
                {
                    _NAME_EXACT: len(word.text),
                    _NAME_STEM: len(stem(word.text)),
                    _NAME_PREFIX: len(word.text),
                },
            )
            for word in words
        ]
        self._blocks = range(repos.index.block_count(txn))
        self.known: dict[int, str] = {}  # id -> key, as read for a tie-break (the page reuses)

    def with_words(self, words: list[_Word]) -> _Ranker:
        """A ranker of other words (the same query's, restricted) sharing the name-length
        bitmaps read so far (the dict is shared; ``managed`` and the bucket list are copied)."""
        other = _Ranker.__new__(_Ranker)
        other.__dict__.update(self.__dict__)
        other.words = words
        return other

    def managed(self) -> BitMap:
        if self._managed is None:
            name = facet_name("managed", "1")
            self._managed = self.repos.index.get_dense(self.txn, name, self._blocks)
        return self._managed

    def odd(self) -> Optional[BitMap]:
        """The ids whose names are not plain (:data:`~projcache.postings.ODD_NAMES`), or
        ``None`` when the index does not list them all (a cache built before layout 2)."""
        if not self._odd_read:
            index = self.repos.index
            if index.odd_names_listed(self.txn):  # (few values, or none: one cursor scan)
                self._odd = index.get(self.txn, ODD_NAMES)
            self._odd_read = True
        return self._odd

    def floor(self, levels: tuple[int, ...]) -> int:
        """The shortest name bucket a plain-named id reaching ``levels`` (one per word) can
        have.  A word matched in the name (levels 7-9) is matched by a name token at least as
        long as the word (its stem, at the stem level: a Snowball stem is never longer than
        its word and keeps its first letter, so a token matching a word begins with the
        word's first letter).  Words of different first letters are matched by different
        tokens, which a plain name holds apart, a character at least between two of them:
        per first letter the longest such word counts, plus one character per extra letter."""
        longest: dict[str, int] = {}
        for (first, sizes), level in zip(self._floors, levels):
            size = sizes.get(level)
            if size is not None and size > longest.get(first, 0):
                longest[first] = size
        if not longest:
            return 1
        return max(1, min(sum(longest.values()) + len(longest) - 1, MAX_NAME_BUCKET))

    def buckets(self, floor: int = 1) -> Iterable[tuple[int, Iterable[BitMap]]]:
        """Per name length from ``floor`` up, shortest first: ``(length, its disjoint bitmaps
        in id order)`` (one per chunk of ids, or one for them all when the write log touches
        it), not united.  Each is read once and only when reached (a bucket under ``floor``
        is not read), and each part decoded only when the walk asks for it."""
        for bucket in self._bucket_numbers(floor):
            parts = self._bucket_ids.get(bucket)
            if parts is None:
                name = facet_name("len", f"{bucket:02d}")
                index = self.repos.index
                stored = index.stored_values(self.txn, name)
                parts = self._bucket_ids[bucket] = (
                    list(index.dense_parts(self.txn, name, self._blocks))
                    if stored is None
                    else list(stored)
                )
            yield bucket, self._decoded(parts)

    def _bucket_numbers(self, floor: int) -> Iterator[int]:
        """The name-length buckets in use from ``floor`` up, ascending, each listed from the
        index once per query and only when reached (a ranker made by :meth:`with_words`
        shares the list and the cursor behind it)."""
        if self._buckets is None or floor < self._buckets_from:
            self._buckets = []
            self._bucket_iter = self.repos.index.iter_name_buckets(self.txn, floor)
            self._buckets_from = floor
        known = self._buckets
        i = 0
        while True:
            if i == len(known):
                assert self._bucket_iter is not None
                found = next(self._bucket_iter, None)
                if found is None:
                    return
                known.append(found)
            bucket = known[i]
            i += 1
            if bucket >= floor:
                yield bucket

    @staticmethod
    def _decoded(parts: list[Union[BitMap, tuple[bytes, bytes]]]) -> Iterable[BitMap]:
        """The bitmaps of ``parts`` in order, each decoded (and kept) when reached."""
        for i, part in enumerate(parts):
            if isinstance(part, tuple):
                part = parts[i] = decode_bitmap(part[1], what=part[0])
            yield part

    def take(self, ids: BitMap, start: int, stop: int) -> list[tuple[int, float]]:
        """Ranks ``start`` .. ``stop`` of ``ids`` as ``(id, score)``."""
        if start >= stop or start >= len(ids):
            return []
        if len(ids) <= _SMALL:
            return self._by_hit(ids)[start:stop]
        return self._take_groups(self._groups(ids), start, stop)

    def take_parts(
        self, parts: list[tuple[frozenset[int], BitMap]], start: int, stop: int
    ) -> list[tuple[int, float]]:
        """Ranks ``start`` .. ``stop`` of the union of ``parts``: ``(the indexes of the words
        every id of the part matches, the ids)``, each id matching no other word (a partial
        tier, split by the words matched).  A part's ids are scored by its own words only: a
        word they do not match is never intersected with them, and a part's levels are
        reached lazily as the walk comes down to them (a common word's levels are not united
        for a rare word's few partial matches)."""
        if start >= stop or start >= sum(len(ids) for _words, ids in parts):
            return []
        walks = [
            (
                sum(max(self.words[i].level_numbers, default=0) for i in words),
                self._hit_groups(ids, words) if len(ids) <= _SMALL else self._groups(ids, words),
            )
            for words, ids in parts
        ]
        return self._take_groups(_merged(walks), start, stop)

    def _hit_groups(
        self, ids: BitMap, matched: frozenset[int]
    ) -> Iterator[tuple[int, BitMap, int]]:
        """:meth:`_groups` of a few ids matching the words ``matched`` (and no other), scored
        hit by hit (:meth:`_Word.level_of`: a common word's levels are not united)."""
        by_score: dict[int, tuple[list[int], list[int]]] = {}
        words = list(enumerate(self.words))
        for doc in ids:
            levels = tuple(word.level_of(doc) if i in matched else 0 for i, word in words)
            docs, floors = by_score.setdefault(sum(levels), ([], []))
            docs.append(doc)
            floors.append(self.floor(levels))
        for score in sorted(by_score, reverse=True):
            docs, floors = by_score[score]
            yield score, BitMap(docs), min(floors)

    def _take_groups(
        self, groups: Iterable[tuple[int, BitMap, int]], start: int, stop: int
    ) -> list[tuple[int, float]]:
        """Ranks ``start`` .. ``stop`` of the ids of ``groups`` (``(score, ids, floor)``,
        highest score first), each group in tie order."""
        out: list[tuple[int, float]] = []
        seen = 0
        for score, group, floor in groups:
            size = len(group)
            if seen + size <= start:
                seen += size
                continue
            for doc in self._tie_order(group, max(0, start - seen), stop - seen, floor):
                out.append((doc, float(score)))
            seen += size
            if seen >= stop:
                break
        return out

    def _by_hit(self, ids: BitMap) -> list[tuple[int, float]]:
        managed = self.managed()  # (stored in a few wide values: read whole, once per query)
        keys = self._keys(ids)
        rows = []
        for doc in ids:
            score = sum(word.level_of(doc) for word in self.words)
            rows.append((-score, doc not in managed, name_bucket(keys[doc].split("/", 2)[-1]), doc))
        rows.sort()
        return [(row[3], float(-row[0])) for row in rows]

    def _keys(self, ids: Iterable[int]) -> dict[int, str]:
        """The keys of ``ids`` (``""`` for an id without one: verify reports it), read with
        one ``getmulti`` and kept in :attr:`known` for the page."""
        found = self.repos.ids.key_map(self.txn, ids)
        keys = {doc: found.get(doc, "") for doc in ids}
        self.known.update(keys)
        return keys

    def _by_key(self, ids: BitMap) -> list[int]:
        """``ids`` (of one score) in tie-break order, their name lengths read from their keys."""
        rows = self._key_rows(ids)
        rows.sort()
        return [row[2] for row in rows]

    def _groups(
        self, ids: BitMap, matched: Optional[frozenset[int]] = None
    ) -> Iterator[tuple[int, BitMap, int]]:
        """Yield ``(score, ids with that score, their name floor)`` from the highest score
        down, lazily (the floor: :meth:`floor` of the level combinations making the score).
        ``matched``: the indexes of the words that every id matches, no other word matching
        any (a part of a partial tier: those words are never unmatched, the others never
        matched, and the others' bitmaps are not touched).

        Each score's set is the union, over the combinations of per-word levels
        adding up to it, of the intersection of those levels' bitmaps; prefix
        intersections are shared between scores, and combinations that cannot
        reach the score are never intersected.  High scores come from small
        bitmaps (names, titles), so a page usually fills before the big
        body-level bitmaps are touched.
        """
        # Per word: (level, index of the level in the word) and (0, None): unmatched.
        options: list[list[tuple[int, Optional[int]]]] = []
        for i, word in enumerate(self.words):
            levels: list[tuple[int, Optional[int]]] = list(
                zip(word.level_numbers, range(len(word.level_numbers)))
            )
            if matched is None:
                levels.append((0, None))  # unmatched: ``acc - word.any`` (empty for exact sets)
            elif i not in matched:
                levels = [(0, -1)]  # known unmatched: every id of ``acc``
            options.append(levels)
        n = len(options)
        most = [0] * (n + 1)
        for i in range(n - 1, -1, -1):
            most[i] = most[i + 1] + options[i][0][0]
        memo: dict[tuple[int, ...], BitMap] = {(): ids}

        def collect(
            chosen: tuple[int, ...], need: int, out: list[tuple[BitMap, tuple[int, ...]]]
        ) -> None:
            i = len(chosen)
            acc = memo[chosen]
            if i == n:
                if need == 0:
                    out.append((acc, chosen))
                return
            word = self.words[i]
            for level, which in options[i]:
                rest = need - level
                if rest < 0 or rest > most[i + 1]:
                    continue
                key = (*chosen, level)
                joined = memo.get(key)
                if joined is None:
                    if which is None:
                        joined = acc - word.any
                    else:
                        joined = acc if which < 0 else acc & word.best(which)
                    memo[key] = joined
                if joined:
                    collect(key, rest, out)  # noqa: F821 (deleted when the walk ends)

        try:
            for score in range(most[0], -1, -1):
                found: list[tuple[BitMap, tuple[int, ...]]] = []
                collect((), score, found)
                if found:
                    floor = min(self.floor(chosen) for _ids, chosen in found)
                    group = found[0][0] if len(found) == 1 else BitMap.union(*(f[0] for f in found))
                    yield score, group, floor
        finally:
            # ``collect`` refers to itself: a cycle through its closure that kept
            # ``memo`` and this ranker (every bitmap of the query: tens of MiB of C
            # memory at 1,000,000 ids) alive until the cycle collector ran.
            del collect

    def _tie_order(self, group: BitMap, start: int, stop: int, floor: int = 1) -> list[int]:
        """Ranks ``start`` .. ``stop`` of ``group``: managed first, shorter name, lower id.

        A name-length bucket is cut from the group part by part (one intersection per
        stored value, in C; a bucket holding none of the group costs as much as a count).
        No plain-named id
        of the group is shorter than ``floor`` (see :meth:`floor`): when the index lists
        the others (:data:`~projcache.postings.ODD_NAMES`) and they are few, they are
        ranked from their keys, the rest from bucket ``floor`` up (at a million ids the
        buckets under it cost ~200 µs to read and count, for nothing).
        """
        if len(group) <= _SMALL_GROUP:
            return self._by_key(group)[start:stop]
        odd = self.odd() if floor > 1 else None
        if odd is None:
            return [row[2] for row in self._walk(group, start, stop, 1)]
        strange = group & odd if odd else odd
        if len(strange) > _SMALL_GROUP:
            return [row[2] for row in self._walk(group, start, stop, 1)]
        if not strange:
            return [row[2] for row in self._walk(group, start, stop, floor)]
        rows = self._walk(group - strange, 0, stop, floor) + self._key_rows(strange)
        rows.sort()
        return [row[2] for row in rows[start:stop]]

    def _key_rows(self, ids: BitMap) -> list[tuple[bool, int, int]]:
        """``(not managed, name bucket, id)`` of ``ids``, their names read from their keys."""
        managed = self.managed()  # (stored in a few wide values: read whole, once per query)
        keys = self._keys(ids)
        return [(doc not in managed, name_bucket(keys[doc].split("/", 2)[-1]), doc) for doc in ids]

    def _walk(
        self, group: BitMap, start: int, stop: int, floor: int
    ) -> list[tuple[bool, int, int]]:
        """:meth:`_tie_order`'s ranks ``start`` .. ``stop`` of ``group`` by the bucket
        bitmaps from ``floor`` up, as ``(not managed, name bucket, id)``."""
        managed = self.managed()
        in_managed = group.intersection_cardinality(managed)
        # All managed (the default) or none: one part.
        whole = in_managed in (0, len(group))
        if whole:
            parts = [(in_managed == 0, group)]
        else:
            parts = [(False, group & managed), (True, group - managed)]
        out: list[tuple[bool, int, int]] = []
        seen = 0
        for unmanaged, part in parts:
            left = len(part)
            small_part = left <= _DISJOINT_TEST
            if seen + left <= start:
                seen += left
                continue
            for length, bucket in self.buckets(floor):
                # The bucket's parts are disjoint and in id order: so are their cuts, and once
                # the cuts so far reach the page's end the later parts (higher ids, later
                # ranks) are neither read nor cut.
                cuts = []
                size = 0
                for ids in bucket:
                    # Most lengths hold none of a group far smaller than them: a disjointness
                    # test allocates no bitmap (0.6x the cost of an empty cut).
                    if small_part and part.isdisjoint(ids):
                        continue
                    cut = part & ids
                    if cut:
                        cuts.append(cut)
                        size += len(cut)
                        if seen + size >= stop:
                            break
                if not cuts:
                    continue
                left -= size
                if seen + size > start:
                    lo = max(0, start - seen)
                    hi = min(size, stop - seen)
                    for cut in cuts:  # ranks lo .. hi of the cuts laid end to end
                        if lo < len(cut) and hi > 0:
                            out.extend((unmanaged, length, doc) for doc in cut[max(lo, 0) : hi])
                        lo -= len(cut)
                        hi -= len(cut)
                seen += size
                if seen >= stop:
                    return out
                if not left:  # every id of the part placed: the longer names hold none
                    break
        return out


def run_query(
    txn: Txn,
    repos: Repositories,
    query: str,
    filters: QueryFilters,
    limit: int,
    offset: int,
    fill: bool = True,
) -> QueryResult:
    """Run ``query`` and return the page ``[offset, offset + limit)`` (see the module doc).

    With ``fill=False`` the page holds exact matches only (no partial ones after them).
    """
    terms = _query_terms(query)
    if not terms:
        return QueryResult()
    allowed = _filter_ids(txn, repos, filters)
    small = _read_small(txn, repos, terms)
    # The exact matches' page when _all_small ranked them and partial matches follow (the
    # general path then ranks only those).
    exact_page: Optional[QueryResult] = None
    if small is not None:
        fast = None
        every = [levels for levels in small if levels is not None]
        if len(every) == len(small):
            fast = _all_small(txn, repos, every, allowed, limit, offset, fill)
        else:  # common words beside rare ones: read only for the rare words' few ids
            levels = _common_levels(txn, repos, terms, small, allowed)
            if levels is None:
                small = None  # (the full read applies the write log; _small_levels below)
            else:
                fast = _all_small(txn, repos, levels, allowed, limit, offset, False)
                if fast is not None and fill and len(terms) > 1 and fast.total < offset + limit:
                    exact_page = fast  # partial matches fill the page: the general path
                    fast = None  # ranks them (the exact ones stay as ranked here)
        if fast is not None:
            return fast
    cache: dict[str, Optional[TermPostings]] = {}
    read = [_read_terms(txn, repos, text, prefix, cache) for text, prefix in terms]
    if small is None:  # small terms the write log touched (applied by the full read)
        levels = _small_levels(read)
        if levels is not None:
            fast = _all_small(txn, repos, levels, allowed, limit, offset, fill)
            if fast is not None:
                return fast
    words = [_read_word(txn, repos, text, got) for (text, _prefix), got in zip(terms, read)]
    deleted = repos.index.deleted_view(txn)
    ordered = sorted(words, key=lambda w: len(w.any))
    exact = ordered[0].any
    if allowed is not None:
        exact = exact & allowed
    for word in ordered[1:]:
        if not exact:
            break
        exact = exact & word.any
    if deleted:
        exact = exact - deleted
    total = len(exact)
    result = QueryResult(total=total)
    stop = offset + limit
    ranker = _Ranker(txn, repos, words)
    if exact_page is not None and exact_page.total == total:
        hits: list[tuple[int, float]] = []  # the exact page as _all_small ranked it
        result.page = exact_page.page
    elif limit > 0 and _SMALL < total <= _RESTRICT:  # (up to _SMALL are ranked hit by hit)
        restricted = [word.restricted(exact) for word in words]
        hits = ranker.with_words(restricted).take(exact, offset, stop)
    else:
        hits = ranker.take(exact, offset, stop) if limit > 0 else []
    if fill and len(words) > 1 and stop > total:
        partial_hits = _partial(ranker, words, exact, allowed, deleted, offset, stop, total, result)
        result.partial = len(partial_hits) if limit > 0 else 0
        hits.extend(partial_hits if limit > 0 else [])
    known = ranker.known
    missing = [doc for doc, _score in hits if doc not in known]
    if missing:  # (the tie-break read the keys of the ids it ranked from them)
        known.update(repos.ids.key_map(txn, missing))
    for doc, score in hits:
        key = known.get(doc)
        if key:  # an id without a key: verify reports it
            result.page.append((key, score))
    return result


def _partial(
    ranker: _Ranker,
    words: list[_Word],
    exact: BitMap,
    allowed: Optional[BitMap],
    deleted: BitMap,
    offset: int,
    stop: int,
    total: int,
    result: QueryResult,
) -> list[tuple[int, float]]:
    """The partial matches of ranks ``offset .. stop`` (ranks after the ``total`` exact ones)."""
    universe = BitMap.union(*(word.any for word in words))
    if allowed is not None:
        universe &= allowed
    universe -= exact
    if deleted:
        universe -= deleted
    result.partial_total = len(universe)
    if not universe:
        return []
    if len(words) <= _MASK_WORDS:
        return _partial_by_words(ranker, words, universe, offset, stop, total)
    # by_count[c]: ids of the universe matching exactly c of the words seen so far.
    by_count: list[BitMap] = [universe]
    for word in words:
        nxt = [BitMap() for _ in range(len(by_count) + 1)]
        for count, ids in enumerate(by_count):
            if not ids:
                continue
            hit = ids & word.any
            nxt[count] |= ids - hit
            nxt[count + 1] |= hit
        by_count = nxt
    out: list[tuple[int, float]] = []
    seen = total
    for count in range(len(words) - 1, 0, -1):
        ids = by_count[count]
        if not ids:
            continue
        if seen + len(ids) > offset:
            out.extend(ranker.take(ids, max(0, offset - seen), stop - seen))
        seen += len(ids)
        if seen >= stop:
            break
    return out


def _partial_by_words(
    ranker: _Ranker, words: list[_Word], universe: BitMap, offset: int, stop: int, total: int
) -> list[tuple[int, float]]:
    """:func:`_partial` with each tier split by the words its ids match (at most
    2 ** :data:`_MASK_WORDS` parts): a common word's levels are then reached only for the
    ids that match it, as far as the page needs (:meth:`_Ranker.take_parts`)."""
    # by_words: (indexes of the words matched, ids matching them and none of the others)
    by_words: list[tuple[frozenset[int], BitMap]] = [(frozenset(), universe)]
    for i, word in enumerate(words):
        nxt = []
        for matched, ids in by_words:
            hit = ids & word.any
            if hit:
                nxt.append((matched | {i}, hit))
            if len(hit) < len(ids):
                nxt.append((matched, ids - hit))
        by_words = nxt
    out: list[tuple[int, float]] = []
    seen = total
    for count in range(len(words) - 1, 0, -1):
        parts = [(matched, ids) for matched, ids in by_words if len(matched) == count]
        size = sum(len(ids) for _matched, ids in parts)
        if not size:
            continue
        if seen + size > offset:
            out.extend(ranker.take_parts(parts, max(0, offset - seen), stop - seen))
        seen += size
        if seen >= stop:
            break
    return out


def _merged(
    walks: list[tuple[int, Iterator[tuple[int, BitMap, int]]]],
) -> Iterator[tuple[int, BitMap, int]]:
    """The ``(score, ids, floor)`` groups of ``walks`` (``(the highest score the walk can
    give, its groups, highest score first)``) merged by score: one group per score, its ids
    united, its floor the lowest.  A walk is started only when its bound reaches the best
    score found so far, and advanced only when its group was handed out and the caller asks
    for more (a common word's part walks none of its levels while a rare word's part fills
    the page with higher scores)."""
    heads: list[Optional[tuple[int, BitMap, int]]] = [None] * len(walks)
    waiting = list(range(len(walks)))  # the walks not started, by index
    while True:
        while True:
            best = max((head[0] for head in heads if head is not None), default=-1)
            # (nothing found yet: the walks of the highest bound first)
            floor = best if best >= 0 else max((walks[i][0] for i in waiting), default=0)
            start = [i for i in waiting if walks[i][0] >= floor]
            if not start:
                break
            for i in start:
                heads[i] = next(walks[i][1], None)
                waiting.remove(i)
        if best < 0:
            return
        at = [i for i, head in enumerate(heads) if head is not None and head[0] == best]
        groups = [head for head in heads if head is not None and head[0] == best]
        ids = [group[1] for group in groups]
        yield best, ids[0] if len(ids) == 1 else BitMap.union(*ids), min(g[2] for g in groups)
        for i in at:
            heads[i] = next(walks[i][1], None)


# Per kind (0 exact, 1 stem, 2 prefix): field code -> level (see LEVELS).
_KIND_LEVELS: tuple[dict[bytes, int], ...] = tuple(
    {code: LEVELS[(code, kind)] for code in FIELDS} for kind in range(3)
)
# The same keyed by the code's byte value (as a stored small value holds it).
_KIND_BYTES: tuple[dict[int, int], ...] = tuple(
    {code[0]: level for code, level in levels.items()} for levels in _KIND_LEVELS
)

# One query word: per level, the lists of ids that reach it (tuples of a small term's
# field, or bitmaps of a field the write log touched).
_Levels = dict[int, list[Collection[int]]]


def _word_ids(levels: _Levels) -> Iterable[int]:
    """Every id of a word (repeats included)."""
    return chain.from_iterable(chain.from_iterable(levels.values()))


def _word_best(levels: _Levels, within: Optional[set[int]]) -> dict[int, int]:
    """One word's best level per id plus :data:`_WEIGHT` (only the ids of ``within``, if
    given): the levels are laid over each other from the lowest up, so each id keeps its
    highest (in C, one dict update per level: a rare word's terms list up to hundreds of
    ids)."""
    best: dict[int, int] = {}
    for level in sorted(levels):
        ids = chain.from_iterable(levels[level])
        weighed = _WEIGHT + level
        best.update(dict.fromkeys(ids if within is None else within.intersection(ids), weighed))
    return best


def _read_small(
    txn: Txn, repos: Repositories, terms: list[tuple[str, bool]]
) -> Optional[list[Optional[_Levels]]]:
    """Every query word's ids per level, straight from the stored values of its terms when
    they are small and the write log touches none of them (no bitmap, no
    :class:`~projcache.postings.TermPostings`); ``None`` in place of a word before the last
    that has a term in blocks or touched by the log (see :func:`_common_levels`); ``None``
    when the last word (the prefix word) is such a word."""
    # The last word first: the others are read only when it is small (a query of common
    # words costs one probe, as before the common words had a path of their own).
    last = _small_word(txn, repos, *terms[-1])
    if last is None:
        return None
    return [_small_word(txn, repos, text, prefix) for text, prefix in terms[:-1]] + [last]


def _small_word(txn: Txn, repos: Repositories, text: str, prefix: bool) -> Optional[_Levels]:
    """One word of :func:`_read_small`: its ids per level, or ``None``."""
    index = repos.index
    parts: _Levels = {}
    name = text.encode() + SEPARATOR
    stemmed = stem(text)
    stem_name = stemmed.encode() + SEPARATOR if stemmed != text else None
    if prefix:  # one scan: the word's own term, its stem if it begins so, the rest
        found = index.small_values(txn, text.encode(), MAX_PREFIX_TERMS)
    else:
        found = index.small_values(txn, name, 0)
    if found is None:
        return None
    for key, raw in found:
        kind = 0 if key == name else 1 if key == stem_name else 2
        if kind == 1:
            stem_name = None  # read: no lookup of its own
        small_parts(raw, _KIND_BYTES[kind], parts, what=key)
    if stem_name is not None:
        got = index.small_values(txn, stem_name, 0)
        if got is None:
            return None
        for key, raw in got:
            small_parts(raw, _KIND_BYTES[1], parts, what=key)
    return parts


def _common_levels(
    txn: Txn,
    repos: Repositories,
    terms: list[tuple[str, bool]],
    small: list[Optional[_Levels]],
    allowed: Optional[BitMap],
) -> Optional[list[_Levels]]:
    """:func:`_read_small`'s words with each common word (``None`` there) read for the ids
    the small words have in common only: per level, those of them its terms list, from the
    blocks that hold them (see :meth:`~projcache.postings.BitmapIndex.term_blocks`).

    What :func:`_all_small` then ranks with partial matches left out (a common word's other
    ids are not read).  ``None`` (the general path answers) when a common word's term is
    touched by the write log, or when the small words share more ids than
    :func:`_all_small` ranks."""
    candidates: Optional[set[int]] = None
    for levels in small:
        if levels is not None:
            ids = _word_ids(levels)
            candidates = set(ids) if candidates is None else candidates.intersection(ids)
    assert candidates is not None  # (the last word is always small here)
    if allowed is not None:
        candidates = {doc for doc in candidates if doc in allowed}
    if len(candidates) > _SMALL_GROUP:
        return None
    index = repos.index
    in_block: dict[int, list[int]] = {}  # the candidates per block of ids, ascending
    bits = index.block_bits()
    for doc in sorted(candidates):
        in_block.setdefault(doc >> bits, []).append(doc)
    blocks = list(in_block)
    out: list[_Levels] = []
    for (text, _prefix), levels in zip(terms, small):
        if levels is None:
            levels = {}
            stemmed = stem(text)
            for kind, term in enumerate((text, stemmed) if stemmed != text else (text,)):
                name = term.encode() + SEPARATOR
                got = index.term_blocks(txn, name, blocks) if blocks else (None, [])
                if got is None:
                    return None
                inline, values = got
                by_code = _KIND_BYTES[kind]
                if inline is not None:
                    small_parts(inline, by_code, levels, what=name)
                for key, raw in values:
                    ids = decode_bitmap(raw, what=key)
                    hit = [doc for doc in in_block[int.from_bytes(key[-2:], "big")] if doc in ids]
                    if hit:
                        levels.setdefault(by_code[key[-3]], []).append(hit)
        out.append(levels)
    return out


def _small_levels(read: list[_WordTerms]) -> Optional[list[_Levels]]:
    """:func:`_read_small`'s answer from terms the general read gave (the write log applied),
    when every term of every word is small, else ``None``."""
    out: list[_Levels] = []
    for kinds, prefixed in read:
        parts: _Levels = {}
        for kind, term in (*enumerate(kinds), *((2, term) for term in prefixed)):
            if term is None:
                continue
            if term.keys or (not term.small and not term.fields):
                return None  # a term in blocks
            levels = _KIND_LEVELS[kind]
            for code in FIELDS:
                got = term.fields.get(code)
                # A field the write log touched: its bitmaps hold the ids (the log applied).
                ids = got if got is not None else [term.small[code]] if code in term.small else []
                if ids:
                    parts.setdefault(levels[code], []).extend(ids)
        out.append(parts)
    return out


def _level_in(levels: list[tuple[int, list[Collection[int]]]], doc: int) -> int:
    """The first (highest) level of ``levels`` (descending) whose lists hold ``doc``, or 0
    (plain loops: a generator and ``next`` cost more than the few tests they make)."""
    for level, lists in levels:
        for ids in lists:
            if doc in ids:
                return level
    return 0


_FIRST = itemgetter(0)  # a row's first item: its tie group
# A matched word adds this plus its level to a row's weight (a score is at most 16 x 9).
_WEIGHT = 1024


def _all_small(
    txn: Txn,
    repos: Repositories,
    words: list[_Levels],
    allowed: Optional[BitMap],
    limit: int,
    offset: int,
    fill: bool,
) -> Optional[QueryResult]:
    """The page straight from each word's ids per level, when every term is small.

    Such a query touches at most :data:`~projcache.postings.SMALL_POSTINGS` ids per term,
    so the candidates (the words' common ids, or all their ids when partial matches
    may fill the page) are scored from each word's best level per candidate and sorted
    by the ranking rule (the same rule as :class:`_Ranker`, without a bitmap per level).
    The tie-break facts (managed, the name's length) are read only for groups of equal
    score that reach into the page and hold more than one id.  ``None`` when the
    candidates are too many to rank one by one: the general path answers.
    """
    count = len(words)
    partial = fill and count > 1
    if partial:
        candidates = set(chain.from_iterable(_word_ids(levels) for levels in words))
    else:  # the common ids (an intersection costs the ids the other words list, in C)
        candidates = set(_word_ids(words[0]))
        for levels in words[1:]:
            if not candidates:
                break
            candidates = candidates.intersection(_word_ids(levels))
    if allowed is not None:
        candidates = {doc for doc in candidates if doc in allowed}
    index = repos.index
    deleted = index.deleted_view(txn)
    if deleted:
        candidates = {doc for doc in candidates if doc not in deleted}
    if len(candidates) > _SMALL_GROUP:  # (at a million ids two rare words' 371 candidates
        return None  # scored and sorted here cost 1.2x the general path)
    # A row: (-(words matched * _WEIGHT + score), id): sorted, the ranking rule's order up to
    # the tie-break (most words matched, then the highest score).
    if len(candidates) * count <= _SCAN_CELLS:  # a few: each word's lists searched per id
        descending = [sorted(levels.items(), reverse=True) for levels in words]
        rows = []
        for doc in candidates:
            total = 0
            for levels_of in descending:
                level = _level_in(levels_of, doc)
                if level:
                    total += _WEIGHT + level
            rows.append((-total, doc))
        rows.sort()
    else:  # each word's weighted best level per id, added up in C
        bests = [_word_best(levels, None if partial else candidates) for levels in words]
        docs = list(candidates)
        totals: Iterator[int] = map(bests[0].get, docs, repeat(0))
        for best in bests[1:]:
            totals = map(add, totals, map(best.get, docs, repeat(0)))
        rows = sorted(zip(map(neg, totals), docs))
    # (rows matching every word: those at or before -count * _WEIGHT)
    total = bisect_left(rows, (1 - count * _WEIGHT,)) if partial else len(rows)
    result = QueryResult(total=total)
    stop = offset + limit
    if partial and stop > total:
        result.partial_total = len(rows) - total
    elif partial:  # the exact matches fill the page: the partial ones are not counted
        rows = rows[:total]
    if limit <= 0 or offset >= len(rows):
        return result
    # The rows of the tie groups that reach into the page (a group is a row's first item: the
    # first row at or after ``(item,)`` begins it, the first at or after ``(item + 1,)`` ends
    # it), their keys in one getmulti.
    last = min(stop, len(rows)) - 1
    begin = bisect_left(rows, (rows[offset][0],))
    part = rows[begin : bisect_left(rows, (rows[last][0] + 1,), last)]
    found = repos.ids.key_map(txn, [row[1] for row in part])
    if len(set(map(_FIRST, part))) < len(part):  # ties: managed first, shorter name
        managed = index.get_dense(
            txn, facet_name("managed", "1"), index.blocks_of([row[1] for row in part])
        )
        ranked = []
        for weighed, doc in part:  # (a plain loop: the name's bucket inline)
            key = found.get(doc, "")
            size = len(key.split("/", 2)[-1])
            bucket = (size or 1) if size < MAX_NAME_BUCKET else MAX_NAME_BUCKET
            ranked.append((weighed, doc not in managed, bucket, doc, key))
        ranked.sort()
        page = [(row[0], row[4]) for row in ranked[offset - begin : stop - begin]]
    else:
        page = [(weighed, found.get(doc, "")) for weighed, doc in part]
        page = page[offset - begin : stop - begin]
    for weighed, key in page:
        matched, score = divmod(-weighed, _WEIGHT)
        result.partial += 1 if matched < count else 0
        if key:  # an id without a key: verify reports it
            result.page.append((key, float(score)))
    return result
