"""Peak Python memory (tracemalloc) of the HTTP and CLI listings at 2,000 and 20,000 matches.

    python bench/listing_memory.py DIR

Builds (once, under ``DIR``) the two caches of ``tests/test_server_listings.py`` and prints,
per request, the tracemalloc peak of one ``GET`` in MiB at each size, then that of
``list deployments --json`` (``projcache_cli.fastpath.stream_deployments``).  Run it with
``PYTHONPATH=<old>/lib:<old>/cli`` to measure another version (the CLI line needs this one).
"""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_server_listings as listings
from projcache import ProjectCache
from projcache.config import Settings

URLS = [
    "artifacts?collection=c",
    "artifacts?tag=t",
    "artifacts?type=skill&limit=7&offset=1990",
    "artifacts?project=p",
    "deployments?project=p",
    "deployments",
    "deployments?state=current&limit=3&offset=5",
]


def main() -> None:
    """Build the caches if needed and print the peaks."""
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    caches = {}
    for count in listings.SIZES:
        path = root / f"c{count}" / "cache"
        if not (path / "data.mdb").exists():
            listings._fill(path, count)
        caches[count] = ProjectCache.open(settings=Settings(cache_dir=path), readonly=True)
    for url in URLS:
        peaks = [listings._peak(caches[n], f"/api/v1/cache/{url}")[0] for n in listings.SIZES]
        print(url, [round(p / 2**20, 2) for p in peaks])
    from projcache_cli import fastpath

    values = {"project": None, "state_": None, "outdated": False, "type_": None, "profile": None}
    out = []
    for count in listings.SIZES:
        fastpath.stream_deployments(caches[count], values, lambda _data: None)
        tracemalloc.start()
        tracemalloc.reset_peak()
        fastpath.stream_deployments(caches[count], values, lambda _data: None)
        out.append(round(tracemalloc.get_traced_memory()[1] / 2**20, 2))
        tracemalloc.stop()
    print("list deployments --json", out)
    for cache in caches.values():
        cache.close()


if __name__ == "__main__":
    main()
