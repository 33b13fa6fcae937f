"""The TOML parsers on a source tree's manifests: the standard library's tomllib beside tomli.

    python bench/toml_parsers.py TREE [TREE ...] [--gc]

Reads every ``collections/*/collection.{toml,lock}`` of each tree (e.g. the trees
``bench/first_refresh_interleaved.py build`` writes), then parses them all once with each
parser, alternately, and prints seconds and nanoseconds per byte (ADR 0011).  The cyclic
collector is off unless ``--gc``.  On Python < 3.11 (no tomllib) only tomli is timed.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from types import ModuleType


def parsers() -> list[ModuleType]:
    """The parsers this Python has: tomllib (3.11+) and tomli."""
    import tomli

    found: list[ModuleType] = []
    if sys.version_info >= (3, 11):
        import tomllib

        found.append(tomllib)
    return [*found, tomli]


def main(argv: list[str]) -> int:
    """Time each parser on each tree's manifests; print one line per tree and parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", type=Path, nargs="+")
    parser.add_argument("--gc", action="store_true", help="leave the cyclic collector on")
    args = parser.parse_args(argv)
    if not args.gc:
        gc.disable()
    for tree in args.trees:
        files = sorted(tree.glob("collections/*/collection.*"))
        texts = [path.read_text(encoding="utf-8") for path in files]
        total = sum(map(len, texts))
        results = [module.loads(text) for module in parsers() for text in texts[:1]]
        if results.count(results[0]) != len(results):
            print(f"{tree}: the parsers disagree on {files[0]}")
            return 1
        for module in parsers():
            start = time.perf_counter()
            for text in texts:
                module.loads(text)
            spent = time.perf_counter() - start
            print(
                f"{tree}: {module.__name__:8s} {len(files)} files, {total:,} bytes: "
                f"{spent:.3f} s, {spent / max(total, 1) * 1e9:.1f} ns/byte"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
