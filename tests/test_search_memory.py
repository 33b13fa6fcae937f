"""A search frees its bitmaps when it returns, without waiting for the cycle collector.

Issue 15 item 6 (heap flat from 1,000 to 1,000,000 artifacts): pyroaring's
bitmaps live in C memory that ``tracemalloc`` does not see; a query whose
objects sit in a reference cycle keeps every bitmap it built (tens of MiB at a
million ids) until ``gc`` runs, so the heap grows with the collection.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroaring import BitMap

from projcache import ProjectCache
from projcache.config import Settings
from projcache.search import _Ranker, _Word


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ProjectCache]:
    with ProjectCache.open(settings=Settings(cache_dir=tmp_path / "cache")) as opened:
        opened.put_artifacts(
            [
                {
                    "name": f"tool-{i}",
                    "type": "skill",
                    "collection": "c",
                    "description": "import design" if i % 3 else "import",
                    "tags": ["design"] if i % 5 == 0 else [],
                }
                for i in range(300)
            ]
        )
        yield opened


def _alive() -> list[object]:
    return [o for o in gc.get_objects() if isinstance(o, (_Ranker, _Word, BitMap))]


@pytest.mark.parametrize("query", ["import design", "import des", "tool import design"])
def test_nothing_of_a_search_outlives_it_without_the_cycle_collector(
    cache: ProjectCache, query: str
) -> None:
    """Ranked over many matches (the score groups), then nothing of the query is left."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        before = len(_alive())
        for offset in (0, 20, 150):
            result = cache.search(query, limit=20, offset=offset)
            assert result.total > 48  # ranked by score groups, not hit by hit
            cache.search_json(query, limit=20, offset=offset)
        assert len(_alive()) == before
    finally:
        if enabled:
            gc.enable()
