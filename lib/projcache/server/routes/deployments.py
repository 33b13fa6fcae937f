"""``GET /deployments``: deployments filtered by project, state, type, artifact and profile."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from ..bodies import ArtifactTypeName, DeploymentPage, DeploymentStateName
from .common import (
    CONDITIONAL,
    LIMIT,
    NOT_FOUND,
    OFFSET,
    cache_of,
    conditional,
    etag_of,
    json_response,
    project_id,
)

if TYPE_CHECKING:
    from ...cache import ProjectCache

__all__ = ["router"]

router = APIRouter()


@router.get(
    "/deployments",
    response_model=DeploymentPage,
    responses={**NOT_FOUND, **CONDITIONAL},
    summary="List deployments",
)
def list_deployments(
    request: Request,
    project: Optional[str] = Query(None, max_length=4096, description="Id, name or path."),
    state: Optional[DeploymentStateName] = Query(None, description="e.g. outdated"),
    type: Optional[ArtifactTypeName] = Query(None),
    artifact: Optional[str] = Query(None, max_length=600, description="An artifact key."),
    profile: Optional[str] = Query(
        None,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="A SkillMeat deployment profile, e.g. claude_code or codex.",
    ),
    limit: int = LIMIT,
    offset: int = OFFSET,
    cache: ProjectCache = Depends(cache_of),
) -> Response:
    # A page of :meth:`ProjectCache.deployment_rows` (``list deployments --json``: all).
    etag = etag_of(cache)
    project = project_id(cache, project)
    not_modified = conditional(request, etag)
    if not_modified is not None:
        return not_modified
    rows = cache.deployment_rows(project, state, type=type, artifact=artifact, profile=profile)
    page = rows[offset : offset + limit]
    body = orjson.dumps({"items": page, "total": len(rows), "limit": limit, "offset": offset})
    return json_response(body, etag)
