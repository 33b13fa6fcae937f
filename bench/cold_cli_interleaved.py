"""Cold ``projcache search --json`` / ``get --json`` beside ``python -c "import lmdb, orjson"``.

    python -m compileall -q lib cli
    python bench/cold_cli_interleaved.py STORE --rounds 20 [--old-lib DIR --old-cli DIR]

Issue 15 item 2's budget (<= 1.5x the baseline), measured so that machine load hits
every side alike: each round spawns, one after the other, the baseline, then each
command (and, with ``--old-lib``/``--old-cli``, the same command run on another
checkout's ``lib`` and ``cli``, for a before/after in one run).  ``STORE`` is a cache
directory (e.g. one built by ``bench/reads_interleaved.py`` or the benchmark suite);
the query and key are arguments.  Bytecode must be compiled first (``compileall``):
with ``PYTHONDONTWRITEBYTECODE`` set every call would compile projcache again, so the
variable is removed from the children's environment.  Prints, per command, the median
and the best of the per-round ratios against the baseline of the same round, for wall
time and for CPU time (user + system of the child, from ``getrusage``: less disturbed by
other work on a busy machine than the wall clock).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_RUN_CLI = "import sys; sys.argv[0] = 'projcache'; from projcache_cli.fastpath import main; main()"


def _env(lib: Path, cli: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROJCACHE_", "SKILLMEAT_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(lib), str(cli)])
    env["XDG_CONFIG_HOME"] = str(home)  # no user config file
    return env


def main(argv: list[str]) -> int:
    """Spawn the commands round by round and print the ratios to the baseline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--query", default="across brera")
    parser.add_argument("--key", default="default/command/workflows-merge")
    parser.add_argument("--old-lib", type=Path)
    parser.add_argument("--old-cli", type=Path)
    args = parser.parse_args(argv)
    home = Path(args.store).parent
    python = sys.executable
    sides = {"new": _env(ROOT / "lib", ROOT / "cli", home)}
    if args.old_lib is not None:
        sides["old"] = _env(args.old_lib, args.old_cli or args.old_lib.parent / "cli", home)
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "baseline": ([python, "-c", "import lmdb, orjson"], sides["new"])
    }
    for side, env in sides.items():
        for verb, extra in (("search", [args.query]), ("get", [args.key])):
            command = [python, "-c", _RUN_CLI, "--cache-dir", str(args.store), verb, "--json"]
            commands[f"{verb} ({side})"] = (command + extra, env)
    for name, (command, env) in commands.items():
        done = subprocess.run(command, env=env, capture_output=True, check=False)
        if done.returncode != 0:
            print(f"{name} failed: {done.stderr.decode()}", file=sys.stderr)
            return 1
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, (command, env) in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(command, env=env, capture_output=True, check=False)
            times[name].append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    for label, measured in (("wall", times), ("cpu", cpu)):
        base = measured["baseline"]
        median = statistics.median(base) * 1e3
        print(f"{args.rounds} interleaved rounds, {label}; baseline median {median:.1f} ms")
        for name, values in measured.items():
            if name == "baseline":
                continue
            ratios = [v / b for v, b in zip(values, base)]
            print(
                f"{name}: median {statistics.median(values) * 1e3:.1f} ms, "
                f"ratio median {statistics.median(ratios):.3f}x, min {min(ratios):.3f}x"
            )
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
