"""The single write's fast paths give what the slower forms they replaced give, in order.

A single write, update or delete logs its names in the order of Python sets; the fast
paths build those sets the way the old code did, so that stored bytes stay the same
(``bench/write_digest.py`` checks a whole store).  The references below are the
replaced code, verbatim apart from names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projcache import mutations, terms
from projcache.config import Settings
from projcache.models import Artifact

_WORDS = st.sampled_from(
    [
        "pdf",
        "pdfs",
        "Testing",
        "tests",
        "extractPDFText",
        "café",
        "the",
        "excel",
        "sheets",
        "a",
        "v2",
        "2024",
        "x" * 70,
        "naïve-Résumé",
        "日本語",
        "हिन्दी",
        "fooBar42",
        "ID",
        "zq",
    ]
)
_TEXT = st.lists(_WORDS, max_size=8).map(" ".join)
_NEW_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=9)


@st.composite
def _artifacts(draw: Any) -> Artifact:
    # New words (never stemmed yet: letters, digits, both) in names and texts.
    fresh = " ".join(draw(st.lists(_NEW_WORD, max_size=3)))
    return Artifact.model_validate(
        {
            "name": draw(st.sampled_from(["pdf-tools", "excelWriter", "x", "v2-Tool"]))
            + "-"
            + fresh.replace(" ", "-")
            if fresh
            else "plain",
            "type": draw(st.sampled_from(["skill", "command"])),
            "collection": draw(st.sampled_from(["main", "work"])),
            "title": draw(st.one_of(st.none(), _TEXT)),
            "description": draw(_TEXT) + " " + fresh,
            "tags": draw(st.lists(st.sampled_from(["pdf", "office", "web-app"]), max_size=3)),
            "managed": draw(st.booleans()),
            "body": draw(st.one_of(st.just(""), _TEXT.map(lambda t: "# Title\n\n" + t))),
        }
    )


# -- the replaced code -------------------------------------------------------------------


def _old_field_terms_utf8(artifact: Mapping[str, Any]) -> dict[bytes, set[bytes]]:
    stems = terms._STEMS_UTF8
    out: dict[bytes, set[bytes]] = {}
    for code, text in terms.artifact_fields(artifact).items():
        if not text:
            continue
        tokens = set(terms._utf8_words(text))
        tokens -= terms._STOP_UTF8
        if not tokens:
            continue
        found: list[Optional[bytes]] = list(map(stems.get, tokens))
        if None in found:
            stems = terms._learn_utf8_stems(tokens)
            found = list(map(stems.__getitem__, tokens))
        tokens.update(found)  # type: ignore[arg-type]
        out[code] = tokens
    return out


def _old_fields(artifact: Artifact, keys: tuple[str, ...], facets: bool) -> Any:
    fields = _old_field_terms_utf8({key: getattr(artifact, key) for key in keys})
    return fields, (mutations._facet_names_of(artifact) if facets else [])


def _old_index_names(artifact: Artifact) -> list[bytes]:
    fields, names = _old_fields(artifact, mutations._TEXT_FIELDS, True)
    names = list(names)
    for code, words in fields.items():
        end = mutations._TERM_ENDS[code]
        names.extend((end.join(words) + end).split(b"\x01")[:-1])
    return names


def _old_relisted_names(old: Artifact, artifact: Artifact) -> tuple[set[bytes], set[bytes]]:
    was, now = old.__dict__, artifact.__dict__
    keys = tuple(
        key
        for group in mutations._FIELD_GROUPS
        if any(was[key] != now[key] for key in group)
        for key in group
    )
    facets = any(was[key] != now[key] for key in mutations._FACET_INPUTS)
    before, names_before = _old_fields(old, keys, facets)
    after, names_after = _old_fields(artifact, keys, facets)
    removed, added = set(names_before), set(names_after)
    removed, added = removed - added, added - removed
    for code in before.keys() | after.keys():
        terms_before, terms_after = before.get(code, frozenset()), after.get(code, frozenset())
        end = mutations._TERM_ENDS[code]
        for words, out in (
            (terms_before - terms_after, removed),
            (terms_after - terms_before, added),
        ):
            if words:
                out.update((end.join(words) + end).split(b"\x01")[:-1])
    return removed, added


# -- the tests ------------------------------------------------------------------------------


@pytest.fixture(params=["warm", "cold", "tiny"])
def stem_tables(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The stem tables as a long run leaves them (``warm``), empty (``cold``: every word
    is new), or replaced at nearly every word (``tiny``)."""
    if request.param == "cold":
        monkeypatch.setattr(terms, "_STEMS", {})
        monkeypatch.setattr(terms, "_STEMS_UTF8", {})
    elif request.param == "tiny":
        monkeypatch.setattr(terms, "_STEMS_MAX", 3)
    yield request.param


def _emptied() -> None:
    terms._STEMS_UTF8 = {}
    terms._STEMS = {}


def _ordered(fields: dict[bytes, set[bytes]]) -> list[tuple[bytes, list[bytes]]]:
    return [(code, list(words)) for code, words in fields.items()]


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_artifacts(), min_size=1, max_size=3))
def test_single_terms_are_the_old_ones_in_order(
    stem_tables: str, artifacts: list[Artifact]
) -> None:
    """:func:`~projcache.terms.field_terms_utf8` (new words that stem to themselves not
    learned) gives each field the old code's terms, iterated in the same order."""
    for artifact in artifacts:
        if stem_tables == "cold":
            _emptied()
        expected = _ordered(_old_field_terms_utf8(artifact.__dict__))
        if stem_tables == "cold":
            _emptied()
        assert _ordered(terms.field_terms_utf8(artifact.__dict__)) == expected


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_artifacts())
def test_index_names_are_the_old_ones_in_order(stem_tables: str, artifact: Artifact) -> None:
    """:func:`~projcache.mutations.index_names` (a write's and a delete's log entry) lists
    the names the old code listed, in the same order."""
    if stem_tables == "cold":
        _emptied()
    expected = _old_index_names(artifact)
    if stem_tables == "cold":
        _emptied()
    assert mutations.index_names(artifact) == expected


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_artifacts(), _artifacts())
def test_relisted_names_are_the_old_ones_in_order(
    stem_tables: str, old: Artifact, new: Artifact
) -> None:
    """:func:`~projcache.mutations.relisted_names` (an update's log entry) gives the sets
    the old code gave, iterated in the same order."""
    if stem_tables == "cold":
        _emptied()
    removed, added = _old_relisted_names(old, new)
    if stem_tables == "cold":
        _emptied()
    got = mutations.relisted_names(old, new)
    assert (list(got[0]), list(got[1])) == (list(removed), list(added))


def test_a_single_put_is_a_batch_of_one(tmp_path: Any, make_artifact: Any) -> None:
    """``put_artifacts([record])`` (the single write's own path) stores and indexes what
    the batch path stores for the same record, and an update and a delete after it too."""
    from projcache import ProjectCache

    records = [
        make_artifact("pdf-tools", body="# PDF\n\nExtract tables", tags=["pdf"]),
        make_artifact("pdf-tools", body="# PDF\n\nExtract tables", description="changed"),
        make_artifact("café-v2", title="Naïve résumé", tags=["office", "pdf"]),
    ]
    seen = []
    for way in ("single", "batch"):
        settings_ = Settings(cache_dir=tmp_path / way, durability="none")
        with ProjectCache.open(settings=settings_) as cache:
            for record in records:
                cache.put_artifacts([record] if way == "single" else iter([record]))
            cache.delete_artifact("default/skill/café-v2")
            assert cache.verify(deep=True).ok
            seen.append(
                (
                    [a.model_dump() for a in cache.list_artifacts()],
                    [hit.key for hit in cache.search("extract tables", fill=False)],
                    [hit.key for hit in cache.search("resume", fill=False)],
                )
            )
    assert seen[0] == seen[1]
    assert seen[0][1] == ["default/skill/pdf-tools"]


def test_a_first_single_write_of_a_collection_restates_its_deployments(
    tmp_path: Any, make_artifact: Any, make_project: Any
) -> None:
    """A deployment of an artifact of a collection the cache does not hold is
    ``unknown-collection`` until a single write brings that collection (then ``missing``),
    and again once the collection's last artifact is deleted; a collection without
    deployments is not looked up at all."""
    from projcache import ProjectCache

    with ProjectCache.open(settings=Settings(cache_dir=tmp_path, durability="none")) as cache:
        cache.put_projects([make_project("shop")])
        project = cache.find_project("shop").id
        cache.put_deployments(
            [{"project_id": project, "artifact_key": "far/skill/gone", "content_hash": "h"}]
        )

        def state() -> str:
            return next(iter(cache.list_deployments())).state

        assert state() == "unknown-collection"
        cache.put_artifacts([make_artifact("here", collection="far")])
        assert state() == "missing"
        cache.put_artifacts([make_artifact("other", collection="near")])
        cache.delete_artifact("far/skill/here")
        assert state() == "unknown-collection"
        assert cache.verify(deep=True).ok


@settings(max_examples=80, deadline=None)
@given(_artifacts())
def test_packed_index_names_are_index_names_joined(artifact: Artifact) -> None:
    """:func:`~projcache.mutations.packed_index_names` (a single write's and delete's log
    entry, made by joins) is :func:`~projcache.mutations.index_names` joined by 0xff."""
    assert mutations.packed_index_names(artifact) == b"\xff".join(mutations.index_names(artifact))


def test_packed_entries_read_back_in_their_transaction(tmp_path: Any, make_artifact: Any) -> None:
    """A transaction that reads the index after a packed add or delete (the log applied
    in memory, then folded by the merge) sees the id listed under every one of its names,
    then under none, as with the names as a list."""
    from projcache import ProjectCache

    record = Artifact.model_validate(make_artifact("pdf-tools", body="# PDF\n\nExtract tables"))
    names = mutations.index_names(record)
    with ProjectCache.open(settings=Settings(cache_dir=tmp_path, durability="none")) as cache:
        repos = cache._repos

        def put_then_read(txn: Any) -> list[bool]:
            mutations.put_artifact(txn, repos, record)
            doc = repos.ids.id_of(txn, record.key)
            listed = [doc in repos.index.get(txn, name) for name in names]
            mutations.delete_artifact(txn, repos, record.key)
            listed += [doc not in repos.index.get(txn, name) for name in names]
            mutations.put_artifact(txn, repos, record)
            return listed

        assert all(cache._write(put_then_read))
        cache._write(lambda txn: repos.index.merge(txn))
        assert [hit.key for hit in cache.search("extract tables", fill=False)] == [record.key]
        assert cache.verify(deep=True).ok
