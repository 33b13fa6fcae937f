"""Relevance on the judged query set: success@1 >= 0.9, never below SQLite FTS5 (porter, bm25)."""

from __future__ import annotations

from pathlib import Path

from relevance import JUDGED, judge, judge_examples


def test_judged_queries_meet_the_budget(tmp_path: Path) -> None:
    """projcache puts the intended artifact first for >= 90% of the judged queries."""
    results = judge_examples(tmp_path / "cache")
    ours, fts5 = results["projcache"], results["fts5"]
    assert ours["success@1"] >= 0.9, ours["misses"]
    assert ours["success@1"] >= fts5["success@1"], (ours["misses"], fts5["misses"])
    assert ours["mrr@5"] >= fts5["mrr@5"]


def test_judge_counts_first_places_and_reciprocal_ranks() -> None:
    """success@1 counts first places; MRR@5 averages 1/rank within the top five."""
    ranked = {"a": ["c/skill/x"], "b": ["c/skill/y", "c/skill/x"], "c": ["c/skill/y"] * 5}
    scores = judge(lambda q: ranked[q], [("a", "skill/x"), ("b", "skill/x"), ("c", "skill/x")])
    assert scores["success@1"] == 1 / 3
    assert scores["mrr@5"] == (1 + 0.5 + 0) / 3
    assert [m[0] for m in scores["misses"]] == ["b", "c"]


def test_the_set_names_only_existing_artifacts(tmp_path: Path) -> None:
    """Every judged artifact exists in the examples (a typo cannot pass as a miss)."""
    from relevance import example_cache

    cache = example_cache(tmp_path / "cache")
    try:
        present = {a.key.split("/", 1)[1] for a in cache.list_artifacts()}
    finally:
        cache.close()
    assert {wanted for _q, wanted in JUDGED} <= present
