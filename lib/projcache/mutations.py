"""Consistent writes: each function changes a record *and* every index that depends on it.

All functions run inside a write transaction they are given, so a caller that
puts several of them in one transaction publishes all of it or none of it.
This is the only module that writes records, which keeps the invariants that
``verify`` checks in one place:

* every artifact has one integer id (``artifact-ids`` <-> ``artifact-keys``), and
  that id is listed in exactly the bitmaps its record implies
  (:func:`index_names`: its terms per field, its type, collection, tags,
  ``managed`` and name-length facets);
* every deployment's project exists, its ``state`` follows
  :func:`projcache.status.deployment_state`, and the two deployment indexes
  mirror the deployment records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import InvalidRecordError
from .repository import Repositories, facet_name, term_name
from .search import field_terms, name_bucket
from .status import deployment_state
from .storage import DATABASES, Txn

if TYPE_CHECKING:
    from .models import Artifact, Deployment, Project

__all__ = [
    "clear_all",
    "delete_artifact",
    "delete_deployment",
    "delete_project",
    "index_artifact",
    "index_names",
    "put_artifact",
    "put_deployment",
    "put_project",
    "unindex_artifact",
]


def index_names(artifact: Artifact) -> list[bytes]:
    """The names of every bitmap that lists ``artifact`` (what its record implies)."""
    names = [
        term_name(term, code)
        for code, terms in field_terms(artifact.model_dump()).items()
        for term in terms
    ]
    names.append(facet_name("type", artifact.type))
    names.append(facet_name("collection", artifact.collection))
    names.extend(facet_name("tag", tag) for tag in set(artifact.tags))
    if artifact.managed:
        names.append(facet_name("managed", "1"))
    names.append(facet_name("len", f"{name_bucket(artifact.name):02d}"))
    return names


def index_artifact(txn: Txn, repos: Repositories, artifact: Artifact) -> int:
    """Give the artifact an id and list it in its bitmaps (it must not be indexed yet)."""
    doc = repos.index.allocate(txn)
    repos.ids.put(txn, artifact.key, doc)
    repos.index.add(txn, doc, index_names(artifact))
    return doc


def unindex_artifact(txn: Txn, repos: Repositories, artifact: Artifact) -> None:
    """Unlist the artifact from its bitmaps and forget its id."""
    doc = repos.ids.id_of(txn, artifact.key)
    if doc is None:
        return
    repos.index.remove(txn, doc, index_names(artifact))
    repos.ids.delete(txn, artifact.key, doc)


def put_artifact(txn: Txn, repos: Repositories, artifact: Artifact) -> None:
    """Insert or replace an artifact, re-index it and re-state its deployments."""
    old = repos.artifacts.get(txn, artifact.key)
    if old is not None:
        unindex_artifact(txn, repos, old)
    repos.artifacts.put(txn, artifact)
    index_artifact(txn, repos, artifact)
    _restate_deployments_of(txn, repos, artifact.key, artifact)


def delete_artifact(txn: Txn, repos: Repositories, key: str) -> bool:
    """Remove an artifact and its index entries; its deployments become ``missing``."""
    old = repos.artifacts.get(txn, key)
    if old is None:
        return False
    unindex_artifact(txn, repos, old)
    repos.artifacts.delete(txn, key)
    _restate_deployments_of(txn, repos, key, None)
    return True


def _restate_deployments_of(
    txn: Txn, repos: Repositories, key: str, artifact: Artifact | None
) -> None:
    for project_id in repos.deployment_index.projects_of(txn, key):
        deployment = repos.deployments.get_for(txn, project_id, key)
        if deployment is None:
            continue  # index entry without a record: verify reports it
        state = deployment_state(deployment, artifact)
        if state != deployment.state:
            _store_deployment(txn, repos, deployment.model_copy(update={"state": state}))


def put_project(txn: Txn, repos: Repositories, project: Project) -> None:
    """Insert or replace a project record (its deployments are untouched)."""
    repos.projects.put(txn, project)


def delete_project(txn: Txn, repos: Repositories, project_id: str) -> bool:
    """Remove a project together with all its deployments and their index entries."""
    if repos.projects.get_payload(txn, project_id) is None:
        return False
    for deployment in list(_deployments_of(txn, repos, project_id)):
        delete_deployment(txn, repos, deployment.project_id, deployment.artifact_key)
    repos.projects.delete(txn, project_id)
    return True


def _deployments_of(txn: Txn, repos: Repositories, project_id: str) -> list[Deployment]:
    load = repos.deployments.load
    return [load(payload) for _key, payload in repos.deployments.scan_project(txn, project_id)]


def put_deployment(txn: Txn, repos: Repositories, deployment: Deployment) -> Deployment:
    """Insert or replace a deployment, computing its state; return the stored record.

    Raises:
        InvalidRecordError: the deployment's project is not in the cache.
    """
    if repos.projects.get_payload(txn, deployment.project_id) is None:
        raise InvalidRecordError(
            f"invalid Deployment: field 'project_id': project {deployment.project_id!r} "
            "is not in the cache"
        )
    artifact = repos.artifacts.get(txn, deployment.artifact_key)
    stored = deployment.model_copy(update={"state": deployment_state(deployment, artifact)})
    _store_deployment(txn, repos, stored)
    return stored


def _store_deployment(txn: Txn, repos: Repositories, deployment: Deployment) -> None:
    old = repos.deployments.get_for(txn, deployment.project_id, deployment.artifact_key)
    if old is not None:
        repos.deployment_index.remove(txn, old.project_id, old.artifact_key, old.state)
    repos.deployments.put(txn, deployment)
    repos.deployment_index.add(
        txn, deployment.project_id, deployment.artifact_key, deployment.state
    )


def delete_deployment(txn: Txn, repos: Repositories, project_id: str, artifact: str) -> bool:
    """Remove one deployment and its index entries; return whether it existed."""
    old = repos.deployments.get_for(txn, project_id, artifact)
    if old is None:
        return False
    repos.deployment_index.remove(txn, project_id, artifact, old.state)
    repos.deployments.delete_for(txn, project_id, artifact)
    return True


def clear_all(txn: Txn, dbs: dict[str, Any]) -> None:
    """Empty every sub-database except ``meta`` (schema version and creation time stay)."""
    for name in DATABASES:
        if name != "meta":
            txn.drop(dbs[name], delete=False)
