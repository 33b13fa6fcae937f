"""The only place that opens source files, plus the stat walks that decide what to re-read.

Every read of a user's file goes through :func:`open_source`, so the rule
"an unchanged source is never opened" can be checked by counting its calls.
Reads are capped: a file larger than the cap is an error recorded for its
source, never a reason to load gigabytes.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from ..errors import SourceFileError

__all__ = ["FileStat", "TreeScan", "open_source", "read_capped", "scan_tree", "stat_file"]

_CHUNK = 1 << 16


# FileStat and TreeScan are named tuples, not frozen dataclasses: a refresh
# builds one per file and per source, and a frozen dataclass costs ~3x more.


class FileStat(NamedTuple):
    """What one ``stat`` says about a file: enough to notice a change."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, result: os.stat_result) -> FileStat:
        """Build from an ``os.stat`` result."""
        return cls(result.st_mtime_ns, result.st_size, result.st_ino)


def open_source(path: str) -> BinaryIO:
    """Open a source file for binary reading (the single entry point; tests count calls)."""
    return open(path, "rb")  # callers close it with ``with``


def _describe(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def stat_file(path: str) -> FileStat | None:
    """Stat a regular file (following symlinks); ``None`` when it does not exist.

    Raises:
        SourceFileError: it exists but cannot be stat'ed, or is not a regular file.
    """
    try:
        result = os.stat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except OSError as exc:
        raise SourceFileError(f"{path}: cannot stat: {_describe(exc)}", path=path) from exc
    if not stat.S_ISREG(result.st_mode):
        raise SourceFileError(f"{path}: not a regular file", path=path)
    return FileStat.of(result)


def read_capped(path: str, cap: int) -> bytes:
    """Read a whole source file of at most ``cap`` bytes.

    Raises:
        SourceFileError: unreadable, or larger than ``cap`` (the message says so).
    """
    try:
        # Checked first: opening a FIFO would block until someone writes to it.
        regular = stat.S_ISREG(os.stat(path).st_mode)
        if regular:
            with open_source(path) as handle:
                data = handle.read(cap + 1)
    except OSError as exc:
        raise SourceFileError(f"{path}: cannot read: {_describe(exc)}", path=path) from exc
    except ValueError as exc:  # an embedded NUL in the path
        raise SourceFileError(f"{path!r}: not a usable path: {exc}", path=path) from exc
    if not regular:
        raise SourceFileError(f"{path}: cannot read: not a regular file", path=path)
    if len(data) > cap:
        raise SourceFileError(
            f"{path}: larger than the {cap}-byte limit for source files; not read",
            path=path,
            hint="Raise PROJCACHE_MAX_FILE_SIZE if the file is meant to be this large.",
        )
    return data


class TreeScan(NamedTuple):
    """The regular files under a directory (or one file), in SkillMeat's hashing order."""

    root: str
    files: tuple[tuple[tuple[str, ...], FileStat], ...]
    is_dir: bool
    inode: int

    @property
    def signature(self) -> str:
        """A digest of every file's relative path and stat: changes when anything below does."""
        digest = hashlib.blake2b(digest_size=16)
        for parts, info in self.files:
            digest.update("/".join(parts).encode("utf-8", "surrogateescape"))
            digest.update(b"\0%d\0%d\0%d\n" % (info.mtime_ns, info.size, info.inode))
        return digest.hexdigest()

    @property
    def size(self) -> int:
        """Total bytes of the files."""
        if len(self.files) == 1:
            return self.files[0][1].size
        return sum(info.size for _parts, info in self.files)

    @property
    def mtime_ns(self) -> int:
        """The newest modification time among the files (0 when empty)."""
        if len(self.files) == 1:
            return self.files[0][1].mtime_ns
        return max((info.mtime_ns for _parts, info in self.files), default=0)

    def paths(self) -> Iterator[tuple[str, str]]:
        """Yield ``(relative path, absolute path)`` of each file, in hashing order."""
        for parts, _info in self.files:
            relative = os.path.join(*parts) if parts else ""
            yield relative, os.path.join(self.root, relative) if parts else self.root


def _walk(root: str, prefix: tuple[str, ...], out: list[tuple[tuple[str, ...], FileStat]]) -> None:
    with os.scandir(root) as entries:
        for entry in entries:
            parts = (*prefix, entry.name)
            # Like pathlib's rglob: never descend through a symlinked directory
            # (so loops cannot trap us), but a symlink to a file counts as a file.
            if entry.is_dir(follow_symlinks=False):
                _walk(entry.path, parts, out)
                continue
            try:
                result = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                continue  # dangling symlink, or removed meanwhile: pathlib skips it too
            if stat.S_ISREG(result.st_mode):
                out.append((parts, FileStat(result.st_mtime_ns, result.st_size, result.st_ino)))


def scan_tree(path: str) -> TreeScan | None:
    """Stat every regular file under ``path`` (or ``path`` itself if it is a file).

    Returns ``None`` when nothing exists at ``path``.  Files are ordered as
    ``sorted(Path(path).rglob("*"))`` orders them: by path parts.

    Raises:
        SourceFileError: a directory or file cannot be listed or stat'ed.
    """
    try:
        result = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise SourceFileError(f"{path}: cannot stat: {_describe(exc)}", path=path) from exc
    except ValueError as exc:  # an embedded NUL in the path
        raise SourceFileError(f"{path!r}: not a usable path: {exc}", path=path) from exc
    if stat.S_ISREG(result.st_mode):
        info = FileStat(result.st_mtime_ns, result.st_size, result.st_ino)
        return TreeScan(path, (((), info),), False, result.st_ino)
    if not stat.S_ISDIR(result.st_mode):
        raise SourceFileError(f"{path}: neither a file nor a directory", path=path)
    files: list[tuple[tuple[str, ...], FileStat]] = []
    try:
        _walk(path, (), files)
    except OSError as exc:
        where = exc.filename or path
        raise SourceFileError(f"{where}: cannot list: {_describe(exc)}", path=path) from exc
    files.sort()  # by path parts (unique, so the stats are never compared)
    return TreeScan(path, tuple(files), True, result.st_ino)
