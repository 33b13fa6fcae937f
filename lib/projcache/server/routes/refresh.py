"""``POST /refresh``, ``GET /refresh/{job}`` and ``POST /invalidate``: the writes."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Path, Response

from ...cache import ProjectCache
from ..bodies import InvalidateRequest, InvalidateResult, RefreshJob, RefreshRequest
from ..jobs import RefreshJobs
from .common import NOT_FOUND, QUEUE_FULL, WRITE, cache_of, jobs_of, json_response

__all__ = ["router"]

router = APIRouter()


@router.post(
    "/refresh",
    status_code=202,
    response_model=RefreshJob,
    responses={**NOT_FOUND, **WRITE, **QUEUE_FULL},
    summary="Start a refresh job",
)
def start_refresh(
    body: Optional[RefreshRequest] = None, jobs: RefreshJobs = Depends(jobs_of)
) -> Response:
    # Queue a refresh job (or join the same one already waiting); 202 with its Location.
    job = jobs.submit(body or RefreshRequest())
    headers = {"Location": f"refresh/{job.id}"}
    return Response(job.model_dump_json(), 202, headers=headers, media_type="application/json")


@router.get(
    "/refresh/{job}",
    response_model=RefreshJob,
    responses=NOT_FOUND,
    summary="A refresh job's progress",
)
def refresh_job(
    job: str = Path(..., max_length=100), jobs: RefreshJobs = Depends(jobs_of)
) -> Response:
    # One job's state, progress and (when finished) report.
    return json_response(jobs.get(job).model_dump_json().encode())


@router.post(
    "/invalidate",
    response_model=InvalidateResult,
    responses={**NOT_FOUND, **WRITE},
    summary="Mark a project, a collection or everything stale",
)
def invalidate(
    body: Optional[InvalidateRequest] = None, cache: ProjectCache = Depends(cache_of)
) -> InvalidateResult:
    # Mark stale what the body names (everything without one); data stays readable.
    body = body or InvalidateRequest()
    return InvalidateResult(invalidated=cache.invalidate(body.project, body.collection))
