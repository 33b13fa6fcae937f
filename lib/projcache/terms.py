"""The words of search: tokenizer, stemmer, and the terms an artifact is indexed under.

Shared by the write path (:mod:`projcache.mutations` indexes :func:`field_terms`)
and the query side (:mod:`projcache.search` splits a query with
:func:`query_words`); the index format is in docs/cache/storage-format.md.
Fields: ``n`` name, ``t`` title and tags, ``d`` description, ``b`` the Markdown
body.  A token is indexed as itself and as its English stem, so
``spreadsheets`` is found by ``spreadsheet`` and the other way round.

Over 400 lines because the tokenizer has two forms that must agree token for token (text
for queries, UTF-8 bytes for the write path's bitmap names); splitting them apart would
separate the rules from the one place that keeps them equal.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Set as AbstractSet
    from typing import Any, Optional, TypeVar

    W = TypeVar("W", str, bytes)  # a token: text, or UTF-8 (the write path)

__all__ = [
    "MAX_NAME_BUCKET",
    "MAX_TOKEN_CHARS",
    "STOP_WORDS",
    "artifact_fields",
    "field_terms",
    "field_terms_many",
    "field_terms_utf8",
    "field_terms_utf8_many",
    "field_tokens_utf8_many",
    "name_bucket",
    "plain_name",
    "query_words",
    "stem",
    "tokenize",
]

MAX_TOKEN_CHARS = 64
MAX_NAME_BUCKET = 64

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
_VOWELS = frozenset("aeiouy")


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
    if text.isascii() or not any(
        unicodedata.category(char)[0] == "M" for char in set(text) if not char.isascii()
    ):
        return _RUN.findall(text)  # without combining marks, \w is letters and digits
    return _runs_by_char(text)


def _runs_by_char(text: str) -> list[str]:
    """:func:`_runs` character by character (the path for text with combining marks)."""
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


@lru_cache(maxsize=1 << 16)
def _split_run(run: str, compounds: bool) -> tuple[str, ...]:
    """The words of one letter/digit run (camelCase parts, plus the whole when ``compounds``)."""
    if run.islower() or not any(c.isupper() for c in run):
        pieces = [run]
    elif run[0].isupper() and (len(run) == 1 or run[1:].islower()):
        pieces = [run]  # "Capitalised": one word
    else:
        parts = _camel_parts(run)
        pieces = [*parts, run] if compounds and len(parts) > 1 else parts
    words: list[str] = []
    for piece in pieces:
        # lower() can yield non-letters, so split again after folding.
        for word in _runs(_fold(piece.lower())):
            words.append(word[:MAX_TOKEN_CHARS])
    return tuple(words)


# Where camelCase splits an ASCII run (see _camel_parts): lower or digit before upper,
# or an acronym's last capital before a lower-case letter.  Written to start with the
# capital, so the regex engine skips along to the next capital (4x faster on prose).
_CAMEL_SPLIT = re.compile(r"[A-Z](?:(?<=[a-z0-9][A-Z])|(?=[A-Z][a-z]))")
# Lower-case ASCII text with every character but a-z and 0-9 made a space: str.split()
# then gives the words _RUN would (one C pass, faster than findall).
_ASCII_SPACES = str.maketrans(
    {char: " " for char in map(chr, range(128)) if not ("a" <= char <= "z" or "0" <= char <= "9")}
)


def _prose_words(text: str) -> Optional[list[str]]:
    """The words of ASCII text that no camelCase boundary splits (most prose), else None."""
    if not text.isascii() or _CAMEL_SPLIT.search(text) is not None:
        return None
    # No run needs splitting: lower-casing the whole text gives the same words.
    words = text.lower().translate(_ASCII_SPACES).split()
    if len(text) > MAX_TOKEN_CHARS and max(map(len, words), default=0) > MAX_TOKEN_CHARS:
        words = [word[:MAX_TOKEN_CHARS] for word in words]
    return words


# _CAMEL_SPLIT and _ASCII_SPACES for UTF-8 (ASCII) bytes; the table also lower-cases.
_CAMEL_SPLIT_UTF8 = re.compile(_CAMEL_SPLIT.pattern.encode())
_ASCII_WORD_BYTES = bytes(
    c + 32 if 65 <= c <= 90 else c if 97 <= c <= 122 or 48 <= c <= 57 else 32 for c in range(256)
)


def _utf8_words(text: str) -> list[bytes]:
    """``_words(text, compounds=True)`` UTF-8 encoded; ASCII prose without a camelCase
    boundary is split as bytes (encode, translate, split: no ``str`` per word)."""
    if text.isascii():
        raw = text.encode()
        if _CAMEL_SPLIT_UTF8.search(raw) is None:
            words = raw.translate(_ASCII_WORD_BYTES).split()
            if len(raw) > MAX_TOKEN_CHARS and max(map(len, words), default=0) > MAX_TOKEN_CHARS:
                words = [word[:MAX_TOKEN_CHARS] for word in words]
            return words
    return [word.encode() for word in _words(text, compounds=True)]


def _words(text: str, *, compounds: bool) -> list[str]:
    words = _prose_words(text)
    if words is not None:
        return words
    runs = _RUN.findall(text) if text.isascii() else _runs(unicodedata.normalize("NFKC", text))
    words = []
    for run in runs:
        words.extend(_split_run(run, compounds))
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


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer  # PyStemmer: the Snowball English (Porter2) stemmer in C (ADR 0010)

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The English (Snowball) stem of a lower-case token; other scripts come back unchanged.

    Snowball keeps the ``s`` of a vowel-less word (``pdfs``, ``mcps``); those
    are acronym plurals, so a final ``s`` after a consonant is dropped there.
    """
    if not _stemmable(word):
        return word
    return _acronym_plural(word, _stemmer().stemWord(word))


def _stemmable(word: str) -> bool:
    return word.isascii() and word.isalpha() and len(word) >= 3


def _acronym_plural(word: str, stemmed: str) -> str:
    """Snowball's stem of ``word``, with the final ``s`` of a vowel-less word dropped."""
    if (
        stemmed == word
        and word.endswith("s")
        and word[-2] != "s"
        and not _VOWELS.intersection(word[:-1])
    ):
        return word[:-1]
    return stemmed


# token -> stem(token) for the write path: a plain dict read with one C call per field
# (map(dict.__getitem__)) instead of one Python call per token; the words it lacks are
# stemmed together in one call of the C stemmer (stemWords).  Replaced by an empty one when
# full, so its memory stays bounded whatever is written; never emptied in place, so a thread
# reading the dict it filled never misses a word another thread's replacement dropped.
_STEMS: dict[str, str] = {}
_STEMS_MAX = 1 << 17


def _learn_stems(words: Iterable[str]) -> dict[str, str]:
    """Return a stem table holding the stem of every word of ``words`` (as :func:`stem`)."""
    global _STEMS
    stems = _STEMS
    words = list(words)
    missing = [word for word in words if word not in stems]
    if not missing:
        return stems
    if len(stems) + len(missing) > _STEMS_MAX:
        stems = _STEMS = {}
        missing = words
    stemmable = []
    for word in missing:
        if _stemmable(word):
            stemmable.append(word)
        else:
            stems[word] = word
    if stemmable:
        for word, stemmed in zip(stemmable, _stemmer().stemWords(stemmable)):
            stems[word] = _acronym_plural(word, stemmed)
    return stems


_STEMS_UTF8: dict[bytes, bytes] = {}  # _STEMS for UTF-8 words, filled from it; likewise


def _learn_utf8_stems(words: set[bytes]) -> dict[bytes, bytes]:
    """Return a stem table (UTF-8) holding the stem of every word of ``words`` (as :func:`stem`)."""
    global _STEMS_UTF8
    stems = _STEMS_UTF8
    missing = words.difference(stems)  # (set - dict.keys() would walk every key)
    if not missing:
        return stems
    if len(stems) + len(missing) > _STEMS_MAX:
        stems = _STEMS_UTF8 = {}
        missing = words
    texts = [word.decode() for word in missing]
    known = _learn_stems(texts)
    for word, text in zip(missing, texts):
        stemmed = known[text]
        stems[word] = word if stemmed == text else stemmed.encode()
    return stems


def artifact_fields(artifact: Mapping[str, Any]) -> dict[bytes, str]:
    """The searchable text of an artifact per field code (name, title + tags, description, body)."""
    title = artifact.get("title") or ""
    tags = " ".join(artifact.get("tags") or ())
    return {
        b"n": artifact.get("name") or "",
        b"t": f"{title} {tags}",
        b"d": artifact.get("description") or "",
        b"b": artifact.get("body") or "",
    }


def _tokens_per_field(
    artifacts: Sequence[Mapping[str, Any]],
    words: Callable[[str], Iterable[W]],
    stops: AbstractSet[W],
) -> tuple[list[dict[bytes, set[W]]], set[W]]:
    """Each artifact's tokens per field code (``words`` of the text, less ``stops``), and
    every distinct token of them all (stemmed once each by the caller)."""
    per_artifact: list[dict[bytes, set[W]]] = []
    distinct: set[W] = set()
    for artifact in artifacts:
        fields: dict[bytes, set[W]] = {}
        for code, text in artifact_fields(artifact).items():
            if not text:
                continue
            tokens = set(words(text))
            tokens -= stops
            if tokens:
                fields[code] = tokens
                distinct |= tokens
        per_artifact.append(fields)
    return per_artifact, distinct


def field_terms(artifact: Mapping[str, Any]) -> dict[bytes, set[str]]:
    """Return ``{field code: terms}``: every token of the field and its stem."""
    return field_terms_many([artifact])[0]


def field_terms_many(artifacts: Sequence[Mapping[str, Any]]) -> list[dict[bytes, set[str]]]:
    """:func:`field_terms` of each artifact, in order.

    A batch is tokenized first and each distinct new word stemmed once, in one
    call of the C stemmer: a batch of 1,000 artifacts has ~50,000 tokens but only
    a few thousand distinct words.
    """
    per_artifact, distinct = _tokens_per_field(
        artifacts, lambda text: _words(text, compounds=True), STOP_WORDS
    )
    stem_of = _learn_stems(distinct).__getitem__
    for fields in per_artifact:
        for code, tokens in fields.items():
            fields[code] = tokens.union(map(stem_of, tokens))
    return per_artifact


def plain_name(name: str) -> bool:
    """Whether the tokens of ``name`` are its own lower-cased runs of ASCII letters and digits.

    True for ASCII without a camelCase boundary (the tokenizer's prose path, no compound
    word): such a name's distinct tokens are disjoint stretches of it, one character apart at
    least, so it is at least as long as any of its tokens together plus the characters between
    them.  The search's tie-break counts on that (``terms`` of other names may overlap, or be
    longer than what they came from: ``fooBar`` gives ``foobar``, NFKC turns ``ﬁ`` into ``fi``).
    """
    return name.isascii() and _CAMEL_SPLIT.search(name) is None


def field_terms_utf8_many(
    artifacts: Sequence[Mapping[str, Any]],
) -> list[dict[bytes, set[bytes]]]:
    """:func:`field_terms_many` UTF-8 encoded, the write path's form (bitmap names are
    bytes): a batch of 1,000 artifacts with bodies has ~50,000 tokens."""
    per_artifact, stems = field_tokens_utf8_many(artifacts)
    stem_of = stems.__getitem__
    for fields in per_artifact:
        for tokens in fields.values():
            tokens.update(list(map(stem_of, tokens)))
    return per_artifact


def field_tokens_utf8_many(
    artifacts: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[bytes, set[bytes]]], Mapping[bytes, bytes]]:
    """Each artifact's tokens per field code (UTF-8, stop words removed, not stemmed) and a
    stem table holding the stem of every one of them (:func:`stem`, UTF-8).  A field's
    terms (:func:`field_terms_utf8_many`) are its tokens and their stems: a batch that
    lists ids per term stems each distinct token once instead of once per field
    (:func:`projcache.mutations.index_fields_many`).  The table keeps every entry it has
    (a full one is replaced, never emptied)."""
    per_artifact, distinct = _tokens_per_field(artifacts, _utf8_words, _STOP_UTF8)
    return per_artifact, _learn_utf8_stems(distinct)


def field_terms_utf8(artifact: Mapping[str, Any]) -> dict[bytes, set[bytes]]:
    """``field_terms_utf8_many([artifact])[0]``, the single write's form: each token's stem
    looked up once, field by field (the batch form gathers every distinct token first, then
    looks each up twice: ~3 us more of a single write's ~35 us of terms).

    A token the stem table lacks that :func:`stem` leaves as it is (digits, short or
    non-ASCII words: ids and numbers in names, new with nearly every write) is its own
    stem, already among the terms: it is neither learned nor kept in the table (learning
    one cost a single write ~10 us, and they filled the table, which is then replaced)."""
    stems = _STEMS_UTF8
    out: dict[bytes, set[bytes]] = {}
    for code, text in artifact_fields(artifact).items():
        if not text or text == " ":  # (" ": no title, no tags)
            continue
        # set(_utf8_words(text)), built in the same order, its usual path (ASCII prose)
        # inline; long words looked for among the distinct words only.
        raw = text.encode() if text.isascii() else None
        if raw is not None and _CAMEL_SPLIT_UTF8.search(raw) is None:
            split = raw.translate(_ASCII_WORD_BYTES).split()
            tokens = set(split)
            if len(raw) > MAX_TOKEN_CHARS and max(map(len, tokens), default=0) > MAX_TOKEN_CHARS:
                tokens = {word[:MAX_TOKEN_CHARS] for word in split}
        else:
            tokens = {word.encode() for word in _words(text, compounds=True)}
        tokens -= _STOP_UTF8
        if not tokens:
            continue
        found: list[Optional[bytes]] = list(map(stems.get, tokens))
        if None in found:  # a word not stemmed yet (the table may be replaced: use the new one)
            # (bytes.isalpha() is ASCII letters only: with the length, _stemmable())
            learn = {
                token
                for token, stemmed in zip(tokens, found)
                if stemmed is None and len(token) >= 3 and token.isalpha()
            }
            # Each token's stem in the tokens' order, as before: the set grows the same way
            # (its order is the write log's order of the names).  A token that is its own
            # stem adds nothing to the set, so it is left out, not looked up.
            if learn:
                table = _learn_ascii_stems(learn)
                found = [
                    stemmed if stemmed is not None else table[token] if token in learn else token
                    for token, stemmed in zip(tokens, found)
                ]
            else:  # (the usual case: numbers and ids of a new name)
                found = [stemmed for stemmed in found if stemmed is not None]
        tokens.update(found)  # type: ignore[arg-type]  # (no None left: each has its stem)
        out[code] = tokens
    return out


def _learn_ascii_stems(words: set[bytes]) -> dict[bytes, bytes]:
    """:func:`_learn_utf8_stems` of new words of ASCII letters (:func:`_stemmable`): the
    single write's few new words stemmed straight into the UTF-8 table (its checks and
    the ``str`` table cost a write with one new word ~5 us)."""
    global _STEMS_UTF8
    stems = _STEMS_UTF8
    if len(stems) + len(words) > _STEMS_MAX:
        stems = _STEMS_UTF8 = {}
    texts = [word.decode() for word in words]
    for word, text, stemmed in zip(words, texts, _stemmer().stemWords(texts)):
        stemmed = _acronym_plural(text, stemmed)
        stems[word] = word if stemmed == text else stemmed.encode()
    return stems


_STOP_UTF8 = frozenset(word.encode() for word in STOP_WORDS)


def name_bucket(name: str) -> int:
    """The name-length tie-break bucket of ``name`` (1 .. :data:`MAX_NAME_BUCKET`)."""
    return max(1, min(len(name), MAX_NAME_BUCKET))
