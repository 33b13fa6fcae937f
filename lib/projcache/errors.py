"""The exception tree of projcache.

Every error the library raises on purpose derives from :class:`ProjcacheError`.
Each class carries, side by side, the exit code the CLI uses for it
(``exit_code``), the HTTP status the server answers with (``http_status``) and
a *hint*: one sentence telling the user what to do about it::

    ProjcacheError                      exit 3  (any other failure)
    ├── CacheDisabledError              exit 3  the feature flag switched the cache off
    ├── ConfigError (ValueError)        exit 10 invalid setting, names key and allowed values
    ├── InvalidArgumentError (ValueError) exit 14 a bad argument to a call: filter, limit, key
    ├── InvalidRecordError (ValueError) exit 2  a caller's record is invalid
    │   ├── KeyTooLongError             exit 2  key exceeds LMDB's 511-byte key limit
    │   └── RecordTooLargeError         exit 2  one encoded record exceeds MAX_RECORD_BYTES
    ├── NotFoundError (KeyError)        exit 4
    │   ├── ArtifactNotFound            exit 4
    │   └── ProjectNotFound             exit 4
    ├── CacheClosedError                exit 3  the cache was used after close()
    ├── SourceFileError (ValueError)    exit 12 a source file or folder is unreadable or malformed
    │   ├── SourceOutsideRootError      exit 12 a symlink (or ``..`` path) leads outside its root
    │   └── SourceTooLargeError         exit 12 a source exceeds a size limit (files, bytes, YAML)
    ├── ServerError                     exit 13 the HTTP server cannot bind or must not serve
    └── StorageError                    exit 5  an LMDB failure without a better class
        ├── CacheNotFoundError          exit 5  read-only open of a directory without a cache
        ├── CacheAlreadyOpenError       exit 5  same directory opened twice incompatibly
        ├── CacheBusyError              exit 11 reader slots exhausted, lock unavailable
        ├── CacheFullError              exit 6  map reached the configured maximum
        ├── DiskFullError               exit 6  no space: ENOSPC, EDQUOT, EFBIG (ulimit -f)
        ├── CachePermissionError        exit 8  (PermissionError) cannot write the directory
        │   └── UnsafeCacheDirError     exit 8  another user could write the folder or its files
        ├── ReadOnlyCacheError          exit 8  write on a cache opened read-only
        ├── SchemaVersionError          exit 9  written by a newer projcache
        └── CacheCorruptError           exit 7  the environment or a record is damaged
            └── CorruptRecordError      exit 7  one value's frame failed its check

Low-level ``lmdb.Error`` instances are translated in exactly one place,
:func:`translate_lmdb_error`, through the table ``_LMDB_TABLE``; ``OSError``
met on the cache's own files by :func:`translate_os_error`.

Over 400 lines because the whole tree is meant to be read in one place: each
class is a few lines (docstring, exit code, HTTP status, hint) and splitting
them would scatter the exit-code table that the CLI and the docs follow.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from .logs import get_logger

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar, Optional

    import lmdb

__all__ = [
    "ArtifactNotFound",
    "CacheAlreadyOpenError",
    "CacheBusyError",
    "CacheClosedError",
    "CacheCorruptError",
    "CacheDisabledError",
    "CacheFullError",
    "CacheNotFoundError",
    "CachePermissionError",
    "ConfigError",
    "CorruptRecordError",
    "DiskFullError",
    "InvalidArgumentError",
    "InvalidRecordError",
    "KeyTooLongError",
    "NotFoundError",
    "ProjcacheError",
    "ProjectNotFound",
    "ReadOnlyCacheError",
    "RecordTooLargeError",
    "SchemaVersionError",
    "ServerError",
    "SourceFileError",
    "SourceOutsideRootError",
    "SourceTooLargeError",
    "StorageError",
    "UnsafeCacheDirError",
    "as_argument_error",
    "translate_lmdb_error",
    "translate_os_error",
]

logger = get_logger(__name__)


class ProjcacheError(Exception):
    """Root of every error projcache raises on purpose.

    Attributes:
        exit_code: the CLI's exit status for this class of error.
        http_status: the HTTP status the server answers this class of error with.
        hint: what the user can do about it (may be empty).
    """

    exit_code: ClassVar[int] = 3
    http_status: ClassVar[int] = 500
    default_hint: ClassVar[str] = ""

    def __init__(self, message: str, *, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint

    def __str__(self) -> str:
        return self.message


class ConfigError(ProjcacheError, ValueError):
    """A setting has an invalid value; the message names the key and allowed values."""

    exit_code = 10
    http_status = 422
    default_hint = "Fix the environment variable or the config file entry named above."


class CacheDisabledError(ProjcacheError):
    """The cache is switched off by ``PROJCACHE_ENABLED=false`` (or ``SKILLMEAT_ENABLE_CACHE``)."""

    exit_code = 3
    http_status = 500
    default_hint = (
        "Set PROJCACHE_ENABLED=true (and unset SKILLMEAT_ENABLE_CACHE=false) to use the cache."
    )


class InvalidArgumentError(ProjcacheError, ValueError):
    """An argument of a call is invalid; the message names it and what it may be.

    Arguments, not records: an unknown type, state or profile filter, a negative
    ``limit`` or ``offset``, a malformed key given to look up or delete a record,
    a backup target that is not an empty folder.  A record (or a key inside one)
    that cannot be stored is an :class:`InvalidRecordError`.
    """

    exit_code = 14
    http_status = 422
    default_hint = "Check the value named above; `projcache <command> --help` lists the choices."


class InvalidRecordError(ProjcacheError, ValueError):
    """A record given by the caller cannot be stored; the message names the field.

    Records, not arguments: a field a model rejects, a key part with ``/`` or
    NUL, a deployment of a project not in the cache.  A bad argument of a call
    is an :class:`InvalidArgumentError`.
    """

    exit_code = 2
    http_status = 422


class KeyTooLongError(InvalidRecordError):
    """An encoded key is longer than LMDB's key limit (511 bytes)."""

    exit_code = 2
    http_status = 422
    default_hint = "Use shorter collection, artifact or project names."


class RecordTooLargeError(InvalidRecordError):
    """One encoded record is larger than :data:`projcache.codec.MAX_RECORD_BYTES`; not written.

    The write (its whole transaction) is refused, so nothing stored changes.
    """

    exit_code = 2
    http_status = 422

    default_hint = (
        "Make the record smaller (a description or front matter this large is a mistake "
        "or an attack); refresh refuses such sources before they get here."
    )


class SourceFileError(ProjcacheError, ValueError):
    """A source file or folder cannot be read or is malformed.

    A refresh records these on the collection or project (keeping its last
    good data) instead of raising; they are raised only for a path the caller
    named directly that is not a collection or project at all.
    """

    exit_code = 12
    http_status = 500
    default_hint = "Fix or remove the file named above, then run `projcache refresh` again."

    def __init__(self, message: str, *, path: str = "", hint: Optional[str] = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class SourceOutsideRootError(SourceFileError):
    """A source path resolves outside its collection or project folder; it was not read.

    Raised for a symlink (a ``SKILL.md``, a skill folder, a file inside one, a
    manifest, a deployed copy) whose target lies outside the root, and for a
    path that climbs out with ``..``.  ``target`` is where it leads.
    """

    exit_code = 12
    http_status = 500

    default_hint = (
        "Sources may only link inside their own collection or project folder: copy the "
        "target in, or remove the link, then run `projcache refresh` again."
    )

    def __init__(
        self, message: str, *, path: str = "", target: str = "", hint: Optional[str] = None
    ) -> None:
        super().__init__(message, path=path, hint=hint)
        self.target = target


class SourceTooLargeError(SourceFileError):
    """A source exceeds a size limit: a file, an artifact's files, or its decoded front matter."""

    exit_code = 12
    http_status = 500

    default_hint = (
        "Raise PROJCACHE_MAX_FILE_SIZE or PROJCACHE_MAX_ARTIFACT_SIZE if the source is meant "
        "to be this large; an expanding YAML front matter must be rewritten."
    )


class ServerError(ProjcacheError):
    """The HTTP server cannot start: the address is in use or may not be served as asked."""

    exit_code = 13
    http_status = 500
    default_hint = "Choose another --port, or stop the program that holds this one."


class NotFoundError(ProjcacheError, KeyError):
    """A record that the caller asked for by key does not exist."""

    exit_code = 4
    http_status = 404

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message; keep it readable.
        return self.message


class ArtifactNotFound(NotFoundError):
    """No artifact with the given key is in the cache."""

    exit_code = 4
    http_status = 404

    default_hint = "Run `projcache list artifacts` to see the keys, or refresh the cache."


class ProjectNotFound(NotFoundError):
    """No project with the given id, name or path is in the cache."""

    exit_code = 4
    http_status = 404

    default_hint = "Run `projcache list projects` to see the known projects."


class CacheClosedError(ProjcacheError):
    """The cache was used after :meth:`ProjectCache.close`."""

    exit_code = 3
    http_status = 500

    default_hint = "Open the cache again with ProjectCache.open()."


class StorageError(ProjcacheError):
    """An LMDB failure that no more specific class describes."""

    exit_code = 5
    http_status = 500
    default_hint = (
        "Run `projcache verify`; if the error persists, report it with the LMDB message above."
    )


class CacheNotFoundError(StorageError):
    """A read-only open found no cache in the directory."""

    exit_code = 5
    http_status = 500

    default_hint = "Run `projcache refresh` to create the cache, or check --cache-dir."


class CacheAlreadyOpenError(StorageError):
    """The directory is already open in this process in an incompatible mode."""

    exit_code = 5
    http_status = 500

    default_hint = "Reuse the ProjectCache that is already open, or close it first."


class CacheBusyError(StorageError):
    """The cache cannot serve another reader or writer right now."""

    exit_code = 11
    http_status = 503
    default_hint = "Too many processes use the cache at once; retry, or close idle readers."


class CacheFullError(StorageError):
    """The map reached the configured maximum size."""

    exit_code = 6
    http_status = 507
    default_hint = (
        "Raise PROJCACHE_MAX_MAP_SIZE (or max_map_size in the config file), "
        "or run `projcache clear` and refresh."
    )


class DiskFullError(StorageError):
    """The filesystem holding the cache has no space left; nothing partial was committed."""

    exit_code = 6
    http_status = 507
    default_hint = "Free disk space on the cache's filesystem, or move it with PROJCACHE_DIR."


class CachePermissionError(StorageError, PermissionError):
    """The cache directory or its files cannot be written (or read)."""

    exit_code = 8
    http_status = 409
    default_hint = "Check the permissions of the cache directory, or choose another one."


class UnsafeCacheDirError(CachePermissionError):
    """The cache folder or its files could be changed by another user, so it is not used.

    Refused: a folder not owned by you (or root), a folder group- or
    world-writable (unless it is sticky and yours, like a private ``/tmp``
    subfolder), a ``data.mdb`` writable by others, and a ``data.mdb``,
    ``lock.mdb`` or ``grow.lock`` that is a symlink, not a regular file,
    hard-linked elsewhere or owned by another user.  Nothing in the folder is
    opened, written or removed.
    """

    exit_code = 8
    http_status = 409

    default_hint = (
        "Use a cache folder only you can write (projcache creates it 0700): set "
        "PROJCACHE_DIR or --cache-dir, or fix the owner/mode and remove planted files."
    )


class ReadOnlyCacheError(StorageError):
    """A write was attempted on a cache opened read-only."""

    exit_code = 8
    http_status = 409
    default_hint = "Open the cache with readonly=False to change it."


class SchemaVersionError(StorageError):
    """The cache was written by a newer projcache with an unknown schema."""

    exit_code = 9
    http_status = 500
    default_hint = "Upgrade projcache, or point PROJCACHE_DIR at another directory."


class CacheCorruptError(StorageError):
    """The LMDB environment or its contents are damaged."""

    exit_code = 7
    http_status = 500
    default_hint = "Run `projcache verify --repair`."


class CorruptRecordError(CacheCorruptError):
    """A stored value failed its frame check (format byte or CRC32); it is never returned."""

    exit_code = 7
    http_status = 500


@contextlib.contextmanager
def as_argument_error() -> Iterator[None]:
    """Inside this block, a record check failing on a caller's argument is an argument error.

    The key and name checks of :mod:`projcache.codec` serve records and
    arguments alike and raise :class:`InvalidRecordError`; where they check an
    argument (a key to look up, a type filter) this turns that into an
    :class:`InvalidArgumentError` with the same message.  A key that is too long
    stays a :class:`KeyTooLongError` (the limit is the same for both).
    """
    try:
        yield
    except KeyTooLongError:
        raise
    except InvalidRecordError as exc:
        raise InvalidArgumentError(exc.message) from None


# One table from py-lmdb's exception class names to ours.  Names rather than
# classes so this module does not import lmdb (it is imported by config-only
# callers), and so LMDB 1.0-only classes that may be absent are tolerated.
_LMDB_TABLE: dict[str, tuple[type[ProjcacheError], str]] = {
    "MapFullError": (CacheFullError, "the cache map is full"),
    "DiskError": (DiskFullError, "no space left on the device holding the cache"),
    "ReadersFullError": (CacheBusyError, "all reader slots are in use"),
    "TlsFullError": (CacheBusyError, "too many threads use the cache"),
    "LockError": (CacheBusyError, "the cache lock could not be taken"),
    "ReadonlyError": (ReadOnlyCacheError, "the cache is read-only"),
    "CorruptedError": (CacheCorruptError, "the LMDB environment is corrupted"),
    "PageNotFoundError": (CacheCorruptError, "an LMDB page is missing"),
    "PanicError": (CacheCorruptError, "LMDB reported a fatal error"),
    "InvalidError": (CacheCorruptError, "the files are not a valid LMDB environment"),
    "VersionMismatchError": (CacheCorruptError, "the LMDB file format version is unknown"),
    "BadChecksumError": (CacheCorruptError, "an LMDB page checksum failed"),
    "BadValsizeError": (KeyTooLongError, "a key or value has an invalid size"),
}


_NEARLY_FULL_BYTES = 1024 * 1024
# "No room for this write": the filesystem is full (ENOSPC), the user's quota is
# used up (EDQUOT), or the file may not grow past the process's RLIMIT_FSIZE
# (EFBIG, ``ulimit -f`` with SIGXFSZ ignored).  All three are the disk-full class.
_DISK_FULL_CODES = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if code
)


def _at_file_size_limit(path: str) -> bool:
    """True when the cache's data file reached this process's RLIMIT_FSIZE (``ulimit -f``).

    LMDB reports the short write the kernel allows up to the limit as EIO;
    the file then ends exactly at the limit.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return False
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft == resource.RLIM_INFINITY:
        return False
    try:
        return os.stat(os.path.join(path, "data.mdb")).st_size >= soft
    except OSError:
        return False


def _disk_full(code: int, where: str) -> DiskFullError:
    if code == errno.EFBIG:
        return DiskFullError(
            f"a cache file may not grow any further{where}: {os.strerror(code)}",
            hint="Raise the file size limit (`ulimit -f`), or move the cache with PROJCACHE_DIR.",
        )
    if code == getattr(errno, "EDQUOT", -1):
        return DiskFullError(f"disk quota exceeded on the device holding the cache{where}")
    return DiskFullError(f"no space left on the device holding the cache{where}")


def translate_os_error(exc: OSError, *, path: str = "") -> ProjcacheError:
    """Return the projcache exception for an ``OSError`` met on the cache's own files.

    A full disk, quota or file size limit is :class:`DiskFullError` (exit 6),
    a refused access :class:`CachePermissionError` (exit 8), anything else a
    :class:`StorageError` carrying the system's text.
    """
    where = f" ({path})" if path else ""
    code = exc.errno or 0
    if code in _DISK_FULL_CODES:
        return _disk_full(code, where)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CachePermissionError(f"permission denied on the cache{where}: {exc.strerror}")
    return StorageError(f"cannot use the cache's files{where}: {exc.strerror or exc}")


def _nearly_full(path: str) -> bool:
    """True when the filesystem holding ``path`` has (almost) no space left for us."""
    try:
        info = os.statvfs(path)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < _NEARLY_FULL_BYTES


def translate_lmdb_error(exc: lmdb.Error, *, path: str = "") -> ProjcacheError:
    """Return the projcache exception that stands for ``exc`` (to be raised ``from`` it).

    The mapping lives in ``_LMDB_TABLE``; an unknown class becomes a plain
    :class:`StorageError` carrying LMDB's own text.
    """
    where = f" ({path})" if path else ""
    code = getattr(exc, "code", 0)
    # LMDB reports a short write as EIO; on a filesystem with no room left, that is a full disk.
    if code in _DISK_FULL_CODES or (code == errno.EIO and path and _nearly_full(path)):
        return _disk_full(code, where)
    if code == errno.EIO and path and _at_file_size_limit(path):
        return _disk_full(errno.EFBIG, where)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CachePermissionError(f"permission denied on the cache{where}: {exc}")
    for klass in type(exc).__mro__:
        entry = _LMDB_TABLE.get(klass.__name__)
        if entry is not None:
            cls, text = entry
            return cls(f"{text}{where}: {exc}")
    logger.debug("untranslated LMDB error %s: %s", type(exc).__name__, exc)
    return StorageError(f"LMDB error{where}: {exc}")
