"""The all-small query path (every query word's terms stored inline) against the general one."""

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
@settings(max_examples=examples(100))
@given(st.lists(records, min_size=1, max_size=12), st.data())
def test_small_path_agrees_with_the_general_path(
    batch: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Same page, scores, total and partial counts with the small path on and off."""
    specs = data.draw(st.lists(queries(batch), min_size=1, max_size=6))
    cut = data.draw(st.integers(0, len(batch)))
    with tempfile.TemporaryDirectory() as directory, open_cache(directory) as cache:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(postings_module, "MERGE_AT", 1)  # merged: small inline terms
            cache.put_artifacts(batch[:cut])
        cache.put_artifacts(batch[cut:])  # then writes only in the log (a small term's
        # fields with the log applied, terms only in the log)
        if batch[cut:]:  # a delete: an id gone from every term through the log
            cache.delete_artifact(
                f"{batch[-1]['collection']}/{batch[-1]['type']}/{batch[-1]['name']}"
            )
        for spec in specs:
            fast = results(cache, spec)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(search_module, "_all_small", lambda *args, **kwargs: None)
                assert results(cache, spec) == fast
