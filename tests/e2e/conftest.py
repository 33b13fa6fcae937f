"""Fixtures of the end-to-end suites: real ``projcache`` processes over real files.

Every process runs the installed ``projcache`` script (or ``python -m
projcache_cli`` next to this interpreter) in an environment stripped of the
user's projcache settings: no ``PROJCACHE_*`` variables, ``HOME`` and
``XDG_CONFIG_HOME`` inside the test's ``tmp_path``, so neither a config file
nor ``~/.skillmeat`` can leak into a test's cache.

Fixtures:

- ``examples_tree``: a copy of the packaged example folders (one collection,
  three projects with current, outdated, modified and missing deployments and a
  malformed agent) that a test may change;
- ``refresh_cache(cache_dir, collections=(), projects=(), *extra_args)``:
  ``projcache refresh`` in a subprocess;
- ``served_cache(cache_dir, *extra_args, env=None)``: ``projcache serve`` in a
  subprocess, stopped at teardown;
- ``served_examples`` (module scope): the examples, refreshed and served once
  for a module's read-only tests.

Every test under ``tests/e2e`` and ``tests/load`` gets the ``e2e`` marker here
(run ``pytest tests`` or ``pytest tests/e2e``: a run of ``tests/load`` alone does
not load this file).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Callable, Optional, Union

import pytest

import projcache
from served import isolated_env, projcache_command

HERE = Path(__file__).resolve().parent
LOAD = HERE.parent / "load"
EXAMPLES = Path(projcache.__file__).resolve().parent / "examples"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
BROKEN_AGENT = "---\nname: [unclosed\n---\nA malformed agent.\n"
_READY = re.compile(r"^serving .* on (http://\S+:\d+/)$", re.MULTILINE)

StrPath = Union[str, "os.PathLike[str]"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of tests/e2e and tests/load ``e2e`` (`tasks.py e2e`; not in tox)."""
    for item in items:
        path = Path(item.path).resolve()
        if path.is_relative_to(HERE) or path.is_relative_to(LOAD):
            item.add_marker(pytest.mark.e2e)


def copy_examples(target: Path) -> Path:
    """Copy ``projcache/examples`` to ``target`` (with mtimes: the recorded hashes still match)."""
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def run_refresh(
    home: Path,
    cache_dir: StrPath,
    collections: Sequence[StrPath] = (),
    projects: Sequence[StrPath] = (),
    *extra_args: str,
) -> subprocess.CompletedProcess[str]:
    """``projcache --cache-dir CACHE_DIR refresh -c C... -p P... EXTRA_ARGS`` with ``HOME=home``.

    Exit 1 (some file could not be read) is accepted; any other non-zero exit
    fails the test with the process's output.
    """
    args = [*projcache_command(), "--cache-dir", os.fspath(cache_dir), "refresh"]
    args += [a for c in collections for a in ("-c", os.fspath(c))]
    args += [a for p in projects for a in ("-p", os.fspath(p))]
    done = subprocess.run(
        [*args, *extra_args],
        env=isolated_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode not in (0, 1):
        pytest.fail(
            f"{' '.join(args)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


class ServedCache(str):
    """The base URL of a running ``projcache serve`` (``http://127.0.0.1:PORT/``).

    A ``str``, usable wherever the URL is; also carries the process and the file
    its stderr goes to (uvicorn's log, and the access log with ``--access-log``).
    """

    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        """The server's stderr so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful uvicorn shutdown), then SIGKILL if it is not gone in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


def _wait_ready(process: subprocess.Popen[bytes], log: Path) -> str:
    """Wait for the "serving ... on URL" line; return the URL."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        text = log.read_text(encoding="utf-8", errors="replace")
        found = _READY.search(text)
        if found:
            return found.group(1)
        if process.poll() is not None:
            pytest.fail(f"projcache serve exited {process.returncode} before serving:\n{text}")
        if time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"projcache serve did not start within {START_TIMEOUT:.0f}s:\n{text}")
        time.sleep(0.02)


class Servers:
    """``projcache serve`` processes started with one ``HOME``; logs in ``folder``."""

    def __init__(self, folder: Path, home: Path) -> None:
        self.folder = folder
        self.home = home
        self._processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        folder.mkdir(parents=True, exist_ok=True)

    def start(
        self, cache_dir: StrPath, *extra_args: str, env: Optional[Mapping[str, str]] = None
    ) -> ServedCache:
        """Start a server on a free port of 127.0.0.1; return once it said where it serves."""
        log = self.folder / f"serve-{len(self._processes)}.log"
        out = log.open("wb")
        self._logs.append(out)
        args = [*projcache_command(), "--cache-dir", os.fspath(cache_dir), "serve"]
        process = subprocess.Popen(
            [*args, "--port", "0", *extra_args],
            env=isolated_env(self.home, env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self._processes.append(process)
        served = ServedCache(_wait_ready(process, log))
        served.process = process
        served.log = log
        return served

    def stop_all(self) -> None:
        """Stop every server still running and close the logs."""
        for process in self._processes:
            _stop(process)
        for out in self._logs:
            out.close()


@pytest.fixture
def e2e_home(tmp_path: Path) -> Path:
    """The ``HOME`` of the test's processes (empty: no config file, no ``~/.skillmeat``)."""
    return tmp_path / "home"


@pytest.fixture
def examples_tree(tmp_path: Path) -> Path:
    """A private copy of ``projcache/examples``: ``collections/default``, ``projects/*``.

    Copied with their mtimes, so the lock and deployment hashes still match the
    files; the test may edit the copy freely.
    """
    return copy_examples(tmp_path / "examples")


@pytest.fixture
def refresh_cache(e2e_home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Factory: ``refresh_cache(cache_dir, collections=(), projects=(), *extra_args)``.

    Runs ``projcache --cache-dir CACHE_DIR refresh -c C... -p P... EXTRA_ARGS``
    and returns the finished process (text output captured).  Exit 1 (some
    file could not be read, the examples' malformed agent) is accepted; any
    other non-zero exit fails the test with the process's output.
    """

    def refresh(
        cache_dir: StrPath,
        collections: Sequence[StrPath] = (),
        projects: Sequence[StrPath] = (),
        *extra_args: str,
    ) -> subprocess.CompletedProcess[str]:
        return run_refresh(e2e_home, cache_dir, collections, projects, *extra_args)

    return refresh


@pytest.fixture
def served_cache(tmp_path: Path, e2e_home: Path) -> Iterator[Callable[..., ServedCache]]:
    """Factory: ``served_cache(cache_dir: Path, *extra_args, env=None) -> str`` (base URL).

    Starts ``projcache --cache-dir CACHE_DIR serve --port 0 EXTRA_ARGS`` (on
    127.0.0.1 unless ``--host`` is among ``extra_args``), waits for its
    ``serving ... on http://127.0.0.1:PORT/`` line and returns that URL, with a
    trailing slash, as a :class:`ServedCache` (a ``str`` that also has
    ``.process``, ``.log`` and ``.log_text()``).  ``env`` adds variables to the
    isolated environment (e.g. ``{"PROJCACHE_API_KEY": "k"}``).  Call it as
    often as needed (several servers, or one restarted over the same cache);
    every server still running at teardown gets SIGTERM, then SIGKILL after
    10 s.  Fill the cache first (``refresh_cache``): serving does not refresh.
    """
    servers = Servers(tmp_path / "served", e2e_home)
    try:
        yield servers.start
    finally:
        servers.stop_all()


@dataclasses.dataclass(frozen=True)
class ServedExamples:
    """The examples served read-only: ``url`` (a :class:`ServedCache`), ``root``, ``cache_dir``."""

    url: ServedCache
    root: Path
    cache_dir: Path


@pytest.fixture(scope="module")
def served_examples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedExamples]:
    """One server per test module over a copy of the examples; tests must not change it.

    The examples plus a malformed agent in the ``notes`` project (so a project,
    not only the collection, has an error), refreshed, then served with
    ``--refresh-interval 0 --access-log``.  Cheaper than a server per test for
    tests that only read.  At teardown its log must hold no traceback.
    """
    base = tmp_path_factory.mktemp("served-examples")
    root = copy_examples(base / "examples")
    (root / "projects" / "notes" / ".claude" / "agents" / "broken.md").write_text(
        BROKEN_AGENT, encoding="utf-8"
    )
    cache_dir = base / "cache"
    projects = sorted((root / "projects").iterdir())
    run_refresh(base / "home", cache_dir, [root / "collections" / "default"], projects)
    servers = Servers(base / "served", base / "home")
    try:
        url = servers.start(cache_dir, "--refresh-interval", "0", "--access-log")
        yield ServedExamples(url, root, cache_dir)
        assert "Traceback" not in url.log_text(), url.log_text()
    finally:
        servers.stop_all()
