"""Read one project folder into Project, Deployment and local Artifact records.

Deployed artifacts come from every ``.skillmeat-deployed.toml`` SkillMeat
reads (:func:`profile_roots`): ``.claude/`` for the ``claude_code`` profile,
``.agents/`` for ``codex``, and any other hidden folder of the project that
holds one.  Each record names its deployment profile; its files are found
under the record's ``profile_root_dir`` and hashed (only when they changed) to
tell ``modified``, ``conflict`` and ``missing``.  Anything else the layout
shows under ``.claude/`` is a local, unmanaged artifact, kept in the project's
own pseudo-collection ``@<project id>`` so that it can be listed and searched
like the rest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

from ..codec import project_id_for_path
from ..errors import InvalidRecordError
from .artifacts import artifact_reader, build_artifact, hash_reader
from .collection import StoredFrontMatter
from .fileio import DEFAULT_MAX_ARTIFACT_SIZE
from .layout import default_path, find_by_layout
from .manifests import (
    DEPLOYED_TOML,
    PROJECT_MANIFEST,
    PROJECT_TOML,
    manifest_reader,
    read_deployed_toml,
    read_project_manifest,
    read_project_toml,
)
from .tracker import FrontMatterLookup, SourceTracker

if TYPE_CHECKING:
    from ..models import Artifact, Deployment, KnownFingerprint

__all__ = ["ProjectRead", "local_collection", "profile_roots", "read_project"]

_CLAUDE = ".claude"


def profile_roots(path: str) -> list[str]:
    """The profile folders of the project at ``path`` whose deployment file SkillMeat reads.

    As ``DeploymentTracker.read_deployments`` (``skillmeat/storage/deployment.py``)
    does: ``.claude`` always, then every hidden folder of the project (a
    symlink to a folder counts, as ``Path.is_dir`` follows it) that holds a
    ``.skillmeat-deployed.toml``.  Sorted after ``.claude``.
    """
    roots = [_CLAUDE]
    try:
        with os.scandir(path) as entries:
            names = sorted(e.name for e in entries if e.name.startswith(".") and e.is_dir())
    except OSError:
        return roots
    for name in names:
        if name != _CLAUDE and os.path.exists(os.path.join(path, name, DEPLOYED_TOML)):
            roots.append(name)
    return roots


def _local_time(text: Optional[str]) -> Optional[datetime | str]:
    """``deployed_at`` as SkillMeat writes it: ``datetime.now().isoformat()``, naive LOCAL time.

    A naive value is read in this machine's time zone (an offset, if any, is kept).
    Text that is no ISO time is returned as it is, for validation to report.
    """
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return value.astimezone() if value.tzinfo is None else value


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
    # (artifact key, profile) -> deployment: one artifact may be deployed to several profiles.
    deployments: dict[tuple[str, str], Deployment] = field(default_factory=dict)
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
    project_manifest = tracker.read(
        PROJECT_MANIFEST, manifest_reader(read_project_manifest, mcap), kind="manifest"
    )
    deployed_files = []
    for root in profile_roots(path):
        data = tracker.read(
            f"{root}/{DEPLOYED_TOML}", manifest_reader(read_deployed_toml, mcap), kind="manifest"
        )
        if data is not None:
            deployed_files.append((root, data))
    for data in (meta, project_manifest, *(d for _r, d in deployed_files)):
        for problem in (data or {}).get("problems", []):
            tracker.error(path, problem)
    info = (meta or {}).get("parsed") or {}
    manifest_info = (project_manifest or {}).get("parsed") or {}
    result = ProjectRead(id=project_id, fields={}, tracker=tracker)

    covered: set[str] = set()
    for root, data in deployed_files:
        where = os.path.join(path, root, DEPLOYED_TOML)
        for entry in (data.get("parsed") or {}).get("deployed", []):
            profile, profile_root = entry["profile"], entry["profile_root"]
            relative = entry["artifact_path"] or default_path(entry["type"], entry["name"])
            relative = relative.strip("/")
            if profile_root == _CLAUDE:
                covered.add(relative)
            facts = tracker.read(f"{profile_root}/{relative}", hash_reader(), kind="hash")
            key = f"{entry['collection']}/{entry['type']}/{entry['name']}"
            if (key, profile) in result.deployments:
                tracker.error(where, f"{where}: {key} ({profile}) is listed in two files")
                continue
            try:
                deployment = validate(
                    Deployment,
                    {
                        "project_id": project_id,
                        "artifact_key": key,
                        "profile": profile,
                        "profile_root": profile_root,
                        "platform": entry.get("platform"),
                        "deployed_at": _local_time(entry["deployed_at"]),
                        "artifact_path": relative,
                        "content_hash": entry["content_hash"],
                        "local_hash": (facts or {}).get("hash"),
                        "files_present": os.path.lexists(
                            os.path.join(path, profile_root, relative)
                        ),
                        "version": entry["version"],
                    },
                )
            except InvalidRecordError as exc:
                tracker.error(where, f"{where}: {exc}")
                continue
            result.deployments[(key, profile)] = deployment

    listed: dict[str, os.DirEntry[str]] = {}
    found, problems = find_by_layout(claude, tracker.root, listed)
    tracker.entries.update((f"{_CLAUDE}/{relative}", entry) for relative, entry in listed.items())
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
        result.deployments[(artifact.key, deployment.profile)] = deployment

    result.fields = {
        "id": project_id,
        # SkillMeat names a project by its .skillmeat/manifest.toml, else by
        # .claude/.skillmeat-project.toml (the name file of a user-scope project).
        "name": manifest_info.get("name") or info.get("name") or os.path.basename(path) or path,
        "path": path,
        "description": info.get("description") or manifest_info.get("description") or "",
        "managed": bool(meta or project_manifest or deployed_files),
        "errors": tracker.errors,
    }
    return result
