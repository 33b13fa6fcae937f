"""Read one collection folder into Collection and Artifact records, re-reading only changes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from ..errors import InvalidRecordError
from .artifacts import build_artifact, facts_reader
from .layout import default_path, find_by_layout, main_file_of
from .manifests import (
    COLLECTION_LOCK,
    COLLECTION_TOML,
    manifest_reader,
    read_collection_lock,
    read_collection_toml,
)
from .tracker import SourceTracker

if TYPE_CHECKING:
    from ..models import Artifact, Fingerprint

__all__ = ["CollectionRead", "read_collection"]


@dataclass
class CollectionRead:
    """What a collection folder holds now (with last good data where a file failed)."""

    name: str
    path: str
    fields: dict[str, Any]
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    tracker: Optional[SourceTracker] = None


def _usable_name(name: str) -> bool:
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return 0 < size <= 200 and "/" not in name and "\x00" not in name and name[0] != "@"


def read_collection(
    path: str, previous: dict[str, Fingerprint], *, full: bool, cap: int
) -> CollectionRead:
    """Read the collection at ``path`` (resolved) given the fingerprints of the last refresh."""
    from ..models import Artifact, validate

    tracker = SourceTracker(path, previous, full)
    manifest = tracker.read(
        COLLECTION_TOML, manifest_reader(read_collection_toml, cap), kind="manifest"
    )
    lockfile = tracker.read(
        COLLECTION_LOCK, manifest_reader(read_collection_lock, cap), kind="manifest"
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
        if relative.startswith("/") or ".." in relative.split("/") or "\x00" in relative:
            tracker.error(
                os.path.join(path, COLLECTION_TOML),
                f"{os.path.join(path, COLLECTION_TOML)}: artifact {entry['name']!r} has path "
                f"{relative!r} outside the collection",
            )
            continue
        wanted[(entry["type"], entry["name"])] = (relative, entry)
    found, problems = find_by_layout(path)
    for problem in problems:
        tracker.error(path, problem)
    managed_paths = {relative for relative, _entry in wanted.values()}
    for item in found:
        if (item.type, item.name) not in wanted and item.relative not in managed_paths:
            wanted[(item.type, item.name)] = (item.relative, None)

    result = CollectionRead(name=name, path=path, fields={}, tracker=tracker)
    for (type_, artifact_name), (relative, entry) in sorted(wanted.items()):
        main = main_file_of(path, relative)
        facts = tracker.read(relative, facts_reader(path, main, cap), kind="facts")
        if facts is None:
            if entry is not None and not os.path.lexists(os.path.join(path, relative)):
                tracker.error(
                    os.path.join(path, relative),
                    f"{os.path.join(path, COLLECTION_TOML)}: artifact {artifact_name!r} "
                    f"({type_}) is listed at {relative}, which does not exist",
                )
            continue
        fields = build_artifact(
            collection=name,
            type_=type_,
            name=artifact_name,
            path=os.path.join(path, relative),
            facts=facts,
            entry=entry,
            lock=lock_entries.get(f"{artifact_name}::{type_}"),
            managed=entry is not None,
        )
        try:
            artifact = validate(Artifact, fields)
        except InvalidRecordError as exc:
            tracker.error(os.path.join(path, relative), f"{os.path.join(path, relative)}: {exc}")
            continue
        result.artifacts[artifact.key] = artifact
    result.fields = {
        "name": name,
        "path": path,
        "version": info.get("version"),
        "description": info.get("description") or "",
        "managed": manifest is not None,
        "artifact_count": len(result.artifacts),
        "errors": tracker.errors,
    }
    return result
