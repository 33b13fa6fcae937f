"""Run the CLI in-process, or a command or a Python script in a child process.

Plain functions, not fixtures, so that module-level helpers of any test file can
use them (``from clirun import runner``).  ``runner`` keeps stderr apart from
stdout on every Click: Click < 8.2 (the newest on Python 3.9) mixes stderr into
stdout unless told not to, and Click 8.2 dropped the ``mix_stderr`` argument.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from typing import Any, Optional

from typer.testing import CliRunner, Result

from projcache_cli import app

__all__ = ["run_cli", "run_command", "run_python", "runner"]

_SEPARATE = "mix_stderr" in inspect.signature(CliRunner.__init__).parameters
runner = CliRunner(**({"mix_stderr": False} if _SEPARATE else {}))


def run_cli(args: list[str], env: Optional[dict[str, Optional[str]]] = None) -> Result:
    """Invoke the CLI in-process, with no config file and no auto-repair from the environment."""
    isolated: dict[str, Optional[str]] = {
        "PROJCACHE_CONFIG": None,
        "PROJCACHE_AUTO_REPAIR": None,
        "XDG_CONFIG_HOME": os.devnull,
    }
    return runner.invoke(app, args, env={**isolated, **(env or {})})


def run_command(
    argv: list[str], env: Optional[dict[str, str]] = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command with no stdin, no PROJCACHE_* setting and no user config, plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PROJCACHE_")}
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**clean, "XDG_CONFIG_HOME": os.devnull, **(env or {})},
        timeout=timeout,
        check=False,
    )


def run_python(
    args: list[str], *, env: Optional[dict[str, str]] = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with ``args`` (no stdin, 120 s at most); return the finished process."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=120,
        check=False,
        **kwargs,
    )
