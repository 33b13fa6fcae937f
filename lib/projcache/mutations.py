"""Consistent writes: each function changes a record *and* every index that depends on it.

All functions run inside a write transaction they are given, so a caller that
puts several of them in one transaction publishes all of it or none of it.
This is the only module that writes records, which keeps the invariants that
``verify`` checks in one place:

* every artifact has one integer id (``artifact-ids`` <-> ``artifact-keys``), and
  that id is listed in exactly the bitmaps its record implies
  (:func:`index_names`: its terms per field, its type, collection, tags,
  ``managed`` and name-length facets);
* every deployment's project exists, its ``state`` follows
  :func:`projcache.deployment_state.deployment_state`, and the two deployment indexes
  mirror the deployment records.

Over 400 lines on purpose: the names an artifact is indexed under are made here, for a
single write and for a batch (which lists new ids per name in one go), next to the writes
that use them, so that both ways keep the invariant above in one place.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

from . import postings
from .codec import DEFAULT_PROFILE
from .deployment_state import deployment_state
from .errors import InvalidArgumentError, InvalidRecordError
from .postings import ODD_NAMES, facet_name
from .repository import Repositories
from .storage import Txn
from .terms import (
    MAX_NAME_BUCKET,
    field_terms_utf8,
    field_terms_utf8_many,
    field_tokens_utf8_many,
    name_bucket,
    plain_name,
)
from .vocabulary import DATABASES, META_DB

if TYPE_CHECKING:
    from .models import Artifact, Deployment, DeploymentState, Project

# One artifact's index entries before they are names: its terms per field code, its facet
# names, and None; or (a batch's, see index_fields_many) its tokens per field code, its
# facet names and a stem table of those tokens (the terms are the tokens and their stems).
IndexFields = tuple[dict[bytes, set[bytes]], list[bytes], Optional[Mapping[bytes, bytes]]]

__all__ = [
    "clear_all",
    "collection_known",
    "delete_artifact",
    "delete_deployment",
    "delete_project",
    "index_artifact",
    "index_fields_many",
    "index_names",
    "index_names_many",
    "names_of",
    "packed_index_names",
    "put_artifact",
    "put_artifacts",
    "put_deployment",
    "put_project",
    "reindex_artifact",
    "relisted_names",
    "restate_collection",
    "restate_deployments_of",
    "state_of",
    "unindex_artifact",
]


def index_names(artifact: Artifact) -> list[bytes]:
    """The names of every bitmap that lists ``artifact`` (what its record implies)."""
    # names_of(_fields_many(...)), name for name: the packed names split (one join and
    # one split, no copies of the texts or the facet names).
    return packed_index_names(artifact).split(b"\xff")


def index_names_many(artifacts: Sequence[Artifact]) -> list[list[bytes]]:
    """:func:`index_names` of each artifact, in order (a batch stems each word once)."""
    return _names_many(artifacts, _TEXT_FIELDS)


def packed_index_names(artifact: Artifact) -> bytes:
    """``b"\\xff".join(index_names(artifact))``: the names as a log entry holds them (see
    :meth:`~projcache.postings.BitmapIndex.add_packed`), made by joins alone."""
    parts = _facet_names_of(artifact)
    for code, terms in field_terms_utf8(artifact.__dict__).items():
        parts.append(_PACKED_JOINS[code].join(terms) + _TERM_SUFFIXES[code])
    return b"\xff".join(parts)


# The record fields of the indexed texts, grouped per field code of projcache.terms.
_FIELD_GROUPS = (("name",), ("title", "tags"), ("description",), ("body",))
_TEXT_FIELDS = tuple(key for group in _FIELD_GROUPS for key in group)


def relisted_names(old: Artifact, artifact: Artifact) -> tuple[set[bytes], set[bytes]]:
    """The names ``old`` is listed under and ``artifact`` is not, and the other way round.

    Equal to the differences of their :func:`index_names`, but only the texts that
    changed are tokenized (an edited description leaves the body alone), the facet names
    are made only when what they are made of changed, and the terms are compared per field
    before any is made a name (an edited description changes a few of its terms)."""
    was, now = old.__dict__, artifact.__dict__  # (the fields; a frozen model's never change)
    # _fields_many((old, artifact), changed keys, facets=...) spelled out: plain loops, no
    # generator per group, the texts gathered as they are compared (an update's ~2 us).
    texts_before: dict[str, Any] = {}
    texts_after: dict[str, Any] = {}
    for group in _FIELD_GROUPS:
        for key in group:
            if was[key] != now[key]:
                for name in group:  # the whole group (a field code's texts)
                    texts_before[name] = was[name]
                    texts_after[name] = now[name]
                break
    before, after = field_terms_utf8(texts_before), field_terms_utf8(texts_after)
    names_before: list[bytes] = []
    names_after: list[bytes] = []
    for key in _FACET_INPUTS:
        if was[key] != now[key]:
            names_before, names_after = _facet_names_of(old), _facet_names_of(artifact)
            break
    removed, added = set(names_before), set(names_after)
    removed, added = removed - added, added - removed
    for code in before.keys() | after.keys():
        terms_before, terms_after = before.get(code, _NO_TERMS), after.get(code, _NO_TERMS)
        end = _TERM_ENDS[code]
        for terms, out in (
            (terms_before - terms_after, removed),
            (terms_after - terms_before, added),
        ):
            if terms:  # term_name() of each, as names_of() makes them
                out.update((end.join(terms) + end).split(b"\x01")[:-1])
    return removed, added


_NO_TERMS: frozenset[bytes] = frozenset()


# What an artifact's facet names are made of (see _fields_many).
_FACET_INPUTS = ("type", "collection", "tags", "managed", "name")


def _names_many(artifacts: Sequence[Artifact], keys: tuple[str, ...]) -> list[list[bytes]]:
    """The facet names of each artifact and the term names of its texts ``keys``."""
    return [names_of(indexed) for indexed in _fields_many(artifacts, keys)]


def index_fields_many(artifacts: Sequence[Artifact]) -> list[IndexFields]:
    """What :func:`index_names` lists of each artifact, not yet made names: its terms per
    field code and its facet names (:func:`names_of` makes them names).  A batch of more
    than :data:`~projcache.postings.MERGE_AT` artifacts, which :func:`put_artifacts`
    inverts straight into ids per name (and merges), gets each artifact's tokens and
    their stem table instead of its terms: each distinct token is stemmed once there."""
    stemmed = len(artifacts) <= postings.MERGE_AT  # (a smaller batch logs names per entry)
    return _fields_many(artifacts, _TEXT_FIELDS, stemmed=stemmed)


def names_of(indexed: IndexFields) -> list[bytes]:
    """The bitmap names of one artifact's :func:`index_fields_many` entry."""
    fields, names, stems = indexed
    names = list(names)
    for code, terms in fields.items():
        if stems is not None:  # tokens: the terms are they and their stems
            terms = terms.union(map(stems.__getitem__, terms))
        # term_name() of every term in two C calls (terms are letters and digits:
        # never NUL or 0x01).
        end = _TERM_ENDS[code]
        names.extend((end.join(terms) + end).split(b"\x01")[:-1])
    return names


def _fields_many(
    artifacts: Sequence[Artifact],
    keys: tuple[str, ...],
    *,
    facets: bool = True,
    stemmed: bool = True,
) -> list[IndexFields]:
    """The terms per field code of each artifact's texts ``keys``, and its facet names
    (none unless ``facets``); unless ``stemmed``, more than two artifacts get their tokens
    and a stem table instead of their terms (see :data:`IndexFields`)."""
    texts = [{key: getattr(artifact, key) for key in keys} for artifact in artifacts]
    # One or two artifacts (a write, an update's old and new record): each alone.
    stems: Optional[Mapping[bytes, bytes]] = None
    if len(texts) <= 2:
        terms = list(map(field_terms_utf8, texts))
    elif stemmed:
        terms = field_terms_utf8_many(texts)
    else:
        terms, stems = field_tokens_utf8_many(texts)
    if not facets:
        return [(fields, [], stems) for fields in terms]
    return [
        (fields, _facet_names_of(artifact), stems) for artifact, fields in zip(artifacts, terms)
    ]


def _facet_names_of(artifact: Artifact) -> list[bytes]:
    """The facet names of ``artifact``: its type, collection, tags, managed, name length."""
    names: list[bytes] = []
    for facet in (("type", artifact.type), ("collection", artifact.collection)):
        name = _facet_names.get(facet)
        if name is None:
            name = _facet_name(*facet)
        names.append(name)
    for tag in set(artifact.tags):
        name = _facet_names.get(("tag", tag))
        if name is None:
            name = _facet_name("tag", tag)
        names.append(name)
    if artifact.managed:
        names.append(_MANAGED)
    names.append(_LEN_NAMES[name_bucket(artifact.name)])
    if not plain_name(artifact.name):  # (the tie-break's name-length floor skips none)
        names.append(ODD_NAMES)
    return names


# (facet, value) -> facet_name(facet, value): writes share few types, collections and tags,
# and a single write made each of its names again.  Replaced by an empty one when full (a
# thread reading the old one still finds what it held), so its memory stays bounded.
_facet_names: dict[tuple[str, str], bytes] = {}
_FACET_NAMES_MAX = 4096


def _facet_name(facet: str, value: str) -> bytes:
    """:func:`~projcache.postings.facet_name`, remembered in :data:`_facet_names`."""
    global _facet_names
    names = _facet_names
    if len(names) >= _FACET_NAMES_MAX:
        names = _facet_names = {}
    name = names[facet, value] = facet_name(facet, value)
    return name


def _inverted(pending: list[tuple[int, IndexFields]]) -> dict[bytes, Any]:
    """The ids per bitmap name of new artifacts ``(id, index fields)`` (a list or a bitmap,
    given away): each term is a name once, not once per artifact (a batch of 1,000 has
    ~77,000 (name, id) pairs but ~4,000 names).  Entries of tokens (one stem table, from
    one :func:`index_fields_many`) are gathered per token, and each distinct token's stem
    then lists the ids of every token it is the stem of (~48,000 (token, id) pairs instead
    of ~74,000 (term, id) pairs, and no stemmed set per field)."""
    per_code: dict[bytes, defaultdict[bytes, list[int]]] = {
        code: defaultdict(list) for code in _TERM_ENDS
    }
    facets: defaultdict[bytes, list[int]] = defaultdict(list)
    stems: Optional[Mapping[bytes, bytes]] = None
    for doc, (fields, names, tokens_of) in pending:
        if tokens_of is not None:
            stems = tokens_of
        elif stems is not None:  # (not made by put_artifacts: one index_fields_many call)
            raise InvalidArgumentError("index fields of tokens and of terms mixed")
        for code, terms in fields.items():
            docs_of = per_code[code]
            for term in terms:
                docs_of[term].append(doc)
        for name in names:
            facets[name].append(doc)
    out: dict[bytes, Any] = dict(facets)
    from pyroaring import BitMap as bitmap  # (the write side: reads never need it here)

    for code, docs_of in per_code.items():
        suffix = _TERM_ENDS[code][:-1]
        if stems is None:
            for term, docs in docs_of.items():
                out[term + suffix] = docs
            continue
        stem_of = stems.__getitem__
        derived: dict[bytes, list[list[int]]] = {}  # stem -> the ids of its other tokens
        for token, docs in docs_of.items():
            out[token + suffix] = docs
            stemmed = stem_of(token)
            if stemmed != token:
                found = derived.get(stemmed)
                if found is None:
                    derived[stemmed] = [docs]
                else:
                    found.append(docs)
        for stemmed, lists in derived.items():
            name = stemmed + suffix
            own = out.get(name)
            if own is None and len(lists) == 1:
                out[name] = lists[0]  # (one token per id: a copy of its list is not needed)
                continue
            ids = bitmap() if own is None else bitmap(own)
            for docs in lists:
                ids.update(docs)
            out[name] = ids
    return out


_TERM_ENDS = {code: b"\x00" + code + b"\x01" for code in (b"n", b"t", b"d", b"b")}
# term_name() is term + suffix; joined in a log entry, the suffix and 0xff between terms.
_TERM_SUFFIXES = {code: b"\x00" + code for code in _TERM_ENDS}
_PACKED_JOINS = {code: b"\x00" + code + b"\xff" for code in _TERM_ENDS}
_MANAGED = facet_name("managed", "1")
_LEN_NAMES = {
    bucket: facet_name("len", f"{bucket:02d}") for bucket in range(1, MAX_NAME_BUCKET + 1)
}


def index_artifact(
    txn: Txn, repos: Repositories, artifact: Artifact, names: Optional[list[bytes]] = None
) -> int:
    """Give the artifact an id and list it in its bitmaps (it must not be indexed yet).

    ``names``: its :func:`index_names`, when the caller has them already."""
    doc = repos.index.allocate(txn)
    repos.ids.put(txn, artifact.key, doc)
    if names is None:
        repos.index.add_packed(txn, doc, packed_index_names(artifact))
    else:
        repos.index.add(txn, doc, names)
    return doc


def unindex_artifact(txn: Txn, repos: Repositories, artifact: Artifact) -> None:
    """Unlist the artifact from its bitmaps and forget its id."""
    doc = repos.ids.id_of(txn, artifact.key)
    if doc is None:
        return
    repos.index.remove_packed(txn, doc, packed_index_names(artifact))
    repos.ids.delete(txn, artifact.key, doc)


def _indexed_inputs(artifact: Artifact) -> tuple[Any, ...]:
    """What :func:`index_names` reads of an artifact: equal inputs, equal names."""
    return (
        artifact.name,
        artifact.title,
        artifact.tags,
        artifact.description,
        artifact.body,
        artifact.type,
        artifact.collection,
        artifact.managed,
    )


def reindex_artifact(
    txn: Txn,
    repos: Repositories,
    old: Artifact,
    artifact: Artifact,
    names: Optional[list[bytes]] = None,
) -> None:
    """Bring the bitmaps of a replaced artifact from ``old`` to ``artifact``.

    The id stays (the artifact keeps its place among equals, see
    :mod:`projcache.search`), and only the names that changed are touched: an
    update that does not change what is indexed writes no bitmap at all.
    """
    doc = repos.ids.id_of(txn, old.key)
    if doc is None:  # an artifact without an id: verify reports it; index it anew
        index_artifact(txn, repos, artifact, names)
        return
    if _indexed_inputs(old) == _indexed_inputs(artifact):
        return
    if names is None:
        removed, added = relisted_names(old, artifact)
    else:
        before, after = set(index_names(old)), set(names)
        removed, added = before - after, after - before
    repos.index.relist(txn, doc, removed, added)


def put_artifact(
    txn: Txn,
    repos: Repositories,
    artifact: Artifact,
    names: Optional[list[bytes]] = None,
    *,
    known_collection: bool = False,
    fields: Optional[IndexFields] = None,
    pending: Optional[list[tuple[int, IndexFields]]] = None,
) -> None:
    """Insert or replace an artifact, re-index it and re-state its deployments.

    ``names`` (or ``fields``, its :func:`index_fields_many` entry): the artifact's
    :func:`index_names`, when the caller computed them already (outside the
    transaction, for a whole batch at once).  ``known_collection``: the caller knows the
    cache holds the artifact's collection (it put another artifact of it in this
    transaction): not looked up again.  ``pending``: a new artifact gets its id, and
    ``(id, fields)`` is appended there for the caller to list in its bitmaps
    (:func:`put_artifacts`) before the transaction commits, and its id is mapped
    straight (:meth:`~projcache.postings.IdRepository.put_settled`, the waiting mappings
    settled before the first: the caller's :meth:`~projcache.postings.BitmapIndex.add_many`
    makes the transaction merge)."""
    old = repos.artifacts.get(txn, artifact.key)
    # Whether the collection was known matters only to deployments of its artifacts
    # (restate_collection): one lookup finds there are none (the usual case) before the two
    # that would tell whether it is known.
    known = (
        known_collection
        or old is not None
        or not _deployed_from(txn, repos, artifact.collection)
        or collection_known(txn, repos, artifact.key)
    )
    repos.artifacts.put(txn, artifact)
    if names is None and fields is not None and (old is not None or pending is None):
        names = names_of(fields)
    if old is not None:
        reindex_artifact(txn, repos, old, artifact, names)
    elif pending is not None and fields is not None:
        if not pending:
            # The first new id: this transaction merges (add_many).  The merge would move
            # the waiting id mappings, and the batch's own, anyway: moved now, the batch
            # maps its new ids straight (a batch of 1,000 wrote 2,000 waiting ones).
            repos.ids.settle(txn)
        doc = repos.index.allocate(txn)
        repos.ids.put_settled(txn, artifact.key, doc)
        pending.append((doc, fields))
    else:
        index_artifact(txn, repos, artifact, names)
    restate_deployments_of(txn, repos, artifact.key, artifact)
    if not known:
        restate_collection(txn, repos, artifact.collection)  # it is known from now on


def put_artifacts(
    txn: Txn,
    repos: Repositories,
    artifacts: Sequence[Artifact],
    fields: Sequence[IndexFields],
) -> None:
    """:func:`put_artifact` of each artifact in order, ``fields`` their
    :func:`index_fields_many`.

    A batch looks each collection up once: a collection one of its artifacts was put
    in is known for the next ones.  A batch that merges anyway (more than
    :data:`~projcache.postings.MERGE_AT` artifacts) lists its new artifacts' ids per
    name in one go (:meth:`~projcache.postings.BitmapIndex.add_many`) instead of a log
    entry each."""
    known: set[str] = set()
    pending: Optional[list[tuple[int, IndexFields]]] = (
        [] if len(artifacts) > postings.MERGE_AT else None
    )
    for artifact, indexed in zip(artifacts, fields):
        put_artifact(
            txn,
            repos,
            artifact,
            known_collection=artifact.collection in known,
            fields=indexed,
            pending=pending,
        )
        known.add(artifact.collection)
    if pending:
        repos.index.add_many(txn, [doc for doc, _indexed in pending], _inverted(pending))


def delete_artifact(txn: Txn, repos: Repositories, key: str) -> bool:
    """Remove an artifact and its index entries; its deployments become ``missing``
    (``unknown-collection`` once nothing of its collection is left)."""
    old = repos.artifacts.get(txn, key)
    if old is None:
        return False
    unindex_artifact(txn, repos, old)
    repos.artifacts.delete(txn, key)
    restate_deployments_of(txn, repos, key, None)
    if _deployed_from(txn, repos, old.collection) and not collection_known(txn, repos, key):
        restate_collection(txn, repos, old.collection)
    return True


def _deployed_from(txn: Txn, repos: Repositories, collection: str) -> bool:
    """Whether any deployment is of an artifact of ``collection`` (one cursor lookup):
    without one, :func:`restate_collection` has nothing to do."""
    return _holds_collection(txn, repos.deployment_index.by_artifact.db, collection)


def _holds_collection(txn: Txn, db: Any, collection: str) -> bool:
    """Whether ``db`` (keyed by artifact key) has a key of ``collection``: one cursor lookup,
    not a scan's generator and key decoding (every single write and delete asks)."""
    prefix = (collection + "/").encode()
    cursor = txn.cursor(db)
    return bool(cursor.set_range(prefix)) and cursor.key().startswith(prefix)


def restate_collection(txn: Txn, repos: Repositories, collection: str) -> None:
    """Recompute the state of every deployment of an artifact of ``collection`` that is
    not cached: whether the collection is known decides ``missing`` or
    ``unknown-collection``.  Called when that changes (its first artifact or record
    came, its last went)."""
    prefix = (collection + "/").encode()
    for raw, _count in list(repos.deployment_index.by_artifact.keys_with_prefix(txn, prefix)):
        key = raw.decode()
        if repos.artifacts.get_payload(txn, key) is None:
            restate_deployments_of(txn, repos, key, None)


def collection_known(txn: Txn, repos: Repositories, artifact_key: str) -> bool:
    """Tell whether the cache holds the collection of ``artifact_key``: its record or an artifact.

    A deployment of an artifact that is not cached is ``missing`` when its
    collection is known, ``unknown-collection`` otherwise (see :mod:`projcache.deployment_state`).
    """
    collection = artifact_key.split("/", 1)[0]
    if repos.collections.get_payload(txn, collection) is not None:
        return True
    return _holds_collection(txn, repos.artifacts.db, collection)


def state_of(txn: Txn, repos: Repositories, deployment: Deployment) -> DeploymentState:
    """The state :func:`~projcache.deployment_state.deployment_state` gives ``deployment`` here."""
    artifact = repos.artifacts.get(txn, deployment.artifact_key)
    known = artifact is not None or collection_known(txn, repos, deployment.artifact_key)
    return deployment_state(deployment, artifact, collection_known=known)


def restate_deployments_of(
    txn: Txn, repos: Repositories, key: str, artifact: Artifact | None
) -> None:
    """Recompute the state of every deployment of ``key`` (``artifact`` is its record or None)."""
    index = repos.deployment_index
    if not txn.cursor(index.by_artifact.db).set_key(key.encode()):
        return  # not deployed (most artifacts): one lookup, no list of targets
    targets = index.targets_of(txn, key)
    known = artifact is not None or not targets or collection_known(txn, repos, key)
    for project_id, profile in targets:
        deployment = repos.deployments.get_for(txn, project_id, key, profile)
        if deployment is None:
            continue  # index entry without a record: verify reports it
        state = deployment_state(deployment, artifact, collection_known=known)
        if state != deployment.state:
            _store_deployment(txn, repos, deployment.model_copy(update={"state": state}))


def put_project(txn: Txn, repos: Repositories, project: Project) -> None:
    """Insert or replace a project record (its deployments are untouched)."""
    repos.projects.put(txn, project)


def delete_project(txn: Txn, repos: Repositories, project_id: str) -> bool:
    """Remove a project together with all its deployments and their index entries."""
    if repos.projects.get_payload(txn, project_id) is None:
        return False
    for deployment in list(_deployments_of(txn, repos, project_id)):
        delete_deployment(
            txn, repos, deployment.project_id, deployment.artifact_key, deployment.profile
        )
    repos.projects.delete(txn, project_id)
    return True


def _deployments_of(txn: Txn, repos: Repositories, project_id: str) -> list[Deployment]:
    load = repos.deployments.load
    return [load(payload) for _key, payload in repos.deployments.scan_project(txn, project_id)]


def put_deployment(txn: Txn, repos: Repositories, deployment: Deployment) -> Deployment:
    """Insert or replace a deployment, computing its state; return the stored record.

    Raises:
        InvalidRecordError: the deployment's project is not in the cache.
    """
    if repos.projects.get_payload(txn, deployment.project_id) is None:
        raise InvalidRecordError(
            f"invalid Deployment: field 'project_id': project {deployment.project_id!r} "
            "is not in the cache"
        )
    stored = deployment.model_copy(update={"state": state_of(txn, repos, deployment)})
    _store_deployment(txn, repos, stored)
    return stored


def _store_deployment(txn: Txn, repos: Repositories, deployment: Deployment) -> None:
    project, artifact, profile = deployment.project_id, deployment.artifact_key, deployment.profile
    old = repos.deployments.get_for(txn, project, artifact, profile)
    if old is not None:
        repos.deployment_index.remove(txn, project, artifact, old.state, profile)
    repos.deployments.put(txn, deployment)
    repos.deployment_index.add(txn, project, artifact, deployment.state, profile)


def delete_deployment(
    txn: Txn,
    repos: Repositories,
    project_id: str,
    artifact: str,
    profile: str = DEFAULT_PROFILE,
) -> bool:
    """Remove one deployment (of ``artifact`` to ``profile``) and its index entries;
    return whether it existed."""
    old = repos.deployments.get_for(txn, project_id, artifact, profile)
    if old is None:
        return False
    repos.deployment_index.remove(txn, project_id, artifact, old.state, profile)
    repos.deployments.delete_for(txn, project_id, artifact, profile)
    return True


def clear_all(txn: Txn, dbs: dict[str, Any]) -> None:
    """Empty every sub-database except ``meta`` (schema version and creation time stay)."""
    for name in DATABASES:
        if name != META_DB:
            txn.drop(dbs[name], delete=False)
