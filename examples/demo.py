"""Build a cache from the bundled example records and show what it answers.

Run with ``python3 tasks.py demo``; the cache lands in ``.projcache/demo``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from projcache import ProjectCache

HERE = Path(__file__).resolve().parent
CACHE_DIR = HERE.parent / ".projcache" / "demo"


def main() -> None:
    """Load the examples into a fresh cache, then print stats, outdated deployments and a search."""
    data = json.loads((HERE / "artifacts.json").read_text())
    shutil.rmtree(CACHE_DIR, ignore_errors=True)
    with ProjectCache.open(CACHE_DIR) as cache:
        cache.put_artifacts(data["artifacts"])
        for project in data["projects"]:
            deployments = project.pop("deployments")
            cache.put_projects([project])
            project_id = cache.find_project(project["name"]).id
            cache.put_deployments({**d, "project_id": project_id} for d in deployments)
        stats = cache.stats()
        print(f"cache: {stats.path}")
        for name, count in stats.counts.items():
            print(f"  {name:<12} {count}")
        print("\ndeployments that need attention:")
        names = {p.id: p.name for p in cache.list_projects()}
        for state in ("outdated", "modified", "missing"):
            for deployment in cache.list_deployments(state=state):
                print(f"  {state:<9} {names[deployment.project_id]:<14} {deployment.artifact_key}")
        results = cache.search("doc")
        print(f"\nsearch 'doc': {results.total} match(es)")
        for hit in results:
            print(f"  {hit.score:>4.0f}  {hit.key:<32} {hit.artifact.title}")
        report = cache.verify()
        print(f"\nverify: {'ok' if report.ok else report.findings}")


if __name__ == "__main__":
    main()
