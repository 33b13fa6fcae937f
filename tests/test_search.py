"""Search through a real cache: hand-written cases, then "the index finds what a scan finds"."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
)

from factories import examples
from projcache import ProjectCache
from projcache import postings as postings_module
from projcache import search as search_module
from projcache.config import Settings
from projcache.errors import InvalidArgumentError, ProjectNotFound
from projcache.search import LEVELS, MAX_PREFIX_TERMS, MAX_QUERY_WORDS
from projcache.terms import STOP_WORDS, field_terms, name_bucket, query_words, stem

MakeArtifact = Callable[..., dict[str, Any]]
MakeProject = Callable[..., dict[str, Any]]


def keys(results: Iterable[Any]) -> list[str]:
    """Keys of search hits, in order."""
    return [hit.key for hit in results]


def exact(results: Any) -> list[str]:
    """The keys of the hits matching every word (the first ``total`` of the page)."""
    return [h.key for h in results][: results.total]


def key_of(record: Mapping[str, Any]) -> str:
    """The artifact key of a record dict."""
    return f"{record['collection']}/{record['type']}/{record['name']}"


class TestMatching:
    """Which artifacts a query matches."""

    def test_every_word_must_match(self, cache: ProjectCache, make_artifact: MakeArtifact) -> None:
        """Words are AND-ed: an artifact must hold all of them."""
        cache.put_artifacts(
            [
                make_artifact("pdf-reader", description="Reads files"),
                make_artifact("pdf-writer", description="Writes files"),
                make_artifact("csv-reader", description="Reads tables"),
            ]
        )
        assert exact(cache.search("pdf reader")) == ["default/skill/pdf-reader"]
        assert cache.search("pdf reader").total == 1
        assert exact(cache.search("reads files")) == ["default/skill/pdf-reader"]
        assert sorted(exact(cache.search("reader"))) == [
            "default/skill/csv-reader",
            "default/skill/pdf-reader",
        ]

    def test_partial_matches_fill_the_page_below(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """Artifacts matching some words follow the exact ones, most words first."""
        cache.put_artifacts(
            [
                make_artifact("pdf-reader", description="Reads files"),
                make_artifact("pdf-writer", description="Writes files"),
                make_artifact("csv-reader", description="Reads tables"),
                make_artifact("zip", description="Packs archives"),
            ]
        )
        results = cache.search("pdf reader files")
        assert results.total == 1
        assert keys(results)[0] == "default/skill/pdf-reader"
        assert keys(results)[1] == "default/skill/pdf-writer"  # two of three words
        assert keys(results)[2] == "default/skill/csv-reader"  # one word
        assert results.partial == 2
        assert results.partial_total == 2
        one = cache.search("pdf reader files", limit=1)
        assert (keys(one), one.total, one.partial) == (["default/skill/pdf-reader"], 1, 0)

    def test_last_word_is_a_prefix(self, cache: ProjectCache, make_artifact: MakeArtifact) -> None:
        """The last word matches any token it starts ("pdf ext" finds "extract")."""
        cache.put_artifacts([make_artifact("pdf-tools", description="Extract text from PDF files")])
        assert keys(cache.search("pdf ext")) == ["default/skill/pdf-tools"]
        assert keys(cache.search("extr")) == ["default/skill/pdf-tools"]

    def test_only_the_last_word_is_a_prefix(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """A word before the last must match a whole token."""
        cache.put_artifacts([make_artifact("pdf-tools", description="Extract text from PDF files")])
        assert cache.search("ext pdf").total == 0
        assert exact(cache.search("extract pdf")) == ["default/skill/pdf-tools"]

    def test_matches_camel_case_parts_and_compound(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """A camelCase name is found by its parts and by the whole word."""
        cache.put_artifacts([make_artifact("extractPDFText", description="x")])
        expected = ["default/skill/extractPDFText"]
        assert keys(cache.search("pdf")) == expected
        assert exact(cache.search("text extract")) == expected
        assert keys(cache.search("extractpdftext")) == expected
        assert keys(cache.search("extractPDFText")) == expected

    def test_query_is_case_and_accent_form_insensitive(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """Queries are lower-cased and normalized like the indexed text."""
        cache.put_artifacts([make_artifact("uebersicht", title="Übersicht café")])
        assert keys(cache.search("ÜBERSICHT")) == ["default/skill/uebersicht"]
        assert keys(cache.search("Cafe\u0301")) == ["default/skill/uebersicht"]

    @pytest.mark.parametrize("query", ["", "   ", "--- !!"])
    def test_empty_query_finds_nothing(
        self, cache: ProjectCache, make_artifact: MakeArtifact, query: str
    ) -> None:
        """A query without words has no hits and a total of 0."""
        cache.put_artifacts([make_artifact("pdf")])
        results = cache.search(query)
        assert results == []
        assert results.total == 0

    def test_query_of_only_stop_words(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """Stop words are never tokens, so only the last one's prefix use can match."""
        cache.put_artifacts(
            [
                make_artifact("the-pdf", description="of the and"),
                make_artifact("theme-editor", description="Edits a theme"),
            ]
        )
        assert keys(cache.search("of and")) == []
        assert cache.search("of and").total == 0
        assert exact(cache.search("of the")) == ["default/skill/theme-editor"]

    def test_stop_words_before_the_last_word_are_ignored(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """Stop words in the query do not have to occur in the artifact."""
        cache.put_artifacts([make_artifact("pdf", description="Reads files")])
        assert exact(cache.search("the reads of pdf")) == ["default/skill/pdf"]

    @pytest.mark.parametrize("query", ["zzz", "pdfx"])
    def test_unknown_word_finds_nothing(
        self, cache: ProjectCache, make_artifact: MakeArtifact, query: str
    ) -> None:
        """A one-word query no artifact holds gives no hits."""
        cache.put_artifacts([make_artifact("pdf")])
        results = cache.search(query)
        assert results == []
        assert results.total == 0

    @pytest.mark.parametrize("query", ["pdf zzz", "zzz pdf"])
    def test_unknown_word_leaves_partial_matches(
        self, cache: ProjectCache, make_artifact: MakeArtifact, query: str
    ) -> None:
        """A word no artifact holds makes the total 0; the others' matches come as partial."""
        cache.put_artifacts([make_artifact("pdf")])
        results = cache.search(query)
        assert (keys(results), results.total, results.partial) == (["default/skill/pdf"], 0, 1)

    def test_stemming(self, cache: ProjectCache, make_artifact: MakeArtifact) -> None:
        """Plural and -ing forms find each other, exact forms rank above stems."""
        cache.put_artifacts(
            [
                make_artifact("xlsx", tags=["spreadsheets"], description="Edit workbooks"),
                make_artifact("sheets", tags=["spreadsheet"], description="Edit sheets"),
                make_artifact("webapp", description="Testing web apps", body="Run tests"),
                make_artifact("pdf", description="Merge PDFs and fill forms"),
            ]
        )
        assert keys(cache.search("spreadsheets")) == [
            "default/skill/xlsx",
            "default/skill/sheets",
        ]
        # A stem is a term too: "spreadsheet" is exact for both (then: shorter name).
        assert [(h.name, h.score) for h in cache.search("spreadsheet")] == [
            ("xlsx", 6.0),
            ("sheets", 6.0),
        ]
        assert exact(cache.search("test web app")) == ["default/skill/webapp"]
        assert exact(cache.search("merge pdf")) == ["default/skill/pdf"]
        assert exact(cache.search("fill pdf form")) == ["default/skill/pdf"]

    def test_body_is_searched_below_the_other_fields(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """A word of the Markdown body finds the artifact, ranked below a description match."""
        cache.put_artifacts(
            [
                make_artifact("xlsx", description="Spreadsheets", body="Works with Excel files"),
                make_artifact("charts", description="Charts from Excel data"),
            ]
        )
        assert [(h.name, h.score) for h in cache.search("excel")] == [
            ("charts", 2.0),
            ("xlsx", 1.0),
        ]
        # Searched, not shown: reads leave the body out; it is kept apart in the record.
        assert cache.get_artifact("default/skill/xlsx").body == ""
        assert cache.get_artifact_body("default/skill/xlsx") == "Works with Excel files"

    def test_empty_cache(self, cache: ProjectCache) -> None:
        """Searching an empty cache finds nothing."""
        results = cache.search("pdf")
        assert results == []
        assert results.total == 0

    def test_hit_carries_the_artifact(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """A hit names the artifact, its type and score, and holds the stored record."""
        cache.put_artifacts([make_artifact("pdf", type="command", tags=["docs"])])
        [hit] = cache.search("pdf")
        assert (hit.key, hit.name, hit.type, hit.score) == (
            "default/command/pdf",
            "pdf",
            "command",
            9.0,
        )
        assert hit.artifact == cache.get_artifact("default/command/pdf")


class TestRanking:
    """The order of hits and their scores."""

    def test_field_order(self, cache: ProjectCache, make_artifact: MakeArtifact) -> None:
        """Name outranks title and tags, which outrank description, which outranks the body."""
        cache.put_artifacts(
            [
                make_artifact("a-body", description="x", body="About pdf"),
                make_artifact("a-desc", description="Reads pdf"),
                make_artifact("b-title", title="PDF helper", description="x"),
                make_artifact("c-tags", tags=["pdf"], description="x"),
                make_artifact("d-pdf", description="x"),
            ]
        )
        results = cache.search("pdf")
        assert [(h.name, h.score) for h in results] == [
            ("d-pdf", 9.0),
            ("c-tags", 6.0),
            ("b-title", 6.0),
            ("a-desc", 2.0),
            ("a-body", 1.0),
        ]

    def test_best_field_counts_once_per_word(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """A word found in several fields scores its best field only."""
        cache.put_artifacts(
            [make_artifact("pdf", tags=["pdf"], title="PDF", description="pdf pdf")]
        )
        assert [h.score for h in cache.search("pdf")] == [9.0]

    def test_scores_add_up_over_words(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """The score is the sum over the words of each one's best field."""
        cache.put_artifacts(
            [
                make_artifact("pdf-extract", description="x"),
                make_artifact("pdf", tags=["extract"], description="x"),
                make_artifact("reader", title="pdf", description="extract"),
            ]
        )
        results = cache.search("pdf ext")
        assert [(h.name, h.score) for h in results] == [
            ("pdf-extract", 16.0),  # name exact 9 + name prefix 7
            ("pdf", 13.0),  # name exact 9 + tag prefix 4
            ("reader", 8.0),  # title exact 6 + description 2
        ]

    def test_ties_favour_managed_then_shorter_name_then_older(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """Equal scores: managed first, then the shorter name, then the older artifact."""
        cache.put_artifacts([make_artifact("zeta-long", tags=["pdf"])])
        cache.put_artifacts([make_artifact("alpha", tags=["pdf"], collection="team")])
        cache.put_artifacts([make_artifact("alpha", tags=["pdf"], type="agent", managed=False)])
        cache.put_artifacts([make_artifact("omega", tags=["pdf"])])
        assert keys(cache.search("pdf")) == [
            "team/skill/alpha",
            "default/skill/omega",
            "default/skill/zeta-long",
            "default/agent/alpha",
        ]


class TestFilters:
    """Filters narrow the matches (and the total)."""

    @pytest.fixture
    def filled(self, cache: ProjectCache, make_artifact: MakeArtifact) -> ProjectCache:
        """A cache holding four "pdf" artifacts of different types, collections and tags."""
        cache.put_artifacts(
            [
                make_artifact("pdf-a", tags=["docs"]),
                make_artifact("pdf-b", type="command", tags=["docs", "cli"]),
                make_artifact("pdf-c", collection="team", tags=["cli"]),
                make_artifact("pdf-d", collection="team", type="agent"),
            ]
        )
        return cache

    def test_type(self, filled: ProjectCache) -> None:
        """``type`` keeps artifacts of that type."""
        results = filled.search("pdf", type="skill")
        assert keys(results) == ["default/skill/pdf-a", "team/skill/pdf-c"]
        assert results.total == 2

    def test_collection(self, filled: ProjectCache) -> None:
        """``collection`` keeps artifacts of that collection."""
        assert keys(filled.search("pdf", collection="team")) == [
            "team/agent/pdf-d",  # equal scores and name lengths: ids follow key order in a batch
            "team/skill/pdf-c",
        ]

    def test_tag(self, filled: ProjectCache) -> None:
        """``tag`` keeps artifacts carrying exactly that tag."""
        assert keys(filled.search("pdf", tag="cli")) == [
            "default/command/pdf-b",
            "team/skill/pdf-c",
        ]
        assert keys(filled.search("pdf", tag="cl")) == []

    def test_combined(self, filled: ProjectCache) -> None:
        """Several filters must all hold."""
        assert keys(filled.search("pdf", type="skill", tag="docs")) == ["default/skill/pdf-a"]
        assert keys(filled.search("pdf", collection="default", tag="cli")) == [
            "default/command/pdf-b"
        ]
        assert filled.search("pdf", collection="team", type="command").total == 0

    def test_unknown_values_match_nothing(self, filled: ProjectCache) -> None:
        """A filter value no artifact has gives no hits."""
        assert filled.search("pdf", type="hook") == []
        assert filled.search("pdf", collection="nope") == []
        assert filled.search("pdf", tag="nope") == []

    def test_invalid_type_rejected(self, filled: ProjectCache) -> None:
        """A ``type`` that is not an artifact type is an error, not an empty result."""
        with pytest.raises(InvalidArgumentError):
            filled.search("pdf", type="Skills!")

    def test_project(self, filled: ProjectCache, make_project: MakeProject) -> None:
        """``project`` keeps artifacts deployed in that project (by id, name or path)."""
        filled.put_projects([make_project("web"), make_project("api")])
        by_name = {p.name: p for p in filled.list_projects()}
        web, api = by_name["web"], by_name["api"]
        filled.put_deployments(
            [
                {"project_id": web.id, "artifact_key": "default/skill/pdf-a"},
                {"project_id": web.id, "artifact_key": "team/agent/pdf-d"},
                {"project_id": api.id, "artifact_key": "default/command/pdf-b"},
            ]
        )
        expected = ["default/skill/pdf-a", "team/agent/pdf-d"]
        assert keys(filled.search("pdf", project=web.id)) == expected
        assert keys(filled.search("pdf", project="web")) == expected
        assert keys(filled.search("pdf", project=web.path)) == expected
        assert keys(filled.search("pdf", project=api.id)) == ["default/command/pdf-b"]
        assert keys(filled.search("pdf", project=web.id, type="agent")) == ["team/agent/pdf-d"]
        assert filled.search("pdf", project=web.id).total == 2

    def test_project_without_deployments(
        self, filled: ProjectCache, make_project: MakeProject
    ) -> None:
        """A project with no deployments filters everything out."""
        filled.put_projects([make_project("empty")])
        assert filled.search("pdf", project="empty") == []

    def test_unknown_project_raises(self, filled: ProjectCache) -> None:
        """An unknown project reference is an error, not an empty result."""
        with pytest.raises(ProjectNotFound):
            filled.search("pdf", project="nope")


class TestPaging:
    """``limit``/``offset`` select a page; ``total`` counts every match."""

    @pytest.fixture
    def five(self, cache: ProjectCache, make_artifact: MakeArtifact) -> ProjectCache:
        """A cache holding five artifacts matching "pdf", plus one that does not."""
        cache.put_artifacts([make_artifact(f"pdf-{i}") for i in range(5)])
        cache.put_artifacts([make_artifact("other", description="nothing")])
        return cache

    def test_pages_concatenate_to_all(self, five: ProjectCache) -> None:
        """Consecutive pages give every match once, in rank order."""
        everything = keys(five.search("pdf", limit=100))
        assert len(everything) == 5
        pages = [five.search("pdf", limit=2, offset=o) for o in (0, 2, 4)]
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [k for page in pages for k in keys(page)] == everything
        assert {page.total for page in pages} == {5}

    def test_default_limit(self, cache: ProjectCache, make_artifact: MakeArtifact) -> None:
        """Without ``limit`` a page holds at most 20 hits."""
        cache.put_artifacts([make_artifact(f"pdf-{i:02}") for i in range(25)])
        results = cache.search("pdf")
        assert len(results) == 20
        assert results.total == 25

    def test_zero_limit_and_offset_past_end(self, five: ProjectCache) -> None:
        """An empty page still reports the total."""
        for results in (five.search("pdf", limit=0), five.search("pdf", offset=5)):
            assert results == []
            assert results.total == 5

    def test_negative_limit_or_offset_rejected(self, five: ProjectCache) -> None:
        """Negative ``limit`` or ``offset`` is invalid."""
        with pytest.raises(InvalidArgumentError):
            five.search("pdf", limit=-1)
        with pytest.raises(InvalidArgumentError):
            five.search("pdf", offset=-1)


class TestIndexMaintenance:
    """The index follows replacements and deletions."""

    @pytest.mark.parametrize("merged", [False, True])
    def test_an_update_keeps_the_id_and_relists_only_what_changed(
        self,
        cache: ProjectCache,
        make_artifact: MakeArtifact,
        monkeypatch: pytest.MonkeyPatch,
        merged: bool,
    ) -> None:
        """A replaced artifact keeps its id; words it lost stop matching, new ones match, in
        the tail (a recent write) as in the main bitmaps (after a merge)."""
        monkeypatch.setattr(postings_module, "MERGE_AT", 1 if merged else 4096)
        cache.put_artifacts(
            [make_artifact("pdf", description="Reads invoices", tags=["old"])]
            + [make_artifact(f"other-{i}", description="Reads invoices") for i in range(3)]
        )
        before = ids_of(cache)["default/skill/pdf"]
        pending = cache._read(lambda txn: cache._repos.index.control(txn)["pending"])
        assert (before in pending) is not merged
        cache.put_artifacts([make_artifact("pdf", description="Reads receipts", tags=["new"])])
        assert ids_of(cache)["default/skill/pdf"] == before
        assert "default/skill/pdf" not in keys(cache.search("invoices"))
        assert keys(cache.search("receipts")) == ["default/skill/pdf"]
        assert cache.search("pdf", tag="old") == []
        assert keys(cache.search("pdf", tag="new")) == ["default/skill/pdf"]
        cache.delete_artifact("default/skill/pdf")
        assert cache.search("receipts") == [] and cache.search("pdf") == []
        assert cache.verify(deep=True).ok

    def test_an_update_of_what_is_not_indexed_writes_no_bitmap(
        self, cache: ProjectCache, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Changing a field the index does not read (the version) leaves every bitmap alone
        (no tombstone, no new id: the merged bitmaps and the tail are as they were)."""
        monkeypatch.setattr(postings_module, "MERGE_AT", 1)
        cache.put_artifacts([make_artifact("pdf", description="Reads invoices")])
        dump = cache._storage.read(lambda txn: list(cache._repos.index.names_of(txn)))
        cache.put_artifacts([make_artifact("pdf", description="Reads invoices", version="9.9")])
        after = cache._storage.read(lambda txn: list(cache._repos.index.names_of(txn)))
        assert after == dump
        assert keys(cache.search("invoices")) == ["default/skill/pdf"]

    def test_a_record_with_its_body_is_stored_deflated(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """A long body is stored deflated apart from the record: well under its JSON on disk."""
        from projcache import codec

        body = "# Sheets\n\n" + " ".join(f"Fill the spreadsheet row {i}." for i in range(80))
        cache.put_artifacts([make_artifact("sheets", description="Edits tables", body=body)])
        stored = cache._read(
            lambda txn: txn.get(b"default/skill/sheets", db=cache._storage.dbs["artifacts"])
        )
        whole = codec.unframe(stored or b"")
        assert stored is not None and stored[0] == codec.RECORD_FORMAT
        assert len(stored) < len(whole) // 2
        assert cache.get_artifact_body("default/skill/sheets") == body[: codec.MAX_BODY_CHARS]
        assert keys(cache.search("spreadsheet row")) == ["default/skill/sheets"]

    def test_replacement_forgets_old_words(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """After an artifact is replaced, its old words and tags no longer match."""
        cache.put_artifacts([make_artifact("pdf", description="Reads invoices", tags=["old"])])
        assert keys(cache.search("invoices")) == ["default/skill/pdf"]
        cache.put_artifacts([make_artifact("pdf", description="Reads receipts", tags=["new"])])
        results = cache.search("invoices")
        assert results == []
        assert results.total == 0
        assert keys(cache.search("receipts")) == ["default/skill/pdf"]
        assert cache.search("pdf", tag="old") == []
        assert keys(cache.search("pdf", tag="new")) == ["default/skill/pdf"]
        assert keys(cache.search("new")) == ["default/skill/pdf"]

    def test_replacement_within_one_batch(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """When one batch writes a key twice, the last record is what the index holds."""
        cache.put_artifacts(
            [
                make_artifact("pdf", description="first version"),
                make_artifact("pdf", description="second version"),
            ]
        )
        assert cache.search("first") == []
        assert [h.score for h in cache.search("second")] == [2.0]

    def test_replacement_updates_score(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """A word moving to a better field raises the score."""
        cache.put_artifacts([make_artifact("reader", description="pdf")])
        assert [h.score for h in cache.search("pdf")] == [2.0]
        cache.put_artifacts([make_artifact("reader", title="pdf")])
        assert [h.score for h in cache.search("pdf")] == [6.0]

    def test_delete(self, cache: ProjectCache, make_artifact: MakeArtifact) -> None:
        """A deleted artifact is no longer found; others still are."""
        cache.put_artifacts(
            [make_artifact("pdf-alpha", tags=["x"]), make_artifact("pdf-beta", tags=["x"])]
        )
        cache.delete_artifact("default/skill/pdf-alpha")
        results = cache.search("pdf")
        assert keys(results) == ["default/skill/pdf-beta"]
        assert results.total == 1
        assert keys(cache.search("pdf", tag="x")) == ["default/skill/pdf-beta"]
        assert cache.search("alpha") == []

    def test_delete_then_put_again(self, cache: ProjectCache, make_artifact: MakeArtifact) -> None:
        """An artifact deleted and written again is found by its new words only."""
        cache.put_artifacts([make_artifact("pdf", description="alpha")])
        cache.delete_artifact("default/skill/pdf")
        cache.put_artifacts([make_artifact("pdf", description="beta")])
        assert cache.search("alpha") == []
        assert keys(cache.search("beta")) == ["default/skill/pdf"]

    def test_deployed_artifact_deleted(
        self, cache: ProjectCache, make_artifact: MakeArtifact, make_project: MakeProject
    ) -> None:
        """A deleted artifact is not found through a project that still lists its deployment."""
        cache.put_artifacts([make_artifact("pdf")])
        cache.put_projects([make_project("web")])
        [web] = cache.list_projects()
        cache.put_deployments([{"project_id": web.id, "artifact_key": "default/skill/pdf"}])
        cache.delete_artifact("default/skill/pdf")
        assert cache.search("pdf", project=web.id) == []
        cache.put_artifacts([make_artifact("pdf")])
        assert keys(cache.search("pdf", project=web.id)) == ["default/skill/pdf"]


class TestQueryPlans:
    """Results do not depend on how the query is executed (read lists, probe, read terms)."""

    def test_prefix_takes_best_field_over_its_tokens(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """A prefix matching several tokens of an artifact scores the best field among them."""
        cache.put_artifacts([make_artifact("x", title="tests", description="test")])
        assert [h.score for h in cache.search("tes")] == [4.0]  # title prefix
        assert [h.score for h in cache.search("test")] == [6.0]  # title, by stem of "tests"

    def test_few_candidates_probe_every_prefix_token(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """When few candidates remain, each is checked against every token of the prefix."""
        cache.put_artifacts(
            [make_artifact(f"bulk{i}", description="pdf pdfs") for i in range(10)]
            + [
                make_artifact("rare-a", type="agent", description="café pdfs"),
                make_artifact("rare-b", description="café pdf"),
                make_artifact("rare-c", description="café"),
            ]
        )
        results = cache.search("café pdf", type="agent")
        assert [(h.key, h.score) for h in results] == [("default/agent/rare-a", 4.0)]
        assert exact(cache.search("café pdf")) == [
            "default/agent/rare-a",  # equal scores and name lengths: the older first
            "default/skill/rare-b",
        ]

    def test_rare_word_with_long_prefix_lists(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """A rare word followed by a prefix of very common tokens still checks all of them."""
        cache.put_artifacts(
            [make_artifact(f"bulk{i}", description="pdf") for i in range(30)]
            + [make_artifact("rare", title="pdfs", description="café")]
        )
        found = cache.search("café pdf")
        assert [(h.key, h.score) for h in found][: found.total] == [("default/skill/rare", 8.0)]
        found = cache.search("café p")
        assert [(h.key, h.score) for h in found][: found.total] == [("default/skill/rare", 6.0)]

    def test_a_word_among_its_own_prefix_terms_is_listed_once(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """The last word's own term is also one of the terms it begins: its bitmaps are
        listed once in the word's ``any`` and once per level (a common word's union took its
        blocks twice), and the page is unchanged."""
        monkey = pytest.MonkeyPatch()
        monkey.setattr(postings_module, "SMALL_POSTINGS", 2)  # in blocks, as a common word
        try:
            stored = [make_artifact(f"p{i}", description="project projects") for i in range(4)]
            stored.append(make_artifact("project-x", title="projects"))
            cache.put_artifacts(stored)
            repos = cache._repos

            def word(txn: Any) -> Any:
                terms = search_module._read_terms(txn, repos, "project", True, {})
                return search_module._read_word(txn, repos, "project", terms)

            got = cache._read(word)
            for refs in got._refs:  # per level: each (term, field) once
                listed = [(id(term), code) for term, code in refs]
                assert len(listed) == len(set(listed))
            assert len({id(part) for part in got._any_parts}) == len(got._any_parts)
            assert got.level_numbers == [9, 7, 6, 4, 2]
            assert [h.key for h in cache.search("project")][:2] == [
                "default/skill/project-x",
                "default/skill/p0",
            ]
        finally:
            monkey.undo()

    def test_a_plural_prefix_term_is_not_read_when_its_stem_is(
        self, cache: ProjectCache, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``projects`` lists no id in a field that ``project`` (its stem, read in the same
        prefix scan) does not list there: its blocks are not read, and every page and total
        stays the oracle's, an artifact holding only ``projectsing`` (whose stem is
        ``projects``) included."""
        monkeypatch.setattr(postings_module, "SMALL_POSTINGS", 2)  # in blocks
        stored = [
            make_artifact("a1", description="projects"),
            make_artifact("a2", title="project projects"),
            make_artifact("a3", description="projectsing"),
            make_artifact("a4", description="projection projections"),
            make_artifact("projects-tool", description="x"),
        ]
        cache.put_artifacts(stored)
        cache._write(lambda txn: cache._repos.index.merge(txn))  # stored, not in the write log
        read: list[bytes] = []
        real = postings_module.BitmapIndex.postings

        def spy(self: Any, txn: Any, prefix: bytes, limit: int, covered: Any = None) -> Any:
            extra = () if covered is None else (covered,)
            found = real(self, txn, prefix, limit, *extra)
            read.extend(name.encode() for name in found)
            return found

        monkeypatch.setattr(postings_module.BitmapIndex, "postings", spy)
        assert stem("projectsing") == "projects"
        found = cache.search("project")
        assert b"projects" not in read  # (projections: its stem is project, read)
        assert b"projectsing" in read
        assert "default/skill/a3" in [h.key for h in found]
        for spec in ({"query": "project"}, {"query": "proj"}, {"query": "projects"}):
            check_search(cache, stored, spec)
        # Four prefix terms at most: project, projection, projections, projects.  Left out,
        # projects would take a3 along (projectsing, which covers it, is fifth): the scan
        # is redone whole and a3 is found through projects.
        monkeypatch.setattr(search_module, "MAX_PREFIX_TERMS", 4)
        monkeypatch.setattr(sys.modules[__name__], "MAX_PREFIX_TERMS", 4)  # the oracle's
        assert "default/skill/a3" in [h.key for h in cache.search("proj")]
        check_search(cache, stored, {"query": "proj"})

    def test_many_tokens_share_the_prefix(
        self, cache: ProjectCache, make_artifact: MakeArtifact
    ) -> None:
        """A prefix shared by many distinct tokens matches each of them."""
        cache.put_artifacts(
            [make_artifact(f"tool{i}", description="x") for i in range(20)]
            + [make_artifact("rare", description="café tool7")]
        )
        results = cache.search("café tool", limit=100)
        assert [(h.key, h.score) for h in results][: results.total] == [("default/skill/rare", 4.0)]
        assert cache.search("tool1", limit=100).total == 11  # tool1, tool10..tool19


# -- "the index finds exactly what a brute-force scan finds" ---------------------------------

# Families of words sharing prefixes (test/tests/testing, pdf/pdfs, file/files/filename),
# camelCase, kebab-case and snake_case words, accents, and stop words.
VOCABULARY = [
    "pdf",
    "pdfs",
    "extract",
    "extractor",
    "text",
    "extractPDFText",
    "fastAPI",
    "API",
    "readFile",
    "pdf-tools",
    "web-search",
    "git_hooks",
    "web",
    "search",
    "file",
    "files",
    "filename",
    "test",
    "tests",
    "testing",
    "format",
    "formatter",
    "theme",
    "Übersicht",
    "café",
    "the",
    "of",
    "and",
    "with",
    "a",
]
NAMES = ["pdf", "pdfs", "pdf-tools", "extractPDFText", "web-search", "git_hooks", "test", "tests"]
# Names of several words, some of them shorter than their tokens together (camelCase; the
# ligature fi, two tokens' letters in one character): the tie-break's name-length floor.
NAMES += ["pdfTools", "test-pdf-file", "\ufb01le-test", "file-test"]
TYPES = ["skill", "command", "agent"]
COLLECTIONS = ["default", "team"]
TAGS = ["pdf", "pdfs", "extractPDFText", "web-search", "test", "testing", "the", "Übersicht"]

phrases = st.lists(st.sampled_from(VOCABULARY), max_size=4).map(" ".join)

records = st.fixed_dictionaries(
    {
        "name": st.sampled_from(NAMES),
        "type": st.sampled_from(TYPES),
        "collection": st.sampled_from(COLLECTIONS),
        "tags": st.lists(st.sampled_from(TAGS), max_size=3),
        "title": st.one_of(st.none(), phrases),
        "description": phrases,
        "body": phrases,
        "managed": st.booleans(),
    }
)


# Words of prefix families, used to build long posting lists.
COMMON = ["pdf", "pdfs", "test", "tests", "testing", "file", "files", "filename", "format"]

common_records = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["bulk", "item"]),
        "type": st.sampled_from(TYPES),
        "collection": st.sampled_from(COLLECTIONS),
        "tags": st.lists(st.sampled_from(["pdf", "pdfs", "test", "testing"]), max_size=2),
        "title": st.one_of(st.none(), st.lists(st.sampled_from(COMMON), max_size=3).map(" ".join)),
        "description": st.lists(st.sampled_from(COMMON), max_size=4).map(" ".join),
        "body": st.lists(st.sampled_from(COMMON), max_size=4).map(" ".join),
        "managed": st.booleans(),
    }
)


def words_of(stored: Iterable[Mapping[str, Any]]) -> list[str]:
    """The vocabulary words the stored records use (queries mostly pick from these)."""
    used = set()
    for record in stored:
        text = [record["name"], *record["tags"], record["title"] or "", record["description"]]
        text.append(record.get("body", ""))
        used.update(word for phrase in text for word in phrase.split())
    return sorted(used)


@st.composite
def query_texts(draw: st.DrawFn, used: list[str], last: Optional[list[str]] = None) -> str:
    """One to three words, mostly ones the records use, the last often cut to a prefix.

    With ``last``, one or two words the records use, then a word of ``last``.
    """
    word = st.sampled_from(VOCABULARY)
    if used:
        word = st.one_of(st.sampled_from(used), word)
    if last is None:
        words = draw(st.lists(word, min_size=1, max_size=3))
    else:
        words = [*draw(st.lists(word, min_size=1, max_size=2)), draw(st.sampled_from(last))]
    if draw(st.booleans()):
        last = words[-1]
        words[-1] = last[: draw(st.integers(1, len(last)))]
    return " ".join(words)


def queries(
    stored: Iterable[Mapping[str, Any]], words: Optional[list[str]] = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Random searches (query, filters, page) over records like ``stored``.

    With ``words``, the query is one or two of them followed by a (prefix of a) common word.
    """
    stored = list(stored)
    tags = sorted({tag for record in stored for tag in record["tags"]}.union(TAGS))
    query = query_texts(words_of(stored)) if words is None else query_texts(words, last=COMMON)
    return st.fixed_dictionaries(
        {
            "query": query,
            "type": st.one_of(st.none(), st.none(), st.sampled_from(TYPES)),
            "collection": st.one_of(st.none(), st.none(), st.sampled_from(COLLECTIONS)),
            "tag": st.one_of(st.none(), st.none(), st.sampled_from(tags)),
            "limit": st.one_of(st.integers(1, 10), st.just(0), st.just(100)),
            "offset": st.one_of(st.just(0), st.integers(0, 4)),
        }
    )


def numbered(base: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """``count`` copies of ``base`` named ``<name>0``, ``<name>1``, ..."""
    return [{**base, "name": f"{base['name']}{i}"} for i in range(count)]


def ids_of(cache: ProjectCache) -> dict[str, int]:
    """Artifact key -> integer id, read from the cache (the oracle's last tie-break)."""
    return cache._read(lambda txn: dict(cache._repos.ids.items(txn)))


def brute_force(
    stored: Iterable[Mapping[str, Any]],
    query: str,
    *,
    ids: Mapping[str, int],
    type: Optional[str] = None,
    collection: Optional[str] = None,
    tag: Optional[str] = None,
    deployed: Optional[set[str]] = None,
    limit: int = 20,
    offset: int = 0,
) -> tuple[list[tuple[str, float]], int, int]:
    """Search ``stored`` by scanning every record, following the documented ranking rule.

    Returns ``(page of (key, score), total exact matches, partial hits on the page)``.
    """
    stored = list(stored)
    words = query_words(query)
    if not words:
        return [], 0, 0
    last = words[-1]
    chosen: list[str] = []
    for word in words[:-1]:
        if word not in STOP_WORDS and word != last and word not in chosen:
            chosen.append(word)
    chosen = [*chosen[: MAX_QUERY_WORDS - 1], last]
    fields_of = {key_of(r): field_terms(r) for r in stored}
    vocabulary = sorted({t.encode() for f in fields_of.values() for ts in f.values() for t in ts})
    prefixed = {t.decode() for t in vocabulary if t.startswith(last.encode())}
    prefixed = set(sorted(prefixed, key=str.encode)[:MAX_PREFIX_TERMS])
    rows = []
    for record in stored:
        key = key_of(record)
        if type is not None and record["type"] != type:
            continue
        if collection is not None and record["collection"] != collection:
            continue
        if tag is not None and tag not in record["tags"]:
            continue
        if deployed is not None and key not in deployed:
            continue
        fields = fields_of[key]
        levels = []
        for word in chosen:
            best = 0
            for code, terms in fields.items():
                kinds = [word in terms, stem(word) in terms]
                kinds.append(word == last and any(t in prefixed for t in terms))
                for kind, hit in enumerate(kinds):
                    if hit:
                        best = max(best, LEVELS[(code, kind)])
            levels.append(best)
        matched = sum(1 for level in levels if level)
        if not matched:
            continue
        managed = record.get("managed", True)
        rows.append((-matched, -sum(levels), not managed, name_bucket(record["name"]), ids[key]))
    rows.sort()
    by_id = {doc: key for key, doc in ids.items()}
    total = sum(1 for row in rows if -row[0] == len(chosen))
    if len(chosen) == 1:
        rows = rows[:total]
    page = rows[offset : offset + limit]
    partial = sum(1 for row in page if -row[0] < len(chosen))
    return [(by_id[row[4]], float(-row[1])) for row in page], total, partial


def open_cache(directory: str) -> ProjectCache:
    """Open a fresh cache in ``directory`` (no fsync: these caches are thrown away)."""
    return ProjectCache.open(settings=Settings(cache_dir=Path(directory), durability="none"))


def check_search(
    cache: ProjectCache,
    stored: Iterable[Mapping[str, Any]],
    spec: Mapping[str, Any],
    deployed: Optional[set[str]] = None,
    project: Optional[str] = None,
) -> None:
    """Assert that ``cache.search`` returns the brute-force page, scores, total and partial."""
    expected, total, partial = brute_force(stored, **spec, ids=ids_of(cache), deployed=deployed)
    results = cache.search(**spec, project=project)
    assert [(h.key, h.score) for h in results] == expected
    assert results.total == total
    assert results.partial == partial


@pytest.fixture(params=["default", "tiers-and-merges", "small-blocks"])
def engine_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a test as configured, and again with every set ranked by bitmap tiers and a tail
    merged into the main bitmaps every few writes (the paths of big caches); with
    ``small-blocks`` the main bitmaps are also cut into blocks of 4 ids, so a few dozen
    records span many blocks as a million do (the multi-block reads of a query)."""
    if request.param != "default":
        monkeypatch.setattr(search_module, "_SMALL", 1)
        monkeypatch.setattr(search_module, "_SMALL_GROUP", 1)
        monkeypatch.setattr(postings_module, "MERGE_AT", 12)
        # Terms past a few postings in blocks (a few dozen records cannot reach the real
        # limit): the multi-block reads of a big cache's words.
        monkeypatch.setattr(postings_module, "SMALL_POSTINGS", 64)
    if request.param == "tiers-and-merges":  # the words whole, not cut down to the matches
        monkeypatch.setattr(search_module, "_RESTRICT", 0)
    if request.param == "small-blocks":
        monkeypatch.setattr(postings_module, "CHUNK_BITS", 2)
        monkeypatch.setattr(postings_module, "SMALL_POSTINGS", 8)


@pytest.mark.generated
@pytest.mark.usefixtures("engine_paths")
class TestSearchMatchesBruteForce:
    """The index returns exactly what a scan over the records returns."""

    @settings(max_examples=examples(100))
    @given(
        st.lists(records, max_size=12),
        st.one_of(st.none(), st.tuples(records, st.integers(10, 30))),
        st.data(),
    )
    def test_put_then_query(
        self,
        batch: list[dict[str, Any]],
        bulk: Optional[tuple[dict[str, Any], int]],
        data: st.DataObject,
    ) -> None:
        """Same ordered keys, scores and total for random records and queries."""
        if bulk is not None:  # long posting lists next to rare words: other query plans
            batch = [*numbered(*bulk), *batch]
        model = {key_of(r): r for r in batch}  # a later record replaces an earlier one
        specs = data.draw(st.lists(queries(batch), min_size=1, max_size=6))
        with tempfile.TemporaryDirectory() as directory, open_cache(directory) as cache:
            cache.put_artifacts(batch)
            for spec in specs:
                check_search(cache, model.values(), spec)

    @settings(max_examples=examples(100))
    @given(
        st.lists(st.tuples(common_records, st.integers(2, 30)), min_size=1, max_size=3),
        st.lists(records, min_size=1, max_size=8),
        st.data(),
    )
    def test_rare_and_common_words(
        self,
        bulk: list[tuple[dict[str, Any], int]],
        rare: list[dict[str, Any]],
        data: st.DataObject,
    ) -> None:
        """Same results when rare words meet long posting lists of a common prefix."""
        batch = [record for base, count in bulk for record in numbered(base, count)] + rare
        model = {key_of(r): r for r in batch}
        specs = data.draw(st.lists(queries(batch, words=words_of(rare)), min_size=1, max_size=6))
        with tempfile.TemporaryDirectory() as directory, open_cache(directory) as cache:
            cache.put_artifacts(batch)
            for spec in specs:
                check_search(cache, model.values(), spec)


class SearchMachine(RuleBasedStateMachine):
    """Random puts, replacements, deletes and deployments, checking queries against a scan."""

    def __init__(self) -> None:
        super().__init__()
        self.stack = contextlib.ExitStack()
        directory = self.stack.enter_context(tempfile.TemporaryDirectory())
        self.cache = self.stack.enter_context(open_cache(directory))
        self.model: dict[str, dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []  # every record written, for query words
        self.deployed: set[str] = set()
        self.project_id = ""
        # Small thresholds: rank by bitmap tiers, merge the tail every few writes.
        self.saved = (
            search_module._SMALL,
            search_module._SMALL_GROUP,
            postings_module.MERGE_AT,
            postings_module.SMALL_POSTINGS,
        )
        search_module._SMALL, search_module._SMALL_GROUP, postings_module.MERGE_AT = 4, 4, 24
        postings_module.SMALL_POSTINGS = 16  # terms past 16 postings in blocks

    @initialize()
    def add_project(self) -> None:
        """Create the one project that deployments go to."""
        self.cache.put_projects([{"name": "proj", "path": "/nonexistent/proj"}])
        [project] = self.cache.list_projects()
        self.project_id = project.id

    @rule(batch=st.lists(records, min_size=1, max_size=4))
    def put(self, batch: list[dict[str, Any]]) -> None:
        """Insert or replace a batch of artifacts in one call."""
        assert self.cache.put_artifacts(batch) == len(batch)
        for record in batch:
            self.model[key_of(record)] = record
        self.history.extend(batch)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), new=records)
    def replace(self, data: st.DataObject, new: dict[str, Any]) -> None:
        """Replace a stored artifact by another record with the same key; old words and tags go."""
        old = self.model[data.draw(st.sampled_from(sorted(self.model)))]
        same_key = {field: old[field] for field in ("name", "type", "collection")}
        self.put([{**new, **same_key}])
        page = {"limit": 100, "offset": 0}
        for word in words_of([old]):
            check_search(self.cache, self.model.values(), {"query": word, **page})
        for tag in old["tags"]:
            spec = {"query": old["name"], "tag": tag, **page}
            check_search(self.cache, self.model.values(), spec)

    @rule(base=records, count=st.integers(10, 30))
    def put_many(self, base: dict[str, Any], count: int) -> None:
        """Write many artifacts alike but for a numbered name, making long posting lists."""
        self.put(numbered(base, count))

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        """Delete a stored artifact."""
        key = data.draw(st.sampled_from(sorted(self.model)))
        self.cache.delete_artifact(key)
        del self.model[key]

    @rule(
        name=st.sampled_from(NAMES),
        type=st.sampled_from(TYPES),
        collection=st.sampled_from(COLLECTIONS),
    )
    def deploy(self, name: str, type: str, collection: str) -> None:
        """Deploy a key (stored or not) into the project."""
        key = f"{collection}/{type}/{name}"
        self.cache.put_deployments([{"project_id": self.project_id, "artifact_key": key}])
        self.deployed.add(key)

    @precondition(lambda self: bool(self.deployed))
    @rule(data=st.data())
    def undeploy(self, data: st.DataObject) -> None:
        """Remove a deployment from the project."""
        key = data.draw(st.sampled_from(sorted(self.deployed)))
        assert self.cache.delete_deployment(self.project_id, key)
        self.deployed.discard(key)

    @rule(data=st.data(), in_project=st.booleans())
    def query(self, data: st.DataObject, in_project: bool) -> None:
        """A random query returns the brute-force page, scores and total."""
        spec = data.draw(queries(self.history))  # old words and tags too
        if in_project:
            check_search(
                self.cache, self.model.values(), spec, self.deployed, project=self.project_id
            )
        else:
            check_search(self.cache, self.model.values(), spec)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def find_by_name(self, data: st.DataObject) -> None:
        """A stored artifact is found by its own name within its collection and type."""
        key = data.draw(st.sampled_from(sorted(self.model)))
        record = self.model[key]
        results = self.cache.search(
            record["name"], type=record["type"], collection=record["collection"], limit=1000
        )
        assert key in keys(results)

    def teardown(self) -> None:
        """Close the cache and remove its directory."""
        (
            search_module._SMALL,
            search_module._SMALL_GROUP,
            postings_module.MERGE_AT,
            postings_module.SMALL_POSTINGS,
        ) = self.saved
        self.stack.close()


TestSearchMachine = SearchMachine.TestCase
TestSearchMachine.settings = settings(max_examples=examples(80), stateful_step_count=30)
TestSearchMachine.pytestmark = [pytest.mark.generated]


def test_latin_diacritics_fold_but_other_scripts_keep_their_marks(
    cache: ProjectCache, make_artifact: Callable[..., dict[str, Any]]
) -> None:
    """'cafe' finds 'Café' and vice versa; a Devanagari word matches only itself."""
    cache.put_artifacts(
        [
            make_artifact("menu", description="Café résumé"),
            make_artifact("hindi", description="हिन्दी पाठ"),
            make_artifact("letters", description="ह न द"),
        ]
    )
    assert [h.key for h in cache.search("cafe")] == ["default/skill/menu"]
    assert [h.key for h in cache.search("RÉSUMÉ")] == ["default/skill/menu"]
    assert [h.key for h in cache.search("हिन्दी")] == ["default/skill/hindi"]


_SUFFIXES = ["ing", "ed", "edly", "ingly", "s", "es", "ness", "ful", "ly", "li", "ation", "tional",
             "ousli", "lessli", "iveness", "er", "ment", "ence", "able", "ize", "ism", "iti",
             "ies", "ied", "y", "e", "al", "ion", "ous", "ive", "ate", "ic", "fulli", "bli",
             "ogi", "ator", "icate", "ative", "alize", "eed", "ss", "us", "sses"]  # fmt: skip


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=9),
    st.lists(st.sampled_from(_SUFFIXES), max_size=3),
)
def test_a_stem_ending_in_s_comes_from_words_that_begin_with_it(
    base: str, suffixes: list[str]
) -> None:
    """What search._plural_covered counts on: when a word's stem ends in ``s`` and the
    stem's own stem drops just that ``s``, the word begins with its stem (the stem came from
    cutting a suffix off, not from replacing one)."""
    word = base + "".join(suffixes)
    stemmed = stem(word)
    plural = stemmed != word and len(stemmed) >= 4 and stemmed.endswith("s")
    if plural and stem(stemmed) == stemmed[:-1]:
        assert word.startswith(stemmed)
