"""Find artifacts by folder layout, in a collection or in a project's ``.claude/``.

``skills/<name>/SKILL.md``, ``commands/<name>.md``, ``agents/<name>.md``,
``hooks/<name>`` and ``mcp/<name>`` (a file or a folder).  Hidden entries are
skipped; names that are not valid artifact names are reported, not guessed at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ..errors import SourceFileError
from .fileio import SourceRoot

__all__ = ["LAYOUT_DIRS", "LayoutItem", "default_path", "find_by_layout", "main_file_of"]

# artifact type -> folder, in the order results are listed.
LAYOUT_DIRS = {
    "skill": "skills",
    "command": "commands",
    "agent": "agents",
    "hook": "hooks",
    "mcp": "mcp",
}
_FILE_TYPES = ("command", "agent")
_MAIN_NAMES = ("SKILL.md", "README.md", "HOOK.md", "MCP.md")


@dataclass(frozen=True)
class LayoutItem:
    """One artifact found on disk: its type, name and path relative to the base folder."""

    type: str
    name: str
    relative: str


def default_path(type_: str, name: str) -> str:
    """Where SkillMeat puts an artifact of ``type_`` named ``name`` (relative)."""
    folder = LAYOUT_DIRS[type_]
    return f"{folder}/{name}.md" if type_ in _FILE_TYPES else f"{folder}/{name}"


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


def find_by_layout(
    base: str, root: Optional[SourceRoot] = None
) -> tuple[list[LayoutItem], list[str]]:
    """List the artifacts under ``base`` by layout; return them and the problems met.

    An entry that is a symlink leading out of ``root`` is listed whatever it
    points at, so that reading it reports it (and keeps the last good data)
    instead of the artifact quietly disappearing.
    """
    items: list[LayoutItem] = []
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for type_, folder in LAYOUT_DIRS.items():
        directory = os.path.join(base, folder)
        try:
            with os.scandir(directory) as entries:
                names = sorted(
                    (entry.name, entry.is_dir(), entry.is_symlink()) for entry in entries
                )
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            problems.append(f"{directory}: cannot list: {exc.strerror or exc}")
            continue
        for entry_name, is_dir, is_link in names:
            if entry_name.startswith("."):
                continue
            if is_link and _leads_out(f"{directory}/{entry_name}", root):
                if type_ in _FILE_TYPES:
                    if not entry_name.endswith(".md"):
                        continue
                    name = entry_name[:-3]
                elif type_ == "skill" or is_dir:
                    name = entry_name
                else:
                    name = os.path.splitext(entry_name)[0]
            elif type_ == "skill":
                if not is_dir:
                    continue
                name = entry_name
                # (a plain "/" join: this runs for every skill on every refresh)
                if not os.path.lexists(f"{directory}/{entry_name}/SKILL.md"):
                    problems.append(f"{os.path.join(directory, entry_name)}: no SKILL.md")
                    continue
            elif type_ in _FILE_TYPES:
                if not entry_name.endswith(".md"):
                    continue
                if is_dir:
                    problems.append(
                        f"{os.path.join(directory, entry_name)}: a folder, not a Markdown file"
                    )
                    continue
                name = entry_name[:-3]
            else:
                name = entry_name if is_dir else os.path.splitext(entry_name)[0]
            if not _valid_name(name):
                shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                problems.append(
                    f"{os.path.join(directory, shown)}: the name is not valid UTF-8 text "
                    "or is too long; skipped"
                )
                continue
            if (type_, name) in seen:
                problems.append(
                    f"{os.path.join(directory, entry_name)}: another {type_} is already named "
                    f"{name!r}; skipped"
                )
                continue
            seen.add((type_, name))
            items.append(LayoutItem(type_, name, f"{folder}/{entry_name}"))
    return items, problems
