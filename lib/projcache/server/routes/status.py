"""``GET /status``: what the cache holds, how fresh it is, and what the server is doing."""

from __future__ import annotations

from typing import Optional

import orjson
from fastapi import APIRouter, Depends, Response

from ...cache import ProjectCache
from ..bodies import StatusBody
from ..jobs import RefreshJobs
from ..refresher import BackgroundRefresher
from .common import cache_of, jobs_of, json_response, refresher_of

__all__ = ["router"]

router = APIRouter()


@router.get("/status", response_model=StatusBody, summary="What the cache holds")
def status(
    cache: ProjectCache = Depends(cache_of),
    jobs: RefreshJobs = Depends(jobs_of),
    refresher: BackgroundRefresher = Depends(refresher_of),
) -> Response:
    # :meth:`ProjectCache.status_view` (what ``projcache show --json`` prints) plus the background
    # refresher's state, which only a server has.
    data = cache.status_view()
    data["refresher"] = {**refresher.state(), "job": _job_id(jobs)}
    return json_response(orjson.dumps(data))


def _job_id(jobs: RefreshJobs) -> Optional[str]:
    running = jobs.running()
    return None if running is None else running.id
