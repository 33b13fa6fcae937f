"""Builders of real SkillMeat trees on disk: collection folders and projects' ``.claude/``.

Plain classes and functions, not fixtures: test modules import them
(``from factories import CollectionBuilder``; pytest puts ``tests/`` on
``sys.path`` because the folder has no ``__init__.py``).  Files follow the
layout of DESIGN.md, "What it caches, and from where"; lock and deployment
hashes are computed with :func:`projcache.sources.content_hash`, exactly as
SkillMeat computes them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Union

import yaml

import projcache
from projcache.codec import project_id_for_path
from projcache.config import Settings
from projcache.sources import content_hash, local_collection

#: Set by ``tasks.py stress`` (a CI step): the costly generated tests draw all their examples.
THOROUGH = os.environ.get("TESTS_THOROUGH", "") == "1"


def examples(full: int) -> int:
    """How many examples a costly generated test (marked ``generated``) draws.

    All ``full`` of them in the thorough run (``TESTS_THOROUGH=1``, which
    ``tasks.py stress`` sets), a quarter (at least 10) in the default run, so
    that the default run stays short and CI still runs every example.
    """
    return full if THOROUGH else max(10, full // 4)


__all__ = [
    "DIRECT",
    "DIRECT_KEY",
    "EXAMPLES",
    "FOLDERS",
    "WORLD_KEYS",
    "CollectionBuilder",
    "ProjectBuilder",
    "Seeded",
    "ShopWorld",
    "age",
    "artifact_relative",
    "copy_examples",
    "markdown",
    "set_mtime",
    "toml_document",
    "toml_value",
    "with_roots",
    "write_artifact",
]

FOLDERS = {"skill": "skills", "command": "commands", "agent": "agents"}
_FILE_TYPES = ("command", "agent")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_STAMP = "2026-01-01T00:00:00Z"

Tables = list[tuple[str, dict[str, Any]]]


# -- TOML and Markdown writers ------------------------------------------------------


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def toml_value(value: Any) -> str:
    """Render one TOML value: text, bool, number, datetime, array or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        # JSON's escapes (\" \\ \n \uXXXX ...) are all valid in a TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"no TOML form for {value!r}")


def toml_document(tables: Tables) -> str:
    """Render ``[(header, fields), ...]``; a header in ``[[...]]`` form is an array item."""
    out: list[str] = []
    for header, fields in tables:
        if header:
            out.append(header)
        out.extend(f"{_toml_key(k)} = {toml_value(v)}" for k, v in fields.items() if v is not None)
        out.append("")
    return "\n".join(out)


def markdown(front_matter: Optional[Mapping[str, Any]], body: str) -> str:
    """A Markdown file: YAML front matter between ``---`` lines (when given), then ``body``."""
    if front_matter is None:
        return body
    block = yaml.safe_dump(dict(front_matter), sort_keys=False, allow_unicode=True)
    return f"---\n{block}---\n{body}"


# -- files ------------------------------------------------------------------------------


def artifact_relative(type_: str, name: str) -> str:
    """Where SkillMeat puts an artifact, relative to its collection or ``.claude/``."""
    folder = FOLDERS[type_]
    return f"{folder}/{name}.md" if type_ in _FILE_TYPES else f"{folder}/{name}"


def write_artifact(
    base: Path,
    type_: str,
    name: str,
    *,
    front_matter: Optional[Mapping[str, Any]] = None,
    body: Optional[str] = None,
    files: Optional[Mapping[str, str]] = None,
) -> Path:
    """Write one artifact under ``base`` by layout; return its file or folder.

    A skill is ``skills/<name>/SKILL.md`` plus ``files`` (relative to its
    folder); a command or agent is one ``.md`` file (``files`` must be empty).
    ``front_matter`` defaults to ``{"name": name, "description": ...}``.
    """
    if front_matter is None:
        front_matter = {"name": name, "description": f"The {name} {type_}."}
    if body is None:
        body = f"# {name}\n\nHow to use {name}.\n"
    text = markdown(front_matter, body)
    target = base / artifact_relative(type_, name)
    if type_ in _FILE_TYPES:
        if files:
            raise ValueError(f"a {type_} is a single file; extra files given: {sorted(files)}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return target
    target.mkdir(parents=True, exist_ok=True)
    (target / "SKILL.md").write_text(text, encoding="utf-8")
    for relative, content in (files or {}).items():
        extra = target / relative
        extra.parent.mkdir(parents=True, exist_ok=True)
        extra.write_text(content, encoding="utf-8")
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def set_mtime(path: Union[str, os.PathLike[str]], when_ns: int) -> None:
    """Set the access and modification time of ``path`` (one file) to ``when_ns``."""
    os.utime(path, ns=(when_ns, when_ns))


def age(path: Union[str, os.PathLike[str]], seconds: float = 3600.0) -> int:
    """Move the mtime of ``path`` and of everything under it ``seconds`` into the past.

    A fingerprint whose mtime lies within two seconds of when it was read is
    not trusted by the next refresh (``sources.tracker.RACY_WINDOW_NS``), so a
    tree built moments ago is re-read every time; aging it first makes the
    second refresh of an unchanged tree truly read nothing.  Aging changes
    every mtime, so age *before* the refresh the test measures from.
    Returns the timestamp set, in nanoseconds.
    """
    when = time.time_ns() - int(seconds * 1e9)
    root = Path(path)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            target = os.path.join(dirpath, name)
            if not os.path.islink(target):
                set_mtime(target, when)
    set_mtime(root, when)
    return when


# -- collections ---------------------------------------------------------------------


class CollectionBuilder:
    """A collection folder: artifacts by layout, ``collection.toml`` and ``collection.lock``.

    ``add`` writes an artifact's files at once; :meth:`write` (re)writes the two
    manifests from what was added, hashing the artifacts as they are on disk then.
    """

    def __init__(
        self,
        root: Union[str, os.PathLike[str]],
        name: str = "default",
        *,
        version: Optional[str] = "1.0.0",
        description: Optional[str] = None,
        folder: Optional[str] = None,
    ) -> None:
        self.name = name
        self.version = version
        self.description = description
        self.path = Path(os.path.realpath(Path(root) / (folder or name)))
        self.path.mkdir(parents=True, exist_ok=True)
        # (type, name) -> manifest entry, for managed artifacts only.
        self.entries: dict[tuple[str, str], dict[str, Any]] = {}

    def artifact_path(self, type_: str, name: str) -> Path:
        """The artifact's file (command, agent) or folder (skill)."""
        return self.path / artifact_relative(type_, name)

    def main_file(self, type_: str, name: str) -> Path:
        """The file whose front matter describes the artifact."""
        path = self.artifact_path(type_, name)
        return path / "SKILL.md" if type_ == "skill" else path

    def key(self, type_: str, name: str) -> str:
        """The artifact's cache key ``<collection>/<type>/<name>``."""
        return f"{self.name}/{type_}/{name}"

    def add(
        self,
        type_: str,
        name: str,
        *,
        front_matter: Optional[Mapping[str, Any]] = None,
        body: Optional[str] = None,
        files: Optional[Mapping[str, str]] = None,
        managed: bool = True,
        tags: Iterable[str] = (),
        metadata: Optional[Mapping[str, Any]] = None,
        **entry: Any,
    ) -> Path:
        """Write an artifact; when ``managed``, list it in ``collection.toml`` (on :meth:`write`).

        ``entry`` holds further ``[[artifacts]]`` fields (``resolved_version``,
        ``upstream``, ``path``, ...); ``metadata`` becomes ``[artifacts.metadata]``.
        """
        path = write_artifact(
            self.path, type_, name, front_matter=front_matter, body=body, files=files
        )
        if managed:
            record: dict[str, Any] = {
                "name": name,
                "type": type_,
                "path": artifact_relative(type_, name),
                "origin": "github",
                "upstream": f"acme/skills/{name}",
                "version_spec": "latest",
                "added": _STAMP,
                "last_updated": _STAMP,
                "tags": list(tags),
            }
            record.update(entry)
            if metadata is not None:
                record["metadata"] = dict(metadata)
            self.entries[(type_, name)] = record
        else:
            self.entries.pop((type_, name), None)
        return path

    def skill(self, name: str, **kwargs: Any) -> Path:
        """Shorthand for ``add("skill", name, ...)``."""
        return self.add("skill", name, **kwargs)

    def command(self, name: str, **kwargs: Any) -> Path:
        """Shorthand for ``add("command", name, ...)``."""
        return self.add("command", name, **kwargs)

    def agent(self, name: str, **kwargs: Any) -> Path:
        """Shorthand for ``add("agent", name, ...)``."""
        return self.add("agent", name, **kwargs)

    def remove(self, type_: str, name: str, *, keep_entry: bool = False) -> None:
        """Delete the artifact's files; drop its manifest entry unless ``keep_entry``."""
        _remove(self.artifact_path(type_, name))
        if not keep_entry:
            self.entries.pop((type_, name), None)

    def toml_text(self) -> str:
        """The text of ``collection.toml`` for the current entries."""
        tables: Tables = [
            (
                "[collection]",
                {
                    "name": self.name,
                    "version": self.version,
                    "description": self.description,
                    "created": _STAMP,
                    "updated": _STAMP,
                },
            )
        ]
        for entry in self.entries.values():
            fields = {k: v for k, v in entry.items() if k != "metadata"}
            tables.append(("[[artifacts]]", fields))
            if "metadata" in entry:
                tables.append(("[artifacts.metadata]", entry["metadata"]))
        return toml_document(tables)

    def lock_text(self) -> str:
        """The text of ``collection.lock``: hashes of the managed artifacts on disk now."""
        tables: Tables = [("[lock]", {"version": "1.0.0"})]
        for (type_, name), entry in self.entries.items():
            path = self.path / entry["path"]
            if not path.exists():
                continue
            header = "[lock.entries." + json.dumps(f"{name}::{type_}") + "]"
            fields = {
                "content_hash": content_hash(path),
                "upstream": entry.get("upstream"),
                "resolved_sha": entry.get("resolved_sha"),
                "resolved_version": entry.get("resolved_version"),
                "fetched": _STAMP,
            }
            tables.append((header, fields))
        return toml_document(tables)

    def write(self, *, lock: bool = True) -> Path:
        """Write ``collection.toml`` (and ``collection.lock`` if ``lock``); return the folder."""
        (self.path / "collection.toml").write_text(self.toml_text(), encoding="utf-8")
        if lock:
            (self.path / "collection.lock").write_text(self.lock_text(), encoding="utf-8")
        return self.path


# -- projects ----------------------------------------------------------------------------


class ProjectBuilder:
    """A project folder with ``.claude/``: deployed copies, local artifacts, SkillMeat TOML.

    With ``managed=False`` no SkillMeat file is written (a plain ``.claude/``).
    """

    def __init__(
        self,
        root: Union[str, os.PathLike[str]],
        name: str,
        *,
        managed: bool = True,
        description: Optional[str] = None,
    ) -> None:
        self.name = name
        self.description = description
        self.managed = managed
        self.path = Path(os.path.realpath(Path(root) / name))
        self.claude.mkdir(parents=True, exist_ok=True)
        # (collection, type, name) -> [[deployed]] entry
        self.deployed: dict[tuple[str, str, str], dict[str, Any]] = {}

    @property
    def claude(self) -> Path:
        """The project's ``.claude/`` folder."""
        return self.path / ".claude"

    @property
    def id(self) -> str:
        """The project's id in the cache (derived from its resolved path)."""
        return project_id_for_path(str(self.path))

    @property
    def local_collection(self) -> str:
        """The pseudo-collection ``@<id>`` holding the project's unmanaged artifacts."""
        return local_collection(self.id)

    def deployed_path(self, type_: str, name: str, collection: str = "default") -> Path:
        """Where the deployed copy of an artifact lives under ``.claude/``."""
        entry = self.deployed.get((collection, type_, name))
        relative = entry["artifact_path"] if entry else artifact_relative(type_, name)
        return self.claude / relative

    def deploy(
        self,
        collection: CollectionBuilder,
        type_: str,
        name: str,
        *,
        version: Optional[str] = None,
        deployed_hash: Optional[str] = None,
        artifact_path: Optional[str] = None,
        copy: bool = True,
        **extra: Any,
    ) -> Path:
        """Copy an artifact of ``collection`` into ``.claude/`` and record it as deployed.

        ``deployed_hash`` defaults to the content hash of the copy (so it starts ``current``);
        with ``copy=False`` only the entry is recorded (its files are missing).
        """
        relative = artifact_path or artifact_relative(type_, name)
        target = self.claude / relative
        if copy:
            source = collection.artifact_path(type_, name)
            _remove(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copyfile(source, target)
        if deployed_hash is None:
            deployed_hash = content_hash(target) if target.exists() else "0" * 64
        entry: dict[str, Any] = {
            "artifact_name": name,
            "artifact_type": type_,
            "from_collection": collection.name,
            "deployed_at": "2026-02-01T12:00:00+00:00",
            "artifact_path": relative,
            "content_hash": deployed_hash,
            "local_modifications": False,
            "version": version,
            "version_lineage": [deployed_hash],
        }
        entry.update(extra)
        self.deployed[(collection.name, type_, name)] = entry
        return target

    def undeploy(
        self, collection: str, type_: str, name: str, *, remove_files: bool = True
    ) -> None:
        """Drop a deployment entry (and, with ``remove_files``, its copy)."""
        entry = self.deployed.pop((collection, type_, name))
        if remove_files:
            _remove(self.claude / entry["artifact_path"])

    def local(self, type_: str, name: str, **kwargs: Any) -> Path:
        """Write an unmanaged artifact straight into ``.claude/`` (see :func:`write_artifact`)."""
        return write_artifact(self.claude, type_, name, **kwargs)

    def deployed_text(self) -> str:
        """The text of ``.skillmeat-deployed.toml`` for the current entries."""
        return toml_document([("[[deployed]]", entry) for entry in self.deployed.values()])

    def write(self) -> Path:
        """Write the SkillMeat files (nothing for an unmanaged project); return the folder."""
        if self.managed:
            meta = {"name": self.name, "description": self.description}
            (self.claude / ".skillmeat-project.toml").write_text(
                toml_document([("[project]", meta)]), encoding="utf-8"
            )
            (self.claude / ".skillmeat-deployed.toml").write_text(
                self.deployed_text(), encoding="utf-8"
            )
        return self.path


# -- the shipped examples -------------------------------------------------------------------------

EXAMPLES = Path(projcache.__file__).parent / "examples"


def copy_examples(target: Path) -> Path:
    """Copy the shipped examples to ``target``, every file dated an hour ago; return its real path.

    Fingerprints whose mtime lies within 2 s of their reading are re-read next
    time (``RACY_WINDOW_NS``); old mtimes keep incremental counts exact.
    """
    shutil.copytree(EXAMPLES, target, symlinks=True)
    old = time.time() - 3600
    for path in [target, *target.rglob("*")]:
        os.utime(path, (old, old), follow_symlinks=False)
    return Path(os.path.realpath(target))


# -- caches built from these trees ---------------------------------------------------------------


def with_roots(settings: Settings, tree: Path) -> Settings:
    """``settings`` with collection and project roots in ``tree``, and no fsync (tests only)."""
    return dataclasses.replace(
        settings,
        collection_roots=(str(tree / "collections"),),
        project_roots=(str(tree / "projects"),),
        durability="none",
    )


# An artifact put straight into the cache: no source file says what it should be.
DIRECT = {
    "name": "direct",
    "type": "agent",
    "collection": "manual",
    "description": "Put straight into the cache; no source file.",
}
DIRECT_KEY = "manual/agent/direct"
# The artifacts of :class:`ShopWorld`'s collection.
WORLD_KEYS = ["default/command/lint", "default/skill/notes", "default/skill/pdf"]


@dataclasses.dataclass
class ShopWorld:
    """A collection ``default`` (pdf, notes, lint), a project ``shop`` deploying pdf, a cache."""

    root: Path
    settings: Settings
    collection: CollectionBuilder
    project: ProjectBuilder

    @property
    def cache_dir(self) -> Path:
        """The cache's directory."""
        return Path(self.settings.cache_dir)

    def cli_env(self) -> dict[str, Optional[str]]:
        """Environment for a CLI run that finds this world's roots and no user config."""
        return {
            "PROJCACHE_COLLECTIONS": str(self.root / "collections"),
            "PROJCACHE_PROJECT_ROOTS": str(self.root / "projects"),
            "PROJCACHE_CONFIG": None,
            "PROJCACHE_AUTO_REPAIR": None,
            "XDG_CONFIG_HOME": str(self.root / "no-config"),
        }


@dataclasses.dataclass
class Seeded:
    """A closed cache written through the facade: three artifacts, one project, one deployment."""

    settings: Settings
    pid: str

    @property
    def cache_dir(self) -> Path:
        """The cache's directory."""
        return Path(self.settings.cache_dir)
