"""Time refreshes of a generated collection: first read, unchanged, 1% changed.

Run: ``.venv/bin/python bench/refresh_probe.py [N]`` (default 10,000 artifacts:
half single-file commands, half two-file skill folders).  Prints seconds per
refresh and how many sources were checked and re-read.  A probe, not a
benchmark: issue 6's pytest-benchmark suite compares against baselines.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from projcache import ProjectCache
from projcache.config import load_settings


def build(root: Path, count: int) -> Path:
    """Write ``count`` artifacts into a collection folder; age every file by an hour."""
    coll = root / "default"
    (coll / "commands").mkdir(parents=True)
    (coll / "skills").mkdir()
    for i in range(count // 2):
        (coll / "commands" / f"cmd{i}.md").write_text(
            f"---\ndescription: command {i} formats pdf and text\ntags: [t{i % 50}]\n---\nBody.\n"
        )
        skill = coll / "skills" / f"skill{i}"
        skill.mkdir()
        (skill / "SKILL.md").write_text(
            f"---\nname: skill{i}\ndescription: skill {i} for spreadsheets\n---\n# S\n"
        )
        (skill / "notes.md").write_text("notes\n")
    old = time.time() - 3600
    for folder, _dirs, files in os.walk(coll):
        for name in files:
            os.utime(os.path.join(folder, name), (old, old))
    return coll


def main() -> None:
    """Build, refresh three ways, print the timings."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        coll = build(Path(tmp), count)
        settings = load_settings(env={}, dir=str(Path(tmp) / "cache"), collections=[])
        with ProjectCache.open(settings=settings) as cache:
            for label in ("first refresh", "unchanged", "unchanged again"):
                report = cache.refresh(collections=[coll])
                print(
                    f"{label:16} {report.duration_seconds:7.3f} s  "
                    f"checked {report.sources_checked}, re-read {report.sources_changed}"
                )
            changed = sorted((coll / "commands").iterdir())[: count // 100]
            for path in changed:
                path.write_text(path.read_text() + "changed\n")
            report = cache.refresh(collections=[coll])
            print(
                f"{'1% changed':16} {report.duration_seconds:7.3f} s  "
                f"checked {report.sources_checked}, re-read {report.sources_changed}"
            )


if __name__ == "__main__":
    main()
