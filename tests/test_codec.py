"""Tests of value framing and key encoding (``projcache.codec``)."""

from __future__ import annotations

import hashlib
import os
import random
import re
import zlib
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from projcache import codec
from projcache.codec import (
    ARTIFACT_TYPES,
    COMPRESS_AT,
    COMPRESSED_FORMAT,
    FORMAT_VERSION,
    FRAME_DICTIONARY,
    MAX_KEY_BYTES,
    SEPARATOR,
    artifact_key,
    checked_payload,
    decode,
    deployment_key,
    deployment_prefix,
    encode,
    encode_key,
    frame,
    frame_intact,
    parse_artifact_key,
    parse_deployment_key,
    project_id_for_path,
    unframe,
)
from projcache.errors import CorruptRecordError, InvalidRecordError, KeyTooLongError

# orjson encodes integers in the 64-bit range only (signed minimum to unsigned maximum).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)

# Key parts: non-empty, no '/' or NUL, no lone surrogates (not encodable as UTF-8).
key_parts = st.text(
    st.characters(exclude_characters="/\x00", exclude_categories=("Cs",)),
    min_size=1,
    max_size=30,
)
artifact_types = st.sampled_from(ARTIFACT_TYPES)
# Deployment key parts may contain '/', never NUL (the separator).
no_nul_text = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
    min_size=1,
    max_size=60,
)


def flip_a_bit(framed: bytes, data: st.DataObject) -> bytes:
    """``framed`` with one bit, drawn by hypothesis, flipped."""
    flipped = bytearray(framed)
    bit = data.draw(st.integers(min_value=0, max_value=len(flipped) * 8 - 1), label="bit")
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


class TestFrame:
    """Frames: format byte, CRC32 and payload."""

    def test_layout(self) -> None:
        """A frame is the format byte, the big-endian CRC32 of the payload, then the payload."""
        payload = b'{"a":1}'
        data = frame(payload)
        assert data[0] == FORMAT_VERSION == 1
        assert data[1:5] == zlib.crc32(payload).to_bytes(4, "big")
        assert data[5:] == payload

    def test_large_payload_is_deflated(self) -> None:
        """A payload of COMPRESS_AT bytes or more that deflates well is stored as format 3:
        CRC32 of the stored bytes, then a raw deflate stream with the preset dictionary."""
        payload = b'{"key":"c/skill/s","body":"' + b"read the spreadsheet, " * 40 + b'"}'
        assert len(payload) >= COMPRESS_AT
        data = frame(payload)
        assert data[0] == COMPRESSED_FORMAT == 3
        assert len(data) < len(payload) // 2
        assert data[1:5] == zlib.crc32(data[5:]).to_bytes(4, "big")
        unpacker = zlib.decompressobj(-15, FRAME_DICTIONARY)
        assert unpacker.decompress(data[5:]) == payload and unpacker.eof
        assert unframe(data) == checked_payload(data) == payload
        assert frame_intact(data)

    def test_small_or_incompressible_payload_stays_plain(self) -> None:
        """Below COMPRESS_AT, or when deflating saves less than an eighth, format 1."""
        assert frame(b'{"a":1}')[0] == FORMAT_VERSION
        noise = random.Random(7).randbytes(2 * COMPRESS_AT)
        assert frame(noise)[0] == FORMAT_VERSION
        assert unframe(frame(noise)) == noise

    def test_damaged_deflate_stream_is_reported(self) -> None:
        """A format-3 frame whose CRC matches but whose stream is cut is corrupt, by name."""
        packed = frame(b"x" * (2 * COMPRESS_AT))[5:-2]
        data = bytes([COMPRESSED_FORMAT]) + zlib.crc32(packed).to_bytes(4, "big") + packed
        assert frame_intact(data)  # what quick verify checks: the bytes are as written
        assert checked_payload(data) is None
        with pytest.raises(CorruptRecordError, match=r"^sources/x: damaged deflate stream"):
            unframe(data, what="sources/x")

    def test_flipped_bit_in_deflated_frame(self) -> None:
        """A flipped bit of a deflated frame fails its CRC before anything is inflated."""
        data = bytearray(frame(b"abc " * COMPRESS_AT))
        data[len(data) // 2] ^= 0x10
        assert not frame_intact(bytes(data)) and checked_payload(bytes(data)) is None
        with pytest.raises(CorruptRecordError, match="CRC32 mismatch"):
            unframe(bytes(data))

    @given(payload=st.binary(max_size=4 * COMPRESS_AT) | st.text().map(lambda t: (t * 20).encode()))
    def test_frame_unframe_round_trip(self, payload: bytes) -> None:
        """Any bytes payload comes back unchanged from unframe(frame(payload))."""
        assert unframe(frame(payload)) == payload

    @given(payload=st.binary())
    def test_unframe_accepts_memoryview(self, payload: bytes) -> None:
        """unframe accepts a memoryview (as LMDB buffers are) and returns bytes."""
        result = unframe(memoryview(frame(payload)))
        assert isinstance(result, bytes)
        assert result == payload

    @given(payload=st.binary(max_size=64), data=st.data())
    def test_every_single_bit_flip_is_detected(self, payload: bytes, data: st.DataObject) -> None:
        """Flipping any one bit of a frame makes unframe raise CorruptRecordError."""
        with pytest.raises(CorruptRecordError):
            unframe(flip_a_bit(frame(payload), data))

    @given(payload=st.binary(max_size=64), data=st.data())
    def test_every_truncation_is_detected(self, payload: bytes, data: st.DataObject) -> None:
        """Cutting a frame short at any length makes unframe raise CorruptRecordError."""
        framed = frame(payload)
        length = data.draw(st.integers(min_value=0, max_value=len(framed) - 1), label="length")
        with pytest.raises(CorruptRecordError):
            unframe(framed[:length])

    @given(payload=st.binary(max_size=64), extra=st.binary(min_size=1, max_size=8))
    def test_trailing_garbage_is_detected(self, payload: bytes, extra: bytes) -> None:
        """Bytes appended after a frame's payload make the CRC check fail."""
        with pytest.raises(CorruptRecordError, match="CRC32 mismatch"):
            unframe(frame(payload) + extra)

    @pytest.mark.parametrize("length", [0, 1, 4])
    def test_short_frame_message(self, length: int) -> None:
        """A frame shorter than its header is reported as too short, with its length."""
        with pytest.raises(CorruptRecordError, match=rf"frame too short \({length} bytes\)"):
            unframe(frame(b"")[:length])

    @given(
        version=st.integers(min_value=0, max_value=255).filter(
            lambda v: v not in (FORMAT_VERSION, COMPRESSED_FORMAT, codec.RECORD_FORMAT)
        )
    )
    def test_wrong_format_byte(self, version: int) -> None:
        """A frame whose CRC is right but whose format byte is not 1, 3 or 4 is rejected by name."""
        data = bytes([version]) + frame(b"[]")[1:]
        with pytest.raises(CorruptRecordError, match=f"unknown frame format byte {version:#04x}"):
            unframe(data)

    def test_what_names_the_record(self) -> None:
        """The ``what`` argument appears in the corruption message."""
        with pytest.raises(CorruptRecordError, match=r"^artifacts/default/skill/pdf: "):
            unframe(b"\x01", what="artifacts/default/skill/pdf")

    def test_corrupt_record_error_class(self) -> None:
        """Frame failures raise CorruptRecordError, which is a CacheCorruptError with exit 7."""
        with pytest.raises(CorruptRecordError) as info:
            unframe(b"")
        assert info.value.exit_code == 7


class TestEncodeDecode:
    """JSON values through orjson and a frame."""

    @given(value=json_values)
    def test_round_trip(self, value: Any) -> None:
        """Any JSON-able value (64-bit ints, finite floats) round-trips through encode/decode."""
        assert decode(encode(value)) == value

    @given(value=json_values)
    def test_encode_is_a_frame_of_json(self, value: Any) -> None:
        """encode produces a valid frame whose payload is UTF-8 JSON."""
        payload = unframe(encode(value))
        payload.decode("utf-8")
        assert decode(frame(payload)) == value

    def test_non_string_keys_are_stringified(self) -> None:
        """Integer dict keys are written as JSON strings (OPT_NON_STR_KEYS)."""
        assert decode(encode({1: "a"})) == {"1": "a"}

    @pytest.mark.parametrize("payload", [b"", b"not json", b'{"a":', b"\xff\xfe"])
    def test_valid_frame_with_invalid_json(self, payload: bytes) -> None:
        """A frame that passes its CRC but holds no valid JSON raises CorruptRecordError."""
        with pytest.raises(CorruptRecordError, match=r"^rec: payload is not valid JSON"):
            decode(frame(payload), what="rec")

    @given(value=json_values, data=st.data())
    def test_decode_detects_bit_flips(self, value: Any, data: st.DataObject) -> None:
        """decode never returns a value from a frame with a flipped bit."""
        with pytest.raises(CorruptRecordError):
            decode(flip_a_bit(encode(value), data))


class TestEncodeKey:
    """UTF-8 key encoding and LMDB's 511-byte limit."""

    def test_limit_constant(self) -> None:
        """The key limit is LMDB's default 511 bytes."""
        assert MAX_KEY_BYTES == 511

    @pytest.mark.parametrize(
        "text",
        [
            "a" * 511,
            "é" * 255 + "a",  # 2-byte characters: 511 bytes
            "€" * 170 + "a",  # 3-byte characters: 511 bytes
            "😀" * 127 + "abc",  # 4-byte characters: 511 bytes
        ],
    )
    def test_exactly_511_bytes_is_accepted(self, text: str) -> None:
        """A key of exactly 511 UTF-8 bytes is encoded unchanged."""
        raw = encode_key(text)
        assert len(raw) == 511
        assert raw.decode("utf-8") == text

    @pytest.mark.parametrize(
        "text",
        [
            "a" * 512,
            "é" * 256,  # 256 characters, 512 bytes
            "€" * 170 + "ab",  # 512 bytes
            "😀" * 128,  # 128 characters, 512 bytes
        ],
    )
    def test_512_bytes_is_too_long(self, text: str) -> None:
        """A key of 512 UTF-8 bytes raises KeyTooLongError naming its size and the limit."""
        with pytest.raises(KeyTooLongError, match=r"is 512 bytes encoded; LMDB allows at most 511"):
            encode_key(text)

    def test_key_too_long_has_hint(self) -> None:
        """KeyTooLongError is an InvalidRecordError (exit 2) with a hint about shorter names."""
        with pytest.raises(KeyTooLongError) as info:
            encode_key("x" * 600, what="artifact key")
        assert isinstance(info.value, InvalidRecordError)
        assert info.value.exit_code == 2
        assert "artifact key" in str(info.value)
        assert "shorter" in info.value.hint

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("", "must not be empty"),
            ("a\x00b", "must not contain NUL"),
            ("\ud800", "not valid Unicode"),
        ],
    )
    def test_invalid_keys(self, text: str, fragment: str) -> None:
        """Empty keys, NUL characters and lone surrogates raise InvalidRecordError."""
        with pytest.raises(InvalidRecordError, match=fragment) as info:
            encode_key(text, what="project id")
        assert not isinstance(info.value, KeyTooLongError)
        assert str(info.value).startswith("project id ")


class TestArtifactKey:
    """``<collection>/<type>/<name>`` keys."""

    @given(collection=key_parts, type_=artifact_types, name=key_parts)
    def test_round_trip(self, collection: str, type_: str, name: str) -> None:
        """parse_artifact_key inverts artifact_key for any valid parts."""
        key = artifact_key(collection, type_, name)
        assert key == f"{collection}/{type_}/{name}"
        assert parse_artifact_key(key) == (collection, type_, name)

    @pytest.mark.parametrize("bad", ["", "a/b", "a\x00b", "/", "\x00"])
    def test_bad_collection(self, bad: str) -> None:
        """A collection that is empty or contains '/' or NUL is rejected by field name."""
        with pytest.raises(InvalidRecordError, match="field 'collection'"):
            artifact_key(bad, "skill", "pdf")

    @pytest.mark.parametrize("bad", ["", "a/b", "a\x00b", "/", "\x00"])
    def test_bad_name(self, bad: str) -> None:
        """A name that is empty or contains '/' or NUL is rejected by field name."""
        with pytest.raises(InvalidRecordError, match="field 'name'"):
            artifact_key("default", "skill", bad)

    @pytest.mark.parametrize("bad", ["", "Skill", "skill/x", "1skill", "a b", "x" * 65, "é"])
    def test_bad_type(self, bad: str) -> None:
        """A type that is no plain lowercase name is rejected, and the message names known ones."""
        with pytest.raises(InvalidRecordError, match="field 'type'") as info:
            artifact_key("default", bad, "pdf")
        assert "skill, command, agent, hook, mcp" in str(info.value)

    @pytest.mark.parametrize("future", ["orchestration", "soul", "widget", "agent_pack", "x-y2"])
    def test_known_and_future_types_are_keys(self, future: str) -> None:
        """Every SkillMeat 0.74.0 type and a newer one (a plain name) make a key, as declared."""
        assert artifact_key("default", future, "pdf") == f"default/{future}/pdf"
        assert parse_artifact_key(f"default/{future}/pdf") == ("default", future, "pdf")

    @pytest.mark.parametrize(
        "key",
        [
            "",
            "default",
            "default/skill",
            "default/skill/pdf/extra",
            "/skill/pdf",
            "default/skill/",
            "default//pdf",
            "default/Widget/pdf",
            "default/skill/a\x00b",
        ],
    )
    def test_parse_rejects_malformed_keys(self, key: str) -> None:
        """parse_artifact_key rejects keys without exactly three valid parts."""
        with pytest.raises(InvalidRecordError):
            parse_artifact_key(key)

    def test_parse_message_shows_expected_shape(self) -> None:
        """A key with the wrong number of parts is reported with the expected shape."""
        with pytest.raises(InvalidRecordError, match=re.escape("'<collection>/<type>/<name>'")):
            parse_artifact_key("a/b/c/d")


class TestDeploymentKey:
    """``<project id> NUL <artifact key> NUL <profile>`` keys."""

    @given(project_id=no_nul_text, artifact=no_nul_text)
    def test_round_trip(self, project_id: str, artifact: str) -> None:
        """parse_deployment_key inverts deployment_key (the default profile is claude_code)."""
        key = deployment_key(project_id, artifact)
        assert isinstance(key, bytes)
        assert parse_deployment_key(key) == (project_id, artifact, "claude_code")
        codex = deployment_key(project_id, artifact, "codex")
        assert codex != key
        assert parse_deployment_key(codex) == (project_id, artifact, "codex")

    @pytest.mark.parametrize("bad", ["", "a/b", "a\x00b", ".hidden", "x" * 65, "a b"])
    def test_bad_profile(self, bad: str) -> None:
        """A profile that cannot be a key part is rejected by field name."""
        with pytest.raises(InvalidRecordError, match="field 'profile'"):
            deployment_key("abc", "default/skill/pdf", bad)

    @given(project_id=no_nul_text, artifact=no_nul_text)
    def test_prefix_is_a_prefix(self, project_id: str, artifact: str) -> None:
        """deployment_prefix(p) is a prefix of every deployment_key(p, a) and ends in NUL."""
        prefix = deployment_prefix(project_id)
        assert prefix.endswith(SEPARATOR)
        assert deployment_key(project_id, artifact).startswith(prefix)

    @given(first=no_nul_text, second=no_nul_text, artifact=no_nul_text)
    def test_prefix_separates_projects(self, first: str, second: str, artifact: str) -> None:
        """A prefix scan of one project never matches another's keys (even a longer id)."""
        assume(first != second)
        assert not deployment_key(second, artifact).startswith(deployment_prefix(first))

    def test_memoryview_key_parses(self) -> None:
        """parse_deployment_key accepts a memoryview, as LMDB cursors return."""
        key = deployment_key("abc", "default/skill/pdf")
        assert parse_deployment_key(memoryview(key)) == ("abc", "default/skill/pdf", "claude_code")

    def test_artifact_key_may_not_contain_nul(self) -> None:
        """The artifact part of a deployment key must not contain the NUL separator."""
        with pytest.raises(InvalidRecordError, match="artifact key must not contain NUL"):
            deployment_key("abc", "a\x00b")

    @pytest.mark.parametrize(("project_id", "fragment"), [("", "empty"), ("a\x00b", "NUL")])
    def test_bad_project_id(self, project_id: str, fragment: str) -> None:
        """An empty project id or one containing NUL is rejected, naming the project id."""
        with pytest.raises(InvalidRecordError, match=f"project id must not .*{fragment}"):
            deployment_prefix(project_id)
        with pytest.raises(InvalidRecordError, match="project id"):
            deployment_key(project_id, "default/skill/pdf")

    def test_total_length_limit(self) -> None:
        """The whole deployment key (id, NUL, artifact key, NUL, profile) may be 511 bytes."""
        assert len(deployment_key("p", "a" * 497)) == 511  # + "\x00claude_code"
        with pytest.raises(KeyTooLongError, match=r"deployment key is 512 bytes"):
            deployment_key("p", "a" * 498)

    def test_total_length_limit_multibyte(self) -> None:
        """The deployment key limit counts UTF-8 bytes, not characters."""
        assert len(deployment_key("p", "é" * 248 + "a")) == 511
        with pytest.raises(KeyTooLongError):
            deployment_key("p", "é" * 249)

    @pytest.mark.parametrize(
        "key",
        [
            b"",
            b"no-separator",
            b"\x00default/skill/pdf",
            b"abc\x00",
            b"\x00",
            b"abc\x00default/skill/pdf",  # a schema-2 key (no profile): migrated, never read
            b"abc\x00default/skill/pdf\x00",
        ],
    )
    def test_parse_rejects_malformed_keys(self, key: bytes) -> None:
        """A stored deployment key without all three parts is reported as corrupt."""
        with pytest.raises(CorruptRecordError, match="malformed deployment key"):
            parse_deployment_key(key)


class TestProjectId:
    """Project ids derived from paths."""

    def test_known_value(self) -> None:
        """The id is the first 16 hex digits of SHA-256 of the UTF-8 path (stable over releases)."""
        assert project_id_for_path("/home/user/project") == "9dad1e4e08b0b11c"
        expected = hashlib.sha256(b"/home/user/project").hexdigest()[:16]
        assert project_id_for_path("/home/user/project") == expected

    @given(path=st.text())
    def test_stable_and_sixteen_hex_digits(self, path: str) -> None:
        """Any path maps to the same 16 lowercase hex digits every time."""
        first = project_id_for_path(path)
        assert re.fullmatch(r"[0-9a-f]{16}", first)
        assert project_id_for_path(path) == first

    @given(path=st.text())
    def test_usable_as_deployment_prefix(self, path: str) -> None:
        """A derived id is always a valid deployment prefix (no NUL, 17 bytes with separator)."""
        assert len(deployment_prefix(project_id_for_path(path))) == 17

    def test_different_paths_differ(self) -> None:
        """Distinct paths give distinct ids."""
        ids = {project_id_for_path(p) for p in ["/a", "/b", "/a/", "/A", ""]}
        assert len(ids) == 5

    def test_undecodable_path(self) -> None:
        """A path with bytes that are not UTF-8 (surrogate-escaped by os.fsdecode) gets an id."""
        path = os.fsdecode(b"/tmp/\xff\xfe")
        assert re.fullmatch(r"[0-9a-f]{16}", project_id_for_path(path))
        assert project_id_for_path(path) == hashlib.sha256(b"/tmp/\xff\xfe").hexdigest()[:16]


def test_all_is_sorted_and_complete() -> None:
    """codec.__all__ is sorted and every name in it exists."""
    assert list(codec.__all__) == sorted(codec.__all__)
    for name in codec.__all__:
        assert hasattr(codec, name)
