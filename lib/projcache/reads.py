"""The read side of :class:`~projcache.cache.ProjectCache`: lookups and listings.

A mixin: :class:`CacheReads` holds the lookups and listings (search is
:class:`~projcache.search_reads.CacheSearch`, the JSON views
:class:`~projcache.views.CacheViews`); the facade in :mod:`projcache.cache`
holds lifecycle, and the other mixins writes and maintenance.  Each query
runs in one short read transaction (listings in pages of them) and never
blocks on writers.  The ``*_json`` variants return the stored JSON bytes
without building pydantic models: the hot paths of the CLI and the server.

A little over 400 lines on purpose: each listing's model and JSON forms are kept side by
side (with the one-read form of the hot ``list_deployments(project)``), so that what one
lists the other lists too.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import orjson

from . import codec, streams
from .errors import (
    InvalidArgumentError,
    InvalidRecordError,
    KeyTooLongError,
    ProjectNotFound,
    as_argument_error,
)
from .vocabulary import DEPLOYMENT_STATES as _STATES

TYPE_CHECKING = False  # (typing is for the type checker only: a cold CLI call skips it)
if TYPE_CHECKING:
    from typing import Callable, Optional, TypeVar

    from .models import Artifact, Collection, Deployment, DeploymentState, Project
    from .repository import Repositories
    from .storage import Storage, Txn

    T = TypeVar("T")

__all__ = ["CacheReads", "check_type"]

_MAX_KEY_BYTES = codec.MAX_KEY_BYTES


def check_type(type_: Optional[str]) -> None:
    """Refuse an artifact type filter that cannot be a type (see :func:`codec.check_type_name`).

    Raises:
        InvalidArgumentError: naming the known types (a filter is an argument).
    """
    if type_ is not None:
        try:
            codec.check_type_name(type_)
        except InvalidRecordError:
            raise InvalidArgumentError(
                f"type must be a type name like one of {', '.join(codec.ARTIFACT_TYPES)}; "
                f"got {type_!r}"
            ) from None


def _check_state(state: Optional[str]) -> None:
    if state is not None and state not in _STATES:
        raise InvalidArgumentError(f"state must be one of {', '.join(_STATES)}; got {state!r}")


def _id_key(ref: str) -> Optional[bytes]:
    """``ref`` as a project id key, or ``None`` when it cannot be one (a name or a path then)."""
    try:
        key = ref.encode()
    except UnicodeEncodeError:
        return None
    # (`0 not in key`: the byte as an int; `b"\x00" in` costs ~10x as much on CPython 3.11)
    return key if 0 < len(key) <= _MAX_KEY_BYTES and 0 not in key else None


class CacheReads:
    """Read methods shared by every :class:`~projcache.cache.ProjectCache` handle."""

    _storage: Storage
    _hits: int
    _misses: int
    _closed: bool
    # The artifact loader, looked up once (a fork rebuilds the repositories, but
    # the loader holds no LMDB handle).
    _load_artifact: Optional[Callable[[bytes], Artifact]] = None
    _load_deployments: Optional[Callable[[list[bytes]], list[Deployment]]] = None
    _load_artifacts: Optional[Callable[[list[bytes]], list[Artifact]]] = None

    if TYPE_CHECKING:

        @property
        def _repos(self) -> Repositories: ...

        def _check_open(self) -> None: ...

        def _read(self, fn: Callable[[Txn], T]) -> T: ...

    def get_artifact_json(self, key: str) -> Optional[bytes]:
        """Return the stored JSON bytes of one artifact, or ``None`` (no model is built).

        The body, kept for search, is left out (``"body":""``; see
        :meth:`get_artifact_body`), so nothing is inflated.

        The frame's CRC is checked; this is the hot path of ``projcache get --json``.

        Raises:
            InvalidArgumentError: ``key`` cannot be an artifact key (an argument).
            KeyTooLongError: ``key`` is over LMDB's 511-byte limit.
        """
        if self._closed:
            self._check_open()
        # The same lookup as ArtifactRepository.get_payload, minus the per-call
        # closure and read() retry loop: this is the hottest path of the CLI.
        # A plain encode, with encode_key's checks only when they would fail.  (`0 in`
        # tests for a NUL byte as memchr does; `b"\x00" in` took ~0.35 us, ~10% of a read.)
        try:
            raw_key = key.encode()
        except UnicodeEncodeError:
            raw_key = b""
        if not raw_key or len(raw_key) > _MAX_KEY_BYTES or 0 in raw_key:
            with as_argument_error():
                raw_key = codec.encode_key(key, what="artifact key")
        payload = self._storage.get_payload("artifacts", raw_key)
        if payload is None:
            # Stored keys were validated on write, so only a miss can be malformed;
            # checking here keeps the validation off the hit path.
            with as_argument_error():
                codec.parse_artifact_key(key)
            self._misses += 1
        else:
            self._hits += 1
        return payload

    def get_artifact(self, key: str) -> Optional[Artifact]:
        """Return the artifact with ``key`` (``<collection>/<type>/<name>``), or ``None``.

        The model is built from the checked JSON without validating it again
        (:func:`projcache.models.from_stored_json`); its ``body`` is ``""`` (the
        body is kept for search only: :meth:`get_artifact_body`).
        """
        payload = self.get_artifact_json(key)
        if payload is None:
            return None
        load = self._load_artifact
        if load is None:
            from .model_reads import stored_json_loader

            # The loader itself, not the repository's method around it: one call less.
            load = self._load_artifact = stored_json_loader(self._repos.artifacts.model)
        return load(payload)

    def get_artifact_body(self, key: str) -> Optional[str]:
        """Return the Markdown body kept for search of one artifact, or ``None`` when absent.

        Reads and listings leave the body out (``"body": ""``): it is stored apart
        in the record, deflated, and inflated only here and by the paths that
        re-index an artifact.

        Raises:
            InvalidArgumentError: ``key`` cannot be an artifact key.
        """
        with as_argument_error():
            codec.parse_artifact_key(key)
        repos = self._repos
        payload = self._read(lambda txn: repos.artifacts.get_whole_payload(txn, key))
        return None if payload is None else str(orjson.loads(payload)["body"])

    def list_artifacts(
        self,
        type: Optional[str] = None,
        collection: Optional[str] = None,
        tag: Optional[str] = None,
        *,
        project: Optional[str] = None,
        state: Optional[DeploymentState] = None,
    ) -> Iterator[Artifact]:
        """Yield artifacts in key order, filtered by type, collection and tag.

        Filters use indexes (tag and type facets, the collection key prefix).
        ``project`` (id, name or path) and/or ``state`` keep the artifacts with a
        deployment there / in that state.  One call is one snapshot: every
        record, and the deployments a filter reads, come from the same read
        transaction, streamed a page at a time, so a concurrent write is seen
        entirely or not at all.  Close (or exhaust) the iterator: until then it
        pins the snapshot's pages.

        The filters are checked at the call, before the first record is read.
        """
        pages = self._artifact_pages(type, collection, tag, project, state)
        load_all = self._load_artifacts
        if load_all is None:
            from .model_reads import stored_json_list_loader

            load_all = self._load_artifacts = stored_json_list_loader(self._repos.artifacts.model)
        # A page's models are built in one call (issue 15: list by tag <= 2x raw per record).
        return streams.flatten(pages, load_all)

    def iter_artifacts_json(
        self,
        type: Optional[str] = None,
        collection: Optional[str] = None,
        tag: Optional[str] = None,
        *,
        project: Optional[str] = None,
        state: Optional[DeploymentState] = None,
    ) -> Iterator[bytes]:
        """Like :meth:`list_artifacts`, yielding the stored JSON bytes (no models built).

        The filters are checked at the call, before the first record is read.
        """
        return streams.flatten(self._artifact_pages(type, collection, tag, project, state))

    def _artifact_pages(
        self,
        type: Optional[str],
        collection: Optional[str],
        tag: Optional[str],
        project: Optional[str],
        state: Optional[DeploymentState],
    ) -> Iterator[list[bytes]]:
        """The stored JSON of :meth:`list_artifacts`, a page at a time (filters checked now)."""
        check_type(type)
        self._check_open()
        _check_state(state)
        if project is not None:
            # Walked from the project's deployments, in memory of a page (no key set).
            return streams.project_artifact_pages(
                self._storage.stream,
                lambda: self._repos,
                self.find_project(project).id,
                state,
                type,
                collection,
                tag,
            )
        wanted = None
        if state is not None:
            project_id = None
            repos = self._repos

            def deployed(txn: Txn) -> set[str]:
                return {
                    orjson.loads(payload)["artifact_key"]
                    for payload in streams.iter_deployment_payloads(txn, repos, project_id, state)
                }

            wanted = deployed
        return streams.artifact_pages(
            self._storage.stream, lambda: self._repos, type, collection, tag, wanted
        )

    def artifact_page_json(self, offset: int = 0, limit: int = 100) -> tuple[int, list[bytes]]:
        """Return how many artifacts there are and the stored JSON of ``limit`` of them.

        The page starts at ``offset`` in key order.  Both come from one read
        transaction, so a page and its total never mix two writes.  Skipping
        ``offset`` records walks their keys (values are not read).
        """
        if offset < 0 or limit < 0:
            raise InvalidArgumentError("offset and limit must not be negative")
        repos = self._repos

        def body(txn: Txn) -> tuple[int, list[bytes]]:
            total = repos.artifacts.count(txn)
            first = next(islice(repos.artifacts.scan_keys(txn), offset, None), None)
            if first is None or limit == 0:
                return total, []
            return total, [p for _k, p in repos.artifacts.scan_payloads(txn, "", first, limit)]

        return self._read(body)

    def list_projects(self) -> list[Project]:
        """Return every project, in id order."""
        return self._read(lambda txn: list(self._repos.projects.scan(txn)))

    def get_project(self, project_id: str) -> Optional[Project]:
        """Return the project with ``project_id``, or ``None``."""
        return self._read(lambda txn: self._repos.projects.get(txn, project_id))

    def find_project(self, ref: str) -> Project:
        """Return the project whose id, name or path is ``ref``.

        Raises:
            ProjectNotFound: nothing matches, or a name matches several projects.
        """
        if not ref or "\x00" in ref:  # no project id, name or path can hold these
            raise ProjectNotFound(f"no project {ref!r} in the cache")
        try:
            direct = self.get_project(ref)
        except KeyTooLongError:  # too long for an id: it may still be a path or a name
            direct = None
        if direct is not None:
            return direct
        try:
            resolved = str(Path(ref).expanduser().resolve())
        except (RuntimeError, OSError, ValueError):  # "~nobody", a loop: not a path we know
            resolved = ref
        by_name = []
        for project in self.list_projects():
            if project.path in (ref, resolved):
                return project
            if project.name == ref:
                by_name.append(project)
        if len(by_name) == 1:
            return by_name[0]
        if by_name:
            raise ProjectNotFound(
                f"{len(by_name)} projects are named {ref!r}", hint="Use the project's id or path."
            )
        raise ProjectNotFound(f"no project {ref!r} in the cache")

    def list_deployments(
        self,
        project: Optional[str] = None,
        state: Optional[DeploymentState] = None,
        *,
        artifact: Optional[str] = None,
        profile: Optional[str] = None,
        type: Optional[str] = None,
    ) -> list[Deployment]:
        """Deployments of one project (id, name or path), in one state, of one artifact (its
        key), to one deployment profile (``claude_code``, ``codex``...), of one artifact type.

        A state filter reads the ``deployments-by-state`` index, an artifact filter the
        ``deployments-by-artifact`` index; a project filter is a key-prefix scan; the
        profile and type filters read the key only.  None of them scans everything.
        """
        load_all = self._load_deployments
        if load_all is None:  # (bound once: an import statement per call costs ~5% of a call)
            from .model_reads import stored_json_list_loader

            load_all = self._load_deployments = stored_json_list_loader(
                self._repos.deployments.model
            )
        if (
            project is not None
            and state is None
            and artifact is None
            and profile is None
            and type is None
        ):
            # The usual call (a project's id, no filter): one read, without the layers of
            # list_deployments_json (a few records per call: per-call costs count).
            id_key = _id_key(project)
            if id_key is not None:
                repos = self._repos
                projects = repos.projects.db

                def body(txn: Txn) -> Optional[list[bytes]]:
                    if txn.get(id_key, db=projects) is None:
                        return None  # not an id: a name or a path, resolved below
                    return streams.project_deployments(txn, repos, project, id_key)

                payloads = self._read(body)
                if payloads is not None:
                    return load_all(payloads)
        found = self.list_deployments_json(
            project, state, artifact=artifact, profile=profile, type=type
        )
        return load_all(found)

    def list_deployments_json(
        self,
        project: Optional[str] = None,
        state: Optional[DeploymentState] = None,
        *,
        artifact: Optional[str] = None,
        profile: Optional[str] = None,
        type: Optional[str] = None,
    ) -> list[bytes]:
        """Like :meth:`list_deployments`, returning the stored JSON bytes (no models built)."""
        check_type(type)
        _check_state(state)
        if profile is not None:
            with as_argument_error():
                codec.check_profile(profile)
        repos = self._repos
        id_key = None if project is None else _id_key(project)
        # Without filters besides the project: one loop over a key-prefix scan.
        plain = state is None and artifact is None and profile is None and type is None

        def listing(txn: Txn, project_id: Optional[str]) -> list[bytes]:
            if plain:
                return streams.project_deployments(txn, repos, project_id)
            return list(
                streams.iter_deployment_payloads(
                    txn, repos, project_id, state, artifact, profile, type
                )
            )

        def body(txn: Txn) -> Optional[list[bytes]]:
            # The usual reference is the project's id: one key lookup in this
            # transaction, no model built; anything else resolves below.
            if id_key is not None and txn.get(id_key, db=repos.projects.db) is None:
                return None
            return listing(txn, project)

        if project is None or id_key is not None:
            found = self._read(body)
            if found is not None:
                return found
        project_id = self.find_project(project).id  # type: ignore[arg-type]
        return self._read(lambda txn: listing(txn, project_id))

    def counts(self) -> dict[str, int]:
        """Records per kind: collections, projects, artifacts, deployments, sources (O(1) each)."""
        repos = self._repos

        def body(txn: Txn) -> dict[str, int]:
            return {
                "collections": repos.collections.count(txn),
                "projects": repos.projects.count(txn),
                "artifacts": repos.artifacts.count(txn),
                "deployments": repos.deployments.count(txn),
                "sources": repos.sources.count(txn),
            }

        return self._read(body)

    def list_collections(self) -> list[Collection]:
        """Return every collection read by a refresh, in name order."""
        return self._read(lambda txn: list(self._repos.collections.scan(txn)))

    def get_collection(self, name: str) -> Optional[Collection]:
        """Return the collection named ``name``, or ``None``."""
        return self._read(lambda txn: self._repos.collections.get(txn, name))
