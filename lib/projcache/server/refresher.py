"""The server's background refresher: stale sources on the TTL, changed files with ``--watch``.

Both run on daemon threads and take the jobs' refresh lock, so they never
overlap a client's refresh and never hold up a request (reads use their own
read transactions).  Failures are logged and counted, never raised: the
server keeps serving the last good data.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Optional

from ..errors import ProjcacheError
from ..models import utcnow

if TYPE_CHECKING:
    from datetime import datetime

    from ..cache import ProjectCache
    from ..models import RefreshReport
    from .jobs import RefreshJobs

__all__ = ["BackgroundRefresher"]

logger = logging.getLogger(__name__)


class BackgroundRefresher:
    """Refreshes what went stale every ``interval`` seconds, and on file changes if ``watch``."""

    def __init__(
        self,
        cache: ProjectCache,
        jobs: RefreshJobs,
        interval: Optional[float],
        watch: bool = False,
    ):
        self._cache = cache
        self._jobs = jobs
        self.interval = interval
        self.watch = watch
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.runs = 0
        self.failures = 0
        self.last_run: Optional[datetime] = None
        self.last_error: Optional[str] = None

    def start(self) -> None:
        """Start the TTL loop (when an interval is set) and the watcher (when asked)."""
        if self.interval is not None:
            self._spawn(self._ttl_loop, "projcache-ttl")
        if self.watch:
            self._spawn(self._watch_loop, "projcache-watch")

    def stop(self, timeout: float = 10.0) -> None:
        """Ask both loops to stop and wait for them."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def state(self) -> dict[str, Any]:
        """What ``GET status`` reports about the refresher."""
        return {
            "interval_seconds": self.interval,
            "watch": self.watch,
            "runs": self.runs,
            "failures": self.failures,
            "last_run": self.last_run.isoformat() if self.last_run else None,
            "last_error": self.last_error,
        }

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _refresh(self, **kwargs: Any) -> Optional[RefreshReport]:
        try:
            with self._jobs.refresh_lock:
                report = self._cache.refresh(**kwargs)
        except ProjcacheError as exc:
            self._failed(str(exc))
            logger.warning("background refresh failed: %s", exc)
            return None
        except Exception as exc:  # a bug must not end background refreshing for good
            self._failed(f"{type(exc).__name__}: {exc}")
            logger.exception("background refresh crashed")
            return None
        with self._lock:
            self.runs += 1
            self.last_run = utcnow()
            self.last_error = None
        return report

    def _failed(self, message: str) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = message

    def refresh_stale(self) -> Optional[RefreshReport]:
        """One TTL pass: refresh the collections and projects that are stale (or invalidated)."""
        return self._refresh(stale_only=True)

    def _ttl_loop(self) -> None:
        assert self.interval is not None
        while not self._stop.wait(self.interval):
            self.refresh_stale()

    def _watch_loop(self) -> None:
        from ..watch import watch_and_refresh

        def refresh(collections: list[str], projects: list[str]) -> Optional[RefreshReport]:
            return self._refresh(collections=collections, projects=projects)

        try:
            watch_and_refresh(self._cache, stop_event=self._stop, refresh=refresh)
        except ProjcacheError as exc:  # nothing cached yet to watch
            self.last_error = str(exc)
            logger.warning("not watching for file changes: %s", exc)
        except Exception as exc:
            self._failed(f"the file watcher stopped: {type(exc).__name__}: {exc}")
            logger.exception("the file watcher stopped")
