"""``GET /deployments``: deployments filtered by project, state, type, artifact and profile."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Query, Request, Response

from ...cache import ProjectCache
from ..bodies import ArtifactTypeName, DeploymentPage, DeploymentStateName
from .common import LIMIT, OFFSET, READ, answer, cache_of

__all__ = ["router"]

router = APIRouter()


@router.get(
    "/deployments", response_model=DeploymentPage, responses=READ, summary="List deployments"
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
    # A page of :meth:`ProjectCache.deployment_rows` (``list deployments --json``: all), counted
    # and sliced in one snapshot (:meth:`ProjectCache.deployment_page_json`): memory is the page.
    return answer(
        request,
        cache,
        lambda project_id: cache.deployment_page_json(
            project_id,
            state,
            type=type,
            artifact=artifact,
            profile=profile,
            limit=limit,
            offset=offset,
        ),
        project,
    )
