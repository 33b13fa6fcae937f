"""The write side of :class:`~projcache.cache.ProjectCache`: put and delete records.

A mixin, like :class:`~projcache.reads.CacheReads`: every method validates
first, then makes exactly one write transaction through
:mod:`projcache.mutations` (the only writer of records), so readers see all of
a change or none of it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from . import codec
from .errors import (
    ArtifactNotFound,
    InvalidRecordError,
    KeyTooLongError,
    ProjectNotFound,
    as_argument_error,
)
from .reads import CacheReads

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar, Union

    from .models import Artifact, Deployment, Project
    from .storage import Txn

__all__ = ["CacheWrites"]

if TYPE_CHECKING:
    T = TypeVar("T")


_mutations_module: Any = None
_artifact_validator: Any = None  # models.validate of an Artifact (see put_artifacts)


def _mutations() -> Any:
    """:mod:`projcache.mutations`, imported on first use (the write side: read-only CLI calls
    never load it); kept here, as an import statement in every single write cost ~1 us."""
    global _mutations_module, _artifact_validator
    if _mutations_module is None:
        from . import mutations
        from .models import Artifact, validate

        _artifact_validator = functools.partial(validate, Artifact)
        _mutations_module = mutations
    return _mutations_module


class CacheWrites(CacheReads):
    """Write methods shared by every :class:`~projcache.cache.ProjectCache` handle."""

    if TYPE_CHECKING:

        def _write(self, fn: Callable[[Txn], T]) -> T: ...

    def _put_many(self, model_name: str, items: Iterable[Any], put: Callable[..., Any]) -> int:
        """Validate every item as ``model_name``, then ``put`` them all in one transaction."""
        from . import models

        model = getattr(models, model_name)
        records = [models.validate(model, item) for item in items]
        extra: list[tuple[Any, ...]] = [()] * len(records)
        if model_name == "Artifact":
            from . import mutations

            # Key order fills LMDB's pages (appends split full pages) and gives a batch's ids
            # in key order; a stable sort keeps the last of two records with one key last.
            records.sort(key=lambda record: record.key)
            if len(records) > 1:
                # A batch is tokenized and stemmed before its transaction, all at once: the
                # writer lock is not held meanwhile, and each distinct word is stemmed once.
                # (A single record is not: an update tokenizes only the texts it changed.)
                fields = mutations.index_fields_many(records)

                def batch(txn: Txn) -> int:
                    mutations.put_artifacts(txn, self._repos, records, fields)
                    return len(records)

                return self._write(batch)

        def body(txn: Txn) -> int:
            repos = self._repos
            for record, more in zip(records, extra):
                put(txn, repos, record, *more)
            return len(records)

        return self._write(body) if records else 0

    def put_artifacts(self, artifacts: Iterable[Union[Artifact, dict[str, Any]]]) -> int:
        """Insert or replace artifacts in one transaction; return how many were written.

        Every record is validated before anything is written; the search index,
        facets and the states of their deployments are updated in the same transaction.

        Raises:
            InvalidRecordError: a record is invalid (nothing is written).
        """
        mutations = _mutations()

        if type(artifacts) is list and len(artifacts) == 1:
            # One record (an embedder's single write): validated and put straight, without
            # _put_many's batch machinery (its model lookup, sort and zip: ~3 us of ~200).
            record = _artifact_validator(artifacts[0])

            def single(txn: Txn) -> int:
                mutations.put_artifact(txn, self._repos, record)
                return 1

            return self._write(single)
        return self._put_many("Artifact", artifacts, mutations.put_artifact)

    def delete_artifact(self, key: str) -> None:
        """Remove an artifact and its index entries; its deployments become ``missing``.

        Raises:
            InvalidArgumentError: ``key`` is not ``<collection>/<type>/<name>`` (an argument).
            ArtifactNotFound: no such artifact.
        """
        mutations = _mutations()

        try:  # (as_argument_error() inline: its context manager cost a single delete ~2 us)
            codec.parse_artifact_key(key)
        except KeyTooLongError:
            raise
        except InvalidRecordError:
            with as_argument_error():
                raise
        if not self._write(lambda txn: mutations.delete_artifact(txn, self._repos, key)):
            raise ArtifactNotFound(f"no artifact {key!r} in the cache")

    def put_projects(self, projects: Iterable[Union[Project, dict[str, Any]]]) -> int:
        """Insert or replace projects in one transaction; return how many were written."""
        from . import mutations  # the write side: not loaded by read-only CLI calls

        return self._put_many("Project", projects, mutations.put_project)

    def delete_project(self, project_id: str) -> None:
        """Remove a project and all its deployments in one transaction.

        Raises:
            ProjectNotFound: no such project.
        """
        from . import mutations  # the write side: not loaded by read-only CLI calls

        if not self._write(lambda txn: mutations.delete_project(txn, self._repos, project_id)):
            raise ProjectNotFound(f"no project {project_id!r} in the cache")

    def put_deployments(self, deployments: Iterable[Union[Deployment, dict[str, Any]]]) -> int:
        """Insert or replace deployments in one transaction, computing each one's state.

        Raises:
            InvalidRecordError: a record is invalid or names a project not in the cache.
        """
        from . import mutations  # the write side: not loaded by read-only CLI calls

        return self._put_many("Deployment", deployments, mutations.put_deployment)

    def delete_deployment(
        self, project_id: str, artifact_key: str, profile: str = "claude_code"
    ) -> bool:
        """Remove one deployment (of ``artifact_key`` to ``profile``); return whether it existed."""
        from . import mutations  # the write side: not loaded by read-only CLI calls

        return self._write(
            lambda txn: mutations.delete_deployment(
                txn, self._repos, project_id, artifact_key, profile
            )
        )
