"""Trust checks on the cache folder and its files, done before LMDB opens anything.

LMDB opens ``lock.mdb`` and ``data.mdb`` by name with ``O_RDWR | O_CREAT``,
following symlinks, and then truncates and writes the lock file (its reader
table).  In a folder another user can write, a planted ``lock.mdb`` symlink
would make projcache overwrite any file the user may write, and a planted
``data.mdb`` would feed it records.  So, before every real open:

* the folder must be owned by the current user (or root) and not be group-
  or world-writable, unless it is sticky and ours (others may then create
  files in it, but not replace ours);
* ``data.mdb``, ``lock.mdb``, ``grow.lock`` and ``roots.json``, where they exist, must be
  regular files with one link, owned by us (or root); ``data.mdb`` must not be
  writable by others (a world-writable ``lock.mdb`` is tolerated: it is how
  other users share a cache read-only);
* for a read-write open, missing files are created here with ``O_EXCL |
  O_NOFOLLOW`` (mode 0600) so LMDB only ever opens files we made or checked.

The lock file is also given its disk blocks up front (``posix_fallocate``):
LMDB maps it and writes through the mapping, and a write to a sparse page on a
full filesystem kills the process with SIGBUS (seen: exit 135, leaving only
``lock.mdb``).  Allocating first turns that into ENOSPC, a
:class:`~projcache.errors.DiskFullError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from .errors import StorageError, UnsafeCacheDirError, translate_os_error

__all__ = ["CACHE_FILES", "check_folder", "lock_file_bytes", "prepare_files", "remove_created"]

CACHE_FILES = ("data.mdb", "lock.mdb", "grow.lock", "roots.json")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# LMDB's lock file: MDB_txninfo (192 bytes with 64-byte cache lines and Linux
# robust mutexes) plus one 64-byte MDB_reader per further slot.  Measured with
# py-lmdb 3.0 / LMDB 0.9.36: 65,664 bytes for 1,024 readers.  (Were it more,
# LMDB would extend the file itself, sparse.)  The file is never opened again
# once LMDB holds it: closing any descriptor of a file drops every POSIX lock
# the process holds on it, LMDB's liveness lock included.
_TXNINFO_BYTES = 192
_READER_BYTES = 64


def lock_file_bytes(max_readers: int) -> int:
    """The size LMDB gives ``lock.mdb`` for ``max_readers`` reader slots."""
    return _TXNINFO_BYTES + (max_readers - 1) * _READER_BYTES


def _trusted_owner(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def check_folder(path: Path) -> None:
    """Refuse a cache folder, or files in it, that another user could have written.

    Raises:
        UnsafeCacheDirError: naming the folder or file and why.
        StorageError: the folder cannot be examined.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise translate_os_error(exc, path=str(path)) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise StorageError(f"{path} is not a cache directory (it is a file)")
    mode = stat.S_IMODE(st.st_mode)
    if not _trusted_owner(st.st_uid):
        raise UnsafeCacheDirError(
            f"refusing the cache folder {path}: it belongs to user id {st.st_uid}, not to you"
        )
    sticky_and_ours = bool(mode & stat.S_ISVTX) and st.st_uid == os.geteuid()
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky_and_ours:
        who = "everyone" if mode & stat.S_IWOTH else "its group"
        raise UnsafeCacheDirError(
            f"refusing the cache folder {path}: {who} may write it (mode {mode:04o})"
        )
    for name in CACHE_FILES:
        _check_file(path / name)


def _check_file(file: Path) -> None:
    try:
        st = os.lstat(file)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise translate_os_error(exc, path=str(file)) from exc
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(file)
        except OSError:
            target = "?"
        raise UnsafeCacheDirError(
            f"refusing {file}: it is a symbolic link (to {target}); "
            "projcache never opens its files through a link"
        )
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeCacheDirError(f"refusing {file}: it is not a regular file")
    if st.st_nlink != 1:
        raise UnsafeCacheDirError(
            f"refusing {file}: it has {st.st_nlink} hard links (another name for another file)"
        )
    if not _trusted_owner(st.st_uid):
        raise UnsafeCacheDirError(f"refusing {file}: it belongs to user id {st.st_uid}, not to you")
    if file.name == "data.mdb" and stat.S_IMODE(st.st_mode) & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeCacheDirError(
            f"refusing {file}: other users may write it (mode {stat.S_IMODE(st.st_mode):04o})"
        )


def _open_private(file: Path) -> tuple[int, bool]:
    """Open ``file`` read-write without following a link, creating it 0600; (fd, created)."""
    try:
        fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
        return fd, True
    except FileExistsError:
        pass
    try:
        return os.open(file, os.O_RDWR | _NOFOLLOW | _CLOEXEC), False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeCacheDirError(f"refusing {file}: it is a symbolic link") from exc
        raise


def allocate(fd: int, size: int, file: Path) -> None:
    """Give the first ``size`` bytes of ``fd`` real disk blocks (no sparse pages to SIGBUS on)."""
    if not hasattr(os, "posix_fallocate") or size <= 0:  # pragma: no cover - not on Linux
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return  # a filesystem without fallocate: LMDB's own writes are all we have
        raise translate_os_error(exc, path=str(file.parent)) from exc


def prepare_files(path: Path, max_readers: int) -> list[Path]:
    """Create missing cache files privately and allocate the lock file; return those created.

    Called after :func:`check_folder` for a read-write open.  Files found
    created by another process meanwhile are opened without following links.

    Raises:
        UnsafeCacheDirError: a file turned out to be a symlink.
        DiskFullError: no room for the lock file (ENOSPC, EDQUOT, EFBIG).
        CachePermissionError: the files cannot be created.
    """
    created: list[Path] = []
    try:
        for name in ("lock.mdb", "data.mdb"):
            file = path / name
            try:
                fd, new = _open_private(file)
            except OSError as exc:
                raise translate_os_error(exc, path=str(path)) from exc
            if new:
                created.append(file)
            try:
                if name == "lock.mdb":
                    # Never change the size of a lock file in use: LMDB sizes the reader
                    # table from it, and a process that mapped a smaller one would scan
                    # past its mapping.  Only a new (empty) file is given LMDB's size.
                    size = os.fstat(fd).st_size or lock_file_bytes(max_readers)
                    allocate(fd, size, file)
            finally:
                os.close(fd)
    except BaseException:
        remove_created(created)
        raise
    return created


def remove_created(files: list[Path]) -> None:
    """Remove files this open created, after the open failed (nothing else uses them yet)."""
    for file in reversed(files):
        with contextlib.suppress(OSError):
            os.unlink(file)
