"""Tests of the source readers (``projcache.sources``) and ``projcache.deployment_state``.

Everything is built as real files under ``tmp_path``.  Content hashes are
checked against a reference written here exactly as SkillMeat computes them.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projcache.deployment_state import compare_versions, deployment_state, parse_semver
from projcache.errors import SourceFileError, SourceOutsideRootError, SourceTooLargeError
from projcache.models import Artifact, Deployment, Fingerprint
from projcache.sources import fileio
from projcache.sources.artifacts import build_artifact, facts_reader, hash_reader
from projcache.sources.discovery import (
    find_collections,
    find_projects,
    is_collection,
    is_project,
)
from projcache.sources.fileio import (
    SourceRoot,
    TreeScan,
    read_capped,
    scan_entry,
    scan_tree,
    stat_file,
)
from projcache.sources.frontmatter import first_paragraph, parse_markdown, to_jsonable
from projcache.sources.hashing import content_hash, hash_tree
from projcache.sources.layout import LayoutItem, default_path, find_by_layout, main_file_of
from projcache.sources.manifests import (
    read_collection_lock,
    read_collection_toml,
    read_deployed_toml,
    read_project_toml,
)
from projcache.sources.tracker import RACY_WINDOW_NS, SourceTracker

CAP = 1024 * 1024
HOUR = 3600.0


# --------------------------------------------------------------------------- helpers


def skillmeat_hash(path: Path) -> str:
    """SkillMeat's ``compute_content_hash``, written out as the reference."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
        return h.hexdigest()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def write(path: Path, content: str | bytes = "", *, age: Optional[float] = None) -> Path:
    """Write ``content`` at ``path`` (creating parents); ``age`` seconds sets the mtime back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    if age is not None:
        set_age(path, age)
    return path


def set_age(path: Path, age: float) -> None:
    """Set the access and modification times of ``path`` to ``age`` seconds ago."""
    when = time.time() - age
    os.utime(path, (when, when))


@pytest.fixture
def make_tree(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_tree("name", {"a/b.md": "text"})`` builds a folder under ``tmp_path``."""

    def make(name: str, files: dict[str, str | bytes]) -> Path:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        for relative, content in files.items():
            write(root / relative, content)
        return root

    return make


# --------------------------------------------------------------------------- hashing


class TestContentHash:
    """``content_hash`` agrees bit for bit with SkillMeat's hash."""

    def test_file_is_sha256_of_bytes(self, tmp_path: Path) -> None:
        """A file's hash is the SHA-256 of its bytes, nothing else."""
        path = write(tmp_path / "SKILL.md", b"# hello\n\x00\xff")
        expected = hashlib.sha256(b"# hello\n\x00\xff").hexdigest()
        assert content_hash(path) == expected == skillmeat_hash(path)

    def test_accepts_str_and_pathlike(self, tmp_path: Path) -> None:
        """A ``str`` path and a ``Path`` give the same hash."""
        path = write(tmp_path / "x.md", "x")
        assert content_hash(str(path)) == content_hash(path)

    def test_empty_file(self, tmp_path: Path) -> None:
        """An empty file hashes as SHA-256 of nothing."""
        path = write(tmp_path / "empty.md", b"")
        assert content_hash(path) == hashlib.sha256(b"").hexdigest()

    def test_empty_directory(self, tmp_path: Path) -> None:
        """An empty directory hashes as SHA-256 of nothing, like SkillMeat's."""
        folder = tmp_path / "empty"
        folder.mkdir()
        assert content_hash(folder) == hashlib.sha256().hexdigest() == skillmeat_hash(folder)

    def test_directory_of_only_empty_directories(self, tmp_path: Path) -> None:
        """Empty sub-directories contribute nothing to a directory's hash."""
        folder = tmp_path / "skill"
        (folder / "a" / "b").mkdir(parents=True)
        (folder / "c").mkdir()
        assert content_hash(folder) == hashlib.sha256().hexdigest() == skillmeat_hash(folder)

    def test_nested_directories(self, make_tree: Callable[..., Path]) -> None:
        """Files at several depths are fed in pathlib's order with their relative paths."""
        root = make_tree(
            "skill",
            {
                "SKILL.md": "# Skill\n",
                "scripts/run.py": "print(1)\n",
                "scripts/lib/util.py": "X = 1\n",
                "z/deep/er/file.txt": "deep",
                ".hidden": "dot files count too",
            },
        )
        assert content_hash(root) == skillmeat_hash(root)

    def test_directory_hash_spells_out_paths_and_bytes(
        self, make_tree: Callable[..., Path]
    ) -> None:
        """The directory hash is path then bytes per file, with no separators added."""
        root = make_tree("skill", {"b.md": "B", "a/x.md": "X"})
        expected = hashlib.sha256(b"a/x.md" + b"X" + b"b.md" + b"B").hexdigest()
        assert content_hash(root) == expected

    def test_ordering_by_path_parts_not_by_string(self, make_tree: Callable[..., Path]) -> None:
        """``a/x.md`` sorts before ``a-b/x.md`` (parts order), though '-' < '/' as text."""
        root = make_tree("skill", {"a/x.md": "one", "a-b/x.md": "two", "a.md": "three"})
        assert content_hash(root) == skillmeat_hash(root)
        scan = scan_tree(str(root))
        assert scan is not None
        assert [relative for relative, _ in scan.paths()] == ["a/x.md", "a-b/x.md", "a.md"]
        # The naive order (sorting full path strings) gives a different hash: the case matters.
        naive = hashlib.sha256()
        for relative in sorted(["a/x.md", "a-b/x.md", "a.md"]):
            naive.update(relative.encode())
            naive.update((root / relative).read_bytes())
        assert content_hash(root) != naive.hexdigest()

    def test_renaming_a_file_changes_the_hash(self, make_tree: Callable[..., Path]) -> None:
        """Paths are part of the hash: the same bytes under another name hash differently."""
        first = make_tree("one", {"a.md": "same"})
        second = make_tree("two", {"b.md": "same"})
        assert content_hash(first) != content_hash(second)

    def test_symlink_to_file_is_included(self, make_tree: Callable[..., Path]) -> None:
        """A symlink to a file inside the root counts as that file, under the link's name."""
        outside = make_tree("outside", {"shared.md": "shared text"})
        root = make_tree("skill", {"SKILL.md": "main", "docs/shared.md": "shared text"})
        (root / "link.md").symlink_to("docs/shared.md")
        (root / "far.md").symlink_to(outside / "shared.md")
        within = SourceRoot(str(root.parent))  # the collection: both links stay inside it
        assert content_hash(root, within) == skillmeat_hash(root)
        (root / "far.md").unlink()
        assert content_hash(root) == skillmeat_hash(root)
        without = hashlib.sha256(b"SKILL.md" + b"main").hexdigest()
        assert content_hash(root) != without

    def test_symlink_out_of_the_root_is_refused(self, make_tree: Callable[..., Path]) -> None:
        """A link leading outside the root is not read: the error names the link and target."""
        outside = make_tree("outside", {"secret.txt": "root:x:0:0"})
        root = make_tree("skill", {"SKILL.md": "main"})
        (root / "link.md").symlink_to(outside / "secret.txt")
        opened: list[str] = []
        original = fileio.open_source

        def counting(path: str) -> Any:
            opened.append(path)
            return original(path)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(fileio, "open_source", counting)
            with pytest.raises(SourceOutsideRootError) as info:
                content_hash(root)
        assert opened == []
        assert info.value.path == str(root / "link.md")
        assert info.value.target == str(outside / "secret.txt")
        assert str(outside / "secret.txt") in str(info.value)

    def test_symlink_to_directory_is_not_descended(self, make_tree: Callable[..., Path]) -> None:
        """A symlinked directory is skipped, as pathlib's ``rglob`` does not follow it."""
        outside = make_tree("outside", {"big.md": "not part of the skill"})
        root = make_tree("skill", {"SKILL.md": "main"})
        (root / "linked").symlink_to(outside, target_is_directory=True)
        within = SourceRoot(str(root.parent))  # the link stays inside this root
        assert content_hash(root, within) == skillmeat_hash(root)
        assert content_hash(root, within) == hashlib.sha256(b"SKILL.md" + b"main").hexdigest()
        with pytest.raises(SourceOutsideRootError, match="outside"):
            content_hash(root)  # but leads out of the skill folder itself

    def test_dangling_symlink_is_skipped(self, make_tree: Callable[..., Path]) -> None:
        """A symlink to nothing is not a file and is left out."""
        root = make_tree("skill", {"SKILL.md": "main"})
        (root / "gone.md").symlink_to(root / "nowhere.md")
        assert content_hash(root) == skillmeat_hash(root)

    def test_symlink_loop_does_not_hang(self, make_tree: Callable[..., Path]) -> None:
        """Links to ``.`` and ``..`` inside the tree are not followed, so hashing ends."""
        root = make_tree("skill", {"SKILL.md": "main", "sub/a.md": "a"})
        (root / "self").symlink_to(".", target_is_directory=True)
        (root / "sub" / "up").symlink_to("..", target_is_directory=True)
        assert content_hash(root) == skillmeat_hash(root)

    def test_missing_path_raises(self, tmp_path: Path) -> None:
        """Hashing nothing is an error naming the path."""
        with pytest.raises(SourceFileError, match="no such file or directory") as info:
            content_hash(tmp_path / "absent")
        assert info.value.path == str(tmp_path / "absent")

    def test_hash_tree_reads_through_open_source(
        self, make_tree: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every file read for a hash goes through ``fileio.open_source`` (the counting point)."""
        root = make_tree("skill", {"a.md": "a", "b/c.md": "c"})
        opened: list[str] = []
        real = fileio.open_source

        def counting(path: str) -> Any:
            opened.append(path)
            return real(path)

        monkeypatch.setattr(fileio, "open_source", counting)
        content_hash(root)
        assert sorted(opened) == sorted([str(root / "a.md"), str(root / "b" / "c.md")])


_names = st.text(alphabet="ab-._0", min_size=1, max_size=4).filter(lambda s: s not in {".", ".."})
_trees = st.lists(
    st.tuples(st.lists(_names, min_size=1, max_size=3), st.binary(max_size=20)),
    max_size=8,
)


@settings(max_examples=30, deadline=None)
@given(entries=_trees)
def test_content_hash_matches_skillmeat_on_random_trees(
    tmp_path: Path, entries: list[tuple[list[str], bytes]]
) -> None:
    """On random small trees the hash and the file order agree with SkillMeat's reference."""
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    files: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    for parts, data in entries:
        key = tuple(parts)
        prefixes = {key[:i] for i in range(1, len(key))}
        # Skip entries that would need a path to be both a file and a folder.
        if key in dirs or key in files or prefixes & files:
            continue
        files.add(key)
        dirs |= prefixes
        write(root.joinpath(*parts), data)
    assert content_hash(root) == skillmeat_hash(root)
    scan = scan_tree(str(root))
    assert scan is not None
    expected_order = [str(p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file()]
    assert [relative for relative, _ in scan.paths()] == expected_order


# --------------------------------------------------------------------------- fileio


class TestReadCapped:
    """``read_capped`` reads whole files up to a byte limit."""

    def test_reads_a_file_at_the_cap(self, tmp_path: Path) -> None:
        """A file of exactly ``cap`` bytes is read whole."""
        path = write(tmp_path / "f", b"x" * 100)
        assert read_capped(str(path), 100) == b"x" * 100

    def test_over_the_cap_raises_naming_the_limit(self, tmp_path: Path) -> None:
        """One byte over the cap is an error whose message names the limit and the path."""
        path = write(tmp_path / "big", b"x" * 101)
        with pytest.raises(SourceFileError) as info:
            read_capped(str(path), 100)
        assert "100-byte limit" in str(info.value)
        assert str(path) in str(info.value)
        assert info.value.path == str(path)
        assert info.value.hint is not None and "PROJCACHE_MAX_FILE_SIZE" in info.value.hint

    def test_missing_file_raises(self, tmp_path: Path) -> None:
        """A file that is not there is an error saying it cannot be read."""
        with pytest.raises(SourceFileError, match="cannot read"):
            read_capped(str(tmp_path / "absent"), 100)

    def test_directory_raises(self, tmp_path: Path) -> None:
        """A directory is not readable as a source file."""
        with pytest.raises(SourceFileError, match="cannot read"):
            read_capped(str(tmp_path), 100)


class TestSourceRoot:
    """Links and ``..`` paths may not lead out of a root; walks stop at the root's limits."""

    def test_read_capped_refuses_a_link_out(self, make_tree: Callable[..., Path]) -> None:
        """``read_capped`` with a root never opens a file reached through a link out of it."""
        outside = make_tree("outside", {"passwd": "root:x:0:0"})
        root = make_tree("col", {"commands/ok.md": "fine"})
        (root / "commands" / "evil.md").symlink_to(outside / "passwd")
        within = SourceRoot(str(root))
        assert read_capped(str(root / "commands" / "ok.md"), CAP, within) == b"fine"
        with pytest.raises(SourceOutsideRootError) as info:
            read_capped(str(root / "commands" / "evil.md"), CAP, within)
        assert info.value.target == str(outside / "passwd")

    def test_a_folder_on_the_way_that_leads_out(self, make_tree: Callable[..., Path]) -> None:
        """A layout folder that is a link out makes every source below it an error."""
        outside = make_tree("outside", {"pdf/SKILL.md": "secret"})
        root = make_tree("col", {"collection.toml": ""})
        (root / "skills").symlink_to(outside, target_is_directory=True)
        within = SourceRoot(str(root))
        with pytest.raises(SourceOutsideRootError, match="skills: a link to"):
            scan_tree(str(root / "skills" / "pdf"), within)
        with pytest.raises(SourceOutsideRootError):
            read_capped(str(root / "skills" / "pdf" / "SKILL.md"), CAP, within)

    def test_dot_dot_cannot_climb_out(self, make_tree: Callable[..., Path]) -> None:
        """A path spelled with ``..`` is judged by where it leads."""
        make_tree("outside", {"secret.md": "secret"})
        root = make_tree("col", {"skills/a/SKILL.md": "a"})
        within = SourceRoot(str(root))
        with pytest.raises(SourceOutsideRootError):
            scan_tree(str(root / "skills" / ".." / ".." / "outside" / "secret.md"), within)
        inside = scan_tree(str(root / "skills" / ".." / "skills" / "a"), within)
        assert inside is not None and len(inside.files) == 1

    def test_links_inside_the_root_are_followed(self, make_tree: Callable[..., Path]) -> None:
        """A skill folder linked elsewhere in its collection is read as SkillMeat reads it."""
        root = make_tree("col", {"shared/pdf/SKILL.md": "x", "shared/pdf/ref.md": "r"})
        (root / "skills").mkdir()
        (root / "skills" / "pdf").symlink_to(root / "shared" / "pdf", target_is_directory=True)
        scan = scan_tree(str(root / "skills" / "pdf"), SourceRoot(str(root)))
        assert scan is not None
        assert hash_tree(scan) == skillmeat_hash(root / "skills" / "pdf")

    def test_walk_stops_at_the_entry_limit(self, make_tree: Callable[..., Path]) -> None:
        """More entries than ``max_entries`` is an error, raised before the walk goes on."""
        root = make_tree("big", {f"d{i}/f{j}.md": "" for i in range(5) for j in range(20)})
        with pytest.raises(SourceTooLargeError, match="more than 50 files and folders"):
            scan_tree(str(root), SourceRoot(str(root), max_entries=50))
        assert scan_tree(str(root), SourceRoot(str(root), max_entries=105)) is not None

    def test_walk_stops_at_the_byte_limit(self, make_tree: Callable[..., Path]) -> None:
        """Files holding more than ``max_bytes`` are an error; nothing is hashed."""
        root = make_tree("big", {"a.bin": "x" * 600, "b.bin": "y" * 600})
        with pytest.raises(SourceTooLargeError, match="1000-byte limit for one artifact"):
            scan_tree(str(root), SourceRoot(str(root), max_bytes=1000))
        with pytest.raises(SourceTooLargeError):
            scan_tree(str(root / "a.bin"), SourceRoot(str(root), max_bytes=500))

    def test_hashing_reads_no_more_than_the_limit(self, make_tree: Callable[..., Path]) -> None:
        """A file that grew after the scan cannot make hashing read past the limit."""
        root = make_tree("skill", {"SKILL.md": "x" * 100})
        scan = scan_tree(str(root), SourceRoot(str(root), max_bytes=1000))
        assert scan is not None
        (root / "SKILL.md").write_text("x" * 5000, encoding="utf-8")
        with pytest.raises(SourceTooLargeError, match="grew past"):
            hash_tree(scan)


class TestStatFile:
    """``stat_file`` stats one regular file."""

    def test_regular_file(self, tmp_path: Path) -> None:
        """A file's stat gives its size, mtime and inode."""
        path = write(tmp_path / "f", b"12345")
        info = stat_file(str(path))
        assert info is not None
        assert info.size == 5
        assert info.inode == os.stat(path).st_ino
        assert info.mtime_ns == os.stat(path).st_mtime_ns

    def test_missing_and_under_a_file_are_none(self, tmp_path: Path) -> None:
        """Nothing there, or a path below a file, reads as ``None``."""
        path = write(tmp_path / "f", "x")
        assert stat_file(str(tmp_path / "absent")) is None
        assert stat_file(str(path / "below")) is None

    def test_directory_is_an_error(self, tmp_path: Path) -> None:
        """A directory is not a regular file."""
        with pytest.raises(SourceFileError, match="not a regular file"):
            stat_file(str(tmp_path))


def test_stored_fingerprints_have_the_layout_the_byte_comparison_reads() -> None:
    """``Fingerprint``'s JSON is what ``SourceTracker._same_raw`` reads (checked on a probe).

    Fails when the model's output drifts (a field added, renamed or moved): update
    ``_same_raw`` then, or every refresh decodes every fingerprint.
    """
    from projcache.sources import tracker as tracker_module

    assert tracker_module._probe_layout()
    assert tracker_module.raw_layout_matches()


class TestScanEntry:
    """``scan_entry`` (from a layout folder's listing) agrees with ``scan_tree`` on every kind."""

    def test_same_as_scan_tree(self, make_tree: Callable[..., Path]) -> None:
        """Folders, files and links inside the root scan alike; a link out is refused alike."""
        outside = make_tree("outside", {"secret.md": "secret", "dir/x.md": "x"})
        root = make_tree(
            "col",
            {
                "skills/pdf/SKILL.md": "pdf",
                "skills/pdf/sub/ref.md": "ref",
                "skills/shared/SKILL.md": "s",
                "skills/plain.md": "plain",
            },
        )
        (root / "skills" / "linked").symlink_to(root / "skills" / "shared")
        (root / "skills" / "evil.md").symlink_to(outside / "secret.md")
        (root / "skills" / "evil-dir").symlink_to(outside / "dir", target_is_directory=True)
        (root / "skills" / "dangling.md").symlink_to(root / "absent.md")
        os.mkfifo(root / "skills" / "fifo.md")
        within = SourceRoot(str(root))
        assert within.check_folder(str(root / "skills"))
        with os.scandir(root / "skills") as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
        assert len(entries) == 8
        for entry in entries:
            try:
                expected: object = scan_tree(entry.path, within)
            except SourceFileError as exc:
                expected = (type(exc), str(exc))
            try:
                got: object = scan_entry(entry, within)
            except SourceFileError as exc:
                got = (type(exc), str(exc))
            assert got == expected, entry.name

    def test_a_folder_scans_alike_when_the_listing_has_another_inode(
        self, make_tree: Callable[..., Path]
    ) -> None:
        """A listing's ``d_ino`` may differ from ``st_ino`` (overlayfs): the scans still agree."""

        class OverlayEntry:
            """A DirEntry whose ``inode()`` is not the folder's ``st_ino``, as on overlayfs."""

            def __init__(self, entry: os.DirEntry[str]) -> None:
                self.entry = entry

            def __getattr__(self, name: str) -> Any:
                return getattr(self.entry, name)

            def inode(self) -> int:
                return self.entry.inode() + 1_000_003

        root = make_tree("col", {"skills/pdf/SKILL.md": "pdf", "skills/pdf/ref.md": "ref"})
        within = SourceRoot(str(root))
        with os.scandir(root / "skills") as listing:
            (entry,) = list(listing)
        listed = scan_entry(OverlayEntry(entry), within)  # type: ignore[arg-type]
        stated = scan_tree(entry.path, within)
        assert listed is not None and stated is not None
        assert listed == stated
        assert listed.signature == stated.signature and listed.inode == fileio.FOLDER_INODE

    def test_check_folder_refuses_a_folder_that_leads_out(
        self, make_tree: Callable[..., Path]
    ) -> None:
        """A layout folder that is a link out of the root fails the check."""
        outside = make_tree("outside", {"pdf/SKILL.md": "secret"})
        root = make_tree("col", {"collection.toml": ""})
        (root / "skills").symlink_to(outside, target_is_directory=True)
        (root / "agents").mkdir()
        within = SourceRoot(str(root))
        assert not within.check_folder(str(root / "skills"))
        assert within.check_folder(str(root / "agents"))


class TestScanTree:
    """``scan_tree`` stats every file below a folder, in SkillMeat's order."""

    def test_missing_path_is_none(self, tmp_path: Path) -> None:
        """Nothing at the path (or a path below a file) gives ``None``."""
        path = write(tmp_path / "f", "x")
        assert scan_tree(str(tmp_path / "absent")) is None
        assert scan_tree(str(path / "below")) is None

    def test_single_file(self, tmp_path: Path) -> None:
        """A file scans as itself, with an empty relative path."""
        path = write(tmp_path / "f.md", b"abc")
        scan = scan_tree(str(path))
        assert scan is not None
        assert not scan.is_dir
        assert scan.size == 3
        assert scan.inode == os.stat(path).st_ino
        assert list(scan.paths()) == [("", str(path))]

    def test_ordering_and_totals(self, make_tree: Callable[..., Path]) -> None:
        """Files are listed by path parts; size sums them and mtime is the newest."""
        root = make_tree(
            "d", {"b.md": "bb", "a-b/x.md": "x", "a/x.md": "xyz", "a/b/c.md": "", "A.md": "A"}
        )
        set_age(root / "b.md", 2 * HOUR)
        set_age(root / "a" / "x.md", HOUR)
        scan = scan_tree(str(root))
        assert scan is not None
        assert scan.is_dir
        assert scan.inode == fileio.FOLDER_INODE  # (a folder is described by its files)
        relatives = [relative for relative, _ in scan.paths()]
        assert relatives == ["A.md", "a/b/c.md", "a/x.md", "a-b/x.md", "b.md"]
        assert dict(scan.paths())["a/x.md"] == str(root / "a" / "x.md")
        assert scan.size == 2 + 1 + 3 + 0 + 1
        newest = max(os.stat(root / r).st_mtime_ns for r in relatives)
        assert scan.mtime_ns == newest

    def test_empty_directory(self, tmp_path: Path) -> None:
        """An empty folder scans with no files, size 0 and mtime 0."""
        scan = scan_tree(str(tmp_path))
        assert scan is not None
        assert scan.files == ()
        assert scan.size == 0
        assert scan.mtime_ns == 0

    def test_signature_changes_with_content_and_size(self, make_tree: Callable[..., Path]) -> None:
        """Changing a file's content (and so its size) changes the signature."""
        root = make_tree("d", {"a.md": "one", "sub/b.md": "two"})
        before = scan_tree(str(root))
        write(root / "sub" / "b.md", "two and more")
        after = scan_tree(str(root))
        assert before is not None and after is not None
        assert before.signature != after.signature

    def test_signature_changes_with_mtime_alone(self, make_tree: Callable[..., Path]) -> None:
        """Touching a file's mtime, with the same bytes, changes the signature."""
        root = make_tree("d", {"a.md": "one"})
        set_age(root / "a.md", HOUR)
        before = scan_tree(str(root))
        set_age(root / "a.md", 2 * HOUR)
        after = scan_tree(str(root))
        assert before is not None and after is not None
        assert before.signature != after.signature

    def test_signature_changes_with_same_size_content_and_new_mtime(
        self, make_tree: Callable[..., Path]
    ) -> None:
        """Same-size new content written later changes the signature through its mtime."""
        root = make_tree("d", {"a.md": "aaaa"})
        set_age(root / "a.md", HOUR)
        before = scan_tree(str(root))
        write(root / "a.md", "bbbb")
        after = scan_tree(str(root))
        assert before is not None and after is not None
        assert before.size == after.size
        assert before.signature != after.signature

    def test_signature_changes_when_a_file_is_added_or_removed(
        self, make_tree: Callable[..., Path]
    ) -> None:
        """Adding or removing a file (even an old, empty one) changes the signature."""
        root = make_tree("d", {"a.md": "one"})
        first = scan_tree(str(root))
        write(root / "new.md", "", age=HOUR)
        second = scan_tree(str(root))
        (root / "new.md").unlink()
        third = scan_tree(str(root))
        assert first is not None and second is not None and third is not None
        assert first.signature != second.signature
        assert first.signature == third.signature

    def test_signature_is_stable_when_nothing_changes(self, make_tree: Callable[..., Path]) -> None:
        """Two scans of an untouched tree have the same signature."""
        root = make_tree("d", {"a.md": "one", "b/c.md": "two"})
        first, second = scan_tree(str(root)), scan_tree(str(root))
        assert first is not None and second is not None
        assert first.signature == second.signature

    def test_symlink_loop_does_not_hang(self, make_tree: Callable[..., Path]) -> None:
        """A link back up the tree is listed as nothing and the scan ends."""
        root = make_tree("d", {"a.md": "a", "sub/b.md": "b"})
        (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
        (root / "self").symlink_to(".", target_is_directory=True)
        scan = scan_tree(str(root))
        assert scan is not None
        assert [relative for relative, _ in scan.paths()] == ["a.md", "sub/b.md"]

    def test_fifo_root_is_an_error(self, tmp_path: Path) -> None:
        """A path that is neither a file nor a folder is refused."""
        fifo = tmp_path / "pipe"
        os.mkfifo(fifo)
        with pytest.raises(SourceFileError, match="neither a file nor a directory"):
            scan_tree(str(fifo))

    def test_fifo_inside_is_skipped(self, make_tree: Callable[..., Path]) -> None:
        """Special files inside a folder are left out, as pathlib's ``is_file`` does."""
        root = make_tree("d", {"a.md": "a"})
        os.mkfifo(root / "pipe")
        scan = scan_tree(str(root))
        assert scan is not None
        assert [relative for relative, _ in scan.paths()] == ["a.md"]
        assert content_hash(root) == skillmeat_hash(root)


# --------------------------------------------------------------------------- front matter


class TestParseMarkdown:
    """``parse_markdown`` splits YAML front matter from the body, safely."""

    def test_no_front_matter_is_all_body(self) -> None:
        """Text without a leading ``---`` line is all body."""
        doc = parse_markdown("# Title\n\nText\n", "a.md")
        assert doc.front_matter == {}
        assert doc.body == "# Title\n\nText\n"

    def test_empty_text(self) -> None:
        """An empty file has no front matter and an empty body."""
        doc = parse_markdown("", "a.md")
        assert doc.front_matter == {}
        assert doc.body == ""

    def test_dashes_later_in_the_file_are_not_front_matter(self) -> None:
        """Only a ``---`` on the first line opens a block."""
        text = "Intro\n---\ntitle: no\n---\n"
        assert parse_markdown(text, "a.md").front_matter == {}

    def test_valid_mapping(self) -> None:
        """A mapping becomes the front matter and the rest the body."""
        text = "---\ntitle: PDF\ntags: [a, b]\nnested:\n  n: 1\n---\n# Body\n\nText\n"
        doc = parse_markdown(text, "a.md")
        assert doc.front_matter == {"title": "PDF", "tags": ["a", "b"], "nested": {"n": 1}}
        assert doc.body == "# Body\n\nText\n"

    def test_empty_block_is_empty_mapping(self) -> None:
        """An empty block (or only a comment) is an empty mapping."""
        assert parse_markdown("---\n---\nbody", "a.md").front_matter == {}
        assert parse_markdown("---\n# just a comment\n---\nbody", "a.md").body == "body"

    def test_fence_with_trailing_spaces_and_crlf(self) -> None:
        """Fences may carry trailing blanks, and CRLF line ends work."""
        text = "---  \r\ntitle: x\r\n--- \t\r\nbody\r\n"
        doc = parse_markdown(text, "a.md")
        assert doc.front_matter == {"title": "x"}
        assert doc.body == "body\r\n"

    def test_dates_become_iso_strings(self) -> None:
        """YAML dates and timestamps become ISO 8601 text (JSON-able)."""
        text = (
            "---\nday: 2024-01-02\nstamp: 2024-01-02T03:04:05Z\nnaive: 2024-01-02 03:04:05\n---\n"
        )
        front = parse_markdown(text, "a.md").front_matter
        assert front == {
            "day": "2024-01-02",
            "stamp": "2024-01-02T03:04:05+00:00",
            "naive": "2024-01-02T03:04:05",
        }

    def test_keys_become_text(self) -> None:
        """Non-text keys are turned into text."""
        front = parse_markdown("---\n1: one\n2024-01-02: day\n---\n", "a.md").front_matter
        assert front == {"1": "one", "2024-01-02": "day"}

    def test_unclosed_block(self) -> None:
        """A block that never closes is an error naming the path."""
        with pytest.raises(SourceFileError, match="never ends") as info:
            parse_markdown("---\ntitle: x\nbody without close\n", "skills/x/SKILL.md")
        assert "skills/x/SKILL.md" in str(info.value)
        assert info.value.path == "skills/x/SKILL.md"

    @pytest.mark.parametrize(
        ("text", "line"),
        [
            ("---\ntitle: ok\ndesc: x\n  nested: : y\n---\n", 4),
            ("---\ntitle: ok\n\tbad: tab\n---\n", 3),
            ("---\na: 1\nb: @x\n---\n", 3),
        ],
    )
    def test_invalid_yaml_names_path_and_file_line(self, text: str, line: int) -> None:
        """Bad YAML is an error with the path and the line number in the whole file."""
        with pytest.raises(SourceFileError) as info:
            parse_markdown(text, "cmd.md")
        message = str(info.value)
        assert message.startswith("cmd.md: invalid YAML front matter")
        assert f"(line {line})" in message

    @pytest.mark.parametrize(
        ("block", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str"), ("42\n", "int")]
    )
    def test_not_a_mapping(self, block: str, kind: str) -> None:
        """Front matter that is a list or a scalar is refused, naming what it is."""
        with pytest.raises(SourceFileError, match=f"must be a mapping.*not {kind}"):
            parse_markdown(f"---\n{block}---\n", "a.md")

    def test_alias_bomb_is_refused(self) -> None:
        """A "billion laughs" block built from anchors and aliases is refused as aliases."""
        lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        for this, prev in zip("bcdefghi", "abcdefgh"):
            lines.append(f"{this}: &{this} [{', '.join([f'*{prev}'] * 9)}]")
        text = "---\n" + "\n".join(lines) + "\n---\nbody\n"
        with pytest.raises(SourceFileError, match="alias") as info:
            parse_markdown(text, "bomb.md")
        assert "bomb.md" in str(info.value)

    def test_single_container_alias_is_refused(self) -> None:
        """Even one alias of a mapping is refused (shared containers are how bombs work)."""
        text = "---\nbase: &b {x: 1}\nother: *b\n---\n"
        with pytest.raises(SourceFileError, match="alias"):
            parse_markdown(text, "a.md")

    def test_moderately_deep_nesting_is_refused(self) -> None:
        """Nesting past 32 levels is refused with a clear message."""
        text = "---\nk: " + "[" * 40 + "]" * 40 + "\n---\n"
        with pytest.raises(SourceFileError, match="nested deeper than 32"):
            parse_markdown(text, "a.md")

    def test_very_deep_nesting_is_refused(self) -> None:
        """Thousands of levels are refused too, without crashing the interpreter."""
        text = "---\nk: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n---\n"
        with pytest.raises(SourceFileError, match=r"a\.md"):
            parse_markdown(text, "a.md")

    def test_nesting_at_the_limit_is_accepted(self) -> None:
        """Thirty levels of nesting are fine."""
        text = "---\nk: " + "[" * 30 + "1" + "]" * 30 + "\n---\n"
        value: Any = parse_markdown(text, "a.md").front_matter["k"]
        for _ in range(29):
            value = value[0]
        assert value == [1]

    def test_byte_order_mark_is_ignored(self) -> None:
        """A leading UTF-8 BOM does not hide the front matter."""
        doc = parse_markdown("\ufeff---\ntitle: BOM\n---\nbody\n", "a.md")
        assert doc.front_matter == {"title": "BOM"}
        assert doc.body == "body\n"

    def test_no_python_objects(self) -> None:
        """Python-specific tags are refused by the safe loader."""
        text = "---\nx: !!python/object/apply:os.system ['true']\n---\n"
        with pytest.raises(SourceFileError, match="invalid YAML"):
            parse_markdown(text, "a.md")


class TestToJsonable:
    """``to_jsonable`` makes parsed values storable as JSON."""

    def test_scalars(self) -> None:
        """Big integers, non-finite floats, bytes and sets become JSON-able values."""
        assert to_jsonable(2**70) == str(2**70)
        assert to_jsonable(2**63) == 2**63
        assert to_jsonable(float("inf")) == "inf"
        assert to_jsonable(1.5) == 1.5
        assert to_jsonable(b"ab\xff") == "ab\ufffd"
        assert to_jsonable({3, 1, 2}) == [1, 2, 3]
        assert to_jsonable((1, "a")) == [1, "a"]

    def test_shared_container_is_an_alias(self) -> None:
        """A container met twice is refused as an alias."""
        shared = [1]
        with pytest.raises(ValueError, match="aliases"):
            to_jsonable({"a": shared, "b": shared})

    def test_text_children_count_against_the_limit(self) -> None:
        """Text inside a mapping or a list (taken without a call) still spends the limit."""
        # A container counts 8 (as a number does), then its keys and text.
        assert to_jsonable({"ab": "cdef"}, limit=8 + 6) == {"ab": "cdef"}
        with pytest.raises(ValueError, match="more than 13 characters"):
            to_jsonable({"ab": "cdef"}, limit=8 + 5)
        assert to_jsonable(["abc", "de"], limit=8 + 5) == ["abc", "de"]
        with pytest.raises(ValueError, match="more than 12 characters"):
            to_jsonable(["abc", "de"], limit=8 + 4)

    def test_text_too_deep_is_refused(self) -> None:
        """Text one level past the depth limit is refused, as any value there."""
        value: Any = "leaf"
        for _ in range(33):
            value = [value]
        with pytest.raises(ValueError, match="nested deeper than 32"):
            to_jsonable(value)
        assert to_jsonable(value[0]) == value[0]  # 32 levels of lists, text at depth 32

    @settings(max_examples=300, deadline=None)
    @given(
        st.recursive(
            st.one_of(
                st.text(max_size=6),
                st.integers(min_value=-(2**70), max_value=2**70),
                st.floats(),
                st.booleans(),
                st.none(),
                st.binary(max_size=4),
            ),
            lambda inner: st.one_of(
                st.lists(inner, max_size=4),
                st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), inner, max_size=4),
            ),
            max_leaves=30,
        ),
        st.one_of(st.none(), st.integers(min_value=0, max_value=120)),
    )
    def test_same_as_the_plain_walk(self, value: Any, limit: Optional[int]) -> None:
        """The result (or the error) is what a plain recursive walk gives."""
        expected: Any
        try:
            expected = ("ok", _plain_jsonable(value, 0, [limit]))
        except ValueError as exc:
            expected = ("error", str(exc))
        try:
            found: Any = ("ok", to_jsonable(value, limit=limit))
        except ValueError as exc:
            found = ("error", "too deep" if "nested deeper" in str(exc) else "over the limit")
        assert found == expected


def _plain_jsonable(value: Any, depth: int, left: list[Optional[int]]) -> Any:
    """``to_jsonable`` written plainly (no aliases here): the oracle of its fast paths."""
    if left[0] is not None:
        cost = len(value) if isinstance(value, (str, bytes)) else 8
        left[0] -= cost
        if left[0] < 0:
            raise ValueError("over the limit")
    if depth > 32:
        raise ValueError("too deep")
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if left[0] is not None:
                left[0] -= len(str(k))
                if left[0] < 0:
                    raise ValueError("over the limit")
            out[str(k)] = _plain_jsonable(v, depth + 1, left)
        return out
    if isinstance(value, list):
        return [_plain_jsonable(v, depth + 1, left) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        return (
            value if value == value and value not in (float("inf"), float("-inf")) else str(value)
        )
    return str(value)  # pragma: no cover - the strategy makes none of these


class TestFirstParagraph:
    """``first_paragraph`` picks the first prose of a Markdown body."""

    def test_skips_headings_and_fences(self) -> None:
        """Headings, code fences and comments before the prose are skipped."""
        body = (
            "# Title\n\n<!-- note -->\n```python\ncode here\n```\n\n"
            "First line\nsecond line.\n\nNext paragraph.\n"
        )
        assert first_paragraph(body) == "First line second line."

    def test_tilde_fence_and_setext_rule(self) -> None:
        """``~~~`` fences and ``===``/``---`` rules are not prose."""
        body = "Title\n===\n"
        assert first_paragraph(body) == "Title"
        assert first_paragraph("~~~\nnot this\n~~~\nThis.\n") == "This."
        assert first_paragraph("---\n\nText\n") == "Text"

    def test_paragraph_ends_at_heading_or_fence(self) -> None:
        """A heading or fence right after prose ends the paragraph."""
        assert first_paragraph("One\n## Two\nThree\n") == "One"
        assert first_paragraph("One\n```\ncode\n```\n") == "One"

    def test_empty_and_only_code(self) -> None:
        """No prose gives an empty string."""
        assert first_paragraph("") == ""
        assert first_paragraph("```\nonly code\n```\n# Heading\n") == ""

    def test_truncated_to_the_limit(self) -> None:
        """Long prose is cut to the limit with an ellipsis."""
        text = first_paragraph("word " * 200, limit=50)
        assert len(text) <= 50
        assert text.endswith("\u2026")
        assert first_paragraph("x" * 50, limit=50) == "x" * 50


# --------------------------------------------------------------------------- manifests

COLLECTION_TOML_TEXT = """\
[collection]
name = "mine"
version = "1.2.0"
description = "My collection"
updated = 2024-05-01T10:00:00Z

[[artifacts]]
name = "pdf"
type = "skill"
path = "skills/pdf"
origin = "github"
upstream = "https://github.com/x/y/tree/main/pdf"
version_spec = "latest"
resolved_sha = "abc123"
resolved_version = "v1.0.0"
added = 2024-01-02T03:04:05Z
last_updated = 2024-02-03
tags = ["docs", "pdf", "docs", "", "  spaced  "]

[artifacts.metadata]
title = "PDF"
description = "Reads PDFs"

[[artifacts]]
type = "skill"

[[artifacts]]
name = "bad/name"
type = "skill"

[[artifacts]]
name = "odd"
type = "Plug In"

[[artifacts]]
name = "pdf"
type = "skill"

[[artifacts]]
name = "pdf"
type = "command"

[[artifacts]]
name = "review"
type = "agent"
tags = "a, b,,a"
metadata = "not a table"
"""


class TestReadCollectionToml:
    """``read_collection_toml`` keeps good entries and reports bad ones."""

    def test_good_and_bad_entries(self, tmp_path: Path) -> None:
        """Bad entries (no name, bad name, bad type, duplicate) are problems; good ones kept."""
        path = write(tmp_path / "collection.toml", COLLECTION_TOML_TEXT)
        data, problems = read_collection_toml(str(path), CAP)
        assert data["collection"] == {
            "name": "mine",
            "version": "1.2.0",
            "description": "My collection",
            "updated": "2024-05-01T10:00:00+00:00",
        }
        assert [(a["name"], a["type"]) for a in data["artifacts"]] == [
            ("pdf", "skill"),
            ("pdf", "command"),
            ("review", "agent"),
        ]
        pdf = data["artifacts"][0]
        assert pdf == {
            "name": "pdf",
            "type": "skill",
            "path": "skills/pdf",
            "origin": "github",
            "upstream": "https://github.com/x/y/tree/main/pdf",
            "version_spec": "latest",
            "resolved_sha": "abc123",
            "resolved_version": "v1.0.0",
            "added": "2024-01-02T03:04:05+00:00",
            "last_updated": "2024-02-03",
            "tags": ["docs", "pdf", "spaced"],
            "metadata": {"title": "PDF", "description": "Reads PDFs"},
        }
        review = data["artifacts"][2]
        assert review["tags"] == ["a", "b"]
        assert review["metadata"] == {}
        assert review["path"] is None
        assert len(problems) == 4
        assert "artifact #2 has no valid name (got None)" in problems[0]
        assert "artifact #3 has no valid name (got 'bad/name')" in problems[1]
        assert "'odd' has type 'Plug In'" in problems[2]
        assert "type name such as skill, command, agent, hook, mcp" in problems[2]
        assert "'pdf' (skill) is listed twice" in problems[3]
        assert all(p.startswith(str(path)) for p in problems)

    def test_minimal_file(self, tmp_path: Path) -> None:
        """An empty file is a collection with no name and no artifacts."""
        path = write(tmp_path / "collection.toml", "")
        data, problems = read_collection_toml(str(path), CAP)
        assert data == {
            "collection": {"name": None, "version": None, "description": "", "updated": None},
            "artifacts": [],
            "mcp_servers": [],
        }
        assert problems == []

    def test_deep_nesting_in_a_small_thread_stack(self, tmp_path: Path) -> None:
        """Nesting past the recursion limit is a clear error, even in a thread with a
        512 KiB stack (tomli's compiled parser recurses on the C stack: ADR 0011)."""
        depth = 100_000
        path = write(tmp_path / "collection.toml", "x = " + "[" * depth + "]" * depth + "\n")
        outcome: list[BaseException] = []

        def read() -> None:
            try:
                read_collection_toml(str(path), CAP)
            except BaseException as exc:  # handed to the test's thread
                outcome.append(exc)

        before = threading.stack_size(512 * 1024)
        try:
            thread = threading.Thread(target=read)
            thread.start()
        finally:
            threading.stack_size(before)
        thread.join()
        assert len(outcome) == 1 and isinstance(outcome[0], SourceFileError), outcome
        assert "nested too deeply" in str(outcome[0])

    def test_non_table_entry_is_a_problem(self, tmp_path: Path) -> None:
        """An ``artifacts`` array of non-tables reports each entry."""
        path = write(tmp_path / "collection.toml", "artifacts = [1, 2]\n")
        data, problems = read_collection_toml(str(path), CAP)
        assert data["artifacts"] == []
        assert len(problems) == 2
        assert "artifact #1 is not a table" in problems[0]

    @pytest.mark.parametrize(
        ("text", "match"),
        [
            ("[collection\nname = 1\n", "invalid TOML"),
            ("name = 'a'\nname = 'b'\n", "invalid TOML"),
            ("collection = 3\n", r"\[collection\] must be a table"),
            ("artifacts = 'x'\n", r"\[\[artifacts\]\] must be an array"),
        ],
    )
    def test_malformed_file_raises(self, tmp_path: Path, text: str, match: str) -> None:
        """A file that is not TOML, or has the wrong shape, raises naming the path."""
        path = write(tmp_path / "collection.toml", text)
        with pytest.raises(SourceFileError, match=match) as info:
            read_collection_toml(str(path), CAP)
        assert str(path) in str(info.value)
        assert info.value.path == str(path)

    def test_not_utf8_raises(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8 are refused with the offset."""
        path = write(tmp_path / "collection.toml", b"name = '\xff'\n")
        with pytest.raises(SourceFileError, match=r"not UTF-8 text \(byte 8\)"):
            read_collection_toml(str(path), CAP)

    def test_over_the_cap_raises(self, tmp_path: Path) -> None:
        """A manifest larger than the cap is not parsed."""
        path = write(tmp_path / "collection.toml", COLLECTION_TOML_TEXT)
        with pytest.raises(SourceFileError, match="100-byte limit"):
            read_collection_toml(str(path), 100)


class TestReadCollectionLock:
    """``read_collection_lock`` reads ``[lock.entries]``."""

    def test_entries(self, tmp_path: Path) -> None:
        """Each entry keeps its hashes and versions; a non-table entry is a problem."""
        text = """\
[lock]
version = "1.0.0"

[lock.entries."pdf::skill"]
content_hash = "aa"
resolved_sha = "bb"
resolved_version = "v1.0.0"
upstream = "https://example.com/pdf"
fetched = 2024-01-02T03:04:05Z

[lock.entries."review::agent"]
content_hash = "cc"

[lock.entries]
"broken::skill" = "text"
"""
        path = write(tmp_path / "collection.lock", text)
        data, problems = read_collection_lock(str(path), CAP)
        assert data["entries"]["pdf::skill"] == {
            "content_hash": "aa",
            "resolved_sha": "bb",
            "resolved_version": "v1.0.0",
            "upstream": "https://example.com/pdf",
            "fetched": "2024-01-02T03:04:05+00:00",
        }
        assert data["entries"]["review::agent"]["content_hash"] == "cc"
        assert data["entries"]["review::agent"]["upstream"] is None
        assert "broken::skill" not in data["entries"]
        assert len(problems) == 1
        assert "lock entry 'broken::skill' is not a table" in problems[0]

    def test_empty_and_bad_shapes(self, tmp_path: Path) -> None:
        """No ``[lock]`` is no entries; entries that are not a table raise."""
        empty = write(tmp_path / "empty.lock", "")
        assert read_collection_lock(str(empty), CAP) == ({"entries": {}}, [])
        bad = write(tmp_path / "bad.lock", "[lock]\nentries = [1]\n")
        with pytest.raises(SourceFileError, match=r"\[lock.entries\] must be a table"):
            read_collection_lock(str(bad), CAP)
        worse = write(tmp_path / "worse.lock", "lock = 1\n")
        with pytest.raises(SourceFileError, match=r"\[lock\] must be a table"):
            read_collection_lock(str(worse), CAP)


DEPLOYED_TOML_TEXT = """\
[[deployed]]
artifact_name = "pdf"
artifact_type = "skill"
from_collection = "mine"
deployed_at = 2024-03-04T05:06:07Z
artifact_path = "skills/pdf"
content_hash = "new"
collection_sha = "ignored"
local_modifications = true
version = "1.0.0"
version_lineage = ["0.9.0", 1]

[[deployed]]
artifact_name = "old"
artifact_type = "command"
artifact_path = "commands/old.md"
collection_sha = "legacy"
resolved_version = "v2.0.0"

[[deployed]]
artifact_name = "escape"
artifact_type = "skill"
artifact_path = "skills/../../etc"

[[deployed]]
artifact_name = "absolute"
artifact_type = "skill"
artifact_path = "/etc/passwd"

[[deployed]]
artifact_name = "pdf"
artifact_type = "skill"
from_collection = "mine"
artifact_path = "skills/pdf"

[[deployed]]
artifact_name = "nameless-type"
artifact_type = "Plug In"

[[deployed]]
artifact_type = "skill"
"""


class TestReadDeployedToml:
    """``read_deployed_toml`` reads what SkillMeat deployed into a project."""

    def test_entries_and_problems(self, tmp_path: Path) -> None:
        """Good entries are normalised; escaping paths, duplicates and bad fields are problems."""
        path = write(tmp_path / ".skillmeat-deployed.toml", DEPLOYED_TOML_TEXT)
        data, problems = read_deployed_toml(str(path), CAP)
        assert data["deployed"] == [
            {
                "name": "pdf",
                "type": "skill",
                "collection": "mine",
                "deployed_at": "2024-03-04T05:06:07+00:00",
                "artifact_path": "skills/pdf",
                "content_hash": "new",
                "local_modifications": True,
                "version": "1.0.0",
                "version_lineage": ["0.9.0", "1"],
                "profile": "claude_code",
                "profile_root": ".claude",
                "platform": None,
            },
            {
                "name": "old",
                "type": "command",
                "collection": "default",
                "deployed_at": None,
                "artifact_path": "commands/old.md",
                "content_hash": "legacy",
                "local_modifications": False,
                "version": "v2.0.0",
                "version_lineage": [],
                "profile": "claude_code",
                "profile_root": ".claude",
                "platform": None,
            },
        ]
        assert len(problems) == 5
        assert "'escape' has artifact_path 'skills/../../etc' outside .claude/" in problems[0]
        assert "'absolute' has artifact_path '/etc/passwd' outside .claude/" in problems[1]
        assert "mine/skill/pdf (claude_code) is listed twice" in problems[2]
        assert "deployment #6 needs artifact_name" in problems[3]
        assert "deployment #7 needs artifact_name" in problems[4]

    @pytest.mark.parametrize("artifact_path", ["..", "../x", "./../x", "a/../../b", "a/.."])
    def test_dotdot_anywhere_is_rejected(self, tmp_path: Path, artifact_path: str) -> None:
        """Any ``..`` part in artifact_path is rejected as outside ``.claude/``."""
        text = (
            f'[[deployed]]\nartifact_name = "x"\nartifact_type = "skill"\n'
            f'artifact_path = "{artifact_path}"\n'
        )
        path = write(tmp_path / ".skillmeat-deployed.toml", text)
        data, problems = read_deployed_toml(str(path), CAP)
        assert data["deployed"] == []
        assert len(problems) == 1
        assert "outside .claude/" in problems[0]

    def test_dots_inside_names_are_fine(self, tmp_path: Path) -> None:
        """A name containing dots (``a..b``) is not a parent reference."""
        text = (
            '[[deployed]]\nartifact_name = "x"\nartifact_type = "skill"\n'
            'artifact_path = "skills/a..b"\n'
        )
        path = write(tmp_path / ".skillmeat-deployed.toml", text)
        data, problems = read_deployed_toml(str(path), CAP)
        assert problems == []
        assert data["deployed"][0]["artifact_path"] == "skills/a..b"

    def test_collection_sha_fallback(self, tmp_path: Path) -> None:
        """``collection_sha`` stands in for ``content_hash`` only when that is absent or empty."""
        text = (
            '[[deployed]]\nartifact_name = "a"\nartifact_type = "skill"\n'
            'content_hash = ""\ncollection_sha = "fallback"\n'
            '[[deployed]]\nartifact_name = "b"\nartifact_type = "skill"\n'
        )
        path = write(tmp_path / ".skillmeat-deployed.toml", text)
        data, _ = read_deployed_toml(str(path), CAP)
        assert [d["content_hash"] for d in data["deployed"]] == ["fallback", None]

    def test_shapes(self, tmp_path: Path) -> None:
        """No entries is an empty list; ``deployed`` that is not an array raises."""
        empty = write(tmp_path / "empty.toml", "")
        assert read_deployed_toml(str(empty), CAP) == ({"deployed": []}, [])
        bad = write(tmp_path / "bad.toml", "deployed = 'x'\n")
        with pytest.raises(SourceFileError, match=r"\[\[deployed\]\] must be an array"):
            read_deployed_toml(str(bad), CAP)
        scalars = write(tmp_path / "scalars.toml", "deployed = [1]\n")
        data, problems = read_deployed_toml(str(scalars), CAP)
        assert data == {"deployed": []}
        assert "deployment #1 is not a table" in problems[0]


class TestReadProjectToml:
    """``read_project_toml`` reads a project's name and description."""

    def test_fields(self, tmp_path: Path) -> None:
        """Name and description come from ``[project]``."""
        path = write(
            tmp_path / ".skillmeat-project.toml",
            '[project]\nname = "web"\ndescription = "The site"\n',
        )
        assert read_project_toml(str(path), CAP) == ({"name": "web", "description": "The site"}, [])

    def test_defaults_and_bad_shape(self, tmp_path: Path) -> None:
        """No ``[project]`` gives no name; a non-table raises; bad TOML raises."""
        empty = write(tmp_path / "empty.toml", "")
        assert read_project_toml(str(empty), CAP) == ({"name": None, "description": ""}, [])
        number = write(tmp_path / "number.toml", "[project]\nname = 7\n")
        assert read_project_toml(str(number), CAP)[0]["name"] == "7"
        bad = write(tmp_path / "bad.toml", "project = 1\n")
        with pytest.raises(SourceFileError, match=r"\[project\] must be a table"):
            read_project_toml(str(bad), CAP)
        broken = write(tmp_path / "broken.toml", "[project\n")
        with pytest.raises(SourceFileError, match="invalid TOML"):
            read_project_toml(str(broken), CAP)


# --------------------------------------------------------------------------- layout


class TestFindByLayout:
    """``find_by_layout`` lists artifacts by folder layout."""

    def test_full_layout(self, make_tree: Callable[..., Path]) -> None:
        """Each folder's rules apply, hidden entries are skipped, results ordered by type."""
        base = make_tree(
            "col",
            {
                "skills/pdf/SKILL.md": "---\ntitle: PDF\n---\n",
                "skills/aaa/SKILL.md": "x",
                "skills/nodoc/README.md": "no SKILL.md here",
                "skills/.hidden/SKILL.md": "x",
                "skills/loose.md": "a file in skills/ is not a skill",
                "commands/review.md": "x",
                "commands/notes.txt": "not markdown",
                "commands/.secret.md": "hidden",
                "commands/sub/inner.md": "folders are not commands",
                "agents/helper.md": "x",
                "hooks/pre-commit.sh": "#!/bin/sh\n",
                "hooks/plain": "no extension",
                "hooks/folder/HOOK.md": "x",
                "hooks/.hidden.sh": "x",
                "mcp/server.json": "{}",
                "mcp/srv/MCP.md": "x",
                "other/x.md": "not a layout folder",
            },
        )
        items, problems = find_by_layout(str(base))
        assert items == [
            LayoutItem("skill", "aaa", "skills/aaa"),
            LayoutItem("skill", "pdf", "skills/pdf"),
            LayoutItem("command", "review", "commands/review.md"),
            LayoutItem("agent", "helper", "agents/helper.md"),
            LayoutItem("hook", "folder", "hooks/folder"),
            LayoutItem("hook", "plain", "hooks/plain"),
            LayoutItem("hook", "pre-commit", "hooks/pre-commit.sh"),
            LayoutItem("mcp", "server", "mcp/server.json"),
            LayoutItem("mcp", "srv", "mcp/srv"),
        ]
        assert problems == [f"{base / 'skills' / 'nodoc'}: no SKILL.md"]

    def test_nothing_there(self, tmp_path: Path) -> None:
        """A folder without layout folders has no items and no problems."""
        assert find_by_layout(str(tmp_path)) == ([], [])
        assert find_by_layout(str(tmp_path / "absent")) == ([], [])

    def test_layout_folder_that_is_a_file(self, tmp_path: Path) -> None:
        """A file named like a layout folder is ignored."""
        write(tmp_path / "skills", "not a folder")
        assert find_by_layout(str(tmp_path)) == ([], [])

    def test_symlinked_skill_folder_counts(self, make_tree: Callable[..., Path]) -> None:
        """A symlink to a skill folder is listed like the folder."""
        outside = make_tree("outside", {"SKILL.md": "x"})
        base = make_tree("col", {"skills/real/SKILL.md": "x"})
        (base / "skills" / "linked").symlink_to(outside, target_is_directory=True)
        items, problems = find_by_layout(str(base))
        assert [item.name for item in items] == ["linked", "real"]
        assert problems == []

    def test_invalid_names_are_reported(self, tmp_path: Path) -> None:
        """Names that are not UTF-8 or longer than 200 bytes are reported, not listed."""
        commands = tmp_path / "commands"
        commands.mkdir()
        with open(os.path.join(os.fsencode(commands), b"bad\xff.md"), "wb"):
            pass
        write(commands / ("n" * 201 + ".md"), "x")
        write(commands / ("n" * 200 + ".md"), "x")
        items, problems = find_by_layout(str(tmp_path))
        assert items == [LayoutItem("command", "n" * 200, "commands/" + "n" * 200 + ".md")]
        assert len(problems) == 2
        assert all("not valid UTF-8 text or is too long" in p for p in problems)
        assert any("bad\ufffd" in p for p in problems)

    def test_default_path(self) -> None:
        """File types get ``.md``; the others are folders."""
        assert default_path("skill", "pdf") == "skills/pdf"
        assert default_path("command", "review") == "commands/review.md"
        assert default_path("agent", "helper") == "agents/helper.md"
        assert default_path("hook", "pre") == "hooks/pre"
        assert default_path("mcp", "srv") == "mcp/srv"

    def test_main_file_of(self, make_tree: Callable[..., Path]) -> None:
        """A folder's main file is SKILL.md, README.md, HOOK.md or MCP.md; a file is itself."""
        base = make_tree(
            "col",
            {
                "skills/pdf/SKILL.md": "x",
                "skills/pdf/README.md": "x",
                "hooks/h/README.md": "x",
                "hooks/bare/script.sh": "x",
                "commands/review.md": "x",
                "mcp/server.json": "{}",
                "agents/UPPER.MD": "x",
            },
        )
        assert main_file_of(str(base), "skills/pdf") == "skills/pdf/SKILL.md"
        assert main_file_of(str(base), "hooks/h") == "hooks/h/README.md"
        assert main_file_of(str(base), "hooks/bare") is None
        assert main_file_of(str(base), "commands/review.md") == "commands/review.md"
        assert main_file_of(str(base), "mcp/server.json") is None
        assert main_file_of(str(base), "agents/UPPER.MD") == "agents/UPPER.MD"


# --------------------------------------------------------------------------- discovery


def make_project(path: Path) -> Path:
    """Make ``path`` a project (it holds a ``.claude/`` folder)."""
    (path / ".claude").mkdir(parents=True)
    return path


@pytest.fixture
def counting_scandir(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record the real path of every folder ``discovery`` lists."""
    listed: list[str] = []
    real = os.scandir

    def scandir(path: Any = ".") -> Any:
        listed.append(os.path.realpath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)  # discovery calls os.scandir
    yield listed


class TestFindProjects:
    """``find_projects`` walks project roots to a limited depth."""

    def test_depth_limit_and_nested_projects(self, tmp_path: Path) -> None:
        """Projects up to ``max_depth`` levels below the root are found, nested ones too."""
        root = tmp_path / "root"
        make_project(root / "a")
        make_project(root / "a" / "b")
        make_project(root / "a" / "b" / "c")
        make_project(root / "x" / "y")
        assert find_projects([str(root)], 0) == []
        assert find_projects([str(root)], 1) == [str(root / "a")]
        assert find_projects([str(root)], 2) == [
            str(root / "a"),
            str(root / "a" / "b"),
            str(root / "x" / "y"),
        ]
        assert find_projects([str(root)], 3) == [
            str(root / "a"),
            str(root / "a" / "b"),
            str(root / "a" / "b" / "c"),
            str(root / "x" / "y"),
        ]

    def test_root_itself_is_a_project(self, tmp_path: Path) -> None:
        """A root holding ``.claude/`` is itself a project, even at depth 0."""
        make_project(tmp_path / "proj")
        assert find_projects([str(tmp_path / "proj")], 0) == [str(tmp_path / "proj")]

    def test_skips_tool_folders_and_virtualenvs(self, tmp_path: Path) -> None:
        """``.git``, ``node_modules``, ``venv``, ``.claude/`` and any folder with pyvenv.cfg."""
        root = tmp_path / "root"
        make_project(root / "keep")
        for skipped in (".git", "node_modules", "venv", ".venv", "__pycache__"):
            make_project(root / skipped / "inner")
        write(root / "myenv" / "pyvenv.cfg", "home = /usr/bin\n")
        make_project(root / "myenv" / "inner")
        make_project(root / "keep" / ".claude" / "inner")
        assert find_projects([str(root)], 5) == [str(root / "keep")]

    def test_symlink_loop_is_visited_once(
        self, tmp_path: Path, counting_scandir: list[str]
    ) -> None:
        """A link back to an ancestor does not make folders be listed twice or loop."""
        root = tmp_path / "root"
        make_project(root / "a")
        (root / "a" / "loop").symlink_to(root, target_is_directory=True)
        (root / "a" / "self").symlink_to(".", target_is_directory=True)
        found = find_projects([str(root)], 50)
        assert found == [str(root / "a")]
        assert sorted(counting_scandir) == sorted(set(counting_scandir))
        assert set(counting_scandir) == {str(root), str(root / "a")}

    def test_symlinked_project_is_resolved(self, tmp_path: Path) -> None:
        """A project reached through a symlink is returned by its real path, once."""
        real = make_project(tmp_path / "elsewhere" / "proj")
        root = tmp_path / "root"
        root.mkdir()
        (root / "alias").symlink_to(real, target_is_directory=True)
        assert find_projects([str(root)], 2) == [str(real)]
        assert find_projects([str(root), str(tmp_path / "elsewhere")], 2) == [str(real)]

    def test_home_is_not_a_project(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The home folder's ``.claude/`` is user settings, not a project."""
        home = make_project(tmp_path / "home")
        make_project(home / "code" / "proj")
        monkeypatch.setenv("HOME", str(home))
        assert find_projects(["~"], 3) == [str(home / "code" / "proj")]

    def test_missing_root(self, tmp_path: Path) -> None:
        """A root that does not exist contributes nothing."""
        assert find_projects([str(tmp_path / "absent")], 3) == []

    def test_symlink_shortcut_does_not_hide_a_project_within_depth(self, tmp_path: Path) -> None:
        """A project ``max_depth`` levels down is found even if a deeper symlink reaches it first.

        ``root/x/proj`` is 2 levels below ``root``; ``root/a/link -> ../x`` reaches ``x`` at
        depth 2 first (depth-first, ``a`` sorts before ``x``), which must not stop ``x`` from
        being explored from its own, shallower position.
        """
        root = tmp_path / "root"
        make_project(root / "x" / "proj")
        (root / "a").mkdir()
        (root / "a" / "link").symlink_to("../x", target_is_directory=True)
        assert find_projects([str(root)], 2) == [str(root / "x" / "proj")]

    def test_overlapping_roots_each_reach_their_depth(self, tmp_path: Path) -> None:
        """A root inside another root is still searched to ``max_depth`` below itself."""
        root = tmp_path / "root"
        make_project(root / "inner" / "proj")
        assert find_projects([str(root / "inner")], 1) == [str(root / "inner" / "proj")]
        assert find_projects([str(root), str(root / "inner")], 1) == [str(root / "inner" / "proj")]


class TestFindCollections:
    """``find_collections`` finds collection folders under collection roots."""

    def test_root_that_is_a_collection(self, make_tree: Callable[..., Path]) -> None:
        """A root with ``collection.toml`` is itself the collection (children not listed)."""
        root = make_tree("col", {"collection.toml": "", "skills/pdf/SKILL.md": "x"})
        make_tree("col/nested", {"collection.toml": ""})
        assert find_collections([str(root)]) == [str(root)]

    def test_root_holding_several(self, make_tree: Callable[..., Path]) -> None:
        """Children with ``collection.toml`` or a layout folder are collections; others not."""
        root = make_tree(
            "collections",
            {
                "default/collection.toml": "",
                "work/skills/x/SKILL.md": "x",
                "cmds/commands/a.md": "x",
                "empty-folder/README.md": "x",
                ".hidden/collection.toml": "",
                "plain-file": "x",
            },
        )
        assert find_collections([str(root)]) == [
            str(root / "cmds"),
            str(root / "default"),
            str(root / "work"),
        ]

    def test_root_with_only_a_layout_folder_is_not_itself_one(
        self, make_tree: Callable[..., Path]
    ) -> None:
        """Without ``collection.toml`` a root is a folder of collections, not one."""
        root = make_tree("col", {"skills/pdf/SKILL.md": "x"})
        assert find_collections([str(root)]) == []

    def test_symlinks_dedup_and_missing(self, make_tree: Callable[..., Path]) -> None:
        """Symlinked collections resolve; duplicates across roots collapse; missing roots skip."""
        real = make_tree("store/real", {"collection.toml": ""})
        root = make_tree("collections", {})
        (root / "alias").symlink_to(real, target_is_directory=True)
        found = find_collections([str(root), str(real), str(root / "absent")])
        assert found == [str(real)]

    def test_is_collection_and_is_project(self, make_tree: Callable[..., Path]) -> None:
        """The two predicates look at ``collection.toml``/layout folders and ``.claude/``."""
        col = make_tree("col", {"mcp/x.json": "{}"})
        proj = make_project(col.parent / "proj")
        assert is_collection(str(col))
        assert not is_collection(str(proj))
        assert is_project(str(proj))
        assert not is_project(str(col))


# --------------------------------------------------------------------------- tracker


Reader = Callable[[TreeScan], dict[str, Any]]
# A reader that records each path it reads, and that list.
Counting = tuple[Reader, list[str]]


@pytest.fixture
def counting_reader() -> Counting:
    """A reader returning the file's text (or names in a folder), counting its calls."""
    calls: list[str] = []

    def reader(scan: TreeScan) -> dict[str, Any]:
        calls.append(scan.root)
        if scan.is_dir:
            return {"names": [relative for relative, _ in scan.paths()], "hash": hash_tree(scan)}
        return {"text": Path(scan.root).read_text(encoding="utf-8"), "hash": hash_tree(scan)}

    return reader, calls


def failing_reader(scan: TreeScan) -> dict[str, Any]:
    """A reader that always fails as a malformed file would."""
    raise SourceFileError(f"{scan.root}: broken on purpose", path=scan.root)


def read_once(root: Path, relative: str, reader: Reader) -> SourceTracker:
    """A tracker with no kept fingerprints that has read ``relative`` once."""
    tracker = SourceTracker(str(root), {}, full=False)
    tracker.read(relative, reader, kind="test")
    return tracker


def tracker_after(root: Path, first: SourceTracker, full: bool = False) -> SourceTracker:
    """The tracker of the next refresh: it keeps ``first``'s fingerprints."""
    return SourceTracker(str(root), dict(first.current), full=full)


class TestSourceTracker:
    """``SourceTracker`` re-reads only what changed and keeps the last good data."""

    def test_first_read_calls_the_reader(self, tmp_path: Path, counting_reader: Counting) -> None:
        """With no previous fingerprint the reader runs and a fingerprint is kept."""
        reader, calls = counting_reader
        path = write(tmp_path / "a.toml", "one", age=HOUR)
        tracker = SourceTracker(str(tmp_path), {}, full=False)
        data = tracker.read("a.toml", reader, kind="test")
        assert data is not None and data["text"] == "one"
        assert calls == [str(path)]
        assert (tracker.checked, tracker.changed, tracker.failed) == (1, 1, 0)
        fingerprint = tracker.current["a.toml"]
        assert fingerprint.path == str(path)
        assert fingerprint.size == 3
        assert fingerprint.mtime_ns == os.stat(path).st_mtime_ns
        assert fingerprint.inode == os.stat(path).st_ino
        assert fingerprint.signature is None
        assert fingerprint.data == data
        assert fingerprint.content_hash == hashlib.sha256(b"one").hexdigest()
        assert fingerprint.read_at is not None
        assert not tracker.unchanged

    def test_unchanged_source_is_not_re_read(
        self, tmp_path: Path, counting_reader: Counting
    ) -> None:
        """A source whose trusted stat is unchanged returns its kept data without reading."""
        reader, calls = counting_reader
        write(tmp_path / "a.toml", "one", age=HOUR)
        first = read_once(tmp_path, "a.toml", reader)
        second = tracker_after(tmp_path, first)
        assert second.read("a.toml", reader, kind="test") == {
            "text": "one",
            "hash": hashlib.sha256(b"one").hexdigest(),
            "kind": "test",
        }
        assert len(calls) == 1
        assert second.current["a.toml"] is first.current["a.toml"]
        assert (second.checked, second.changed, second.failed) == (1, 0, 0)
        assert second.unchanged

    def test_unchanged_source_is_never_opened(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the real hash reader, an unchanged folder opens no file at all."""
        skill = tmp_path / "skills" / "pdf"
        write(skill / "SKILL.md", "x", age=HOUR)
        write(skill / "ref" / "notes.md", "y", age=HOUR)
        first = read_once(tmp_path, "skills/pdf", hash_reader())
        opened: list[str] = []
        real = fileio.open_source

        def counting(path: str) -> Any:
            opened.append(path)
            return real(path)

        monkeypatch.setattr(fileio, "open_source", counting)
        second = tracker_after(tmp_path, first)
        assert second.read("skills/pdf", hash_reader(), kind="test") == {
            "hash": skillmeat_hash(skill),
            "kind": "test",
        }
        assert opened == []

    def test_full_refresh_re_reads(self, tmp_path: Path, counting_reader: Counting) -> None:
        """``full=True`` re-reads even unchanged, trusted sources."""
        reader, calls = counting_reader
        write(tmp_path / "a.toml", "one", age=HOUR)
        first = read_once(tmp_path, "a.toml", reader)
        second = tracker_after(tmp_path, first, full=True)
        second.read("a.toml", reader, kind="test")
        assert len(calls) == 2

    def test_changed_file_is_re_read(self, tmp_path: Path, counting_reader: Counting) -> None:
        """New content (with a new stat) is read again."""
        reader, calls = counting_reader
        path = write(tmp_path / "a.toml", "one", age=HOUR)
        first = read_once(tmp_path, "a.toml", reader)
        write(path, "two!", age=HOUR / 2)
        second = tracker_after(tmp_path, first)
        data = second.read("a.toml", reader, kind="test")
        assert data is not None and data["text"] == "two!"
        assert len(calls) == 2
        assert second.changed == 1

    def test_folder_change_deep_inside_is_noticed(
        self, tmp_path: Path, counting_reader: Counting
    ) -> None:
        """Adding an old file deep in a folder changes its signature, so it is re-read."""
        reader, calls = counting_reader
        skill = tmp_path / "skills" / "pdf"
        write(skill / "SKILL.md", "x", age=HOUR)
        first = read_once(tmp_path, "skills/pdf", reader)
        assert first.current["skills/pdf"].signature is not None
        write(skill / "deep" / "er" / "old.md", "copied with its mtime", age=2 * HOUR)
        second = tracker_after(tmp_path, first)
        data = second.read("skills/pdf", reader, kind="test")
        assert data is not None and data["names"] == ["SKILL.md", "deep/er/old.md"]
        assert len(calls) == 2

    def test_racy_fingerprint_is_re_read(self, tmp_path: Path, counting_reader: Counting) -> None:
        """A file modified within 2 s of being read is not trusted next time."""
        reader, calls = counting_reader
        write(tmp_path / "a.toml", "fresh")  # mtime is now: racy
        first = read_once(tmp_path, "a.toml", reader)
        second = tracker_after(tmp_path, first)
        second.read("a.toml", reader, kind="test")
        assert len(calls) == 2
        assert second.changed == 1

    @pytest.mark.parametrize(
        ("read_after_s", "re_read"), [(0.0, True), (1.9, True), (2.1, False), (60.0, False)]
    )
    def test_racy_window_boundary(
        self,
        tmp_path: Path,
        counting_reader: Counting,
        read_after_s: float,
        re_read: bool,
    ) -> None:
        """A fingerprint is trusted only when read more than 2 s after the file's mtime."""
        assert RACY_WINDOW_NS == 2_000_000_000
        reader, calls = counting_reader
        write(tmp_path / "a.toml", "x", age=HOUR)
        first = read_once(tmp_path, "a.toml", reader)
        old = first.current["a.toml"]
        mtime = datetime.fromtimestamp(old.mtime_ns / 1e9, tz=timezone.utc)
        shifted = old.model_copy(update={"read_at": mtime + timedelta(seconds=read_after_s)})
        second = SourceTracker(str(tmp_path), {"a.toml": shifted}, full=False)
        second.read("a.toml", reader, kind="test")
        assert len(calls) == (2 if re_read else 1)

    def test_fingerprint_without_read_time_is_not_trusted(
        self, tmp_path: Path, counting_reader: Counting
    ) -> None:
        """A stored fingerprint with no ``read_at`` is always re-read."""
        reader, calls = counting_reader
        write(tmp_path / "a.toml", "x", age=HOUR)
        first = read_once(tmp_path, "a.toml", reader)
        unknown = first.current["a.toml"].model_copy(update={"read_at": None})
        SourceTracker(str(tmp_path), {"a.toml": unknown}, full=False).read(
            "a.toml", reader, kind="test"
        )
        assert len(calls) == 2

    def test_failing_reader_keeps_previous_data(
        self, tmp_path: Path, counting_reader: Counting
    ) -> None:
        """When a changed source fails to read, the last good data and fingerprint stay."""
        reader, _calls = counting_reader
        path = write(tmp_path / "a.toml", "good", age=HOUR)
        first = read_once(tmp_path, "a.toml", reader)
        write(path, "broken now", age=HOUR / 2)
        second = tracker_after(tmp_path, first)
        data = second.read("a.toml", failing_reader, kind="test")
        assert data is not None and data["text"] == "good"
        assert second.current["a.toml"] is first.current["a.toml"]
        assert second.failed == 1
        assert [(e.path, e.message) for e in second.errors] == [
            (str(path), f"{path}: broken on purpose")
        ]
        assert not second.unchanged
        # Its stat differs from the kept fingerprint, so the next refresh retries it.
        third = SourceTracker(str(tmp_path), dict(second.current), full=False)
        retried = third.read("a.toml", reader, kind="test")
        assert retried is not None and retried["text"] == "broken now"

    def test_failing_reader_without_previous_data(self, tmp_path: Path) -> None:
        """A first read that fails returns ``None`` and records the error."""
        write(tmp_path / "a.toml", "x")
        tracker = SourceTracker(str(tmp_path), {}, full=False)
        assert tracker.read("a.toml", failing_reader, kind="test") is None
        assert tracker.current == {}
        assert tracker.failed == 1
        assert len(tracker.errors) == 1

    def test_scan_error_is_recorded(self, tmp_path: Path) -> None:
        """A source that cannot be scanned (a FIFO) is an error, not a crash."""
        os.mkfifo(tmp_path / "pipe")
        tracker = SourceTracker(str(tmp_path), {}, full=False)
        assert tracker.read("pipe", failing_reader, kind="test") is None
        assert tracker.failed == 1
        assert "neither a file nor a directory" in tracker.errors[0].message

    def test_missing_source_and_vanished(self, tmp_path: Path, counting_reader: Counting) -> None:
        """A source gone since last time returns ``None`` and is listed as vanished."""
        reader, calls = counting_reader
        path = write(tmp_path / "a.toml", "x", age=HOUR)
        write(tmp_path / "b.toml", "y", age=HOUR)
        first = read_once(tmp_path, "a.toml", reader)
        first.read("b.toml", reader, kind="test")
        path.unlink()
        second = tracker_after(tmp_path, first)
        assert second.read("a.toml", reader, kind="test") is None
        assert second.read("b.toml", reader, kind="test") is not None
        assert second.read("never.toml", reader, kind="test") is None
        assert len(calls) == 2
        assert second.vanished == ["a.toml"]
        assert not second.unchanged

    def test_previous_fingerprint_model_round_trip(self, tmp_path: Path) -> None:
        """Fingerprints survive a dump/validate round trip and are still trusted."""
        write(tmp_path / "a.toml", "x", age=HOUR)
        first = read_once(tmp_path, "a.toml", hash_reader())
        stored = Fingerprint.model_validate(first.current["a.toml"].model_dump(mode="json"))
        calls: list[int] = []

        def reader(scan: TreeScan) -> dict[str, Any]:
            calls.append(1)
            return {}

        second = SourceTracker(str(tmp_path), {"a.toml": stored}, full=False)
        assert second.read("a.toml", reader, kind="test") == {
            "hash": hashlib.sha256(b"x").hexdigest(),
            "kind": "test",
        }
        assert calls == []


# --------------------------------------------------------------------------- artifacts


class TestArtifacts:
    """``facts_reader`` and ``build_artifact`` turn files and manifests into Artifact fields."""

    def test_facts_reader(self, make_tree: Callable[..., Path]) -> None:
        """Facts hold the content hash, front matter and first paragraph of the main file."""
        base = make_tree(
            "col",
            {"skills/pdf/SKILL.md": "---\ntitle: PDF\ntags: [a]\n---\n# PDF\n\nReads PDFs.\n"},
        )
        scan = scan_tree(str(base / "skills" / "pdf"))
        assert scan is not None
        facts = facts_reader(str(base), "skills/pdf/SKILL.md", CAP)(scan)
        assert facts == {
            "hash": skillmeat_hash(base / "skills" / "pdf"),
            "mtime_ns": scan.mtime_ns,
            "front_matter": {"title": "PDF", "tags": ["a"]},
            "summary": "Reads PDFs.",
            "body": "# PDF\n\nReads PDFs.",
        }
        without_main = facts_reader(str(base), None, CAP)(scan)
        assert set(without_main) == {"hash", "mtime_ns"}

    def test_facts_reader_errors(self, make_tree: Callable[..., Path]) -> None:
        """A main file that is not UTF-8, or has bad front matter, fails the read."""
        base = make_tree("col", {"commands/a.md": b"\xff\xfe", "commands/b.md": "---\nx: [\n"})
        for name, match in (("a.md", "not UTF-8"), ("b.md", "never ends")):
            scan = scan_tree(str(base / "commands" / name))
            assert scan is not None
            with pytest.raises(SourceFileError, match=match):
                facts_reader(str(base), f"commands/{name}", CAP)(scan)

    def test_build_artifact_precedence(self) -> None:
        """Manifest metadata beats front matter (SkillMeat's precedence), then the body's summary.

        The front matter stays whole in ``front_matter`` (what is on disk now).
        """
        fields = build_artifact(
            collection="mine",
            type_="skill",
            name="pdf",
            path="/c/skills/pdf",
            facts={
                "hash": "h",
                "mtime_ns": 0,
                "front_matter": {"description": "from front", "tags": ["c", "a"]},
                "summary": "from body",
            },
            entry={
                "tags": ["a", "b"],
                "origin": "github",
                "last_updated": "2024-01-02T03:04:05Z",
                "metadata": {"title": "Meta title", "description": "meta", "version": "1.0"},
            },
            lock={"upstream": "up", "resolved_sha": "sha", "resolved_version": "v1"},
        )
        artifact = Artifact.model_validate(fields)
        assert artifact.key == "mine/skill/pdf"
        assert artifact.title == "Meta title"
        assert artifact.description == "meta"
        assert artifact.front_matter["description"] == "from front"
        assert artifact.tags == ["a", "b", "c"]
        assert artifact.version == "1.0"
        assert (artifact.upstream, artifact.resolved_sha, artifact.resolved_version) == (
            "up",
            "sha",
            "v1",
        )
        assert artifact.content_hash == "h"
        assert artifact.updated_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    def test_build_artifact_falls_back_to_summary_and_mtime(self) -> None:
        """Without descriptions the summary is used; without a date, the files' mtime."""
        fields = build_artifact(
            collection="mine",
            type_="command",
            name="x",
            path="/c/commands/x.md",
            facts={"hash": "h", "mtime_ns": 1_700_000_000_000_000_000, "summary": "Body."},
            managed=False,
        )
        assert fields["description"] == "Body."
        assert fields["managed"] is False
        assert fields["updated_at"] == datetime.fromtimestamp(1_700_000_000, tz=timezone.utc)


# --------------------------------------------------------------------------- status

SEMVER_CHAIN = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "2.0.0",
]


class TestSemver:
    """``parse_semver`` and ``compare_versions`` follow semver precedence, leniently."""

    @pytest.mark.parametrize(
        ("text", "parsed"),
        [
            ("1.2.3", (1, 2, 3, ())),
            ("v1.2.3", (1, 2, 3, ())),
            ("V1.2.3", (1, 2, 3, ())),
            ("v1.2", (1, 2, 0, ())),
            ("1", (1, 0, 0, ())),
            (" 1.0.0 ", (1, 0, 0, ())),
            ("1.0.0-rc.1+build.5", (1, 0, 0, ("rc", 1))),
            ("1.0.0+build", (1, 0, 0, ())),
            ("1.0.0-x-y.0a", (1, 0, 0, ("x-y", "0a"))),
        ],
    )
    def test_parse(self, text: str, parsed: tuple[Any, ...]) -> None:
        """Versions with ``v``, missing parts, pre-release and build metadata parse."""
        assert parse_semver(text) == parsed

    @pytest.mark.parametrize(
        "text", ["", "latest", "main", "abc123def", "01.2.3", "1.2.3.4", "1.0.0-", "1.0.0-a..b"]
    )
    def test_not_semver(self, text: str) -> None:
        """Branch names, hashes and malformed versions are not semver."""
        assert parse_semver(text) is None

    def test_v_prefix_equals_bare(self) -> None:
        """``v1.0.0`` and ``1.0.0`` are the same version; so are ``1.0`` and ``1.0.0``."""
        assert compare_versions("v1.0.0", "1.0.0") == 0
        assert compare_versions("1.0", "1.0.0") == 0
        assert compare_versions("1.0.0+a", "1.0.0+b") == 0

    def test_semver_precedence_chain(self) -> None:
        """Every pair in the semver spec's example chain compares in order."""
        for (i, left), (j, right) in itertools.product(enumerate(SEMVER_CHAIN), repeat=2):
            expected = (i > j) - (i < j)
            assert compare_versions(left, right) == expected, (left, right)

    def test_numbers_compare_numerically(self) -> None:
        """``1.10.0`` is newer than ``1.9.0``."""
        assert compare_versions("1.10.0", "1.9.0") == 1
        assert compare_versions("1.0.0-rc.10", "1.0.0-rc.9") == 1

    def test_non_semver_is_none(self) -> None:
        """Comparing with something that is not semver gives ``None``."""
        assert compare_versions("latest", "1.0.0") is None
        assert compare_versions("1.0.0", "abc123") is None

    @settings(max_examples=30, deadline=None)
    @given(
        a=st.sampled_from(SEMVER_CHAIN),
        b=st.sampled_from(SEMVER_CHAIN),
        prefix=st.sampled_from(["", "v"]),
    )
    def test_antisymmetric(self, a: str, b: str, prefix: str) -> None:
        """Swapping the sides negates the result, with or without a ``v``."""
        assert compare_versions(prefix + a, b) == -(compare_versions(b, prefix + a) or 0)


def artifact(**fields: Any) -> Artifact:
    """An artifact ``mine/skill/pdf`` with the given fields."""
    base: dict[str, Any] = {"name": "pdf", "type": "skill", "collection": "mine"}
    base.update(fields)
    return Artifact.model_validate(base)


def deployment(**fields: Any) -> Deployment:
    """A deployment of ``mine/skill/pdf`` into project ``proj`` with the given fields."""
    base: dict[str, Any] = {"project_id": "proj", "artifact_key": "mine/skill/pdf"}
    base.update(fields)
    return Deployment.model_validate(base)


class TestDeploymentState:
    """``deployment_state`` applies missing > modified > outdated > current."""

    def test_missing_artifact(self) -> None:
        """An artifact gone from the collection makes the deployment missing."""
        assert deployment_state(deployment(content_hash="a"), None) == "missing"

    def test_missing_files_beats_modified_and_outdated(self) -> None:
        """Deployed files gone is missing, whatever the hashes and versions say."""
        dep = deployment(content_hash="a", local_hash="b", version="1.0.0", files_present=False)
        assert deployment_state(dep, artifact(content_hash="c", version="2.0.0")) == "missing"

    def test_both_changed_is_conflict(self) -> None:
        """Local changes and a newer collection version or hash: conflict (sync-check's)."""
        dep = deployment(content_hash="a", local_hash="b", version="1.0.0")
        assert deployment_state(dep, artifact(content_hash="c", version="2.0.0")) == "conflict"
        dep = deployment(content_hash="a", local_hash="b")
        assert deployment_state(dep, artifact(content_hash="c")) == "conflict"

    def test_only_local_change_is_modified(self) -> None:
        """Local changes with the collection as deployed: modified, not conflict."""
        dep = deployment(content_hash="a", local_hash="b")
        assert deployment_state(dep, artifact(content_hash="a")) == "modified"
        dep = deployment(content_hash="a", local_hash="b", version="2.0.0")
        assert deployment_state(dep, artifact(content_hash="c", version="2.0.0")) == "modified"

    def test_unknown_collection(self) -> None:
        """No artifact and no trace of its collection: unknown-collection, not missing."""
        dep = deployment(content_hash="a")
        assert deployment_state(dep, None, collection_known=False) == "unknown-collection"
        assert deployment_state(dep, None, collection_known=True) == "missing"

    def test_unknown_local_hash_is_not_modified(self) -> None:
        """Without a local hash nothing can be called modified."""
        dep = deployment(content_hash="a", local_hash=None)
        assert deployment_state(dep, artifact(content_hash="a")) == "current"

    def test_v_prefix_is_current(self) -> None:
        """``v1.0.0`` in the collection equals ``1.0.0`` deployed, even if hashes differ."""
        dep = deployment(content_hash="a", local_hash="a", version="1.0.0")
        assert deployment_state(dep, artifact(content_hash="b", version="v1.0.0")) == "current"

    def test_newer_collection_version_is_outdated(self) -> None:
        """A newer collection version is outdated, even with equal hashes."""
        dep = deployment(content_hash="a", version="1.0.0")
        assert deployment_state(dep, artifact(content_hash="a", version="1.1.0")) == "outdated"

    def test_newer_deployed_version_is_not_outdated(self) -> None:
        """A deployment newer than the collection's version is current."""
        dep = deployment(content_hash="a", version="2.0.0")
        assert deployment_state(dep, artifact(content_hash="b", version="1.9.9")) == "current"

    def test_prerelease_to_release_is_outdated(self) -> None:
        """A release is newer than its pre-releases."""
        for older, newer in zip(SEMVER_CHAIN, SEMVER_CHAIN[1:]):
            dep = deployment(content_hash="a", version=older)
            assert deployment_state(dep, artifact(content_hash="a", version=newer)) == "outdated"
            dep = deployment(content_hash="a", version=newer)
            assert deployment_state(dep, artifact(content_hash="b", version=older)) == "current"

    def test_resolved_version_is_preferred(self) -> None:
        """The collection's resolved version counts before its declared one."""
        dep = deployment(content_hash="a", version="1.0.0")
        art = artifact(content_hash="a", version="1.0.0", resolved_version="v1.2.0")
        assert deployment_state(dep, art) == "outdated"

    @pytest.mark.parametrize(
        ("available", "deployed"), [("latest", "1.0.0"), ("1.0.0", "abc123"), (None, "1.0.0")]
    )
    def test_non_semver_falls_back_to_hash(self, available: Optional[str], deployed: str) -> None:
        """When a side is not semver (or absent), the content hash decides."""
        dep = deployment(content_hash="a", version=deployed)
        assert deployment_state(dep, artifact(content_hash="b", version=available)) == "outdated"
        assert deployment_state(dep, artifact(content_hash="a", version=available)) == "current"

    def test_no_recorded_hash_is_current(self) -> None:
        """Nothing recorded at deploy time leaves nothing to compare: current."""
        assert deployment_state(deployment(), artifact(content_hash="b")) == "current"

    def test_unknown_artifact_hash_is_current(self) -> None:
        """An artifact without a hash cannot be called outdated by hash."""
        assert deployment_state(deployment(content_hash="a"), artifact()) == "current"

    def test_same_hash_no_versions_is_current(self) -> None:
        """Same hashes and no versions is current."""
        dep = deployment(content_hash="a", local_hash="a")
        assert deployment_state(dep, artifact(content_hash="a")) == "current"
