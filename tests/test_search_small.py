"""The all-small query path (every query word's terms stored inline) against the general one."""

from __future__ import annotations

import tempfile
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damage import tamper
from factories import examples
from projcache import CorruptRecordError, ProjectCache
from projcache import postings as postings_module
from projcache import search as search_module
from projcache.config import Settings
from projcache.postings import BitmapIndex, encode_small, small_ids, small_parts
from projcache.search import QueryResult
from test_search import open_cache, queries, records


def results(cache: ProjectCache, spec: dict[str, Any]) -> tuple[Any, ...]:
    """Everything a search returns: keys, scores, total, partial counts."""
    found = cache.search(**spec)
    return [(h.key, h.score) for h in found], found.total, found.partial, found.partial_total


def test_two_rare_words_take_the_small_path(
    cache: ProjectCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rare words: the page comes from the small path, ranked by the documented rule."""
    monkeypatch.setattr(postings_module, "MERGE_AT", 2)  # merged: the terms are stored small
    cache.put_artifacts(
        [
            {
                "name": "sarul-tool",
                "type": "skill",
                "collection": "default",
                "description": "urkrul helper",
            },
            {
                "name": "other",
                "type": "skill",
                "collection": "default",
                "description": "sarul only",
            },
            {
                "name": "urkrul",
                "type": "command",
                "collection": "default",
                "description": "nothing else",
            },
            {
                "name": "plain",
                "type": "agent",
                "collection": "default",
                "description": "unrelated words",
            },
        ]
    )
    answered: list[Optional[QueryResult]] = []
    real = search_module._all_small

    def spy(*args: Any, **kwargs: Any) -> Optional[QueryResult]:
        answered.append(real(*args, **kwargs))
        return answered[-1]

    monkeypatch.setattr(search_module, "_all_small", spy)
    found = cache.search("sarul urkrul", limit=20)
    assert answered and answered[0] is not None
    assert [(h.key, h.score) for h in found] == [
        ("default/skill/sarul-tool", 9.0 + 2.0),  # both words: name + description
        ("default/command/urkrul", 9.0),  # partial: one word, in the name
        ("default/skill/other", 2.0),  # partial: one word, in the description
    ]
    assert (found.total, found.partial, found.partial_total) == (1, 2, 2)
    assert cache.search("sarul urkrul", fill=False).total == 1


@pytest.mark.generated
@pytest.mark.parametrize(("small", "bits"), [(postings_module.SMALL_POSTINGS, 16), (2, 2)])
@settings(max_examples=examples(100))
@given(st.lists(records, min_size=1, max_size=12), st.data())
def test_small_path_agrees_with_the_general_path(
    small: int, bits: int, batch: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Same page, scores, total and partial counts with the small path on and off, with and
    without the partial fill.  With most terms in blocks (``SMALL_POSTINGS`` 2) of 4 ids
    (``CHUNK_BITS`` 2) a query whose last word is rare reads its other words only for the
    rare word's ids, block by block (:func:`search._common_levels`): the same with that
    path off."""
    specs = data.draw(st.lists(queries(batch), min_size=1, max_size=6))
    cut = data.draw(st.integers(0, len(batch)))
    with pytest.MonkeyPatch.context() as blocks:
        blocks.setattr(postings_module, "CHUNK_BITS", bits)
        agree(batch, specs, cut, small)


def agree(batch: list[dict[str, Any]], specs: list[dict[str, Any]], cut: int, small: int) -> None:
    """:func:`test_small_path_agrees_with_the_general_path` on one draw."""
    with tempfile.TemporaryDirectory() as directory, open_cache(directory) as cache:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(postings_module, "MERGE_AT", 1)  # merged: small inline terms
            patch.setattr(postings_module, "SMALL_POSTINGS", small)
            cache.put_artifacts(batch[:cut])
        cache.put_artifacts(batch[cut:])  # then writes only in the log (a small term's
        # fields with the log applied, terms only in the log)
        if batch[cut:]:  # a delete: an id gone from every term through the log
            cache.delete_artifact(
                f"{batch[-1]['collection']}/{batch[-1]['type']}/{batch[-1]['name']}"
            )
        off: list[tuple[str, Any]] = [
            ("_SCAN_CELLS", 0),  # every candidate scored from dicts
            ("_all_small", lambda *args, **kwargs: None),
            ("_common_levels", lambda *args: None),
        ]
        for spec in specs:
            for fill in (True, False):
                fast = results(cache, {**spec, "fill": fill})
                for name, value in off:
                    with pytest.MonkeyPatch.context() as patch:
                        patch.setattr(search_module, name, value)
                        assert results(cache, {**spec, "fill": fill}) == fast


def test_a_common_word_is_read_only_for_the_rare_words_ids(
    cache: ProjectCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``common rare``: the rare word's few ids are the candidates, and the common word's
    field values are read only in their blocks (no all-fields bitmap, no term scan); the
    page follows the rule, and with the partial fill it still counts the partial matches."""
    monkeypatch.setattr(postings_module, "MERGE_AT", 2)
    monkeypatch.setattr(postings_module, "SMALL_POSTINGS", 4)  # zorp: in blocks
    cache.put_artifacts(
        [{"name": f"zorp-{i}", "type": "skill", "collection": "default"} for i in range(8)]
        + [
            {"name": "sarul", "type": "skill", "collection": "default", "body": "zorp"},
            {"name": "zorp-sarul", "type": "skill", "collection": "default"},
            {"name": "other", "type": "agent", "collection": "default", "title": "sarul"},
        ]
    )
    cache._write(lambda txn: cache._repos.index.merge(txn))
    scans = _record_calls(monkeypatch, "postings", 2)
    blocks = _record_calls(monkeypatch, "term_blocks", 2)
    found = cache.search("zorp sarul", fill=False)
    assert [(h.key, h.score) for h in found] == [
        ("default/skill/zorp-sarul", 9.0 + 9.0),  # both words in the name
        ("default/skill/sarul", 9.0 + 1.0),  # sarul in the name, zorp in the body
    ]
    assert (found.total, found.partial, found.partial_total) == (2, 0, 0)
    assert scans == [] and blocks == [b"zorp\x00"]
    filled = cache.search("zorp sarul")  # partial matches fill the page: the general path
    assert [h.key for h in filled][:2] == [h.key for h in found]
    assert (filled.total, filled.partial, filled.partial_total) == (2, 9, 9)
    assert scans
    assert [h.key for h in cache.search("zorp sarul", limit=1)] == ["default/skill/zorp-sarul"]


LEVEL_OF = {ord("n"): 9, ord("t"): 6, ord("d"): 2}  # ("b" left out: skipped)


@given(
    st.dictionaries(
        st.sampled_from([b"b", b"d", b"n", b"t"]),
        st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=70, unique=True).map(sorted),
    )
)
def test_small_parts_are_small_ids_by_level(fields: dict[bytes, list[int]]) -> None:
    """``small_parts`` files each field's ids under its level, skipping codes without one."""
    raw = encode_small(fields)
    parts: dict[int, list[Any]] = {}
    small_parts(raw, LEVEL_OF, parts)
    expected: dict[int, list[Any]] = {}
    for code, ids in small_ids(raw).items():
        if code[0] in LEVEL_OF:
            expected.setdefault(LEVEL_OF[code[0]], []).append(ids)
    assert parts == expected


@pytest.mark.parametrize("raw", [b"\x05n\x00\x02\x00\x00\x00\x01", b"\x02zz", b"\x05n"])
def test_a_damaged_small_value_is_refused_by_the_small_path(
    cache_settings: Settings, raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small term's value cut short (or of another format) raises CorruptRecordError."""
    monkeypatch.setattr(postings_module, "MERGE_AT", 0)  # merged: the terms are stored small
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts(
            [{"name": "sarul", "type": "skill", "collection": "default", "description": "urkrul"}]
        )
        assert [h.key for h in cache.search("sarul urkrul")] == ["default/skill/sarul"]

    def damage(txn: Any, dbs: dict[str, Any]) -> None:
        assert txn.get(b"urkrul\x00", db=dbs["search-tokens"]) is not None
        txn.put(b"urkrul\x00", raw, db=dbs["search-tokens"])

    tamper(cache_settings.cache_dir, damage)
    with (
        ProjectCache.open(settings=cache_settings) as cache,
        pytest.raises(CorruptRecordError, match="urkrul"),
    ):
        cache.search("sarul urkrul")


def _record_calls(monkeypatch: pytest.MonkeyPatch, method: str, which: int) -> list[Any]:
    """Wrap ``BitmapIndex.<method>``: every call goes through, and its argument number
    ``which`` (``self`` is 0) is appended to the returned list."""
    read: list[Any] = []
    real = getattr(BitmapIndex, method)

    def spy(*args: Any) -> Any:
        read.append(args[which])
        return real(*args)

    monkeypatch.setattr(BitmapIndex, method, spy)
    return read


def test_a_rare_query_without_filters_reads_no_block_count(
    cache: ProjectCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rare words and no filter: neither the filters nor the all-small path need the
    index's block count (one lookup less per query); a type filter still reads it."""
    monkeypatch.setattr(postings_module, "MERGE_AT", 2)
    cache.put_artifacts(
        [
            {"name": "sarul", "type": "skill", "collection": "default", "description": "urkrul"},
            {"name": "other", "type": "agent", "collection": "default", "title": "sarul urkrul"},
        ]
    )
    cache._write(lambda txn: cache._repos.index.merge(txn))  # the terms stored inline
    read = _record_calls(monkeypatch, "block_count", 0)
    assert [h.key for h in cache.search("sarul urkrul", fill=False)] == [
        "default/agent/other",  # title twice: 6 + 6
        "default/skill/sarul",  # name + description: 9 + 2
    ]
    assert read == []
    assert [h.key for h in cache.search("sarul urkrul", type="agent")] == ["default/agent/other"]
    assert read


def test_a_page_without_ties_reads_no_tie_break_facts(
    cache: ProjectCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hits of different scores need neither the managed facet nor name lengths: the small
    path reads the ``managed`` bitmaps only for a tie group that reaches into the page."""
    monkeypatch.setattr(postings_module, "MERGE_AT", 2)
    cache.put_artifacts(
        [
            {"name": "sarul", "type": "skill", "collection": "default", "description": "urkrul"},
            {"name": "urkrul-x", "type": "skill", "collection": "default", "title": "sarul"},
            {"name": "other", "type": "skill", "collection": "default", "description": "words"},
        ]
    )
    read = _record_calls(monkeypatch, "get_dense", 2)  # the names asked for
    found = cache.search("sarul urkrul")
    assert [(h.key, h.score) for h in found] == [
        ("default/skill/urkrul-x", 9.0 + 6.0),  # name, title
        ("default/skill/sarul", 9.0 + 2.0),  # name, description
    ]
    assert read == []


@pytest.mark.parametrize("restrict", [0, 512])
def test_a_words_lowest_level_is_what_its_other_levels_leave(
    cache: ProjectCache, monkeypatch: pytest.MonkeyPatch, restrict: int
) -> None:
    """Ranked by bitmap tiers (whole or cut down to the matches), the ids whose best level
    is a word's lowest (here the body) are the word's ids no higher level holds: the body's
    bitmaps are never read, and the page is the one the rule gives."""
    monkeypatch.setattr(postings_module, "MERGE_AT", 0)  # merged: the term is in blocks
    monkeypatch.setattr(postings_module, "SMALL_POSTINGS", 0)
    monkeypatch.setattr(search_module, "_SMALL", 1)  # tiers, not hit by hit
    monkeypatch.setattr(search_module, "_SMALL_GROUP", 1)
    monkeypatch.setattr(search_module, "_RESTRICT", restrict)
    records = [
        {"name": f"sarul-{i}", "type": "skill", "collection": "default"} for i in range(3)
    ] + [
        {"name": f"plain-{i}", "type": "skill", "collection": "default", "body": "a sarul"}
        for i in range(3)
    ]
    cache.put_artifacts(records)
    read = _record_calls(monkeypatch, "field_parts", 3)  # the field codes asked for
    found = cache.search("sarul")
    assert [(h.key, h.score) for h in found] == [
        *((f"default/skill/sarul-{i}", 9.0) for i in range(3)),
        *((f"default/skill/plain-{i}", 1.0) for i in range(3)),
    ]
    assert found.total == 6
    assert b"n" in read and b"b" not in read


def test_a_word_of_a_few_hundred_postings_is_stored_inline(
    cache_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to SMALL_POSTINGS (448) (id, field) pairs a term is one inline value (a rare word at
    a million artifacts lists ~240): one lookup and the all-small path, no block values."""
    from damage import raw_rows

    monkeypatch.setattr(postings_module, "MERGE_AT", 2)  # merged into the stored values
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts(
            [
                {"name": f"t{i}", "type": "skill", "collection": "default", "description": "zorp"}
                for i in range(300)
            ]
        )
        cache._write(lambda txn: cache._repos.index.merge(txn))
    rows = [k for k, _v in raw_rows(cache_settings.cache_dir, "search-tokens")]
    assert [k for k in rows if k.startswith(b"zorp\x00")] == [b"zorp\x00"]
    read = _record_calls(monkeypatch, "small_values", 2)
    with ProjectCache.open(settings=cache_settings) as cache:
        assert cache.search("zorp", limit=5).total == 300
    assert read  # the all-small path answered
