"""What every endpoint module shares: its dependencies, responses and conditional GETs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import orjson
from fastapi import Query, Request, Response

from ..bodies import ErrorBody

if TYPE_CHECKING:
    from ...cache import ProjectCache
    from ..jobs import RefreshJobs
    from ..refresher import BackgroundRefresher

__all__ = [
    "CONDITIONAL",
    "ERRORS",
    "LIMIT",
    "NOT_FOUND",
    "OFFSET",
    "QUEUE_FULL",
    "READ",
    "WRITE",
    "answer",
    "cache_of",
    "conditional",
    "etag_of",
    "jobs_of",
    "json_response",
    "page_of",
    "project_id",
    "refresher_of",
]

ERRORS: dict[int | str, dict[str, Any]] = {
    421: {"model": ErrorBody, "description": "The Host header names another server."},
    422: {"model": ErrorBody, "description": "Invalid parameters."},
}
# What the TrustBoundary middleware answers a request that changes the cache.
WRITE: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorBody, "description": "Sent by another site (Origin, Sec-Fetch-Site)."},
    413: {"model": ErrorBody, "description": "The body is larger than the limit."},
    415: {"model": ErrorBody, "description": "Not sent as Content-Type: application/json."},
}
QUEUE_FULL: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorBody,
        "description": "Too many different refresh jobs are waiting; see Retry-After.",
    },
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such project, artifact, collection or job."},
}
CONDITIONAL: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: the If-None-Match ETag is still current."},
}
# A read that may name something unknown (404) and answers If-None-Match (304).
READ = {**NOT_FOUND, **CONDITIONAL}
LIMIT = Query(50, ge=1, le=1000, description="Page size.")
OFFSET = Query(0, ge=0, le=10**9, description="Items to skip.")
_JSON = "application/json"


def cache_of(request: Request) -> ProjectCache:
    """The open cache the app serves (a FastAPI dependency)."""
    cache: ProjectCache = request.app.state.cache
    return cache


def jobs_of(request: Request) -> RefreshJobs:
    """The app's refresh job queue (a FastAPI dependency)."""
    jobs: RefreshJobs = request.app.state.jobs
    return jobs


def refresher_of(request: Request) -> BackgroundRefresher:
    """The app's background refresher (a FastAPI dependency)."""
    refresher: BackgroundRefresher = request.app.state.refresher
    return refresher


def project_id(cache: ProjectCache, ref: Optional[str]) -> Optional[str]:
    """The id of the project ``ref`` names; looked up before any 304, so unknown is 404."""
    return None if ref is None else cache.find_project(ref).id


def _matches(request: Request, etag: str) -> bool:
    sent = request.headers.get("if-none-match")
    if not sent:
        return False
    tags = [t.strip() for t in sent.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


def conditional(request: Request, etag: str) -> Optional[Response]:
    """The 304 answer when ``If-None-Match`` still matches ``etag``, else ``None``."""
    if not _matches(request, etag):
        return None
    return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "no-cache"})


def json_response(body: bytes, etag: Optional[str] = None, status: int = 200) -> Response:
    """A JSON answer, never cached without revalidation, with ``etag`` when given."""
    headers = {"Cache-Control": "no-cache"}
    if etag is not None:
        headers["ETag"] = etag
    return Response(body, status_code=status, media_type=_JSON, headers=headers)


def etag_of(cache: ProjectCache) -> str:
    """The ETag of everything the cache holds now: its generation."""
    return f'"{cache.generation()}"'


def answer(
    request: Request,
    cache: ProjectCache,
    build: Callable[[Optional[str]], bytes],
    project: Optional[str] = None,
) -> Response:
    """A conditional read: the JSON ``build(project id)`` makes, with the cache's ETag.

    The ETag is taken first (never newer than the data read after it); an
    unknown ``project`` is 404 whatever the ETag (looked up before the 304);
    while ``If-None-Match`` still matches, nothing is built and the answer is 304.
    """
    etag = etag_of(cache)
    found = project_id(cache, project)
    return conditional(request, etag) or json_response(build(found), etag)


def page_of(rows: list[Any], limit: int, offset: int) -> bytes:
    """``{"items", "total", "limit", "offset"}``: the page of ``rows`` from ``offset``."""
    page = rows[offset : offset + limit]
    return orjson.dumps({"items": page, "total": len(rows), "limit": limit, "offset": offset})
