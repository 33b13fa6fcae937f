"""Profile one benchmark case with cProfile (or ``-X importtime`` for the CLI start-up).

    python bench/profile_cases.py CASE [--size 100000] [--dir /tmp/projcache-profile] [--top 25]

Cases: ``read`` (``get_artifact_json`` + orjson), ``read-model`` (``get_artifact``),
``search-rare``, ``search-common-rare``, ``search-common`` (``search_json``, and the
same through ``search`` with ``-models``), ``write`` (durable ``put_artifacts([one])``),
``batch`` (1,000 records), ``verify``, ``refresh-unchanged`` and ``refresh-1pct``
(a source tree of ``--size`` artifacts), ``cli-get`` and ``cli-search`` (import time
of a cold ``projcache ... --json``, biggest imports first), ``disk`` (pages per
sub-database).  The cache is built once from the suite's data generator (same
seed) and kept under ``--dir`` for the next call.  Prints the top entries.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import os
import pstats
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "benchmarks"))

from bench_data import build_dataset, scratch_artifacts, write_source_tree  # noqa: E402

from projcache import ProjectCache  # noqa: E402
from projcache.config import Settings  # noqa: E402


def build(root: Path, size: int) -> tuple[Any, Path]:
    """The dataset and a projcache cache holding it (built once under ``root``)."""
    data = build_dataset(size)
    path = root / f"cache-{size}"
    if not (path / "data.mdb").exists():
        with ProjectCache.open(settings=Settings(cache_dir=path, durability="none")) as cache:
            for start in range(0, size, 1000):
                cache.put_artifacts(data.artifacts[start : start + 1000])
            cache.put_projects(data.projects)
            cache.put_deployments(data.deployments)
    return data, path


def profile(call: Callable[[], Any], repeat: int, top: int, sort: str = "tottime") -> None:
    """Run ``call`` ``repeat`` times under cProfile; print time per call and the top entries."""
    call()
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(repeat):
        call()
    profiler.disable()
    took = (time.perf_counter() - started) / repeat
    print(f"{repeat} calls, {took * 1e6:.1f} µs per call under the profiler")
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    print(re.sub(r"\n{3,}", "\n\n", out.getvalue()))


def import_time(command: list[str], top: int) -> None:
    """Print the biggest imports (cumulative µs) of a cold run of ``command``."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    rows = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((int(match.group(2)), len(match.group(3)) // 2, match.group(4)))
    total = sum(cum for cum, depth, _name in rows if depth == 0)
    print(f"top-level imports: {total / 1000:.1f} ms in all (exit {done.returncode})")
    for cum, depth, name in sorted(rows, reverse=True)[:top]:
        print(f"{cum / 1000:8.1f} ms  {'  ' * depth}{name}")


def disk(path: Path) -> None:
    """Pages (and bytes) used by each sub-database."""
    import lmdb

    from projcache.storage import DATABASES

    env = lmdb.open(str(path), readonly=True, max_dbs=32)
    psize = env.stat()["psize"]
    rows = []
    with env.begin() as txn:
        for name in DATABASES:
            db = env.open_db(name.encode(), txn=txn, create=False)
            st = txn.stat(db)
            pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
            rows.append((pages * psize, name, st["entries"]))
    info = env.info()
    total = sum(r[0] for r in rows)
    file_bytes = os.stat(path / "data.mdb").st_size
    print(
        f"file {file_bytes:,} bytes; pages in trees {total:,} bytes; last page {info['last_pgno']}"
    )
    for used, name, entries in sorted(rows, reverse=True):
        print(f"{used:14,} B {used / max(total, 1):6.1%}  {name:26} {entries:10,} entries")
    env.close()


def main() -> None:
    """Parse the case, build what it needs, profile it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case")
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/projcache-profile"))
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime")
    args = parser.parse_args()
    case, top = args.case, args.top
    if case.startswith("refresh"):
        data = build_dataset(args.size)
        tree_root = args.dir / f"tree-{args.size}"
        tree = write_source_tree(tree_root, data.artifacts, max(1, min(100, args.size // 1000)))
        settings = Settings(cache_dir=args.dir / f"refresh-{args.size}-{time.time_ns()}")
        with ProjectCache.open(settings=settings) as cache:

            def run() -> Any:
                return cache.refresh(collections=tree.collections, projects=tree.projects)

            print(run())
            if case == "refresh-1pct":
                count = max(1, args.size // 100)

                def changed() -> Any:
                    tree.change(count)
                    return run()

                profile(changed, 5, top, args.sort)
            else:
                profile(run, 5, top, args.sort)
        return
    data, path = build(args.dir, args.size)
    if case in ("cli-get", "cli-search"):
        script = str(Path(sys.executable).with_name("projcache"))
        tail = (
            ["get", "--json", data.read_keys[0]]
            if case == "cli-get"
            else ["search", "--json", data.queries["common&rare"].text]
        )
        import_time([script, "--cache-dir", str(path), *tail], top)
        return
    if case == "disk":
        disk(path)
        return
    with ProjectCache.open(settings=Settings(cache_dir=path)) as cache:
        keys = itertools.cycle(data.read_keys)
        if case == "read":
            import orjson

            profile(lambda: orjson.loads(cache.get_artifact_json(next(keys)) or b""), 50_000, top)
        elif case == "read-model":
            profile(lambda: cache.get_artifact(next(keys)), 20_000, top)
        elif case.startswith("search-"):
            label = {
                "rare": "rare&rare",
                "common-rare": "common&rare",
                "common": "common&common",
            }[case.removeprefix("search-").removesuffix("-models")]
            query = data.queries[label].text
            if case.endswith("-models"):
                profile(lambda: cache.search(query, limit=20), 200, top, args.sort)
            else:
                profile(lambda: cache.search_json(query, limit=20), 200, top, args.sort)
        elif case in ("write", "batch"):
            avoid = {w for q in data.queries.values() for w in q.words}
            supply = scratch_artifacts(3000, avoid, start=time.time_ns())
            if case == "write":
                profile(lambda: cache.put_artifacts([next(supply)]), 500, top, args.sort)
            else:
                profile(
                    lambda: cache.put_artifacts(list(itertools.islice(supply, 1000))),
                    2,
                    top,
                    args.sort,
                )
        elif case == "verify":
            profile(cache.verify, 1, top, args.sort)
        else:
            raise SystemExit(f"unknown case {case!r}")


if __name__ == "__main__":
    main()
