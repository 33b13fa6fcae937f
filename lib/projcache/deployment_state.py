"""The one rule that gives a deployment its state.

Three hash facts decide it, as in SkillMeat's ``sync-check``
(``skillmeat/core/sync.py``, ``SyncManager.check_drift``): the hash recorded
when the artifact was deployed (*deployed*), the hash of the files in the
project now (*local*) and the artifact's hash in the collection now
(*collection*).  The project copy *changed* when local differs from deployed;
the collection *moved on* when its version is newer (both sides semver) or,
without comparable versions, when its hash differs from deployed.

Precedence, first match wins:

1. ``unknown-collection`` -- the artifact is not cached and neither is any
   artifact or record of its collection: the deployment comes from a
   collection this cache was not given, so nothing can be said about it (it
   is *not* a removal);
2. ``missing``  -- the artifact is gone from its (known) collection, or the
   deployed files are gone from the project;
3. ``conflict`` -- the project copy changed *and* the collection moved on:
   updating would overwrite local changes, keeping them misses the update;
4. ``modified`` -- only the project copy changed;
5. ``outdated`` -- only the collection moved on.  When both sides carry a
   version that reads as semver, versions decide (``v1.0.0`` equals
   ``1.0.0``; a deployed version newer than the collection's is not
   outdated).  Otherwise the artifact's current hash differing from the
   deployed hash means outdated;
6. ``current``  -- otherwise.

Differences from SkillMeat 0.74.0, on purpose:

* **Deleted deployed files are** ``missing``.  SkillMeat's ``sync-check``
  takes a project copy that is gone as unchanged (``current_project_sha``
  defaults to the deployed hash), so it reports nothing, and ``status``
  says *Synced*.  A deployment whose files are gone is worth seeing, so
  projcache keeps ``missing``.
* An artifact removed from its collection is ``missing`` here, ``removed`` in
  ``sync-check``.
* ``sync-check`` checks every deployment against one collection (``-c`` or
  the first record's ``from_collection``), so a deployment from another
  collection shows as ``removed`` there; here it is checked against its own
  ``from_collection``, or is ``unknown-collection`` when that one was not given.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    from .models import Artifact, Deployment, DeploymentState

__all__ = ["collection_moved_on", "compare_versions", "deployment_state", "parse_semver"]

# Lenient semver: optional "v", one to three numeric parts, pre-release, build.
_SEMVER = re.compile(
    r"^[vV]?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)

Version = tuple[int, int, int, tuple[Union[int, str], ...]]


def parse_semver(text: str) -> Optional[Version]:
    """Parse ``text`` as a (lenient) semantic version, or return ``None``.

    ``v1.2`` reads as ``1.2.0``; build metadata (``+…``) is ignored, as semver says.
    """
    match = _SEMVER.match(text.strip())
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    identifiers: tuple[Union[int, str], ...] = ()
    if pre:
        identifiers = tuple(int(p) if p.isdigit() else p for p in pre.split("."))
    return int(major), int(minor or 0), int(patch or 0), identifiers


def _pre_key(identifiers: tuple[Union[int, str], ...]) -> tuple[tuple[int, int, str], ...]:
    # Numeric identifiers sort before alphanumeric ones, numerically among themselves.
    return tuple((0, i, "") if isinstance(i, int) else (1, 0, i) for i in identifiers)


def compare_versions(left: str, right: str) -> Optional[int]:
    """Compare two versions by semver precedence: -1, 0 or 1; ``None`` if either is not semver."""
    a, b = parse_semver(left), parse_semver(right)
    if a is None or b is None:
        return None
    if a[:3] != b[:3]:
        return -1 if a[:3] < b[:3] else 1
    # A release outranks any pre-release of the same version.
    if not a[3] or not b[3]:
        return (not a[3]) - (not b[3])
    ka, kb = _pre_key(a[3]), _pre_key(b[3])
    return (ka > kb) - (ka < kb)


def collection_moved_on(deployment: Deployment, artifact: Artifact) -> bool:
    """Tell whether the collection's copy of ``artifact`` is past what was deployed."""
    available = artifact.resolved_version or artifact.version
    if deployment.version and available:
        order = compare_versions(available, deployment.version)
        if order is not None:
            return order > 0
    deployed = deployment.content_hash
    if deployed is None:
        return False  # nothing recorded to compare against
    return artifact.content_hash is not None and artifact.content_hash != deployed


def deployment_state(
    deployment: Deployment, artifact: Optional[Artifact], *, collection_known: bool = True
) -> DeploymentState:
    """Return the state of ``deployment`` given its artifact as cached now (or ``None``).

    ``collection_known`` tells whether the cache holds the collection of the
    deployment's artifact key at all (see the module docstring); it only
    matters when ``artifact`` is ``None``.
    """
    if artifact is None:
        return "missing" if collection_known else "unknown-collection"
    if not deployment.files_present:
        return "missing"
    deployed = deployment.content_hash
    local = deployment.local_hash
    changed_here = deployed is not None and local is not None and local != deployed
    moved_on = collection_moved_on(deployment, artifact)
    if changed_here and moved_on:
        return "conflict"
    if changed_here:
        return "modified"
    return "outdated" if moved_on else "current"
