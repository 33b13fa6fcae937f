"""Shared fixtures: caches in ``tmp_path``, record factories, source trees, seeded caches,
the open-environment guard.

Plain helpers live apart: builders of trees and caches in ``factories.py``, the
CLI runner in ``clirun.py``, raw-LMDB damage in ``damage.py``, helpers for tests with
child processes in ``children.py``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, settings

from factories import DIRECT, CollectionBuilder, ProjectBuilder, Seeded, ShopWorld, with_roots
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


def _projcache_levels() -> dict[str, int]:
    manager = logging.Logger.manager
    return {
        name: logger.level
        for name, logger in list(manager.loggerDict.items())
        if isinstance(logger, logging.Logger) and name.startswith("projcache")
    }


@pytest.fixture(autouse=True)
def _logger_levels_restored() -> Iterator[None]:
    """Put the level of every ``projcache*`` logger back after each test.

    The CLI's root callback quiets those loggers (ERROR) for the whole process, so
    without this a test's ``caplog.at_level("INFO", logger="projcache")`` saw no INFO
    record of ``projcache.refresh`` whenever an in-process CLI test ran before it in
    the same worker.
    """
    before = _projcache_levels()
    yield
    for name in _projcache_levels():
        logging.getLogger(name).setLevel(before.get(name, logging.NOTSET))


@pytest.fixture
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No PROJCACHE_* setting, config file or ~/.skillmeat collection of the user leaks in.

    A module whose every test runs the CLI or the server names it once:
    ``pytestmark = pytest.mark.usefixtures("isolated_environment")``.
    """
    for name in list(os.environ):
        if name.startswith("PROJCACHE_") or name == "SKILLMEAT_ENABLE_CACHE":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))


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


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The folder holding ``collections/`` and ``projects/`` (apart from the cache)."""
    path = Path(os.path.realpath(tmp_path)) / "tree"
    path.mkdir()
    return path


@pytest.fixture
def tree_settings(cache_settings: Settings, tree: Path) -> Settings:
    """The ``cache_settings`` with collection and project roots in ``tree``."""
    return with_roots(cache_settings, tree)


@pytest.fixture
def seeded_cache(
    cache_settings: Settings,
    make_artifact: Callable[..., dict[str, Any]],
    make_project: Callable[..., dict[str, Any]],
) -> Seeded:
    """A closed cache of three artifacts, one project and one (current) deployment."""
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.put_artifacts(
            [
                make_artifact("pdf", tags=["docs"], content_hash="h"),
                make_artifact("docx", tags=["docs"]),
                make_artifact("review", type="command"),
            ]
        )
        cache.put_projects([make_project("shop")])
        pid = cache.find_project("shop").id
        cache.put_deployments(
            [{"project_id": pid, "artifact_key": "default/skill/pdf", "content_hash": "h"}]
        )
    return Seeded(settings=cache_settings, pid=pid)


@pytest.fixture
def shop(tree: Path, tree_settings: Settings) -> ShopWorld:
    """A real tree refreshed into a closed cache, plus one artifact that has no source."""
    collection = CollectionBuilder(tree / "collections", "default")
    collection.skill(
        "pdf",
        front_matter={"name": "pdf", "description": "Extract quokka text from PDF files."},
        tags=["docs"],
    )
    collection.skill("notes")
    collection.command("lint")
    collection.write()
    project = ProjectBuilder(tree / "projects", "shop")
    project.deploy(collection, "skill", "pdf")
    project.write()
    with ProjectCache.open(settings=tree_settings) as cache:
        assert cache.refresh().ok
        cache.put_artifacts([DIRECT])
    return ShopWorld(root=tree, settings=tree_settings, collection=collection, project=project)
