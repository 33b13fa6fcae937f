"""Stat summaries: an unchanged collection told by one walk's digest, never a change missed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from factories import CollectionBuilder, age, with_roots
from projcache import ProjectCache, refresh_units
from projcache.config import Settings
from projcache.refresh_writes import STAT_SUMMARY
from projcache.sources.statdigest import part_hash, stat_part, walk_digest


@pytest.fixture
def cache_settings(cache_settings: Settings, tree: Path) -> Settings:
    """The conftest settings, with collection and project roots in ``tree``."""
    return with_roots(cache_settings, tree)


@pytest.fixture
def collection(tree: Path) -> CollectionBuilder:
    """A collection of skills (folders), commands and agents (files), aged (trusted)."""
    built = CollectionBuilder(tree / "collections", "default")
    for index in range(4):
        built.skill(f"skill-{index}", files={"reference.md": f"# Ref {index}\n"})
        built.command(f"command-{index}", tags=["t"])
    built.agent("auditor")
    built.command("scratch", managed=False)
    # A managed artifact outside the layout's folders (its path in collection.toml).
    built.command("vendored", path="vendor/vendored.md")
    (built.path / "vendor").mkdir()
    (built.path / "commands" / "vendored.md").rename(built.path / "vendor" / "vendored.md")
    built.write()
    age(tree)
    return built


class Surveys:
    """Counts the surveys a refresh runs (what a usable summary saves)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = refresh_units.survey_collection

        def counting(tracker: Any) -> Any:
            self.count += 1
            return original(tracker)

        monkeypatch.setattr(refresh_units, "survey_collection", counting)


@pytest.fixture
def surveys(monkeypatch: pytest.MonkeyPatch) -> Surveys:
    """Count ``survey_collection`` calls."""
    return Surveys(monkeypatch)


def summary_of(cache: ProjectCache, path: Path) -> Any:
    """The stored stat summary of the collection folder at ``path`` (``None``: none)."""
    unit = refresh_units.collection_unit(str(path))
    return cache._read(lambda txn: cache._repos.meta.get(txn, STAT_SUMMARY + unit))


def summarized(cache: ProjectCache, path: Path, refreshes: int = 2) -> Any:
    """Refresh ``refreshes`` times (the second leaves a summary); the summary of ``path``."""
    for _ in range(refreshes):
        cache.refresh()
    return summary_of(cache, path)


def put_summary(cache: ProjectCache, path: Path, value: Any) -> str:
    """Store ``value`` as the stat summary of the collection folder at ``path``; its key."""
    key = STAT_SUMMARY + refresh_units.collection_unit(str(path))
    cache._write(lambda txn: cache._repos.meta.put(txn, key, value))
    return key


def rewrite(path: Path, text: str) -> None:
    """Replace ``path``'s text and move its mtime an hour back (out of the racy window)."""
    path.write_text(text, encoding="utf-8")
    when = time.time_ns() - 3600 * 10**9 + 123
    os.utime(path, ns=(when, when))


@pytest.fixture
def listable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folders changed 50 ms ago count as settled for their listings (not 2 s): tests wait less.

    Waits that long, so that the folders just built are out of the shortened window.
    """
    from projcache.sources import statdigest

    monkeypatch.setattr(statdigest, "_LISTING_WINDOW_NS", 50_000_000)
    time.sleep(0.06)


def artifacts(cache: ProjectCache) -> dict[str, Any]:
    """Every artifact record, as JSON, without its refresh time."""
    return {
        a.key: a.model_dump(mode="json", exclude={"updated_at", "refreshed_at"})
        for a in cache.list_artifacts()
    }


class TestUnchanged:
    """A collection whose walk matches its summary is settled without a survey."""

    def test_the_third_refresh_runs_no_survey(
        self, cache: ProjectCache, collection: CollectionBuilder, surveys: Surveys
    ) -> None:
        """First read, then a survey that leaves a summary, then only the walk; same report."""
        first = cache.refresh()
        assert summary_of(cache, collection.path) is None  # a first read surveys nothing
        second = cache.refresh()
        assert surveys.count == 1 and summary_of(cache, collection.path) is not None
        before = cache.get_collection("default")
        third = cache.refresh()
        assert surveys.count == 1  # the summary settled it
        assert third.sources_checked == second.sources_checked == first.sources_checked
        assert (third.sources_changed, third.errors, third.artifacts_written) == (0, [], 0)
        after = cache.get_collection("default")
        assert before is not None and after is not None
        assert after.refreshed_at > before.refreshed_at

    def test_a_summary_made_against_other_fingerprints_is_not_used(
        self, cache: ProjectCache, collection: CollectionBuilder, surveys: Surveys
    ) -> None:
        """The summary vouches only for the fingerprints it was made from (their hash)."""
        stored = summarized(cache, collection.path)
        put_summary(cache, collection.path, {**stored, "fingerprints": "0" * 32})
        surveys.count = 0
        cache.refresh()
        assert surveys.count == 1

    @pytest.mark.parametrize("value", [None, [], "x", {"fingerprints": 1}, {"digest": None}])
    def test_a_malformed_summary_only_costs_a_survey(
        self, cache: ProjectCache, collection: CollectionBuilder, surveys: Surveys, value: Any
    ) -> None:
        """Whatever is stored under the key, the refresh surveys and answers as usual."""
        first = cache.refresh()
        put_summary(cache, collection.path, value)
        report = cache.refresh()
        assert surveys.count == 1
        assert (report.sources_checked, report.sources_changed) == (first.sources_checked, 0)

    def test_a_damaged_summary_frame_only_costs_a_survey(
        self, cache: ProjectCache, collection: CollectionBuilder, surveys: Surveys
    ) -> None:
        """A summary whose frame fails its CRC is not used (and the refresh does not fail)."""
        cache.refresh()
        cache.refresh()
        unit = refresh_units.collection_unit(str(collection.path))
        key = (STAT_SUMMARY + unit).encode()
        db = cache._storage.dbs["meta"]
        raw = bytearray(cache._read(lambda txn: bytes(txn.get(key, db=db))))
        raw[-1] ^= 0xFF
        cache._write(lambda txn: txn.put(key, bytes(raw), db=db))
        surveys.count = 0
        report = cache.refresh()
        assert surveys.count == 1 and report.errors == []

    def test_a_removed_collection_takes_its_summary_along(
        self, cache: ProjectCache, collection: CollectionBuilder
    ) -> None:
        """Gone from disk: its records, fingerprints and summary are removed."""
        cache.refresh()
        cache.refresh()
        assert summary_of(cache, collection.path) is not None
        shutil.rmtree(collection.path)
        cache.refresh()
        assert summary_of(cache, collection.path) is None


# Each change: (what it does to the collection, whether the refresh reads anything).
def _edit_skill_file(c: CollectionBuilder) -> None:
    rewrite(c.artifact_path("skill", "skill-1") / "reference.md", "# Other\n")


def _edit_command_same_size(c: CollectionBuilder) -> None:
    path = c.main_file("command", "command-2")
    text = path.read_text(encoding="utf-8")
    rewrite(path, text.replace("command-2", "COMMAND-2", 1))


def _add_command(c: CollectionBuilder) -> None:
    c.command("added")
    c.write()
    age(c.path)


def _add_unlisted_file(c: CollectionBuilder) -> None:
    (c.path / "commands" / "stray.md").write_text("# Stray\n", encoding="utf-8")
    age(c.path)


def _remove_skill(c: CollectionBuilder) -> None:
    c.remove("skill", "skill-3")
    c.write()
    age(c.path)


def _remove_skill_keep_entry(c: CollectionBuilder) -> None:
    c.remove("skill", "skill-0", keep_entry=True)
    age(c.path)


def _edit_manifest(c: CollectionBuilder) -> None:
    c.command("command-1", tags=["other"])
    c.write()
    age(c.path)


def _remove_lock(c: CollectionBuilder) -> None:
    (c.path / "collection.lock").unlink()


def _add_dotfile(c: CollectionBuilder) -> None:
    (c.path / "skills" / ".DS_Store").write_text("x", encoding="utf-8")


def _add_link(c: CollectionBuilder) -> None:
    (c.path / "commands" / "linked.md").symlink_to(c.main_file("command", "command-0"))


def _replace_file_by_folder(c: CollectionBuilder) -> None:
    path = c.main_file("agent", "auditor")
    text = path.read_text(encoding="utf-8")
    path.unlink()
    path.mkdir()
    (path / "AGENT.md").write_text(text, encoding="utf-8")
    age(c.path)


def _edit_vendored(c: CollectionBuilder) -> None:
    rewrite(c.path / "vendor" / "vendored.md", "---\nname: vendored\n---\n# Moved on\n")


def _remove_vendored(c: CollectionBuilder) -> None:
    (c.path / "vendor" / "vendored.md").unlink()


def _dangling_lock_link(c: CollectionBuilder) -> None:
    (c.path / "collection.lock").unlink()
    (c.path / "collection.lock").symlink_to(c.path / "nowhere.lock")


def _touch_folder_only(c: CollectionBuilder) -> None:
    age(c.artifact_path("skill", "skill-2"), seconds=7200)


def _add_file_to_skill_keep_folder_mtime(c: CollectionBuilder) -> None:
    folder = c.artifact_path("skill", "skill-2")
    before = folder.stat()
    (folder / "notes.md").write_text("# Notes\n", encoding="utf-8")
    age(folder / "notes.md")
    os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))  # (its ctime moves still)


def _remove_skill_file_keep_folder_mtime(c: CollectionBuilder) -> None:
    folder = c.artifact_path("skill", "skill-1")
    before = folder.stat()
    (folder / "reference.md").unlink()
    os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))


def _replace_skill_file_by_folder(c: CollectionBuilder) -> None:
    folder = c.artifact_path("skill", "skill-3")
    (folder / "reference.md").unlink()
    (folder / "reference.md").mkdir()
    (folder / "reference.md" / "part.md").write_text("# Part\n", encoding="utf-8")
    age(folder)


def _replace_skill_folder(c: CollectionBuilder) -> None:
    folder = c.artifact_path("skill", "skill-0")
    other = folder.with_name("skill-0.new")
    shutil.copytree(folder, other)
    (other / "extra.md").write_text("# Extra\n", encoding="utf-8")
    shutil.rmtree(folder)
    other.rename(folder)
    age(folder)


CHANGES: dict[str, Callable[[CollectionBuilder], None]] = {
    "edit a skill's file": _edit_skill_file,
    "edit a command, same size": _edit_command_same_size,
    "add a command": _add_command,
    "add an unlisted file": _add_unlisted_file,
    "remove a skill": _remove_skill,
    "remove a skill, keep its entry": _remove_skill_keep_entry,
    "edit collection.toml": _edit_manifest,
    "remove collection.lock": _remove_lock,
    "add a dotfile": _add_dotfile,
    "add a link": _add_link,
    "replace a file by a folder": _replace_file_by_folder,
    "age a folder's files": _touch_folder_only,
    "add a file to a skill, its folder's mtime put back": _add_file_to_skill_keep_folder_mtime,
    "remove a skill's file, its folder's mtime put back": _remove_skill_file_keep_folder_mtime,
    "replace a skill's file by a folder": _replace_skill_file_by_folder,
    "replace a skill's folder by a copy with one more file": _replace_skill_folder,
    "edit an artifact outside the layout": _edit_vendored,
    "remove an artifact outside the layout": _remove_vendored,
    "collection.lock a dangling link": _dangling_lock_link,
}


class TestEveryChangeIsSeen:
    """With a summary stored, each change gives what the survey alone gives."""

    @pytest.mark.parametrize("name", sorted(CHANGES))
    def test_same_answer_as_without_summaries(
        self,
        name: str,
        tmp_path: Path,
        collection: CollectionBuilder,
        listable: None,
    ) -> None:
        """Two caches of one tree, one never using summaries: same reports, same records."""
        roots = [collection.path.parent]
        without = Settings(cache_dir=tmp_path / "without", collection_roots=roots)
        with_ = Settings(cache_dir=tmp_path / "with", collection_roots=roots)
        reports: dict[str, list[Any]] = {"with": [], "without": []}
        records: dict[str, Any] = {}

        def refresh_both() -> None:
            for label, settings in (("with", with_), ("without", without)):
                with pytest.MonkeyPatch.context() as patch:
                    if label == "without":
                        patch.setattr(
                            refresh_units.StatSummary, "from_json", classmethod(lambda *a: None)
                        )
                    with ProjectCache.open(settings=settings) as cache:
                        report = cache.refresh()
                        reports[label].append(
                            (
                                report.sources_checked,
                                report.sources_changed,
                                report.artifacts_written,
                                report.artifacts_removed,
                                sorted(e.message for e in report.errors),
                            )
                        )
                        records[label] = artifacts(cache)

        refresh_both()
        refresh_both()  # (the one with summaries stores one here)
        refresh_both()  # (its walk lists the folders of files: the next walk only stats them)
        time.sleep(0.06)  # (the change lands out of the shortened window)
        CHANGES[name](collection)
        refresh_both()
        refresh_both()
        assert reports["with"] == reports["without"]
        assert records["with"] == records["without"]


class TestChangedFromSummary:
    """A walk that differs from the summary in a few sources: only those are looked at."""

    def test_an_edit_is_read_without_a_survey(
        self,
        cache: ProjectCache,
        collection: CollectionBuilder,
        surveys: Surveys,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """One skill file edited: one source compared, one re-read, no survey of the others."""
        from projcache.sources.tracker import SourceTracker

        cache.refresh()
        first = cache.refresh()
        looked: list[str] = []
        original = SourceTracker.quick

        def counting(self: SourceTracker, relative: str, *args: Any) -> bool:
            looked.append(relative)
            return original(self, relative, *args)

        monkeypatch.setattr(SourceTracker, "quick", counting)
        _edit_skill_file(collection)
        surveys.count = 0
        report = cache.refresh()
        assert surveys.count == 0
        assert looked == ["skills/skill-1"]
        assert (report.sources_changed, report.sources_checked) == (1, first.sources_checked)
        assert report.artifacts_written == 1

    def test_a_source_that_came_or_went_takes_the_survey(
        self, cache: ProjectCache, collection: CollectionBuilder, surveys: Surveys
    ) -> None:
        """Another set of sources than the summary names: the survey decides."""
        cache.refresh()
        cache.refresh()
        _add_command(collection)
        surveys.count = 0
        report = cache.refresh()
        assert surveys.count == 1 and report.errors == []
        assert cache.get_artifact("default/command/added") is not None


class TestWrittenSummaries:
    """A changed collection's write leaves a summary when it can vouch for what it wrote."""

    def test_after_a_change_the_next_refresh_runs_no_survey(
        self, cache: ProjectCache, collection: CollectionBuilder, surveys: Surveys
    ) -> None:
        """An edit out of the racy window: the write stores the summary, the next walk settles."""
        cache.refresh()
        cache.refresh()
        _edit_skill_file(collection)
        changed = cache.refresh()
        assert changed.sources_changed == 1
        surveys.count = 0
        report = cache.refresh()
        assert surveys.count == 0
        assert (report.sources_changed, report.sources_checked) == (0, changed.sources_checked)

    def test_a_fresh_edit_leaves_no_summary(
        self, cache: ProjectCache, collection: CollectionBuilder, surveys: Surveys
    ) -> None:
        """An edit within the racy window is not trusted next time: no summary vouches for it."""
        cache.refresh()
        cache.refresh()
        path = collection.main_file("command", "command-3")
        path.write_text(path.read_text(encoding="utf-8") + "More.\n", encoding="utf-8")
        assert cache.refresh().sources_changed == 1
        assert summary_of(cache, collection.path) is None
        surveys.count = 0
        cache.refresh()
        assert surveys.count == 1

    def test_a_written_summary_is_what_the_next_walk_sees(
        self, cache: ProjectCache, collection: CollectionBuilder
    ) -> None:
        """The written summary's parts are the new fingerprints' stats, as a walk sees them."""
        cache.refresh()
        cache.refresh()
        _edit_command_same_size(collection)
        cache.refresh()
        stored = summary_of(cache, collection.path)
        assert stored is not None
        from projcache.sources.collection import walk_collection
        from projcache.sources.fileio import SourceRoot

        assert stored["elsewhere"] == ["vendor/vendored.md"]
        root = SourceRoot(str(collection.path))
        walk = walk_collection(str(collection.path), root, stored["elsewhere"])
        assert walk.digest == stored["digest"]


def bogus_fingerprint(cache: ProjectCache, unit: str, relative: str) -> None:
    """Rewrite one stored fingerprint with an mtime 1 ns off the file's (as another writer)."""
    import orjson

    from projcache import codec
    from projcache.models import Fingerprint

    sources = cache._repos.sources
    key = sources.source_key(unit, relative)

    def body(txn: Any) -> None:
        fields = orjson.loads(codec.unframe(txn.get(key, db=sources.db)))
        fields["mtime_ns"] += 1
        sources.put_raw(txn, key, Fingerprint.model_validate(fields))

    cache._write(body)


def assert_survey_corrects(
    cache: ProjectCache, surveys: Surveys, unit: str, relative: str, target: Path
) -> None:
    """The next refresh surveys the collection once and stores the file's own mtime again."""
    surveys.count = 0
    report = cache.refresh()
    assert surveys.count == 1 and report.errors == []
    sources = cache._repos.sources
    stored = cache._read(lambda txn: dict(sources.scan_unit(txn, unit)))[relative]
    assert stored.mtime_ns == target.stat().st_mtime_ns


@pytest.fixture
def listed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The units whose fingerprints are listed or hashed whole (``unit_frames``, ``unit_hash``)."""
    from projcache.repository import SourceRepository

    units: list[str] = []
    for name in ("unit_frames", "unit_hash"):
        original = getattr(SourceRepository, name)

        def counting(self: SourceRepository, txn: Any, unit: str, original: Any = original) -> Any:
            units.append(unit)
            return original(self, txn, unit)

        monkeypatch.setattr(SourceRepository, name, counting)
    return units


class TestPeek:
    """The summary is checked against a hash of the fingerprints, known or worked out."""

    def test_unit_hash_is_the_hash_of_the_units_frames(
        self, cache: ProjectCache, collection: CollectionBuilder, tree: Path
    ) -> None:
        """``unit_hash`` hashes what ``frames_hash(unit_frames)`` does, unit by unit, empty too."""
        other = CollectionBuilder(tree / "collections", "default-2")  # a longer unit name
        other.command("only")
        other.write()
        age(tree)
        cache.refresh()
        sources = cache._repos.sources
        units = [refresh_units.collection_unit(str(p)) for p in (collection.path, other.path)]
        for unit in [*units, "c:none"]:
            frames = cache._read(lambda txn, unit=unit: sources.unit_frames(txn, unit))
            assert (unit == "c:none") == (frames == [])
            hashed = cache._read(lambda txn, unit=unit: sources.unit_hash(txn, unit))
            assert hashed == sources.frames_hash(frames)

    def test_a_settled_collection_reads_no_frames_again(
        self,
        cache: ProjectCache,
        collection: CollectionBuilder,
        surveys: Surveys,
        listed: list[str],
    ) -> None:
        """Found unchanged, nothing committed since: the next refresh neither lists nor hashes.

        The hash is known for the snapshot right after the last refresh's touch; an
        edit still shows in the walk, and then the fingerprints are read.
        """
        summarized(cache, collection.path)
        listed.clear()
        surveys.count = 0
        report = cache.refresh()
        assert (listed, surveys.count, report.sources_changed) == ([], 0, 0)
        _edit_skill_file(collection)
        assert cache.refresh().sources_changed == 1
        assert set(listed) == {refresh_units.collection_unit(str(collection.path))}

    def test_another_handle_hashes_the_fingerprints(
        self, cache: ProjectCache, collection: CollectionBuilder, listed: list[str]
    ) -> None:
        """What one handle remembers is its own: another one (a new process) reads and hashes."""
        summarized(cache, collection.path)
        listed.clear()
        with ProjectCache.open(settings=cache.settings) as other:
            report = other.refresh()
        assert (report.sources_changed, report.errors) == (0, [])
        assert listed == [refresh_units.collection_unit(str(collection.path))]

    def test_a_commit_since_the_last_refresh_makes_it_hash_again(
        self, cache: ProjectCache, collection: CollectionBuilder, surveys: Surveys
    ) -> None:
        """A fingerprint rewritten by another writer after the touch: hashed, the survey judges.

        The remembered hash is for the touch's snapshot only; any commit since moves
        the snapshot, so the rewritten fingerprint (an mtime not the file's) is seen
        and replaced.
        """
        summarized(cache, collection.path)
        cache.refresh()  # (settled by the summary; its hash remembered)
        unit = refresh_units.collection_unit(str(collection.path))
        target = collection.main_file("command", "command-2")
        relative = target.relative_to(collection.path).as_posix()
        bogus_fingerprint(cache, unit, relative)
        assert_survey_corrects(cache, surveys, unit, relative, target)

    def test_a_commit_before_the_touch_is_not_remembered_past(
        self,
        cache: ProjectCache,
        collection: CollectionBuilder,
        surveys: Surveys,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Another writer commits between a unit's reading and the touch: no hash is remembered.

        The fingerprints after the touch are then not the ones found unchanged, so
        the next refresh hashes them, and the rewritten one is seen and replaced.
        """
        summarized(cache, collection.path)
        unit = refresh_units.collection_unit(str(collection.path))
        target = collection.main_file("command", "command-2")
        relative = target.relative_to(collection.path).as_posix()
        original = refresh_units.UnitRefresher.touch

        def write_then_touch(self: refresh_units.UnitRefresher) -> None:
            bogus_fingerprint(cache, unit, relative)
            original(self)

        monkeypatch.setattr(refresh_units.UnitRefresher, "touch", write_then_touch)
        cache.refresh()
        monkeypatch.setattr(refresh_units.UnitRefresher, "touch", original)
        assert_survey_corrects(cache, surveys, unit, relative, target)

    def test_fingerprints_written_after_the_peek_are_not_vouched_for(
        self,
        cache: ProjectCache,
        collection: CollectionBuilder,
        surveys: Surveys,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A fingerprint rewritten during the walk: the survey, not the summary, judges.

        The walk differs from the summary (one edit), so the fingerprints are read
        after it; they are no longer the ones the summary was checked against, so
        the summary must not settle the other sources: the rewritten fingerprint
        (an mtime that is not the file's) is compared with the file and replaced.
        """
        summarized(cache, collection.path)
        unit = refresh_units.collection_unit(str(collection.path))
        target = collection.main_file("command", "command-2")
        relative = target.relative_to(collection.path).as_posix()
        original = refresh_units.walk_collection

        def walk_then_write(*args: Any) -> Any:
            walk = original(*args)
            bogus_fingerprint(cache, unit, relative)
            return walk

        monkeypatch.setattr(refresh_units, "walk_collection", walk_then_write)
        _edit_skill_file(collection)
        assert_survey_corrects(cache, surveys, unit, relative, target)


class TestWalk:
    """The summary's walk sees each source as the survey's stat walk does."""

    @pytest.fixture
    def base(self, tmp_path: Path) -> Path:
        """A collection folder with every kind of entry a layout folder may hold."""
        base = tmp_path / "c"
        skills = base / "skills"
        (skills / "plain" / "scripts" / "deep").mkdir(parents=True)
        (skills / "plain" / "SKILL.md").write_text("# S\n", encoding="utf-8")
        (skills / "plain" / "scripts" / "run.py").write_text("x = 1\n", encoding="utf-8")
        (skills / "plain" / "scripts" / "deep" / "a.txt").write_text("a", encoding="utf-8")
        (skills / "plain" / "scripts-b").write_text("b", encoding="utf-8")
        (skills / "linked").mkdir()
        (skills / "linked" / "SKILL.md").symlink_to(skills / "plain" / "SKILL.md")
        (skills / "empty").mkdir()
        (skills / "fifo").mkdir()
        os.mkfifo(skills / "fifo" / "pipe")
        (skills / "fifo" / "SKILL.md").write_text("# F\n", encoding="utf-8")
        (skills / "big").mkdir()
        (skills / "big" / "SKILL.md").write_text("x" * 5000, encoding="utf-8")
        (skills / "n\u00e4me").mkdir()
        (skills / "n\u00e4me" / "SKILL.md").write_text("# N\n", encoding="utf-8")
        (base / "commands").mkdir()
        (base / "commands" / "c.md").write_text("# C\n", encoding="utf-8")
        (base / "commands" / "large.md").write_text("y" * 5000, encoding="utf-8")
        return base

    @pytest.mark.parametrize("max_bytes", [1 << 20, 4096])
    def test_lean_parts_are_the_stat_walks_parts(self, base: Path, max_bytes: int) -> None:
        """``lean_part`` gives ``stat_part(scan_entry(...))`` or hands the entry over (None)."""
        from projcache.errors import SourceFileError
        from projcache.sources.fileio import SourceRoot, scan_entry
        from projcache.sources.statdigest import lean_part

        root = SourceRoot(str(base), max_bytes=max_bytes)
        told = handed = 0
        for folder in ("skills", "commands"):
            for entry in os.scandir(base / folder):
                relative = f"{folder}/{entry.name}"
                part = lean_part(entry, relative, root)
                try:
                    scan = scan_entry(entry, root)
                except SourceFileError:
                    assert part is None, relative  # (over the limit: scan_entry's error)
                    handed += 1
                    continue
                if part is None:
                    handed += 1
                else:
                    told += 1
                    assert part == stat_part(relative, scan), relative
        assert told >= 5 and handed >= 1

    def test_walk_hashes_name_every_source(self, base: Path) -> None:
        """One hash per source (absent manifests too); any stat change moves the digest."""
        from projcache.sources.fileio import SourceRoot

        def walk() -> Any:
            return walk_digest(
                str(base), SourceRoot(str(base)), ["collection.toml"], ["skills", "commands"], []
            )

        first = walk()
        assert first.digest is not None  # (a link inside, to a file inside: followed)
        assert set(first.hashes) == {
            "collection.toml",
            *(f"skills/{p.name}" for p in (base / "skills").iterdir()),
            "commands/c.md",
            "commands/large.md",
        }
        assert first.hashes["collection.toml"] == part_hash(stat_part("collection.toml", None))
        assert walk() == first
        rewrite(base / "skills" / "plain" / "scripts" / "deep" / "a.txt", "b")
        second = walk()
        assert second.digest != first.digest
        assert {r for r in first.hashes if first.hashes[r] != second.hashes[r]} == {"skills/plain"}

    def test_a_walk_through_listings_sees_what_the_walk_sees(
        self, base: Path, listable: None
    ) -> None:
        """Only folders of plain files get a listing; walking through them gives the same hashes."""
        from projcache.sources.fileio import SourceRoot

        def walk(listings: Any) -> Any:
            return walk_digest(
                str(base), SourceRoot(str(base)), [], ["skills", "commands"], [], listings
            )

        plain = walk(None)
        first = walk({})
        assert (first.digest, first.hashes) == (plain.digest, plain.hashes)
        assert first.relisted and sorted(first.listings) == ["skills/big", "skills/n\u00e4me"]
        again = walk(first.listings)
        assert (again.digest, again.hashes, again.relisted) == (plain.digest, plain.hashes, False)
        time.sleep(0.06)
        (base / "skills" / "big" / "more.md").write_text("m", encoding="utf-8")
        changed = walk(first.listings)
        # (changed just now, within the window: listed, and no listing kept for it)
        assert changed.relisted and "skills/big" not in changed.listings
        assert changed.hashes == walk(None).hashes
        assert changed.hashes["skills/big"] != plain.hashes["skills/big"]


class TestListings:
    """A folder source holding only files is listed once; later walks stat its files by name."""

    @staticmethod
    def listed_skill_folders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """Record every ``os.scandir`` of a path inside a ``skills/`` folder from now on."""
        listed: list[str] = []
        original = os.scandir

        def counting(path: Any = ".") -> Any:
            if isinstance(path, str) and "/skills/" in path:
                listed.append(path)
            return original(path)

        monkeypatch.setattr(os, "scandir", counting)
        return listed

    def test_a_listed_folder_is_not_listed_again(
        self,
        cache: ProjectCache,
        collection: CollectionBuilder,
        surveys: Surveys,
        listable: None,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Survey, walk (keeps the listings), walk (lists no skill folder): the same answer."""
        cache.refresh()
        second = cache.refresh()  # (the survey leaves the summary)
        cache.refresh()  # (the first walk keeps the listings with it)
        stored = summary_of(cache, collection.path)
        assert sorted(stored["listings"]) == [f"skills/skill-{i}" for i in range(4)]
        assert stored["listings"]["skills/skill-0"][3:] == ["SKILL.md", "reference.md"]
        listed = self.listed_skill_folders(monkeypatch)
        surveys.count = 0
        report = cache.refresh()
        assert listed == [] and surveys.count == 0
        assert (report.sources_checked, report.sources_changed) == (second.sources_checked, 0)
        assert summary_of(cache, collection.path) == stored  # (nothing to write back)

    def test_an_edit_in_a_listed_folder_is_read(
        self, cache: ProjectCache, collection: CollectionBuilder, listable: None
    ) -> None:
        """The listing spares the listing, not the files' stats: an edit in place is seen."""
        for _ in range(3):
            cache.refresh()
        assert "skills/skill-1" in summary_of(cache, collection.path)["listings"]
        _edit_skill_file(collection)
        report = cache.refresh()
        assert (report.sources_changed, report.artifacts_written) == (1, 1)

    def test_no_listing_is_kept_for_a_folder_changed_within_the_window(
        self, cache: ProjectCache, collection: CollectionBuilder
    ) -> None:
        """Folders changed in the last 2 s (the collection was just built): no listing yet."""
        stored = summarized(cache, collection.path, 3)
        assert stored is not None and "listings" not in stored

    def test_listings_that_do_not_hold_are_not_used(
        self, cache: ProjectCache, collection: CollectionBuilder, listable: None
    ) -> None:
        """Another folder stat, odd names, not a list: the folder is listed (the right answer)."""
        stored = summarized(cache, collection.path, 3)
        good = stored["listings"]["skills/skill-1"]
        wrong = {
            "skills/skill-0": "SKILL.md",
            "skills/skill-1": [good[0] + 1, *good[1:]],  # (another mtime)
            "skills/skill-2": [*good[:3], "../skill-1/SKILL.md"],
            "skills/skill-3": [*good[:3], 7],
        }
        put_summary(cache, collection.path, {**stored, "listings": wrong})
        report = cache.refresh()
        assert (report.sources_changed, report.errors) == (0, [])
        assert summary_of(cache, collection.path)["listings"] == stored["listings"]


class TestVerify:
    """``verify`` checks that a summary bound to its fingerprints says what they say."""

    def test_summaries_a_refresh_writes_verify_clean(
        self, cache: ProjectCache, collection: CollectionBuilder
    ) -> None:
        """Surveyed, then written after a change: no finding either time."""
        cache.refresh()
        cache.refresh()
        assert summary_of(cache, collection.path) is not None
        assert cache.verify(deep=True).findings == []
        _edit_skill_file(collection)
        cache.refresh()
        assert summary_of(cache, collection.path) is not None
        assert cache.verify(deep=True).findings == []

    def test_a_bound_summary_that_disagrees_is_found_and_repaired(
        self, cache: ProjectCache, collection: CollectionBuilder, surveys: Surveys
    ) -> None:
        """Other stats under the right fingerprints' hash: an index finding; repair drops it."""
        import base64

        stored = summarized(cache, collection.path)
        hashes = bytearray(base64.b64decode(stored["hashes"]))
        hashes[0] ^= 0xFF
        wrong = {**stored, "hashes": base64.b64encode(bytes(hashes)).decode()}
        key = put_summary(cache, collection.path, wrong)
        report = cache.verify(deep=True)
        assert [(f.kind, f.db, f.key) for f in report.findings] == [("index", "meta", key)]
        assert "stat summary holds other stats" in report.findings[0].message
        cache.verify(repair=True)
        assert summary_of(cache, collection.path) is None
        assert cache.verify(deep=True).findings == []
        surveys.count = 0
        cache.refresh()
        assert surveys.count == 1  # (and it leaves a good summary again)
        assert summary_of(cache, collection.path) is not None

    def test_a_stale_summary_is_no_finding(
        self, cache: ProjectCache, collection: CollectionBuilder
    ) -> None:
        """Bound to other fingerprints, a summary is never used: nothing to report."""
        stored = summarized(cache, collection.path)
        put_summary(cache, collection.path, {**stored, "fingerprints": "0" * 32, "hashes": ""})
        assert cache.verify(deep=True).findings == []
