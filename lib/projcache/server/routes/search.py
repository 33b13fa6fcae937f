"""``GET /search``: a page of ranked hits, as ``projcache search --json`` prints it."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Query, Request, Response

from ...cache import ProjectCache
from ..bodies import ArtifactTypeName, SearchPage
from .common import OFFSET, READ, answer, cache_of

__all__ = ["router"]

router = APIRouter()


@router.get("/search", response_model=SearchPage, responses=READ, summary="Find artifacts by words")
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
    return answer(
        request,
        cache,
        lambda project_id: cache.search_view_json(
            q, type, project_id, limit, offset, collection=collection, tag=tag
        ),
        project,
    )
