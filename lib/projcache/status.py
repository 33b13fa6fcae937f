"""The one rule that gives a deployment its state.

Precedence, first match wins:

1. ``missing``  -- the artifact is gone from the cache's collection, or the
   deployed files are gone from the project;
2. ``modified`` -- the files in the project differ from what was deployed
   (local hash known and different from the deployed hash);
3. ``outdated`` -- the collection moved past the deployed content.  When both
   sides carry a version that reads as semver, versions decide (``v1.0.0``
   equals ``1.0.0``; a deployed version newer than the collection's is not
   outdated).  Otherwise the artifact's current hash differing from the
   deployed hash means outdated;
4. ``current``  -- otherwise.

``modified`` wins over ``outdated`` because updating such a deployment would
overwrite the user's local changes: that is the thing to look at first.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    from .models import Artifact, Deployment, DeploymentState

__all__ = ["compare_versions", "deployment_state", "parse_semver"]

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


def deployment_state(deployment: Deployment, artifact: Optional[Artifact]) -> DeploymentState:
    """Return the state of ``deployment`` given its artifact as cached now (or ``None``)."""
    if artifact is None or not deployment.files_present:
        return "missing"
    deployed = deployment.content_hash
    local = deployment.local_hash
    if deployed is not None and local is not None and local != deployed:
        return "modified"
    available = artifact.resolved_version or artifact.version
    if deployment.version and available:
        order = compare_versions(available, deployment.version)
        if order is not None:
            return "outdated" if order > 0 else "current"
    if deployed is None:
        return "current"  # nothing recorded to compare against
    if artifact.content_hash is not None and artifact.content_hash != deployed:
        return "outdated"
    return "current"
