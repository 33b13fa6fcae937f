"""MapGuard: reads share, a resize (or write abort) is exclusive."""

from __future__ import annotations

import threading

import pytest

from projcache.mapguard import MapGuard


def test_exclusive_waits_for_in_flight_readers() -> None:
    """The exclusive section starts only after every read share is given back."""
    guard = MapGuard()
    order: list[str] = []
    guard.enter_read()
    worker = threading.Thread(target=lambda: guard.exclusive(lambda: order.append("resize")))
    worker.start()
    worker.join(timeout=0.2)
    assert worker.is_alive() and order == []  # still waiting for our read share
    order.append("read done")
    guard.exit_read()
    worker.join(timeout=10)
    assert order == ["read done", "resize"]


def test_new_readers_wait_while_a_resize_runs() -> None:
    """A read that starts during the exclusive section waits until it ends."""
    guard = MapGuard()
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def resize() -> None:
        inside.set()
        release.wait(timeout=10)
        order.append("resize")

    resizer = threading.Thread(target=lambda: guard.exclusive(resize))
    resizer.start()
    assert inside.wait(timeout=10)

    def read() -> None:
        guard.enter_read()
        order.append("read")
        guard.exit_read()

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(timeout=0.2)
    assert reader.is_alive() and order == []
    release.set()
    for thread in (resizer, reader):
        thread.join(timeout=10)
    assert order == ["resize", "read"]


def test_exclusive_returns_the_result_and_releases_on_error() -> None:
    """exclusive() returns fn's value, and an exception leaves the guard usable."""
    guard = MapGuard()
    assert guard.exclusive(lambda: 42) == 42

    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        guard.exclusive(boom)
    guard.enter_read()
    guard.exit_read()
    assert guard.exclusive(lambda: "again") == "again"
