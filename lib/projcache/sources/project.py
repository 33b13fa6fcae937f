"""Read one project's ``.claude/`` folder into Project, Deployment and local Artifact records.

Deployed artifacts come from ``.skillmeat-deployed.toml``; their files in the
project are hashed (only when they changed) to tell ``modified`` and
``missing``.  Anything else the layout shows under ``.claude/`` is a local,
unmanaged artifact, kept in the project's own pseudo-collection
``@<project id>`` so that it can be listed and searched like the rest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from ..codec import project_id_for_path
from ..errors import InvalidRecordError
from .artifacts import artifact_reader, build_artifact, hash_reader
from .collection import StoredFrontMatter
from .fileio import DEFAULT_MAX_ARTIFACT_SIZE
from .layout import default_path, find_by_layout
from .manifests import (
    DEPLOYED_TOML,
    PROJECT_TOML,
    manifest_reader,
    read_deployed_toml,
    read_project_toml,
)
from .tracker import FrontMatterLookup, SourceTracker

if TYPE_CHECKING:
    from ..models import Artifact, Deployment, KnownFingerprint

__all__ = ["ProjectRead", "local_collection", "read_project"]

_CLAUDE = ".claude"


def _bind(stored: StoredFrontMatter, key: str) -> FrontMatterLookup:
    return lambda: stored(key)


def local_collection(project_id: str) -> str:
    """The pseudo-collection holding a project's own, unmanaged artifacts."""
    return f"@{project_id}"


@dataclass
class ProjectRead:
    """What a project folder holds now (with last good data where a file failed)."""

    id: str
    fields: dict[str, Any]
    deployments: dict[str, Deployment] = field(default_factory=dict)
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    tracker: SourceTracker | None = None


def read_project(
    path: str,
    previous: Mapping[str, KnownFingerprint],
    *,
    full: bool,
    cap: int,
    max_bytes: int = DEFAULT_MAX_ARTIFACT_SIZE,
    stored_front_matter: StoredFrontMatter | None = None,
    manifest_cap: Optional[int] = None,
) -> ProjectRead:
    """Read the project at ``path`` (resolved) given the fingerprints of the last refresh.

    ``cap`` bounds each file read, ``manifest_cap`` (default: ``cap``) the manifests.
    ``max_bytes`` bounds one artifact's files (links out of ``path`` are refused);
    ``stored_front_matter`` as for :func:`~projcache.sources.collection.read_collection`.
    """
    from ..models import Artifact, Deployment, validate

    project_id = project_id_for_path(path)
    claude = os.path.join(path, _CLAUDE)
    tracker = SourceTracker(path, previous, full, max_bytes=max_bytes)
    mcap = cap if manifest_cap is None else manifest_cap
    meta = tracker.read(
        f"{_CLAUDE}/{PROJECT_TOML}", manifest_reader(read_project_toml, mcap), kind="manifest"
    )
    deployed = tracker.read(
        f"{_CLAUDE}/{DEPLOYED_TOML}", manifest_reader(read_deployed_toml, mcap), kind="manifest"
    )
    for data in (meta, deployed):
        for problem in (data or {}).get("problems", []):
            tracker.error(path, problem)
    info = (meta or {}).get("parsed") or {}
    result = ProjectRead(id=project_id, fields={}, tracker=tracker)

    covered: set[str] = set()
    for entry in ((deployed or {}).get("parsed") or {}).get("deployed", []):
        relative = entry["artifact_path"] or default_path(entry["type"], entry["name"])
        covered.add(relative.strip("/"))
        facts = tracker.read(f"{_CLAUDE}/{relative}", hash_reader(), kind="hash")
        key = f"{entry['collection']}/{entry['type']}/{entry['name']}"
        try:
            deployment = validate(
                Deployment,
                {
                    "project_id": project_id,
                    "artifact_key": key,
                    "deployed_at": entry["deployed_at"],
                    "artifact_path": relative,
                    "content_hash": entry["content_hash"],
                    "local_hash": (facts or {}).get("hash"),
                    "files_present": os.path.lexists(os.path.join(claude, relative)),
                    "version": entry["version"],
                },
            )
        except InvalidRecordError as exc:
            tracker.error(os.path.join(claude, DEPLOYED_TOML), f"{claude}/{DEPLOYED_TOML}: {exc}")
            continue
        result.deployments[key] = deployment

    found, problems = find_by_layout(claude, tracker.root)
    for problem in problems:
        tracker.error(claude, problem)
    collection = local_collection(project_id)
    for item in found:
        if item.relative in covered:
            continue
        relative = f"{_CLAUDE}/{item.relative}"
        reader = artifact_reader(claude, item.relative, cap)
        facts = tracker.read(relative, reader, kind="facts")
        key = f"{collection}/{item.type}/{item.name}"
        lookup = None if stored_front_matter is None else _bind(stored_front_matter, key)
        facts = tracker.complete(relative, reader, facts, lookup)
        if facts is None:
            continue
        try:
            fields = build_artifact(
                collection=collection,
                type_=item.type,
                name=item.name,
                path=os.path.join(claude, item.relative),
                facts=facts,
                managed=False,
            )
            artifact = validate(Artifact, fields)
            deployment = validate(
                Deployment,
                {
                    "project_id": project_id,
                    "artifact_key": artifact.key,
                    "artifact_path": item.relative,
                    "content_hash": artifact.content_hash,
                    "local_hash": artifact.content_hash,
                },
            )
        except InvalidRecordError as exc:
            where = os.path.join(claude, item.relative)
            tracker.error(where, f"{where}: {exc}")
            continue
        result.artifacts[artifact.key] = artifact
        result.deployments[artifact.key] = deployment

    result.fields = {
        "id": project_id,
        "name": info.get("name") or os.path.basename(path) or path,
        "path": path,
        "description": info.get("description") or "",
        "managed": meta is not None or deployed is not None,
        "errors": tracker.errors,
    }
    return result
