"""Helpers for tests whose children are other processes (fork or spawn) or threads.

Kept light on purpose: a spawned child imports its test module, and with it this
one, so nothing here pulls in the CLI.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator
from typing import Callable

__all__ = ["collect_messages", "fork_allowed", "wait_for"]


@contextlib.contextmanager
def fork_allowed() -> Iterator[None]:
    """Silence only CPython 3.12+'s warning about fork() in a multi-threaded process.

    pytest-xdist workers run helper threads; the children the tests fork open
    their own cache and never touch locks those threads might hold.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r".*multi-threaded, use of fork\(\) may lead to deadlocks",
            category=DeprecationWarning,
        )
        yield


def collect_messages(logger: str) -> list[str]:
    """From now on, every message of ``logger`` at INFO and above (in a child, without caplog)."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    target = logging.getLogger(logger)
    target.addHandler(_Collect(logging.INFO))
    target.setLevel(logging.INFO)
    return messages


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
