"""Turn what is on disk about one artifact into an :class:`~projcache.models.Artifact` record.

Two steps: :func:`facts_reader` reads the files (content hash, front matter,
first paragraph) and is only called when they changed; :func:`build_artifact`
merges those facts with the collection's manifest and lock entries, which is
cheap and done on every change of either side.

Precedence for descriptive fields (title, description, version) is
SkillMeat's: ``[artifacts.metadata]`` of ``collection.toml`` (the snapshot
SkillMeat took when adding or updating the artifact, and what ``skillmeat
list``/``show`` print), then the artifact's own front matter (what is on disk
now), then the body's first paragraph.  The front matter is kept whole in
``front_matter``, so an on-disk edit SkillMeat has not taken in yet stays
visible (and changes the content hash, which makes its deployments
``outdated``).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Optional

from ..codec import MAX_BODY_CHARS
from ..errors import InvalidRecordError, SourceFileError
from .fileio import TreeScan, read_capped
from .frontmatter import first_paragraph, parse_markdown
from .hashing import hash_tree
from .layout import main_file_of
from .tracker import Reader

__all__ = ["artifact_reader", "build_artifact", "build_mcp_server", "facts_reader", "hash_reader"]


def hash_reader() -> Reader:
    """A reader that only computes the content hash (for deployed copies)."""
    return lambda scan: {"hash": hash_tree(scan)}


def facts_reader(base: str, main: Optional[str], cap: int) -> Reader:
    """A reader returning the content hash, front matter and summary of an artifact."""

    def read(scan: TreeScan) -> dict[str, Any]:
        facts: dict[str, Any] = {"hash": hash_tree(scan), "mtime_ns": scan.mtime_ns}
        if main is not None:
            path = os.path.join(base, main)
            raw = read_capped(path, cap, scan.within)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SourceFileError(
                    f"{path}: not UTF-8 text (byte {exc.start}); Markdown files must be UTF-8",
                    path=path,
                ) from exc
            doc = parse_markdown(text, path)
            facts["front_matter"] = doc.front_matter
            facts["summary"] = first_paragraph(doc.body)
            facts["body"] = doc.body.strip()[:MAX_BODY_CHARS]  # searched, not shown
        return facts

    return read


def artifact_reader(base: str, relative: str, cap: int) -> Reader:
    """:func:`facts_reader` for the artifact at ``relative``, finding its main file lazily.

    Which file describes the artifact is only looked up (a few ``stat`` calls)
    when the artifact changed and is actually read, not on every refresh.
    """

    def read(scan: TreeScan) -> dict[str, Any]:
        return facts_reader(base, main_file_of(base, relative), cap)(scan)

    return read


def _text(value: Any) -> Optional[str]:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _tags(*sources: Any) -> list[str]:
    tags: list[str] = []
    for source in sources:
        if isinstance(source, str):
            source = source.split(",")
        if not isinstance(source, list):
            continue
        for tag in source:
            text = _text(tag)
            if text and len(text) <= 100 and text not in tags:
                tags.append(text)
    return tags


def _when(value: Any) -> Optional[datetime]:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def build_artifact(
    *,
    collection: str,
    type_: str,
    name: str,
    path: str,
    facts: dict[str, Any],
    entry: Optional[dict[str, Any]] = None,
    lock: Optional[dict[str, Any]] = None,
    managed: bool = True,
) -> dict[str, Any]:
    """Merge file facts with manifest and lock entries into Artifact fields.

    Raises:
        InvalidRecordError: ``facts`` lack the front matter they had when read
            (see :meth:`~projcache.sources.tracker.SourceTracker.complete`).
    """
    if "front_matter" not in facts and facts.get("front_matter_in_record"):
        raise InvalidRecordError(
            "its front matter is neither stored nor readable now; it is read again by the "
            "next refresh that can read it"
        )
    entry = entry or {}
    lock = lock or {}
    front = facts.get("front_matter") or {}
    meta = entry.get("metadata") or {}
    mtime_ns = int(facts.get("mtime_ns") or 0)
    updated = _when(entry.get("last_updated")) or (
        datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc) if mtime_ns else None
    )
    return {
        "name": name,
        "type": type_,
        "collection": collection,
        "path": path,
        "title": _text(meta.get("title")) or _text(front.get("title")),
        "description": _text(meta.get("description"))
        or _text(front.get("description"))
        or facts.get("summary")
        or "",
        "tags": _tags(entry.get("tags"), meta.get("tags"), front.get("tags")),
        "version": _text(meta.get("version")) or _text(front.get("version")),
        "origin": _text(entry.get("origin")),
        "upstream": _text(entry.get("upstream")) or _text(lock.get("upstream")),
        "resolved_sha": _text(entry.get("resolved_sha")) or _text(lock.get("resolved_sha")),
        "resolved_version": _text(entry.get("resolved_version"))
        or _text(lock.get("resolved_version")),
        "content_hash": facts.get("hash"),
        "front_matter": front,
        "managed": managed,
        "updated_at": updated,
        "body": facts.get("body") or "",
        # SkillMeat writes `added` with datetime.utcnow(): naive, but UTC.
        "added_at": _when(entry.get("added")),
    }


def build_mcp_server(*, collection: str, path: str, server: dict[str, Any]) -> dict[str, Any]:
    """Artifact fields of one ``[[mcp_servers]]`` entry of ``collection.toml`` (type ``mcp``).

    An MCP server has no files in the collection, so no content hash; ``repo``
    becomes ``upstream``, and the rest stays in ``front_matter`` (environment
    variable *names* only).
    """
    return {
        "name": server["name"],
        "type": "mcp",
        "collection": collection,
        "path": path,
        "description": server.get("description") or "",
        "version": server.get("resolved_version") or server.get("version"),
        "origin": "github",
        "upstream": server.get("repo"),
        "resolved_sha": server.get("resolved_sha"),
        "resolved_version": server.get("resolved_version"),
        "front_matter": {
            key: server[key]
            for key in ("repo", "version", "env_vars", "status", "installed_at")
            if server.get(key) not in (None, [], "")
        },
        "managed": True,
        "updated_at": _when(server.get("last_updated")),
        "added_at": _when(server.get("installed_at")),
    }
