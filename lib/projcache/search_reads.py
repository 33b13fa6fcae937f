"""The search methods of :class:`~projcache.cache.ProjectCache` (the engine is :mod:`.search`).

A mixin over :class:`~projcache.reads.CacheReads`: ``search`` builds models,
``search_page_json`` / ``search_json`` return the stored JSON of each hit.
Each search is one read transaction.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from .codec import checked_payload
from .errors import InvalidArgumentError
from .reads import CacheReads, check_type

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple, Optional

    from .models import SearchHit
    from .storage import Txn

__all__ = ["CacheSearch", "SearchPage", "SearchResults"]


class SearchResults(list["SearchHit"]):
    """The hits of one page of a search (a list), plus counts.

    ``total`` counts the artifacts matching every word; ``partial`` says how
    many hits at the end of this page match only some of the words (they fill
    a page the exact matches do not), ``partial_total`` how many such partial
    matches exist (counted only when the exact matches do not fill the page).
    """

    def __init__(
        self,
        hits: Iterable[SearchHit] = (),
        total: int = 0,
        partial: int = 0,
        partial_total: int = 0,
    ):
        super().__init__(hits)
        self.total = total
        self.partial = partial
        self.partial_total = partial_total


if TYPE_CHECKING:

    class SearchPage(NamedTuple):
        """One page of a search as stored JSON: ``hits`` are ``(key, score, JSON bytes)``."""

        hits: list[tuple[str, float, bytes]]
        total: int
        partial: int
        partial_total: int

else:
    # The same tuple without ``typing`` (kept out of a cold CLI call).
    SearchPage = collections.namedtuple("SearchPage", "hits total partial partial_total")
    SearchPage.__doc__ = (
        "One page of a search as stored JSON: ``hits`` are ``(key, score, JSON bytes)``."
    )


_search: Any = None  # projcache.search, imported by the first search (it loads the tokenizer)


def _search_module() -> Any:
    """:mod:`projcache.search` (imported once: a ``from .search import`` in the method cost
    each search an import-system lookup)."""
    global _search
    if _search is None:
        from . import search

        _search = search
    return _search


class CacheSearch(CacheReads):
    """Search methods shared by every :class:`~projcache.cache.ProjectCache` handle."""

    def search(
        self,
        query: str,
        type: Optional[str] = None,
        project: Optional[str] = None,
        limit: int = 20,
        offset: int = 0,
        *,
        collection: Optional[str] = None,
        tag: Optional[str] = None,
        fill: bool = True,
    ) -> SearchResults:
        """Find artifacts by words in their name, title, tags, description and body.

        Artifacts matching every word come first (``.total`` counts them), ranked
        by how strongly the words matched (name > title/tags > description >
        body; exact > stem > prefix, the last word also matching as a prefix),
        then managed first, shorter name, older first.  When they do not fill
        the page, artifacts matching most of the words follow (``.partial``).
        ``project`` (id, name or path) keeps artifacts deployed there; ``fill=False``
        returns exact matches only.
        """
        from .models import SearchHit

        page = self.search_page_json(
            query, type, project, limit, offset, collection=collection, tag=tag, fill=fill
        )
        load = self._repos.artifacts.load
        hits = []
        for key, score, payload in page.hits:
            artifact = load(payload)
            # Built from a stored (validated) record and the index's score: nothing to check.
            hits.append(
                SearchHit.model_construct(
                    key=key, name=artifact.name, type=artifact.type, score=score, artifact=artifact
                )
            )
        return SearchResults(hits, page.total, page.partial, page.partial_total)

    def search_json(
        self,
        query: str,
        type: Optional[str] = None,
        project: Optional[str] = None,
        limit: int = 20,
        offset: int = 0,
        *,
        collection: Optional[str] = None,
        tag: Optional[str] = None,
        fill: bool = True,
    ) -> tuple[list[tuple[str, float, bytes]], int]:
        """Like :meth:`search`, returning ``([(key, score, JSON bytes)], total)`` (no models)."""
        page = self.search_page_json(
            query, type, project, limit, offset, collection=collection, tag=tag, fill=fill
        )
        return page.hits, page.total

    def search_page_json(
        self,
        query: str,
        type: Optional[str] = None,
        project: Optional[str] = None,
        limit: int = 20,
        offset: int = 0,
        *,
        collection: Optional[str] = None,
        tag: Optional[str] = None,
        fill: bool = True,
    ) -> SearchPage:
        """Like :meth:`search`, returning a :class:`SearchPage` of stored JSON (no models)."""
        search = _search_module()
        if limit < 0 or offset < 0:
            raise InvalidArgumentError("limit and offset must not be negative")
        check_type(type)
        project_id = self.find_project(project).id if project is not None else None
        filters = search.QueryFilters(type, collection, tag, project_id)
        repos = self._repos

        def body(txn: Txn) -> SearchPage:
            result = search.run_query(txn, repos, query, filters, limit, offset, fill)
            # The page's records in one getmulti (in C; the keys come from the index's own
            # key db, so they need no checks), each frame CRC-checked as a point read does.
            keys = [key.encode() for key, _score in result.page]
            db = repos.artifacts.db
            if len(keys) == 1:  # (a lookup costs half a cursor's getmulti of one key)
                stored = {keys[0]: txn.get(keys[0], db=db)}
            else:
                stored = dict(txn.cursor(db).getmulti(keys))
            found = []
            for (key, score), raw_key in zip(result.page, keys):
                raw = stored.get(raw_key)
                if raw is None:  # index entry without record: verify reports it
                    continue
                payload = checked_payload(raw)
                if payload is None:  # a damaged frame: the error names the record
                    payload = repos.artifacts.get_payload(txn, key)
                    assert payload is not None  # (unframe raised: the frame failed its check)
                found.append((key, score, payload))
            return SearchPage(found, result.total, result.partial, result.partial_total)

        return self._read(body)
