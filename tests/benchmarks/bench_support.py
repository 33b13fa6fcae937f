"""Run settings (from the environment ``bench/run.py`` sets) and measurement helpers."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_SIZES = (10, 100, 1_000, 10_000, 100_000)


def bench_sizes() -> list[int]:
    """The sizes of this run: ``PROJCACHE_BENCH_SIZES``, plus 1,000,000 if asked for."""
    text = os.environ.get("PROJCACHE_BENCH_SIZES", "")
    sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()] or list(DEFAULT_SIZES)
    if os.environ.get("PROJCACHE_BENCH_MILLION") == "1" and 1_000_000 not in sizes:
        sizes.append(1_000_000)
    return sorted(set(sizes))


def smoke() -> bool:
    """True in the smoke run (fewer rounds; ratios only, as always)."""
    return os.environ.get("PROJCACHE_BENCH_SMOKE") == "1"


def tree_max() -> int:
    """The largest size that gets a source tree for the refresh cases."""
    return int(os.environ.get("PROJCACHE_BENCH_TREE_MAX", "100000"))


def rounds(fast: int, slow: int, size: int, *, big: int = 100_000) -> int:
    """Rounds of a pedantic case: ``slow`` from size ``big`` on, a third of it when smoking."""
    count = slow if size >= big else fast
    return max(1, count // 3) if smoke() else count


class Facts:
    """Measurements that are not timings (bytes, RSS, query sets), saved as JSON at the end."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.rows, indent=1, sort_keys=True) + "\n")


def io_counters() -> dict[str, int]:
    """This process's I/O counters (``write_bytes``: bytes sent towards the disk)."""
    counters = {}
    with open("/proc/self/io") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            counters[name] = int(value)
    return counters


def measure_io(
    call: Callable[[], Any], reps: int, setup: Optional[Callable[[], Any]] = None
) -> dict[str, float]:
    """Bytes written per call (``write_bytes`` and syscall-level ``wchar``) over ``reps`` calls.

    ``setup`` runs before each call, outside the counted span.
    """
    names = ("write_bytes", "wchar", "syscw", "cancelled_write_bytes")
    total = dict.fromkeys(names, 0)
    for _ in range(reps):
        if setup is not None:
            setup()
        before = io_counters()
        call()
        after = io_counters()
        for name in names:
            total[name] += after[name] - before[name]
    return {name: total[name] / reps for name in names}


def paired(calls: dict[str, Callable[[int], Any]], rounds: int, baseline: str) -> dict[str, Any]:
    """Time several engines' calls interleaved, round by round, on this noisy machine.

    Each round calls every engine once (the order rotates), so a slow spell of
    the disk or the CPU hits all of them alike.  ``calls[name](round)`` does one
    operation.  Returns per-engine medians and minimums (seconds) and, per
    engine, the median over rounds of its time divided by ``baseline``'s.
    """
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            calls[name](number)
            times[name].append(time.perf_counter() - started)
    return {
        "rounds": rounds,
        "baseline": baseline,
        "median": {name: statistics.median(values) for name, values in times.items()},
        "min": {name: min(values) for name, values in times.items()},
        "ratio": {
            name: statistics.median(
                mine / base for mine, base in zip(values, times[baseline]) if base > 0
            )
            for name, values in times.items()
        },
    }
