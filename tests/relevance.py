"""The judged query set: what users type against the bundled examples, and what they mean.

Used by ``tests/test_relevance.py`` (the budget: success@1 >= 0.9 and at least
the SQLite FTS5 porter/bm25 baseline) and by ``tasks.py bench`` (the report).
A judgement names the artifact as ``<type>/<name>``: the collection part of a
key depends on where the examples were copied.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

JUDGED: list[tuple[str, str]] = [
    ("excel spreadsheet", "skill/xlsx"),
    ("spreadsheets", "skill/xlsx"),
    ("pivot tables", "skill/xlsx"),
    ("xls", "skill/xlsx"),
    ("merge pdfs", "skill/pdf"),
    ("fill pdf form", "skill/pdf"),
    ("extract text from a pdf", "skill/pdf"),
    ("pdf", "skill/pdf"),
    ("word document", "skill/docx"),
    ("tracked changes", "skill/docx"),
    ("redline a contract", "skill/docx"),
    ("slide deck", "skill/pptx"),
    ("powerpoint", "skill/pptx"),
    ("make a presentation", "skill/pptx"),
    ("test web app", "skill/webapp-testing"),
    ("playwright screenshots", "skill/webapp-testing"),
    ("browser testing", "skill/webapp-testing"),
    ("build an mcp server", "skill/mcp-builder"),
    ("model context protocol", "skill/mcp-builder"),
    ("review pull request", "command/review-pr"),
    ("commit message", "command/commit"),
    ("security audit", "agent/security-auditor"),
    ("leaked secrets", "agent/security-auditor"),
    ("write documentation", "agent/docs-writer"),
    ("test plan", "command/test-plan"),
    ("code review checklist", "skill/code-review"),
    ("css design system", "skill/frontend-design"),
    ("deploy to staging", "command/deploy-staging"),
    ("meeting notes", "skill/meeting-notes"),
    ("summarise", "command/summarize"),
    ("research", "agent/researcher"),
    ("scratch prompts", "command/scratch"),
]

EXAMPLES = Path(__file__).resolve().parents[1] / "lib" / "projcache" / "examples"

Searcher = Callable[[str], Sequence[str]]  # query -> ranked artifact keys


def judge(search: Searcher, judged: Iterable[tuple[str, str]] = JUDGED) -> dict[str, Any]:
    """Return success@1, MRR@5 and the misses of ``search`` over the judged set."""
    judged = list(judged)
    hits1 = 0
    reciprocal = 0.0
    misses = []
    for query, wanted in judged:
        ranked = [key.split("/", 1)[1] for key in search(query)][:5]
        if ranked[:1] == [wanted]:
            hits1 += 1
        else:
            misses.append((query, wanted, ranked[:3]))
        if wanted in ranked:
            reciprocal += 1.0 / (ranked.index(wanted) + 1)
    return {
        "queries": len(judged),
        "success@1": hits1 / len(judged),
        "mrr@5": reciprocal / len(judged),
        "misses": misses,
    }


@contextmanager
def fts5_searcher(records: Iterable[Mapping[str, Any]]) -> Iterator[Searcher]:
    """The baseline: SQLite FTS5 (porter tokenizer) over the same fields, words OR-ed, bm25.

    A context manager: the in-memory database is closed on exit.
    """
    db = sqlite3.connect(":memory:")
    try:
        yield _fts5_search(db, records)
    finally:
        db.close()


def _fts5_search(db: sqlite3.Connection, records: Iterable[Mapping[str, Any]]) -> Searcher:
    db.execute(
        "CREATE VIRTUAL TABLE docs USING fts5(key UNINDEXED, name, title, tags, description, "
        "body, tokenize='porter unicode61')"
    )
    db.executemany(
        "INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                r["key"],
                r["name"].replace("-", " "),
                r.get("title") or "",
                " ".join(r.get("tags") or ()),
                r.get("description") or "",
                r.get("body") or "",
            )
            for r in records
        ],
    )

    def search(query: str) -> list[str]:
        words = ["".join(ch for ch in w if ch.isalnum()) for w in query.split()]
        match = " OR ".join(f'"{w}"*' if i == len(words) - 1 else f'"{w}"' for i, w in
                            enumerate(words) if w)  # fmt: skip
        if not match:
            return []
        rows = db.execute(
            "SELECT key FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT 5", (match,)
        )
        return [row[0] for row in rows]

    return search


def example_cache(directory: Path) -> Any:
    """A cache in ``directory`` refreshed from the bundled examples (opened; close it)."""
    from projcache import ProjectCache
    from projcache.config import Settings

    cache = ProjectCache.open(settings=Settings(cache_dir=directory, durability="none"))
    projects = sorted(p for p in (EXAMPLES / "projects").iterdir() if p.is_dir())
    collections = [EXAMPLES / "collections" / name for name in ("default", "documents")]
    cache.refresh(collections=collections, projects=projects)
    return cache


def judge_examples(directory: Path) -> dict[str, dict[str, Any]]:
    """Judge projcache and the FTS5 baseline on the examples; ``directory`` holds the cache."""
    cache = example_cache(directory)
    try:
        records = [a.model_dump() for a in cache.list_artifacts()]
        ours = judge(lambda q: [h.key for h in cache.search(q, limit=5)])
    finally:
        cache.close()
    with fts5_searcher(records) as fts5:
        baseline = judge(fts5)
    return {"projcache": ours, "fts5": baseline}


if __name__ == "__main__":  # pragma: no cover - a manual look at the numbers
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(judge_examples(Path(tmp) / "cache"), indent=2))
