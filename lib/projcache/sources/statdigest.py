"""A collection's stat summary: its whole stat walk in a few hashes, to tell "unchanged" cheaply.

An unchanged refresh of a collection otherwise reads every stored fingerprint
and compares each with a fresh stat (:func:`~projcache.sources.collection.survey_collection`):
about half of its time, the other half being the stat calls themselves.  When
a survey walked a whole collection it knows each source's *stat part* (its
relative path and stat, a folder's signature: exactly what a fingerprint is
compared with).  A :class:`StatSummary` keeps an 8-byte hash of each part, in
the order of the sources' paths, and one digest of them all.  The next
refresh makes the same walk (:func:`walk_digest`, without building the stat
walks the survey builds) and compares one digest; when it differs but the
same sources are there, the hashes name the sources that changed
(:func:`changed_sources`), and only those are looked at again.  The refresh
stores a summary beside a hash of the fingerprints it was made against and
uses it only while those are the same (:mod:`projcache.refresh_units`), so a
summary never vouches for fingerprints it did not see.

The walk here must see what the survey sees: the same folders, the same
entries (dotfiles skipped, links refused), the same stat walks and limits.
:func:`lean_part` takes the plain cases (a file; a folder of plain files and
folders) itself and hands anything else to :func:`~projcache.sources.fileio.scan_entry`;
a test compares the two on every kind of entry.  Anything the walk cannot
judge the way the survey would (a link, an entry that fails, a folder that
cannot be listed) ends it without a digest, and the survey decides.

A summary's *listings* spare the walk most of its listing: a folder source of plain
files whose own stat is the one recorded holds the files it held then, so only
their stats are taken (:func:`_listed_part`).

Over 400 lines on purpose: the walk, its listings and the summary's invariants
must agree with the survey's stat walk part for part, and are read side by side.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from ..errors import SourceFileError
from .fileio import SourceRoot, TreeScan, scan_entry, scan_tree
from .manifests import COLLECTION_LOCK, COLLECTION_TOML
from .tracker import RACY_WINDOW_NS

if TYPE_CHECKING:
    from ..models import KnownFingerprint
    from .tracker import SourceTracker

__all__ = [
    "STAT_SUMMARY",
    "StatSummary",
    "StatWalk",
    "Surveyed",
    "changed_sources",
    "disagreement",
    "fingerprint_part",
    "layout_entries",
    "lean_part",
    "part_hash",
    "stat_part",
    "summary_after_read",
    "summary_problem",
    "walk_digest",
]

#: ``meta`` key prefix of a collection unit's stat summary (written by the refresh that
#: surveyed or wrote it, dropped with the unit; ``verify`` checks the ones in force).
STAT_SUMMARY = "stat-summary:"

_MANIFEST_KINDS = frozenset((COLLECTION_TOML, COLLECTION_LOCK))

# Margin on the racy-window test of a fingerprint written now: its ``read_at`` is
# stored to the microsecond and read back through a float, so it may come back a
# little earlier than the nanoseconds it was made from.
_READ_AT_MARGIN_NS = 1_000_000

_HASH_SIZE = 8

# Listings are kept only where folders can be opened and stat-ed relative to a folder's
# descriptor (every POSIX system; not Windows): the check that makes one usable is one
# ``fstatat`` per folder and per file, each resolving one or two path components.
_FD_WALK = (
    os.stat in os.supports_dir_fd and hasattr(os, "O_DIRECTORY") and hasattr(os, "O_NOFOLLOW")
)
_OPEN_FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)

# A folder's listing is recorded only if the folder's last change (mtime, ctime) is older
# than this: the kernel's timestamps are coarse, so a change in the same tick as the one
# recorded could leave them as they were (the racy window of fingerprints, for the same
# reason).  Its own name so that tests can shorten it without touching fingerprints'.
_LISTING_WINDOW_NS = RACY_WINDOW_NS

#: A folder source's listing (see :class:`StatSummary`): its folder's ``st_mtime_ns``,
#: ``st_ctime_ns`` and ``st_ino`` when listed, then the names of its files, sorted.
Listing = list[Any]


class StatSummary(NamedTuple):
    """What a survey that walked a whole collection saw, for the next refresh to compare."""

    #: The digest of :attr:`hashes`.
    digest: str
    #: What the survey counts as checked (the report's ``sources_checked``).
    checked: int
    #: Stored sources outside the layout's folders (looked up by path, not listed).
    elsewhere: tuple[str, ...]
    #: The digest of the sources' relative paths (in order), and their parts' hashes.
    relatives: str
    hashes: bytes
    #: Folder sources holding only files, by relative path: what the walk found in each
    #: (a :data:`Listing`).  Not bound to the fingerprints: it says what a folder held
    #: while the folder's own stat was the one it records, which any later walk checks
    #: first.  Never modified (a shared default).
    listings: Mapping[str, Listing] = {}

    def to_json(self, fingerprints: str) -> dict[str, object]:
        """The ``meta`` value: this summary bound to the fingerprints ``fingerprints`` hashes."""
        value: dict[str, object] = {
            "fingerprints": fingerprints,
            "digest": self.digest,
            "checked": self.checked,
            "elsewhere": list(self.elsewhere),
            "relatives": self.relatives,
            "hashes": base64.b64encode(self.hashes).decode("ascii"),
        }
        if self.listings:
            value["listings"] = dict(self.listings)
        return value

    @classmethod
    def from_json(cls, value: object, fingerprints: str) -> Optional[StatSummary]:
        """The summary stored as ``value`` if it was made against ``fingerprints``, else None."""
        if not isinstance(value, dict) or value.get("fingerprints") != fingerprints:
            return None
        digest, checked, elsewhere = (
            value.get("digest"),
            value.get("checked"),
            value.get("elsewhere"),
        )
        relatives, hashes = value.get("relatives"), value.get("hashes")
        if not (
            isinstance(digest, str)
            and isinstance(checked, int)
            and isinstance(elsewhere, list)
            and all(isinstance(relative, str) for relative in elsewhere)
            and isinstance(relatives, str)
            and isinstance(hashes, str)
        ):
            return None
        try:
            raw = base64.b64decode(hashes, validate=True)
        except ValueError:
            return None
        listings = value.get("listings")  # (each one is checked where it is used)
        return cls(
            digest,
            checked,
            tuple(elsewhere),
            relatives,
            raw,
            listings if isinstance(listings, dict) else {},
        )


def part_hash(part: str) -> bytes:
    """The 8-byte hash of one :func:`stat_part`."""
    return hashlib.blake2b(part.encode("utf-8", "surrogateescape"), digest_size=_HASH_SIZE).digest()


def _summarize(hashes: dict[str, bytes], checked: int, elsewhere: tuple[str, ...]) -> StatSummary:
    order = sorted(hashes)
    joined = b"".join([hashes[relative] for relative in order])
    names = "\0".join(order).encode("utf-8", "surrogateescape")
    return StatSummary(
        hashlib.blake2b(joined, digest_size=16).hexdigest(),
        checked,
        elsewhere,
        hashlib.blake2b(names, digest_size=16).hexdigest(),
        joined,
    )


class Surveyed(NamedTuple):
    """What a survey that walked a whole collection saw (it answered a set, not ``None``)."""

    #: :func:`part_hash` of each source found unchanged (and of each manifest absent
    #: both times), by relative path.
    parts: dict[str, bytes]
    #: What the survey counts as checked.
    checked: int
    #: Stored sources outside the layout's folders.
    elsewhere: tuple[str, ...]

    def summary(self, listings: Mapping[str, Listing] = {}) -> StatSummary:
        """The summary of a collection in which the survey found nothing changed.

        ``listings``: a complete walk's (:attr:`StatWalk.listings`), if one was made.
        """
        return _summarize(self.parts, self.checked, self.elsewhere)._replace(listings=listings)


class StatWalk(NamedTuple):
    """What :func:`walk_digest` found: the digest (``None``: not told here) and each part's hash."""

    digest: Optional[str]
    hashes: dict[str, bytes]
    #: The listings of the folder sources that hold only files (reused or made afresh),
    #: to be stored with the next summary; empty unless the walk was complete.
    listings: Mapping[str, Listing] = {}
    #: Whether :attr:`listings` differ from the ones the walk was given.
    relisted: bool = False

    def complete_listings(self) -> Mapping[str, Listing]:
        """:attr:`listings` if the walk went to its end (a digest), else none."""
        return self.listings if self.digest is not None else {}


def stat_part(relative: str, scan: Optional[TreeScan]) -> str:
    """One source's share of the digest: its path, and its stat walk (``-``: nothing there).

    A folder is its signature (every file's path and stat); a file its own stat:
    exactly what a stored fingerprint is compared with.
    """
    if scan is None:
        return relative + "\0-"
    if scan.is_dir:
        return f"{relative}\0d{scan.signature}"
    info = scan.files[0][1]
    return f"{relative}\0f{info.mtime_ns}\0{info.size}\0{scan.inode}"


def lean_part(entry: os.DirEntry[str], relative: str, root: SourceRoot) -> Optional[str]:
    """:func:`stat_part` of ``scan_entry(entry, root)`` for a plain entry, else ``None``.

    A plain file, or a folder holding only plain files and folders, within the
    root's limits, is walked here without building the stat walk; a link, a
    file over the limit or anything else returns ``None`` (the caller takes
    :func:`~projcache.sources.fileio.scan_entry` and its rules).
    """
    try:
        if not entry.is_dir(follow_symlinks=False):
            if entry.is_symlink():
                return None
            return _file_part(relative, entry.stat(follow_symlinks=False), root)
    except OSError:
        return None
    found = _folder_files(entry.path, root)
    return None if found is None else _folder_part(relative, found[0])


def _file_part(relative: str, result: os.stat_result, root: SourceRoot) -> Optional[str]:
    """:func:`stat_part` of a file source from its ``lstat`` (``None``: not a plain file)."""
    if not stat.S_ISREG(result.st_mode) or result.st_size > root.max_bytes:
        return None
    return f"{relative}\0f{result.st_mtime_ns}\0{result.st_size}\0{result.st_ino}"


# One file of a folder source: its path's parts under the folder, mtime, size, inode.
_File = tuple[tuple[str, ...], int, int, int]


def _folder_files(path: str, root: SourceRoot) -> Optional[tuple[list[_File], bool]]:
    """The files under the folder ``path`` and whether it holds nothing else (no folder).

    ``None`` for what only :func:`~projcache.sources.fileio.scan_entry` judges: a
    link, a failure, a folder over the root's limits.
    """
    files: list[_File] = []
    folders: list[tuple[str, tuple[str, ...]]] = [(path, ())]
    entries = total = 0
    try:
        while folders:
            folder, prefix = folders.pop()
            with os.scandir(folder) as listing:
                for item in listing:
                    entries += 1
                    parts = (*prefix, item.name)
                    if item.is_dir(follow_symlinks=False):
                        folders.append((item.path, parts))
                    elif item.is_symlink():
                        return None
                    else:
                        result = item.stat(follow_symlinks=False)
                        if stat.S_ISREG(result.st_mode):
                            total += result.st_size
                            files.append((parts, result.st_mtime_ns, result.st_size, result.st_ino))
    except OSError:
        return None
    if entries > root.max_entries or total > root.max_bytes:
        return None
    files.sort()
    return files, entries == len(files) and all(len(parts) == 1 for parts, *_ in files)


def _folder_part(relative: str, files: list[_File]) -> str:
    """:func:`stat_part` of a folder source from its files, sorted by path."""
    digest = hashlib.blake2b(digest_size=16)
    for parts, mtime_ns, size, inode in files:
        digest.update("/".join(parts).encode("utf-8", "surrogateescape"))
        digest.update(b"\0%d\0%d\0%d\n" % (mtime_ns, size, inode))
    return f"{relative}\0d{digest.hexdigest()}"


def _listed_part(
    entry: os.DirEntry[str],
    dfd: int,
    relative: str,
    root: SourceRoot,
    listing: object,
    trusted_before: int,
) -> tuple[Optional[str], Optional[Listing]]:
    """:func:`lean_part` of an entry of the folder open as ``dfd``, through its ``listing``.

    A folder's ``listing`` holds while the folder's own stat is the one recorded:
    adding, removing or renaming an entry moves its mtime and ctime (POSIX;
    ctime cannot be set back), replacing the folder moves its inode.  Then its
    files are only stat-ed by name (an edit in place shows there), each still a
    plain file; it is not listed again.  Returns the part (``None``: see
    :func:`lean_part`) and the folder's listing now (``None``: a file, a folder
    holding more than files, or one changed too recently for its stat to vouch
    for it: the racy window, as for fingerprints).  A folder is stat-ed before
    it is listed, so an entry added meanwhile moves the stat recorded, never
    hides behind it.  Stats are relative to ``dfd``: one or two path components
    to resolve, not the whole path.
    """
    name = entry.name
    try:
        folder = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return lean_part(entry, relative, root), None
    if not stat.S_ISDIR(folder.st_mode):
        return _file_part(relative, folder, root), None
    if (
        type(listing) is list
        and len(listing) > 3
        and listing[0] == folder.st_mtime_ns
        and listing[1] == folder.st_ctime_ns
        and listing[2] == folder.st_ino
        and len(listing) - 3 <= root.max_entries
    ):
        digest = hashlib.blake2b(digest_size=16)
        total = 0
        for item in listing[3:]:
            if type(item) is not str or "/" in item or "\0" in item or item in (".", ".."):
                break  # (not a name a listing records)
            try:
                result = os.stat(f"{name}/{item}", dir_fd=dfd, follow_symlinks=False)
            except OSError:
                break
            if not stat.S_ISREG(result.st_mode):
                break
            total += result.st_size
            digest.update(item.encode("utf-8", "surrogateescape"))
            digest.update(b"\0%d\0%d\0%d\n" % (result.st_mtime_ns, result.st_size, result.st_ino))
        else:
            if total <= root.max_bytes:
                return f"{relative}\0d{digest.hexdigest()}", listing
    found = _folder_files(entry.path, root)
    if found is None:
        return None, None
    files, flat = found
    made: Optional[Listing] = None
    if flat and files and max(folder.st_mtime_ns, folder.st_ctime_ns) < trusted_before:
        made = [folder.st_mtime_ns, folder.st_ctime_ns, folder.st_ino]
        made.extend([parts[0] for parts, *_ in files])
    return _folder_part(relative, files), made


def layout_entries(directory: str, root: SourceRoot) -> Optional[list[os.DirEntry[str]]]:
    """The entries of one of the layout's folders (none if it is missing), as a survey lists them.

    ``None``: the folder cannot be listed, or it leads out of ``root``; only the
    full read can judge it.
    """
    try:
        with os.scandir(directory) as listing:
            entries = list(listing)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError:
        return None
    if entries and not root.check_folder(directory):
        return None
    return entries


def walk_digest(
    base: str,
    root: SourceRoot,
    manifests: Iterable[str],
    folders: Iterable[str],
    elsewhere: Iterable[str],
    listings: Optional[Mapping[str, object]] = None,
) -> StatWalk:
    """Walk the collection folder ``base`` as the survey does: its digest and each part's hash.

    ``manifests`` are looked up by name (absent is a part too), every entry of
    ``folders`` is walked, then ``elsewhere``.  The digest is ``None`` when
    something is found that the survey would not have passed (a link, an entry
    that fails, a folder that cannot be listed): the caller then runs the survey.
    With ``listings`` (a stored summary's), a folder source whose listing still
    holds is not listed again: its files are stat-ed by name.  The walk's own
    listings come back in :attr:`StatWalk.listings`.
    """
    prefix = base.rstrip("/") + "/"
    hashes: dict[str, bytes] = {}
    failed = StatWalk(None, hashes)
    given: Mapping[str, object] = {} if listings is None else listings
    made: dict[str, Listing] = {}
    relisted = False
    trusted_before = time.time_ns() - _LISTING_WINDOW_NS
    try:
        for name in manifests:
            scan = scan_tree(prefix + name, root)
            if scan is None and os.path.lexists(prefix + name):
                return failed  # (a dangling link: the survey reads the collection)
            hashes[name] = part_hash(stat_part(name, scan))
        for folder in folders:
            directory = prefix + folder
            entries = layout_entries(directory, root)
            if entries is None:
                return failed
            dfd = -1
            if _FD_WALK and listings is not None and entries:
                try:
                    dfd = os.open(directory, _OPEN_FOLDER)
                except OSError:
                    return failed
            try:
                for entry in entries:
                    name = entry.name
                    if name.startswith("."):
                        continue
                    if entry.is_symlink():
                        return failed
                    relative = f"{folder}/{name}"
                    if dfd >= 0:
                        old = given.get(relative)
                        part, listing = _listed_part(
                            entry, dfd, relative, root, old, trusted_before
                        )
                        if listing is not None:
                            made[relative] = listing
                            relisted = relisted or listing is not old
                    else:
                        part = lean_part(entry, relative, root)
                    if part is None:
                        scan = scan_entry(entry, root)
                        if scan is None:
                            return failed
                        part = stat_part(relative, scan)
                    hashes[relative] = part_hash(part)
            finally:
                if dfd >= 0:
                    os.close(dfd)
        for relative in elsewhere:
            scan = scan_tree(prefix + relative, root)
            if scan is None:
                return failed
            hashes[relative] = part_hash(stat_part(relative, scan))
    except SourceFileError:
        return failed
    relisted = relisted or len(made) != len(given)
    return StatWalk(_summarize(hashes, 0, ()).digest, hashes, made, relisted)


def changed_sources(summary: StatSummary, walk: StatWalk) -> Optional[frozenset[str]]:
    """The sources whose part differs between ``summary`` and a complete ``walk``.

    ``None`` when the walk was not complete or found other sources than the
    summary names (a source came or went: the survey decides).
    """
    if walk.digest is None:
        return None
    order = sorted(walk.hashes)
    names = "\0".join(order).encode("utf-8", "surrogateescape")
    if hashlib.blake2b(names, digest_size=16).hexdigest() != summary.relatives:
        return None
    stored = summary.hashes
    if len(stored) != _HASH_SIZE * len(order):
        return None
    hashes = walk.hashes
    return frozenset(
        relative
        for at, relative in enumerate(order)
        if hashes[relative] != stored[at * _HASH_SIZE : (at + 1) * _HASH_SIZE]
    )


def summary_after_read(tracker: SourceTracker) -> Optional[StatSummary]:
    """The summary of a collection as a read that re-read its changed sources left it.

    Only when the survey walked the whole folder and the read kept the same
    sources, each either found unchanged by the survey or re-read from the
    survey's own stat walk into a fingerprint the next survey will trust (out
    of the racy window), with no failure: then the parts of the re-read
    sources are their new fingerprints' stats.  ``None`` otherwise (the next
    refresh surveys, and makes a summary if nothing changed).
    """
    from ..models import Fingerprint

    survey = tracker.survey
    current = tracker.current
    if (
        survey is None
        or tracker.failed
        or tracker.errors
        or current.keys() != tracker.previous.keys()
    ):
        return None
    parts = survey.parts
    hashes = {relative: part for relative, part in parts.items() if relative not in current}
    if any(relative not in _MANIFEST_KINDS for relative in hashes):
        return None  # (only a manifest absent both times has a part and no fingerprint)
    trusted_before = tracker.read_ns - RACY_WINDOW_NS - _READ_AT_MARGIN_NS
    reused = tracker.reused
    for relative, fingerprint in current.items():
        part = parts.get(relative)
        if part is not None and relative in reused:
            hashes[relative] = part
            continue
        if not isinstance(fingerprint, Fingerprint) or fingerprint.mtime_ns >= trusted_before:
            return None  # not made by this read, or too recent to be trusted next time
        kind = "manifest" if relative in _MANIFEST_KINDS else "facts"
        if fingerprint.data.get("kind") != kind:
            return None
        hashes[relative] = part_hash(fingerprint_part(relative, fingerprint))
    return _summarize(hashes, survey.checked, survey.elsewhere)


def fingerprint_part(relative: str, fingerprint: KnownFingerprint) -> str:
    """The :func:`stat_part` of the stat walk a fingerprint was made from."""
    if fingerprint.signature is not None:
        return f"{relative}\0d{fingerprint.signature}"
    return f"{relative}\0f{fingerprint.mtime_ns}\0{fingerprint.size}\0{fingerprint.inode}"


def disagreement(summary: StatSummary, fingerprints: dict[str, KnownFingerprint]) -> Optional[str]:
    """What a summary bound to ``fingerprints`` says that they do not (``None``: nothing).

    The invariant ``verify`` checks: every source's hash is its fingerprint's stat
    part (the manifests absent from both are parts too), in path order.
    """
    hashes = {
        relative: part_hash(fingerprint_part(relative, f)) for relative, f in fingerprints.items()
    }
    for name in _MANIFEST_KINDS - fingerprints.keys():
        hashes[name] = part_hash(stat_part(name, None))
    expected = _summarize(hashes, summary.checked, summary.elsewhere)
    if expected.relatives != summary.relatives:
        return "names other sources than its fingerprints"
    if expected.hashes != summary.hashes or expected.digest != summary.digest:
        return "holds other stats than its fingerprints"
    return None


def summary_problem(
    value: object, fingerprints_hash: str, fingerprints: Callable[[], dict[str, KnownFingerprint]]
) -> Optional[str]:
    """What is wrong with the stored summary ``value`` (``None``: nothing), for ``verify``.

    One not bound to the unit's fingerprints (``fingerprints_hash``: stale,
    malformed) is never used and is no problem; one that is and disagrees
    with them (:func:`disagreement`) would let a refresh miss a change.
    """
    summary = StatSummary.from_json(value, fingerprints_hash)
    return None if summary is None else disagreement(summary, fingerprints())
