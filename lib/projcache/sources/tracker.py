"""Decide per source whether to re-read it, from stat fingerprints; keep last good data.

A :class:`SourceTracker` works on one unit (a collection or a project).  It
is given the fingerprints stored by the last refresh; for each source it
stats the file (or every file under a folder), and only when that differs
calls the reader.  What a reader returns is kept in the new fingerprint, so
the next refresh of an unchanged source reads nothing.  A reader that fails
leaves the previous fingerprint and data in place, and the error is recorded.

Timestamps are coarse (the kernel updates them on a clock tick), so a file
written in the same tick as it was read could change without its stat
changing.  Like git's "racy" entries, a fingerprint whose mtime is within
:data:`RACY_WINDOW_NS` of when it was read is not trusted the next time.

Over 400 lines on purpose: the byte comparison of stored fingerprints
(:meth:`SourceTracker._same_raw`) and the check of the layout it reads
(:func:`raw_layout_matches`) stay beside the decoded comparison they must agree with.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional

import orjson

from ..errors import SourceFileError
from .fileio import DEFAULT_MAX_ARTIFACT_SIZE, SourceRoot, TreeScan, scan_entry, scan_tree

if TYPE_CHECKING:
    from ..models import KnownFingerprint, SourceError
    from .statdigest import Surveyed

__all__ = [
    "NOT_DECODED",
    "RACY_WINDOW_NS",
    "FrontMatterLookup",
    "SourceTracker",
    "printable",
    "raw_layout_matches",
]

logger = logging.getLogger(__name__)

RACY_WINDOW_NS = 2_000_000_000

Reader = Callable[[TreeScan], "dict[str, Any]"]
#: Looks up the front matter of the artifact record already stored (``None`` if none is).
FrontMatterLookup = Callable[[], "Optional[dict[str, Any]]"]

# Marks facts whose front matter was left out of the fingerprint: it is stored
# once, in the artifact record built from them (issue 12: not in both).
_IN_RECORD = "front_matter_in_record"

#: What :meth:`SourceTracker.read` with ``lazy=True`` returns for a source whose
#: stored data was not decoded (compared by identity; :meth:`SourceTracker.data`
#: decodes it).  Never to be modified.
NOT_DECODED: dict[str, Any] = {}


# A source judged unchanged without a stat walk (judge()); None is one: nothing there.
_NOT_MADE: Any = object()

_layout_checked: Optional[bool] = None  # raw_layout_matches(), once per process


def raw_layout_matches() -> bool:
    """Tell whether stored fingerprints have the byte layout the byte comparison reads.

    :meth:`SourceTracker._same_raw` reads a fingerprint's JSON as
    :class:`~projcache.models.Fingerprint` writes it (its fields in order, ``data``
    last with ``kind`` its last key).  Checked once per process on a probe
    fingerprint serialised as the cache stores one: the comparison must say
    "same" for the probe's own stat and "not same" when any stat value, the
    signature, the kind or the read time differs.  If the model's output ever
    drifts from that, this says False, a warning is logged once and every
    fingerprint is decoded instead (slower, never wrong); ``tests/test_sources.py``
    fails on it so that the drift is fixed, not lived with.
    """
    global _layout_checked
    if _layout_checked is None:
        _layout_checked = _probe_layout()
        if not _layout_checked:
            logger.warning(
                "stored fingerprints no longer have the layout the refresh compares as bytes; "
                "decoding each instead (slower): update SourceTracker._same_raw"
            )
    return _layout_checked


def _probe_layout() -> bool:
    from ..models import Fingerprint
    from .fileio import FileStat

    base, relative = "/probe/unit", 'skills/pr\u00f6be "x"'
    mtime, size, inode = 1_700_000_000_123_456_789, 4321, 98765
    stat = FileStat(mtime, size, inode)
    read_at = datetime.fromtimestamp((mtime + 3 * RACY_WINDOW_NS) / 1e9, tz=timezone.utc)
    probe = SourceTracker(base, {}, False, check_layout=False)
    for is_dir, kind, data in (
        (False, "facts", {"hash": "h", "summary": "s", _IN_RECORD: True}),
        (True, "facts", {"hash": "h", "summary": "s"}),
        (False, "manifest", {"parsed": {"kind": "facts"}, "problems": []}),
    ):
        scan = TreeScan(base + "/" + relative, (((), stat),), is_dir, inode)
        signature = scan.signature if is_dir else None
        fingerprint = Fingerprint(
            path=base + "/" + relative,
            mtime_ns=mtime,
            size=size,
            inode=inode,
            signature=signature,
            content_hash="h",
            read_at=read_at,
            data={**data, "kind": kind},
        )
        payload = fingerprint.model_dump_json().encode()
        if not probe._same_raw(payload, relative, scan, signature, kind):
            return False
        other = FileStat(mtime + 1, size + 1, inode + 1)
        different = [
            (scan._replace(files=(((), other),)), signature, kind),  # another stat
            (scan, "0" * 32 if is_dir else None, "manifest" if kind == "facts" else "facts"),
        ]
        if is_dir:
            different.append((scan, "0" * 32, kind))  # another signature
        for changed, sig, as_kind in different:
            if probe._same_raw(payload, relative, changed, sig, as_kind):
                return False
        racy = fingerprint.model_copy(update={"read_at": read_at.replace(year=2000)})
        if probe._same_raw(racy.model_dump_json().encode(), relative, scan, signature, kind):
            return False
    return True


def printable(text: str) -> str:
    """``text`` with undecodable bytes of file names shown as U+FFFD (it is stored as JSON)."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a file name
        return text.encode("utf-8", "replace").decode("utf-8")


class SourceTracker:
    """Fingerprints of one unit: the previous ones, the new ones, errors and counts."""

    def __init__(
        self,
        base: str,
        previous: Mapping[str, KnownFingerprint],
        full: bool,
        *,
        max_bytes: int = DEFAULT_MAX_ARTIFACT_SIZE,
        check_layout: bool = True,
    ):
        self.base = base
        # Whether stored bytes may be compared (raw_layout_matches); else each is decoded.
        self._bytes_ok = raw_layout_matches() if check_layout else True
        # Every source of the unit stays inside its folder (links out are errors).
        self.root = SourceRoot(base, max_bytes=max_bytes)
        self.previous = previous
        self.full = full
        # Fresh reads are Fingerprint models; unchanged sources keep their previous object.
        self.current: dict[str, KnownFingerprint] = {}
        # Sources whose stat matched a trusted fingerprint: their data is last time's.
        self.reused: set[str] = set()
        self.errors: list[SourceError] = []
        self.checked = 0
        self.changed = 0
        self.failed = 0
        # Plain concatenation, not os.path.join per source: relatives are never absolute.
        self._prefix = base if not base or base.endswith("/") else base + "/"
        self.read_ns = time.time_ns()
        self._read_at = datetime.fromtimestamp(self.read_ns / 1e9, tz=timezone.utc)
        self._last_read_at: Optional[datetime] = None
        self._last_read_ns = 0
        # Directory entries listed by find_by_layout (relative path -> entry): the stat
        # walk of such a source starts from its entry (fileio.scan_entry).
        self.entries: dict[str, os.DirEntry[str]] = {}
        # A stored fingerprint's "read_at" JSON value -> nanoseconds (one per refresh, mostly).
        self._stamps: dict[bytes, int] = {}
        # kind -> the endings of a stored payload whose data is of that kind.
        self._tails: dict[str, tuple[bytes, bytes]] = {}
        # Stat walks made by quick() and not yet used by read(): relative path -> the
        # scan, and the kind it was judged unchanged for (None: not unchanged).
        self._scans: dict[str, tuple[Optional[TreeScan], Optional[str]]] = {}
        # What read() re-read in this refresh, by relative path (front matter included).
        self._fresh: dict[str, dict[str, Any]] = {}
        # The unit's folder as the start of a JSON string (no closing quote), for _same_raw.
        self._path_json = orjson.dumps(self._prefix)[:-1] if self._prefix else b'"'
        # What a survey that walked the whole unit saw (survey_collection sets it).
        self.survey: Optional[Surveyed] = None

    def error(self, path: str, message: str) -> None:
        """Record a problem with ``path`` (logged once here)."""
        from ..models import SourceError

        path, message = printable(path), printable(message)
        logger.warning("%s", message)
        self.errors.append(SourceError(path=path, message=message))

    def _trusted(self, old: KnownFingerprint) -> bool:
        read_at = old.read_at
        if read_at is None:
            return False
        # Most sources of a unit were read in the same refresh: convert that time once.
        if read_at is not self._last_read_at:
            self._last_read_at = read_at
            self._last_read_ns = int(read_at.timestamp() * 1e9)
        return old.mtime_ns + RACY_WINDOW_NS < self._last_read_ns

    def _same_raw(
        self,
        payload: bytes,
        relative: str,
        scan: TreeScan,
        signature: Optional[str],
        kind: str,
    ) -> bool:
        """Tell, from a stored fingerprint's JSON bytes, that the source is unchanged and trusted.

        True only when the payload is exactly what :class:`~projcache.models.Fingerprint`
        writes for this path and stat (the same bytes, so the same values), its data
        is of ``kind`` and its ``read_at`` makes it trusted: what the decoded
        comparison would say.  False means "not known here" (the caller decodes).
        """
        try:
            # JSON escapes one character at a time: the folder's JSON and the rest's concatenate.
            head = b'{"path":%b%b,"mtime_ns":%d,"size":%d,"inode":%d,"signature":%b,' % (
                self._path_json,
                orjson.dumps(relative)[1:],
                scan.mtime_ns,
                scan.size,
                scan.inode,
                b"null" if signature is None else b'"%b"' % signature.encode("ascii"),
            )
        except (TypeError, UnicodeEncodeError):  # (a path with undecodable bytes)
            return False
        if not payload.startswith(head):
            return False
        # "data" is the last field: its last key (before the front-matter marker) is "kind".
        tails = self._tails.get(kind)
        if tails is None:
            tails = self._tails[kind] = (
                b',"kind":%b}}' % orjson.dumps(kind),
                b',"kind":%b,"%b":true}}' % (orjson.dumps(kind), _IN_RECORD.encode()),
            )
        if not payload.endswith(tails):
            return False
        start = payload.find(b',"read_at":', len(head))
        end = payload.find(b',"data":{', start)
        if start < 0 or end < 0:
            return False
        stamp = payload[start + 11 : end]
        read_ns = self._stamps.get(stamp)
        if read_ns is None:
            if not (stamp.startswith(b'"') and stamp.endswith(b'"')):
                return False  # null: never trusted
            from ..model_reads import parse_utc

            try:
                read_ns = int(parse_utc(stamp[1:-1].decode()).timestamp() * 1e9)
            except (ValueError, UnicodeDecodeError):
                return False
            self._stamps[stamp] = read_ns
        return scan.mtime_ns + RACY_WINDOW_NS < read_ns

    def quick(self, relative: str, kind: str, entry: Optional[os.DirEntry[str]] = None) -> bool:
        """Tell whether the source at ``relative`` is unchanged, from its stored bytes alone.

        Nothing is counted or recorded: this only looks (the stat walk it makes
        is kept for :meth:`read`).  False also when the source is gone, fails,
        is new, or cannot be judged without decoding its fingerprint.
        """
        old = self.previous.get(relative)
        raw = getattr(old, "payload", None)
        if raw is None or self.full or not self._bytes_ok:
            return False
        try:
            if entry is None:
                scan = scan_tree(self._prefix + relative, self.root)
            else:
                scan = scan_entry(entry, self.root)
        except SourceFileError:
            return False
        same = scan is not None and self._same_raw(
            raw, relative, scan, scan.signature if scan.is_dir else None, kind
        )
        self._scans[relative] = (scan, kind if same else None)
        return same

    def scanned(self, relative: str) -> Optional[TreeScan]:
        """The stat walk :meth:`quick` made of ``relative`` and :meth:`read` has not used yet."""
        found = self._scans.get(relative)
        return None if found is None or found[0] is _NOT_MADE else found[0]

    def judge(self, relative: str, kind: str) -> None:
        """Take ``relative`` as unchanged for ``kind``, as :meth:`quick` would have judged it.

        For a source a stat summary made against these very fingerprints vouches
        for (:func:`~projcache.sources.collection.survey_changed`): no stat walk
        is kept, so :meth:`read` makes one if it needs it after all.
        """
        self._scans[relative] = (_NOT_MADE, kind)

    def reuse_judged(self, relative: str, kind: str) -> bool:
        """Count and reuse ``relative`` if :meth:`quick` judged it unchanged as ``kind``.

        What :meth:`read` does first, without a reader: a collection of thousands
        of artifacts of which a few changed reuses all the others through here
        (no reader made, no stat repeated).  False leaves everything as it was.
        """
        judged = self._scans.get(relative)
        if judged is None or judged[1] != kind or relative in self._fresh:
            return False
        old = self.previous.get(relative)
        if old is None:
            return False
        del self._scans[relative]
        self.entries.pop(relative, None)
        self.checked += 1
        self.current[relative] = old
        self.reused.add(relative)
        return True

    def data(self, relative: str) -> dict[str, Any]:
        """The data of a source :meth:`read` returned :data:`NOT_DECODED` for (decoded now)."""
        return self.current[relative].data

    def read(
        self,
        relative: str,
        reader: Reader,
        *,
        kind: str,
        force: bool = False,
        lazy: bool = False,
    ) -> Optional[dict[str, Any]]:
        """Return the data of the source at ``relative``: re-read only when it changed.

        ``kind`` names what ``reader`` extracts; data kept by a reader of
        another kind is not reused (the same folder may be a deployed copy,
        only hashed, and later a local artifact, whose front matter is needed).
        ``None`` when nothing is there, or when it failed and there is no
        previous data (the error is recorded either way it fails).  ``force``
        re-reads even an unchanged source.

        Data of kind ``facts`` is returned whole when read, but its
        ``front_matter`` is not kept in the fingerprint (the artifact record
        holds it): reused facts lack it, and :meth:`complete` puts it back.

        With ``lazy``, a source found unchanged from its stored bytes alone
        returns :data:`NOT_DECODED` instead of its data (see :meth:`data`).
        """
        fresh = self._fresh.get(relative)
        if fresh is not None and fresh["kind"] == kind and not force:
            # Re-read once already in this refresh (a manifest listing one path for
            # two artifacts): the same source, not checked or re-read twice.
            return fresh
        if not force and self.reuse_judged(relative, kind):
            return NOT_DECODED if lazy else self.current[relative].data
        path = self._prefix + relative
        old = self.previous.get(relative)
        self.checked += 1
        entry = self.entries.pop(relative, None)
        made = self._scans.get(relative)
        if made is not None and made[0] is _NOT_MADE:
            del self._scans[relative]  # (judged without a stat walk: make one now)
            made = None
        if made is not None and not force:
            scan, _same_for = self._scans.pop(relative)  # (not judged unchanged for ``kind``)
        else:
            try:
                scan = scan_tree(path, self.root) if entry is None else scan_entry(entry, self.root)
            except SourceFileError as exc:
                return self._keep(relative, old, exc)
        if scan is None:
            return None
        # Compared as plain values: building a (validated) Fingerprint for every
        # unchanged source would cost more than the stat that decided it.
        mtime_ns, size, inode = scan.mtime_ns, scan.size, scan.inode
        signature = scan.signature if scan.is_dir else None
        if old is not None and not self.full and not force:
            # A stored payload not decoded yet: most unchanged sources end here.
            raw = getattr(old, "payload", None)
            if (
                raw is not None
                and self._bytes_ok
                and self._same_raw(raw, relative, scan, signature, kind)
            ):
                self.current[relative] = old
                self.reused.add(relative)
                return NOT_DECODED if lazy else old.data
        if (
            old is not None
            and not self.full
            and old.mtime_ns == mtime_ns
            and old.size == size
            and old.inode == inode
            and old.signature == signature
            and old.data.get("kind") == kind
            and not force
            and self._trusted(old)
        ):
            self.current[relative] = old
            self.reused.add(relative)
            return old.data
        self.reused.discard(relative)  # (read before, as another kind, in this refresh)
        self.changed += 1
        try:
            data = {**reader(scan), "kind": kind}
        except SourceFileError as exc:
            if old is not None and old.data.get("kind") != kind:
                old = None  # data of another kind is no "last good" version of this one
            return self._keep(relative, old, exc)
        from ..models import Fingerprint

        new = Fingerprint(
            path=path,
            mtime_ns=mtime_ns,
            size=size,
            inode=inode,
            signature=signature,
            read_at=self._read_at,
        )
        # ``data`` goes in as the reader made it (JSON-able), unvalidated, as before,
        # except the front matter of facts, which the artifact record holds.
        kept = data
        if kind == "facts" and "front_matter" in data:
            kept = {k: v for k, v in data.items() if k != "front_matter"}
            kept[_IN_RECORD] = True
        self.current[relative] = new.model_copy(
            update={"data": kept, "content_hash": data.get("hash")}
        )
        self._fresh[relative] = data
        return data

    def complete(
        self,
        relative: str,
        reader: Reader,
        facts: Optional[dict[str, Any]],
        stored: Optional[FrontMatterLookup],
    ) -> Optional[dict[str, Any]]:
        """``facts`` with their front matter, for building an artifact record from them.

        Facts reused from a fingerprint lack it: it comes from the record stored
        (``stored``), else the source is read again.  Facts that are last good
        data of a source failing now, with no record stored, stay without it
        (building from them is refused: nothing stored can be lost).
        """
        if facts is None or "front_matter" in facts or not facts.get(_IN_RECORD):
            return facts
        front = stored() if stored is not None else None
        if front is not None:
            return {**facts, "front_matter": front}
        if relative in self.reused:
            self.checked -= 1  # the same source, looked at again
            return self.read(relative, reader, kind="facts", force=True)
        return facts

    def _keep(
        self, relative: str, old: Optional[KnownFingerprint], exc: SourceFileError
    ) -> Optional[dict[str, Any]]:
        self.failed += 1
        self.error(exc.path or self._prefix + relative, exc.message)
        if old is None:
            return None
        self.current[relative] = old  # last good data; its stat differs, so it is retried
        return old.data

    @property
    def vanished(self) -> list[str]:
        """Sources known before that are gone now (or no longer looked at)."""
        return sorted(set(self.previous) - set(self.current))

    @property
    def unchanged(self) -> bool:
        """True when nothing was re-read, nothing vanished and nothing failed."""
        return not self.changed and not self.vanished and not self.failed
