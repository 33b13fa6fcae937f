"""The write path's index names: batches and updates list an artifact exactly as alone."""

from __future__ import annotations

import contextlib
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


def _deployed_states(cache: Any) -> list[tuple[str, str]]:
    return sorted((d.artifact_key, d.state) for d in cache.list_deployments())


def test_a_batch_is_each_artifact_put_alone(
    tmp_path: Any, make_artifact: Any, make_project: Any, monkeypatch: Any
) -> None:
    """A batch (:func:`~projcache.mutations.put_artifacts`) leaves the records, the index and
    every deployment's state as putting its artifacts one by one does, while it looks each
    collection up once: deployments of an unknown collection, of a known one, of an artifact
    replaced in the batch, and a key given twice (the last one wins)."""
    from projcache import ProjectCache
    from projcache.config import Settings

    first = [
        make_artifact("old", collection="known", content_hash="h1"),
        make_artifact("kept", collection="known"),
    ]
    batch = [
        make_artifact("old", collection="known", content_hash="h2"),
        make_artifact("fresh", collection="known"),
        make_artifact("a", collection="new", content_hash="h1"),
        make_artifact("b", collection="new", description="first"),
        make_artifact("b", collection="new", description="second wins"),
        make_artifact("c", collection="newer"),
    ]
    deployed = ["known/skill/old", "known/skill/gone", "new/skill/a", "new/skill/z"]
    with contextlib.ExitStack() as stack:
        batched, alone = (
            stack.enter_context(
                ProjectCache.open(settings=Settings(cache_dir=tmp_path / way, durability="none"))
            )
            for way in ("batch", "alone")
        )
        for cache in (batched, alone):
            _put_both_ways(
                cache, cache is batched, first, batch, deployed, make_project, monkeypatch
            )
        assert _deployed_states(batched) == _deployed_states(alone)
        assert ("new/skill/z", "missing") in _deployed_states(batched)
        assert ("known/skill/old", "outdated") in _deployed_states(batched)
        for cache in (batched, alone):
            assert cache.get_artifact("new/skill/b").description == "second wins"
            assert [hit.key for hit in cache.search("second", fill=False)] == ["new/skill/b"]
        assert sorted(a.key for a in batched.list_artifacts()) == sorted(
            a.key for a in alone.list_artifacts()
        )


def _put_both_ways(
    cache: Any,
    way: bool,
    first: list[dict[str, Any]],
    batch: list[dict[str, Any]],
    deployed: list[str],
    make_project: Any,
    monkeypatch: Any,
) -> None:
    """Put ``first``, a project deploying ``deployed``, then ``batch`` as one batch (``way``)
    or one by one; check the batch's collection lookups and verify."""
    cache.put_artifacts(first)
    cache.put_projects([make_project("shop")])
    project = cache.find_project("shop").id
    cache.put_deployments(
        [{"project_id": project, "artifact_key": key, "content_hash": "h1"} for key in deployed]
    )
    looked: list[str] = []
    known = mutations.collection_known
    monkeypatch.setattr(
        mutations,
        "collection_known",
        lambda txn, repos, key: looked.append(key) or known(txn, repos, key),
    )
    if way:
        cache.put_artifacts(batch)
        # Looked up for its first artifact (in key order), then known: once per collection
        # that has deployments ("newer" has none: whether it is known changes nothing);
        # restating the deployments of "new" asks again for its uncached "z".
        keys = {f"{r['collection']}/skill/{r['name']}" for r in batch}
        assert sorted(k for k in looked if k in keys) == ["known/skill/fresh", "new/skill/a"]
    else:
        for record in batch:
            cache.put_artifacts([record])
    monkeypatch.setattr(mutations, "collection_known", known)
    assert cache.verify(deep=True).ok
