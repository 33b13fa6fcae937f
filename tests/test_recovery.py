"""Repair and recovery of a damaged cache (issue scenarios 1-3, 10; issue 12 item 9).

``verify(repair=True)`` rebuilds derived indexes, re-reads bad records from their
source and moves a damaged environment aside, carrying over every record that still
reads (``recovery.py``, ``salvage.py``); opening a damaged cache raises
``CacheCorruptError`` or, with ``auto_repair``, rebuilds and goes on; the exact
messages and log records a user sees.  Every test breaks a real cache on purpose.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import re
import stat
import string
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import lmdb
import lmdb.verify
import pytest

from clirun import run_cli, run_command
from damage import (
    BAD_PGNO,
    artifact_keys,
    branch_children,
    break_page_header,
    capture_logs,
    corrupt_dirs,
    db_root_page,
    flip_last_byte,
    garbage_over_metas,
    index_view,
    leaf_keys,
    log_records,
    merge_index,
    raw_rows,
    records_snapshot,
    tamper,
)
from factories import DIRECT_KEY, WORLD_KEYS, CollectionBuilder, ProjectBuilder, Seeded, ShopWorld
from projcache import ProjectCache
from projcache import recovery as recovery_module
from projcache.codec import deployment_key, encode, frame
from projcache.config import Settings, load_settings
from projcache.errors import (
    CacheCorruptError,
    CorruptRecordError,
)
from projcache.models import VerifyReport
from projcache.vocabulary import DERIVED_DBS

REPAIR_HINT = (
    "Run `projcache verify --repair` (the damaged files are kept aside), "
    "or set PROJCACHE_AUTO_REPAIR=true."
)
CORRUPT_NAME = re.compile(r"^cache\.corrupt-\d{8}T\d{6}Z(-\d+)?$")


RECORD_COUNTS = ("collections", "projects", "artifacts", "deployments")


# -- 2. repair -------------------------------------------------------------------------------


class TestRepair:
    """Repair rebuilds what is derived, re-reads what has a source, keeps what still reads."""

    def test_repair_rebuilds_every_derived_index_from_the_records(
        self, seeded_cache: Seeded
    ) -> None:
        """With every derived index emptied, repair restores what they say."""
        derived = DERIVED_DBS
        intact = index_view(seeded_cache.cache_dir)

        def empty(txn: Any, dbs: dict[str, Any]) -> None:
            for db in derived:
                txn.drop(dbs[db], delete=False)

        tamper(seeded_cache.cache_dir, empty)
        with ProjectCache.open(settings=seeded_cache.settings) as cache:
            assert cache.search("pdf").total == 0
            report = cache.verify(deep=True)
            # Every artifact lacks its id; every deployment index entry is missing.
            missing = len(intact["ids"]) + sum(
                len(intact[db]) for db in ("deployments-by-artifact", "deployments-by-state")
            )
            assert len(report.findings) == missing
            assert {f.kind for f in report.findings} == {"index"}
            assert {f.db for f in report.findings} == {
                "artifact-ids",
                "deployments-by-artifact",
                "deployments-by-state",
            }
            assert cache.verify(repair=True).repaired == missing
            assert cache.search("pdf").total == 1
        assert index_view(seeded_cache.cache_dir) == intact

    def test_repair_drops_bad_records_and_rereads_them_from_source(
        self, shop: ShopWorld, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A frame-broken and a model-broken artifact come back from source, content intact."""
        capture_logs(caplog)
        before = records_snapshot(shop.settings)

        def damage(txn: Any, dbs: dict[str, Any]) -> None:
            flip_last_byte(txn, dbs["artifacts"], b"default/skill/pdf")
            txn.put(b"default/skill/notes", frame(b'{"name": "notes"}'), db=dbs["artifacts"])

        tamper(shop.cache_dir, damage)
        with ProjectCache.open(settings=shop.settings) as cache:
            report = cache.verify(repair=True)
            assert [(f.kind, f.key) for f in report.findings] == [
                ("model", "default/skill/notes"),
                ("frame", "default/skill/pdf"),
            ]
            assert report.ok and report.repaired == 2
            pdf = cache.get_artifact("default/skill/pdf")
            assert pdf is not None and pdf.description == "Extract quokka text from PDF files."
            assert cache.search("quokka").total == 1
            assert [d.state for d in cache.list_deployments()] == ["current"]
            assert cache.verify(deep=True).ok
        assert records_snapshot(shop.settings) == before
        assert (
            logging.WARNING,
            "verify: frame artifacts default/skill/pdf: "
            "artifacts['default/skill/pdf']: CRC32 mismatch",
        ) in log_records(caplog, "projcache.verify")
        assert not corrupt_dirs(shop.cache_dir)  # repaired in place, nothing moved

    def test_a_bad_record_without_source_is_dropped_and_reported(self, shop: ShopWorld) -> None:
        """A record with no source cannot come back; the finding names it (never silent)."""
        tamper(
            shop.cache_dir,
            lambda txn, dbs: flip_last_byte(txn, dbs["artifacts"], DIRECT_KEY.encode()),
        )
        with ProjectCache.open(settings=shop.settings) as cache:
            report = cache.verify(repair=True)
            assert [(f.kind, f.db, f.key) for f in report.findings] == [
                ("frame", "artifacts", DIRECT_KEY)
            ]
            assert cache.get_artifact(DIRECT_KEY) is None
            assert artifact_keys(cache) == WORLD_KEYS

    def test_file_damage_moves_the_cache_aside_and_carries_every_record_over(
        self, shop: ShopWorld, caplog: pytest.LogCaptureFixture
    ) -> None:
        """verify(repair=True) on a file finding: damaged files kept, all records salvaged."""
        capture_logs(caplog)
        before = records_snapshot(shop.settings)
        counts = {db: len(raw_rows(shop.cache_dir, db)) for db in recovery_module.RECORD_DBS}
        merge_index(shop.settings)  # a merge moves the waiting id mappings into the sub-db
        pgno = break_page_header(shop.cache_dir, "artifact-keys")
        damaged_bytes = (shop.cache_dir / "data.mdb").read_bytes()
        with ProjectCache.open(settings=shop.settings) as cache:
            report = cache.verify(repair=True)
            assert [(f.kind, f.message) for f in report.findings] == [
                ("file", f"main/artifact-keys DB: page {pgno} stores mp_pgno {BAD_PGNO}")
            ]
            assert report.ok and report.repaired == 1
            moved = Path(report.moved_to or "")
            assert moved.parent == shop.cache_dir.parent
            assert CORRUPT_NAME.match(moved.name), moved.name
            assert (moved / "data.mdb").read_bytes() == damaged_bytes  # kept as it was
            assert report.salvaged == counts
            assert report.lost == dict.fromkeys(counts, 0)
            # The same handle now works on the rebuilt environment.
            assert cache.get_artifact(DIRECT_KEY) is not None
            assert cache.verify(deep=True).ok
        assert lmdb.verify.verify(str(shop.cache_dir)) == []
        assert records_snapshot(shop.settings) == before
        kept = sum(counts.values())
        assert log_records(caplog, "projcache.recovery") == [
            (logging.WARNING, f"moved the damaged cache {shop.cache_dir} aside to {moved}"),
            (
                logging.WARNING,
                f"recovered {shop.cache_dir}: moved the damaged cache to {moved}; "
                f"carried over {kept} record(s), lost 0",
            ),
        ]

    def test_partial_damage_keeps_every_record_that_still_reads(
        self, cache_settings: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Records with no source survive a rebuild, except the one whose frame broke: lost 1."""
        capture_logs(caplog)
        records = [
            {"name": f"rec{i}", "type": "skill", "collection": "direct", "tags": [f"t{i % 3}"]}
            for i in range(12)
        ]
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.put_artifacts(records)
            expected = {a.key: a for a in cache.list_artifacts()}
        victim = b"direct/skill/rec7"
        tamper(
            cache_settings.cache_dir,
            lambda txn, dbs: flip_last_byte(txn, dbs["artifacts"], victim),
        )
        merge_index(cache_settings)  # a merge moves the waiting id mappings into the sub-db
        break_page_header(cache_settings.cache_dir, "artifact-ids")
        with ProjectCache.open(settings=cache_settings) as cache:
            report = cache.verify(repair=True)
            # The file layer fails first, so records are left to the salvage child,
            # which finds the broken frame and counts that record as lost.
            assert sorted(f.kind for f in report.findings) == ["file"]
            assert report.salvaged["artifacts"] == 11
            assert report.lost == {
                "collections": 0,
                "projects": 0,
                "artifacts": 1,
                "deployments": 0,
                "sources": 0,
            }
            survivors = {a.key: a for a in cache.list_artifacts()}
            del expected[victim.decode()]
            assert survivors == expected
            assert cache.search("rec3").total == 1
            assert cache.verify(deep=True).ok
        # The lost record is still in the files kept aside (nothing discarded silently).
        moved = Path(report.moved_to or "")
        assert victim in dict(raw_rows(moved, "artifacts"))
        assert (
            logging.WARNING,
            f"recovery lost 1 artifacts record(s) of {cache_settings.cache_dir}",
        ) in log_records(caplog, "projcache.recovery")

    def test_a_destroyed_leaf_loses_only_its_records_and_says_so(
        self, cache_settings: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A destroyed artifacts leaf: other leaves' records survive, its own are reported lost."""
        capture_logs(caplog)
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.put_artifacts(
                [
                    {
                        "name": f"rec{i:02d}",
                        "type": "skill",
                        "collection": "direct",
                        # random letters: deflated frames must still fill several leaves
                        "description": f"record {i} "
                        + "".join(random.Random(i).choices(string.ascii_letters, k=300)),
                    }
                    for i in range(60)
                ]
            )
            expected = {a.key: a for a in cache.list_artifacts()}
        path = cache_settings.cache_dir / "data.mdb"
        data = path.read_bytes()
        psize, root = db_root_page(data, "artifacts")
        leaves = branch_children(data, psize, root)
        assert len(leaves) >= 3, "the artifacts need a branch root over several leaves"
        doomed = leaf_keys(data, psize, leaves[-1])
        with path.open("r+b") as handle:
            handle.seek(leaves[-1] * psize)
            handle.write(bytes(range(256)) * (psize // 256))
        damaged = path.read_bytes()
        with ProjectCache.open(settings=cache_settings) as cache:
            report = cache.verify(repair=True)
            assert report.findings
            assert {(f.kind, f.db) for f in report.findings} == {("file", "data.mdb")}
            # Records were lost: never "ok" (issue 12 item 9), though every finding was repaired.
            assert not report.ok and report.moved_to is not None
            assert report.repaired == len(report.findings)
            assert report.salvaged["artifacts"] == 60 - len(doomed)
            assert report.lost["artifacts"] == len(doomed)
            for key in doomed:
                del expected[key.decode()]
            assert {a.key: a for a in cache.list_artifacts()} == expected
            assert cache.verify(deep=True).ok
        assert (Path(report.moved_to) / "data.mdb").read_bytes() == damaged
        assert (
            logging.WARNING,
            f"recovery lost {len(doomed)} artifacts record(s) of {cache_settings.cache_dir}",
        ) in log_records(caplog, "projcache.recovery")

    def test_verify_of_a_page_with_wild_offsets_reports_instead_of_crashing(
        self, cache_settings: Settings
    ) -> None:
        """Node offsets pointing off the page: `verify` reports it and `--repair` rebuilds.

        Run in child processes: reading such a page through liblmdb can kill the reader.
        """
        with ProjectCache.open(settings=cache_settings) as cache:
            cache.put_artifacts(
                [{"name": f"rec{i}", "type": "skill", "collection": "direct"} for i in range(5)]
            )
        path = cache_settings.cache_dir / "data.mdb"
        psize, pgno = db_root_page(path.read_bytes(), "artifacts")
        with path.open("r+b") as handle:
            handle.seek(pgno * psize + 16)  # the node offsets, right after the page header
            handle.write(b"\xff\x7f" * 5)
        problems = lmdb.verify.verify(str(cache_settings.cache_dir))
        assert problems[0] == f"main/artifacts DB: leaf page {pgno} node 0 header out of bounds"
        script = str(Path(sys.executable).parent / "projcache")
        where = [script, "--cache-dir", str(cache_settings.cache_dir)]
        found = run_command([*where, "verify", "--deep"])
        assert found.returncode == 1, (found.returncode, found.stderr[-2000:])
        assert f"file: data.mdb: {problems[0]}" in found.stdout.splitlines()
        repaired = run_command([*where, "verify", "--repair"])
        # Five records were in the damaged file and none came back: not "ok", exit 1.
        assert repaired.returncode == 1, (repaired.returncode, repaired.stderr[-2000:])
        (moved,) = corrupt_dirs(cache_settings.cache_dir)
        assert f"damaged files kept in {moved}" in repaired.stdout.splitlines()
        assert "carried over 0 record(s), lost 5" in repaired.stdout.splitlines()
        assert "ok" not in repaired.stdout.splitlines()
        with ProjectCache.open(settings=cache_settings) as cache:
            assert cache.verify(deep=True).ok

    def test_cli_verify_repair_rebuilds_an_unopenable_cache(self, shop: ShopWorld) -> None:
        """Garbage over the meta pages: `verify --repair` keeps the files, rebuilds from source."""
        garbage = garbage_over_metas(shop.cache_dir)
        where = ["--cache-dir", str(shop.cache_dir)]
        result = run_cli([*where, "verify", "--repair", "--json"], env=shop.cli_env())
        # Nothing of the file could be read, so what was lost is unknown: never "ok".
        assert result.exit_code == 1, result.output
        data = json.loads(result.stdout)
        (moved,) = corrupt_dirs(shop.cache_dir)
        assert data["ok"] is False and data["repaired"] == 1
        assert data["lost_complete"] is False
        assert data["moved_to"] == str(moved)
        assert (moved / "data.mdb").read_bytes()[: len(garbage)] == garbage
        (finding,) = data["findings"]
        assert finding["kind"] == "file" and finding["db"] == "data.mdb"
        assert finding["message"].startswith(
            f"the environment could not be opened; moved the damaged cache to {moved}; "
            "carried over 0 record(s), "
        )
        assert "(salvage failed: InvalidError: " in finding["message"]
        assert data["salvaged"] == dict.fromkeys(recovery_module.RECORD_DBS, 0)
        with ProjectCache.open(settings=shop.settings) as cache:
            # Everything with a source is back; the record without one is gone.
            assert artifact_keys(cache) == WORLD_KEYS
            assert [d.state for d in cache.list_deployments()] == ["current"]
            assert cache.verify(deep=True).ok

    def test_a_salvage_reader_that_crashes_still_counts_what_it_printed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A reader killed by a wild pointer prints no tally: what it printed was still reached.

        Counting such records as unseen let an older, emptier meta page's state win the
        salvage (it "reached" as many records: none) and every record was reported lost.
        """
        printed = [
            json.dumps({"db": "artifacts", "key": f"k{i}".encode().hex(), "value": "00"})
            for i in range(3)
        ]
        output = ("\n".join(printed) + '\n{"db": "artif').encode()  # cut short by the crash

        def crashed(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
            return subprocess.CompletedProcess(args, -11, stdout=output, stderr=b"")

        monkeypatch.setattr(recovery_module.subprocess, "run", crashed)
        result = recovery_module.RecoveryResult(moved_to=tmp_path)
        records = recovery_module._salvage(tmp_path, result)
        assert [key for _db, key, _value in records] == [b"k0", b"k1", b"k2"]
        assert result.seen["artifacts"] == 3
        assert result.salvaged["artifacts"] == 3
        assert not result.complete
        assert "the salvage reader stopped with status -11" in result.problems

    def test_move_aside_never_reuses_a_name(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two rebuilds within one second keep both damaged copies (a numeric suffix)."""

        class _FrozenClock:
            @staticmethod
            def gmtime() -> Any:
                return None

            @staticmethod
            def strftime(fmt: str, when: Any = None) -> str:
                return "20260101T000000Z"

        monkeypatch.setattr(recovery_module, "time", _FrozenClock)
        cache_dir = tmp_path / "cache"
        moved = []
        for round_ in range(3):
            cache_dir.mkdir()
            (cache_dir / "data.mdb").write_text(f"round {round_}")
            moved.append(recovery_module.move_aside(cache_dir))
        assert [p.name for p in moved] == [
            "cache.corrupt-20260101T000000Z",
            "cache.corrupt-20260101T000000Z-2",
            "cache.corrupt-20260101T000000Z-3",
        ]
        assert [(p / "data.mdb").read_text() for p in moved] == ["round 0", "round 1", "round 2"]


# -- 3. opening a damaged cache ------------------------------------------------------------


class TestOpeningDamaged:
    """Opening never hands out a damaged cache silently; auto_repair rebuilds it."""

    def test_opening_an_unopenable_cache_raises_with_the_repair_hint(self, shop: ShopWorld) -> None:
        """Garbage over both meta pages: CacheCorruptError naming the dir, nothing moved."""
        garbage_over_metas(shop.cache_dir)
        damaged = (shop.cache_dir / "data.mdb").read_bytes()
        for readonly in (False, True):
            with pytest.raises(CacheCorruptError) as info:
                ProjectCache.open(settings=shop.settings, readonly=readonly)
            assert str(info.value).startswith(
                f"the cache in {shop.cache_dir} is damaged: "
                "the files are not a valid LMDB environment"
            )
            assert info.value.hint == REPAIR_HINT
            assert info.value.exit_code == 7
        assert not corrupt_dirs(shop.cache_dir)
        assert (shop.cache_dir / "data.mdb").read_bytes() == damaged

    def test_auto_repair_rebuilds_and_goes_on(
        self, shop: ShopWorld, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With auto_repair the open moves the damage aside, rebuilds from source and works."""
        capture_logs(caplog)
        garbage_over_metas(shop.cache_dir)
        settings = dataclasses.replace(shop.settings, auto_repair=True)
        with ProjectCache.open(settings=settings) as cache:
            assert artifact_keys(cache) == WORLD_KEYS
            assert cache.search("quokka").total == 1
            assert cache.verify(deep=True).ok
        (moved,) = corrupt_dirs(shop.cache_dir)
        assert (moved / "data.mdb").is_file()
        (opened,) = log_records(caplog, "projcache.cache")
        assert opened[1].startswith(
            f"the cache in {shop.cache_dir} is damaged (the files are not a valid LMDB "
        )
        assert opened[1].endswith("); repairing it")
        recovered = log_records(caplog, "projcache.recovery")
        assert recovered[0] == (
            logging.WARNING,
            f"moved the damaged cache {shop.cache_dir} aside to {moved}",
        )
        assert "salvage failed: InvalidError" in recovered[-1][1]

    def test_auto_repair_never_moves_files_for_a_readonly_open(self, shop: ShopWorld) -> None:
        """A read-only open with auto_repair still raises and leaves the files where they are."""
        garbage_over_metas(shop.cache_dir)
        settings = dataclasses.replace(shop.settings, auto_repair=True)
        with pytest.raises(CacheCorruptError):
            ProjectCache.open(settings=settings, readonly=True)
        assert not corrupt_dirs(shop.cache_dir)

    def test_projcache_auto_repair_variable_turns_auto_repair_on(
        self, shop: ShopWorld, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """PROJCACHE_AUTO_REPAIR=true (the hint's advice) makes a plain open repair the cache."""
        env = {"PROJCACHE_AUTO_REPAIR": "true", "HOME": str(shop.root)}
        assert load_settings(env=env).auto_repair is True
        garbage_over_metas(shop.cache_dir)
        for name, value in shop.cli_env().items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("PROJCACHE_AUTO_REPAIR", "true")
        with ProjectCache.open(shop.cache_dir) as cache:
            assert artifact_keys(cache) == WORLD_KEYS

    def test_a_broken_record_raises_on_every_read_path(self, shop: ShopWorld) -> None:
        """A record failing its frame raises CorruptRecordError; garbage is never returned."""

        def damage(txn: Any, dbs: dict[str, Any]) -> None:
            flip_last_byte(txn, dbs["artifacts"], b"default/skill/pdf")
            flip_last_byte(txn, dbs["projects"], shop.project.id.encode())

        tamper(shop.cache_dir, damage)
        with ProjectCache.open(settings=shop.settings, readonly=True) as cache:
            with pytest.raises(CorruptRecordError) as info:
                cache.get_artifact("default/skill/pdf")
            assert str(info.value) == "artifacts['default/skill/pdf']: CRC32 mismatch"
            assert info.value.hint == "Run `projcache verify --repair`."
            assert info.value.exit_code == 7
            reads: list[Callable[[], Any]] = [
                lambda: cache.get_artifact_json("default/skill/pdf"),
                lambda: list(cache.list_artifacts()),
                lambda: list(cache.list_artifacts(tag="docs")),
                lambda: cache.search("quokka"),
                lambda: cache.get_project(shop.project.id),
                lambda: cache.list_projects(),
            ]
            for read in reads:
                with pytest.raises(CorruptRecordError, match="CRC32 mismatch"):
                    read()
            # Records around the broken ones still read.
            assert cache.get_artifact("default/skill/notes") is not None
            assert cache.search("notes").total == 1


# -- 10. messages and logs -------------------------------------------------------------------


class TestMessagesAndLogs:
    """The exact lines a CLI user sees, and the log records the library emits."""

    def test_cli_verify_of_an_unopenable_cache(self, shop: ShopWorld) -> None:
        """`verify` on garbage: exit 7, one `error:` line naming the dir, the repair hint."""
        garbage_over_metas(shop.cache_dir)
        result = run_cli(["--cache-dir", str(shop.cache_dir), "verify"], shop.cli_env())
        assert result.exit_code == 7
        assert result.stdout == ""
        d = shop.cache_dir
        assert result.stderr.splitlines() == [
            f"error: the cache in {d} is damaged: the files are not a valid LMDB environment: "
            "MDB_INVALID: File is not an LMDB file",
            f"hint: {REPAIR_HINT}",
        ]

    def test_cli_verify_of_an_unopenable_cache_named_relatively(
        self, shop: ShopWorld, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relative --cache-dir: the message names the absolute directory, unmangled."""
        garbage_over_metas(shop.cache_dir)
        monkeypatch.chdir(shop.cache_dir.parent)
        relative = shop.cache_dir.name
        result = run_cli(["--cache-dir", relative, "verify"], shop.cli_env())
        assert result.exit_code == 7
        d = shop.cache_dir.resolve()
        assert result.stderr.splitlines()[0] == (
            f"error: the cache in {d} is damaged: the files are not a valid LMDB environment: "
            "MDB_INVALID: File is not an LMDB file"
        )

    def test_cli_get_of_a_broken_record(self, shop: ShopWorld) -> None:
        """`get` of a record failing its frame: exit 7, the record named, the repair hint."""
        tamper(
            shop.cache_dir,
            lambda txn, dbs: flip_last_byte(txn, dbs["artifacts"], b"default/skill/pdf"),
        )
        where = ["--cache-dir", str(shop.cache_dir)]
        result = run_cli([*where, "get", "default/skill/pdf"], shop.cli_env())
        assert result.exit_code == 7
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            "error: artifacts['default/skill/pdf']: CRC32 mismatch",
            "hint: Run `projcache verify --repair`.",
        ]

    def test_cli_verify_repair_of_file_damage_prints_what_it_kept(self, shop: ShopWorld) -> None:
        """`verify --repair` after page damage prints the finding, where the files went, counts."""
        pgno = break_page_header(shop.cache_dir, "search-pending")
        kept = sum(len(raw_rows(shop.cache_dir, db)) for db in recovery_module.RECORD_DBS)
        where = ["--cache-dir", str(shop.cache_dir)]
        result = run_cli([*where, "verify", "--repair"], shop.cli_env())
        assert result.exit_code == 0, result.output
        (moved,) = corrupt_dirs(shop.cache_dir)
        lines = result.stdout.splitlines()
        assert lines[0] == "checked: the file only (records are not read from a damaged file)"
        assert lines[1:] == [
            f"file: data.mdb: main/search-pending DB: page {pgno} stores mp_pgno {BAD_PGNO}",
            "repaired 1 finding(s)",
            f"damaged files kept in {moved}",
            f"carried over {kept} record(s), lost 0",
            "ok",
        ]
        assert result.stderr == ""

    def test_installed_cli_logs_recovery_only_with_debug(self, shop: ShopWorld) -> None:
        """The real script keeps stderr clean on repair; --debug shows the recovery warnings."""
        script = Path(sys.executable).parent / "projcache"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROJCACHE_")}
        env.update({k: v for k, v in shop.cli_env().items() if v is not None})
        outputs = []
        for debug in ([], ["--debug"]):
            garbage_over_metas(shop.cache_dir)
            args = [str(script), *debug, "--cache-dir", str(shop.cache_dir), "verify"]
            done = subprocess.run(
                [*args, "--repair"],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                env=env,
                check=False,
            )
            # Nothing of the file reads, so what was lost is unknown: exit 1, never "ok".
            assert done.returncode == 1, done.stderr
            outputs.append(done.stderr)
        quiet, loud = outputs
        assert quiet == ""
        moved = corrupt_dirs(shop.cache_dir)[-1]
        assert (
            f"WARNING projcache.recovery: moved the damaged cache {shop.cache_dir} aside to {moved}"
        ) in loud.splitlines()
        assert any(
            line.startswith(f"WARNING projcache.recovery: recovered {shop.cache_dir}: ")
            for line in loud.splitlines()
        )

    def test_verify_logs_each_finding_and_repair_logs_dropped_deployments(
        self, seeded_cache: Seeded, caplog: pytest.LogCaptureFixture
    ) -> None:
        """projcache.verify logs one warning per finding and one per deployment repair drops."""
        from pyroaring import BitMap

        capture_logs(caplog)
        orphan = deployment_key("f" * 16, "default/skill/pdf")

        def damage(txn: Any, dbs: dict[str, Any]) -> None:
            txn.put(
                b"ghost\x00d\x00\x00", b"\x02" + BitMap([7]).serialize(), db=dbs["search-tokens"]
            )
            record = {"project_id": "f" * 16, "artifact_key": "default/skill/pdf"}
            txn.put(orphan, encode(record), db=dbs["deployments"])

        tamper(seeded_cache.cache_dir, damage)
        with ProjectCache.open(settings=seeded_cache.settings) as cache:
            report = cache.verify(repair=True)
        # The repair runs before the report is logged, so its warning comes first.
        assert log_records(caplog, "projcache.verify") == [
            (
                logging.WARNING,
                "repair dropped deployment ffffffffffffffff\x00default/skill/pdf\x00claude_code "
                "of a missing project",
            ),
            *[
                (logging.WARNING, f"verify: {f.kind} {f.db} {f.key}: {f.message}")
                for f in report.findings
            ],
        ]
        assert isinstance(report, VerifyReport) and report.ok


# == repair that never lies (issue 12 item 9) ================================================
#
# A cache filled only from folders named on the command line (`refresh --collection DIR
# --project DIR`, the way the docs show), then one byte of a meta page flipped.  The
# configuration knows none of those folders, so a rebuild "from the configured roots"
# re-reads nothing: 0.1.0 said "ok" with 0 of N artifacts.

NEVER_LIES_SKILLS = 40


@dataclass
class NeverLies:
    cache_dir: Path
    collection: CollectionBuilder
    project: ProjectBuilder
    settings: Settings

    def cli(self, *args: str) -> Any:
        """Run the CLI in a child process, with no config and no configured roots."""
        projcache = str(Path(sys.executable).parent / "projcache")
        return run_command(
            [projcache, "--cache-dir", str(self.cache_dir), *args],
            env={"PROJCACHE_COLLECTIONS": ""},
            timeout=300,
        )

    def counts(self) -> dict[str, int]:
        with ProjectCache.open(settings=self.settings, readonly=True) as cache:
            return cache.counts()

    def flip_meta(self, which: str, offset: int) -> int:
        """Flip one byte of the ``committed`` or ``older`` meta page; return its page number."""
        data = self.cache_dir / "data.mdb"
        head = data.read_bytes()[:8192]
        txnids = [struct.unpack_from("=Q", head, page * 4096 + 144)[0] for page in (0, 1)]
        committed = 0 if txnids[0] > txnids[1] else 1
        page = committed if which == "committed" else 1 - committed
        with data.open("r+b") as handle:
            handle.seek(page * 4096 + offset)
            byte = handle.read(1)[0]
            handle.seek(page * 4096 + offset)
            handle.write(bytes([byte ^ 0xFF]))
        return page


@pytest.fixture
def never_lies(tmp_path: Path) -> NeverLies:
    """A cache refreshed by the CLI from a collection and a project named on the command line."""
    collection = CollectionBuilder(tmp_path / "src", "big")
    for i in range(NEVER_LIES_SKILLS):
        collection.skill(f"s{i:02d}", front_matter={"name": f"s{i:02d}", "description": f"n {i}"})
    collection.write()
    project = ProjectBuilder(tmp_path / "src", "shop")
    project.deploy(collection, "skill", "s01")
    project.write()
    cache_dir = tmp_path / "cache"
    settings = Settings(cache_dir=cache_dir, collection_roots=(), project_roots=())
    world = NeverLies(cache_dir, collection, project, settings)
    done = world.cli(
        "refresh", "--collection", str(collection.path), "--project", str(project.path)
    )
    assert done.returncode == 0, done.stderr
    assert world.counts()["artifacts"] == NEVER_LIES_SKILLS
    return world


class TestRepairNeverLies:
    """Repair keeps what the file still holds, re-reads every remembered root, and never says
    "ok" with fewer records than before."""

    @pytest.mark.parametrize("which", ["committed", "older"])
    @pytest.mark.parametrize("offset", [16, 40], ids=["magic", "page-size"])
    def test_a_flipped_meta_byte_keeps_every_record(
        self, never_lies: NeverLies, which: str, offset: int
    ) -> None:
        """The other meta page (or the damaged one, repaired) brings back N of N: exit 0, ok."""
        before = never_lies.counts()
        never_lies.flip_meta(which, offset)
        done = never_lies.cli("verify", "--repair")
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert lines[-1] == "ok"
        (moved,) = corrupt_dirs(never_lies.cache_dir)
        assert f"damaged files kept in {moved}" in lines
        assert any(line.endswith(", lost 0") for line in lines), lines
        after = never_lies.counts()
        assert {k: after[k] for k in RECORD_COUNTS} == {k: before[k] for k in RECORD_COUNTS}

    def test_a_broken_root_pointer_rebuilds_from_the_remembered_roots(
        self, never_lies: NeverLies
    ) -> None:
        """The last commit's tree is unreachable: records come from the state one commit
        earlier plus every remembered source folder; since what the last commit held cannot
        be known, repair does not claim "ok" (exit 1) although every record is back."""
        before = never_lies.counts()
        never_lies.flip_meta("committed", 16 + 24 + 48 + 40 + 2)  # the main tree's root page
        done = never_lies.cli("verify", "--repair")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "ok" not in done.stdout.splitlines()
        after = never_lies.counts()
        assert {k: after[k] for k in RECORD_COUNTS} == {k: before[k] for k in RECORD_COUNTS}

    def test_records_that_cannot_come_back_are_counted_and_repair_fails(
        self, never_lies: NeverLies
    ) -> None:
        """A record with no source, written in the last commit, whose leaf page is then
        destroyed: exit 1, "lost 1", the damaged copy kept (and still holding the record)."""
        with ProjectCache.open(settings=never_lies.settings) as cache:
            cache.put_artifacts([{"name": "orphan", "type": "skill", "collection": "direct"}])
        before = never_lies.counts()
        path = never_lies.cache_dir / "data.mdb"
        data = path.read_bytes()
        psize, root = db_root_page(data, "artifacts")
        (leaf,) = [
            pgno
            for pgno in branch_children(data, psize, root)
            if b"direct/skill/orphan" in leaf_keys(data, psize, pgno)
        ]
        with path.open("r+b") as handle:
            handle.seek(leaf * psize)
            handle.write(bytes(range(256)) * (psize // 256))
        damaged = path.read_bytes()
        done = never_lies.cli("verify", "--repair", "--json")
        assert done.returncode == 1, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert report["ok"] is False
        assert report["lost"]["artifacts"] == 1 and report["lost_complete"] is True
        moved = Path(report["moved_to"])
        assert (moved / "data.mdb").read_bytes() == damaged  # kept as it was, for inspection
        after = never_lies.counts()
        assert after["artifacts"] == before["artifacts"] - 1

    def test_the_cache_remembers_its_roots_in_meta_and_a_side_file(
        self, never_lies: NeverLies
    ) -> None:
        """source_roots() lists the folders given to refresh; roots.json is 0600 and is read
        without opening the cache (it survives damage to data.mdb)."""
        from projcache.roots import SourceRoots, read_side_file

        expected = SourceRoots(
            collections=(str(never_lies.collection.path),), projects=(str(never_lies.project.path),)
        )
        with ProjectCache.open(settings=never_lies.settings) as cache:
            assert cache.source_roots() == expected
        side = never_lies.cache_dir / "roots.json"
        assert stat.S_IMODE(side.stat().st_mode) == 0o600
        assert json.loads(side.read_text()) == {
            "collections": [str(never_lies.collection.path)],
            "projects": [str(never_lies.project.path)],
        }
        (never_lies.cache_dir / "data.mdb").write_bytes(b"\0" * 8192)  # wreck the cache
        assert read_side_file(never_lies.cache_dir) == expected
