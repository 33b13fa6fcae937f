"""One listing = one snapshot (issue 12 item 10).

0.1.0 read listings in 256-record pages, each in its own read transaction: a
listing of 600 records could show part of one write and part of the next (139
of 3,581 listings under a concurrent writer).  Every test here has a writer
replace all N records in one transaction, each time stamping them with a new
generation; a listing must show exactly one generation.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import lmdb
import orjson
import pytest

from projcache import CacheBusyError, ProjectCache
from projcache.config import Settings
from projcache.repository import ArtifactRepository

N = 600  # more than two 256-record pages


def generation(gen: int, n: int = N) -> list[dict[str, Any]]:
    """N artifacts whose version and description carry the generation ``gen``."""
    return [
        {
            "name": f"a{i:04d}",
            "type": "skill",
            "collection": "c",
            "tags": ["all", f"t{i % 3}"],
            "version": f"{gen}.0.0",
            "description": f"generation {gen}",
        }
        for i in range(n)
    ]


def versions(payloads: list[bytes]) -> Counter[str]:
    """How many listed records carry each version (one key means one snapshot)."""
    return Counter(orjson.loads(p)["version"] for p in payloads)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A cache big enough from the start that no test write grows the map."""
    return Settings(cache_dir=tmp_path / "cache", map_size=64 * 1024**2)


@pytest.fixture
def cache(settings: Settings) -> Iterator[ProjectCache]:
    """The cache holding generation 1."""
    with ProjectCache.open(settings=settings) as opened:
        opened.put_artifacts(generation(1))
        yield opened


def _write_between_pages(monkeypatch: pytest.MonkeyPatch, write: Callable[[], None]) -> list[int]:
    """Run ``write`` once, right after the first page of a listing was read."""
    original = ArtifactRepository.scan_payloads
    calls: list[int] = []

    def scan(self: ArtifactRepository, *args: Any, **kwargs: Any) -> Iterator[Any]:
        rows = list(original(self, *args, **kwargs))
        calls.append(len(rows))
        if len(calls) == 1:
            write()
        return iter(rows)

    monkeypatch.setattr(ArtifactRepository, "scan_payloads", scan)
    return calls


class TestOneListingOneSnapshot:
    """A write committed while a listing is being read is invisible to that listing."""

    @pytest.mark.parametrize(
        "filters", [{}, {"collection": "c"}, {"tag": "all"}, {"type": "skill"}]
    )
    def test_a_write_between_pages_is_not_seen(
        self, cache: ProjectCache, filters: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Deterministic: generation 2 is committed after page 1; every record is still 1."""
        listing = cache.iter_artifacts_json(**filters)
        first = next(listing)  # page 1 read
        cache.put_artifacts(generation(2))  # committed while the listing is open
        rest = list(listing)
        assert versions([first, *rest]) == {"1.0.0": N}
        assert versions(list(cache.iter_artifacts_json(**filters))) == {"2.0.0": N}

    def test_a_write_inside_the_read_of_a_page_is_not_seen(
        self, cache: ProjectCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The same through list_artifacts (models), with the write hooked into the scan."""
        calls = _write_between_pages(monkeypatch, lambda: cache.put_artifacts(generation(2)))
        listed = list(cache.list_artifacts())
        assert len(calls) >= 3  # three pages were read
        assert Counter(a.version for a in listed) == {"1.0.0": N}

    def test_a_concurrent_writer_never_shows_a_mix(self, cache: ProjectCache) -> None:
        """A writer thread replaces all N records per transaction; 2 s of listings: no mix."""
        stop = threading.Event()
        written: list[int] = []

        def writer() -> None:
            gen = 2
            while not stop.is_set():
                cache.put_artifacts(generation(gen))
                written.append(gen)
                gen += 1

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        mixed, listings, seen = 0, 0, set()
        deadline = time.monotonic() + 2.0
        try:
            while time.monotonic() < deadline or listings < 5:
                counts = versions(list(cache.iter_artifacts_json()))
                listings += 1
                seen |= set(counts)
                mixed += len(counts) > 1 or sum(counts.values()) != N
        finally:
            stop.set()
            thread.join(timeout=30)
        assert written, "the writer never committed"
        assert mixed == 0, f"{mixed} of {listings} listings mixed two generations"

    def test_the_listing_thread_may_write_and_the_map_may_grow(self, tmp_path: Path) -> None:
        """A write that grows the map while a listing is open never makes it mix: the listing
        goes on from the same snapshot, or refuses with CacheBusyError (retryable)."""
        settings = Settings(cache_dir=tmp_path / "small", map_size=256 * 1024)
        with ProjectCache.open(settings=settings) as cache:
            cache.put_artifacts(generation(1))
            size = cache._storage.info()["map_size"]
            listing = cache.iter_artifacts_json()
            first = next(listing)
            cache.put_artifacts(generation(2, n=3 * N))  # grows the map in this thread
            assert cache._storage.info()["map_size"] > size
            try:
                rest = list(listing)
            except CacheBusyError as exc:
                assert "snapshot is gone" in str(exc)
            else:
                assert versions([first, *rest]) == {"1.0.0": N}
            assert versions(list(cache.iter_artifacts_json(collection="c"))) == {"2.0.0": 3 * N}

    def test_a_listing_whose_snapshot_goes_before_its_first_item_starts_over(
        self, cache: ProjectCache
    ) -> None:
        """A map growth plus a commit while the first chunk is read: nothing was yielded,
        so the listing starts over in the new snapshot instead of refusing (an HTTP
        listing answered 503 under load for this)."""
        storage = cache._storage
        calls: list[int] = []

        def step(txn: Any, state: int) -> tuple[list[bytes], Optional[int]]:
            calls.append(txn.id())
            if len(calls) == 1:
                # Another thread commits, then py-lmdb reports the map replaced.
                writer = threading.Thread(target=cache.put_artifacts, args=(generation(7),))
                writer.start()
                writer.join(timeout=30)
                raise lmdb.MapResizedError("simulated growth")
            return [str(txn.id()).encode()], None

        listed = list(storage.stream(step, 0))
        assert len(calls) == 2 and calls[1] > calls[0]  # begun again, in a later snapshot
        assert listed == [str(calls[1]).encode()]
        assert versions(list(cache.iter_artifacts_json())) == {"7.0.0": N}

    def test_an_abandoned_listing_blocks_nothing(self, cache: ProjectCache) -> None:
        """A listing left half-read does not hold writers or map growth back."""
        listing = cache.iter_artifacts_json()
        next(listing)
        cache.put_artifacts(generation(3))
        cache._storage._grow(cache._storage.info()["map_size"])  # needs every read share back
        assert versions(list(cache.iter_artifacts_json())) == {"3.0.0": N}
        listing.close()


class TestFilteredByDeployments:
    """``project=``/``state=`` listings read their deployments in the listing's snapshot."""

    def test_deployments_moved_during_the_listing_are_not_seen(
        self, cache: ProjectCache, tmp_path: Path
    ) -> None:
        """Deterministic: the project's deployments move to the other half after page 1."""
        cache.put_projects([{"path": str(tmp_path / "p"), "name": "p"}])
        (project,) = cache.list_projects()
        first_half = [f"c/skill/a{i:04d}" for i in range(N // 2)]
        second_half = [f"c/skill/a{i:04d}" for i in range(N // 2, N)]
        cache.put_deployments([{"project_id": project.id, "artifact_key": k} for k in first_half])
        for filters in ({"project": "p"}, {"project": project.id, "state": "current"}):
            listing = cache.iter_artifacts_json(**filters)  # type: ignore[arg-type]
            first = next(listing)  # the deployments and page 1 are read
            for key in first_half:
                cache.delete_deployment(project.id, key)
            cache.put_deployments(
                [{"project_id": project.id, "artifact_key": k} for k in second_half]
            )
            keys = [orjson.loads(p)["key"] for p in [first, *listing]]
            assert keys == first_half, filters
            after = [orjson.loads(p)["key"] for p in cache.iter_artifacts_json(**filters)]  # type: ignore[arg-type]
            assert after == second_half
            # Back to the first half for the next round.
            for key in second_half:
                cache.delete_deployment(project.id, key)
            cache.put_deployments(
                [{"project_id": project.id, "artifact_key": k} for k in first_half]
            )

    def test_filters_are_checked_at_the_call(self, cache: ProjectCache) -> None:
        """An unknown project or state fails before anything is listed."""
        from projcache.errors import InvalidArgumentError, ProjectNotFound

        with pytest.raises(ProjectNotFound):
            cache.iter_artifacts_json(project="nowhere")
        with pytest.raises(InvalidArgumentError):
            cache.iter_artifacts_json(state="sideways")  # type: ignore[arg-type]
        assert len(list(cache.list_artifacts(project=None, state=None))) == N
