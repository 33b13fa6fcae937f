"""Readers of SkillMeat's TOML files: ``collection.toml``, ``collection.lock``,
``.skillmeat-deployed.toml``, ``.skillmeat-project.toml`` and ``.skillmeat/manifest.toml``.

Which fields are read, and what becomes of them, is listed in
``docs/cache/skillmeat-compatibility.md`` (a test checks the two agree).

Each returns plain JSON-able data (kept in the source's fingerprint, so an
unchanged file is never parsed again) plus a list of problems with single
entries.  A bad entry is skipped and reported; a file that is not TOML at all
raises :class:`~projcache.errors.SourceFileError`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

# tomli, not the stdlib's tomllib (its copy): tomli's compiled wheels parse a manifest ~3x
# faster, ~10% of a first refresh (ADR 0011).
import tomli as tomllib

from ..codec import ARTIFACT_TYPES, DEFAULT_PROFILE, check_profile, check_type_name
from ..errors import InvalidRecordError, SourceFileError
from .fileio import TreeScan, read_capped
from .frontmatter import to_jsonable

__all__ = [
    "COLLECTION_LOCK",
    "COLLECTION_TOML",
    "DEPLOYED_TOML",
    "PROJECT_MANIFEST",
    "PROJECT_TOML",
    "manifest_reader",
    "read_collection_lock",
    "read_collection_toml",
    "read_deployed_toml",
    "read_project_manifest",
    "read_project_toml",
]

logger = logging.getLogger(__name__)

COLLECTION_TOML = "collection.toml"
COLLECTION_LOCK = "collection.lock"
DEPLOYED_TOML = ".skillmeat-deployed.toml"
PROJECT_TOML = ".skillmeat-project.toml"
# Written by `skillmeat init` in a project (skillmeat/cli/commands/init.py).
PROJECT_MANIFEST = ".skillmeat/manifest.toml"

Problems = list[str]


def manifest_reader(
    parse: Callable[[str, int], tuple[dict[str, Any], Problems]], cap: int
) -> Callable[[TreeScan], dict[str, Any]]:
    """A fingerprint reader for one manifest: its parsed data and its per-entry problems."""

    def read(scan: TreeScan) -> dict[str, Any]:
        parsed, problems = parse(scan.root, cap)
        return {"parsed": parsed, "problems": problems}

    return read


def _load(path: str, cap: int) -> dict[str, Any]:
    raw = read_capped(path, cap)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceFileError(
            f"{path}: not UTF-8 text (byte {exc.start}); TOML files must be UTF-8", path=path
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SourceFileError(f"{path}: invalid TOML: {exc}", path=path) from exc
    except RecursionError as exc:
        raise SourceFileError(f"{path}: invalid TOML: nested too deeply", path=path) from exc
    try:
        result: dict[str, Any] = to_jsonable(data)
    except ValueError as exc:
        raise SourceFileError(f"{path}: {exc}", path=path) from exc
    return result


def _table(data: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise SourceFileError(f"{path}: [{key}] must be a table", path=path)
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return []
    tags: list[str] = []
    for tag in value:
        text = str(tag).strip() if tag is not None else ""
        if text and len(text) <= 100 and text not in tags:
            tags.append(text)
    return tags


def _name_ok(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and "/" not in name and "\x00" not in name


def _type_ok(type_: Any, path: str, name: Any) -> bool:
    """Tell whether ``type_`` can be stored; a type SkillMeat 0.74.0 does not know is
    kept as declared, with a warning in the log (never an error)."""
    try:
        check_type_name(type_)
    except InvalidRecordError:
        return False
    if type_ not in ARTIFACT_TYPES:
        logger.warning("%s: %r has type %r, unknown to projcache; kept as is", path, name, type_)
    return True


def _mcp_servers(data: dict[str, Any], path: str, problems: Problems) -> list[dict[str, Any]]:
    """``[[mcp_servers]]`` of collection.toml (what ``skillmeat mcp add`` writes).

    Environment variables keep their names only: their values are often secrets.
    """
    entries = data.get("mcp_servers", [])
    if not isinstance(entries, list):
        problems.append(f"{path}: [[mcp_servers]] must be an array of tables; ignored")
        return []
    servers: list[dict[str, Any]] = []
    names: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            problems.append(f"{path}: MCP server #{number} is not a table")
            continue
        name = entry.get("name")
        if not _name_ok(name) or name in names:
            problems.append(f"{path}: MCP server #{number} has no valid, unique name ({name!r})")
            continue
        names.add(str(name))
        env = entry.get("env_vars", {})
        servers.append(
            {
                "name": name,
                "repo": _text(entry.get("repo")),
                "version": _text(entry.get("version")),
                "description": _text(entry.get("description")) or "",
                "env_vars": sorted(str(k) for k in env) if isinstance(env, dict) else [],
                "status": _text(entry.get("status")) or "not_installed",
                "installed_at": _text(entry.get("installed_at")),
                "resolved_sha": _text(entry.get("resolved_sha")),
                "resolved_version": _text(entry.get("resolved_version")),
                "last_updated": _text(entry.get("last_updated")),
            }
        )
    return servers


def read_collection_toml(path: str, cap: int) -> tuple[dict[str, Any], Problems]:
    """Parse ``collection.toml``: ``{"collection": {...}, "artifacts": [...]}``.

    Each artifact entry keeps name, type, path, origin, upstream, version_spec,
    resolved_sha, resolved_version, added, last_updated, tags and metadata.
    """
    data = _load(path, cap)
    info = _table(data, "collection", path)
    entries = data.get("artifacts", [])
    if not isinstance(entries, list):
        raise SourceFileError(f"{path}: [[artifacts]] must be an array of tables", path=path)
    problems: Problems = []
    artifacts: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            problems.append(f"{path}: artifact #{number} is not a table")
            continue
        name, type_ = entry.get("name"), entry.get("type")
        if not _name_ok(name):
            problems.append(f"{path}: artifact #{number} has no valid name (got {name!r})")
            continue
        if not _type_ok(type_, path, name):
            problems.append(
                f"{path}: artifact {name!r} has type {type_!r}; expected a lowercase "
                f"type name such as {', '.join(ARTIFACT_TYPES[:5])}"
            )
            continue
        if (name, type_) in seen:
            problems.append(f"{path}: artifact {name!r} ({type_}) is listed twice")
            continue
        seen.add((str(name), str(type_)))
        metadata = entry.get("metadata", {})
        artifacts.append(
            {
                "name": name,
                "type": type_,
                "path": _text(entry.get("path")),
                "origin": _text(entry.get("origin")),
                "upstream": _text(entry.get("upstream")),
                "version_spec": _text(entry.get("version_spec")),
                "resolved_sha": _text(entry.get("resolved_sha")),
                "resolved_version": _text(entry.get("resolved_version")),
                "added": _text(entry.get("added")),
                "last_updated": _text(entry.get("last_updated")),
                "tags": _tags(entry.get("tags", [])),
                "metadata": metadata if isinstance(metadata, dict) else {},
            }
        )
    collection = {
        "name": _text(info.get("name")),
        "version": _text(info.get("version")),
        "description": _text(info.get("description")) or "",
        "updated": _text(info.get("updated")),
    }
    servers = _mcp_servers(data, path, problems)
    return {"collection": collection, "artifacts": artifacts, "mcp_servers": servers}, problems


def read_collection_lock(path: str, cap: int) -> tuple[dict[str, Any], Problems]:
    """Parse ``collection.lock``: ``{"entries": {"<name>::<type>": {...}}}``."""
    data = _load(path, cap)
    lock = _table(data, "lock", path)
    entries = lock.get("entries", {})
    if not isinstance(entries, dict):
        raise SourceFileError(f"{path}: [lock.entries] must be a table", path=path)
    problems: Problems = []
    result: dict[str, dict[str, Any]] = {}
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            problems.append(f"{path}: lock entry {key!r} is not a table")
            continue
        result[key] = {
            "content_hash": _text(entry.get("content_hash")),
            "resolved_sha": _text(entry.get("resolved_sha")),
            "resolved_version": _text(entry.get("resolved_version")),
            "upstream": _text(entry.get("upstream")),
            "fetched": _text(entry.get("fetched")),
        }
    return {"entries": result}, problems


def read_deployed_toml(path: str, cap: int) -> tuple[dict[str, Any], Problems]:
    """Parse ``.skillmeat-deployed.toml``: ``{"deployed": [...]}``.

    ``content_hash`` falls back to the older ``collection_sha``; ``version``
    is taken from ``version`` or ``resolved_version`` when SkillMeat wrote one.
    ``deployment_profile_id`` defaults to ``claude_code`` and ``profile_root_dir``
    to ``.claude``, as SkillMeat reads them (``skillmeat/storage/deployment.py``,
    ``DeploymentTracker.detect_modifications``).
    """
    data = _load(path, cap)
    entries = data.get("deployed", [])
    if not isinstance(entries, list):
        raise SourceFileError(f"{path}: [[deployed]] must be an array of tables", path=path)
    problems: Problems = []
    deployed: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str, str]] = set()
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            problems.append(f"{path}: deployment #{number} is not a table")
            continue
        name, type_ = entry.get("artifact_name"), entry.get("artifact_type")
        collection = entry.get("from_collection") or "default"
        if not _name_ok(name) or not _type_ok(type_, path, name) or not _name_ok(collection):
            problems.append(
                f"{path}: deployment #{number} needs artifact_name, a valid artifact_type "
                f"and from_collection (got {name!r}, {type_!r}, {collection!r})"
            )
            continue
        profile = entry.get("deployment_profile_id") or DEFAULT_PROFILE
        root = entry.get("profile_root_dir") or ".claude"
        try:
            check_profile(profile)
        except InvalidRecordError as exc:
            problems.append(f"{path}: deployment {name!r}: {exc}")
            continue
        if (
            not isinstance(root, str)
            or "\x00" in root
            or root.startswith("/")
            or ".." in root.split("/")
            or not root.strip("/")
        ):
            problems.append(
                f"{path}: deployment {name!r} has profile_root_dir {root!r} outside the project"
            )
            continue
        if (collection, type_, name, profile) in seen:
            problems.append(f"{path}: {collection}/{type_}/{name} ({profile}) is listed twice")
            continue
        seen.add((str(collection), str(type_), str(name), str(profile)))
        artifact_path = _text(entry.get("artifact_path")) or ""
        if "\x00" in artifact_path:
            problems.append(f"{path}: deployment {name!r} has a NUL character in artifact_path")
            continue
        if artifact_path.startswith("/") or ".." in artifact_path.split("/"):
            problems.append(
                f"{path}: deployment {name!r} has artifact_path {artifact_path!r} outside {root}/"
            )
            continue
        lineage = entry.get("version_lineage", [])
        deployed.append(
            {
                "name": name,
                "type": type_,
                "collection": collection,
                "deployed_at": _text(entry.get("deployed_at")),
                "artifact_path": artifact_path,
                "content_hash": _text(entry.get("content_hash") or entry.get("collection_sha")),
                "local_modifications": bool(entry.get("local_modifications", False)),
                "version": _text(entry.get("version") or entry.get("resolved_version")),
                "version_lineage": [str(v) for v in lineage] if isinstance(lineage, list) else [],
                "profile": profile,
                "profile_root": root.strip("/"),
                "platform": _text(entry.get("platform")),
            }
        )
    return {"deployed": deployed}, problems


def read_project_manifest(path: str, cap: int) -> tuple[dict[str, Any], Problems]:
    """Parse ``.skillmeat/manifest.toml``: ``{"name": ..., "description": ...}``.

    ``skillmeat init`` writes it in a project; SkillMeat shows its ``name``.
    """
    return read_project_toml(path, cap)


def read_project_toml(path: str, cap: int) -> tuple[dict[str, Any], Problems]:
    """Parse ``.skillmeat-project.toml``: ``{"name": ..., "description": ...}``."""
    data = _load(path, cap)
    project = _table(data, "project", path)
    return {
        "name": _text(project.get("name")),
        "description": _text(project.get("description")) or "",
    }, []
