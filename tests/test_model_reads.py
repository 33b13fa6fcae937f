"""Records read back without re-validation equal the validated models (issue 15, item 1).

:func:`projcache.models.from_stored_json` builds a model from a stored record's
JSON without running pydantic's validators; these tests generate records,
store them and compare what every read API returns with
``model_validate_json`` of the same bytes: equal values, the same classes
(nested models included), aware datetimes, the same ``model_fields_set`` and
the same JSON when dumped again.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from projcache import ProjectCache, model_reads
from projcache.config import Settings
from projcache.errors import NotFoundError
from projcache.model_reads import stored_json_list_loader
from projcache.models import (
    Artifact,
    Collection,
    Deployment,
    Project,
    SourceError,
    from_stored_json,
)

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
    min_size=1,
    max_size=12,
)
_free = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
_times = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
        ),
    ),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),  # naive
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _free,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_free, inner, max_size=3),
    max_leaves=8,
)
_errors = st.lists(st.builds(SourceError, path=_free, message=_free), max_size=3)


def _artifacts() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "name": _text,
            "type": st.sampled_from(["skill", "command", "agent", "hook", "mcp"]),
            "collection": _text,
        },
        optional={
            "path": _free,
            "title": st.none() | _free,
            "description": _free,
            "tags": st.lists(_text, max_size=4),
            "version": st.none() | _free,
            "content_hash": st.none() | _free,
            "front_matter": st.dictionaries(_free, _json, max_size=4),
            "managed": st.booleans(),
            "updated_at": _times,
        },
    )


def _same(model: type[BaseModel], payload: bytes, built: BaseModel) -> None:
    """``built`` is exactly what validating ``payload`` gives."""
    expected = model.model_validate_json(payload)
    assert type(built) is model
    assert built == expected
    assert built.model_fields_set == expected.model_fields_set
    assert built.model_dump_json() == expected.model_dump_json()
    assert built.model_dump() == expected.model_dump()
    for name in model.model_fields:
        mine, theirs = getattr(built, name), getattr(expected, name)
        assert type(mine) is type(theirs) or isinstance(mine, datetime), name
        if isinstance(theirs, list):
            assert [type(x) for x in mine] == [type(x) for x in theirs], name
        if isinstance(theirs, datetime):
            assert mine.utcoffset() == theirs.utcoffset(), name


@pytest.fixture
def cache(tmp_path: Path) -> Any:
    with ProjectCache.open(settings=Settings(cache_dir=tmp_path / "cache")) as opened:
        yield opened


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(_artifacts(), min_size=1, max_size=6))
def test_artifacts_read_back_equal_validated_models(cache: Any, records: list[Any]) -> None:
    """get_artifact, list_artifacts and search give the validated model, field for field."""
    cache.clear()
    stored = {Artifact.model_validate(r).key: r for r in records}
    cache.put_artifacts(list(stored.values()))
    for key in stored:
        payload = cache.get_artifact_json(key)
        _same(Artifact, payload, cache.get_artifact(key))
    listed = list(cache.list_artifacts())
    assert [a.key for a in listed] == sorted(stored)
    for artifact in listed:
        _same(Artifact, cache.get_artifact_json(artifact.key), artifact)


@settings(max_examples=40, deadline=None)
@given(
    project=st.fixed_dictionaries(
        {"name": _text, "path": _text.map(lambda p: "/x/" + p)},
        optional={
            "refreshed_at": _times,
            "stale": st.booleans(),
            "errors": _errors,
            "description": _free,
        },
    ),
    collection=st.fixed_dictionaries(
        {"name": _text, "path": _free},
        # orjson (the only writer of stored records) refuses integers past 64 bits.
        optional={
            "refreshed_at": _times,
            "errors": _errors,
            "artifact_count": st.integers(0, 2**63 - 1),
        },
    ),
)
def test_nested_models_are_model_instances(project: Any, collection: Any) -> None:
    """Lists of sub-models (errors) come back as SourceError instances, equal to validation's."""
    for model, data in ((Project, project), (Collection, collection)):
        payload = model.model_validate(data).model_dump_json().encode()
        built = from_stored_json(model, payload)
        _same(model, payload, built)
        assert all(type(e) is SourceError for e in built.errors)  # type: ignore[attr-defined]


def test_projects_and_deployments_read_back_equal(cache: Any, tmp_path: Path) -> None:
    """get_project, list_projects and list_deployments return the validated models."""
    path = str(tmp_path / "proj")
    cache.put_projects(
        [
            {
                "name": "p",
                "path": path,
                "refreshed_at": "2026-01-02T03:04:05.123456Z",
                "errors": [{"path": "a", "message": "b"}],
            }
        ]
    )
    cache.put_artifacts([{"name": "a", "type": "skill", "collection": "c"}])
    project = cache.list_projects()[0]
    cache.put_deployments(
        [
            {
                "project_id": project.id,
                "artifact_key": "c/skill/a",
                "deployed_at": "2026-01-02T03:04:05+02:00",
            }
        ]
    )
    [payload] = cache.list_deployments_json(project.id)
    _same(Deployment, payload, cache.list_deployments(project.id)[0])
    stored = project.model_dump_json().encode()
    _same(Project, stored, project)
    _same(Project, stored, cache.get_project(project.id))
    assert type(project.errors[0]) is SourceError


@pytest.mark.parametrize(
    "payload",
    [
        b'{"name": "a", "type": "skill", "collection": "c"}',  # fields missing: defaults
        b'{"key": "c/skill/a", "name": "a", "type": "skill", "collection": "c", "x": 1}',
        b"[1, 2]",
    ],
)
def test_other_shapes_go_through_validation(payload: bytes) -> None:
    """A payload that is not exactly what the model writes is validated (defaults, errors)."""
    try:
        expected: Any = Artifact.model_validate_json(payload)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            from_stored_json(Artifact, payload)
        return
    assert from_stored_json(Artifact, payload) == expected


def test_unparsable_datetime_goes_through_validation() -> None:
    """A datetime in a form fromisoformat does not read is left to pydantic."""
    record = Artifact(name="a", type="skill", collection="c").model_dump()
    record["updated_at"] = "2026-01-02T03:04:05.1Z"  # one fractional digit
    payload = orjson.dumps(record)
    assert from_stored_json(Artifact, payload) == Artifact.model_validate_json(payload)


_deployments = st.fixed_dictionaries(
    {"project_id": _text, "artifact_key": st.just("c/skill/a")},
    optional={
        "profile": st.sampled_from(["claude_code", "codex"]),
        "platform": st.none() | _free,
        "deployed_at": _times,
        "content_hash": st.none() | _free,
        "local_hash": st.none() | _free,
        "files_present": st.booleans(),
        "version": st.none() | _free,
        "state": st.sampled_from(["current", "modified", "outdated", "missing"]),
    },
)


@settings(max_examples=40, deadline=None)
@given(records=st.lists(_deployments, min_size=1, max_size=5))
def test_list_loader_builds_what_validation_gives(records: list[dict[str, Any]]) -> None:
    """``stored_json_list_loader`` builds, record by record, what validating each payload gives."""
    payloads = [Deployment.model_validate(r).model_dump_json().encode() for r in records]
    built = stored_json_list_loader(Deployment)(payloads)
    assert len(built) == len(payloads)
    for payload, model in zip(payloads, built):
        _same(Deployment, payload, model)


def test_list_loader_validates_other_shapes_in_place() -> None:
    """A payload of another shape among good ones is validated; an invalid one raises pydantic's."""
    good = Deployment(project_id="p", artifact_key="c/skill/a").model_dump_json().encode()
    old = b'{"project_id": "p", "artifact_key": "c/skill/b"}'  # fields missing: defaults
    late = orjson.loads(good)
    late["deployed_at"] = "2026-01-02T03:04:05.1Z"  # a form fromisoformat does not read
    odd = orjson.dumps(late)
    built = stored_json_list_loader(Deployment)([good, old, odd, good])
    assert built == [Deployment.model_validate_json(p) for p in (good, old, odd, good)]
    with pytest.raises(ValueError):
        stored_json_list_loader(Deployment)([good, b'{"project_id": "p"}'])
    with pytest.raises(ValueError):
        stored_json_list_loader(Deployment)([b"[1"])


class _Mutable(BaseModel):
    name: str
    when: Optional[datetime] = None


def test_fields_set_is_shared_only_by_frozen_models() -> None:
    """Frozen models share one fields set (nothing adds to it); a mutable model gets its own."""
    payload = _Mutable(name="a").model_dump_json().encode()
    first, second = stored_json_list_loader(_Mutable)([payload, payload])
    first.name = "b"
    assert first.model_fields_set is not second.model_fields_set
    assert from_stored_json(_Mutable, payload).model_fields_set == {"name", "when"}
    assert first.when is None and second.name == "a"
    good = Deployment(project_id="p", artifact_key="c/skill/a").model_dump_json().encode()
    one, two = stored_json_list_loader(Deployment)([good, good])
    copied = one.model_copy(update={"version": "2"})
    assert copied.version == "2" and two.model_fields_set == set(Deployment.model_fields)


@pytest.mark.parametrize("offset", [0, 2, 5, 40, -1])
def test_a_damaged_deployment_in_a_project_listing_is_refused(
    cache: Any, tmp_path: Path, offset: int
) -> None:
    """A project's listing checks each frame: one flipped bit raises, naming the record."""
    from projcache.errors import CorruptRecordError

    cache.put_projects([{"name": "p", "path": str(tmp_path / "p")}])
    cache.put_artifacts([{"name": n, "type": "skill", "collection": "c"} for n in "abc"])
    project = cache.list_projects()[0]
    cache.put_deployments(
        [{"project_id": project.id, "artifact_key": f"c/skill/{n}"} for n in "abc"]
    )
    assert [d.artifact_key for d in cache.list_deployments(project.id)] == [
        "c/skill/a",
        "c/skill/b",
        "c/skill/c",
    ]
    storage = cache._storage
    with storage.env.begin(write=True, db=storage.dbs["deployments"]) as txn:
        key = next(k for k, _v in txn.cursor() if b"c/skill/b" in k)
        value = bytearray(txn.get(key))
        value[offset] ^= 0x01
        txn.put(key, bytes(value))
    for listing in (cache.list_deployments, cache.list_deployments_json):
        with pytest.raises(CorruptRecordError, match="c/skill/b"):
            listing(project.id)
        with pytest.raises(CorruptRecordError, match="c/skill/b"):
            listing("p")  # by name: resolved, then the same scan


@pytest.mark.parametrize("length", [0, 1, 4, 5])
def test_a_truncated_deployment_in_a_project_listing_is_refused(cache: Any, length: int) -> None:
    """A frame cut to its first ``length`` bytes (shorter than its head, or an empty
    payload) raises, naming the record, in both listings, whatever its place."""
    from projcache.errors import CorruptRecordError

    cache.put_projects([{"id": "p", "name": "p", "path": "/srv/p"}])
    cache.put_artifacts([{"name": n, "type": "skill", "collection": "c"} for n in "abc"])
    cache.put_deployments([{"project_id": "p", "artifact_key": f"c/skill/{n}"} for n in "abc"])
    storage = cache._storage
    with storage.env.begin(write=True, db=storage.dbs["deployments"]) as txn:
        key = next(k for k, _v in txn.cursor() if b"c/skill/c" in k)
        txn.put(key, txn.get(key)[:length])
    for listing in (cache.list_deployments, cache.list_deployments_json):
        with pytest.raises(CorruptRecordError, match="c/skill/c"):
            listing("p")


def test_a_project_listing_keeps_to_its_own_keys(cache: Any) -> None:
    """Project ids that extend one another ("p", "p\x01x", "p1", "pp") list only their
    own deployments: the scan stops where the next id's keys begin."""
    ids = ["p", "p\x01", "p\x01x", "p1", "pp", "o"]
    cache.put_projects([{"id": i, "name": f"n{n}", "path": f"/srv/{n}"} for n, i in enumerate(ids)])
    names = "abcdef"
    cache.put_artifacts([{"name": n, "type": "skill", "collection": "c"} for n in names])
    cache.put_deployments(
        [
            {"project_id": i, "artifact_key": f"c/skill/{a}", "deployed_at": "2026-01-02T03:04Z"}
            for n, i in enumerate(ids)
            for a in names[: n + 1]
        ]
    )
    for n, project_id in enumerate(ids):
        built = cache.list_deployments(project_id)
        assert [(d.project_id, d.artifact_key) for d in built] == [
            (project_id, f"c/skill/{a}") for a in names[: n + 1]
        ]
        payloads = cache.list_deployments_json(project_id)
        assert built == [Deployment.model_validate_json(p) for p in payloads]
        assert cache.list_deployments(f"n{n}") == built  # by name: the same listing
    with pytest.raises(NotFoundError):
        cache.list_deployments("p\x02")  # between two ids' keys: not a project


def test_list_loader_checks_every_records_keys() -> None:
    """After good records, one with as many keys but one renamed is still validated (refused)."""
    good = Deployment(project_id="p", artifact_key="c/skill/a").model_dump_json().encode()
    renamed = good.replace(b'"version":', b'"versions":')
    load_all = stored_json_list_loader(Deployment)
    assert len(load_all([good, good])) == 2
    with pytest.raises(ValueError):
        load_all([good, renamed])
    shuffled = orjson.dumps(dict(reversed(list(orjson.loads(good).items()))))
    assert load_all([good, shuffled, good]) == [Deployment.model_validate_json(good)] * 3


def _variant(payload: bytes, how: str) -> bytes:
    """``payload`` (a stored deployment) in another shape than the one its model writes."""
    raw = orjson.loads(payload)
    if how == "missing":
        del raw["version"]
    elif how == "shuffled":
        raw = dict(reversed(list(raw.items())))
    elif how == "naive":
        raw["deployed_at"] = "2026-01-02T03:04:05"
    elif how == "fraction":
        raw["deployed_at"] = "2026-01-02T03:04:05.1Z"
    elif how == "not a date":
        raw["deployed_at"] = "yesterday"
    elif how == "array":
        return b"[1, 2]"
    return orjson.dumps(raw)


_hows = st.sampled_from(
    ["as is", "missing", "shuffled", "naive", "fraction", "not a date", "array"]
)


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(st.tuples(_deployments, _hows), max_size=6),
    warm=st.booleans(),
)
def test_list_loader_batches_equal_validation_record_by_record(
    records: list[tuple[dict[str, Any], str]], warm: bool
) -> None:
    """Any mix of stored and other shapes, the loader warmed up or not: the models (or the
    error) are what validating each payload in turn gives."""
    payloads = [
        _variant(Deployment.model_validate(r).model_dump_json().encode(), how) for r, how in records
    ]
    load_all = stored_json_list_loader(Deployment)
    if warm:  # the batch path is taken once a record of the model's own shape was seen
        good = Deployment(project_id="p", artifact_key="c/skill/a").model_dump_json().encode()
        load_all([good])
    try:
        expected = [Deployment.model_validate_json(p) for p in payloads]
    except ValueError as exc:
        with pytest.raises(type(exc)):
            load_all(payloads)
        return
    built = load_all(iter(payloads))
    assert built == expected
    for payload, model in zip(payloads, built):
        _same(Deployment, payload, model)


@pytest.mark.parametrize(
    "odd",
    [
        b"1",
        b"null",
        b"true",
        b'"deployed_at"',
        orjson.dumps(list(Deployment.model_fields)),  # an array of exactly the field names
    ],
)
def test_list_loader_refuses_what_validation_refuses_anywhere_in_a_batch(odd: bytes) -> None:
    """A payload that is not a stored record, first, last or among good ones, gives
    pydantic's error, as validating it alone does, and never a model."""
    good = Deployment(project_id="p", artifact_key="c/skill/a").model_dump_json().encode()
    with pytest.raises(ValueError):
        Deployment.model_validate_json(odd)
    load_all = stored_json_list_loader(Deployment)
    assert len(load_all([good, good])) == 2  # the loader has seen the good keys
    for batch in ([odd], [odd, good], [good, odd], [good, odd, good]):
        with pytest.raises(ValueError):
            load_all(batch)


def test_list_loader_keeps_each_records_time_zone_and_nulls() -> None:
    """Times in UTC, at another offset, naive, and absent, mixed in one batch, come out as
    validation makes them (aware; naive read as UTC)."""
    records = [Deployment(project_id="p", artifact_key=f"c/skill/{n}").model_dump() for n in "abcd"]
    records[0]["deployed_at"] = "2026-01-02T03:04:05Z"
    records[1]["deployed_at"] = "2026-01-02T03:04:05+02:00"
    records[2]["deployed_at"] = None
    payloads = [orjson.dumps(r) for r in records]
    naive = dict(records[3], deployed_at="2026-01-02T03:04:05")
    for batch in (payloads, [*payloads, orjson.dumps(naive)], payloads[1:], payloads[2:]):
        built = stored_json_list_loader(Deployment)(batch)
        assert built == [Deployment.model_validate_json(p) for p in batch]
        assert all(d.deployed_at is None or d.deployed_at.utcoffset() is not None for d in built)


def test_a_batch_of_models_is_built_by_pydantic_core_as_model_construct_builds_them() -> None:
    """The list loader's builder makes each model from (fields, None, fields set) in one
    pydantic-core call: the very dict and set given, no extra, no private, no validator run
    (an artifact key no validator would let through is kept)."""
    build = model_reads._builder(Deployment)
    assert build is not None
    raw = Deployment(project_id="p", artifact_key="c/skill/a").model_dump()
    raw["artifact_key"] = "not a key"
    fields = set(Deployment.model_fields)
    (built,) = build([(raw, None, fields)])
    assert type(built) is Deployment
    assert built.__dict__ is raw and built.model_fields_set is fields
    assert built.__pydantic_extra__ is None and built.__pydantic_private__ is None
    assert built == Deployment.model_construct(_fields_set=fields, **raw)


class _Validating:
    """A stand-in for a pydantic-core validator that validates its input (as the class's own
    validator does) instead of building models from triples."""

    def __init__(self, schema: Any) -> None:
        self.model = schema["items_schema"]["cls"]

    def validate_python(self, items: list[Any]) -> list[Any]:
        return [self.model.model_validate(dict(raw)) for raw, _, _ in items]


class _Copying(_Validating):
    """A stand-in that builds models but from a copy of each dict (not the one given)."""

    def validate_python(self, items: list[Any]) -> list[Any]:
        return [self.model.model_construct(fields, **raw) for raw, _, fields in items]


@pytest.mark.parametrize("stand_in", [_Validating, _Copying])
def test_the_builder_is_refused_unless_it_builds_from_the_very_triple(
    monkeypatch: pytest.MonkeyPatch, stand_in: type[_Validating]
) -> None:
    """A pydantic-core that validates instead (or builds from copies) fails the probe: no
    builder, and the loader sets the slots itself, with the same models."""
    monkeypatch.setattr(model_reads, "SchemaValidator", stand_in)
    assert model_reads._builder(Deployment) is None
    assert model_reads._builder(_Mutable) is None
    good = Deployment(project_id="p", artifact_key="c/skill/a").model_dump_json().encode()
    fresh = stored_json_list_loader.__wrapped__(Deployment)  # not the cached loader
    built = fresh([good, good])
    assert built == [Deployment.model_validate_json(good)] * 2
    for model in built:
        _same(Deployment, good, model)


# -- listings by facet: a page of records read at once, a page of models built at once ----


def _tagged(names: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": n, "type": "skill", "collection": "c", "tags": ["t"], **extra} for n in names]


def test_a_tag_listing_builds_each_pages_models_in_one_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """list_artifacts builds a page's models with the list loader, one call per page (not
    one per record), and they are what validating each record's JSON gives, in key order."""
    from projcache import model_reads, streams

    calls: list[int] = []
    real = model_reads.stored_json_list_loader

    def spy(model: Any) -> Any:
        load_all = real(model)

        def counted(payloads: list[bytes]) -> list[Any]:
            calls.append(len(payloads))
            return load_all(payloads)

        return counted

    monkeypatch.setattr(model_reads, "stored_json_list_loader", spy)
    monkeypatch.setattr(streams, "PAGE", 4)
    names = "qwertyuiopasd"  # 13 tagged: pages of 4, 4, 4, 1
    with ProjectCache.open(settings=Settings(cache_dir=tmp_path / "cache")) as cache:
        cache.put_artifacts(_tagged(names))
        cache.put_artifacts([{"name": "z", "type": "skill", "collection": "c", "tags": ["u"]}])
        listed = list(cache.list_artifacts(tag="t"))
        assert [a.key for a in listed] == sorted(f"c/skill/{n}" for n in names)
        for artifact in listed:
            _same(Artifact, cache.get_artifact_json(artifact.key), artifact)
    assert [n for n in calls if n != 20] == [4, 4, 4, 1]  # (20: a listing of deployments)


def test_a_tag_listing_of_records_with_and_without_a_body(cache: Any) -> None:
    """Record frames (an artifact with a body) and plain frames in one page: every record is
    listed as a point read shows it (its body left out), by tag, type and collection."""
    cache.put_artifacts(_tagged("aceg", body="# Title\n\nsome body text " * 20))
    cache.put_artifacts(_tagged("bdfh"))
    keys = [f"c/skill/{n}" for n in "abcdefgh"]
    for filters in ({"tag": "t"}, {"type": "skill"}, {"tag": "t", "collection": "c"}):
        assert list(cache.iter_artifacts_json(**filters)) == [
            cache.get_artifact_json(k) for k in keys
        ]
        assert [a.body for a in cache.list_artifacts(**filters)] == [""] * 8
    assert cache.get_artifact_body("c/skill/a").startswith("# Title")


def test_a_tag_listing_sorts_keys_as_text(cache: Any) -> None:
    """Keys beyond ASCII come in the order of their text (what sorting ``str`` gives), and
    the collection and type filters keep exactly their own keys."""
    names = ["zeta", "Émile", "éclair", "ärger", "日本", "\U0001f600smile", "a b", "A"]
    records = [
        {"name": n, "type": t, "collection": c, "tags": ["t"]}
        for n in names
        for c in ("c", "d")
        for t in ("skill", "agent")
    ]
    cache.put_artifacts(records)
    every = sorted(f"{r['collection']}/{r['type']}/{r['name']}" for r in records)
    assert [a.key for a in cache.list_artifacts(tag="t")] == every
    for filters in ({"collection": "d"}, {"type": "agent"}, {"collection": "c", "type": "skill"}):
        expected = [
            k
            for k in every
            if k.split("/")[0] == filters.get("collection", k.split("/")[0])
            and k.split("/")[1] == filters.get("type", k.split("/")[1])
        ]
        assert [a.key for a in cache.list_artifacts(tag="t", **filters)] == expected
        assert [orjson.loads(p)["key"] for p in cache.iter_artifacts_json(tag="t", **filters)] == (
            expected
        )


@pytest.mark.parametrize(
    ("where", "how"),
    [
        (0, "flip"),
        (3, "flip"),
        (40, "flip"),
        (-1, "flip"),
        (0, "cut"),
        (1, "cut"),
        (4, "cut"),
        (5, "cut"),
    ],
)
def test_a_damaged_artifact_in_a_facet_listing_is_refused(cache: Any, where: int, how: str) -> None:
    """One flipped bit (the format byte, the CRC, the JSON) or a frame cut short, anywhere in
    a page: a listing by tag or type raises, naming the record, models or JSON."""
    from projcache.errors import CorruptRecordError

    cache.put_artifacts(_tagged("abcde"))
    storage = cache._storage
    with storage.env.begin(write=True, db=storage.dbs["artifacts"]) as txn:
        value = bytearray(txn.get(b"c/skill/c"))
        if how == "flip":
            value[where] ^= 0x01
        else:
            del value[where:]
        txn.put(b"c/skill/c", bytes(value))
    for filters in ({"tag": "t"}, {"type": "skill"}):
        with pytest.raises(CorruptRecordError, match="c/skill/c"):
            list(cache.list_artifacts(**filters))
        with pytest.raises(CorruptRecordError, match="c/skill/c"):
            list(cache.iter_artifacts_json(**filters))


def test_list_artifacts_checks_its_filters_at_the_call(cache: Any) -> None:
    """Like iter_artifacts_json: a bad type, state or project fails at the call, before
    anything is iterated."""
    from projcache.errors import InvalidArgumentError, ProjectNotFound

    with pytest.raises(InvalidArgumentError):
        cache.list_artifacts(type="skil/pdf")
    with pytest.raises(InvalidArgumentError):
        cache.list_artifacts(state="sideways")
    with pytest.raises(ProjectNotFound):
        cache.list_artifacts(project="nowhere")


def test_closing_a_model_listing_ends_its_read_transaction(
    cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """list_artifacts closed half-way closes the listing under it (its transaction ends)."""
    from projcache import streams

    monkeypatch.setattr(streams, "PAGE", 2)
    cache.put_artifacts(_tagged("abcdef"))
    storage = cache._storage
    opened: list[Any] = []
    real = storage.stream

    def stream(*args: Any) -> Any:
        opened.append(real(*args))
        return opened[-1]

    monkeypatch.setattr(storage, "stream", stream)
    for filters in ({"tag": "t"}, {}, {"collection": "c"}):
        listing = cache.list_artifacts(**filters)
        assert next(listing).key == "c/skill/a"
        assert opened[-1].gi_frame is not None  # suspended inside its transaction
        listing.close()
        assert opened[-1].gi_frame is None


def test_a_batch_reads_and_writes_its_datetimes_by_the_records_own_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batch loader reads each record's datetime and writes it back by the key object
    the decoded dict holds (found by identity, no text compared: list8, ~7k instructions of
    a 20-record listing), and the models are still what validation gives."""
    used: list[tuple[str, str, bool]] = []

    class Traced(dict):  # type: ignore[type-arg]
        """A decoded record that notes each item access: the key object used, and whether
        it is one of the record's own key objects (not merely an equal string)."""

        def _note(self, how: str, key: str) -> None:
            used.append((how, key, any(key is mine for mine in self)))

        def __getitem__(self, key: str) -> Any:
            self._note("get", key)
            return super().__getitem__(key)

        def __setitem__(self, key: str, value: Any) -> None:
            self._note("set", key)
            super().__setitem__(key, value)

    decode = orjson.loads
    monkeypatch.setattr(orjson, "loads", lambda payload: Traced(decode(payload)))
    load_all = stored_json_list_loader.__wrapped__(Deployment)  # a fresh loader: new loads
    stamp = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
    payloads = [
        Deployment(project_id="p", artifact_key=f"c/skill/{n}", deployed_at=stamp + timedelta(n))
        .model_dump_json()
        .encode()
        for n in range(3)
    ]
    first = load_all(payloads[:1])  # learns the keys
    used.clear()
    built = load_all(payloads)
    assert first + built[1:] == [Deployment.model_validate_json(p) for p in payloads]
    assert built == [Deployment.model_validate_json(p) for p in payloads]
    assert [how for how, *_ in used] == ["get"] * 3 + ["set"] * 3
    assert len({id(key) for _, key, _ in used}) == 1  # one remembered key object throughout
    # Where datetime.fromisoformat reads pydantic's "Z" (3.11+), the loader parses datetimes
    # itself, by the key object of the record that taught it the keys (orjson hands out the
    # same key objects for the same keys); before 3.11 the field's converter reads them.
    if model_reads._FROMISO_READS_Z:
        assert all(own for *_, own in used), "looked up by an equal string, not the record's key"
