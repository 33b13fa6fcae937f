"""The single write's fast paths (issue 13): each leaves the store as the slow path did.

An update keeps the deflated bytes of an unchanged body instead of deflating it again, and
finds the names an edited description or body gains and loses without making the facet
names; the index still lists every id under exactly the names its record implies.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from projcache import ProjectCache, codec, mutations
from projcache.config import Settings
from projcache.models import Artifact
from test_write_log import expected_names, fresh_index, stored_names

MakeArtifact = Callable[..., dict[str, Any]]

_BODY = "# Sheets\n\nMerge spreadsheets and extractPDFText from forms, step by step."


def _stored_frame(cache: ProjectCache, key: str) -> bytes:
    db = cache._repos.artifacts.db
    raw = cache._read(lambda txn: txn.get(key.encode(), db=db))
    assert raw is not None
    return bytes(raw)


def _deflates(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record every body :func:`projcache.codec._deflate` is asked to deflate."""
    seen: list[bytes] = []
    deflate = codec._deflate

    def counting(data: bytes) -> bytes:
        seen.append(data)
        return deflate(data)

    monkeypatch.setattr(codec, "_deflate", counting)
    return seen


def _index_is_what_the_records_imply(cache: ProjectCache) -> None:
    assert stored_names(cache, fresh_index(cache)) == expected_names(cache)
    assert cache.verify(deep=True).ok


class TestUnchangedBody:
    def test_an_update_keeping_the_body_stores_its_deflated_bytes_again(
        self,
        cache_settings: Settings,
        make_artifact: MakeArtifact,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An update whose body did not change deflates nothing: the record frame keeps the
        old deflated body byte for byte, and the record reads back whole."""
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.put_artifacts([make_artifact("sheets", body=_BODY, description="old")])
            before = _stored_frame(cache, "default/skill/sheets")
            seen = _deflates(monkeypatch)
            cache.put_artifacts([make_artifact("sheets", body=_BODY, description="new words")])
            assert seen == []
            after = _stored_frame(cache, "default/skill/sheets")
            # The deflated body is the frame's tail: the same bytes as before.
            packed = before[codec._RECORD_HEADER + codec._RECORD_HEAD.unpack_from(before, 5)[0] :]
            assert after.endswith(packed)
            whole = cache._read(lambda txn: cache._repos.artifacts.get(txn, "default/skill/sheets"))
            assert whole is not None
            assert (whole.body, whole.description) == (_BODY, "new words")
            assert [h.key for h in cache.search("words")] == ["default/skill/sheets"]
            assert list(cache.search("old")) == []
            _index_is_what_the_records_imply(cache)

    def test_a_changed_body_is_deflated_anew(
        self,
        cache_settings: Settings,
        make_artifact: MakeArtifact,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The remembered bytes serve only the body they came from: another body is
        deflated (and another artifact's body after a read is not taken for it)."""
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.put_artifacts([make_artifact("sheets", body=_BODY)])
            seen = _deflates(monkeypatch)
            cache.put_artifacts([make_artifact("sheets", body=_BODY + " More.")])
            cache.put_artifacts([make_artifact("other", body="# Other\n\nanother body")])
            assert len(seen) == 2
            for name, body in (("sheets", _BODY + " More."), ("other", "# Other\n\nanother body")):
                whole = cache._read(
                    lambda txn, name=name: cache._repos.artifacts.get(txn, f"default/skill/{name}")
                )
                assert whole is not None and whole.body == body
            assert [h.key for h in cache.search("more")] == ["default/skill/sheets"]
            _index_is_what_the_records_imply(cache)

    def test_record_frame_takes_the_remembered_bytes_only_for_an_equal_body(self) -> None:
        """:func:`~projcache.codec.record_frame` uses the last inflated body's bytes only
        when the body to store is equal to it byte for byte."""
        plain = b'{"body":""}'
        first = codec.record_frame(plain, 8, b'"alpha beta"')
        assert codec.unframe(first) == b'{"body":"alpha beta"}'  # remembers alpha beta
        assert codec.record_frame(plain, 8, b'"alpha beta"') == first
        other = codec.record_frame(plain, 8, b'"alpha beta gamma"')
        assert codec.unframe(other) == b'{"body":"alpha beta gamma"}'


class TestEditedTexts:
    @pytest.mark.parametrize(
        "change",
        [
            {"description": "Export tables to excel sheets"},
            {"body": "# Sheets\n\nNothing about forms any more."},
            {"title": "Spreadsheet merger", "tags": ["office"]},
            {"managed": False},
            {"description": "Export tables", "body": "", "tags": []},
        ],
    )
    def test_an_update_leaves_the_index_as_the_records_imply(
        self, cache_settings: Settings, make_artifact: MakeArtifact, change: dict[str, Any]
    ) -> None:
        """After an update of some texts or facets, every id is listed under exactly the
        names its record implies (log applied, then merged), and verify agrees."""
        base = {"body": _BODY, "description": "Merge spreadsheets", "tags": ["pdf", "office"]}
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.put_artifacts([make_artifact(f"a{i}", **base) for i in range(3)])
            cache._write(lambda txn: cache._repos.index.merge(txn))
            cache.put_artifacts([make_artifact("a1", **{**base, **change})])
            _index_is_what_the_records_imply(cache)
            cache._write(lambda txn: cache._repos.index.merge(txn))
            _index_is_what_the_records_imply(cache)

    def test_an_edited_description_makes_no_facet_name(
        self, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The names an edited description gains and loses are found without making the
        record's facet names (they are the same before and after)."""
        old = Artifact.model_validate(make_artifact("sheets", tags=["pdf"], description="a b"))
        new = old.model_copy(update={"description": "merge sheets"})
        monkeypatch.setattr(mutations, "_facet_names", {}, raising=False)
        made: list[tuple[str, str]] = []
        facet_name = mutations.facet_name
        monkeypatch.setattr(
            mutations, "facet_name", lambda *facet: made.append(facet) or facet_name(*facet)
        )
        removed, added = mutations.relisted_names(old, new)
        assert made == []
        before, after = set(mutations.index_names(old)), set(mutations.index_names(new))
        assert (removed, added) == (before - after, after - before)
