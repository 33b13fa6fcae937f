"""The JSON endpoints under ``/api/v1/cache/``.

Lists answer with the stored JSON bytes, spliced into a page envelope (no
models are built), and carry an ETag made from the cache's generation (see
:meth:`ProjectCache.generation`): a request whose ``If-None-Match`` still
matches gets 304 before anything is read.  The generation is taken before the
data, so an ETag is never newer than the body it was sent with.
"""

from __future__ import annotations

import zlib
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Optional

import orjson
from fastapi import APIRouter, Path, Query, Request, Response

from .. import __version__
from ..errors import ArtifactNotFound, InvalidArgumentError, InvalidRecordError
from ..models import utcnow
from ..streams import deployment_view
from .bodies import (
    ArtifactDetail,
    ArtifactPage,
    ArtifactTypeName,
    DeploymentPage,
    DeploymentStateName,
    ErrorBody,
    InvalidateRequest,
    InvalidateResult,
    ProjectDetail,
    ProjectPage,
    RefreshJob,
    RefreshRequest,
    SearchPage,
    StatusBody,
    UnitError,
)

if TYPE_CHECKING:
    from ..cache import ProjectCache
    from ..models import Project
    from .jobs import RefreshJobs
    from .refresher import BackgroundRefresher

__all__ = ["build_router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    421: {"model": ErrorBody, "description": "The Host header names another server."},
    422: {"model": ErrorBody, "description": "Invalid parameters."},
}
# What the TrustBoundary middleware answers a request that changes the cache.
_WRITE: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorBody, "description": "Sent by another site (Origin, Sec-Fetch-Site)."},
    413: {"model": ErrorBody, "description": "The body is larger than the limit."},
    415: {"model": ErrorBody, "description": "Not sent as Content-Type: application/json."},
}
_QUEUE_FULL: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorBody,
        "description": "Too many different refresh jobs are waiting; see Retry-After.",
    },
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such project, artifact, collection or job."},
}
_CONDITIONAL: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: the If-None-Match ETag is still current."},
}
_LIMIT = Query(50, ge=1, le=1000, description="Page size.")
_OFFSET = Query(0, ge=0, le=10**9, description="Items to skip.")
_JSON = "application/json"


def _envelope(items: list[bytes], **fields: Any) -> bytes:
    """``{"items": [...], **fields}`` with the items spliced in as they are stored."""
    tail = orjson.dumps(fields)
    return b'{"items":[' + b",".join(items) + b"]," + tail[1:]


def _matches(request: Request, etag: str) -> bool:
    sent = request.headers.get("if-none-match")
    if not sent:
        return False
    tags = [t.strip() for t in sent.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


def _not_modified(etag: str) -> Response:
    return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "no-cache"})


def _json(body: bytes, etag: Optional[str] = None, status: int = 200) -> Response:
    headers = {"Cache-Control": "no-cache"}
    if etag is not None:
        headers["ETag"] = etag
    return Response(body, status_code=status, media_type=_JSON, headers=headers)


def build_router(
    cache: ProjectCache, jobs: RefreshJobs, refresher: BackgroundRefresher
) -> APIRouter:
    """The API's routes over one open cache."""
    router = APIRouter(responses=_ERRORS)
    ttl = cache.settings.ttl_seconds

    def etag_of() -> str:
        return f'"{cache.generation()}"'

    def project_id(ref: Optional[str]) -> Optional[str]:
        """The id of the project ``ref`` names; looked up before any 304, so unknown is 404."""
        return None if ref is None else cache.find_project(ref).id

    def project_items(projects: list[Project]) -> list[dict[str, Any]]:
        now = utcnow()
        out = []
        for project in projects:
            states = Counter(
                orjson.loads(p)["state"] for p in cache.list_deployments_json(project.id)
            )
            data = project.model_dump(mode="json")
            data["deployments"] = sum(states.values())
            data["states"] = dict(states)
            data["is_stale"] = project.is_stale(ttl, now)
            data["expires_at"] = None
            if project.refreshed_at is not None:
                expires = project.refreshed_at + timedelta(seconds=ttl)
                data["expires_at"] = expires.isoformat().replace("+00:00", "Z")
            out.append(data)
        return out

    @router.get("/status", response_model=StatusBody, summary="What the cache holds")
    def status() -> Response:
        stats = cache.stats()
        collections = cache.list_collections()
        errors = [
            UnitError(kind="collection", unit=c.name, path=e.path, message=e.message)
            for c in collections
            for e in c.errors
        ]
        projects = cache.list_projects()
        errors += [
            UnitError(kind="project", unit=p.id, path=e.path, message=e.message)
            for p in projects
            for e in p.errors
        ]
        body = StatusBody(
            version=__version__,
            cache_dir=str(cache.path),
            schema_version=stats.schema_version,
            generation=cache.generation(),
            counts=stats.counts,
            stale_projects=stats.stale_projects,
            stale_collections=sum(1 for c in collections if c.is_stale(ttl)),
            ttl_seconds=ttl,
            newest_refresh=stats.newest_refresh,
            oldest_refresh=stats.oldest_refresh,
            file_bytes=stats.file_bytes,
            used_bytes=stats.used_bytes,
            map_size=stats.map_size,
            errors=errors,
            refresher={**refresher.state(), "job": _job_id(jobs)},
            read_only=cache.readonly,
        )
        return _json(body.model_dump_json().encode())

    @router.get(
        "/projects", response_model=ProjectPage, responses=_CONDITIONAL, summary="List projects"
    )
    def list_projects(
        request: Request,
        name: Optional[str] = Query(None, max_length=500, description="Name contains this."),
        stale: Optional[bool] = Query(None, description="Only stale (or only fresh) projects."),
        errors: Optional[bool] = Query(None, description="Only projects with (or without) errors."),
        limit: int = _LIMIT,
        offset: int = _OFFSET,
    ) -> Response:
        generation = cache.generation()
        projects = cache.list_projects()
        if name is not None:
            projects = [p for p in projects if name.lower() in p.name.lower()]
        if stale is not None:
            projects = [p for p in projects if p.is_stale(ttl) == stale]
        if errors is not None:
            projects = [p for p in projects if bool(p.errors) == errors]
        page = project_items(projects[offset : offset + limit])
        envelope = {"items": page, "total": len(projects), "limit": limit, "offset": offset}
        body = orjson.dumps(envelope)
        # Staleness moves with the clock, not only with commits: the body is in the tag.
        etag = f'"{generation}-{zlib.crc32(body):08x}"'
        return _not_modified(etag) if _matches(request, etag) else _json(body, etag)

    @router.get(
        "/projects/{project}",
        response_model=ProjectDetail,
        responses={**_NOT_FOUND, **_CONDITIONAL},
        summary="One project and its deployments",
    )
    def get_project(
        request: Request,
        project: str = Path(..., max_length=4096, description="The project's id or name."),
    ) -> Response:
        etag = etag_of()
        found = cache.find_project(project)  # an unknown one is 404 whatever the ETag
        if _matches(request, etag):
            return _not_modified(etag)
        data = project_items([found])[0]
        data["deployment_list"] = [
            deployment_view(p) for p in cache.list_deployments_json(found.id)
        ]
        return _json(orjson.dumps(data), etag)

    @router.get(
        "/artifacts",
        response_model=ArtifactPage,
        responses={**_NOT_FOUND, **_CONDITIONAL},
        summary="List artifacts",
    )
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
        limit: int = _LIMIT,
        offset: int = _OFFSET,
    ) -> Response:
        etag = etag_of()
        project = project_id(project)
        if _matches(request, etag):
            return _not_modified(etag)
        if all(f is None for f in (project, state, type, tag, collection)):
            # No filter: count in O(1) and read only the page, both from one snapshot.
            total, page = cache.artifact_page_json(offset, limit)
        else:
            # One snapshot: the records and the deployments the filter reads.
            payloads = list(
                cache.iter_artifacts_json(type, collection, tag, project=project, state=state)
            )
            total = len(payloads)
            page = payloads[offset : offset + limit]
        return _json(_envelope(page, total=total, limit=limit, offset=offset), etag)

    @router.get(
        "/artifacts/{key:path}",
        response_model=ArtifactDetail,
        responses={**_NOT_FOUND, **_CONDITIONAL},
        summary="One artifact and where it is deployed",
    )
    def get_artifact(
        request: Request,
        key: str = Path(..., max_length=600, description="`<collection>/<type>/<name>`."),
    ) -> Response:
        etag = etag_of()
        try:
            payload = cache.get_artifact_json(key)
        except (InvalidArgumentError, InvalidRecordError):  # KeyTooLongError is the latter
            payload = None  # a malformed key names no artifact: 404, like any unknown key
        if payload is None:
            raise ArtifactNotFound(f"no artifact {key!r} in the cache")
        if _matches(request, etag):
            return _not_modified(etag)
        record = orjson.loads(payload)
        record["deployments"] = [
            deployment_view(p) for p in cache.list_deployments_json(artifact=key)
        ]
        return _json(orjson.dumps(record), etag)

    @router.get(
        "/deployments",
        response_model=DeploymentPage,
        responses={**_NOT_FOUND, **_CONDITIONAL},
        summary="List deployments",
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
        limit: int = _LIMIT,
        offset: int = _OFFSET,
    ) -> Response:
        etag = etag_of()
        project = project_id(project)
        if _matches(request, etag):
            return _not_modified(etag)
        payloads = cache.list_deployments_json(project, state, artifact=artifact, profile=profile)
        views = [deployment_view(p) for p in payloads]
        if type is not None:
            views = [v for v in views if v["type"] == type]
        page = views[offset : offset + limit]
        body = orjson.dumps({"items": page, "total": len(views), "limit": limit, "offset": offset})
        return _json(body, etag)

    @router.get(
        "/search",
        response_model=SearchPage,
        responses={**_NOT_FOUND, **_CONDITIONAL},
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
        offset: int = _OFFSET,
    ) -> Response:
        etag = etag_of()
        project = project_id(project)
        if _matches(request, etag):
            return _not_modified(etag)
        result = cache.search_page_json(
            q, type, project, limit, offset, collection=collection, tag=tag
        )
        # A hit is the stored record plus its score, spliced without decoding it.
        items = [p[:-1] + b',"score":' + orjson.dumps(score) + b"}" for _k, score, p in result.hits]
        body = _envelope(
            items,
            query=q,
            total=result.total,
            partial=result.partial,
            limit=limit,
            offset=offset,
        )
        return _json(body, etag)

    @router.post(
        "/refresh",
        status_code=202,
        response_model=RefreshJob,
        responses={**_NOT_FOUND, **_WRITE, **_QUEUE_FULL},
        summary="Start a refresh job",
    )
    def start_refresh(body: Optional[RefreshRequest] = None) -> Response:
        job = jobs.submit(body or RefreshRequest())
        headers = {"Location": f"refresh/{job.id}"}
        return Response(job.model_dump_json(), 202, headers=headers, media_type=_JSON)

    @router.get(
        "/refresh/{job}",
        response_model=RefreshJob,
        responses=_NOT_FOUND,
        summary="A refresh job's progress",
    )
    def refresh_job(job: str = Path(..., max_length=100)) -> Response:
        return _json(jobs.get(job).model_dump_json().encode())

    @router.post(
        "/invalidate",
        response_model=InvalidateResult,
        responses={**_NOT_FOUND, **_WRITE},
        summary="Mark a project, a collection or everything stale",
    )
    def invalidate(body: Optional[InvalidateRequest] = None) -> InvalidateResult:
        body = body or InvalidateRequest()
        return InvalidateResult(invalidated=cache.invalidate(body.project, body.collection))

    return router


def _job_id(jobs: RefreshJobs) -> Optional[str]:
    running = jobs.running()
    return None if running is None else running.id
