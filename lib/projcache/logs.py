"""Module loggers that import :mod:`logging` only when something is logged.

``import logging`` (with ``traceback``, ``string`` and ``textwrap`` behind it)
is a visible part of a cold ``projcache get --json``, which logs nothing when
all is well.  The modules on that path (the facade, storage, the schema check,
the error tree) take their logger from :func:`get_logger`: a stand-in that
imports :mod:`logging` and fetches ``logging.getLogger(name)`` on its first
use, then hands every call to that real logger.  Handlers, levels and filters
set on ``logging.getLogger(name)`` apply as usual (it is the same logger).

A front end that configures logging (the CLI's ``warning: …`` style) but does
not want to import it up front registers :func:`on_first_use`: the hook runs
before the first record of any such logger is handled.
"""

from __future__ import annotations

# typing is imported for the type checker only: at run time it costs a cold CLI call ~2.4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from logging import Logger
    from typing import Any, Callable, Optional

__all__ = ["get_logger", "on_first_use"]

_HOOKS: list[Callable[[], None]] = []
_USED = [False]  # whether a lazy logger has been used (a list: set from a method)


def on_first_use(hook: Callable[[], None]) -> Callable[[], None]:
    """Run ``hook`` once, just before the first lazy logger is used (now, if one was).

    Returns a function that cancels the hook if it has not run yet.
    """
    if _USED[0]:
        hook()
    else:
        _HOOKS.append(hook)

    def cancel() -> None:
        if hook in _HOOKS:
            _HOOKS.remove(hook)

    return cancel


class _LazyLogger:
    """Stands in for ``logging.getLogger(name)`` until an attribute is asked for."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Optional[Logger] = None

    def __getattr__(self, attribute: str) -> Any:
        logger = self._logger
        if logger is None:
            import logging

            if not _USED[0]:
                _USED[0] = True
                while _HOOKS:  # a hook may log: later uses see _USED set and go straight on
                    _HOOKS.pop(0)()
            logger = self._logger = logging.getLogger(self._name)
        return getattr(logger, attribute)


def get_logger(name: str) -> Logger:
    """``logging.getLogger(name)``, fetched (and :mod:`logging` imported) on first use."""
    # Duck-typed: every attribute comes from the real logger.
    return _LazyLogger(name)  # type: ignore[return-value]
