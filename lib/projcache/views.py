"""The JSON views both front ends answer with: ``projcache … --json`` and ``/api/v1/cache/``.

One method per question, on the facade (:class:`CacheViews`, a mixin of
:class:`~projcache.cache.ProjectCache`): the CLI prints what it returns and
the HTTP API sends it, so the two cannot drift apart.  A list is a list of
rows here; the API wraps a page of them in ``{"items", "total", "limit",
"offset"}`` (:func:`page_json`), the CLI prints every row as a JSON array.
docs/cache/json-views.md describes each shape once.

Nothing here builds a pydantic model unless the question needs one (project
rows and the status document do): the hot CLI paths (``search``,
``list deployments``) import only orjson.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import islice

import orjson

from . import codec, streams
from .errors import InvalidArgumentError, as_argument_error
from .reads import _check_state as check_state  # the same message as every listing
from .reads import check_type
from .search_reads import CacheSearch

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Optional

    from .config import Settings
    from .models import CacheStats, DeploymentState, Project
    from .storage import Txn

__all__ = ["CacheViews", "deployment_view", "page_json"]


def page_json(items: list[bytes], **fields: Any) -> bytes:
    """``{"items": [...], **fields}`` with the items (JSON documents) spliced in as they are."""
    tail = orjson.dumps(fields)
    return b'{"items":[' + b",".join(items) + (b"]," + tail[1:] if fields else b"]}")


def deployment_view(payload: bytes) -> dict[str, Any]:
    """A stored deployment as a row: the record's fields plus ``project``, ``artifact`` (the
    key), ``name``, ``type`` and ``collection`` at the top.

    ``profile`` is the record's (a record written before profiles existed is
    ``claude_code``'s, in ``.claude``).
    """
    record: dict[str, Any] = orjson.loads(payload)
    collection, type_, name = record["artifact_key"].split("/")
    return {
        "project": record["project_id"],
        "artifact": record["artifact_key"],
        "name": name,
        "type": type_,
        "collection": collection,
        "profile": codec.DEFAULT_PROFILE,
        "profile_root": ".claude",
        **record,
    }


def _utc(when: Optional[datetime]) -> Optional[str]:
    return None if when is None else when.isoformat().replace("+00:00", "Z")


def _error(kind: str, unit: str, name: str, path: str, message: str) -> dict[str, str]:
    return {"kind": kind, "unit": unit, "name": name, "path": path, "message": message}


class CacheViews(CacheSearch):
    """The JSON views of :class:`~projcache.cache.ProjectCache` (see the module docstring)."""

    settings: Settings

    if TYPE_CHECKING:

        @property
        def path(self) -> Path: ...

        @property
        def readonly(self) -> bool: ...

        def generation(self) -> str: ...

        def stats(self) -> CacheStats: ...

    def deployment_counts(self) -> dict[str, dict[str, int]]:
        """Deployments per project id, per state (``{id: {"current": 3, ...}}``), in one pass.

        Reads the ``deployments-by-state`` index's keys once (no record), in one
        read transaction, however many projects there are; a project without
        deployments is absent.
        """
        return self._read(lambda txn: streams.deployment_counts(txn, self._repos))

    def deployment_rows(
        self,
        project: Optional[str] = None,
        state: Optional[DeploymentState] = None,
        *,
        artifact: Optional[str] = None,
        profile: Optional[str] = None,
        type: Optional[str] = None,
    ) -> list[dict[str, Any]]:
        """The deployments :meth:`list_deployments` filters, as rows (:func:`deployment_view`)."""
        payloads = self.list_deployments_json(
            project, state, artifact=artifact, profile=profile, type=type
        )
        return [deployment_view(p) for p in payloads]

    def iter_deployment_rows_json(
        self,
        project: Optional[str] = None,
        state: Optional[DeploymentState] = None,
        *,
        artifact: Optional[str] = None,
        profile: Optional[str] = None,
        type: Optional[str] = None,
    ) -> Iterator[bytes]:
        """Yield :meth:`deployment_rows`' rows one at a time as JSON, from one read snapshot.

        What ``list deployments --json`` streams: memory is a chunk of rows,
        whatever their number.  Filters are checked (and the project looked
        up) at the call, before the first row is read.  Like every listing
        (:meth:`~projcache.storage.Storage.stream`), a consumer that stops
        half-way pins the snapshot until the iterator is closed or collected.
        """
        project_id = self._deployment_filter(project, state, profile, type)
        repos = self._repos

        def step(txn: Txn, at: tuple[Any, Any, int]) -> tuple[list[bytes], Any]:
            matches, begun_in, done = at
            if begun_in is not txn:
                # The first chunk, or the listing's transaction begun again after a map
                # growth (same snapshot, checked by stream()): start over, skip what was sent.
                matches = streams.iter_deployment_payloads(
                    txn, repos, project_id, state, artifact, profile, type
                )
                for _ in islice(matches, done):
                    pass
            chunk = [
                orjson.dumps(deployment_view(p), option=orjson.OPT_NON_STR_KEYS)
                for p in islice(matches, streams.PAGE)
            ]
            more = len(chunk) == streams.PAGE
            return chunk, ((matches, txn, done + len(chunk)) if more else None)

        return self._storage.stream(step, (None, None, 0))

    def _deployment_filter(
        self,
        project: Optional[str],
        state: Optional[str],
        profile: Optional[str],
        type: Optional[str],
    ) -> Optional[str]:
        """Check a deployment listing's filters (as :meth:`list_deployments_json` does);
        return the project's id."""
        check_type(type)
        check_state(state)
        if profile is not None:
            with as_argument_error():
                codec.check_profile(profile)
        return self.find_project(project).id if project is not None else None

    def deployment_page_json(
        self,
        project: Optional[str] = None,
        state: Optional[DeploymentState] = None,
        *,
        artifact: Optional[str] = None,
        profile: Optional[str] = None,
        type: Optional[str] = None,
        limit: int = 50,
        offset: int = 0,
    ) -> bytes:
        """One page of :meth:`deployment_rows` as ``{"items", "total", "limit", "offset"}``
        (what ``GET /deployments`` sends), in memory of one page whatever the total.

        Same filters and errors as :meth:`list_deployments_json`.  The matches
        are counted and the page kept in one pass of one read transaction,
        ended before this returns: nothing holds the snapshot while the answer
        is sent.
        """
        if limit < 0 or offset < 0:
            raise InvalidArgumentError("offset and limit must not be negative")
        project_id = self._deployment_filter(project, state, profile, type)
        repos = self._repos

        def body(txn: Txn) -> tuple[int, list[bytes]]:
            matches = streams.iter_deployment_payloads(
                txn, repos, project_id, state, artifact, profile, type
            )
            return streams.page_of_stream(matches, offset, limit)

        total, page = self._read(body)
        items = [deployment_view(payload) for payload in page]
        return orjson.dumps({"items": items, "total": total, "limit": limit, "offset": offset})

    def artifact_listing_page_json(
        self,
        type: Optional[str] = None,
        collection: Optional[str] = None,
        tag: Optional[str] = None,
        *,
        project: Optional[str] = None,
        state: Optional[DeploymentState] = None,
        limit: int = 50,
        offset: int = 0,
    ) -> bytes:
        """One page of :meth:`iter_artifacts_json` as ``{"items", "total", "limit", "offset"}``
        (what ``GET /artifacts`` sends), in memory of one page whatever the total.

        Without a filter the total is a count and only the page is read
        (:meth:`artifact_page_json`); with one, every match is read once, in
        one snapshot, to count it, and only the page is kept.  The snapshot
        ends before this returns.
        """
        if limit < 0 or offset < 0:
            raise InvalidArgumentError("offset and limit must not be negative")
        if all(f is None for f in (project, state, type, tag, collection)):
            total, page = self.artifact_page_json(offset, limit)
        else:
            matches = self.iter_artifacts_json(type, collection, tag, project=project, state=state)
            try:
                total, page = streams.page_of_stream(matches, offset, limit)
            finally:
                close = getattr(matches, "close", None)
                if close is not None:
                    close()  # an error midway: end the listing's read transaction now
        return page_json(page, total=total, limit=limit, offset=offset)

    def project_rows(
        self,
        *,
        name: Optional[str] = None,
        stale: Optional[bool] = None,
        errors: Optional[bool] = None,
    ) -> list[dict[str, Any]]:
        """Every project (in id order) as a row: its record's fields plus ``deployments`` (a
        count), ``states`` (deployments per state), ``is_stale`` and ``expires_at``.

        Filters: ``name`` (contained, any case), ``stale`` and ``errors`` (only
        projects with, or without).  The projects and their counts come from
        one read transaction; the counts from one pass over an index.
        """
        repos = self._repos

        def body(txn: Txn) -> tuple[list[Project], dict[str, dict[str, int]]]:
            return list(repos.projects.scan(txn)), streams.deployment_counts(txn, repos)

        projects, counts = self._read(body)
        ttl = self.settings.ttl_seconds
        from .models import utcnow

        now = utcnow()
        if name is not None:
            projects = [p for p in projects if name.lower() in p.name.lower()]
        if stale is not None:
            projects = [p for p in projects if p.is_stale(ttl, now) == stale]
        if errors is not None:
            projects = [p for p in projects if bool(p.errors) == errors]
        return [self._project_row(p, counts.get(p.id, {}), now) for p in projects]

    def _project_row(
        self, project: Project, states: dict[str, int], now: datetime
    ) -> dict[str, Any]:
        ttl = self.settings.ttl_seconds
        row: dict[str, Any] = project.model_dump(mode="json")
        row["deployments"] = sum(states.values())
        row["states"] = states
        row["is_stale"] = project.is_stale(ttl, now)
        refreshed = project.refreshed_at
        row["expires_at"] = None if refreshed is None else _utc(refreshed + timedelta(seconds=ttl))
        return row

    def project_view(self, project: str) -> dict[str, Any]:
        """One project (id, name or path) as its row plus ``deployment_list`` (its deployments).

        Raises:
            ProjectNotFound: no such project.
        """
        from .models import utcnow

        found = self.find_project(project)
        deployments = self.deployment_rows(found.id)
        states: dict[str, int] = {}
        for row in deployments:
            states[row["state"]] = states.get(row["state"], 0) + 1
        data: dict[str, Any] = self._project_row(found, states, utcnow())
        data["deployment_list"] = deployments
        return data

    def artifact_view(self, key: str) -> Optional[dict[str, Any]]:
        """One artifact: its stored record plus ``deployments`` (rows), or ``None``."""
        payload = self.get_artifact_json(key)
        if payload is None:
            return None
        record: dict[str, Any] = orjson.loads(payload)
        record["deployments"] = self.deployment_rows(artifact=record["key"])
        return record

    def search_view_json(
        self,
        query: str,
        type: Optional[str] = None,
        project: Optional[str] = None,
        limit: int = 20,
        offset: int = 0,
        *,
        collection: Optional[str] = None,
        tag: Optional[str] = None,
    ) -> bytes:
        """One page of :meth:`search` as JSON: ``{"items", "query", "total", "partial",
        "limit", "offset"}``; an item is the stored record plus its ``score``.

        The records are spliced in as stored (no model is built, nothing decoded).
        """
        page = self.search_page_json(
            query, type, project, limit, offset, collection=collection, tag=tag
        )
        items = [p[:-1] + b',"score":' + orjson.dumps(score) + b"}" for _k, score, p in page.hits]
        return page_json(
            items,
            query=query,
            total=page.total,
            partial=page.partial,
            limit=limit,
            offset=offset,
        )

    def status_view(self) -> dict[str, Any]:
        """What the cache holds and how fresh it is: the :meth:`stats` fields (``cache_dir``
        for its ``path``), ``hit_rate``, ``version``, ``generation``, ``read_only``,
        ``ttl_seconds``, ``stale_collections`` and the ``errors`` the last refresh recorded
        (``kind``, ``unit`` — a collection's name or a project's id —, ``name``, ``path``,
        ``message``).
        """
        from . import __version__

        stats = self.stats()
        ttl = self.settings.ttl_seconds
        collections = self.list_collections()
        projects = self.list_projects()
        fields: dict[str, Any] = stats.model_dump(mode="json")
        errors = [
            _error("collection", c.name, c.name, e.path, e.message)
            for c in collections
            for e in c.errors
        ] + [_error("project", p.id, p.name, e.path, e.message) for p in projects for e in p.errors]
        data = {
            "version": __version__,
            "cache_dir": fields.pop("path"),
            "schema_version": fields.pop("schema_version"),
            "generation": self.generation(),
            "counts": fields.pop("counts"),
            "stale_projects": fields.pop("stale_projects"),
            "stale_collections": sum(1 for c in collections if c.is_stale(ttl)),
            "ttl_seconds": ttl,
            "newest_refresh": fields.pop("newest_refresh"),
            "oldest_refresh": fields.pop("oldest_refresh"),
            "file_bytes": fields.pop("file_bytes"),
            "used_bytes": fields.pop("used_bytes"),
            "map_size": fields.pop("map_size"),
            "errors": errors,
            "read_only": self.readonly,
            **fields,  # max_map_size, hits, misses, last_txn_id, created_at
            "hit_rate": stats.hit_rate,
        }
        return data
