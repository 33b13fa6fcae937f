"""The quick verify (the default) and ``--deep`` (issue 15, item 5).

The quick check reads every framed value once: a flipped bit anywhere is a
``frame`` finding, a missing terms record or deployment index entry an
``index`` finding; what only validation shows (a well-framed record that does
not validate) is left to ``deep=True``.
"""

from __future__ import annotations

from typing import Any, Callable

from typer.testing import CliRunner

from projcache import ProjectCache, codec
from projcache_cli import app

Factory = Callable[..., dict[str, Any]]


def _seed(cache: ProjectCache, make_artifact: Factory, make_project: Factory) -> None:
    cache.put_artifacts([make_artifact(f"a{i}", tags=["t"]) for i in range(20)])
    cache.put_projects([make_project("p")])
    pid = cache.list_projects()[0].id
    cache.put_deployments([{"project_id": pid, "artifact_key": "default/skill/a1"}])


def _poke(cache: ProjectCache, db: str, key: bytes, value: bytes) -> None:
    storage = cache._storage
    with storage.env.begin(write=True) as txn:
        txn.put(key, value, db=storage.dbs[db])


def test_quick_is_clean_and_counts_every_value(
    cache: ProjectCache, make_artifact: Factory, make_project: Factory
) -> None:
    """A healthy cache: no findings, every framed value counted, progress reaches the total."""
    _seed(cache, make_artifact, make_project)
    calls: list[tuple[int, int]] = []
    report = cache.verify(progress=lambda done, total: calls.append((done, total)))
    assert report.ok and report.findings == []
    assert report.checked["artifacts"] == 20
    assert report.checked["deployments"] == 1
    assert calls and calls[-1][0] == calls[-1][1] == sum(report.checked.values())


def test_quick_finds_a_flipped_bit_in_any_framed_value(
    cache: ProjectCache, make_artifact: Factory, make_project: Factory
) -> None:
    """A CRC mismatch in a record, a project record or meta is a frame finding."""
    _seed(cache, make_artifact, make_project)
    storage = cache._storage
    with storage.env.begin() as txn:
        good = bytes(txn.get(b"default/skill/a3", db=storage.dbs["artifacts"]))
        other = bytes(txn.get(b"default/skill/a4", db=storage.dbs["artifacts"]))
    _poke(cache, "artifacts", b"default/skill/a3", good[:-2] + b"X" + good[-1:])
    _poke(cache, "artifacts", b"default/skill/a4", other[:6] + b"\x00" + other[7:])
    _poke(cache, "meta", b"junk", b"\x01\x00\x00\x00\x00{}")
    found = {(f.kind, f.db, f.key) for f in cache.verify().findings}
    assert found == {
        ("frame", "artifacts", "default/skill/a3"),
        ("frame", "artifacts", "default/skill/a4"),
        ("frame", "meta", "junk"),
    }


def test_quick_finds_structural_damage(
    cache: ProjectCache, make_artifact: Factory, make_project: Factory
) -> None:
    """A malformed key, a missing artifact id, a missing deployment index entry."""
    _seed(cache, make_artifact, make_project)
    _poke(cache, "artifacts", b"no-slashes", codec.encode({"x": 1}))
    storage = cache._storage
    with storage.env.begin(write=True) as txn:
        txn.delete(b"default/skill/a7", db=storage.dbs["artifact-ids"])
        cursor = txn.cursor(storage.dbs["deployments-by-state"])
        assert cursor.first()
        cursor.delete()
    found = {(f.kind, f.db) for f in cache.verify().findings}
    assert ("model", "artifacts") in found
    assert ("index", "artifact-ids") in found
    assert ("index", "deployments-by-state") in found


def test_deep_finds_what_only_validation_shows(
    cache: ProjectCache, make_artifact: Factory, make_project: Factory
) -> None:
    """A well-framed record that does not validate: quick passes it, deep reports it."""
    _seed(cache, make_artifact, make_project)
    _poke(cache, "artifacts", b"default/skill/a2", codec.encode({"name": 5}))
    assert cache.verify().findings == []
    deep = cache.verify(deep=True).findings
    assert [(f.kind, f.key) for f in deep if f.db == "artifacts"] == [("model", "default/skill/a2")]


def test_cli_verify_quick_and_deep(
    cache: ProjectCache, make_artifact: Factory, make_project: Factory
) -> None:
    """``projcache verify`` is quick; ``--deep`` also checks the models; exit codes 0 and 1."""
    _seed(cache, make_artifact, make_project)
    _poke(cache, "artifacts", b"default/skill/a2", codec.encode({"name": 5}))
    path = str(cache.path)
    cache.close()
    runner = CliRunner()
    quick = runner.invoke(app, ["--cache-dir", path, "verify"])
    assert quick.exit_code == 0, quick.output
    deep = runner.invoke(app, ["--cache-dir", path, "verify", "--deep"])
    assert deep.exit_code == 1
    assert "model: artifacts default/skill/a2" in deep.output
