"""Schema versions: recorded in ``meta``, checked on every open, migrated forward.

* No version (a new environment): the current version and ``created_at`` are written.
* A newer version than this projcache knows: :class:`SchemaVersionError`;
  nothing is touched, so the newer projcache keeps working.
* An older version: the steps in :data:`MIGRATIONS` whose from-version is at
  least the cache's run in order, in the same write transaction as the version
  bump, so a migration is all or nothing.  Where no step exists for a version,
  every record is dropped and ``meta.needs_rebuild`` set: the cache is derived
  data and the next ``refresh(full=True)`` rebuilds it from the source files.

A step is a function of one :class:`Migration`; adding one is one line in
:data:`MIGRATIONS` (steps of the same from-version run in list order).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import lmdb

from .errors import CacheNotFoundError, SchemaVersionError
from .logs import get_logger
from .repository import MetaRepository, Repositories
from .storage import Txn

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from .storage import Storage

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Migration",
    "MigrationProgress",
    "ensure_schema",
    "read_schema",
]

logger = get_logger(__name__)

SCHEMA_VERSION = 3

if TYPE_CHECKING:
    # progress(step description, done, total): called while a migration runs.
    MigrationProgress = Callable[[str, int, int], None]
else:

    def __getattr__(name: str) -> object:
        # The alias is built on first use: ``typing`` stays out of a cold CLI call.
        if name == "MigrationProgress":
            from typing import Callable

            return Callable[[str, int, int], None]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Migration:
    """What a migration step works on: one write transaction of one environment."""

    # A plain class, not a dataclass: building a dataclass compiles its methods when the
    # module is imported, and every open of a cache imports this module (a cold
    # ``projcache search --json`` paid ~0.5 ms for it; issue 15 item 2).
    __slots__ = ("_dbs", "progress", "step", "storage", "txn")

    def __init__(
        self, txn: Txn, storage: Storage, progress: MigrationProgress, step: str = ""
    ) -> None:
        self.txn = txn
        self.storage = storage
        self.progress = progress
        self.step = step
        self._dbs: dict[str, Any] = {}

    def db(self, name: str) -> Any:
        """The current handle of sub-database ``name`` (a replaced one once replaced)."""
        return self._dbs.get(name, self.storage.dbs[name])

    def repos(self) -> Repositories:
        """Repositories over the current handles."""
        return Repositories({**self.storage.dbs, **self._dbs})

    def replace(self, name: str) -> None:
        """Drop ``name`` and create it with the flags this version gives it."""
        self._dbs[name] = self.storage.replace_db(self.txn, name)

    def drop_old(self, name: str) -> None:
        """Delete a sub-database this version no longer has, if the cache has it."""
        try:
            handle = self.storage.env.open_db(name.encode(), txn=self.txn, create=False)
        except lmdb.NotFoundError:
            return
        except lmdb.IncompatibleError:
            handle = self.storage.env.open_db(
                name.encode(), txn=self.txn, create=False, dupsort=True
            )
        self.txn.drop(handle, delete=True)

    def report(self, done: int, total: int) -> None:
        """Tell the progress callback how far the current step is."""
        self.progress(self.step, done, total)


def _drop_v2_index(m: Migration) -> None:
    """Schema 2 -> 3: the dupsort posting lists and per-artifact terms give way to bitmaps."""
    if "search-tokens" in m.storage.legacy:
        m.replace("search-tokens")
    else:
        m.txn.drop(m.db("search-tokens"), delete=False)
    for name in ("artifact-terms", "artifact-facets"):
        m.drop_old(name)
    for name in ("search-pending", "artifact-ids", "artifact-keys"):
        m.txn.drop(m.db(name), delete=False)


def _forget_fingerprints(m: Migration) -> None:
    """Schema 2 -> 3: fingerprints hold no body text, so the next refresh re-reads every file."""
    m.txn.drop(m.db("sources"), delete=False)


def _build_v3_index(m: Migration) -> None:
    """Schema 2 -> 3: give every artifact an id and list it in its bitmaps."""
    from . import mutations

    repos = m.repos()
    total = repos.artifacts.count(m.txn)
    model = repos.artifacts.model
    m.report(0, total)
    done = 0
    for _key, payload in list(repos.artifacts.scan_payloads(m.txn)):
        mutations.index_artifact(m.txn, repos, model.model_validate_json(payload))
        done += 1
        if done % 1000 == 0:
            m.report(done, total)
    repos.index.flush(m.txn)
    repos.index.merge(m.txn)
    m.report(done, total)


def _profile_deployment_keys(m: Migration) -> None:
    """Schema 2 -> 3: deployment keys gain their profile (every schema-2 one is claude_code)."""
    from .migrate_profiles import migrate_deployment_keys

    migrate_deployment_keys(m.txn, {**m.storage.dbs, **m._dbs})


# (from-version, what the step does, step).  The version becomes from-version + 1
# once every step of from-version has run.
MIGRATIONS: list[tuple[int, str, Callable[[Migration], None]]] = [
    (2, "give every deployment its deployment profile", _profile_deployment_keys),
    (2, "drop the schema-2 search index", _drop_v2_index),
    (2, "forget source fingerprints (bodies are read anew)", _forget_fingerprints),
    (2, "number the artifacts and build the search bitmaps", _build_v3_index),
]


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


def _quiet(_step: str, _done: int, _total: int) -> None:
    """The default progress callback: says nothing."""


def ensure_schema(
    txn: Txn,
    meta: MetaRepository,
    storage: Storage,
    progress: Optional[MigrationProgress] = None,
) -> int:
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
    migration = Migration(txn, storage, progress or _quiet)
    while version < SCHEMA_VERSION:
        steps = [(what, step) for start, what, step in MIGRATIONS if start == version]
        if not steps:
            logger.warning(
                "no migration from schema %s; emptying %s for a rebuild from source",
                version,
                storage.path,
            )
            mutations.clear_all(txn, storage.dbs)
            for name in sorted(storage.legacy):
                migration.replace(name)
            meta.put(txn, "needs_rebuild", True)
            version = SCHEMA_VERSION
            break
        for what, step in steps:
            logger.info("migrating %s from schema %s: %s", storage.path, version, what)
            migration.step = what
            step(migration)
        version += 1
    meta.put(txn, "schema_version", version)
    return int(version)
