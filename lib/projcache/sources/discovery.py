"""Find collections and projects on disk.

Collections: each folder directly under a collections root (by default
``~/.skillmeat/collections``) that holds ``collection.toml`` or artifact
folders.  Projects: folders holding a ``.claude/`` folder, a deployment file of
any profile (``.agents/.skillmeat-deployed.toml`` for codex, ...) or a
``.skillmeat/manifest.toml``, found under project roots to a limited depth,
skipping ``.git``, ``node_modules``, virtualenvs, caches and profile folders,
and never entering the same real folder twice (symlink loops).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable

from .layout import LAYOUT_DIRS
from .manifests import COLLECTION_TOML, DEPLOYED_TOML, PROJECT_MANIFEST

__all__ = ["SKIP_DIRS", "find_collections", "find_projects", "is_collection", "is_project"]

logger = logging.getLogger(__name__)

SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".cache",
        "site-packages",
        # Deployment profile roots (SkillMeat's DEFAULT_PROFILE_ROOTS, and codex's
        # .agents): what is inside belongs to the project above, never a project.
        ".claude",
        ".agents",
        ".codex",
        ".gemini",
        ".cursor",
        ".bob",
        ".skillmeat",
    }
)


def is_collection(path: str) -> bool:
    """Tell whether ``path`` looks like a collection folder."""
    if os.path.isfile(os.path.join(path, COLLECTION_TOML)):
        return True
    return any(os.path.isdir(os.path.join(path, folder)) for folder in LAYOUT_DIRS.values())


def is_project(path: str) -> bool:
    """Tell whether ``path`` is a project folder.

    It holds a ``.claude/`` folder, a SkillMeat deployment file in any hidden
    folder (a project deployed only to codex has ``.agents/`` alone), or a
    ``.skillmeat/manifest.toml`` (``skillmeat init``).
    """
    if os.path.isdir(os.path.join(path, ".claude")):
        return True  # the common case, one stat (a refresh asks this for every project)
    try:
        with os.scandir(path) as entries:
            hidden = [e.path for e in entries if e.name.startswith(".") and e.is_dir()]
    except OSError:
        return False
    return _holds_project(path, hidden)


def _holds_project(path: str, hidden: list[str]) -> bool:
    """:func:`is_project` given the hidden sub-folders of ``path`` (already listed)."""
    if os.path.join(path, ".claude") in hidden:
        return True
    if os.path.isfile(os.path.join(path, PROJECT_MANIFEST)):
        return True
    return any(os.path.exists(os.path.join(folder, DEPLOYED_TOML)) for folder in hidden)


def find_collections(roots: Iterable[str]) -> list[str]:
    """Return the resolved collection folders under ``roots`` (a root may itself be one)."""
    found: list[str] = []
    for root in roots:
        root = os.path.realpath(os.path.expanduser(root))
        if not os.path.isdir(root):
            logger.debug("collections root %s does not exist", root)
            continue
        if os.path.isfile(os.path.join(root, COLLECTION_TOML)):
            found.append(root)
            continue
        try:
            with os.scandir(root) as entries:
                children = sorted(e.path for e in entries if not e.name.startswith("."))
        except OSError as exc:
            logger.warning("cannot list collections root %s: %s", root, exc)
            continue
        for child in children:
            if os.path.isdir(child) and is_collection(child):
                found.append(os.path.realpath(child))
    return sorted(set(found))


def _skip(entry: os.DirEntry[str]) -> bool:
    if entry.name in SKIP_DIRS:
        return True
    # A virtualenv by any name: it has a pyvenv.cfg.
    return os.path.isfile(os.path.join(entry.path, "pyvenv.cfg"))


def find_projects(roots: Iterable[str], max_depth: int) -> list[str]:
    """Return the resolved project folders under ``roots``, at most ``max_depth`` levels down.

    The user's home folder itself is not a project: its ``.claude/`` holds
    Claude's user-level settings.
    """
    home = os.path.realpath(os.path.expanduser("~"))
    found: set[str] = set()
    visited: set[tuple[int, int]] = set()
    # Breadth first from every root at once: a folder is first met by its
    # shortest route, so marking it visited never cuts a search short.
    queue = deque((os.path.realpath(os.path.expanduser(root)), 0) for root in roots)
    while queue:
        folder, depth = queue.popleft()
        try:
            info = os.stat(folder)
        except OSError:
            continue
        identity = (info.st_dev, info.st_ino)
        if identity in visited:
            continue  # a symlink loop, or two roots overlapping
        visited.add(identity)
        try:
            with os.scandir(folder) as entries:
                folders = [entry for entry in entries if entry.is_dir()]
        except OSError as exc:
            logger.debug("cannot list %s: %s", folder, exc)
            continue
        hidden = [entry.path for entry in folders if entry.name.startswith(".")]
        if _holds_project(folder, hidden) and os.path.realpath(folder) != home:
            found.add(os.path.realpath(folder))
        if depth >= max_depth:
            continue
        children = [entry.path for entry in folders if not _skip(entry)]
        queue.extend((child, depth + 1) for child in sorted(children))
    return sorted(found)
