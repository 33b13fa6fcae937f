"""Schema versions: recorded in ``meta``, checked on every open, migrated forward.

* No version (a new environment): the current version and ``created_at`` are written.
* A newer version than this projcache knows: :class:`SchemaVersionError`;
  nothing is touched, so the newer projcache keeps working.
* An older version: the migrations in ``MIGRATIONS`` run in the same write
  transaction as the version bump.  Where no migration exists, every record is
  dropped and ``meta.needs_rebuild`` set: the cache is derived data and the
  next ``refresh(full=True)`` rebuilds it from the source files.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import CacheNotFoundError, SchemaVersionError
from .repository import MetaRepository
from .storage import Txn

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "ensure_schema", "read_schema"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2

# from-version -> function upgrading a transaction's data to from-version + 1.
MIGRATIONS: dict[int, Callable[[Txn, MetaRepository], None]] = {}


def read_schema(txn: Txn, meta: MetaRepository, path: Path) -> int:
    """Check the schema of a cache opened read-only; return its version.

    Raises:
        CacheNotFoundError: the environment was never initialised by projcache.
        SchemaVersionError: the version is not the current one (read-only can't migrate).
    """
    version = meta.get(txn, "schema_version")
    if version is None:
        raise CacheNotFoundError(f"{path} holds no initialised projcache cache")
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the cache in {path} has schema version {version}; this projcache uses "
            f"{SCHEMA_VERSION}",
            hint="Open it once read-write to migrate it, or upgrade projcache."
            if version < SCHEMA_VERSION
            else None,
        )
    return int(version)


def ensure_schema(txn: Txn, meta: MetaRepository, storage: Storage) -> int:
    """Initialise, accept or migrate the schema inside a write transaction; return the version."""
    from . import mutations

    version = meta.get(txn, "schema_version")
    if version is None:
        meta.put(txn, "schema_version", SCHEMA_VERSION)
        meta.put(txn, "created_at", datetime.now(timezone.utc).isoformat())
        return SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the cache in {storage.path} was written by a newer projcache "
            f"(schema {version}; this one knows up to {SCHEMA_VERSION})"
        )
    while version < SCHEMA_VERSION:
        migrate = MIGRATIONS.get(version)
        if migrate is None:
            logger.warning(
                "no migration from schema %s; emptying %s for a rebuild from source",
                version,
                storage.path,
            )
            mutations.clear_all(txn, storage.dbs)
            meta.put(txn, "needs_rebuild", True)
            version = SCHEMA_VERSION
            break
        migrate(txn, meta)
        version += 1
    meta.put(txn, "schema_version", version)
    return int(version)
