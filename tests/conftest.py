"""Shared fixtures: caches in ``tmp_path``, record factories, the open-environment guard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, settings

from projcache import ProjectCache
from projcache import storage as storage_module
from projcache.config import Settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.load_profile("default")


@pytest.fixture(autouse=True)
def _no_environment_left_open() -> Iterator[None]:
    """Fail a test that leaves an LMDB environment open (and close it for the next test)."""
    before = set(storage_module._registry)
    yield
    leaked = [s for key, s in list(storage_module._registry.items()) if key not in before]
    for storage in leaked:
        while not storage.closed:
            storage.release()
    if leaked:
        pytest.fail(
            f"test left {len(leaked)} LMDB environment(s) open: {[str(s.path) for s in leaked]}"
        )


@pytest.fixture
def cache_settings(tmp_path: Path) -> Settings:
    """Settings for a fresh cache in ``tmp_path`` with a small initial map (exercises growth)."""
    return Settings(cache_dir=tmp_path / "cache", map_size=256 * 1024)


@pytest.fixture
def cache(cache_settings: Settings) -> Iterator[ProjectCache]:
    """A fresh read-write cache, closed after the test."""
    with ProjectCache.open(settings=cache_settings) as opened:
        yield opened


@pytest.fixture
def make_artifact() -> Callable[..., dict[str, Any]]:
    """Factory of artifact dicts: ``make_artifact("pdf", type="skill", tags=[...])``."""

    def make(name: str, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {
            "name": name,
            "type": "skill",
            "collection": "default",
            "description": f"The {name} artifact",
            "content_hash": "0" * 64,
        }
        record.update(fields)
        return record

    return make


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Factory of project dicts whose path lies under ``tmp_path``."""

    def make(name: str, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"name": name, "path": str(tmp_path / "projects" / name)}
        record.update(fields)
        return record

    return make
