"""Point reads of artifacts whose Markdown body is stored apart (record frames, ``0x04``).

Reads return the record with ``"body":""`` as it is stored (no inflate), the body is kept
for search and re-indexing, and a damaged frame is still refused and reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import lmdb
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from projcache import ProjectCache, codec
from projcache.config import Settings
from projcache.errors import CorruptRecordError, InvalidArgumentError
from projcache.models import Artifact
from projcache.repository import artifact_frame

MakeArtifact = Callable[..., dict[str, Any]]


def _raw(cache: ProjectCache, key: str) -> bytes:
    """The stored value of an artifact, read with plain py-lmdb."""
    storage = cache._storage
    with storage.env.begin(db=storage.dbs["artifacts"]) as txn:
        raw = txn.get(key.encode())
    assert raw is not None
    return bytes(raw)


def _poke(cache: ProjectCache, key: str, offset: int) -> None:
    """Flip one bit of an artifact's stored value at ``offset`` (negative: from the end)."""
    storage = cache._storage
    value = bytearray(_raw(cache, key))
    value[offset] ^= 0x01
    with storage.env.begin(write=True, db=storage.dbs["artifacts"]) as txn:
        txn.put(key.encode(), bytes(value))


def test_a_record_without_a_body_is_stored_plain_and_read_byte_identical(
    cache: ProjectCache, make_artifact: MakeArtifact
) -> None:
    """No body: a plain 0x01 frame whatever its size (0.2.0-dev deflated it from 512 bytes on)."""
    record = make_artifact("plain", description="word " * 200, tags=["a", "b"])
    cache.put_artifacts([record])
    key = "default/skill/plain"
    expected = Artifact.model_validate(record).model_dump_json().encode()
    assert len(expected) > codec.COMPRESS_AT
    raw = _raw(cache, key)
    assert raw[0] == codec.FORMAT_VERSION
    assert raw[5:] == expected
    assert cache.get_artifact_json(key) == expected
    assert cache.get_artifact(key) == Artifact.model_validate_json(expected)


def test_reads_leave_the_body_out_and_get_artifact_body_returns_it(
    cache: ProjectCache, make_artifact: MakeArtifact
) -> None:
    """The body is kept apart: reads show ``"body": ""``; get_artifact_body gives it back."""
    body = "# Zebra\n\nThe zebrafish body text, kept for search only. " * 20
    record = make_artifact("zebra", body=body)
    cache.put_artifacts([record])
    key = "default/skill/zebra"
    whole = Artifact.model_validate(record)
    assert _raw(cache, key)[0] == codec.RECORD_FORMAT
    shown = whole.model_copy(update={"body": ""})
    assert cache.get_artifact_json(key) == shown.model_dump_json().encode()
    assert cache.get_artifact(key) == shown
    assert [a.body for a in cache.list_artifacts()] == [""]
    assert list(cache.iter_artifacts_json()) == [shown.model_dump_json().encode()]
    assert cache.get_artifact_body(key) == whole.body
    assert cache.get_artifact_body("default/skill/missing") is None
    with pytest.raises(InvalidArgumentError):
        cache.get_artifact_body("not-a-key")
    # The body is still searched.
    assert [hit.key for hit in cache.search("zebrafish")] == [key]


def test_replacing_a_body_unlists_its_old_words(
    cache: ProjectCache, make_artifact: MakeArtifact
) -> None:
    """An update re-indexes from the stored body: a word only the old body had stops matching."""
    cache.put_artifacts([make_artifact("notes", body="# Notes\n\nquokka habitats")])
    assert [hit.key for hit in cache.search("quokka")] == ["default/skill/notes"]
    cache.put_artifacts([make_artifact("notes", body="# Notes\n\nwombat burrows")])
    assert cache.search("quokka").total == 0
    assert [hit.key for hit in cache.search("wombat")] == ["default/skill/notes"]
    cache.delete_artifact("default/skill/notes")
    assert cache.search("wombat").total == 0
    assert cache.verify().ok


@pytest.mark.parametrize(
    ("where", "offset"),
    [("the record shown", 20), ("the deflated body", -3), ("the header", 6)],
)
def test_a_damaged_record_frame_is_refused_and_reported(
    cache: ProjectCache, make_artifact: MakeArtifact, where: str, offset: int
) -> None:
    """One flipped bit anywhere in a record frame: reads raise, quick and deep verify report it."""
    cache.put_artifacts([make_artifact("dam", body="# Dam\n\nbeaver lodge " * 10)])
    key = "default/skill/dam"
    _poke(cache, key, offset)
    with pytest.raises(CorruptRecordError, match=r"artifacts\['default/skill/dam'\]"):
        cache.get_artifact_json(key)
    with pytest.raises(CorruptRecordError):
        cache.get_artifact(key)
    with pytest.raises(CorruptRecordError):
        cache.get_artifact_body(key)
    quick = cache.verify()
    assert not quick.ok and any(f.key == key for f in quick.findings), where
    deep = cache.verify(deep=True)
    assert any(f.kind == "frame" and f.key == key for f in deep.findings), where


def test_a_header_that_lies_about_the_record_is_refused() -> None:
    """A record frame whose CRC matches but whose header does not fit its record."""
    plain = b'{"a":1,"body":""}'
    at = plain.index(b'""')
    good = codec.record_frame(plain, at, b'"text"')
    assert codec.unframe(good) == b'{"a":1,"body":"text"}'
    assert codec.checked_payload(good) == plain
    assert codec.checked_payload(memoryview(good)) == plain
    assert codec.frame_intact(good)
    for size, where in ((len(plain) + 50, at), (len(plain), at + 1)):
        rest = size.to_bytes(4, "big") + where.to_bytes(4, "big") + good[13:]
        forged = bytes([codec.RECORD_FORMAT]) + codec.zlib.crc32(rest).to_bytes(4, "big") + rest
        assert codec.checked_payload(forged) is None
        with pytest.raises(CorruptRecordError, match="header"):
            codec.unframe(forged)
    with pytest.raises(ValueError):
        codec.record_frame(plain, at + 1, b'"text"')


def test_the_body_is_the_last_field_that_can_hold_text() -> None:
    """artifact_frame cuts the body at the last ``"body":""``: only added_at may follow it."""
    fields = list(Artifact.model_fields)
    assert fields[fields.index("body") + 1 :] == ["added_at"]


_free = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_name = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
    min_size=1,
    max_size=12,
)
_records = st.fixed_dictionaries(
    {"name": _name, "type": st.sampled_from(["skill", "command", "agent"])},
    optional={
        "description": _free,
        "body": st.text(max_size=300),
        # A nested "body" key must not be mistaken for the record's own.
        "front_matter": st.dictionaries(
            st.sampled_from(["body", "title", "x"]), _free | st.none(), max_size=3
        ),
        "tags": st.lists(_name, max_size=3),
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(record=_records)
def test_generated_records_round_trip(record: dict[str, Any]) -> None:
    """Frame -> read view and whole record, for generated records (bodies, nested "body" keys)."""
    try:
        artifact = Artifact.model_validate({**record, "collection": "c"})
    except ValidationError:  # a record the model refuses is not stored at all
        return
    stored = artifact_frame(artifact)
    assert codec.unframe(stored) == artifact.model_dump_json().encode()
    shown = codec.checked_payload(stored)
    assert shown is not None
    assert orjson.loads(shown) == {**orjson.loads(artifact.model_dump_json()), "body": ""}
    assert codec.frame_intact(stored)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(_records, min_size=1, max_size=5))
def test_generated_records_read_back_as_validated_models(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    """get_artifact equals validating get_artifact_json, which is the record without its body."""
    valid = {}
    for record in records:
        try:
            artifact = Artifact.model_validate({**record, "collection": "c"})
        except ValidationError:
            continue
        valid[artifact.key] = artifact
    path = tmp_path / "gen"
    with ProjectCache.open(settings=Settings(cache_dir=path)) as cache:
        cache.clear()
        cache.put_artifacts(list(valid.values()))
        for key, artifact in valid.items():
            payload = cache.get_artifact_json(key)
            assert payload == artifact.model_copy(update={"body": ""}).model_dump_json().encode()
            assert cache.get_artifact(key) == Artifact.model_validate_json(payload)
            assert cache.get_artifact_body(key) == artifact.body
        assert cache.verify(deep=True).ok


def test_a_read_survives_an_lmdb_error_on_the_fast_path(
    cache: ProjectCache, make_artifact: MakeArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An LMDB error in the one-get read falls back to the retrying read path."""
    cache.put_artifacts([make_artifact("fall")])
    storage = cache._storage
    real = storage.env
    calls: list[tuple[Any, ...]] = []

    class Flaky:
        def begin(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            if args:  # the fast path names its sub-database positionally
                raise lmdb.BadRslotError("simulated")
            return real.begin(**kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    monkeypatch.setattr(storage, "env", Flaky())
    assert orjson.loads(cache.get_artifact_json("default/skill/fall") or b"")["name"] == "fall"
    assert cache.get_artifact_json("default/skill/none") is None
    # Each read tried the fast path once, then read() (which begins without a db).
    assert [bool(args) for args in calls] == [True, False, True, False]
    assert storage._guard._active == []
