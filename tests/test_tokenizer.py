"""The tokenizer: index tokens, query words and the field masks of an artifact."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from projcache.terms import STOP_WORDS, field_terms, query_words, stem, tokenize

T = TypeVar("T")


def is_word(token: str) -> bool:
    """A letter or digit, then letters, digits and combining marks only."""
    kinds = [unicodedata.category(c)[0] for c in token]
    return bool(kinds) and kinds[0] in "LN" and all(k in "LNM" for k in kinds)


# Text biased towards what the tokenizer has to handle: camelCase, acronyms,
# separators, digits, stop words, accents, CJK and long runs.
_PIECES = st.sampled_from(
    [
        "extractPDFText",
        "FastAPI",
        "HTTPServer",
        "utf8Decoder",
        "pdf-tools",
        "git_hooks",
        "the",
        "of",
        "IT",
        "Übersicht",
        "café",
        "Cafe\u0301",
        "日本語",
        "ΟΔΟΣ",
        "İstanbul",
        "ﬁle",
        "\uff30\uff24\uff26",  # full-width PDF
        "x" * 70,
        "aB" * 40,
        " ",
        "-",
        "_",
        ".",
        "/",
    ]
)
TEXT = st.one_of(st.text(), st.lists(st.one_of(_PIECES, st.text(max_size=5))).map("".join))


class TestTokenize:
    """Hand-written cases of :func:`tokenize`."""

    def test_lower_cases(self) -> None:
        """Tokens are lower-cased."""
        assert tokenize("PDF Tools") == ["pdf", "tools"]

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("pdf-extract", ["pdf", "extract"]),
            ("git_hooks", ["git", "hooks"]),
            ("foo.bar/baz, qux!", ["foo", "bar", "baz", "qux"]),
            ("  tabs\tand\nnewlines  ", ["tabs", "newlines"]),
            ("v1.2-rc3", ["v1", "2", "rc3"]),
        ],
    )
    def test_splits_on_non_alphanumerics(self, text: str, expected: list[str]) -> None:
        """Anything not a letter or digit separates tokens (kebab-case, snake_case, punctuation)."""
        assert tokenize(text) == expected

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("extractPDFText", ["extract", "pdf", "text", "extractpdftext"]),
            ("FastAPI", ["fast", "api", "fastapi"]),
            ("HTTPServer", ["http", "server", "httpserver"]),
            ("readFile", ["read", "file", "readfile"]),
            ("utf8Decoder", ["utf8", "decoder", "utf8decoder"]),
        ],
    )
    def test_camel_case_splits_and_keeps_compound(self, text: str, expected: list[str]) -> None:
        """CamelCase and acronyms split at their boundaries, and the whole word is kept too."""
        assert tokenize(text) == expected

    def test_single_case_words_are_not_split(self) -> None:
        """All-lower, all-upper and Capitalised words give one token each."""
        assert tokenize("pdf PDF Pdf") == ["pdf", "pdf", "pdf"]

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("Übersicht", ["ubersicht"]),
            ("日本語", ["日本語"]),
            ("café résumé naïve", ["cafe", "resume", "naive"]),
            ("ΟΔΟΣ", ["οδος"]),
        ],
    )
    def test_keeps_unicode_letters(self, text: str, expected: list[str]) -> None:
        """Non-ASCII letters are word characters, lower-cased, Latin diacritics folded."""
        assert tokenize(text) == expected

    @pytest.mark.parametrize(
        "word", ["हिन्दी", "สวัสดี", "தமிழ்", "שָׁלוֹם"], ids=["devanagari", "thai", "tamil", "hebrew"]
    )
    def test_keeps_combining_marks_inside_words(self, word: str) -> None:
        """A word written with combining vowel signs or diacritics stays one token."""
        assert tokenize(word) == [word]
        assert query_words(word) == [word]

    def test_normalizes_nfkc(self) -> None:
        """Decomposed accents, ligatures and full-width letters tokenize like plain text."""
        assert tokenize("Cafe\u0301") == tokenize("café") == ["cafe"]
        assert tokenize("\ufb01le \uff30\uff24\uff26") == ["file", "pdf"]

    def test_drops_stop_words(self) -> None:
        """Stop words are not index tokens, in any case."""
        assert tokenize("The Art of War") == ["art", "war"]
        assert tokenize("IT is") == []

    def test_caps_token_length(self) -> None:
        """A token keeps at most its first 64 characters."""
        assert tokenize("x" * 100) == ["x" * 64]
        assert tokenize("é" * 65 + " ok") == ["e" * 64, "ok"]
        assert tokenize("न" * 70) == ["न" * 64]

    @pytest.mark.parametrize("text", ["", "   ", "--- ___ ...", "!?"])
    def test_no_tokens_without_letters_or_digits(self, text: str) -> None:
        """Text with no letter or digit has no tokens."""
        assert tokenize(text) == []


class TestQueryWords:
    """Hand-written cases of :func:`query_words`."""

    def test_splits_like_tokenize_without_compound(self) -> None:
        """A query splits like indexed text, but camelCase gives only its parts."""
        assert query_words("extractPDFText") == ["extract", "pdf", "text"]
        assert query_words("pdf-tools web_search") == ["pdf", "tools", "web", "search"]

    def test_keeps_stop_words(self) -> None:
        """Stop words stay in the query (the search decides what to ignore)."""
        assert query_words("The Art of War") == ["the", "art", "of", "war"]

    def test_unicode_and_cap(self) -> None:
        """Query words are lower-cased Unicode words of at most 64 characters."""
        assert query_words("Übersicht 日本語") == ["ubersicht", "日本語"]
        assert query_words("y" * 80) == ["y" * 64]


class TestArtifactTerms:
    """The ``{field code: terms}`` map of an artifact."""

    def test_terms_per_field(self) -> None:
        """Each field code holds its tokens and their stems; tags share ``t`` with the title."""
        terms = field_terms(
            {
                "name": "pdf-tools",
                "tags": ["pdfs", "convert"],
                "title": "PDF Tools",
                "description": "Converting the documents",
                "body": "Merges files",
            }
        )
        assert terms == {
            b"n": {"pdf", "tools", "tool"},
            b"t": {"pdf", "pdfs", "tools", "tool", "convert"},
            b"d": {"converting", "convert", "documents", "document"},
            b"b": {"merges", "merg", "files", "file"},
        }

    def test_missing_fields_are_empty(self) -> None:
        """Absent or ``None`` title, tags, description and body contribute nothing."""
        assert field_terms({"name": "fastAPI", "title": None, "tags": None}) == {
            b"n": {"fast", "api", "fastapi"},
        }

    def test_tags_split_and_stop_words_dropped(self) -> None:
        """Tags are tokenized like other text and stop words are never terms."""
        terms = field_terms({"name": "x", "tags": ["web-search", "of"], "description": "the"})
        assert terms == {b"n": {"x"}, b"t": {"web", "search"}}


class TestStemming:
    """The English stemmer, plus acronym plurals."""

    @pytest.mark.parametrize(
        ("word", "stemmed"),
        [
            ("spreadsheets", "spreadsheet"),
            ("testing", "test"),
            ("pdfs", "pdf"),
            ("mcps", "mcp"),
            ("apis", "api"),
            ("class", "class"),
            ("css", "css"),
            ("données", "données"),
            ("x1s", "x1s"),
        ],
    )
    def test_stems(self, word: str, stemmed: str) -> None:
        """Plurals and -ing forms reduce; non-ASCII and digits stay as they are."""
        assert stem(word) == stemmed


class TestTokenizerProperties:
    """Properties of the tokenizer over arbitrary text."""

    @given(TEXT)
    @example("İstanbul")
    @example("ǅungla ǈj")
    def test_tokens_are_well_formed(self, text: str) -> None:
        """Every token is a non-empty lower-case letter/digit run, <= 64 chars, not a stop word."""
        for token in tokenize(text):
            assert token
            assert token == token.lower()
            assert is_word(token), token
            assert token not in STOP_WORDS
            assert len(token) <= 64

    @given(TEXT)
    def test_query_words_are_well_formed(self, text: str) -> None:
        """Every query word is a non-empty, lower-case run of letters/digits of <= 64 chars."""
        for word in query_words(text):
            assert word == word.lower()
            assert is_word(word), word
            assert len(word) <= 64

    @given(TEXT)
    @example("İstanbul")
    @example("ΟΔΟΣ ΑΣ")
    def test_tokenize_is_idempotent(self, text: str) -> None:
        """Tokenizing the tokens again gives back the same tokens."""
        tokens = tokenize(text)
        assert set(tokenize(" ".join(tokens))) == set(tokens)

    @given(TEXT)
    def test_query_words_are_indexed(self, text: str) -> None:
        """Every non-stop query word of a text is one of that text's index tokens."""
        words = {w for w in query_words(text) if w not in STOP_WORDS}
        assert words <= set(tokenize(text))

    @settings(max_examples=60)
    @given(
        st.fixed_dictionaries(
            {
                "name": TEXT,
                "tags": st.lists(TEXT, max_size=3),
                "title": st.one_of(st.none(), TEXT),
                "description": TEXT,
            }
        )
    )
    def test_field_terms_are_tokens_and_stems(self, artifact: dict[str, Any]) -> None:
        """A field's terms are exactly its tokens and their stems."""
        fields = {
            b"n": tokenize(artifact["name"]),
            b"t": tokenize(artifact["title"] or "")
            + [t for tag in artifact["tags"] for t in tokenize(tag)],
            b"d": tokenize(artifact["description"]),
        }
        expected = {
            code: {t for token in tokens for t in (token, stem(token))}
            for code, tokens in fields.items()
            if tokens
        }
        assert field_terms(artifact) == expected


@given(
    text=st.text(alphabet="aAbBzZ09 _-.'\n", max_size=40)
    | st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30),
    compounds=st.booleans(),
)
def test_whole_text_paths_split_like_run_by_run(text: str, compounds: bool) -> None:
    """The whole-text fast paths (ASCII prose without camelCase; text without combining marks)
    give the words of the run-by-run split they stand for."""
    from projcache import terms

    source = text if text.isascii() else unicodedata.normalize("NFKC", text)
    # The reference: letters and digits character by character, marks joining the run before.
    runs = terms._runs_by_char(source)
    expected = [word for run in runs for word in terms._split_run(run, compounds)]
    assert terms._words(text, compounds=compounds) == expected


_ARTIFACT = st.fixed_dictionaries(
    {
        "name": TEXT,
        "tags": st.lists(TEXT, max_size=3),
        "title": st.one_of(st.none(), TEXT),
        "description": TEXT,
        "body": st.one_of(st.none(), TEXT, st.text(alphabet="aAbBsSzZ09 -.#\n", max_size=300)),
    }
)


def _with_stem_tables_of(most: int, call: Callable[[], T]) -> T:
    """``call()`` with the stem tables holding at most ``most`` words, then emptied (a
    hypothesis example must not leave its small tables to the next one)."""
    from projcache import terms

    saved = terms._STEMS_MAX
    terms._STEMS_MAX = most
    try:
        return call()
    finally:
        terms._STEMS_MAX = saved
        terms._STEMS.clear()
        terms._STEMS_UTF8.clear()


@settings(max_examples=60)
@given(st.lists(_ARTIFACT, max_size=6), st.integers(min_value=1, max_value=40))
def test_field_terms_many_is_field_terms_of_each(
    artifacts: list[dict[str, Any]], most: int
) -> None:
    """A batch gives each artifact the terms it gets alone (tokens and :func:`stem` of each),
    whatever the size of the stem table (it is emptied when full)."""
    from projcache import terms

    got = _with_stem_tables_of(most, lambda: terms.field_terms_many(artifacts))
    expected = []
    for artifact in artifacts:
        fields = terms.artifact_fields(artifact)
        want = {}
        for code, text in fields.items():
            tokens = set(tokenize(text))
            if tokens:
                want[code] = tokens | {stem(token) for token in tokens}
        expected.append(want)
    assert got == expected


@given(st.text(alphabet="aAbBzZ09 _-.\n", max_size=40))
def test_camel_boundary_pattern_is_the_two_rules(text: str) -> None:
    """The one-scan camelCase pattern finds a boundary exactly when one of the two rules
    (lower or digit then upper; an acronym's last capital then lower) does."""
    import re

    from projcache import terms

    rules = re.search(r"[a-z0-9][A-Z]", text) or re.search(r"[A-Z][A-Z][a-z]", text)
    assert (terms._CAMEL_SPLIT.search(text) is not None) == (rules is not None)


def test_a_full_stem_table_is_replaced_not_emptied(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table a batch filled keeps its words when another batch finds the table full
    (a thread mapping its tokens through it never misses one)."""
    from projcache import terms

    monkeypatch.setattr(terms, "_STEMS", {})
    monkeypatch.setattr(terms, "_STEMS_MAX", 3)
    mine = terms._learn_stems(["sheets", "testing"])
    other = terms._learn_stems(["pdfs", "forms", "merging"])
    assert other is not mine
    assert mine == {"sheets": stem("sheets"), "testing": stem("testing")}
    assert other == {word: stem(word) for word in ("pdfs", "forms", "merging")}


@settings(max_examples=80)
@given(st.lists(_ARTIFACT, max_size=6), st.integers(min_value=1, max_value=40))
def test_utf8_terms_are_the_terms_encoded(artifacts: list[dict[str, Any]], most: int) -> None:
    """The write path's terms (bytes; ASCII prose split as bytes) are exactly
    :func:`~projcache.terms.field_terms_many`'s, UTF-8 encoded, whatever the size of the
    stem tables (both are replaced when full)."""
    from projcache import terms

    got = _with_stem_tables_of(most, lambda: terms.field_terms_utf8_many(artifacts))
    expected = [
        {code: {term.encode() for term in words} for code, words in fields.items()}
        for fields in terms.field_terms_many(artifacts)
    ]
    assert got == expected


@settings(max_examples=80)
@given(st.lists(_ARTIFACT, min_size=1, max_size=4), st.integers(min_value=1, max_value=40))
def test_single_utf8_terms_are_the_batch_form_of_one(
    artifacts: list[dict[str, Any]], most: int
) -> None:
    """The single write's :func:`~projcache.terms.field_terms_utf8` gives each artifact the
    terms :func:`~projcache.terms.field_terms_utf8_many` gives it alone, whatever the size
    of the stem tables (replaced when full between or during the calls)."""
    from projcache import terms

    got = _with_stem_tables_of(most, lambda: [terms.field_terms_utf8(a) for a in artifacts])
    expected = [
        {code: {term.encode() for term in words} for code, words in fields.items()}
        for fields in terms.field_terms_many(artifacts)
    ]
    assert got == expected


@settings(max_examples=80)
@given(st.lists(_ARTIFACT, max_size=6), st.integers(min_value=1, max_value=40))
def test_utf8_tokens_and_their_stems_are_the_terms(
    artifacts: list[dict[str, Any]], most: int
) -> None:
    """:func:`~projcache.terms.field_tokens_utf8_many` gives each field's tokens and a stem
    table of them all: the tokens and their stems are the field's terms
    (:func:`~projcache.terms.field_terms_utf8_many`), whatever the size of the stem tables."""
    from projcache import terms

    tokens, stems = _with_stem_tables_of(most, lambda: terms.field_tokens_utf8_many(artifacts))
    expected = terms.field_terms_utf8_many(artifacts)
    got = [
        {code: words | {stems[word] for word in words} for code, words in fields.items()}
        for fields in tokens
    ]
    assert got == expected
    assert all(stems[word] == terms.stem(word.decode()).encode() for word in stems)


@pytest.mark.parametrize(
    "text",
    ["Plain prose, with PUNCTUATION; and digits 42!", "x" * 70 + " Tail", "tab\tnew\nline"],
)
def test_ascii_prose_is_split_as_bytes(text: str) -> None:
    """ASCII prose without a camelCase boundary takes the bytes path, and it splits,
    lower-cases and cuts long words as the ``str`` path does."""
    from projcache import terms

    assert terms._CAMEL_SPLIT_UTF8.search(text.encode()) is None
    assert terms._utf8_words(text) == [w.encode() for w in terms._words(text, compounds=True)]


def test_learning_utf8_stems_looks_up_only_the_words_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """The UTF-8 stem table is asked about the batch's words only (``set - dict.keys()``
    walked the whole table, up to 131,072 words, for every single write)."""
    from projcache import terms

    class Table(dict[bytes, bytes]):
        def keys(self) -> Any:
            raise AssertionError("the whole table was walked")

    table = Table({b"sheets": b"sheet"})
    monkeypatch.setattr(terms, "_STEMS_UTF8", table)
    stems = terms._learn_utf8_stems({b"sheets", b"testing"})
    assert stems is table and stems[b"testing"] == stem("testing").encode()
