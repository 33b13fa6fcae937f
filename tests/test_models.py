"""Tests of the record models (``projcache.models``) and ``validate``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from projcache.codec import ARTIFACT_TYPES, project_id_for_path
from projcache.errors import InvalidRecordError, KeyTooLongError
from projcache.models import (
    Artifact,
    CacheStats,
    Deployment,
    Finding,
    Fingerprint,
    Project,
    RefreshReport,
    SourceError,
    StoredFingerprint,
    VerifyReport,
    fingerprint_from_json,
    validate,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)

# --- strategies ---------------------------------------------------------------------------

names = st.text(
    st.characters(exclude_characters="/\x00", exclude_categories=("Cs",)),
    min_size=1,
    max_size=20,
)
texts = st.text(max_size=30)
optional_texts = st.none() | texts
timezones = st.none() | st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
optional_datetimes = st.none() | st.datetimes(timezones=timezones)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
tags = st.text(min_size=1, max_size=100)

artifacts = st.builds(
    Artifact,
    name=names,
    type=st.sampled_from(ARTIFACT_TYPES),
    collection=names,
    path=texts,
    title=optional_texts,
    description=texts,
    tags=st.lists(tags, max_size=4),
    version=optional_texts,
    origin=optional_texts,
    upstream=optional_texts,
    resolved_sha=optional_texts,
    resolved_version=optional_texts,
    content_hash=optional_texts,
    front_matter=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    managed=st.booleans(),
    updated_at=optional_datetimes,
)
projects = st.builds(
    Project,
    name=names,
    path=st.text(max_size=60),
    description=texts,
    refreshed_at=optional_datetimes,
    stale=st.booleans(),
    errors=st.lists(st.builds(SourceError, path=texts, message=texts), max_size=2),
)

fingerprints = st.builds(
    Fingerprint,
    path=texts,
    mtime_ns=st.integers(min_value=0, max_value=2**63 - 1),
    size=st.integers(min_value=0, max_value=2**40),
    inode=st.integers(min_value=0, max_value=2**63 - 1),
    signature=optional_texts,
    content_hash=optional_texts,
    read_at=optional_datetimes,
    data=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)


def raises_invalid(model: type[Any], data: dict[str, Any]) -> str:
    """Validate ``data`` as ``model``, expecting InvalidRecordError; return its message."""
    with pytest.raises(InvalidRecordError) as info:
        validate(model, data)
    return str(info.value)


# --- Artifact -----------------------------------------------------------------------------


class TestArtifact:
    """Artifact records and their keys."""

    def test_key_is_derived(self, make_artifact: Callable[..., dict[str, Any]]) -> None:
        """Without a key, the key is ``<collection>/<type>/<name>``."""
        artifact = validate(Artifact, make_artifact("pdf", type="command", collection="team"))
        assert artifact.key == "team/command/pdf"

    def test_empty_key_is_derived(self, make_artifact: Callable[..., dict[str, Any]]) -> None:
        """An empty key counts as omitted and is derived."""
        assert validate(Artifact, make_artifact("pdf", key="")).key == "default/skill/pdf"

    def test_matching_key_is_accepted(self, make_artifact: Callable[..., dict[str, Any]]) -> None:
        """A given key that agrees with the parts is kept."""
        artifact = validate(Artifact, make_artifact("pdf", key="default/skill/pdf"))
        assert artifact.key == "default/skill/pdf"

    @pytest.mark.parametrize(
        "key", ["default/skill/other", "other/skill/pdf", "default/agent/pdf", "pdf"]
    )
    def test_mismatched_key_is_rejected(
        self, make_artifact: Callable[..., dict[str, Any]], key: str
    ) -> None:
        """A given key that disagrees with collection, type or name is rejected."""
        message = raises_invalid(Artifact, make_artifact("pdf", key=key))
        assert f"key {key!r} does not match 'default/skill/pdf'" in message

    def test_defaults(self, make_artifact: Callable[..., dict[str, Any]]) -> None:
        """Optional fields have their documented defaults."""
        artifact = validate(Artifact, {"name": "pdf", "type": "skill", "collection": "c"})
        assert artifact.tags == []
        assert artifact.front_matter == {}
        assert artifact.managed is True
        assert artifact.description == ""
        assert artifact.updated_at is None

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"name": ""}, "name"),
            ({"name": "a/b"}, "name"),
            ({"name": "a\x00b"}, "name"),
            ({"collection": ""}, "collection"),
            ({"collection": "x/y"}, "collection"),
            ({"type": "Widget"}, "type"),
            ({"type": None}, "type"),
            ({"description": 5}, "description"),
            ({"tags": "pdf"}, "tags"),
            ({"tags": [""]}, "tags.0"),
            ({"tags": ["ok", "x" * 101]}, "tags.1"),
            ({"managed": "perhaps"}, "managed"),
            ({"updated_at": "yesterday"}, "updated_at"),
            ({"front_matter": ["not", "a", "dict"]}, "front_matter"),
            ({"bogus": 1}, "bogus"),
        ],
    )
    def test_invalid_field_is_named(
        self,
        make_artifact: Callable[..., dict[str, Any]],
        change: dict[str, Any],
        field: str,
    ) -> None:
        """validate raises InvalidRecordError whose message names the invalid field."""
        message = raises_invalid(Artifact, {**make_artifact("pdf"), **change})
        assert message.startswith("invalid Artifact: ")
        assert f"'{field}'" in message

    @pytest.mark.parametrize("missing", ["name", "type", "collection"])
    def test_missing_field_is_named(
        self, make_artifact: Callable[..., dict[str, Any]], missing: str
    ) -> None:
        """A missing required field is reported by name."""
        data = make_artifact("pdf")
        del data[missing]
        assert f"field '{missing}': Field required" in raises_invalid(Artifact, data)

    def test_type_message_lists_allowed_types(
        self, make_artifact: Callable[..., dict[str, Any]]
    ) -> None:
        """An invalid type's message names known types; a newer SkillMeat's type is kept."""
        message = raises_invalid(Artifact, make_artifact("pdf", type="Widget"))
        for allowed in ARTIFACT_TYPES[:5]:
            assert allowed in message
        for kept in (*ARTIFACT_TYPES, "widget"):
            assert validate(Artifact, make_artifact("pdf", type=kept)).type == kept

    def test_key_too_long(self, make_artifact: Callable[..., dict[str, Any]]) -> None:
        """An artifact whose key exceeds 511 bytes raises KeyTooLongError (with its hint)."""
        with pytest.raises(KeyTooLongError) as info:
            validate(Artifact, make_artifact("n" * 500))
        assert "511" in str(info.value)
        assert info.value.hint

    def test_key_of_511_bytes_is_accepted(
        self, make_artifact: Callable[..., dict[str, Any]]
    ) -> None:
        """An artifact whose key is exactly 511 bytes is valid."""
        name = "n" * (511 - len("default/skill/"))
        assert len(validate(Artifact, make_artifact(name)).key.encode()) == 511

    def test_validate_passes_model_through(
        self, make_artifact: Callable[..., dict[str, Any]]
    ) -> None:
        """validate returns an instance of the model unchanged."""
        artifact = validate(Artifact, make_artifact("pdf"))
        assert validate(Artifact, artifact) is artifact

    def test_frozen(self, make_artifact: Callable[..., dict[str, Any]]) -> None:
        """An Artifact cannot be changed after validation."""
        artifact = validate(Artifact, make_artifact("pdf"))
        with pytest.raises(ValidationError):
            artifact.name = "other"  # type: ignore[misc]

    @given(artifact=artifacts)
    def test_json_round_trip(self, artifact: Artifact) -> None:
        """model_dump_json then model_validate_json gives back an equal Artifact."""
        assert Artifact.model_validate_json(artifact.model_dump_json()) == artifact

    @given(artifact=artifacts)
    def test_validate_round_trip_from_dump(self, artifact: Artifact) -> None:
        """validate accepts a model_dump of any valid Artifact and returns an equal one."""
        assert validate(Artifact, artifact.model_dump()) == artifact


class TestTags:
    """Tag constraints (tags are index keys)."""

    @pytest.mark.parametrize("tag", ["x", "x" * 100, "é" * 100, "with space", "a/b"])
    def test_valid_tags(self, make_artifact: Callable[..., dict[str, Any]], tag: str) -> None:
        """Tags of 1 to 100 characters are accepted as given."""
        assert validate(Artifact, make_artifact("pdf", tags=[tag])).tags == [tag]

    @pytest.mark.parametrize("tag", ["", "x" * 101])
    def test_invalid_tags(self, make_artifact: Callable[..., dict[str, Any]], tag: str) -> None:
        """An empty tag or one over 100 characters is rejected, naming its position."""
        message = raises_invalid(Artifact, make_artifact("pdf", tags=["ok", tag]))
        assert "field 'tags.1'" in message

    def test_tag_order_is_kept(self, make_artifact: Callable[..., dict[str, Any]]) -> None:
        """Tags keep their order."""
        record = validate(Artifact, make_artifact("pdf", tags=["b", "a", "c"]))
        assert record.tags == ["b", "a", "c"]

    def test_non_string_tag(self, make_artifact: Callable[..., dict[str, Any]]) -> None:
        """A tag that is not a string is rejected."""
        assert "field 'tags.0'" in raises_invalid(Artifact, make_artifact("pdf", tags=[3]))


# --- Project ------------------------------------------------------------------------------


class TestProject:
    """Project records, their ids and staleness."""

    def test_id_derived_from_path(self, make_project: Callable[..., dict[str, Any]]) -> None:
        """Without an id, the id is project_id_for_path(path)."""
        data = make_project("web")
        project = validate(Project, data)
        assert project.id == project_id_for_path(data["path"])
        assert len(project.id) == 16

    def test_same_path_same_id(self, make_project: Callable[..., dict[str, Any]]) -> None:
        """Two records for one path get the same id, whatever their names."""
        data = make_project("web")
        other = {**data, "name": "renamed"}
        assert validate(Project, data).id == validate(Project, other).id

    def test_explicit_id_is_kept(self, make_project: Callable[..., dict[str, Any]]) -> None:
        """A given id is kept as is."""
        assert validate(Project, make_project("web", id="custom-id")).id == "custom-id"

    @pytest.mark.parametrize(
        ("change", "fragment"),
        [
            ({"name": ""}, "name must not be empty"),
            ({"id": "a\x00b"}, "project id must not contain NUL"),
            ({"id": "x" * 600}, "project id is 600 bytes"),
            ({"stale": "perhaps"}, "field 'stale'"),
            ({"refreshed_at": "never"}, "field 'refreshed_at'"),
            ({"bogus": True}, "field 'bogus'"),
        ],
    )
    def test_invalid_fields(
        self,
        make_project: Callable[..., dict[str, Any]],
        change: dict[str, Any],
        fragment: str,
    ) -> None:
        """validate raises InvalidRecordError whose message names the invalid field."""
        message = raises_invalid(Project, {**make_project("web"), **change})
        assert message.startswith("invalid Project: ")
        assert fragment in message

    def test_missing_path(self) -> None:
        """A project without a path (and no id) is rejected naming ``path``."""
        assert "field 'path': Field required" in raises_invalid(Project, {"name": "web"})

    @given(project=projects)
    def test_json_round_trip(self, project: Project) -> None:
        """model_dump_json then model_validate_json gives back an equal Project."""
        assert Project.model_validate_json(project.model_dump_json()) == project

    @given(project=projects)
    def test_id_always_derived(self, project: Project) -> None:
        """A project built without an id always carries project_id_for_path(path)."""
        assert project.id == project_id_for_path(project.path)


class TestProjectIsStale:
    """Project.is_stale."""

    def make(self, **fields: Any) -> Project:
        """A valid project with ``fields`` applied."""
        return validate(Project, {"name": "web", "path": "/srv/web", **fields})

    def test_never_refreshed_is_stale(self) -> None:
        """A project never refreshed is stale whatever the TTL."""
        assert self.make().is_stale(10**9, now=T0) is True

    def test_stale_flag_wins(self) -> None:
        """An invalidated project is stale even just after a refresh."""
        assert self.make(refreshed_at=T0, stale=True).is_stale(3600, now=T0) is True

    def test_within_ttl_is_fresh(self) -> None:
        """A project refreshed less than the TTL ago is fresh."""
        project = self.make(refreshed_at=T0)
        assert project.is_stale(3600, now=T0) is False
        assert project.is_stale(3600, now=T0 + timedelta(minutes=59)) is False

    def test_ttl_boundary(self) -> None:
        """At exactly the TTL a project is still fresh; one microsecond later it is stale."""
        project = self.make(refreshed_at=T0)
        assert project.is_stale(3600, now=T0 + timedelta(seconds=3600)) is False
        assert project.is_stale(3600, now=T0 + timedelta(seconds=3600, microseconds=1)) is True

    def test_fractional_ttl(self) -> None:
        """A fractional TTL is honoured to the microsecond."""
        project = self.make(refreshed_at=T0)
        assert project.is_stale(0.5, now=T0 + timedelta(milliseconds=500)) is False
        assert project.is_stale(0.5, now=T0 + timedelta(milliseconds=501)) is True

    def test_default_now_is_current_time(self) -> None:
        """Without ``now``, the current UTC time is used."""
        assert self.make(refreshed_at=T0).is_stale(60) is True
        assert (
            self.make(refreshed_at=datetime(9999, 1, 1, tzinfo=timezone.utc)).is_stale(60) is False
        )

    @pytest.mark.parametrize("ttl", [float("inf"), 1e20])
    def test_huge_ttl(self, ttl: float) -> None:
        """A TTL beyond timedelta's range (Settings accepts ``ttl = inf``) never expires."""
        assert self.make(refreshed_at=T0).is_stale(ttl, now=T0 + timedelta(days=3650)) is False


# --- Deployment ---------------------------------------------------------------------------


class TestDeployment:
    """Deployment records."""

    def test_name_and_type(self) -> None:
        """name and type come from the artifact key."""
        deployment = validate(
            Deployment, {"project_id": "abc", "artifact_key": "team/command/build"}
        )
        assert deployment.name == "build"
        assert deployment.type == "command"

    def test_defaults(self) -> None:
        """Optional fields have their documented defaults."""
        deployment = validate(Deployment, {"project_id": "abc", "artifact_key": "c/skill/pdf"})
        assert deployment.state == "current"
        assert deployment.files_present is True
        assert deployment.local_hash is None

    @pytest.mark.parametrize(
        ("change", "fragment"),
        [
            ({"artifact_key": "pdf"}, "'<collection>/<type>/<name>'"),
            ({"artifact_key": "a/b/c/d"}, "'<collection>/<type>/<name>'"),
            ({"artifact_key": "c/Widget/pdf"}, "field 'type'"),
            ({"artifact_key": "c/skill/"}, "field 'name'"),
            ({"project_id": ""}, "project id must not be empty"),
            ({"project_id": "a\x00b"}, "project id must not contain NUL"),
            ({"state": "broken"}, "field 'state'"),
            ({"files_present": "maybe"}, "field 'files_present'"),
        ],
    )
    def test_invalid_fields(self, change: dict[str, Any], fragment: str) -> None:
        """Invalid keys or fields raise InvalidRecordError naming what is wrong."""
        data = {"project_id": "abc", "artifact_key": "c/skill/pdf", **change}
        assert fragment in raises_invalid(Deployment, data)

    def test_deployment_key_too_long(self) -> None:
        """A deployment whose combined key exceeds 511 bytes is rejected."""
        artifact_key = "c/skill/" + "n" * 490  # 498 bytes: valid alone, too long with the id
        validate(Artifact, {"name": "n" * 490, "type": "skill", "collection": "c"})
        message = raises_invalid(
            Deployment, {"project_id": "0123456789abcdef", "artifact_key": artifact_key}
        )
        assert "deployment key is 527 bytes" in message  # + NUL + "claude_code"


# --- reports ------------------------------------------------------------------------------


class TestReports:
    """Derived properties of VerifyReport, RefreshReport and CacheStats."""

    def finding(self) -> Finding:
        """A repairable frame finding."""
        return Finding(kind="frame", db="artifacts", key="c/skill/pdf", message="CRC32 mismatch")

    def test_verify_ok_when_nothing_found(self) -> None:
        """An empty VerifyReport is ok."""
        assert VerifyReport().ok is True

    def test_verify_not_ok_with_unrepaired_findings(self) -> None:
        """Findings that were not all repaired make the report not ok."""
        assert VerifyReport(findings=[self.finding()]).ok is False
        findings = [self.finding(), self.finding()]
        assert VerifyReport(findings=findings, repaired=1).ok is False

    def test_verify_ok_when_all_repaired(self) -> None:
        """A report whose findings were all repaired is ok."""
        assert VerifyReport(findings=[self.finding()], repaired=1).ok is True

    def test_refresh_ok(self) -> None:
        """A RefreshReport is ok exactly when no source was in error."""
        assert RefreshReport(started_at=T0).ok is True
        errors = [SourceError(path="/x", message="unreadable")]
        assert RefreshReport(started_at=T0, errors=errors).ok is False

    def stats(self, hits: int, misses: int) -> CacheStats:
        """A CacheStats with the given counters."""
        return CacheStats(
            path="/c",
            schema_version=1,
            counts={},
            file_bytes=0,
            used_bytes=0,
            map_size=1,
            max_map_size=1,
            hits=hits,
            misses=misses,
            last_txn_id=0,
            stale_projects=0,
        )

    def test_hit_rate_before_first_lookup(self) -> None:
        """hit_rate is None before any lookup."""
        assert self.stats(0, 0).hit_rate is None

    @pytest.mark.parametrize(
        ("hits", "misses", "rate"), [(3, 1, 0.75), (0, 5, 0.0), (7, 0, 1.0), (1, 2, 1 / 3)]
    )
    def test_hit_rate(self, hits: int, misses: int, rate: float) -> None:
        """hit_rate is hits over hits plus misses."""
        assert self.stats(hits, misses).hit_rate == pytest.approx(rate)


# --- Fingerprint, decoded from the cache ------------------------------------------------

FINGERPRINT_FIELDS = list(Fingerprint.model_fields)


def fields_of(fingerprint: Any) -> dict[str, Any]:
    """The Fingerprint fields of a model or a StoredFingerprint, by name."""
    return {name: getattr(fingerprint, name) for name in FINGERPRINT_FIELDS}


class TestFingerprintFromJson:
    """``fingerprint_from_json`` decodes what pydantic would, only faster."""

    @given(fingerprint=fingerprints)
    def test_agrees_with_validation(self, fingerprint: Fingerprint) -> None:
        """Any stored Fingerprint decodes to the same values as model_validate_json gives."""
        payload = fingerprint.model_dump_json().encode()
        decoded = fingerprint_from_json(payload)
        assert isinstance(decoded, StoredFingerprint)
        assert fields_of(decoded) == fields_of(Fingerprint.model_validate_json(payload))

    def test_naive_read_time_is_utc(self) -> None:
        """A read time without an offset is read as UTC, as the model reads it."""
        payload = (
            b'{"path":"/a","mtime_ns":1,"size":2,"inode":3,"signature":null,'
            b'"content_hash":null,"read_at":"2024-05-01T12:00:00","data":{}}'
        )
        decoded = fingerprint_from_json(payload)
        assert isinstance(decoded, StoredFingerprint)
        assert decoded.read_at == T0 and decoded.read_at.tzinfo is not None

    def test_other_shapes_go_through_pydantic(self) -> None:
        """A payload missing a field (it has a default) comes back as a validated model."""
        payload = b'{"path":"/a","mtime_ns":1,"size":2,"inode":3}'
        decoded = fingerprint_from_json(payload)
        assert isinstance(decoded, Fingerprint)
        assert decoded.data == {} and decoded.read_at is None

    @pytest.mark.parametrize(
        "read_at", [b'"soon"', b"12", b"[1]"], ids=["not-iso", "number", "list"]
    )
    def test_bad_values_fail_as_validation_does(self, read_at: bytes) -> None:
        """What pydantic rejects is rejected with pydantic's error; what it reads, it reads."""
        payload = (
            b'{"path":"/a","mtime_ns":1,"size":2,"inode":3,"signature":null,'
            b'"content_hash":null,"read_at":' + read_at + b',"data":{}}'
        )
        try:
            expected = Fingerprint.model_validate_json(payload)
        except ValidationError:
            with pytest.raises(ValidationError):
                fingerprint_from_json(payload)
        else:
            assert fields_of(fingerprint_from_json(payload)) == fields_of(expected)
