"""Gather :class:`~projcache.models.CacheStats` from one read transaction."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

from .repository import Repositories
from .storage import Storage, Txn

if TYPE_CHECKING:
    from .models import CacheStats

__all__ = ["collect_stats"]


def collect_stats(
    storage: Storage, repos: Repositories, hits: int, misses: int, ttl_seconds: float
) -> CacheStats:
    """Return counts, sizes, counters and freshness; ``hits``/``misses`` are unsaved deltas.

    ``ttl_seconds`` is the asking handle's own TTL: two handles on one environment
    may judge staleness differently, and each sees its own rule.

    Cost: O(1) per sub-database plus one pass over the projects and collections (freshness).
    """
    from .models import CacheStats, utcnow

    def body(txn: Txn) -> dict[str, Any]:
        counts = {
            "collections": repos.collections.count(txn),
            "projects": repos.projects.count(txn),
            "artifacts": repos.artifacts.count(txn),
            "deployments": repos.deployments.count(txn),
            "sources": repos.sources.count(txn),
            "postings": int(txn.stat(repos.index.main)["entries"]),
        }
        now = utcnow()
        ttl = ttl_seconds
        refreshed: list[datetime] = []
        stale = 0
        for project in repos.projects.scan(txn):
            if project.refreshed_at is not None:
                refreshed.append(project.refreshed_at)
            if project.is_stale(ttl, now):
                stale += 1
        # A collection-only refresh is a refresh too: "refreshed: never" after it misled users.
        collection_model = repos.collections.model
        for _key, payload in repos.collections.scan_payloads(txn):
            when = collection_model.model_validate_json(payload).refreshed_at
            if when is not None:
                refreshed.append(when)
        created: Optional[str] = repos.meta.get(txn, "created_at")
        return {
            "counts": counts,
            "schema_version": int(repos.meta.get(txn, "schema_version", 0)),
            "hits": int(repos.meta.get(txn, "hits", 0)) + hits,
            "misses": int(repos.meta.get(txn, "misses", 0)) + misses,
            "stale_projects": stale,
            "oldest_refresh": min(refreshed) if refreshed else None,
            "newest_refresh": max(refreshed) if refreshed else None,
            "created_at": created,
        }

    data = storage.read(body)
    info = storage.info()
    return CacheStats(
        path=str(storage.path),
        file_bytes=storage.file_bytes(),
        used_bytes=(info["last_pgno"] + 1) * storage.page_size(),
        map_size=info["map_size"],
        max_map_size=storage.settings.max_map_size,
        last_txn_id=info["last_txnid"],
        **data,
    )
