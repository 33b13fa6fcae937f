"""``GET /projects`` and ``GET /projects/{project}``: projects with their deployment counts."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Optional

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response

from ..bodies import ProjectDetail, ProjectPage
from .common import CONDITIONAL, LIMIT, NOT_FOUND, OFFSET, cache_of, conditional, etag_of
from .common import json_response as _json

if TYPE_CHECKING:
    from ...cache import ProjectCache

__all__ = ["router"]

router = APIRouter()


@router.get("/projects", response_model=ProjectPage, responses=CONDITIONAL, summary="List projects")
def list_projects(
    request: Request,
    name: Optional[str] = Query(None, max_length=500, description="Name contains this."),
    stale: Optional[bool] = Query(None, description="Only stale (or only fresh) projects."),
    errors: Optional[bool] = Query(None, description="Only projects with (or without) errors."),
    limit: int = LIMIT,
    offset: int = OFFSET,
    cache: ProjectCache = Depends(cache_of),
) -> Response:
    # A page of :meth:`ProjectCache.project_rows` (``list projects --json`` prints them all).
    generation = cache.generation()
    rows = cache.project_rows(name=name, stale=stale, errors=errors)
    page = rows[offset : offset + limit]
    body = orjson.dumps({"items": page, "total": len(rows), "limit": limit, "offset": offset})
    # Staleness moves with the clock, not only with commits: the body is in the tag.
    etag = f'"{generation}-{zlib.crc32(body):08x}"'
    return conditional(request, etag) or _json(body, etag)


@router.get(
    "/projects/{project}",
    response_model=ProjectDetail,
    responses={**NOT_FOUND, **CONDITIONAL},
    summary="One project and its deployments",
)
def get_project(
    request: Request,
    project: str = Path(..., max_length=4096, description="The project's id or name."),
    cache: ProjectCache = Depends(cache_of),
) -> Response:
    # :meth:`ProjectCache.project_view`.
    etag = etag_of(cache)
    found = cache.find_project(project)  # an unknown one is 404 whatever the ETag
    return conditional(request, etag) or _json(orjson.dumps(cache.project_view(found.id)), etag)
