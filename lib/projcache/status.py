"""The one rule that gives a deployment its state.

Precedence, first match wins:

1. ``missing``  -- the artifact is gone from the cache's collection, or the
   deployed files are gone from the project;
2. ``modified`` -- the files in the project differ from what was deployed
   (local hash known and different from the deployed hash);
3. ``outdated`` -- the collection moved past the deployed content (the
   artifact's current hash differs from the deployed hash);
4. ``current``  -- otherwise.

``modified`` wins over ``outdated`` because updating such a deployment would
overwrite the user's local changes: that is the thing to look at first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .models import Artifact, Deployment, DeploymentState

__all__ = ["deployment_state"]


def deployment_state(deployment: Deployment, artifact: Optional[Artifact]) -> DeploymentState:
    """Return the state of ``deployment`` given its artifact as cached now (or ``None``)."""
    if artifact is None or not deployment.files_present:
        return "missing"
    deployed = deployment.content_hash
    if deployed is None:
        return "current"  # nothing recorded to compare against
    if deployment.local_hash is not None and deployment.local_hash != deployed:
        return "modified"
    if artifact.content_hash is not None and artifact.content_hash != deployed:
        return "outdated"
    return "current"
