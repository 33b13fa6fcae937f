"""Content hashes computed exactly as SkillMeat computes them.

A file's hash is SHA-256 of its bytes.  A directory's is SHA-256 over its
regular files in ``sorted(dir.rglob("*"))`` order (pathlib sorts by path
*parts*), feeding for each file ``str(relative_path)`` as UTF-8 and then its
bytes.  Agreeing bit for bit with SkillMeat's ``compute_content_hash`` is what
lets ``modified`` and ``outdated`` agree with the hashes it wrote into lock and
deployment files.

Unlike SkillMeat, hashing stays inside a root (links out of it are refused,
see :class:`~projcache.sources.fileio.SourceRoot`) and reads at most the
root's ``max_bytes``: a file that grew after the scan cannot make it read more.
"""

from __future__ import annotations

import hashlib
import os
from typing import Optional

from ..errors import SourceFileError, SourceTooLargeError
from . import fileio
from .fileio import SourceRoot, TreeScan

__all__ = ["content_hash", "hash_tree"]

_CHUNK = 1 << 16


def _feed_file(digest: hashlib._Hash, path: str, budget: int, top: str) -> int:
    """Feed one file to ``digest``; return the bytes left of ``budget``."""
    try:
        with fileio.open_source(path) as handle:
            while chunk := handle.read(min(_CHUNK, budget + 1)):
                budget -= len(chunk)
                if budget < 0:
                    raise SourceTooLargeError(
                        f"{top}: grew past the byte limit for one artifact while being "
                        "hashed; not read",
                        path=top,
                    )
                digest.update(chunk)
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise SourceFileError(f"{path}: cannot read: {reason}", path=path) from exc
    return budget


def hash_tree(scan: TreeScan) -> str:
    """Return the SkillMeat content hash of the files a :class:`TreeScan` found.

    Reads at most the scan root's ``max_bytes``.

    Raises:
        SourceTooLargeError: the files grew past that limit since the scan.
        SourceFileError: a file cannot be read.
    """
    digest = hashlib.sha256()
    budget = scan.within.max_bytes if scan.within is not None else fileio.DEFAULT_MAX_ARTIFACT_SIZE
    if not scan.is_dir:
        _feed_file(digest, scan.root, budget, scan.root)
        return digest.hexdigest()
    for relative, absolute in scan.paths():
        # surrogateescape: a name that is not UTF-8 still hashes (SkillMeat would crash).
        digest.update(relative.encode("utf-8", "surrogateescape"))
        budget = _feed_file(digest, absolute, budget, scan.root)
    return digest.hexdigest()


def content_hash(path: str | os.PathLike[str], root: Optional[SourceRoot] = None) -> str:
    """Return the SkillMeat content hash of a file or directory.

    ``root`` is the folder the files must stay inside.  By default it is the
    (resolved) directory itself, or a file's folder: the path named is
    followed, links below it that lead out of it are refused.

    Raises:
        SourceOutsideRootError: a link below ``path`` leads outside ``root``.
        SourceTooLargeError: more files or bytes than ``root`` allows.
        SourceFileError: nothing at ``path``, or something under it is unreadable.
    """
    text = os.fspath(path)
    if root is None:
        resolved = os.path.realpath(text)
        root = SourceRoot(resolved if os.path.isdir(resolved) else os.path.dirname(resolved))
        text = resolved
    scan = fileio.scan_tree(text, root)
    if scan is None:
        raise SourceFileError(f"{os.fspath(path)}: no such file or directory", path=os.fspath(path))
    return hash_tree(scan)
