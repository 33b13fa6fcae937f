"""``GET /search``: a page of ranked hits, as ``projcache search --json`` prints it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from fastapi import APIRouter, Depends, Query, Request, Response

from ..bodies import ArtifactTypeName, SearchPage
from .common import (
    CONDITIONAL,
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
    "/search",
    response_model=SearchPage,
    responses={**NOT_FOUND, **CONDITIONAL},
    summary="Find artifacts by words",
)
def search(
    request: Request,
    q: str = Query(..., min_length=1, max_length=500, description="Words; all must match."),
    type: Optional[ArtifactTypeName] = Query(None),
    collection: Optional[str] = Query(None, max_length=500),
    tag: Optional[str] = Query(None, max_length=500),
    project: Optional[str] = Query(None, max_length=4096),
    limit: int = Query(20, ge=1, le=200, description="Hits per page."),
    offset: int = OFFSET,
    cache: ProjectCache = Depends(cache_of),
) -> Response:
    # :meth:`ProjectCache.search_view_json`.
    etag = etag_of(cache)
    project = project_id(cache, project)
    not_modified = conditional(request, etag)
    if not_modified is not None:
        return not_modified
    body = cache.search_view_json(q, type, project, limit, offset, collection=collection, tag=tag)
    return json_response(body, etag)
