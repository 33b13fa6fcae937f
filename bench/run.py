"""Run the benchmark suite (tests/benchmarks) and write its report.

    python bench/run.py            # sizes 10 .. 100,000; writes bench/RESULTS.md
    python bench/run.py --smoke    # sizes 10 and 1,000, fewer rounds; bench/results/smoke.md
    python bench/run.py --million  # adds 1,000,000 artifacts (refresh cases stop at 100,000)
    python bench/run.py --sizes 1000,10000 -- -k search    # pytest arguments after --
    python bench/run.py --search-only --sizes 100000 --million   # only issue 13's search bench

``python3 tasks.py bench [--smoke]``, ``make bench`` / ``make bench-smoke`` and
``tox -e bench`` all come here.  The run never fails on a ratio: the suite checks
that every engine's answers are right, the report only states how fast they were.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SMOKE_SIZES = "10,1000"
FULL_SIZES = "10,100,1000,10000,100000"


def main(argv: list[str]) -> int:
    """Parse the options, run pytest with the suite switched on, then the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the cheap CI subset (N <= 1,000)")
    parser.add_argument("--million", action="store_true", help="add 1,000,000 artifacts")
    parser.add_argument("--sizes", help="comma-separated artifact counts (overrides the default)")
    parser.add_argument("--out", type=Path, help="the Markdown report to write")
    parser.add_argument(
        "--search-only",
        action="store_true",
        help="only bench/search_bench.py (issue 13's search budgets) and its report section",
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    name = "smoke" if args.smoke else "full"
    sizes = args.sizes or (SMOKE_SIZES if args.smoke else FULL_SIZES)
    out = args.out or (RESULTS / "smoke.md" if args.smoke else HERE / "RESULTS.md")
    RESULTS.mkdir(parents=True, exist_ok=True)
    search_sizes = [s for s in sizes.split(",") if int(s) >= 1000]
    if args.million and "1000000" not in search_sizes:
        search_sizes.append("1000000")
    if args.search_only:
        return search_suite(search_sizes, out)
    timings = RESULTS / f"pytest-benchmark-{name}.json"
    facts = RESULTS / f"facts-{name}.json"
    env = {
        **os.environ,
        "PROJCACHE_BENCH": "1",
        "PROJCACHE_BENCH_SIZES": sizes,
        "PROJCACHE_BENCH_SMOKE": "1" if args.smoke else "0",
        "PROJCACHE_BENCH_MILLION": "1" if args.million else "0",
        "PROJCACHE_BENCH_FACTS": str(facts),
    }
    max_time = "0.05" if args.smoke else "0.5"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/benchmarks",
        "-p",
        "no:cacheprovider",
        f"--benchmark-json={timings}",
        f"--benchmark-max-time={max_time}",
        "--benchmark-min-rounds=5",
        "--benchmark-columns=median,iqr,rounds",
        "--benchmark-sort=name",
        "--benchmark-group-by=group",
        "-q",
        *args.pytest_args,
    ]
    print("+", shlex.join(command), flush=True)
    started = time.perf_counter()
    code = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    elapsed = time.perf_counter() - started
    if code != 0:
        print(f"benchmark suite failed (exit {code}) after {elapsed:.0f} s", file=sys.stderr)
        return code
    invocation = "python3 tasks.py bench" + (" --smoke" if args.smoke else "")
    if args.million:
        invocation += " --million"
    report = [
        sys.executable,
        str(HERE / "report.py"),
        "--timings",
        str(timings),
        "--facts",
        str(facts),
        "--out",
        str(out),
        "--command",
        invocation,
        "--pytest-command",
        shlex.join(["python", *command[1:]]).replace(str(ROOT) + "/", ""),
        "--elapsed",
        f"{elapsed:.0f}",
    ]
    if args.smoke:
        report.append("--smoke")
    code = subprocess.run(report, cwd=ROOT, check=False).returncode
    return code or search_suite(search_sizes, out)


def search_suite(sizes: list[str], out: Path) -> int:
    """bench/search_bench.py at ``sizes`` (N >= 1,000), then its section of the report."""
    if not sizes:
        return 0
    command = [sys.executable, str(HERE / "search_bench.py"), "--sizes", ",".join(sizes)]
    print("+", shlex.join(command), flush=True)
    code = subprocess.run(command, cwd=ROOT, check=False).returncode
    if code != 0:
        return code
    section = [sys.executable, str(HERE / "search_report.py"), "--out", str(out)]
    return subprocess.run(section, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
