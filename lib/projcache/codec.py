"""Value framing and key encoding: the only bytes format projcache writes.

A stored value is a *frame*::

    +--------+------------------+----------------------+
    | 0x01   | CRC32 (4 bytes,  | orjson payload       |
    | format | big-endian) of   | (UTF-8 JSON)         |
    |        | the payload      |                      |
    +--------+------------------+----------------------+

A payload of :data:`COMPRESS_AT` bytes or more is stored deflated when that
saves at least an eighth of it: format byte ``0x03``, then the CRC32 of the
stored (deflated) bytes, then a raw deflate stream made with the preset
dictionary :data:`FRAME_DICTIONARY`.  LMDB packs values into 4 KiB pages, and
records of about a kilobyte (an artifact with its body) filled half a page
each; deflated they take about 40% of their JSON (docs/cache/storage-format.md).

An artifact with a Markdown body is a *record frame* (format byte ``0x04``,
:func:`record_frame`): the record's JSON with ``"body":""`` stored plain, then
the body deflated.  Reads return the plain part without inflating anything
(:func:`checked_payload`); the body, kept for search, is inflated only by the
paths that need it (:func:`unframe`, which returns the whole record).

Every read checks the format byte and the CRC before the payload is used, so a
flipped bit surfaces as :class:`~projcache.errors.CorruptRecordError`, never as
garbage.  Values are never pickled.  No frame holds more than
:data:`MAX_RECORD_BYTES` of payload: a larger record is refused with
:class:`~projcache.errors.RecordTooLargeError` before anything is written.

Keys are UTF-8 strings.  LMDB refuses keys longer than 511 bytes (and
dupsort values of the same size); the encoders enforce that with
:class:`~projcache.errors.KeyTooLongError` instead of letting LMDB fail.

Over 400 lines on purpose: every byte layout projcache writes (three frame
formats, the keys) lives here, side by side, so that it can be read against
docs/cache/storage-format.md in one place.
"""

from __future__ import annotations

import re
import struct
import zlib

import orjson

from .errors import CorruptRecordError, InvalidRecordError, KeyTooLongError, RecordTooLargeError

# Re-exported: the one list of each lives in vocabulary.py.
from .vocabulary import ARTIFACT_TYPES, DEPLOYMENT_STATES

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Union

__all__ = [
    "ARTIFACT_TYPES",
    "COMPRESSED_FORMAT",
    "COMPRESS_AT",
    "DEFAULT_PROFILE",
    "DEPLOYMENT_STATES",
    "FORMAT_VERSION",
    "FRAME_DICTIONARY",
    "MAX_BODY_CHARS",
    "MAX_KEY_BYTES",
    "MAX_RECORD_BYTES",
    "RECORD_FORMAT",
    "SEPARATOR",
    "TYPE_PATTERN",
    "artifact_key",
    "check_profile",
    "check_type_name",
    "checked_payload",
    "decode",
    "deployment_key",
    "deployment_prefix",
    "encode",
    "encode_key",
    "frame",
    "frame_intact",
    "parse_artifact_key",
    "parse_deployment_key",
    "project_id_for_path",
    "record_frame",
    "unframe",
]

FORMAT_VERSION = 1
COMPRESSED_FORMAT = 3  # (0x02 and 0x05 are the bitmap and small-term frames of projcache.postings)
RECORD_FORMAT = 4
COMPRESS_AT = 512
# The preset dictionary of deflated frames: the records' field names and the
# usual JSON around them, so that a small record need not spell them out.
# Part of the format: changing it needs a new format byte.
FRAME_DICTIONARY = (
    b'{"project_id":"","artifact_key":"","profile":"claude_code","profile_root":"",'
    b'"platform":"","deployed_at":"","artifact_path":"","local_hash":"","files_present":'
    b'"refreshed_at":"","stale":false,"errors":[],"id":"","mtime_ns":,"size":,"inode":,'
    b'"signature":null,"read_at":"","data":{"hash":"","kind":"facts","summary":"",'
    b'"front_matter_in_record":true,"body":"# '
    b'{"key":"","name":"","type":"skill","collection":"","path":"/home/",".md","title":null,'
    b'"description":"","tags":[],"version":null,"origin":"github","upstream":null,'
    b'"resolved_sha":null,"resolved_version":null,"content_hash":"","front_matter":{},'
    b'"managed":true,"updated_at":"T00:00:00Z","body":"# \\n\\n","added_at":null}'
)
MAX_KEY_BYTES = 511
# Characters of an artifact's Markdown body kept in its record for search.
MAX_BODY_CHARS = 2000
#: The largest payload one stored value may have (64 MiB).  Real records are a
#: few KiB; the largest legitimate ones are a manifest's parsed entries, kept
#: in its fingerprint and bounded by ``max_file_size`` (16 MiB by default).
MAX_RECORD_BYTES = 64 * 1024**2
SEPARATOR = b"\x00"
# The profile a deployment record without ``deployment_profile_id`` belongs to
# (SkillMeat's DEFAULT_PROFILE_ID, skillmeat/core/path_resolver.py).
DEFAULT_PROFILE = "claude_code"
# What an artifact type may look like (a known one or a newer SkillMeat's).
TYPE_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
_PROFILE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
# Both compiled on first use (_fullmatch): a read never checks a new type or a profile, and
# compiling them at import cost a cold CLI call ~0.8M instructions.
_compiled: dict[str, re.Pattern[str]] = {}

_HEADER = 5
_VERSION_BYTE = bytes([FORMAT_VERSION])
_COMPRESSED_BYTE = bytes([COMPRESSED_FORMAT])
_RECORD_BYTE = bytes([RECORD_FORMAT])
_KNOWN = (FORMAT_VERSION, COMPRESSED_FORMAT, RECORD_FORMAT)
_DICT = FRAME_DICTIONARY
_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS
_HEAD = struct.Struct(">BI").unpack_from
# A record frame's header after the CRC: the plain part's length, then where in
# it the body's empty string ``""`` stands (both 4 bytes, big-endian).
_RECORD_HEAD = struct.Struct(">II")
_RECORD_HEADER = _HEADER + _RECORD_HEAD.size
_record_head = _RECORD_HEAD.unpack_from
_crc32 = zlib.crc32


def frame(payload: bytes, *, deflate: bool = True) -> bytes:
    """Wrap JSON ``payload`` bytes in a frame (format byte + CRC32).

    ``deflate=False`` keeps a payload of any size plain: for values read far
    more often than written whose reader compares their bytes (a refresh reads
    every source fingerprint and inflating them cost it more than the CRC check).

    Raises:
        RecordTooLargeError: ``payload`` is longer than :data:`MAX_RECORD_BYTES`.
    """
    if len(payload) > MAX_RECORD_BYTES:
        raise RecordTooLargeError(
            f"a record of {len(payload)} bytes is larger than the {MAX_RECORD_BYTES}-byte "
            "limit for one stored value; not written"
        )
    if deflate and len(payload) >= COMPRESS_AT:
        packed = _deflate(payload)
        if len(packed) <= len(payload) - len(payload) // 8:
            return _COMPRESSED_BYTE + zlib.crc32(packed).to_bytes(4, "big") + packed
    return _VERSION_BYTE + zlib.crc32(payload).to_bytes(4, "big") + payload


def _deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _DICT)
    return packer.compress(data) + packer.flush()


def record_frame(plain: bytes, at: int, body: bytes) -> bytes:
    """Frame a record whose ``body`` (a JSON string) is kept apart, deflated.

    ``plain`` is the record's JSON with the body's value replaced by the empty
    string ``""`` at offset ``at``; reads return ``plain`` as it is, never
    inflating (:func:`checked_payload`), and :func:`unframe` puts ``body`` back.
    Without a body (``b'""'``) this is a plain ``0x01`` frame of ``plain``, never
    deflated: what a read returns is stored as it is.

    Raises:
        RecordTooLargeError: the whole record is longer than :data:`MAX_RECORD_BYTES`.
        ValueError: ``plain`` has no ``""`` at ``at`` (a caller's bug).
    """
    if len(plain) + len(body) - 2 > MAX_RECORD_BYTES:
        raise RecordTooLargeError(
            f"a record of {len(plain) + len(body) - 2} bytes is larger than the "
            f"{MAX_RECORD_BYTES}-byte limit for one stored value; not written"
        )
    if plain[at : at + 2] != b'""':
        raise ValueError(f"no empty string at offset {at} of the record")
    if body == b'""':
        return _VERSION_BYTE + zlib.crc32(plain).to_bytes(4, "big") + plain
    last = _last_body
    packed = last[1] if last is not None and last[0] == body else _deflate(body)
    rest = _RECORD_HEAD.pack(len(plain), at) + plain + packed
    return _RECORD_BYTE + zlib.crc32(rest).to_bytes(4, "big") + rest


# The body :func:`unframe` last inflated from a record frame, and its deflated bytes as
# stored: an update reads the old record whole (to re-index it), and when the body did not
# change, :func:`record_frame` stores those bytes again instead of deflating it anew (~10 us
# of a single update: a deflate of even a short body builds its Huffman trees and primes
# the dictionary).  Any thread may use it: it is used only for a body equal byte for byte,
# and the bytes inflate to exactly that body (checked when they were read).  One pair, a
# few KiB at most (a body is at most MAX_BODY_CHARS characters).
_last_body: Optional[tuple[bytes, bytes]] = None


def _inflate(packed: bytes) -> Optional[bytes]:
    """The payload of a deflated frame's body, or ``None`` when it is not a whole stream."""
    unpacker = zlib.decompressobj(-15, FRAME_DICTIONARY)
    try:
        payload = unpacker.decompress(packed, MAX_RECORD_BYTES + 1)
    except zlib.error:
        return None
    if not unpacker.eof or unpacker.unused_data or len(payload) > MAX_RECORD_BYTES:
        return None
    return payload


def encode(value: Any) -> bytes:
    """Serialise ``value`` with orjson and frame it."""
    return frame(orjson.dumps(value, option=_ORJSON_OPTS))


def checked_payload(data: Union[bytes, memoryview]) -> Optional[bytes]:
    """Return the JSON a read shows of a good frame, or ``None`` when the frame fails its check.

    ``data`` may be a buffer into the map (a read transaction's ``buffers=True``):
    the CRC runs over it in place and the result is a copy that outlives the
    transaction.  A record frame (``0x04``) gives its plain part, the body left
    out (``"body":""``), without inflating.  The hot read paths call this and,
    only on ``None``, :func:`unframe` for the error naming the record (so the
    name is not formatted on every read).
    """
    if len(data) < _HEADER:
        return None
    version, crc = _HEAD(data)
    if version == FORMAT_VERSION:
        # One copy: slicing bytes copies, slicing a memoryview does not.
        payload = data[_HEADER:]
        if _crc32(payload) != crc:
            return None
        return payload if type(payload) is bytes else bytes(payload)
    view = memoryview(data)[_HEADER:]
    if _crc32(view) != crc:
        return None
    if version == RECORD_FORMAT:
        if len(view) < _RECORD_HEAD.size:
            return None
        size, at = _record_head(view)
        start = _RECORD_HEAD.size
        plain = bytes(view[start : start + size])
        if len(plain) != size or plain[at : at + 2] != b'""':
            return None
        return plain
    return _inflate(bytes(view)) if version == COMPRESSED_FORMAT else None


def frame_intact(data: bytes) -> bool:
    """Tell whether a frame has a known format byte and its CRC32 matches (nothing inflated).

    What quick verify checks: the stored bytes are the ones written.
    """
    if len(data) < _HEADER:
        return False
    version, crc = _HEAD(data)
    return version in _KNOWN and _crc32(memoryview(data)[_HEADER:]) == crc


def unframe(data: Union[bytes, memoryview], *, what: str = "value") -> bytes:
    """Check a frame and return its whole JSON payload bytes (no decoding).

    For a record frame (``0x04``) that is the record with its body put back
    (inflated): what was written, for the paths that re-index or re-check it.

    Raises:
        CorruptRecordError: the frame is short, has an unknown format byte or
            its CRC32 does not match, or its deflated part is damaged; ``what``
            names the record in the message.
    """
    data = bytes(data)
    if len(data) < _HEADER:
        raise CorruptRecordError(f"{what}: frame too short ({len(data)} bytes)")
    if data[0] not in _KNOWN:
        raise CorruptRecordError(f"{what}: unknown frame format byte {data[0]:#04x}")
    payload = data[_HEADER:]
    if zlib.crc32(payload) != int.from_bytes(data[1:_HEADER], "big"):
        raise CorruptRecordError(f"{what}: CRC32 mismatch")
    if data[0] == FORMAT_VERSION:
        return payload
    if data[0] == RECORD_FORMAT:
        return _record_whole(payload, what)
    inflated = _inflate(payload)
    if inflated is None:
        raise CorruptRecordError(f"{what}: damaged deflate stream")
    return inflated


def _record_whole(rest: bytes, what: str) -> bytes:
    """The record of a record frame's body (after the CRC), its body put back."""
    if len(rest) < _RECORD_HEAD.size:
        raise CorruptRecordError(f"{what}: record frame too short")
    size, at = _record_head(rest)
    start = _RECORD_HEAD.size
    plain = rest[start : start + size]
    if len(plain) != size or plain[at : at + 2] != b'""':
        raise CorruptRecordError(f"{what}: record frame header does not match its record")
    packed = rest[start + size :]
    body = _inflate(packed)
    if body is None:
        raise CorruptRecordError(f"{what}: damaged deflate stream")
    global _last_body
    _last_body = (body, packed)
    return plain[:at] + body + plain[at + 2 :]


def decode(data: bytes, *, what: str = "value") -> Any:
    """Check a frame and return its decoded JSON value.

    Raises:
        CorruptRecordError: the frame fails its check or the payload is not JSON.
    """
    payload = unframe(data, what=what)
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CorruptRecordError(f"{what}: payload is not valid JSON ({exc})") from exc


def encode_key(text: str, *, what: str = "key") -> bytes:
    """Encode ``text`` as a UTF-8 key, enforcing LMDB's key-size limit and no NUL bytes."""
    if not text:
        raise InvalidRecordError(f"{what} must not be empty")
    if "\x00" in text:
        raise InvalidRecordError(f"{what} must not contain NUL characters: {text!r}")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRecordError(f"{what} is not valid Unicode text: {text!r}") from exc
    if len(raw) > MAX_KEY_BYTES:
        raise KeyTooLongError(
            f"{what} is {len(raw)} bytes encoded; LMDB allows at most {MAX_KEY_BYTES}"
        )
    return raw


def _check_part(part: str, field: str) -> None:
    if not part:
        raise InvalidRecordError(f"field '{field}' must not be empty")
    if "/" in part or "\x00" in part:
        raise InvalidRecordError(f"field '{field}' must not contain '/' or NUL: {part!r}")


def _fullmatch(pattern: str, text: str) -> bool:
    """Whether ``pattern`` (compiled once, on first use) matches the whole of ``text``."""
    compiled = _compiled.get(pattern)
    if compiled is None:
        compiled = _compiled[pattern] = re.compile(pattern)
    return compiled.fullmatch(text) is not None


def check_type_name(type_: object) -> str:
    """Return ``type_`` if it can be an artifact type: a known one or a plain lowercase name.

    Known types are :data:`ARTIFACT_TYPES`; a newer SkillMeat's type is kept as
    declared when it is 1-64 characters of ``a-z``, ``0-9``, ``_`` or ``-``
    starting with a letter (no ``/``, no NUL: it is a key part).

    Raises:
        InvalidRecordError: naming the rule and the known types.
    """
    if isinstance(type_, str) and (type_ in ARTIFACT_TYPES or _fullmatch(TYPE_PATTERN, type_)):
        return type_
    raise InvalidRecordError(
        f"field 'type' must be a lowercase name like one of {', '.join(ARTIFACT_TYPES[:5])}, "
        f"...; got {type_!r}"
    )


def check_profile(profile: object) -> str:
    """Return ``profile`` if it can be a deployment profile id (a key part).

    Raises:
        InvalidRecordError: it is empty, too long or has characters other than
            letters, digits, ``_``, ``.`` and ``-``.
    """
    if isinstance(profile, str) and _fullmatch(_PROFILE_PATTERN, profile):
        return profile
    raise InvalidRecordError(
        "field 'profile' must be 1-64 letters, digits, '_', '.' or '-' "
        f"(like {DEFAULT_PROFILE!r}); got {profile!r}"
    )


def artifact_key(collection: str, type_: str, name: str) -> str:
    """Build the artifact key ``<collection>/<type>/<name>`` after validating its parts."""
    _check_part(collection, "collection")
    check_type_name(type_)
    _check_part(name, "name")
    return f"{collection}/{type_}/{name}"


def parse_artifact_key(key: str) -> tuple[str, str, str]:
    """Split an artifact key into ``(collection, type, name)``.

    Raises:
        InvalidRecordError: the key does not have the three valid parts.
    """
    parts = key.split("/")
    if len(parts) != 3:
        raise InvalidRecordError(
            f"artifact key must look like '<collection>/<type>/<name>'; got {key!r}"
        )
    collection, type_, name = parts
    artifact_key(collection, type_, name)  # validates each part
    return collection, type_, name


def project_id_for_path(path: str) -> str:
    """Derive a project's stable id from its resolved absolute path (16 hex digits).

    A hash rather than the path itself keeps ids short, fixed-width and free of
    the separator byte, so deployment keys stay well under the key limit.
    """
    import hashlib  # here: loading OpenSSL is a visible part of a cold CLI call's start

    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def deployment_prefix(project_id: str) -> bytes:
    """Return the key prefix shared by every deployment of one project."""
    return encode_key(project_id, what="project id") + SEPARATOR


def deployment_key(project_id: str, artifact: str, profile: str = DEFAULT_PROFILE) -> bytes:
    """Encode a deployment key: ``<project id> NUL <artifact key> NUL <profile>``.

    The profile is part of the key: one artifact deployed to two profiles of a
    project (``.claude/`` and ``.agents/``) is two deployments.
    """
    key = (
        deployment_prefix(project_id)
        + encode_key(artifact, what="artifact key")
        + SEPARATOR
        + check_profile(profile).encode()
    )
    if len(key) > MAX_KEY_BYTES:
        raise KeyTooLongError(
            f"deployment key is {len(key)} bytes encoded; LMDB allows at most {MAX_KEY_BYTES}"
        )
    return key


def parse_deployment_key(key: bytes) -> tuple[str, str, str]:
    """Split an encoded deployment key into ``(project id, artifact key, profile)``."""
    parts = bytes(key).split(SEPARATOR)
    if len(parts) != 3 or not all(parts):
        raise CorruptRecordError(f"malformed deployment key {bytes(key)!r}")
    project, artifact, profile = parts
    return project.decode("utf-8"), artifact.decode("utf-8"), profile.decode("utf-8")
