"""Running the real ``projcache`` CLI in subprocesses, for the e2e and load suites.

A plain module (``from served import ServerProcess``; pytest puts ``tests/``
on ``sys.path`` as for ``factories``) rather than fixtures in
``tests/e2e/conftest.py``, because a conftest only serves its own folder and
``tests/load`` must also run alone.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
_READY = re.compile(r"serving .+ on (http://127\.0\.0\.1:\d+)/")


def projcache_command() -> list[str]:
    """The command line that runs the ``projcache`` CLI of this interpreter's environment."""
    script = Path(sys.executable).with_name("projcache")
    return [str(script)] if script.exists() else [sys.executable, "-m", "projcache_cli"]


def spawn_piped(args: list[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start ``args`` without stdin, its stdout and stderr as text pipes for the caller to read."""
    return subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
    )


def isolated_env(home: Path, extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """This process's environment without ``PROJCACHE_*``, ``HOME`` moved to ``home``.

    Neither a config file nor ``~/.skillmeat`` of the user can leak into a test's cache.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJCACHE_")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    env.update(extra or {})
    return env


class ServerProcess:
    """``projcache --cache-dir DIR serve --port 0`` in a subprocess; ``url`` once it listens.

    Its stderr is read by a thread (``log``), so a chatty server never blocks on
    a full pipe.  Raises ``RuntimeError`` with the server's output when it does
    not say where it serves within ``START_TIMEOUT``.
    """

    def __init__(self, cache_dir: Path, env: Mapping[str, str]) -> None:
        command = [*projcache_command(), "--cache-dir", str(cache_dir), "serve", "--port", "0"]
        self.process = subprocess.Popen(
            command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=dict(env)
        )
        self.lines: list[str] = []
        ready: queue.Queue[Optional[str]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self._reader.start()
        try:
            line = ready.get(timeout=START_TIMEOUT)
        except queue.Empty:
            line = None
        match = _READY.search(line or "")
        if match is None:
            self.stop()
            raise RuntimeError("the server did not start:\n" + self.log)
        self.url = match.group(1)

    def _read(self, ready: queue.Queue[Optional[str]]) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if line.startswith("serving "):
                ready.put(line)
        ready.put(None)

    @property
    def log(self) -> str:
        """Everything the server wrote to stderr so far."""
        return "".join(self.lines)

    def stop(self) -> int:
        """SIGTERM, wait for the exit (SIGKILL after ``STOP_TIMEOUT``); return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return self.process.returncode
