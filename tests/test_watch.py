"""``watch_and_refresh``: file changes refresh just the touched collection or project."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from children import wait_for
from projcache import ProjectCache
from projcache.config import Settings
from projcache.errors import SourceFileError
from projcache.models import RefreshReport
from projcache.watch import watch_and_refresh, watched_folders

EXAMPLES = Path(__file__).resolve().parents[1] / "lib" / "projcache" / "examples"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A private copy of the shipped examples."""
    target = tmp_path / "examples"
    shutil.copytree(EXAMPLES, target, symlinks=True)
    return target


def test_watched_folders_default_to_everything_cached(cache: ProjectCache, tree: Path) -> None:
    """Without arguments the watcher covers every cached collection and project."""
    cache.refresh(
        collections=[tree / "collections" / "default"], projects=[tree / "projects" / "webapp"]
    )
    collections, projects = watched_folders(cache)
    assert collections == [str((tree / "collections" / "default").resolve())]
    assert projects == [str((tree / "projects" / "webapp").resolve())]


def test_nothing_to_watch_is_an_error(cache: ProjectCache) -> None:
    """An empty cache and no folders given: a clear error, not a silent idle loop."""
    with pytest.raises(SourceFileError, match="nothing to watch"):
        watch_and_refresh(cache)


def test_a_change_refreshes_the_collection(cache_settings: Settings, tree: Path) -> None:
    """Editing a SKILL.md is picked up by the watcher and lands in the cache."""
    collection = tree / "collections" / "default"
    reports: list[RefreshReport] = []
    stop = threading.Event()
    with ProjectCache.open(settings=cache_settings) as cache:
        cache.refresh(collections=[collection])
        worker = threading.Thread(
            target=watch_and_refresh,
            args=(cache,),
            kwargs={"debounce_ms": 50, "stop_event": stop, "on_report": reports.append},
        )
        worker.start()
        try:
            skill = collection / "skills" / "pdf" / "SKILL.md"

            def described() -> bool:
                artifact = cache.get_artifact("default/skill/pdf")
                return artifact is not None and artifact.description == "Watched change."

            # The watcher needs a moment to install its inotify watches; keep editing until seen.
            for attempt in range(40):
                text = skill.read_text().replace(
                    "description: Extract text and tables from PDF files, fill PDF forms, "
                    "merge and split documents.",
                    "description: Watched change.",
                )
                skill.write_text(text + f"\n<!-- {attempt} -->\n")
                if wait_for(described, timeout=0.5):
                    break
            assert described()
            # The report reaches on_report just after the commit the test already sees.
            assert wait_for(lambda: bool(reports))
            assert reports[-1].collections_checked == 1
            assert reports[-1].projects_checked == 0
        finally:
            stop.set()
            worker.join(timeout=10)
    assert not worker.is_alive()
