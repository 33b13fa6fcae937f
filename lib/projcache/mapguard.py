"""An in-process guard that keeps read transactions and map resizes apart.

LMDB allows ``mdb_env_set_mapsize`` only while this process has no active
transaction.  py-lmdb 3.0 invalidates other threads' transactions when it is
called, but a transaction begun in another thread *during* the resize fails
with ``EINVAL`` (seen in tests) and, worse, could read the old mapping while it
is being unmapped.  Readers therefore share the guard and a resize takes it
exclusively, waiting for in-flight reads to finish and holding new ones back.
py-lmdb 3.0's write-transaction ``abort`` also waits for every in-flight
operation on the environment, so aborts go through the guard as well.
"""

from __future__ import annotations

import time
from _thread import allocate_lock

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from threading import Condition
    from typing import Callable, Optional, TypeVar

__all__ = ["MapGuard"]

if TYPE_CHECKING:
    T = TypeVar("T")


class MapGuard:
    """Many readers or one resizer; resizers are preferred so growth is never starved.

    Readers announce themselves by appending to a list and check the resize
    flag afterwards; the resizer sets the flag, then waits for the list to
    empty.  Under the GIL list appends and pops are atomic and ordered, so
    one of the two always sees the other (Dekker-style), and the read path
    costs two list operations instead of two lock round trips.  A thread must
    not resize while it holds a read share (it would wait for itself);
    projcache never does, because reads are short callables that never write.
    """

    _POLL_SECONDS = 0.0002

    def __init__(self) -> None:
        self._active: list[None] = []
        self._resizing = False
        # The condition is made by the first resize (see _condition): ``threading`` costs a
        # cold CLI read ~0.8 ms, and a process that never grows the map never waits on it.
        self._cond: Optional[Condition] = None
        self._making = allocate_lock()

    def _condition(self) -> Condition:
        """The condition readers wait on during a resize, made once (under a lock)."""
        cond = self._cond
        if cond is None:
            with self._making:
                cond = self._cond
                if cond is None:
                    import threading

                    cond = self._cond = threading.Condition(threading.Lock())
        return cond

    def enter_read(self) -> None:
        """Take a read share, waiting while a resize is pending or running."""
        active = self._active
        while True:
            active.append(None)
            if not self._resizing:
                return
            active.pop()  # step back so the resize can start, then wait for its end
            cond = self._condition()  # made before _resizing was set: this only reads it
            with cond:
                while self._resizing:
                    cond.wait()

    def exit_read(self) -> None:
        """Give back a read share."""
        self._active.pop()

    def exclusive(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` with no read share held by any thread of this process."""
        cond = self._condition()
        with cond:
            while self._resizing:  # one resize at a time
                cond.wait()
            self._resizing = True
        try:
            while self._active:  # in-flight reads are short: poll rather than signal
                time.sleep(self._POLL_SECONDS)
            return fn()
        finally:
            with cond:
                self._resizing = False
                cond.notify_all()
