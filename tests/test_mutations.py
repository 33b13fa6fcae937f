"""The write path's index names: batches and updates list an artifact exactly as alone."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projcache import mutations
from projcache.models import Artifact

_WORDS = st.sampled_from(
    ["pdf", "pdfs", "Testing", "tests", "extractPDFText", "café", "the", "excel", "sheets", "a"]
)
_TEXT = st.lists(_WORDS, max_size=6).map(" ".join)
_TAG = st.sampled_from(["pdf", "office", "web-app"])


@st.composite
def _artifacts(draw: Any) -> Artifact:
    return Artifact.model_validate(
        {
            "name": draw(st.sampled_from(["pdf-tools", "excelWriter", "x"])),
            "type": draw(st.sampled_from(["skill", "command"])),
            "collection": draw(st.sampled_from(["main", "work"])),
            "title": draw(st.one_of(st.none(), _TEXT)),
            "description": draw(_TEXT),
            "tags": draw(st.lists(_TAG, max_size=3, unique=True)),
            "managed": draw(st.booleans()),
            "body": draw(_TEXT),
        }
    )


@settings(max_examples=150)
@given(_artifacts(), _artifacts())
def test_relisted_names_are_the_differences_of_index_names(old: Artifact, new: Artifact) -> None:
    """An update's names lost and gained, from the changed texts only, are exactly the
    set differences of the two records' whole :func:`~projcache.mutations.index_names`."""
    before, after = set(mutations.index_names(old)), set(mutations.index_names(new))
    assert mutations.relisted_names(old, new) == (before - after, after - before)


@settings(max_examples=60)
@given(st.lists(_artifacts(), max_size=5))
def test_index_names_many_is_index_names_of_each(artifacts: list[Artifact]) -> None:
    """A batch's names are each artifact's names alone, in order."""
    assert mutations.index_names_many(artifacts) == [
        mutations.index_names(artifact) for artifact in artifacts
    ]
