"""Refresh jobs: ``POST refresh`` queues one, ``GET refresh/{job}`` reports on it.

Every refresh the server runs (asked for by a client, due by TTL, or set off
by a file change) goes through one lock, so two never race over the same
sources; requests never wait for it, since reads use their own read
transactions.  Finished jobs are kept (the newest ``keep`` of them) so a
client polling late still gets the report.

The queue is bounded: a request for the same targets as a job that is still
waiting joins that job (the caller gets its id: the refresh it asked for has
not started yet, so it will see every change made before the request), and
when ``max_queued`` different jobs are already waiting the next one is refused
with 429 and a ``Retry-After``, so a flood of requests cannot queue unbounded
work.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Optional

from ..errors import NotFoundError, ProjcacheError
from ..models import utcnow
from .bodies import ErrorBody, JobProgress, RefreshJob, RefreshRequest
from .guard import Refusal

if TYPE_CHECKING:
    from ..cache import ProjectCache
    from ..models import RefreshReport

__all__ = ["DEFAULT_MAX_QUEUED", "RefreshJobs"]

logger = logging.getLogger(__name__)

# Different waiting jobs at once; identical requests share one, so this bounds only
# requests for distinct projects/collections, of which a person makes a few.
DEFAULT_MAX_QUEUED = 16
_Targets = tuple[Optional[tuple[str, ...]], Optional[tuple[str, ...]], bool]


class RefreshJobs:
    """Runs refresh jobs one at a time on a worker thread and remembers their outcome."""

    def __init__(self, cache: ProjectCache, keep: int = 200, max_queued: int = DEFAULT_MAX_QUEUED):
        self._cache = cache
        self._keep = keep
        self.max_queued = max_queued
        self._jobs: OrderedDict[str, RefreshJob] = OrderedDict()
        # What each job that has not started yet will refresh, to join identical requests.
        self._waiting: dict[str, _Targets] = {}
        self._last_seconds = 1.0
        self._lock = threading.Lock()
        self.refresh_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projcache-refresh")

    def submit(self, request: RefreshRequest) -> RefreshJob:
        """Queue a refresh of what ``request`` names; return the queued job.

        The project or collection is looked up now, so an unknown one is an
        error of this call rather than of the job.  When a job for the same
        targets is still waiting, that job is returned instead of a new one.

        Raises:
            NotFoundError: the project or collection is not in the cache.
            Refusal: ``max_queued`` different jobs are waiting already (429).
        """
        collections, projects = self._targets(request)
        targets: _Targets = (
            None if collections is None else tuple(collections),
            None if projects is None else tuple(projects),
            request.full,
        )
        with self._lock:
            for job_id, waiting in self._waiting.items():
                if waiting == targets:
                    return self._jobs[job_id].model_copy(deep=True)
            if len(self._waiting) >= self.max_queued:
                # A rough wait: the jobs ahead of it, each as long as the last one took.
                retry = min(600, max(1, math.ceil(self._last_seconds * len(self._waiting))))
                raise Refusal(
                    429,
                    "TooManyJobs",
                    f"{len(self._waiting)} refresh jobs are already waiting",
                    f"Retry in {retry} s, or poll a waiting job: GET refresh/{{job}}.",
                    headers={"Retry-After": str(retry)},
                )
            job = self._new_job(request)
            self._waiting[job.id] = targets
            self._jobs[job.id] = job
            finished = [j.id for j in self._jobs.values() if j.state in ("done", "failed")]
            # Only finished jobs are forgotten, oldest first: a client polling a
            # queued or running job always finds it.
            for old_id in finished[: max(0, len(self._jobs) - self._keep)]:
                del self._jobs[old_id]
        try:
            self._executor.submit(self._run, job.id, collections, projects, request.full)
        except RuntimeError:  # shutting down: the job will never run
            with self._lock:
                self._waiting.pop(job.id, None)
                self._jobs.pop(job.id, None)
            raise
        return job.model_copy(deep=True)

    def _new_job(self, request: RefreshRequest) -> RefreshJob:
        return RefreshJob(
            id=f"{next(self._ids)}-{utcnow().strftime('%H%M%S')}",
            state="queued",
            request=request,
            created_at=utcnow(),
            progress=JobProgress(done=0, total=0),
        )

    def get(self, job_id: str) -> RefreshJob:
        """Return a snapshot of one job.

        Raises:
            NotFoundError: no such job (or it is too old to be kept).
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise NotFoundError(
                    f"no refresh job {job_id!r}",
                    hint="Jobs are kept only while the server runs, the newest "
                    f"{self._keep} of them.",
                )
            return job.model_copy(deep=True)

    def waiting(self) -> int:
        """How many jobs are queued and not started yet."""
        with self._lock:
            return len(self._waiting)

    def running(self) -> Optional[RefreshJob]:
        """The job running now, if any."""
        with self._lock:
            for job in self._jobs.values():
                if job.state == "running":
                    return job.model_copy(deep=True)
        return None

    def shutdown(self) -> None:
        """Finish the running job, drop queued ones, stop the worker."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _targets(self, request: RefreshRequest) -> tuple[Optional[list[str]], Optional[list[str]]]:
        if request.project is None and request.collection is None:
            return None, None
        projects: list[str] = []
        if request.project is not None:
            projects = [self._cache.find_project(request.project).path]
        collections: list[str] = []
        if request.collection is not None:
            found = self._cache.get_collection(request.collection)
            if found is None:
                raise NotFoundError(
                    f"no collection {request.collection!r} in the cache",
                    hint="GET /api/v1/cache/status lists what is cached.",
                )
            collections = [found.path]
        return collections, projects

    def _update(self, job_id: str, **changes: object) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs[job_id] = job.model_copy(update=changes)

    def _run(
        self,
        job_id: str,
        collections: Optional[list[str]],
        projects: Optional[list[str]],
        full: bool,
    ) -> None:
        def progress(done: int, total: int, label: str) -> None:
            self._update(job_id, progress=JobProgress(done=done, total=total, current=label))

        try:
            with self.refresh_lock:
                # Running only once the lock is ours: a job waiting behind the TTL pass is queued
                # (and still joinable: nothing has been read for it yet).
                with self._lock:
                    self._waiting.pop(job_id, None)
                self._update(job_id, state="running", started_at=utcnow())
                started = time.monotonic()
                try:
                    report: RefreshReport = self._cache.refresh(
                        collections, projects, full=full, progress=progress
                    )
                finally:
                    self._last_seconds = time.monotonic() - started
        except ProjcacheError as exc:
            logger.warning("refresh job %s failed: %s", job_id, exc)
            error = ErrorBody(error=type(exc).__name__, message=str(exc), hint=exc.hint)
            self._update(job_id, state="failed", finished_at=utcnow(), error=error)
            return
        except Exception as exc:  # a worker thread must record, not swallow, a bug
            logger.exception("refresh job %s crashed", job_id)
            error = ErrorBody(error="InternalError", message=f"the refresh failed: {exc}")
            self._update(job_id, state="failed", finished_at=utcnow(), error=error)
            return
        self._update(
            job_id,
            state="done",
            finished_at=utcnow(),
            report=report.model_dump(mode="json"),
        )
