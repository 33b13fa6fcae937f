"""The JSON endpoints under ``/api/v1/cache/``, one module per resource.

============================  =====================================================
``GET /status``               :mod:`.status`
``GET /projects[/{id}]``      :mod:`.projects`
``GET /artifacts[/{key}]``    :mod:`.artifacts`
``GET /deployments``          :mod:`.deployments`
``GET /search``               :mod:`.search`
``POST /refresh``, ``GET /refresh/{job}``, ``POST /invalidate``  :mod:`.refresh`
============================  =====================================================

Each handler asks the facade for its answer (the JSON views of
:mod:`projcache.views`, the same the CLI prints) and gets the open cache, the
refresh jobs and the background refresher from ``request.app.state``
(:mod:`.common`).  Handlers carry comments, not docstrings: FastAPI would
publish a docstring as the operation's description, changing the schema.

Lists carry an ETag made from the cache's generation, taken before the data: a
request whose ``If-None-Match`` still matches gets 304 before the list is read.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import artifacts, deployments, projects, refresh, search, status
from .common import ERRORS

__all__ = ["build_router"]


def build_router() -> APIRouter:
    """The API's routes; the app sets ``state.cache``, ``state.jobs`` and ``state.refresher``."""
    router = APIRouter(responses=ERRORS)
    # In the order of the OpenAPI schema's paths.
    for module in (status, projects, artifacts, deployments, search, refresh):
        router.include_router(module.router)
    return router
