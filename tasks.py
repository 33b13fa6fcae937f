#!/usr/bin/env python3
"""Developer tasks that work from a fresh clone with nothing but ``python3`` (3.9+).

    python3 tasks.py demo     build a cache from the bundled examples and query it
    python3 tasks.py test     run the default test suite in parallel (pytest-xdist), coverage
    python3 tasks.py e2e      the real-process suites: browser, load, workflow, schema fuzzing
    python3 tasks.py stress   run only the long slow/stress tests (their own CI step)
    python3 tasks.py lint     ruff check + ruff format --check
    python3 tasks.py typing   mypy --strict over lib/ and cli/
    python3 tasks.py tox      the tox matrix (every Python 3.9-3.13 found)
    python3 tasks.py bench    the benchmark suite against raw lmdb, diskcache and SQLite,
                              up to 100,000 artifacts; writes bench/RESULTS.md (--smoke:
                              N <= 1,000, fewer rounds, bench/results/smoke.md; --million)
    python3 tasks.py release  build the sdist and wheel, install each into a clean
                              virtualenv and run the test suite against it
    python3 tasks.py interop  install skillmeat==0.74.0 into .interop-venv (once; kept
                              apart from .venv) and run tests/interop against it

Each task first makes ``.venv`` (once, and again when pyproject.toml changes)
and installs the project into it: ``demo`` the package alone, every other task
with its ``dev`` extra (test, lint, typing and benchmark tools).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".projcache-installed"


def _run(*args: str) -> None:
    print("+", " ".join(args), flush=True)
    result = subprocess.run(args, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(result.returncode)


def _installed() -> tuple[str, str]:
    """(pyproject digest, extra) the venv was installed with; ("", "") when never."""
    if not STAMP.exists():
        return "", ""
    digest, newline, extra = STAMP.read_text().partition("\n")
    # A stamp without an extra was written when every task installed the dev extra.
    return digest, extra.strip() if newline else "dev"


def ensure_venv(extra: str = "dev") -> None:
    """Create .venv and install the project (editable) with ``extra`` if out of date.

    ``demo`` asks for no extra (the package alone); the other tasks for ``dev`` (the
    test, lint, typing and benchmark tools).  An install with ``dev`` serves both.
    """
    if sys.version_info < (3, 9):  # noqa: UP036 - tasks.py may be run by any python3
        sys.exit(f"projcache needs Python 3.9 or newer; this is {sys.version.split()[0]}")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    installed_digest, installed_extra = _installed()
    if installed_digest == digest and installed_extra in (extra, "dev"):
        return
    if not (BIN / "python").exists():
        print(f"+ creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    _run(str(BIN / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip")
    _run(str(BIN / "python"), "-m", "pip", "install", "-q", "-e", f".[{extra}]" if extra else ".")
    STAMP.write_text(f"{digest}\n{extra}")


EXAMPLES = ROOT / "lib" / "projcache" / "examples"
DEMO_CACHE = ROOT / ".projcache" / "demo"


def task_demo() -> None:
    """Refresh a cache from the bundled collection and projects, then query it with the CLI."""
    cli = [str(BIN / "projcache"), "--cache-dir", str(DEMO_CACHE)]
    projects = sorted((EXAMPLES / "projects").iterdir())
    refresh = [*cli, "refresh", "--collection", str(EXAMPLES / "collections" / "default")]
    for project in projects:
        refresh += ["--project", str(project)]
    steps = [
        ("refresh the cache from the examples", refresh),
        ("what the cache holds", [*cli, "show"]),
        ("outdated deployments", [*cli, "list", "deployments", "--outdated"]),
        ("search: pdf", [*cli, "search", "pdf"]),
    ]
    for title, command in steps:
        print(f"\n$ projcache {' '.join(command[3:])}    # {title}", flush=True)
        # Exit 1 means "done, but a source had problems": the examples ship a
        # malformed file on purpose, so that is expected here.
        code = subprocess.run(command, check=False).returncode
        if code not in (0, 1):
            sys.exit(code)


def task_test(extra: list[str]) -> None:
    """The default suite, in parallel, with branch coverage of lib/ and cli/ enforced at 90%.

    pytest's own ``addopts`` leave the long ``slow``/``stress`` variants to
    ``tasks.py stress`` (their own CI step); a ``-m`` given here replaces that choice.
    """
    _run(
        str(BIN / "python"),
        "-m",
        "pytest",
        "-n",
        "auto",
        "--cov=projcache",
        "--cov=projcache_cli",
        "--cov-branch",
        "--cov-report=term",
        "--cov-fail-under=90",
        *extra,
    )


def task_e2e(extra: list[str]) -> None:
    """The real-process suites: headless Chromium, Locust, the CLI+API workflow, schemathesis."""
    _run(
        str(BIN / "python"), "-m", "pytest", "-n", "auto", "-m", "e2e", "tests/e2e", "tests/load",
        *extra,
    )  # fmt: skip


def task_stress(extra: list[str]) -> None:
    """The long ``slow``/``stress`` tests, then the ``generated`` ones with all their examples."""
    _run(str(BIN / "python"), "-m", "pytest", "-n", "auto", "-m", "slow or stress", *extra)
    # The costly generated tests again, drawing all their examples (a quarter by default).
    os.environ["TESTS_THOROUGH"] = "1"
    _run(str(BIN / "python"), "-m", "pytest", "-n", "auto", "-m", "generated", *extra)


# The suites that need nothing but the package and its test extra (tox runs the same).
PORTABLE_TESTS = [
    "-m",
    "not slow and not stress and not e2e and not interop",
    "--ignore=tests/e2e",
    "--ignore=tests/load",
]


def task_release(extra: list[str]) -> None:
    """Build the sdist and the wheel; install each into a fresh venv and run the tests there.

    The tests run from the repository's ``tests/`` but import the installed
    package (``lib/`` is not on the path), which proves the distributions carry
    everything, the example data and the web page included.
    """
    import shutil
    import tempfile

    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    _run(str(BIN / "python"), "-m", "build", "--outdir", str(dist), ".")
    wheels = sorted(dist.glob("projcache-*.whl"))
    sdists = sorted(dist.glob("projcache-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        sys.exit(f"expected one wheel and one sdist in {dist}, found {wheels + sdists}")
    for artifact in (wheels[0], sdists[0]):
        with tempfile.TemporaryDirectory(prefix="projcache-release-") as tmp:
            print(f"+ clean virtualenv for {artifact.name}", flush=True)
            venv.EnvBuilder(with_pip=True).create(tmp)
            python = str(Path(tmp) / "bin" / "python")
            _run(python, "-m", "pip", "install", "-q", f"{artifact}[test]")
            where = subprocess.run(
                [python, "-c", "import projcache, projcache_cli; print(projcache.__file__)"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            if not where.startswith(tmp):
                sys.exit(f"the tests would import {where}, not the installed {artifact.name}")
            _run(
                python,
                "-m",
                "pytest",
                "-n",
                "auto",
                "-p",
                "no:cacheprovider",
                "-q",
                *PORTABLE_TESTS,
                *extra,
            )


SKILLMEAT = "skillmeat==0.74.0"
INTEROP_VENV = ROOT / ".interop-venv"


def ensure_interop_venv() -> Path:
    """Make ``.interop-venv`` with SkillMeat 0.74.0 (reused when it already has it).

    SkillMeat is large (a web stack and a database layer), so it lives in its own venv,
    never in ``.venv``.  Exits non-zero, loudly, when it cannot be installed (the package
    registry unreachable, say): the interop test never skips.
    """
    python = INTEROP_VENV / ("Scripts" if os.name == "nt" else "bin") / "python"
    stamp = INTEROP_VENV / ".skillmeat-installed"
    if python.exists() and stamp.exists() and stamp.read_text() == SKILLMEAT:
        return python
    if not python.exists():
        print(f"+ creating {INTEROP_VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(INTEROP_VENV)
    print(f"+ {python} -m pip install {SKILLMEAT}", flush=True)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", SKILLMEAT],
        cwd=ROOT,
    )
    if result.returncode != 0:
        bar = "!" * 78
        sys.exit(
            f"{bar}\ninterop: could not install {SKILLMEAT} into {INTEROP_VENV} "
            f"(pip exit {result.returncode}).\nIs the package registry reachable? The interop "
            f"test needs the real SkillMeat and does not skip.\n{bar}"
        )
    stamp.write_text(SKILLMEAT)
    return python


def task_interop(extra: list[str]) -> None:
    """tests/interop against the real SkillMeat 0.74.0; prints the agreement table."""
    python = ensure_interop_venv()
    env = {**os.environ, "PROJCACHE_SKILLMEAT_PYTHON": str(python)}
    print("+ pytest -m interop tests/interop", flush=True)
    result = subprocess.run(
        [str(BIN / "python"), "-m", "pytest", "-m", "interop", "-p", "no:cacheprovider",
         "-n", "0", "-s", "tests/interop", *extra],
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    if result.returncode != 0:
        sys.exit(result.returncode)


def task_bench(extra: list[str]) -> None:
    """The speed suite (tests/benchmarks) and its report; ``--smoke`` is CI's cheap subset."""
    _run(str(BIN / "python"), str(ROOT / "bench" / "run.py"), *extra)


def main(argv: list[str]) -> None:
    """Dispatch ``argv[0]`` to a task."""
    tasks = (
        "demo",
        "test",
        "e2e",
        "stress",
        "lint",
        "typing",
        "tox",
        "release",
        "bench",
        "interop",
    )
    if not argv or argv[0] not in tasks:
        print(__doc__)
        sys.exit(2)
    name, extra = argv[0], argv[1:]
    # The demo needs the package only (a few MB, seconds); every other task the dev tools.
    ensure_venv("" if name == "demo" else "dev")
    if name == "demo":
        task_demo()
    elif name == "test":
        task_test(extra)
    elif name == "stress":
        task_stress(extra)
    elif name == "e2e":
        task_e2e(extra)
    elif name == "lint":
        _run(str(BIN / "ruff"), "check", ".")
        _run(str(BIN / "ruff"), "format", "--check", ".")
    elif name == "typing":
        _run(str(BIN / "mypy"))
    elif name == "bench":
        task_bench(extra)
    elif name == "release":
        task_release(extra)
    elif name == "interop":
        task_interop(extra)
    else:
        _run(str(BIN / "tox"), *extra)


if __name__ == "__main__":
    main(sys.argv[1:])
