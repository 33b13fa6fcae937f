"""The partial fill of a search: partial tiers split by the words their ids match."""

from __future__ import annotations

import tempfile
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import examples
from projcache import ProjectCache
from projcache import postings as postings_module
from projcache import search as search_module
from projcache.postings import BitmapIndex
from test_search import (
    check_search,
    common_records,
    key_of,
    numbered,
    open_cache,
    queries,
    records,
    words_of,
)


def _field_terms(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Wrap ``BitmapIndex.field_parts`` and ``field_has``: every call goes through, and the
    name of the term whose field it reads is appended to the returned list."""
    read: list[bytes] = []
    for method in ("field_parts", "field_has"):
        real = getattr(BitmapIndex, method)

        def spy(*args: Any, real: Any = real) -> Any:
            read.append(args[2].name)
            return real(*args)

        monkeypatch.setattr(BitmapIndex, method, spy)
    return read


def test_a_rare_words_partial_matches_leave_the_common_words_levels_unread(
    cache: ProjectCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``common rare`` with no artifact holding both: the rare word's partial matches (in
    their names) rank above every one of the common word's (in titles and descriptions) and
    fill the page, so none of the common word's field values is read; a longer page reaches
    them."""
    monkeypatch.setattr(postings_module, "MERGE_AT", 2)
    monkeypatch.setattr(postings_module, "SMALL_POSTINGS", 4)  # zorp: in blocks
    monkeypatch.setattr(search_module, "_SMALL", 4)  # zorp's part: ranked by bitmap tiers
    cache.put_artifacts(
        [
            {"name": f"thing-{i}", "type": "skill", "collection": "default", **text}
            for i, text in enumerate([{"title": "zorp"}] * 5 + [{"description": "zorp"}] * 5)
        ]
        + [
            {"name": "sarul", "type": "skill", "collection": "default"},
            {"name": "sarul-tool", "type": "agent", "collection": "default"},
        ]
    )
    cache._write(lambda txn: cache._repos.index.merge(txn))
    read = _field_terms(monkeypatch)
    found = cache.search("zorp sarul", limit=2)
    assert [(h.key, h.score) for h in found] == [
        ("default/skill/sarul", 9.0),  # shorter name first
        ("default/agent/sarul-tool", 9.0),
    ]
    assert (found.total, found.partial, found.partial_total) == (0, 2, 12)
    assert not [name for name in read if name.startswith(b"zorp")]
    longer = cache.search("zorp sarul", limit=3)
    assert [(h.key, h.score) for h in longer][2] == ("default/skill/thing-0", 6.0)
    assert [name for name in read if name.startswith(b"zorp")]


@settings(max_examples=examples(60))
@given(
    st.lists(st.tuples(common_records, st.integers(2, 30)), min_size=1, max_size=3),
    st.lists(records, min_size=1, max_size=8),
    st.sampled_from([0, 4]),
    st.data(),
)
def test_whole_and_split_partial_tiers_follow_the_rule(
    bulk: list[tuple[dict[str, Any], int]],
    rare: list[dict[str, Any]],
    mask_words: int,
    data: st.DataObject,
) -> None:
    """The brute-force oracle's pages with partial tiers ranked whole (``_MASK_WORDS`` 0:
    what a query of more words does) and split by the words matched, with small thresholds
    (bitmap tiers and the name-length walk for sets of a few ids)."""
    batch = [record for base, count in bulk for record in numbered(base, count)] + rare
    model = {key_of(r): r for r in batch}
    words: Optional[list[str]] = words_of(rare) if data.draw(st.booleans()) else None
    specs = data.draw(st.lists(queries(batch, words=words), min_size=1, max_size=6))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search_module, "_MASK_WORDS", mask_words)
        patch.setattr(search_module, "_SMALL", 4)
        patch.setattr(search_module, "_SMALL_GROUP", 4)
        patch.setattr(postings_module, "SMALL_POSTINGS", 4)
        with tempfile.TemporaryDirectory() as directory, open_cache(directory) as cache:
            cache.put_artifacts(batch)
            cache._write(lambda txn: cache._repos.index.merge(txn))
            for spec in specs:
                check_search(cache, model.values(), spec)
