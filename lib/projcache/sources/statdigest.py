"""A collection's stat digest: its whole stat walk in one hash, to tell "unchanged" cheaply.

An unchanged refresh of a collection otherwise reads every stored fingerprint
and compares each with a fresh stat (:func:`~projcache.sources.collection.survey_collection`):
about half of its time, the other half being the stat calls themselves.  When
that survey finds nothing changed, it also leaves the digest of what it saw
(:class:`StatSummary`: every source's relative path and stat, and which
sources it looked up outside the layout's folders).  The next refresh makes
the same walk (:func:`walk_digest`) and compares one hash; the refresh stores
the summary beside a hash of the fingerprints it was judged against, and
uses it only while those are byte for byte the same
(:mod:`projcache.refresh_units`), so a summary can never vouch for
fingerprints it did not see.

The walk here must see what the survey sees: the same folders, the same
entries (dotfiles skipped, links refused), the same stat walks
(:func:`~projcache.sources.fileio.scan_entry`, :func:`~projcache.sources.fileio.scan_tree`)
and the same limits.  Anything it cannot judge the way the survey would (a
link, an entry that fails, a folder that cannot be listed) answers ``None``,
and the survey decides.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple, Optional

from ..errors import SourceFileError
from .fileio import SourceRoot, TreeScan, scan_entry, scan_tree
from .manifests import COLLECTION_LOCK, COLLECTION_TOML
from .tracker import RACY_WINDOW_NS

if TYPE_CHECKING:
    from .tracker import SourceTracker

_MANIFEST_KINDS = frozenset((COLLECTION_TOML, COLLECTION_LOCK))

__all__ = [
    "StatSummary",
    "StatWalk",
    "Surveyed",
    "stat_digest",
    "stat_part",
    "summary_after_read",
    "walk_digest",
]

# Margin on the racy-window test of a fingerprint written now: its ``read_at`` is
# stored to the microsecond and read back through a float, so it may come back a
# little earlier than the nanoseconds it was made from.
_READ_AT_MARGIN_NS = 1_000_000


class StatSummary(NamedTuple):
    """What a survey that found a collection unchanged saw, for the next refresh to compare."""

    #: :func:`stat_digest` of every source's :func:`stat_part`.
    digest: str
    #: What the survey counts as checked (the report's ``sources_checked``).
    checked: int
    #: Stored sources outside the layout's folders (looked up by path, not listed).
    elsewhere: tuple[str, ...]


class Surveyed(NamedTuple):
    """What a survey that walked a whole collection saw (it answered a set, not ``None``)."""

    #: :func:`stat_part` of each source found unchanged (and of each manifest absent
    #: both times), by relative path.
    parts: dict[str, str]
    #: What the survey counts as checked.
    checked: int
    #: Stored sources outside the layout's folders.
    elsewhere: tuple[str, ...]

    def summary(self) -> StatSummary:
        """The summary of a collection in which the survey found nothing changed."""
        return StatSummary(stat_digest(list(self.parts.values())), self.checked, self.elsewhere)


class StatWalk(NamedTuple):
    """What :func:`walk_digest` found: the digest (``None``: not told here) and its stat walks."""

    digest: Optional[str]
    #: The stat walk of each source looked at (``None``: nothing there), by relative path:
    #: a survey that follows takes them instead of walking again.
    scans: dict[str, Optional[TreeScan]]


def stat_part(relative: str, scan: Optional[TreeScan]) -> str:
    """One source's share of the digest: its path, and its stat walk (``-``: nothing there).

    A folder is its signature (every file's path and stat); a file its own stat:
    exactly what a stored fingerprint is compared with.  File names hold no NUL,
    so the parts cannot run into each other.
    """
    if scan is None:
        return relative + "\0-"
    if scan.is_dir:
        return f"{relative}\0d{scan.signature}"
    info = scan.files[0][1]
    return f"{relative}\0f{info.mtime_ns}\0{info.size}\0{scan.inode}"


def stat_digest(parts: list[str]) -> str:
    """The digest of a collection's parts, in any order (they are sorted here, in place)."""
    parts.sort()
    joined = "\0\0".join(parts).encode("utf-8", "surrogateescape")
    return hashlib.blake2b(joined, digest_size=16).hexdigest()


def walk_digest(
    base: str,
    root: SourceRoot,
    manifests: Iterable[str],
    folders: Iterable[str],
    elsewhere: Iterable[str],
) -> StatWalk:
    """Walk the collection folder ``base`` as the survey does; its digest and its stat walks.

    ``manifests`` are looked up by name (absent is a part too), every entry of
    ``folders`` is walked, then ``elsewhere``.  The digest is ``None`` when
    something is found that the survey would not have passed (a link, an entry
    that fails, a folder that cannot be listed): the caller then runs the survey.
    """
    prefix = base.rstrip("/") + "/"
    parts: list[str] = []
    scans: dict[str, Optional[TreeScan]] = {}
    failed = StatWalk(None, scans)
    try:
        for name in manifests:
            scan = scans[name] = scan_tree(prefix + name, root)
            if scan is None and os.path.lexists(prefix + name):
                return failed  # (a dangling link: the survey reads the collection)
            parts.append(stat_part(name, scan))
        for folder in folders:
            directory = prefix + folder
            try:
                with os.scandir(directory) as listing:
                    entries = list(listing)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError:
                return failed
            if entries and not root.check_folder(directory):
                return failed
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                if entry.is_symlink():
                    return failed
                relative = f"{folder}/{name}"
                scan = scans[relative] = scan_entry(entry, root)
                if scan is None:
                    return failed
                parts.append(stat_part(relative, scan))
        for relative in elsewhere:
            scan = scans[relative] = scan_tree(prefix + relative, root)
            if scan is None:
                return failed
            parts.append(stat_part(relative, scan))
    except SourceFileError:
        return failed
    return StatWalk(stat_digest(parts), scans)


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
    kept = [part for relative, part in parts.items() if relative not in current]
    if any(not part.endswith("\0-") for part in kept):
        return None  # (only a manifest absent both times has a part and no fingerprint)
    trusted_before = tracker.read_ns - RACY_WINDOW_NS - _READ_AT_MARGIN_NS
    reused = tracker.reused
    for relative, fingerprint in current.items():
        part = parts.get(relative)
        if part is not None and relative in reused:
            kept.append(part)
            continue
        if not isinstance(fingerprint, Fingerprint) or fingerprint.mtime_ns >= trusted_before:
            return None  # not made by this read, or too recent to be trusted next time
        kind = "manifest" if relative in _MANIFEST_KINDS else "facts"
        if fingerprint.data.get("kind") != kind:
            return None
        if fingerprint.signature is not None:
            kept.append(f"{relative}\0d{fingerprint.signature}")
        else:
            kept.append(
                f"{relative}\0f{fingerprint.mtime_ns}\0{fingerprint.size}\0{fingerprint.inode}"
            )
    return StatSummary(stat_digest(kept), survey.checked, survey.elsewhere)
