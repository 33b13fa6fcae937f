"""The benchmark data generator stays the same data when it gets faster.

tests/benchmarks/bench_data.py's ``generate_artifacts`` was rewritten for speed
(1,000,000 records in about 30 s instead of 2,443 s; the name-suffix search was
quadratic).  The benchmarks compare runs across sessions, so the records must not
change: :func:`_plain_generate` below is the former implementation, kept verbatim
as the reference, and both must give equal records for the same seed.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

BENCH = Path(__file__).resolve().parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_data  # noqa: E402  (tests/benchmarks is no package: imported by path)
from bench_data import (  # noqa: E402
    _ORGS,
    COLLECTION_SHARD,
    COLLECTION_WEIGHTS,
    COLLECTIONS,
    FOLDERS,
    ROLES,
    SEED,
    TYPE_WEIGHTS,
    TYPES,
    Vocabulary,
    _description,
    _sha,
)


def _plain_generate(count: int, seed: int = SEED) -> list[dict[str, Any]]:
    """The generator before the speed-up (commit 93ff589), unchanged but for this docstring."""
    rng = random.Random(seed)
    vocab = Vocabulary(random.Random(seed + 1))
    taken: set[str] = set()
    filled: dict[str, int] = {}
    records = []
    for index in range(count):
        type_ = rng.choices(TYPES, TYPE_WEIGHTS)[0]
        base_collection = rng.choices(COLLECTIONS, COLLECTION_WEIGHTS)[0]
        shard = filled.get(base_collection, 0) // COLLECTION_SHARD
        filled[base_collection] = filled.get(base_collection, 0) + 1
        collection = base_collection if shard == 0 else f"{base_collection}-{shard + 1}"
        verb, obj, tool = vocab.verbs.draw(rng), vocab.objects.draw(rng), vocab.tools.draw(rng)
        shape = rng.random()
        if shape < 0.4:
            base = f"{obj}-{verb}"
        elif shape < 0.8:
            base = f"{tool}-{obj}-{verb}"
        else:
            base = f"{vocab.code_names.draw(rng)}-{obj}"
        name = base
        suffix = 2
        while name in taken:
            name = f"{base}-{suffix}"
            suffix += 1
        taken.add(name)
        role = rng.choice(ROLES)
        title = f"{tool.capitalize()} {obj} {role}"
        if rng.random() < 0.2:
            title = f"{vocab.code_names.draw(rng).capitalize()} {role}"
        tags = sorted({vocab.tags.draw(rng) for _ in range(rng.randint(1, 4))})
        major, minor, patch = rng.randint(0, 3), rng.randint(0, 12), rng.randint(0, 20)
        org = rng.choice(_ORGS)
        folder = FOLDERS[type_]
        path = f"{folder}/{name}" if type_ == "skill" else f"{folder}/{name}.md"
        record: dict[str, Any] = {
            "name": name,
            "type": type_,
            "collection": collection,
            "path": f"/home/dev/.skillmeat/collections/{collection}/{path}",
            "title": title,
            "description": _description(vocab, rng, verb, obj, tool),
            "tags": tags,
            "version": f"{major}.{minor}.{patch}",
            "origin": "github",
            "upstream": f"{org}/claude-{folder}/{name}",
            "resolved_sha": _sha(f"{name}{index}")[:12],
            "resolved_version": f"v{major}.{minor}.{patch}",
            "content_hash": _sha(f"content {name} {index}"),
            "updated_at": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T09:30:00Z",
        }
        if type_ == "agent":
            record["front_matter"] = {"model": rng.choice(["sonnet", "opus", "haiku"])}
        records.append(record)
    return records


@pytest.mark.parametrize(("count", "seed"), [(6000, SEED), (2000, 7), (500, SEED + 7)])
def test_fast_generator_gives_the_plain_generators_records(count: int, seed: int) -> None:
    fast = bench_data.generate_artifacts(count, seed)
    assert fast == _plain_generate(count, seed)
    # The data must exercise what changed: names that needed a suffix (several per base).
    assert sum(1 for r in fast if r["name"].rsplit("-", 1)[-1].isdigit()) > count // 20


def test_generator_output_is_pinned_by_digest() -> None:
    """Both generators' first 3,000 records, as canonical JSON, hash to the value of 93ff589."""
    digest = hashlib.sha256(
        orjson.dumps(bench_data.generate_artifacts(3000), option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    assert digest == PINNED_3000


PINNED_3000 = "27e5040256789745f23414f1d465c6ed57c87747bfb69de458f58169b925c419"
