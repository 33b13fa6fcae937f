"""The names everything else derives from: artifact types, deployment states, sub-databases.

Each list is written out once, here, and every other use derives from it: the
models' fields (:mod:`projcache.models`), the codec's checks, the sub-databases
the storage opens, which of them verify and salvage treat as records and which
as derived indexes, the CLI's choices and the tests.  Nothing here imports
anything of projcache (it sits at the bottom of the layers, see
``docs/cache/architecture.md``).
"""

from __future__ import annotations

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

__all__ = [
    "ARTIFACT_TYPES",
    "DATABASES",
    "DEPLOYMENT_STATES",
    "DERIVED_DBS",
    "META_DB",
    "RECORD_DBS",
    "DeploymentStateName",
]

# The artifact types SkillMeat 0.74.0 knows (skillmeat/core/artifact_detection.py,
# ArtifactType, in its order).  A type not in it (a newer SkillMeat's) is still
# accepted wherever a type is stored, as long as it is a plain name (see
# codec.check_type_name).
ARTIFACT_TYPES: tuple[str, ...] = (
    "skill",
    "command",
    "agent",
    "hook",
    "mcp",
    "workflow",
    "composite",
    "context_module",
    "template",
    "group",
    "deployment_set",
    "context_pack",
    "bundle",
    "reviewer_role",
    "council",
    "orchestration",
    "soul",
    "project_config",
    "spec_file",
    "rule_file",
    "context_file",
    "progress_template",
)

# Every deployment state, in the order listings show them (deployment_state.py decides which).
DEPLOYMENT_STATES: tuple[str, ...] = (
    "current",
    "outdated",
    "modified",
    "conflict",
    "missing",
    "unknown-collection",
)
if TYPE_CHECKING:
    DeploymentStateName = Literal[
        "current", "outdated", "modified", "conflict", "missing", "unknown-collection"
    ]
else:

    def __getattr__(name: str) -> object:
        # Built on first use (the server's models): ``typing`` stays out of a cold CLI call.
        if name == "DeploymentStateName":
            from typing import Literal

            return Literal[DEPLOYMENT_STATES]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The sub-database holding the schema version and counters (neither a record nor an index).
META_DB = "meta"

# Every sub-database: name -> dupsort.  ``meta``, then the records (the contract in
# DESIGN.md plus ``collections``), then the derived indexes (rebuildable from the
# records, see verify.py).  Format v3: ``search-tokens`` holds bitmaps (it was a
# dupsort posting list in v2), ``search-pending`` their tail, ``artifact-ids`` /
# ``artifact-keys`` the integer ids.
DATABASES: dict[str, bool] = {
    META_DB: False,
    "projects": False,
    "artifacts": False,
    "deployments": False,
    "search-tokens": False,
    "sources": False,
    "collections": False,
    "search-pending": False,
    "artifact-ids": False,
    "artifact-keys": False,
    "deployments-by-artifact": True,
    "deployments-by-state": True,
}

# The sub-databases that hold records -> the name of their model in projcache.models.
# Only these are salvaged from a damaged file and validated record by record.
RECORD_DBS: dict[str, str] = {
    "projects": "Project",
    "artifacts": "Artifact",
    "deployments": "Deployment",
    "sources": "Fingerprint",
    "collections": "Collection",
}

# The derived indexes: every other sub-database, in DATABASES' order.
DERIVED_DBS: tuple[str, ...] = tuple(
    name for name in DATABASES if name != META_DB and name not in RECORD_DBS
)
