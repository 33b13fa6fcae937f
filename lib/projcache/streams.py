"""Listings that read through the narrowest index, each from one read snapshot.

A listing is one read transaction, read a page (``PAGE`` records) at a time
and streamed (:meth:`~projcache.storage.Storage.stream`): it never mixes two
writes.  The price: a consumer that stops half-way pins the snapshot's pages
(the file may grow meanwhile) until the iterator is closed or collected.

A little over 400 lines on purpose: every listing's scan and frame check is here, the
generic streamed ones beside the one-loop forms of the hot listings
(:func:`project_deployments`) that must list exactly what they list.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from itertools import repeat, takewhile
from operator import itemgetter

import orjson

from . import codec
from .repository import Repositories
from .storage import Txn

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, TypeVar

__all__ = [
    "PAGE",
    "SORTED_KEYS",
    "WALK_RATIO",
    "artifact_pages",
    "deployment_counts",
    "flatten",
    "iter_deployment_payloads",
    "page_of_stream",
    "project_artifact_pages",
    "project_deployments",
]

if TYPE_CHECKING:
    T = TypeVar("T")
PAGE = 256
SORTED_KEYS = 4096  # a facet listing of more matches may walk the keys (see _facet_step)
WALK_RATIO = 4  # ... when the matches are at least 1/WALK_RATIO of all artifacts
_FRAME_HEAD = struct.Struct(">BI").unpack_from
_PLAIN = codec.FORMAT_VERSION
_crc32 = zlib.crc32
_VALUE = itemgetter(1)
_AFTER_HEAD = itemgetter(slice(5, None))  # a frame's payload (a copy: the values are bytes)
_VERSION_OF = itemgetter(0)
if TYPE_CHECKING:
    PageStreamer = Callable[
        [Callable[[Txn, Any], tuple[list[list[bytes]], Any]], Any], Iterator[list[bytes]]
    ]


def _key_matches(key: str, type_: Optional[str], collection: Optional[str]) -> bool:
    collection_part, type_part, _name = key.split("/")
    return (type_ is None or type_part == type_) and (
        collection is None or collection_part == collection
    )


def _only(
    step: Callable[[Txn, Any], tuple[list[bytes], Any]], wanted: Callable[[Txn], set[str]]
) -> Callable[[Txn, Any], tuple[list[bytes], Any]]:
    """``step`` keeping only the artifacts whose key is in ``wanted(txn)``.

    ``wanted`` is read once, in the listing's own transaction (with its first
    chunk), so the filter and the records come from the same snapshot.
    """

    def filtered(txn: Txn, state: tuple[Optional[set[str]], Any]) -> tuple[list[bytes], Any]:
        keys, inner = state
        if keys is None:
            keys = wanted(txn)
        found, rest = step(txn, inner)
        kept = [payload for payload in found if orjson.loads(payload)["key"] in keys]
        return kept, (None if rest is None else (keys, rest))

    return filtered


def _facet_step(
    repos: Callable[[], Repositories],
    facet: str,
    value: str,
    type_: Optional[str],
    collection: Optional[str],
) -> Callable[[Txn, Any], tuple[list[bytes], Any]]:
    """The paging step of a listing by facet (``type`` or ``tag``), in key order.

    A facet of at most ``SORTED_KEYS`` artifacts, or of fewer than one in
    ``WALK_RATIO`` of all artifacts, is listed from its keys, sorted; a larger
    one by walking the artifact keys in order (within the collection's prefix,
    if any) and keeping those of the type (read from the key) or whose id is in
    the tag's bitmap: memory stays a page plus the (compressed) bitmap, not one
    string per match, at the price of stepping over the keys that do not match.
    """
    prefix = f"{collection}/".encode() if collection is not None else b""

    def step(txn: Txn, state: tuple[Any, Any]) -> tuple[list[bytes], Any]:
        plan, position = state
        current = repos()
        if plan is None:
            index = current.facets.index
            docs = index.facet(txn, facet, value) - index.deleted(txn)
            # Walk only when the facet is big and a large part of all artifacts: at most
            # WALK_RATIO keys stepped over per match, so the walk costs little beside reading
            # the records, and a listing of (nearly) everything holds no key list at all.
            size = len(docs)
            if size <= SORTED_KEYS or size * WALK_RATIO < current.artifacts.count(txn):
                plan = _sorted_keys(txn, current, docs, type_, collection)
                position = 0
            elif facet == "type":
                plan, position = True, prefix  # the key names the type: no bitmap needed
            else:  # the same set as the sorted keys, as a bitmap
                plan, position = docs, prefix
        if isinstance(plan, list):
            batch = plan[position : position + PAGE]
            rest = (plan, position + PAGE) if position + PAGE < len(plan) else None
        else:
            keys, after = _keys_in(txn, current, plan, prefix, position, type_, collection)
            batch = [key.encode() for key in keys]
            rest = None if after is None else (plan, after)
        return _records(txn, current, batch), rest

    return step


def _sorted_keys(
    txn: Txn, repos: Repositories, docs: Any, type_: Optional[str], collection: Optional[str]
) -> list[bytes]:
    """The stored (UTF-8) keys of the artifact ids ``docs`` that pass the type and collection
    filters, in key order.

    One ``getmulti`` reads every id's key, and the keys stay bytes: UTF-8 bytes sort
    as their text does, and the records are read by these same bytes (a decode
    and an encode per match saved, issue 15: list by tag <= 2x raw per record).
    """
    keys = sorted(repos.facets.ids.keys_of(txn, docs))
    if type_ is None and collection is None:
        return keys
    return [k for k in keys if _key_matches(k.decode("utf-8"), type_, collection)]


def _records(txn: Txn, repos: Repositories, keys: list[bytes]) -> list[bytes]:
    """The checked JSON of the artifacts stored under ``keys`` (in that order; a key not
    stored is left out), read in ``txn``.

    One ``getmulti`` reads the page; when every frame is plain (``0x01``), the CRCs are
    checked in C loops (map over builtins), as :func:`project_deployments` does.
    Anything else (a record frame, a compressed one, a bad one) is checked record by
    record, as :meth:`~projcache.repository.Repositories` reads do.

    Raises:
        CorruptRecordError: a frame fails its check (naming the record).
    """
    items = txn.cursor(repos.artifacts.db).getmulti(keys)
    raws = list(map(_VALUE, items))
    try:
        heads = list(map(_FRAME_HEAD, raws))
    except struct.error:  # a frame shorter than its head
        return _checked_records(items)
    # The format bytes first: a page with a record frame (a body) goes record by record
    # without computing any CRC twice.
    if list(map(_VERSION_OF, heads)).count(_PLAIN) != len(heads):
        return _checked_records(items)
    payloads = list(map(_AFTER_HEAD, raws))
    if heads == list(zip(repeat(_PLAIN), map(_crc32, payloads))):
        return payloads
    return _checked_records(items)


def _checked_records(items: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """The checked JSON of each artifact frame of ``items`` (key, frame), one at a time.

    Raises:
        CorruptRecordError: a frame fails its check (naming the record).
    """
    found: list[bytes] = []
    checked = codec.checked_payload
    for key, raw in items:
        payload = checked(raw)
        if payload is None:
            payload = codec.unframe(raw, what=f"artifacts[{bytes(key).decode('utf-8')!r}]")
        found.append(payload)
    return found


def _keys_in(
    txn: Txn,
    repos: Repositories,
    docs: Any,
    prefix: bytes,
    start: bytes,
    type_: Optional[str],
    collection: Optional[str],
) -> tuple[list[str], Optional[bytes]]:
    """Up to ``PAGE`` artifact keys from ``start`` (in key order) whose id is in ``docs``
    (``True``: every key of the type), and the key to resume from (``None`` at the end of
    ``prefix``)."""
    cursor = txn.cursor(repos.artifacts.db)
    if not cursor.set_range(start):
        return [], None
    keys: list[str] = []
    for raw in cursor.iternext(keys=True, values=False):
        key = bytes(raw)
        if not key.startswith(prefix):
            return keys, None
        if len(keys) == PAGE:
            return keys, key
        text = key.decode("utf-8")
        if _key_matches(text, type_, collection):
            if docs is True:
                keys.append(text)
                continue
            doc = repos.facets.ids.id_of(txn, text)
            if doc is not None and doc in docs:
                keys.append(text)
    return keys, None


def _in_pages(
    step: Callable[[Txn, Any], tuple[list[T], Any]],
) -> Callable[[Txn, Any], tuple[list[list[T]], Any]]:
    """``step`` handing its chunk out as one item (none for an empty chunk), so that
    :meth:`~projcache.storage.Storage.stream` yields pages: a consumer that builds
    models builds a page's at once, and no generator is resumed per record."""

    def paged(txn: Txn, state: Any) -> tuple[list[list[T]], Any]:
        found, rest = step(txn, state)
        return ([found] if found else []), rest

    return paged


def flatten(
    pages: Iterator[list[Any]], convert: Optional[Callable[[list[Any]], list[Any]]] = None
) -> Iterator[Any]:
    """The items of ``pages`` (each page passed through ``convert`` first, if given: e.g.
    a page of JSON made a page of models in one call), one at a time.

    Closing this closes ``pages`` (and with it the listing's read transaction).
    """
    try:
        if convert is None:
            for page in pages:
                yield from page
        else:
            for page in pages:
                yield from convert(page)
    finally:
        close = getattr(pages, "close", None)
        if close is not None:
            close()


def artifact_pages(
    stream: PageStreamer,
    repos: Callable[[], Repositories],
    type_: Optional[str],
    collection: Optional[str],
    tag: Optional[str],
    wanted: Optional[Callable[[Txn], set[str]]] = None,
) -> Iterator[list[bytes]]:
    """Yield the JSON of matching artifacts in key order, a page at a time, from one
    read snapshot.

    A tag or type filter reads its facet list; a collection filter alone is a
    prefix scan of the artifact keys; no filter is a full scan.  Records are
    read ``PAGE`` at a time, all in the same read transaction
    (:meth:`~projcache.storage.Storage.stream`).  ``wanted(txn)``, when given,
    names the keys to keep (e.g. the artifacts deployed in a project), read in
    that same transaction.  No page is empty.
    """
    step: Callable[[Txn, Any], tuple[list[bytes], Any]]
    start: Any
    if tag is not None or type_ is not None:
        facet, value = ("tag", tag) if tag is not None else ("type", type_)
        assert value is not None
        step, start = _facet_step(repos, facet, value, type_, collection), (None, None)
    else:
        prefix = f"{collection}/" if collection is not None else ""

        def by_key(txn: Txn, start_key: str) -> tuple[list[bytes], Optional[str]]:
            page = list(repos().artifacts.scan_payloads(txn, prefix, start_key, PAGE + 1))
            rest = page[PAGE][0] if len(page) > PAGE else None
            return [payload for _key, payload in page[:PAGE]], rest

        step, start = by_key, ""
    if wanted is not None:
        step, start = _only(step, wanted), (None, start)
    return stream(_in_pages(step), start)


def project_artifact_pages(
    stream: PageStreamer,
    repos: Callable[[], Repositories],
    project_id: str,
    state: Optional[str],
    type_: Optional[str],
    collection: Optional[str],
    tag: Optional[str],
) -> Iterator[list[bytes]]:
    """Yield the JSON of the artifacts deployed in a project, in key order, a page at a
    time (none empty), from one snapshot.

    What :func:`artifact_pages` with ``wanted`` = the project's deployed keys
    lists, in memory of a page whatever the project holds: a project's
    deployment keys (``<project id> NUL <artifact key> NUL <profile>``) come in
    artifact key order, so the project's deployments are walked ``PAGE``
    artifacts at a time and each artifact is read by its key.  An artifact is
    listed once however many profiles it is deployed to, if one of its
    deployments is in ``state`` (any, for ``None``) and it passes the type and
    collection filters (read from the key) and the tag filter (the tag's bitmap).
    """
    prefix = codec.deployment_prefix(project_id)
    wanted_state = None if state is None else state.encode()

    def step(
        txn: Txn, position: tuple[bytes, Optional[str], Any]
    ) -> tuple[list[bytes], Optional[tuple[bytes, Optional[str], Any]]]:
        start, last, tagged = position
        current = repos()
        if tag is not None and tagged is None:
            index = current.facets.index
            tagged = index.facet(txn, "tag", tag) - index.deleted(txn)
        cursor = txn.cursor(current.deployments.db)
        found: list[bytes] = []
        if not cursor.set_range(start):
            return found, None
        for raw_key, raw in cursor.iternext():
            key = bytes(raw_key)
            if not key.startswith(prefix):
                break
            _project, artifact_key, _profile = codec.parse_deployment_key(key)
            if artifact_key == last:
                continue  # listed already (deployed to another profile too)
            if len(found) == PAGE:
                return found, (key, last, tagged)
            if wanted_state is not None:
                payload = codec.checked_payload(raw)
                if payload is None:
                    payload = codec.unframe(raw, what=f"deployments[{key!r}]")
                if orjson.loads(payload)["state"].encode() != wanted_state:
                    continue
            if not _key_matches(artifact_key, type_, collection):
                continue
            if tagged is not None:
                doc = current.facets.ids.id_of(txn, artifact_key)
                if doc is None or doc not in tagged:
                    continue
            record = current.artifacts.get_payload(txn, artifact_key)
            if record is not None:
                found.append(record)
                last = artifact_key
        return found, None

    return stream(_in_pages(step), (prefix, None, None))


def _of_type(type_: Optional[str]) -> Callable[[bytes], bool]:
    """Whether a deployment key's artifact is of ``type_`` (any, for ``None``): reads no record.

    A key is ``<project id> NUL <collection>/<type>/<name> NUL <profile>``.
    """
    if type_ is None:
        return lambda key: True
    wanted = type_.encode()
    return lambda key: bytes(key).split(codec.SEPARATOR)[1].split(b"/")[1] == wanted


def project_deployments(
    txn: Txn, repos: Repositories, project_id: Optional[str], id_key: Optional[bytes] = None
) -> list[bytes]:
    """One project's deployments (all of them for ``None``) in key order, read in ``txn``.

    What :func:`iter_deployment_payloads` lists without filters, in one loop: the
    prefix scan and each frame's check (the plain frame inline, as
    :meth:`~projcache.storage.Storage.get_payload` does).
    ``list_deployments(project)`` is a few records, and the layers of
    generators the filtered listings stack cost as much as the records did
    (issue 15: models <= 2x raw per record).

    ``id_key`` is ``project_id`` already encoded and checked as a key, when the
    caller has it.

    Raises:
        CorruptRecordError: a frame fails its check (naming the record).
    """
    if id_key is not None:
        prefix = id_key + codec.SEPARATOR
    else:
        prefix = codec.deployment_prefix(project_id) if project_id else b""
    cursor = txn.cursor(repos.deployments.db)
    if not (cursor.set_range(prefix) if prefix else cursor.first()):
        return []
    if not prefix:
        return _checked_each(cursor.iternext(), b"")
    # The project's keys are exactly those in [prefix, prefix with its last byte + 1)
    # (the prefix ends in NUL): ``(key, value) < (end,)`` compares the keys, so the scan
    # and every frame's check run in C loops (map over builtins, no bytecode per record).
    # A frame that is not plain or fails its CRC sends the batch to _checked_each.
    items = list(takewhile((prefix[:-1] + b"\x01",).__gt__, cursor.iternext()))
    raws = list(map(_VALUE, items))
    payloads = list(map(_AFTER_HEAD, raws))
    try:
        heads = list(map(_FRAME_HEAD, raws))
    except struct.error:  # a frame shorter than its head
        return _checked_each(items, prefix)
    if heads == list(zip(repeat(_PLAIN), map(_crc32, payloads))):
        return payloads
    return _checked_each(items, prefix)


def _checked_each(items: Iterable[tuple[bytes, bytes]], prefix: bytes) -> list[bytes]:
    """The payloads of ``items`` (key, frame) up to the first key outside ``prefix``, each
    frame checked (the plain frame inline, as :meth:`~projcache.storage.Storage.get_payload`
    does).

    Raises:
        CorruptRecordError: a frame fails its check (naming the record).
    """
    found: list[bytes] = []
    append = found.append
    head, plain, crc32, checked = _FRAME_HEAD, _PLAIN, _crc32, codec.checked_payload
    for key, raw in items:
        if not key.startswith(prefix):
            break
        payload: Optional[bytes] = None
        if len(raw) >= 5:
            version, crc = head(raw)
            if version == plain:
                payload = raw[5:]
                if crc32(payload) != crc:
                    payload = None
        if payload is None:
            payload = checked(raw)
            if payload is None:
                payload = codec.unframe(raw, what=f"deployments[{bytes(key)!r}]")
        append(payload)
    return found


def iter_deployment_payloads(
    txn: Txn,
    repos: Repositories,
    project_id: Optional[str],
    state: Optional[str],
    artifact: Optional[str] = None,
    profile: Optional[str] = None,
    type_: Optional[str] = None,
) -> Iterator[bytes]:
    """Yield the JSON of the deployments of one project (prefix scan), in one state (index),
    of one artifact (the ``deployments-by-artifact`` index), to one profile and/or of one
    artifact type (both read from the key, not the record), one at a time, read in ``txn``.

    Consume it before ``txn`` ends; memory is one record whatever the number
    of matches (a page with its total, :func:`page_of_stream`, keeps only the page).
    """
    if artifact is not None:
        if type_ is not None and artifact.split("/")[1:2] != [type_]:
            return
        for owner, owner_profile in repos.deployment_index.targets_of(txn, artifact):
            if (project_id is not None and owner != project_id) or (
                profile is not None and owner_profile != profile
            ):
                continue
            raw = txn.get(
                codec.deployment_key(owner, artifact, owner_profile), db=repos.deployments.db
            )
            if raw is None:
                continue
            payload = codec.unframe(raw, what="deployment")
            if state is None or orjson.loads(payload)["state"] == state:
                yield payload
        return
    # The profile is the key's last part: filtering on it reads no record.
    suffix = None if profile is None else codec.SEPARATOR + profile.encode()
    typed = _of_type(type_)
    if state is None:
        for key, payload in repos.deployments.scan_project(txn, project_id):
            if (suffix is None or key.endswith(suffix)) and typed(key):
                yield payload
        return
    prefix = codec.deployment_prefix(project_id) if project_id else b""
    for key in repos.deployment_index.keys_in_state(txn, state):
        if key.startswith(prefix) and (suffix is None or key.endswith(suffix)) and typed(key):
            raw = txn.get(key, db=repos.deployments.db)
            if raw is not None:
                yield codec.unframe(raw, what="deployment")


def page_of_stream(items: Iterable[T], offset: int, limit: int) -> tuple[int, list[T]]:
    """How many ``items`` there are and the ``limit`` of them from ``offset``, in one pass.

    Memory is the page, not the listing: what a paged answer with its total
    needs from a listing of any length.
    """
    total = 0
    page: list[T] = []
    end = offset + limit
    for item in items:
        if offset <= total < end:
            page.append(item)
        total += 1
    return total, page


def deployment_counts(txn: Txn, repos: Repositories) -> dict[str, dict[str, int]]:
    """Deployments per project id and state, from the ``deployments-by-state`` index alone.

    One pass over the index's keys (no record is read): the cost is one key
    per deployment, whatever the number of projects.
    """
    counts: dict[str, dict[str, int]] = {}
    for state in codec.DEPLOYMENT_STATES:
        for key in repos.deployment_index.keys_in_state(txn, state):
            project_id = bytes(key).split(codec.SEPARATOR, 1)[0].decode()
            per_state = counts.setdefault(project_id, {})
            per_state[state] = per_state.get(state, 0) + 1
    return counts
