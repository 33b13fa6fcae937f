"""Content hashes computed exactly as SkillMeat computes them.

A file's hash is SHA-256 of its bytes.  A directory's is SHA-256 over its
regular files in ``sorted(dir.rglob("*"))`` order (pathlib sorts by path
*parts*), feeding for each file ``str(relative_path)`` as UTF-8 and then its
bytes.  Agreeing bit for bit with SkillMeat's ``compute_content_hash`` is what
lets ``modified`` and ``outdated`` agree with the hashes it wrote into lock and
deployment files.
"""

from __future__ import annotations

import hashlib
import os

from ..errors import SourceFileError
from . import fileio
from .fileio import TreeScan

__all__ = ["content_hash", "hash_tree"]

_CHUNK = 1 << 16


def _feed_file(digest: hashlib._Hash, path: str) -> None:
    try:
        with fileio.open_source(path) as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise SourceFileError(f"{path}: cannot read: {reason}", path=path) from exc


def hash_tree(scan: TreeScan) -> str:
    """Return the SkillMeat content hash of the files a :class:`TreeScan` found."""
    digest = hashlib.sha256()
    if not scan.is_dir:
        _feed_file(digest, scan.root)
        return digest.hexdigest()
    for relative, absolute in scan.paths():
        # surrogateescape: a name that is not UTF-8 still hashes (SkillMeat would crash).
        digest.update(relative.encode("utf-8", "surrogateescape"))
        _feed_file(digest, absolute)
    return digest.hexdigest()


def content_hash(path: str | os.PathLike[str]) -> str:
    """Return the SkillMeat content hash of a file or directory.

    Raises:
        SourceFileError: nothing at ``path``, or something under it is unreadable.
    """
    text = os.fspath(path)
    scan = fileio.scan_tree(text)
    if scan is None:
        raise SourceFileError(f"{text}: no such file or directory", path=text)
    return hash_tree(scan)
