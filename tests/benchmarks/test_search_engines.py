"""Issue 13's search baselines inside the suite: projcache v3 beside SQLite FTS5 and Tantivy.

bench/search_bench.py does the measuring (and the million); this module runs it once per
suite size from 1,000 up to 10,000 and checks that the three engines agree on every query
class's exact total, so the ratios in bench/RESULTS.md compare the same answers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))


def test_engines_agree_and_ratios_are_recorded(size: int, workspace: Path, facts: Any) -> None:
    """Every engine finds the same number of exact matches per query class."""
    import search_bench

    root = workspace / f"search-engines-{size}"
    root.mkdir()
    result = search_bench.run_size(size, root, ["projcache", "sqlite-fts5", "tantivy"])
    totals = {name: engine["totals"] for name, engine in result["engines"].items()}
    assert totals["projcache"] == totals["sqlite-fts5"] == totals["tantivy"], totals
    facts.add(metric="search_engines", size=size, ratios=search_bench.ratios(result))


# Only collected at these sizes: search_bench needs 1,000 records for its query classes,
# and runs apart beyond 10,000 (python bench/search_bench.py).
test_engines_agree_and_ratios_are_recorded.size_range = (1000, 10_000)  # type: ignore[attr-defined]
