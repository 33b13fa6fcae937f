"""Lazy module loggers (:mod:`projcache.logs`): logging is imported on first use only."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    return done.stdout.decode() + "|" + done.stderr.decode()


def test_logging_is_imported_on_first_use_only() -> None:
    """Creating a lazy logger imports nothing; its first call imports logging and logs."""
    out = _run(
        "import sys\n"
        "from projcache.logs import get_logger\n"
        "log = get_logger('projcache.example')\n"
        "print('before', 'logging' in sys.modules)\n"
        "log.warning('hello %s', 'there')\n"
        "import logging\n"
        "print('after', 'logging' in sys.modules, log.name, log.getEffectiveLevel())\n"
        "print(logging.getLogger('projcache.example') is log._logger)\n"
    )
    assert "before False" in out
    assert "hello there" in out  # logging's last-resort handler, as for a plain logger
    assert "after True projcache.example 30" in out
    assert "\nTrue\n|" in out


def test_first_use_hook_runs_once_before_the_first_record() -> None:
    """A hook registered with on_first_use configures logging before the record is handled."""
    out = _run(
        "import sys\n"
        "from projcache.logs import get_logger, on_first_use\n"
        "calls = []\n"
        "def hook():\n"
        "    import logging\n"
        "    calls.append(1)\n"
        "    logging.basicConfig(stream=sys.stdout, format='configured %(message)s')\n"
        "on_first_use(hook)\n"
        "cancelled = on_first_use(lambda: calls.append('never'))\n"
        "cancelled()\n"
        "log = get_logger('projcache.a')\n"
        "log.warning('one')\n"
        "get_logger('projcache.b').warning('two')\n"
        "on_first_use(lambda: calls.append(2))  # already used: runs at once\n"
        "print(calls)\n"
    )
    assert out.splitlines() == ["configured one", "configured two", "[1, 2]", "|"]
