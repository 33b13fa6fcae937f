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

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

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


def _words(text: str, *, compounds: bool) -> list[str]:
    words: list[str] = []
    for run in _RUN.findall(unicodedata.normalize("NFKC", text)):
        parts = _camel_parts(run)
        pieces = [*parts, run] if compounds and len(parts) > 1 else parts
        for piece in pieces:
            # lower() can yield non-alphanumerics (e.g. a combining dot), so split again.
            for word in _RUN.findall(piece.lower()):
                words.append(word[:MAX_TOKEN_CHARS])
    return words


def tokenize(text: str) -> list[str]:
    """Return the index tokens of ``text``: lower-cased, stop words removed, in order.

    Splits on anything not a letter or digit (so kebab-case and snake_case
    split) and at camelCase boundaries; a camelCase word is also kept whole
    (``FastAPI`` gives ``fast``, ``api`` and ``fastapi``).  Unicode-aware (NFKC).
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


@dataclass(frozen=True)
class QueryFilters:
    """Optional filters of a search; ``project`` is a project id."""

    type: Optional[str] = None
    collection: Optional[str] = None
    tag: Optional[str] = None
    project: Optional[str] = None


def _score(terms: Mapping[str, int], exact: Iterable[str], prefix: str) -> int:
    """Score one artifact's terms against the query; 0 means no match."""
    score = 0
    for word in exact:
        mask = terms.get(word)
        if not mask:
            return 0
        score += _best(mask)
    best = 0
    for token, mask in terms.items():
        if token.startswith(prefix):
            best = max(best, _best(mask))
    return score + best if best else 0


def _candidates(txn: Txn, repos: Repositories, exact: list[str], prefix: str) -> set[bytes]:
    """Keys holding the rarest query word: the smallest set every match must be in."""
    postings = repos.tokens.postings
    sizes = sorted((postings.count(txn, w.encode()), w) for w in exact)
    if sizes and sizes[0][0] == 0:
        return set()
    smallest = sizes[0][0] if sizes else None
    prefix_tokens: list[bytes] = []
    prefix_size = 0
    for token, count in postings.keys_with_prefix(txn, prefix.encode()):
        prefix_tokens.append(token)
        prefix_size += count
        if smallest is not None and prefix_size > smallest:
            break  # the prefix is not the rarest word; stop sizing it
    if smallest is None or prefix_size <= smallest:
        found: set[bytes] = set()
        for token in prefix_tokens:
            found.update(postings.values(txn, token))
        return found
    return set(postings.values(txn, sizes[0][1].encode()))


def run_query(
    txn: Txn,
    repos: Repositories,
    query: str,
    filters: QueryFilters,
    limit: int,
    offset: int,
) -> tuple[list[tuple[str, float]], int]:
    """Run ``query`` and return ``([(artifact key, score), ...] for the page, total matches)``."""
    words = query_words(query)
    if not words:
        return [], 0
    prefix = words[-1]
    exact = sorted({w for w in words[:-1] if w not in STOP_WORDS})
    matches: list[tuple[int, str, str]] = []
    for raw in _candidates(txn, repos, exact, prefix):
        key = raw.decode("utf-8")
        collection, type_, name = key.split("/")
        if filters.type is not None and type_ != filters.type:
            continue
        if filters.collection is not None and collection != filters.collection:
            continue
        if filters.tag is not None and not repos.facets.has(txn, "tag", filters.tag, key):
            continue
        if filters.project is not None and not repos.deployments.exists(txn, filters.project, key):
            continue
        terms = repos.tokens.terms(txn, key)
        score = _score(terms or {}, exact, prefix)
        if score:
            matches.append((-score, name, key))
    matches.sort()
    page = matches[offset : offset + limit] if limit > 0 else []
    return [(key, float(-neg)) for neg, _name, key in page], len(matches)
