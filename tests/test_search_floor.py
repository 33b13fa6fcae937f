"""The tie-break's name-length floor: a group whose words are all in the name skips the
name lengths its plain names cannot have, and ranks the other names from their keys."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from damage import tamper
from projcache import ProjectCache
from projcache import postings as postings_module
from projcache import search as search_module
from projcache.config import Settings
from projcache.postings import ODD_NAMES, BitmapIndex
from projcache.terms import plain_name, stem
from test_search import check_search

MakeArtifact = Callable[..., dict[str, Any]]

# Names holding ``file`` and ``beta`` (a floor of 4 + 4 + 1 = 9 characters), the shortest
# plain one last; the odd ones are shorter than the floor and must rank first.
PLAIN = ["file-beta-tool-extra", "file-beta-tool", "beta-file-x", "file-beta"]
ODD = [
    "fileBeta",  # camelCase: tokens file, beta and filebeta in 8 characters
    "\ufb01le-beta",  # the ligature fi: NFKC makes the 8 characters file-beta's tokens
]


@pytest.fixture(params=[2, 1])
def ranked_by_bitmaps(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Rank every set by bitmap tiers and name-length buckets, not from keys; the odd names
    of a group (here 2) from their keys, or (``_SMALL_GROUP`` 1: too many) by every bucket."""
    monkeypatch.setattr(search_module, "_SMALL", 1)
    monkeypatch.setattr(search_module, "_SMALL_GROUP", request.param)
    monkeypatch.setattr(search_module, "_RESTRICT", 0)


def _put(cache: ProjectCache, make_artifact: MakeArtifact, names: list[str]) -> list[Any]:
    records = [make_artifact(name, description="words") for name in names]
    filler = [make_artifact(f"n{i}", description="file beta") for i in range(6)]
    cache.put_artifacts(records + filler)
    return records + filler


def _buckets_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on BitmapIndex.dense_parts: the name-length buckets read, in order."""
    read: list[int] = []
    real = BitmapIndex.dense_parts
    prefix = postings_module.facet_name("len", "")

    def spy(self: BitmapIndex, txn: Any, name: bytes, blocks: Any) -> Any:
        if name.startswith(prefix):
            read.append(int(name[len(prefix) :]))
        return real(self, txn, name, blocks)

    monkeypatch.setattr(BitmapIndex, "dense_parts", spy)
    return read


@pytest.mark.usefixtures("ranked_by_bitmaps")
def test_buckets_under_the_floor_are_not_read(
    cache: ProjectCache, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every plain name holding both words in the name is at least 9 characters long:
    the buckets of shorter names (the fillers' 2) are not read, and the page is the rule's."""
    stored = _put(cache, make_artifact, PLAIN)
    read = _buckets_read(monkeypatch)
    found = cache.search("file beta", limit=3)
    assert [h.key for h in found] == [
        "default/skill/file-beta",
        "default/skill/beta-file-x",
        "default/skill/file-beta-tool",
    ]
    assert read and min(read) >= 9  # (the old walk began at bucket 2)
    for spec in (
        {"query": "file beta"},
        {"query": "beta fil"},
        {"query": "file beta", "offset": 2},
        {"query": "files betas"},
    ):
        check_search(cache, stored, spec)


@pytest.mark.usefixtures("ranked_by_bitmaps")
def test_odd_names_shorter_than_the_floor_still_rank_first(
    cache: ProjectCache, make_artifact: MakeArtifact
) -> None:
    """Names whose tokens overlap or outgrow them (camelCase, NFKC) are listed under
    ODD_NAMES and ranked from their keys: the page equals the brute-force oracle's."""
    stored = _put(cache, make_artifact, PLAIN + ODD)
    found = cache.search("file beta", limit=4)
    assert [h.key for h in found][:2] == ["default/skill/fileBeta", "default/skill/\ufb01le-beta"]
    for spec in (
        {"query": "file beta"},
        {"query": "file beta", "limit": 3, "offset": 1},
        {"query": "beta fil"},
        {"query": "filebeta file"},
        {"query": "files betas"},
    ):
        check_search(cache, stored, spec)


def test_only_names_that_are_not_plain_are_listed_and_verify_checks_them(
    cache: ProjectCache, make_artifact: MakeArtifact, cache_settings: Settings
) -> None:
    """ODD_NAMES lists the odd names, follows renames, and verify (deep) reports an id
    it lacks; a cache built before layout 2 neither reads nor checks it."""
    _put(cache, make_artifact, PLAIN + ODD)
    cache.put_artifacts([make_artifact("fileBeta", description="relisted")])
    cache.delete_artifact("default/skill/\ufb01le-beta")
    cache.put_artifacts([make_artifact("zzTop")])
    ids = cache._read(lambda txn: dict(cache._repos.ids.items(txn)))
    odd = cache._read(lambda txn: set(cache._repos.index.get(txn, ODD_NAMES)))
    assert odd == {ids["default/skill/fileBeta"], ids["default/skill/zzTop"]}
    assert cache.verify(deep=True).ok
    cache._write(lambda txn: cache._repos.index.merge(txn))  # the log into the stored values
    cache.close()

    def drop(txn: Any, dbs: dict[str, Any]) -> None:
        for key in [bytes(k) for k, _ in txn.cursor(dbs["search-tokens"])]:
            if key.startswith(ODD_NAMES):
                txn.delete(key, db=dbs["search-tokens"])

    tamper(cache_settings.cache_dir, drop)
    with ProjectCache.open(settings=cache_settings) as reopened:
        findings = reopened.verify(deep=True).findings
        assert len(findings) == 2 and all("missing id" in f.message for f in findings)
        assert reopened.verify(repair=True).repaired
        assert reopened.verify(deep=True).ok
    tamper(
        cache_settings.cache_dir,
        lambda txn, dbs: txn.put(b"\xff\x07layout", b"\x01", db=dbs["search-pending"]),
    )
    tamper(cache_settings.cache_dir, drop)
    with ProjectCache.open(settings=cache_settings) as old_layout:
        assert not old_layout._read(lambda txn: old_layout._repos.index.odd_names_listed(txn))
        assert old_layout.verify(deep=True).ok


@pytest.mark.usefixtures("ranked_by_bitmaps")
def test_a_cache_without_the_odd_names_walks_every_bucket(
    cache: ProjectCache,
    make_artifact: MakeArtifact,
    cache_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before layout 2 the odd names may be unlisted: no floor, the page stays right."""
    stored = _put(cache, make_artifact, PLAIN + ODD)
    cache.close()

    def old(txn: Any, dbs: dict[str, Any]) -> None:
        txn.put(b"\xff\x07layout", b"\x01", db=dbs["search-pending"])
        for key in [bytes(k) for k, _ in txn.cursor(dbs["search-tokens"])]:
            if key.startswith(ODD_NAMES):
                txn.delete(key, db=dbs["search-tokens"])

    tamper(cache_settings.cache_dir, old)
    with ProjectCache.open(settings=cache_settings) as reopened:
        read = _buckets_read(monkeypatch)
        check_search(reopened, stored, {"query": "file beta"})
        assert min(read) == 2


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=24))
def test_a_stem_keeps_its_first_letter_and_is_never_longer(word: str) -> None:
    """What the floor counts on: a token matching a word begins with the word's first
    letter and is at least as long as the word (its stem at the stem level)."""
    stemmed = stem(word)
    assert stemmed[:1] == word[:1]
    assert len(stemmed) <= len(word)


@pytest.mark.parametrize(
    ("name", "plain"),
    [("pdf-extract", True), ("PDF Tools", True), ("Pdf_tools2", True), ("fooBar", False),
     ("extractPDFText", False), ("café", False), ("ﬁle", False), ("", True)],
)  # fmt: skip
def test_plain_names(name: str, plain: bool) -> None:
    """Plain: ASCII without a camelCase boundary (the tokenizer's prose path)."""
    assert plain_name(name) is plain


@pytest.mark.usefixtures("ranked_by_bitmaps")
def test_a_bucket_is_decoded_only_up_to_the_chunk_that_fills_the_page(
    cache: ProjectCache, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parts of a name length are cut in id order: once the page is full the later
    chunks (later ranks) are not decoded."""
    monkeypatch.setattr(postings_module, "CHUNK_BITS", 2)  # wide chunks of 16 ids
    monkeypatch.setattr(postings_module, "MERGE_AT", 0)  # merged: stored, not in the log
    stored = [make_artifact(f"file-beta-{i:02d}", description="x") for i in range(60)]
    cache.put_artifacts(stored)
    decoded: list[bytes] = []
    real = postings_module.decode_bitmap

    def spy(raw: bytes, *, what: Any = "bitmap") -> Any:
        if isinstance(what, bytes) and what.startswith(b"\x01len\x00"):
            decoded.append(bytes(what))
        return real(raw, what=what)

    monkeypatch.setattr(postings_module, "decode_bitmap", spy)
    monkeypatch.setattr(search_module, "decode_bitmap", spy, raising=False)
    found = cache.search("file beta", limit=3)
    assert [h.key for h in found] == [f"default/skill/file-beta-{i:02d}" for i in range(3)]
    bucket = postings_module.facet_name("len", "12")
    assert [key[:-2] for key in decoded] == [bucket]  # 1 of its 4 chunks
    check_search(cache, stored, {"query": "file beta", "offset": 40})


@pytest.mark.usefixtures("ranked_by_bitmaps")
def test_name_lengths_past_the_page_are_not_listed(
    cache: ProjectCache, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name lengths in use are listed one at a time, as the walk reaches them: a page
    filled from the first length never looks for the dozens of longer ones (one cursor seek
    each at a million ids)."""
    stored = [make_artifact("file-beta" + "-x" * i, description="d") for i in range(12)]
    cache.put_artifacts(stored)
    cache._write(lambda txn: cache._repos.index.merge(txn))  # the lengths stored, not logged
    drawn: list[int] = []
    real_list = BitmapIndex.name_buckets
    real_iter = getattr(BitmapIndex, "iter_name_buckets", None)

    def spy_list(self: BitmapIndex, txn: Any, floor: int = 1) -> list[int]:
        found = real_list(self, txn, floor)
        drawn.extend(found)
        return found

    def spy_iter(self: BitmapIndex, txn: Any, floor: int = 1) -> Any:
        assert real_iter is not None
        for bucket in real_iter(self, txn, floor):
            drawn.append(bucket)
            yield bucket

    monkeypatch.setattr(BitmapIndex, "name_buckets", spy_list)
    if real_iter is not None:
        monkeypatch.setattr(BitmapIndex, "iter_name_buckets", spy_iter)
    found = cache.search("file beta", limit=1)
    assert [h.key for h in found] == ["default/skill/file-beta"]
    assert drawn == [9]  # (the old walk listed all 12 lengths, 9 .. 31)
    for spec in ({"query": "file beta"}, {"query": "file beta", "offset": 5, "limit": 3}):
        check_search(cache, stored, spec)


def test_name_buckets_lists_the_lengths_the_write_log_adds(
    cache: ProjectCache, make_artifact: MakeArtifact
) -> None:
    """Stored lengths and lengths only the write log holds so far come out in one ascending
    list, each once, from the floor up."""
    cache.put_artifacts([make_artifact(name) for name in ("ab", "abcd", "abcdef")])
    cache._write(lambda txn: cache._repos.index.merge(txn))
    cache.put_artifacts([make_artifact(name) for name in ("abc", "abcdef-x", "abcd-y")])
    index = cache._repos.index
    assert cache._read(lambda txn: index.name_buckets(txn)) == [2, 3, 4, 6, 8]
    assert cache._read(lambda txn: index.name_buckets(txn, 4)) == [4, 6, 8]
    assert cache._read(lambda txn: list(index.iter_name_buckets(txn, 5))) == [6, 8]
