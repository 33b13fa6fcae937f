"""An in-process guard that keeps read transactions and map resizes apart.

LMDB allows ``mdb_env_set_mapsize`` only while this process has no active
transaction.  py-lmdb 3.0 invalidates other threads' transactions when it is
called, but a transaction begun in another thread *during* the resize fails
with ``EINVAL`` (seen in tests) and, worse, could read the old mapping while it
is being unmapped.  Readers therefore share the guard and a resize takes it
exclusively, waiting for in-flight reads to finish and holding new ones back.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

__all__ = ["MapGuard"]

T = TypeVar("T")


class MapGuard:
    """Many readers or one resizer; resizers are preferred so growth is never starved.

    Costs two uncontended lock round trips per read.  A thread must not resize
    while it holds a read share (it would wait for itself); projcache never
    does, because reads are short callables that never write.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._resizing = False

    def enter_read(self) -> None:
        """Take a read share, waiting while a resize is pending or running."""
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._readers += 1

    def exit_read(self) -> None:
        """Give back a read share."""
        with self._cond:
            self._readers -= 1
            if self._resizing and self._readers == 0:
                self._cond.notify_all()

    def exclusive(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` with no read share held by any thread of this process."""
        with self._cond:
            while self._resizing:  # one resize at a time
                self._cond.wait()
            self._resizing = True
            try:
                while self._readers:
                    self._cond.wait()
                return fn()
            finally:
                self._resizing = False
                self._cond.notify_all()
