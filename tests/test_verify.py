"""verify() finds damage in every layer it checks, and repair() restores consistency."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import lmdb
import pytest

from projcache import CorruptRecordError, ProjectCache
from projcache import verify as verify_module
from projcache.codec import deployment_key, encode, frame, unframe
from projcache.config import Settings

Factory = Callable[..., dict[str, Any]]


@pytest.fixture
def seeded(cache_settings: Settings, make_artifact: Factory, make_project: Factory) -> Settings:
    """A closed cache holding three artifacts, one project and one deployment."""
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts(
            [
                make_artifact("pdf", tags=["docs"], content_hash="h"),
                make_artifact("docx", tags=["docs"]),
                make_artifact("review", type="command"),
            ]
        )
        cache.put_projects([make_project("shop")])
        pid = cache.find_project("shop").id
        cache.put_deployments(
            [{"project_id": pid, "artifact_key": "default/skill/pdf", "content_hash": "h"}]
        )
    return cache_settings


@pytest.fixture
def raw_env(seeded: Settings) -> Iterator[Callable[[], lmdb.Environment]]:
    """Open the seeded cache with raw py-lmdb (for tampering); closed after the test."""
    opened: list[lmdb.Environment] = []

    def open_env() -> lmdb.Environment:
        env = lmdb.open(str(seeded.cache_dir), max_dbs=32)
        opened.append(env)
        return env

    yield open_env
    for env in opened:
        env.close()


def _tamper(open_env: Callable[[], lmdb.Environment], db: str, fn: Callable[..., None]) -> None:
    env = open_env()
    handle = env.open_db(db.encode(), dupsort=db in {"search-tokens", "deployments-by-state"})
    with env.begin(write=True) as txn:
        fn(txn, handle)
    env.close()


def test_a_healthy_cache_verifies_clean(seeded: Settings) -> None:
    """A cache written only through the facade has no findings in any layer."""
    with ProjectCache.open(settings=seeded) as cache:
        report = cache.verify(deep=True)
    assert report.ok and report.findings == []
    assert report.checked["artifacts"] == 3
    assert report.checked["search-tokens"] > 0


def test_flipped_byte_is_a_frame_finding_and_never_returned(
    seeded: Settings, raw_env: Callable[[], lmdb.Environment]
) -> None:
    """A flipped payload byte fails the CRC: reads raise, verify reports, repair drops it."""

    def flip(txn: lmdb.Transaction, db: Any) -> None:
        value = bytearray(txn.get(b"default/skill/docx", db=db))
        value[-3] ^= 0x01
        txn.put(b"default/skill/docx", bytes(value), db=db)

    _tamper(raw_env, "artifacts", flip)
    with ProjectCache.open(settings=seeded) as cache:
        with pytest.raises(CorruptRecordError, match="CRC32"):
            cache.get_artifact("default/skill/docx")
        report = cache.verify(deep=True)
        assert not report.ok
        assert [(f.kind, f.db, f.key) for f in report.findings] == [
            ("frame", "artifacts", "default/skill/docx")
        ]
        repaired = cache.verify(repair=True)
        assert repaired.ok and repaired.repaired == 1
        assert cache.get_artifact("default/skill/docx") is None
        assert cache.search("docx").total == 0
        assert cache.verify(deep=True).ok


def test_valid_frame_with_invalid_record_is_a_model_finding(
    seeded: Settings, raw_env: Callable[[], lmdb.Environment]
) -> None:
    """A well-framed value that is not a valid Artifact is reported as a model finding."""
    _tamper(
        raw_env,
        "artifacts",
        lambda txn, db: txn.put(b"default/skill/docx", encode({"name": 3}), db=db),
    )
    with ProjectCache.open(settings=seeded) as cache:
        kinds = {(f.kind, f.key) for f in cache.verify(deep=True).findings}
        assert ("model", "default/skill/docx") in kinds
        assert cache.verify(repair=True).ok
        assert cache.verify(deep=True).findings == []


def test_missing_and_dangling_postings_are_index_findings(
    seeded: Settings, raw_env: Callable[[], lmdb.Environment]
) -> None:
    """A removed id and an invented one are both reported; repair rebuilds the index."""
    from pyroaring import BitMap

    def damage(txn: lmdb.Transaction, db: Any) -> None:
        assert txn.delete(b"pdf\x00n", db=db)  # the name ...
        assert txn.delete(b"pdf\x00d", db=db)  # ... and the description ("The pdf artifact")
        txn.put(b"ghost\x00d", b"\x02" + BitMap([7]).serialize(), db=db)

    _tamper(raw_env, "search-pending", damage)
    with ProjectCache.open(settings=seeded) as cache:
        assert cache.search("pdf").total == 0  # the damage is visible to search
        findings = sorted((f.key, f.message) for f in cache.verify(deep=True).findings)
        assert findings == [
            ("ghost (field d)", "dangling id 7"),
            ("pdf (field d)", "missing id 2"),
            ("pdf (field n)", "missing id 2"),
        ]
        assert cache.verify(repair=True).repaired == 3
        assert cache.search("pdf").total == 1
        assert cache.verify(deep=True).ok


def test_wrong_deployment_state_and_orphan_deployment(
    seeded: Settings, raw_env: Callable[[], lmdb.Environment]
) -> None:
    """A deployment with a stale state or of an unknown project is found and repaired."""

    def damage(txn: lmdb.Transaction, db: Any) -> None:
        key = next(k for k, _ in txn.cursor(db))
        value = txn.get(key, db=db)
        txn.put(key, frame(unframe(value).replace(b'"current"', b'"outdated"')), db=db)
        orphan = deployment_key("f" * 16, "default/skill/pdf")
        txn.put(
            orphan,
            encode({"project_id": "f" * 16, "artifact_key": "default/skill/pdf"}),
            db=db,
        )

    _tamper(raw_env, "deployments", damage)
    with ProjectCache.open(settings=seeded) as cache:
        messages = " | ".join(f.message for f in cache.verify(deep=True).findings)
        assert "rule says current" in messages
        assert "does not exist" in messages
        assert cache.verify(repair=True).ok
        assert [d.state for d in cache.list_deployments()] == ["current"]
        assert cache.verify(deep=True).ok


def test_file_layer_findings_rebuild_the_environment(
    seeded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Structural damage: repair moves the files aside, carries records over, reports it."""
    monkeypatch.setattr(verify_module, "_check_file", lambda storage: ["page 7: bad magic"])
    with ProjectCache.open(settings=seeded) as cache:
        before = sorted(a.key for a in cache.list_artifacts())
        report = cache.verify(repair=True)
        assert report.ok
        assert [(f.kind, f.repairable, f.message) for f in report.findings] == [
            ("file", True, "page 7: bad magic")
        ]
        assert report.moved_to is not None
        assert Path(report.moved_to).name.startswith(seeded.cache_dir.name + ".corrupt-")
        assert (Path(report.moved_to) / "data.mdb").is_file()
        assert report.salvaged["artifacts"] == len(before)
        assert sum(report.lost.values()) == 0
        # The handle now works on the rebuilt environment.
        assert sorted(a.key for a in cache.list_artifacts()) == before
    monkeypatch.undo()
    with ProjectCache.open(settings=seeded) as cache:
        assert cache.verify(deep=True).ok


def test_file_layer_runs_lmdb_verify_on_a_private_copy(seeded: Settings, tmp_path: Path) -> None:
    """The file check copies the environment and verifies the copy with lmdb.verify."""
    with ProjectCache.open(settings=seeded) as cache:
        assert verify_module._check_file(cache._storage) == []


class TestPageCountDrift:
    """LMDB's page *counters* of dupsort sub-dbs may drift; that is not damage, the rest is."""

    def test_counter_drift_is_not_a_file_finding_but_other_problems_are(
        self, seeded: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        drift = (
            "main/deployments-by-state DB: walked 1 leaf pages (12 with dup sub-trees), "
            "record says 13"
        )
        damage = "main/artifacts DB: walked 3 entries, record says 4"
        monkeypatch.setattr(lmdb.verify, "verify", lambda path: iter([drift, damage]))
        with ProjectCache.open(settings=seeded) as cache:
            report = cache.verify(deep=True)
        messages = [f.message for f in report.findings]
        assert any(damage in m for m in messages)
        assert not any("dup sub-trees" in m for m in messages)

    def test_counter_drift_alone_leaves_the_cache_ok(
        self, seeded: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        drift = "main/search-tokens DB: walked 2 branch pages (5 with dup sub-trees), record says 6"
        monkeypatch.setattr(lmdb.verify, "verify", lambda path: iter([drift]))
        with ProjectCache.open(settings=seeded) as cache:
            assert cache.verify(deep=True).ok
