"""Request and response bodies of the HTTP API, as they appear in its OpenAPI schema.

The list endpoints answer with the stored JSON bytes of the records (no
models are built on that path); these models describe those bytes, so a
client, the OpenAPI schema and the schema fuzzer all agree on the shapes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..codec import TYPE_PATTERN
from ..models import Artifact, Deployment, Project, SourceError
from ..vocabulary import DeploymentStateName as DeploymentStates

# The stored records' fields, repeated in DeploymentItem and ProjectItem (tests keep them
# in step).
DEPLOYMENT_FIELDS = tuple(Deployment.model_fields)
PROJECT_FIELDS = tuple(Project.model_fields)

__all__ = [
    "ArtifactDetail",
    "ArtifactPage",
    "ArtifactTypeName",
    "DeploymentItem",
    "DeploymentPage",
    "DeploymentStateName",
    "ErrorBody",
    "InvalidateRequest",
    "InvalidateResult",
    "JobProgress",
    "ProjectDetail",
    "ProjectItem",
    "ProjectPage",
    "RefreshJob",
    "RefreshRequest",
    "SearchHitItem",
    "SearchPage",
    "StatusBody",
    "UnitError",
]

# Both derive from projcache.codec (the one list of states; any type name it accepts).
DeploymentStateName = DeploymentStates
ArtifactTypeName = Annotated[str, StringConstraints(pattern=TYPE_PATTERN)]


class ErrorBody(BaseModel):
    """Every error answer: a machine-readable code, one sentence, and what to do."""

    error: str = Field(description="The error class, e.g. `ProjectNotFound` or `BadRequest`.")
    message: str
    hint: Optional[str] = None
    detail: Optional[List[Dict[str, Any]]] = Field(
        default=None, description="Per-parameter problems of a 422 answer."
    )


class ProjectItem(BaseModel):
    """A project (the stored record's fields) with its deployment counts and freshness.

    The fields of :class:`projcache.Project` (``id`` … ``errors``) plus ``deployments``,
    ``states``, ``is_stale`` and ``expires_at``; a test keeps them in step.
    """

    id: str
    name: str
    path: str
    description: str = ""
    managed: bool = True
    refreshed_at: Optional[datetime] = None
    stale: bool = Field(default=False, description="Invalidated (marked stale) explicitly.")
    errors: List[SourceError] = Field(default_factory=list)
    deployments: int = Field(description="How many artifacts are deployed in it.")
    states: Dict[str, int] = Field(description="Deployments per state.")
    is_stale: bool = Field(description="Invalidated, never refreshed, or older than the TTL.")
    expires_at: Optional[datetime] = Field(
        description="When it turns stale by age (refreshed_at + ttl); null: never refreshed."
    )


class ProjectPage(BaseModel):
    """One page of projects."""

    items: List[ProjectItem]
    total: int
    limit: int
    offset: int


class DeploymentItem(BaseModel):
    """A deployment as ``projcache list deployments --json`` shows it.

    The stored record's fields (see :class:`projcache.Deployment`) plus
    top-level ``project``, ``artifact``, ``name``, ``type`` and ``collection``.
    """

    project: str
    artifact: str
    name: str
    type: ArtifactTypeName
    collection: str
    project_id: str
    artifact_key: str
    profile: str = "claude_code"
    profile_root: str = ".claude"
    platform: Optional[str] = None
    deployed_at: Optional[datetime] = None
    artifact_path: str = ""
    content_hash: Optional[str] = None
    local_hash: Optional[str] = None
    files_present: bool = True
    version: Optional[str] = None
    state: DeploymentStateName


class ProjectDetail(ProjectItem):
    """One project and all its deployments."""

    deployment_list: List[DeploymentItem]


class ArtifactPage(BaseModel):
    """One page of artifacts (the stored records)."""

    items: List[Artifact]
    total: int
    limit: int
    offset: int


class ArtifactDetail(Artifact):
    """One artifact and the projects it is deployed in."""

    deployments: List[DeploymentItem]


class DeploymentPage(BaseModel):
    """One page of deployments."""

    items: List[DeploymentItem]
    total: int
    limit: int
    offset: int


class SearchHitItem(Artifact):
    """A search hit: the artifact's fields plus its score (as ``projcache search --json``)."""

    score: float


class SearchPage(BaseModel):
    """One page of search hits, best first.

    ``total`` counts the artifacts matching every word; the last ``partial``
    items of the page match only some of the words (they fill a page the
    exact matches leave short).
    """

    query: str
    items: List[SearchHitItem]
    total: int
    partial: int = 0
    limit: int
    offset: int


class UnitError(BaseModel):
    """A source file that a collection or project could not read at its last refresh."""

    kind: Literal["collection", "project"]
    unit: str = Field(description="The collection's name or the project's id.")
    path: str
    message: str


class StatusBody(BaseModel):
    """What the cache holds, how fresh it is, and what the server is doing."""

    version: str
    cache_dir: str
    schema_version: int
    generation: str = Field(description="Changes whenever a write commits (the lists' ETag).")
    counts: Dict[str, int] = Field(description="Records per kind (artifacts, projects, ...).")
    stale_projects: int
    stale_collections: int
    ttl_seconds: float
    newest_refresh: Optional[datetime]
    oldest_refresh: Optional[datetime]
    file_bytes: int
    used_bytes: int
    map_size: int
    errors: List[UnitError]
    refresher: Dict[str, Any] = Field(description="The background refresher's state.")
    read_only: bool


class RefreshRequest(BaseModel):
    """What to refresh: one cached project (id, name or path), one cached collection, or all."""

    model_config = ConfigDict(extra="forbid")

    project: Optional[str] = Field(default=None, min_length=1, max_length=4096)
    collection: Optional[str] = Field(default=None, min_length=1, max_length=4096)
    full: bool = Field(default=False, description="Re-read every source, changed or not.")


class JobProgress(BaseModel):
    """How far a refresh job has come, in collections and projects."""

    done: int
    total: int
    current: Optional[str] = None


class RefreshJob(BaseModel):
    """A refresh job: queued, running, done or failed, with its report when finished."""

    id: str
    state: Literal["queued", "running", "done", "failed"]
    request: RefreshRequest
    created_at: datetime
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    progress: JobProgress
    report: Optional[Dict[str, Any]] = None
    error: Optional[ErrorBody] = None


class InvalidateRequest(BaseModel):
    """What to mark stale: one project (id, name or path), one collection, or everything."""

    model_config = ConfigDict(extra="forbid")

    project: Optional[str] = Field(default=None, min_length=1, max_length=4096)
    collection: Optional[str] = Field(default=None, min_length=1, max_length=4096)


class InvalidateResult(BaseModel):
    """How many projects and collections were marked stale."""

    invalidated: int
