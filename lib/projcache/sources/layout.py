"""Find artifacts by folder layout, in a collection or in a project's profile root.

The layouts are SkillMeat 0.74.0's (``skillmeat/core/artifact.py``,
``ArtifactManager.add_from_local``/``add_from_github`` for a collection;
``skillmeat/core/path_resolver.py``, ``DEFAULT_ARTIFACT_PATH_MAP`` and
``resolve_artifact_path`` for a deployment), one rule per type in
:data:`LAYOUT`:

* ``skills/<name>/SKILL.md`` (a folder), ``commands/<name>.md``,
  ``agents/<name>.md``, ``souls/<name>.md`` (a Markdown file);
* ``hooks/<name>`` and ``mcp/<name>`` (a file or a folder);
* ``workflows/<name>/`` (a ``workflow``: a folder) and
  ``workflows/<name>.js|.ts|.py|.sh`` (an ``orchestration`` script: a file);
* ``composites/<name>/`` (a folder).

Every other type SkillMeat knows (:data:`projcache.codec.ARTIFACT_TYPES`) or a
newer one is only read where ``collection.toml`` or a deployment record gives
its path.  Hidden entries are skipped (SkillMeat's ``.<name>.skillmeat-lock``
files among them); names that are not valid artifact names are reported, not
guessed at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import SourceFileError
from .fileio import SourceRoot, TreeScan

__all__ = [
    "LAYOUT",
    "LAYOUT_DIRS",
    "ORCHESTRATION_SUFFIXES",
    "LayoutItem",
    "LayoutRule",
    "default_path",
    "find_by_layout",
    "main_file_of",
]


@dataclass(frozen=True)
class LayoutRule:
    """Where artifacts of one type live: a folder and the shape of each entry in it.

    ``shape`` is ``skill`` (a folder holding ``SKILL.md``), ``md`` (a
    ``<name>.md`` file), ``any`` (a file or a folder), ``dir`` (a folder) or
    ``script`` (a file ending in one of :data:`ORCHESTRATION_SUFFIXES`).
    """

    type: str
    folder: str
    shape: str


LAYOUT = (
    LayoutRule("skill", "skills", "skill"),
    LayoutRule("command", "commands", "md"),
    LayoutRule("agent", "agents", "md"),
    LayoutRule("hook", "hooks", "any"),
    LayoutRule("mcp", "mcp", "any"),
    LayoutRule("workflow", "workflows", "dir"),
    LayoutRule("orchestration", "workflows", "script"),
    LayoutRule("soul", "souls", "md"),
    LayoutRule("composite", "composites", "dir"),
)
# artifact type -> folder, in the order results are listed.
LAYOUT_DIRS = {rule.type: rule.folder for rule in LAYOUT}
# What `skillmeat add orchestration` accepts (skillmeat/cli/commands/artifacts_cmd.py).
ORCHESTRATION_SUFFIXES = (".js", ".ts", ".py", ".sh")
_RULES = {rule.type: rule for rule in LAYOUT}
# A folder's file whose front matter describes it (SkillMeat's manifest names).
_SKILL_MAIN = ("SKILL.md",)
_MAIN_NAMES = ("SKILL.md", "README.md", "HOOK.md", "MCP.md", "SOUL.md", "COMPOSITE.md", "PLUGIN.md")


@dataclass(frozen=True)
class LayoutItem:
    """One artifact found on disk: its type, name and path relative to the base folder."""

    type: str
    name: str
    relative: str


def default_path(type_: str, name: str) -> str:
    """Where SkillMeat puts an artifact of ``type_`` named ``name`` (relative).

    A type without a layout rule (SkillMeat always writes such an artifact's
    path) is guessed as ``<type>s/<name>``.
    """
    rule = _RULES.get(type_)
    if rule is None:
        return f"{type_}s/{name}"
    return f"{rule.folder}/{name}.md" if rule.shape == "md" else f"{rule.folder}/{name}"


def main_file_of(base: str, relative: str) -> str | None:
    """The file whose front matter describes the artifact at ``relative``, if any."""
    if relative.lower().endswith(".md"):
        return relative  # even if it became a folder: reading it then reports that
    path = os.path.join(base, relative)
    if os.path.isdir(path):
        for name in _MAIN_NAMES:
            candidate = os.path.join(relative, name)
            # lexists, not isfile: a SKILL.md that is a FIFO, a folder or a symlink
            # loop must fail loudly when read (keeping the last good data), not
            # quietly turn the skill into one without front matter.
            if os.path.lexists(os.path.join(base, candidate)):
                return candidate
        return None
    return None


def _valid_name(name: str) -> bool:
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return 0 < size <= 200 and "\x00" not in name


def _leads_out(path: str, root: Optional[SourceRoot]) -> bool:
    """Tell whether the symlink ``path`` resolves outside ``root``."""
    if root is None:
        return False
    try:
        root.check_link(path)
    except SourceFileError:
        return True
    return False


def _name_of(
    rule: LayoutRule,
    directory: str,
    entry_name: str,
    is_dir: bool,
    leads_out: bool = False,
    has_main: bool = False,
) -> str | None:
    """The artifact name ``entry_name`` stands for under ``rule``, or ``None`` if not its shape.

    An entry that is a symlink leading out of the source root (``leads_out``) is
    named by its name alone, whatever it points at: reading it then reports it.
    ``has_main``: a skill folder is known to hold ``SKILL.md`` (not looked up again).

    Raises:
        ValueError: the entry has the rule's name but not its shape (the message says why).
    """
    stem, suffix = os.path.splitext(entry_name)
    if rule.shape == "md":
        if not entry_name.endswith(".md"):
            return None
        if is_dir and not leads_out:
            raise ValueError(
                f"{os.path.join(directory, entry_name)}: a folder, not a Markdown file"
            )
        return entry_name[:-3]
    if rule.shape == "script":
        return stem if not is_dir and suffix in ORCHESTRATION_SUFFIXES and stem else None
    if leads_out:
        if rule.shape == "dir" and not is_dir and suffix in ORCHESTRATION_SUFFIXES:
            return None  # an orchestration script's name (the "script" rule takes it)
        return entry_name if rule.shape in ("skill", "dir") or is_dir else stem
    if rule.shape == "skill":
        if not is_dir:
            return None
        # (a plain "/" join: this runs for every skill on every refresh)
        if not has_main and not os.path.lexists(f"{directory}/{entry_name}/SKILL.md"):
            raise ValueError(f"{os.path.join(directory, entry_name)}: no SKILL.md")
        return entry_name
    if rule.shape == "dir":
        return entry_name if is_dir else None
    return entry_name if is_dir else stem


def find_by_layout(
    base: str,
    root: Optional[SourceRoot] = None,
    entries: Optional[dict[str, os.DirEntry[str]]] = None,
    scanned: Optional[Callable[[str], Optional[TreeScan]]] = None,
) -> tuple[list[LayoutItem], list[str]]:
    """List the artifacts under ``base`` by layout; return them and the problems met.

    An entry that is a symlink leading out of ``root`` is listed whatever it
    points at, so that reading it reports it (and keeps the last good data)
    instead of the artifact quietly disappearing.  With ``entries`` (and a
    ``root``), the directory entries listed from layout folders that stay
    inside ``root`` are added to it by relative path (``skills/x``), so that
    the sources' stat walk can start from them instead of stat-ing each again
    (:func:`~projcache.sources.fileio.scan_entry`).  ``scanned(relative)`` gives a
    stat walk made of that entry already, if any: a skill folder whose walk holds
    ``SKILL.md`` is not looked up again.
    """
    items: list[LayoutItem] = []
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    listed: dict[str, list[tuple[str, bool, bool]] | None] = {}
    for rule in LAYOUT:
        directory = os.path.join(base, rule.folder)
        if rule.folder not in listed:
            try:
                with os.scandir(directory) as found:
                    listing = list(found)
                # is_dir() follows links: a link loop raises here (ELOOP), as when listing.
                listed[rule.folder] = sorted((e.name, e.is_dir(), e.is_symlink()) for e in listing)
            except (FileNotFoundError, NotADirectoryError):
                listed[rule.folder] = None
            except OSError as exc:
                listed[rule.folder] = None
                problems.append(f"{directory}: cannot list: {exc.strerror or exc}")
            else:
                if entries is not None and root is not None and root.check_folder(directory):
                    folder = rule.folder + "/"
                    for entry in listing:
                        entries[folder + entry.name] = entry
        for entry_name, is_dir, is_link in listed[rule.folder] or ():
            if entry_name.startswith("."):
                continue
            leads_out = is_link and _leads_out(f"{directory}/{entry_name}", root)
            has_main = False
            if scanned is not None and rule.shape == "skill" and is_dir:
                walked = scanned(f"{rule.folder}/{entry_name}")
                has_main = walked is not None and any(
                    parts == _SKILL_MAIN for parts, _info in walked.files
                )
            try:
                name = _name_of(rule, directory, entry_name, is_dir, leads_out, has_main)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            if name is None:
                continue
            if not _valid_name(name):
                shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                problems.append(
                    f"{os.path.join(directory, shown)}: the name is not valid UTF-8 text "
                    "or is too long; skipped"
                )
                continue
            if (rule.type, name) in seen:
                problems.append(
                    f"{os.path.join(directory, entry_name)}: another {rule.type} is already "
                    f"named {name!r}; skipped"
                )
                continue
            seen.add((rule.type, name))
            items.append(LayoutItem(rule.type, name, f"{rule.folder}/{entry_name}"))
    return items, problems
