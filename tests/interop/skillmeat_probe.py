"""Run by the interop test with SkillMeat's own Python (its separate venv), never imported.

Reads a JSON request on stdin and prints SkillMeat 0.74.0's own answers as JSON: its content
hash of each path (``skillmeat.utils.filesystem.compute_content_hash``), each project's
deployment records as its tracker reads them (``DeploymentTracker.read_deployments``: every
profile root), and the collection's MCP servers (``Collection.from_dict``).
"""

import json
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from skillmeat.core.collection import Collection
from skillmeat.storage.deployment import DeploymentTracker
from skillmeat.utils.filesystem import compute_content_hash


def main() -> None:
    request = json.load(sys.stdin)
    hashes = {p: compute_content_hash(Path(p)) for p in request["paths"] if Path(p).exists()}
    deployments = {}
    for project in request["projects"]:
        deployments[project] = [
            {
                "name": d.artifact_name,
                "type": d.artifact_type,
                "collection": d.from_collection,
                "profile": d.deployment_profile_id or "claude_code",
                "root": d.profile_root_dir or ".claude",
                "path": str(d.artifact_path),
                "content_hash": d.content_hash,
                "deployed_at": d.deployed_at.isoformat(),
            }
            for d in DeploymentTracker.read_deployments(Path(project))
        ]
    with open(request["collection_toml"], "rb") as handle:
        collection = Collection.from_dict(tomllib.load(handle))
    mcp = [server.to_dict() for server in collection.mcp_servers]
    json.dump({"hashes": hashes, "deployments": deployments, "mcp": mcp}, sys.stdout)


if __name__ == "__main__":
    main()
