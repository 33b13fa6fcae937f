"""The records projcache stores and returns, as frozen pydantic v2 models (no I/O here).

Records are validated when they are written.  :func:`validate` turns pydantic's
``ValidationError`` into :class:`~projcache.errors.InvalidRecordError` naming the
first bad field, so callers deal with one exception hierarchy.  Reading them back
without validating again is :mod:`projcache.model_reads` (``from_stored_json`` is
re-exported here).

Over 400 lines on purpose: it is the one page that lists every field of every
record and report (storage-format.md and api-reference.md mirror it field by
field, and tests check the docs against it); each model is short.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import (
    Annotated,
    Any,
    Dict,
    List,
    Literal,
    Optional,
    TypeVar,
    Union,
)

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from . import codec, vocabulary
from .errors import InvalidRecordError
from .model_reads import as_utc, from_stored_json, parse_utc

__all__ = [
    "Artifact",
    "ArtifactType",
    "CacheStats",
    "Collection",
    "Deployment",
    "DeploymentState",
    "Finding",
    "FindingKind",
    "Fingerprint",
    "KnownFingerprint",
    "Project",
    "RawFingerprint",
    "RefreshReport",
    "SearchHit",
    "SourceError",
    "StoredFingerprint",
    "VerifyReport",
    "fingerprint_from_json",
    "from_stored_json",
    "utcnow",
    "validate",
]

# Any type codec.check_type_name accepts: the known ones (codec.ARTIFACT_TYPES)
# and a newer SkillMeat's, kept as declared.
ArtifactType = Annotated[str, AfterValidator(codec.check_type_name)]
DeploymentState = vocabulary.DeploymentStateName
FindingKind = Literal["file", "frame", "model", "index", "source"]


def _check_profile(value: str) -> str:
    return codec.check_profile(value)


# Aware datetimes only, so freshness arithmetic never mixes naive and aware values.
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
# Tags are index keys (see postings.FacetIndex), so they are bounded well under 511 bytes.
Tag = Annotated[str, StringConstraints(min_length=1, max_length=100)]

M = TypeVar("M", bound=BaseModel)


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


def validate(model: type[M], data: Any) -> M:
    """Validate ``data`` (a mapping or a model) as ``model``.

    Raises:
        InvalidRecordError: naming the first invalid field and why.
    """
    try:
        if isinstance(data, model):
            return data
        if isinstance(data, BaseModel):
            data = data.model_dump()
        # model.model_validate(data) without its Python wrapper (every write validates)
        return model.__pydantic_validator__.validate_python(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        first = exc.errors()[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, InvalidRecordError):
            # Our own check inside a validator (its message names the field); keep its class.
            raise type(cause)(f"invalid {model.__name__}: {cause}") from exc
        field = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise InvalidRecordError(
            f"invalid {model.__name__}: field '{field}': {first['msg']}"
        ) from exc


class Artifact(_Record):
    """An artifact of a collection: a skill, command, agent, hook or MCP server.

    ``key`` is ``<collection>/<type>/<name>``; it is derived from those three
    fields when omitted and must agree with them when given.
    """

    key: str = ""
    name: str
    type: ArtifactType
    collection: str
    path: str = ""
    title: Optional[str] = None
    description: str = ""
    tags: List[Tag] = Field(default_factory=list)
    version: Optional[str] = None
    origin: Optional[str] = None
    upstream: Optional[str] = None
    resolved_sha: Optional[str] = None
    resolved_version: Optional[str] = None
    content_hash: Optional[str] = None
    front_matter: Dict[str, Any] = Field(default_factory=dict)
    managed: bool = True
    updated_at: Optional[UtcDatetime] = None
    # The Markdown body, for search only (truncated: see MAX_BODY_CHARS).
    body: str = ""
    added_at: Optional[UtcDatetime] = None

    @model_validator(mode="before")
    @classmethod
    def _fill_key(cls, data: Any) -> Any:
        if isinstance(data, dict):
            body = data.get("body")
            if isinstance(body, str) and len(body) > codec.MAX_BODY_CHARS:
                data = {**data, "body": body[: codec.MAX_BODY_CHARS]}
            if not data.get("key"):
                # (three names, not a list and all() over a generator: every write validates)
                collection, type_, name = data.get("collection"), data.get("type"), data.get("name")
                if isinstance(collection, str) and isinstance(type_, str) and isinstance(name, str):
                    data = {**data, "key": f"{collection}/{type_}/{name}"}
        return data

    @model_validator(mode="after")
    def _check_key(self) -> Artifact:
        expected = codec.artifact_key(self.collection, self.type, self.name)
        if self.key != expected:
            raise ValueError(f"key {self.key!r} does not match {expected!r}")
        codec.encode_key(self.key, what="artifact key")
        return self


class SourceError(_Record):
    """A source file that could not be read during a refresh; its last good data was kept."""

    path: str
    message: str


class _Refreshed(_Record):
    """Freshness shared by projects and collections: one staleness rule for both."""

    refreshed_at: Optional[UtcDatetime] = None
    stale: bool = False
    errors: List[SourceError] = Field(default_factory=list)

    def is_stale(self, ttl_seconds: float, now: Optional[UtcDatetime] = None) -> bool:
        """Tell whether this needs a refresh: invalidated, never refreshed or past the TTL."""
        if self.stale or self.refreshed_at is None:
            return True
        now = now or utcnow()
        # Compare seconds, not timedeltas: timedelta overflows for TTLs past ~2.7 million years.
        return (now - self.refreshed_at).total_seconds() > ttl_seconds

    def age_seconds(self, now: Optional[UtcDatetime] = None) -> Optional[float]:
        """Seconds since the last refresh, or ``None`` when never refreshed."""
        if self.refreshed_at is None:
            return None
        return max(0.0, ((now or utcnow()) - self.refreshed_at).total_seconds())


class Project(_Refreshed):
    """A project folder holding a ``.claude/`` directory.

    ``id`` is derived from ``path`` (see :func:`projcache.codec.project_id_for_path`)
    when omitted; callers should pass the resolved absolute path.  ``errors``
    lists the files the last refresh could not read (their last good data was kept).
    """

    id: str = ""
    name: str
    path: str
    description: str = ""
    managed: bool = True

    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("id") and isinstance(data.get("path"), str):
            data = {**data, "id": codec.project_id_for_path(data["path"])}
        return data

    @model_validator(mode="after")
    def _check_id(self) -> Project:
        codec.deployment_prefix(self.id)  # non-empty, no NUL, within the key limit
        if not self.name:
            raise ValueError("name must not be empty")
        return self


class Collection(_Refreshed):
    """A collection directory (``collection.toml`` plus artifact folders).

    ``name`` is the first part of its artifacts' keys.  ``managed`` is false for
    a folder found by layout alone, without ``collection.toml``.
    """

    name: str
    path: str
    version: Optional[str] = None
    description: str = ""
    managed: bool = True
    artifact_count: int = 0

    @model_validator(mode="after")
    def _check_name(self) -> Collection:
        codec.artifact_key(self.name, "skill", "x")  # same rules as a key part
        codec.encode_key(self.name, what="collection name")
        return self


class Deployment(_Record):
    """An artifact deployed into a project, with its derived state.

    ``profile`` is the SkillMeat deployment profile (``claude_code``,
    ``codex``, ...) and part of the key: one artifact deployed to two profiles
    of a project is two deployments.  ``profile_root`` is the profile's folder
    in the project (``.claude``, ``.agents``, ...), which ``artifact_path`` is
    relative to; ``platform`` is SkillMeat's platform name when it wrote one.
    ``content_hash`` is what was deployed; ``local_hash`` is the hash of the
    files in the project as last seen (``None`` when unknown); ``files_present``
    is ``False`` when the deployed files are gone.  ``state`` is computed by
    :func:`projcache.deployment_state.deployment_state` whenever the deployment or its
    artifact is written; a value passed in is replaced.
    """

    project_id: str
    artifact_key: str
    profile: Annotated[str, AfterValidator(_check_profile)] = codec.DEFAULT_PROFILE
    profile_root: str = ".claude"
    platform: Optional[str] = None
    deployed_at: Optional[UtcDatetime] = None
    artifact_path: str = ""
    content_hash: Optional[str] = None
    local_hash: Optional[str] = None
    files_present: bool = True
    version: Optional[str] = None
    state: DeploymentState = "current"

    @model_validator(mode="after")
    def _check_keys(self) -> Deployment:
        codec.parse_artifact_key(self.artifact_key)
        codec.deployment_key(self.project_id, self.artifact_key, self.profile)
        return self

    @property
    def name(self) -> str:
        """The deployed artifact's name (last part of its key)."""
        return self.artifact_key.rsplit("/", 1)[-1]

    @property
    def type(self) -> str:
        """The deployed artifact's type (middle part of its key)."""
        return self.artifact_key.split("/")[1]


class Fingerprint(_Record):
    """What a source file or directory looked like when it was last read.

    ``mtime_ns``, ``size`` and ``inode`` come from one ``stat``; for a
    directory ``signature`` digests the stats of every file under it, so a
    change anywhere below shows (its ``inode`` is ``fileio.FOLDER_INODE``).
    ``data`` keeps what was parsed from the source, so an unchanged source is
    never opened again.
    """

    path: str
    mtime_ns: int
    size: int
    inode: int
    signature: Optional[str] = None
    content_hash: Optional[str] = None
    read_at: Optional[UtcDatetime] = None
    data: Dict[str, Any] = Field(default_factory=dict)

    def same_stat(self, other: Fingerprint) -> bool:
        """True when ``other`` describes the same bytes on disk as far as stat can tell."""
        return (self.mtime_ns, self.size, self.inode, self.signature) == (
            other.mtime_ns,
            other.size,
            other.inode,
            other.signature,
        )


class StoredFingerprint:
    """A :class:`Fingerprint` read back from the cache, decoded without pydantic.

    A refresh loads one per source and mostly just compares it with a fresh
    ``stat``; building the validated model costs several times the decoding
    itself, so :func:`fingerprint_from_json` builds this instead when the
    payload has exactly the shape :class:`Fingerprint` writes.  Same attributes,
    meant to be read only; never written back (an unchanged source keeps its
    stored record as it is).
    """

    __slots__ = (
        "content_hash",
        "data",
        "inode",
        "mtime_ns",
        "path",
        "read_at",
        "signature",
        "size",
    )

    def __init__(
        self,
        path: str,
        mtime_ns: int,
        size: int,
        inode: int,
        signature: Optional[str],
        content_hash: Optional[str],
        read_at: Optional[datetime],
        data: Dict[str, Any],
    ):
        self.path = path
        self.mtime_ns = mtime_ns
        self.size = size
        self.inode = inode
        self.signature = signature
        self.content_hash = content_hash
        self.read_at = read_at
        self.data = data

    def __repr__(self) -> str:
        return f"StoredFingerprint(path={self.path!r}, mtime_ns={self.mtime_ns}, size={self.size})"


class RawFingerprint:
    """A stored fingerprint's JSON payload (frame checked), decoded only when first needed.

    An unchanged refresh compares most fingerprints with a fresh ``stat``
    straight on these bytes (:class:`~projcache.sources.tracker.SourceTracker`),
    so it never decodes them; any attribute decodes the whole payload once,
    with :func:`fingerprint_from_json` (the same outcome as decoding it up front).
    """

    __slots__ = ("_decoded", "payload")

    def __init__(self, payload: bytes):
        self.payload = payload
        self._decoded: Optional[Union[Fingerprint, StoredFingerprint]] = None

    def decoded(self) -> Union[Fingerprint, StoredFingerprint]:
        """The decoded fingerprint (decoded once).

        Raises:
            InvalidRecordError: the payload is not a valid Fingerprint.
        """
        if self._decoded is None:
            self._decoded = fingerprint_from_json(self.payload)
        return self._decoded

    @property
    def path(self) -> str:
        """As :attr:`Fingerprint.path`."""
        return self.decoded().path

    @property
    def mtime_ns(self) -> int:
        """As :attr:`Fingerprint.mtime_ns`."""
        return self.decoded().mtime_ns

    @property
    def size(self) -> int:
        """As :attr:`Fingerprint.size`."""
        return self.decoded().size

    @property
    def inode(self) -> int:
        """As :attr:`Fingerprint.inode`."""
        return self.decoded().inode

    @property
    def signature(self) -> Optional[str]:
        """As :attr:`Fingerprint.signature`."""
        return self.decoded().signature

    @property
    def content_hash(self) -> Optional[str]:
        """As :attr:`Fingerprint.content_hash`."""
        return self.decoded().content_hash

    @property
    def read_at(self) -> Optional[datetime]:
        """As :attr:`Fingerprint.read_at`."""
        return self.decoded().read_at

    @property
    def data(self) -> Dict[str, Any]:
        """As :attr:`Fingerprint.data`."""
        return self.decoded().data

    def __repr__(self) -> str:
        return f"RawFingerprint({bytes(self.payload[:80])!r}...)"


KnownFingerprint = Union[Fingerprint, StoredFingerprint, RawFingerprint]

_FINGERPRINT_KEYS = frozenset(Fingerprint.model_fields)


def fingerprint_from_json(payload: bytes) -> Union[Fingerprint, StoredFingerprint]:
    """Decode a stored Fingerprint's JSON; a :class:`StoredFingerprint` when it is well formed.

    Well formed: exactly the keys :class:`Fingerprint` writes, ``data`` an
    object and ``read_at`` null or a time ``fromisoformat`` reads.  Anything
    else goes through pydantic, so the outcome (a model, or pydantic's error)
    is what validation gives.  The stat values are not type-checked: a stat
    value of another type never equals a fresh ``stat``, so at worst its
    source is re-read.
    """
    try:
        raw = orjson.loads(payload)
        if type(raw) is dict and raw.keys() == _FINGERPRINT_KEYS and type(raw["data"]) is dict:
            read_at = raw["read_at"]
            return StoredFingerprint(
                raw["path"],
                raw["mtime_ns"],
                raw["size"],
                raw["inode"],
                raw["signature"],
                raw["content_hash"],
                None if read_at is None else parse_utc(read_at),
                raw["data"],
            )
    except (ValueError, TypeError, AttributeError):
        pass  # not JSON, or a read_at that is no ISO time string: pydantic decides
    return Fingerprint.model_validate_json(payload)


class SearchHit(_Record):
    """One search result: the artifact and how well it matched (higher is better)."""

    key: str
    name: str
    type: ArtifactType
    score: float
    artifact: Artifact


class RefreshReport(_Record):
    """What a refresh did."""

    started_at: UtcDatetime
    duration_seconds: float = 0.0
    collections_checked: int = 0
    projects_checked: int = 0
    sources_checked: int = 0
    sources_changed: int = 0
    collections_written: int = 0
    collections_removed: int = 0
    artifacts_written: int = 0
    artifacts_removed: int = 0
    projects_written: int = 0
    projects_removed: int = 0
    deployments_written: int = 0
    deployments_removed: int = 0
    errors: List[SourceError] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no source was in error."""
        return not self.errors


class Finding(_Record):
    """One problem found by :meth:`ProjectCache.verify`."""

    kind: FindingKind
    db: str
    key: Optional[str] = None
    message: str
    repairable: bool = True


class VerifyReport(_Record):
    """The result of a verify run: what was checked, what was found, what was repaired.

    When the environment itself was damaged and rebuilt, ``moved_to`` is where
    the damaged files were kept, and ``salvaged``/``lost`` count the records
    carried over and lost, per sub-database; ``lost_complete`` is false when the
    damaged file could not be read to the end (``lost`` is then a lower bound),
    and ``problems`` says what the salvage could not do.
    """

    checked: Dict[str, int] = Field(default_factory=dict)
    findings: List[Finding] = Field(default_factory=list)
    repaired: int = 0
    moved_to: Optional[str] = None
    salvaged: Dict[str, int] = Field(default_factory=dict)
    lost: Dict[str, int] = Field(default_factory=dict)
    lost_complete: bool = True
    problems: List[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when verify found nothing wrong (or repair fixed every finding).

        Never true after a rebuild that lost records, or that could not read
        the damaged file to the end (so cannot tell what it lost).
        """
        if self.moved_to is not None and (any(self.lost.values()) or not self.lost_complete):
            return False
        return not self.findings or self.repaired >= len(self.findings)


class CacheStats(_Record):
    """Counts, sizes, freshness and hit rate of a cache."""

    path: str
    schema_version: int
    counts: Dict[str, int]
    file_bytes: int
    used_bytes: int
    map_size: int
    max_map_size: int
    hits: int
    misses: int
    last_txn_id: int
    stale_projects: int
    oldest_refresh: Optional[UtcDatetime] = None
    newest_refresh: Optional[UtcDatetime] = None
    created_at: Optional[UtcDatetime] = None

    @property
    def hit_rate(self) -> Optional[float]:
        """Hits over lookups, or ``None`` before the first lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else None
