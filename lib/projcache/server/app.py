"""The FastAPI application: options, security, error bodies, the web page, lifecycle.

The endpoints themselves are in :mod:`projcache.server.routes`.  Every error
is answered with an :class:`~projcache.server.bodies.ErrorBody` and a status
code that says what went wrong (404 unknown id, 422 bad parameters, ...);
a stack trace never reaches a client, it goes to the log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from fastapi import Depends, FastAPI, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import ProjcacheError, ServerError
from .bodies import ErrorBody
from .guard import DEFAULT_MAX_BODY_BYTES, SECURITY_HEADERS, Refusal, TrustBoundary, parse_host
from .jobs import DEFAULT_MAX_QUEUED, RefreshJobs
from .refresher import BackgroundRefresher
from .routes import build_router

if TYPE_CHECKING:
    from ..cache import ProjectCache

__all__ = ["API_PREFIX", "ServerOptions", "create_app", "error_status"]

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1/cache"
# Shipped inside the package (package data); no build step.
STATIC = Path(__file__).resolve().parent / "static"


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """How the application behaves.

    Attributes:
        api_key: when set, every API request must send it in ``X-API-Key``.
        refresh_interval: seconds between background passes over stale sources;
            ``None`` turns the TTL refresher off.
        watch: also refresh on file changes (watchfiles).
        allowed_hosts: ``Host`` values answered besides the loopback names
            (``localhost``, ``127.0.0.1``, ``[::1]``) on the bound port: ``name``
            (any port) or ``name:port``.  Any other Host gets 421 (DNS rebinding).
        max_body_bytes: the largest request body accepted (413 beyond it).
        max_queued_jobs: refresh jobs that may wait at once (429 beyond it;
            a request equal to a waiting one joins it instead).
    """

    api_key: Optional[str] = None
    refresh_interval: Optional[float] = None
    watch: bool = False
    allowed_hosts: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_queued_jobs: int = DEFAULT_MAX_QUEUED


def error_status(exc: ProjcacheError) -> int:
    """The HTTP status for one of the library's errors: its class's ``http_status``.

    Each error class says its own status beside its exit code (see
    :mod:`projcache.errors`); anything without a more specific one is 500.
    """
    return exc.http_status


def _error(status: int, body: ErrorBody, headers: Optional[dict[str, str]] = None) -> JSONResponse:
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Refusal)
    async def refused(_request: Request, exc: Refusal) -> JSONResponse:
        body = ErrorBody(error=exc.error, message=exc.message, hint=exc.hint)
        return _error(exc.status, body, headers=exc.headers)

    @app.exception_handler(ProjcacheError)
    async def projcache_error(_request: Request, exc: ProjcacheError) -> JSONResponse:
        status = error_status(exc)
        if status >= 500:
            logger.error("request failed: %s", exc)
        body = ErrorBody(error=type(exc).__name__, message=str(exc), hint=exc.hint or None)
        return _error(status, body)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = jsonable_encoder(exc.errors(), exclude={"input", "ctx", "url"})
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in detail)
        body = ErrorBody(
            error="BadRequest", message=f"invalid request parameters: {where}", detail=detail
        )
        return _error(422, body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # Starlette's "error parsing the body" (e.g. JSON that is not UTF-8): a bad
            # request like any other, answered with the status the schema documents.
            body = ErrorBody(error="BadRequest", message=f"invalid request body: {exc.detail}")
            return _error(422, body)
        name = {401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed"}.get(
            exc.status_code, "HTTPError"
        )
        return _error(
            exc.status_code,
            ErrorBody(error=name, message=str(exc.detail)),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def crash(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error while answering a request")
        # This answer is sent from outside the TrustBoundary middleware: add its headers here.
        return _error(
            500,
            ErrorBody(error="InternalError", message="internal server error"),
            headers=dict(SECURITY_HEADERS),
        )


def _api_key_check(api_key: str) -> Callable[[Optional[str]], None]:
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The server's API key.")

    def check(sent: Optional[str] = Security(header)) -> None:
        if sent is None or not secrets.compare_digest(sent.encode(), api_key.encode()):
            raise StarletteHTTPException(
                401, "a valid X-API-Key header is required", headers={"WWW-Authenticate": "APIKey"}
            )

    return check


def create_app(cache: ProjectCache, options: Optional[ServerOptions] = None) -> FastAPI:
    """Build the application over an open cache (the caller keeps and closes it).

    The refresh worker and the background refresher start with the
    application's lifespan and stop with it.
    """
    options = options or ServerOptions()
    for entry in options.allowed_hosts:
        if parse_host(entry) is None:
            raise ServerError(
                f"not a host name or host:port: {entry!r}",
                hint="Give --allowed-host a name (cache.lan) or a name and port (cache.lan:8080).",
            )
    jobs = RefreshJobs(cache, max_queued=options.max_queued_jobs)
    refresher = BackgroundRefresher(cache, jobs, options.refresh_interval, options.watch)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        refresher.start()
        try:
            yield
        finally:
            refresher.stop()
            jobs.shutdown()

    app = FastAPI(
        title="projcache",
        version=__version__,
        description="Project metadata (skills, commands, agents, MCP servers, hooks) from the "
        "projcache cache. List endpoints send an ETag; send it back in If-None-Match "
        "to get 304 while nothing changed.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load their files from a CDN (blank offline) and run inline
        # scripts (refused by the page's Content-Security-Policy): the schema stays.
        docs_url=None,
        redoc_url=None,
    )
    app.state.cache = cache
    app.state.jobs = jobs
    app.state.refresher = refresher
    _install_error_handlers(app)
    # The key (and its 401) is part of the schema only when the server has one.
    guard, unauthorized = [], {}
    if options.api_key is not None:
        guard = [Depends(_api_key_check(options.api_key))]
        unauthorized = {401: {"model": ErrorBody, "description": "Missing or wrong X-API-Key."}}
    app.include_router(
        build_router(cache, jobs, refresher),
        prefix=API_PREFIX,
        dependencies=guard,
        responses=unauthorized,  # type: ignore[arg-type]
    )

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(
        TrustBoundary,
        routes=app.router.routes,
        allowed_hosts=options.allowed_hosts,
        max_body_bytes=options.max_body_bytes,
    )
    return app
