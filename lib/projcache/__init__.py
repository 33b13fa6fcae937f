"""projcache: a persistent, memory-mapped LMDB cache of project metadata.

``import projcache`` is cheap: names are imported on first access (PEP 562),
so a caller that only needs :class:`ProjectCache`'s raw JSON path never pays
for pydantic, and nothing here imports typer, rich or yaml.
"""

from __future__ import annotations

import importlib

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .cache import ProjectCache as ProjectCache
    from .cache import SearchResults as SearchResults
    from .config import Settings as Settings
    from .config import load_settings as load_settings
    from .errors import ArtifactNotFound as ArtifactNotFound
    from .errors import CacheAlreadyOpenError as CacheAlreadyOpenError
    from .errors import CacheBusyError as CacheBusyError
    from .errors import CacheClosedError as CacheClosedError
    from .errors import CacheCorruptError as CacheCorruptError
    from .errors import CacheDisabledError as CacheDisabledError
    from .errors import CacheFullError as CacheFullError
    from .errors import CacheNotFoundError as CacheNotFoundError
    from .errors import CachePermissionError as CachePermissionError
    from .errors import ConfigError as ConfigError
    from .errors import CorruptRecordError as CorruptRecordError
    from .errors import DiskFullError as DiskFullError
    from .errors import InvalidArgumentError as InvalidArgumentError
    from .errors import InvalidRecordError as InvalidRecordError
    from .errors import KeyTooLongError as KeyTooLongError
    from .errors import NotFoundError as NotFoundError
    from .errors import ProjcacheError as ProjcacheError
    from .errors import ProjectNotFound as ProjectNotFound
    from .errors import ReadOnlyCacheError as ReadOnlyCacheError
    from .errors import RecordTooLargeError as RecordTooLargeError
    from .errors import SchemaVersionError as SchemaVersionError
    from .errors import ServerError as ServerError
    from .errors import SourceFileError as SourceFileError
    from .errors import SourceOutsideRootError as SourceOutsideRootError
    from .errors import SourceTooLargeError as SourceTooLargeError
    from .errors import StorageError as StorageError
    from .errors import UnsafeCacheDirError as UnsafeCacheDirError
    from .models import Artifact as Artifact
    from .models import CacheStats as CacheStats
    from .models import Deployment as Deployment
    from .models import Finding as Finding
    from .models import Fingerprint as Fingerprint
    from .models import Project as Project
    from .models import RefreshReport as RefreshReport
    from .models import SearchHit as SearchHit
    from .models import SourceError as SourceError
    from .models import VerifyReport as VerifyReport
    from .refresh import check_folders as check_folders
    from .sources.discovery import find_collections as find_collections
    from .vocabulary import ARTIFACT_TYPES as ARTIFACT_TYPES
    from .vocabulary import DEPLOYMENT_STATES as DEPLOYMENT_STATES
    from .watch import watch_and_refresh as watch_and_refresh

# Plain sorted() order (tests/test_package.py), not ruff's constants-first order.
__all__ = [  # noqa: RUF022
    "ARTIFACT_TYPES",
    "Artifact",
    "ArtifactNotFound",
    "CacheAlreadyOpenError",
    "CacheBusyError",
    "CacheClosedError",
    "CacheCorruptError",
    "CacheDisabledError",
    "CacheFullError",
    "CacheNotFoundError",
    "CachePermissionError",
    "CacheStats",
    "ConfigError",
    "CorruptRecordError",
    "DEPLOYMENT_STATES",
    "Deployment",
    "DiskFullError",
    "Finding",
    "Fingerprint",
    "InvalidArgumentError",
    "InvalidRecordError",
    "KeyTooLongError",
    "NotFoundError",
    "ProjcacheError",
    "Project",
    "ProjectCache",
    "ProjectNotFound",
    "ReadOnlyCacheError",
    "RecordTooLargeError",
    "RefreshReport",
    "SchemaVersionError",
    "SearchHit",
    "SearchResults",
    "ServerError",
    "Settings",
    "SourceError",
    "SourceFileError",
    "SourceOutsideRootError",
    "SourceTooLargeError",
    "StorageError",
    "UnsafeCacheDirError",
    "VerifyReport",
    "__version__",
    "check_folders",
    "find_collections",
    "load_settings",
    "watch_and_refresh",
]

_HOMES = {
    **dict.fromkeys(("ProjectCache", "SearchResults"), "cache"),
    **dict.fromkeys(("Settings", "load_settings"), "config"),
    **dict.fromkeys(("ARTIFACT_TYPES", "DEPLOYMENT_STATES"), "vocabulary"),
    "check_folders": "refresh",
    "find_collections": "sources.discovery",
    "watch_and_refresh": "watch",
    **dict.fromkeys(
        (
            "Artifact",
            "CacheStats",
            "Deployment",
            "Finding",
            "Fingerprint",
            "Project",
            "RefreshReport",
            "SearchHit",
            "SourceError",
            "VerifyReport",
        ),
        "models",
    ),
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value: Any = version("projcache")
        except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
            value = "0+unknown"
    elif name in _HOMES:
        value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    elif name in __all__:
        value = getattr(importlib.import_module(".errors", __name__), name)
    else:
        raise AttributeError(f"module 'projcache' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
