"""Full-text search: the tokenizer, the terms indexed per artifact, and query execution.

Index: ``search-tokens`` maps each token to the keys of the artifacts holding
it; ``artifact-terms`` maps each artifact to ``{token: field mask}``.  The mask
says in which fields the token occurs, which is all ranking needs.

Query semantics (what the brute-force tests pin):

* the query is split with :func:`query_words`; every word but the last must
  occur as a token (AND), stop words among them are ignored;
* the last word matches any token it is a prefix of (search-as-you-type);
* score = sum over the words of the weight of the best field the word matched
  in (name 8 > tags 4 > title 2 > description 1); ties ordered by name, then key;
* filters (type, collection, tag, project) narrow the matches; ``total`` counts
  every match, ``limit``/``offset`` select the page.

Execution starts from the rarest word (LMDB keeps duplicate counts, so sizing a
posting list is O(1)) and checks each candidate against its terms record.
"""

from __future__ import annotations

import heapq
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from . import codec
from .repository import Repositories
from .storage import Txn

__all__ = [
    "FIELD_WEIGHTS",
    "STOP_WORDS",
    "QueryFilters",
    "artifact_terms",
    "query_words",
    "run_query",
    "tokenize",
]

FIELD_WEIGHTS = {"name": 8, "tags": 4, "title": 2, "description": 1}
_MASK_WEIGHTS = sorted(FIELD_WEIGHTS.values(), reverse=True)
MAX_TOKEN_CHARS = 64

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
    ]
)

_RUN = re.compile(r"[^\W_]+")


def _camel_parts(run: str) -> list[str]:
    """Split one alphanumeric run at camelCase boundaries (``extractPDFText`` -> 3 parts)."""
    parts: list[str] = []
    start = 0
    for i in range(1, len(run)):
        prev, cur = run[i - 1], run[i]
        nxt = run[i + 1] if i + 1 < len(run) else ""
        lower_to_upper = cur.isupper() and (prev.islower() or prev.isdigit())
        acronym_end = cur.isupper() and prev.isupper() and nxt.islower()
        if lower_to_upper or acronym_end:
            parts.append(run[start:i])
            start = i
    parts.append(run[start:])
    return parts


def _runs(text: str) -> list[str]:
    """Maximal runs of letters and digits; combining marks stay with the letter before them.

    Python's ``\\w`` does not count combining marks (Devanagari vowel signs, Hebrew
    points), so a regex alone would cut such words apart.
    """
    if text.isascii():
        return _RUN.findall(text)
    runs: list[str] = []
    current: list[str] = []
    for char in text:
        kind = unicodedata.category(char)[0]
        if kind in "LN" or (kind == "M" and current):
            current.append(char)
        elif current:
            runs.append("".join(current))
            current = []
    if current:
        runs.append("".join(current))
    return runs


def _fold(word: str) -> str:
    """Drop diacritics from Latin letters (``é`` -> ``e``), as SQLite FTS5's unicode61 does.

    Marks on other scripts are kept: there they are vowels, not decoration.
    """
    if word.isascii():
        return word
    kept: list[str] = []
    latin_base = False
    for char in unicodedata.normalize("NFKD", word):
        if unicodedata.combining(char):
            if latin_base:
                continue
        else:
            latin_base = char < "\u0250"  # Basic Latin up to Latin Extended-B
        kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept))


def _words(text: str, *, compounds: bool) -> list[str]:
    words: list[str] = []
    for run in _runs(unicodedata.normalize("NFKC", text)):
        parts = _camel_parts(run)
        pieces = [*parts, run] if compounds and len(parts) > 1 else parts
        for piece in pieces:
            # lower() can yield non-letters, so split again after folding.
            for word in _runs(_fold(piece.lower())):
                words.append(word[:MAX_TOKEN_CHARS])
    return words


def tokenize(text: str) -> list[str]:
    """Return the index tokens of ``text``: lower-cased, stop words removed, in order.

    Splits on anything not a letter or digit (so kebab-case and snake_case
    split) and at camelCase boundaries; a camelCase word is also kept whole
    (``FastAPI`` gives ``fast``, ``api`` and ``fastapi``).  Unicode-aware: NFKC
    normalised, combining marks kept inside words, diacritics of Latin letters
    dropped (``café`` and ``cafe`` are the same token).
    """
    return [w for w in _words(text, compounds=True) if w not in STOP_WORDS]


def query_words(query: str) -> list[str]:
    """Split a query into words the way the indexer splits text (stop words kept)."""
    return _words(query, compounds=False)


def artifact_terms(artifact: Mapping[str, Any]) -> dict[str, int]:
    """Return ``{token: field mask}`` for an artifact's searchable fields."""
    fields = {
        "name": artifact.get("name") or "",
        "tags": " ".join(artifact.get("tags") or ()),
        "title": artifact.get("title") or "",
        "description": artifact.get("description") or "",
    }
    terms: dict[str, int] = {}
    for field, text in fields.items():
        weight = FIELD_WEIGHTS[field]
        for token in tokenize(text):
            terms[token] = terms.get(token, 0) | weight
    return terms


def _best(mask: int) -> int:
    for weight in _MASK_WEIGHTS:
        if mask & weight:
            return weight
    return 0


_BEST = [_best(mask) for mask in range(256)]  # mask byte -> weight of its best field


@dataclass(frozen=True)
class QueryFilters:
    """Optional filters of a search; ``project`` is a project id."""

    type: Optional[str] = None
    collection: Optional[str] = None
    tag: Optional[str] = None
    project: Optional[str] = None


# A posting lookup (B-tree descent) costs about as much as reading this many
# postings sequentially; it decides between probing candidates and reading a list.
_PROBE_COST = 8


class _Word:
    """One query word: its index tokens and how many postings they hold."""

    def __init__(self, text: str, tokens: list[bytes], size: int, complete: bool, prefix: bool):
        self.text = text
        self.prefix = prefix
        self.tokens = tokens
        self.size = size
        self.complete = complete  # False when sizing stopped early (prefix words only)

    def read(self, txn: Txn, repos: Repositories) -> dict[bytes, int]:
        """Map artifact key -> best field weight over all of the word's postings."""
        best: dict[bytes, int] = {}
        postings = repos.tokens.postings
        for token in self.tokens:
            for value in postings.values(txn, token):
                key, weight = value[:-2], _BEST[value[-1]]
                if weight > best.get(key, 0):
                    best[key] = weight
        return best


def _size_words(
    txn: Txn, repos: Repositories, exact: list[str], prefix: str
) -> Optional[list[_Word]]:
    """Size every word (O(1) per token); ``None`` when some exact word has no posting."""
    postings = repos.tokens.postings
    words = []
    for text in exact:
        size = postings.count(txn, text.encode())
        if size == 0:
            return None
        words.append(_Word(text, [text.encode()], size, True, prefix=False))
    cap = min((w.size for w in words), default=None)
    tokens: list[bytes] = []
    size = 0
    complete = True
    for token, count in postings.keys_with_prefix(txn, prefix.encode()):
        tokens.append(token)
        size += count
        if cap is not None and size > cap * _PROBE_COST:
            complete = False  # far from the rarest: it will be probed, not read
            break
    if size == 0:
        return None
    words.append(_Word(prefix, tokens, size, complete, prefix=True))
    return sorted(words, key=lambda w: w.size)


def _narrow(
    txn: Txn, repos: Repositories, found: dict[bytes, int], word: _Word
) -> dict[bytes, int]:
    """Keep the keys of ``found`` that also hold ``word``, adding its weight to their score."""
    if word.complete and word.size <= len(found) * _PROBE_COST * len(word.tokens):
        other = word.read(txn, repos)
        return {k: s + other[k] for k, s in found.items() if k in other}
    narrowed: dict[bytes, int] = {}
    if word.prefix and (not word.complete or len(word.tokens) > _PROBE_COST):
        # Many tokens share the prefix: read each candidate's terms record instead.
        for key, score in found.items():
            terms = repos.tokens.terms(txn, key.decode("utf-8")) or {}
            weight = max((_BEST[m] for t, m in terms.items() if t.startswith(word.text)), default=0)
            if weight:
                narrowed[key] = score + weight
        return narrowed
    cursor = txn.cursor(repos.tokens.postings.db)
    for key, score in found.items():
        weight = max(_BEST[repos.tokens.mask_of(cursor, t, key)] for t in word.tokens)
        if weight:
            narrowed[key] = score + weight
    return narrowed


def _apply_filters(
    txn: Txn, repos: Repositories, found: dict[bytes, int], filters: QueryFilters
) -> dict[bytes, int]:
    if filters.type is not None or filters.collection is not None:
        wanted_type = filters.type.encode() if filters.type is not None else None
        wanted_collection = filters.collection.encode() if filters.collection is not None else None
        kept = {}
        for key, score in found.items():
            collection, type_, _name = key.split(b"/")
            if (wanted_type is None or type_ == wanted_type) and (
                wanted_collection is None or collection == wanted_collection
            ):
                kept[key] = score
        found = kept
    if filters.project is not None:
        deployed = {
            codec.parse_deployment_key(k)[1].encode()
            for k, _v in repos.deployments.scan_project(txn, filters.project)
        }
        found = {k: s for k, s in found.items() if k in deployed}
    if filters.tag is not None:
        tag = filters.tag
        if repos.facets.size(txn, "tag", tag) <= len(found) * _PROBE_COST:
            tagged = {k.encode() for k in repos.facets.artifact_keys(txn, "tag", tag)}
            found = {k: s for k, s in found.items() if k in tagged}
        else:
            found = {
                k: s for k, s in found.items() if repos.facets.has(txn, "tag", tag, k.decode())
            }
    return found


def run_query(
    txn: Txn,
    repos: Repositories,
    query: str,
    filters: QueryFilters,
    limit: int,
    offset: int,
) -> tuple[list[tuple[str, float]], int]:
    """Run ``query`` and return ``([(artifact key, score), ...] for the page, total matches)``.

    Reads the postings of the rarest word, then narrows by each other word in
    order of size, probing single postings when that is cheaper than reading a
    whole list; only the page's keys are sorted fully (a heap selects them).
    """
    words = query_words(query)
    if not words:
        return [], 0
    prefix = words[-1]
    exact = sorted({w for w in words[:-1] if w not in STOP_WORDS})
    sized = _size_words(txn, repos, exact, prefix)
    if sized is None:
        return [], 0
    driver, rest = sized[0], sized[1:]
    found = driver.read(txn, repos)
    found = _apply_filters(txn, repos, found, filters)
    for word in rest:
        if not found:
            break
        found = _narrow(txn, repos, found, word)
    total = len(found)
    if limit <= 0 or offset >= total:
        return [], total
    ranked = heapq.nsmallest(
        offset + limit, ((-score, key.rsplit(b"/", 1)[1], key) for key, score in found.items())
    )
    return [(key.decode("utf-8"), float(-neg)) for neg, _name, key in ranked[offset:]], total
