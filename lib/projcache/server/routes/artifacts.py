"""``GET /artifacts`` and ``GET /artifacts/{key}``: stored records, and where one is deployed."""

from __future__ import annotations

from typing import Optional

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response

from ...cache import ProjectCache
from ...errors import ArtifactNotFound, InvalidArgumentError, InvalidRecordError
from ..bodies import ArtifactDetail, ArtifactPage, ArtifactTypeName, DeploymentStateName
from .common import LIMIT, OFFSET, READ, answer, cache_of, conditional, etag_of, json_response

__all__ = ["router"]

router = APIRouter()


@router.get("/artifacts", response_model=ArtifactPage, responses=READ, summary="List artifacts")
def list_artifacts(
    request: Request,
    type: Optional[ArtifactTypeName] = Query(None, description="Only this artifact type."),
    collection: Optional[str] = Query(None, max_length=500),
    tag: Optional[str] = Query(None, max_length=500),
    project: Optional[str] = Query(
        None, max_length=4096, description="Only artifacts deployed here (id, name or path)."
    ),
    state: Optional[DeploymentStateName] = Query(
        None, description="Only artifacts with a deployment in this state."
    ),
    limit: int = LIMIT,
    offset: int = OFFSET,
    cache: ProjectCache = Depends(cache_of),
) -> Response:
    # A page of the stored records (``list artifacts --json`` prints them all): counted and
    # sliced in one snapshot, ended before the answer is sent; memory is the page.
    def body(project: Optional[str]) -> bytes:
        return cache.artifact_listing_page_json(
            type, collection, tag, project=project, state=state, limit=limit, offset=offset
        )

    return answer(request, cache, body, project)


@router.get(
    "/artifacts/{key:path}",
    response_model=ArtifactDetail,
    responses=READ,
    summary="One artifact and where it is deployed",
)
def get_artifact(
    request: Request,
    key: str = Path(..., max_length=600, description="`<collection>/<type>/<name>`."),
    cache: ProjectCache = Depends(cache_of),
) -> Response:
    # :meth:`ProjectCache.artifact_view`.
    etag = etag_of(cache)
    try:
        record = cache.artifact_view(key)
    except (InvalidArgumentError, InvalidRecordError):  # KeyTooLongError is the latter
        record = None  # a malformed key names no artifact: 404, like any unknown key
    if record is None:
        raise ArtifactNotFound(f"no artifact {key!r} in the cache")
    return conditional(request, etag) or json_response(orjson.dumps(record), etag)
