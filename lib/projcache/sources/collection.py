"""Read one collection folder into Collection and Artifact records, re-reading only changes.

An artifact whose inputs are all as the last refresh left them (its own files'
fingerprint and the collection's manifest and lock all matched) is not rebuilt:
the record the cache already holds for it is what building it would give, so
it is only *kept* (:attr:`CollectionRead.kept`).  That is what makes an
unchanged refresh cost little more than its ``stat`` calls.

A little over 400 lines on purpose: the stat-only survey, the full read and the
rules for keeping a stored artifact judge the same sources by the same layout,
and a change to one must be read beside the others.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

from ..errors import InvalidRecordError
from .artifacts import artifact_reader, build_artifact, build_mcp_server
from .fileio import DEFAULT_MAX_ARTIFACT_SIZE, SourceRoot
from .layout import LAYOUT_DIRS, LayoutItem, default_path, find_by_layout
from .manifests import (
    COLLECTION_LOCK,
    COLLECTION_TOML,
    manifest_reader,
    read_collection_lock,
    read_collection_toml,
)
from .statdigest import (
    StatSummary,
    StatWalk,
    Surveyed,
    changed_sources,
    layout_entries,
    part_hash,
    stat_part,
    walk_digest,
)
from .tracker import NOT_DECODED, FrontMatterLookup, SourceTracker

if TYPE_CHECKING:
    from ..models import Artifact, KnownFingerprint

__all__ = [
    "ArtifactInputs",
    "CollectionRead",
    "Stored",
    "StoredFrontMatter",
    "read_collection",
    "survey_changed",
    "survey_collection",
    "unchanged_collection",
    "walk_collection",
]


@dataclass(frozen=True)
class Stored:
    """What the cache holds for a collection folder: its name and its artifacts' keys.

    Every refresh that changes anything in the folder writes its artifacts and
    its fingerprints in one transaction, so a key here whose inputs still
    match their fingerprints was built from exactly those inputs (and was
    valid: an invalid artifact is never stored).
    """

    name: str
    keys: Set[str]


class ArtifactInputs(NamedTuple):
    """Everything one Artifact record of a collection is built from (see :func:`build_artifact`)."""

    type_: str
    name: str
    relative: str
    facts: dict[str, Any]
    entry: Optional[dict[str, Any]]
    lock: Optional[dict[str, Any]]


# The ``lock`` of a kept artifact's inputs, looked up only if it is built (CollectionRead.locks):
# most kept artifacts never are.
_LOCK_LATER: Any = object()
# ArtifactInputs without its generated __new__ (a Python call): thousands per changed collection.
_inputs = tuple.__new__


@dataclass
class CollectionRead:
    """What a collection folder holds now (with last good data where a file failed).

    ``artifacts`` are the records built this time; ``kept`` names the artifacts
    whose stored record is still current (nothing they come from changed), so
    they were not rebuilt.  :meth:`build` builds one of those on demand.
    """

    name: str
    path: str
    fields: dict[str, Any]
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    tracker: Optional[SourceTracker] = None
    kept: dict[str, ArtifactInputs] = field(default_factory=dict)
    cap: int = 16 * 1024**2  # max_file_size, for reading a kept artifact's main file again
    # collection.lock's entries ("<name>::<type>" -> entry), for a kept artifact's lock.
    locks: dict[str, Any] = field(default_factory=dict)

    def build(self, spec: ArtifactInputs) -> Artifact:
        """Build and validate the Artifact record of ``spec`` (e.g. one of :attr:`kept`).

        Raises:
            InvalidRecordError: the record is not valid.
        """
        from ..models import Artifact, validate

        if spec.lock is _LOCK_LATER:
            spec = spec._replace(lock=self.locks.get(f"{spec.name}::{spec.type_}"))
        if spec.facts is NOT_DECODED and self.tracker is not None:
            spec = spec._replace(facts=self.tracker.data(spec.relative))
        if self.tracker is not None and "front_matter" not in spec.facts:
            # A kept artifact whose record vanished meanwhile: its fingerprint has no
            # front matter (the record held it), so its main file is read again.
            reader = artifact_reader(self.path, spec.relative, self.cap)
            facts = self.tracker.complete(spec.relative, reader, spec.facts, None)
            spec = spec._replace(facts=facts or spec.facts)
        fields = build_artifact(
            collection=self.name,
            type_=spec.type_,
            name=spec.name,
            path=os.path.join(self.path, spec.relative),
            facts=spec.facts,
            entry=spec.entry,
            lock=spec.lock,
            managed=spec.entry is not None,
        )
        return validate(Artifact, fields)


#: Gives the front matter of the stored artifact record of a key (``None`` if none).
StoredFrontMatter = Callable[[str], Optional[dict[str, Any]]]


def _lookup(stored: Optional[StoredFrontMatter], key: str) -> Optional[FrontMatterLookup]:
    return None if stored is None else (lambda: stored(key))


def _usable_name(name: str) -> bool:
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return 0 < size <= 200 and "/" not in name and "\x00" not in name and name[0] != "@"


_MANIFEST_NAMES = (COLLECTION_TOML, COLLECTION_LOCK)
_MANIFESTS = frozenset(_MANIFEST_NAMES)
# The layout's folders, each once (two rules share ``workflows``).
_LAYOUT_FOLDERS = tuple(dict.fromkeys(LAYOUT_DIRS.values()))
_SKILLS = LAYOUT_DIRS["skill"]


def survey_collection(tracker: SourceTracker) -> Optional[frozenset[str]]:
    """Tell, from stats alone, which sources of a collection changed, if only sources did.

    Every entry of the layout's folders must be a source stored last time (no
    link, no stray file), the manifest and the lock as stored (or absent both
    times), and every other stored source (artifacts ``collection.toml`` places
    elsewhere) is looked at too.  Then the answer is the set of sources whose
    stat walk differs from their stored fingerprint (gone, failing or
    changed): empty when nothing :func:`read_collection` looks at changed, so
    the caller keeps the stored records (``tracker.checked`` is then set to
    what :func:`read_collection` would count).  ``None``: something else
    changed or cannot be told here (a new entry, a link, a manifest edited, a
    folder that cannot be listed); the full read decides.  Fingerprints are
    compared as stored bytes (none is decoded); the stat walks made are kept in
    ``tracker`` for :func:`read_collection`, and what they saw in ``tracker.survey``
    when the answer is a set (:mod:`projcache.sources.statdigest`: the next
    refresh compares :func:`walk_collection`'s digest with its summary).
    """
    previous = tracker.previous
    pending = set(previous)
    prefix = tracker.base.rstrip("/") + "/"
    differing: set[str] = set()
    parts: dict[str, bytes] = {}  # the stat parts' hashes of the sources found unchanged
    shape = True  # (after a difference, the others are still walked for the full read)
    for name in _MANIFEST_NAMES:
        if name in pending:
            if not tracker.quick(name, "manifest"):
                shape = False  # a manifest changed: every artifact may have
            parts[name] = part_hash(stat_part(name, tracker.scanned(name)))
            pending.discard(name)
        elif os.path.lexists(prefix + name):
            return None
        else:
            parts[name] = part_hash(stat_part(name, None))
    sources = len(pending)
    for folder in _LAYOUT_FOLDERS:
        entries = layout_entries(prefix + folder, tracker.root)
        if entries is None:
            return None
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            relative = f"{folder}/{name}"
            if relative not in pending or entry.is_symlink():
                return None
            if tracker.quick(relative, "facts", entry):
                parts[relative] = part_hash(stat_part(relative, tracker.scanned(relative)))
            else:
                differing.add(relative)
            pending.remove(relative)
    for relative in pending:  # managed artifacts outside the layout's folders
        if tracker.quick(relative, "facts"):
            parts[relative] = part_hash(stat_part(relative, tracker.scanned(relative)))
        else:
            differing.add(relative)
    if not shape:
        return None
    # The two manifests (read even when absent), each artifact: what read_collection counts.
    tracker.survey = Surveyed(parts, 2 + sources, tuple(sorted(pending)))
    if not differing:
        tracker.checked = 2 + sources
    return frozenset(differing)


def walk_collection(
    path: str,
    root: SourceRoot,
    elsewhere: Iterable[str],
    listings: Optional[Mapping[str, object]] = None,
) -> StatWalk:
    """The stat digest of the collection at ``path``, walked as :func:`survey_collection` walks.

    Compared with a :class:`~projcache.sources.statdigest.StatSummary` the survey
    left; the digest is ``None`` when the walk meets what only the survey can judge.
    ``listings``: the summary's (folders whose listing still holds are not listed).
    """
    return walk_digest(path, root, _MANIFEST_NAMES, _LAYOUT_FOLDERS, elsewhere, listings)


def survey_changed(
    tracker: SourceTracker, summary: StatSummary, walk: StatWalk
) -> Optional[frozenset[str]]:
    """:func:`survey_collection`'s answer from a summary and a walk that differ in a few sources.

    Every source whose part is the summary's is judged unchanged as the survey
    would have (the summary was made against these very fingerprints); only
    the others are looked at (:meth:`SourceTracker.quick`).  ``None`` when the
    walk cannot tell (another set of sources, a manifest changed): then the
    survey runs.
    """
    changed = changed_sources(summary, walk)
    if changed is None or changed & _MANIFESTS:
        return None
    previous = tracker.previous
    if any(
        relative not in previous and (relative in changed or relative not in _MANIFESTS)
        for relative in walk.hashes
    ):
        return None  # (only an absent manifest has a part and no fingerprint)
    parts = dict(walk.hashes)
    for relative in walk.hashes:
        if relative in previous and relative not in changed:
            tracker.judge(relative, "manifest" if relative in _MANIFESTS else "facts")
    differing = set()
    for relative in changed:
        del parts[relative]
        if tracker.quick(relative, "facts"):
            parts[relative] = part_hash(stat_part(relative, tracker.scanned(relative)))
        else:
            differing.add(relative)
    tracker.survey = Surveyed(parts, summary.checked, summary.elsewhere)
    if not differing:
        tracker.checked = summary.checked
    return frozenset(differing)


def unchanged_collection(tracker: SourceTracker) -> bool:
    """Tell whether nothing :func:`read_collection` looks at changed (:func:`survey_collection`)."""
    return survey_collection(tracker) == frozenset()


def _same_layout(tracker: SourceTracker, relative: str) -> bool:
    """Tell whether the layout judges the changed source ``relative`` as it did last time.

    It is still there, still a folder or still a file, and a folder directly
    in ``skills/`` still holds ``SKILL.md``: so :func:`find_by_layout` would
    name it and report it (not at all) as last time.
    """
    scan = tracker.scanned(relative)
    old = tracker.previous.get(relative)
    if scan is None or old is None:
        return False
    try:
        was_folder = old.signature is not None
    except InvalidRecordError:
        return False
    if scan.is_dir != was_folder:
        return False
    folder, _slash, rest = relative.partition("/")
    if scan.is_dir and folder == _SKILLS and rest and "/" not in rest:
        return any(parts == ("SKILL.md",) for parts, _info in scan.files)
    return True


def read_collection(
    path: str,
    previous: Mapping[str, KnownFingerprint],
    *,
    full: bool,
    cap: int,
    stored: Optional[Stored] = None,
    max_bytes: int = DEFAULT_MAX_ARTIFACT_SIZE,
    stored_front_matter: Optional[StoredFrontMatter] = None,
    manifest_cap: Optional[int] = None,
    tracker: Optional[SourceTracker] = None,
    changed: Optional[Set[str]] = None,
) -> CollectionRead:
    """Read the collection at ``path`` (resolved) given the fingerprints of the last refresh.

    With ``stored`` (what the cache holds for this folder), artifacts whose
    inputs did not change since are kept rather than rebuilt (see :class:`Stored`).
    ``cap`` bounds each file read, ``manifest_cap`` (default: ``cap``) the manifests,
    which list every artifact and so grow with the collection. ``max_bytes`` bounds one
    artifact's files (links out of ``path`` are refused).
    ``stored_front_matter(key)`` gives the front matter of the stored artifact
    record ``key`` (fingerprints do not keep it); without it, an artifact
    rebuilt from unchanged files reads its main file again.  ``tracker``: one
    made for ``path`` and ``previous`` already (by :func:`unchanged_collection`,
    whose stat walks it keeps).  ``changed``: the sources :func:`survey_collection`
    found changed (it answered a set: nothing but sources changed).  When every
    stored source is an artifact ``collection.toml`` lists and each changed one
    is judged by the layout as last time (:func:`_same_layout`), the layout's
    folders are not listed again: they show exactly what they showed then.
    """
    from ..models import Artifact, validate

    if tracker is None:
        tracker = SourceTracker(path, previous, full, max_bytes=max_bytes)
    mcap = cap if manifest_cap is None else manifest_cap
    manifest = tracker.read(
        COLLECTION_TOML, manifest_reader(read_collection_toml, mcap), kind="manifest"
    )
    lockfile = tracker.read(
        COLLECTION_LOCK, manifest_reader(read_collection_lock, mcap), kind="manifest"
    )
    for data in (manifest, lockfile):
        for problem in (data or {}).get("problems", []):
            tracker.error(path, problem)
    toml = (manifest or {}).get("parsed") or {}
    info = toml.get("collection") or {}
    name = info.get("name") or os.path.basename(path)
    if not _usable_name(name):
        tracker.error(
            os.path.join(path, COLLECTION_TOML),
            f"{os.path.join(path, COLLECTION_TOML)}: collection name {name!r} is not usable "
            "(UTF-8, no '/', not starting with '@', at most 200 bytes); using the folder name",
        )
        name = os.path.basename(path)
        if not _usable_name(name):
            # '@' names the projects' own collections; undecodable bytes cannot be keys.
            name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            name = name.lstrip("@").replace("/", "_")[:100] or "collection"
    lock_entries: dict[str, Any] = ((lockfile or {}).get("parsed") or {}).get("entries", {})

    # Managed entries first (their path may differ from the layout), then
    # whatever else the layout shows, as unmanaged.
    wanted: dict[tuple[str, str], tuple[str, Optional[dict[str, Any]]]] = {}
    for entry in toml.get("artifacts", []):
        relative = (entry.get("path") or default_path(entry["type"], entry["name"])).strip("/")
        if (
            relative.startswith("/")
            or "\x00" in relative
            or (".." in relative and ".." in relative.split("/"))  # (split only when it may)
        ):
            tracker.error(
                os.path.join(path, COLLECTION_TOML),
                f"{os.path.join(path, COLLECTION_TOML)}: artifact {entry['name']!r} has path "
                f"{relative!r} outside the collection",
            )
            continue
        wanted[(entry["type"], entry["name"])] = (relative, entry)
    managed_paths = {relative for relative, _entry in wanted.values()}
    if (
        changed is not None
        and not full
        and previous.keys() - _MANIFESTS == managed_paths
        and all(_same_layout(tracker, relative) for relative in changed)
    ):
        # Every entry of the layout's folders is a managed artifact's stored source,
        # each as the layout judged it last time (no problem then: the collection
        # had no errors): listing them again would add nothing and report nothing.
        found: list[LayoutItem] = []
    else:
        found, problems = find_by_layout(path, tracker.root, tracker.entries, tracker.scanned)
        for problem in problems:
            tracker.error(path, problem)
    for item in found:
        if (item.type, item.name) not in wanted and item.relative not in managed_paths:
            wanted[(item.type, item.name)] = (item.relative, None)

    # Artifacts are kept only while the manifest and the lock (their other
    # inputs, with the name) are as last time: present and unchanged, or absent
    # both times.
    keys = (
        stored.keys
        if stored is not None
        and not full
        and stored.name == name
        and all(
            relative in tracker.reused
            or (relative not in previous and relative not in tracker.current)
            for relative in (COLLECTION_TOML, COLLECTION_LOCK)
        )
        else frozenset()
    )
    reused = tracker.reused
    result = CollectionRead(
        name=name, path=path, fields={}, tracker=tracker, cap=cap, locks=lock_entries
    )
    prefix = path if path.endswith("/") else path + "/"
    # First, in no order, the artifacts judged unchanged by survey_collection and stored:
    # kept, as below, without a reader (most of a big collection of which a few changed).
    # Only the others are sorted and looked at one by one, in key order, as before.
    rest: list[tuple[tuple[str, str], tuple[str, Optional[dict[str, Any]]]]] = []
    kept_now, reuse_judged = result.kept, tracker.reuse_judged
    for wanted_item in wanted.items():
        (type_, artifact_name), (relative, entry) = wanted_item
        key = f"{name}/{type_}/{artifact_name}"  # a stored key has exactly these three parts
        if key in keys and reuse_judged(relative, "facts"):
            kept_now[key] = _inputs(
                ArtifactInputs, (type_, artifact_name, relative, NOT_DECODED, entry, _LOCK_LATER)
            )
        else:
            rest.append(wanted_item)
    for (type_, artifact_name), (relative, entry) in sorted(rest):
        key = f"{name}/{type_}/{artifact_name}"
        lock = lock_entries.get(f"{artifact_name}::{type_}")
        reader = artifact_reader(path, relative, cap)
        facts = tracker.read(relative, reader, kind="facts", lazy=True)
        if facts is None:
            if entry is not None and not os.path.lexists(prefix + relative):
                tracker.error(
                    prefix + relative,
                    f"{prefix}{COLLECTION_TOML}: artifact {artifact_name!r} "
                    f"({type_}) is listed at {relative}, which does not exist",
                )
            continue
        kept = relative in reused and key in keys
        if not kept:  # to be built: facts reused from a fingerprint need their front matter
            if facts is NOT_DECODED:
                facts = tracker.data(relative)
            facts = tracker.complete(relative, reader, facts, _lookup(stored_front_matter, key))
            if facts is None:
                continue
        spec = ArtifactInputs(type_, artifact_name, relative, facts, entry, lock)
        if kept:
            result.kept[key] = spec
            continue
        try:
            artifact = result.build(spec)
        except InvalidRecordError as exc:
            tracker.error(prefix + relative, f"{prefix}{relative}: {exc}")
            continue
        result.artifacts[artifact.key] = artifact
    manifest_path = prefix + COLLECTION_TOML
    for server in toml.get("mcp_servers", []):
        key = f"{name}/mcp/{server['name']}"
        if key in result.artifacts or key in result.kept:
            tracker.error(
                manifest_path,
                f"{manifest_path}: MCP server {server['name']!r} has the name of an mcp "
                "artifact; the [[artifacts]] entry is kept",
            )
            continue
        try:
            artifact = validate(
                Artifact, build_mcp_server(collection=name, path=manifest_path, server=server)
            )
        except InvalidRecordError as exc:
            tracker.error(manifest_path, f"{manifest_path}: {exc}")
            continue
        result.artifacts[artifact.key] = artifact
    result.fields = {
        "name": name,
        "path": path,
        "version": info.get("version"),
        "description": info.get("description") or "",
        "managed": manifest is not None,
        "artifact_count": len(result.artifacts) + len(result.kept),
        "errors": tracker.errors,
    }
    return result
