"""``GET /projects`` and ``GET /projects/{project}``: projects with their deployment counts."""

from __future__ import annotations

import zlib
from typing import Optional

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response

from ...cache import ProjectCache
from ..bodies import ProjectDetail, ProjectPage
from .common import (
    CONDITIONAL,
    LIMIT,
    OFFSET,
    READ,
    answer,
    cache_of,
    conditional,
    json_response,
    page_of,
)

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
    body = page_of(rows, limit, offset)
    # Staleness moves with the clock, not only with commits: the body is in the tag.
    etag = f'"{generation}-{zlib.crc32(body):08x}"'
    return conditional(request, etag) or json_response(body, etag)


@router.get(
    "/projects/{project}",
    response_model=ProjectDetail,
    responses=READ,
    summary="One project and its deployments",
)
def get_project(
    request: Request,
    project: str = Path(..., max_length=4096, description="The project's id or name."),
    cache: ProjectCache = Depends(cache_of),
) -> Response:
    # :meth:`ProjectCache.project_view`.
    return answer(request, cache, lambda id_: orjson.dumps(cache.project_view(str(id_))), project)
