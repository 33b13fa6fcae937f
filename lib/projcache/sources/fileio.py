"""The only place that opens source files, plus the stat walks that decide what to re-read.

Every read of a user's file goes through :func:`open_source`, so the rule
"an unchanged source is never opened" can be checked by counting its calls.
Reads are capped: a file larger than the cap is an error recorded for its
source, never a reason to load gigabytes.

Sources come from the internet, so a source never reaches outside its root
(:class:`SourceRoot`: the collection folder, or the project folder).  A
symlink whose target lies inside the root is followed as SkillMeat follows
it (so content hashes stay equal to ``compute_content_hash``); one whose
target lies outside is not read: :class:`~projcache.errors.SourceOutsideRootError`
names the link and its target.  Walks are bounded too: at most
:data:`MAX_TREE_ENTRIES` entries and ``max_bytes`` bytes of files per
artifact (:class:`~projcache.errors.SourceTooLargeError` beyond), so a folder
that is huge (or a link to ``/``) costs a few thousand ``stat`` calls, not a
walk of the disk.

A little over 400 lines on purpose: the root check, the bounded walks and the
one opener share the rule about links and limits, so they stay in one module.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple, Optional

from ..errors import SourceFileError, SourceOutsideRootError, SourceTooLargeError

__all__ = [
    "DEFAULT_MAX_ARTIFACT_SIZE",
    "FOLDER_INODE",
    "MAX_TREE_ENTRIES",
    "FileStat",
    "SourceRoot",
    "TreeScan",
    "open_source",
    "read_capped",
    "scan_entry",
    "scan_tree",
    "stat_file",
]

_CHUNK = 1 << 16

#: Most entries (files, folders, links) one artifact's walk looks at.  A skill
#: has tens of files; ten thousand is far beyond any real one and still a
#: walk of well under a second.
MAX_TREE_ENTRIES = 10_000

#: Most bytes of files one artifact may hold (``max_artifact_size``'s default).
DEFAULT_MAX_ARTIFACT_SIZE = 64 * 1024**2

#: The ``inode`` of a folder's scan, whichever way it was found.  A folder is
#: described by its files (their paths and stats: :attr:`TreeScan.signature`), and
#: its own inode number is not the same everywhere: a folder found by listing its
#: parent has the listing's ``d_ino``, one stat-ed by path ``st_ino``, and on
#: overlayfs those can differ, so the two ways would never agree on a fingerprint.
FOLDER_INODE = 0


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


class SourceRoot:
    """The folder a unit's sources must stay inside, and the limits of one artifact's walk.

    ``path`` is a collection folder or a project folder.  Paths checked are
    ``path + "/" + relative``; the folders between the root and the source are
    ``lstat``-ed once per :class:`SourceRoot` (one refresh of one unit), and
    ``realpath`` runs only for the links met, so a tree without links costs
    no extra system call.
    """

    __slots__ = ("_checked", "_given", "max_bytes", "max_entries", "path", "prefix")

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int = DEFAULT_MAX_ARTIFACT_SIZE,
        max_entries: int = MAX_TREE_ENTRIES,
    ) -> None:
        self._given = path.rstrip("/") + "/" if path.rstrip("/") else "/"
        self.path = os.path.realpath(path)
        self.prefix = self.path if self.path.endswith("/") else self.path + "/"
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._checked: set[str] = set()

    def contains(self, real: str) -> bool:
        """Tell whether the resolved path ``real`` is the root or lies below it."""
        return real == self.path or real.startswith(self.prefix)

    def check_link(self, link: str) -> None:
        """Raise unless the symlink (or path) ``link`` resolves inside the root.

        Raises:
            SourceOutsideRootError: naming ``link`` and where it leads.
        """
        try:
            target = os.path.realpath(link)
        except (OSError, ValueError) as exc:  # (3.13+ may raise on loops)
            raise SourceFileError(f"{link}: cannot resolve: {exc}", path=link) from exc
        if not self.contains(target):
            raise SourceOutsideRootError(
                f"{link}: a link to {target}, outside {self.path}; not read",
                path=link,
                target=target,
            )

    def check_folder(self, folder: str) -> bool:
        """Tell whether ``folder`` and every folder above it (up to the root) stay inside.

        Entries listed from a folder that passed lie below the root unless
        they are links themselves (see :func:`scan_entry`).
        """
        try:
            self.check_parents(folder.rstrip("/") + "/-")
        except SourceFileError:
            return False
        return True

    def check_parents(self, path: str) -> None:
        """Raise unless every folder between the root and ``path`` stays inside the root.

        A ``..`` part, or a folder on the way that is a link leading out, is
        refused.  ``path`` itself is not checked (the caller ``lstat``-s it).

        Raises:
            SourceOutsideRootError: the first folder (or ``path``) that leads out.
        """
        if path.startswith(self._given):
            relative = path[len(self._given) :]
        elif path.startswith(self.prefix):
            relative = path[len(self.prefix) :]
        else:
            self.check_link(path)  # not spelled below the root: judge where it leads
            return
        parts = relative.split("/")
        if ".." in parts:
            self.check_link(path)
            return
        folder = path[: len(path) - len(relative)]
        for part in parts[:-1]:
            folder += part
            if folder not in self._checked:
                try:
                    is_link = stat.S_ISLNK(os.lstat(folder).st_mode)
                except OSError:
                    is_link = False  # missing: the stat of ``path`` will say so
                if is_link:
                    self.check_link(folder)
                self._checked.add(folder)
            folder += "/"


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


def read_capped(path: str, cap: int, root: Optional[SourceRoot] = None) -> bytes:
    """Read a whole source file of at most ``cap`` bytes, never from outside ``root``.

    Raises:
        SourceOutsideRootError: ``path`` (or a folder on its way) is a link out of ``root``.
        SourceTooLargeError: larger than ``cap`` (the message says so).
        SourceFileError: unreadable.
    """
    try:
        if root is not None:
            root.check_parents(path)
            if os.path.islink(path):
                root.check_link(path)
        # Checked first: opening a FIFO would block until someone writes to it.
        regular = stat.S_ISREG(os.stat(path).st_mode)
        if regular:
            with open_source(path) as handle:
                data = handle.read(cap + 1)
    except SourceFileError:
        raise
    except OSError as exc:
        raise SourceFileError(f"{path}: cannot read: {_describe(exc)}", path=path) from exc
    except ValueError as exc:  # an embedded NUL in the path
        raise SourceFileError(f"{path!r}: not a usable path: {exc}", path=path) from exc
    if not regular:
        raise SourceFileError(f"{path}: cannot read: not a regular file", path=path)
    if len(data) > cap:
        raise SourceTooLargeError(
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
    #: The file's inode number; :data:`FOLDER_INODE` for a folder.
    inode: int
    #: The root the scan stayed in, and the byte limit hashing the files keeps to.
    within: Optional[SourceRoot] = None

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


class _Walk:
    """One bounded walk: the root it must stay in, and what it has met so far."""

    __slots__ = ("bytes", "confined", "entries", "files", "root", "top")

    def __init__(self, top: str, root: SourceRoot, confined: bool) -> None:
        self.top = top
        self.root = root
        self.confined = confined
        self.entries = 0
        self.bytes = 0
        self.files: list[tuple[tuple[str, ...], FileStat]] = []

    def too_large(self, what: str) -> SourceTooLargeError:
        return SourceTooLargeError(
            f"{self.top}: {what}; not read",
            path=self.top,
            hint="Raise PROJCACHE_MAX_ARTIFACT_SIZE if the artifact is meant to be this large, "
            "or remove what does not belong in it.",
        )

    def add(self, parts: tuple[str, ...], info: FileStat) -> None:
        self.bytes += info.size
        if self.bytes > self.root.max_bytes:
            raise self.too_large(
                f"its files hold more than the {self.root.max_bytes}-byte limit for one artifact"
            )
        self.files.append((parts, info))

    def walk(self, folder: str, prefix: tuple[str, ...]) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                self.entries += 1
                if self.entries > self.root.max_entries:
                    raise self.too_large(
                        f"holds more than {self.root.max_entries} files and folders"
                    )
                parts = (*prefix, entry.name)
                # Like pathlib's rglob: never descend through a symlinked directory
                # (so loops cannot trap us), but a symlink to a file counts as a file.
                if entry.is_dir(follow_symlinks=False):
                    self.walk(entry.path, parts)
                    continue
                if self.confined and entry.is_symlink():
                    # Judged before anything is read: a link out of the root is an
                    # error even when it points at a folder (which rglob would skip).
                    self.root.check_link(entry.path)
                try:
                    result = entry.stat(follow_symlinks=True)
                except FileNotFoundError:
                    continue  # dangling symlink, or removed meanwhile: pathlib skips it too
                if stat.S_ISREG(result.st_mode):
                    self.add(parts, FileStat(result.st_mtime_ns, result.st_size, result.st_ino))


_UNCONFINED = SourceRoot("/")


def scan_entry(entry: os.DirEntry[str], root: SourceRoot) -> TreeScan | None:
    """:func:`scan_tree` of an entry listed from a folder that passed ``check_folder``.

    The listing already tells a plain folder or file apart (no ``lstat`` of
    the entry itself; a folder's inode is :data:`FOLDER_INODE` either way); anything else (a link, a
    FIFO, ...) goes through :func:`scan_tree` and its rules, so what is
    refused there is refused here.
    """
    try:
        if entry.is_dir(follow_symlinks=False):
            walk = _Walk(entry.path, root, True)
            try:
                walk.walk(entry.path, ())
            except FileNotFoundError:
                return scan_tree(entry.path, root)  # gone (or replaced) since it was listed
            except OSError as exc:
                where = exc.filename or entry.path
                raise SourceFileError(
                    f"{where}: cannot list: {_describe(exc)}", path=entry.path
                ) from exc
            files = walk.files
            files.sort()
            return TreeScan(entry.path, tuple(files), True, FOLDER_INODE, root)
        if not entry.is_symlink():
            result = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(result.st_mode):
                info = FileStat(result.st_mtime_ns, result.st_size, result.st_ino)
                if info.size > root.max_bytes:
                    _Walk(entry.path, root, True).add((), info)  # raises as scan_tree does
                return TreeScan(entry.path, (((), info),), False, result.st_ino, root)
    except FileNotFoundError:
        pass  # removed since it was listed: judged afresh below
    return scan_tree(entry.path, root)


def scan_tree(path: str, root: Optional[SourceRoot] = None) -> TreeScan | None:
    """Stat every regular file under ``path`` (or ``path`` itself if it is a file).

    Returns ``None`` when nothing exists at ``path``.  Files are ordered as
    ``sorted(Path(path).rglob("*"))`` orders them: by path parts.  Without a
    ``root`` links are not judged (nothing is read here, only stat-ed) but the
    walk is bounded all the same (:data:`MAX_TREE_ENTRIES`,
    :data:`DEFAULT_MAX_ARTIFACT_SIZE`); whoever then reads the files must
    scan with a root.

    Raises:
        SourceOutsideRootError: ``path``, a folder on its way or a link below it
            resolves outside ``root``.
        SourceTooLargeError: more than ``root.max_entries`` entries or
            ``root.max_bytes`` bytes of files.
        SourceFileError: a directory or file cannot be listed or stat'ed.
    """
    try:
        if root is not None:
            root.check_parents(path)
        # lstat, not stat: for the usual plain file or folder it is the same
        # single system call, and it shows a link before anything follows it.
        result = os.lstat(path)
        if stat.S_ISLNK(result.st_mode):
            if root is not None:
                root.check_link(path)
            result = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except SourceFileError:
        raise
    except OSError as exc:
        raise SourceFileError(f"{path}: cannot stat: {_describe(exc)}", path=path) from exc
    except ValueError as exc:  # an embedded NUL in the path
        raise SourceFileError(f"{path!r}: not a usable path: {exc}", path=path) from exc
    walk = _Walk(path, root or _UNCONFINED, root is not None)
    if stat.S_ISREG(result.st_mode):
        info = FileStat(result.st_mtime_ns, result.st_size, result.st_ino)
        walk.add((), info)
        return TreeScan(path, (((), info),), False, result.st_ino, root)
    if not stat.S_ISDIR(result.st_mode):
        raise SourceFileError(f"{path}: neither a file nor a directory", path=path)
    try:
        walk.walk(path, ())
    except OSError as exc:
        where = exc.filename or path
        raise SourceFileError(f"{where}: cannot list: {_describe(exc)}", path=path) from exc
    files = walk.files
    files.sort()  # by path parts (unique, so the stats are never compared)
    return TreeScan(path, tuple(files), True, FOLDER_INODE, root)
