"""Deep verify (``verify.py``): each layer finds its own damage, and repair restores consistency.

Layers: file (``lmdb.verify`` on a private copy), frame (checksums), model
(validation), index (derived sub-databases against the records) and sources
(``--sources``: files edited since the refresh).  The quick check that
``projcache verify`` runs by default lives in ``quickverify.py`` and is tested
in ``test_quick_verify.py``: a different module with its own cost model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Optional

import lmdb
import pytest

from clirun import run_cli
from damage import (
    BAD_PGNO,
    artifact_keys,
    break_page_header,
    flip_last_byte,
    index_view,
    merge_index,
    pdf_id,
    raw_rows,
    records_snapshot,
    tamper,
)
from factories import Seeded, ShopWorld
from projcache import CorruptRecordError, ProjectCache
from projcache import verify as verify_module
from projcache.codec import deployment_key, encode, frame, unframe

Factory = Callable[..., dict[str, Any]]


def _tamper(seeded: Seeded, db: str, fn: Callable[[Any, Any], None]) -> None:
    """Run ``fn(txn, handle of db)`` in one raw write transaction on the seeded cache."""
    tamper(seeded.cache_dir, lambda txn, dbs: fn(txn, dbs[db]))


def test_a_healthy_cache_verifies_clean(seeded_cache: Seeded) -> None:
    """A cache written only through the facade has no findings in any layer."""
    with ProjectCache.open(settings=seeded_cache.settings) as cache:
        report = cache.verify(deep=True)
    assert report.ok and report.findings == []
    assert report.checked["artifacts"] == 3
    assert report.checked["search-tokens"] > 0


def test_flipped_byte_is_a_frame_finding_and_never_returned(seeded_cache: Seeded) -> None:
    """A flipped payload byte fails the CRC: reads raise, verify reports, repair drops it."""

    def flip(txn: lmdb.Transaction, db: Any) -> None:
        value = bytearray(txn.get(b"default/skill/docx", db=db))
        value[-3] ^= 0x01
        txn.put(b"default/skill/docx", bytes(value), db=db)

    _tamper(seeded_cache, "artifacts", flip)
    with ProjectCache.open(settings=seeded_cache.settings) as cache:
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


def test_valid_frame_with_invalid_record_is_a_model_finding(seeded_cache: Seeded) -> None:
    """A well-framed value that is not a valid Artifact is reported as a model finding."""
    _tamper(
        seeded_cache,
        "artifacts",
        lambda txn, db: txn.put(b"default/skill/docx", encode({"name": 3}), db=db),
    )
    with ProjectCache.open(settings=seeded_cache.settings) as cache:
        kinds = {(f.kind, f.key) for f in cache.verify(deep=True).findings}
        assert ("model", "default/skill/docx") in kinds
        assert cache.verify(repair=True).ok
        assert cache.verify(deep=True).findings == []


def test_missing_and_dangling_postings_are_index_findings(seeded_cache: Seeded) -> None:
    """A removed id and an invented one are both reported; repair rebuilds the index."""
    from pyroaring import BitMap

    from projcache.postings import decode_small, encode_small

    def damage(txn: lmdb.Transaction, db: Any) -> None:
        # "pdf" is a small term: all its fields in one value. Drop the name field ...
        fields = decode_small(txn.get(b"pdf\x00", db=db))
        del fields[b"n"], fields[b"d"]  # ... and the description ("The pdf artifact")
        txn.put(b"pdf\x00", encode_small(fields), db=db)
        txn.put(b"ghost\x00d\x00\x00", b"\x02" + BitMap([7]).serialize(), db=db)
        txn.put(b"ghost\x00*\x00\x00", b"\x02" + BitMap([7]).serialize(), db=db)  # its all-fields

    merge_index(seeded_cache.settings)  # the names' ids leave the write log for search-tokens
    _tamper(seeded_cache, "search-tokens", damage)
    with ProjectCache.open(settings=seeded_cache.settings) as cache:
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


def test_wrong_deployment_state_and_orphan_deployment(seeded_cache: Seeded) -> None:
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

    _tamper(seeded_cache, "deployments", damage)
    with ProjectCache.open(settings=seeded_cache.settings) as cache:
        messages = " | ".join(f.message for f in cache.verify(deep=True).findings)
        assert "rule says current" in messages
        assert "does not exist" in messages
        assert cache.verify(repair=True).ok
        assert [d.state for d in cache.list_deployments()] == ["current"]
        assert cache.verify(deep=True).ok


def test_file_layer_findings_rebuild_the_environment(
    seeded_cache: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Structural damage: repair moves the files aside, carries records over, reports it."""
    monkeypatch.setattr(verify_module, "_check_file", lambda storage: ["page 7: bad magic"])
    with ProjectCache.open(settings=seeded_cache.settings) as cache:
        before = sorted(a.key for a in cache.list_artifacts())
        report = cache.verify(repair=True)
        assert report.ok
        assert [(f.kind, f.repairable, f.message) for f in report.findings] == [
            ("file", True, "page 7: bad magic")
        ]
        assert report.moved_to is not None
        assert Path(report.moved_to).name.startswith(seeded_cache.cache_dir.name + ".corrupt-")
        assert (Path(report.moved_to) / "data.mdb").is_file()
        assert report.salvaged["artifacts"] == len(before)
        assert sum(report.lost.values()) == 0
        # The handle now works on the rebuilt environment.
        assert sorted(a.key for a in cache.list_artifacts()) == before
    monkeypatch.undo()
    with ProjectCache.open(settings=seeded_cache.settings) as cache:
        assert cache.verify(deep=True).ok


def test_file_layer_runs_lmdb_verify_on_a_private_copy(
    seeded_cache: Seeded, tmp_path: Path
) -> None:
    """The file check copies the environment and verifies the copy with lmdb.verify."""
    with ProjectCache.open(settings=seeded_cache.settings) as cache:
        assert verify_module._check_file(cache._storage) == []


class TestPageCountDrift:
    """LMDB's page *counters* of dupsort sub-dbs may drift; that is not damage, the rest is."""

    def test_counter_drift_is_not_a_file_finding_but_other_problems_are(
        self, seeded_cache: Seeded, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        drift = (
            "main/deployments-by-state DB: walked 1 leaf pages (12 with dup sub-trees), "
            "record says 13"
        )
        damage = "main/artifacts DB: walked 3 entries, record says 4"
        monkeypatch.setattr(lmdb.verify, "verify", lambda path: iter([drift, damage]))
        with ProjectCache.open(settings=seeded_cache.settings) as cache:
            report = cache.verify(deep=True)
        messages = [f.message for f in report.findings]
        assert any(damage in m for m in messages)
        assert not any("dup sub-trees" in m for m in messages)

    def test_counter_drift_alone_leaves_the_cache_ok(
        self, seeded_cache: Seeded, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        drift = "main/search-tokens DB: walked 2 branch pages (5 with dup sub-trees), record says 6"
        monkeypatch.setattr(lmdb.verify, "verify", lambda path: iter([drift]))
        with ProjectCache.open(settings=seeded_cache.settings) as cache:
            assert cache.verify(deep=True).ok


ORPHAN = encode({"project_id": "f" * 16, "artifact_key": "default/skill/pdf"})
DEP = b"{pid}\x00default/skill/pdf\x00claude_code"
# case -> ([(operation, db, key, value)], [(db, finding key, finding message)]);
# "{pid}" stands for the seeded project's id.
INDEX_CASES: dict[str, tuple[list[tuple[str, str, bytes, bytes]], list[tuple[str, str, str]]]]
INDEX_CASES = {
    "search-tokens-dangling": (
        [
            ("bitmap", "search-tokens", b"ghost\x00d\x00\x00", b"{pdf}"),
            ("bitmap", "search-tokens", b"ghost\x00*\x00\x00", b"{pdf}"),  # its all-fields
        ],
        [("search-tokens", "ghost (field d)", "dangling id {pdf}")],
    ),
    "search-tokens-missing": (
        [("unlist", "search-tokens", b"pdf\x00", b"n")],
        [("search-tokens", "pdf (field n)", "missing id {pdf}")],
    ),
    "facet-dangling": (
        [("bitmap", "search-tokens", b"\x01tag\x00ghost\x00\x00", b"{pdf}")],
        [("search-tokens", "tag=ghost", "dangling id {pdf}")],
    ),
    "facet-missing": (
        [("delete", "search-tokens", b"\x01type\x00command\x00\x00", b"")],
        [("search-tokens", "type=command", "missing id 0")],
    ),
    "artifact-ids-dangling": (
        [("put", "artifact-ids", b"default/skill/ghost", b"\x00\x00\x00\x63")],
        [
            ("artifact-ids", "default/skill/ghost", "id 99 maps back to None"),
            ("artifact-ids", "default/skill/ghost", "id 99 of an unknown artifact"),
        ],
    ),
    "deployments-by-artifact-dangling": (
        [("put", "deployments-by-artifact", b"default/skill/docx", b"{pid}\x00claude_code")],
        [("deployments-by-artifact", "default/skill/docx", "dangling entry -> {pid} claude_code")],
    ),
    "deployments-by-artifact-missing": (
        [("delete", "deployments-by-artifact", b"default/skill/pdf", b"{pid}\x00claude_code")],
        [("deployments-by-artifact", "default/skill/pdf", "missing entry -> {pid} claude_code")],
    ),
    "deployments-by-state-dangling": (
        [("put", "deployments-by-state", b"modified", DEP)],
        [
            (
                "deployments-by-state",
                "modified",
                "dangling entry -> {pid} default/skill/pdf claude_code",
            )
        ],
    ),
    "deployments-by-state-missing": (
        [("delete", "deployments-by-state", b"current", DEP)],
        [
            (
                "deployments-by-state",
                "current",
                "missing entry -> {pid} default/skill/pdf claude_code",
            )
        ],
    ),
    "deployment-of-a-missing-project": (
        [("put", "deployments", b"f" * 16 + b"\x00default/skill/pdf\x00claude_code", ORPHAN)],
        [
            (
                "deployments",
                "f" * 16 + "\x00default/skill/pdf\x00claude_code",
                f"project {'f' * 16} does not exist",
            ),
            (
                "deployments-by-artifact",
                "default/skill/pdf",
                f"missing entry -> {'f' * 16} claude_code",
            ),
            (
                "deployments-by-state",
                "current",
                f"missing entry -> {'f' * 16} default/skill/pdf claude_code",
            ),
        ],
    ),
    "wrong-stored-state": (
        [("state", "deployments", DEP, b"outdated")],
        [
            (
                "deployments",
                "{pid}\x00default/skill/pdf\x00claude_code",
                "state is outdated, rule says current",
            ),
            (
                "deployments-by-state",
                "current",
                "dangling entry -> {pid} default/skill/pdf claude_code",
            ),
            (
                "deployments-by-state",
                "outdated",
                "missing entry -> {pid} default/skill/pdf claude_code",
            ),
        ],
    ),
}


# -- 1. verify in layers -------------------------------------------------------------------


class TestVerifyLayers:
    """Each layer (file, frame, model, index, source) finds its own kind of damage."""

    def test_file_layer_finds_a_damaged_page_in_a_backup_copy(
        self, seeded_cache: Seeded, tmp_path: Path
    ) -> None:
        """A page storing a wrong number in a backup copy is a file finding; records still read."""
        with ProjectCache.open(settings=seeded_cache.settings) as cache:
            copy = cache.backup(tmp_path / "copy")
        pgno = break_page_header(copy, "search-pending")
        expected = f"main/search-pending DB: page {pgno} stores mp_pgno {BAD_PGNO}"
        assert lmdb.verify.verify(str(copy)) == [expected]
        before = (copy / "data.mdb").read_bytes()
        copy_settings = dataclasses.replace(seeded_cache.settings, cache_dir=copy)
        with ProjectCache.open(settings=copy_settings) as damaged:
            report = damaged.verify(deep=True)
            assert [f.model_dump() for f in report.findings] == [
                {
                    "kind": "file",
                    "db": "data.mdb",
                    "key": None,
                    "message": expected,
                    "repairable": True,
                }
            ]
            assert not report.ok and report.repaired == 0
            # Records are not walked in-process once the file layer failed (a wild
            # page can crash the walker); they still read through the normal paths.
            assert "artifacts" not in report.checked
            assert artifact_keys(damaged) == [
                "default/command/review",
                *sorted(["default/skill/docx", "default/skill/pdf"]),
            ]
            assert damaged.search("pdf").total == 1
        # Verify (without repair) changed nothing on disk; the original is untouched.
        assert (copy / "data.mdb").read_bytes() == before
        with ProjectCache.open(settings=seeded_cache.settings) as cache:
            assert cache.verify(deep=True).ok

    @pytest.mark.parametrize(
        ("db", "suffix", "damage", "message"),
        [
            pytest.param(
                "artifacts",
                b"default/skill/pdf",
                "crc",
                "artifacts['default/skill/pdf']: CRC32 mismatch",
                id="artifact-crc",
            ),
            pytest.param(
                "artifacts",
                b"default/skill/pdf",
                "format",
                "artifacts['default/skill/pdf']: unknown frame format byte 0x02",
                id="artifact-format-byte",
            ),
            pytest.param(
                "artifacts",
                b"default/skill/pdf",
                "short",
                "artifacts['default/skill/pdf']: frame too short (3 bytes)",
                id="artifact-short",
            ),
            pytest.param("collections", b"default", "crc", None, id="collection-crc"),
            pytest.param("projects", b"", "crc", None, id="project-crc"),
            pytest.param(
                "deployments",
                b"\x00default/skill/pdf\x00claude_code",
                "crc",
                None,
                id="deployment-crc",
            ),
            pytest.param("sources", b"\x00skills/pdf", "crc", None, id="source-crc"),
        ],
    )
    def test_frame_layer_finds_a_flipped_value_and_repair_rereads_it(
        self, shop: ShopWorld, db: str, suffix: bytes, damage: str, message: Optional[str]
    ) -> None:
        """A value failing its frame check is a frame finding; repair re-reads it from source."""
        key = next(k for k, _v in raw_rows(shop.cache_dir, db) if k.endswith(suffix))
        before = records_snapshot(shop.settings)

        def corrupt(txn: Any, dbs: dict[str, Any]) -> None:
            value = txn.get(key, db=dbs[db])
            if damage == "crc":
                flip_last_byte(txn, dbs[db], key)
            elif damage == "format":
                txn.put(key, b"\x02" + value[1:], db=dbs[db])
            else:
                txn.put(key, value[:3], db=dbs[db])

        tamper(shop.cache_dir, corrupt)
        with ProjectCache.open(settings=shop.settings) as cache:
            report = cache.verify(deep=True)
            expected = [
                ("frame", db, key.decode(), message or f"{db}[{key.decode()!r}]: CRC32 mismatch")
            ]
            if db == "projects":  # its deployment now points at a project that does not read
                pid = key.decode()
                expected.append(
                    (
                        "index",
                        "deployments",
                        f"{pid}\x00default/skill/pdf\x00claude_code",
                        f"project {pid} does not exist",
                    )
                )
            assert [(f.kind, f.db, f.key, f.message) for f in report.findings] == expected
            repaired = cache.verify(repair=True)
            assert repaired.ok and repaired.repaired == len(expected)
            assert cache.verify(deep=True).ok
        assert records_snapshot(shop.settings) == before

    @pytest.mark.parametrize(
        ("db", "key", "payload", "message"),
        [
            pytest.param(
                "artifacts",
                b"default/skill/pdf",
                b'{"name": 3}',
                "invalid Artifact: field 'name': Input should be a valid string",
                id="artifact-bad-fields",
            ),
            pytest.param(
                "artifacts",
                b"default/skill/pdf",
                b'{"name": "lint", "type": "command", "collection": "default"}',
                "invalid Artifact: record key 'default/command/lint' differs from its key",
                id="artifact-under-another-key",
            ),
            pytest.param(
                "collections",
                b"default",
                b"not json at all",
                "invalid Collection: Invalid JSON: expected ident at line 1 column 2",
                id="collection-not-json",
            ),
        ],
    )
    def test_model_layer_finds_a_valid_frame_holding_an_invalid_record(
        self, shop: ShopWorld, db: str, key: bytes, payload: bytes, message: str
    ) -> None:
        """A well-framed value that does not validate is a model finding; repair re-reads it."""
        before = records_snapshot(shop.settings)
        tamper(shop.cache_dir, lambda txn, dbs: txn.put(key, frame(payload), db=dbs[db]))
        with ProjectCache.open(settings=shop.settings) as cache:
            report = cache.verify(deep=True)
            assert [(f.kind, f.db, f.key, f.message, f.repairable) for f in report.findings] == [
                ("model", db, key.decode(), message, True)
            ]
            assert cache.verify(repair=True).ok
            assert cache.verify(deep=True).ok
        assert records_snapshot(shop.settings) == before

    @pytest.mark.parametrize("case", list(INDEX_CASES))
    def test_index_layer_finds_dangling_and_missing_entries(
        self, seeded_cache: Seeded, case: str
    ) -> None:
        """Each derived index and deployment check reports its damage exactly; repair fixes it."""
        from pyroaring import BitMap

        from projcache.postings import decode_small, encode_bitmap, encode_small

        operations, expected = INDEX_CASES[case]
        pid = seeded_cache.pid
        pdf = pdf_id(seeded_cache.cache_dir)
        merge_index(seeded_cache.settings)  # bitmaps in search-tokens, where the cases damage
        intact = index_view(seeded_cache.cache_dir)

        def damage(txn: Any, dbs: dict[str, Any]) -> None:
            for operation, db, raw_key, raw_value in operations:
                key, value = (
                    b.replace(b"{pid}", pid.encode()).replace(b"{pdf}", str(pdf).encode())
                    for b in (raw_key, raw_value)
                )
                if operation == "bitmap":
                    txn.put(key, encode_bitmap(BitMap([int(value)])), db=dbs[db])
                elif operation == "unlist":  # drop a field of a small term's postings
                    fields = decode_small(txn.get(key, db=dbs[db]))
                    del fields[value]
                    txn.put(key, encode_small(fields), db=dbs[db])
                elif operation == "put":
                    txn.put(key, value, db=dbs[db])
                elif operation == "delete":
                    assert txn.delete(key, value, db=dbs[db])
                else:  # "state": rewrite the record's state, keeping a valid frame
                    old = unframe(txn.get(key, db=dbs[db]))
                    txn.put(key, frame(old.replace(b'"current"', b'"' + value + b'"')), db=dbs[db])

        tamper(seeded_cache.cache_dir, damage)
        with ProjectCache.open(settings=seeded_cache.settings) as cache:
            report = cache.verify(deep=True)
            found = sorted((f.kind, f.db, f.key, f.message) for f in report.findings)
            assert found == sorted(
                ("index", db, key.format(pid=pid), message.format(pid=pid, pdf=pdf))
                for db, key, message in expected
            )
            repaired = cache.verify(repair=True)
            assert repaired.ok and repaired.repaired == len(expected)
            assert cache.verify(deep=True).findings == []
            assert [(d.project_id, d.state) for d in cache.list_deployments()] == [(pid, "current")]
        assert index_view(seeded_cache.cache_dir) == intact

    def test_sources_option_reports_an_edited_source_file(self, shop: ShopWorld) -> None:
        """verify(sources=True) names the edited artifact's folder; plain verify does not look."""
        folder = shop.collection.artifact_path("skill", "pdf")
        (folder / "SKILL.md").write_text("---\nname: pdf\ndescription: Edited.\n---\n# pdf\n")
        with ProjectCache.open(settings=shop.settings) as cache:
            assert cache.verify(deep=True).ok
            report = cache.verify(sources=True)
            assert [f.model_dump() for f in report.findings] == [
                {
                    "kind": "source",
                    "db": "sources",
                    "key": str(folder),
                    "message": f"{folder} changed on disk since it was read",
                    "repairable": True,
                }
            ]
            assert report.checked["source files"] == report.checked["sources"] > 0
            repaired = cache.verify(repair=True, sources=True)
            assert repaired.ok and repaired.repaired == 1
            assert cache.get_artifact("default/skill/pdf").description == "Edited."
            assert cache.verify(sources=True).ok

    def test_cli_verify_exit_codes_and_json_shape(self, seeded_cache: Seeded) -> None:
        """`verify` exits 0 clean and 1 with findings; --json carries the whole report."""
        where = ["--cache-dir", str(seeded_cache.cache_dir)]
        clean = run_cli([*where, "verify", "--deep"])
        assert clean.exit_code == 0, clean.output
        assert clean.stdout.splitlines() == [
            "checked: artifact-ids 3, artifact-keys 3, artifacts 3, collections 0, "
            "deployments 1, deployments-by-artifact 1, deployments-by-state 1, projects 1, "
            "search-tokens 17, sources 0",
            "ok",
        ]
        assert clean.stderr == ""
        tamper(
            seeded_cache.cache_dir,
            lambda txn, dbs: flip_last_byte(txn, dbs["artifacts"], b"default/skill/docx"),
        )
        found = run_cli([*where, "verify", "--deep", "--json"])
        assert found.exit_code == 1, found.output
        data = json.loads(found.stdout)
        assert sorted(data) == [
            "checked",
            "findings",
            "lost",
            "lost_complete",
            "moved_to",
            "ok",
            "problems",
            "repaired",
            "salvaged",
        ]
        assert data["ok"] is False and data["repaired"] == 0 and data["moved_to"] is None
        assert data["checked"]["artifacts"] == 3
        assert data["findings"] == [
            {
                "kind": "frame",
                "db": "artifacts",
                "key": "default/skill/docx",
                "message": "artifacts['default/skill/docx']: CRC32 mismatch",
                "repairable": True,
            }
        ]
        assert found.stderr == ""

    def test_cli_verify_sources_lists_the_changed_file(self, shop: ShopWorld) -> None:
        """`verify --sources` prints a source finding for an edited file and exits 1."""
        lint = shop.collection.main_file("command", "lint")
        lint.write_text(lint.read_text() + "\nOne more line.\n")
        where = ["--cache-dir", str(shop.cache_dir)]
        assert run_cli([*where, "verify"], env=shop.cli_env()).exit_code == 0
        result = run_cli([*where, "verify", "--sources"], env=shop.cli_env())
        assert result.exit_code == 1, result.output
        lines = result.stdout.splitlines()
        assert lines[1:] == [
            f"source: sources {lint}: {lint} changed on disk since it was read",
            "1 problem(s) found",
        ]
        assert "source files 8" in lines[0]
        assert result.stderr == ""
