"""The source roots a cache was ever refreshed from, kept in the cache and beside it.

A cache filled by ``refresh --collection DIR --project DIR`` knows its sources
only through its records; when the file is damaged those are what is lost, and
a rebuild that re-reads "the configured roots" re-reads nothing.  So every
folder given to a refresh is remembered twice:

* in the cache, under the ``meta`` key ``source_roots``;
* in ``<cache_dir>/roots.json`` (mode 0600, replaced atomically), a small side
  file that survives damage to ``data.mdb`` and is moved aside with it.

Both hold ``{"collections": [...], "projects": [...]}``: absolute, resolved
folder paths, sorted, never forgotten (a folder that is gone is skipped when
it is re-read, not dropped from the list).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

__all__ = ["META_KEY", "SIDE_FILE", "SourceRoots", "read_side_file", "write_side_file"]

logger = logging.getLogger(__name__)

META_KEY = "source_roots"
SIDE_FILE = "roots.json"
_MAX_SIDE_FILE = 4 * 1024 * 1024  # a list of folders; anything bigger is not ours


@dataclasses.dataclass(frozen=True)
class SourceRoots:
    """Collection and project folders a cache was refreshed from (absolute, sorted).

    Attributes:
        collections: collection folders given to ``refresh(collections=...)``.
        projects: project folders given to ``refresh(projects=...)``.
    """

    collections: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()

    @classmethod
    def of(cls, collections: Iterable[str] = (), projects: Iterable[str] = ()) -> SourceRoots:
        """Build one from folder paths (deduplicated and sorted)."""
        return cls(tuple(sorted(set(collections))), tuple(sorted(set(projects))))

    @classmethod
    def from_json(cls, value: Any) -> SourceRoots:
        """Read the stored form; anything malformed counts as nothing remembered."""
        if not isinstance(value, dict):
            return cls()
        lists = [value.get("collections"), value.get("projects")]
        if not all(isinstance(v, list) and all(isinstance(p, str) for p in v) for v in lists):
            return cls()
        return cls.of(value["collections"], value["projects"])

    def to_json(self) -> dict[str, list[str]]:
        """The stored form: ``{"collections": [...], "projects": [...]}``."""
        return {"collections": list(self.collections), "projects": list(self.projects)}

    def __or__(self, other: SourceRoots) -> SourceRoots:
        return SourceRoots.of(
            (*self.collections, *other.collections), (*self.projects, *other.projects)
        )

    def __bool__(self) -> bool:
        return bool(self.collections or self.projects)


def read_side_file(cache_dir: os.PathLike[str] | str) -> SourceRoots:
    """Return the roots remembered in ``<cache_dir>/roots.json`` (empty if none or unreadable).

    Works without opening the cache, so a damaged or unopenable cache still
    tells which folders it was built from.  The file is never read through a
    symlink.
    """
    path = Path(cache_dir) / SIDE_FILE
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return SourceRoots()
    try:
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(_MAX_SIDE_FILE + 1)
    except OSError:
        return SourceRoots()
    if len(data) > _MAX_SIDE_FILE:
        return SourceRoots()
    try:
        return SourceRoots.from_json(orjson.loads(data))
    except orjson.JSONDecodeError:
        logger.warning("ignoring the unreadable %s", path)
        return SourceRoots()


def write_side_file(cache_dir: os.PathLike[str] | str, roots: SourceRoots) -> None:
    """Replace ``<cache_dir>/roots.json`` atomically (temporary file, fsync, rename), 0600.

    Raises:
        OSError: the file cannot be written (the caller decides how bad that is).
    """
    folder = Path(cache_dir)
    fd, temp = tempfile.mkstemp(prefix=".roots-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(orjson.dumps(roots.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, folder / SIDE_FILE)  # replaces a planted link, never follows it
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable (not possible everywhere)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
